//! The simulated API server's state: objects at the level of the port's views, a global
//! resourceVersion, and one event log per watched type with a compaction floor.
//!
//! Every mutation goes through [`Cluster::publish`], which bumps the global resourceVersion,
//! records the before/after views (so a stale list at an older resourceVersion can be rebuilt)
//! and marks the type's log dirty so the runner schedules deliveries.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use image_scanner_api::{ContainerImageScanSpec, ContainerImageScanStatus, Vulnerability};
use image_scanner_core::exception::ExceptionKey;
use image_scanner_core::port::{
    CisStatusView, CisView, ContainerKind, ContainerView, ExceptionView, JobFinish, JobView,
    OwnerRef, PodView, PullCredentials, ScanContainerState, ScanPodView, WorkloadView,
};
use image_scanner_core::time::Timestamp;

mod views;

pub use views::{cis_view, job_view, owner_ref, scan_pod_view, workload_view};

use crate::rng::{Concern, Draw, Rng, stream};

/// Namespace of scan Jobs.
pub const SCAN_NS: &str = "image-scanner";
/// Simulated time starts here (2023-11-14), so timestamps look real.
pub const T0: i64 = 1_700_000_000_000;

/// Workload kinds of the simulated cluster: (group, kind, apiVersion). The last one is not
/// configured in the engine (its pods are ignored).
pub const KINDS: [(&str, &str, &str); 8] = [
    ("apps", "ReplicaSet", "apps/v1"),
    ("apps", "Deployment", "apps/v1"),
    ("apps", "StatefulSet", "apps/v1"),
    ("apps", "DaemonSet", "apps/v1"),
    ("batch", "Job", "batch/v1"),
    ("batch", "CronJob", "batch/v1"),
    ("example.com", "Rollout", "example.com/v1"),
    ("other.io", "Thing", "other.io/v1"),
];
/// Index of each kind in [`KINDS`].
pub mod kind {
    /// ReplicaSet.
    pub const RS: u8 = 0;
    /// Deployment.
    pub const DEPLOY: u8 = 1;
    /// StatefulSet.
    pub const STS: u8 = 2;
    /// DaemonSet.
    pub const DS: u8 = 3;
    pub const JOB: u8 = 4;
    /// CronJob.
    pub const CRON: u8 = 5;
    /// Rollout (custom, configured).
    pub const ROLLOUT: u8 = 6;
    /// Thing (custom, not configured).
    pub const THING: u8 = 7;
    /// Number of configured kinds (a prefix of KINDS).
    pub const CONFIGURED: u8 = 7;
}

/// A watched type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Workload pods.
    Pod,
    /// ContainerImageScans.
    Cis,
    /// Scan Jobs.
    Job,
    /// Scan pods.
    ScanPod,
    /// Workload metadata of `KINDS[i]`.
    Workload(u8),
    /// Vulnerability exceptions (both kinds; the engine tells them apart by key).
    Exception,
}

/// A view as stored in a log.
#[allow(clippy::large_enum_variant)] // moved rarely; boxing would allocate on every event
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    Pod(PodView),
    Cis(CisView),
    Job(JobView),
    ScanPod(ScanPodView),
    Workload(WorkloadView),
    Exception(ExceptionView),
}

impl View {
    fn set_rv(&mut self, rv: u64) {
        match self {
            View::Pod(v) => v.resource_version = Some(rv),
            View::Cis(v) => v.resource_version = Some(rv),
            View::Job(v) => v.resource_version = Some(rv),
            View::ScanPod(v) => v.resource_version = Some(rv),
            View::Exception(v) => v.resource_version = Some(rv),
            View::Workload(_) => {}
        }
    }
}

/// One change in a log.
#[derive(Clone, Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Object key.
    pub key: String,
    /// The object before (for rebuilding older snapshots and for Delete events).
    pub before: Option<View>,
    /// The object after; `None` for a deletion.
    pub after: Option<View>,
}

/// The event log of one type, with the current objects.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Changes newer than `floor`, oldest first.
    pub changes: VecDeque<Change>,
    /// Changes at or below this resourceVersion are compacted away.
    pub floor: u64,
    /// The current objects by key.
    pub current: BTreeMap<String, View>,
}

impl Log {
    /// The objects as of `rv` (must be ≥ `floor`), rebuilt by undoing newer changes.
    pub fn snapshot_at(&self, rv: u64) -> BTreeMap<String, View> {
        let mut snap = self.current.clone();
        for c in self.changes.iter().rev() {
            if c.rv <= rv {
                break;
            }
            match &c.before {
                Some(v) => {
                    snap.insert(c.key.clone(), v.clone());
                }
                None => {
                    snap.remove(&c.key);
                }
            }
        }
        snap
    }

