//! The port between the core and the world: what the core is told ([`Observation`]) and what it
//! asks for ([`Command`]). The kube-rs shell and the simulator both speak exactly this language,
//! so the simulator exercises the same decisions the operator makes in a real cluster.
//!
//! Views are compact: only the fields a decision needs, already extracted from the Kubernetes
//! objects by the shell (e.g. no managed fields, no vulnerability details).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::exception::VulnerabilityExceptionStatus;
use crate::crd::{
    ContainerImageScanSpec, ContainerImageScanStatus, FindingRecord, SuppressedCount,
    VulnerabilitySummary,
};

use super::exception::{Exception, ExceptionKey, InvalidException};
use super::time::Timestamp;
use super::vex::VexDocument;

/// One event of a watch, mirroring kube-runtime's `watcher::Event`: a relist is bracketed by
/// `InitStarted` … `InitDone`, and objects not re-sent in between are gone.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<T> {
    /// An object was added or modified.
    Apply(T),
    /// An object was deleted.
    Delete(T),
    /// A (re)list starts.
    InitStarted,
    /// An object of the (re)list.
    InitApply(T),
    /// The (re)list is complete.
    InitDone,
}

/// A reference to an owner or controller.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    /// `apiVersion` of the owner, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner.
    pub name: String,
    /// UID of the owner.
    pub uid: String,
}

impl OwnerRef {
    /// API group from `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerKind {
    /// `spec.initContainers`.
    Init,
    /// `spec.containers`.
    Regular,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One container of a workload pod: its spec image and what the runtime reports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerView {
    /// Spec list the container belongs to.
    pub kind: ContainerKind,
    /// Container name (from the status; may be empty in odd test fixtures).
    pub name: String,
    /// `image` of the container in the pod spec, when the spec has the container.
    pub spec_image: Option<String>,
    /// `status.*ContainerStatuses[].image`.
    pub status_image: String,
    /// `status.*ContainerStatuses[].imageID`; empty until the runtime resolved the image.
    pub status_image_id: String,
    /// Reason of the waiting state, if the container is waiting.
    pub waiting_reason: Option<String>,
}

/// What a node runs, from its well-known labels `kubernetes.io/os` and `kubernetes.io/arch`
/// (`None`: label missing).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodePlatform {
    /// `kubernetes.io/os`, e.g. `linux`.
    pub os: Option<String>,
    /// `kubernetes.io/arch`, e.g. `amd64`, `arm64`.
    pub arch: Option<String>,
}

/// A workload pod, reduced to what CIS decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `metadata.resourceVersion` when it is numeric (used only to ignore stale re-deliveries).
    pub resource_version: Option<u64>,
    /// Labels (copied to the CIS). Shared: replicas of a workload have the same (the engine
    /// interns them).
    pub labels: Arc<Labels>,
    /// The owner reference with `controller: true` (shared like `labels`).
    pub controller: Option<Arc<OwnerRef>>,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// Whether the `Ready` or the `ContainersReady` condition is `True` (`convert`).
    pub ready: bool,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// Containers with a status, init first, then regular, then ephemeral (shared like
    /// `labels`).
    pub containers: Arc<[ContainerView]>,
    /// Whether the pod carries the annotation `image-scanner.statnett.no/ignore-unfixed: "true"`
    /// (honoured on the pod as well as on the workload: fixes upstream quirk §19.1).
    pub ignore_unfixed: bool,
    /// The pull credentials the pod names, `None` when it has no `imagePullSecrets` (shared like
    /// `labels`). A kubelet that checks pull credentials (KEP-2535) lets a scan pod use an
    /// image only with the credentials it was pulled with: see `engine::placement`.
    pub pull_credentials: Option<Arc<PullCredentials>>,
}

/// What a pod presents to the kubelet for its image pulls: the names of its `imagePullSecrets`
/// (their content is the kubelet's business; the operator never reads a Secret) and its service
/// account.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PullCredentials {
    /// `spec.imagePullSecrets[].name`, in the pod's order.
    pub secrets: Vec<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
}

