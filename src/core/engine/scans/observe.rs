//! What the scans stage learns from watches: our Jobs, their pods, `BackOff` and `FailedCreate`
//! Events, and results already shown by CIS statuses (after a restart).

use super::*;
use crate::engine::tracked::{ObjectKind, Tracked};
use crate::engine::tracked::{StoreOp, supersedes};

impl ScanStage<'_> {
    pub(in crate::engine) fn observe_job(&mut self, stream: StreamId, event: WatchEvent<JobView>) {
        if let WatchEvent::Delete(job) = &event {
            self.index.deleted_jobs.insert(&job.uid, job.created);
        }
        let key_of = |j: &JobView| object_key(&j.namespace, &j.name);
        let op =
            (self.index.relists).watch_op(ObjectKind::Job, stream, &self.index.jobs, key_of, event);
        op.apply(self, Self::upsert_job, |e, key| e.remove_job(key));
    }

    pub(super) fn upsert_job(&mut self, tracked: Tracked<JobView>) {
        let key = object_key(&tracked.view.namespace, &tracked.view.name);
        if !supersedes(self.index.jobs.get(&key).map(|t| &t.view), &tracked.view) {
            return;
        }
        if let Some(d) = &tracked.view.digest {
            self.state.dirty.insert(d.clone());
            if let Some(scan) = self.state.digests.get_mut(d) {
                scan.uncertain_create = None;
            }
            self.state.uncertain_jobs.settle(d);
        }
        let freed = tracked.view.finished.is_some() || tracked.view.deleting;
        self.index.jobs.insert(key, tracked);
        if freed {
            self.state.wake_queue();
        }
    }

    pub(super) fn remove_job(&mut self, key: &str) {
        if let Some(old) = self.index.jobs.remove(key) {
            self.state.failure_logs.remove(&old.view.uid);
            self.index.job_rejections.remove(&old.view.uid);
            for target in [
                Target::Log(old.view.uid.clone()),
                Target::FailureLog(old.view.uid.clone()),
            ] {
                self.flights.forget(&target);
            }
            if let Some(d) = old.view.digest {
                self.state.dirty.insert(d);
            }
            self.state.wake_queue();
        }
    }

    pub(in crate::engine) fn observe_scan_pod(
        &mut self,
        stream: StreamId,
        event: WatchEvent<ScanPodView>,
    ) {
        let job_uid = match &event {
            WatchEvent::Apply(pod) | WatchEvent::InitApply(pod) | WatchEvent::Delete(pod) => {
                pod.job_uid.clone()
            }
            WatchEvent::InitStarted | WatchEvent::InitDone => None,
        };
        let key_of = |p: &ScanPodView| object_key(&p.namespace, &p.name);
        let op = (self.index.relists).watch_op(
            ObjectKind::ScanPod,
            stream,
            &self.index.scan_pods,
            key_of,
            event,
        );
        let touched = match op {
            StoreOp::Upsert(tracked) => {
                let key = key_of(&tracked.view);
                let held = self.index.scan_pods.get(&key).map(|t| &t.view);
                if supersedes(held, &tracked.view) {
                    self.index.scan_pods.insert(key, tracked);
                }
                job_uid
            }
            StoreOp::Remove(keys) => {
                for key in &keys {
                    self.index.scan_pods.remove(key);
                }
                // A relist's sweep touches no digest (as before); a Delete its Job's.
                job_uid
            }
            StoreOp::Keep => job_uid,
        };
        if let Some(d) =
            touched.and_then(|uid| self.index.job_by_uid(&uid).and_then(|j| j.digest.clone()))
        {
            self.state.dirty.insert(d);
        }
    }

    pub(in crate::engine) fn observe_back_off(&mut self, namespace: &str, pod_name: &str) {
        let digest = self
            .index
            .scan_pods
            .get(&object_key(namespace, pod_name))
            .and_then(|p| p.view.job_uid.clone())
            .and_then(|uid| self.index.job_by_uid(&uid).and_then(|j| j.digest.clone()));
        if let Some(d) = digest {
            self.state.dirty.insert(d);
        }
    }

    /// Remembers that the Job controller could not create the pod of one of our Jobs.
    pub(in crate::engine) fn observe_job_pod_rejected(
        &mut self,
        namespace: &str,
        job_name: &str,
        job_uid: &str,
        message: String,
    ) {
        let Some(digest) = self
            .index
            .job(namespace, job_name)
            .filter(|j| j.uid == job_uid && j.finished.is_none())
            .and_then(|j| j.digest.clone())
        else {
            return;
        };
        self.index
            .job_rejections
            .insert(job_uid.to_string(), message);
        self.state.dirty.insert(digest);
    }

    /// Learns the newest result of a digest from a CIS status written earlier (by us before a
    /// restart, by another replica, or by the Go operator). True when it became the newest.
    pub(in crate::engine) fn learn_result_from_status(&mut self, cis: &CisView) -> bool {
        let s = &cis.status;
        let (Some(job_uid), Some(at)) = (&s.last_scan_job_uid, s.last_scan_time) else {
            return false;
        };
        let seen = &mut self
            .state
            .digests
            .entry(cis.spec.digest.clone())
            .or_default()
            .seen_scan_at;
        *seen = (*seen).max(Some(at));
        let stalled = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True");
        let outcome = match stalled {
            None if s.last_successful_scan_time == Some(at) => ScanOutcome::Succeeded,
            Some(c) => ScanOutcome::Failed {
                reason: FailureReason::from_condition_reason(&c.reason),
                message: c.message.clone(),
            },
            None => return false,
        };
        let job_created = self.index.job_created(job_uid);
        let scan = self
            .state
            .digests
            .entry(cis.spec.digest.clone())
            .or_default();
        let newer = match &scan.latest {
            None => true,
            Some(l) if l.job_uid == *job_uid => at > l.at,
            Some(l) => l.is_older_than(job_created, at),
        };
        if newer {
            let job_created = job_created.or_else(|| {
                scan.latest
                    .as_ref()
                    .filter(|l| l.job_uid == *job_uid)
                    .and_then(|l| l.job_created)
            });
            scan.latest = Some(ScanResult {
                job_uid: job_uid.clone(),
                at,
                job_created,
                outcome,
            });
        }
        newer
    }

    /// Whether a CIS shows a newer result than `latest` (see [`ScanResult::is_older_than`]):
    /// never written back over.
    pub(in crate::engine) fn shows_newer_result(&self, cis: &CisView, latest: &ScanResult) -> bool {
        let s = &cis.status;
        let (Some(job_uid), Some(at)) = (&s.last_scan_job_uid, s.last_scan_time) else {
            return false;
        };
        if *job_uid == latest.job_uid {
            return at > latest.at;
        }
        let created = self.index.job_created(job_uid);
        latest.is_older_than(created, at)
    }
}
