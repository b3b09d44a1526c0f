//! The OpenReports `Report` (`openreports.io/v1alpha1`) written next to each CIS (spec §2):
//! same name and namespace, owned by the CIS, holding one result per vulnerability.

use serde_json::{Map, Value, json};

use super::port::CisView;
use crate::crd::{Severity, VulnerabilitiesTruncated, Vulnerability, VulnerabilitySummary};

/// `apiVersion` of the Report.
pub const API_VERSION: &str = "openreports.io/v1alpha1";
/// Kind of the Report.
pub const KIND: &str = "Report";
/// Annotation of a Report whose `results` leave vulnerabilities of its summary out: the same
/// record as a CIS's `status.vulnerabilitiesTruncated`, as compact JSON.
pub const TRUNCATED_ANNOTATION: &str = "image-scanner.statnett.no/vulnerabilities-truncated";

/// OpenReports result of a severity: `skip` for UNKNOWN, `warn` for LOW/MEDIUM, `fail` above.
pub fn result_of(severity: Severity) -> &'static str {
    match severity {
        Severity::Unknown => "skip",
        Severity::Low | Severity::Medium => "warn",
        Severity::High | Severity::Critical => "fail",
    }
}

fn count(summary: &VulnerabilitySummary, severities: &[Severity]) -> i64 {
    severities
        .iter()
        .map(|s| {
            summary
                .severity_count
                .as_ref()
                .and_then(|m| m.get(s.as_str()))
                .copied()
                .map(i64::from)
                .unwrap_or(0)
        })
        .sum()
}

fn result(v: &Vulnerability) -> Value {
    let mut properties = Map::new();
    for (key, value) in [
        ("pkgName", &v.pkg_name),
        ("pkgPath", &v.pkg_path),
        ("installedVersion", &v.installed_version),
        ("fixedVersion", &v.fixed_version),
        ("primaryURL", &v.primary_url),
    ] {
        if !value.is_empty() {
            properties.insert(key.to_string(), Value::String(value.clone()));
        }
    }
    // A finding a vulnerability exception covers is not counted: `skip`, saying which one.
    let outcome = match &v.suppressed_by {
        Some(by) => {
            properties.insert("suppressedBy".to_string(), Value::String(by.clone()));
            if let Some(why) = &v.suppressed_justification {
                properties.insert(
                    "suppressedJustification".to_string(),
                    Value::String(why.clone()),
                );
            }
            "skip"
        }
        None => result_of(v.severity),
    };
    let mut r = Map::new();
    r.insert("source".into(), json!("image-scanner"));
    r.insert("category".into(), json!("vulnerability scan"));
    r.insert("policy".into(), json!(v.vulnerability_id));
    r.insert("result".into(), json!(outcome));
    // The OpenReports enum has no "unknown" (a bug the Go operator fixed in 0.8.16).
    if v.severity != Severity::Unknown {
        r.insert(
            "severity".into(),
            json!(v.severity.as_str().to_ascii_lowercase()),
        );
    }
    if !v.title.is_empty() {
        r.insert("message".into(), json!(v.title));
    }
    r.insert("properties".into(), Value::Object(properties));
    Value::Object(r)
}

