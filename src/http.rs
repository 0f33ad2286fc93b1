//! The one place HTTP clients are built, so every probe and destination
//! shares the same TLS setup (rustls with the ring provider, installed once
//! in `main`) and the same way of describing errors without URLs, which may
//! carry credentials.

use std::time::Duration;

/// A client builder with lookout's defaults: rustls, a user agent, the given
/// request timeout, no proxy taken from the environment by surprise.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(3))
}

/// A client shared by every probe with the same TLS setting. Each client
/// carries its own TLS configuration with the whole root store and its own
/// connection pool: fifty probes with a client each cost megabytes for
/// nothing. Timeouts and headers are set per request.
pub fn shared_client(accept_invalid_certs: bool) -> Result<reqwest::Client, String> {
    use std::sync::OnceLock;
    static VERIFY: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    static SKIP: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let cell = if accept_invalid_certs { &SKIP } else { &VERIFY };
    cell.get_or_init(|| {
        install_crypto_provider();
        reqwest::Client::builder()
            .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(3))
            .danger_accept_invalid_certs(accept_invalid_certs)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))
    })
    .clone()
}

/// Installs ring as the process's rustls provider (idempotent). Only one
/// provider may exist per process; without it reqwest's rustls backend
/// cannot build a client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest error as a short sentence with its causes and without the URL.
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    } else if e.is_connect() {
        parts.push("connection failed".to_string());
    } else if e.is_body() || e.is_decode() {
        parts.push("bad response body".to_string());
    } else if e.is_redirect() {
        parts.push("too many redirects".to_string());
    } else {
        parts.push("request failed".to_string());
    }
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) && !text.contains("://") {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}
