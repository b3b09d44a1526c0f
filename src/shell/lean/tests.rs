use k8s_openapi::api::core::v1::Pod;
use kube::core::{ObjectList, WatchEvent};
use proptest::prelude::*;
use serde_json::Value;

use super::WatchedPod;
use crate::core::convert::pod_view;

const POD: &str = include_str!("testdata/pod.json");

/// Every field `pod_view` reads, by JSON pointer: a lean pod must agree with a full one with any
/// of them missing or null.
const READ_FIELDS: &[&str] = &[
    "/metadata/annotations",
    "/metadata/labels",
    "/metadata/ownerReferences",
    "/metadata/deletionTimestamp",
    "/metadata/creationTimestamp",
    "/metadata/resourceVersion",
    "/spec",
    "/spec/nodeName",
    "/spec/initContainers",
    "/spec/ephemeralContainers",
    "/spec/imagePullSecrets",
    "/spec/serviceAccountName",
    "/status",
    "/status/phase",
    "/status/conditions",
    "/status/startTime",
    "/status/initContainerStatuses",
    "/status/containerStatuses",
    "/status/ephemeralContainerStatuses",
    "/status/containerStatuses/1/state",
    "/status/containerStatuses/1/state/waiting/reason",
];

fn full_and_lean(json: &Value) -> (Pod, WatchedPod) {
    let full: Pod = serde_json::from_value(json.clone()).expect("a full pod");
    let text = serde_json::to_string(json).expect("serialisable");
    let lean: WatchedPod = serde_json::from_str(&text).expect("a lean pod");
    (full, lean)
}

fn without(json: &Value, pointer: &str, null: bool) -> Value {
    let mut json = json.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    match json.pointer_mut(parent) {
        Some(Value::Object(map)) if null => {
            map.insert(key.to_string(), Value::Null);
        }
        Some(Value::Object(map)) => {
            map.remove(key);
        }
        _ => {}
    }
    json
}

#[test]
fn a_lean_pod_gives_the_view_of_the_full_pod() {
    let json: Value = serde_json::from_str(POD).expect("fixture");
    let (full, lean) = full_and_lean(&json);
    let view = pod_view(&full).expect("a view");
    assert_eq!(pod_view(&lean.0), Some(view.clone()));
    // The fixture exercises what the view reads, so the comparison means something.
    assert!(view.ignore_unfixed && view.deleting && view.ready);
    assert_eq!(view.containers.len(), 4);
    assert_eq!(
        view.controller.as_ref().map(|c| c.kind.as_str()),
        Some("ReplicaSet")
    );
    assert_eq!(
        view.pull_credentials.as_ref().map(|p| p.secrets.clone()),
        Some(vec!["shop-pull".to_string()])
    );
}

#[test]
fn a_lean_pod_keeps_neither_managed_fields_nor_other_annotations_nor_unread_spec() {
    let (_, lean) = full_and_lean(&serde_json::from_str(POD).expect("fixture"));
    let meta = &lean.0.metadata;
    assert_eq!(meta.managed_fields, None);
    assert_eq!(meta.generate_name, None);
    let annotations = meta.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        vec!["image-scanner.statnett.no/ignore-unfixed"]
    );
    let spec = lean.0.spec.as_ref().expect("spec");
    assert!(spec.volumes.is_none() && spec.tolerations.is_none());
    assert!(
        spec.containers
            .iter()
            .all(|c| c.env.is_none() && c.resources.is_none())
    );
}

#[test]
fn lists_and_watch_events_decode_lean_pods() {
    let pod: Value = serde_json::from_str(POD).expect("fixture");
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "48300", "continue": "next"},
        "items": [pod.clone(), pod.clone()]
    });
    let list: ObjectList<WatchedPod> =
        serde_json::from_str(&list.to_string()).expect("a page of lean pods");
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.metadata.continue_.as_deref(), Some("next"));
    let event = serde_json::json!({"type": "MODIFIED", "object": pod});
    let event: WatchEvent<WatchedPod> =
        serde_json::from_str(&event.to_string()).expect("a watch event");
    let WatchEvent::Modified(lean) = event else {
        panic!("not a modification: {event:?}")
    };
    assert_eq!(lean.0.metadata.resource_version.as_deref(), Some("48213"));
}

proptest! {
    /// Any combination of the read fields missing or null: the same view both ways.
    #[test]
    fn lean_and_full_pods_agree_whatever_is_missing(
        changes in proptest::collection::vec((0..READ_FIELDS.len(), any::<bool>()), 0..6)
    ) {
        let mut json: Value = serde_json::from_str(POD).expect("fixture");
        for (field, null) in changes {
            json = without(&json, READ_FIELDS[field], null);
        }
        let (full, lean) = full_and_lean(&json);
        prop_assert_eq!(pod_view(&lean.0), pod_view(&full));
    }
}