impl PullCredentials {
    /// What a pod spec names; `None` without imagePullSecrets.
    pub fn of(spec: &PodSpec) -> Option<PullCredentials> {
        let secrets: Vec<String> = spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .filter(|name| !name.is_empty())
            .collect();
        (!secrets.is_empty()).then(|| PullCredentials {
            secrets,
            service_account: spec
                .service_account_name
                .clone()
                .filter(|sa| !sa.is_empty())
                .unwrap_or_else(|| "default".to_string()),
        })
    }
}

/// Metadata of a workload object of a configured kind (e.g. a ReplicaSet or a CronJob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadView {
    /// API group.
    pub group: String,
    /// Full `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The owner reference with `controller: true`.
    pub controller: Option<OwnerRef>,
    /// Whether the annotation `image-scanner.statnett.no/ignore-unfixed` is exactly `"true"`.
    pub ignore_unfixed: bool,
}

/// The status of a CIS without the vulnerability details.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CisStatusView {
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.lastScanJobUID`.
    pub last_scan_job_uid: Option<String>,
    /// `status.lastScanTime`.
    pub last_scan_time: Option<Timestamp>,
    /// `status.lastSuccessfulScanTime`.
    pub last_successful_scan_time: Option<Timestamp>,
    /// `status.conditions` (small: at most one in practice).
    pub conditions: Vec<Condition>,
    /// `status.vulnerabilitySummary` (shared: the engine interns equal summaries).
    pub summary: Option<Arc<VulnerabilitySummary>>,
    /// `status.detailsBytes`; for a status without it (written by the Go operator or before the
    /// field existed), the size of its `vulnerabilities`.
    pub details_bytes: u64,
    /// `status.suppressedCount`.
    pub suppressed: Option<Arc<SuppressedCount>>,
    /// `status.exceptionsFingerprint`: which exceptions the status was written with.
    pub exceptions_fingerprint: Option<String>,
    /// `status.notableFindings` (shared: the engine interns equal records).
    pub notable: Option<Arc<FindingRecord>>,
    /// `status.announcedFindings`: the same allocation as `notable` when they are equal.
    pub announced: Option<Arc<FindingRecord>>,
}

impl CisStatusView {
    /// What the core sees of a stored status (`None`: no status yet). The shell, the
    /// simulator and the tests all read a status through this one conversion.
    pub fn of(status: Option<&ContainerImageScanStatus>) -> CisStatusView {
        let Some(s) = status else {
            return CisStatusView::default();
        };
        let notable = s.notable_findings.clone().map(Arc::new);
        CisStatusView {
            observed_generation: s.observed_generation,
            last_scan_job_uid: s.last_scan_job_uid.clone(),
            last_scan_time: s.last_scan_time.as_ref().map(Timestamp::from_k8s),
            last_successful_scan_time: s
                .last_successful_scan_time
                .as_ref()
                .map(Timestamp::from_k8s),
            conditions: s.conditions.clone().unwrap_or_default(),
            summary: s.vulnerability_summary.clone().map(Arc::new),
            details_bytes: details_bytes(s),
            suppressed: s.suppressed_count.clone().map(Arc::new),
            exceptions_fingerprint: s.exceptions_fingerprint.clone(),
            notable: notable.clone(),
            announced: match (&s.announced_findings, notable) {
                (Some(a), Some(n)) if a == &*n => Some(n),
                (a, _) => a.clone().map(Arc::new),
            },
        }
    }
}

/// A copy of `status` without `vulnerabilities`, never cloning them. Every field is named (no
/// `..`), so a field added to the status is a decision here.
fn without_details(status: &ContainerImageScanStatus) -> ContainerImageScanStatus {
    let ContainerImageScanStatus {
        observed_generation,
        last_scan_job_uid,
        last_scan_time,
        last_successful_scan_time,
        conditions,
        vulnerabilities: _,
        vulnerability_summary,
        vulnerabilities_truncated,
        details_bytes,
        suppressed_count,
        exceptions_fingerprint,
        notable_findings,
        announced_findings,
    } = status;
    ContainerImageScanStatus {
        observed_generation: *observed_generation,
        last_scan_job_uid: last_scan_job_uid.clone(),
        last_scan_time: last_scan_time.clone(),
        last_successful_scan_time: last_successful_scan_time.clone(),
        conditions: conditions.clone(),
        vulnerabilities: None,
        vulnerability_summary: vulnerability_summary.clone(),
        vulnerabilities_truncated: vulnerabilities_truncated.clone(),
        details_bytes: *details_bytes,
        suppressed_count: suppressed_count.clone(),
        exceptions_fingerprint: exceptions_fingerprint.clone(),
        notable_findings: notable_findings.clone(),
        announced_findings: announced_findings.clone(),
    }
}

/// What a status says its details take, or what its `vulnerabilities` measure when it does not
/// say.
pub fn details_bytes(status: &ContainerImageScanStatus) -> u64 {
    match (status.details_bytes, &status.vulnerabilities) {
        (Some(bytes), _) => u64::try_from(bytes).unwrap_or(0),
        (None, Some(details)) => crate::status::details_size(details) as u64,
        (None, None) => 0,
    }
}

/// A ContainerImageScan, without the vulnerability details.
#[derive(Clone, Debug, PartialEq)]
pub struct CisView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Numeric `metadata.resourceVersion`, if numeric.
    pub resource_version: Option<u64>,
    /// `metadata.generation`.
    pub generation: i64,
    /// Labels (shared with the pods they were copied from: the engine interns them).
    pub labels: Arc<Labels>,
    /// Owner references (pods).
    pub owners: Vec<OwnerRef>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub spec: ContainerImageScanSpec,
    /// Status without details.
    pub status: CisStatusView,
}

/// A vulnerability exception: its spec compiled for matching, or why it cannot be used (then
/// it covers nothing, and its status says why).
#[derive(Clone, Debug, PartialEq)]
pub struct ExceptionView {
    /// Namespace and name, or the name of a cluster-scoped one.
    pub key: ExceptionKey,
    pub uid: String,
    /// Numeric `metadata.resourceVersion`, if numeric.
    pub resource_version: Option<u64>,
    /// `metadata.generation`.
    pub generation: i64,
    /// What it covers.
    pub compiled: Result<Exception, InvalidException>,
    /// The status as stored (the operator writes it; `engine::exception_status`).
    pub status: Option<VulnerabilityExceptionStatus>,
}

/// A ConfigMap labelled [`crate::exception::VEX_CONFIG_MAP_LABEL`]: its documents, parsed once
/// per version of it.
#[derive(Clone, Debug, PartialEq)]
pub struct VexMapView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Numeric `metadata.resourceVersion`, if numeric.
    pub resource_version: Option<u64>,
    /// Each key of its `data`: the OpenVEX document, or why it is not one.
    pub documents: BTreeMap<String, Result<Arc<VexDocument>, String>>,
}

/// How a Job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFinish {
    /// `Complete=True` (true) or `Failed=True` (false).
    pub succeeded: bool,
    /// When the deciding condition became true (or when we first saw it).
    pub at: Timestamp,
    /// Reason of the deciding condition, e.g. `DeadlineExceeded`.
    pub reason: String,
    /// Message of the deciding condition.
    pub message: String,
}

/// A scan Job in the scan namespace (only Jobs labelled as ours are observed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Namespace: the scan namespace, or a workload namespace (`engine::placement`).
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Numeric resource version, if numeric.
    pub resource_version: Option<u64>,
    /// Full image digest from our annotation; `None` for Jobs we cannot attribute (e.g. written
    /// by the Go operator, which scans per CIS).
    pub digest: Option<String>,
    /// Image repository from our annotation (or the scan container's image).
    pub image_name: Option<String>,
    /// Namespace of the CIS that asked for the Job (label).
    pub cis_namespace: Option<String>,
    /// UID of the CIS that asked for the Job (label).
    pub cis_uid: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Set when the Job has `Complete=True` or `Failed=True`.
    pub finished: Option<JobFinish>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The pull credentials its pod template names (`imagePullSecrets` and service account),
    /// `None` without imagePullSecrets: with the namespace, the Job's placement.
    pub pull_credentials: Option<Arc<PullCredentials>>,
}

/// State of one container of a scan pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanContainerState {
    /// Waiting reason, e.g. `ImagePullBackOff`.
    pub waiting_reason: Option<String>,
    /// Waiting message, e.g. `Back-off pulling image …`.
    pub waiting_message: Option<String>,
    /// Exit code when terminated.
    pub exit_code: Option<i32>,
    /// Exit code of the previous run, when the container was restarted after terminating.
    pub last_exit_code: Option<i32>,
    /// Whether the container ever started (running, terminated, or restarted).
    pub started: bool,
}

/// A pod of one of our scan Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPodView {
    /// Namespace (its Job's).
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Numeric resource version, if numeric.
    pub resource_version: Option<u64>,
    /// UID of the owning Job (controller reference).
    pub job_uid: Option<String>,
    /// Name of the owning Job.
    pub job_name: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.reason == "Evicted"`.
    pub evicted: bool,
    /// The init containers: the first waiting one, else the trivy one.
    pub init: ScanContainerState,
    /// The `scan-image` container.
    pub scan: ScanContainerState,
}

