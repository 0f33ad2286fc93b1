//! `kind: redis`: Redis itself, over one long-lived connection.
//!
//! Each run costs Redis as little as possible: three PINGs, each timed on its
//! own so that the latency (their median) is the round trip a client sees, then one
//! `INFO clients memory stats` — the sections whose values move. The
//! sections that rarely change (`server`, `persistence`, `replication`) are
//! read on the first run, every `static_info_every`, after a reconnect, and
//! whenever a counter goes backwards (a restart). On Redis before 7.0,
//! which takes one section per INFO, it falls back to plain `INFO`.
//!
//! The connection is kept between runs and dropped after any error, so the
//! next run reconnects (never every run).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use std::path::PathBuf;

use serde::Deserialize;

use super::topology::Replication;
use super::{Facts, FailureReason, Probe, ProbeError, Reading};
use crate::config::entry::Scope;
use crate::config::tls::Pem;
use crate::config::value::{opt_duration, read_secret};
use crate::config::{Env, Secret, redact_url, redact_urls_in};
use crate::metric::Metric;

// ---------------------------------------------------------------------------
// Configuration: the keys of `kind: redis`, their validation (with the
// `REDIS_*` environment convention the backends use) and the spec.

/// The kind's name in `kind:`.
pub const KIND: &str = "redis";

/// How often the probe re-reads the INFO sections that rarely change.
pub const DEFAULT_STATIC_INFO_EVERY: Duration = Duration::from_secs(60);
/// The Redis probed when neither the probe nor the environment names one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The keys of a `kind: redis` probe, as written. Without `url` or any of
/// the parts, the probe follows the backends' environment convention:
/// `REDIS_URL`, else `REDIS_HOST`/`REDIS_PORT`/`REDIS_USERNAME`/
/// `REDIS_PASSWORD`/`REDIS_DB`, else `redis://127.0.0.1:6379`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host[:port][/db]`; a secret (it may carry
    /// the password).
    pub url: Option<Secret>,
    /// Host, instead of `url`.
    pub host: Option<String>,
    /// Port, instead of `url` (default 6379).
    pub port: Option<u16>,
    /// ACL user, instead of `url`.
    pub username: Option<String>,
    /// Password, instead of `url`.
    pub password: Option<Secret>,
    /// File holding the password (its final newline is ignored).
    pub password_file: Option<PathBuf>,
    /// Database number, instead of `url`.
    pub db: Option<i64>,
    /// Connect with TLS, instead of `url` (default false). A `rediss://`
    /// URL, in `url` or `REDIS_URL`, says the same.
    pub tls: Option<bool>,
    /// PEM file of the CA certificates that sign the server's certificate,
    /// trusted instead of the system's (a private CA, a cloud provider's
    /// bundle). TLS only.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (mutual TLS,
    /// `tls-auth-clients yes`); with `key_file`. TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`, read as a secret. TLS only.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (default false). The connection is
    /// still encrypted, but anyone on the path can pose as the server and
    /// read the password: for a test server only. TLS only.
    pub tls_skip_verify: Option<bool>,
    /// Also write, read and delete a key each run (default false).
    pub roundtrip: Option<bool>,
    /// How often to re-read the INFO sections that rarely change
    /// (`maxclients`, `maxmemory`, persistence; default 1m).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub static_info_every: Option<Duration>,
}

/// Configuration of a `kind: redis` probe.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// Full connection URL, credentials included.
    pub url: Secret,
    /// The same URL with the password hidden.
    pub display_url: String,
    /// TLS settings, for a `rediss://` URL.
    pub tls: Option<RedisTls>,
    /// Write, read and delete a key each cycle.
    pub roundtrip: bool,
    /// How often to re-read the INFO sections that rarely change.
    pub static_info_every: Duration,
}

