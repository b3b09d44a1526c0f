//! The upstream operator's trivy template output (spec §9, §10.3): one JSON array of
//! objects with the [`Vulnerability`] field names.
//!
//! Decoding follows Go's `encoding/json` as the upstream operator used it: field names are
//! case-sensitive, unknown fields are ignored, a missing or `null` field is empty (a missing
//! severity is `UNKNOWN`), a severity string that is not one of the five names is `UNKNOWN`,
//! a value of the wrong JSON type is an error, and a top-level `null` is an empty list. One
//! deliberate difference: an entry without `vulnerabilityID` is an error.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, de};

use super::DetectedFormat;
use crate::crd::{Severity, Vulnerability};

/// A decoded template report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The vulnerabilities, in input order.
    pub vulnerabilities: Vec<Vulnerability>,
}

impl Report {
    /// Decodes the elements of an already opened array.
    pub(super) fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Report, A::Error> {
        let mut vulnerabilities = Vec::new();
        while let Some(entry) = seq.next_element::<Entry>()? {
            vulnerabilities.push(super::require_id(entry.into())?);
        }
        Ok(Report { vulnerabilities })
    }

    pub(super) fn into_detected(self) -> (Vec<Vulnerability>, DetectedFormat) {
        (self.vulnerabilities, DetectedFormat::Template)
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayOrNull;
        impl<'de> Visitor<'de> for ArrayOrNull {
            type Value = Report;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array of vulnerabilities or null")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Report, A::Error> {
                Report::from_seq(seq)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Report, E> {
                Ok(Report::default())
            }
        }
        deserializer.deserialize_any(ArrayOrNull)
    }
}

/// One array element; every field is optional, as in Go.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "vulnerabilityID", default)]
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
    #[serde(rename = "primaryURL", default)]
    primary_url: Option<String>,
}

impl From<Entry> for Vulnerability {
    fn from(e: Entry) -> Self {
        Vulnerability {
            vulnerability_id: e.vulnerability_id.unwrap_or_default(),
            pkg_name: e.pkg_name.unwrap_or_default(),
            installed_version: e.installed_version.unwrap_or_default(),
            severity: e.severity.unwrap_or_default(),
            pkg_path: e.pkg_path.unwrap_or_default(),
            fixed_version: e.fixed_version.unwrap_or_default(),
            title: e.title.unwrap_or_default(),
            primary_url: e.primary_url.unwrap_or_default(),
            suppressed_by: None,
            suppressed_justification: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ReportFormat, parse_report};
    use super::*;

    #[test]
    fn maps_fields_case_sensitively_and_ignores_unknown_ones() {
        let input = br#"[{"vulnerabilityID":"CVE-1","pkgName":"apt","installedVersion":"1.0",
            "severity":"HIGH","fixedVersion":"\u003e=1.1","title":"t","primaryURL":"u",
            "pkgPath":"/p","PkgName":"ignored","extra":{"a":[1,2]}}]"#;
        let r = parse_report(input, ReportFormat::Template).unwrap();
        assert_eq!(
            r.vulnerabilities,
            vec![Vulnerability {
                vulnerability_id: "CVE-1".into(),
                pkg_name: "apt".into(),
                installed_version: "1.0".into(),
                severity: Severity::High,
                pkg_path: "/p".into(),
                fixed_version: ">=1.1".into(),
                title: "t".into(),
                suppressed_by: None,
                suppressed_justification: None,
                primary_url: "u".into(),
            }]
        );
    }

    #[test]
    fn missing_and_null_fields_are_empty() {
        let r = parse_report(
            br#"[{"vulnerabilityID":"a","pkgName":null}]"#,
            ReportFormat::Template,
        )
        .unwrap();
        assert_eq!(r.vulnerabilities[0].severity, Severity::Unknown);
        assert_eq!(r.vulnerabilities[0].pkg_name, "");
    }

    #[test]
    fn wrong_types_are_errors() {
        for input in [
            &br#"[{"severity":3}]"#[..],
            br#"[{"pkgName":1}]"#,
            br#"{"a":1}"#,
            br#"[1]"#,
            br#"[{}]"#,
            br#"[{"vulnerabilityID":""}]"#,
        ] {
            assert!(parse_report(input, ReportFormat::Template).is_err());
        }
    }
}
