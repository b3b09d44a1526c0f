//! What changed between two results of a CIS, and how its owners are told (issue 21).
//!
//! A result keeps a compact [`FindingRecord`] in its status: the IDs of the findings it shows
//! at or above a severity, with which of them have a fix. A second record, the one the
//! workload's owners were last told of, stays behind until an announcement catches up, so the
//! change waiting to be announced is a function of the stored status alone — it survives a
//! restart or a failover, and a result that changes nothing announces nothing. [`Diff`] is that
//! change (new, no longer reported, newly fixable), [`notes`] the Events that tell it, bounded.

use std::collections::BTreeMap;

use crate::crd::{FindingRecord, Severity};
use crate::port::EventNote;
use crate::status::bound_message;

/// At most this many IDs named per severity in one Event message; the rest are counted.
pub const MAX_IDS_NAMED: usize = 5;
/// Bytes of an Event message (the API server allows 1 KiB for `note`).
pub const MESSAGE_LIMIT: usize = 1024;

/// Reason of the Warning Event for findings a result shows that the last announced did not.
pub const REASON_NEW: &str = "NewVulnerabilities";
/// Reason of the Event for findings that now have a fixed version.
pub const REASON_FIX_AVAILABLE: &str = "FixAvailable";
/// Reason of the Event for findings the last announced result showed and this one does not.
pub const REASON_RESOLVED: &str = "VulnerabilitiesResolved";
/// Reason of the Warning Event on the workload when a scan of one of its images starts failing.
pub const REASON_SCAN_FAILING: &str = "ScanFailing";

/// One finding named in a change: its ID and the severity it has in the newer record (in the
/// older one for a finding no longer reported).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    pub severity: Severity,
    pub id: String,
}

/// What changed from the record the owners were told of to the record of the result shown.
/// Each list is sorted most severe first, then by ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Shown now, not before.
    pub new: Vec<Named>,
    /// Shown before, not now: fixed in the image, or covered by an exception since.
    pub resolved: Vec<Named>,
    /// Shown both times, with a fixed version only now.
    pub fixable: Vec<Named>,
}

impl Diff {
    /// The change from `announced` to `notable`, or `None` when the two cannot be compared
    /// (recorded at different thresholds: the newer one is a new baseline). Severities at or
    /// below a record's cut (where it left IDs out) are not compared.
    pub fn between(announced: &FindingRecord, notable: &FindingRecord) -> Option<Diff> {
        if announced.min_severity != notable.min_severity {
            return None;
        }
        let floor = cut(announced).max(cut(notable));
        let compared = |s: Severity| floor.is_none_or(|f| s > f);
        let before = entries(announced);
        let after = entries(notable);
        let mut diff = Diff::default();
        for (id, (severity, fixable)) in &after {
            if !compared(*severity) {
                continue;
            }
            match before.get(id) {
                None => diff.new.push(named(*severity, id)),
                Some((_, was_fixable)) if *fixable && !was_fixable => {
                    diff.fixable.push(named(*severity, id));
                }
                Some(_) => {}
            }
        }
        for (id, (severity, _)) in &before {
            if compared(*severity) && !after.contains_key(id) {
                diff.resolved.push(named(*severity, id));
            }
        }
        diff.sort();
        Some(diff)
    }

    /// Nothing to announce.
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.resolved.is_empty() && self.fixable.is_empty()
    }

    /// The changes of several containers of one workload as one: each ID once, at the highest
    /// severity it was named with.
    pub fn merge(diffs: impl IntoIterator<Item = Diff>) -> Diff {
        let mut new = BTreeMap::new();
        let mut resolved = BTreeMap::new();
        let mut fixable = BTreeMap::new();
        for d in diffs {
            for (into, from) in [
                (&mut new, d.new),
                (&mut resolved, d.resolved),
                (&mut fixable, d.fixable),
            ] {
                for n in from {
                    let s = into.entry(n.id).or_insert(n.severity);
                    *s = (*s).max(n.severity);
                }
            }
        }
        let list = |m: BTreeMap<String, Severity>| {
            m.into_iter()
                .map(|(id, severity)| Named { severity, id })
                .collect()
        };
        let mut diff = Diff {
            new: list(new),
            resolved: list(resolved),
            fixable: list(fixable),
        };
        diff.sort();
        diff
    }

    fn sort(&mut self) {
        for list in [&mut self.new, &mut self.resolved, &mut self.fixable] {
            list.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        }
    }
}