impl RedisSpec {
    /// The same connection (credentials, TLS, options) to another node:
    /// the topology kinds reach every node they discover this way.
    pub fn at(&self, host: &str, port: u16) -> Result<RedisSpec, String> {
        let mut u = url::Url::parse(self.url.expose()).map_err(|_| "invalid Redis URL".to_string())?;
        let bracketed;
        let host = if host.contains(':') && !host.starts_with('[') {
            bracketed = format!("[{host}]");
            bracketed.as_str()
        } else {
            host
        };
        u.set_host(Some(host)).map_err(|e| format!("invalid host `{host}`: {e}"))?;
        u.set_port(Some(port)).map_err(|()| format!("cannot set port {port}"))?;
        let mut shown = u.clone();
        shown.set_fragment(None);
        Ok(RedisSpec {
            url: Secret::new(u.to_string()),
            display_url: redact_url(shown.as_str()),
            ..self.clone()
        })
    }
}

/// How a `rediss://` connection verifies the server and identifies itself.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// PEM CA certificates trusted instead of the system's.
    pub ca: Option<Pem>,
    /// PEM client certificate chain and its private key (mutual TLS).
    pub client: Option<(Pem, Secret)>,
    /// Any server certificate is accepted (`#insecure` on the URL).
    pub skip_verify: bool,
}

/// Validates a `kind: redis` probe's keys into its spec; `env` is the
/// environment the `REDIS_*` convention reads.
pub fn configure(p: RawRedis, scope: &mut Scope<'_>, env: Env<'_>) -> Option<RedisSpec> {
    // Compose passes an unset variable as an empty one: treat empty as unset.
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let explicit_parts = p.host.is_some()
        || p.port.is_some()
        || p.username.is_some()
        || p.password.is_some()
        || p.password_file.is_some()
        || p.db.is_some()
        || p.tls.is_some();
    if p.url.is_some() && explicit_parts {
        scope.error("url", "give either `url` or host/port/username/password/db/tls, not both");
        return None;
    }
    let password = match read_secret(&p.password, &p.password_file, "password") {
        Ok(pw) => pw,
        Err(e) => {
            scope.error("password_file", e);
            return None;
        }
    };
    // Where the URL came from, for an error that says what to change.
    let (url, source) = if let Some(u) = &p.url {
        (u.expose().to_string(), "`url`")
    } else if explicit_parts {
        let parts = UrlParts {
            tls: p.tls.unwrap_or(false),
            host: p.host.clone(),
            port: p.port,
            user: p.username.clone(),
            password,
            db: p.db,
        };
        (parts.compose(), "`host`/`port`/`tls`")
    } else if let Some(u) = env("REDIS_URL") {
        (u, "REDIS_URL")
    } else if ["REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB"]
        .iter()
        .any(|k| env(k).is_some())
    {
        let port = match env("REDIS_PORT").map(|s| s.parse::<u16>()) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                scope.error("port", "environment variable REDIS_PORT is not a port number");
                return None;
            }
            None => None,
        };
        let db = match env("REDIS_DB").map(|s| s.parse::<i64>()) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => {
                scope.error("db", "environment variable REDIS_DB is not a number");
                return None;
            }
            None => None,
        };
        let parts = UrlParts {
            tls: false,
            host: env("REDIS_HOST"),
            port,
            user: env("REDIS_USERNAME"),
            password: env("REDIS_PASSWORD").map(Secret::new),
            db,
        };
        (parts.compose(), "REDIS_HOST/REDIS_PORT")
    } else {
        (DEFAULT_REDIS_URL.to_string(), "the default")
    };
    let parsed = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some_and(|h| !h.is_empty()) => u,
        _ => {
            scope.error(
                "url",
                "invalid Redis URL: expected redis://[user:password@]host[:port][/db] or rediss://…",
            );
            return None;
        }
    };
    // The redis crate reads one fragment, `#insecure`: the same as `tls_skip_verify`.
    let insecure_fragment = match parsed.fragment() {
        None => false,
        Some("insecure") => true,
        Some(_) => {
            scope.error(
                "url",
                "a Redis URL's only fragment is `#insecure` (better: `tls_skip_verify: true`)",
            );
            return None;
        }
    };
    let tls = configure_tls(&p, parsed.scheme() == "rediss", insecure_fragment, source, scope)?;
    // Shown without the `#insecure` added here (a fragment shows as `#***`).
    let display_url = redact_url(&url);
    let mut url = url;
    if tls.as_ref().is_some_and(|t| t.skip_verify) && !insecure_fragment {
        url.push_str("#insecure");
    }
    Some(RedisSpec {
        display_url,
        url: Secret::new(url),
        tls,
        roundtrip: p.roundtrip.unwrap_or(false),
        static_info_every: p.static_info_every.unwrap_or(DEFAULT_STATIC_INFO_EVERY),
    })
}

