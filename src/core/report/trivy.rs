//! Trivy's native JSON report (`--format json`).
//!
//! Every key is optional, as Trivy omits empty ones: a report without `Results` (nothing
//! scanned) or a result without `Vulnerabilities` (a clean target) is an empty list. Only
//! `Results[].Vulnerabilities[]` is read; everything else (`Packages`, `Secrets`,
//! `Metadata`, …) is skipped without allocating. Field mapping:
//!
//! | Trivy | [`Vulnerability`] |
//! |---|---|
//! | `VulnerabilityID`, `PkgName`, `InstalledVersion`, `Title`, `PrimaryURL` | same field |
//! | `PkgPath`; without one, the result's `Target` when its `Class` is `lang-pkgs` (a Go binary, a lock file) | `pkgPath`, as [`TRIVY_TEMPLATE`](crate::scan_job::TRIVY_TEMPLATE) does |
//! | `FixedVersion` (may list several versions, `"6.0.3.1, 5.2.4.3"`) | `fixedVersion`, kept verbatim |
//! | `Severity` (`UNKNOWN`…`CRITICAL`; missing or another name → `UNKNOWN`) | `severity` |
//!
//! The field set has been stable since `SchemaVersion` 2 (v0.20.0); files of that era have
//! no `SchemaVersion`-specific differences in these keys. With an explicit
//! [`ReportFormat::Trivy`](super::ReportFormat::Trivy), the pre-v0.20 "legacy" top level (a
//! bare array of results) is accepted too; auto-detection treats every array as the
//! template.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::DetectedFormat;
use crate::crd::{Severity, Vulnerability};

/// A decoded Trivy report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The flattened vulnerabilities of all results; `None` when `Results` was absent.
    pub results: Option<Results>,
}

impl Report {
    pub(super) fn into_detected(self) -> (Vec<Vulnerability>, DetectedFormat) {
        (
            self.results.map(|r| r.0).unwrap_or_default(),
            DetectedFormat::Trivy,
        )
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            #[serde(rename = "Results", default)]
            results: Option<Results>,
        }
        struct ObjectOrLegacyArray;
        impl<'de> Visitor<'de> for ObjectOrLegacyArray {
            type Value = Report;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Trivy JSON report object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Report, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Report { results: o.results })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Report, A::Error> {
                Ok(Report {
                    results: Some(ResultsVisitor.visit_seq(seq)?),
                })
            }
        }
        deserializer.deserialize_any(ObjectOrLegacyArray)
    }
}

/// `Results`: decoded straight into one flat list, result by result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Results(pub Vec<Vulnerability>);

struct ResultsVisitor;

impl<'de> Visitor<'de> for ResultsVisitor {
    type Value = Results;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Trivy results")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Results, A::Error> {
        let mut all = Vec::new();
        while let Some(result) = seq.next_element::<TrivyResult>()? {
            let location = result.language_file().map(str::to_string);
            for v in result.vulnerabilities.unwrap_or_default() {
                let mut v: Vulnerability = v.into();
                if v.pkg_path.is_empty()
                    && let Some(file) = &location
                {
                    v.pkg_path.clone_from(file);
                }
                all.push(super::require_id(v)?);
            }
        }
        Ok(Results(all))
    }
}

impl<'de> Deserialize<'de> for Results {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ResultsVisitor)
    }
}

#[derive(Deserialize)]
struct TrivyResult {
    #[serde(rename = "Target", default)]
    target: Option<String>,
    #[serde(rename = "Class", default)]
    class: Option<String>,
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<TrivyVulnerability>>,
}

