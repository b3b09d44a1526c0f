//! Builders of the core's views for tests of the core, the shell and the simulator (feature
//! `test-kit`; always on in the core's own tests).

use crate::crd::{ContainerImageScanSpec, Severity, Vulnerability, Workload};
use crate::port::{CisStatusView, CisView, ContainerKind, ContainerView, PodView};
use crate::time::Timestamp;

/// A finding of `id` in package `pkg` 1.0 at `severity`, fixed in `fixed` (empty: no fix).
pub fn finding(id: &str, pkg: &str, severity: Severity, fixed: &str) -> Vulnerability {
    Vulnerability {
        vulnerability_id: id.into(),
        pkg_name: pkg.into(),
        installed_version: "1.0".into(),
        severity,
        pkg_path: String::new(),
        fixed_version: fixed.into(),
        title: String::new(),
        primary_url: String::new(),
        suppressed_by: None,
        suppressed_justification: None,
    }
}

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

/// A running pod `name` (UID `uid`) in namespace `ns` whose container `app` runs `nginx` at
/// `digest`.
pub fn pod(name: &str, uid: &str, digest: &str) -> PodView {
    PodView {
        namespace: "ns".into(),
        name: name.into(),
        uid: uid.into(),
        resource_version: Some(1),
        labels: Default::default(),
        controller: None,
        created: Timestamp::from_secs(1),
        deleting: false,
        node_name: Some("n1".into()),
        phase: Some("Running".into()),
        ready: true,
        start_time: Some(Timestamp::from_secs(1)),
        containers: vec![ContainerView {
            kind: ContainerKind::Regular,
            name: "app".into(),
            spec_image: Some("nginx:1".into()),
            status_image: "nginx:1".into(),
            status_image_id: format!("docker.io/library/nginx@{digest}"),
            waiting_reason: None,
        }]
        .into(),
        ignore_unfixed: false,
        pull_credentials: None,
    }
}

pub mod apply;
pub mod fake_api;

/// A vulnerability exception from its spec as JSON: a `VulnerabilityException` of `namespace`,
/// or a `ClusterVulnerabilityException` when `None` (its spec may then name `namespaces`), as
/// the shell's conversion makes it.
pub fn exception(
    namespace: Option<&str>,
    name: &str,
    uid: &str,
    generation: i64,
    spec: serde_json::Value,
) -> crate::port::ExceptionView {
    let kind = match namespace {
        Some(_) => crate::crd::exception::EXCEPTION_KIND,
        None => crate::crd::exception::CLUSTER_EXCEPTION_KIND,
    };
    let object = serde_json::json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": generation,
            "resourceVersion": generation.to_string(),
        },
        "spec": spec,
    });
    let view = match namespace {
        Some(_) => serde_json::from_value(object)
            .ok()
            .and_then(|e| crate::convert::exception_view(&e)),
        None => serde_json::from_value(object)
            .ok()
            .and_then(|e| crate::convert::cluster_exception_view(&e)),
    };
    view.expect("a valid exception")
}

/// A ConfigMap labelled for VEX documents with `data`, as the shell's conversion makes it.
pub fn vex_map(
    namespace: &str,
    name: &str,
    uid: &str,
    data: &[(&str, &str)],
) -> crate::port::VexMapView {
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "1",
            "labels": {crate::exception::VEX_CONFIG_MAP_LABEL: "true"},
        },
        "data": data.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
    });
    serde_json::from_value(object)
        .ok()
        .and_then(|m| crate::convert::vex_map_view(&m))
        .expect("a valid ConfigMap")
}
