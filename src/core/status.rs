//! What a finished scan writes to `ContainerImageScan.status` (spec §1.4–§1.6, §10).
//!
//! * **Filtering.** The scan runs unfiltered; [`ScanFilter`] applies the CIS's
//!   `ignoreUnfixed` (drop vulnerabilities with an empty `fixedVersion`) and `minSeverity`
//!   (drop lower severities) here, so one scan result serves every CIS of the same digest.
//! * **Summary.** [`summary_from`] is exactly §1.5: keys from the minimum severity up to
//!   `CRITICAL` start at 0 and every vulnerability given is counted. The status summary is
//!   computed over the filtered list, before any size-driven truncation.
//! * **Details.** Sorted per §10.3 ([`sort_details`]) and fitted to a byte budget
//!   ([`fit_details`]): whole severities are dropped lowest first until the compact JSON of
//!   the list fits; if the highest remaining severity alone is still too large, its
//!   highest-ranked tail that fits is kept. Each item is serialised once (O(n)), before
//!   anything is written. [`shrink_further`] handles an API server that still answers "too
//!   large": it halves the budget, at most `log2(size)` times before nothing is left.
//! * **Conditions** (§1.6) are built with the time passed in and keep `lastTransitionTime`
//!   when the same type and status is already present. Messages are bounded
//!   ([`bound_message`]): ANSI escapes and other control characters (except newline and tab)
//!   are removed, and text over the limit keeps its head and tail around a
//!   `… [N bytes omitted] …` marker, so a long failed-scan log can no longer exceed the
//!   CRD's 32768-character limit and wedge the status write (quirks §19.4, §19.5).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{
    ContainerImageScanSpec, ContainerImageScanStatus, Severity, SuppressedCount,
    VulnerabilitiesTruncated, Vulnerability, VulnerabilitySummary,
};
use crate::exception::{self, Applicable};

/// Default bound for condition messages, in bytes; far below the CRD's 32768 characters.
pub const DEFAULT_MESSAGE_LIMIT: usize = 4096;
/// Condition type while a scan Job runs.
pub const TYPE_RECONCILING: &str = "Reconciling";
/// Condition type after a failed scan.
pub const TYPE_STALLED: &str = "Stalled";
/// Reason: a scan Job was created.
pub const REASON_SCAN_JOB_CREATED: &str = "ScanJobCreated";
/// Reason: the scan log was not a valid report.
pub const REASON_DECODE_ERROR: &str = "ScanReportDecodeError";
/// Reason: the scan failed.
pub const REASON_ERROR: &str = "Error";
/// Reason: the registry refused the scan pod's image pull for credentials (not upstream).
pub const REASON_PULL_UNAUTHORIZED: &str = "ImagePullUnauthorized";
/// Reason: the namespace refused the scan pod or its Job (not upstream).
pub const REASON_SCAN_POD_REJECTED: &str = "ScanPodRejected";
/// Reason: the image runs from a local image ID, which no scan Job can run (not upstream).
pub const REASON_NO_REGISTRY_DIGEST: &str = "NoRegistryDigest";
/// Reason of the Warning Event on a pod with a container that cannot be scanned at all.
pub const REASON_UNSCANNABLE_IMAGE: &str = "UnscannableImage";

/// The CIS's result filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanFilter {
    /// `spec.minSeverity`; `None` is `UNKNOWN` (keep everything).
    pub min_severity: Option<Severity>,
    /// `spec.ignoreUnfixed`.
    pub ignore_unfixed: bool,
}

impl ScanFilter {
    /// The filters of a CIS spec.
    pub fn from_spec(spec: &ContainerImageScanSpec) -> Self {
        ScanFilter {
            min_severity: spec.min_severity,
            ignore_unfixed: spec.ignore_unfixed.unwrap_or(false),
        }
    }

    /// The effective minimum severity.
    pub fn min(&self) -> Severity {
        self.min_severity.unwrap_or(Severity::Unknown)
    }

    /// Whether `v` passes the filters.
    pub fn keeps(&self, v: &Vulnerability) -> bool {
        v.severity >= self.min() && !(self.ignore_unfixed && v.fixed_version.is_empty())
    }

    /// The vulnerabilities that pass, in their original order.
    pub fn apply(&self, mut vulnerabilities: Vec<Vulnerability>) -> Vec<Vulnerability> {
        vulnerabilities.retain(|v| self.keeps(v));
        vulnerabilities
    }
}

