//! `relay:`: the Alertmanager-compatible webhook receiver, its routes, its
//! delivery policy and the list of destinations. Parsed strictly like the
//! rest of the configuration; each destination type reads and validates its
//! own keys in its module under `destination/`, and the message templates
//! are compiled and test-rendered here, so a broken template is a
//! configuration error, never a silently dropped notification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::destination::{self, Delivery, DestinationConfig, DestinationKind, RawDestinationCommon};
use super::route::{Matcher, Route};
use crate::config::entry::Entry;
use crate::config::tls::Pem;
use crate::config::value::{check_bounds, opt_duration, read_secret};
use crate::config::{Problem, Secret, closest};

/// Largest accepted webhook body by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Identical payloads within this window are delivered once, by default.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// `relay:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// Turn the relay (`POST /webhook`) off (default on).
    pub enabled: Option<bool>,
    /// Largest accepted webhook body in bytes (default 1 MiB; 1024 to
    /// 67108864).
    pub max_body_bytes: Option<usize>,
    /// Identical payloads within this window are delivered once (default
    /// 5m): Alertmanager's HA pairs each send every notification.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub dedup_window: Option<Duration>,
    /// Who may post webhooks (default: anyone who reaches the listener).
    pub auth: Option<RawAuth>,
    /// Which destinations get which notifications, in order (default: every
    /// notification to every destination).
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Where notifications go; each has a `name` and a `type` (`slack`,
    /// `email`, `pagerduty`, `webhook`, `log`) with that type's keys.
    #[serde(default)]
    #[schemars(schema_with = "destination::schema_list")]
    pub destinations: Vec<Entry>,
    /// Where accepted notifications wait for delivery (default: the SQLite
    /// outbox in `data_dir`, for one process). A PostgreSQL database here
    /// lets several lookout replicas share one queue.
    pub store: Option<RawStore>,
}

/// `relay.store:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// PostgreSQL URL, `postgres://user:password@host:5432/database`
    /// (libpq's URL form; a secret: shown redacted everywhere). Its
    /// `sslmode` is libpq's: `disable`, `prefer` (the default), `require`,
    /// `verify-ca` or `verify-full`.
    pub url: Option<Secret>,
    /// File holding the URL (a Kubernetes Secret mounted as a file).
    pub url_file: Option<PathBuf>,
    /// Connections to PostgreSQL kept by this replica (default 8; 2 to 256).
    pub pool_size: Option<usize>,
    /// How long a replica holds the deliveries it claimed before another
    /// may take them over (default 30s; 1s to 1h): the longest a crashed
    /// replica's claims wait.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub lease: Option<Duration>,
    /// This replica's name on the status page, in `/metrics` and in its
    /// claims (default: the host name, which Kubernetes sets to the pod's).
    pub replica: Option<String>,
    /// PEM file of the CA certificates that sign the server's certificate
    /// (a cloud provider's bundle, a private CA). Needed by
    /// `sslmode=verify-ca` and `verify-full`; with `prefer` or `require` the
    /// chain is then checked too, as libpq does with a root certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (`hostssl …
    /// cert` in `pg_hba.conf`); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`, read as a secret.
    pub key_file: Option<PathBuf>,
}

/// `relay.auth:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `Authorization: Bearer <token>` required.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication required.
    pub basic: Option<RawBasic>,
}

/// `relay.auth.basic:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// One route as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Alertmanager-style matchers on the common labels (`severity="critical"`,
    /// `alertname=~"Redis.*"`); all must match; none matches everything.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Names of the destinations that get a matching notification.
    pub destinations: Vec<String>,
    /// Keep evaluating the routes after this one matched (default false).
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// The relay after validation.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
    /// Identical payloads within this window are delivered once.
    pub dedup_window: Duration,
    /// Who may post.
    pub auth: Auth,
    /// Routes, in order.
    pub routes: Vec<Route>,
    /// Destinations by name, in configuration order.
    pub destinations: Vec<DestinationConfig>,
    /// The shared PostgreSQL store; `None`: the SQLite outbox in `data_dir`.
    pub store: Option<StoreConfig>,
}

/// `relay.store:` after validation.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The PostgreSQL URL (with its password: never shown).
    pub url: Secret,
    /// Connections kept.
    pub pool_size: usize,
    /// How long a claim holds.
    pub lease: Duration,
    /// This replica's name.
    pub replica: String,
    /// The CA bundle and the client certificate (the mode is the URL's).
    pub tls: StoreTls,
}

