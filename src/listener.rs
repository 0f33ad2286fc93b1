//! The connection layer under the HTTP routes: how long a client may take
//! to send a request's headers, how many connections are served at once,
//! and what happens when the process runs out of file descriptors.
//!
//! Without these, a client sending headers at a byte a second held a
//! connection indefinitely, and 1,100 idle connections under `ulimit -n 1024`
//! made `/-/healthy` and `/webhook` time out while the log repeated
//! `accept error: Too many open files`. Now:
//! - headers must arrive within `header_read_timeout`, which in hyper also
//!   bounds how long a kept-alive connection may sit idle between requests;
//! - at most `max_connections` are served at once (by default the
//!   descriptor limit less a reserve for the outbox, the history and the
//!   probes' own connections); one over the cap is closed at once, with a log
//!   line at most once a minute, so the daemon's own work never runs out of
//!   descriptors;
//! - an accept error (`EMFILE`) is logged once a minute and retried after a
//!   short pause instead of spinning.
//!
//! Request bodies are bounded by the routes' own timeout layer.
//!
//! With `tls_server_config` in `server.web_config_file`, every connection is
//! TLS: the handshake is bounded by `header_read_timeout` too, so a client
//! that opens a connection and stays silent holds it no longer than one that
//! trickles its headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Descriptors kept for the daemon's own files and outgoing connections
/// when the connection cap is derived from the descriptor limit.
const RESERVED_FDS: usize = 128;
/// Connection cap when the descriptor limit is high (or unknown).
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long open connections may finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// The listener's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Time to receive a request's headers, and longest idle keep-alive.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// The default connection cap: [`DEFAULT_MAX_CONNECTIONS`], or the
/// descriptor limit less a reserve when that is lower.
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return DEFAULT_MAX_CONNECTIONS;
    }
    let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    soft.saturating_sub(RESERVED_FDS).clamp(16, DEFAULT_MAX_CONNECTIONS)
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish
/// (bounded) and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut last_full: Option<Instant> = None;
    let mut last_error: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if once_a_minute(&mut last_error) {
                        tracing::warn!(error = %e, "Cannot accept a connection (retrying)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if once_a_minute(&mut last_full) {
                tracing::warn!(max_connections = limits.max_connections, peer = %peer, "Connection limit reached: closing new connections until some end");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, watcher, tls) = (app.clone(), graceful.watcher(), tls.clone());
        // The client's address reaches the handlers as `ConnectInfo` (a
        // flush's record says where it was asked from).
        let app = with_peer(app, peer);
        tokio::spawn(async move {
            let result = match tls {
                None => watcher.watch(connection(stream, app, limits)).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => watcher.watch(connection(tls_stream, app, limits)).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer, "TLS handshake not done within header_read_timeout");
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "Connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("Open HTTP connections did not finish within the drain time");
    }
}

/// `app` with the connection's peer address in every request's extensions.
fn with_peer(app: axum::Router, peer: std::net::SocketAddr) -> PeerApp {
    PeerApp { app, peer }
}

/// The router, adding the peer address to each request of one connection.
#[derive(Clone)]
struct PeerApp {
    app: axum::Router,
    peer: std::net::SocketAddr,
}

impl<B> tower_service::Service<hyper::Request<B>> for PeerApp
where
    axum::Router: tower_service::Service<hyper::Request<B>>,
{
    type Response = <axum::Router as tower_service::Service<hyper::Request<B>>>::Response;
    type Error = <axum::Router as tower_service::Service<hyper::Request<B>>>::Error;
    type Future = <axum::Router as tower_service::Service<hyper::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<hyper::Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: hyper::Request<B>) -> Self::Future {
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        tower_service::Service::call(&mut self.app, req)
    }
}

/// One HTTP/1.1 connection over `io` (plain TCP or TLS), with the header
/// timeout that also bounds idle keep-alive.
fn connection<I>(io: I, app: PeerApp, limits: Limits) -> hyper::server::conn::http1::Connection<TokioIo<I>, TowerToHyperService<PeerApp>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
}

/// Whether a rate-limited log line may be written now.
fn once_a_minute(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
        return false;
    }
    *last = Some(now);
    true
}
