//! The `ContainerImageScan` custom resource (`stas.statnett.no/v1alpha1`, short name `cis`).
//!
//! Field names, types and enums follow the Go operator (statnett/image-scanner-operator 0.16.x)
//! exactly, so objects it wrote read back unchanged. Fields marked *extension* are additive and
//! optional; the Go operator ignores them.
//!
//! This module is plain data (serde + schemars); the pure core uses it freely.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod exception;

/// Group of the CRD.
pub const GROUP: &str = "stas.statnett.no";
/// Version of the CRD.
pub const VERSION: &str = "v1alpha1";
/// Kind of the CRD.
pub const KIND: &str = "ContainerImageScan";

/// Desired scan of one container image of one workload container.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default,
)]
#[kube(
    group = "stas.statnett.no",
    version = "v1alpha1",
    kind = "ContainerImageScan",
    namespaced,
    shortname = "cis",
    doc = "ContainerImageScan: the vulnerability scan of the image one container of a workload runs, identified by its digest. Created and owned by the workload's pods; deleted by the garbage collector when the pods are gone.",
    status = "ContainerImageScanStatus",
    printcolumn = r#"{"name":"Image","type":"string","description":"Repository of the scanned image","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Tag","type":"string","description":"Tag of the image in the pod spec","jsonPath":".spec.tag"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","priority":1,"description":"Immutable image digest that was scanned","jsonPath":".spec.digest"}"#,
    printcolumn = r#"{"name":"Critical","type":"integer","description":"Number of CRITICAL vulnerabilities","jsonPath":".status.vulnerabilitySummary.severityCount.CRITICAL"}"#,
    printcolumn = r#"{"name":"High","type":"integer","description":"Number of HIGH vulnerabilities","jsonPath":".status.vulnerabilitySummary.severityCount.HIGH"}"#,
    printcolumn = r#"{"name":"Fixable","type":"integer","description":"Number of vulnerabilities with a fixed version","jsonPath":".status.vulnerabilitySummary.fixedCount"}"#,
    printcolumn = r#"{"name":"Suppressed","type":"integer","description":"Number of findings covered by vulnerability exceptions (not counted in the other columns)","jsonPath":".status.suppressedCount.total"}"#,
    printcolumn = r#"{"name":"Last Scan","type":"date","description":"Time of the last scan attempt","jsonPath":".status.lastScanTime"}"#,
    printcolumn = r#"{"name":"Status","type":"string","description":"Reason of the current condition (empty after a successful scan)","jsonPath":".status.conditions[0].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImageScanSpec {
    /// Fully qualified, normalised repository name of the image without tag or digest, for
    /// example `docker.io/library/nginx`.
    pub name: String,
    /// Immutable digest of the image as reported by the container runtime, `<algorithm>:<hex>`,
    /// for example `sha256:3fbc…`. The scan always runs against this digest.
    pub digest: String,
    /// Tag of the image as written in the pod spec; empty when the pod spec pins a digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Lowest severity to report: UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL. Never set by the
    /// operator. The details may leave out more when they do not fit the status size budget;
    /// see `status.vulnerabilitiesTruncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// When true, only vulnerabilities that have a fixed version are reported. Set from the
    /// workload annotation `image-scanner.statnett.no/ignore-unfixed: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_unfixed: Option<bool>,
    /// The top-level workload and container that run the image.
    pub workload: Workload,
}

/// Reference to the top-level workload (resolved through controller owner references) and the
/// container in its pods that runs the scanned image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// API version of the workload, for example `apps/v1` or `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// API group of the workload (`apps`, `batch`, or empty for the core group). Deprecated in
    /// favour of `apiVersion`; kept for compatibility.
    pub group: String,
    /// Kind of the workload, for example `Deployment`, `CronJob` or `Pod`.
    pub kind: String,
    /// Name of the workload object in the namespace of this scan.
    pub name: String,
    /// UID of the workload object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Name of the container (init, regular or ephemeral) in the workload's pods that runs the
    /// image.
    pub container_name: String,
}