/// Connections kept to PostgreSQL by default: the intake writers, the
/// workers' claims and the lease keeper each take one at a time.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Bounds of `relay.store.pool_size`: intake and delivery need one each at
/// least; beyond 256 a replica holds more backends than PostgreSQL's
/// default `max_connections` (100) allows.
pub const POOL_SIZE_RANGE: std::ops::RangeInclusive<usize> = 2..=256;
/// A claim's lease by default: longer than any delivery's default timeout
/// (10s), so a slow send is not taken over while it is still under way.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Bounds of `relay.store.lease`: below 1s a lease expires between the
/// claim and the send; above 1h a crashed replica's notifications wait
/// longer than anyone would accept for a page.
pub const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// Reads `relay.store:`; problems are located at its keys.
fn read_store(raw: RawStore, problems: &mut Vec<Problem>, file: &Path) -> Option<StoreConfig> {
    let before = problems.len();
    let mut bad = |field: &str, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(format!("relay.store.{field}")),
            message,
        })
    };
    let url = match read_secret(&raw.url, &raw.url_file, "url") {
        Ok(Some(u)) => Some(u),
        Ok(None) => {
            bad(
                "url",
                "required: the PostgreSQL URL (`postgres://user@host:5432/db`), or `url_file`".into(),
            );
            None
        }
        Err(e) => {
            bad("url", e);
            None
        }
    };
    let mode = match url.as_ref().map(|u| parse_url(u.expose().trim())) {
        Some(Ok((_, mode))) => Some(mode),
        Some(Err(e)) => {
            bad("url", e);
            None
        }
        None => None,
    };
    let tls = read_store_tls(&raw, mode, &mut bad);
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !POOL_SIZE_RANGE.contains(&pool_size) {
        bad(
            "pool_size",
            format!(
                "{pool_size} is out of range: must be between {} and {}",
                POOL_SIZE_RANGE.start(),
                POOL_SIZE_RANGE.end()
            ),
        );
    }
    let lease = raw.lease.unwrap_or(DEFAULT_LEASE);
    if let Err(e) = check_bounds(lease, LEASE_RANGE.0, LEASE_RANGE.1) {
        bad("lease", e);
    }
    let replica = raw.replica.unwrap_or_else(hostname);
    if replica.is_empty() || replica.len() > 63 || !replica.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        bad(
            "replica",
            format!("`{replica}` is not a replica name: 1 to 63 letters, digits, `-`, `_` or `.`"),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(StoreConfig {
        url: Secret::new(url?.expose().trim()),
        pool_size,
        lease,
        replica,
        tls: tls?,
    })
}

/// Reads `ca_file`, `cert_file` and `key_file` against the URL's `sslmode`
/// (`None`: the URL is wrong, already reported); `None` after an error.
fn read_store_tls(raw: &RawStore, mode: Option<SslMode>, bad: &mut impl FnMut(&str, String)) -> Option<StoreTls> {
    let mut ok = true;
    let mut fail = |field: &str, message: String| {
        ok = false;
        bad(field, message)
    };
    if mode == Some(SslMode::Disable) {
        for (key, set) in [
            ("ca_file", raw.ca_file.is_some()),
            ("cert_file", raw.cert_file.is_some()),
            ("key_file", raw.key_file.is_some()),
        ] {
            if set {
                fail(key, "applies to TLS only, and the URL says `sslmode=disable`".into());
            }
        }
    }
    if let Some(m @ (SslMode::VerifyCa | SslMode::VerifyFull)) = mode
        && raw.ca_file.is_none()
    {
        fail(
            "ca_file",
            format!(
                "required by `sslmode={}`: the CA bundle that signs the server's certificate (your provider's, or the system's `/etc/ssl/certs/ca-certificates.crt` for a public CA)",
                m.name()
            ),
        );
    }
    let ca = raw
        .ca_file
        .as_ref()
        .and_then(|f| crate::config::tls::read_ca_bundle(f).map_err(|e| fail("ca_file", e)).ok());
    let client = match (&raw.cert_file, &raw.key_file) {
        (Some(cert), Some(key)) => crate::config::tls::read_client_identity(cert, key)
            .map_err(|(field, e)| fail(field, e))
            .ok(),
        (Some(_), None) => {
            fail("cert_file", "needs `key_file`, the certificate's private key".into());
            None
        }
        (None, Some(_)) => {
            fail("key_file", "needs `cert_file`, the client certificate".into());
            None
        }
        (None, None) => None,
    };
    mode?;
    ok.then_some(StoreTls { ca, client })
}

