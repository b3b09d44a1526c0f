//! Leader election with a Lease (id `398aa7bc.statnett.no`, as the Go operator), so only one
//! replica writes. Leadership changes reach the engine as observations; the engine stops issuing
//! writes the moment it is told it lost the lease.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::mpsc;

use super::errors::ShellError;
use crate::config::OperatorConfig;
use crate::core::port::Observation;

/// Name of the Lease, shared with the Go operator so the two never run side by side.
pub const LEASE_NAME: &str = "398aa7bc.statnett.no";
/// Seconds a lease is valid after its last renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry when the holder renews.
const GRACE_SECONDS: u64 = 5;

/// A running election; release it on shutdown so a successor takes over at once.
pub struct Election {
    leading: tokio::sync::watch::Receiver<bool>,
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
fn lease_namespace(config: &OperatorConfig) -> String {
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

/// Starts the election and forwards every change of leadership to the engine.
pub async fn start(
    client: Client,
    config: &OperatorConfig,
    tx: mpsc::Sender<Observation>,
) -> Result<Election, ShellError> {
    let id = identity().unwrap_or_else(|| format!("image-scanner-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(lease_namespace(config))
        .with_identity(id.clone())
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(format!("image-scanner-operator-{id}"))
        .build()
        .await
        .map_err(|e| ShellError::LeaderElection(e.to_string()))?;
    let (leading, task) = manager.watch().await;
    let mut changes = leading.clone();
    let forward = tokio::spawn(async move {
        loop {
            let now_leading = *changes.borrow_and_update();
            tracing::info!(leading = now_leading, "leadership changed");
            if tx
                .send(Observation::Leadership {
                    leading: now_leading,
                })
                .await
                .is_err()
            {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(Election {
        leading,
        forward,
        task,
    })
}
