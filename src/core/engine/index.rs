//! The engine's compact picture of the cluster, plus the derived indexes decisions need.
//!
//! Every map is a `BTreeMap` so iteration order, and thus every decision, is deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::core::port::{CisView, JobView, PodView, ScanPodView, StreamId, WorkloadView};
use crate::core::workload::{PodTarget, WorkloadKey};

/// Namespace and name of a CIS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CisKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl CisKey {
    /// Builds a key.
    pub fn new(namespace: &str, name: &str) -> CisKey {
        CisKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for CisKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Namespace and name of a pod.
pub type PodKey = (String, String);

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

/// A workload pod and what it contributes.
#[derive(Clone, Debug)]
pub struct PodEntry {
    /// The pod.
    pub tracked: Tracked<PodView>,
    /// CIS this pod is a member of (one per container with a digest). Shared: the replicas of a
    /// workload have the same list (see [`Index::intern_targets`]).
    pub targets: Arc<[PodTarget]>,
    /// Whether the pod is settled (may cause CIS creation).
    pub settled: bool,
    /// Workload object the owner chain is waiting for.
    pub waiting_on: Option<WorkloadKey>,
}

/// The index.
#[derive(Debug, Default)]
pub struct Index {
    /// Workload pods in scanned namespaces.
    pub pods: BTreeMap<PodKey, PodEntry>,
    /// Metadata of workload objects.
    pub workloads: BTreeMap<WorkloadKey, Tracked<WorkloadView>>,
    /// CIS objects.
    pub cis: BTreeMap<CisKey, Tracked<CisView>>,
    /// Our scan Jobs by name.
    pub jobs: BTreeMap<String, Tracked<JobView>>,
    /// Pods of our scan Jobs by name.
    pub scan_pods: BTreeMap<String, Tracked<ScanPodView>>,
    /// Current relist epoch per stream (bumped at `InitStarted`).
    pub epochs: BTreeMap<(ObjectKind, StreamId), u64>,
    /// Pods that map to each CIS name.
    pub members: BTreeMap<CisKey, BTreeSet<PodKey>>,
    /// Pods whose owner chain waits for a workload object.
    pub waiting_on: BTreeMap<WorkloadKey, BTreeSet<PodKey>>,
    /// Pods by the UID of their controller.
    pub pods_by_controller: BTreeMap<String, BTreeSet<PodKey>>,
    /// Workload objects by the UID of their controller.
    pub workloads_by_controller: BTreeMap<String, BTreeSet<WorkloadKey>>,
    /// CIS by `spec.digest`.
    pub cis_by_digest: BTreeMap<String, BTreeSet<CisKey>>,
    /// Streams that deliver each kind.
    pub kind_streams: BTreeMap<ObjectKind, BTreeSet<StreamId>>,
    /// Per kind and namespace, the stream that last delivered an object there.
    pub ns_streams: BTreeMap<(ObjectKind, String), StreamId>,
    /// Distinct target lists of pods, shared between the pods that have them.
    pub target_lists: BTreeSet<Arc<[PodTarget]>>,
    /// Size of `target_lists` at which unused lists are swept out.
    pub target_lists_sweep_at: usize,
}

/// Kinds of watched objects, for relist bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// Workload pods.
    Pod,
    /// Workload metadata.
    Workload,
    /// CIS.
    Cis,
    /// Scan Jobs.
    Job,
    /// Scan pods.
    ScanPod,
}

impl Index {
    /// The shared copy of a pod's target list. Replicas of one workload map to the same CIS, so
    /// at 10,000 pods this keeps one list per workload instead of one per pod (about 12 MiB;
    /// docs/performance.md). Lists no pod uses any more are swept out when the set has doubled
    /// since the last sweep, so the cost stays amortised O(log n) per call.
    pub fn intern_targets(&mut self, targets: Vec<PodTarget>) -> Arc<[PodTarget]> {
        if let Some(shared) = self.target_lists.get(targets.as_slice()) {
            return shared.clone();
        }
        if self.target_lists.len() >= self.target_lists_sweep_at {
            // Only the set holds a list nobody else references.
            self.target_lists.retain(|list| Arc::strong_count(list) > 1);
            self.target_lists_sweep_at = (self.target_lists.len() * 2).max(1024);
        }
        let shared: Arc<[PodTarget]> = targets.into();
        self.target_lists.insert(shared.clone());
        shared
    }

