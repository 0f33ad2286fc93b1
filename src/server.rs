//! The HTTP listener (`server.listen`): metrics, health, reload, status and
//! the relay's webhook. Handlers read the daemon's state through
//! [`AppState`] and never write it; a reload is a request the daemon answers.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;

use crate::state::AppState;

/// All routes. Unknown paths get 404 and wrong methods 405 (axum's defaults).
pub fn router(state: AppState) -> Router {
    let body_limit = state.relay.as_ref().map(|r| r.config.max_body_bytes).unwrap_or(1024 * 1024);
    let webhook = Router::new()
        .route("/webhook", post(webhook))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit.saturating_add(1)))
        // A client that trickles its body is cut off rather than held forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(30),
        ));
    Router::new()
        .merge(webhook)
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "lookout is healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/probes", get(probes_json))
        .route("/report", get(report))
        .route("/api/v1/alerts", get(alerts_json))
        .route("/", get(status_page))
        .with_state(state)
}

fn json_error(status: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!("lookout_relay_rejected_total", "reason" => reason).increment(1);
    (status, axum::Json(serde_json::json!({"status": "error", "error": message}))).into_response()
}

/// `POST /webhook`: Alertmanager's webhook. 200 only once stored durably.
async fn webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(relay) = &s.relay else {
        return json_error(StatusCode::NOT_FOUND, "disabled", "the relay is disabled in this configuration");
    };
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !relay.authorised(auth) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong credentials");
        let scheme = if matches!(relay.config.auth, crate::relay::config::Auth::Basic { .. }) {
            "Basic realm=\"lookout\""
        } else {
            "Bearer"
        };
        if let Ok(v) = header::HeaderValue::from_str(scheme) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("body larger than {} bytes", relay.config.max_body_bytes),
            );
        }
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "unreadable", &e.body_text()),
    };
    metrics::counter!("lookout_relay_received_total").increment(1);
    match relay.ingest(&body).await {
        Ok(outcome) => {
            let body = match outcome {
                crate::relay::outbox::Accepted::Stored => r#"{"status":"success"}"#,
                crate::relay::outbox::Accepted::Duplicate => {
                    metrics::counter!("lookout_relay_duplicates_total").increment(1);
                    r#"{"status":"duplicate"}"#
                }
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(crate::relay::IngestError::BadRequest(m)) => json_error(StatusCode::BAD_REQUEST, "invalid", &m),
        Err(e @ crate::relay::IngestError::Unavailable(_)) => json_error(StatusCode::SERVICE_UNAVAILABLE, "store", &e.to_string()),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::render(&s.metrics),
    )
        .into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.probes.is_ready() {
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

async fn alerts_json(State(s): State<AppState>) -> Response {
    axum::Json(s.alerts.get()).into_response()
}

async fn probes_json(State(s): State<AppState>) -> Response {
    let latest: Vec<_> = s.probes.latest().into_values().collect();
    axum::Json(latest).into_response()
}

#[derive(serde::Deserialize)]
struct ReportQuery {
    format: Option<String>,
}

/// `GET /report`: the latest cross-check round; HTML unless `?format=` or
/// `Accept: application/json` asks for another form.
async fn report(State(s): State<AppState>, Query(q): Query<ReportQuery>, headers: HeaderMap) -> Response {
    use crate::report::{Doc, Format, render};
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let format = match q.format.as_deref() {
        None if wants_json => Format::Json,
        None | Some("html") => Format::Html,
        Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some("markdown") => Format::Markdown,
        Some("junit") => Format::Junit,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown format `{other}`: use html, json, text, markdown or junit\n"),
            )
                .into_response();
        }
    };
    let Some(r) = s.crosscheck.latest() else {
        let msg = if s.config.get().crosscheck.is_none() {
            "no cross-check configured: it needs a `kind: redis` probe as reference and at least one other probe\n"
        } else {
            "no cross-check round yet\n"
        };
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    };
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Json => "application/json",
        Format::Junit => "application/xml",
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Text => "text/plain; charset=utf-8",
    };
    ([(header::CONTENT_TYPE, content_type)], render(&Doc::Round(&r), format)).into_response()
}

/// `GET /`: the status page. Charts come from the history; without one
/// (or if reading it fails) the page still shows probes and the cross-check.
async fn status_page(State(s): State<AppState>) -> Html<String> {
    use crate::report::html::status_page;
    use crate::report::status::{CHART_WINDOW, shape};
    let cfg = s.config.get();
    let latest = s.probes.latest();
    let report = s.crosscheck.latest();
    let until = crate::probe::unix_now();
    let history = match s.history.read(move |r| r.since(None, until - CHART_WINDOW)).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = %e, "Status page without charts");
            Vec::new()
        }
    };
    Html(status_page(&shape(&cfg, &latest, report.as_deref(), &history, until)))
}