/// Identifies a command so its outcome can be matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// Identifies one watch stream (e.g. the pod watch of one namespace), so that the end of a
/// relist removes only the objects that stream delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

/// Everything the core is told.
// Observations are moved once from a watch to the engine; boxing every view would cost an
// allocation per event for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Observation {
    /// Workload pods.
    Pod {
        /// Which watch.
        stream: StreamId,
        /// What happened.
        event: WatchEvent<PodView>,
    },
    /// Metadata of workload objects of the configured kinds.
    Workload {
        /// Which watch (one per kind).
        stream: StreamId,
        /// What happened.
        event: WatchEvent<WorkloadView>,
    },
    /// ContainerImageScans.
    Cis {
        /// Which watch.
        stream: StreamId,
        /// What happened.
        event: WatchEvent<CisView>,
    },
    /// Our scan Jobs.
    Job {
        /// Which watch.
        stream: StreamId,
        /// What happened.
        event: WatchEvent<JobView>,
    },
    /// Pods of our scan Jobs.
    ScanPod {
        /// Which watch.
        stream: StreamId,
        /// What happened.
        event: WatchEvent<ScanPodView>,
    },
    /// Vulnerability exceptions, namespaced and cluster-scoped (issue 20).
    Exception {
        /// Which watch (one per kind).
        stream: StreamId,
        /// What happened.
        event: WatchEvent<ExceptionView>,
    },
    /// A VEX ConfigMap (`VexMapView`) was added, changed or removed.
    VexMap {
        /// The stream.
        stream: StreamId,
        /// The event.
        event: WatchEvent<VexMapView>,
    },
    /// Every watch has delivered its first complete list; destructive decisions (deleting an
    /// obsolete CIS, counting active Jobs) are safe from now on.
    CachesSynced,
    /// A `BackOff` Event regarding a pod (of ours, if a scan pod has that name).
    BackOffEvent {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod_name: String,
    },
    /// A `FailedCreate` Event of a Job: the Job controller could not create its pod (Pod
    /// Security admission, a ResourceQuota or LimitRange of the namespace). The Job itself
    /// shows nothing of it.
    JobPodRejected {
        /// The Job's namespace.
        namespace: String,
        /// The Job's name.
        job_name: String,
        /// The Job's UID (an Event outlives its Job).
        job_uid: String,
        /// The Event's message, e.g. `pods "…" is forbidden: violates PodSecurity …`.
        message: String,
    },
    /// The scan namespace's `trivy-job-config` ConfigMap: its data, `None` while it does not
    /// exist. Scan Jobs in the scan namespace take it by `envFrom`; those in workload
    /// namespaces get a copy, so only this makes workload placements possible.
    TrivyJobConfig {
        /// The ConfigMap's `data`.
        data: Option<BTreeMap<String, String>>,
    },
    /// A node's platform changed, or the node is gone (`None`). The shell sends only changes
    /// (and, after a relist, `None` for nodes that vanished), so the core holds one small
    /// entry per node: scan Jobs must run on the platform of the nodes that run the image.
    NodePlatform {
        /// The node's name.
        node: String,
        /// Its platform; `None` when the node was deleted.
        platform: Option<NodePlatform>,
    },
    /// Leadership gained or lost.
    Leadership {
        /// Whether this instance may write.
        leading: bool,
    },
    /// The Lease this instance holds is valid until `until` by its own clock (its last
    /// renewal plus the lease's duration, less a margin for a request under way). Past it the
    /// instance issues nothing until a renewal is seen: a process that was paused (SIGSTOP, a
    /// frozen VM, a long GC) wakes up believing it leads while another has taken over, and
    /// the news of the lost Lease reaches it only after it already wrote (the chaos test found
    /// a CIS written 21 s after the other replica took over). Without leader election the
    /// shell never sends it and nothing is limited.
    LeaseValidUntil {
        /// The end of the validity.
        until: crate::time::Timestamp,
    },
    /// The result of a command.
    Outcome {
        /// Which command.
        id: CommandId,
        /// What happened.
        outcome: Outcome,
    },
}

