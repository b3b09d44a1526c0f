//! Scan reports: the bytes a scan Job printed, turned into a list of [`Vulnerability`].
//!
//! Three input formats are understood, each in its own module:
//!
//! * [`template`]: the upstream operator's trivy template output, a flat JSON array of
//!   vulnerabilities (spec §9, §10.3). Every existing scan log has this shape.
//! * [`trivy`]: Trivy's native `--format json` report (`SchemaVersion` 2, and the older
//!   v0.20-era files without it).
//! * [`grype`]: Grype's `-o json` report; the severity and fix mapping is documented there.
//!
//! [`parse_report`] with [`ReportFormat::Auto`] picks the format from the first JSON value:
//! an array is the template; an object with `SchemaVersion`, `Results` or `ArtifactName` is
//! Trivy; an object with `matches` and `descriptor` or `source` is Grype; anything else is
//! an error. Detection and decoding are one serde pass over the input: no intermediate
//! `serde_json::Value` tree, so a 3 MB log parses in milliseconds and memory stays a small
//! multiple of the input. serde_json's recursion limit (128) rejects deeply nested input.
//!
//! # Leading noise
//!
//! Pod logs merge stdout and stderr, so a scanner warning printed before the report (e.g.
//! when `TRIVY_QUIET` was overridden) would break a strict decoder. Lines before the report
//! are skipped when **all** of these hold: at most [`MAX_NOISE_LINES`] are skipped, and the
//! report that follows parses. A skipped line is either a line that does not start with
//! `[`, `{` or `null`, or one that does but fails to decode *within that same line* (a one-line
//! `[WARN] …` or a JSON log record). A candidate whose error lies beyond its own line is
//! the report itself, so its error is final: every byte is decoded at most once plus once
//! per skipped line, which keeps the work linear. When nothing parses, the error of the
//! attempt that got furthest is returned.
//!
//! Like the upstream decoder, only the first JSON value is read and trailing data is
//! ignored; empty input is an "unexpected end of input" error. Unlike it, an entry without
//! a vulnerability ID is an error (no scanner writes one; see `require_id`). Errors carry the line and
//! column and a bounded excerpt (at most [`EXCERPT_MAX_BYTES`]) around the failure, never
//! the whole input.

#[cfg(test)]
mod fixture_tests;
pub mod fuzz_entry;
pub mod grype;
pub mod template;
pub mod trivy;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::crd::Vulnerability;

/// Rejects an entry without a vulnerability ID. Besides being meaningless, such entries are
/// the only way to make a report allocate far more than its size: `{},` is 3 bytes but a
/// [`Vulnerability`] is about 180, while the shortest valid entry is over 20 bytes, which
/// bounds the decoded list at about ten times the input.
fn require_id<E: serde::de::Error>(v: Vulnerability) -> Result<Vulnerability, E> {
    if v.vulnerability_id.is_empty() {
        Err(E::custom("vulnerability without an ID"))
    } else {
        Ok(v)
    }
}

/// Most lines skipped before the report (see the module doc).
pub const MAX_NOISE_LINES: usize = 32;
/// Upper bound, in bytes, of [`ReportError`] excerpts.
pub const EXCERPT_MAX_BYTES: usize = 1024;

/// Which format to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReportFormat {
    /// Detect from the first JSON value (see the module doc).
    #[default]
    Auto,
    /// The upstream trivy template's flat array.
    Template,
    /// Trivy's native JSON report.
    Trivy,
    /// Grype's JSON report.
    Grype,
}

impl FromStr for ReportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ReportFormat::Auto),
            "template" => Ok(ReportFormat::Template),
            "trivy" => Ok(ReportFormat::Trivy),
            "grype" => Ok(ReportFormat::Grype),
            other => Err(format!(
                "unknown report format '{other}' (expected auto, template, trivy or grype)"
            )),
        }
    }
}

/// The format a report was decoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectedFormat {
    /// The upstream trivy template's flat array.
    Template,
    /// Trivy's native JSON report.
    Trivy,
    /// Grype's JSON report.
    Grype,
}