    /// resourceVersion of the newest change (or the floor).
    pub fn head(&self) -> u64 {
        self.changes.back().map_or(self.floor, |c| c.rv)
    }

    /// Drops changes at or below `rv`, keeping at most `keep` newer ones in any case.
    pub fn compact(&mut self, upto: u64, keep: usize) {
        while let Some(c) = self.changes.front() {
            if c.rv <= upto || self.changes.len() > keep {
                self.floor = c.rv;
                self.changes.pop_front();
            } else {
                break;
            }
        }
    }
}

/// State of a container of a workload pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    /// Waiting with a reason.
    Waiting(&'static str),
    Running,
    /// Terminated with an exit code.
    Terminated(i32),
}

/// A container of a workload pod.
#[derive(Clone, Debug)]
pub struct SimContainer {
    /// Spec list.
    pub kind: ContainerKind,
    pub name: String,
    /// Image index in the catalog (spec).
    pub image: usize,
    /// Image index the runtime runs (differs from `image` until an in-place update restarts).
    pub running_image: usize,
    pub state: CState,
}

/// A workload pod.
#[derive(Clone, Debug)]
pub struct SimPod {
    /// Namespace.
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub controller: Option<OwnerRef>,
    pub created: Timestamp,
    /// deletionTimestamp set.
    pub deleting: bool,
    pub node: Option<String>,
    pub phase: Option<&'static str>,
    /// Ready condition.
    pub ready: bool,
    pub start_time: Option<Timestamp>,
    pub containers: Vec<SimContainer>,
    /// ignore-unfixed annotation.
    pub ignore_unfixed: bool,
    /// Runs to completion (Job pods).
    pub completes: bool,
    /// Never becomes ready (settles after the settle timeout).
    pub never_ready: bool,
    /// `imagePullSecrets` and service account (fixed at creation, like the pod spec).
    pub pull: Option<Arc<PullCredentials>>,
}

/// A workload object.
#[derive(Clone, Debug)]
pub struct SimWorkload {
    /// Index into [`KINDS`].
    pub kind: u8,
    /// Namespace.
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<OwnerRef>,
    /// ignore-unfixed annotation.
    pub ignore_unfixed: bool,
    /// Pod template.
    pub template: Template,
    /// Desired replicas (pod owners) or history limit (CronJob).
    pub replicas: u32,
    /// Template revision (bumped on image updates).
    pub revision: u32,
    /// CronJob suspended / Job completed.
    pub done: bool,
    /// CronJob period in ms.
    pub period_ms: u64,
    /// Counter for generated child names.
    pub children: u32,
}

/// A pod template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Regular containers: (name, image index).
    pub containers: Vec<(String, usize)>,
    /// Init containers.
    pub init: Vec<(String, usize)>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Pods never become ready.
    pub never_ready: bool,
}

/// A ContainerImageScan.
#[derive(Clone, Debug)]
pub struct SimCis {
    /// Namespace.
    pub ns: String,
    pub name: String,
    pub uid: String,
    /// metadata.generation.
    pub generation: i64,
    pub labels: BTreeMap<String, String>,
    /// Label keys owned by the operator's field manager.
    pub our_labels: BTreeSet<String>,
    /// Owner references.
    pub owners: Vec<OwnerRef>,
    /// deletionTimestamp set.
    pub deleting: bool,
    /// Finalizers (of other controllers).
    pub finalizers: Vec<String>,
    pub spec: ContainerImageScanSpec,
    /// Full status including details.
    pub status: Option<ContainerImageScanStatus>,
    /// Spec per generation (for checking statuses against the generation they observed).
    pub spec_history: BTreeMap<i64, ContainerImageScanSpec>,
    /// resourceVersion.
    pub rv: u64,
    /// The status as the last write of a current leader left it (late writes excluded).
    pub legit: Option<ContainerImageScanStatus>,
    /// Who wrote `legit`, and the resourceVersion that write produced.
    pub legit_by: Option<((usize, u32), u64)>,
}

/// What a scan Job will do.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Exit 0 with this log; `valid` says whether it decodes to the truth.
    Report {
        /// Log bytes.
        log: Arc<Vec<u8>>,
        /// Whether the log is a valid report of the digest's truth.
        valid: bool,
    },
    /// Every attempt exits non-zero with this log.
    ExitFail {
        /// Exit code.
        code: i32,
        log: Arc<Vec<u8>>,
    },
    /// The scanned image cannot be pulled.
    PullBackOff,
    /// Runs longer than any deadline.
    Hang,
}