impl TrivyResult {
    /// The file a language result was read from (a Go binary, a lock file), which its
    /// vulnerabilities do not repeat: two binaries with one module are two findings.
    fn language_file(&self) -> Option<&str> {
        (self.class.as_deref() == Some("lang-pkgs"))
            .then_some(self.target.as_deref())
            .flatten()
            .filter(|t| !t.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID", default)]
    vulnerability_id: Option<String>,
    #[serde(default)]
    pkg_name: Option<String>,
    #[serde(default)]
    installed_version: Option<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    pkg_path: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(rename = "PrimaryURL", default)]
    primary_url: Option<String>,
}

impl From<TrivyVulnerability> for Vulnerability {
    fn from(t: TrivyVulnerability) -> Self {
        Vulnerability {
            vulnerability_id: t.vulnerability_id.unwrap_or_default(),
            pkg_name: t.pkg_name.unwrap_or_default(),
            installed_version: t.installed_version.unwrap_or_default(),
            severity: t.severity.unwrap_or_default(),
            pkg_path: t.pkg_path.unwrap_or_default(),
            fixed_version: t.fixed_version.unwrap_or_default(),
            title: t.title.unwrap_or_default(),
            primary_url: t.primary_url.unwrap_or_default(),
            suppressed_by: None,
            suppressed_justification: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DetectedFormat, ReportFormat, parse_report};
    use crate::crd::Severity;

    #[test]
    fn minimal_objects() {
        for (input, n) in [
            (&br#"{"SchemaVersion": 2}"#[..], 0),
            (br#"{"ArtifactName": "x", "Results": null}"#, 0),
            (
                br#"{"Results": [{"Target": "t"}, {"Vulnerabilities": null}]}"#,
                0,
            ),
            (
                br#"{"Results": [{"Vulnerabilities": [{"VulnerabilityID": "a"}]}]}"#,
                1,
            ),
        ] {
            let r = parse_report(input, ReportFormat::Auto).unwrap();
            assert_eq!(r.format, DetectedFormat::Trivy);
            assert_eq!(r.vulnerabilities.len(), n);
        }
        let r = parse_report(
            br#"{"Results":[{"Vulnerabilities":[{"VulnerabilityID":"a"}]}]}"#,
            ReportFormat::Trivy,
        )
        .unwrap();
        assert_eq!(r.vulnerabilities[0].severity, Severity::Unknown);
        let no_id = br#"{"Results":[{"Vulnerabilities":[{}]}]}"#;
        assert!(parse_report(no_id, ReportFormat::Trivy).is_err());
    }

    #[test]
    fn language_findings_without_a_path_are_located_by_their_target() {
        let input = br#"{"Results": [
            {"Target": "debian 12", "Class": "os-pkgs",
             "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "zlib1g"}]},
            {"Target": "usr/local/bin/a", "Class": "lang-pkgs",
             "Vulnerabilities": [{"VulnerabilityID": "CVE-2", "PkgName": "golang.org/x/text"}]},
            {"Target": "usr/local/bin/b", "Class": "lang-pkgs",
             "Vulnerabilities": [{"VulnerabilityID": "CVE-2", "PkgName": "golang.org/x/text"}]},
            {"Target": "Node.js", "Class": "lang-pkgs",
             "Vulnerabilities": [{"VulnerabilityID": "GHSA-1", "PkgName": "lodash",
               "PkgPath": "usr/lib/node_modules/lodash/package.json"}]}
        ]}"#;
        let r = parse_report(input, ReportFormat::Auto).unwrap();
        let paths: Vec<&str> = r
            .vulnerabilities
            .iter()
            .map(|v| v.pkg_path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "",
                "usr/local/bin/a",
                "usr/local/bin/b",
                "usr/lib/node_modules/lodash/package.json"
            ]
        );
    }

    #[test]
    fn legacy_array_needs_the_explicit_format() {
        let input =
            br#"[{"Target":"t","Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":"LOW"}]}]"#;
        let r = parse_report(input, ReportFormat::Trivy).unwrap();
        assert_eq!(r.vulnerabilities[0].vulnerability_id, "CVE-1");
        // As a template array, its entries have no `vulnerabilityID`: an error.
        assert!(parse_report(input, ReportFormat::Auto).is_err());
    }
}
