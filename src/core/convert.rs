//! Kubernetes objects → the core's compact views. Pure functions; everything the core does not
//! need is dropped here, right after a watch event is decoded, so no full object is retained.
//! The shell's watches use them, and so does the test kit's API server, so that what a test's
//! engine observes of a Job it created is what the operator would observe.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::ContainerImageScan;
use crate::crd::exception::{
    ClusterVulnerabilityException, VulnerabilityException, VulnerabilityExceptionStatus,
};
use crate::exception::{Exception, ExceptionKey, InvalidException, ObjectVersion};
use crate::port::{
    CisStatusView, CisView, ContainerKind, ContainerView, ExceptionView, JobFinish, JobView,
    OwnerRef, PodView, PullCredentials, ScanContainerState, ScanPodView, VexMapView,
};
use crate::scan_job::{
    ANNOTATION_DIGEST, ANNOTATION_IMAGE, LABEL_CIS_NAMESPACE, LABEL_CIS_UID, SCAN_CONTAINER,
    TRIVY_INIT_CONTAINER,
};
use crate::time::Timestamp;
use crate::vex::VexDocument;
use crate::workload::IGNORE_UNFIXED_ANNOTATION;

fn resource_version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
}

fn created(meta: &ObjectMeta) -> Timestamp {
    meta.creation_timestamp
        .as_ref()
        .map(Timestamp::from_k8s)
        .unwrap_or_default()
}

fn owner(o: &OwnerReference) -> OwnerRef {
    OwnerRef {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
    }
}

/// The controller among the owners.
pub fn controller_of(meta: &ObjectMeta) -> Option<OwnerRef> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(owner)
}

/// Whether the object opts into `ignoreUnfixed` by annotation.
pub fn ignore_unfixed(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(IGNORE_UNFIXED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Either says the pod's containers run and are ready. `ContainersReady` stays `True` when
/// `Ready` is not: the node controller marks every pod of a node that stopped reporting not
/// Ready (and only `Ready`), and unmet readiness gates hold `Ready` alone. Such a pod's images
/// run as much as any, so its CIS is not held back for `--pod-settle-timeout`.
const READY_CONDITIONS: [&str; 2] = ["Ready", "ContainersReady"];

/// A workload pod; `None` when it lacks a namespace, name or UID.
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let spec_image = |kind: ContainerKind, name: &str| -> Option<String> {
        let spec = spec?;
        match kind {
            ContainerKind::Init => spec
                .init_containers
                .as_ref()?
                .iter()
                .find(|c| c.name == name)?
                .image
                .clone(),
            ContainerKind::Regular => spec
                .containers
                .iter()
                .find(|c| c.name == name)?
                .image
                .clone(),
            ContainerKind::Ephemeral => spec
                .ephemeral_containers
                .as_ref()?
                .iter()
                .find(|c| c.name == name)?
                .image
                .clone(),
        }
    };
    let mut containers = Vec::new();
    let mut add = |kind: ContainerKind, statuses: Option<&Vec<ContainerStatus>>| {
        for cs in statuses.into_iter().flatten() {
            containers.push(ContainerView {
                kind,
                name: cs.name.clone(),
                spec_image: spec_image(kind, &cs.name),
                status_image: cs.image.clone(),
                status_image_id: cs.image_id.clone(),
                waiting_reason: cs
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.clone()),
            });
        }
    };
    add(
        ContainerKind::Init,
        status.and_then(|s| s.init_container_statuses.as_ref()),
    );
    add(
        ContainerKind::Regular,
        status.and_then(|s| s.container_statuses.as_ref()),
    );
    add(
        ContainerKind::Ephemeral,
        status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
    );
    Some(PodView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        labels: Arc::new(meta.labels.clone().unwrap_or_default()),
        controller: controller_of(meta).map(Arc::new),
        created: created(meta),
        deleting: meta.deletion_timestamp.is_some(),
        node_name: spec.and_then(|s| s.node_name.clone()),
        phase: status.and_then(|s| s.phase.clone()),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| READY_CONDITIONS.contains(&c.type_.as_str()) && c.status == "True")
            }),
        start_time: status
            .and_then(|s| s.start_time.as_ref())
            .map(Timestamp::from_k8s),
        containers: containers.into(),
        ignore_unfixed: ignore_unfixed(meta),
        pull_credentials: spec.and_then(PullCredentials::of).map(Arc::new),
    })
}

