//! The statuses the engine writes, built from the engine's compact view of a CIS with the
//! functions of [`super::status`]. Statuses carry whole-second times (what the API keeps), so a
//! status read back compares equal to the one written.

use super::port::CisView;
use super::status::{
    self, DetailsMode, ScanFilter, SuccessParams, bound_message, decode_error, no_registry_digest,
    scan_error, scan_job_created,
};
use super::time::Timestamp;
use crate::crd::{
    ContainerImageScanStatus, FindingRecord, VulnerabilitiesTruncated, Vulnerability,
};
use crate::exception::{Applicable, Exception, ScanSubject};
use crate::finding_record::{MAX_RECORD_IDS, RecordSpec};

pub use super::status::{
    REASON_DECODE_ERROR, REASON_ERROR, REASON_NO_REGISTRY_DIGEST, REASON_PULL_UNAUTHORIZED,
    REASON_SCAN_POD_REJECTED,
};

fn jiff(t: Timestamp) -> jiff::Timestamp {
    t.truncate_to_secs().to_k8s().0
}

/// The status fields of the view as a status object (details are not in the view; writes that
/// start from this ask the shell to keep the stored details).
fn base(cis: &CisView) -> ContainerImageScanStatus {
    let s = &cis.status;
    ContainerImageScanStatus {
        observed_generation: Some(cis.generation),
        last_scan_job_uid: s.last_scan_job_uid.clone(),
        last_scan_time: s.last_scan_time.map(Timestamp::to_k8s),
        last_successful_scan_time: s.last_successful_scan_time.map(Timestamp::to_k8s),
        conditions: None,
        vulnerabilities: None,
        vulnerability_summary: s.summary.as_deref().cloned(),
        vulnerabilities_truncated: None,
        details_bytes: None,
        suppressed_count: s.suppressed.as_deref().cloned(),
        exceptions_fingerprint: s.exceptions_fingerprint.clone(),
        notable_findings: s.notable.as_deref().cloned(),
        announced_findings: s.announced.as_deref().cloned(),
    }
}

/// What a status write that keeps the stored result sends (`keep_details`: Job announcements,
/// failures, records of what was told): the fields such writes change, nothing else. The
/// field manager of those writes then never owns the result's fields (summary, suppressed
/// counts, exceptions fingerprint, finding record): a field two managers own survives a write
/// of one of them that leaves it out, so a result that loses its `suppressedCount` (the
/// exception went) would keep it, and its stale fingerprint would be rewritten forever.
pub fn keep_details_fields(status: &mut ContainerImageScanStatus) {
    let ContainerImageScanStatus {
        observed_generation: _,
        last_scan_job_uid: _,
        last_scan_time: _,
        conditions: _,
        announced_findings: _,
        last_successful_scan_time,
        vulnerabilities,
        vulnerability_summary,
        vulnerabilities_truncated,
        suppressed_count,
        exceptions_fingerprint,
        details_bytes,
        notable_findings,
    } = status;
    *last_successful_scan_time = None;
    *vulnerabilities = None;
    *vulnerability_summary = None;
    *vulnerabilities_truncated = None;
    *suppressed_count = None;
    *exceptions_fingerprint = None;
    *details_bytes = None;
    *notable_findings = None;
}

/// The stored status after a write that keeps the stored result: `sent` (cut to
/// [`keep_details_fields`]) over `stored`.
pub fn after_keep_details_write(
    stored: Option<&ContainerImageScanStatus>,
    sent: ContainerImageScanStatus,
) -> ContainerImageScanStatus {
    let mut status = stored.cloned().unwrap_or_default();
    status.observed_generation = sent.observed_generation;
    status.last_scan_job_uid = sent.last_scan_job_uid;
    status.last_scan_time = sent.last_scan_time;
    status.conditions = sent.conditions;
    status.announced_findings = sent.announced_findings;
    status
}

