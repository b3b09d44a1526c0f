//! The ledger of every version of every vulnerability exception the API server stored, which
//! the checks ask whether a finding marked in a status could have been covered when the write
//! was decided (S11).

use std::collections::BTreeMap;

use image_scanner_api::Vulnerability;
use image_scanner_core::exception::{Exception, ExceptionKey, ScanSubject};
use image_scanner_core::port::ExceptionView;
use image_scanner_core::time::Timestamp;

/// One stored version of an exception: when it was stored and until when.
#[derive(Clone, Debug)]
struct Version {
    from: i64,
    until: Option<i64>,
    compiled: Option<Exception>,
}

/// Every version of every exception the API server stored, by reference (`ns/name`,
/// `cluster/name`).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    versions: BTreeMap<String, Vec<Version>>,
}

impl Ledger {
    /// `view` is stored from `now` on (`None`: `key` is deleted).
    pub fn record(&mut self, key: &ExceptionKey, view: Option<&ExceptionView>, now: i64) {
        let list = self.versions.entry(key.reference()).or_default();
        if let Some(last) = list.last_mut()
            && last.until.is_none()
        {
            last.until = Some(now);
        }
        if let Some(view) = view {
            list.push(Version {
                from: now,
                until: None,
                compiled: view.compiled.as_ref().ok().cloned(),
            });
        }
    }

    /// Whether exception `reference` could have covered `finding` of `subject` for a write
    /// decided at `at` (simulation time) by an engine whose clock said `clock`: a version
    /// stored by then (an engine may still hold a deleted or replaced one) that covers it and
    /// is in force by that clock (an operator's expiries follow its own clock).
    pub fn may_mark(
        &self,
        reference: &str,
        finding: &Vulnerability,
        subject: &ScanSubject<'_>,
        (at, clock): (i64, Timestamp),
    ) -> bool {
        self.versions.get(reference).into_iter().flatten().any(|v| {
            v.from <= at
                && v.compiled.as_ref().is_some_and(|e| {
                    e.in_force(clock) && e.applies_to(subject) && e.covers(subject, finding)
                })
        })
    }
}