/// Something the core wants done.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Identifier echoed back in [`Observation::Outcome`].
    pub id: CommandId,
    /// What to do.
    pub action: Action,
}

/// The kind of object a recorded Event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventRegarding {
    /// The top workload of a CIS (`spec.workload`: a Deployment, CronJob, …), so that `kubectl
    /// describe` of it shows what changed in the images it runs.
    Workload {
        /// Its `apiVersion`, e.g. `apps/v1`.
        api_version: String,
        /// Its kind, e.g. `Deployment`.
        kind: String,
    },
    /// A ContainerImageScan: what happened to its scan.
    Cis,
    /// A workload Pod: a container of it that cannot have a CIS (e.g. an image reference that
    /// does not parse), so nothing else would show that it goes unscanned.
    Pod,
    /// A VulnerabilityException (e.g. it expired).
    VulnerabilityException,
    /// A ClusterVulnerabilityException (namespace empty; the Event goes to `default`).
    ClusterVulnerabilityException,
}

/// A Kubernetes event to record on a CIS or a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// Machine-readable reason, e.g. `ScanFailed`.
    pub reason: String,
    /// Human-readable note (bounded).
    pub note: String,
}

/// The requests the shell (or the simulator) executes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Server-side apply of a CIS's metadata and spec (creates it when missing).
    ApplyCis {
        namespace: String,
        name: String,
        /// Labels we own.
        labels: Arc<Labels>,
        /// Owner references (pods, non-controller).
        owners: Vec<OwnerRef>,
        /// Spec we own (`minSeverity` is never sent).
        spec: ContainerImageScanSpec,
    },
    /// Delete a CIS, only if it still has this UID.
    DeleteCis {
        namespace: String,
        name: String,
        /// UID precondition.
        uid: String,
    },
    /// Server-side apply of a CIS's status, only if it still has this UID (and, when known,
    /// this resourceVersion: a decision taken on a stale view, or by a deposed leader, then
    /// answers 409 instead of moving the status back).
    ApplyCisStatus {
        namespace: String,
        name: String,
        /// UID precondition.
        uid: String,
        /// resourceVersion precondition: the version the decision was based on.
        resource_version: Option<u64>,
        /// The whole status we own.
        status: Box<ContainerImageScanStatus>,
        /// Leave the stored `vulnerabilities`/`vulnerabilitiesTruncated` as they are (the core
        /// does not hold them): a failure or a Job announcement must not erase the details of
        /// the last successful scan. The shell applies such a write under a field manager that
        /// never owns the details (one request, no read).
        keep_details: bool,
    },
    /// Create a scan Job (in the namespace of its metadata).
    CreateJob {
        /// The Job.
        job: Box<Job>,
    },
    /// Delete a scan Job with background propagation, only if it still has this UID.
    DeleteJob {
        namespace: String,
        name: String,
        /// UID precondition.
        uid: String,
    },
    /// Read the log of a container of a scan pod, at most `limit_bytes`.
    FetchLog {
        /// Pod namespace.
        namespace: String,
        pod_name: String,
        /// Container name.
        container: String,
        /// Byte cap.
        limit_bytes: usize,
        /// Read the log of the previous run of the container (after a restart).
        previous: bool,
    },
    /// Server-side apply of the OpenReports `Report` of a CIS (same name and namespace).
    ApplyReport {
        namespace: String,
        name: String,
        /// The whole Report object (`openreports.io/v1alpha1`).
        report: Box<serde_json::Value>,
    },
    /// Server-side apply of a vulnerability exception's status, only if it still has this UID.
    ApplyExceptionStatus {
        /// Which exception (namespaced or cluster-scoped).
        key: ExceptionKey,
        /// UID precondition.
        uid: String,
        /// The whole status we own.
        status: Box<VulnerabilityExceptionStatus>,
    },
    /// Record a Kubernetes Event regarding a CIS, a pod or an exception.
    RecordEvent {
        /// The kind of the object.
        regarding: EventRegarding,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its UID.
        uid: String,
        /// The event.
        event: EventNote,
    },
    /// POST a notification to a sink (`EngineConfig::sinks[sink]`): not an API request, and
    /// outside the API command window (`engine::notices`). Answered `Done` for a 2xx.
    Deliver {
        /// Index of the sink in `EngineConfig::sinks`.
        sink: usize,
        /// Idempotency key (`Idempotency-Key` header; also in the payload).
        key: String,
        /// `Content-Type` of the body.
        content_type: &'static str,
        /// The payload (`notification::payload`).
        body: Vec<u8>,
    },
}

