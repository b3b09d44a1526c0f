//! Where a digest's scan Job runs, and with which pull credentials.
//!
//! The scan pod's container *is* the scanned image, so the kubelet must let the scan pod use
//! it. Until Kubernetes 1.34 any pod could use an image already on the node
//! (kubernetes/kubernetes#18787). With KEP-2535 (`KubeletEnsureSecretPulledImages`, beta and on
//! by default in 1.35+) the kubelet lets a pod use an image pulled with credentials only if the
//! pod presents the same credentials (a Secret with the same coordinates or content, the same
//! service account for token-based credential providers), or the image was pulled
//! anonymously or with the node's own credentials, or was on the node before the kubelet
//! pulled anything (`NeverVerifyPreloadedImages`). A scan pod in the scan namespace without the
//! workload's secret gets `ErrImagePull` "401 Unauthorized" for a private image.
//!
//! So the operator places the Job where the pull credentials are, without ever reading them:
//! in a namespace whose pod runs the digest, with that pod's `imagePullSecrets` *names* and
//! service account (the kubelet resolves the names in that namespace). Decided up front from
//! the pod specs, with a fallback after a failure that another placement can fix:
//!
//! * Every pod of the digest names imagePullSecrets → the workload placements first (one per
//!   distinct namespace, secrets and service account, sorted, at most
//!   [`MAX_WORKLOAD_PLACEMENTS`] per round, the next ones after each failed round), then the
//!   scan namespace (enough on a kubelet without the check, e.g. where the
//!   namespace refuses the scan pod).
//! * Some pod runs it without imagePullSecrets → the image needs no pod credentials on that
//!   node (public, node-level credentials, or preloaded): the scan namespace first, preferring
//!   those pods' nodes, then the workload placements.
//!
//! Another placement is tried at once when a scan pod's pull fails for credentials (401, 403,
//! "pull access denied"; not a missing image or an outage, which no placement fixes), when
//! the namespace refuses the scan pod (Pod Security admission, ResourceQuota, LimitRange: the
//! Job controller's `FailedCreate` Event), or when the operator may not create Jobs there
//! (RBAC bound per namespace). When every candidate failed, the digest's scan fails with all
//! their messages, under the reason of the first (the preferred placement's), and the usual
//! failed-scan back-off applies: each round costs at most one Job per candidate. The placement
//! of the last successful scan goes first next time.

use std::sync::Arc;

use crate::port::{PodView, PullCredentials};

/// Workload placements tried per round at most: each costs a Job when it fails.
pub const MAX_WORKLOAD_PLACEMENTS: usize = 3;

/// Where a scan Job runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// The scan namespace, with the scan service account.
    ScanNamespace,
    /// A namespace that runs the digest, with the pull credentials of a pod there.
    Workload {
        /// The namespace.
        namespace: String,
        /// The pod's imagePullSecrets names and service account.
        credentials: Arc<PullCredentials>,
    },
}

impl Placement {
    /// For messages: `scan namespace 'image-scanner'`, `namespace 'team' with imagePullSecrets
    /// [a, b]`.
    pub fn describe(&self, scan_namespace: &str) -> String {
        match self {
            Placement::ScanNamespace => format!("scan namespace '{scan_namespace}'"),
            Placement::Workload {
                namespace,
                credentials,
            } => format!(
                "namespace '{namespace}' with imagePullSecrets [{}]",
                credentials.secrets.join(", ")
            ),
        }
    }

    /// Whether `pod` runs in this placement (its namespace and credentials).
    pub fn matches(&self, pod: &PodView) -> bool {
        match self {
            Placement::ScanNamespace => pod.pull_credentials.is_none(),
            Placement::Workload {
                namespace,
                credentials,
            } => {
                pod.namespace == *namespace
                    && pod.pull_credentials.as_deref() == Some(credentials.as_ref())
            }
        }
    }
}

