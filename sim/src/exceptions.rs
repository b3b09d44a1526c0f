//! The users' vulnerability exceptions (issue 20): a script of applies and deletes drawn from
//! the seed's own stream — over the IDs the scanner finds, some narrowed to a package or an
//! image, some expiring during the run, some the operator cannot use, namespaced or
//! cluster-wide. What the API server stored of them is `exception_ledger`.

use image_scanner_api::Vulnerability;
use image_scanner_core::exception::ExceptionKey;
use image_scanner_core::port::ExceptionView;
use image_scanner_core::test_kit::exception;
use image_scanner_core::time::Timestamp;
use image_scanner_core::vex::JUSTIFICATIONS;
use serde_json::json;

use crate::rng::{Draw, Rng};
use crate::scanner::Scanner;

/// One step of the script: `spec` applied to `key`, or the exception deleted when `None`.
#[derive(Clone, Debug)]
pub struct ExceptionOp {
    /// Milliseconds after the start.
    pub at: u64,
    pub key: ExceptionKey,
    pub spec: Option<serde_json::Value>,
}

const REASONS: [&str; 4] = ["NotAffected", "AcceptedRisk", "Mitigated", "FalsePositive"];

/// The script of a seed: none for half the seeds (the older runs keep their traces' shape),
/// else 2–10 steps within the fault phase over a few keys, so that some exceptions change and
/// go again. `start` is the simulated time of the start (expiries are absolute).
pub fn generate(
    r: &mut Rng,
    scanner: &Scanner,
    namespaces: usize,
    fault_phase_ms: u64,
    start: i64,
) -> Vec<ExceptionOp> {
    let findings: Vec<&Vulnerability> = scanner
        .truth
        .values()
        .flat_map(|t| t.vulns.iter())
        .collect();
    if findings.is_empty() || r.chance(0.5) {
        return Vec::new();
    }
    let keys: Vec<ExceptionKey> = (0..r.between(1, 4))
        .map(|i| {
            if r.chance(0.3) {
                ExceptionKey::Cluster {
                    name: format!("platform-{i}"),
                }
            } else {
                ExceptionKey::Namespaced {
                    namespace: format!("ns-{}", r.index(namespaces)),
                    name: format!("accepted-{i}"),
                }
            }
        })
        .collect();
    let steps = r.between(2, 10);
    let mut ops: Vec<ExceptionOp> = (0..steps)
        .map(|_| {
            let at = r.between(0, fault_phase_ms);
            let key = keys[r.index(keys.len())].clone();
            let spec =
                (!r.chance(0.2)).then(|| spec(r, scanner, &findings, &key, start, fault_phase_ms));
            ExceptionOp { at, key, spec }
        })
        .collect();
    ops.sort_by_key(|op| op.at);
    ops
}

fn spec(
    r: &mut Rng,
    scanner: &Scanner,
    findings: &[&Vulnerability],
    key: &ExceptionKey,
    start: i64,
    fault_phase_ms: u64,
) -> serde_json::Value {
    let picked: Vec<&Vulnerability> = (0..r.between(1, 3))
        .map(|_| findings[r.index(findings.len())])
        .collect();
    let ids: Vec<serde_json::Value> = picked
        .iter()
        .map(|v| {
            let id = if r.chance(0.2) {
                v.vulnerability_id.to_ascii_lowercase()
            } else {
                v.vulnerability_id.clone()
            };
            json!({"id": id})
        })
        .collect();
    let mut spec = json!({
        "vulnerabilities": ids,
        "reason": REASONS[r.index(REASONS.len())],
        "description": "assessed by the simulation",
    });
    if r.chance(0.3) {
        spec["packages"] = json!([{"name": picked[0].pkg_name}]);
    }
    if r.chance(0.2) && !scanner.images.is_empty() {
        let repo = &scanner.images[r.index(scanner.images.len())].repo;
        let prefix = &repo[..repo.len().min(12)];
        spec["images"] = json!([{"name": format!("{prefix}*")}]);
    }
    if r.chance(0.4) {
        // Within the fault phase: every expiry has passed before the quiet period is checked.
        let at = start + r.between(0, fault_phase_ms) as i64;
        spec["expires"] = json!(Timestamp(at).to_k8s().0.to_string());
    }
    if matches!(key, ExceptionKey::Cluster { .. }) && r.chance(0.5) {
        spec["namespaces"] = json!(["ns-*"]);
    }
    if r.chance(0.1) {
        // Passes the CRD schema in the simulation (no API server validates it), so the
        // operator must refuse it and cover nothing.
        spec["images"] = json!([{}]);
    }
    if r.chance(0.3)
        && let Some(document) = vex_document(r, scanner)
        && let Some(spec) = spec.as_object_mut()
    {
        // The same exception by an inline OpenVEX document instead of IDs.
        spec.remove("vulnerabilities");
        spec.remove("reason");
        spec.insert("vex".to_string(), json!({"inline": document}));
    }
    spec
}