/// Everything the checks need to know about a Job, kept after it is gone.
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// Namespace.
    pub ns: String,
    pub name: String,
    /// Digest annotation.
    pub digest: Option<String>,
    /// resourceVersion at creation (creation order).
    pub created_rv: u64,
    /// `creationTimestamp` (whole seconds, as the API server writes it).
    pub created: Timestamp,
    /// The plan.
    pub plan: Plan,
    /// Vulnerabilities of the digest when the plan is a valid report.
    pub vulns: Option<Arc<Vec<Vulnerability>>>,
    /// Whether the Job ended Complete.
    pub succeeded: bool,
    /// Whether the Job ended at all.
    pub finished: bool,
    /// The pod template's pull credentials.
    pub pull: Option<Arc<PullCredentials>>,
    /// Where and when its scan container last got the scanned image (node, time).
    pub started: Option<(String, i64)>,
}

/// A scan Job.
#[derive(Clone, Debug)]
pub struct SimJob {
    /// Namespace: the scan namespace or a workload namespace.
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub created: Timestamp,
    /// Digest annotation.
    pub digest: Option<String>,
    /// Image annotation.
    pub image: Option<String>,
    /// CIS namespace label.
    pub cis_ns: Option<String>,
    /// CIS UID label.
    pub cis_uid: Option<String>,
    pub backoff_limit: i32,
    /// activeDeadlineSeconds.
    pub deadline_s: i64,
    /// ttlSecondsAfterFinished.
    pub ttl_s: i32,
    pub finished: Option<JobFinish>,
    /// Its pod.
    pub pod: Option<String>,
    /// Failed attempts so far.
    pub failures: i32,
    pub plan: Plan,
    /// Created by a request of an instance that was no longer alive or leading.
    pub orphan: bool,
    /// The creating instance and incarnation.
    pub creator: (usize, u32),
    /// resourceVersion of the creation.
    pub created_rv: u64,
    /// The pod template's `imagePullSecrets` and service account (`None` without secrets).
    pub pull: Option<Arc<PullCredentials>>,
    /// Nodes of the pod template's preferred node affinity.
    pub preferred_nodes: Vec<String>,
    /// `kubernetes.io/arch` values its required node affinity allows (empty: any node).
    pub required_archs: Vec<String>,
    /// Why Pod Security Admission refuses its pod, if it does.
    pub rejection: Option<String>,
    /// Pod creations refused so far (the Job controller backs off between them).
    pub refused: u32,
}

/// A scan pod.
#[derive(Clone, Debug)]
pub struct SimScanPod {
    /// Namespace (its Job's).
    pub ns: String,
    pub name: String,
    pub uid: String,
    /// Owning Job UID.
    pub job_uid: String,
    /// Owning Job name.
    pub job_name: String,
    pub created: Timestamp,
    pub phase: &'static str,
    /// Init container.
    pub init: ScanContainerState,
    /// Scan container.
    pub scan: ScanContainerState,
    /// The scan container's log.
    pub log: Arc<Vec<u8>>,
    /// Being deleted.
    pub deleting: bool,
    /// The node it runs on.
    pub node: String,
    /// The last failed pull of the scanned image (repeated in the back-off message).
    pub pull_error: Option<String>,
}

/// Namespace state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsState {
    Active,
    /// Being deleted.
    Terminating,
}

/// An image of the catalog.
#[derive(Clone, Debug)]
pub struct Image {
    /// Normalised repository.
    pub repo: String,
    /// How the pod spec writes it.
    pub spec: String,
    pub digest: String,
    /// Whether nodes can pull it.
    pub pullable: bool,
}

impl Image {
    /// `status.imageID`.
    pub fn image_id(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

/// The API server's objects.
#[derive(Debug)]
pub struct Cluster {
    /// Global resourceVersion.
    pub rv: u64,
    /// Logs per type.
    pub logs: BTreeMap<Kind, Log>,
    /// Types with changes since the runner last looked.
    pub dirty: BTreeSet<Kind>,
    pub namespaces: BTreeMap<String, NsState>,
    /// Workloads by (kind, ns, name).
    pub workloads: BTreeMap<(u8, String, String), SimWorkload>,
    /// Workload pods by (ns, name).
    pub pods: BTreeMap<(String, String), SimPod>,
    /// CIS by (ns, name).
    pub cis: BTreeMap<(String, String), SimCis>,
    /// Scan Jobs by (ns, name).
    pub jobs: BTreeMap<(String, String), SimJob>,
    /// Scan pods by (ns, name).
    pub scan_pods: BTreeMap<(String, String), SimScanPod>,
    /// `FailedCreate` Events of Jobs (their pod refused): (ns, Job name, Job UID) → (message,
    /// last time). An instance that starts lists them (Events live an hour).
    pub job_events: BTreeMap<(String, String, String), (String, i64)>,
    /// Every Job ever created, by UID.
    pub job_registry: BTreeMap<String, JobRecord>,
    /// (digest, namespace, credentials) of every workload pod with imagePullSecrets that ran
    /// a digest: the placements a scan Job may take.
    pub ran_with: BTreeSet<(String, String, Arc<PullCredentials>)>,
    /// The image catalog.
    pub images: Vec<Image>,
    /// The scan namespace's `trivy-job-config` ConfigMap (installed with the operator).
    pub job_config: BTreeMap<String, String>,
    /// Vulnerability exceptions, status included.
    pub exceptions: BTreeMap<ExceptionKey, ExceptionView>,
    /// Every version of every exception stored.
    pub exception_ledger: crate::exception_ledger::Ledger,
    /// The stream UIDs of new objects are drawn from.
    uids: Rng,
}

/// The data of `trivy-job-config`: what scan pods get as `TRIVY_<key>` variables.
pub fn job_config() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "DB_REPOSITORY".to_string(),
            "mirror.example.net/aquasecurity/trivy-db:2".to_string(),
        ),
        ("OFFLINE_SCAN".to_string(), "true".to_string()),
    ])
}

