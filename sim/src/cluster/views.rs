//! What the operator's watches see of the API server's objects: the same compact views the
//! shell makes of real objects.

use super::*;

impl Cluster {
    /// The view of a workload pod.
    pub fn pod_view(&self, p: &SimPod) -> PodView {
        let containers: Vec<_> = p
            .containers
            .iter()
            .map(|c| {
                let spec = &self.images[c.image];
                let run = &self.images[c.running_image];
                let started = matches!(c.state, CState::Running | CState::Terminated(_));
                ContainerView {
                    kind: c.kind,
                    name: c.name.clone(),
                    spec_image: Some(spec.spec.clone()),
                    status_image: run.spec.clone(),
                    status_image_id: if started {
                        run.image_id()
                    } else {
                        String::new()
                    },
                    waiting_reason: match c.state {
                        CState::Waiting(r) => Some(r.to_string()),
                        _ => None,
                    },
                }
            })
            .collect();
        PodView {
            namespace: p.ns.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            resource_version: None,
            labels: p.labels.clone().into(),
            controller: p.controller.clone().map(Into::into),
            created: p.created,
            deleting: p.deleting,
            node_name: p.node.clone(),
            phase: p.phase.map(str::to_string),
            ready: p.ready,
            start_time: p.start_time,
            containers: containers.into(),
            ignore_unfixed: p.ignore_unfixed,
            pull_credentials: p.pull.clone(),
        }
    }
}

/// The view of a CIS.
pub fn cis_view(c: &SimCis) -> CisView {
    CisView {
        namespace: c.ns.clone(),
        name: c.name.clone(),
        uid: c.uid.clone(),
        resource_version: Some(c.rv),
        generation: c.generation,
        labels: c.labels.clone().into(),
        owners: c.owners.clone(),
        deleting: c.deleting,
        spec: c.spec.clone(),
        status: CisStatusView::of(c.status.as_ref()),
    }
}

/// The view of a Job.
pub fn job_view(j: &SimJob) -> JobView {
    JobView {
        namespace: j.ns.clone(),
        name: j.name.clone(),
        uid: j.uid.clone(),
        resource_version: None,
        digest: j.digest.clone(),
        image_name: j.image.clone(),
        cis_namespace: j.cis_ns.clone(),
        cis_uid: j.cis_uid.clone(),
        created: j.created,
        finished: j.finished.clone(),
        deleting: false,
        pull_credentials: j.pull.clone(),
    }
}

/// The view of a scan pod.
pub fn scan_pod_view(p: &SimScanPod) -> ScanPodView {
    ScanPodView {
        namespace: p.ns.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
        resource_version: None,
        job_uid: Some(p.job_uid.clone()),
        job_name: Some(p.job_name.clone()),
        created: p.created,
        phase: Some(p.phase.to_string()),
        evicted: false,
        init: p.init.clone(),
        scan: p.scan.clone(),
    }
}

/// The view of a workload.
pub fn workload_view(w: &SimWorkload) -> WorkloadView {
    let (group, kind, api_version) = KINDS[w.kind as usize];
    WorkloadView {
        group: group.to_string(),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: w.ns.clone(),
        name: w.name.clone(),
        uid: w.uid.clone(),
        controller: w.controller.clone(),
        ignore_unfixed: w.ignore_unfixed,
    }
}

/// The owner reference pointing at a workload.
pub fn owner_ref(w: &SimWorkload) -> OwnerRef {
    let (_, kind, api_version) = KINDS[w.kind as usize];
    OwnerRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: w.name.clone(),
        uid: w.uid.clone(),
    }
}
