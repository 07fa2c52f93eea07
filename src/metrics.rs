//! The daemon's metrics: what the engine counts as pushes and pulls finish, and how the Sync
//! Manager's `GET /metrics` (`web/`) renders it, with what the queue holds now, in the
//! Prometheus text format. It sits beside `status.rs`, below the engine that feeds it.
//!
//! Every metric name is a constant here. No metric carries a path, a name or a URL: the
//! labels are a result (`ok`, `failed`) or a failure code, so scraping a mount tells nothing
//! about what it holds.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::status::FailureCode;

/// Pushes finished, by result (`_total` is added by the encoder).
pub const PUSHES: &str = "cloudsync_pushes";
/// Pulls finished, by result.
pub const PULLS: &str = "cloudsync_pulls";
/// How long pushes took.
pub const PUSH_SECONDS: &str = "cloudsync_push_duration_seconds";
/// How long pulls took.
pub const PULL_SECONDS: &str = "cloudsync_pull_duration_seconds";
/// Pushes that failed for good, by failure code.
pub const PUSH_FAILURES: &str = "cloudsync_push_failures";
/// Bytes of file content uploaded.
pub const SENT_BYTES: &str = "cloudsync_sent_bytes";
/// Bytes of file content downloaded.
pub const RECEIVED_BYTES: &str = "cloudsync_received_bytes";
/// Changes in the queue now.
pub const QUEUE_LENGTH: &str = "cloudsync_queue_length";
/// Transfers running now.
pub const IN_FLIGHT: &str = "cloudsync_in_flight";
/// Items failed now, by failure code.
pub const FAILED_ITEMS: &str = "cloudsync_failed_items";
/// Items waiting for the reconciler or kept as conflicts now (queue entries).
pub const CONFLICT_ITEMS: &str = "cloudsync_conflict_items";
/// 1 while the cloud is unreachable.
pub const OFFLINE: &str = "cloudsync_offline";
/// Since when the cloud is unreachable, in seconds since the epoch; 0 when it is reachable.
pub const OFFLINE_SINCE: &str = "cloudsync_offline_since_seconds";
/// 1 while pushing is paused (by the user or after refused credentials).
pub const PUSH_PAUSED: &str = "cloudsync_push_paused";
/// 1 while pulling is paused.
pub const PULL_PAUSED: &str = "cloudsync_pull_paused";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

fn result(ok: bool) -> ResultLabel {
    ResultLabel {
        result: if ok { "ok" } else { "failed" }.to_string(),
    }
}

fn code(c: FailureCode) -> CodeLabel {
    CodeLabel {
        code: c.as_str().to_string(),
    }
}

fn duration_buckets() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// What the engine counts. Each metric is shared by its clones, so the encoder reads the
/// engine's values without a lock.
#[derive(Debug)]
pub struct SyncMetrics {
    pushes: Family<ResultLabel, Counter>,
    pulls: Family<ResultLabel, Counter>,
    push_seconds: Histogram,
    pull_seconds: Histogram,
    push_failures: Family<CodeLabel, Counter>,
    sent: Counter,
    received: Counter,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            pushes: Family::default(),
            pulls: Family::default(),
            push_seconds: duration_buckets(),
            pull_seconds: duration_buckets(),
            push_failures: Family::default(),
            sent: Counter::default(),
            received: Counter::default(),
        }
    }
}

impl SyncMetrics {
    /// Counts one push that finished, well or not, after `took`.
    pub fn pushed(&self, ok: bool, took: Duration) {
        self.pushes.get_or_create(&result(ok)).inc();
        self.push_seconds.observe(took.as_secs_f64());
    }

    /// Counts one pull that finished, well or not, after `took`.
    pub fn pulled(&self, ok: bool, took: Duration) {
        self.pulls.get_or_create(&result(ok)).inc();
        self.pull_seconds.observe(took.as_secs_f64());
    }

    /// Counts a push that failed for good with `c`.
    pub fn push_failed(&self, c: FailureCode) {
        self.push_failures.get_or_create(&code(c)).inc();
    }