/// Observed state of the scan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImageScanStatus {
    /// `metadata.generation` of this object when the status was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// UID of the scan Job whose result is shown. Scan results are shared by every scan of the
    /// same image digest, so several objects may show the same Job.
    #[serde(
        rename = "lastScanJobUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_scan_job_uid: Option<String>,
    /// Time of the last scan attempt, successful or not. Drives rescans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<Time>,
    /// Time of the last successful scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_scan_time: Option<Time>,
    /// Current state in kstatus terms: `Reconciling` while a scan Job runs, `Stalled` when the last
    /// scan failed. A successful scan removes all conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Vulnerabilities found, sorted by severity (lowest first), package, installed version and
    /// ID, limited to the status size budget (see `vulnerabilitiesTruncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub vulnerabilities: Option<Vec<Vulnerability>>,
    /// Counts of all vulnerabilities found, before any size-driven truncation of the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability_summary: Option<VulnerabilitySummary>,
    /// Extension: present when `vulnerabilities` does not hold every vulnerability of the summary
    /// because the details exceeded the size budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities_truncated: Option<VulnerabilitiesTruncated>,
    /// Extension: findings of the scan that vulnerability exceptions cover, counted here
    /// instead of in `vulnerabilitySummary` (which counts only what is not suppressed). Absent
    /// when no exception applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_count: Option<SuppressedCount>,
    /// Extension: which exceptions (their UIDs and generations, hashed) applied to this scan
    /// when the status was written; the operator writes the status again when they change.
    /// Absent when none applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceptions_fingerprint: Option<String>,
    /// Extension: bytes of vulnerability details this result keeps in etcd — `vulnerabilities`
    /// here and the results of this object's OpenReports Report — measured as compact JSON of
    /// the vulnerabilities. The operator keeps their sum over all objects within
    /// `--details-total-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_bytes: Option<i64>,
    /// Extension: the IDs of the findings of the result shown at or above the notice threshold
    /// (`--notice-min-severity`), not suppressed. What the next result is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notable_findings: Option<FindingRecord>,
    /// Extension: the record the workload's owners were last told of (by Events). It differs
    /// from `notableFindings` while a change waits to be announced, so an announcement that
    /// has not happened yet survives an operator restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_findings: Option<FindingRecord>,
}

/// Extension: a compact record of a result's findings at or above a severity, by ID: what
/// change announcements compare. Replaced whole on every write.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct FindingRecord {
    /// The lowest severity recorded.
    pub min_severity: Severity,
    /// Vulnerability IDs by severity (`CRITICAL` … `UNKNOWN`, only those with any), each list
    /// sorted; an ID found with several severities is recorded at the highest.
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub ids: BTreeMap<String, Vec<String>>,
    /// The recorded IDs that have a fixed version (in any package), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixable: Vec<String>,
    /// IDs left out to keep the record small (the least severe first); the severity cut
    /// there is not compared.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_out: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Extension: findings covered by vulnerability exceptions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SuppressedCount {
    /// Number of suppressed findings (after `ignoreUnfixed` and `minSeverity`).
    pub total: i32,
    /// Number of suppressed findings per severity (`UNKNOWN` … `CRITICAL`, only those with
    /// any).
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub severity_count: BTreeMap<String, i32>,
    /// Number of suppressed findings per exception (`<namespace>/<name>`, or `cluster/<name>`
    /// for a ClusterVulnerabilityException); a finding covered by several counts for the first
    /// in that order.
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub by_exception: BTreeMap<String, i32>,
    /// Number of suppressed findings per reason of the exception that covers them
    /// (`NotAffected`, `AcceptedRisk`, `Mitigated`, `FalsePositive`; only those with any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub by_reason: BTreeMap<String, i32>,
}

/// Extension: what was left out of `status.vulnerabilities` to fit the size budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilitiesTruncated {
    /// Severities whose vulnerabilities were all left out, lowest first.
    pub dropped_severities: Vec<Severity>,
    /// Number of vulnerabilities left out.
    pub dropped_count: i32,
    /// Size budget in bytes that the details had to fit.
    pub budget_bytes: i64,
    /// Which budget cut them: `ObjectBudget` (`--status-details-max-bytes`), `ClusterBudget`
    /// (the stored details of all objects near `--details-total-bytes`), `RequestTooLarge`
    /// (the API server refused a larger object). Absent in objects written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TruncationReason>,
}

