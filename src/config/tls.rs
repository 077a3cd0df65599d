//! `[mqtt.tls]` and `[output.tls]` -> the rustls client configuration of an MQTT connection
//! or of the store's HTTP client. It lives with the config because `validate` builds it too
//! ([`super::files`]), so it refuses exactly what the source and the uplink would.
//!
//! The crypto provider is chosen explicitly (ring, the one reqwest also uses) instead of the
//! process default: with two providers linked in, rustls cannot pick one by itself and panics
//! at the first handshake. PEM files are read bounded (see [`crate::fs_limits`]), and a
//! relative name is looked up in `$CREDENTIALS_DIRECTORY` first, like the secrets: a client
//! key is one, and systemd's `LoadCredential=` is how a unit gets it without making it
//! readable to the service user on disk. Errors name files, never their content.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::TlsConfig;
use crate::fs_limits::{self, MAX_PEM_BYTES};

/// Why no client config could be built: the `tls` key at fault and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsProblem {
    /// `ca_file`, `client_cert_file` or `client_key_file`.
    pub key: &'static str,
    pub message: String,
}

pub(super) fn problem(key: &'static str, message: impl Into<String>) -> TlsProblem {
    TlsProblem {
        key,
        message: message.into(),
    }
}

impl TlsConfig {
    /// Builds the client config: the CA file's roots (or the system store), optional client
    /// cert; an error names the key of the file at fault.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsProblem> {
        build(self)
    }
}

fn build(cfg: &TlsConfig) -> Result<Arc<ClientConfig>, TlsProblem> {
    let roots = match &cfg.ca_file {
        Some(path) => file_roots(path)?,
        None => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // One unusable system certificate must not prevent using the others.
                let _ = roots.add(cert);
            }
            roots
        }
    };
    if roots.is_empty() {
        return Err(problem(
            "ca_file",
            "no CA certificates to trust in the system store; set ca_file",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("ca_file", format!("protocol versions: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read_pem(cert, "client_cert_file")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| problem("client_cert_file", format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(problem(
                    "client_cert_file",
                    format!("{}: no PEM certificate in it", cert.display()),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(&read_pem(key, "client_key_file")?)
                .map_err(|e| problem("client_key_file", key_error(key, &e)))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| problem("client_key_file", format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(problem(
                "client_cert_file",
                "client_cert_file and client_key_file go together",
            ))
        }
        (None, Some(_)) => {
            return Err(problem(
                "client_key_file",
                "client_cert_file and client_key_file go together",
            ))
        }
    };
    Ok(Arc::new(config))
}

/// The CA file's certificates; a file without any is refused rather than trusting nothing.
fn file_roots(path: &Path) -> Result<RootCertStore, TlsProblem> {
    let bytes = read_pem(path, "ca_file")?;
    let at = |e: &dyn std::fmt::Display| problem("ca_file", format!("{}: {e}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        roots.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
    }
    if roots.is_empty() {
        return Err(at(&"no PEM certificate in it"));
    }
    Ok(roots)
}

/// What is wrong with a key file, by kind only: a PEM error can quote a line or a byte of
/// the file, and no part of a key may reach a log.
pub(super) fn key_error(path: &Path, e: &pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => format!("{}: no PEM private key in it", path.display()),
        _ => format!("{}: not a valid PEM private key", path.display()),
    }
}

pub(super) fn read_pem(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsProblem> {
    let path = fs_limits::credential_path(path);
    fs_limits::read(&path, MAX_PEM_BYTES, "a PEM file")
        .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))
}
