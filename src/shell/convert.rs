//! Kubernetes objects → the core's compact views: the conversions of objects the core's crate
//! knows (`core::convert`), and of workload metadata, which only the shell reads (`lean`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use crate::core::convert::{cis_view, job_view, pod_view, scan_pod_view};
use crate::core::convert::{controller_of, ignore_unfixed};
use crate::core::port::WorkloadView;

/// Metadata of a workload object of a configured kind.
pub fn workload_view(
    meta: &ObjectMeta,
    group: &str,
    api_version: &str,
    kind: &str,
) -> Option<WorkloadView> {
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
