//! The TOML config file and the command-line flags, merged into one validated [`Config`].
//!
//! Every flag has a key of the same name (with `_` for `-`). Flags override the file. Unknown
//! keys are an error, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

pub use crate::cloud::CloudOptions;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::MountArgs;

/// Default quiet time before a push.
pub const DEFAULT_PUSH_DELAY: Duration = Duration::from_secs(2);
/// Default time between pulls.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(30);
/// Default time between two rescans of the on-premise folder.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(600);
/// Default time a file stays open for writing before a snapshot of it is pushed.
pub const DEFAULT_OPEN_PUSH_INTERVAL: Duration = Duration::from_secs(300);
/// Default time between two rescans while a watch hears changes made straight in the
/// on-premise folder at once: the rescan is only the safety net then.
pub const WATCHED_RESCAN_INTERVAL: Duration = Duration::from_secs(3600);
/// Default number of parallel transfers.
pub const DEFAULT_TRANSFERS: usize = 4;

/// How changes made straight in the on-premise folder are heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchMode {
    /// fanotify where allowed, else inotify.
    #[default]
    Auto,
    /// fanotify only; without it, rescans only.
    Fanotify,
    /// inotify only.
    Inotify,
    /// No watch: rescans only.
    Off,
}

impl std::str::FromStr for WatchMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<WatchMode> {
        Ok(match s {
            "auto" => WatchMode::Auto,
            "fanotify" => WatchMode::Fanotify,
            "inotify" => WatchMode::Inotify,
            "off" => WatchMode::Off,
            _ => anyhow::bail!("{s:?} is not one of auto, fanotify, inotify, off"),
        })
    }
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The on-premise folder.
    pub onprem: Option<PathBuf>,
    /// The mount point.
    pub mountpoint: Option<PathBuf>,
    /// The cloud URL.
    pub cloud: Option<String>,
    /// The journal folder.
    pub state_dir: Option<PathBuf>,
    /// Quiet time before a push, like "2s".
    pub push_delay: Option<String>,
    /// Time between pulls, like "30s".
    pub pull_interval: Option<String>,
    /// Time between rescans of the on-premise folder, like "10m"; "0" for none.
    pub rescan_interval: Option<String>,
    /// How long a file may stay open for writing before a snapshot of it is pushed, like
    /// "5m"; "0" for never.
    pub open_push_interval: Option<String>,
    /// How changes made straight in the on-premise folder are heard: "auto", "fanotify",
    /// "inotify" or "off".
    pub watch: Option<String>,
    /// Mount options.
    pub options: Option<Vec<String>>,
    /// Parallel transfers.
    pub transfers: Option<usize>,
    /// Set to false to never use FUSE passthrough.
    pub passthrough: Option<bool>,
    /// Extra ignore patterns (shell globs on the file name).
    pub ignore: Option<Vec<String>>,
    /// Cloud user name.
    pub user: Option<String>,
    /// File holding the cloud password.
    pub password_file: Option<PathBuf>,
    /// Private CA file.
    pub ca_file: Option<PathBuf>,
    /// S3 endpoint URL.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: Option<String>,
    /// S3 addressing: "path" or "virtual-host".
    pub s3_addressing: Option<String>,
    /// S3 keys in the AWS shared-credentials format.
    pub credentials_file: Option<PathBuf>,
    /// Log filter.
    pub log_level: Option<String>,
    /// Where the log goes: "auto", "journal" or "stderr".
    pub log_target: Option<String>,
    /// Where the Sync Manager page listens, like "127.0.0.1:8080".
    pub status_addr: Option<String>,
    /// Let `status_addr` be other than a loopback address.
    pub status_allow_remote: Option<bool>,
    /// Sync sets; none means the whole mount is one set.
    pub sync_set: Option<Vec<crate::sync::sets::SetConfig>>,
}

/// Mount options understood by cloudsync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Let other users see the mount.
    pub allow_other: bool,
    /// Let the kernel check permissions from the mode bits.
    pub default_permissions: bool,
    /// Read-only mount.
    pub read_only: bool,
}

/// Where the daemon's log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The systemd journal when standard error is connected to it (`JOURNAL_STREAM`),
    /// otherwise standard error.
    Auto,
    /// The systemd journal, with structured fields.
    Journal,
    /// Standard error, as lines of text.
    Stderr,
}

impl LogTarget {
    /// Parses the value of `--log-target` or `log_target`.
    pub fn parse(s: &str) -> Result<LogTarget> {
        match s {
            "auto" => Ok(LogTarget::Auto),
            "journal" => Ok(LogTarget::Journal),
            "stderr" => Ok(LogTarget::Stderr),
            _ => bail!("log_target must be auto, journal or stderr, not {s:?}"),
        }
    }
}

