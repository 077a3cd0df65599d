//! `[metrics.tls]` -> the rustls server configuration of the HTTP endpoint (status page,
//! API, metrics). Built by `validate` too ([`super::files`]), so it refuses exactly what `run`
//! would. Same rules as the client side (`tls.rs`): the ring provider chosen explicitly, PEM
//! files read bounded, relative names looked up in `$CREDENTIALS_DIRECTORY` first, errors
//! naming files and never their content.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::Deserialize;

use super::tls::{key_error, problem, read_pem, TlsProblem};

/// `[metrics.tls]`: serve HTTPS with this certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, the server's certificate first. Required.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate. Required.
    pub key_file: PathBuf,
}

impl ServerTlsConfig {
    /// The server config (HTTP/1.1 only); an error names the key of the file at fault.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsProblem> {
        let cert = &self.cert_file;
        let chain = CertificateDer::pem_slice_iter(&read_pem(cert, "cert_file")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| problem("cert_file", format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            let msg = format!("{}: no PEM certificate in it", cert.display());
            return Err(problem("cert_file", msg));
        }
        let key = PrivateKeyDer::from_pem_slice(&read_pem(&self.key_file, "key_file")?)
            .map_err(|e| problem("key_file", key_error(&self.key_file, &e)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| problem("cert_file", format!("protocol versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| problem("key_file", format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