/// The placements to try for a digest run by `pods`, in order (see the module doc). With
/// `workload_placement` off only the scan namespace. `worked`, the placement of the last
/// successful scan, goes first when it is still a candidate. With more workload placements
/// than a round takes, round `failed_rounds` (the consecutive failed rounds so far) takes the
/// next ones in order, wrapping: every placement is tried within a few rounds, each round
/// still costs at most [`MAX_WORKLOAD_PLACEMENTS`] Jobs in workload namespaces.
pub fn candidates<'a>(
    pods: impl IntoIterator<Item = &'a PodView>,
    workload_placement: bool,
    worked: Option<&Placement>,
    failed_rounds: u32,
) -> Vec<Placement> {
    if !workload_placement {
        return vec![Placement::ScanNamespace];
    }
    let mut anonymous = false;
    let mut workloads: Vec<Placement> = Vec::new();
    for pod in pods {
        match &pod.pull_credentials {
            None => anonymous = true,
            Some(credentials) => workloads.push(Placement::Workload {
                namespace: pod.namespace.clone(),
                credentials: credentials.clone(),
            }),
        }
    }
    workloads.sort();
    workloads.dedup();
    if workloads.len() > MAX_WORKLOAD_PLACEMENTS {
        let kept = worked.and_then(|w| workloads.iter().position(|p| p == w));
        let worked = kept.map(|at| workloads.remove(at));
        let window = MAX_WORKLOAD_PLACEMENTS - usize::from(worked.is_some());
        let rounds = usize::try_from(failed_rounds).unwrap_or(usize::MAX);
        let start = rounds.wrapping_mul(window) % workloads.len();
        workloads.rotate_left(start);
        workloads.truncate(window);
        workloads.extend(worked);
    }
    let mut all = if anonymous {
        std::iter::once(Placement::ScanNamespace)
            .chain(workloads)
            .collect()
    } else {
        workloads.push(Placement::ScanNamespace);
        workloads
    };
    if let Some(worked) = worked
        && let Some(at) = all.iter().position(|p| p == worked)
    {
        let first = all.remove(at);
        all.insert(0, first);
    }
    all
}

/// What an image pull failure says about its cause, from the kubelet's waiting message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry refused the credentials presented (or their absence): 401, 403, "pull
    /// access denied". Another placement's credentials may work.
    Credentials,
    /// Anything else: a missing image, a registry outage, a network error. No placement fixes
    /// it.
    Other,
}