/// This machine's host name (a pod's name under Kubernetes), the default
/// replica name; `lookout` when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes and the result is cut at the first NUL below.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.chars().take(63).collect(),
        _ => "lookout".into(),
    }
}

/// libpq's `sslmode`, as a replica honours it (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS always, the certificate unchecked unless a CA is given.
    Require,
    /// TLS always, the certificate's chain checked.
    VerifyCa,
    /// TLS always, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// As written in a URL.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err("`sslmode=allow` (clear first, TLS if refused) is not supported: use `prefer` or stricter".into()),
            other => {
                return Err(format!(
                    "unknown `sslmode={other}` (disable, prefer, require, verify-ca or verify-full)"
                ));
            }
        })
    }

    /// What tokio-postgres is told: it knows no `verify-*`, whose checks
    /// are the connector's
    /// ([`crate::relay::store::postgres_tls`]).
    fn driver(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The TLS files of `relay.store`, checked when the configuration loaded.
/// The mode is the URL's only (read again at each start), so that the two
/// cannot disagree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreTls {
    /// `ca_file`: the CAs the server's certificate must chain to.
    pub ca: Option<Pem>,
    /// `cert_file` and `key_file`: this replica's certificate, for a server
    /// that requires one (`hostssl … cert` in `pg_hba.conf`).
    pub client: Option<(Pem, Secret)>,
}

/// libpq URL parameters lookout takes as configuration keys instead.
const FILE_PARAMETERS: [(&str, &str); 3] = [("sslrootcert", "ca_file"), ("sslcert", "cert_file"), ("sslkey", "key_file")];

/// The driver's configuration of `url` and the URL's `sslmode`. The
/// message of an error never repeats the URL, nor the driver's words about
/// it: either may hold the password.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, SslMode), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a `postgres://` URL (`postgres://user:password@host:5432/database`)".into());
    }
    // The query is everything after the first `?` (a password holding a
    // `?` is percent-encoded in a valid URL, and a fragment is not libpq's).
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some((_, ours)) = FILE_PARAMETERS.iter().find(|(k, _)| *k == key) {
            return Err(format!("`{key}` in the URL is not read: give the file as `relay.store.{ours}`"));
        }
        if key == "sslmode" {
            mode = SslMode::parse(value)?;
        } else {
            kept.push(pair);
        }
    }
    let stripped = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = stripped
        .parse()
        .map_err(|_| "not a valid PostgreSQL URL (libpq's form: `postgres://user:password@host:5432/database?option=value`)".to_string())?;
    config.ssl_mode(mode.driver());
    Ok((config, mode))
}

/// Authentication of `POST /webhook`.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Anyone who can reach the listener (which defaults to loopback).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
}

/// Parses `"1/s"`, `"30/m"`, `"100/h"` into the spacing between sends;
/// `"unlimited"` is no spacing.
pub fn parse_rate(s: &str) -> Result<Duration, String> {
    if s.trim() == "unlimited" {
        return Ok(Duration::ZERO);
    }
    let (n, per) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid rate `{s}`: write e.g. `1/s`, `30/m`"))?;
    let n: f64 = n.trim().parse().map_err(|_| format!("invalid rate `{s}`: `{n}` is not a number"))?;
    let per = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("invalid rate `{s}`: unknown unit `{other}` (s, m or h)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("invalid rate `{s}`: must be positive"));
    }
    let spacing = per / n;
    if !(MIN_RATE_SPACING.as_secs_f64()..=MAX_RATE_SPACING.as_secs_f64()).contains(&spacing) {
        return Err(format!(
            "invalid rate `{s}`: must be between 0.042/h (about one a day) and 1000/s, or `unlimited`"
        ));
    }
    Duration::try_from_secs_f64(spacing).map_err(|_| format!("invalid rate `{s}`: out of range"))
}