/// Checks and reads the TLS keys: `None` inside `Some` for a plain
/// connection, the outer `None` after an error. `insecure_fragment`: the
/// URL ends in `#insecure`, which the redis crate takes as `tls_skip_verify`.
fn configure_tls(p: &RawRedis, is_tls: bool, insecure_fragment: bool, source: &str, scope: &mut Scope<'_>) -> Option<Option<RedisTls>> {
    let before = scope.count();
    let skip_verify = p.tls_skip_verify.unwrap_or(false);
    if !is_tls {
        for (key, set) in [
            ("ca_file", p.ca_file.is_some()),
            ("cert_file", p.cert_file.is_some()),
            ("key_file", p.key_file.is_some()),
            ("tls_skip_verify", skip_verify),
        ] {
            if set {
                scope.error(
                    key,
                    format!(
                        "applies to TLS only, and the Redis URL (from {source}) is redis://: write rediss:// in `url`, or `tls: true` with `host`"
                    ),
                );
            }
        }
        return (scope.count() == before).then_some(None);
    }
    let skip_verify = skip_verify || insecure_fragment;
    if skip_verify && p.ca_file.is_some() {
        scope.error("tls_skip_verify", "give either `ca_file` or `tls_skip_verify`, not both");
    }
    let ca = p
        .ca_file
        .as_ref()
        .and_then(|f| crate::config::tls::read_ca_bundle(f).map_err(|e| scope.error("ca_file", e)).ok());
    let client = match (&p.cert_file, &p.key_file) {
        (Some(cert), Some(key)) => crate::config::tls::read_client_identity(cert, key)
            .map_err(|(field, e)| scope.error(field, e))
            .ok(),
        (Some(_), None) => {
            scope.error("cert_file", "needs `key_file`, the certificate's private key");
            None
        }
        (None, Some(_)) => {
            scope.error("key_file", "needs `cert_file`, the client certificate");
            None
        }
        (None, None) => None,
    };
    (scope.count() == before).then_some(Some(RedisTls { ca, client, skip_verify }))
}

/// The parts of a Redis URL given one by one (keys or `REDIS_*`).
struct UrlParts {
    tls: bool,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    db: Option<i64>,
}

impl UrlParts {
    /// `redis[s]://user:pass@host:port/db`, each part percent-encoded.
    fn compose(self) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let mut s = String::from(if self.tls { "rediss://" } else { "redis://" });
        let user = self.user.unwrap_or_default();
        if !user.is_empty() || self.password.is_some() {
            s.push_str(&utf8_percent_encode(&user, NON_ALPHANUMERIC).to_string());
            if let Some(pw) = &self.password {
                s.push(':');
                s.push_str(&utf8_percent_encode(pw.expose(), NON_ALPHANUMERIC).to_string());
            }
            s.push('@');
        }
        let host = self.host.filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1".to_string());
        if host.contains(':') && !host.starts_with('[') {
            s.push_str(&format!("[{host}]"));
        } else {
            s.push_str(&host);
        }
        s.push_str(&format!(":{}", self.port.unwrap_or(6379)));
        if let Some(db) = self.db {
            s.push_str(&format!("/{db}"));
        }
        s
    }
}

