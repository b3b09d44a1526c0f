//! Stage "pods": which CIS each workload pod is a member of, kept up to date as pods and workload
//! metadata change.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Engine;
use super::index::{CisKey, PodEntry, PodKey, pod_key};
use super::timers::TimerKey;
use super::tracked::supersedes;
use super::tracked::{ObjectKind, Tracked};
use crate::image_ref::DigestKind;
use crate::port::{EventNote, EventRegarding, PodView, StreamId, WatchEvent, WorkloadView};
use crate::status;
use crate::time::Timestamp;
use crate::workload::{
    ContainerProblem, Resolution, Settledness, WorkloadKey, is_managed_by_us, pod_targets,
    resolve_workload, settledness,
};

impl Engine {
    pub(super) fn observe_pod(
        &mut self,
        stream: StreamId,
        event: WatchEvent<PodView>,
        now: Timestamp,
    ) {
        let key_of = |p: &PodView| pod_key(&p.namespace, &p.name);
        let op =
            (self.index.relists).watch_op(ObjectKind::Pod, stream, &self.index.pods, key_of, event);
        op.apply(
            self,
            |e, mut tracked| {
                tracked.view = e.index.shared.pod(tracked.view);
                e.upsert_pod(tracked, now);
            },
            Self::remove_pod,
        );
    }

    pub(super) fn observe_workload(
        &mut self,
        stream: StreamId,
        event: WatchEvent<WorkloadView>,
        now: Timestamp,
    ) {
        let op = (self.index.relists).watch_op(
            ObjectKind::Workload,
            stream,
            &self.index.workloads,
            WorkloadKey::of_view,
            event,
        );
        op.apply(
            self,
            |e, tracked| e.upsert_workload(tracked, now),
            |e, key| e.remove_workload(key, now),
        );
    }

    fn upsert_workload(&mut self, tracked: Tracked<WorkloadView>, now: Timestamp) {
        let key = WorkloadKey::of_view(&tracked.view);
        let held = self.index.workloads.get(&key);
        if !supersedes(held.map(|t| &t.view), &tracked.view) {
            return;
        }
        let changed = held.is_none_or(|t| t.view != tracked.view);
        if let Some(old) = held
            && let Some(c) = &old.view.controller
            && let Some(set) = self.index.workloads_by_controller.get_mut(&c.uid)
        {
            set.remove(&key);
        }
        if let Some(c) = &tracked.view.controller {
            self.index
                .workloads_by_controller
                .entry(c.uid.clone())
                .or_default()
                .insert(key.clone());
        }
        let uid = tracked.view.uid.clone();
        self.index.workloads.insert(key.clone(), Box::new(tracked));
        if changed {
            self.reresolve(&key, &uid, now);
        }
    }

    fn remove_workload(&mut self, key: &WorkloadKey, now: Timestamp) {
        if let Some(old) = self.index.workloads.remove(key) {
            if let Some(c) = &old.view.controller
                && let Some(set) = self.index.workloads_by_controller.get_mut(&c.uid)
            {
                set.remove(key);
                if set.is_empty() {
                    self.index.workloads_by_controller.remove(&c.uid);
                }
            }
            self.reresolve(key, &old.view.uid, now);
        }
    }