impl Action {
    /// What the engine keeps of an action while it is in flight: all of it but the payloads no
    /// answer handler reads — a status's details and a Report's body. A full copy would hold
    /// every detail twice for each write in flight (the largest item of the heap at 10,000
    /// pods of realistic images; docs/performance.md).
    pub fn in_flight_record(&self) -> Action {
        match self {
            Action::ApplyCisStatus {
                namespace,
                name,
                uid,
                resource_version,
                status,
                keep_details,
            } => Action::ApplyCisStatus {
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                resource_version: *resource_version,
                status: Box::new(without_details(status)),
                keep_details: *keep_details,
            },
            Action::ApplyReport {
                namespace, name, ..
            } => Action::ApplyReport {
                namespace: namespace.clone(),
                name: name.clone(),
                report: Box::default(),
            },
            other => other.clone(),
        }
    }

    /// Whether the action changes something (the cluster, or a sink's receiver) as opposed to
    /// reading a log: only a leader may issue it.
    pub fn is_write(&self) -> bool {
        !matches!(self, Action::FetchLog { .. })
    }

    /// A short name for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::ApplyCis { .. } => "apply_cis",
            Action::DeleteCis { .. } => "delete_cis",
            Action::ApplyCisStatus { .. } => "apply_cis_status",
            Action::CreateJob { .. } => "create_job",
            Action::DeleteJob { .. } => "delete_job",
            Action::FetchLog { .. } => "fetch_log",
            Action::ApplyReport { .. } => "apply_report",
            Action::ApplyExceptionStatus { .. } => "apply_exception_status",
            Action::RecordEvent { .. } => "record_event",
            Action::Deliver { .. } => "deliver",
        }
    }
}

