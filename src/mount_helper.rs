//! `mount.cloudsync`: the helper mount(8) runs for fstab entries of type `cloudsync` (or
//! `fuse.cloudsync`, through the name `mount.fuse.cloudsync`), turning `SOURCE DIR -o
//! key=value,...` into a `cloudsync mount` command line. Every `cloudsync mount` flag is a key
//! (`cloud=`, `config=`, `state_dir=`, ...); the usual mount options that concern mount(8) or
//! systemd (`_netdev`, `noauto`, `x-systemd.*`, ...) are ignored, and the daemon is started in
//! the background.
//!
//! ```text
//! /srv/onprem  /mnt/docs  cloudsync  cloud=https://dav.example.com/docs/,password_file=/etc/cloudsync/docs.pw,allow_other,_netdev  0 0
//! ```

use anyhow::{Result, bail};

/// The `PATH` the helper runs with when it has none: mount(8) removes `PATH` from the
/// environment of its helpers, and `cloudsync mount` needs it to find `fusermount3`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Options mount(8) and systemd use for themselves.
fn ignored(key: &str) -> bool {
    matches!(
        key,
        "rw" | "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "owner"
            | "group"
            | "_netdev"
            | "nofail"
            | "exec"
            | "noexec"
            | "suid"
            | "nosuid"
            | "dev"
            | "nodev"
            | "atime"
            | "noatime"
            | "relatime"
            | "strictatime"
            | "nodiratime"
            | "sync"
            | "async"
    ) || key.starts_with("x-")
        || key.starts_with("comment=")
}

/// Turns `mount.cloudsync SOURCE DIR [-sfnv] [-o OPTS]` into `cloudsync mount` arguments.
pub fn translate(args: &[String]) -> Result<Vec<String>> {
    let mut pos = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => opts.extend(
                it.next()
                    .map(|o| o.split(',').map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            // sloppy, fake, no-mtab, verbose: nothing to do.
            "-s" | "-f" | "-n" | "-v" => {}
            // The type, which mount(8) passes to mount.fuse.cloudsync for `fuse.cloudsync`.
            "-t" => {
                it.next();
            }
            s if s.starts_with('-') => bail!("mount.cloudsync: unknown flag {s}"),
            _ => pos.push(a.clone()),
        }
    }
    let [source, dir] = pos.as_slice() else {
        bail!("usage: mount.cloudsync ONPREM MOUNTPOINT -o cloud=URL[,key=value...]");
    };
    let mut out = vec![
        "mount".to_string(),
        source.clone(),
        dir.clone(),
        "--daemon".into(),
    ];
    let mut fuse_opts = Vec::new();
    for o in opts.iter().filter(|o| !o.is_empty()) {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        if ignored(k) || ignored(o) {
            continue;
        }
        match (k, v) {
            ("allow_other" | "default_permissions" | "ro", None) => fuse_opts.push(k.to_string()),
            ("no_passthrough", None) => out.push("--no-passthrough".into()),
            ("status_allow_remote", None) => out.push("--status-allow-remote".into()),
            (
                "cloud" | "config" | "state_dir" | "push_delay" | "pull_interval"
                | "rescan_interval" | "open_push_interval" | "watch" | "transfers" | "user"
                | "password_file" | "ca_file" | "s3_endpoint" | "s3_region" | "s3_addressing"
                | "credentials_file" | "log_level" | "log_target" | "status_addr",
                Some(v),
            ) => {
                out.push(format!("--{}", k.replace('_', "-")));
                out.push(v.to_string());
            }
            ("aws_access_key_id" | "aws_secret_access_key" | "aws_session_token", _) => bail!(
                "mount.cloudsync: S3 keys in the mount options would be readable by everyone; use credentials_file="
            ),
            ("password", _) => bail!(
                "mount.cloudsync: a password in the mount options would be readable by everyone; use password_file="
            ),
            _ => bail!("mount.cloudsync: unknown option {o:?}"),
        }
    }
    if !fuse_opts.is_empty() {
        out.push("-o".into());
        out.push(fuse_opts.join(","));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fstab_options() {
        let a = translate(&s(&[
            "/srv/on",
            "/mnt/x",
            "-o",
            "rw,_netdev,cloud=https://h/d/,password_file=/etc/pw,allow_other,x-systemd.automount,push_delay=5s",
        ]))
        .unwrap();
        assert_eq!(
            a,
            s(&[
                "mount",
                "/srv/on",
                "/mnt/x",
                "--daemon",
                "--cloud",
                "https://h/d/",
                "--password-file",
                "/etc/pw",
                "--push-delay",
                "5s",
                "-o",
                "allow_other"
            ])
        );
        assert!(translate(&s(&["/a", "/b", "-o", "password=hunter2"])).is_err());
        assert_eq!(
            translate(&s(&["/a", "/b", "-o", "cloud=file:///c,watch=inotify"])).unwrap()[4..],
            s(&["--cloud", "file:///c", "--watch", "inotify"])
        );
        // Type fuse.cloudsync: mount(8) names it.
        assert_eq!(
            translate(&s(&[
                "/a",
                "/b",
                "-o",
                "cloud=file:///c",
                "-t",
                "fuse.cloudsync"
            ]))
            .unwrap(),
            s(&["mount", "/a", "/b", "--daemon", "--cloud", "file:///c"])
        );
        assert!(translate(&s(&["/a", "/b", "-o", "bogus=1"])).is_err());
        assert!(translate(&s(&["/a"])).is_err());
    }

    #[test]
    fn status_page_fstab_options() {
        let a = translate(&s(&[
            "/srv/on",
            "/mnt/x",
            "-o",
            "cloud=file:///c,status_addr=127.0.0.1:8080,status_allow_remote",
        ]))
        .unwrap();
        assert_eq!(
            a,
            s(&[
                "mount",
                "/srv/on",
                "/mnt/x",
                "--daemon",
                "--cloud",
                "file:///c",
                "--status-addr",
                "127.0.0.1:8080",
                "--status-allow-remote",
            ])
        );
    }

    #[test]
    fn s3_fstab_options() {
        let a = translate(&s(&[
            "/srv/on",
            "/mnt/x",
            "-o",
            "cloud=s3://b/p/,s3_endpoint=https://s3.example,s3_region=eu-1,s3_addressing=path,credentials_file=/etc/k",
        ]))
        .unwrap();
        assert_eq!(
            a,
            s(&[
                "mount",
                "/srv/on",
                "/mnt/x",
                "--daemon",
                "--cloud",
                "s3://b/p/",
                "--s3-endpoint",
                "https://s3.example",
                "--s3-region",
                "eu-1",
                "--s3-addressing",
                "path",
                "--credentials-file",
                "/etc/k",
            ])
        );
        for bad in ["aws_secret_access_key=x", "aws_access_key_id=AKIA"] {
            let e = translate(&s(&["/a", "/b", "-o", bad])).unwrap_err();
            assert!(e.to_string().contains("credentials_file"), "{e}");
        }
    }
}