    /// Starts a relist of `stream`: objects not delivered again before `InitDone` are gone.
    pub fn begin_relist(&mut self, kind: ObjectKind, stream: StreamId) -> u64 {
        self.kind_streams.entry(kind).or_default().insert(stream);
        let epoch = self.epochs.entry((kind, stream)).or_default();
        *epoch += 1;
        *epoch
    }

    /// Notes that `stream` delivered an object of `kind` in `namespace`.
    pub fn saw(&mut self, kind: ObjectKind, stream: StreamId, namespace: &str) {
        self.kind_streams.entry(kind).or_default().insert(stream);
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

    /// Whether a re-delivered object is older than what we hold (a stale read).
    pub fn is_stale(held: Option<u64>, incoming: Option<u64>) -> bool {
        matches!((held, incoming), (Some(h), Some(i)) if i < h)
    }

    /// Records the digest of a CIS in the digest index.
    pub fn index_cis_digest(&mut self, key: &CisKey, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        if let Some(d) = old
            && let Some(set) = self.cis_by_digest.get_mut(d)
        {
            set.remove(key);
            if set.is_empty() {
                self.cis_by_digest.remove(d);
            }
        }
        if let Some(d) = new {
            self.cis_by_digest
                .entry(d.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    /// Jobs that are neither finished nor being deleted.
    pub fn active_job_count(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.view.finished.is_none() && !j.view.deleting)
            .count()
    }

    /// Digests that have Jobs.
    pub fn job_digests(&self) -> BTreeSet<String> {
        self.jobs
            .values()
            .filter_map(|j| j.view.digest.clone())
            .collect()
    }

    /// A Job by UID.
    pub fn job_by_uid(&self, uid: &str) -> Option<&JobView> {
        self.jobs.values().map(|j| &j.view).find(|j| j.uid == uid)
    }

    /// Jobs of a digest, oldest first.
    pub fn jobs_of_digest(&self, digest: &str) -> Vec<&JobView> {
        let mut jobs: Vec<&JobView> = self
            .jobs
            .values()
            .map(|j| &j.view)
            .filter(|j| j.digest.as_deref() == Some(digest))
            .collect();
        jobs.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        jobs
    }

    /// Pods of a Job, oldest first, evicted ones left out (upstream fix 0.5.5).
    pub fn pods_of_job(&self, job_uid: &str) -> Vec<&ScanPodView> {
        let mut pods: Vec<&ScanPodView> = self
            .scan_pods
            .values()
            .map(|p| &p.view)
            .filter(|p| p.job_uid.as_deref() == Some(job_uid) && !p.evicted)
            .collect();
        pods.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::image_ref::ContainerImage;
    use crate::core::port::ContainerKind;
    use crate::core::workload::ResolvedWorkload;

    fn target(cis_name: &str) -> PodTarget {
        PodTarget {
            cis_name: cis_name.to_string(),
            workload: ResolvedWorkload {
                api_version: "apps/v1".into(),
                group: "apps".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "u1".into(),
                ignore_unfixed: false,
            },
            container: "app".into(),
            kind: ContainerKind::Regular,
            image: ContainerImage {
                name: "docker.io/library/nginx".into(),
                digest: "sha256:00".into(),
                tag: "1".into(),
            },
        }
    }

    #[test]
    fn equal_target_lists_are_shared_and_unused_ones_swept() {
        let mut index = Index::default();
        let a = index.intern_targets(vec![target("web-app")]);
        let b = index.intern_targets(vec![target("web-app")]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(index.target_lists.len(), 1);
        drop((a, b));
        // Fill up to the sweep threshold with lists still in use; the unused one goes.
        let kept: Vec<_> = (0..1024)
            .map(|i| index.intern_targets(vec![target(&format!("cis-{i}"))]))
            .collect();
        assert_eq!(index.target_lists.len(), 1024);
        assert!(!index.target_lists.contains([target("web-app")].as_slice()));
        assert_eq!(kept.len(), 1024);
    }
}
