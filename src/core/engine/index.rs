//! The engine's compact picture of the cluster, plus the derived indexes decisions need.
//!
//! Every map is a `BTreeMap` so iteration order, and thus every decision, is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::intern::Interner;
use super::tracked::{Holds, ObjectKind, Relists, Tracked};
use super::vec_set::VecSet;
use crate::crd::VulnerabilitySummary;
use crate::port::{
    CisView, ContainerView, JobView, Labels, OwnerRef, PodView, PullCredentials, ScanPodView,
    WorkloadView,
};
use crate::time::Timestamp;
use crate::workload::{ContainerProblem, PodTarget, WorkloadKey};

/// Namespace and name of a CIS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CisKey {
    pub namespace: String,
    pub name: String,
}

impl CisKey {
    /// Builds a key.
    pub fn new(namespace: &str, name: &str) -> CisKey {
        CisKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for CisKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Namespace and name of a pod. Shared strings: the key is held by the pod map and by every
/// reverse index the pod is in.
pub type PodKey = (Arc<str>, Arc<str>);

/// The key of a pod.
pub fn pod_key(namespace: &str, name: &str) -> PodKey {
    (namespace.into(), name.into())
}

/// A workload pod and what it contributes.
#[derive(Clone, Debug)]
pub struct PodEntry {
    /// The pod.
    pub tracked: Tracked<PodView>,
    /// CIS this pod is a member of (one per container with a digest). Shared: the replicas of a
    /// workload have the same list (see [`Shared`]).
    pub targets: Arc<[PodTarget]>,
    /// Whether the pod is settled (may cause CIS creation).
    pub settled: bool,
    /// Workload object the owner chain is waiting for (boxed: rarely set).
    pub waiting_on: Option<Box<WorkloadKey>>,
}

impl Holds<PodView> for Box<PodEntry> {
    fn tracked(&self) -> &Tracked<PodView> {
        &self.tracked
    }
}

/// The most recent UIDs of deleted Jobs, at most [`RecentUids::KEPT`], with their creation
/// times. The answer to a create can arrive after the watch delivered the object's deletion (a
/// Job whose pod Pod Security refused, deleted by us within milliseconds), and must not bring
/// the object back; and a result written by another replica names a Job that may be gone
/// before this replica learns the result, whose age still orders the two results (sim seed
/// 23127: two failures recorded in one second, the newer Job deleted within a second). Only
/// the time a request is in flight or a failover takes matters, so a few hundred suffice.
#[derive(Debug, Default)]
pub struct RecentUids {
    order: VecDeque<String>,
    created: BTreeMap<String, Timestamp>,
}

impl RecentUids {
    /// How many are kept.
    pub const KEPT: usize = 256;

    /// Remembers `uid`, created at `created`, forgetting the oldest beyond [`Self::KEPT`].
    pub fn insert(&mut self, uid: &str, created: Timestamp) {
        if uid.is_empty() || self.created.insert(uid.to_string(), created).is_some() {
            return;
        }
        self.order.push_back(uid.to_string());
        while self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                self.created.remove(&old);
            }
        }
    }

    /// Whether `uid` was seen deleted recently.
    pub fn contains(&self, uid: &str) -> bool {
        self.created.contains_key(uid)
    }

    /// When the recently deleted `uid` was created.
    pub fn created(&self, uid: &str) -> Option<Timestamp> {
        self.created.get(uid).copied()
    }
}

/// The index.
#[derive(Debug, Default)]
pub struct Index {
    // The large per-object values are boxed: a B-tree node holds eleven entries inline and is
    // often half empty, so unboxed 300-500 byte values cost about twice their size
    // (docs/performance.md).
    /// Workload pods in scanned namespaces.
    pub pods: BTreeMap<PodKey, Box<PodEntry>>,
    /// Metadata of workload objects.
    pub workloads: BTreeMap<WorkloadKey, Box<Tracked<WorkloadView>>>,
    /// CIS objects.
    pub cis: BTreeMap<CisKey, Box<Tracked<CisView>>>,
    /// Our scan Jobs by [`object_key`] (in the scan namespace and in workload namespaces).
    pub jobs: BTreeMap<String, Tracked<JobView>>,
    /// Pods of our scan Jobs by [`object_key`].
    pub scan_pods: BTreeMap<String, Tracked<ScanPodView>>,
    /// Why the Job controller could not create the pod of a Job (its `FailedCreate` Event), by
    /// Job UID; only for Jobs in `jobs`.
    pub job_rejections: BTreeMap<String, String>,
    /// Jobs seen deleted, by UID (see [`RecentUids`]).
    pub deleted_jobs: RecentUids,
    /// Relist epochs and the streams of each kind.
    pub relists: Relists,
    /// Pods that map to each CIS name.
    pub members: BTreeMap<CisKey, VecSet<PodKey>>,
    /// Pods whose owner chain waits for a workload object.
    pub waiting_on: BTreeMap<WorkloadKey, VecSet<PodKey>>,
    /// Pods by the UID of their controller.
    pub pods_by_controller: BTreeMap<String, VecSet<PodKey>>,
    /// Workload objects by the UID of their controller.
    pub workloads_by_controller: BTreeMap<String, VecSet<WorkloadKey>>,
    /// CIS by `spec.digest`.
    pub cis_by_digest: BTreeMap<String, VecSet<CisKey>>,
    /// Pods with containers that cannot have a CIS: the pod's UID and those containers'
    /// problems, as last reported in an Event (only such pods have an entry).
    pub unscannable: BTreeMap<PodKey, (String, Vec<ContainerProblem>)>,
    /// Values many stored objects carry identically.
    pub shared: Shared,
    /// Sum of `status.detailsBytes` over `cis`: what the stored details take in etcd.
    pub details_bytes: u64,
}

