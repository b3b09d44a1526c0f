//! Kubernetes objects → the core's compact views. Pure functions; everything the core does not
//! need is dropped here, right after a watch event is decoded, so no full object is retained.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{DynamicObject, PartialObjectMeta};

use crate::core::port::{
    CisStatusView, CisView, ContainerKind, ContainerView, JobFinish, JobView, OwnerRef, PodView,
    ScanContainerState, ScanPodView, WorkloadView,
};
use crate::core::scan_job::{
    ANNOTATION_DIGEST, ANNOTATION_IMAGE, LABEL_CIS_NAMESPACE, LABEL_CIS_UID, SCAN_CONTAINER,
    TRIVY_INIT_CONTAINER,
};
use crate::core::time::Timestamp;
use crate::core::workload::IGNORE_UNFIXED_ANNOTATION;
use crate::crd::ContainerImageScan;

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

fn controller_of(meta: &ObjectMeta) -> Option<OwnerRef> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(owner)
}

fn ignore_unfixed(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(IGNORE_UNFIXED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

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
        labels: meta.labels.clone().unwrap_or_default(),
        controller: controller_of(meta),
        created: created(meta),
        deleting: meta.deletion_timestamp.is_some(),
        node_name: spec.and_then(|s| s.node_name.clone()),
        phase: status.and_then(|s| s.phase.clone()),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        start_time: status
            .and_then(|s| s.start_time.as_ref())
            .map(Timestamp::from_k8s),
        containers,
        ignore_unfixed: ignore_unfixed(meta),
    })
}

/// Metadata of a workload object of a configured kind.
pub fn workload_view(
    obj: &PartialObjectMeta<DynamicObject>,
    group: &str,
    api_version: &str,
    kind: &str,
) -> Option<WorkloadView> {
    let meta = &obj.metadata;
    Some(WorkloadView {
        group: group.to_string(),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        controller: controller_of(meta),
        ignore_unfixed: ignore_unfixed(meta),
    })
}

/// A CIS without its vulnerability details.
pub fn cis_view(cis: &ContainerImageScan) -> Option<CisView> {
    let meta = &cis.metadata;
    let status = cis.status.as_ref();
    Some(CisView {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        generation: meta.generation.unwrap_or(0),
        labels: meta.labels.clone().unwrap_or_default(),
        owners: meta.owner_references.iter().flatten().map(owner).collect(),
        deleting: meta.deletion_timestamp.is_some(),
        spec: cis.spec.clone(),
        status: CisStatusView {
            observed_generation: status.and_then(|s| s.observed_generation),
            last_scan_job_uid: status.and_then(|s| s.last_scan_job_uid.clone()),
            last_scan_time: status
                .and_then(|s| s.last_scan_time.as_ref())
                .map(Timestamp::from_k8s),
            last_successful_scan_time: status
                .and_then(|s| s.last_successful_scan_time.as_ref())
                .map(Timestamp::from_k8s),
            conditions: status
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default(),
            summary: status.and_then(|s| s.vulnerability_summary.clone()),
        },
    })
}

/// Drops the vulnerability details of a CIS in place (for watch streams: the cache never holds
/// them).
pub fn strip_details(cis: &mut ContainerImageScan) {
    cis.metadata.managed_fields = None;
    if let Some(status) = cis.status.as_mut() {
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
    })
}

fn container_state(statuses: Option<&Vec<ContainerStatus>>, name: &str) -> ScanContainerState {
    let Some(cs) = statuses.into_iter().flatten().find(|c| c.name == name) else {
        return ScanContainerState::default();
    };
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

/// A pod of a scan Job.
pub fn scan_pod_view(pod: &Pod) -> Option<ScanPodView> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let job_ref = meta.owner_references.as_ref().and_then(|refs| {
        refs.iter()
            .find(|o| o.controller == Some(true) && o.kind == "Job")
    });
    Some(ScanPodView {
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: resource_version(meta),
        job_uid: job_ref.map(|o| o.uid.clone()),
        job_name: job_ref.map(|o| o.name.clone()),
        created: created(meta),
        phase: status.and_then(|s| s.phase.clone()),
        evicted: status.and_then(|s| s.reason.as_deref()) == Some("Evicted"),
        init: container_state(
            status.and_then(|s| s.init_container_statuses.as_ref()),
            TRIVY_INIT_CONTAINER,
        ),
        scan: container_state(
            status.and_then(|s| s.container_statuses.as_ref()),
            SCAN_CONTAINER,
        ),
    })
}

/// Labels as an owned map (helper for tests).
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
