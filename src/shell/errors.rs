//! Errors of the shell, and the classification of API errors the core decides on.

use crate::core::port::{ApiError, ApiErrorKind};

/// Longest server message passed on to the core (conditions and logs bound it further).
const MAX_MESSAGE: usize = 2048;

/// Why the operator could not start or had to stop; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    ClientConfig(String),
    /// A configured workload resource does not exist or is not namespaced.
    #[error("workload resource {resource:?}: {problem}")]
    WorkloadResource {
        /// The `resource.group` as configured.
        resource: String,
        /// What is wrong.
        problem: String,
    },
    /// API discovery failed.
    #[error("API discovery failed: {0}")]
    Discovery(String),
    /// The ContainerImageScan CRD is not installed.
    #[error("the ContainerImageScan CRD (containerimagescans.stas.statnett.no) is not installed")]
    CrdMissing,
    /// An HTTP endpoint could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Leader election could not start.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// A notification sink cannot be set up (its CA file, TLS).
    #[error("notification sink: {0}")]
    Sink(String),
}

impl ShellError {
    /// Whether restarting the process could help (start-up problems of the environment) as
    /// opposed to a configuration that must be fixed first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ShellError::ClientConfig(_) | ShellError::Discovery(_) | ShellError::LeaderElection(_)
        )
    }
}

fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Classifies an HTTP status and message from the API server.
pub fn classify_status(code: u16, reason: &str, message: &str) -> ApiErrorKind {
    let lower = message.to_ascii_lowercase();
    match code {
        404 => ApiErrorKind::NotFound,
        409 if reason == "AlreadyExists" => ApiErrorKind::AlreadyExists,
        409 => ApiErrorKind::Conflict,
        410 => ApiErrorKind::Gone,
        413 => ApiErrorKind::TooLarge,
        429 => ApiErrorKind::Throttled,
        // etcd's limit surfaces as a 500 from the API server.
        500 if lower.contains("request is too large") || lower.contains("resourceexhausted") => {
            ApiErrorKind::TooLarge
        }
        403 if lower.contains("because it is being terminated")
            || reason == "NamespaceTerminating" =>
        {
            ApiErrorKind::NamespaceTerminating
        }
        401 | 403 => ApiErrorKind::Forbidden,
        400 | 422 => ApiErrorKind::Invalid,
        c if c >= 500 => ApiErrorKind::ServerError,
        _ => ApiErrorKind::Invalid,
    }
}

/// Classifies a kube client error.
pub fn classify(err: &kube::Error) -> ApiError {
    match err {
        kube::Error::Api(status) => ApiError {
            kind: classify_status(status.code, &status.reason, &status.message),
            message: bounded(&status.message),
        },
        other => ApiError {
            // Transport errors: the request may or may not have reached the server.
            kind: ApiErrorKind::Unknown,
            message: bounded(&other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_statuses_the_core_distinguishes() {
        let cases = [
            (404, "NotFound", "", ApiErrorKind::NotFound),
            (409, "AlreadyExists", "", ApiErrorKind::AlreadyExists),
            (
                409,
                "Conflict",
                "the object has been modified",
                ApiErrorKind::Conflict,
            ),
            (
                410,
                "Expired",
                "too old resource version",
                ApiErrorKind::Gone,
            ),
            (413, "RequestEntityTooLarge", "", ApiErrorKind::TooLarge),
            (
                500,
                "InternalError",
                "etcdserver: request is too large",
                ApiErrorKind::TooLarge,
            ),
            (
                500,
                "InternalError",
                "rpc error: code = ResourceExhausted",
                ApiErrorKind::TooLarge,
            ),
            (500, "InternalError", "boom", ApiErrorKind::ServerError),
            (503, "ServiceUnavailable", "", ApiErrorKind::ServerError),
            (429, "TooManyRequests", "", ApiErrorKind::Throttled),
            (422, "Invalid", "", ApiErrorKind::Invalid),
            (403, "Forbidden", "forbidden", ApiErrorKind::Forbidden),
            (
                403,
                "Forbidden",
                "unable to create new content in namespace x because it is being terminated",
                ApiErrorKind::NamespaceTerminating,
            ),
        ];
        for (code, reason, message, kind) in cases {
            assert_eq!(
                classify_status(code, reason, message),
                kind,
                "{code} {reason}"
            );
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_MESSAGE + "…".len());
    }
}