/// A CIS without its vulnerability details.
pub fn cis_view(cis: &ContainerImageScan) -> Option<CisView> {
    let meta = &cis.metadata;
    Some(CisView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        generation: meta.generation.unwrap_or(0),
        labels: Arc::new(meta.labels.clone().unwrap_or_default()),
        owners: meta.owner_references.iter().flatten().map(owner).collect(),
        deleting: meta.deletion_timestamp.is_some(),
        spec: cis.spec.clone(),
        status: CisStatusView::of(cis.status.as_ref()),
    })
}

/// A `VulnerabilityException`, compiled (or why it cannot be used).
pub fn exception_view(e: &VulnerabilityException) -> Option<ExceptionView> {
    let (namespace, name) = (
        e.metadata.namespace.as_deref()?,
        e.metadata.name.as_deref()?,
    );
    let key = ExceptionKey::Namespaced {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    exception_view_of(&e.metadata, key, e.status.clone(), |version| {
        Exception::namespaced(namespace, name, version, &e.spec)
    })
}

/// A `ClusterVulnerabilityException`, compiled (or why it cannot be used).
pub fn cluster_exception_view(e: &ClusterVulnerabilityException) -> Option<ExceptionView> {
    let name = e.metadata.name.as_deref()?;
    let key = ExceptionKey::Cluster {
        name: name.to_string(),
    };
    exception_view_of(&e.metadata, key, e.status.clone(), |version| {
        Exception::cluster(name, version, &e.spec)
    })
}

fn exception_view_of(
    meta: &ObjectMeta,
    key: ExceptionKey,
    status: Option<VulnerabilityExceptionStatus>,
    compile: impl FnOnce(ObjectVersion<'_>) -> Result<Exception, InvalidException>,
) -> Option<ExceptionView> {
    let version = ObjectVersion {
        uid: meta.uid.as_deref()?,
        generation: meta.generation.unwrap_or(0),
    };
    Some(ExceptionView {
        key,
        uid: version.uid.to_string(),
        resource_version: resource_version(meta),
        generation: version.generation,
        compiled: compile(version),
        status,
    })
}

/// A ConfigMap holding VEX documents: every key of its `data` parsed (`binaryData` is not
/// read: OpenVEX is JSON text).
pub fn vex_map_view(map: &ConfigMap) -> Option<VexMapView> {
    let meta = &map.metadata;
    let documents = map
        .data
        .iter()
        .flatten()
        .map(|(key, text)| (key.clone(), VexDocument::parse(text).map(Arc::new)))
        .collect();
    Some(VexMapView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        documents,
    })
}

/// Drops the vulnerability details of a CIS in place. The shell never holds them at all (it
/// decodes CIS with `shell::lean::WatchedCis`); this is what that decoding must equal, and its
/// tests compare the two.
#[cfg(any(test, feature = "test-kit"))]
pub fn strip_details(cis: &mut ContainerImageScan) {
    cis.metadata.managed_fields = None;
    if let Some(status) = cis.status.as_mut() {
        // What they took stays known (a status from before `detailsBytes` says nothing).
        let bytes = crate::port::details_bytes(status);
        status.details_bytes = Some(i64::try_from(bytes).unwrap_or(i64::MAX));
        status.vulnerabilities = None;
    }
}

/// A scan Job. `now` stands in for a missing condition transition time.
pub fn job_view(job: &Job, now: Timestamp) -> Option<JobView> {
    let meta = &job.metadata;
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    // Only Complete/Failed decide (since Kubernetes 1.31 SuccessCriteriaMet and FailureTarget
    // come first; treating those as final broke upstream once, 0.8.19).
    let finished = conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| JobFinish {
            succeeded: c.type_ == "Complete",
            at: c
                .last_transition_time
                .as_ref()
                .map(Timestamp::from_k8s)
                .unwrap_or(now),
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    let scan_image = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|c| c.name == SCAN_CONTAINER))
        .and_then(|c| c.image.clone());
    Some(JobView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        digest: annotation(ANNOTATION_DIGEST),
        image_name: annotation(ANNOTATION_IMAGE)
            .or_else(|| scan_image.map(|i| i.split('@').next().unwrap_or_default().to_string())),
        cis_namespace: label(LABEL_CIS_NAMESPACE),
        cis_uid: label(LABEL_CIS_UID),
        created: created(meta),
        finished,
        deleting: meta.deletion_timestamp.is_some(),
        pull_credentials: job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(PullCredentials::of)
            .map(Arc::new),
    })
}

