//! Which findings a vulnerability exception covers (issue 20): the exception's spec compiled
//! once into a [`Exception`], then asked per scan ([`Exception::applies_to`]: namespace, image,
//! workload; [`Exception::in_force`]: expiry) and per finding ([`Exception::covers`]: ID and
//! aliases, package).
//!
//! Matching is exact and case-sensitive except where the data is not: vulnerability IDs are
//! compared without regard to ASCII case (`cve-2024-1` and `CVE-2024-1` are one ID, and GHSA
//! IDs come in both cases). Name patterns know one wildcard, `*` (any characters, also none):
//! registries, namespaces and package names have no other convention both users and
//! scanners share. An exception in force at `now` is one whose expiry is after `now`; at its
//! expiry time exactly it no longer applies (the finding is back at that instant, and the
//! core arms a timer for it).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::Vulnerability;
use crate::crd::exception::{
    ClusterVulnerabilityExceptionSpec, ExceptionReason, ExceptionRule, NamePattern,
    VulnerabilityExceptionSpec,
};
pub use crate::package_match::Pattern;
use crate::package_match::{PackageRule, package_of_purl};
use crate::time::Timestamp;
use crate::vex::{VexDocument, VexStatus};

/// The label a ConfigMap holding VEX documents carries (value `"true"`): the operator watches
/// only those, never every ConfigMap.
pub const VEX_CONFIG_MAP_LABEL: &str = "image-scanner.statnett.no/vex";

/// Where an exception lives, and so which scans it may ever apply to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExceptionKey {
    /// A `VulnerabilityException`: the scans of its namespace only.
    Namespaced {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `ClusterVulnerabilityException`: the scans of the namespaces it names, or all.
    Cluster {
        /// Its name.
        name: String,
    },
}

impl ExceptionKey {
    /// How a suppressed finding names its exception: `<namespace>/<name>`, or
    /// `cluster/<name>` for a cluster-scoped one (no namespace is called `cluster/…`: a
    /// namespace name has no `/`, so the two never collide).
    pub fn reference(&self) -> String {
        match self {
            ExceptionKey::Namespaced { namespace, name } => format!("{namespace}/{name}"),
            ExceptionKey::Cluster { name } => format!("cluster/{name}"),
        }
    }
}

/// The scan a finding was found in, as far as exceptions look at it.
#[derive(Clone, Copy, Debug)]
pub struct ScanSubject<'a> {
    /// The CIS's namespace.
    pub namespace: &'a str,
    /// `spec.name`: the fully qualified repository.
    pub image: &'a str,
    /// `spec.digest`.
    pub digest: &'a str,
    /// `spec.workload.kind`.
    pub workload_kind: &'a str,
    /// `spec.workload.name`.
    pub workload_name: &'a str,
    /// Labels of the workload's pods (of one of them: they share a template).
    pub pod_labels: &'a BTreeMap<String, String>,
}

impl<'a> ScanSubject<'a> {
    /// The scan of a CIS in `namespace` with `spec` and the pods' `labels` (which every CIS
    /// carries).
    pub fn of(
        namespace: &'a str,
        spec: &'a crate::crd::ContainerImageScanSpec,
        labels: &'a BTreeMap<String, String>,
    ) -> ScanSubject<'a> {
        ScanSubject {
            namespace,
            image: &spec.name,
            digest: &spec.digest,
            workload_kind: &spec.workload.kind,
            workload_name: &spec.workload.name,
            pod_labels: labels,
        }
    }
}

/// The exceptions that apply to one scan, in marking order, with the scan (a VEX statement
/// names the image it is about).
#[derive(Clone, Copy, Debug)]
pub struct Applicable<'a> {
    /// The scan whose findings are marked.
    pub scan: ScanSubject<'a>,
    /// The exceptions in force that apply to it.
    pub exceptions: &'a [&'a Exception],
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Applicable<'static> {
    /// No exception applies.
    pub const NONE: Applicable<'static> = Applicable {
        scan: ScanSubject {
            namespace: "",
            image: "",
            digest: "",
            workload_kind: "",
            workload_name: "",
            pod_labels: &NO_LABELS,
        },
        exceptions: &[],
    };
}

/// An image an exception is narrowed to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageRule {
    name: Option<Pattern>,
    digest: Option<String>,
}