/// The Report for `cis`, with `results` (already filtered, marked, sorted and fitted), the
/// summary of all filtered vulnerabilities not suppressed, how many were suppressed (counted
/// as `skip`, like their results) and what the fitting left out.
pub fn report(
    cis: &CisView,
    results: &[Vulnerability],
    summary: &VulnerabilitySummary,
    suppressed: i32,
    truncated: Option<&VulnerabilitiesTruncated>,
) -> Value {
    let w = &cis.spec.workload;
    let mut scope = Map::new();
    if let Some(v) = &w.api_version {
        scope.insert("apiVersion".into(), json!(v));
    }
    scope.insert("kind".into(), json!(w.kind));
    scope.insert("name".into(), json!(w.name));
    if let Some(uid) = &w.uid {
        scope.insert("uid".into(), json!(uid));
    }
    let mut annotations = Map::new();
    if let Some(record) = truncated.and_then(|t| serde_json::to_string(t).ok()) {
        annotations.insert(TRUNCATED_ANNOTATION.into(), Value::String(record));
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cis.name,
            "namespace": cis.namespace,
            "labels": {"app.kubernetes.io/managed-by": "image-scanner"},
            "annotations": Value::Object(annotations),
            "ownerReferences": [{
                "apiVersion": "stas.statnett.no/v1alpha1",
                "kind": "ContainerImageScan",
                "name": cis.name,
                "uid": cis.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "scope": Value::Object(scope),
        "summary": {
            "skip": count(summary, &[Severity::Unknown]) + i64::from(suppressed),
            "warn": count(summary, &[Severity::Low, Severity::Medium]),
            "fail": count(summary, &[Severity::High, Severity::Critical]),
        },
        "results": results.iter().map(result).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ContainerImageScanSpec, Workload};
    use crate::port::CisStatusView;
    use crate::report::{ReportFormat, parse_report};
    use crate::status::{sort_details, summary_from};

    fn cis() -> CisView {
        CisView {
            namespace: "default".into(),
            name: "pod-echo-app-ab50d".into(),
            uid: "cis-uid".into(),
            resource_version: None,
            generation: 1,
            labels: Default::default(),
            owners: Vec::new(),
            deleting: false,
            spec: ContainerImageScanSpec {
                name: "docker.io/nginxinc/nginx-unprivileged".into(),
                digest: "sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191"
                    .into(),
                tag: Some(String::new()),
                min_severity: None,
                ignore_unfixed: Some(false),
                workload: Workload {
                    api_version: Some("v1".into()),
                    group: String::new(),
                    kind: "Pod".into(),
                    name: "echo".into(),
                    uid: Some("pod-uid".into()),
                    container_name: "app".into(),
                },
            },
            status: CisStatusView::default(),
        }
    }

    /// Upstream acceptance case §17.1 #13: the 19-vulnerability log gives a Report whose every
    /// result has properties and whose summary is exactly {fail: 19}.
    #[test]
    fn the_small_upstream_log_gives_the_upstream_report() {
        let log = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json"
        ));
        let mut vulns = parse_report(log, ReportFormat::Auto)
            .expect("parses")
            .vulnerabilities;
        sort_details(&mut vulns);
        let summary = summary_from(&vulns, Severity::Unknown);
        let r = report(&cis(), &vulns, &summary, 0, None);
        assert_eq!(r["summary"], json!({"skip": 0, "warn": 0, "fail": 19}));
        let results = r["results"].as_array().expect("results");
        assert_eq!(results.len(), 19);
        assert!(
            results
                .iter()
                .all(|x| x["properties"].as_object().is_some_and(|p| !p.is_empty()))
        );
        assert_eq!(results[0]["policy"], "CVE-2022-42916");
        assert_eq!(results[0]["severity"], "high");
        assert_eq!(results[0]["result"], "fail");
        assert_eq!(results[0]["source"], "image-scanner");
        assert_eq!(results[0]["category"], "vulnerability scan");
        assert_eq!(
            r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "image-scanner"
        );
        assert_eq!(r["metadata"]["annotations"], json!({}));
        let owner = &r["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["controller"].as_bool(),
                owner["blockOwnerDeletion"].as_bool()
            ),
            (Some("ContainerImageScan"), Some(true), Some(true))
        );
        assert_eq!(
            r["scope"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "echo", "uid": "pod-uid"})
        );
    }

    #[test]
    fn unknown_severity_is_skip_without_a_severity_and_empty_properties_are_left_out() {
        let v = Vulnerability {
            vulnerability_id: "TEMP-1".into(),
            pkg_name: "dpkg".into(),
            installed_version: "1".into(),
            severity: Severity::Unknown,
            pkg_path: String::new(),
            fixed_version: String::new(),
            title: String::new(),
            primary_url: String::new(),
            suppressed_by: None,
            suppressed_justification: None,
        };
        let r = result(&v);
        assert_eq!(r["result"], "skip");
        assert!(r.get("severity").is_none());
        assert!(r.get("message").is_none());
        assert_eq!(
            r["properties"],
            json!({"pkgName": "dpkg", "installedVersion": "1"})
        );
    }

    #[test]
    fn a_suppressed_finding_is_skip_with_its_exception_and_counted_as_skip() {
        let v = Vulnerability {
            vulnerability_id: "CVE-2019-18224".into(),
            pkg_name: "libidn2-0".into(),
            installed_version: "2.0.5-1".into(),
            severity: Severity::Critical,
            pkg_path: String::new(),
            fixed_version: String::new(),
            title: String::new(),
            primary_url: String::new(),
            suppressed_by: Some("shop/libidn2".into()),
            suppressed_justification: Some("vulnerable_code_not_in_execute_path".into()),
        };
        let r = result(&v);
        assert_eq!(r["result"], "skip");
        assert_eq!(r["severity"], "critical", "the finding's severity is kept");
        assert_eq!(r["properties"]["suppressedBy"], "shop/libidn2");
        assert_eq!(
            r["properties"]["suppressedJustification"],
            "vulnerable_code_not_in_execute_path"
        );
        let vulns = vec![v];
        // The summary leaves the suppressed finding out; the Report counts it as skipped.
        let summary = crate::status::summary_from(&vulns, Severity::Unknown);
        let report = report(&cis(), &vulns, &summary, 1, None);
        assert_eq!(report["summary"], json!({"skip": 1, "warn": 0, "fail": 0}));
    }
}