/// §1.5: `severityCount` has 0 for every severity from `min` up, plus a count for every
/// vulnerability in `vulnerabilities` not suppressed by an exception (which may add keys
/// below `min`).
pub fn summary_from(vulnerabilities: &[Vulnerability], min: Severity) -> VulnerabilitySummary {
    let mut counts: BTreeMap<String, i32> = Severity::ALL
        .into_iter()
        .filter(|s| *s >= min)
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut fixed_counts = counts.clone();
    let mut fixed = 0i32;
    let mut counted = 0usize;
    for v in vulnerabilities.iter().filter(|v| v.suppressed_by.is_none()) {
        counted += 1;
        let c = counts.entry(v.severity.as_str().to_owned()).or_insert(0);
        *c = c.saturating_add(1);
        let f = fixed_counts
            .entry(v.severity.as_str().to_owned())
            .or_insert(0);
        if !v.fixed_version.is_empty() {
            *f = f.saturating_add(1);
            fixed = fixed.saturating_add(1);
        }
    }
    VulnerabilitySummary {
        severity_count: Some(counts),
        fixed_count: fixed,
        unfixed_count: saturating_i32(counted).saturating_sub(fixed),
        fixed_severity_count: Some(fixed_counts),
    }
}

/// Marks each finding that one of `exceptions` covers with the first that does (in the order
/// given) and clears every other mark; counts the marked ones. `None` when no exception
/// applies, so a scan no exception concerns is written as before exceptions existed.
pub fn suppress(
    applicable: Applicable<'_>,
    vulnerabilities: &mut [Vulnerability],
) -> Option<SuppressedCount> {
    let mut count = SuppressedCount::default();
    for v in vulnerabilities.iter_mut() {
        let by = applicable
            .exceptions
            .iter()
            .find_map(|e| Some((e, e.covering(&applicable.scan, v)?)));
        v.suppressed_by = by.map(|(e, _)| e.key.reference());
        v.suppressed_justification = by.and_then(|(_, c)| c.justification.map(str::to_string));
        if let (Some((_, cover)), Some(reference)) = (by, &v.suppressed_by) {
            count.total = count.total.saturating_add(1);
            for (map, key) in [
                (&mut count.severity_count, v.severity.as_str()),
                (&mut count.by_exception, reference.as_str()),
                (&mut count.by_reason, cover.reason.as_str()),
            ] {
                let c = map.entry(key.to_owned()).or_insert(0);
                *c = c.saturating_add(1);
            }
        }
    }
    (!applicable.exceptions.is_empty()).then_some(count)
}

/// §10.3 order: severity rank ascending, then `pkgName`, `installedVersion`,
/// `vulnerabilityID`, byte-wise.
pub fn compare_details(a: &Vulnerability, b: &Vulnerability) -> Ordering {
    (
        a.severity,
        &a.pkg_name,
        &a.installed_version,
        &a.vulnerability_id,
    )
        .cmp(&(
            b.severity,
            &b.pkg_name,
            &b.installed_version,
            &b.vulnerability_id,
        ))
}

/// Sorts in §10.3 order (stable, so equal keys keep their input order).
pub fn sort_details(vulnerabilities: &mut [Vulnerability]) {
    vulnerabilities.sort_by(compare_details);
}

/// Details fitted to a budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FittedDetails {
    /// The kept vulnerabilities: a tail of the sorted input.
    pub kept: Vec<Vulnerability>,
    /// What was left out; `None` when everything fits.
    pub truncated: Option<VulnerabilitiesTruncated>,
}

/// Bytes of the compact JSON of one vulnerability, as the API server receives it.
pub fn item_size(v: &Vulnerability) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, v) {
        Ok(()) => counter.0,
        // Cannot happen for plain strings; an item that cannot be measured never fits.
        Err(_) => usize::MAX,
    }
}

/// What a list of details counts as against the budgets: its compact JSON, and nothing when
/// it is empty (an empty list is what any budget leaves when it can hold no finding).
pub fn details_size(vulnerabilities: &[Vulnerability]) -> usize {
    details_size_of(
        vulnerabilities
            .iter()
            .map(item_size)
            .fold(0, usize::saturating_add),
        vulnerabilities.len(),
    )
}

/// [`details_size`] of `count` items whose [`item_size`]s add up to `items_total`: for a list
/// measured item by item as it is decoded, never held whole.
pub fn details_size_of(items_total: usize, count: usize) -> usize {
    if count == 0 {
        0
    } else {
        array_size(items_total, count)
    }
}

/// Bytes of the compact JSON array of `vulnerabilities`.
pub fn list_size(vulnerabilities: &[Vulnerability]) -> usize {
    array_size(
        vulnerabilities
            .iter()
            .map(item_size)
            .fold(0, usize::saturating_add),
        vulnerabilities.len(),
    )
}

