//! Delivering notifications to the configured sinks (issue 21): one HTTPS POST per
//! `Action::Deliver`, with the sink's timeout, its CA and its `Authorization` file. What to
//! send and when to try again is the core's (`engine::deliveries`); this only sends and
//! classifies the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::errors::ShellError;
use crate::config::sinks::SinkConfig;
use crate::core::port::{ApiError, ApiErrorKind, Outcome};

/// Largest `Authorization` file read.
const MAX_AUTHORIZATION_BYTES: u64 = 8 * 1024;

struct Sink {
    config: SinkConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// The configured sinks, ready to deliver to.
#[derive(Clone, Default)]
pub struct Sinks(Arc<Vec<Sink>>);

impl Sinks {
    /// A client per sink, trusting the system's CAs and the sink's `caFile`.
    pub fn new(configs: &[SinkConfig]) -> Result<Sinks, ShellError> {
        let native = rustls_native_certs::load_native_certs();
        let mut sinks = Vec::new();
        for config in configs {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(native.certs.iter().cloned());
            if let Some(ca) = &config.ca_file {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| {
                        ShellError::Sink(format!(
                            "sink {}: caFile {}: {e}",
                            config.name,
                            ca.display()
                        ))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ShellError::Sink(format!(
                        "sink {}: caFile {} holds no usable certificate",
                        config.name,
                        ca.display()
                    )));
                }
            }
            if roots.is_empty() {
                return Err(ShellError::Sink(format!(
                    "sink {}: no CA to verify it with (no system CAs found; set caFile)",
                    config.name
                )));
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ShellError::Sink(format!("sink {}: TLS: {e}", config.name)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .build();
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(2)
                .build(connector);
            sinks.push(Sink {
                config: config.clone(),
                client,
            });
        }
        Ok(Sinks(Arc::new(sinks)))
    }

    /// The name of sink `index`, for logs.
    pub fn name(&self, index: usize) -> &str {
        self.0.get(index).map_or("?", |s| s.config.name.as_str())
    }

    /// POSTs `body` to sink `index`: `Done` for a 2xx, else a failure classified for the core's
    /// retry decision.
    pub async fn deliver(
        &self,
        index: usize,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Outcome {
        let Some(sink) = self.0.get(index) else {
            return failed(ApiErrorKind::Invalid, format!("no sink {index}"));
        };
        let mut request = http::Request::post(&sink.config.url)
            .header(http::header::CONTENT_TYPE, content_type)
            .header("Idempotency-Key", key)
            .header(
                http::header::USER_AGENT,
                concat!("image-scanner/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(path) = &sink.config.authorization_file {
            match read_authorization(path) {
                Ok(value) => request = request.header(http::header::AUTHORIZATION, value),
                // Perhaps a Secret not mounted yet: tried again.
                Err(e) => return failed(ApiErrorKind::Unknown, e),
            }
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return failed(ApiErrorKind::Invalid, format!("request: {e}")),
        };
        let timeout = sink.config.timeout;
        match tokio::time::timeout(timeout, sink.client.request(request)).await {
            Err(_) => failed(
                ApiErrorKind::Unknown,
                format!("no answer within {}s", timeout.as_secs()),
            ),
            Ok(Err(e)) => failed(ApiErrorKind::Unknown, transport_error(&e)),
            Ok(Ok(response)) => classify(response.status()),
        }
    }
}

/// A receiver's answer as the core's retry decision sees it.
fn classify(status: http::StatusCode) -> Outcome {
    let kind = match status.as_u16() {
        200..=299 => return Outcome::Done,
        408 | 425 | 429 => ApiErrorKind::Throttled,
        401 | 403 => ApiErrorKind::Forbidden,
        404 | 410 => ApiErrorKind::NotFound,
        400..=499 => ApiErrorKind::Invalid,
        _ => ApiErrorKind::ServerError,
    };
    failed(kind, format!("the receiver answered {status}"))
}

fn transport_error(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// A small local file (a mounted Secret): read in place, like the kubeconfig.
fn read_authorization(path: &std::path::Path) -> Result<http::HeaderValue, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_AUTHORIZATION_BYTES).read_to_end(&mut bytes))
        .map_err(|e| format!("authorizationFile {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    http::HeaderValue::from_str(text.trim())
        .map_err(|_| format!("authorizationFile {}: not a header value", path.display()))
}

fn failed(kind: ApiErrorKind, message: String) -> Outcome {
    Outcome::Failed(ApiError { kind, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_for_the_retry_decision() {
        let kind = |code: u16| match classify(http::StatusCode::from_u16(code).expect("code")) {
            Outcome::Failed(e) => Some(e.kind),
            _ => None,
        };
        assert_eq!(kind(200), None);
        assert_eq!(kind(202), None);
        assert_eq!(kind(429), Some(ApiErrorKind::Throttled));
        assert_eq!(kind(503), Some(ApiErrorKind::ServerError));
        assert_eq!(kind(404), Some(ApiErrorKind::NotFound));
        assert_eq!(kind(400), Some(ApiErrorKind::Invalid));
        assert_eq!(kind(401), Some(ApiErrorKind::Forbidden));
    }
}