/// Everything a mount needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Canonical on-premise folder.
    pub onprem: PathBuf,
    /// Canonical mount point.
    pub mountpoint: PathBuf,
    /// Cloud URL.
    pub cloud: String,
    /// Journal folder.
    pub state_dir: PathBuf,
    /// Quiet time before a push.
    pub push_delay: Duration,
    /// Time between pulls.
    pub pull_interval: Duration,
    /// Time between rescans of the on-premise folder; `None` for none.
    pub rescan_interval: Option<Duration>,
    /// How long a file may stay open for writing before a snapshot of it is pushed (and
    /// again after each such interval while it changes); `None` for never.
    pub open_push_interval: Option<Duration>,
    /// True when `rescan_interval` was not given: the default then depends on the watch.
    pub rescan_by_default: bool,
    /// How changes made straight in the on-premise folder are heard.
    pub watch: WatchMode,
    /// Mount options.
    pub mount: MountOptions,
    /// Parallel transfers.
    pub transfers: usize,
    /// Use FUSE passthrough when the kernel allows.
    pub passthrough: bool,
    /// Extra ignore patterns.
    pub ignore: Vec<String>,
    /// How to reach the cloud.
    pub cloud_opts: CloudOptions,
    /// The file the password was read from, if any.
    pub password_file: Option<PathBuf>,
    /// Log filter.
    pub log_level: String,
    /// Where the log goes.
    pub log_target: LogTarget,
    /// Which folders sync where.
    pub sets: crate::sync::sets::SyncSets,
    /// Where the Sync Manager page listens, if anywhere.
    pub status_addr: Option<crate::web::StatusAddr>,
}

/// Parses a duration like `2s`, `500ms` or `5m`.
pub fn parse_duration(key: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s.trim())
        .with_context(|| format!("{key} = {s:?} is not a duration; write it like 2s, 500ms or 5m"))
}

fn parse_options(opts: &[String]) -> Result<MountOptions> {
    let mut m = MountOptions::default();
    for o in opts.iter().flat_map(|o| o.split(',')).map(str::trim) {
        match o {
            "" | "rw" => {}
            "allow_other" => m.allow_other = true,
            "default_permissions" => m.default_permissions = true,
            "ro" => m.read_only = true,
            other => bail!(
                "unknown mount option {other:?}; supported: allow_other, default_permissions, ro, rw"
            ),
        }
    }
    Ok(m)
}

/// The state directory used when none is given: one per on-premise folder.
pub fn default_state_dir(onprem: &Path) -> PathBuf {
    let base = if nix_is_root() {
        PathBuf::from("/var/lib/cloudsync")
    } else if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        PathBuf::from(x).join("cloudsync")
    } else {
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
        PathBuf::from(home).join(".local/state/cloudsync")
    };
    let name: String = onprem
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(onprem.as_os_str().as_encoded_bytes()).to_hex();
    base.join(format!(
        "{}-{}",
        if name.is_empty() { "root" } else { &name },
        &hash[..8]
    ))
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn read_password(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let s = s.trim_end_matches(['\n', '\r']).to_string();
        if s.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Some(s));
    }
    Ok(std::env::var("CLOUDSYNC_PASSWORD")
        .ok()
        .filter(|s| !s.is_empty()))
}