/// The probe.
pub struct RedisProbe {
    client: redis::Client,
    display_url: String,
    roundtrip_key: Option<String>,
    static_every: Duration,
    timeout: Duration,
    /// Read `INFO replication` every run (the topology kinds' nodes).
    replication: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    conn: Option<MultiplexedConnection>,
    /// Multi-section INFO is refused (Redis < 7): use plain INFO.
    legacy_info: bool,
    /// When the static sections were last read, and what they said.
    static_at: Option<Instant>,
    static_facts: Facts,
    /// `maxclients` from CONFIG GET, for servers whose INFO lacks it;
    /// `Some(None)` once CONFIG proved unavailable.
    config_maxclients: Option<Option<f64>>,
    last_hits: Option<f64>,
}

impl RedisProbe {
    /// Prepares the client; no connection is made until the first run.
    pub fn new(name: &str, spec: &RedisSpec, timeout: Duration) -> Result<Self, String> {
        let client = client_for(spec)?;
        Ok(RedisProbe {
            client,
            display_url: spec.display_url.clone(),
            roundtrip_key: spec.roundtrip.then(|| format!("lookout:probe:{name}")),
            static_every: spec.static_info_every,
            timeout,
            replication: false,
            state: Mutex::new(State::default()),
        })
    }

    /// Also reads `INFO replication` every run, into [`Facts::replication`]
    /// (role, link, offsets): a failover moves them at any time, not once a
    /// minute. Costs Redis a few microseconds per run.
    pub fn with_replication(mut self) -> Self {
        self.replication = true;
        self
    }

    async fn connect(&self) -> Result<MultiplexedConnection, ProbeError> {
        connect(&self.client, &self.display_url, self.timeout).await
    }
}

/// The redis crate's client for `spec`, with its TLS certificates.
pub fn client_for(spec: &RedisSpec) -> Result<redis::Client, String> {
    // The redis crate's rustls takes the process's provider: ring.
    crate::http::install_crypto_provider();
    let client = match &spec.tls {
        Some(RedisTls { ca, client, .. }) if ca.is_some() || client.is_some() => redis::Client::build_with_tls(
            spec.url.expose(),
            redis::TlsCertificates {
                client_tls: client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.0.clone(),
                    client_key: key.expose().as_bytes().to_vec(),
                }),
                root_cert: ca.as_ref().map(|pem| pem.0.clone()),
            },
        ),
        _ => redis::Client::open(spec.url.expose()),
    }
    .map_err(|e| format!("invalid Redis URL `{}`: {}", spec.display_url, redact_urls_in(&e.to_string())))?;
    Ok(client)
}

/// Opens one connection with `client`; errors name `display_url` and, for
/// the TLS mistakes that only show as a hang or a reset, what to change.
pub async fn connect(client: &redis::Client, display_url: &str, timeout: Duration) -> Result<MultiplexedConnection, ProbeError> {
    // A little under the run's own timeout, so that a connection that
    // hangs (TLS to a plain port: Redis waits for the end of a line that
    // never comes) fails here, with what was being done, not as a bare
    // "timed out".
    let connect_timeout = timeout.mul_f64(0.9);
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(timeout));
    client.get_multiplexed_async_connection_with_config(&cfg).await.map_err(|e| {
        let mut err = redis_error(&e, &format!("cannot connect to {display_url}"), FailureReason::Connect);
        let tls = display_url.starts_with("rediss://");
        if tls && e.is_timeout() {
            err.message
                .push_str(" (no TLS answer: does this port speak TLS? A plain port takes redis://)");
        } else if !tls && err.message.contains("reset by peer") {
            err.message
                .push_str(" (a TLS-only port resets plain connections: does it take rediss://?)");
        }
        err
    })
}

#[async_trait::async_trait]
impl Probe for RedisProbe {
    async fn check(&self) -> Result<Reading, ProbeError> {
        // One run at a time per probe; the scheduler already guarantees it,
        // the lock makes the state's consistency not depend on that.
        let mut st = self.state.lock().await;
        let result = self.cycle(&mut st).await;
        if result.is_err() {
            // Whatever failed, the connection may be broken: start afresh next run.
            st.conn = None;
        }
        result
    }
}

