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
//! when the configuration loads ([`crate::config::tls`]), and the URL's
//! `sslmode` parsed there too ([`parse_url`]); libpq's own `sslrootcert`,
//! `sslcert` and `sslkey` URL parameters are refused with a pointer to
//! them, so that one file is named in one place.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::tls::{parse_certificates, root_store};
use crate::relay::config::{SslMode, StoreConfig, StoreTls, parse_url};

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
        Some(pem) => Some(Arc::new(root_store(&pem.0).map_err(|e| format!("`ca_file`: {e}"))?)),
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
            let certs = parse_certificates(&chain.0).map_err(|e| format!("`cert_file`: {e}"))?;
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
