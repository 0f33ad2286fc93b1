//! The HTTP listener (`server.listen`): metrics, health, reload, status and
//! the relay's webhook. Handlers read the daemon's state through
//! [`AppState`] and never write it; a reload is a request the daemon answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;

use crate::state::AppState;

/// All routes. Unknown paths get 404 and wrong methods 405 (axum's defaults).
pub fn router(state: AppState) -> Router {
    // The configuration's: the relay itself may not be open yet.
    let body_limit = state.config.get().relay.as_ref().map(|r| r.max_body_bytes).unwrap_or(1024 * 1024);
    let webhook = Router::new()
        // The handler checks credentials before it reads the body.
        .route("/webhook", post(webhook))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit.saturating_add(1)))
        // A client that trickles its body is cut off rather than held forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    let last_reload: Arc<Mutex<Option<Instant>>> = Arc::default();
    Router::new()
        .merge(webhook)
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "lookout is healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/ready/relay", get(relay_ready))
        .route(
            "/-/reload",
            post(move |state: State<AppState>, headers: HeaderMap| reload(state, headers, last_reload.clone())),
        )
        .route("/api/v1/probes", get(probes_json))
        .route("/report", get(report))
        .route("/api/v1/alerts", get(alerts_json))
        .route("/api/v1/redis/flushes", get(flushes_list).post(flush_start))
        .route("/api/v1/redis/flushes/{id}", get(flush_get).delete(flush_stop))
        .route("/", get(status_page))
        // Outermost: checked before any route reads anything.
        .layer(middleware::from_fn_with_state(state.clone(), web_auth))
        .with_state(state)
}

/// The users of `server.web_config_file`'s `basic_auth_users`, in front of
/// every route as the exporter-toolkit puts them in front of an exporter;
/// read from the configuration in force, so a reload changes them.
/// `/webhook` keeps its own credential when `relay.auth` sets one
/// (Alertmanager sends one `Authorization` header); without it, the
/// listener's users guard it too. Answered from the headers alone, before
/// any body is read.
async fn web_auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let cfg = s.config.get();
    let Some(users) = cfg.web.as_ref().map(|w| w.users.clone()).filter(|u| !u.is_empty()) else {
        return next.run(req).await;
    };
    let own_credential = match s.relay.as_ref().map(|slot| slot.get()) {
        Some(Some(r)) => !matches!(r.config().auth, crate::relay::config::Auth::None),
        // Not open yet: the configuration's.
        Some(None) => cfg
            .relay
            .as_ref()
            .is_some_and(|r| !matches!(r.auth, crate::relay::config::Auth::None)),
        None => false,
    };
    if req.uri().path() == "/webhook" && own_credential {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // bcrypt takes tens of milliseconds: off the async workers.
    let ok = tokio::task::spawn_blocking(move || crate::config::web::authorised(&users, header.as_deref()))
        .await
        .unwrap_or(false);
    if ok {
        return next.run(req).await;
    }
    let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"lookout\""),
    );
    closing(r)
}

fn json_error(status: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!("lookout_relay_rejected_total", "reason" => reason).increment(1);
    (status, axum::Json(serde_json::json!({"status": "error", "error": message}))).into_response()
}

/// Marks a response as the connection's last: the server closes the
/// connection after it instead of reading (draining) a body nobody wants,
/// so a refused upload costs neither memory nor the time it takes to send.
fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    r
}

/// `POST /webhook`: Alertmanager's webhook. 200 only once stored durably.
///
/// A disabled relay or a request without the right credentials is answered
/// at once, from the headers alone, before anything reads the body. So an
/// unauthenticated client gets no `100 Continue`, cannot make the server
/// buffer its upload, and cannot hold a connection open by stalling its
/// body. Checked here rather than in a `from_fn` middleware: that layer
/// clones the boxed route and boxes a future for every request, which cost
/// about 6k of the 139k instructions an accepted webhook took (callgrind,
/// 2,000 webhooks of bench/lib.sh's payload).
async fn webhook(State(s): State<AppState>, req: Request) -> Response {
    use axum::extract::FromRequest;
    let Some(slot) = &s.relay else {
        return closing(json_error(
            StatusCode::NOT_FOUND,
            "disabled",
            "the relay is disabled in this configuration",
        ));
    };
    let Some(relay) = slot.get() else {
        // Before its credentials are known to be right, the caller learns
        // only that it should come back.
        return closing(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            "the relay's store is not open yet",
        ));
    };
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !relay.authorised(auth) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong credentials");
        let scheme = if matches!(relay.config().auth, crate::relay::config::Auth::Basic { .. }) {
            "Basic realm=\"lookout\""
        } else {
            "Bearer"
        };
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(scheme));
        return closing(r);
    }
    let body = match axum::body::Bytes::from_request(req, &s).await {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            // The rest of the body is not read: close rather than drain it.
            return closing(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("body larger than {} bytes", relay.max_body_bytes),
            ));
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

