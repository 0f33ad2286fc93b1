//! TLS files named in configuration: CA bundles, client certificates and
//! their keys, all PEM. Each is read and parsed when the configuration
//! loads, so a wrong path or a file of the wrong kind is an error at its
//! key, not a failed connection at the first run. Errors name the path,
//! never the content; a private key is read as a secret.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Secret;
use super::value::read_secret;

/// Largest certificate file read. A CA bundle may be large (a cloud
/// provider's regional bundle is about 170 KiB, the system's about 220 KiB);
/// the cap keeps a wrong path (a log, `/dev/zero`) from filling memory.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// The bytes of a PEM file, checked; printed as its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem(pub Vec<u8>);

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<PEM, {} bytes>", self.0.len())
    }
}

/// The PEM certificates of `path`, at least one.
pub fn read_certificates(path: &Path) -> Result<Pem, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("`{}` is not a regular file", path.display()));
    }
    if meta.len() > MAX_PEM_FILE_BYTES {
        return Err(format!("`{}` is larger than {} KiB", path.display(), MAX_PEM_FILE_BYTES / 1024));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let certs = parse_certificates(&pem).map_err(|e| format!("`{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(Pem(pem))
}

/// A CA bundle: [`read_certificates`], each one usable as a trust anchor.
pub fn read_ca_bundle(path: &Path) -> Result<Pem, String> {
    let pem = read_certificates(path)?;
    root_store(&pem.0).map_err(|e| format!("`{}`: {e}", path.display()))?;
    Ok(pem)
}

/// A client certificate and its private key (mutual TLS): the key is read
/// as a secret file, and the pair must be one rustls accepts (a key it can
/// sign with, matching the certificate).
pub fn read_client_identity(cert: &Path, key: &Path) -> Result<(Pem, Secret), (&'static str, String)> {
    let chain = read_certificates(cert).map_err(|e| ("cert_file", e))?;
    let key_pem = read_secret(&None, &Some(key.to_path_buf()), "key")
        .map_err(|e| ("key_file", e))?
        .ok_or(("key_file", "no key".to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes()).map_err(|_| {
        (
            "key_file",
            format!("`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", key.display()),
        )
    })?;
    let certs = parse_certificates(&chain.0).map_err(|e| ("cert_file", e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert_file", e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(certs, der)
        .map_err(|e| {
            (
                "key_file",
                format!("`{}` does not go with `{}`: {e}", key.display(), cert.display()),
            )
        })?;
    Ok((chain, key_pem))
}

/// The certificates of a PEM bundle already read (and checked) by
/// [`read_certificates`].
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))
}

/// The trust anchors of a CA bundle already read by [`read_ca_bundle`].
pub fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in parse_certificates(pem)? {
        store.add(cert).map_err(|e| format!("a certificate is not usable as a CA: {e}"))?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_the_wrong_kind_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("text"), "not a certificate\n").unwrap();
        std::fs::write(
            p("broken"),
            "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(p("key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        assert!(read_ca_bundle(&p("missing")).unwrap_err().contains("cannot read"));
        assert!(read_ca_bundle(&p("text")).unwrap_err().contains("no PEM certificate"));
        assert!(read_ca_bundle(&p("broken")).unwrap_err().contains("not valid PEM"));
        assert!(read_ca_bundle(dir.path()).unwrap_err().contains("not a regular file"));
        assert!(read_ca_bundle(Path::new("/dev/zero")).unwrap_err().contains("not a regular file"));
        let (key, e) = read_client_identity(&p("text"), &p("key")).unwrap_err();
        assert_eq!(key, "cert_file", "{e}");
    }
}
