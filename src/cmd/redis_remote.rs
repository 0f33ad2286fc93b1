//! `lookout redis flush --daemon URL`: the same flush, run by the daemon
//! listening at URL (`POST /api/v1/redis/flushes`), so that its progress is
//! on the daemon's `/metrics` and its record in the daemon's history. This
//! end asks, follows the progress (the same lines as a local flush), turns
//! Ctrl-C into `DELETE` (the daemon stops after the batch in flight), and
//! prints the record.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{EXIT_INTERRUPTED, EXIT_USAGE, block_on, fail};
use crate::config::redact_url;

/// How long one request to the daemon may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How often the progress is read: often enough for a live line, rarely
/// enough to cost the daemon nothing.
const POLL: Duration = Duration::from_millis(500);

/// Requests in a row that may fail (the daemon restarting, a blip) before
/// following gives up; the flush goes on in the daemon either way.
const MAX_FAILURES: u32 = 10;

/// What the command line asks of the daemon.
pub struct Remote {
    /// The daemon's listener, credentials included.
    pub daemon: String,
    /// The request's JSON, `execute` aside.
    pub body: Value,
    /// Delete (else a dry run).
    pub execute: bool,
    /// No count typed back.
    pub yes: bool,
    /// Where the record goes too.
    pub record: Option<std::path::PathBuf>,
}

struct Api {
    client: reqwest::Client,
    base: url::Url,
    display: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let url = self.base.join(path).map_err(|e| format!("invalid URL: {e}"))?;
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.display, crate::http::describe(&e)))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| crate::http::describe(&e))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Starts a flush; its id, or the exit status and why not.
    async fn start(&self, body: &Value) -> Result<String, ExitCode> {
        let (status, v) = self
            .call(reqwest::Method::POST, "api/v1/redis/flushes", Some(body))
            .await
            .map_err(|e| fail(1, e))?;
        let why = || v["error"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        match status {
            202 => v["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| fail(1, "the daemon's answer has no id")),
            400 => Err(fail(EXIT_USAGE, why())),
            401 => Err(fail(
                1,
                "the daemon wants credentials: give them in the URL (http://user:password@host:port)",
            )),
            _ => Err(fail(1, format_args!("the daemon refused the flush (HTTP {status}): {}", why()))),
        }
    }
}

impl Remote {
    /// Runs it; the exit status as a local flush's.
    pub fn run(self) -> ExitCode {
        if self.execute && !self.yes && !std::io::stdin().is_terminal() {
            return fail(
                EXIT_USAGE,
                "--execute without a terminal needs --yes: there is nobody to type the count back",
            );
        }
        let mut base = match url::Url::parse(&self.daemon) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return fail(
                    EXIT_USAGE,
                    format_args!("--daemon: `{}` is not the daemon's http(s) URL", redact_url(&self.daemon)),
                );
            }
        };
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let client = match crate::http::client_builder(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => return fail(1, format_args!("cannot build an HTTP client: {e}")),
        };
        let api = Api {
            client,
            display: redact_url(base.as_str()),
            base,
        };
        match block_on(self.flow(api)) {
            Ok(code) | Err(code) => code,
        }
    }

    async fn flow(self, api: Api) -> ExitCode {
        let stop = Arc::new(AtomicBool::new(false));
        super::spawn_signal_watch(stop.clone());
        // On a terminal the count is typed back: the daemon counts first.
        if self.execute && !self.yes {
            let mut dry = self.body.clone();
            dry["execute"] = Value::Bool(false);
            let id = match api.start(&dry).await {
                Ok(id) => id,
                Err(code) => return code,
            };
            let p = match follow(&api, &id, &stop).await {
                Ok(p) => p,
                Err(code) => return code,
            };
            if p["state"] != "dry_run" {
                return finish(&p, None);
            }
            let matched = p["matched"].as_u64().unwrap_or(0);
            println!(
                "{}: {matched} of {} keys match `{}`",
                p["target"].as_str().unwrap_or("?"),
                p["total"].as_u64().unwrap_or(0),
                p["pattern"].as_str().unwrap_or("")
            );
            if matched == 0 {
                println!("nothing to delete");
                return ExitCode::SUCCESS;
            }
            if !super::confirm(matched) {
                return fail(1, "not confirmed: nothing deleted");
            }
        }
        let mut body = self.body.clone();
        body["execute"] = Value::Bool(self.execute);
        let id = match api.start(&body).await {
            Ok(id) => id,
            Err(code) => return code,
        };
        eprintln!("flush {id} started by the daemon at {}", api.display);
        match follow(&api, &id, &stop).await {
            Ok(p) => finish(&p, self.record.as_deref()),
            Err(code) => code,
        }
    }
}

