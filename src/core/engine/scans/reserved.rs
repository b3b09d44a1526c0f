//! Details bytes that status and Report writes may have stored although the engine's view of
//! their CIS does not show them yet: counted against the cluster-wide details budget on top of
//! what the views show.

use std::collections::BTreeMap;

use crate::engine::index::CisKey;
use crate::port::CisStatusView;
use crate::time::Timestamp;

/// What is reserved for one CIS.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Reservation {
    /// The write in flight (a Report, then the status that names it).
    in_flight: u64,
    /// A status write whose answer was lost (timeout, connection reset): it may be stored
    /// unseen, also after a retry was refused as stale (sim seed 7172).
    unconfirmed: Option<Unconfirmed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Unconfirmed {
    /// The result it wrote: (Job UID, `lastScanTime`); the view showing it confirms it.
    job_uid: String,
    at: Timestamp,
    bytes: u64,
}

impl Reservation {
    /// Only one status is stored per CIS: whichever of the two it turns out to be.
    fn counted(&self) -> u64 {
        let unconfirmed = self.unconfirmed.as_ref().map_or(0, |u| u.bytes);
        self.in_flight.max(unconfirmed)
    }
}

/// How a status write with details ended.
pub(super) enum WriteAnswer {
    /// Stored, and the answer is now the engine's view.
    Stored,
    /// Not answered: it may be stored. Names the result it wrote.
    Lost { job_uid: String, at: Timestamp },
    /// Refused, or a Report that will not be written.
    Refused,
}

/// The reservations by CIS, and their sum.
#[derive(Debug, Default)]
pub(super) struct Reserved {
    by_cis: BTreeMap<CisKey, Reservation>,
    total: u64,
}

impl Reserved {
    /// Applies `change` to `key`'s reservation, keeping the sum.
    fn update(&mut self, key: &CisKey, change: impl FnOnce(&mut Reservation)) {
        let mut r = self.by_cis.remove(key).unwrap_or_default();
        self.total = self.total.saturating_sub(r.counted());
        change(&mut r);
        self.total = self.total.saturating_add(r.counted());
        if r != Reservation::default() {
            self.by_cis.insert(key.clone(), r);
        }
    }

    /// `key`'s write in flight takes `bytes` (replacing the one before it).
    pub(super) fn set(&mut self, key: &CisKey, bytes: u64) {
        self.update(key, |r| r.in_flight = bytes);
    }

    /// `key`'s write in flight is over.
    pub(super) fn answered(&mut self, key: &CisKey, answer: WriteAnswer) {
        self.update(key, |r| match answer {
            WriteAnswer::Stored => *r = Reservation::default(),
            WriteAnswer::Lost { job_uid, at } => {
                // An older lost write may be the one stored: keep the larger.
                let bytes = r
                    .in_flight
                    .max(r.unconfirmed.as_ref().map_or(0, |u| u.bytes));
                r.unconfirmed = Some(Unconfirmed { job_uid, at, bytes });
                r.in_flight = 0;
            }
            WriteAnswer::Refused => r.in_flight = 0,
        });
    }

    /// The engine's view of `key` now shows `status`: a lost write it shows is counted there.
    pub(super) fn seen(&mut self, key: &CisKey, status: &CisStatusView) {
        let shown = self
            .by_cis
            .get(key)
            .and_then(|r| r.unconfirmed.as_ref())
            .is_some_and(|u| {
                status.last_scan_job_uid.as_deref() == Some(u.job_uid.as_str())
                    && status.last_scan_time == Some(u.at)
            });
        if shown {
            self.update(key, |r| r.unconfirmed = None);
        }
    }

    /// The CIS is gone.
    pub(super) fn forget(&mut self, key: &CisKey) {
        self.update(key, |r| *r = Reservation::default());
    }

    /// Bytes counted for `key`.
    pub(super) fn of(&self, key: &CisKey) -> u64 {
        self.by_cis.get(key).map_or(0, Reservation::counted)
    }

    /// Bytes of `key`'s write in flight.
    pub(super) fn in_flight(&self, key: &CisKey) -> u64 {
        self.by_cis.get(key).map_or(0, |r| r.in_flight)
    }

    /// Bytes counted for all CIS.
    pub(super) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> CisKey {
        CisKey::new("ns", name)
    }

    fn showing(job: &str, at: Timestamp) -> CisStatusView {
        CisStatusView {
            last_scan_job_uid: Some(job.into()),
            last_scan_time: Some(at),
            ..CisStatusView::default()
        }
    }

    #[test]
    fn a_lost_write_stays_counted_through_a_refused_retry_until_the_view_shows_it() {
        let (a, t) = (key("a"), Timestamp::from_secs(100));
        let mut r = Reserved::default();
        r.set(&a, 4_000);
        r.answered(
            &a,
            WriteAnswer::Lost {
                job_uid: "job-1".into(),
                at: t,
            },
        );
        assert_eq!(r.total(), 4_000, "it may be stored");
        // The retry, decided on a stale view, is refused as a conflict.
        r.set(&a, 3_000);
        assert_eq!(r.of(&a), 4_000, "the larger of the two");
        r.answered(&a, WriteAnswer::Refused);
        assert_eq!(r.total(), 4_000);
        r.seen(&a, &showing("job-0", t));
        assert_eq!(r.total(), 4_000, "an older status confirms nothing");
        r.seen(&a, &showing("job-1", t));
        assert_eq!((r.total(), r.of(&a)), (0, 0));
    }

    #[test]
    fn a_stored_write_ends_the_reservation_and_each_cis_counts_once() {
        let (a, b) = (key("a"), key("b"));
        let mut r = Reserved::default();
        r.set(&a, 1_000);
        r.set(&b, 2_000);
        r.set(&a, 1_500);
        assert_eq!(r.total(), 3_500);
        assert_eq!(r.in_flight(&a), 1_500);
        r.answered(&a, WriteAnswer::Stored);
        assert_eq!(r.total(), 2_000);
        r.answered(
            &b,
            WriteAnswer::Lost {
                job_uid: "j".into(),
                at: Timestamp::from_secs(1),
            },
        );
        r.set(&b, 500);
        r.answered(&b, WriteAnswer::Stored);
        assert_eq!(r.total(), 0, "a stored retry replaces the lost write");
        r.set(&a, 10);
        r.forget(&a);
        assert_eq!(r.total(), 0);
    }
}