/// Extension: which budget cut the details (see [`VulnerabilitiesTruncated::reason`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TruncationReason {
    /// The per-object budget, `--status-details-max-bytes`.
    ObjectBudget,
    /// The cluster-wide budget, `--details-total-bytes`: the details of all objects together
    /// came near it, so this object got less room.
    ClusterBudget,
    /// The API server refused a larger object ("request entity too large").
    RequestTooLarge,
}

/// One vulnerability of one package. This is also the scan-log element format of the Go
/// operator's trivy template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Vulnerability {
    /// Vulnerability identifier, for example `CVE-2022-3715` or `GHSA-…`.
    #[serde(rename = "vulnerabilityID")]
    pub vulnerability_id: String,
    /// Name of the affected package.
    pub pkg_name: String,
    /// Installed version of the package.
    pub installed_version: String,
    /// Severity: UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL.
    pub severity: Severity,
    /// Path of the package file inside the image, for language packages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pkg_path: String,
    /// Version that fixes the vulnerability; absent when no fix exists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fixed_version: String,
    /// Short title of the vulnerability.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// Primary URL describing the vulnerability.
    #[serde(
        rename = "primaryURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub primary_url: String,
    /// Extension: the vulnerability exception that covers this finding (`<namespace>/<name>`,
    /// or `cluster/<name>`); such a finding is counted in `suppressedCount`, not in the
    /// summary. Set by the operator only: a scanner's value is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    /// Extension: why a VEX document says this finding does not apply — the statement's
    /// justification (`vulnerable_code_not_in_execute_path`, …), `impact: <statement>`, or
    /// `fixed`; only with `suppressedBy`, and only for an exception given by a VEX document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_justification: Option<String>,
}

/// Counts of vulnerabilities.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilitySummary {
    /// Number of vulnerabilities per severity (`UNKNOWN`, `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub severity_count: Option<BTreeMap<String, i32>>,
    /// Number of vulnerabilities that have a fixed version.
    pub fixed_count: i32,
    /// Number of vulnerabilities without a fixed version.
    pub unfixed_count: i32,
    /// Extension: number of vulnerabilities that have a fixed version, per severity (same keys
    /// as `severityCount`). Lets alerts target what can be fixed now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub fixed_severity_count: Option<BTreeMap<String, i32>>,
}

// Severity of a vulnerability, ordered `UNKNOWN` < `LOW` < `MEDIUM` < `HIGH` < `CRITICAL`.
// (A plain comment on purpose: a doc comment here would replace the field descriptions of
// `spec.minSeverity` and `severity` in the generated CRD.)
#[allow(missing_docs)]
#[derive(
    Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema, Default,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Severity not known.
    #[default]
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Unknown,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The upper-case name used in JSON and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Parses one of the five upper-case names exactly; anything else is `None`.
    pub fn from_name(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Position in the order, `UNKNOWN` = 0 … `CRITICAL` = 4.
    pub fn rank(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Like the Go operator: any string that is not one of the five names is `UNKNOWN`; a value that
/// is not a string is an error.
impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Severity::from_name(&name).unwrap_or(Severity::Unknown))
    }
}

impl ContainerImageScan {
    /// Generates the CustomResourceDefinition as YAML, as committed under `crds/`.
    pub fn crd_yaml() -> String {
        crd_yaml::<ContainerImageScan>()
    }
}

/// Generates one CustomResourceDefinition as YAML.
pub type CrdYaml = fn() -> String;

/// The CustomResourceDefinitions of this group by plural name, each generated as YAML as
/// committed under `crds/<plural>.stas.statnett.no.yaml`.
pub const CRDS: [(&str, CrdYaml); 3] = [
    ("containerimagescans", crd_yaml::<ContainerImageScan>),
    (
        "vulnerabilityexceptions",
        crd_yaml::<exception::VulnerabilityException>,
    ),
    (
        "clustervulnerabilityexceptions",
        crd_yaml::<exception::ClusterVulnerabilityException>,
    ),
];

fn crd_yaml<K: kube::CustomResourceExt>() -> String {
    serde_saphyr::to_string(&K::crd()).expect("a CRD always serialises to YAML")
}
