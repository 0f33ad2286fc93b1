//! `server.web_config_file`: TLS and basic authentication for the whole HTTP
//! listener, in the file format of Prometheus's exporter-toolkit
//! (`--web.config.file`), so that one file serves an exporter and lookout:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.pem          # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.pem
//!   min_version: TLS12
//! basic_auth_users:
//!   admin: $2y$10$…                # bcrypt (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! The file is read and checked when the configuration loads: a missing
//! certificate or a key that does not match is an error naming the file and
//! the field, not a listener that fails its first handshake. What the
//! toolkit has and rustls does not (TLS 1.0 and 1.1, a chosen cipher or
//! curve list, a client certificate taken without verifying it) is refused
//! by name rather than ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::tls::{parse_certificates, read_ca_bundle, read_certificates, root_store};
use super::value::read_secret;
use super::{ConfigError, Problem};

/// The file as written; unknown keys are refused, as the toolkit does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTlsServer>,
    #[serde(rename = "http_server_config")]
    _http_server_config: Option<RawHttpServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServer {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// Only `http2` is read (and has no effect: the listener speaks HTTP/1.1);
/// `headers` is refused as an unknown key rather than silently dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServer {
    #[serde(rename = "http2")]
    _http2: Option<bool>,
}

/// The listener's TLS and users, checked.
#[derive(Clone)]
pub struct WebConfig {
    /// The TLS server setup, when `tls_server_config` is given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty: no basic authentication.
    pub users: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for WebConfig {
    /// Names the users, never their hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The toolkit's `client_auth_type` values lookout serves.
const CLIENT_AUTH_TYPES: [&str; 3] = ["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"];

/// Reads and checks the web configuration file at `path`. Problems name
/// that file, its field and, where it can be found, the line.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = super::value::read_secret(&None, &Some(path.to_path_buf()), "web_config_file")
        .map_err(|e| ConfigError::one(path, e))?
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    // No `${VAR}` expansion: the toolkit does none, and a bcrypt hash is
    // full of `$`.
    let raw: RawWebConfig = super::parse_yaml(path, &text.replace('$', "$$"), &|_| None)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut bad = |field: &str, message: String| problems.push(Problem::at_field(path, field, message));
    let tls = raw.tls_server_config.and_then(|t| match tls_server(t, dir) {
        Ok(c) => Some(Arc::new(c)),
        Err((field, message)) => {
            bad(&format!("tls_server_config.{field}"), message);
            None
        }
    });
    for (user, hash) in &raw.basic_auth_users {
        let field = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            bad(&field, "a user name is not empty and has no `:`".into());
        }
        // The hash is a credential too: the message never shows it.
        if hash.parse::<bcrypt::HashParts>().is_err() {
            bad(
                &field,
                "not a bcrypt hash (`$2y$10$…`; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".into(),
            );
        }
    }
    if !problems.is_empty() {
        for p in &mut problems {
            if let Some((line, column)) = p.field.as_deref().and_then(|f| super::locate::locate(&text, f)) {
                p.line = Some(line);
                p.column = Some(column);
            }
        }
        return Err(ConfigError(problems));
    }
    Ok(WebConfig {
        tls,
        users: Arc::new(raw.basic_auth_users),
    })
}

