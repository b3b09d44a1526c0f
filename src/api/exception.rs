//! Extension: vulnerability exceptions — a decision, recorded in the cluster, that some findings
//! are not to be counted: who decided it (the object's author, in the audit log and managed
//! fields), why (`reason`, `description`), for which findings exactly (IDs, narrowed to
//! packages, images and workloads) and until when (`expires`). The Go operator has no such
//! resource.
//!
//! A suppressed finding is never hidden: the CIS status keeps it in the details, marked with
//! the exception that covers it, and counts it in `suppressedCount` instead of the summary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind of the namespaced exception.
pub const EXCEPTION_KIND: &str = "VulnerabilityException";
/// Kind of the cluster-scoped exception.
pub const CLUSTER_EXCEPTION_KIND: &str = "ClusterVulnerabilityException";

/// Findings of the scans in this namespace that are not to be counted, and why.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "stas.statnett.no",
    version = "v1alpha1",
    kind = "VulnerabilityException",
    namespaced,
    shortname = "vulnex",
    category = "image-scanner",
    doc = "VulnerabilityException: findings of the ContainerImageScans of this namespace that are not to be counted (suppressed), with the reason and an optional expiry. Suppressed findings stay in each scan's details, marked with the exception; they leave its summary, metrics and alerts. Never affects another namespace.",
    status = "VulnerabilityExceptionStatus",
    printcolumn = r#"{"name":"ID","type":"string","description":"The first vulnerability ID covered (all of them: spec.vulnerabilities)","jsonPath":".spec.vulnerabilities[0].id"}"#,
    printcolumn = r#"{"name":"Scope","type":"string","description":"Packages, images and workloads the exception is narrowed to","jsonPath":".status.scope"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","description":"When the exception stops applying (a future date shows as a date, not an age)","jsonPath":".spec.expires"}"#,
    printcolumn = r#"{"name":"Covered","type":"integer","description":"Findings suppressed by this exception now","jsonPath":".status.coveredFindings"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.vulnerabilities) != has(self.vex)", "message": "an exception is given by exactly one of vulnerabilities (with reason) or vex"},
    {"rule": "has(self.vulnerabilities) == has(self.reason)", "message": "reason goes with vulnerabilities (a VEX statement gives its own reason)"}
]))]
pub struct VulnerabilityExceptionSpec {
    /// What the exception covers and why.
    #[serde(flatten)]
    pub rule: ExceptionRule,
}

/// Findings of scans in any namespace (or the namespaces named) that are not to be counted:
/// for platform teams. Only cluster administrators manage these.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "stas.statnett.no",
    version = "v1alpha1",
    kind = "ClusterVulnerabilityException",
    shortname = "cvulnex",
    category = "image-scanner",
    doc = "ClusterVulnerabilityException: findings of the ContainerImageScans of all namespaces (or of the namespaces named) that are not to be counted (suppressed), with the reason and an optional expiry. For platform teams; namespace owners use VulnerabilityException.",
    status = "VulnerabilityExceptionStatus",
    printcolumn = r#"{"name":"ID","type":"string","description":"The first vulnerability ID covered (all of them: spec.vulnerabilities)","jsonPath":".spec.vulnerabilities[0].id"}"#,
    printcolumn = r#"{"name":"Scope","type":"string","description":"Namespaces, packages, images and workloads the exception is narrowed to","jsonPath":".status.scope"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","description":"When the exception stops applying (a future date shows as a date, not an age)","jsonPath":".spec.expires"}"#,
    printcolumn = r#"{"name":"Covered","type":"integer","description":"Findings suppressed by this exception now","jsonPath":".status.coveredFindings"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.vulnerabilities) != has(self.vex)", "message": "an exception is given by exactly one of vulnerabilities (with reason) or vex"},
    {"rule": "has(self.vulnerabilities) == has(self.reason)", "message": "reason goes with vulnerabilities (a VEX statement gives its own reason)"}
]))]
pub struct ClusterVulnerabilityExceptionSpec {
    /// Namespaces whose scans the exception applies to: names, or patterns with `*` (any
    /// characters). All namespaces when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub namespaces: Option<Vec<NamePattern>>,
    /// What the exception covers and why.
    #[serde(flatten)]
    pub rule: ExceptionRule,
}

/// What an exception covers and why: shared by both kinds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionRule {
    /// The vulnerabilities covered. A finding is covered when its ID is one of these IDs or
    /// their aliases (compared without regard to case). Exactly one of `vulnerabilities`
    /// (with `reason`) and `vex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub vulnerabilities: Option<Vec<ExceptedVulnerability>>,
    /// An OpenVEX document instead of `vulnerabilities`: its `not_affected` and `fixed`
    /// statements for a product that is the scanned image (or a package in it) cover exactly
    /// those findings, each with its statement's status and justification as the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<VexSource>,
    /// Only findings in these packages (any of them). All packages when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub packages: Option<Vec<PackageMatch>>,
    /// Only findings in these images (any of them). All images when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub images: Option<Vec<ImageMatch>>,
    /// Only findings in the scans of these workloads (any of them). All workloads when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub workloads: Option<Vec<WorkloadMatch>>,
    /// Why the findings are not to be counted; with `vulnerabilities` only (a VEX statement
    /// gives its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExceptionReason>,
    /// The decision in words: what was assessed, by whom, what mitigates it, a ticket.
    #[schemars(length(min = 1, max = 2048))]
    pub description: String,
    /// When the exception stops applying (RFC 3339, e.g. `2027-01-31T00:00:00Z`); the
    /// findings come back then. Never, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

