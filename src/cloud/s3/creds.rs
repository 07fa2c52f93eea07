//! Where the S3 keys come from: a `credentials_file` named in the configuration, else the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else the
//! AWS shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`),
//! in the profile `AWS_PROFILE` (default `default`). Never the command line.
//!
//! Without any keys, requests go unsigned (a public bucket, or a test store without checks).
//! The keys are held only inside [`rusty_s3::Credentials`], whose `Debug` shows the key id
//! alone.

use std::path::{Path, PathBuf};

use rusty_s3::Credentials;

/// The keys to sign with, and where they came from (for logs: never the keys themselves).
pub(super) struct Found {
    pub(super) creds: Option<Credentials>,
    pub(super) source: String,
}

/// Finds the keys, from `file` when it is given.
pub(super) fn find(file: Option<&Path>) -> anyhow::Result<Found> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            anyhow::anyhow!("cannot read the credentials file {}: {e}", f.display())
        })?;
        let creds = parse(&text, &profile).ok_or_else(|| {
            anyhow::anyhow!(
                "the credentials file {} holds no aws_access_key_id and aws_secret_access_key \
                 (in the profile [{profile}] or before any section)",
                f.display()
            )
        })?;
        return Ok(Found {
            creds: Some(creds),
            source: format!("the credentials file {}", f.display()),
        });
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(key), Some(secret)) => {
            let creds = match env("AWS_SESSION_TOKEN") {
                Some(t) => Credentials::new_with_token(key, secret, t),
                None => Credentials::new(key, secret),
            };
            return Ok(Found {
                creds: Some(creds),
                source: "the environment".into(),
            });
        }
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both, or neither"
        ),
        (None, None) => {}
    }
    let shared = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    if let Some(p) = shared
        && let Ok(text) = std::fs::read_to_string(&p)
        && let Some(creds) = parse(&text, &profile)
    {
        return Ok(Found {
            creds: Some(creds),
            source: format!("{} [{profile}]", p.display()),
        });
    }
    Ok(Found {
        creds: None,
        source: "none: requests go unsigned".into(),
    })
}

/// The keys of `profile` in an INI file of the AWS shared-credentials format. Lines before any
/// section count for every profile, so a file of two `key = value` lines works too.
fn parse(text: &str, profile: &str) -> Option<Credentials> {
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut in_profile = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_profile = name == profile || name.strip_prefix("profile ") == Some(profile);
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (key, secret, token) {
        (Some(k), Some(s), Some(t)) => Some(Credentials::new_with_token(k, s, t)),
        (Some(k), Some(s), None) => Some(Credentials::new(k, s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        let text = "# comment\n[other]\naws_access_key_id = O\naws_secret_access_key = OS\n\
                    [default]\naws_access_key_id=D\n aws_secret_access_key = DS \n";
        let c = parse(text, "default").unwrap();
        assert_eq!((c.key(), c.secret(), c.token()), ("D", "DS", None));
        let c = parse(text, "other").unwrap();
        assert_eq!((c.key(), c.secret()), ("O", "OS"));
        assert!(parse(text, "none").is_none());
        let c = parse(
            "aws_access_key_id = K\naws_secret_access_key = hunter2\naws_session_token = T\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.token(), Some("T"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
