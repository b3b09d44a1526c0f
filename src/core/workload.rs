//! Workload resolution: which top-level workload runs a pod, whether the pod has settled, and
//! which CIS each of its containers maps to (spec §5, with quirks §19.1 and §19.9 fixed).
//!
//! Two questions are kept apart on purpose:
//! * *membership* — the pod runs image digest D in container C of workload W, so it owns the
//!   CIS for (W, C, D). Any pod whose runtime reported a digest is a member, ready or not, so
//!   owner lists do not flap while pods restart.
//! * *creation* — a CIS is only created once some member has settled (kstatus `Current`), so
//!   short-lived pods of a failing rollout do not produce scans.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::image_ref::{ContainerImage, container_image};
use super::naming::cis_name;
use super::port::{ContainerKind, OwnerRef, PodView, WorkloadView};
use super::time::Timestamp;

/// Label that marks objects the operator manages (its scan pods are never scanned).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on the operator's objects.
pub const MANAGED_BY_VALUE: &str = "image-scanner";
/// Annotation that makes a CIS report only fixable vulnerabilities.
pub const IGNORE_UNFIXED_ANNOTATION: &str = "image-scanner.statnett.no/ignore-unfixed";

/// Owner chains longer than this are treated as cycles.
const MAX_CHAIN: usize = 16;

/// Key of a workload object in the metadata index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadKey {
    /// API group.
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl WorkloadKey {
    /// Key of the object an owner reference points at, in `namespace`.
    pub fn of_ref(namespace: &str, owner: &OwnerRef) -> WorkloadKey {
        WorkloadKey {
            group: owner.group().to_string(),
            kind: owner.kind.clone(),
            namespace: namespace.to_string(),
            name: owner.name.clone(),
        }
    }

    /// Key of a workload view.
    pub fn of_view(view: &WorkloadView) -> WorkloadKey {
        WorkloadKey {
            group: view.group.clone(),
            kind: view.kind.clone(),
            namespace: view.namespace.clone(),
            name: view.name.clone(),
        }
    }
}

/// The top-level workload a pod belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedWorkload {
    pub api_version: String,
    /// API group.
    pub group: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// The ignore-unfixed annotation on the workload object.
    pub ignore_unfixed: bool,
}

/// Why a pod contributes nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// The pod is one of ours (a scan pod).
    ManagedByUs,
    /// The namespace is excluded or not included.
    ExcludedNamespace,
    /// The pod's controller is of a kind that is not configured.
    UnconfiguredController,
    /// The owner chain is longer than any real one (a cycle).
    OwnerCycle,
    /// The pod is being deleted.
    Terminating,
}

/// Where resolving the owner chain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The top-level workload.
    Resolved(ResolvedWorkload),
    /// An object of the chain is not (yet) in the metadata cache.
    Waiting(WorkloadKey),
    /// The pod is not scanned.
    Skipped(SkipReason),
}

/// Where workload metadata is looked up.
pub trait WorkloadSource {
    /// The workload object at `key`, if known.
    fn workload(&self, key: &WorkloadKey) -> Option<&WorkloadView>;
}

impl WorkloadSource for BTreeMap<WorkloadKey, WorkloadView> {
    fn workload(&self, key: &WorkloadKey) -> Option<&WorkloadView> {
        self.get(key)
    }
}

/// Follows controller references through the configured kinds (spec §5.2 step 4).
pub fn resolve_workload(
    pod: &PodView,
    configured: &BTreeSet<(String, String)>,
    workloads: &dyn WorkloadSource,
) -> Resolution {
    let Some(first) = pod.controller.as_deref() else {
        return Resolution::Resolved(ResolvedWorkload {
            api_version: "v1".to_string(),
            group: String::new(),
            kind: "Pod".to_string(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ignore_unfixed: pod.ignore_unfixed,
        });
    };
    if !configured.contains(&(first.group().to_string(), first.kind.clone())) {
        return Resolution::Skipped(SkipReason::UnconfiguredController);
    }
    let mut owner = first;
    for _ in 0..MAX_CHAIN {
        let key = WorkloadKey::of_ref(&pod.namespace, owner);
        let Some(view) = workloads.workload(&key).filter(|w| w.uid == owner.uid) else {
            return Resolution::Waiting(key);
        };
        match &view.controller {
            Some(next) if configured.contains(&(next.group().to_string(), next.kind.clone())) => {
                owner = next;
            }
            _ => {
                return Resolution::Resolved(ResolvedWorkload {
                    api_version: view.api_version.clone(),
                    group: view.group.clone(),
                    kind: view.kind.clone(),
                    name: view.name.clone(),
                    uid: view.uid.clone(),
                    ignore_unfixed: view.ignore_unfixed,
                });
            }
        }
    }
    Resolution::Skipped(SkipReason::OwnerCycle)
}

/// Whether a pod counts as settled (kstatus `Current`), and if not, when to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settledness {
    /// Current: a CIS may be created for it.
    Settled,
    /// Not yet; re-evaluate at this time even if nothing about the pod changes.
    RecheckAt(Timestamp),
    /// Not yet; only a change of the pod can change that.
    Unsettled,
}