/// The rustls server setup of `tls_server_config`; a problem as (field, message).
fn tls_server(t: RawTlsServer, dir: &Path) -> Result<rustls::ServerConfig, (&'static str, String)> {
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
    let cert = t.cert_file.as_deref().map(resolve).ok_or(("cert_file", "required".to_string()))?;
    let key = t.key_file.as_deref().map(resolve).ok_or(("key_file", "required".to_string()))?;
    let chain = read_certificates(&cert).map_err(|e| ("cert_file", e))?;
    let chain = parse_certificates(&chain.0).map_err(|e| ("cert_file", format!("`{}`: {e}", cert.display())))?;
    let key_pem = read_secret(&None, &Some(key.clone()), "key_file")
        .map_err(|e| ("key_file", e))?
        .ok_or(("key_file", "required".to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes()).map_err(|_| {
        (
            "key_file",
            format!("`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", key.display()),
        )
    })?;
    let version = |v: &Option<String>, field: &'static str, default: &'static rustls::SupportedProtocolVersion| match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(v @ ("TLS10" | "TLS11")) => Err((
            field,
            format!("`{v}` is not offered: lookout speaks TLS 1.2 and 1.3 (TLS12, TLS13)"),
        )),
        Some(v) => Err((field, format!("unknown version `{v}` (TLS12 or TLS13)"))),
    };
    let rank = |v: &rustls::SupportedProtocolVersion| u8::from(v.version == rustls::ProtocolVersion::TLSv1_3);
    let min = version(&t.min_version, "min_version", &rustls::version::TLS12)?;
    let max = version(&t.max_version, "max_version", &rustls::version::TLS13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect();
    if versions.is_empty() {
        return Err(("max_version", "is below `min_version`".to_string()));
    }
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    if !CLIENT_AUTH_TYPES.contains(&auth) {
        let why = match auth {
            "RequestClientCert" | "RequireAnyClientCert" => "takes a client certificate without verifying it; ",
            _ => "",
        };
        return Err((
            "client_auth_type",
            format!("`{auth}` {why}lookout serves {}", CLIENT_AUTH_TYPES.join(", ")),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match (auth, &t.client_ca_file) {
        ("NoClientCert", None) => builder.with_no_client_auth(),
        ("NoClientCert", Some(_)) => {
            return Err((
                "client_ca_file",
                "is only used with `client_auth_type` VerifyClientCertIfGiven or RequireAndVerifyClientCert".into(),
            ));
        }
        (_, None) => return Err(("client_ca_file", format!("required with `client_auth_type: {auth}`"))),
        (_, Some(ca)) => {
            let ca = resolve(ca);
            let pem = read_ca_bundle(&ca).map_err(|e| ("client_ca_file", e))?;
            let roots = root_store(&pem.0).map_err(|e| ("client_ca_file", format!("`{}`: {e}", ca.display())))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| ("client_ca_file", format!("`{}`: {e}", ca.display())))?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, der).map_err(|e| {
        (
            "key_file",
            format!("`{}` does not go with `{}`: {e}", key.display(), cert.display()),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether `header` (an `Authorization` value) names one of `users` with the
/// right password. bcrypt is slow on purpose (tens of milliseconds at cost
/// 10), so a success is remembered, keyed by a digest of the user, the
/// password and the hash (a changed hash or password misses), as the
/// toolkit caches; an unknown user costs the same work as a known one, so
/// the time taken does not tell which names exist. Blocking: call it off
/// the async workers.
pub fn authorised(users: &BTreeMap<String, String>, header: Option<&str>) -> bool {
    use base64::Engine;
    use sha2::Digest;
    use std::sync::{Mutex, OnceLock};
    static VERIFIED: OnceLock<Mutex<std::collections::HashSet<[u8; 32]>>> = OnceLock::new();
    let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(pair) = String::from_utf8(decoded) else { return false };
    let Some((user, password)) = pair.split_once(':') else {
        return false;
    };
    // An unknown user is checked against a real user's hash (and refused
    // whatever the result): the same cost as a known one.
    let (hash, known) = match users.get(user) {
        Some(h) => (h.as_str(), true),
        None => match users.values().next() {
            Some(h) => (h.as_str(), false),
            None => return false,
        },
    };
    let key: [u8; 32] = sha2::Sha256::new()
        .chain_update(user)
        .chain_update([0])
        .chain_update(password)
        .chain_update([0])
        .chain_update(hash)
        .finalize()
        .into();
    let cache = VERIFIED.get_or_init(Mutex::default);
    if known && cache.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return true;
    }
    let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
    if ok {
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a flood of distinct good passwords cannot grow it.
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(key);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_checks_the_bcrypt_hash_and_remembers_a_success() {
        use base64::Engine;
        let users = BTreeMap::from([("admin".to_string(), bcrypt::hash("s3cret", 4).unwrap())]);
        let basic = |u: &str, p: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
        assert!(authorised(&users, Some(&basic("admin", "s3cret"))));
        assert!(authorised(&users, Some(&basic("admin", "s3cret"))), "from the cache");
        assert!(!authorised(&users, Some(&basic("admin", "wrong"))));
        assert!(!authorised(&users, Some(&basic("nobody", "s3cret"))));
        assert!(!authorised(&users, Some("Bearer s3cret")));
        assert!(!authorised(&users, Some("Basic !!!")));
        assert!(!authorised(&users, None));
        // The same password against a changed hash is checked afresh.
        let changed = BTreeMap::from([("admin".to_string(), bcrypt::hash("other", 4).unwrap())]);
        assert!(!authorised(&changed, Some(&basic("admin", "s3cret"))));
    }
}