/// A ReplicaSet's metadata as the API server sends it for a metadata-only watch.
const WORKLOAD: &str = r#"{
  "kind": "PartialObjectMetadata",
  "apiVersion": "meta.k8s.io/v1",
  "metadata": {
    "name": "web-7d9c5b8f6",
    "namespace": "shop",
    "uid": "0b9f3c1e-1a2b-4c3d-8e9f-000000000001",
    "resourceVersion": "48100",
    "generation": 3,
    "creationTimestamp": "2026-12-05T06:00:00Z",
    "labels": {"app": "web", "pod-template-hash": "7d9c5b8f6"},
    "annotations": {
      "deployment.kubernetes.io/desired-replicas": "3",
      "deployment.kubernetes.io/revision": "2",
      "image-scanner.statnett.no/ignore-unfixed": "true"
    },
    "ownerReferences": [{
      "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "controller": true,
      "blockOwnerDeletion": true, "uid": "0b9f3c1e-1a2b-4c3d-8e9f-000000000000"
    }],
    "managedFields": [{
      "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
      "time": "2026-12-05T06:00:00Z", "fieldsType": "FieldsV1",
      "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}}
    }]
  }
}"#;

#[test]
fn lean_workload_metadata_gives_the_view_of_kubes_partial_object_meta() {
    use kube::core::{DynamicObject, PartialObjectMeta};

    use super::WatchedWorkload;
    use crate::shell::convert::workload_view;

    let full: PartialObjectMeta<DynamicObject> = serde_json::from_str(WORKLOAD).expect("full");
    let lean: WatchedWorkload = serde_json::from_str(WORKLOAD).expect("lean");
    let view = |meta| workload_view(meta, "apps", "apps/v1", "ReplicaSet");
    let expected = view(&full.metadata).expect("a view");
    assert_eq!(view(&lean.metadata), Some(expected.clone()));
    assert!(expected.ignore_unfixed);
    assert_eq!(
        expected.controller.map(|c| c.kind),
        Some("Deployment".to_string())
    );
    assert_eq!(lean.metadata.managed_fields, None);

    let list = format!(
        r#"{{"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {{"resourceVersion": "48300"}}, "items": [{WORKLOAD}]}}"#
    );
    let list: ObjectList<WatchedWorkload> = serde_json::from_str(&list).expect("a page");
    assert_eq!(view(&list.items[0].metadata), view(&full.metadata));
}

mod cis {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::WatchedCis;
    use crate::core::convert::{cis_view, strip_details};
    use crate::crd::{
        ContainerImageScan, ContainerImageScanSpec, ContainerImageScanStatus, FindingRecord,
        Severity, SuppressedCount, TruncationReason, VulnerabilitiesTruncated, Vulnerability,
        VulnerabilitySummary, Workload,
    };

    fn time(s: &str) -> Time {
        serde_json::from_value(json!(s)).expect("a time")
    }

    fn vulnerability(id: &str, severity: &str, title: &str) -> Vulnerability {
        serde_json::from_value(json!({
            "vulnerabilityID": id, "pkgName": "openssl", "installedVersion": "3.0.2-0ubuntu1",
            "severity": severity, "pkgPath": "", "fixedVersion": "3.0.2-0ubuntu1.10",
            "title": title, "primaryURL": format!("https://avd.aquasec.com/nvd/{id}")
        }))
        .expect("a vulnerability")
    }