/// Fits `sorted` (in [`sort_details`] order) into `max_bytes` of compact JSON, measuring
/// items as the status's `vulnerabilities` list. See the module doc for the rule.
pub fn fit_details(sorted: Vec<Vulnerability>, max_bytes: usize) -> FittedDetails {
    fit_details_with(sorted, max_bytes, item_size)
}

/// [`fit_details`] with another item size, e.g. for a Report's `results`.
pub fn fit_details_with(
    sorted: Vec<Vulnerability>,
    max_bytes: usize,
    size_of: impl Fn(&Vulnerability) -> usize,
) -> FittedDetails {
    let n = sorted.len();
    // suffix[i] = sum of item sizes of sorted[i..]; one serialisation per item.
    let mut suffix = vec![0usize; n + 1];
    for (i, v) in sorted.iter().enumerate().rev() {
        let next = suffix.get(i + 1).copied().unwrap_or(0);
        if let Some(slot) = suffix.get_mut(i) {
            *slot = next.saturating_add(size_of(v));
        }
    }
    let fits = |i: usize| array_size(suffix.get(i).copied().unwrap_or(0), n - i) <= max_bytes;
    // Nothing to cut: an empty list is what remains at any budget.
    if fits(0) || n == 0 {
        return FittedDetails {
            kept: sorted,
            truncated: None,
        };
    }
    // Candidate cut points: the start of each severity group (dropping whole lower
    // severities), tried lowest first.
    let group_starts: Vec<usize> = (0..n)
        .filter(|&i| {
            i == 0 || sorted.get(i - 1).map(|p| p.severity) != sorted.get(i).map(|v| v.severity)
        })
        .collect();
    let last_group = group_starts.last().copied().unwrap_or(n);
    let cut = match group_starts.iter().copied().skip(1).find(|&i| fits(i)) {
        Some(i) => i,
        // Even the highest severity alone is too large: keep its highest-ranked tail.
        None => (last_group..=n).find(|&i| fits(i)).unwrap_or(n),
    };
    let mut kept = sorted;
    let dropped: Vec<Vulnerability> = kept.drain(..cut.min(n)).collect();
    let kept_min = kept.first().map(|v| v.severity);
    let mut dropped_severities: Vec<Severity> = Vec::new();
    for v in &dropped {
        let whole = kept_min.is_none_or(|k| v.severity < k);
        if whole && dropped_severities.last() != Some(&v.severity) {
            dropped_severities.push(v.severity);
        }
    }
    FittedDetails {
        kept,
        truncated: Some(VulnerabilitiesTruncated {
            dropped_severities,
            dropped_count: saturating_i32(dropped.len()),
            budget_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
            reason: None,
        }),
    }
}

/// After the API server rejected `current` as too large: the same details fitted to half
/// of the smaller of its budget and its actual size, with the drop counts added up. `None`
/// when nothing is left to cut. Every call drops at least one item, so a loop
/// `while let Some(next) = shrink_further(&cur)` ends after at most `kept.len()` (in
/// practice about `log2(size)`) steps.
pub fn shrink_further(current: &FittedDetails) -> Option<FittedDetails> {
    if current.kept.is_empty() {
        return None;
    }
    let size = list_size(&current.kept);
    let budget = current
        .truncated
        .as_ref()
        .and_then(|t| usize::try_from(t.budget_bytes).ok())
        .unwrap_or(size)
        .min(size)
        / 2;
    let next = fit_details(current.kept.clone(), budget);
    let mut truncated = next.truncated.unwrap_or_default();
    if let Some(previous) = &current.truncated {
        truncated.dropped_count = truncated
            .dropped_count
            .saturating_add(previous.dropped_count);
        let mut severities = previous.dropped_severities.clone();
        for s in truncated.dropped_severities {
            if !severities.contains(&s) {
                severities.push(s);
            }
        }
        truncated.dropped_severities = severities;
    }
    truncated.budget_bytes = i64::try_from(budget).unwrap_or(i64::MAX);
    Some(FittedDetails {
        kept: next.kept,
        truncated: Some(truncated),
    })
}

/// How `status.vulnerabilities` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailsMode {
    /// Not written (feature gate `NoCISStatusVulnerabilities`, the default).
    Omit,
    /// Every filtered vulnerability.
    All,
    /// At most this many bytes of compact JSON (see [`fit_details`]).
    Budget(usize),
}