    /// Re-evaluates every pod whose owner chain passes through the workload `key`/`uid`.
    fn reresolve(&mut self, key: &WorkloadKey, uid: &str, now: Timestamp) {
        let mut pods: BTreeSet<PodKey> = self
            .index
            .waiting_on
            .remove(key)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut uids = vec![uid.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(u) = uids.pop() {
            if !seen.insert(u.clone()) {
                continue;
            }
            if let Some(set) = self.index.pods_by_controller.get(&u) {
                pods.extend(set.iter().cloned());
            }
            if let Some(children) = self.index.workloads_by_controller.get(&u) {
                for child in children {
                    if let Some(t) = self.index.workloads.get(child) {
                        uids.push(t.view.uid.clone());
                    }
                }
            }
        }
        for pod in pods {
            if let Some(entry) = self.index.pods.get(&pod) {
                let tracked = entry.tracked.clone();
                self.upsert_pod(tracked, now);
            }
        }
    }

    /// A settle deadline passed: look at the pod again.
    pub(super) fn recheck_pod(&mut self, key: &PodKey, now: Timestamp) {
        if let Some(entry) = self.index.pods.get(key) {
            let tracked = entry.tracked.clone();
            self.upsert_pod(tracked, now);
        }
    }

    fn upsert_pod(&mut self, tracked: Tracked<PodView>, now: Timestamp) {
        let pod = &tracked.view;
        let key: PodKey = self.index.pod_key(pod);
        if !self.cfg.namespace_allowed(&pod.namespace) || is_managed_by_us(&pod.labels) {
            self.remove_pod(&key);
            return;
        }
        if !supersedes(self.index.pods.get(&key).map(|e| &e.tracked.view), pod) {
            return;
        }
        let previous = self.index.pods.get(&key);
        let previous_targets = previous.map(|e| e.targets.clone()).unwrap_or_default();
        let same_pod = previous.is_some_and(|e| e.tracked.view.uid == pod.uid);

        let (targets, settled, waiting_on) = if pod.deleting {
            (Arc::default(), false, None)
        } else {
            match resolve_workload(pod, &self.cfg.workload_kinds, &self.workload_views()) {
                Resolution::Resolved(workload) => {
                    let (targets, problems) = pod_targets(pod, &workload);
                    self.note_unscannable(&key, pod, problems);
                    let targets = self.index.shared.targets.share_vec(targets);
                    let settled = match settledness(
                        pod,
                        &self.cfg.skip_waiting_reasons,
                        self.cfg.pod_settle_timeout,
                        now,
                    ) {
                        Settledness::Settled => true,
                        Settledness::RecheckAt(at) => {
                            self.timers.arm(TimerKey::Pod(key.clone()), at);
                            false
                        }
                        Settledness::Unsettled => false,
                    };
                    (targets, settled, None)
                }
                // The metadata cache may lag the pod cache: keep what the pod contributed until
                // the chain can be followed again, so owner lists do not flap.
                Resolution::Waiting(wk) => {
                    let kept = if same_pod {
                        previous_targets.clone()
                    } else {
                        Arc::default()
                    };
                    (kept, false, Some(wk))
                }
                Resolution::Skipped(_) => (Arc::default(), false, None),
            }
        };

        // Indexes: controller, waiting, members.
        if let Some(prev) = self.index.pods.get(&key) {
            if let Some(c) = &prev.tracked.view.controller
                && let Some(set) = self.index.pods_by_controller.get_mut(&c.uid)
            {
                set.remove(&key);
                if set.is_empty() {
                    self.index.pods_by_controller.remove(&c.uid);
                }
            }
            if let Some(wk) = &prev.waiting_on
                && let Some(set) = self.index.waiting_on.get_mut(wk)
            {
                set.remove(&key);
                if set.is_empty() {
                    self.index.waiting_on.remove(wk);
                }
            }
        }
        if let Some(c) = &pod.controller {
            self.index
                .pods_by_controller
                .entry(c.uid.clone())
                .or_default()
                .insert(key.clone());
        }
        if let Some(wk) = &waiting_on {
            self.index
                .waiting_on
                .entry(wk.clone())
                .or_default()
                .insert(key.clone());
        }
        let old_keys: BTreeSet<CisKey> = previous_targets
            .iter()
            .map(|t| CisKey::new(&key.0, &t.cis_name))
            .collect();
        let new_keys: BTreeSet<CisKey> = targets
            .iter()
            .map(|t| CisKey::new(&key.0, &t.cis_name))
            .collect();
        for k in old_keys.difference(&new_keys) {
            if let Some(set) = self.index.members.get_mut(k) {
                set.remove(&key);
                if set.is_empty() {
                    self.index.members.remove(k);
                }
            }
        }
        for k in &new_keys {
            self.index
                .members
                .entry(k.clone())
                .or_default()
                .insert(key.clone());
        }
        for t in targets.iter() {
            match t.image.digest_kind {
                DigestKind::Registry => self.saw_digest(&t.image.digest, now),
                // Not waiting for a scan: the scan stage explains at once why there is none.
                DigestKind::LocalImageId => {
                    if self.scans.local_image_ids.insert(t.image.digest.clone()) {
                        self.scans.dirty.insert(t.image.digest.clone());
                    }
                }
            }
        }
        self.cis_sync
            .dirty
            .extend(old_keys.union(&new_keys).cloned());
        self.index.pods.insert(
            key,
            Box::new(PodEntry {
                tracked,
                targets,
                settled,
                waiting_on: waiting_on.map(Box::new),
            }),
        );
    }

    /// A container whose image reference cannot be understood gets no CIS; one Warning Event
    /// on its pod says so, when the pod first shows that problem (again after a restart: the
    /// event recorder counts repeats), so that it does not go unscanned unnoticed.
    fn note_unscannable(&mut self, key: &PodKey, pod: &PodView, problems: Vec<ContainerProblem>) {
        if problems.is_empty() {
            self.index.unscannable.remove(key);
            return;
        }
        let known = self
            .index
            .unscannable
            .get(key)
            .filter(|(uid, _)| *uid == pod.uid)
            .map(|(_, known)| known.as_slice())
            .unwrap_or_default();
        for problem in problems.iter().filter(|p| !known.contains(p)) {
            let note = format!(
                "container {} is not scanned: {}",
                problem.container, problem.error
            );
            self.pending_events.push_back(super::PendingEvent {
                regarding: EventRegarding::Pod,
                namespace: pod.namespace.to_string(),
                name: pod.name.to_string(),
                uid: pod.uid.to_string(),
                event: EventNote {
                    warning: true,
                    reason: status::REASON_UNSCANNABLE_IMAGE.to_string(),
                    note: crate::cis_status::bounded_message(&note, 1024),
                },
            });
        }
        self.index
            .unscannable
            .insert(key.clone(), (pod.uid.to_string(), problems));
    }

    fn remove_pod(&mut self, key: &PodKey) {
        let Some(entry) = self.index.pods.remove(key) else {
            return;
        };
        self.timers.disarm(&TimerKey::Pod(key.clone()));
        self.index.unscannable.remove(key);
        if let Some(c) = &entry.tracked.view.controller
            && let Some(set) = self.index.pods_by_controller.get_mut(&c.uid)
        {
            set.remove(key);
            if set.is_empty() {
                self.index.pods_by_controller.remove(&c.uid);
            }
        }
        if let Some(wk) = &entry.waiting_on
            && let Some(set) = self.index.waiting_on.get_mut(wk)
        {
            set.remove(key);
            if set.is_empty() {
                self.index.waiting_on.remove(wk);
            }
        }
        for t in entry.targets.iter() {
            let k = CisKey::new(&key.0, &t.cis_name);
            if let Some(set) = self.index.members.get_mut(&k) {
                set.remove(key);
                if set.is_empty() {
                    self.index.members.remove(&k);
                }
            }
            self.cis_sync.dirty.insert(k);
        }
    }

    /// The workload metadata without tracking info, for [`resolve_workload`].
    fn workload_views(&self) -> WorkloadLookup<'_> {
        WorkloadLookup(&self.index.workloads)
    }
}

/// Read-only view of the workload index by key.
pub struct WorkloadLookup<'a>(
    &'a std::collections::BTreeMap<WorkloadKey, Box<Tracked<WorkloadView>>>,
);

impl crate::workload::WorkloadSource for WorkloadLookup<'_> {
    fn workload(&self, key: &WorkloadKey) -> Option<&WorkloadView> {
        self.0.get(key).map(|t| &t.view)
    }
}
