//! The vulnerability exceptions the engine knows (issue 20): which apply to a CIS now, and which
//! scans a change of one concerns. Matching itself is `crate::exception`.
//!
//! A CIS shows its result with the exceptions that applied when its status was written
//! (`status.exceptionsFingerprint`); the fan-out writes the status again when the exceptions
//! that apply now differ. So a change here only has to make the concerned digests dirty: an
//! exception added, changed, deleted or expired reaches every CIS it applies to (or applied
//! to), without a rescan, and a change elsewhere writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tracked::{ObjectKind, Relists, StoreOp, Tracked, supersedes};
use crate::exception::{Exception, ExceptionKey, ScanSubject, VEX_CONFIG_MAP_LABEL, VexConfigMap};
use crate::port::{CisView, ExceptionView, StreamId, VexMapView, WatchEvent};
use crate::time::Timestamp;
use crate::vex::VexDocument;

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
///
/// An exception whose VEX document is in a ConfigMap holds the document as last observed
/// (resolved when either is observed), so the rest of the engine asks it like any other.
#[derive(Debug, Default)]
pub struct Exceptions {
    held: BTreeMap<ExceptionKey, Tracked<ExceptionView>>,
    /// The VEX ConfigMaps, by namespace and name.
    vex_maps: BTreeMap<(String, String), Tracked<VexMapView>>,
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
            StoreOp::Upsert(mut tracked) => {
                if let Ok(e) = &mut tracked.view.compiled {
                    resolve(&self.vex_maps, e);
                }
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

    /// Takes one watch event of the VEX ConfigMaps; returns the scans whose exceptions read a
    /// document that changed (appeared, changed, went).
    pub fn observe_vex_map(
        &mut self,
        relists: &mut Relists,
        stream: StreamId,
        event: WatchEvent<VexMapView>,
    ) -> Vec<Concerns> {
        let op = relists.watch_op(
            ObjectKind::VexMap,
            stream,
            &self.vex_maps,
            |v: &VexMapView| (v.namespace.clone(), v.name.clone()),
            event,
        );
        let touched: Vec<(String, String)> = match op {
            StoreOp::Upsert(tracked) => {
                let key = (tracked.view.namespace.clone(), tracked.view.name.clone());
                let held = self.vex_maps.get(&key).map(|t| &t.view);
                if !supersedes(held, &tracked.view) {
                    return Vec::new();
                }
                let same = held.is_some_and(|h| same_documents(h, &tracked.view));
                self.vex_maps.insert(key.clone(), tracked);
                if same { Vec::new() } else { vec![key] }
            }
            StoreOp::Remove(keys) => keys
                .into_iter()
                .filter(|k| self.vex_maps.remove(k).is_some())
                .collect(),
            StoreOp::Keep => Vec::new(),
        };
        let mut concerns = Vec::new();
        for (key, tracked) in &mut self.held {
            let Ok(e) = &mut tracked.view.compiled else {
                continue;
            };
            let reads = e.vex_config_map().is_some_and(|c| {
                touched
                    .iter()
                    .any(|(ns, name)| *ns == c.namespace && *name == c.name)
            });
            if reads {
                resolve(&self.vex_maps, e);
                concerns.push(Concerns::of(key));
            }
        }
        concerns
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

/// Gives `e` the document of its ConfigMap key as held now, or why there is none.
fn resolve(vex_maps: &BTreeMap<(String, String), Tracked<VexMapView>>, e: &mut Exception) {
    let Some(c) = e.vex_config_map() else {
        return;
    };
    let found = document(vex_maps, c);
    e.resolve_vex(found);
}

fn document(
    vex_maps: &BTreeMap<(String, String), Tracked<VexMapView>>,
    c: &VexConfigMap,
) -> Result<Arc<VexDocument>, String> {
    let map = vex_maps
        .get(&(c.namespace.clone(), c.name.clone()))
        .ok_or_else(|| {
            format!(
                "ConfigMap {}/{} not found: it must exist with the label {VEX_CONFIG_MAP_LABEL}: \"true\", in a namespace the operator watches or its own",
                c.namespace, c.name
            )
        })?;
    match map.view.documents.get(&c.key) {
        Some(Ok(d)) => Ok(Arc::clone(d)),
        Some(Err(why)) => Err(format!(
            "ConfigMap {}/{} key {}: {why}",
            c.namespace, c.name, c.key
        )),
        None => Err(format!(
            "ConfigMap {}/{} has no key {}",
            c.namespace, c.name, c.key
        )),
    }
}

/// Whether two versions of a ConfigMap hold the same documents (a label or annotation change
/// rewrites nothing).
fn same_documents(a: &VexMapView, b: &VexMapView) -> bool {
    a.uid == b.uid
        && a.documents.len() == b.documents.len()
        && a.documents
            .iter()
            .zip(&b.documents)
            .all(|((ka, da), (kb, db))| {
                ka == kb
                    && match (da, db) {
                        (Ok(x), Ok(y)) => x.hash() == y.hash(),
                        (Err(x), Err(y)) => x == y,
                        _ => false,
                    }
            })
}