impl RedisProbe {
    async fn cycle(&self, st: &mut State) -> Result<Reading, ProbeError> {
        let fresh = st.conn.is_none();
        if fresh {
            st.conn = Some(self.connect().await?);
            st.static_at = None;
        }
        let Some(conn) = st.conn.as_mut() else {
            return Err(ProbeError::new(FailureReason::Connect, "no connection"));
        };
        let mut reading = Reading::default();

        // Three PINGs, each timed on its own, 10 ms apart; the median is
        // reported. A single PING after a second of quiet pays for a cold
        // path on both sides (measured: +34 % over redis-cli --latency),
        // back-to-back PINGs for none (-70 %); 10 ms apart is the cadence
        // redis-cli --latency samples at, and what a client in use sees.
        // Two more PINGs cost Redis about 2 µs.
        let mut rtts = [0.0f64; 3];
        for (i, rtt) in rtts.iter_mut().enumerate() {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let t0 = Instant::now();
            let pong: String = redis::cmd("PING")
                .query_async(conn)
                .await
                .map_err(|e| redis_error(&e, "PING", FailureReason::Status))?;
            *rtt = t0.elapsed().as_secs_f64();
            if pong != "PONG" {
                return Err(ProbeError::new(
                    FailureReason::Status,
                    format!("PING answered `{pong}`, expected PONG"),
                ));
            }
        }
        rtts.sort_by(f64::total_cmp);
        reading.values.insert(Metric::LatencySeconds, rtts[1]);

        let info = if st.legacy_info {
            query_info(conn, &[]).await?
        } else {
            let sections: &[&str] = if self.replication {
                &["clients", "memory", "stats", "replication"]
            } else {
                &["clients", "memory", "stats"]
            };
            match query_info(conn, sections).await {
                Ok(i) if i.contains_key("connected_clients") => i,
                // Redis < 7 ignores or refuses extra sections: plain INFO has them all.
                _ => {
                    st.legacy_info = true;
                    query_info(conn, &[]).await?
                }
            }
        };
        let num = |k: &str| info.get(k).and_then(|v| v.parse::<f64>().ok());
        let hits = num("keyspace_hits");
        let restarted = matches!((st.last_hits, hits), (Some(prev), Some(now)) if now < prev);
        st.last_hits = hits;
        for (metric, key) in [
            (Metric::KeyspaceHits, "keyspace_hits"),
            (Metric::KeyspaceMisses, "keyspace_misses"),
            (Metric::ConnectedClients, "connected_clients"),
            (Metric::Maxclients, "maxclients"),
            (Metric::UsedMemoryBytes, "used_memory"),
            (Metric::MaxmemoryBytes, "maxmemory"),
            (Metric::MemFragmentationRatio, "mem_fragmentation_ratio"),
        ] {
            if let Some(v) = num(key) {
                reading.values.insert(metric, v);
            }
        }
        if let (Some(h), Some(m)) = (hits, num("keyspace_misses"))
            && let Some(r) = Metric::hit_ratio(h, m)
        {
            reading.values.insert(Metric::HitRatio, r);
        }
        reading.facts.evicted_keys = num("evicted_keys");
        reading.facts.rejected_connections = num("rejected_connections");
        reading.facts.mem_fragmentation_bytes = num("mem_fragmentation_bytes");

        let due = st.static_at.is_none_or(|t| t.elapsed() >= self.static_every) || restarted;
        if due {
            let s = if st.legacy_info {
                info.clone()
            } else {
                query_info(conn, &["server", "persistence", "replication"]).await?
            };
            let g = |k: &str| s.get(k).cloned();
            let n = |k: &str| s.get(k).and_then(|v| v.parse::<f64>().ok());
            st.static_facts = Facts {
                run_id: g("run_id"),
                uptime_seconds: n("uptime_in_seconds"),
                role: g("role"),
                rdb_last_save_time: n("rdb_last_save_time"),
                aof_enabled: n("aof_enabled").map(|v| v != 0.0),
                ..Facts::default()
            };
            st.static_at = Some(Instant::now());
        }
        let sf = &st.static_facts;
        reading.facts.run_id = sf.run_id.clone();
        reading.facts.role = sf.role.clone();
        reading.facts.rdb_last_save_time = sf.rdb_last_save_time;
        reading.facts.aof_enabled = sf.aof_enabled;
        // Uptime moves with the clock: extrapolate between reads of `server`.
        if self.replication {
            reading.facts.replication = Replication::from_info(&info).map(Box::new);
            if let Some(r) = &reading.facts.replication {
                reading.facts.role = Some(r.role.clone());
            }
        }
        reading.facts.uptime_seconds = sf
            .uptime_seconds
            .map(|u| u + st.static_at.map(|t| t.elapsed().as_secs_f64().floor()).unwrap_or(0.0));

        if let std::collections::btree_map::Entry::Vacant(slot) = reading.values.entry(Metric::Maxclients) {
            if st.config_maxclients.is_none() || due {
                // CONFIG may be renamed or disabled (managed Redis): carry on without it.
                let r: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG").arg("GET").arg("maxclients").query_async(conn).await;
                st.config_maxclients = Some(r.ok().and_then(|v| v.get(1).and_then(|s| s.parse().ok())));
            }
            if let Some(Some(m)) = st.config_maxclients {
                slot.insert(m);
            }
        }

        if let Some(key) = &self.roundtrip_key {
            roundtrip(conn, key).await.map_err(|e| e.with_partial(reading.clone()))?;
        }
        Ok(reading)
    }
}