/// The key of a namespaced object in [`Index::jobs`] and [`Index::scan_pods`].
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Interners for what replicas of one workload (and the CIS copied from them) have in common.
/// At 10,000 pods this keeps one copy per workload instead of one per pod (docs/performance.md).
#[derive(Debug, Default)]
pub struct Shared {
    /// Target lists of pods.
    pub targets: Interner<[PodTarget]>,
    /// Labels of pods and CIS.
    pub labels: Interner<Labels>,
    /// Container lists of pods.
    pub containers: Interner<[ContainerView]>,
    /// Controller references of pods.
    pub controllers: Interner<OwnerRef>,
    /// Pull credentials of pods.
    pub credentials: Interner<PullCredentials>,
    /// Vulnerability summaries of CIS (every CIS of a digest has the same).
    pub summaries: Interner<VulnerabilitySummary>,
    /// Finding records of CIS (`status.notableFindings`, `announcedFindings`): the same for
    /// every CIS of a digest with the same filters, and the two of a CIS equal once told.
    pub records: Interner<crate::crd::FindingRecord>,
    /// Namespace names, for the keys of pods.
    pub namespaces: Interner<str>,
}

impl Shared {
    /// A pod whose shared parts are the interned copies.
    pub fn pod(&mut self, mut pod: PodView) -> PodView {
        pod.labels = self.labels.share(pod.labels);
        pod.containers = self.containers.share(pod.containers);
        pod.controller = pod.controller.map(|c| self.controllers.share(c));
        pod.pull_credentials = pod.pull_credentials.map(|c| self.credentials.share(c));
        pod
    }

    /// A CIS whose labels, summary and finding records are the interned copies.
    pub fn cis(&mut self, mut cis: CisView) -> CisView {
        cis.labels = self.labels.share(cis.labels);
        cis.status.summary = cis.status.summary.map(|s| self.summaries.share(s));
        cis.status.notable = cis.status.notable.map(|r| self.records.share(r));
        cis.status.announced = cis.status.announced.map(|r| self.records.share(r));
        cis
    }
}

impl ObjectKind {
    /// Whether objects of this kind also come from the answers to our writes (CIS, Jobs): such
    /// an object joins the stream that delivers its kind in its namespace
    /// ([`Relists::home`]), so that a relist of that stream can forget it.
    pub fn arrives_in_outcomes(self) -> bool {
        matches!(self, ObjectKind::Cis | ObjectKind::Job)
    }
}

impl Index {
    /// The key of `pod`: the one already stored when the pod is known, so that the pod map and
    /// the reverse indexes keep sharing one copy of the strings across updates; else a new one
    /// with the namespace shared.
    pub fn pod_key(&mut self, pod: &PodView) -> PodKey {
        let probe = pod_key(&pod.namespace, &pod.name);
        if let Some((stored, _)) = self.pods.get_key_value(&probe) {
            return stored.clone();
        }
        (self.shared.namespaces.share(probe.0), probe.1)
    }