impl fmt::Display for DetectedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetectedFormat::Template => "template",
            DetectedFormat::Trivy => "trivy",
            DetectedFormat::Grype => "grype",
        })
    }
}

/// A decoded scan report. The vulnerabilities are unfiltered and in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanReport {
    /// Every vulnerability the scanner reported.
    pub vulnerabilities: Vec<Vulnerability>,
    /// The format the input was decoded as.
    pub format: DetectedFormat,
    /// Number of leading noise lines skipped before the report.
    pub skipped_lines: usize,
}

/// Why a report could not be decoded. `Display` is a single line, so it fits a condition
/// message and a CLI error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The input was empty or only whitespace.
    #[error("unexpected end of input: the scan report is empty")]
    Empty,
    /// No line within the first [`MAX_NOISE_LINES`] starts a JSON value.
    #[error(
        "no JSON report found: none of the first {MAX_NOISE_LINES} lines starts with '[' or '{{'; start of input: {excerpt}"
    )]
    NoJson {
        /// The start of the input, bounded and escaped.
        excerpt: String,
    },
    /// The JSON did not decode.
    #[error("{kind} at line {line} column {column}: {message}; near: {excerpt}")]
    Json {
        /// What went wrong, e.g. "unexpected end of input" or "invalid JSON".
        kind: ErrorKind,
        /// serde_json's description.
        message: String,
        /// 1-based line in the whole input.
        line: usize,
        /// 1-based column (0 when serde_json reports none).
        column: usize,
        /// Up to [`EXCERPT_MAX_BYTES`] around the failure; `<<HERE>>` marks the position.
        excerpt: String,
    },
    /// Valid JSON, but not a report of any known format.
    #[error(
        "unrecognised scan report at line {line}: expected a JSON array (template), a Trivy report (SchemaVersion/Results/ArtifactName) or a Grype report (matches with descriptor/source); near: {excerpt}"
    )]
    Unrecognised {
        /// 1-based line where the value starts.
        line: usize,
        /// The start of the value, bounded and escaped.
        excerpt: String,
    },
}

/// Category of a [`ReportError::Json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value (a truncated log).
    UnexpectedEnd,
    /// Malformed JSON syntax.
    Syntax,
    /// Well-formed JSON of the wrong shape or type.
    Data,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::UnexpectedEnd => "unexpected end of input",
            ErrorKind::Syntax => "invalid JSON",
            ErrorKind::Data => "unexpected report content",
        })
    }
}

/// Decodes a scan report. See the module doc for detection and noise handling.
pub fn parse_report(bytes: &[u8], format: ReportFormat) -> Result<ScanReport, ReportError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ReportError::Empty);
    }
    let mut best: Option<(usize, ReportError)> = None;
    for (index, start) in candidate_starts(bytes) {
        let rest = bytes.get(start..).unwrap_or_default();
        match decode_one(rest, format) {
            Ok((vulnerabilities, detected)) => {
                return Ok(ScanReport {
                    vulnerabilities,
                    format: detected,
                    skipped_lines: index,
                });
            }
            Err(failure) => {
                let progress = failure.offset;
                let within_line = !rest
                    .get(..progress.min(rest.len()))
                    .unwrap_or_default()
                    .contains(&b'\n');
                let error = failure.into_error(bytes, start);
                if best.as_ref().is_none_or(|(p, _)| progress >= *p) {
                    best = Some((progress, error));
                }
                if !within_line {
                    break;
                }
            }
        }
    }
    Err(best.map_or_else(
        || ReportError::NoJson {
            excerpt: excerpt(bytes, 0),
        },
        |(_, e)| e,
    ))
}

