//! Deterministic timers: one deadline per key; the earliest fires first, ties by key order.

use std::collections::{BTreeMap, BTreeSet};

use super::index::PodKey;
use crate::time::Timestamp;

/// What a timer re-evaluates when it fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    /// Re-check a pod's settledness.
    Pod(PodKey),
    /// Re-sync a CIS's metadata and spec.
    Cis(String, String),
    /// Re-evaluate the scans of a digest.
    Digest(String),
    /// The end of a failed command's back-off: re-evaluate what its target belongs to. One key
    /// per target: several targets of one digest (the status writes of its CIS) fail at
    /// different times, and a shared key keeps only the earliest end.
    Retry(super::Target),
    /// The expiry of a vulnerability exception: the scans it applied to are written again.
    ExceptionExpiry(crate::exception::ExceptionKey),
    /// The exceptions' statuses are compared and written (`engine::exception_status`).
    ExceptionStatuses,
    /// The next workload may be told of changes (`engine::notices`).
    Notices,
}

/// A set of deadlines keyed by [`TimerKey`]; setting a key again keeps the earlier deadline.
#[derive(Debug, Default)]
pub struct Timers {
    by_time: BTreeSet<(Timestamp, TimerKey)>,
    by_key: BTreeMap<TimerKey, Timestamp>,
}

impl Timers {
    /// Arms `key` for `at`, unless it is already armed for an earlier time.
    pub fn arm(&mut self, key: TimerKey, at: Timestamp) {
        if let Some(existing) = self.by_key.get(&key) {
            if *existing <= at {
                return;
            }
            self.by_time.remove(&(*existing, key.clone()));
        }
        self.by_time.insert((at, key.clone()));
        self.by_key.insert(key, at);
    }

    /// Disarms `key`.
    pub fn disarm(&mut self, key: &TimerKey) {
        if let Some(at) = self.by_key.remove(key) {
            self.by_time.remove(&(at, key.clone()));
        }
    }

    /// Removes and returns every key due at `now`, earliest first.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Timestamp> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Number of armed timers.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no timer is armed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_wins_and_fires_in_order() {
        let mut t = Timers::default();
        t.arm(TimerKey::Digest("b".into()), Timestamp(30));
        t.arm(TimerKey::Digest("a".into()), Timestamp(20));
        t.arm(TimerKey::Digest("b".into()), Timestamp(10));
        t.arm(TimerKey::Digest("b".into()), Timestamp(40));
        assert_eq!(t.next(), Some(Timestamp(10)));
        assert_eq!(
            t.take_due(Timestamp(15)),
            vec![TimerKey::Digest("b".into())]
        );
        assert_eq!(t.take_due(Timestamp(15)), vec![]);
        assert_eq!(
            t.take_due(Timestamp(100)),
            vec![TimerKey::Digest("a".into())]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn disarm_removes_the_deadline() {
        let mut t = Timers::default();
        t.arm(TimerKey::Cis("ns".into(), "x".into()), Timestamp(5));
        t.disarm(&TimerKey::Cis("ns".into(), "x".into()));
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }
}