/// A workload an exception is narrowed to.
#[derive(Clone, Debug, PartialEq)]
struct WorkloadRule {
    kind: Option<String>,
    name: Option<Pattern>,
    selector: Option<Selector>,
}

/// A label selector, checked when compiled: `matchLabels` and `matchExpressions` with `In`,
/// `NotIn`, `Exists`, `DoesNotExist`.
#[derive(Clone, Debug, PartialEq)]
struct Selector(Vec<Requirement>);

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    fn compile(selector: &LabelSelector) -> Result<Selector, String> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for e in selector.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            let requirement = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "selector: operator {} on {key} needs values",
                        e.operator
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "selector: operator {} on {key} takes no values",
                        e.operator
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(format!(
                        "selector: unknown operator {other:?} on {key} (In, NotIn, Exists, DoesNotExist)"
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// An exception as the core uses it: its spec compiled, or why it cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub struct Exception {
    /// Where it lives.
    pub key: ExceptionKey,
    /// `metadata.uid`: a deleted and re-created exception of the same name is another one.
    pub uid: String,
    /// `metadata.generation` of the spec compiled.
    pub generation: i64,
    /// When it stops applying; never when `None`.
    pub expires: Option<Timestamp>,
    /// Which findings it covers, and why.
    coverage: Coverage,
    /// Namespace patterns of a cluster-scoped exception; all namespaces when empty.
    namespaces: Vec<Pattern>,
    packages: Vec<PackageRule>,
    images: Vec<ImageRule>,
    workloads: Vec<WorkloadRule>,
}

/// Which findings an exception covers: the IDs it names, or what a VEX document says.
#[derive(Clone, Debug, PartialEq)]
enum Coverage {
    Ids {
        /// Upper-case IDs and aliases, sorted, without duplicates.
        ids: Vec<String>,
        reason: ExceptionReason,
    },
    Vex {
        /// A ConfigMap's key, or `None` for an inline document.
        source: Option<VexConfigMap>,
        /// The document parsed, or why there is none (a ConfigMap not seen, a parse error):
        /// then the exception covers nothing and its status says why.
        document: Result<Arc<VexDocument>, String>,
    },
}

/// A key of a ConfigMap holding an exception's VEX document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VexConfigMap {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The key in its `data`.
    pub key: String,
}

/// Why an exception covers a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cover<'a> {
    /// The exception's reason, or the one a VEX statement's status gives (`not_affected` →
    /// `NotAffected`, `fixed` → `FalsePositive`: the scanner reports a fixed package).
    pub reason: ExceptionReason,
    /// The VEX statement's justification; `None` for an exception naming IDs.
    pub justification: Option<&'a str>,
}

/// Which spec of which object an exception was compiled from.
#[derive(Clone, Copy, Debug)]
pub struct ObjectVersion<'a> {
    /// `metadata.uid`.
    pub uid: &'a str,
    /// `metadata.generation`.
    pub generation: i64,
}

/// What a status records of the exceptions that applied to its scan when it was written
/// (`status.exceptionsFingerprint`): a hash of their UIDs and generations (and of the VEX
/// document they read), so that adding, changing, deleting or the expiry of one, or a change of
/// its document, makes the status out of date, and nothing else does. `None` when none applied (a status written before exceptions existed is current).
pub fn fingerprint(applied: &[&Exception]) -> Option<String> {
    if applied.is_empty() {
        return None;
    }
    let mut versions: Vec<String> = applied.iter().map(|e| e.version_tag()).collect();
    versions.sort();
    let hash = crate::fingerprint::fnv1a64(versions.join(",").as_bytes());
    Some(format!("{}-{hash:016x}", applied.len()))
}

/// Why an exception cannot be used (shown in its `Ready` condition); the schema rejects most
/// of these before they are stored, this catches what it cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidException(pub String);

