//! One discipline for the objects of every watched kind: what a watch event does to the objects
//! held of its kind, and when an object delivered under a name may replace the one held.
//!
//! Objects of one name are ordered by resourceVersion whatever their UID: a Delete at a later
//! resourceVersion than the held object removes it too (a watch that merged the events of one
//! name delivers only the Delete of the object that took the name last), an older object never
//! replaces a newer one (a stale read, or the answer to a write on an object deleted and
//! created again since). A relist forgets the objects it did not deliver again.

use std::collections::{BTreeMap, BTreeSet};

use crate::exception::ExceptionKey;
use crate::port::{
    CisView, ExceptionView, JobView, PodView, ScanPodView, StreamId, VexMapView, WatchEvent,
    WorkloadView,
};

/// An observed object with the watch stream that delivered it and the relist epoch it was last
/// seen in.
#[derive(Clone, Debug)]
pub struct Tracked<T> {
    /// The object.
    pub view: T,
    /// The stream that delivered it.
    pub stream: StreamId,
    /// Relist epoch of that stream when last delivered.
    pub epoch: u64,
}

/// Kinds of watched objects, for relist bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// Workload pods.
    Pod,
    /// Workload metadata.
    Workload,
    Cis,
    /// Scan Jobs.
    Job,
    /// Scan pods.
    ScanPod,
    /// Vulnerability exceptions.
    Exception,
    /// ConfigMaps holding VEX documents.
    VexMap,
}

/// The identity and version of a watched object.
pub trait Versioned {
    /// `metadata.uid`.
    fn uid(&self) -> &str;
    /// `metadata.resourceVersion`, when numeric.
    fn resource_version(&self) -> Option<u64>;
    /// `metadata.namespace`.
    fn namespace(&self) -> &str;
}

macro_rules! versioned {
    ($($view:ty),*) => {$(
        impl Versioned for $view {
            fn uid(&self) -> &str {
                &self.uid
            }
            fn resource_version(&self) -> Option<u64> {
                self.resource_version
            }
            fn namespace(&self) -> &str {
                &self.namespace
            }
        }
    )*};
}

versioned!(PodView, CisView, JobView, ScanPodView, VexMapView);

/// A cluster-scoped exception has no namespace (`""`).
impl Versioned for ExceptionView {
    fn uid(&self) -> &str {
        &self.uid
    }
    fn resource_version(&self) -> Option<u64> {
        self.resource_version
    }
    fn namespace(&self) -> &str {
        match &self.key {
            ExceptionKey::Namespaced { namespace, .. } => namespace,
            ExceptionKey::Cluster { .. } => "",
        }
    }
}

