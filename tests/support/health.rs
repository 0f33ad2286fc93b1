//! HTTP servers standing in for the two backends' Redis health endpoints:
//! the documented shape read from a real Redis, a custom shape, and each
//! way an endpoint fails.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How the stand-in answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// The documented default shape, from the Redis at this URL.
    Documented(String),
    /// A custom shape: `{"cache": {"stats": {"hit_count": …}, "rtt_us": …}}`.
    Custom(String),
    /// 503 with a `detail`.
    Unavailable(&'static str),
    /// Never answers.
    Hang,
    /// Not JSON.
    InvalidJson,
    /// JSON without the documented fields.
    WrongShape,
    /// A 2 MiB body.
    Oversized,
    /// A fixed JSON body (load tests: no Redis behind it).
    Fixed(serde_json::Value),
    /// Alternates 200 (documented shape, fixed values) and 503.
    Flapping,
}

/// A running stand-in.
pub struct HealthStandIn {
    pub port: u16,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl HealthStandIn {
    pub fn start(path: &'static str, behaviour: Behaviour) -> HealthStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().route(path, get(move || answer(behaviour.clone())));
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        HealthStandIn { port, _shutdown: tx }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn answer(b: Behaviour) -> Response {
    match b {
        Behaviour::Documented(url) => match read_redis(&url).await {
            Ok(r) => axum::Json(serde_json::json!({"status": "ok", "redis": {
                "ping": "PONG", "latency_ms": r.latency_ms, "hits": r.hits, "misses": r.misses,
                "hit_ratio": if r.hits + r.misses > 0.0 { serde_json::json!(r.hits / (r.hits + r.misses)) } else { serde_json::Value::Null },
                "connected_clients": r.clients, "maxclients": r.maxclients, "used_memory": r.used_memory,
                "maxmemory": r.maxmemory, "mem_fragmentation_ratio": r.frag, "run_id": r.run_id}}))
            .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"detail": e}))).into_response(),
        },
        Behaviour::Custom(url) => match read_redis(&url).await {
            Ok(r) => axum::Json(serde_json::json!({"healthy": true, "cache": {"rtt_us": r.latency_ms * 1000.0, "stats": {"hit_count": r.hits, "miss_count": r.misses}, "mem": {"used_kib": r.used_memory / 1024.0}}})).into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"detail": e}))).into_response(),
        },
        Behaviour::Unavailable(detail) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"detail": detail}))).into_response(),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behaviour::InvalidJson => ([("content-type", "application/json")], "{\"status\": \"ok\", \"redis\": {").into_response(),
        Behaviour::WrongShape => axum::Json(serde_json::json!({"status": "ok", "cache": {"hits": 1}})).into_response(),
        Behaviour::Fixed(v) => axum::Json(v).into_response(),
        Behaviour::Flapping => {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            if N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(2) {
                axum::Json(serde_json::json!({"status": "ok", "redis": {"ping": "PONG", "latency_ms": 0.3, "hits": 1, "misses": 1, "hit_ratio": 0.5, "connected_clients": 1, "maxclients": 100, "used_memory": 1, "maxmemory": 0, "mem_fragmentation_ratio": 1.0}})).into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"detail": "flap"}))).into_response()
            }
        }
        Behaviour::Oversized => ([("content-type", "application/json")], format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024))).into_response(),
    }
}

struct RedisFigures {
    latency_ms: f64,
    hits: f64,
    misses: f64,
    clients: f64,
    maxclients: f64,
    used_memory: f64,
    maxmemory: f64,
    frag: f64,
    run_id: String,
}

async fn read_redis(url: &str) -> Result<RedisFigures, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
    let t = Instant::now();
    let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(|e| e.to_string())?;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
    let info: String = redis::cmd("INFO").query_async(&mut c).await.map_err(|e| e.to_string())?;
    let get = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(RedisFigures {
        latency_ms,
        hits: get("keyspace_hits"),
        misses: get("keyspace_misses"),
        clients: get("connected_clients"),
        maxclients: get("maxclients"),
        used_memory: get("used_memory"),
        maxmemory: get("maxmemory"),
        frag: get("mem_fragmentation_ratio"),
        run_id: info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or("")
            .trim()
            .to_string(),
    })
}

/// A request as a [`Recorder`] got it.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub at: Instant,
}

#[derive(Default)]
struct RecorderState {
    requests: Vec<Request>,
    in_flight: usize,
    peak: usize,
}

/// An HTTP server answering every GET with one status and body after a
/// delay, recording each request (path, headers, arrival) and the most
/// requests it was ever serving at once.
pub struct Recorder {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<RecorderState>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Recorder {
    pub fn start(status: u16, body: serde_json::Value, delay: Duration) -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(RecorderState::default()));
        let st = state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let handler = move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                    let (st, body) = (st.clone(), body.clone());
                    async move {
                        {
                            let mut s = st.lock().unwrap();
                            s.requests.push(Request {
                                path: uri.path().to_string(),
                                headers,
                                at: Instant::now(),
                            });
                            s.in_flight += 1;
                            s.peak = s.peak.max(s.in_flight);
                        }
                        tokio::time::sleep(delay).await;
                        st.lock().unwrap().in_flight -= 1;
                        let code = StatusCode::from_u16(status).unwrap();
                        if code == StatusCode::NO_CONTENT {
                            code.into_response()
                        } else {
                            (code, axum::Json(body)).into_response()
                        }
                    }
                };
                let app = Router::new().fallback(get(handler));
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Recorder {
            port,
            state,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests on `path`.
    pub fn requests_on(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// The most requests served at once so far.
    pub fn peak_concurrency(&self) -> usize {
        self.state.lock().unwrap().peak
    }
}

/// A body of the documented shape with fixed values.
pub fn documented_body() -> serde_json::Value {
    serde_json::json!({"status": "ok", "redis": {"ping": "PONG", "latency_ms": 0.3, "hits": 3, "misses": 1, "hit_ratio": 0.75, "connected_clients": 2, "maxclients": 100, "used_memory": 1024, "maxmemory": 0, "mem_fragmentation_ratio": 1.0}})
}