/// `GET /-/ready/relay`: the relay takes webhooks (its store is open),
/// whether or not the probes have run: a readiness check for the webhook
/// path that does not hold intake back while the probes warm up. 503 while
/// the store has not opened yet, 404 when the relay is off.
async fn relay_ready(State(s): State<AppState>) -> Response {
    match s.relay.as_ref().map(|slot| (slot.get(), slot)) {
        Some((Some(r), _)) => (StatusCode::OK, format!("lookout relay is ready ({})\n", r.store.describe())).into_response(),
        Some((None, slot)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("lookout relay is not ready: its store is not open yet ({})\n", slot.waiting()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "the relay is disabled\n").into_response(),
    }
}

/// Shortest time between two reloads over HTTP: each one restarts every
/// probe at once, so a loop of requests must not become a load generator.
const RELOAD_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a request's content type may reach the reload endpoint: none,
/// or JSON. A browser sends a cross-site form post (`x-www-form-urlencoded`,
/// `multipart/form-data`, `text/plain`) without asking first, but not JSON,
/// so refusing those keeps other web pages from reloading the daemon.
fn reload_content_type_ok(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => {
            let Ok(v) = v.to_str() else { return false };
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.is_empty() || essence.eq_ignore_ascii_case("application/json")
        }
    }
}

/// Whether a browser says the request comes from another site: a fetch
/// with no body carries no content type, so the content-type rule alone
/// would let another page's script through. Browsers send `Origin` on
/// every cross-origin POST (and `Sec-Fetch-Site`); curl and Alertmanager-
/// style clients send neither.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|s| !s.eq_ignore_ascii_case("same-origin") && !s.eq_ignore_ascii_case("none")) {
        return true;
    }
    match text("origin") {
        None => false,
        Some(origin) => {
            let origin_host = url::Url::parse(origin).ok().and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}{}", u.port().map(|p| format!(":{p}")).unwrap_or_default()))
            });
            origin_host.is_none() || origin_host.as_deref() != text("host")
        }
    }
}

/// `POST /-/reload`, as Prometheus guards it: off unless
/// `server.enable_lifecycle` is true (SIGHUP always reloads), nothing from
/// another site (no form posts, no `Origin` of another host), at most one
/// per [`RELOAD_MIN_INTERVAL`], and a rejected file is answered with the
/// problems' locations and messages (which never carry a URL's secrets).
async fn reload(State(s): State<AppState>, headers: HeaderMap, last: Arc<Mutex<Option<Instant>>>) -> Response {
    if !s.config.get().enable_lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "the lifecycle API is not enabled: set `server.enable_lifecycle: true`, or send SIGHUP\n",
        )
            .into_response();
    }
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site requests cannot reload the configuration\n").into_response();
    }
    if !reload_content_type_ok(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send no body, or Content-Type: application/json\n",
        )
            .into_response();
    }
    {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < RELOAD_MIN_INTERVAL) {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "one reload per second at most\n",
            )
                .into_response();
        }
        *last = Some(now);
    }
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "configuration reloaded\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "reload rejected, previous configuration kept:\n{}\n",
                crate::config::redact_urls_in(&e)
            ),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// A JSON error for the flush API: `{"status": "error", "error": …}`.
fn api_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"status": "error", "error": message}))).into_response()
}

/// In front of the API that changes data, as Prometheus guards its admin
/// API and lookout its reload: off unless `server.enable_admin_api`, and
/// nothing from another site (a browser's form post or script). The
/// listener's basic-auth users were checked before (`web_auth`).
fn admin_refused(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    if !s.config.get().enable_admin_api {
        return Some(api_error(
            StatusCode::FORBIDDEN,
            "the admin API is not enabled: set `server.enable_admin_api: true`",
        ));
    }
    if cross_site(headers) {
        return Some(api_error(StatusCode::FORBIDDEN, "cross-site requests cannot change data"));
    }
    None
}

