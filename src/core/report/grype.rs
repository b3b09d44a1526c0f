//! Grype's JSON report (`grype -o json`).
//!
//! Only `matches[]` is read (`matches` is required; every key inside is optional). Each
//! match becomes one [`Vulnerability`]:
//!
//! | Grype | [`Vulnerability`] |
//! |---|---|
//! | `vulnerability.id` | `vulnerabilityID` |
//! | `artifact.name`, `artifact.version` | `pkgName`, `installedVersion` |
//! | `artifact.locations[0].path` | `pkgPath` |
//! | `vulnerability.fix.versions` joined with `", "`, **only when `fix.state` is `fixed`** | `fixedVersion` |
//! | `vulnerability.dataSource`, else `vulnerability.urls[0]` | `primaryURL` |
//! | (no short title in Grype; `description` is long prose) | `title` left empty |
//! | `vulnerability.severity`, case-insensitive, see below | `severity` |
//!
//! Severity: `Critical`/`High`/`Medium`/`Low`/`Unknown` map to the upper-case names.
//! **`Negligible` maps to `LOW`**: it is the lowest real rating, and Trivy (the reference
//! format) files the same distro ratings (Ubuntu "negligible", Debian "unimportant") under
//! `LOW` too; `UNKNOWN` would wrongly say "not rated". Anything else, or a missing
//! severity, is `UNKNOWN`.
//!
//! A `fix.state` of `not-fixed`, `wont-fix`, `unknown` or `""` (seen in real 0.94 output)
//! means no fix, whatever `versions` holds, so the CIS `fixedCount` follows Grype's own
//! judgement.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::DetectedFormat;
use crate::crd::{Severity, Vulnerability};

/// A decoded Grype report.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    /// The matches, converted.
    pub matches: Matches,
}

impl Report {
    pub(super) fn into_detected(self) -> (Vec<Vulnerability>, DetectedFormat) {
        (self.matches.0, DetectedFormat::Grype)
    }
}

/// `matches`: converted match by match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Matches(pub Vec<Vulnerability>);

impl<'de> Deserialize<'de> for Matches {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MatchesVisitor;
        impl<'de> Visitor<'de> for MatchesVisitor {
            type Value = Matches;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of Grype matches")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Matches, A::Error> {
                let mut all = Vec::new();
                while let Some(m) = seq.next_element::<Match>()? {
                    all.push(super::require_id(m.into())?);
                }
                Ok(Matches(all))
            }
        }
        deserializer.deserialize_seq(MatchesVisitor)
    }
}

/// Maps a Grype severity name (see the module doc).
pub fn map_severity(name: &str) -> Severity {
    match name.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" | "negligible" => Severity::Low,
        _ => Severity::Unknown,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Match {
    vulnerability: Option<GrypeVulnerability>,
    artifact: Option<Artifact>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GrypeVulnerability {
    id: Option<String>,
    severity: Option<String>,
    data_source: Option<String>,
    urls: Option<First<String>>,
    fix: Option<Fix>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Fix {
    versions: Option<Joined>,
    state: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Artifact {
    name: Option<String>,
    version: Option<String>,
    locations: Option<First<Location>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    path: Option<String>,
}

impl From<Match> for Vulnerability {
    fn from(m: Match) -> Self {
        let v = m.vulnerability.unwrap_or_default();
        let a = m.artifact.unwrap_or_default();
        let fix = v.fix.unwrap_or_default();
        let fixed_version = if fix.state.as_deref() == Some("fixed") {
            fix.versions.map(|j| j.0).unwrap_or_default()
        } else {
            String::new()
        };
        let primary_url = match v.data_source {
            Some(url) if !url.is_empty() => url,
            _ => v.urls.and_then(|u| u.0).unwrap_or_default(),
        };
        Vulnerability {
            vulnerability_id: v.id.unwrap_or_default(),
            pkg_name: a.name.unwrap_or_default(),
            installed_version: a.version.unwrap_or_default(),
            severity: v
                .severity
                .as_deref()
                .map_or(Severity::Unknown, map_severity),
            pkg_path: a
                .locations
                .and_then(|l| l.0)
                .and_then(|l| l.path)
                .unwrap_or_default(),
            fixed_version,
            title: String::new(),
            primary_url,
            suppressed_by: None,
            suppressed_justification: None,
        }
    }
}

/// The first element of an array; the rest are skipped without allocating.
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        deserializer.deserialize_seq(FirstVisitor(std::marker::PhantomData))
    }
}

/// An array of strings joined with `", "` while decoding, so a long list costs no more
/// memory than its text.
struct Joined(String);

impl<'de> Deserialize<'de> for Joined {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JoinVisitor;
        impl<'de> Visitor<'de> for JoinVisitor {
            type Value = Joined;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of version strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Joined, A::Error> {
                let mut out = String::new();
                while let Some(version) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    if !out.is_empty() {
                        out.push_str(", ");
                    }
                    out.push_str(&version);
                }
                Ok(Joined(out))
            }
        }
        deserializer.deserialize_seq(JoinVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DetectedFormat, ReportFormat, parse_report};
    use super::*;

    #[test]
    fn severity_mapping() {
        for (name, s) in [
            ("Critical", Severity::Critical),
            ("HIGH", Severity::High),
            ("medium", Severity::Medium),
            ("Low", Severity::Low),
            ("Negligible", Severity::Low),
            ("Unknown", Severity::Unknown),
            ("", Severity::Unknown),
            ("Severe", Severity::Unknown),
        ] {
            assert_eq!(map_severity(name), s, "{name}");
        }
    }

    #[test]
    fn fix_versions_only_count_when_state_is_fixed() {
        let input = br#"{"descriptor":{},"matches":[
          {"vulnerability":{"id":"A","severity":"Negligible","fix":{"versions":["1","2"],"state":"fixed"},
            "urls":["u1","u2"]},"artifact":{"name":"p","version":"0","locations":[{"path":"/a"},{"path":"/b"}]}},
          {"vulnerability":{"id":"B","fix":{"state":"not-fixed","versions":["9"]},"dataSource":"ds"}},
          {"vulnerability":{"id":"C"}}
        ]}"#;
        let r = parse_report(input, ReportFormat::Auto).unwrap();
        assert_eq!(r.format, DetectedFormat::Grype);
        let v = &r.vulnerabilities;
        assert_eq!(v.len(), 3);
        assert_eq!(
            (
                v[0].fixed_version.as_str(),
                v[0].primary_url.as_str(),
                v[0].pkg_path.as_str()
            ),
            ("1, 2", "u1", "/a")
        );
        assert_eq!(v[0].severity, Severity::Low);
        assert_eq!(
            (v[1].fixed_version.as_str(), v[1].primary_url.as_str()),
            ("", "ds")
        );
        assert_eq!(
            (v[2].pkg_name.as_str(), v[2].severity),
            ("", Severity::Unknown)
        );
        assert!(parse_report(br#"{"source":{},"matches":[{}]}"#, ReportFormat::Auto).is_err());
    }

    #[test]
    fn explicit_format_requires_matches() {
        assert!(parse_report(br#"{"descriptor":{}}"#, ReportFormat::Grype).is_err());
        assert!(parse_report(br#"{"matches":[]}"#, ReportFormat::Grype).is_ok());
    }
}