/// Writes, reads back and deletes a key with a TTL, proving the cache serves.
async fn roundtrip(conn: &mut MultiplexedConnection, key: &str) -> Result<(), ProbeError> {
    let nonce = format!("{:x}", rand_u64());
    let (_, got, _): ((), Option<String>, i64) = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(&nonce)
        .arg("EX")
        .arg(60)
        .cmd("GET")
        .arg(key)
        .cmd("DEL")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| redis_error(&e, "round trip (SET/GET/DEL)", FailureReason::Status))?;
    if got.as_deref() != Some(nonce.as_str()) {
        return Err(ProbeError::new(
            FailureReason::Status,
            format!("round trip: read back {got:?}, wrote {nonce:?}"),
        ));
    }
    Ok(())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

async fn query_info(conn: &mut MultiplexedConnection, sections: &[&str]) -> Result<HashMap<String, String>, ProbeError> {
    let mut cmd = redis::cmd("INFO");
    for s in sections {
        cmd.arg(*s);
    }
    let text: String = cmd
        .query_async(conn)
        .await
        .map_err(|e| redis_error(&e, "INFO", FailureReason::Status))?;
    Ok(parse_info(&text))
}

/// Parses INFO's `key:value` lines, skipping `# Section` headers.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A redis crate error as a probe failure: `what` was being done.
pub fn redis_error(e: &redis::RedisError, what: &str, default: FailureReason) -> ProbeError {
    let reason = if e.is_timeout() {
        FailureReason::Timeout
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        FailureReason::Connect
    } else {
        default
    };
    let text = redact_urls_in(&e.to_string());
    ProbeError::new(reason, format!("{what}: {text}{}", tls_hint(&text)))
}

/// What to change, for the TLS failures whose text names only the symptom.
fn tls_hint(text: &str) -> &'static str {
    // BadSignature: a CA of the same name, but not the one that signed it.
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the server's certificate is not signed by a CA lookout trusts: give that CA in `ca_file`)"
    } else if text.contains("NotValidForName") {
        " (the server's certificate does not name this host: connect by a name it was issued for)"
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        " (the server requires a client certificate: give `cert_file` and `key_file`)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (the server does not speak TLS on this port: use redis://, or its TLS port)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info() {
        let i = parse_info("# Clients\r\nconnected_clients:3\r\nmaxclients:10000\r\n\r\n# Memory\r\nused_memory:1024\r\n");
        assert_eq!(i.get("connected_clients").map(String::as_str), Some("3"));
        assert_eq!(i.get("used_memory").map(String::as_str), Some("1024"));
        assert_eq!(i.len(), 3);
    }
}