/// Fastest finite `rate_limit`: 1000 per second. Faster is `unlimited`.
pub const MIN_RATE_SPACING: Duration = Duration::from_millis(1);
/// Slowest `rate_limit`: one send a day. A slower one is a typo, and its
/// spacing could overflow a clock.
pub const MAX_RATE_SPACING: Duration = Duration::from_secs(24 * 3600);

/// Bounds of a destination's `timeout`: below 10ms no request completes;
/// above 1h one attempt holds the destination's queue for nothing.
pub const DELIVERY_TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3600));
/// Bounds of `retry.initial_backoff` and `retry.max_backoff`: below 10ms a
/// failing destination is hammered; above 24h nothing is retried before it
/// is dead-lettered (`max_age` defaults to 24h).
pub const BACKOFF_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(24 * 3600));

/// Bounds of a destination's `concurrency`: at least one send; beyond
/// 1024 in flight a destination holds more sockets and payloads than any
/// receiver answers usefully.
pub const CONCURRENCY_RANGE: std::ops::RangeInclusive<usize> = 1..=1024;
/// Bounds of a destination's `burst`: one is a plain spacing; beyond 1000
/// the limit no longer limits a storm.
pub const BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// Bounds of a destination's `coalesce_after`: under a second a single
/// rate-limited send would already make digests; beyond a day the queue is
/// dead-lettered (`max_age`) before it is coalesced.
pub const COALESCE_AFTER_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// Parses `coalesce_after`: a duration, or `off` / `0` for never.
pub fn parse_coalesce_after(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t == "off" || humantime::parse_duration(t).is_ok_and(|d| d.is_zero()) || t == "0" {
        return Ok(None);
    }
    let d = crate::config::value::parse_duration(t)?;
    check_bounds(d, COALESCE_AFTER_RANGE.0, COALESCE_AFTER_RANGE.1)?;
    Ok(Some(d))
}

/// Bounds of `relay.max_body_bytes`: below 1 KiB no real notification
/// fits; above 64 MiB one request could hold that much memory.
pub const MAX_BODY_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=64 * 1024 * 1024;

/// Validates `relay:` read from `file`; `None` when disabled. Every problem
/// goes to `problems`, a destination's at its own key.
pub fn build(file: &Path, raw: RawRelay, problems: &mut Vec<Problem>) -> Option<RelayConfig> {
    let before = problems.len();
    let bad = |problems: &mut Vec<Problem>, field: String, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(field),
            message,
        })
    };
    if raw.enabled == Some(false) {
        return None;
    }
    let auth = match raw.auth {
        None => Auth::None,
        Some(a) => match (read_secret(&a.bearer_token, &a.bearer_token_file, "bearer_token"), a.basic) {
            (Err(e), _) => {
                bad(problems, "relay.auth.bearer_token".into(), e);
                Auth::None
            }
            (Ok(Some(_)), Some(_)) => {
                bad(
                    problems,
                    "relay.auth".into(),
                    "give either `bearer_token` or `basic`, not both".into(),
                );
                Auth::None
            }
            (Ok(Some(t)), None) => Auth::Bearer(t),
            (Ok(None), Some(b)) => match read_secret(&b.password, &b.password_file, "password") {
                Ok(Some(p)) => Auth::Basic {
                    username: b.username,
                    password: p,
                },
                Ok(None) => {
                    bad(problems, "relay.auth.basic.password".into(), "required".into());
                    Auth::None
                }
                Err(e) => {
                    bad(problems, "relay.auth.basic.password".into(), e);
                    Auth::None
                }
            },
            (Ok(None), None) => Auth::None,
        },
    };
    let mut destinations: Vec<DestinationConfig> = Vec::new();
    for entry in raw.destinations {
        if let Some(d) = read_destination(entry, file, &destinations, problems) {
            destinations.push(d);
        }
    }
    let mut routes = Vec::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let mut matchers = Vec::new();
        for m in &r.matchers {
            match m.parse::<Matcher>() {
                Ok(m) => matchers.push(m),
                Err(e) => bad(problems, format!("relay.routes[{i}].matchers"), e),
            }
        }
        for d in &r.destinations {
            if !destinations.iter().any(|x| &x.name == d) {
                let names: Vec<&str> = destinations.iter().map(|x| x.name.as_str()).collect();
                let hint = closest(d, &names).map(|s| format!(" — did you mean `{s}`?")).unwrap_or_default();
                bad(
                    problems,
                    format!("relay.routes[{i}].destinations"),
                    format!("no destination named `{d}`{hint}"),
                );
            }
        }
        if r.destinations.is_empty() {
            bad(
                problems,
                format!("relay.routes[{i}].destinations"),
                "a route needs at least one destination".into(),
            );
        }
        routes.push(Route {
            matchers,
            destinations: r.destinations,
            continue_: r.continue_,
        });
    }
    if routes.is_empty() && !destinations.is_empty() {
        // No routes: everything goes everywhere.
        routes.push(Route {
            matchers: vec![],
            destinations: destinations.iter().map(|d| d.name.clone()).collect(),
            continue_: false,
        });
    }
    if destinations.is_empty() {
        // A relay that accepts alerts must deliver them somewhere: the log.
        destinations.push(DestinationConfig {
            name: "log".into(),
            kind: DestinationKind::Log,
            delivery: destination::default_delivery("log"),
            templates: BTreeMap::new(),
        });
        routes = vec![Route {
            matchers: vec![],
            destinations: vec!["log".into()],
            continue_: false,
        }];
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !MAX_BODY_BYTES_RANGE.contains(&max_body_bytes) {
        bad(
            problems,
            "relay.max_body_bytes".into(),
            format!(
                "{max_body_bytes} is out of range: must be between {} and {}",
                MAX_BODY_BYTES_RANGE.start(),
                MAX_BODY_BYTES_RANGE.end()
            ),
        );
    }
    let store = raw.store.and_then(|s| read_store(s, problems, file));
    if problems.len() > before {
        return None;
    }
    Some(RelayConfig {
        max_body_bytes,
        dedup_window: raw.dedup_window.unwrap_or(DEFAULT_DEDUP_WINDOW),
        auth,
        routes,
        destinations,
        store,
    })
}