impl Config {
    /// Merges the config file named by `--config` (if any) with the flags, then validates.
    pub fn load(args: &MountArgs) -> Result<Config> {
        let file = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    let line = e
                        .span()
                        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                    anyhow::anyhow!(
                        "config file {} is invalid{}: {}",
                        p.display(),
                        line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                        e.message().trim()
                    )
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merges flags over an already parsed file and validates the result.
    pub fn merge(args: &MountArgs, file: FileConfig) -> Result<Config> {
        let onprem =
            args.onprem.clone().or(file.onprem).context(
                "no on-premise folder given: cloudsync mount ONPREM MOUNTPOINT --cloud URL",
            )?;
        let mountpoint = args
            .mountpoint
            .clone()
            .or(file.mountpoint)
            .context("no mount point given: cloudsync mount ONPREM MOUNTPOINT --cloud URL")?;
        let cloud = args.cloud.clone().or(file.cloud).context(
            "no cloud given: add --cloud file:///path or --cloud https://host/path/ (or `cloud =` in the config)",
        )?;
        let push_delay = match args.push_delay.as_ref().or(file.push_delay.as_ref()) {
            Some(s) => parse_duration("push_delay", s)?,
            None => DEFAULT_PUSH_DELAY,
        };
        let pull_interval = match args.pull_interval.as_ref().or(file.pull_interval.as_ref()) {
            Some(s) => parse_duration("pull_interval", s)?,
            None => DEFAULT_PULL_INTERVAL,
        };
        if pull_interval < Duration::from_secs(1) {
            bail!("pull_interval must be at least 1s");
        }
        let rescan_given = args
            .rescan_interval
            .as_ref()
            .or(file.rescan_interval.as_ref());
        let rescan_by_default = rescan_given.is_none();
        let rescan_interval = match rescan_given {
            Some(s) => parse_duration("rescan_interval", s)?,
            None => DEFAULT_RESCAN_INTERVAL,
        };
        if !rescan_interval.is_zero() && rescan_interval < Duration::from_secs(1) {
            bail!("rescan_interval must be 0 (no rescans) or at least 1s");
        }
        let rescan_interval = Some(rescan_interval).filter(|d| !d.is_zero());
        let open_push_interval = match args
            .open_push_interval
            .as_ref()
            .or(file.open_push_interval.as_ref())
        {
            Some(s) => parse_duration("open_push_interval", s)?,
            None => DEFAULT_OPEN_PUSH_INTERVAL,
        };
        if !open_push_interval.is_zero() && open_push_interval < Duration::from_secs(1) {
            bail!("open_push_interval must be 0 (never) or at least 1s");
        }
        let open_push_interval = Some(open_push_interval).filter(|d| !d.is_zero());
        let watch = match args.watch.as_ref().or(file.watch.as_ref()) {
            Some(s) => s.parse().context("watch")?,
            None => WatchMode::Auto,
        };
        let mut opts = file.options.unwrap_or_default();
        opts.extend(args.options.iter().cloned());
        let mount = parse_options(&opts)?;
        let transfers = args
            .transfers
            .or(file.transfers)
            .unwrap_or(DEFAULT_TRANSFERS);
        if transfers == 0 || transfers > 64 {
            bail!("transfers must be between 1 and 64, not {transfers}");
        }

        let onprem = std::fs::canonicalize(&onprem).map_err(|e| {
            anyhow::anyhow!(
                "cannot mount: the on-premise folder {} is not usable: {e}",
                onprem.display()
            )
        })?;
        if !onprem.is_dir() {
            bail!("cannot mount: {} is not a directory", onprem.display());
        }
        let mountpoint = std::fs::canonicalize(&mountpoint).map_err(|e| {
            let abs = std::path::absolute(&mountpoint).unwrap_or_else(|_| mountpoint.clone());
            if e.raw_os_error() == Some(libc::ENOTCONN) && crate::stale_mount::is_dead(&abs) {
                return crate::stale_mount::DeadMount(abs).into();
            }
            anyhow::anyhow!(
                "cannot mount: the mount point {} is not usable: {e} (create it with mkdir)",
                mountpoint.display()
            )
        })?;
        if mountpoint.starts_with(&onprem) || onprem.starts_with(&mountpoint) {
            bail!(
                "cannot mount: the mount point {} and the on-premise folder {} must not contain each other",
                mountpoint.display(),
                onprem.display()
            );
        }
        let state_dir = args
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| default_state_dir(&onprem));
        let state_abs = if state_dir.is_absolute() {
            state_dir.clone()
        } else {
            std::env::current_dir()?.join(&state_dir)
        };
        if state_abs.starts_with(&onprem) || state_abs.starts_with(&mountpoint) {
            bail!(
                "the state dir {} must lie outside the on-premise folder and the mount",
                state_abs.display()
            );
        }
        let log_target = match args.log_target.as_ref().or(file.log_target.as_ref()) {
            Some(s) => LogTarget::parse(s)?,
            None => LogTarget::Auto,
        };
        let password_file = args.password_file.clone().or(file.password_file);
        let cloud_opts = CloudOptions {
            user: args.user.clone().or(file.user),
            password: read_password(password_file.as_deref())?,
            ca_file: args.ca_file.clone().or(file.ca_file),
            s3_endpoint: args.s3_endpoint.clone().or(file.s3_endpoint),
            s3_region: args.s3_region.clone().or(file.s3_region),
            s3_addressing: args
                .s3_addressing
                .clone()
                .or(file.s3_addressing)
                .map(|a| a.parse())
                .transpose()?,
            credentials_file: args.credentials_file.clone().or(file.credentials_file),
        };
        let password_file = password_file.map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
            }
        });
        let status_addr = args
            .status_addr
            .as_deref()
            .or(file.status_addr.as_deref())
            .map(|a| {
                crate::web::StatusAddr::parse(
                    a,
                    args.status_allow_remote || file.status_allow_remote.unwrap_or(false),
                )
            })
            .transpose()?;
        let sets = crate::sync::sets::SyncSets::from_config(
            file.sync_set.as_deref().unwrap_or_default(),
            &onprem,
        )?;
        Ok(Config {
            sets,
            status_addr,
            onprem,
            mountpoint,
            cloud,
            state_dir: state_abs,
            push_delay,
            pull_interval,
            rescan_interval,
            open_push_interval,
            rescan_by_default,
            watch,
            mount,
            transfers,
            passthrough: !args.no_passthrough && file.passthrough.unwrap_or(true),
            ignore: file.ignore.unwrap_or_default(),
            cloud_opts,
            password_file,
            log_target,
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error() {
        let e = toml::from_str::<FileConfig>("push_dealy = \"2s\"").unwrap_err();
        assert!(e.to_string().contains("push_dealy"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("k", "2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("k", "5m").unwrap(), Duration::from_secs(300));
        let e = parse_duration("push_delay", "soon").unwrap_err();
        assert!(format!("{e:#}").contains("push_delay"));
    }

    /// A temporary folder holding an on-premise folder and a mount point, and the first
    /// lines of a config file naming them with a file:// cloud.
    fn folders() -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let on = d.path().join("on");
        let mp = d.path().join("mp");
        std::fs::create_dir_all(&on).unwrap();
        std::fs::create_dir_all(&mp).unwrap();
        let head = format!("onprem = {on:?}\nmountpoint = {mp:?}\ncloud = \"file:///x\"\n");
        (d, head)
    }

    #[test]
    fn flags_override_file() {
        let (d, head) = folders();
        let file: FileConfig =
            toml::from_str(&format!("{head}push_delay = \"7s\"\noptions = [\"ro\"]\n")).unwrap();
        let args = MountArgs {
            push_delay: Some("1s".into()),
            state_dir: Some(d.path().join("st")),
            ..Default::default()
        };
        let c = Config::merge(&args, file).unwrap();
        assert_eq!(c.push_delay, Duration::from_secs(1));
        assert!(c.mount.read_only);
        assert_eq!(c.pull_interval, DEFAULT_PULL_INTERVAL);
        assert_eq!(c.rescan_interval, Some(DEFAULT_RESCAN_INTERVAL));
    }

    #[test]
    fn rescan_interval_zero_turns_rescans_off() {
        let (d, head) = folders();
        let merge = |v: &str| {
            let file: FileConfig =
                toml::from_str(&format!("{head}rescan_interval = {v:?}\n")).unwrap();
            let args = MountArgs {
                state_dir: Some(d.path().join("st")),
                ..Default::default()
            };
            Config::merge(&args, file)
        };
        assert_eq!(merge("0").unwrap().rescan_interval, None);
        assert_eq!(
            merge("1h").unwrap().rescan_interval,
            Some(Duration::from_secs(3600))
        );
        let e = merge("200ms").unwrap_err();
        assert!(format!("{e:#}").contains("rescan_interval"), "{e:#}");
        assert!(!merge("1h").unwrap().rescan_by_default);
    }

    #[test]
    fn watch_mode() {
        let (d, head) = folders();
        let merge = |file_line: &str, flag: Option<&str>| {
            let file: FileConfig = toml::from_str(&format!("{head}{file_line}")).unwrap();
            let args = MountArgs {
                state_dir: Some(d.path().join("st")),
                watch: flag.map(str::to_string),
                ..Default::default()
            };
            Config::merge(&args, file)
        };
        let c = merge("", None).unwrap();
        assert_eq!(c.watch, WatchMode::Auto);
        assert!(c.rescan_by_default);
        let c = merge("watch = \"off\"\n", None).unwrap();
        assert_eq!(c.watch, WatchMode::Off);
        let c = merge("watch = \"off\"\n", Some("inotify")).unwrap();
        assert_eq!(c.watch, WatchMode::Inotify, "the flag wins");
        let e = merge("watch = \"poll\"\n", None).unwrap_err();
        assert!(format!("{e:#}").contains("watch"), "{e:#}");
    }

    #[test]
    fn bad_option() {
        assert!(parse_options(&["allow_other,bogus".into()]).is_err());
        let m = parse_options(&["allow_other,default_permissions".into()]).unwrap();
        assert!(m.allow_other && m.default_permissions && !m.read_only);
    }
}