/// Classifies a kubelet pull failure message. containerd says e.g. `…: 401 Unauthorized`,
/// `pull access denied, repository does not exist or may require authorization: …
/// authorization failed`; CRI-O `…: reading manifest …: unauthorized: authentication required`.
pub fn classify_pull_failure(message: &str) -> PullFailure {
    const CREDENTIALS: [&str; 7] = [
        "401 unauthorized",
        "403 forbidden",
        "pull access denied",
        "authorization failed",
        "authentication required",
        "no basic auth credentials",
        "unauthorized",
    ];
    let lower = message.to_ascii_lowercase();
    if CREDENTIALS.iter().any(|needle| lower.contains(needle)) {
        PullFailure::Credentials
    } else {
        PullFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::pod_in;

    fn with_secrets(mut pod: PodView, secrets: &[&str], sa: &str) -> PodView {
        pod.pull_credentials = Some(Arc::new(PullCredentials {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            service_account: sa.to_string(),
        }));
        pod
    }

    fn workload(ns: &str, secrets: &[&str]) -> Placement {
        Placement::Workload {
            namespace: ns.to_string(),
            credentials: Arc::new(PullCredentials {
                secrets: secrets.iter().map(|s| s.to_string()).collect(),
                service_account: "default".to_string(),
            }),
        }
    }

    #[test]
    fn pods_with_secrets_only_scan_where_the_secrets_are_then_in_the_scan_namespace() {
        let pods = [
            with_secrets(pod_in("team-b", "b-1"), &["creds-b"], "default"),
            with_secrets(pod_in("team-a", "a-1"), &["creds-a"], "default"),
            with_secrets(pod_in("team-a", "a-2"), &["creds-a"], "default"),
        ];
        assert_eq!(
            candidates(&pods, true, None, 0),
            vec![
                workload("team-a", &["creds-a"]),
                workload("team-b", &["creds-b"]),
                Placement::ScanNamespace
            ]
        );
    }

    #[test]
    fn a_pod_without_secrets_puts_the_scan_namespace_first() {
        let pods = [
            with_secrets(pod_in("team-a", "a-1"), &["creds-a"], "default"),
            pod_in("team-b", "b-1"),
        ];
        assert_eq!(
            candidates(&pods, true, None, 0),
            vec![Placement::ScanNamespace, workload("team-a", &["creds-a"])]
        );
        assert_eq!(
            candidates(&[pod_in("team-b", "b-1")], true, None, 0),
            vec![Placement::ScanNamespace]
        );
    }

    #[test]
    fn without_workload_placement_only_the_scan_namespace() {
        let pods = [with_secrets(pod_in("team-a", "a-1"), &["x"], "default")];
        assert_eq!(
            candidates(&pods, false, None, 0),
            vec![Placement::ScanNamespace]
        );
    }

    #[test]
    fn the_placement_that_worked_goes_first_while_it_is_a_candidate() {
        let pods = [
            with_secrets(pod_in("team-a", "a-1"), &["creds-a"], "default"),
            with_secrets(pod_in("team-b", "b-1"), &["creds-b"], "default"),
        ];
        let worked = workload("team-b", &["creds-b"]);
        assert_eq!(candidates(&pods, true, Some(&worked), 0)[0], worked);
        let gone = workload("team-c", &["creds-c"]);
        assert_eq!(
            candidates(&pods, true, Some(&gone), 0)[0],
            workload("team-a", &["creds-a"])
        );
    }

    #[test]
    fn distinct_credentials_in_one_namespace_are_distinct_placements_up_to_the_cap() {
        let pods: Vec<PodView> = (0..5)
            .map(|i| {
                let secret = format!("creds-{i}");
                with_secrets(pod_in("team", &format!("p{i}")), &[&secret], "default")
            })
            .chain([with_secrets(pod_in("team", "sa"), &["creds-0"], "builder")])
            .collect();
        let all = candidates(&pods, true, None, 0);
        assert_eq!(all.len(), MAX_WORKLOAD_PLACEMENTS + 1);
        assert_eq!(all.last(), Some(&Placement::ScanNamespace));
        // Same secrets, another service account: another placement (token-based providers).
        assert!(
            all.iter()
                .any(|p| matches!(p, Placement::Workload { credentials, .. }
            if credentials.service_account == "builder"))
        );
    }

    #[test]
    fn rounds_after_failed_ones_take_the_placements_beyond_the_cap_in_turn() {
        let pods: Vec<PodView> = (0..5)
            .map(|i| {
                let ns = format!("team-{i}");
                with_secrets(pod_in(&ns, "p"), &["creds"], "default")
            })
            .collect();
        let namespaces = |round, worked: Option<&Placement>| -> Vec<String> {
            candidates(&pods, true, worked, round)
                .into_iter()
                .map(|p| match p {
                    Placement::Workload { namespace, .. } => namespace,
                    Placement::ScanNamespace => "scan".to_string(),
                })
                .collect()
        };
        assert_eq!(namespaces(0, None), ["team-0", "team-1", "team-2", "scan"]);
        assert_eq!(namespaces(1, None), ["team-3", "team-4", "team-0", "scan"]);
        assert_eq!(namespaces(2, None), ["team-1", "team-2", "team-3", "scan"]);
        // The placement that worked stays in every round, first.
        let worked = workload("team-4", &["creds"]);
        assert_eq!(
            namespaces(0, Some(&worked)),
            ["team-4", "team-0", "team-1", "scan"]
        );
        assert_eq!(
            namespaces(1, Some(&worked)),
            ["team-4", "team-2", "team-3", "scan"]
        );
    }

    #[test]
    fn a_placement_matches_the_pods_it_came_from() {
        let a = with_secrets(pod_in("team-a", "a-1"), &["creds-a"], "default");
        let plain = pod_in("team-a", "a-2");
        assert!(workload("team-a", &["creds-a"]).matches(&a));
        assert!(!workload("team-a", &["creds-a"]).matches(&plain));
        assert!(!workload("team-b", &["creds-a"]).matches(&a));
        assert!(Placement::ScanNamespace.matches(&plain));
        assert!(!Placement::ScanNamespace.matches(&a));
    }

    #[test]
    fn credential_failures_are_told_apart_from_missing_images_and_outages() {
        use PullFailure::*;
        for (message, want) in [
            (
                "failed to pull and unpack image \"127.0.0.1:5000/test/app@sha256:ab\": failed to resolve reference \"127.0.0.1:5000/test/app@sha256:ab\": unexpected status from HEAD request to https://127.0.0.1:5000/v2/test/app/manifests/sha256:ab: 401 Unauthorized",
                Credentials,
            ),
            (
                "failed to resolve reference \"docker.io/acme/private:1\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed",
                Credentials,
            ),
            (
                "reading manifest sha256:ab: unauthorized: authentication required",
                Credentials,
            ),
            ("unexpected status: 403 Forbidden", Credentials),
            (
                "failed to resolve reference \"127.0.0.1:5000/test/app@sha256:00\": 127.0.0.1:5000/test/app@sha256:00: not found",
                Other,
            ),
            (
                "failed to do request: Head \"https://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
                Other,
            ),
            ("unexpected status: 503 Service Unavailable", Other),
            ("", Other),
        ] {
            assert_eq!(classify_pull_failure(message), want, "{message}");
        }
    }
}