    /// Records the digest of a CIS in the digest index.
    pub fn index_cis_digest(&mut self, key: &CisKey, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        if let Some(d) = old
            && let Some(set) = self.cis_by_digest.get_mut(d)
        {
            set.remove(key);
            if set.is_empty() {
                self.cis_by_digest.remove(d);
            }
        }
        if let Some(d) = new {
            self.cis_by_digest
                .entry(d.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    /// A Job by namespace and name.
    pub fn job(&self, namespace: &str, name: &str) -> Option<&JobView> {
        self.jobs.get(&object_key(namespace, name)).map(|t| &t.view)
    }

    /// Jobs that are neither finished nor being deleted.
    pub fn active_job_count(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.view.finished.is_none() && !j.view.deleting)
            .count()
    }

    /// Digests that have Jobs.
    pub fn job_digests(&self) -> BTreeSet<String> {
        self.jobs
            .values()
            .filter_map(|j| j.view.digest.clone())
            .collect()
    }

    /// A Job by UID.
    pub fn job_by_uid(&self, uid: &str) -> Option<&JobView> {
        self.jobs.values().map(|j| &j.view).find(|j| j.uid == uid)
    }

    /// When the Job `uid` was created, if it is known or was deleted recently.
    pub fn job_created(&self, uid: &str) -> Option<Timestamp> {
        self.job_by_uid(uid)
            .map(|j| j.created)
            .or_else(|| self.deleted_jobs.created(uid))
    }

    /// Jobs of a digest, oldest first.
    pub fn jobs_of_digest(&self, digest: &str) -> Vec<&JobView> {
        let mut jobs: Vec<&JobView> = self
            .jobs
            .values()
            .map(|j| &j.view)
            .filter(|j| j.digest.as_deref() == Some(digest))
            .collect();
        jobs.sort_by(|a, b| {
            (a.created, &a.namespace, &a.name).cmp(&(b.created, &b.namespace, &b.name))
        });
        jobs
    }

    /// Pods of a Job, oldest first, evicted ones left out (upstream fix 0.5.5).
    pub fn pods_of_job(&self, job_uid: &str) -> Vec<&ScanPodView> {
        let mut pods: Vec<&ScanPodView> = self
            .scan_pods
            .values()
            .map(|p| &p.view)
            .filter(|p| p.job_uid.as_deref() == Some(job_uid) && !p.evicted)
            .collect();
        pods.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_ref::{ContainerImage, DigestKind};
    use crate::port::ContainerKind;
    use crate::workload::ResolvedWorkload;

    #[test]
    fn recent_uids_keep_exactly_the_last_kept_ones() {
        let mut recent = RecentUids::default();
        for i in 0..RecentUids::KEPT {
            recent.insert(&format!("uid-{i}"), Timestamp::from_secs(i as i64));
        }
        assert!(recent.contains("uid-0"), "{} fit", RecentUids::KEPT);
        recent.insert("one-more", Timestamp::from_secs(0));
        assert!(!recent.contains("uid-0"), "the oldest goes");
        assert!(recent.contains("uid-1") && recent.contains("one-more"));
    }

    #[test]
    fn a_cis_key_shows_as_namespace_slash_name() {
        assert_eq!(CisKey::new("ns", "name").to_string(), "ns/name");
    }

    fn target(cis_name: &str) -> PodTarget {
        PodTarget {
            cis_name: cis_name.to_string(),
            workload: ResolvedWorkload {
                api_version: "apps/v1".into(),
                group: "apps".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "u1".into(),
                ignore_unfixed: false,
            },
            container: "app".into(),
            kind: ContainerKind::Regular,
            image: ContainerImage {
                name: "docker.io/library/nginx".into(),
                digest: "sha256:00".into(),
                tag: "1".into(),
                digest_kind: DigestKind::Registry,
            },
        }
    }

    fn pod(name: &str, labels: &[(&str, &str)]) -> PodView {
        PodView {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: Some(1),
            labels: Arc::new(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            controller: Some(Arc::new(OwnerRef {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "rs-uid".into(),
            })),
            created: crate::time::Timestamp::from_secs(0),
            deleting: false,
            node_name: None,
            phase: Some("Running".into()),
            ready: true,
            start_time: None,
            containers: vec![ContainerView {
                kind: ContainerKind::Regular,
                name: "app".into(),
                spec_image: Some("nginx:1".into()),
                status_image: "nginx:1".into(),
                status_image_id: "docker.io/library/nginx@sha256:00".into(),
                waiting_reason: None,
            }]
            .into(),
            ignore_unfixed: false,
            pull_credentials: None,
        }
    }

    #[test]
    fn replicas_share_labels_containers_controller_and_targets() {
        let mut shared = Shared::default();
        let a = shared.pod(pod("web-1-a", &[("app", "web")]));
        let b = shared.pod(pod("web-1-b", &[("app", "web")]));
        let other = shared.pod(pod("db-0", &[("app", "db")]));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.containers, &b.containers));
        assert!(Arc::ptr_eq(
            a.controller.as_ref().unwrap(),
            b.controller.as_ref().unwrap()
        ));
        assert!(!Arc::ptr_eq(&a.labels, &other.labels));
        assert_eq!(*other.labels.get("app").unwrap(), "db");
        let t1 = shared.targets.share_vec(vec![target("web-app")]);
        let t2 = shared.targets.share_vec(vec![target("web-app")]);
        assert!(Arc::ptr_eq(&t1, &t2));
    }
}