/// kstatus rules for pods (spec §5.2 step 3), plus one extension: a Running pod that never
/// becomes Ready still runs its images, so it is treated as settled after `settle_timeout`.
pub fn settledness(
    pod: &PodView,
    skip_waiting_reasons: &BTreeSet<String>,
    settle_timeout: Duration,
    now: Timestamp,
) -> Settledness {
    let waiting_on_skip_reason = pod.containers.iter().any(|c| {
        c.waiting_reason
            .as_ref()
            .is_some_and(|r| skip_waiting_reasons.contains(r))
    });
    if waiting_on_skip_reason || pod.deleting {
        return Settledness::Unsettled;
    }
    match pod.phase.as_deref() {
        Some("Succeeded" | "Failed") => Settledness::Settled,
        Some("Running") if pod.ready => Settledness::Settled,
        Some("Running") => {
            let crash_looping = pod
                .containers
                .iter()
                .any(|c| c.waiting_reason.as_deref() == Some("CrashLoopBackOff"));
            match pod.start_time {
                Some(start) if !crash_looping => {
                    let at = start.plus(settle_timeout);
                    if now >= at {
                        Settledness::Settled
                    } else {
                        Settledness::RecheckAt(at)
                    }
                }
                _ => Settledness::Unsettled,
            }
        }
        _ => Settledness::Unsettled,
    }
}

/// One container of a pod mapped to its CIS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodTarget {
    /// Name of the CIS (in the pod's namespace).
    pub cis_name: String,
    /// The top-level workload.
    pub workload: ResolvedWorkload,
    /// Container name.
    pub container: String,
    /// Which spec list the container is in.
    pub kind: ContainerKind,
    /// The image that container runs.
    pub image: ContainerImage,
}

/// A container whose image reference could not be understood: skipped alone, with the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerProblem {
    /// Container name.
    pub container: String,
    /// The parse error.
    pub error: String,
}

/// Maps every container of a pod with a resolved digest to its CIS name (spec §5.2 step 7 and
/// §5.3; init and ephemeral containers included, each as its own CIS).
pub fn pod_targets(
    pod: &PodView,
    workload: &ResolvedWorkload,
) -> (Vec<PodTarget>, Vec<ContainerProblem>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for c in pod.containers.iter() {
        if c.status_image.is_empty() || c.status_image_id.is_empty() {
            continue;
        }
        match container_image(c.spec_image.as_deref(), &c.status_image, &c.status_image_id) {
            Ok(image) => targets.push(PodTarget {
                cis_name: cis_name(
                    &workload.kind,
                    &workload.name,
                    &c.name,
                    &image.name,
                    &image.digest,
                ),
                workload: workload.clone(),
                container: c.name.clone(),
                kind: c.kind,
                image,
            }),
            Err(e) => problems.push(ContainerProblem {
                container: c.name.clone(),
                error: e.to_string(),
            }),
        }
    }
    (targets, problems)
}

