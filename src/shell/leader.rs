//! Leader election with a Lease (id `398aa7bc.statnett.no`, as the Go operator), so only one
//! replica writes. Leadership changes reach the engine as observations; the engine stops issuing
//! writes the moment it is told it lost the lease — and, not to depend on being told, the
//! moment the lease it last saw renewed has run out (`Observation::LeaseValidUntil`, from a
//! watch of the Lease): a paused process that wakes up after another took over writes
//! nothing, though the election tells it only later.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::mpsc;

use super::errors::ShellError;
use crate::config::OperatorConfig;
use crate::core::port::Observation;
use crate::core::time::Timestamp;

/// Name of the Lease, shared with the Go operator so the two never run side by side.
pub const LEASE_NAME: &str = "398aa7bc.statnett.no";
/// Seconds a lease is valid after its last renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry when the holder renews.
const GRACE_SECONDS: u64 = 5;
/// The engine stops this long before the lease it holds expires: a request decided just before
/// has that long to land before another replica may take over.
const MARGIN_SECONDS: u64 = 3;

/// A running election; release it on shutdown so a successor takes over at once.
pub struct Election {
    leading: tokio::sync::watch::Receiver<bool>,
    /// Forwards leadership and, in a task it owns, the Lease's renewals.
    forward: tokio::task::JoinHandle<()>,
    task: tokio::task::JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

/// How long releasing the lease may take on shutdown before we leave it to expire.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Election {
    /// Gives up the lease (if held) and waits for the manager to stop. The manager releases
    /// when every receiver of its channel is gone, so the forwarding task goes first.
    pub async fn release(self) {
        self.forward.abort();
        let _ = self.forward.await;
        drop(self.leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "lease release failed; it expires on its own")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task ended abnormally"),
            Err(_) => tracing::warn!("lease release timed out; it expires on its own"),
        }
    }
}

/// This replica's identity: the pod name when running in a cluster.
pub fn identity() -> Option<String> {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
}

/// Namespace of the Lease: the operator's own namespace if known, else the scan namespace.
pub fn lease_namespace(config: &OperatorConfig) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| config.scan_job_namespace.clone())
}

