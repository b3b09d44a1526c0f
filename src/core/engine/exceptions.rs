//! The vulnerability exceptions the engine knows (issue 20): which apply to a CIS now, and which
//! scans a change of one concerns. Matching itself is `crate::exception`.
//!
//! A CIS shows its result with the exceptions that applied when its status was written
//! (`status.exceptionsFingerprint`); the fan-out writes the status again when the exceptions
//! that apply now differ. So a change here only has to make the concerned digests dirty: an
//! exception added, changed, deleted or expired reaches every CIS it applies to (or applied
//! to), without a rescan, and a change elsewhere writes nothing.

use std::collections::BTreeMap;

use super::tracked::{ObjectKind, Relists, StoreOp, Tracked, supersedes};
use crate::exception::{Exception, ExceptionKey, ScanSubject};
use crate::port::{CisView, ExceptionView, StreamId, WatchEvent};
use crate::time::Timestamp;

/// Which scans a change of exceptions concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concerns {
    /// The scans of one namespace (a `VulnerabilityException` lives there).
    Namespace(String),
    /// The scans of every namespace (a `ClusterVulnerabilityException`).
    All,
}

impl Concerns {
    fn of(key: &ExceptionKey) -> Concerns {
        match key {
            ExceptionKey::Namespaced { namespace, .. } => Concerns::Namespace(namespace.clone()),
            ExceptionKey::Cluster { .. } => Concerns::All,
        }
    }
}

/// What an expiry timer finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The exception expired: these scans are written again.
    Passed(Concerns),
    /// It was changed to expire later (the timer keeps the earliest deadline of a key, so the
    /// new one is armed now).
    Later(Timestamp),
    /// It is gone, or no longer expires.
    Gone,
}

/// The exceptions as last observed, by key: namespaced ones ordered by namespace and name,
/// then the cluster-scoped ones by name — the order in which a finding covered by several is
/// marked with the first.
#[derive(Debug, Default)]
pub struct Exceptions {
    held: BTreeMap<ExceptionKey, Tracked<ExceptionView>>,
}

impl Exceptions {
    /// Takes one watch event; returns what changed: the scans each added, changed or removed
    /// exception concerns, and the expiry of each one stored (for the caller's timers).
    pub fn observe(
        &mut self,
        relists: &mut Relists,
        stream: StreamId,
        event: WatchEvent<ExceptionView>,
    ) -> Vec<(Concerns, Option<(ExceptionKey, Timestamp)>)> {
        let op = relists.watch_op(
            ObjectKind::Exception,
            stream,
            &self.held,
            |v: &ExceptionView| v.key.clone(),
            event,
        );
        let mut changed = Vec::new();
        match op {
            StoreOp::Upsert(tracked) => {
                let key = tracked.view.key.clone();
                let held = self.held.get(&key).map(|t| &t.view);
                if !supersedes(held, &tracked.view) {
                    return changed;
                }
                // A relist delivers every object again: only a new version concerns scans.
                let same = held.is_some_and(|h| {
                    h.uid == tracked.view.uid && h.generation == tracked.view.generation
                });
                let expiry = tracked
                    .view
                    .compiled
                    .as_ref()
                    .ok()
                    .and_then(|e| e.expires)
                    .map(|at| (key.clone(), at));
                self.held.insert(key.clone(), tracked);
                if !same {
                    changed.push((Concerns::of(&key), expiry));
                }
            }
            StoreOp::Remove(keys) => {
                for key in keys {
                    if self.held.remove(&key).is_some() {
                        changed.push((Concerns::of(&key), None));
                    }
                }
            }
            StoreOp::Keep => {}
        }
        changed
    }

    /// Whether no exception is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The exceptions held, in key order.
    pub fn views(&self) -> impl Iterator<Item = &ExceptionView> {
        self.held.values().map(|t| &t.view)
    }

    /// What an expiry timer of `key` finds at `now`.
    pub fn expiry(&self, key: &ExceptionKey, now: Timestamp) -> Expiry {
        let Some(e) = self
            .held
            .get(key)
            .and_then(|t| t.view.compiled.as_ref().ok())
        else {
            return Expiry::Gone;
        };
        match e.expires {
            Some(at) if at > now => Expiry::Later(at),
            Some(_) => Expiry::Passed(Concerns::of(key)),
            None => Expiry::Gone,
        }
    }

    /// The exceptions in force at `now` that apply to the scan of `cis`, in marking order.
    pub fn applicable(&self, cis: &CisView, now: Timestamp) -> Vec<&Exception> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let subject = ScanSubject::of(&cis.namespace, &cis.spec, &cis.labels);
        let own = ExceptionKey::Namespaced {
            namespace: cis.namespace.clone(),
            name: String::new(),
        };
        let namespaced = self
            .held
            .range(own..)
            .take_while(|(k, _)| {
                matches!(k, ExceptionKey::Namespaced { namespace, .. } if *namespace == cis.namespace)
            });
        let cluster = self.held.range(
            ExceptionKey::Cluster {
                name: String::new(),
            }..,
        );
        namespaced
            .chain(cluster)
            .filter_map(|(_, t)| t.view.compiled.as_ref().ok())
            .filter(|e| e.in_force(now) && e.applies_to(&subject))
            .collect()
    }
}