/// Whether a pod label marks it as the operator's own.
pub fn is_managed_by_us(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::ContainerView;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerRef {
        OwnerRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn container(kind: ContainerKind, name: &str, image_id: &str) -> ContainerView {
        ContainerView {
            kind,
            name: name.into(),
            spec_image: Some(format!("reg.example/{name}:1.0")),
            status_image: format!("reg.example/{name}:1.0"),
            status_image_id: image_id.into(),
            waiting_reason: None,
        }
    }

    fn pod(controller: Option<OwnerRef>) -> PodView {
        PodView {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "pod-uid".into(),
            resource_version: None,
            labels: Default::default(),
            controller: controller.map(std::sync::Arc::new),
            created: Timestamp::from_secs(100),
            deleting: false,
            node_name: Some("n".into()),
            phase: Some("Running".into()),
            ready: true,
            start_time: Some(Timestamp::from_secs(100)),
            containers: vec![container(
                ContainerKind::Regular,
                "app",
                &format!("reg.example/app@{A}"),
            )]
            .into(),
            ignore_unfixed: false,
            pull_credentials: None,
        }
    }

    fn workload(
        group: &str,
        kind: &str,
        name: &str,
        uid: &str,
        controller: Option<OwnerRef>,
    ) -> WorkloadView {
        WorkloadView {
            group: group.into(),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
            uid: uid.into(),
            controller,
            ignore_unfixed: false,
        }
    }

    fn kinds(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter()
            .map(|(g, k)| (g.to_string(), k.to_string()))
            .collect()
    }

    fn index(views: Vec<WorkloadView>) -> BTreeMap<WorkloadKey, WorkloadView> {
        views
            .into_iter()
            .map(|v| (WorkloadKey::of_view(&v), v))
            .collect()
    }

    fn resolved(r: Resolution) -> ResolvedWorkload {
        match r {
            Resolution::Resolved(w) => w,
            other => panic!("expected a workload, got {other:?}"),
        }
    }

    #[test]
    fn a_bare_pod_is_its_own_workload_and_honours_its_annotation() {
        let mut p = pod(None);
        p.ignore_unfixed = true;
        let w = resolved(resolve_workload(&p, &kinds(&[]), &BTreeMap::new()));
        assert_eq!(
            (
                w.api_version.as_str(),
                w.group.as_str(),
                w.kind.as_str(),
                w.name.as_str()
            ),
            ("v1", "", "Pod", "p")
        );
        assert!(w.ignore_unfixed);
    }

    #[test]
    fn the_chain_is_followed_through_configured_kinds_to_the_top() {
        let all = kinds(&[
            ("apps", "ReplicaSet"),
            ("apps", "Deployment"),
            ("batch", "Job"),
            ("batch", "CronJob"),
        ]);
        let rs = workload(
            "apps",
            "ReplicaSet",
            "web-1",
            "rs",
            Some(owner("apps/v1", "Deployment", "web", "dep")),
        );
        let dep = workload("apps", "Deployment", "web", "dep", None);
        let p = pod(Some(owner("apps/v1", "ReplicaSet", "web-1", "rs")));
        let w = resolved(resolve_workload(&p, &all, &index(vec![rs.clone(), dep])));
        assert_eq!(
            (w.kind.as_str(), w.name.as_str(), w.uid.as_str()),
            ("Deployment", "web", "dep")
        );
        // Only ReplicaSets configured: the chain stops there.
        let w = resolved(resolve_workload(
            &p,
            &kinds(&[("apps", "ReplicaSet")]),
            &index(vec![rs]),
        ));
        assert_eq!(w.kind, "ReplicaSet");
        // Pod → Job → CronJob.
        let job = workload(
            "batch",
            "Job",
            "nightly-1",
            "job",
            Some(owner("batch/v1", "CronJob", "nightly", "cron")),
        );
        let cron = workload("batch", "CronJob", "nightly", "cron", None);
        let p = pod(Some(owner("batch/v1", "Job", "nightly-1", "job")));
        let w = resolved(resolve_workload(&p, &all, &index(vec![job, cron])));
        assert_eq!(w.kind, "CronJob");
    }

    #[test]
    fn an_unconfigured_controller_skips_the_pod_and_a_missing_link_waits() {
        let p = pod(Some(owner("apps/v1", "ReplicaSet", "web-1", "rs")));
        assert_eq!(
            resolve_workload(&p, &kinds(&[("apps", "Deployment")]), &BTreeMap::new()),
            Resolution::Skipped(SkipReason::UnconfiguredController)
        );
        let all = kinds(&[("apps", "ReplicaSet")]);
        assert!(
            matches!(resolve_workload(&p, &all, &BTreeMap::new()), Resolution::Waiting(k) if k.name == "web-1")
        );
        // A stale cache entry (another object with the same name) also waits.
        let stale = workload("apps", "ReplicaSet", "web-1", "older-uid", None);
        assert!(matches!(
            resolve_workload(&p, &all, &index(vec![stale])),
            Resolution::Waiting(_)
        ));
    }

    #[test]
    fn an_owner_cycle_ends_instead_of_looping() {
        let all = kinds(&[("apps", "ReplicaSet")]);
        let a = workload(
            "apps",
            "ReplicaSet",
            "a",
            "ua",
            Some(owner("apps/v1", "ReplicaSet", "b", "ub")),
        );
        let b = workload(
            "apps",
            "ReplicaSet",
            "b",
            "ub",
            Some(owner("apps/v1", "ReplicaSet", "a", "ua")),
        );
        let p = pod(Some(owner("apps/v1", "ReplicaSet", "a", "ua")));
        assert_eq!(
            resolve_workload(&p, &all, &index(vec![a, b])),
            Resolution::Skipped(SkipReason::OwnerCycle)
        );
    }

    #[test]
    fn settledness_follows_kstatus_with_a_deadline_for_never_ready_pods() {
        let skip: BTreeSet<String> = ["ErrImagePull", "ImagePullBackOff"]
            .into_iter()
            .map(String::from)
            .collect();
        let timeout = Duration::from_secs(300);
        let now = Timestamp::from_secs(200);
        let p = pod(None);
        assert_eq!(settledness(&p, &skip, timeout, now), Settledness::Settled);
        let mut not_ready = pod(None);
        not_ready.ready = false;
        assert_eq!(
            settledness(&not_ready, &skip, timeout, now),
            Settledness::RecheckAt(Timestamp::from_secs(400))
        );
        assert_eq!(
            settledness(&not_ready, &skip, timeout, Timestamp::from_secs(400)),
            Settledness::Settled
        );
        let mut looping = not_ready.clone();
        std::sync::Arc::make_mut(&mut looping.containers)[0].waiting_reason =
            Some("CrashLoopBackOff".into());
        assert_eq!(
            settledness(&looping, &skip, timeout, Timestamp::from_secs(9999)),
            Settledness::Unsettled
        );
        let mut pulling = pod(None);
        std::sync::Arc::make_mut(&mut pulling.containers)[0].waiting_reason =
            Some("ImagePullBackOff".into());
        assert_eq!(
            settledness(&pulling, &skip, timeout, now),
            Settledness::Unsettled
        );
        for phase in ["Succeeded", "Failed"] {
            let mut done = not_ready.clone();
            done.phase = Some(phase.into());
            assert_eq!(
                settledness(&done, &skip, timeout, now),
                Settledness::Settled,
                "{phase}"
            );
        }
        let mut pending = pod(None);
        pending.phase = Some("Pending".into());
        assert_eq!(
            settledness(&pending, &skip, timeout, now),
            Settledness::Unsettled
        );
        let mut deleting = pod(None);
        deleting.deleting = true;
        assert_eq!(
            settledness(&deleting, &skip, timeout, now),
            Settledness::Unsettled
        );
    }

    #[test]
    fn init_regular_and_ephemeral_containers_each_map_to_a_cis() {
        let mut p = pod(None);
        p.containers = vec![
            container(
                ContainerKind::Init,
                "migrate",
                &format!("reg.example/migrate@{A}"),
            ),
            container(
                ContainerKind::Regular,
                "app",
                &format!("reg.example/app@{A}"),
            ),
            container(
                ContainerKind::Ephemeral,
                "debug",
                &format!("reg.example/debug@{A}"),
            ),
            // Not resolved yet: no imageID.
            container(ContainerKind::Regular, "pending", ""),
            // Docker-shim reference: a typed problem for this container only.
            container(
                ContainerKind::Regular,
                "shim",
                "docker-pullable://reg.example/shim@sha256:zz",
            ),
        ]
        .into();
        let w = resolved(resolve_workload(&p, &kinds(&[]), &BTreeMap::new()));
        let (targets, problems) = pod_targets(&p, &w);
        let names: Vec<&str> = targets.iter().map(|t| t.cis_name.as_str()).collect();
        assert_eq!(targets.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("pod-p-")));
        assert_eq!(
            targets.iter().map(|t| t.kind).collect::<Vec<_>>(),
            [
                ContainerKind::Init,
                ContainerKind::Regular,
                ContainerKind::Ephemeral
            ]
        );
        assert_eq!(targets[1].image.name, "reg.example/app");
        assert_eq!(targets[1].image.digest, A);
        assert_eq!(targets[1].image.tag, "1.0");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].container, "shim");
    }

    #[test]
    fn our_own_pods_are_recognised_by_label() {
        let labels: BTreeMap<String, String> =
            [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into();
        assert!(is_managed_by_us(&labels));
        assert!(!is_managed_by_us(&BTreeMap::new()));
    }
}
