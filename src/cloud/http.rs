//! The HTTP client set-up that the HTTP clouds (WebDAV, S3) share: connect and keep-alive
//! timeouts, no redirects followed by reqwest, and TLS roots (the system's, plus `--ca-file`).

use std::path::Path;
use std::time::Duration;

/// How long connecting may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reqwest client builder with the project's timeouts, the user agent, no automatic
/// redirects (a streamed body cannot be replayed), and the CA of `ca_file` trusted besides the
/// system roots.
pub(crate) fn builder(ca_file: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        // Below Apache's default keep-alive of 5 s, so an idle connection is dropped here
        // before the server closes it under a request whose streamed body cannot be replayed.
        .pool_idle_timeout(Duration::from_secs(4))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cloudsync/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("the CA file {} is not PEM: {e}", ca.display()))?;
        if certs.is_empty() {
            anyhow::bail!("the CA file {} holds no certificate", ca.display());
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    Ok(builder)
}

/// `s` with every non-empty secret of `secrets` replaced.
pub(crate) fn redact(secrets: &[String], s: &str) -> String {
    let mut s = s.to_string();
    for secret in secrets.iter().filter(|x| !x.is_empty()) {
        s = s.replace(secret.as_str(), "<redacted>");
    }
    s
}

/// What a broken request to `peer` ("server", "store") comes to, with its cause chain and no
/// secret of `secrets`: an untrusted certificate is a configuration error (retrying cannot
/// cure it), a connection never made is `Unreachable` (nothing of the request left this host),
/// anything else `Transport`.
pub(crate) fn transport_error(
    what: &str,
    e: reqwest::Error,
    peer: &str,
    secrets: &[String],
) -> super::CloudError {
    use super::CloudError;
    let connect = e.is_connect();
    let msg = cause_chain(e);
    if msg.contains("invalid peer certificate") || msg.contains("certificate verify failed") {
        return CloudError::Protocol(redact(
            secrets,
            &format!(
                "{what}: the {peer}'s TLS certificate is not trusted ({msg}); give its CA with --ca-file"
            ),
        ));
    }
    let msg = redact(secrets, &format!("{what}: {msg}"));
    if connect {
        CloudError::Unreachable(msg)
    } else {
        CloudError::Transport(msg)
    }
}

/// No answer from `peer` for `idle`.
pub(crate) fn timed_out(what: &str, peer: &str, idle: Duration) -> super::CloudError {
    super::CloudError::Transport(format!(
        "{what}: no answer from the {peer} for {} s",
        idle.as_secs_f32()
    ))
}

/// A reqwest error with its whole cause chain, without the URL (which may carry a signature).
pub(crate) fn cause_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

/// Streams the body of a GET answer into `dest` from its start (what it held before is cut
/// off), and returns the number of bytes received. A body longer or shorter than the
/// `expected` length is an error, as is a silence of `idle` (`timed_out`) or a broken
/// connection (`transport` maps it). The content is written, not synced: making it durable
/// is the caller's part (one sync per download, with its final times).
pub(crate) async fn receive(
    resp: &mut reqwest::Response,
    dest: &std::fs::File,
    expected: Option<u64>,
    idle: Duration,
    what: &str,
    transport: impl Fn(reqwest::Error) -> super::CloudError,
    timed_out: impl Fn() -> super::CloudError,
) -> Result<u64, super::CloudError> {
    use super::CloudError;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let out = dest.try_clone()?;
    out.set_len(0)?;
    let mut out = tokio::fs::File::from_std(out);
    out.seek(std::io::SeekFrom::Start(0)).await?;
    let mut got: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(idle, resp.chunk()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(transport(e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        got += chunk.len() as u64;
        if let Some(n) = expected
            && got > n
        {
            return Err(CloudError::Transport(format!(
                "{what}: the answer held more than the {n} bytes it announced"
            )));
        }
        out.write_all(&chunk).await?;
    }
    if let Some(n) = expected
        && got != n
    {
        return Err(CloudError::Transport(format!(
            "{what}: the download broke off after {got} of {n} bytes"
        )));
    }
    out.flush().await?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_and_empty_ones_change_nothing() {
        let secrets = ["s3cr3t".to_string(), String::new()];
        assert_eq!(
            redact(&secrets, "PUT https://u:s3cr3t@h/x?sig=s3cr3t"),
            "PUT https://u:<redacted>@h/x?sig=<redacted>"
        );
        assert_eq!(redact(&secrets, "plain"), "plain");
    }
}