/// Workload metadata carries no resourceVersion (it is compared whole, see `pods`): only its
/// UID orders it.
impl Versioned for WorkloadView {
    fn uid(&self) -> &str {
        &self.uid
    }
    fn resource_version(&self) -> Option<u64> {
        None
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// What a store keeps per key, holding the tracked object.
pub trait Holds<V> {
    /// The tracked object.
    fn tracked(&self) -> &Tracked<V>;
}

impl<V> Holds<V> for Tracked<V> {
    fn tracked(&self) -> &Tracked<V> {
        self
    }
}

impl<V> Holds<V> for Box<Tracked<V>> {
    fn tracked(&self) -> &Tracked<V> {
        self
    }
}

/// Whether `incoming` may replace what is held under its name: nothing is held, or the held
/// object is not newer (by numeric resourceVersion; unknown versions never block).
pub fn supersedes<V: Versioned>(held: Option<&V>, incoming: &V) -> bool {
    !matches!(
        (held.and_then(Versioned::resource_version), incoming.resource_version()),
        (Some(h), Some(i)) if i < h
    )
}

/// Whether a Delete of `deleted` removes `held`, the object held under its name: the same
/// object, or an older one of the name (see the module doc); a late Delete of a predecessor
/// removes nothing.
pub fn removed_by_delete<V: Versioned>(held: &V, deleted: &V) -> bool {
    held.uid() == deleted.uid()
        || matches!(
            (held.resource_version(), deleted.resource_version()),
            (Some(h), Some(d)) if d > h
        )
}

/// What the store of a kind must do for one watch event.
#[derive(Debug)]
pub enum StoreOp<K, V> {
    /// Store this object (the kind's upsert checks [`supersedes`]).
    Upsert(Tracked<V>),
    /// Forget these objects.
    Remove(Vec<K>),
    /// Nothing changes.
    Keep,
}

impl<K, V> StoreOp<K, V> {
    /// Carries the op out on `target`: `upsert` stores an object, `remove` forgets each key.
    pub fn apply<T>(
        self,
        target: &mut T,
        upsert: impl FnOnce(&mut T, Tracked<V>),
        mut remove: impl FnMut(&mut T, &K),
    ) {
        match self {
            StoreOp::Upsert(tracked) => upsert(target, tracked),
            StoreOp::Remove(keys) => {
                for key in &keys {
                    remove(target, key);
                }
            }
            StoreOp::Keep => {}
        }
    }
}

/// The relist epochs of the watch streams, and which stream delivers each kind where.
#[derive(Debug, Default)]
pub struct Relists {
    /// Current relist epoch per stream (bumped at `InitStarted`).
    epochs: BTreeMap<(ObjectKind, StreamId), u64>,
    /// Streams that deliver each kind.
    kind_streams: BTreeMap<ObjectKind, BTreeSet<StreamId>>,
    /// Per kind and namespace, the stream that last delivered an object there (only for the
    /// kinds whose objects also come from command outcomes, see [`Relists::home`]).
    ns_streams: BTreeMap<(ObjectKind, String), StreamId>,
}

impl Relists {
    /// Turns a watch event of `kind` from `stream` into what the store `held` (keyed by
    /// `key_of`) must do.
    pub fn watch_op<K, E, V>(
        &mut self,
        kind: ObjectKind,
        stream: StreamId,
        held: &BTreeMap<K, E>,
        key_of: impl Fn(&V) -> K,
        event: WatchEvent<V>,
    ) -> StoreOp<K, V>
    where
        K: Ord + Clone,
        E: Holds<V>,
        V: Versioned,
    {
        match event {
            WatchEvent::Apply(view) | WatchEvent::InitApply(view) => {
                self.kind_streams.entry(kind).or_default().insert(stream);
                if kind.arrives_in_outcomes() {
                    self.saw(kind, stream, view.namespace());
                }
                StoreOp::Upsert(Tracked {
                    view,
                    stream,
                    epoch: self.epoch(kind, stream),
                })
            }
            WatchEvent::Delete(view) => {
                let key = key_of(&view);
                match held.get(&key) {
                    Some(e) if removed_by_delete(&e.tracked().view, &view) => {
                        StoreOp::Remove(vec![key])
                    }
                    _ => StoreOp::Keep,
                }
            }
            WatchEvent::InitStarted => {
                self.kind_streams.entry(kind).or_default().insert(stream);
                *self.epochs.entry((kind, stream)).or_default() += 1;
                StoreOp::Keep
            }
            WatchEvent::InitDone => {
                let epoch = self.epoch(kind, stream);
                let gone: Vec<K> = held
                    .iter()
                    .filter(|(_, e)| e.tracked().stream == stream && e.tracked().epoch != epoch)
                    .map(|(k, _)| k.clone())
                    .collect();
                if gone.is_empty() {
                    StoreOp::Keep
                } else {
                    StoreOp::Remove(gone)
                }
            }
        }
    }

    /// Notes that `stream` delivered an object of `kind` in `namespace`.
    fn saw(&mut self, kind: ObjectKind, stream: StreamId, namespace: &str) {
        if self
            .ns_streams
            .get(&(kind, namespace.to_string()))
            .is_none_or(|s| *s != stream)
        {
            self.ns_streams
                .insert((kind, namespace.to_string()), stream);
        }
    }

    /// The stream (and its current epoch) an object learned from a command's outcome belongs
    /// to, so that a later relist of that stream forgets it when it is gone: the stream that
    /// delivered this kind in this namespace, else the only stream of the kind.
    pub fn home(&self, kind: ObjectKind, namespace: &str) -> (StreamId, u64) {
        let stream = self
            .ns_streams
            .get(&(kind, namespace.to_string()))
            .copied()
            .or_else(|| {
                let streams = self.kind_streams.get(&kind)?;
                if streams.len() == 1 {
                    streams.first().copied()
                } else {
                    None
                }
            });
        match stream {
            Some(s) => (s, self.epoch(kind, s)),
            None => (StreamId::default(), 0),
        }
    }

    /// Relist epoch of `stream`.
    pub fn epoch(&self, kind: ObjectKind, stream: StreamId) -> u64 {
        self.epochs
            .get(&(kind, stream))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::job;

    fn held(view: JobView, stream: StreamId, epoch: u64) -> BTreeMap<String, Tracked<JobView>> {
        BTreeMap::from([(
            view.name.clone(),
            Tracked {
                view,
                stream,
                epoch,
            },
        )])
    }

    fn versioned(uid: &str, rv: u64) -> JobView {
        let mut view = job("j", uid, "sha256:d");
        view.resource_version = Some(rv);
        view
    }

    fn removed<K: std::fmt::Debug, V>(op: StoreOp<K, V>) -> Vec<K> {
        match op {
            StoreOp::Remove(keys) => keys,
            StoreOp::Keep => Vec::new(),
            StoreOp::Upsert(_) => panic!("an upsert"),
        }
    }

    #[test]
    fn a_delete_removes_the_held_object_or_an_older_one_of_its_name() {
        let mut relists = Relists::default();
        let store = held(versioned("a", 10), StreamId(1), 0);
        let name = |v: &JobView| v.name.clone();
        let mut delete = |view| {
            removed(relists.watch_op(
                ObjectKind::Job,
                StreamId(1),
                &store,
                name,
                WatchEvent::Delete(view),
            ))
        };
        assert_eq!(delete(versioned("a", 11)), ["j"]);
        assert_eq!(delete(versioned("b", 20)), ["j"], "a later object's Delete");
        assert!(
            delete(versioned("c", 5)).is_empty(),
            "a predecessor's Delete"
        );
    }

    #[test]
    fn an_object_older_than_the_held_one_does_not_replace_it() {
        assert!(!supersedes(Some(&versioned("a", 5)), &versioned("a", 4)));
        assert!(!supersedes(Some(&versioned("a", 5)), &versioned("b", 4)));
        assert!(supersedes(Some(&versioned("a", 5)), &versioned("a", 5)));
        assert!(supersedes(Some(&versioned("a", 5)), &versioned("b", 6)));
        assert!(supersedes(None, &versioned("a", 1)));
        let mut unknown = versioned("a", 1);
        unknown.resource_version = None;
        assert!(supersedes(Some(&versioned("a", 5)), &unknown));
        assert!(supersedes(Some(&unknown), &versioned("a", 1)));
    }

    #[test]
    fn a_relist_forgets_what_its_stream_did_not_deliver_again() {
        let mut relists = Relists::default();
        let mut store = held(versioned("a", 10), StreamId(1), 0);
        let other = versioned("b", 11);
        let mut renamed = other.clone();
        renamed.name = "k".into();
        store.insert(
            "k".into(),
            Tracked {
                view: renamed,
                stream: StreamId(2),
                epoch: 0,
            },
        );
        let name = |v: &JobView| v.name.clone();
        let mut op = |event| relists.watch_op(ObjectKind::Job, StreamId(1), &store, name, event);
        assert!(matches!(op(WatchEvent::InitStarted), StoreOp::Keep));
        // Stream 2's object stays; stream 1's, not delivered again, goes.
        assert_eq!(removed(op(WatchEvent::InitDone)), ["j"]);
    }
}