/// An OpenVEX document over 1–3 images of the catalog: for 1–3 of each image's findings a
/// `not_affected` or `fixed` statement, some narrowed to the finding's package, some taken
/// back by a later `affected` one. `None` when the images drawn have no findings.
fn vex_document(r: &mut Rng, scanner: &Scanner) -> Option<String> {
    if scanner.images.is_empty() {
        return None;
    }
    let mut statements = Vec::new();
    for _ in 0..r.between(1, 3) {
        let image = &scanner.images[r.index(scanner.images.len())];
        let Some(truth) = scanner.truth.get(&image.digest) else {
            continue;
        };
        if truth.vulns.is_empty() {
            continue;
        }
        let name = image.repo.rsplit('/').next().unwrap_or_default();
        let purl = format!(
            "pkg:oci/{name}@{}?repository_url={}",
            image.digest.replace(':', "%3A"),
            image.repo
        );
        for _ in 0..r.between(1, 3) {
            let v = &truth.vulns[r.index(truth.vulns.len())];
            let mut product = json!({"@id": purl});
            if r.chance(0.3) && !v.pkg_name.contains([':', '/']) {
                product["subcomponents"] =
                    json!([{"@id": format!("pkg:generic/{}@{}", v.pkg_name, v.installed_version)}]);
            }
            let mut statement = json!({
                "vulnerability": {"name": v.vulnerability_id},
                "products": [product],
                "timestamp": "2026-01-01T00:00:00Z",
            });
            if r.chance(0.7) {
                statement["status"] = json!("not_affected");
                statement["justification"] = json!(JUSTIFICATIONS[r.index(JUSTIFICATIONS.len())]);
            } else {
                statement["status"] = json!("fixed");
            }
            let taken_back = r.chance(0.15);
            statements.push(statement.clone());
            if taken_back {
                statement["status"] = json!("affected");
                statement["timestamp"] = json!("2026-02-01T00:00:00Z");
                if let Some(s) = statement.as_object_mut() {
                    s.remove("justification");
                }
                statements.push(statement);
            }
        }
    }
    (!statements.is_empty()).then(|| {
        json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://simulation.example/vex",
            "author": "the simulation",
            "timestamp": "2026-01-01T00:00:00Z",
            "version": 1,
            "statements": statements,
        })
        .to_string()
    })
}

/// The exception `key` with `spec`, as the shell's conversion makes it.
pub fn view(
    key: &ExceptionKey,
    uid: &str,
    generation: i64,
    spec: serde_json::Value,
) -> ExceptionView {
    let namespace = match key {
        ExceptionKey::Namespaced { namespace, .. } => Some(namespace.as_str()),
        ExceptionKey::Cluster { .. } => None,
    };
    let name = match key {
        ExceptionKey::Namespaced { name, .. } | ExceptionKey::Cluster { name } => name,
    };
    exception(namespace, name, uid, generation, spec)
}
