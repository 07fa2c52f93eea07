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