impl Exception {
    /// A `VulnerabilityException` of `namespace`.
    pub fn namespaced(
        namespace: &str,
        name: &str,
        version: ObjectVersion<'_>,
        spec: &VulnerabilityExceptionSpec,
    ) -> Result<Exception, InvalidException> {
        let key = ExceptionKey::Namespaced {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        Exception::compile(key, version, &[], &spec.rule, Some(namespace))
    }

    /// A `ClusterVulnerabilityException`.
    pub fn cluster(
        name: &str,
        version: ObjectVersion<'_>,
        spec: &ClusterVulnerabilityExceptionSpec,
    ) -> Result<Exception, InvalidException> {
        let key = ExceptionKey::Cluster {
            name: name.to_string(),
        };
        let namespaces = spec.namespaces.as_deref().unwrap_or_default();
        Exception::compile(key, version, namespaces, &spec.rule, None)
    }

    /// `own_namespace`: a namespaced exception's, whose ConfigMaps it may read (only those).
    fn compile(
        key: ExceptionKey,
        version: ObjectVersion<'_>,
        namespaces: &[NamePattern],
        rule: &ExceptionRule,
        own_namespace: Option<&str>,
    ) -> Result<Exception, InvalidException> {
        let coverage = Coverage::compile(rule, own_namespace)?;
        let packages = rule
            .packages
            .iter()
            .flatten()
            .map(|p| match (&p.name, &p.purl) {
                (Some(name), None) => Ok(PackageRule::named(
                    &name.0,
                    p.versions.clone().unwrap_or_default(),
                )),
                (None, Some(purl)) => package_of_purl(purl)
                    .map_err(|why| InvalidException(format!("packages: purl {purl:?}: {why}"))),
                _ => Err(InvalidException(
                    "packages: each is given by exactly one of name or purl".to_string(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let images = rule
            .images
            .iter()
            .flatten()
            .map(|i| {
                if i.name.is_none() && i.digest.is_none() {
                    return Err(InvalidException(
                        "images: each is given by a name, a digest, or both".to_string(),
                    ));
                }
                Ok(ImageRule {
                    name: i.name.as_ref().map(|n| Pattern::new(&n.0)),
                    digest: i.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let workloads = rule
            .workloads
            .iter()
            .flatten()
            .map(|w| {
                if w.kind.is_none() && w.name.is_none() && w.selector.is_none() {
                    return Err(InvalidException(
                        "workloads: each is given by kind, name or selector".to_string(),
                    ));
                }
                Ok(WorkloadRule {
                    kind: w.kind.clone(),
                    name: w.name.as_ref().map(|n| Pattern::new(&n.0)),
                    selector: w
                        .selector
                        .as_ref()
                        .map(Selector::compile)
                        .transpose()
                        .map_err(|e| InvalidException(format!("workloads: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Exception {
            key,
            uid: version.uid.to_string(),
            generation: version.generation,
            expires: rule.expires.as_ref().map(Timestamp::from_k8s),
            coverage,
            namespaces: namespaces.iter().map(|n| Pattern::new(&n.0)).collect(),
            packages,
            images,
            workloads,
        })
    }

    /// Whether it applies at `now`: not yet expired.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.expires.is_none_or(|at| now < at)
    }

    /// Whether it applies to the findings of `scan` (not looking at expiry): a namespaced
    /// exception to its own namespace only; every narrowing given must match.
    pub fn applies_to(&self, scan: &ScanSubject<'_>) -> bool {
        let namespace = match &self.key {
            ExceptionKey::Namespaced { namespace, .. } => namespace == scan.namespace,
            ExceptionKey::Cluster { .. } => {
                self.namespaces.is_empty()
                    || self.namespaces.iter().any(|p| p.matches(scan.namespace))
            }
        };
        let image = self.images.is_empty()
            || self.images.iter().any(|i| {
                i.name.as_ref().is_none_or(|p| p.matches(scan.image))
                    && i.digest
                        .as_ref()
                        .is_none_or(|d| d.eq_ignore_ascii_case(scan.digest))
            });
        let workload = self.workloads.is_empty()
            || self.workloads.iter().any(|w| {
                w.kind.as_ref().is_none_or(|k| k == scan.workload_kind)
                    && w.name
                        .as_ref()
                        .is_none_or(|p| p.matches(scan.workload_name))
                    && w.selector
                        .as_ref()
                        .is_none_or(|s| s.matches(scan.pod_labels))
            });
        let document = match &self.coverage {
            Coverage::Ids { .. } => true,
            // A document that says nothing of this image leaves its scans alone, so a change
            // of the document rewrites only the scans it concerns (before or after).
            Coverage::Vex { document, .. } => document
                .as_ref()
                .is_ok_and(|d| d.concerns(scan.image, scan.digest)),
        };
        namespace && image && workload && document
    }

    /// Why it covers finding `v` of `scan` (a scan it applies to), if it does: its ID or an
    /// alias, in one of the packages named; or what its VEX document says of the finding.
    pub fn covering(&self, scan: &ScanSubject<'_>, v: &Vulnerability) -> Option<Cover<'_>> {
        if !self.packages.is_empty() && !self.packages.iter().any(|p| p.matches(v)) {
            return None;
        }
        match &self.coverage {
            Coverage::Ids { ids, reason } => {
                let id = v.vulnerability_id.trim().to_ascii_uppercase();
                ids.binary_search(&id).is_ok().then_some(Cover {
                    reason: *reason,
                    justification: None,
                })
            }
            Coverage::Vex { document, .. } => {
                let verdict = document
                    .as_ref()
                    .ok()?
                    .verdict(scan.image, scan.digest, v)?;
                let reason = match verdict.status {
                    VexStatus::Fixed => ExceptionReason::FalsePositive,
                    _ => ExceptionReason::NotAffected,
                };
                Some(Cover {
                    reason,
                    justification: Some(verdict.justification),
                })
            }
        }
    }

    /// Whether it covers finding `v` of `scan`.
    pub fn covers(&self, scan: &ScanSubject<'_>, v: &Vulnerability) -> bool {
        self.covering(scan, v).is_some()
    }

    /// The IDs (upper case) it names, with aliases; none for a VEX document.
    pub fn ids(&self) -> &[String] {
        match &self.coverage {
            Coverage::Ids { ids, .. } => ids,
            Coverage::Vex { .. } => &[],
        }
    }

    /// The reason it gives; `None` for a VEX document (each statement gives its own).
    pub fn reason(&self) -> Option<ExceptionReason> {
        match &self.coverage {
            Coverage::Ids { reason, .. } => Some(*reason),
            Coverage::Vex { .. } => None,
        }
    }

    /// The ConfigMap key its VEX document is read from.
    pub fn vex_config_map(&self) -> Option<&VexConfigMap> {
        match &self.coverage {
            Coverage::Vex { source, .. } => source.as_ref(),
            Coverage::Ids { .. } => None,
        }
    }

    /// Takes the document of its ConfigMap as now observed (or why there is none).
    pub fn resolve_vex(&mut self, found: Result<Arc<VexDocument>, String>) {
        if let Coverage::Vex {
            source: Some(_),
            document,
        } = &mut self.coverage
        {
            *document = found;
        }
    }

    /// Why it covers nothing although valid: its VEX document is missing or unreadable.
    pub fn unusable(&self) -> Option<&str> {
        match &self.coverage {
            Coverage::Vex {
                document: Err(why), ..
            } => Some(why),
            _ => None,
        }
    }

    /// What its VEX document holds, in words (for its status).
    pub fn vex_summary(&self) -> Option<String> {
        let Coverage::Vex {
            document: Ok(d), ..
        } = &self.coverage
        else {
            return None;
        };
        let mut text = format!("VEX: {} statements", d.statements());
        if d.ignored_products() > 0 {
            text.push_str(&format!(
                ", {} products not matched (neither an image by digest nor a package URL)",
                d.ignored_products()
            ));
        }
        Some(text)
    }

    /// What identifies the version of it that applies: UID and generation, and the hash of
    /// its VEX document (a ConfigMap changes without the exception's generation changing).
    pub fn version_tag(&self) -> String {
        match &self.coverage {
            Coverage::Vex {
                document: Ok(d), ..
            } => format!("{}@{}#{:016x}", self.uid, self.generation, d.hash()),
            _ => format!("{}@{}", self.uid, self.generation),
        }
    }

    /// What it is narrowed to, in words (its status `scope`).
    pub fn scope(&self) -> String {
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            let list: Vec<&str> = self.namespaces.iter().map(|p| p.as_str()).collect();
            parts.push(format!("namespaces: {}", list.join(", ")));
        }
        if !self.packages.is_empty() {
            let list: Vec<String> = self
                .packages
                .iter()
                .map(|p| {
                    let names: Vec<&str> = p.names().iter().map(Pattern::as_str).collect();
                    let names = names.join("|");
                    if p.versions().is_empty() {
                        names
                    } else {
                        format!("{names}@{}", p.versions().join("|"))
                    }
                })
                .collect();
            parts.push(format!("packages: {}", list.join(", ")));
        }
        if !self.images.is_empty() {
            let list: Vec<String> = self
                .images
                .iter()
                .map(|i| match (&i.name, &i.digest) {
                    (Some(n), Some(d)) => format!("{}@{d}", n.as_str()),
                    (Some(n), None) => n.as_str().to_string(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => String::new(),
                })
                .collect();
            parts.push(format!("images: {}", list.join(", ")));
        }
        if !self.workloads.is_empty() {
            let list: Vec<String> = self
                .workloads
                .iter()
                .map(|w| {
                    let mut s = format!(
                        "{}/{}",
                        w.kind.as_deref().unwrap_or("*"),
                        w.name.as_ref().map_or("*", Pattern::as_str)
                    );
                    if w.selector.is_some() {
                        s.push_str(" (selector)");
                    }
                    s
                })
                .collect();
            parts.push(format!("workloads: {}", list.join(", ")));
        }
        match &self.coverage {
            Coverage::Vex {
                source: Some(c), ..
            } => parts.insert(
                0,
                format!("VEX: configmap {}/{} key {}", c.namespace, c.name, c.key),
            ),
            Coverage::Vex { source: None, .. } => parts.insert(0, "VEX: inline".to_string()),
            Coverage::Ids { .. } => {}
        }
        if parts.is_empty() {
            "all findings of these IDs".to_string()
        } else {
            parts.join("; ")
        }
    }
}

impl Coverage {
    fn compile(
        rule: &ExceptionRule,
        own_namespace: Option<&str>,
    ) -> Result<Coverage, InvalidException> {
        let invalid = |why: &str| Err(InvalidException(why.to_string()));
        match (&rule.vulnerabilities, &rule.vex, rule.reason) {
            (Some(vulnerabilities), None, Some(reason)) => {
                let mut ids: Vec<String> = vulnerabilities
                    .iter()
                    .flat_map(|v| {
                        std::iter::once(v.id.as_str())
                            .chain(v.aliases.iter().flatten().map(|a| a.0.as_str()))
                    })
                    .map(|id| id.trim().to_ascii_uppercase())
                    .collect();
                if ids.iter().any(String::is_empty) || ids.is_empty() {
                    return invalid("vulnerabilities: at least one ID, none empty");
                }
                ids.sort();
                ids.dedup();
                Ok(Coverage::Ids { ids, reason })
            }
            (None, Some(vex), None) => match (&vex.inline, &vex.config_map_key_ref) {
                (Some(text), None) => {
                    let document = VexDocument::parse(text)
                        .map_err(|e| InvalidException(format!("vex.inline: {e}")))?;
                    Ok(Coverage::Vex {
                        source: None,
                        document: Ok(Arc::new(document)),
                    })
                }
                (None, Some(r)) => {
                    let namespace = match (own_namespace, r.namespace.as_deref()) {
                        (Some(own), None) => own,
                        (Some(own), Some(named)) if named == own => own,
                        (Some(_), Some(_)) => {
                            return invalid(
                                "vex.configMapKeyRef: a VulnerabilityException reads ConfigMaps of its own namespace only",
                            );
                        }
                        (None, Some(named)) => named,
                        (None, None) => {
                            return invalid(
                                "vex.configMapKeyRef: a ClusterVulnerabilityException names the ConfigMap's namespace",
                            );
                        }
                    };
                    Ok(Coverage::Vex {
                        source: Some(VexConfigMap {
                            namespace: namespace.to_string(),
                            name: r.name.clone(),
                            key: r.key.clone(),
                        }),
                        document: Err("its ConfigMap is not observed yet".to_string()),
                    })
                }
                _ => invalid("vex: exactly one of inline or configMapKeyRef"),
            },
            (Some(_), None, None) => invalid("reason: required with vulnerabilities"),
            (None, Some(_), Some(_)) => {
                invalid("reason: not with vex (each statement gives its own)")
            }
            _ => invalid("exactly one of vulnerabilities (with reason) or vex"),
        }
    }
}

#[cfg(test)]
#[path = "exception_tests.rs"]
mod tests;