/// The Events that tell `diff` of `subject` (e.g. "image docker.io/library/nginx@sha256:…"):
/// at most one per kind of change, never one per finding, each message within
/// [`MESSAGE_LIMIT`].
pub fn notes(diff: &Diff, subject: &str) -> Vec<EventNote> {
    let mut notes = Vec::new();
    let mut note = |warning: bool, reason: &str, list: &[Named], what: &str| {
        if list.is_empty() {
            return;
        }
        let n = list.len();
        let text = format!("{n} {what} in {subject}: {}", name_by_severity(list));
        notes.push(EventNote {
            warning,
            reason: reason.to_string(),
            note: bound_message(&text, MESSAGE_LIMIT),
        });
    };
    note(
        true,
        REASON_NEW,
        &diff.new,
        plural(diff.new.len(), "new vulnerability", "new vulnerabilities"),
    );
    note(
        false,
        REASON_FIX_AVAILABLE,
        &diff.fixable,
        plural(
            diff.fixable.len(),
            "vulnerability now has a fix",
            "vulnerabilities now have a fix",
        ),
    );
    note(
        false,
        REASON_RESOLVED,
        &diff.resolved,
        plural(
            diff.resolved.len(),
            "vulnerability no longer reported (fixed or excepted)",
            "vulnerabilities no longer reported (fixed or excepted)",
        ),
    );
    notes
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// "CRITICAL CVE-1, CVE-2; HIGH CVE-3 and 4 more": at most [`MAX_IDS_NAMED`] per severity.
fn name_by_severity(list: &[Named]) -> String {
    let mut groups: Vec<(Severity, Vec<&str>)> = Vec::new();
    for n in list {
        match groups.last_mut() {
            Some((s, ids)) if *s == n.severity => ids.push(&n.id),
            _ => groups.push((n.severity, vec![n.id.as_str()])),
        }
    }
    groups
        .iter()
        .map(|(s, ids)| {
            let shown = ids
                .iter()
                .take(MAX_IDS_NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            match ids.len().saturating_sub(MAX_IDS_NAMED) {
                0 => format!("{} {shown}", s.as_str()),
                more => format!("{} {shown} and {more} more", s.as_str()),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn named(severity: Severity, id: &str) -> Named {
    Named {
        severity,
        id: id.to_string(),
    }
}

/// The severity a record is incomplete at, if it left IDs out: its lowest recorded one, or
/// the highest when it left every ID out (nothing of it can be compared: without this, a
/// record cut to nothing by a small budget read as "everything resolved", sim seed 115).
fn cut(record: &FindingRecord) -> Option<Severity> {
    if record.left_out <= 0 {
        return None;
    }
    Severity::ALL
        .into_iter()
        .find(|s| {
            record
                .ids
                .get(s.as_str())
                .is_some_and(|ids| !ids.is_empty())
        })
        .or(Some(Severity::Critical))
}

/// The record's IDs with their severity and whether they have a fix.
fn entries(record: &FindingRecord) -> BTreeMap<&str, (Severity, bool)> {
    let mut out = BTreeMap::new();
    for severity in Severity::ALL {
        for id in record.ids.get(severity.as_str()).into_iter().flatten() {
            out.insert(id.as_str(), (severity, false));
        }
    }
    for id in &record.fixable {
        if let Some(entry) = out.get_mut(id.as_str()) {
            entry.1 = true;
        }
    }
    out
}

#[cfg(test)]
#[path = "notice_tests.rs"]
mod tests;