/// Reads one destination: the common keys, then its type's keys (by the
/// type's module), problems located at their keys.
fn read_destination(mut entry: Entry, file: &Path, seen: &[DestinationConfig], problems: &mut Vec<Problem>) -> Option<DestinationConfig> {
    let before = problems.len();
    let mut scope = entry.scope(file, "relay.destinations.", problems);
    let d: RawDestinationCommon = entry.take(&mut scope)?;
    if seen.iter().any(|x| x.name == d.name) {
        scope.error("name", format!("duplicate destination name `{}`", d.name));
    }
    let types = destination::types();
    let names: Vec<&str> = types.iter().map(|(t, _)| *t).collect();
    let Some(&(type_name, own)) = types.iter().find(|(t, _)| *t == d.kind) else {
        let hint = closest(&d.kind, &names)
            .map(|s| format!(" — did you mean `{s}`?"))
            .unwrap_or_default();
        scope.error(
            "type",
            format!("unknown value `{}`{hint} (expected one of: {})", d.kind, names.join(", ")),
        );
        return None;
    };
    let kind = destination::read_kind(type_name, &mut entry, &mut scope);
    let valid: Vec<&str> = crate::config::entry::fields_of::<RawDestinationCommon>()
        .iter()
        .chain(own)
        .copied()
        .collect();
    entry.reject_rest(&mut scope, &valid, "type", type_name, &types);
    let defaults = destination::default_delivery(type_name);
    let min_interval = match &d.rate_limit {
        Some(r) => parse_rate(r).unwrap_or_else(|e| {
            scope.error("rate_limit", e);
            defaults.min_interval
        }),
        None => defaults.min_interval,
    };
    let retry = d.retry.unwrap_or_default();
    let delivery = Delivery {
        min_interval,
        initial_backoff: retry.initial_backoff.unwrap_or(defaults.initial_backoff),
        max_backoff: retry.max_backoff.unwrap_or(defaults.max_backoff),
        max_age: d.max_age.unwrap_or(defaults.max_age),
        timeout: d.timeout.unwrap_or(defaults.timeout),
        concurrency: d.concurrency.unwrap_or(defaults.concurrency),
        burst: d.burst.unwrap_or(defaults.burst),
        skip_superseded: d.skip_superseded.unwrap_or(defaults.skip_superseded),
        coalesce_after: match &d.coalesce_after {
            None => defaults.coalesce_after,
            Some(v) => parse_coalesce_after(v).unwrap_or_else(|e| {
                scope.error("coalesce_after", e);
                None
            }),
        },
    };
    if d.coalesce_after.is_some() && !destination::makes_digests(type_name) {
        scope.error(
            "coalesce_after",
            format!("type `{type_name}` sends every event in order and makes no digests (only `slack` and `email` do)"),
        );
    }
    if !CONCURRENCY_RANGE.contains(&delivery.concurrency) {
        scope.error(
            "concurrency",
            format!(
                "{} is out of range: must be between {} and {}",
                delivery.concurrency,
                CONCURRENCY_RANGE.start(),
                CONCURRENCY_RANGE.end()
            ),
        );
    }
    if !BURST_RANGE.contains(&delivery.burst) {
        scope.error(
            "burst",
            format!(
                "{} is out of range: must be between {} and {}",
                delivery.burst,
                BURST_RANGE.start(),
                BURST_RANGE.end()
            ),
        );
    }
    if delivery.initial_backoff > delivery.max_backoff {
        scope.error("retry", "`initial_backoff` is longer than `max_backoff`");
    }
    for (key, value, (min, max)) in [
        ("timeout", delivery.timeout, DELIVERY_TIMEOUT_RANGE),
        ("retry.initial_backoff", delivery.initial_backoff, BACKOFF_RANGE),
        ("retry.max_backoff", delivery.max_backoff, BACKOFF_RANGE),
    ] {
        if let Err(e) = check_bounds(value, min, max) {
            scope.error(key, e);
        }
    }
    if let Err(e) = super::template::Templates::compile(type_name, destination::templates(type_name), &d.templates) {
        scope.error("templates", e);
    }
    let kind = kind?;
    if scope.count() > before {
        return None;
    }
    Some(DestinationConfig {
        name: d.name,
        kind,
        delivery,
        templates: d.templates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_after_is_a_duration_or_off() {
        assert_eq!(parse_coalesce_after("30s"), Ok(Some(Duration::from_secs(30))));
        for off in ["off", "0", "0s"] {
            assert_eq!(parse_coalesce_after(off), Ok(None), "{off}");
        }
        assert!(parse_coalesce_after("500ms").unwrap_err().contains("out of range"));
        assert!(parse_coalesce_after("soon").unwrap_err().contains("invalid duration"));
    }

    #[test]
    fn sslmode_is_taken_out_of_the_url_and_the_driver_told_what_it_knows() {
        for (url, mode, driver) in [
            ("postgres://u@h/db", SslMode::Prefer, tokio_postgres::config::SslMode::Prefer),
            (
                "postgres://u@h/db?sslmode=disable",
                SslMode::Disable,
                tokio_postgres::config::SslMode::Disable,
            ),
            (
                "postgres://u@h/db?sslmode=require",
                SslMode::Require,
                tokio_postgres::config::SslMode::Require,
            ),
            (
                "postgres://u@h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                tokio_postgres::config::SslMode::Require,
            ),
            (
                "postgresql://u:p@h:5433/db?connect_timeout=2&sslmode=verify-full&application_name=x",
                SslMode::VerifyFull,
                tokio_postgres::config::SslMode::Require,
            ),
        ] {
            let (config, m) = parse_url(url).unwrap();
            assert_eq!(m, mode, "{url}");
            assert_eq!(config.get_ssl_mode(), driver, "{url}");
        }
        let (config, _) = parse_url("postgres://u@h:5433/db?application_name=x&sslmode=verify-full").unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_ports(), [5433]);
    }

    #[test]
    fn wrong_modes_and_libpq_file_parameters_are_explained_without_the_url() {
        let e = parse_url("postgres://u:hunter2@h/db?sslmode=verify_full").unwrap_err();
        assert!(e.contains("unknown `sslmode=verify_full`") && !e.contains("hunter2"), "{e}");
        assert!(parse_url("postgres://u@h/db?sslmode=allow").unwrap_err().contains("not supported"));
        let e = parse_url("postgres://u:hunter2@h/db?sslrootcert=/ca.pem").unwrap_err();
        assert!(e.contains("relay.store.ca_file") && !e.contains("hunter2"), "{e}");
        let e = parse_url("postgres://u:hunter2@h/db?nonsense=1").unwrap_err();
        assert!(e.contains("not a valid PostgreSQL URL") && !e.contains("hunter2"), "{e}");
    }
}