/// Start offsets (with their 0-based line index) of the lines among the first
/// [`MAX_NOISE_LINES`] + 1 whose first non-blank byte opens a JSON array or object, or that
/// start with `null` (an empty template report).
fn candidate_starts(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let line_starts = std::iter::once(0).chain(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    line_starts
        .take(MAX_NOISE_LINES + 1)
        .enumerate()
        .filter_map(|(index, start)| {
            let rest = bytes.get(start..)?;
            let first = rest
                .iter()
                .position(|b| *b != b' ' && *b != b'\t' && *b != b'\r')?;
            let value = rest.get(first..)?;
            (value.starts_with(b"[") || value.starts_with(b"{") || value.starts_with(b"null"))
                .then_some((index, start + first))
        })
}

/// One decode attempt that failed at `offset` bytes into its slice.
struct Failure {
    offset: usize,
    kind: FailureKind,
}

enum FailureKind {
    Json(serde_json::Error),
    Unrecognised,
}

impl Failure {
    fn into_error(self, whole: &[u8], start: usize) -> ReportError {
        let at = start.saturating_add(self.offset).min(whole.len());
        match self.kind {
            FailureKind::Unrecognised => ReportError::Unrecognised {
                line: line_of(whole, start),
                excerpt: excerpt(whole, start),
            },
            FailureKind::Json(e) => {
                let kind = match e.classify() {
                    serde_json::error::Category::Eof => ErrorKind::UnexpectedEnd,
                    serde_json::error::Category::Syntax => ErrorKind::Syntax,
                    _ => ErrorKind::Data,
                };
                let line = line_of(whole, at);
                let column = at - line_start_before(whole, at) + 1;
                ReportError::Json {
                    kind,
                    message: strip_position(&e.to_string()),
                    line,
                    column,
                    excerpt: excerpt(whole, at),
                }
            }
        }
    }
}

/// Decodes the first JSON value of `bytes` in `format`.
fn decode_one(
    bytes: &[u8],
    format: ReportFormat,
) -> Result<(Vec<Vulnerability>, DetectedFormat), Failure> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let outcome = match format {
        ReportFormat::Template => {
            template::Report::deserialize(&mut de).map(|r| Some(r.into_detected()))
        }
        ReportFormat::Trivy => trivy::Report::deserialize(&mut de).map(|r| Some(r.into_detected())),
        ReportFormat::Grype => grype::Report::deserialize(&mut de).map(|r| Some(r.into_detected())),
        ReportFormat::Auto => AutoReport::deserialize(&mut de).map(AutoReport::into_detected),
    };
    match outcome {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(Failure {
            offset: value_end(bytes),
            kind: FailureKind::Unrecognised,
        }),
        Err(e) => Err(Failure {
            offset: offset_of(bytes, e.line(), e.column()),
            kind: FailureKind::Json(e),
        }),
    }
}

/// Any of the three formats, decoded in one pass: an array is the template; an object keeps
/// only the keys that identify and feed Trivy or Grype.
enum AutoReport {
    Template(template::Report),
    Object(AutoObject),
}

