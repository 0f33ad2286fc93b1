//! TLS to PostgreSQL: libpq's `sslmode`, over the project's rustls (ring).
//!
//! A managed PostgreSQL (RDS, Cloud SQL, Azure) refuses plain connections,
//! and without TLS the password and every notification cross the network
//! in clear. The URL's `sslmode` says what a replica demands, as libpq
//! reads it:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS | chain, when `ca_file` is given; else not |
//! | `require` | always (a server without TLS is refused) | chain, when `ca_file` is given; else not |
//! | `verify-ca` | always | chain against `ca_file` |
//! | `verify-full` | always | chain against `ca_file`, and the URL's host in the certificate |
//!
//! tokio-postgres parses only `disable`, `prefer` and `require` (its
//! connector decides what is checked): the `verify-*` modes are taken out of
//! the URL here, the driver told `require`, and the rustls verifier chosen
//! accordingly. One difference from libpq: when the TLS handshake under
//! `prefer` fails, libpq tries again in clear; tokio-postgres reports the
//! failure. A server offering TLS that lookout cannot complete is a
//! configuration to fix, not a reason to send the password in clear.
//!
//! The CA bundle and the client certificate (`ca_file`, `cert_file`,
//! `key_file`, named as the Redis probe names them) are read and checked
//! when the configuration loads ([`crate::config::tls`]); libpq's own
//! `sslrootcert`, `sslcert` and `sslkey` URL parameters are refused with a
//! pointer to them, so that one file is named in one place.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Secret;
use crate::config::tls::Pem;
use crate::relay::config::StoreConfig;

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
    /// are the connector's.
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

/// The driver's configuration and the connector of `cfg`: what the pool
/// and the leader's session both connect with.
pub fn connect_config(cfg: &StoreConfig) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let (config, mode) = parse_url(cfg.url.expose())?;
    Ok((config, connector(mode, &cfg.tls)?))
}

/// The connector for `mode` and `tls`, given to the pool and to the
/// leader's session alike. With `sslmode=disable` it is never used.
pub fn connector(mode: SslMode, tls: &StoreTls) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem.0) {
                let cert = cert.map_err(|e| format!("`ca_file`: not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("`ca_file`: a certificate is not usable as a CA: {e}"))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("`ca_file`: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(format!("`sslmode={}` needs `relay.store.ca_file`", mode.name()));
        }
        // `prefer` or `require` without a CA, which libpq does not check.
        None => Arc::new(Unchecked(provider)),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client {
        Some((chain, key)) => {
            let certs = CertificateDer::pem_slice_iter(&chain.0)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("`cert_file`: not valid PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|_| "`key_file`: no PEM private key".to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("`key_file` does not go with `cert_file`: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    // As libpq 17 does: required by a server taking TLS at once
    // (`sslnegotiation=direct`), harmless to the others.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

/// Checks the chain and not the name (`verify-ca`, and `prefer` or
/// `require` with a CA). webpki checks the chain, its dates and revocation
/// before the name, so a name mismatch is the only failure left to accept.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`prefer` and `require` without a CA, as libpq
/// without a root certificate): the session is encrypted against whoever
/// only listens, not against one who poses as the server. The handshake's
/// signatures are still checked, so the session's keys are the
/// certificate's holder's.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What to change, for the TLS failures whose driver's words do not say
/// it; `text` is [`super::postgres::describe`]'s.
pub fn hint(text: &str) -> Option<&'static str> {
    const HINTS: [(&str, &str); 8] = [
        (
            "UnknownIssuer",
            "the server's certificate is not signed by a CA of `relay.store.ca_file`",
        ),
        (
            // A CA of the same name as the certificate's issuer, and not it.
            "BadSignature",
            "the server's certificate is not signed by a CA of `relay.store.ca_file`",
        ),
        (
            "not valid for name",
            "the server's certificate does not name the URL's host, which `sslmode=verify-full` checks: connect by a name the certificate holds",
        ),
        (
            "NotValidForName",
            "the server's certificate does not name the URL's host, which `sslmode=verify-full` checks: connect by a name the certificate holds",
        ),
        (
            "server does not support TLS",
            "the server has TLS off (`ssl = off`) and the URL's `sslmode` requires it",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate: give `relay.store.cert_file` and `key_file`",
        ),
        (
            "requires a valid client certificate",
            "the server requires a client certificate: give `relay.store.cert_file` and `key_file`",
        ),
        (
            "no encryption",
            "the server accepts this user only over TLS: set `sslmode=require` or stricter in the URL",
        ),
    ];
    HINTS.iter().find(|(needle, _)| text.contains(needle)).map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

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