fn container_state(statuses: Option<&Vec<ContainerStatus>>, name: &str) -> ScanContainerState {
    statuses
        .into_iter()
        .flatten()
        .find(|c| c.name == name)
        .map(status_state)
        .unwrap_or_default()
}

fn status_state(cs: &ContainerStatus) -> ScanContainerState {
    let state = cs.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    ScanContainerState {
        waiting_reason: waiting.and_then(|w| w.reason.clone()),
        waiting_message: waiting.and_then(|w| w.message.clone()),
        exit_code: terminated.map(|t| t.exit_code),
        last_exit_code: cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        started: state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            || cs.restart_count > 0
            || cs
                .last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some()),
    }
}

/// The init containers as one: the first one that waits (e.g. cannot pull its image), else
/// the trivy one. A scan pod has the trivy init container and, with a Java DB image, a second
/// one; either failing to pull keeps the scan from starting.
fn init_state(statuses: Option<&Vec<ContainerStatus>>) -> ScanContainerState {
    let waiting = statuses.into_iter().flatten().find(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.is_some())
    });
    match waiting {
        Some(c) => status_state(c),
        None => container_state(statuses, TRIVY_INIT_CONTAINER),
    }
}

/// A pod of a scan Job.
pub fn scan_pod_view(pod: &Pod) -> Option<ScanPodView> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let job_ref = meta.owner_references.as_ref().and_then(|refs| {
        refs.iter()
            .find(|o| o.controller == Some(true) && o.kind == "Job")
    });
    Some(ScanPodView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        job_uid: job_ref.map(|o| o.uid.clone()),
        job_name: job_ref.map(|o| o.name.clone()),
        created: created(meta),
        phase: status.and_then(|s| s.phase.clone()),
        evicted: status.and_then(|s| s.reason.as_deref()) == Some("Evicted"),
        init: init_state(status.and_then(|s| s.init_container_statuses.as_ref())),
        scan: container_state(
            status.and_then(|s| s.container_statuses.as_ref()),
            SCAN_CONTAINER,
        ),
    })
}

