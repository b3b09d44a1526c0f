//! Entry points shared by the `fuzz/` targets and `tests/fuzz_regressions.rs`, so a crash
//! found by the fuzzer replays as an ordinary test.
//!
//! Each function checks the invariants the rest of the operator relies on and returns the
//! first violation as an error; the fuzz target panics on it (that is how libFuzzer learns
//! of a failure), while the library itself stays panic-free.

use super::{EXCERPT_MAX_BYTES, ReportError, ReportFormat, parse_report};
use crate::crd::Severity;
use crate::status::{
    DEFAULT_MESSAGE_LIMIT, DetailsMode, ScanFilter, SuccessParams, bound_message, list_size,
    scan_error, success_status,
};

/// Budget used by [`scan_report`]: small, so the truncation paths run on small inputs.
pub const FUZZ_DETAILS_BUDGET: usize = 512;

/// Parses `data` as an auto-detected report; on success builds a budgeted status under a
/// filter derived from the input length and checks that the details fit the budget and
/// that the summary counts exactly the filtered vulnerabilities. On failure checks that the
/// error is one line with a bounded excerpt.
pub fn scan_report(data: &[u8]) -> Result<(), String> {
    let report = match parse_report(data, ReportFormat::Auto) {
        Ok(report) => report,
        Err(e) => return check_error(&e),
    };
    let selector = data.len() % 10;
    let filter = ScanFilter {
        min_severity: Severity::ALL
            .get(selector % 5)
            .copied()
            .filter(|_| selector < 5),
        ignore_unfixed: selector % 2 == 1,
    };
    let expected = report
        .vulnerabilities
        .iter()
        .filter(|v| filter.keeps(v))
        .count();
    let params = SuccessParams {
        filter,
        job_uid: "fuzz",
        generation: Some(1),
        now: jiff::Timestamp::UNIX_EPOCH,
        details: DetailsMode::Budget(FUZZ_DETAILS_BUDGET),
        exceptions: crate::exception::Applicable::NONE,
        notice: None,
    };
    let status = success_status(report.vulnerabilities, &params);
    let details = status.vulnerabilities.unwrap_or_default();
    let serialized = serde_json::to_vec(&details).map_err(|e| e.to_string())?;
    if serialized.len() > FUZZ_DETAILS_BUDGET || serialized.len() != list_size(&details) {
        return Err(format!(
            "details are {} bytes (measured {}), budget {FUZZ_DETAILS_BUDGET}",
            serialized.len(),
            list_size(&details)
        ));
    }
    let summary = status.vulnerability_summary.unwrap_or_default();
    let total: i64 = summary
        .severity_count
        .unwrap_or_default()
        .values()
        .map(|n| i64::from(*n))
        .sum();
    let fixed = i64::from(summary.fixed_count) + i64::from(summary.unfixed_count);
    let dropped = status.vulnerabilities_truncated.map_or(0, |t| {
        usize::try_from(t.dropped_count).unwrap_or(usize::MAX)
    });
    if total != expected as i64 || fixed != expected as i64 || details.len() + dropped != expected {
        return Err(format!(
            "summary total {total}, fixed+unfixed {fixed}, kept+dropped {} != filtered {expected}",
            details.len() + dropped
        ));
    }
    Ok(())
}

fn check_error(e: &ReportError) -> Result<(), String> {
    let text = e.to_string();
    if text.contains('\n') {
        return Err(format!("multi-line error: {text:?}"));
    }
    let excerpt = match e {
        ReportError::NoJson { excerpt }
        | ReportError::Json { excerpt, .. }
        | ReportError::Unrecognised { excerpt, .. } => excerpt.as_str(),
        ReportError::Empty => "",
    };
    if excerpt.len() > EXCERPT_MAX_BYTES {
        return Err(format!("excerpt of {} bytes", excerpt.len()));
    }
    Ok(())
}

/// Bounds `data` as a failed-scan condition message (default limit, and a limit derived
/// from the input) and checks the length bound and the absence of escape characters.
pub fn status_message(data: &[u8]) -> Result<(), String> {
    let condition = scan_error(data, &[], jiff::Timestamp::UNIX_EPOCH);
    check_message(&condition.message, DEFAULT_MESSAGE_LIMIT)?;
    let limit = data.first().map_or(0, |b| usize::from(*b));
    let text = String::from_utf8_lossy(data);
    check_message(&bound_message(&text, limit), limit)
}

fn check_message(message: &str, limit: usize) -> Result<(), String> {
    // `message` is a `String`, so it is valid UTF-8 by construction.
    if message.len() > limit {
        return Err(format!(
            "message of {} bytes exceeds {limit}",
            message.len()
        ));
    }
    if message
        .chars()
        .any(|c| c == '\u{1b}' || (c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(format!("control character left in {message:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_accept_simple_inputs() {
        for input in [
            &b""[..],
            b"[]",
            b"{\"SchemaVersion\":2}",
            b"\x1b[31mx",
            b"\xff\xfe",
        ] {
            scan_report(input).unwrap();
            status_message(input).unwrap();
        }
    }
}
