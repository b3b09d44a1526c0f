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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::Vulnerability;
use crate::crd::exception::{
    ClusterVulnerabilityExceptionSpec, ExceptionReason, ExceptionRule, NamePattern,
    VulnerabilityExceptionSpec,
};
use crate::time::Timestamp;

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

/// A `*` pattern (see the module doc), or an exact name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    wildcard: bool,
}

impl Pattern {
    /// The pattern as written, `*` standing for any characters.
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            wildcard: true,
        }
    }

    /// Exactly `text` (a `*` in it is a character: a purl names one package).
    pub fn exact(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            wildcard: false,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `text` matches: the parts between `*`s appear in order, the first at the start
    /// and the last at the end. Linear in the text for each part (greedy leftmost matching is
    /// exact for a single wildcard kind), so a hostile pattern costs no backtracking.
    pub fn matches(&self, text: &str) -> bool {
        if !self.wildcard {
            return self.text == text;
        }
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let middle: Vec<&str> = parts.collect();
        let Some((last, middle)) = middle.split_last() else {
            // No `*`: the whole text.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// A package an exception is narrowed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRule {
    /// Names the scanner may report the package under (a purl gives several: `ns/name`,
    /// `ns:name`, `name`), as patterns; any one matches.
    names: Vec<Pattern>,
    /// Installed versions matched exactly; any version when empty.
    versions: Vec<String>,
}

impl PackageRule {
    fn matches(&self, v: &Vulnerability) -> bool {
        self.names.iter().any(|p| p.matches(&v.pkg_name))
            && (self.versions.is_empty() || self.versions.contains(&v.installed_version))
    }
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
    /// Why the findings it covers are not counted.
    pub reason: ExceptionReason,
    /// When it stops applying; never when `None`.
    pub expires: Option<Timestamp>,
    /// Upper-case IDs and aliases, sorted, without duplicates.
    ids: Vec<String>,
    /// Namespace patterns of a cluster-scoped exception; all namespaces when empty.
    namespaces: Vec<Pattern>,
    packages: Vec<PackageRule>,
    images: Vec<ImageRule>,
    workloads: Vec<WorkloadRule>,
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
/// (`status.exceptionsFingerprint`): a hash of their UIDs and generations, so that adding,
/// changing, deleting or the expiry of one makes the status out of date, and nothing else
/// does. `None` when none applied (a status written before exceptions existed is current).
pub fn fingerprint(applied: &[&Exception]) -> Option<String> {
    if applied.is_empty() {
        return None;
    }
    let mut versions: Vec<String> = applied
        .iter()
        .map(|e| format!("{}@{}", e.uid, e.generation))
        .collect();
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
        Exception::compile(key, version, &[], &spec.rule)
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
        Exception::compile(key, version, namespaces, &spec.rule)
    }

    fn compile(
        key: ExceptionKey,
        version: ObjectVersion<'_>,
        namespaces: &[NamePattern],
        rule: &ExceptionRule,
    ) -> Result<Exception, InvalidException> {
        let mut ids: Vec<String> = rule
            .vulnerabilities
            .iter()
            .flat_map(|v| {
                std::iter::once(v.id.as_str())
                    .chain(v.aliases.iter().flatten().map(|a| a.0.as_str()))
            })
            .map(|id| id.trim().to_ascii_uppercase())
            .collect();
        if ids.iter().any(String::is_empty) || ids.is_empty() {
            return Err(InvalidException(
                "vulnerabilities: at least one ID, none empty".to_string(),
            ));
        }
        ids.sort();
        ids.dedup();
        let packages = rule
            .packages
            .iter()
            .flatten()
            .map(|p| match (&p.name, &p.purl) {
                (Some(name), None) => Ok(PackageRule {
                    names: vec![Pattern::new(&name.0)],
                    versions: p.versions.clone().unwrap_or_default(),
                }),
                (None, Some(purl)) => package_of_purl(purl),
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
            reason: rule.reason,
            expires: rule.expires.as_ref().map(Timestamp::from_k8s),
            ids,
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
        namespace && image && workload
    }

    /// Whether it covers finding `v` (of a scan it applies to): its ID or an alias, in one of
    /// the packages named.
    pub fn covers(&self, v: &Vulnerability) -> bool {
        let id = v.vulnerability_id.trim().to_ascii_uppercase();
        self.ids.binary_search(&id).is_ok()
            && (self.packages.is_empty() || self.packages.iter().any(|p| p.matches(v)))
    }

    /// The IDs (upper case) it names, with aliases.
    pub fn ids(&self) -> &[String] {
        &self.ids
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
                    let names: Vec<&str> = p.names.iter().map(Pattern::as_str).collect();
                    let names = names.join("|");
                    if p.versions.is_empty() {
                        names
                    } else {
                        format!("{names}@{}", p.versions.join("|"))
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
        if parts.is_empty() {
            "all findings of these IDs".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// A package URL's names as scanners report them, and its version.
///
/// `pkg:<type>/<namespace>/<name>@<version>?<qualifiers>#<subpath>` (components
/// percent-encoded). Scanners name a package with a namespace differently by ecosystem:
/// Go and most others `namespace/name` (`github.com/x/y`), Maven `namespace:name`
/// (`org.yaml:snakeyaml`), npm `@scope/name` (the `@` encoded in the purl), and OS packages
/// only `name` (the namespace is the distribution). Any of these matches.
fn package_of_purl(purl: &str) -> Result<PackageRule, InvalidException> {
    let invalid = |why: &str| InvalidException(format!("packages: purl {purl:?}: {why}"));
    let rest = purl
        .strip_prefix("pkg:")
        .ok_or_else(|| invalid("does not start with pkg:"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let rest = rest.split('?').next().unwrap_or_default();
    let (path, version) = match rest.rsplit_once('@') {
        // `@` in a namespace is encoded, so an `@` after the last `/` starts the version.
        Some((path, version)) if !version.contains('/') => (path, Some(version)),
        _ => (rest, None),
    };
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&e))?;
    if segments.len() < 2 {
        return Err(invalid("needs a type and a name"));
    }
    segments.remove(0);
    let name = segments.pop().unwrap_or_default();
    let mut names = vec![name.clone()];
    if !segments.is_empty() {
        let namespace = segments.join("/");
        names.push(format!("{namespace}/{name}"));
        names.push(format!("{namespace}:{name}"));
    }
    let versions = match version {
        Some(v) if !v.is_empty() => vec![percent_decode(v).map_err(|e| invalid(&e))?],
        _ => Vec::new(),
    };
    Ok(PackageRule {
        names: names.iter().map(|n| Pattern::exact(n)).collect(),
        versions,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}

#[cfg(test)]
#[path = "exception_tests.rs"]
mod tests;