#[derive(Deserialize)]
struct AutoObject {
    #[serde(rename = "SchemaVersion")]
    schema_version: Option<IgnoredAny>,
    #[serde(rename = "ArtifactName")]
    artifact_name: Option<IgnoredAny>,
    #[serde(rename = "Results", default)]
    results: Option<trivy::Results>,
    #[serde(default)]
    matches: Option<grype::Matches>,
    descriptor: Option<IgnoredAny>,
    source: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for AutoReport {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AutoReport;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array (template report) or object (Trivy or Grype report)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<AutoReport, A::Error> {
                template::Report::from_seq(seq).map(AutoReport::Template)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<AutoReport, E> {
                Ok(AutoReport::Template(template::Report::default()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AutoReport, A::Error> {
                AutoObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AutoReport::Object)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl AutoReport {
    fn into_detected(self) -> Option<(Vec<Vulnerability>, DetectedFormat)> {
        match self {
            AutoReport::Template(r) => Some(r.into_detected()),
            AutoReport::Object(o) => {
                let trivy =
                    o.schema_version.is_some() || o.results.is_some() || o.artifact_name.is_some();
                let grype = o.matches.is_some() && (o.descriptor.is_some() || o.source.is_some());
                if trivy && !grype {
                    Some(trivy::Report { results: o.results }.into_detected())
                } else if grype && !trivy {
                    let matches = o.matches.unwrap_or_default();
                    Some(grype::Report { matches }.into_detected())
                } else {
                    None
                }
            }
        }
    }
}

/// Byte offset just past the first JSON value of `bytes` (used only after it decoded).
fn value_end(bytes: &[u8]) -> usize {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<IgnoredAny>();
    match stream.next() {
        Some(Ok(_)) => stream.byte_offset(),
        _ => bytes.len(),
    }
}

/// Byte offset of serde_json's 1-based (line, column) in `bytes`. Column 0 means "at the
/// start of the line" (serde_json uses it for errors found right after a newline).
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes
            .get(start..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
        {
            Some(nl) => start += nl + 1,
            None => return bytes.len(),
        }
    }
    start
        .saturating_add(column.saturating_sub(1))
        .min(bytes.len())
}

/// 1-based line number of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(..at)
        .unwrap_or(bytes)
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn line_start_before(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(..at)
        .unwrap_or(bytes)
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |nl| nl + 1)
}

/// serde_json appends " at line L column C" relative to the slice it was given; the error
/// carries whole-input positions instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// A single-line excerpt of at most [`EXCERPT_MAX_BYTES`] around byte `at`: about a third
/// before, the rest after, with `<<HERE>>` at `at`. Invalid UTF-8 shows as U+FFFD; control
/// characters are escaped (`\n`, `\u{1b}`), so the excerpt never spans lines.
pub fn excerpt(bytes: &[u8], at: usize) -> String {
    const MARKER: &str = "<<HERE>>";
    const ELLIPSIS: &str = "…";
    let at = at.min(bytes.len());
    let budget = EXCERPT_MAX_BYTES - MARKER.len() - 2 * ELLIPSIS.len();
    let before_budget = budget / 3;
    let window_start = at.saturating_sub(before_budget);
    let (before, before_whole) = escape_bounded(
        bytes.get(window_start..at).unwrap_or_default(),
        before_budget,
        true,
    );
    let after_budget = budget - before.len();
    let (after, after_whole) =
        escape_bounded(bytes.get(at..).unwrap_or_default(), after_budget, false);
    let mut out = String::with_capacity(EXCERPT_MAX_BYTES);
    if window_start > 0 || !before_whole {
        out.push_str(ELLIPSIS);
    }
    out.push_str(&before);
    out.push_str(MARKER);
    out.push_str(&after);
    if !after_whole {
        out.push_str(ELLIPSIS);
    }
    out
}

/// Escapes `bytes` (lossy UTF-8) into at most `max` bytes, keeping the end when
/// `keep_end`, the start otherwise. Always cut on whole escaped characters. The flag says
/// whether all of `bytes` is shown (escaping can make a short input too long to show whole).
fn escape_bounded(bytes: &[u8], max: usize, keep_end: bool) -> (String, bool) {
    // The raw window is at most `max` bytes on the kept side, so this stays O(max).
    let window = if keep_end {
        bytes
            .get(bytes.len().saturating_sub(max)..)
            .unwrap_or(bytes)
    } else {
        bytes.get(..max.min(bytes.len())).unwrap_or(bytes)
    };
    let mut whole = window.len() == bytes.len();
    let text = String::from_utf8_lossy(window);
    let pieces: Vec<String> = text
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect();
    let mut used = 0;
    let mut kept: Vec<&str> = Vec::new();
    let ordered: Box<dyn Iterator<Item = &String>> = if keep_end {
        Box::new(pieces.iter().rev())
    } else {
        Box::new(pieces.iter())
    };
    for piece in ordered {
        if used + piece.len() > max {
            whole = false;
            break;
        }
        used += piece.len();
        kept.push(piece);
    }
    if keep_end {
        kept.reverse();
    }
    (kept.concat(), whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Severity;

    #[test]
    fn an_escaped_character_longer_than_the_bound_is_left_out() {
        for keep_end in [false, true] {
            let (text, whole) = escape_bounded(b"\x1b", 3, keep_end);
            assert_eq!((text.as_str(), whole), ("", false), "keep_end {keep_end}");
            let (text, whole) = escape_bounded(b"ab\x1b", 6, keep_end);
            assert!(text.len() <= 6 && !whole, "{text:?}");
        }
    }

    fn vuln_json(id: &str) -> String {
        format!(
            r#"{{"vulnerabilityID":"{id}","pkgName":"p","installedVersion":"1","severity":"LOW"}}"#
        )
    }

    #[test]
    fn empty_and_blank_input_is_end_of_input() {
        for input in [&b""[..], b"  \n\t "] {
            let err = parse_report(input, ReportFormat::Auto).unwrap_err();
            assert_eq!(err, ReportError::Empty);
            assert!(err.to_string().contains("unexpected end of input"));
        }
    }

    #[test]
    fn null_and_empty_array_are_empty_reports() {
        for input in [&b"null"[..], b"[]", b"  [ ]  "] {
            let r = parse_report(input, ReportFormat::Template).unwrap();
            assert!(r.vulnerabilities.is_empty());
        }
        let r = parse_report(b"null\n", ReportFormat::Auto).unwrap();
        assert_eq!(r.format, DetectedFormat::Template);
        assert!(r.vulnerabilities.is_empty());
    }

    #[test]
    fn trailing_data_after_the_first_value_is_ignored() {
        let input = format!("[{}] garbage {{", vuln_json("CVE-1"));
        let r = parse_report(input.as_bytes(), ReportFormat::Auto).unwrap();
        assert_eq!(r.vulnerabilities.len(), 1);
        assert_eq!(r.format, DetectedFormat::Template);
    }

    #[test]
    fn leading_noise_lines_are_skipped_only_when_the_rest_parses() {
        let report = format!("[\n  {}\n]\n", vuln_json("CVE-1"));
        let noisy = format!(
            "2024-01-01T00:00:00Z\tWARN\tsomething\n[WARN] bracketed\n{{\"level\":\"info\"}}\n{report}"
        );
        let r = parse_report(noisy.as_bytes(), ReportFormat::Auto).unwrap();
        assert_eq!(r.skipped_lines, 3);
        assert_eq!(r.vulnerabilities.len(), 1);

        let broken = "WARN noise\n[\n  {\"vulnerabilityID\": 5}\n]";
        let err = parse_report(broken.as_bytes(), ReportFormat::Auto).unwrap_err();
        match err {
            ReportError::Json { line, kind, .. } => {
                assert_eq!(line, 3);
                assert_eq!(kind, ErrorKind::Data);
            }
            other => panic!("unexpected {other:?}"),
        }

        let too_much_noise = format!("{}{report}", "noise\n".repeat(MAX_NOISE_LINES + 1));
        assert!(parse_report(too_much_noise.as_bytes(), ReportFormat::Auto).is_err());
        let just_enough = format!("{}{report}", "noise\n".repeat(MAX_NOISE_LINES));
        assert!(parse_report(just_enough.as_bytes(), ReportFormat::Auto).is_ok());
    }

    #[test]
    fn plain_text_is_no_json() {
        let err = parse_report(b"FATAL image scan error\n", ReportFormat::Auto).unwrap_err();
        assert!(matches!(err, ReportError::NoJson { .. }), "{err:?}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn unknown_object_is_unrecognised() {
        for input in [&br#"{"foo": 1}"#[..], br#"{"matches": []}"#] {
            let err = parse_report(input, ReportFormat::Auto).unwrap_err();
            assert!(
                matches!(err, ReportError::Unrecognised { line: 1, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn errors_report_whole_input_positions_and_a_bounded_single_line_excerpt() {
        let mut input = String::from("noise line\n[\n");
        for i in 0..200 {
            input.push_str(&vuln_json(&format!("CVE-{i}")));
            input.push_str(",\n");
        }
        input.push_str("{\"vulnerabilityID\": \"x\", \"severity\": 3}\n]");
        let err = parse_report(input.as_bytes(), ReportFormat::Auto).unwrap_err();
        let ReportError::Json {
            line,
            column,
            excerpt,
            kind,
            ..
        } = &err
        else {
            panic!("unexpected {err:?}");
        };
        assert_eq!((*line, *kind), (203, ErrorKind::Data));
        assert!(*column > 30, "column {column}");
        assert!(excerpt.len() <= EXCERPT_MAX_BYTES);
        assert!(excerpt.contains("<<HERE>>"));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn excerpt_is_char_boundary_safe_and_bounded() {
        let text = "é€😀\u{1b}[31m".repeat(2000);
        for at in [
            0,
            1,
            2,
            3,
            5,
            777,
            4001,
            text.len() - 1,
            text.len(),
            text.len() + 9,
        ] {
            let e = excerpt(text.as_bytes(), at);
            assert!(e.len() <= EXCERPT_MAX_BYTES, "{}", e.len());
            assert!(e.contains("<<HERE>>"));
        }
        // Invalid UTF-8 is shown lossily and stays bounded.
        let bad = vec![0xffu8; 5000];
        assert!(excerpt(&bad, 2500).len() <= EXCERPT_MAX_BYTES);
    }

    #[test]
    fn excerpts_mark_the_position_and_every_cut() {
        assert_eq!(excerpt(b"abc", 0), "<<HERE>>abc");
        assert_eq!(excerpt(b"abc", 1), "a<<HERE>>bc");
        assert_eq!(excerpt(b"abc", 3), "abc<<HERE>>");
        assert_eq!(excerpt(b"abc", 9), "abc<<HERE>>");
        assert_eq!(excerpt(b"a\n\x1bb", 2), "a\\n<<HERE>>\\u{1b}b");
        // A third of the budget before, the rest after, an ellipsis for each cut side: the
        // excerpt then uses the whole budget.
        let long = "x".repeat(3000);
        let budget = EXCERPT_MAX_BYTES - "<<HERE>>".len() - 2 * "…".len();
        let before = budget / 3;
        let e = excerpt(long.as_bytes(), 1500);
        assert_eq!(
            e,
            format!(
                "…{}<<HERE>>{}…",
                "x".repeat(before),
                "x".repeat(budget - before)
            )
        );
        assert_eq!(e.len(), EXCERPT_MAX_BYTES);
        assert_eq!(
            excerpt(long.as_bytes(), 2990),
            format!("…{}<<HERE>>{}", "x".repeat(before), "x".repeat(10))
        );
        assert_eq!(
            excerpt(long.as_bytes(), 10),
            format!("{}<<HERE>>{}…", "x".repeat(10), "x".repeat(budget - 10))
        );
        // Escaping can make a short side too long to show whole: still marked as cut.
        let controls = "\u{1}".repeat(300);
        let e = excerpt(controls.as_bytes(), 300);
        assert!(e.starts_with("…\\u{1}") && e.ends_with("<<HERE>>"), "{e}");
        let e = excerpt(controls.as_bytes(), 0);
        assert!(e.starts_with("<<HERE>>\\u{1}") && e.ends_with("…"), "{e}");
        // 400 invalid bytes show as 400 U+FFFD (1,200 bytes): more than the budget.
        let invalid = vec![0xffu8; 400];
        assert!(excerpt(&invalid, 0).ends_with('…'));
    }

    #[test]
    fn json_errors_carry_kind_message_and_position_of_the_whole_input() {
        let cases: [(&str, ErrorKind, &str, usize, usize); 3] = [
            ("noise\n[\n  x]", ErrorKind::Syntax, "expected value", 3, 3),
            (
                "[",
                ErrorKind::UnexpectedEnd,
                "EOF while parsing a list",
                1,
                1,
            ),
            (
                "[{\"vulnerabilityID\": 7}]",
                ErrorKind::Data,
                "invalid type: integer `7`, expected a string",
                1,
                22,
            ),
        ];
        for (input, kind, message, line, column) in cases {
            let err = parse_report(input.as_bytes(), ReportFormat::Auto).unwrap_err();
            let ReportError::Json {
                kind: k,
                message: m,
                line: l,
                column: c,
                ..
            } = &err
            else {
                panic!("{input:?}: unexpected {err:?}");
            };
            assert_eq!(
                (*k, m.as_str(), *l, *c),
                (kind, message, line, column),
                "{input:?}"
            );
        }
    }

    #[test]
    fn the_candidate_that_got_furthest_gives_the_error() {
        // Line 1 fails at once within its line, line 2 later: line 2's error is reported.
        let input = "{x\n[{\"vulnerabilityID\": \"a\", \"severity\": 7}]";
        let err = parse_report(input.as_bytes(), ReportFormat::Auto).unwrap_err();
        assert!(matches!(err, ReportError::Json { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn an_unrecognised_value_over_several_lines_ends_the_search() {
        // The object decoded (it is JSON) but is no report; what follows it is not taken as
        // the report instead.
        let input = "{\n\"a\": 1\n}\n[]";
        let err = parse_report(input.as_bytes(), ReportFormat::Auto).unwrap_err();
        assert!(
            matches!(err, ReportError::Unrecognised { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn detected_formats_and_the_top_level_expectation_are_named() {
        let names: Vec<String> = [
            DetectedFormat::Template,
            DetectedFormat::Trivy,
            DetectedFormat::Grype,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(names, ["template", "trivy", "grype"]);
        let err = serde_json::from_str::<AutoReport>("1")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("a JSON array (template report) or object")),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_reports_say_what_was_expected() {
        let cases: [(ReportFormat, &str, &str); 6] = [
            (
                ReportFormat::Grype,
                r#"{"matches": 5}"#,
                "an array of Grype matches",
            ),
            (
                ReportFormat::Grype,
                r#"{"matches": [{"vulnerability": {"id": "x", "urls": 5}}]}"#,
                "expected an array",
            ),
            (
                ReportFormat::Grype,
                r#"{"matches": [{"vulnerability": {"id": "x", "fix": {"versions": 5}}}]}"#,
                "an array of version strings",
            ),
            (
                ReportFormat::Template,
                "{}",
                "a JSON array of vulnerabilities or null",
            ),
            (ReportFormat::Trivy, "null", "a Trivy JSON report object"),
            (
                ReportFormat::Trivy,
                r#"{"Results": 5}"#,
                "an array of Trivy results",
            ),
        ];
        for (format, input, expected) in cases {
            let err = parse_report(input.as_bytes(), format)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{format:?} {input}: {err}");
        }
    }

    #[test]
    fn an_empty_grype_data_source_falls_back_to_the_first_url() {
        let input = r#"{"matches": [{"vulnerability": {"id": "x", "dataSource": "", "urls": ["u1", "u2"]}}]}"#;
        let report = parse_report(input.as_bytes(), ReportFormat::Grype).expect("parses");
        assert_eq!(report.vulnerabilities[0].primary_url, "u1");
        let input =
            r#"{"matches": [{"vulnerability": {"id": "x", "dataSource": "d", "urls": ["u1"]}}]}"#;
        let report = parse_report(input.as_bytes(), ReportFormat::Grype).expect("parses");
        assert_eq!(report.vulnerabilities[0].primary_url, "d");
    }

    #[test]
    fn format_names_parse() {
        assert_eq!("grype".parse::<ReportFormat>(), Ok(ReportFormat::Grype));
        assert!("xml".parse::<ReportFormat>().is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(parse_report(deep.as_bytes(), ReportFormat::Auto).is_err());
        let deep_obj = format!("{{\"Results\": {}", "[".repeat(100_000));
        assert!(parse_report(deep_obj.as_bytes(), ReportFormat::Auto).is_err());
        let deep_ignored = format!("{{\"SchemaVersion\": {}", "{\"a\":".repeat(100_000));
        assert!(parse_report(deep_ignored.as_bytes(), ReportFormat::Auto).is_err());
    }

    #[test]
    fn severity_names_map_like_the_upstream_decoder() {
        let input =
            br#"[{"vulnerabilityID":"a","pkgName":"p","installedVersion":"1","severity":"high"}]"#;
        let r = parse_report(input, ReportFormat::Template).unwrap();
        assert_eq!(r.vulnerabilities[0].severity, Severity::Unknown);
    }
}
