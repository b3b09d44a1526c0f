//! Kubernetes objects → the core's compact views: the conversions of objects the core's crate
//! knows (`core::convert`), and of workload metadata, which the shell reads as kube's
//! `PartialObjectMeta`.

use kube::core::{DynamicObject, PartialObjectMeta};

pub use crate::core::convert::{cis_view, job_view, pod_view, scan_pod_view, strip_details};
use crate::core::convert::{controller_of, ignore_unfixed};
use crate::core::port::WorkloadView;

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
