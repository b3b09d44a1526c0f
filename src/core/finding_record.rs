//! The compact record of a result's findings that change notices compare (issue 21,
//! `status.notableFindings`): IDs at or above a severity, by severity, with which have a fix.
//! Made where a result's status is made (`status`); compared and told by `notice`.

use std::collections::BTreeMap;

use crate::crd::{FindingRecord, Severity, Vulnerability};

/// At most this many IDs in one record (a few KiB); the least severe are left out first.
pub const MAX_RECORD_IDS: usize = 500;

/// How a result's findings are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpec {
    /// The lowest severity recorded.
    pub min: Severity,
    /// At most this many IDs ([`MAX_RECORD_IDS`], less for an object the API server found too
    /// large).
    pub max_ids: usize,
}

impl RecordSpec {
    /// From `min` up, at most [`MAX_RECORD_IDS`].
    pub fn from(min: Severity) -> RecordSpec {
        RecordSpec {
            min,
            max_ids: MAX_RECORD_IDS,
        }
    }
}

/// The record of `findings` — one result, filtered for its CIS, with the suppressed ones
/// marked (`suppressedBy`) — as `spec` says: suppressed findings are not recorded.
pub fn record(findings: &[Vulnerability], spec: RecordSpec) -> FindingRecord {
    let min = spec.min;
    // Per ID: the highest severity it was found with, and whether any of its packages has a fix.
    let mut by_id: BTreeMap<&str, (Severity, bool)> = BTreeMap::new();
    for v in findings {
        if v.severity < min || v.suppressed_by.is_some() {
            continue;
        }
        let entry = by_id
            .entry(v.vulnerability_id.as_str())
            .or_insert((v.severity, false));
        entry.0 = entry.0.max(v.severity);
        entry.1 |= !v.fixed_version.is_empty();
    }
    let mut ranked: Vec<(Severity, &str, bool)> =
        by_id.into_iter().map(|(id, (s, f))| (s, id, f)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let left_out = ranked.len().saturating_sub(spec.max_ids);
    ranked.truncate(spec.max_ids);
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fixable = Vec::new();
    for (severity, id, has_fix) in ranked {
        ids.entry(severity.as_str().to_string())
            .or_default()
            .push(id.to_string());
        if has_fix {
            fixable.push(id.to_string());
        }
    }
    fixable.sort();
    FindingRecord {
        min_severity: min,
        ids,
        fixable,
        left_out: i32::try_from(left_out).unwrap_or(i32::MAX),
    }
}

/// `record` with at most `max_ids` IDs, the least severe left out first (a record kept from
/// an earlier write, for an object that has to shrink). Taken by value: a record within the
/// bound (the usual case, on every result's fan-out) is returned as it is, not copied.
pub fn truncated(record: FindingRecord, max_ids: usize) -> FindingRecord {
    let total: usize = record.ids.values().map(Vec::len).sum();
    if total <= max_ids {
        return record;
    }
    let mut left = max_ids;
    let mut ids = BTreeMap::new();
    for severity in Severity::ALL.into_iter().rev() {
        let Some(list) = record.ids.get(severity.as_str()) else {
            continue;
        };
        let kept: Vec<String> = list.iter().take(left).cloned().collect();
        left -= kept.len();
        if !kept.is_empty() {
            ids.insert(severity.as_str().to_string(), kept);
        }
    }
    let kept: std::collections::BTreeSet<&String> = ids.values().flatten().collect();
    let fixable = record
        .fixable
        .iter()
        .filter(|id| kept.contains(id))
        .cloned()
        .collect();
    let dropped = i32::try_from(total - max_ids).unwrap_or(i32::MAX);
    FindingRecord {
        min_severity: record.min_severity,
        ids,
        fixable,
        left_out: record.left_out.saturating_add(dropped),
    }
}
