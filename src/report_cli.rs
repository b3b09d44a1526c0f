//! `image-scanner-operator report`: decodes a scan report offline and prints, as pretty
//! JSON, the `status` fragment the operator would write for it: `vulnerabilitySummary`,
//! `vulnerabilities` (sorted, filtered, fitted to `--max-bytes` when given) and
//! `vulnerabilitiesTruncated` when something was left out. Nothing else is printed.
//!
//! The binary's `main` parses [`ReportArgs`] as a subcommand and calls [`run`] with stdin
//! and stdout; an error's `Display` is one line, to print before exiting with status 1.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::core::report::{ReportError, ReportFormat, parse_report};
use crate::core::status::{DetailsMode, ScanFilter, SuccessParams, success_status};
use crate::crd::{Severity, VulnerabilitiesTruncated, Vulnerability, VulnerabilitySummary};

/// Largest input read, in bytes; far above any real scan log (kubelet rotates logs at 10 MiB).
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Arguments of `report`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ReportArgs {
    /// Input format; `auto` detects template, Trivy and Grype JSON.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Leave out vulnerabilities below this severity (UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL).
    #[arg(long, value_parser = parse_severity)]
    pub min_severity: Option<Severity>,
    /// Leave out vulnerabilities without a fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// Fit `vulnerabilities` into this many bytes of compact JSON.
    #[arg(long)]
    pub max_bytes: Option<usize>,
    /// Report file, or `-` for standard input.
    pub file: PathBuf,
}

/// `--format` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatArg {
    /// Detect the format.
    Auto,
    /// The upstream operator's template array.
    Template,
    /// Trivy JSON.
    Trivy,
    /// Grype JSON.
    Grype,
}

impl From<FormatArg> for ReportFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Auto => ReportFormat::Auto,
            FormatArg::Template => ReportFormat::Template,
            FormatArg::Trivy => ReportFormat::Trivy,
            FormatArg::Grype => ReportFormat::Grype,
        }
    }
}

/// Why `report` failed; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ReportCliError {
    /// The input could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file, or `-`.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The input is larger than [`MAX_INPUT_BYTES`] (or the limit given to [`read_capped`]).
    #[error("{path} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The file, or `-`.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// The input is not a valid report.
    #[error("{path}: {source}")]
    Report {
        /// The file, or `-`.
        path: String,
        /// The decode error.
        source: ReportError,
    },
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

/// The printed fragment, in the CIS status's field names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusFragment {
    vulnerability_summary: VulnerabilitySummary,
    vulnerabilities: Vec<Vulnerability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vulnerabilities_truncated: Option<VulnerabilitiesTruncated>,
}

/// Runs `report`: reads `args.file` (or `stdin` for `-`), writes the fragment to `out`.
pub fn run(
    args: &ReportArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), ReportCliError> {
    let path = args.file.display().to_string();
    let bytes = if path == "-" {
        read_capped(stdin, MAX_INPUT_BYTES, &path)?
    } else {
        let mut file = File::open(&args.file).map_err(|source| ReportCliError::Read {
            path: path.clone(),
            source,
        })?;
        read_capped(&mut file, MAX_INPUT_BYTES, &path)?
    };
    let report =
        parse_report(&bytes, args.format.into()).map_err(|source| ReportCliError::Report {
            path: path.clone(),
            source,
        })?;
    drop(bytes);
    let params = SuccessParams {
        filter: ScanFilter {
            min_severity: args.min_severity,
            ignore_unfixed: args.ignore_unfixed,
        },
        job_uid: "",
        generation: None,
        now: jiff::Timestamp::UNIX_EPOCH,
        details: args.max_bytes.map_or(DetailsMode::All, DetailsMode::Budget),
        exceptions: crate::core::exception::Applicable::NONE,
        notice: None,
    };
    let status = success_status(report.vulnerabilities, &params);
    let fragment = StatusFragment {
        vulnerability_summary: status.vulnerability_summary.unwrap_or_default(),
        vulnerabilities: status.vulnerabilities.unwrap_or_default(),
        vulnerabilities_truncated: status.vulnerabilities_truncated,
    };
    let write = |out: &mut dyn Write| -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &fragment)?;
        out.write_all(b"\n")?;
        out.flush()
    };
    write(out).map_err(ReportCliError::Write)
}

/// Reads all of `input`, failing with [`ReportCliError::TooLarge`] past `limit` bytes.
pub fn read_capped(
    input: &mut dyn Read,
    limit: u64,
    path: &str,
) -> Result<Vec<u8>, ReportCliError> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ReportCliError::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(ReportCliError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Parses a severity name case-insensitively; unlike the report decoder, an unknown name is
/// an error here, not `UNKNOWN`.
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::from_name(&s.to_ascii_uppercase()).ok_or_else(|| {
        format!("unknown severity '{s}' (expected UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL)")
    })
}