    /// Counts `bytes` of content uploaded.
    pub fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    /// Counts `bytes` of content downloaded.
    pub fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }
}

/// What the queue and the engine hold at the moment of a scrape.
#[derive(Debug, Default, Clone)]
pub struct Now {
    /// Changes in the queue.
    pub queued: u64,
    /// Transfers running.
    pub in_flight: u64,
    /// Failed items by code.
    pub failed: Vec<(FailureCode, u64)>,
    /// Queue entries in conflict.
    pub conflicts: u64,
    /// Since when the cloud is unreachable (ms since the epoch).
    pub offline_since_ms: Option<i64>,
    /// Pushing paused.
    pub push_paused: bool,
    /// Pulling paused.
    pub pull_paused: bool,
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

/// Renders `m` and `now` in the Prometheus text format (OpenMetrics), ending in `# EOF`.
pub fn render(m: &SyncMetrics, now: &Now) -> String {
    let mut r = Registry::default();
    r.register(PUSHES, "Pushes finished, by result", m.pushes.clone());
    r.register(PULLS, "Pulls finished, by result", m.pulls.clone());
    r.register(
        PUSH_SECONDS,
        "How long pushes took, in seconds",
        m.push_seconds.clone(),
    );
    r.register(
        PULL_SECONDS,
        "How long pulls took, in seconds",
        m.pull_seconds.clone(),
    );
    r.register(
        PUSH_FAILURES,
        "Pushes that failed for good, by failure code",
        m.push_failures.clone(),
    );
    r.register(SENT_BYTES, "Bytes of file content uploaded", m.sent.clone());
    r.register(
        RECEIVED_BYTES,
        "Bytes of file content downloaded",
        m.received.clone(),
    );
    r.register(
        QUEUE_LENGTH,
        "Changes in the queue",
        gauge(now.queued as i64),
    );
    r.register(IN_FLIGHT, "Transfers running", gauge(now.in_flight as i64));
    let failed = Family::<CodeLabel, Gauge>::default();
    for (c, n) in &now.failed {
        failed.get_or_create(&code(*c)).set(*n as i64);
    }
    r.register(FAILED_ITEMS, "Items failed, by failure code", failed);
    r.register(
        CONFLICT_ITEMS,
        "Changes in conflict, waiting for the reconciler or a person",
        gauge(now.conflicts as i64),
    );
    r.register(
        OFFLINE,
        "1 while the cloud is unreachable",
        gauge(i64::from(now.offline_since_ms.is_some())),
    );
    r.register(
        OFFLINE_SINCE,
        "Since when the cloud is unreachable, in seconds since the epoch (0: reachable)",
        gauge(now.offline_since_ms.map_or(0, |ms| ms / 1000)),
    );
    r.register(
        PUSH_PAUSED,
        "1 while pushing is paused",
        gauge(i64::from(now.push_paused)),
    );
    r.register(
        PULL_PAUSED,
        "1 while pulling is paused",
        gauge(i64::from(now.pull_paused)),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = SyncMetrics::default();
        m.pushed(true, Duration::from_millis(12));
        m.pushed(false, Duration::from_millis(40));
        m.pulled(true, Duration::from_millis(3));
        m.push_failed(FailureCode::DeletedOnCloud);
        m.sent(5);
        m.received(7);
        let text = render(
            &m,
            &Now {
                queued: 3,
                failed: vec![(FailureCode::InvalidName, 2)],
                ..Default::default()
            },
        );
        for want in [
            "cloudsync_pushes_total{result=\"ok\"} 1",
            "cloudsync_pushes_total{result=\"failed\"} 1",
            "cloudsync_pulls_total{result=\"ok\"} 1",
            "cloudsync_push_duration_seconds_count 2",
            "cloudsync_push_failures_total{code=\"DELETED_ON_CLOUD\"} 1",
            "cloudsync_sent_bytes_total 5",
            "cloudsync_received_bytes_total 7",
            "cloudsync_queue_length 3",
            "cloudsync_failed_items{code=\"INVALID_NAME\"} 2",
            "cloudsync_offline 0",
            "# EOF",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }
}