/// How an API request failed, classified for the retry decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiErrorKind {
    /// 404.
    NotFound,
    /// 409 because of a stale resourceVersion or a UID precondition.
    Conflict,
    /// 409 AlreadyExists on create.
    AlreadyExists,
    /// 410 Gone.
    Gone,
    /// 413, or etcd's "request is too large".
    TooLarge,
    /// 429 Too Many Requests.
    Throttled,
    /// 5xx other than too-large.
    ServerError,
    /// The request may or may not have been applied (timeout, connection reset).
    Unknown,
    /// 422 or 400: the request itself is wrong; retrying the same request cannot help.
    Invalid,
    /// 401/403.
    Forbidden,
    /// The namespace is being deleted.
    NamespaceTerminating,
    /// The log stream exceeded the byte cap.
    LogTooLarge,
}

impl ApiErrorKind {
    /// Whether the same request may succeed later without any other change.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ApiErrorKind::Conflict
                | ApiErrorKind::Gone
                | ApiErrorKind::Throttled
                | ApiErrorKind::ServerError
                | ApiErrorKind::Unknown
                | ApiErrorKind::Forbidden
        )
    }
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Classification.
    pub kind: ApiErrorKind,
    /// Server or transport message (bounded by the shell).
    pub message: String,
}

/// What happened to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A CIS apply (spec or status) succeeded; the object as the server returned it.
    CisApplied(Box<CisView>),
    /// A Job was created; the object as the server returned it.
    JobCreated(Box<JobView>),
    /// A delete or event succeeded.
    Done,
    /// A log was read (at most the requested bytes).
    Log(Vec<u8>),
    /// The request failed.
    Failed(ApiError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_seen_without_its_details_and_no_status_as_the_empty_one() {
        let status: ContainerImageScanStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 3,
            "lastScanJobUID": "job-1",
            "lastScanTime": "2026-12-04T10:00:00Z",
            "lastSuccessfulScanTime": "2026-12-04T09:00:00Z",
            "conditions": [{"type": "Stalled", "status": "True", "reason": "Error",
                "message": "m", "lastTransitionTime": "2026-12-04T10:00:00Z"}],
            "vulnerabilitySummary": {"severityCount": {"CRITICAL": 2}, "fixedCount": 1,
                "unfixedCount": 1},
            "vulnerabilities": [{"vulnerabilityID": "CVE-1", "pkgName": "p",
                "installedVersion": "1", "severity": "CRITICAL"}]
        }))
        .expect("a status");
        let view = CisStatusView::of(Some(&status));
        assert_eq!(view.observed_generation, Some(3));
        assert_eq!(view.last_scan_job_uid.as_deref(), Some("job-1"));
        let at = |s: &str| {
            Timestamp::from_k8s(&serde_json::from_value(serde_json::json!(s)).expect("a time"))
        };
        assert_eq!(view.last_scan_time, Some(at("2026-12-04T10:00:00Z")));
        assert_eq!(
            view.last_successful_scan_time,
            Some(at("2026-12-04T09:00:00Z"))
        );
        assert_eq!(view.conditions.len(), 1);
        assert_eq!(view.conditions[0].reason, "Error");
        assert_eq!(
            view.summary.as_deref(),
            status.vulnerability_summary.as_ref()
        );
        assert_eq!(CisStatusView::of(None), CisStatusView::default());
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        use ApiErrorKind::*;
        let retryable = [Conflict, Gone, Throttled, ServerError, Unknown, Forbidden];
        let terminal = [
            NotFound,
            AlreadyExists,
            TooLarge,
            Invalid,
            NamespaceTerminating,
            LogTooLarge,
        ];
        assert!(retryable.iter().all(|k| k.is_retryable()));
        assert!(!terminal.iter().any(|k| k.is_retryable()));
    }

    #[test]
    fn only_reading_a_log_is_not_a_write() {
        let read = Action::FetchLog {
            namespace: "ns".into(),
            pod_name: "p".into(),
            container: "c".into(),
            limit_bytes: 1,
            previous: false,
        };
        assert!(!read.is_write());
        let delete = Action::DeleteCis {
            namespace: "ns".into(),
            name: "n".into(),
            uid: "u".into(),
        };
        assert!(delete.is_write());
        let event = Action::RecordEvent {
            regarding: EventRegarding::Cis,
            namespace: "ns".into(),
            name: "n".into(),
            uid: "u".into(),
            event: EventNote {
                warning: false,
                reason: "r".into(),
                note: "n".into(),
            },
        };
        assert!(event.is_write());
    }
}