/// `Reconciling/ScanJobCreated` on top of the current status (spec §7.2 step 6).
pub fn scan_job_created_status(
    cis: &CisView,
    job_name: &str,
    now: Timestamp,
) -> ContainerImageScanStatus {
    let mut status = base(cis);
    status.conditions = Some(vec![scan_job_created(
        job_name,
        &cis.status.conditions,
        jiff(now),
    )]);
    status
}

/// The status after a successful scan, filtered by the CIS's own `ignoreUnfixed` and
/// `minSeverity`, findings covered by `exceptions` (those that apply to it now) marked and
/// counted apart, with details fitted to `budget` bytes (or left out), and the record of its
/// findings as `notice` says (see [`announced_after`]).
#[allow(clippy::too_many_arguments)]
pub fn success_status(
    cis: &CisView,
    vulnerabilities: &[Vulnerability],
    exceptions: &[&Exception],
    job_uid: &str,
    at: Timestamp,
    budget: usize,
    write_details: bool,
    notice: Option<RecordSpec>,
) -> ContainerImageScanStatus {
    let params = SuccessParams {
        filter: ScanFilter::from_spec(&cis.spec),
        job_uid,
        generation: Some(cis.generation),
        now: jiff(at),
        details: if write_details {
            DetailsMode::Budget(budget)
        } else {
            DetailsMode::Omit
        },
        exceptions: Applicable {
            scan: ScanSubject::of(&cis.namespace, &cis.spec, &cis.labels),
            exceptions,
        },
        notice,
    };
    let mut status = status::success_status(vulnerabilities.to_vec(), &params);
    let max_ids = notice.map_or(MAX_RECORD_IDS, |n| n.max_ids);
    status.announced_findings = announced_after(cis, status.notable_findings.as_ref())
        .map(|a| crate::finding_record::truncated(a, max_ids));
    status
}

/// What a new result's status records as announced: the record the owners were told of stays
/// while the new one can be compared with it (so a change waits to be announced, and a change
/// that is undone before it was announced is none); a first result, a record of another
/// threshold, or a status from before records existed starts from the new record — the
/// baseline, announced by nobody.
pub fn announced_after(cis: &CisView, notable: Option<&FindingRecord>) -> Option<FindingRecord> {
    let notable = notable?;
    let told = cis
        .status
        .announced
        .as_deref()
        .or(cis.status.notable.as_deref());
    match told {
        Some(told) if told.min_severity == notable.min_severity => Some(told.clone()),
        _ => Some(notable.clone()),
    }
}

/// The status once the change from `announced` to the record shown has been told: the same
/// status, with `announced` as the record the owners were told of.
pub fn announced_status(cis: &CisView, announced: &FindingRecord) -> ContainerImageScanStatus {
    let mut status = base(cis);
    // Announcing is not showing a result: a spec change not yet shown stays unshown.
    status.observed_generation = cis.status.observed_generation;
    status.conditions = Some(cis.status.conditions.clone());
    status.announced_findings = Some(announced.clone());
    status
}

/// The OpenReports Report of a successful scan for this CIS: the same filtered, marked, sorted
/// vulnerabilities as the status, fitted to `budget` bytes (lowest severities dropped first),
/// with the summary of all of them but the suppressed; `explain` completes the record of a
/// cut. Also the bytes of the details it keeps, measured as the status measures its own
/// (`status::details_size`).
pub fn report_for(
    cis: &CisView,
    vulnerabilities: &[Vulnerability],
    exceptions: &[&Exception],
    budget: usize,
    explain: impl FnOnce(&mut VulnerabilitiesTruncated),
) -> (serde_json::Value, u64) {
    let filter = ScanFilter::from_spec(&cis.spec);
    let mut filtered = filter.apply(vulnerabilities.to_vec());
    let applicable = Applicable {
        scan: ScanSubject::of(&cis.namespace, &cis.spec, &cis.labels),
        exceptions,
    };
    let suppressed = status::suppress(applicable, &mut filtered).map_or(0, |c| c.total);
    let summary = status::summary_from(&filtered, filter.min());
    status::sort_details(&mut filtered);
    let mut fitted = status::fit_details(filtered, budget);
    if let Some(t) = fitted.truncated.as_mut() {
        explain(t);
    }
    let bytes = status::details_size(&fitted.kept) as u64;
    let report = super::openreports::report(
        cis,
        &fitted.kept,
        &summary,
        suppressed,
        fitted.truncated.as_ref(),
    );
    (report, bytes)
}