/// Reads the flush `id` until it ends, a line of progress a second on
/// stderr; the first stop (Ctrl-C, SIGTERM) becomes a `DELETE`, and the
/// flush is followed on until the daemon says it stopped.
async fn follow(api: &Api, id: &str, stop: &AtomicBool) -> Result<Value, ExitCode> {
    let path = format!("api/v1/redis/flushes/{id}");
    let mut asked_stop = false;
    let mut failures = 0;
    let mut last_line: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) && !asked_stop {
            asked_stop = true;
            eprintln!("stopping: the daemon stops the flush after the batch in flight");
            if let Err(e) = api.call(reqwest::Method::DELETE, &path, None).await {
                eprintln!("lookout: could not ask the daemon to stop: {e}");
                asked_stop = false;
            }
        }
        match api.call(reqwest::Method::GET, &path, None).await {
            Ok((200, p)) => {
                failures = 0;
                let state = p["state"].as_str().unwrap_or("");
                if matches!(state, "done" | "dry_run" | "interrupted" | "failed") {
                    return Ok(p);
                }
                if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) || state == "paused" {
                    last_line = Some(Instant::now());
                    eprintln!("{}", progress_line(&p));
                }
            }
            Ok((status, v)) => {
                return Err(fail(
                    1,
                    format_args!("the daemon lost flush {id} (HTTP {status}): {}", v["error"].as_str().unwrap_or("")),
                ));
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    return Err(fail(
                        1,
                        format_args!("{e}; the flush {id} may still run in the daemon: GET /api/v1/redis/flushes/{id}"),
                    ));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One progress line, as a local flush prints them off a terminal.
fn progress_line(p: &Value) -> String {
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    match p["state"].as_str().unwrap_or("") {
        "surveying" => "flush: counting the matching keys".to_string(),
        "snapshot" => "flush: waiting for the snapshot".to_string(),
        "watching" => format!(
            "flush: {} keys deleted; watching the hit rate's recovery, then verifying",
            n("deleted")
        ),
        "paused" => format!(
            "flush: paused: round trip {:.2}ms; {}/{} keys deleted",
            p["paused_at_seconds"].as_f64().unwrap_or(0.0) * 1000.0,
            n("deleted"),
            n("matched")
        ),
        _ => format!(
            "flush: {}/{} keys deleted, {:.0} keys/s",
            n("deleted"),
            n("matched"),
            p["keys_per_second"].as_f64().unwrap_or(0.0)
        ),
    }
}

/// Prints the record (and writes it to `file`), then the exit status of
/// the state it ended in.
fn finish(p: &Value, file: Option<&std::path::Path>) -> ExitCode {
    let record = p["record"].as_str().unwrap_or("");
    print!("{record}");
    if let Some(f) = file
        && let Err(e) = std::fs::write(f, record)
    {
        eprintln!("lookout: cannot write the record {}: {e}", f.display());
    }
    let deleted = p["deleted"].as_u64().unwrap_or(0);
    match p["state"].as_str().unwrap_or("") {
        "done" => {
            println!("done: {deleted} keys deleted; the record is in the daemon's history");
            ExitCode::SUCCESS
        }
        "dry_run" => {
            println!("dry run: nothing deleted; add --execute to delete them");
            ExitCode::SUCCESS
        }
        "interrupted" => fail(
            EXIT_INTERRUPTED,
            format_args!("interrupted after {deleted} keys; run the same command again to continue"),
        ),
        _ => fail(
            1,
            format_args!("{} ({deleted} keys deleted)", p["error"].as_str().unwrap_or("the flush failed")),
        ),
    }
}
