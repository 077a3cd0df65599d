//! rustls client configuration for MQTT over TLS.
//!
//! The crypto provider is chosen explicitly (ring, the one reqwest also uses) instead of the
//! process default: with two providers linked in, rustls cannot pick one by itself and panics
//! at the first handshake.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsConfig;
use crate::sources::SourceError;

/// Builds the client config: the CA file's roots (or the system store), optional client cert.
pub fn client_config(cfg: &TlsConfig) -> Result<Arc<ClientConfig>, SourceError> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| SourceError::Tls(format!("{what}: {e}"));
    let mut roots = RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(&path.display().to_string(), &e))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(&path.display().to_string(), &e))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(&path.display().to_string(), &e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unusable system certificate must not prevent using the others.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(SourceError::Tls("no CA certificates to trust".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", &e))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(&cert.display().to_string(), &e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_err(&key.display().to_string(), &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err("client certificate", &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(SourceError::Tls(
                "client_cert_file and client_key_file go together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}