    /// Every status field set. No `..Default::default()`: a field added to the status stops
    /// this from compiling until the lean status (and this test) know it.
    fn full_status() -> ContainerImageScanStatus {
        ContainerImageScanStatus {
            observed_generation: Some(2),
            last_scan_job_uid: Some("6f1c".to_string()),
            last_scan_time: Some(time("2026-12-05T06:00:00Z")),
            last_successful_scan_time: Some(time("2026-12-05T06:00:00Z")),
            conditions: Some(vec![Condition {
                type_: "Stalled".to_string(),
                status: "True".to_string(),
                reason: "Error".to_string(),
                message: "a \"quoted\" message ✓".to_string(),
                last_transition_time: time("2026-12-05T05:00:00Z"),
                observed_generation: Some(2),
            }]),
            vulnerabilities: Some(vec![
                vulnerability("CVE-2023-0001", "LOW", "plain"),
                vulnerability("CVE-2023-0002", "HIGH", "escapes: \"\\\n\t and ünïcode ✓"),
                vulnerability("GHSA-xxxx-yyyy-zzzz", "CRITICAL", ""),
            ]),
            vulnerability_summary: Some(VulnerabilitySummary {
                severity_count: Some(BTreeMap::from([("HIGH".to_string(), 1)])),
                fixed_count: 3,
                unfixed_count: 0,
                fixed_severity_count: Some(BTreeMap::from([("HIGH".to_string(), 1)])),
            }),
            vulnerabilities_truncated: Some(VulnerabilitiesTruncated {
                dropped_severities: vec![],
                dropped_count: 4,
                budget_bytes: 1000,
                reason: Some(TruncationReason::ClusterBudget),
            }),
            details_bytes: Some(1234),
            suppressed_count: Some(SuppressedCount {
                total: 2,
                severity_count: BTreeMap::from([("LOW".to_string(), 2)]),
                by_exception: BTreeMap::from([("ns/accepted".to_string(), 2)]),
                by_reason: BTreeMap::from([("AcceptedRisk".to_string(), 2)]),
            }),
            exceptions_fingerprint: Some("1-00000000deadbeef".to_string()),
            notable_findings: Some(FindingRecord {
                min_severity: Severity::High,
                ids: BTreeMap::from([
                    (
                        "CRITICAL".to_string(),
                        vec!["GHSA-xxxx-yyyy-zzzz".to_string()],
                    ),
                    ("HIGH".to_string(), vec!["CVE-2023-0002".to_string()]),
                ]),
                fixable: vec!["CVE-2023-0002".to_string()],
                left_out: 0,
            }),
            announced_findings: Some(FindingRecord {
                min_severity: Severity::High,
                ids: BTreeMap::from([("HIGH".to_string(), vec!["CVE-2023-0002".to_string()])]),
                fixable: vec![],
                left_out: 3,
            }),
        }
    }

    fn cis_json(status: Option<ContainerImageScanStatus>) -> Value {
        let mut cis = ContainerImageScan::new(
            "web-app-5f2e8a4c",
            ContainerImageScanSpec {
                name: "registry.example:5000/shop/web".to_string(),
                digest: "sha256:2222".to_string(),
                tag: Some("1.4".to_string()),
                workload: Workload {
                    kind: "ReplicaSet".to_string(),
                    name: "web-7d9c5b8f6".to_string(),
                    uid: None,
                    container_name: "app".to_string(),
                    ..Workload::default()
                },
                ..ContainerImageScanSpec::default()
            },
        );
        cis.status = status;
        let mut json = serde_json::to_value(&cis).expect("serialisable");
        json["metadata"] = json!({
            "name": "web-app-5f2e8a4c", "namespace": "shop", "uid": "9a1b",
            "resourceVersion": "777", "generation": 2,
            "creationTimestamp": "2026-12-05T06:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "image-scanner"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "p1"}],
            "managedFields": [{"manager": "image-scanner-operator", "operation": "Apply",
                "apiVersion": "stas.statnett.no/v1alpha1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:vulnerabilities": {}}}}]
        });
        json
    }

    fn both(json: &Value) -> (ContainerImageScan, ContainerImageScan) {
        let mut full: ContainerImageScan =
            serde_json::from_value(json.clone()).expect("a full CIS");
        strip_details(&mut full);
        let lean: WatchedCis = serde_json::from_str(&json.to_string()).expect("a lean CIS");
        (full, lean.0)
    }

    fn assert_same(json: &Value) {
        let (full, lean) = both(json);
        assert_eq!(
            serde_json::to_value(&lean).expect("lean"),
            serde_json::to_value(&full).expect("full")
        );
        assert_eq!(cis_view(&lean), cis_view(&full));
    }

    #[test]
    fn a_lean_cis_is_a_stripped_full_cis() {
        assert_same(&cis_json(Some(full_status())));
        assert_same(&cis_json(None));
    }

    #[test]
    fn details_are_measured_as_they_are_decoded_when_the_status_does_not_say() {
        let mut status = full_status();
        status.details_bytes = None;
        let json = cis_json(Some(status));
        assert_same(&json);
        let (_, lean) = both(&json);
        let measured = lean.status.and_then(|s| s.details_bytes).expect("measured");
        assert!(measured > 300, "three findings measure {measured} bytes");
        for details in [json!(null), json!([])] {
            let mut json = json.clone();
            json["status"]["vulnerabilities"] = details;
            assert_same(&json);
        }
    }

    proptest! {
        /// Whatever the details say and whether `detailsBytes` is there: as a stripped CIS.
        #[test]
        fn lean_and_stripped_agree_on_any_details(
            details in proptest::collection::vec(("[A-Z]{3}-[0-9]{1,6}", "\\PC{0,40}"), 0..8),
            says in any::<bool>(),
        ) {
            let mut status = full_status();
            status.vulnerabilities = Some(
                details.iter().map(|(id, title)| vulnerability(id, "MEDIUM", title)).collect(),
            );
            if !says {
                status.details_bytes = None;
            }
            let (full, lean) = both(&cis_json(Some(status)));
            prop_assert_eq!(
                serde_json::to_value(&lean).expect("lean"),
                serde_json::to_value(&full).expect("full")
            );
        }
    }
}
