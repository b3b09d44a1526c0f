//! The committed CRD equals the generated one, objects written by the Go operator read back
//! unchanged, and every field of the schema is described (for `kubectl explain`).

use image_scanner::crd::ContainerImageScan;
use serde_json::Value;

const COMMITTED: &str = include_str!("../crds/containerimagescans.stas.statnett.no.yaml");
const SAMPLE: &str =
    include_str!("fixtures/upstream/config/samples/stas_v1alpha1_containerimagescan.yaml");

#[test]
fn committed_crds_match_the_generated_ones() {
    assert_eq!(
        ContainerImageScan::crd_yaml(),
        (image_scanner::crd::CRDS[0].1)()
    );
    for (plural, generate) in image_scanner::crd::CRDS {
        let path = format!("crds/{plural}.stas.statnett.no.yaml");
        let committed =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&path))
                .unwrap_or_default();
        assert!(
            generate() == committed,
            "{path} is stale: run `cargo run -q -- crd {plural} > {path}`"
        );
    }
}

#[test]
fn upstream_sample_round_trips_without_loss() {
    let original: Value = serde_saphyr::from_str(SAMPLE).expect("sample is YAML");
    let typed: ContainerImageScan =
        serde_json::from_value(original.clone()).expect("sample fits the types");
    let back = serde_json::to_value(&typed).expect("serialises");
    assert_eq!(
        back, original,
        "fields were lost or changed in the round trip"
    );
    // Spot checks of the typed view.
    assert_eq!(
        typed.spec.digest,
        "sha256:3fbc5ad2c00a62a6c175e9a9a3b2de2b3011f3e5d005a091276620b34e1bae39"
    );
    assert_eq!(typed.spec.ignore_unfixed, Some(false));
    assert_eq!(typed.spec.workload.group, "");
    let status = typed.status.expect("status");
    assert_eq!(
        status.last_scan_job_uid.as_deref(),
        Some("5abb37cb-e57b-433b-b92e-8452e423e109")
    );
    let summary = status.vulnerability_summary.expect("summary");
    assert_eq!(summary.unfixed_count, 140);
    assert_eq!(summary.severity_count.expect("counts")["LOW"], 107);
}

fn undescribed(path: &str, schema: &Value, out: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let here = format!("{path}.{name}");
        let described = prop
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty());
        // metadata is described by Kubernetes itself.
        if !described && !path.is_empty() && name != "metadata" {
            out.push(here.clone());
        }
        undescribed(&here, prop, out);
        if let Some(items) = prop.get("items") {
            undescribed(&format!("{here}[]"), items, out);
        }
    }
}

#[test]
fn every_spec_and_status_field_is_described() {
    let mut missing = Vec::new();
    for (plural, generate) in image_scanner::crd::CRDS {
        let crd: Value = serde_saphyr::from_str(&generate()).expect("CRD is YAML");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            let sub = &schema["properties"][part];
            assert!(
                sub["description"].is_string(),
                "{plural}: {part} has no description"
            );
            // The label selector's fields are described by Kubernetes' own types.
            undescribed(&format!("{plural}:{part}"), sub, &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

#[test]
fn printer_columns_are_the_promised_ones() {
    let crd: Value = serde_saphyr::from_str(COMMITTED).expect("CRD is YAML");
    let version = &crd["spec"]["versions"][0];
    let names: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Image",
            "Tag",
            "Digest",
            "Critical",
            "High",
            "Fixable",
            "Suppressed",
            "Last Scan",
            "Status",
            "Age"
        ]
    );
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "cis");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert!(version["subresources"]["status"].is_object());
}

#[test]
fn exception_crds_are_namespaced_and_cluster_scoped_with_the_promised_columns() {
    for (plural, scope, short) in [
        ("vulnerabilityexceptions", "Namespaced", "vulnex"),
        ("clustervulnerabilityexceptions", "Cluster", "cvulnex"),
    ] {
        let (_, generate) = image_scanner::crd::CRDS
            .iter()
            .find(|(p, _)| *p == plural)
            .expect("generated");
        let crd: Value = serde_saphyr::from_str(&generate()).expect("CRD is YAML");
        assert_eq!(crd["spec"]["scope"], scope, "{plural}");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], short, "{plural}");
        assert_eq!(crd["spec"]["names"]["categories"][0], "image-scanner");
        let version = &crd["spec"]["versions"][0];
        assert!(version["subresources"]["status"].is_object());
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "ID", "Scope", "Reason", "Expires", "Covered", "Ready", "Age"
            ]
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let required: Vec<&str> = spec["required"]
            .as_array()
            .expect("required fields")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["description"], "{plural}");
        // Exactly one of IDs (with a reason) or a VEX document, said by CEL rules.
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .expect("CEL rules")
            .iter()
            .filter_map(|r| r["rule"].as_str())
            .collect();
        assert_eq!(
            rules,
            [
                "has(self.vulnerabilities) != has(self.vex)",
                "has(self.vulnerabilities) == has(self.reason)"
            ],
            "{plural}"
        );
        assert!(
            spec["properties"]["vex"]["properties"]["configMapKeyRef"].is_object(),
            "{plural}"
        );
        assert_eq!(
            spec["properties"]["reason"]["enum"],
            serde_json::json!(["NotAffected", "AcceptedRisk", "Mitigated", "FalsePositive"])
        );
        assert_eq!(spec["properties"]["expires"]["format"], "date-time");
    }
}