/// The user of a basic-auth `Authorization` header (already checked by
/// `web_auth` when the listener has users), for a flush's record.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let b64 = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':').map(|(u, _)| u.to_string()).filter(|u| !u.is_empty())
}

/// `POST /api/v1/redis/flushes`: starts a controlled flush (a dry run
/// unless `"execute": true`). 202 with the flush and its `Location`; 400
/// with the reason for a body that is not a valid request; 409 (with the
/// running one's id) while a flush of the same Redis runs, whichever probe
/// named it.
async fn flush_start(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    use crate::runbook::flush_job::{FlushRequest, Refused};
    if let Some(r) = admin_refused(&s, &headers) {
        return r;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if !json {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the flush as Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return api_error(e.status(), &e.body_text()),
    };
    let request: FlushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &format!("invalid flush request: {e}")),
    };
    let cfg = s.config.get();
    let order = match request.validate(&cfg.probes, cfg.relay.as_ref(), basic_user(&headers)) {
        Ok(o) => o,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &format!("invalid flush request: {e}")),
    };
    let origin = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    match s.flushes.start(order.from(origin).checked_with(cfg.clone())) {
        Ok(p) => {
            let location = format!("/api/v1/redis/flushes/{}", p.id);
            let mut r = (StatusCode::ACCEPTED, axum::Json(p)).into_response();
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(Refused::Busy(id, redis)) => (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({
                "status": "error",
                "error": format!("a flush of the same Redis ({redis}) is running: {id}; stop it with DELETE /api/v1/redis/flushes/{id}, or wait"),
                "running": id,
                "redis": redis,
            })),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/redis/flushes`: the flushes running and recent (this
/// run's, then the history's), newest first, without their records.
async fn flushes_list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let all = recent_flushes(&s, limit).await;
    let list: Vec<serde_json::Value> = all
        .into_iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("record");
            }
            v
        })
        .collect();
    axum::Json(list).into_response()
}

/// `GET /api/v1/redis/flushes/{id}`: one flush, its progress while it
/// runs and its record once it ended (from the history for an older one).
async fn flush_get(State(s): State<AppState>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    if let Some(p) = s.flushes.get(&id) {
        return axum::Json(p).into_response();
    }
    let key = id.clone();
    match s.history.read(move |r| r.flushes(Some(&key), 1)).await {
        Ok(mut v) if !v.is_empty() => axum::Json(v.remove(0)).into_response(),
        _ => api_error(StatusCode::NOT_FOUND, &format!("no flush `{id}`")),
    }
}

/// `DELETE /api/v1/redis/flushes/{id}`: stops the flush after the batch in
/// flight (202 with where it stands; its state turns `interrupted` when it
/// has stopped). One that already ended is answered as it is (200).
async fn flush_stop(State(s): State<AppState>, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    if let Some(r) = admin_refused(&s, &headers) {
        return r;
    }
    match s.flushes.stop(&id) {
        Some(p) if p.state.is_final() => axum::Json(p).into_response(),
        Some(p) => (StatusCode::ACCEPTED, axum::Json(p)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, &format!("no running flush `{id}`")),
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

/// Flushes on the status page: the latest few, each a line.
const STATUS_FLUSHES: usize = 5;

/// This run's flushes and the history's, newest first, at most `limit`.
async fn recent_flushes(s: &AppState, limit: usize) -> Vec<crate::store::StoredFlush> {
    let mut all: Vec<crate::store::StoredFlush> = s.flushes.list().iter().map(|p| p.stored()).collect();
    match s.history.read(move |r| r.flushes(None, limit)).await {
        Ok(stored) => {
            for f in stored {
                if !all.iter().any(|a| a.id == f.id) {
                    all.push(f);
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "Flushes read without the history"),
    }
    all.sort_by(|a, b| b.started.total_cmp(&a.started));
    all.truncate(limit);
    all
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
    let mut page = shape(cfg.as_ref(), &latest, report.as_deref(), &history, until);
    page.replica = s.relay.as_ref().and_then(|slot| slot.get()).and_then(|r| r.replica());
    page.flushes = recent_flushes(&s, STATUS_FLUSHES).await;
    Html(status_page(&page))
}