/// Everything about a successful scan besides its vulnerabilities.
#[derive(Clone, Copy, Debug)]
pub struct SuccessParams<'a> {
    /// The CIS's filters.
    pub filter: ScanFilter,
    /// UID of the scan Job whose log was read.
    pub job_uid: &'a str,
    /// The CIS's `metadata.generation`.
    pub generation: Option<i64>,
    /// The current time.
    pub now: Timestamp,
    /// Whether and how to write the details.
    pub details: DetailsMode,
    /// The vulnerability exceptions that apply to the CIS now (in force; its namespace,
    /// image and workload), in the order that decides which one a finding is marked with.
    pub exceptions: Applicable<'a>,
    /// How the result's findings are recorded for change announcements
    /// (`status.notableFindings`); `None`: no record.
    pub notice: Option<crate::finding_record::RecordSpec>,
}

/// The status after a successful scan (§10.3 step 5): filtered summary, sorted and
/// budgeted details (if asked for), both scan times = `now`, and no conditions.
pub fn success_status(
    vulnerabilities: Vec<Vulnerability>,
    params: &SuccessParams<'_>,
) -> ContainerImageScanStatus {
    let mut filtered = params.filter.apply(vulnerabilities);
    let suppressed_count = suppress(params.exceptions, &mut filtered);
    let summary = summary_from(&filtered, params.filter.min());
    let notable = params
        .notice
        .map(|spec| crate::finding_record::record(&filtered, spec));
    let (details, truncated) = match params.details {
        DetailsMode::Omit => (None, None),
        DetailsMode::All => {
            sort_details(&mut filtered);
            (Some(filtered), None)
        }
        DetailsMode::Budget(max) => {
            sort_details(&mut filtered);
            let fitted = fit_details(filtered, max);
            (Some(fitted.kept), fitted.truncated)
        }
    };
    ContainerImageScanStatus {
        observed_generation: params.generation,
        last_scan_job_uid: Some(params.job_uid.to_owned()),
        last_scan_time: Some(Time(params.now)),
        last_successful_scan_time: Some(Time(params.now)),
        conditions: None,
        details_bytes: details.as_deref().map(|d| saturating_i64(details_size(d))),
        vulnerabilities: details,
        vulnerability_summary: Some(summary),
        vulnerabilities_truncated: truncated,
        suppressed_count,
        exceptions_fingerprint: exception::fingerprint(params.exceptions.exceptions),
        notable_findings: notable,
        // The caller knows what was announced before (`cis_status::success_status`).
        announced_findings: None,
    }
}

/// The status after a failed scan or undecodable report (§10.3 step 1, §10.4): the
/// previous status with `condition` as the only condition, `lastScanJobUID`, `lastScanTime`
/// and `observedGeneration` updated. The last successful result (summary, details,
/// `lastSuccessfulScanTime`) is kept.
pub fn failure_status(
    previous: Option<&ContainerImageScanStatus>,
    condition: Condition,
    job_uid: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> ContainerImageScanStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.last_scan_job_uid = Some(job_uid.to_owned());
    status.last_scan_time = Some(Time(now));
    status.conditions = Some(vec![condition]);
    status
}

/// `Reconciling/True/ScanJobCreated`: `Job '<job>' created to scan image.`
pub fn scan_job_created(job_name: &str, previous: &[Condition], now: Timestamp) -> Condition {
    condition(
        TYPE_RECONCILING,
        REASON_SCAN_JOB_CREATED,
        &format!("Job '{job_name}' created to scan image."),
        previous,
        now,
    )
}

/// `Stalled/True/ScanReportDecodeError`:
/// `error decoding scan report JSON from job '<job>': <error>`, bounded.
pub fn decode_error(
    job_name: &str,
    error: &dyn std::fmt::Display,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    condition(
        TYPE_STALLED,
        REASON_DECODE_ERROR,
        &format!("error decoding scan report JSON from job '{job_name}': {error}"),
        previous,
        now,
    )
}

/// `Stalled/True/Error` with `text` (a failed scan's log, a waiting message, an internal
/// error) as the bounded message. Logs are bytes; invalid UTF-8 shows as U+FFFD.
pub fn scan_error(text: &[u8], previous: &[Condition], now: Timestamp) -> Condition {
    condition(
        TYPE_STALLED,
        REASON_ERROR,
        &String::from_utf8_lossy(text),
        previous,
        now,
    )
}

/// `Stalled/True/NoRegistryDigest`: the container runs `image` from the local image ID
/// `digest` (no registry digest), so it is not scanned, and what to do about it.
pub fn no_registry_digest(
    image: &str,
    digest: &str,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    condition(
        TYPE_STALLED,
        REASON_NO_REGISTRY_DIGEST,
        &format!(
            "not scanned: the container runs {image} from the local image ID {digest}, which \
             has no registry digest on its node (the image was imported or preloaded, e.g. with \
             'ctr images import' or from a k3s air-gap archive, or built there). Scan \
             Jobs run the image by registry digest, and a local image ID can neither be pulled \
             nor resolved as one. Run the image from a registry to have it scanned."
        ),
        previous,
        now,
    )
}