/// Where an exception's OpenVEX document is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.inline) != has(self.configMapKeyRef)", "message": "a VEX document is given by exactly one of inline or configMapKeyRef"}
]))]
pub struct VexSource {
    /// The document itself (OpenVEX JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 262144))]
    pub inline: Option<String>,
    /// A key of a ConfigMap holding the document. The ConfigMap must carry the label
    /// `image-scanner.statnett.no/vex: "true"` (the operator watches only those), in the
    /// exception's namespace; a cluster-scoped exception names the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<VexConfigMapKeyRef>,
}

/// A key of a ConfigMap labelled `image-scanner.statnett.no/vex: "true"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VexConfigMapKeyRef {
    /// The ConfigMap's namespace: required for a cluster-scoped exception (the operator's
    /// namespace or a watched one), the exception's own (or absent) for a namespaced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in its `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A vulnerability identifier with the identifiers other databases give it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExceptedVulnerability {
    /// The identifier, for example `CVE-2024-3094`, `GHSA-xxxx-xxxx-xxxx`, `DSA-5674-1`,
    /// `RUSTSEC-2024-0003`, `GO-2024-2687`.
    #[schemars(
        length(min = 3, max = 128),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9][A-Za-z0-9._:-]*$"),
        extend("x-kubernetes-validations" = [
            {"rule": "!self.upperAscii().startsWith('CVE-') || self.upperAscii().matches('^CVE-[0-9]{4}-[0-9]{4,}$')", "message": "a CVE ID is CVE-<year>-<number of 4 or more digits>"},
            {"rule": "!self.upperAscii().startsWith('GHSA-') || self.lowerAscii().matches('^ghsa(-[23456789cfghjmpqrvwx]{4}){3}$')", "message": "a GHSA ID is GHSA-xxxx-xxxx-xxxx"}
        ])
    )]
    pub id: String,
    /// Other identifiers of the same vulnerability (a GHSA of a CVE, a distribution's
    /// advisory); a finding reported under any of them is covered too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub aliases: Option<Vec<VulnerabilityId>>,
}

/// A vulnerability identifier (see `id`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(transparent)]
pub struct VulnerabilityId(
    #[schemars(
        length(min = 3, max = 128),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9][A-Za-z0-9._:-]*$")
    )]
    pub String,
);

/// A name, or a pattern where `*` stands for any characters (`team-*`, `*`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(transparent)]
pub struct NamePattern(#[schemars(length(min = 1, max = 512))] pub String);

/// A package whose findings are covered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.name) != has(self.purl)", "message": "a package is given by exactly one of name or purl"},
    {"rule": "!has(self.purl) || !has(self.versions)", "message": "a purl carries its own version (pkg:type/name@version); versions go with name"}
]))]
pub struct PackageMatch {
    /// The package name as the scanner reports it (`pkgName` in the details), e.g. `openssl`,
    /// `github.com/golang-jwt/jwt/v4`, `org.yaml:snakeyaml`; `*` stands for any characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<NamePattern>,
    /// Only these installed versions (exactly as in `installedVersion`). Any version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub versions: Option<Vec<String>>,
    /// A package URL, `pkg:<type>/<namespace>/<name>@<version>` (namespace and version
    /// optional); its name (with the namespace, as the scanner names such packages) and
    /// version are matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 5, max = 1024),
        regex(pattern = r"^pkg:[A-Za-z.+-][A-Za-z0-9.+-]*/.+$")
    )]
    pub purl: Option<String>,
}

/// Images whose findings are covered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.name) || has(self.digest)", "message": "an image is given by a name, a digest, or both"}
]))]
pub struct ImageMatch {
    /// The repository as in a scan's `spec.name` (`docker.io/library/nginx`, fully
    /// qualified); `*` stands for any characters (`registry.example.com/team/*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<NamePattern>,
    /// Only this digest (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$"))]
    pub digest: Option<String>,
}

/// Workloads whose scans' findings are covered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.kind) || has(self.name) || has(self.selector)", "message": "a workload is given by kind, name, a label selector, or several of them"}
]))]
pub struct WorkloadMatch {
    /// Kind of the top-level workload as in a scan's `spec.workload.kind` (`Deployment`,
    /// `CronJob`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// Name of the workload; `*` stands for any characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<NamePattern>,
    /// Labels of the workload's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

// `LabelSelector` is not `Eq`; nothing compares floats here.
impl Eq for WorkloadMatch {}

/// Why findings are not to be counted (the first three are OpenVEX's justification groups).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum ExceptionReason {
    /// The vulnerable code is not present, not reachable or not executed in this use.
    NotAffected,
    /// Affected, and the risk is accepted (until `expires`, usually).
    AcceptedRisk,
    /// Affected, and something else stops exploitation (configuration, network policy, WAF).
    Mitigated,
    /// The scanner is wrong: the package or version is not what it reports.
    FalsePositive,
}

impl ExceptionReason {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionReason::NotAffected => "NotAffected",
            ExceptionReason::AcceptedRisk => "AcceptedRisk",
            ExceptionReason::Mitigated => "Mitigated",
            ExceptionReason::FalsePositive => "FalsePositive",
        }
    }
}

/// What the operator makes of an exception.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityExceptionStatus {
    /// `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: `True` while the exception applies; `False` with reason `Expired` after its
    /// expiry or `Invalid` when the operator cannot use it (the message says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// What the exception is narrowed to, in words (`packages: openssl; images: docker.io/…`);
    /// `all findings of these IDs` when not narrowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Findings this exception suppresses now, over all scans it applies to (a finding covered
    /// by several exceptions counts for the first by namespace and name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_findings: Option<i64>,
}