/// Starts the election (its Lease in `namespace`) and forwards every change of leadership to
/// the engine. Returns without waiting for the engine: it may not take observations yet.
pub async fn start(
    client: Client,
    namespace: &str,
    tx: mpsc::Sender<Observation>,
) -> Result<Election, ShellError> {
    let id = identity().unwrap_or_else(|| format!("image-scanner-{}", std::process::id()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(id.clone())
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(format!("image-scanner-operator-{id}"))
        .build()
        .await
        .map_err(|e| ShellError::LeaderElection(e.to_string()))?;
    let (leading, task) = manager.watch().await;
    let forward = tokio::spawn(forward_leadership(leading.clone(), leases, id, tx));
    Ok(Election {
        leading,
        forward,
        task,
    })
}

/// Tells the engine every change of leadership, and, in a task it owns, the Lease's
/// renewals. Its first word is that no lease is valid yet: before any leadership, and from
/// this task, so that the election's start never waits for the engine (a full channel would
/// hold it until the engine reads, and the engine may not run yet).
async fn forward_leadership(
    mut changes: tokio::sync::watch::Receiver<bool>,
    leases: Api<Lease>,
    id: String,
    tx: mpsc::Sender<Observation>,
) {
    let nothing_valid = Observation::LeaseValidUntil {
        until: Timestamp::EPOCH,
    };
    if tx.send(nothing_valid).await.is_err() {
        return;
    }
    // Renewals only after it (none is overwritten by it), and stopped with this task.
    let _renewals = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(forward_renewals(
        leases,
        id,
        tx.clone(),
    )));
    loop {
        let leading = *changes.borrow_and_update();
        tracing::info!(leading, "leadership changed");
        if tx.send(Observation::Leadership { leading }).await.is_err() {
            return;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Watches the Lease and tells the engine, at each renewal by `id`, until when it is valid. A
/// broken watch sends nothing, so the engine stops at the last validity it knows: the safe
/// side.
async fn forward_renewals(leases: Api<Lease>, id: String, tx: mpsc::Sender<Observation>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    // With back-off: without it the watcher retries a refused or unreachable API server at
    // once, in a loop (make chaos saw 10,000 attempts a second while kube-apiserver restarted).
    let mut stream = std::pin::pin!(watcher(leases, config).default_backoff().applied_objects());
    while let Some(event) = stream.next().await {
        let Ok(lease) = event else {
            continue;
        };
        let until = valid_until(&lease, &id);
        if tx
            .send(Observation::LeaseValidUntil { until })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The end of `lease`'s validity for holder `id` (renewal plus duration, less the margin), by
/// the holder's clock (it wrote `renewTime`); `EPOCH` (nothing valid) when `id` does not hold
/// it: a replica whose renewal another one's take-over overwrote stops at once, not when its
/// own renewal runs out (`make chaos-small` seed 900454539: two take-over and renewal writes
/// waited in a stopped kube-apiserver, the renewal was carried out first, and the old
/// holder wrote 111 times in the 10 s before its election told it).
fn valid_until(lease: &Lease, id: &str) -> Timestamp {
    let Some(spec) = lease.spec.as_ref() else {
        return Timestamp::EPOCH;
    };
    if spec.holder_identity.as_deref() != Some(id) {
        return Timestamp::EPOCH;
    }
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0.as_millisecond()) else {
        return Timestamp::EPOCH;
    };
    let seconds = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(LEASE_SECONDS);
    Timestamp(renewed).plus(std::time::Duration::from_secs(
        seconds.saturating_sub(MARGIN_SECONDS),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A client whose API server has no Lease at first, creates the one posted, and answers
    /// nothing after that (the manager's renewals, the watch of the Lease wait for ever).
    fn lease_server() -> Client {
        let asked = Arc::new(AtomicBool::new(false));
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let asked = asked.clone();
            async move {
                let post = request.method() == http::Method::POST;
                let first_get = request.method() == http::Method::GET
                    && !request.uri().to_string().contains("watch")
                    && !asked.swap(true, Ordering::SeqCst);
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let (status, text) = if post {
                    let mut lease: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    lease["metadata"]["uid"] = "uid-1".into();
                    lease["metadata"]["resourceVersion"] = "1".into();
                    (201, lease.to_string())
                } else if first_get {
                    let gone = serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "code": 404, "reason": "NotFound", "message": "not found",
                    });
                    (404, gone.to_string())
                } else {
                    return futures::future::pending().await;
                };
                let response = http::Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(kube::client::Body::from(text.into_bytes()))
                    .expect("response");
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn the_election_starts_while_the_engine_takes_no_observation_yet() {
        // The watches' first lists filled the channel before the engine runs.
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(Observation::Leadership { leading: false })
            .await
            .expect("a place");
        let started = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            start(lease_server(), "scans", tx),
        )
        .await;
        assert!(
            matches!(started, Ok(Ok(_))),
            "the start waited for the engine to read"
        );
        // When it reads: nothing is valid yet, said before any leadership.
        let _filler = rx.recv().await;
        assert!(matches!(
            rx.recv().await,
            Some(Observation::LeaseValidUntil { until }) if until == Timestamp::EPOCH
        ));
        assert!(matches!(
            rx.recv().await,
            Some(Observation::Leadership { leading: false })
        ));
    }

    #[test]
    fn a_lease_is_valid_for_its_holder_until_its_duration_less_the_margin() {
        let renewed: jiff::Timestamp = "2026-12-05T10:00:00Z".parse().expect("time");
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert_eq!(
            valid_until(&lease, "a"),
            Timestamp(renewed.as_millisecond() + 12_000)
        );
        assert_eq!(
            valid_until(&lease, "b"),
            Timestamp::EPOCH,
            "taken over by another: nothing valid at once"
        );
        assert_eq!(valid_until(&Lease::default(), "a"), Timestamp::EPOCH);
    }
}