/// A `True` condition with a bounded message; `lastTransitionTime` is kept from a
/// previous condition of the same type and status, else `now`.
fn condition(
    type_: &str,
    reason: &str,
    message: &str,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    const STATUS: &str = "True";
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == STATUS)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        last_transition_time,
        message: bound_message(message, DEFAULT_MESSAGE_LIMIT),
        observed_generation: None,
        reason: reason.to_owned(),
        status: STATUS.to_owned(),
        type_: type_.to_owned(),
    }
}

/// Removes ANSI escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`, and
/// two-byte `ESC x`) and every other control character except `\n` and `\t`, then bounds
/// the result to `limit` bytes by keeping the head and tail around
/// `… [N bytes omitted] …`. Always valid UTF-8, never longer than `limit`.
pub fn bound_message(text: &str, limit: usize) -> String {
    let clean = strip_control(text);
    if clean.len() <= limit {
        return clean;
    }
    // The marker's width depends on N; size it for the largest N possible.
    let widest = omitted_marker(clean.len());
    let Some(room) = limit.checked_sub(widest.len()) else {
        return clean
            .get(..floor_boundary(&clean, limit))
            .unwrap_or_default()
            .to_owned();
    };
    let head_end = floor_boundary(&clean, room / 2);
    let tail_len = room - head_end;
    let tail_start = ceil_boundary(&clean, clean.len() - tail_len);
    let omitted = tail_start - head_end;
    let mut out = String::with_capacity(limit);
    out.push_str(clean.get(..head_end).unwrap_or_default());
    out.push_str(&omitted_marker(omitted));
    out.push_str(clean.get(tail_start..).unwrap_or_default());
    out
}

fn omitted_marker(n: usize) -> String {
    format!("… [{n} bytes omitted] …")
}