/// Key of a namespaced object in a log.
pub fn nk(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Cluster {
    /// An API server with the scan namespace, the operator's ConfigMap and the image catalog,
    /// drawing UIDs from the seed's stream.
    pub fn new(seed: u64, images: Vec<Image>) -> Cluster {
        Cluster {
            rv: 0,
            logs: BTreeMap::new(),
            dirty: BTreeSet::new(),
            namespaces: [(SCAN_NS.to_string(), NsState::Active)].into(),
            workloads: BTreeMap::new(),
            pods: BTreeMap::new(),
            cis: BTreeMap::new(),
            jobs: BTreeMap::new(),
            scan_pods: BTreeMap::new(),
            job_events: BTreeMap::new(),
            job_registry: BTreeMap::new(),
            ran_with: BTreeSet::new(),
            images,
            job_config: job_config(),
            exceptions: BTreeMap::new(),
            exception_ledger: Default::default(),
            uids: stream(seed, Concern::Uids),
        }
    }

    /// A fresh UID.
    pub fn uid(&mut self) -> String {
        let h = self.uids.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// Records a change of `kind`/`key`; returns the new resourceVersion.
    pub fn publish(&mut self, kind: Kind, key: String, after: Option<View>) -> u64 {
        self.rv += 1;
        let rv = self.rv;
        let after = after.map(|mut v| {
            v.set_rv(rv);
            v
        });
        let log = self.logs.entry(kind).or_default();
        let before = match &after {
            Some(v) => log.current.insert(key.clone(), v.clone()),
            None => log.current.remove(&key),
        };
        log.changes.push_back(Change {
            rv,
            key,
            before,
            after,
        });
        self.dirty.insert(kind);
        rv
    }

    /// Publishes the current state of a workload pod (or its removal).
    pub fn publish_pod(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let view = self.pods.get(&key).map(|p| View::Pod(self.pod_view(p)));
        self.publish(Kind::Pod, nk(ns, name), view);
    }

    /// Publishes a CIS.
    pub fn publish_cis(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let view = self.cis.get(&key).map(|c| View::Cis(cis_view(c)));
        let rv = self.publish(Kind::Cis, nk(ns, name), view);
        if let Some(c) = self.cis.get_mut(&key) {
            c.rv = rv;
        }
    }

    /// Publishes a Job.
    pub fn publish_job(&mut self, key: &(String, String)) {
        let view = self.jobs.get(key).map(|j| View::Job(job_view(j)));
        self.publish(Kind::Job, nk(&key.0, &key.1), view);
    }

    /// Publishes a scan pod.
    pub fn publish_scan_pod(&mut self, key: &(String, String)) {
        let view = self
            .scan_pods
            .get(key)
            .map(|p| View::ScanPod(scan_pod_view(p)));
        self.publish(Kind::ScanPod, nk(&key.0, &key.1), view);
    }

    /// Publishes a workload.
    pub fn publish_workload(&mut self, key: &(u8, String, String)) {
        let view = self
            .workloads
            .get(key)
            .map(|w| View::Workload(workload_view(w)));
        self.publish(Kind::Workload(key.0), nk(&key.1, &key.2), view);
    }

    /// Publishes an exception (or its removal).
    pub fn publish_exception(&mut self, key: &ExceptionKey) {
        let view = self.exceptions.get(key).cloned();
        let rv = self.publish(Kind::Exception, key.reference(), view.map(View::Exception));
        if let Some(v) = self.exceptions.get_mut(key) {
            v.resource_version = Some(rv);
        }
    }

    /// Active scan Jobs (not finished, not deleted).
    pub fn active_jobs(&self) -> impl Iterator<Item = &SimJob> {
        self.jobs.values().filter(|j| j.finished.is_none())
    }
}