/// Whether a Job's `FailedCreate` message says the API server refused the pod (admission,
/// a quota, an invalid pod: the Job will not run as it is), rather than that the Job
/// controller could not reach it (`Error creating: Post "https://…": dial tcp …`, a timeout,
/// an API server starting or overloaded), which it tries again by itself. Found by `make
/// chaos`: a kube-apiserver restart while scan Jobs started failed their scans for the 5
/// minutes of the failed-scan back-off.
pub fn pod_create_refused(message: &str) -> bool {
    let reason = message.strip_prefix("Error creating: ").unwrap_or(message);
    // A transport error of Go's HTTP client names the request; an API status never does.
    let unreached = reason.starts_with("Post \"") || reason.starts_with("Post http");
    let transient = [
        "the server is currently unable to handle the request",
        "the server has received too many requests",
        "etcdserver:",
        "Timeout: request did not complete",
        "context deadline exceeded",
        "connection refused",
        "connection reset by peer",
        "http2: client connection lost",
    ]
    .iter()
    .any(|t| reason.contains(t));
    !(unreached || transient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_keeps_what_decisions_need_from_every_container_list() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "42",
                "labels": {"app": "x"}, "annotations": {"image-scanner.statnett.no/ignore-unfixed": "true", "big": "drop me"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n1"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs1", "controller": true}]},
            "spec": {"nodeName": "worker-1",
                "initContainers": [{"name": "init", "image": "reg/init:1"}],
                "containers": [{"name": "app", "image": "reg/app@sha256:aa"}],
                "ephemeralContainers": [{"name": "dbg", "image": "reg/dbg:2"}]},
            "status": {"phase": "Running", "startTime": "2026-11-27T10:00:00Z",
                "conditions": [{"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "init", "image": "reg/init:1", "imageID": "reg/init@sha256:11", "ready": false, "restartCount": 0}],
                "containerStatuses": [{"name": "app", "image": "reg/app@sha256:aa", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff"}}}],
                "ephemeralContainerStatuses": [{"name": "dbg", "image": "reg/dbg:2", "imageID": "reg/dbg@sha256:22", "ready": false, "restartCount": 0}]}
        }))
        .expect("pod");
        let v = pod_view(&pod).expect("view");
        assert_eq!(v.resource_version, Some(42));
        assert_eq!(
            v.controller.as_ref().map(|c| c.uid.as_str()),
            Some("rs1"),
            "the controller, not the first owner"
        );
        assert!(v.ignore_unfixed && v.ready);
        assert_eq!(v.node_name.as_deref(), Some("worker-1"));
        // Regression (chaos-small seed 1063508541): kube-apiserver stopped for 35 s, the node
        // controller marked every pod of the nodes not Ready; a CIS a user deleted meanwhile
        // was created again only 5 minutes after its pod started (`--pod-settle-timeout`).
        let readiness = |conditions: serde_json::Value| {
            let mut p = pod.clone();
            if let Some(s) = p.status.as_mut() {
                s.conditions = serde_json::from_value(conditions).ok();
            }
            pod_view(&p).is_some_and(|v| v.ready)
        };
        let node_not_ready = json!([{"type": "Ready", "status": "False"},
            {"type": "ContainersReady", "status": "True"}]);
        assert!(readiness(node_not_ready), "containers ready, the node not");
        let not_ready = json!([{"type": "Ready", "status": "False"},
            {"type": "ContainersReady", "status": "False"}]);
        assert!(!readiness(not_ready));
        assert!(!readiness(json!([])));
        assert_eq!(v.start_time, Some(Timestamp::from_secs(1_795_773_600)));
        let kinds: Vec<(ContainerKind, &str, Option<&str>)> = v
            .containers
            .iter()
            .map(|c| (c.kind, c.name.as_str(), c.spec_image.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ContainerKind::Init, "init", Some("reg/init:1")),
                (ContainerKind::Regular, "app", Some("reg/app@sha256:aa")),
                (ContainerKind::Ephemeral, "dbg", Some("reg/dbg:2")),
            ]
        );
        assert_eq!(
            v.containers[1].waiting_reason.as_deref(),
            Some("ImagePullBackOff")
        );
        assert!(
            pod_view(&Pod::default()).is_none(),
            "no name/namespace/uid: skipped"
        );
    }

    #[test]
    fn a_job_is_finished_only_by_complete_or_failed() {
        let job = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "j", "namespace": "scans", "uid": "ju", "creationTimestamp": "2026-11-27T10:00:00Z",
                    "labels": {"controller.statnett.no/namespace": "team", "controller.statnett.no/uid": "cis-1"},
                    "annotations": {"image-scanner.statnett.no/digest": "sha256:aa", "image-scanner.statnett.no/image": "reg/app"}},
                "status": {"conditions": conditions}
            }))
            .expect("job")
        };
        let now = Timestamp::from_secs(5);
        // Kubernetes 1.31+ sets SuccessCriteriaMet / FailureTarget first: not finished yet.
        let v = job_view(
            &job(json!([{"type": "SuccessCriteriaMet", "status": "True"}])),
            now,
        )
        .expect("view");
        assert!(v.finished.is_none());
        let v = job_view(
            &job(json!([{"type": "FailureTarget", "status": "True"}])),
            now,
        )
        .expect("view");
        assert!(v.finished.is_none());
        let v = job_view(
            &job(json!([{"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-27T10:01:00Z"}])),
            now,
        )
        .expect("view");
        let f = v.finished.expect("finished");
        assert!(f.succeeded);
        assert_eq!(f.at, Timestamp::from_secs(1_795_773_660));
        let v = job_view(&job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}])), now)
            .expect("view");
        let f = v.finished.expect("finished");
        assert!(!f.succeeded && f.reason == "DeadlineExceeded" && f.at == now);
        assert_eq!(v.digest.as_deref(), Some("sha256:aa"));
        assert_eq!(v.cis_uid.as_deref(), Some("cis-1"));
        assert_eq!(v.image_name.as_deref(), Some("reg/app"));
    }

    #[test]
    fn a_scan_pod_reports_failed_attempts_and_pull_problems() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "scan-1", "namespace": "scans", "uid": "su",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "ju", "controller": true}]},
            "status": {"phase": "Running", "reason": "Evicted",
                "initContainerStatuses": [{"name": "trivy", "image": "t", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}],
                "containerStatuses": [{"name": "scan-image", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1}}}]}
        }))
        .expect("pod");
        let v = scan_pod_view(&pod).expect("view");
        assert_eq!(
            (v.job_uid.as_deref(), v.job_name.as_deref()),
            (Some("ju"), Some("j"))
        );
        assert!(v.evicted);
        assert_eq!(v.init.waiting_reason.as_deref(), Some("ErrImagePull"));
        assert_eq!(v.init.waiting_message.as_deref(), Some("not found"));
        assert!(!v.init.started);
        assert!(v.scan.started);
        assert_eq!((v.scan.exit_code, v.scan.last_exit_code), (None, Some(1)));
    }

    /// The Java DB init container runs after trivy's: when it cannot pull its image, that is
    /// what the view shows, not the trivy container that finished.
    #[test]
    fn a_scan_pod_shows_the_init_container_that_waits() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "scan-1", "namespace": "scans", "uid": "su"},
            "status": {"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "trivy", "image": "t", "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0}}},
                    {"name": "java-db", "image": "j", "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"j\""}}}]}
        }))
        .expect("pod");
        let v = scan_pod_view(&pod).expect("view");
        assert_eq!(v.init.waiting_reason.as_deref(), Some("ImagePullBackOff"));
        assert_eq!(
            v.init.waiting_message.as_deref(),
            Some("Back-off pulling image \"j\"")
        );
    }

    #[test]
    fn the_cis_view_and_the_watch_keep_no_details() {
        let mut cis: ContainerImageScan = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "cu", "generation": 3,
                "managedFields": [{"manager": "x"}]},
            "spec": {"name": "reg/app", "digest": "sha256:aa", "workload": {"group": "", "kind": "Pod", "name": "p", "containerName": "app"}},
            "status": {"lastScanJobUID": "j", "lastScanTime": "2026-11-27T10:00:00Z",
                "vulnerabilities": [{"vulnerabilityID": "CVE-1", "pkgName": "a", "installedVersion": "1", "severity": "LOW"}],
                "vulnerabilitySummary": {"fixedCount": 0, "unfixedCount": 1}}
        }))
        .expect("cis");
        let v = cis_view(&cis).expect("view");
        assert_eq!(
            (v.generation, v.status.last_scan_job_uid.as_deref()),
            (3, Some("j"))
        );
        // A status from before `detailsBytes`: what its details take is measured.
        let measured = crate::status::list_size(
            cis.status
                .as_ref()
                .and_then(|s| s.vulnerabilities.as_deref())
                .unwrap_or_default(),
        ) as u64;
        assert!(measured > 0);
        assert_eq!(v.status.details_bytes, measured);
        assert_eq!(v.status.summary.as_ref().map(|s| s.unfixed_count), Some(1));
        strip_details(&mut cis);
        assert!(cis.metadata.managed_fields.is_none());
        assert!(
            cis.status
                .as_ref()
                .is_some_and(|s| s.vulnerabilities.is_none())
        );
        // The watch's copy keeps what they took.
        assert_eq!(
            cis_view(&cis).map(|v| v.status.details_bytes),
            Some(measured)
        );
    }

    #[test]
    fn a_pod_create_is_refused_by_admission_not_by_an_unreachable_api_server() {
        for refused in [
            r#"Error creating: pods "app-1-x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#,
            r#"Error creating: pods "app-1-x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"#,
            r#"Error creating: Pod "app-1-x" is invalid: spec.containers[0].image: Required value"#,
            r#"Error creating: admission webhook "policy.example.com" denied the request: no"#,
        ] {
            assert!(pod_create_refused(refused), "{refused}");
        }
        for unreached in [
            r#"Error creating: Post "https://127.0.0.1:17128/api/v1/namespaces/image-scanner/pods": dial tcp 127.0.0.1:17128: connect: connection refused"#,
            r#"Error creating: Post "https://10.0.0.1:443/api/v1/namespaces/s/pods": context deadline exceeded"#,
            "Error creating: the server is currently unable to handle the request (post pods)",
            "Error creating: Timeout: request did not complete within requested timeout - context deadline exceeded",
            "Error creating: etcdserver: request timed out",
        ] {
            assert!(!pod_create_refused(unreached), "{unreached}");
        }
    }
}