/// Which failure condition to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// `Stalled/Error`.
    Error,
    /// `Stalled/ScanReportDecodeError`.
    Decode,
    /// `Stalled` with this reason.
    Other(&'static str),
}

/// The status after a failed scan: the previous result is kept, the condition explains.
pub fn failure_status(
    cis: &CisView,
    job_uid: &str,
    at: Timestamp,
    kind: FailureKind,
    message: &str,
) -> ContainerImageScanStatus {
    let previous = &cis.status.conditions;
    let condition = match kind {
        FailureKind::Error => scan_error(message.as_bytes(), previous, jiff(at)),
        // The message already says which Job and why; keep it as built by the engine.
        FailureKind::Decode => {
            let mut c = decode_error("", &"", previous, jiff(at));
            c.message = bound_message(message, status::DEFAULT_MESSAGE_LIMIT);
            c
        }
        FailureKind::Other(reason) => {
            let mut c = scan_error(message.as_bytes(), previous, jiff(at));
            c.reason = reason.to_string();
            c
        }
    };
    let mut status = base(cis);
    status.last_scan_job_uid = Some(job_uid.to_string());
    status.last_scan_time = Some(at.truncate_to_secs().to_k8s());
    status.conditions = Some(vec![condition]);
    status
}

/// `Stalled/NoRegistryDigest` on top of the current status, for a CIS whose digest is a local
/// image ID: no scan runs, the previous fields stay (there is no new result to record).
pub fn no_registry_digest_status(cis: &CisView, now: Timestamp) -> ContainerImageScanStatus {
    let mut status = base(cis);
    status.conditions = Some(vec![no_registry_digest(
        &cis.spec.name,
        &cis.spec.digest,
        &cis.status.conditions,
        jiff(now),
    )]);
    status
}

/// Whether the CIS shows `status`'s conditions for its current generation already.
pub fn shows_conditions(cis: &CisView, status: &ContainerImageScanStatus) -> bool {
    cis.status.observed_generation == Some(cis.generation)
        && status.conditions.as_deref() == Some(cis.status.conditions.as_slice())
}

/// A message bounded to `limit` bytes (ANSI codes removed).
pub fn bounded_message(text: &str, limit: usize) -> String {
    bound_message(text, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::CisStatusView;

    /// Announcing a Job keeps what the status showed (generation, last scan) and replaces the
    /// conditions by `Reconciling/ScanJobCreated` naming the Job.
    #[test]
    fn scan_job_created_keeps_the_last_result() {
        let last = Timestamp::from_secs(1_700_000_000);
        let mut cis = crate::engine::tests::cis(
            "a",
            "uid-a",
            "sha256:1",
            CisStatusView {
                last_scan_job_uid: Some("job-1".into()),
                last_scan_time: Some(last),
                ..Default::default()
            },
        );
        cis.generation = 3;
        let status = scan_job_created_status(
            &cis,
            "scan-a",
            last.plus(std::time::Duration::from_secs(60)),
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.last_scan_job_uid.as_deref(), Some("job-1"));
        assert_eq!(status.last_scan_time, Some(last.to_k8s()));
        let conditions = status.conditions.unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        let c = &conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            ("Reconciling", "True")
        );
        assert_eq!(c.reason, status::REASON_SCAN_JOB_CREATED);
        assert_eq!(c.message, "Job 'scan-a' created to scan image.");
    }

    #[test]
    fn bounded_message_strips_and_bounds() {
        assert_eq!(bounded_message("\u{1b}[31mfailed\u{1b}[0m", 100), "failed");
        let long = "x".repeat(1000);
        let bounded = bounded_message(&long, 100);
        assert!(
            bounded.len() <= 100 && bounded.starts_with("xxx"),
            "{bounded}"
        );
    }
}
