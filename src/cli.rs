//! Command-line flags, as clap sees them: raw values only. `config.rs` turns them, together with
//! the TOML file, into one validated `Config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// cloudsync: an on-premise folder as a FUSE filesystem, synced to a cloud.
#[derive(Debug, Parser)]
#[command(name = "cloudsync", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount ONPREM at MOUNTPOINT and sync it to the cloud.
    Mount(Box<MountArgs>),
    /// Unmount a cloudsync mount; the daemon then stops cleanly.
    Unmount(UnmountArgs),
    /// Show the sync status of files in a mount, and a summary of the mount.
    Status(StatusArgs),
    /// Ask for a sync now, and optionally wait until it is done.
    Sync(SyncArgs),
    /// List the conflict copies with their originals.
    Conflicts(ConflictsArgs),
    /// Take a folder or file out of sync.
    Unsync(UnsyncArgs),
    /// Pause pushing and/or pulling.
    Pause(PauseArgs),
    /// Resume pushing and/or pulling.
    Resume(PauseArgs),
    /// Check what a mount needs (FUSE, the server, credentials, space, journal, guards) and
    /// say what to fix.
    Doctor(DoctorArgs),
}

/// Flags of `cloudsync mount`. Every flag has a config-file key of the same name.
#[derive(Debug, Args, Default)]
pub struct MountArgs {
    /// The on-premise folder: the system of record.
    pub onprem: Option<PathBuf>,
    /// Where the combined view appears.
    pub mountpoint: Option<PathBuf>,
    /// The cloud: file:///path or https://host/path/ (WebDAV).
    #[arg(long)]
    pub cloud: Option<String>,
    /// Where the journal lives (default: one folder per ONPREM under /var/lib/cloudsync or
    /// $XDG_STATE_HOME/cloudsync).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A TOML file with the same keys as these flags; flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Quiet time after the last change before a push, like 2s or 500ms.
    #[arg(long, value_name = "DUR")]
    pub push_delay: Option<String>,
    /// Time between two pulls of cloud changes, like 30s or 5m.
    #[arg(long, value_name = "DUR")]
    pub pull_interval: Option<String>,
    /// Time between two rescans of the on-premise folder for changes made straight in it
    /// (not through the mount), like 10m; 0 turns them off.
    #[arg(long, value_name = "DUR")]
    pub rescan_interval: Option<String>,
    /// How long a file may stay open for writing (a log, a recording) before a snapshot of it
    /// is pushed, and again after each such interval while it changes, like 5m; 0 for never.
    #[arg(long, value_name = "DUR")]
    pub open_push_interval: Option<String>,
    /// How changes made straight in the on-premise folder are heard at once: auto (fanotify,
    /// else inotify), fanotify, inotify, or off (rescans only).
    #[arg(long, value_name = "MODE")]
    pub watch: Option<String>,
    /// Return once the mount is ready, leaving the daemon in the background.
    #[arg(long)]
    pub daemon: bool,
    /// Mount options: allow_other, default_permissions, ro (comma-separated or repeated).
    #[arg(short = 'o', value_name = "OPT", value_delimiter = ',')]
    pub options: Vec<String>,
    /// Number of parallel transfers (pushes, and downloads of new cloud files).
    #[arg(long, value_name = "N")]
    pub transfers: Option<usize>,
    /// Never use FUSE passthrough; all reads and writes go through the daemon.
    #[arg(long)]
    pub no_passthrough: bool,
    /// Cloud user name (WebDAV basic auth).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// File holding the cloud password (otherwise CLOUDSYNC_PASSWORD is read).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM file with a private CA to trust besides the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// S3: the endpoint URL of the store (default: AWS for the region).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3: the region requests are signed for (default: AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3: "path" (default with --s3-endpoint) or "virtual-host" (default on AWS).
    #[arg(long, value_name = "STYLE")]
    pub s3_addressing: Option<String>,
    /// S3: a file of keys in the AWS shared-credentials format (otherwise AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials, are read). Keys themselves are
    /// never taken from the command line.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Log filter, like info or cloudsync=debug (RUST_LOG also works).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Where the log goes: auto (the systemd journal when standard error is connected to it,
    /// otherwise standard error), journal, or stderr.
    #[arg(long, value_name = "WHERE")]
    pub log_target: Option<String>,
    /// Serve the Sync Manager page and /metrics on this address, like 127.0.0.1:8080 (off by
    /// default; loopback only unless --status-allow-remote).
    #[arg(long, value_name = "ADDR")]
    pub status_addr: Option<String>,
    /// Let --status-addr be an address other than loopback, reachable from the network.
    #[arg(long)]
    pub status_allow_remote: bool,
    /// Internal: a pipe on which the daemon reports readiness to its parent.
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// Flags of `cloudsync unmount`.
#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point to release.
    pub mountpoint: PathBuf,
    /// Detach now even if files are open (the mount goes away when they close).
    #[arg(short = 'z', long)]
    pub lazy: bool,
}

/// Flags of `cloudsync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Files or folders inside a cloudsync mount (default: everything in the mount holding
    /// the current directory).
    pub paths: Vec<PathBuf>,
    /// Only failed items and conflicts.
    #[arg(long)]
    pub failed: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Redraw a summary of the mount every second until interrupted: the queue, transfers in
    /// flight, throughput, the offline state and the initial sync's ETA. One plain line per
    /// second when standard output is not a terminal.
    #[arg(long, conflicts_with_all = ["failed", "json", "csv"])]
    pub watch: bool,
    /// With --watch: stop after N summaries (default: until interrupted).
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// Flags of `cloudsync sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Files or folders inside a cloudsync mount (default: the mount holding the current
    /// directory).
    pub paths: Vec<PathBuf>,
    /// Wait until every path is synced: exit 0 when synced, 1 on failure or conflict, 124 on
    /// timeout.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, like 30s or 5m.
    #[arg(long, value_name = "DUR", default_value = "5m", requires = "wait")]
    pub timeout: String,
    /// Pull cloud changes at once and wait for that pull; prints what it cost.
    #[arg(long)]
    pub now: bool,
}

/// Flags of `cloudsync conflicts`.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// A cloudsync mount (default: the one holding the current directory).
    pub mountpoint: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `cloudsync unsync`.
#[derive(Debug, Args)]
pub struct UnsyncArgs {
    /// The folder or file to take out of sync.
    pub path: PathBuf,
    /// Also delete the cloud copy (otherwise it stays).
    #[arg(long)]
    pub delete_cloud: bool,
}

/// Flags of `cloudsync pause` and `cloudsync resume`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// A cloudsync mount (default: the one holding the current directory).
    pub mountpoint: Option<PathBuf>,
    /// Only pushing (on-premise changes to the cloud).
    #[arg(long)]
    pub push: bool,
    /// Only pulling (cloud changes to on-premise).
    #[arg(long)]
    pub pull: bool,
}

/// Flags of `cloudsync doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A running cloudsync mount to check (default: the one holding the current directory,
    /// unless --config is given).
    #[arg(conflicts_with = "config")]
    pub mountpoint: Option<PathBuf>,
    /// Check the mount this configuration file describes, running or not.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
