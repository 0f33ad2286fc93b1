//! The HTTP listener (`server.listen`): metrics, health, reload and status.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, oneshot};

use crate::daemon::{ReloadRequest, Shared};

/// State shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The daemon's state.
    pub shared: Arc<Shared>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Asks the daemon to reload.
    pub reload: mpsc::Sender<ReloadRequest>,
}

/// All routes. Unknown paths get 404 and wrong methods 405 (axum's defaults).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "lookout is healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/probes", get(probes_json))
        .route("/", get(status_page))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "lookout is ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "lookout is not ready: the first round of probes has not completed\n",
        )
            .into_response()
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "configuration reloaded\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload rejected, previous configuration kept:\n{e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn probes_json(State(s): State<AppState>) -> Response {
    let latest: Vec<_> = s
        .shared
        .latest
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    axum::Json(latest).into_response()
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn status_page(State(s): State<AppState>) -> Html<String> {
    let cfg = s.shared.config();
    let latest = s.shared.latest.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut rows = String::new();
    for p in &cfg.probes {
        let (state, detail, values, when) = match latest.get(&p.name) {
            None => ("pending".to_string(), String::new(), String::new(), String::new()),
            Some(o) => (
                if o.ok { "ok".into() } else { "failing".into() },
                o.error.clone().unwrap_or_default(),
                crate::check::format_values(&o.values),
                format!("{:.0} ms", o.duration_seconds * 1000.0),
            ),
        };
        rows.push_str(&format!(
            "<tr class=\"{state}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"state\">{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&p.name),
            esc(p.spec.kind()),
            esc(&p.schedule.to_string()),
            esc(&when),
            esc(&values),
            esc(&detail)
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lookout</title>\
<meta http-equiv=\"refresh\" content=\"15\"><style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}\
tr.ok .state{{color:#176f2c;font-weight:bold}}tr.failing .state{{color:#b00020;font-weight:bold}}tr.pending .state{{color:#777}}</style></head>\
<body><h1>lookout</h1><p>{} probes · version {}</p><table><thead><tr><th>Probe</th><th>Kind</th><th>Schedule</th><th>State</th><th>Duration</th><th>Values</th><th>Error</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>",
        cfg.probes.len(),
        env!("CARGO_PKG_VERSION")
    ))
}
