//! How the uplink reaches the store: the HTTP client with the `[output.tls]` roots and client
//! certificate and the `proxy`, and what a failed TLS connection means ([`TlsFailure`]).
//!
//! The TLS config is the one `validate` builds ([`crate::config::TlsConfig::client_config`]),
//! handed to reqwest whole, so the store and the MQTT brokers trust and authenticate alike.
//! Without `[output.tls]` reqwest's own config (the system roots) is used, as before.
//!
//! A TLS refusal is told apart from an outage because only the operator can fix it: it is
//! retried slowly, counted by reason and logged at ERROR, and the data stays in the spool.
//! nginx, the usual TLS front of a store, does not fail the handshake when a client
//! certificate is missing or untrusted: it answers `400` with a page saying so. That 400 is
//! about the connection, not the data, and must not send points to the dead-letter file.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Proxy, Url};
use rustls::AlertDescription as Alert;

use super::influx::{redact, SinkError};
use crate::config::{OutputConfig, PROXY_NONE};

/// Why a TLS connection to the store failed, as far as the operator can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The store's certificate is not trusted: unknown CA (`ca_file`), wrong name, expired.
    ServerCertificate,
    /// The store wants a client certificate, or refused the one sent (`client_cert_file`).
    ClientCertificate,
    /// Any other TLS failure (no common protocol version or cipher, plain HTTP on the port).
    Handshake,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 3] = [
        TlsFailure::ServerCertificate,
        TlsFailure::ClientCertificate,
        TlsFailure::Handshake,
    ];

    /// The `reason` label of `citysense_uplink_tls_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::ServerCertificate => "server_certificate",
            TlsFailure::ClientCertificate => "client_certificate",
            TlsFailure::Handshake => "handshake",
        }
    }

    /// What the operator should do, for the log line.
    pub fn advice(self) -> &'static str {
        match self {
            TlsFailure::ServerCertificate => "the store's TLS certificate is not trusted: set output.tls.ca_file to the CA that signed it, or check the URL's host name and the certificate's dates; data kept in spool",
            TlsFailure::ClientCertificate => "the store requires a client certificate or refused ours: check output.tls.client_cert_file and client_key_file, and that the store trusts their CA; data kept in spool",
            TlsFailure::Handshake => "TLS handshake with the store failed; data kept in spool",
        }
    }
}

/// The store's HTTP client: timeouts, redirect policy, TLS and proxy from `cfg`.
pub(super) fn client(
    cfg: &OutputConfig,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, SinkError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .connect_timeout(Duration::from_secs(cfg.timeout_secs.min(10)))
        .user_agent(concat!("citysense/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects);
    if let Some(tls) = &cfg.tls {
        let config = tls
            .client_config()
            .map_err(|p| SinkError::Config(format!("tls.{}: {}", p.key, p.message)))?;
        builder = builder.use_preconfigured_tls(Arc::unwrap_or_clone(config));
    }
    builder = match cfg.proxy.as_deref() {
        None => builder,
        Some(PROXY_NONE) => builder.no_proxy(),
        Some(proxy) => {
            // Neither error names the URL: it may hold the proxy's password.
            let url = Url::parse(proxy)
                .map_err(|e| SinkError::Config(format!("proxy is not a valid URL: {e}")))?;
            let p = Proxy::all(url.clone())
                .map_err(|_| SinkError::Config("proxy is not a usable proxy URL".into()))?;
            tracing::info!(proxy = %redact(&url), "store requests go through the configured proxy");
            builder.proxy(p)
        }
    };
    Ok(builder.build()?)
}

/// The TLS failure somewhere in `e`'s chain of causes, if the request failed in TLS.
pub fn tls_failure(e: &(dyn Error + 'static)) -> Option<TlsFailure> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(of_rustls(r));
    }
    // tokio-rustls wraps the rustls error in an io::Error, whose `source()` skips what it
    // wraps: look inside it too.
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| tls_failure(inner));
    wrapped.or_else(|| e.source().and_then(tls_failure))
}

fn of_rustls(e: &rustls::Error) -> TlsFailure {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(_) | E::NoCertificatesPresented | E::InvalidCertRevocationList(_) => {
            TlsFailure::ServerCertificate
        }
        E::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied,
        ) => TlsFailure::ClientCertificate,
        _ => TlsFailure::Handshake,
    }
}

/// Whether an HTTP answer is a TLS front refusing the client certificate: nginx's 400 pages
/// for a missing or failed one, and its own codes 495/496 where an `error_page` passes them.
pub fn client_certificate_refused(status: u16, body: &str) -> bool {
    match status {
        495 | 496 => true,
        400 => {
            body.contains("No required SSL certificate was sent")
                || body.contains("The SSL certificate error")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_what_the_operator_fixes() {
        let unknown_ca = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown_ca);
        // Wrapped the way tokio-rustls and hyper hand it up.
        let wrapped = std::io::Error::other(io);
        assert_eq!(tls_failure(&wrapped), Some(TlsFailure::ServerCertificate));
        let alert = rustls::Error::AlertReceived(Alert::CertificateRequired);
        assert_eq!(tls_failure(&alert), Some(TlsFailure::ClientCertificate));
        let other = rustls::Error::AlertReceived(Alert::ProtocolVersion);
        assert_eq!(tls_failure(&other), Some(TlsFailure::Handshake));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(&refused), None);
    }

    #[test]
    fn nginx_client_certificate_pages_are_recognised() {
        let missing =
            "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>";
        assert!(client_certificate_refused(400, missing));
        assert!(client_certificate_refused(
            400,
            "<center>The SSL certificate error</center>"
        ));
        assert!(client_certificate_refused(496, ""));
        assert!(!client_certificate_refused(
            400,
            "{\"error\":\"unable to parse 'x': missing fields\"}"
        ));
        assert!(!client_certificate_refused(403, missing));
    }
}
