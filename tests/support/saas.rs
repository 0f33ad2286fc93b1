//! Stand-ins for what cannot be reached from here, speaking the real
//! protocols: Slack (incoming webhooks, chat.postMessage, chat.update),
//! PagerDuty Events API v2, a generic webhook target, and an SMTP server.
//! Each answers from a script (200, 400, 429 with Retry-After, 500, or
//! hang), per path or shared, and records every attempt (path, answer,
//! time) besides the requests it accepted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// The provider's success.
    Ok,
    /// A status with a body.
    Status(u16, &'static str),
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// Never answer.
    Hang,
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    pub at: Instant,
    /// For Slack's chat methods: the message timestamp answered (`ts`),
    /// which a thread's replies name as their `thread_ts`.
    pub ts: Option<String>,
}

/// One request, whatever the answer.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub path: String,
    /// The HTTP status answered (0 for a request left hanging).
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    scripts: HashMap<String, VecDeque<Answer>>,
    received: Vec<Received>,
    attempts: Vec<Attempt>,
    delay: Duration,
    next_ts: u64,
    in_flight: usize,
    max_in_flight: usize,
}

/// A running stand-in.
#[derive(Clone)]
pub struct SaaS {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl SaaS {
    /// Starts Slack + PagerDuty + webhook endpoints on one port:
    /// `POST /slack/webhook`, `POST /api/chat.postMessage`, `POST /api/chat.update`,
    /// `POST /v2/enqueue`, `POST /hook`.
    pub fn start() -> SaaS {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = inner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/slack/webhook", post(handle))
                    .route("/api/chat.postMessage", post(handle))
                    .route("/api/chat.update", post(handle))
                    .route("/v2/enqueue", post(handle))
                    .route("/hook", post(handle))
                    // More webhook targets, for destinations added and removed.
                    .route("/next", post(handle))
                    .route("/gone", post(handle))
                    .with_state(st);
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        SaaS {
            port,
            inner,
            _stop: Arc::new(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers to give, in order, to requests on any path without a
    /// script of its own; then `Ok`.
    pub fn script(&self, answers: &[Answer]) {
        self.inner.lock().unwrap().script.extend(answers.iter().cloned());
    }

    /// Answers to give, in order, to requests on `path`; then the shared
    /// script's, then `Ok`.
    pub fn script_on(&self, path: &str, answers: &[Answer]) {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .entry(path.to_string())
            .or_default()
            .extend(answers.iter().cloned());
    }

    /// Every request with the status it was answered, in the order
    /// answered (`at` is its arrival).
    pub fn attempts(&self) -> Vec<Attempt> {
        self.inner.lock().unwrap().attempts.clone()
    }

    /// Every request on `path`.
    pub fn attempts_on(&self, path: &str) -> Vec<Attempt> {
        self.attempts().into_iter().filter(|a| a.path == path).collect()
    }

    /// Processing time of every request.
    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn handle(State(st): State<Arc<Mutex<Inner>>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let path = uri.path().to_string();
    let (answer, ts) = {
        let mut s = st.lock().unwrap();
        s.next_ts += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let own = s.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        let answer = own.or_else(|| s.script.pop_front()).unwrap_or(Answer::Ok);
        (answer, s.next_ts)
    };
    if matches!(answer, Answer::Hang) {
        st.lock().unwrap().attempts.push(Attempt {
            path: path.clone(),
            status: 0,
            at: arrived,
        });
    }
    let response = answer_with(&st, answer, &path, headers, &body, ts).await;
    let mut s = st.lock().unwrap();
    s.in_flight -= 1;
    s.attempts.push(Attempt {
        path,
        status: response.status().as_u16(),
        at: arrived,
    });
    drop(s);
    response
}

/// The scripted answer, after the configured delay; an accepted request is
/// recorded in `received`.
async fn answer_with(st: &Mutex<Inner>, answer: Answer, path: &str, headers: HeaderMap, body: &[u8], ts: u64) -> Response {
    let delay = st.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        Answer::RateLimited(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string()), ("content-type", "application/json".to_string())],
                "{\"ok\":false,\"error\":\"rate_limited\"}",
            )
                .into_response();
        }
        Answer::Status(code, body) => {
            return (StatusCode::from_u16(code).unwrap(), [("content-type", "text/plain")], body).into_response();
        }
        Answer::Ok => {}
    }
    let chat = matches!(path, "/api/chat.postMessage" | "/api/chat.update");
    // A new message's timestamp, unique per stand-in; an update keeps its message's.
    let ts = json["ts"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("1700000000.{ts:06}"));
    st.lock().unwrap().received.push(Received {
        path: path.to_string(),
        headers,
        body: json.clone(),
        at: Instant::now(),
        ts: chat.then(|| ts.clone()),
    });
    match path {
        // Slack's incoming webhook answers a plain-text `ok`.
        "/slack/webhook" => (StatusCode::OK, [("content-type", "text/plain")], "ok").into_response(),
        "/api/chat.postMessage" | "/api/chat.update" => {
            let channel = json["channel"].as_str().unwrap_or("C0").to_string();
            axum::Json(serde_json::json!({"ok": true, "channel": channel, "ts": ts, "message": {"ts": ts, "text": json["text"]}}))
                .into_response()
        }
        "/v2/enqueue" => {
            if json["routing_key"].as_str().is_none_or(|k| k.is_empty()) || json["dedup_key"].as_str().is_none() {
                return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["routing_key or dedup_key missing"]}))).into_response();
            }
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": json["dedup_key"]})),
            )
                .into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// A message received by the SMTP sink.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A small SMTP server (RFC 5321 without extensions) that accepts every
/// message and keeps it.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((sock, _)) = l.accept().await else { continue };
                    let m = m.clone();
                    tokio::spawn(async move {
                        let _ = session(sock, m).await;
                    });
                }
            });
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(sock: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let (mut from, mut to, mut line) = (String::new(), Vec::new(), String::new());
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_string();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_string());
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 end with .\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

/// Everything a Slack message shows: its text, its attachment's title and
/// text, and its blocks' text.
pub fn slack_text(body: &serde_json::Value) -> String {
    let blocks: Vec<&str> = body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    let attachment = &body["attachments"][0];
    format!(
        "{} {} {} {}",
        body["text"],
        attachment["title"],
        attachment["text"],
        blocks.join("\n")
    )
}
