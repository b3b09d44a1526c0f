//! Builders of the core's views for tests of the core, the shell and the simulator (feature
//! `test-kit`; always on in the core's own tests).

use crate::crd::{ContainerImageScanSpec, Workload};
use crate::port::{CisStatusView, CisView};

/// A CIS in namespace `ns` of a bare pod's container `app`.
pub fn cis(name: &str, uid: &str, digest: &str, status: CisStatusView) -> CisView {
    CisView {
        namespace: "ns".into(),
        name: name.into(),
        uid: uid.into(),
        resource_version: Some(1),
        generation: 1,
        labels: Default::default(),
        owners: Vec::new(),
        deleting: false,
        spec: ContainerImageScanSpec {
            name: "docker.io/library/nginx".into(),
            digest: digest.into(),
            tag: Some("1".into()),
            min_severity: None,
            ignore_unfixed: Some(false),
            workload: Workload {
                api_version: Some("v1".into()),
                group: String::new(),
                kind: "Pod".into(),
                name: name.into(),
                uid: Some(format!("pod-{uid}")),
                container_name: "app".into(),
            },
        },
        status,
    }
}