/// `text` without ANSI escape sequences and control characters other than `\n`, `\t`.
pub fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if !c.is_control() || c == '\n' || c == '\t' {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            // CSI: parameter and intermediate bytes, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ST (ESC \).
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Any other escape is ESC plus one character.
            _ => {}
        }
    }
    out
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn array_size(items_total: usize, count: usize) -> usize {
    // "[" + items joined by "," + "]".
    items_total
        .saturating_add(count.saturating_sub(1))
        .saturating_add(2)
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::Exception;

    fn v(sev: Severity, pkg: &str, id: &str, fixed: &str) -> Vulnerability {
        crate::test_kit::finding(id, pkg, sev, fixed)
    }

    fn counts(s: &VulnerabilitySummary) -> Vec<(String, i32)> {
        s.severity_count
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn summary_table_17_min_high() {
        let min = Severity::High;
        type Case = (Vec<Vulnerability>, Vec<(&'static str, i32)>);
        let cases: [Case; 3] = [
            (vec![], vec![("CRITICAL", 0), ("HIGH", 0)]),
            (
                vec![v(Severity::Critical, "a", "1", "")],
                vec![("CRITICAL", 1), ("HIGH", 0)],
            ),
            (
                vec![v(Severity::Low, "a", "1", "")],
                vec![("CRITICAL", 0), ("HIGH", 0), ("LOW", 1)],
            ),
        ];
        for (input, want) in cases {
            let got = summary_from(&input, min);
            let want: Vec<(String, i32)> = want.into_iter().map(|(k, n)| (k.into(), n)).collect();
            assert_eq!(counts(&got), want);
        }
    }

    #[test]
    fn summary_without_min_has_all_keys_and_fix_counts() {
        let s = summary_from(
            &[
                v(Severity::Low, "a", "1", "2"),
                v(Severity::Low, "b", "1", ""),
            ],
            Severity::Unknown,
        );
        assert_eq!(counts(&s).len(), 5);
        assert_eq!((s.fixed_count, s.unfixed_count), (1, 1));
    }

    #[test]
    fn filter_applies_min_severity_and_ignore_unfixed() {
        let all = vec![
            v(Severity::Low, "a", "1", "2"),
            v(Severity::High, "b", "2", ""),
            v(Severity::Critical, "c", "3", "9"),
        ];
        let f = ScanFilter {
            min_severity: Some(Severity::High),
            ignore_unfixed: true,
        };
        let kept = f.apply(all);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].pkg_name, "c");
        let s = summary_from(&kept, f.min());
        assert_eq!(counts(&s), vec![("CRITICAL".into(), 1), ("HIGH".into(), 0)]);
    }

    #[test]
    fn sort_order_is_severity_then_package_version_id_bytewise() {
        let mut list = vec![
            v(Severity::Critical, "a", "1", ""),
            v(Severity::Low, "b", "2", ""),
            v(Severity::Low, "B", "3", ""),
            v(Severity::Low, "b", "10", ""),
        ];
        sort_details(&mut list);
        let ids: Vec<&str> = list.iter().map(|v| v.vulnerability_id.as_str()).collect();
        assert_eq!(ids, ["3", "10", "2", "1"]);
    }

    fn sample() -> Vec<Vulnerability> {
        let mut list = Vec::new();
        for (sev, n) in [
            (Severity::Unknown, 3),
            (Severity::Low, 5),
            (Severity::Medium, 4),
            (Severity::High, 3),
            (Severity::Critical, 6),
        ] {
            for i in 0..n {
                list.push(v(sev, &format!("pkg{i}"), &format!("CVE-{sev}-{i}"), ""));
            }
        }
        sort_details(&mut list);
        list
    }

    #[test]
    fn budget_keeps_everything_when_it_fits() {
        let list = sample();
        let size = list_size(&list);
        assert_eq!(size, serde_json::to_vec(&list).unwrap().len());
        let fitted = fit_details(list.clone(), size);
        assert_eq!(fitted.kept, list);
        assert_eq!(fitted.truncated, None);
    }

    #[test]
    fn budget_drops_whole_lowest_severities_first() {
        let list = sample();
        let high_up: Vec<Vulnerability> = list
            .iter()
            .filter(|v| v.severity >= Severity::High)
            .cloned()
            .collect();
        // Room for one more MEDIUM item, but not for all of them: the whole group goes.
        let next_medium = &list[list.len() - high_up.len() - 1];
        assert_eq!(next_medium.severity, Severity::Medium);
        let budget = list_size(&high_up) + item_size(next_medium) + 1;
        let fitted = fit_details(list, budget);
        assert_eq!(fitted.kept, high_up);
        assert!(list_size(&fitted.kept) <= budget);
        assert_eq!(
            fitted.truncated,
            Some(VulnerabilitiesTruncated {
                dropped_severities: vec![Severity::Unknown, Severity::Low, Severity::Medium],
                dropped_count: 12,
                budget_bytes: budget as i64,
                reason: None,
            })
        );
    }

    #[test]
    fn budget_keeps_the_highest_ranked_tail_of_critical_when_it_alone_is_too_big() {
        let list = sample();
        let tail = &list[list.len() - 2..];
        let budget = list_size(tail);
        let fitted = fit_details(list.clone(), budget);
        assert_eq!(fitted.kept, tail);
        let t = fitted.truncated.unwrap();
        assert_eq!(t.dropped_count as usize, list.len() - 2);
        assert_eq!(
            t.dropped_severities,
            vec![
                Severity::Unknown,
                Severity::Low,
                Severity::Medium,
                Severity::High
            ]
        );
        // Nothing fits at all: an empty list.
        let none = fit_details(list.clone(), 1);
        assert!(none.kept.is_empty());
        assert_eq!(none.truncated.unwrap().dropped_severities.len(), 5);
    }

    #[test]
    fn shrink_further_halves_until_nothing_is_left() {
        let first = fit_details(sample(), usize::MAX);
        assert!(first.truncated.is_none());
        let mut current = first;
        let mut steps = 0;
        while let Some(next) = shrink_further(&current) {
            assert!(next.kept.len() < current.kept.len());
            let t = next.truncated.clone().unwrap();
            assert!(list_size(&next.kept) <= t.budget_bytes as usize);
            assert_eq!(t.dropped_count as usize + next.kept.len(), 21);
            current = next;
            steps += 1;
            assert!(steps < 64);
        }
        assert!(current.kept.is_empty());
        assert_eq!(
            current.truncated.unwrap().dropped_severities,
            Severity::ALL.to_vec()
        );
    }

    #[test]
    fn success_status_summarises_filtered_and_truncates_details() {
        let list = sample();
        let params = SuccessParams {
            filter: ScanFilter {
                min_severity: Some(Severity::Low),
                ignore_unfixed: false,
            },
            job_uid: "uid-1",
            generation: Some(3),
            now: t(1_700_000_000),
            details: DetailsMode::Budget(600),
            exceptions: Applicable::NONE,
            notice: None,
        };
        let s = success_status(list.clone(), &params);
        let summary = s.vulnerability_summary.unwrap();
        assert_eq!(summary.unfixed_count, 18);
        assert!(!summary.severity_count.unwrap().contains_key("UNKNOWN"));
        let details = s.vulnerabilities.unwrap();
        assert!(list_size(&details) <= 600);
        assert!(s.vulnerabilities_truncated.is_some());
        assert_eq!(s.conditions, None);
        assert_eq!(s.last_scan_job_uid.as_deref(), Some("uid-1"));
        assert_eq!(s.last_successful_scan_time, Some(Time(t(1_700_000_000))));

        let omit = success_status(
            list,
            &SuccessParams {
                details: DetailsMode::Omit,
                ..params
            },
        );
        assert_eq!(omit.vulnerabilities, None);
        assert_eq!(omit.vulnerabilities_truncated, None);
    }

    fn accepted(name: &str, uid: &str, spec: serde_json::Value) -> Exception {
        let spec = serde_json::from_value(spec).expect("a valid spec");
        let version = crate::exception::ObjectVersion { uid, generation: 1 };
        Exception::namespaced("ns", name, version, &spec).expect("compiles")
    }

    #[test]
    fn suppressed_findings_stay_in_the_details_marked_and_leave_the_summary() {
        let list = vec![
            v(Severity::Critical, "openssl", "CVE-2024-0001", "3.1"),
            v(Severity::High, "openssl", "CVE-2024-0002", ""),
            v(Severity::High, "zlib", "CVE-2024-0002", ""),
            v(Severity::Low, "curl", "CVE-2024-0003", "8"),
        ];
        let reason = |ids: &[&str]| {
            serde_json::json!({
                "vulnerabilities": ids.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(),
                "reason": "AcceptedRisk",
                "description": "d",
            })
        };
        let a = accepted("a", "uid-a", reason(&["CVE-2024-0001", "CVE-2024-0002"]));
        let b = accepted("b", "uid-b", reason(&["cve-2024-0002"]));
        let mut with_packages = reason(&["CVE-2024-0002"]);
        with_packages["packages"] = serde_json::json!([{"name": "zlib"}]);
        let z = accepted("z", "uid-z", with_packages);
        let params = |exceptions| SuccessParams {
            filter: ScanFilter::default(),
            job_uid: "uid-1",
            generation: Some(1),
            now: t(100),
            details: DetailsMode::All,
            exceptions: Applicable {
                scan: Applicable::NONE.scan,
                exceptions,
            },
            notice: None,
        };
        let plain = success_status(list.clone(), &params(&[]));
        assert_eq!(plain.suppressed_count, None);
        assert_eq!(plain.exceptions_fingerprint, None);

        let exceptions = [&z, &b];
        let s = success_status(list.clone(), &params(&exceptions));
        let summary = s.vulnerability_summary.as_ref().expect("a summary");
        // The zlib finding is z's (first given), the openssl HIGH b's; CRITICAL is not covered.
        assert_eq!(
            counts(summary),
            [
                ("CRITICAL", 1),
                ("HIGH", 0),
                ("LOW", 1),
                ("MEDIUM", 0),
                ("UNKNOWN", 0)
            ]
            .map(|(k, n)| (k.to_string(), n))
        );
        assert_eq!((summary.fixed_count, summary.unfixed_count), (2, 0));
        let suppressed = s.suppressed_count.as_ref().expect("counted");
        assert_eq!(suppressed.total, 2);
        assert_eq!(
            suppressed.severity_count,
            BTreeMap::from([("HIGH".to_string(), 2)])
        );
        assert_eq!(
            suppressed.by_exception,
            BTreeMap::from([("ns/b".to_string(), 1), ("ns/z".to_string(), 1)])
        );
        let marks: Vec<(String, Option<String>)> = s
            .vulnerabilities
            .iter()
            .flatten()
            .map(|v| (v.pkg_name.clone(), v.suppressed_by.clone()))
            .collect();
        assert_eq!(marks.len(), 4, "suppressed findings stay in the details");
        assert!(marks.contains(&("zlib".to_string(), Some("ns/z".to_string()))));
        assert!(marks.contains(&("openssl".to_string(), None)));
        assert_eq!(
            s.exceptions_fingerprint,
            crate::exception::fingerprint(&exceptions)
        );

        // An exception that applies but covers nothing is still recorded (count 0), and a
        // mark that came with the findings is never kept.
        let mut marked = list;
        marked[3].suppressed_by = Some("ns/forged".to_string());
        let only_a = [&a];
        let s = success_status(marked, &params(&only_a));
        assert_eq!(s.suppressed_count.as_ref().map(|c| c.total), Some(3));
        let s2 = success_status(s.vulnerabilities.clone().unwrap_or_default(), &params(&[]));
        assert!(
            s2.vulnerabilities
                .iter()
                .flatten()
                .all(|v| v.suppressed_by.is_none())
        );
        assert_eq!(s2.vulnerability_summary.map(|s| s.unfixed_count), Some(2));
    }

    #[test]
    fn failure_keeps_the_last_success_and_sets_one_condition() {
        let ok = success_status(
            vec![],
            &SuccessParams {
                filter: ScanFilter::default(),
                job_uid: "old",
                generation: Some(1),
                now: t(100),
                details: DetailsMode::Omit,
                exceptions: Applicable::NONE,
                notice: None,
            },
        );
        let cond = scan_error(b"boom", &[], t(200));
        let failed = failure_status(Some(&ok), cond.clone(), "new", Some(2), t(200));
        assert_eq!(failed.last_successful_scan_time, Some(Time(t(100))));
        assert_eq!(failed.last_scan_time, Some(Time(t(200))));
        assert_eq!(failed.last_scan_job_uid.as_deref(), Some("new"));
        assert_eq!(failed.vulnerability_summary, ok.vulnerability_summary);
        assert_eq!(failed.conditions, Some(vec![cond]));
    }

    #[test]
    fn conditions_have_upstream_texts_and_keep_transition_time() {
        let created = scan_job_created("job-1", &[], t(10));
        assert_eq!(
            (
                created.type_.as_str(),
                created.status.as_str(),
                created.reason.as_str()
            ),
            ("Reconciling", "True", "ScanJobCreated")
        );
        assert_eq!(created.message, "Job 'job-1' created to scan image.");
        let again = scan_job_created("job-2", std::slice::from_ref(&created), t(20));
        assert_eq!(again.last_transition_time, Time(t(10)));
        let stalled = decode_error("job-2", &"EOF", std::slice::from_ref(&created), t(30));
        assert_eq!(stalled.last_transition_time, Time(t(30)));
        assert_eq!(
            stalled.message,
            "error decoding scan report JSON from job 'job-2': EOF"
        );
        assert_eq!(stalled.reason, "ScanReportDecodeError");
        let err = scan_error(b"\x1b[31mFATAL\x1b[0m\tx\n", &[stalled], t(40));
        assert_eq!(
            (err.reason.as_str(), err.message.as_str()),
            ("Error", "FATAL\tx\n")
        );
        assert_eq!(err.last_transition_time, Time(t(30)));
    }

    #[test]
    fn strip_control_removes_escape_sequences() {
        assert_eq!(
            strip_control("a\u{1b}[1;31mb\u{1b}]0;title\u{7}c\u{1b}]8;;x\u{1b}\\d\u{1b}Me\r\0f"),
            "abcdef"
        );
        assert_eq!(strip_control("trailing \u{1b}"), "trailing ");
        // A backslash inside an OSC does not end it; only ESC \ (or BEL) does.
        assert_eq!(strip_control("\u{1b}]0;a\\b\u{7}x"), "x");
        assert_eq!(strip_control("\u{1b}]0;a\\b\u{1b}\\x"), "x");
    }

    #[test]
    fn filters_come_from_the_spec() {
        let spec = ContainerImageScanSpec {
            min_severity: Some(Severity::High),
            ignore_unfixed: Some(true),
            ..Default::default()
        };
        let filter = ScanFilter::from_spec(&spec);
        assert_eq!(filter.min_severity, Some(Severity::High));
        assert!(filter.ignore_unfixed);
        let unset = ScanFilter::from_spec(&ContainerImageScanSpec::default());
        assert_eq!(unset.min_severity, None);
        assert!(!unset.ignore_unfixed);
    }

    #[test]
    fn bound_message_keeps_head_and_tail() {
        let text = format!("HEAD{}TAIL", "é".repeat(5000));
        let out = bound_message(&text, 200);
        assert!(out.len() <= 200, "{}", out.len());
        assert!(out.starts_with("HEAD") && out.ends_with("TAIL"));
        let omitted: usize = out
            .split('[')
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            out.len() - omitted_marker(omitted).len() + omitted,
            text.len()
        );
        for limit in [0, 1, 5, 23, 24, 25, 31, 4096] {
            assert!(bound_message(&text, limit).len() <= limit);
        }
        assert_eq!(bound_message("short", 10), "short");
    }

    /// Every cut of a text of two-byte characters, at either end, lands inside one for some
    /// limit: the head is cut back and the tail forward to a character boundary, never over
    /// the limit.
    #[test]
    fn bound_message_cuts_between_characters_for_every_limit() {
        let text = "é".repeat(100);
        for limit in 40..120 {
            let out = bound_message(&text, limit);
            assert!(out.len() <= limit, "limit {limit}: {} bytes", out.len());
            let omitted: usize = out
                .split('[')
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("a marker");
            assert_eq!(
                out.len() - omitted_marker(omitted).len() + omitted,
                text.len(),
                "limit {limit}: head and tail are what was not omitted"
            );
        }
    }
}
