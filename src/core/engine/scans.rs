//! Stage "scans": one scan per image digest, cluster-wide.
//!
//! A digest's scan result is shared by every CIS with that digest. For each digest the engine
//! keeps the newest result it knows (learned from a harvested Job, or read back from CIS
//! statuses after a restart) and drives, in this order:
//! 1. image-pull back-off of the running Job → delete the Job, record a failure;
//! 2. harvest: a finished Job newer than the known result → read its log, parse, record;
//! 3. fan-out: every CIS whose status does not show the newest result gets it written, filtered
//!    by its own `ignoreUnfixed`/`minSeverity` (the scan itself runs unfiltered);
//! 4. schedule: no usable result, or the result is older than the interval (plus a
//!    deterministic per-digest jitter), or a failure's retry time passed → queue a new Job;
//!    queued digests start while the active-Job limit allows, never-scanned first, then oldest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::index::{CisKey, object_key};
use super::placement::{self, Placement, PullFailure, classify_pull_failure};
use super::timers::TimerKey;
use super::{Engine, StatusDetails, Target};
use crate::cis_status as status;
use crate::crd::{Severity, Vulnerability};
use crate::naming::{scan_job_name, workload_scan_job_name};
use crate::port::{
    Action, ApiErrorKind, CisView, Command, EventNote, JobView, Outcome, PodView, PullCredentials,
    ScanPodView, StreamId, WatchEvent,
};
use crate::report::{ReportFormat, parse_report};
use crate::scan_job::{RequiredPlatform, SCAN_CONTAINER, ScanJobParams, build_scan_job};
use crate::time::Timestamp;

/// What became of a result's Report, until the status write that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReportFate {
    /// The API stored it: it holds the details.
    Written,
    /// Given up on (not permitted, CRD gone, repeated errors): the status must hold them.
    Skipped,
}

/// Reads of an empty failed-attempt log per Job at most (one per attempt: the backoff limit
/// of 3 plus the first).
const FAILURE_LOG_READS: u32 = 4;

/// The log of a failed attempt of a running Job.
#[derive(Debug, Default)]
pub(super) struct FailureLog {
    /// What was read last.
    text: String,
    /// How often it was read.
    reads: u32,
}
/// How much of a failed scan's log is read for the condition message.
const FAILED_LOG_BYTES: usize = 64 * 1024;
/// A finished Job whose pod is not in the cache yet gets this long before "no pods".
const POD_CACHE_GRACE: Duration = Duration::from_secs(10);
/// Wait before re-creating a Job whose name is still taken by a finished one being deleted.
const NAME_TAKEN_RETRY: Duration = Duration::from_secs(5);
/// How long a Job creation with an unknown result holds a slot of the active-Job limit (the
/// retry after the back-off, or the watch, settles it much sooner).
const UNCERTAIN_JOB_HOLD: Duration = Duration::from_secs(60);
/// Attempts to write one Report before the status goes ahead without it.
const MAX_REPORT_ATTEMPTS: u32 = 3;
/// Attempts to read one log before the scan counts as failed.
const MAX_LOG_ATTEMPTS: u32 = 5;

/// Why a scan failed, as shown in the `Stalled` condition's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// `Error`: the Job failed, the image could not be pulled, the log could not be read.
    Error,
    /// `ScanReportDecodeError`: the Job succeeded but its log is not a report.
    ReportDecodeError,
    /// `ImagePullUnauthorized`: the registry refused the scan pod's pull for credentials in
    /// every placement tried (`engine::placement`).
    PullUnauthorized,
    /// `ScanPodRejected`: the namespace refused the scan pod (Pod Security admission, quota,
    /// LimitRange) or the operator may not create Jobs there.
    ScanPodRejected,
}

impl FailureReason {
    /// The `Stalled` condition's reason.
    pub fn condition_reason(&self) -> &'static str {
        match self {
            FailureReason::Error => status::REASON_ERROR,
            FailureReason::ReportDecodeError => status::REASON_DECODE_ERROR,
            FailureReason::PullUnauthorized => status::REASON_PULL_UNAUTHORIZED,
            FailureReason::ScanPodRejected => status::REASON_SCAN_POD_REJECTED,
        }
    }

    /// The reason a `Stalled` condition names (anything unknown is an `Error`).
    fn from_condition_reason(reason: &str) -> FailureReason {
        [
            FailureReason::ReportDecodeError,
            FailureReason::PullUnauthorized,
            FailureReason::ScanPodRejected,
        ]
        .into_iter()
        .find(|r| r.condition_reason() == reason)
        .unwrap_or(FailureReason::Error)
    }
}

/// The outcome of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The report is in the cache (or was, before a restart).
    Succeeded,
    /// The scan failed.
    Failed {
        /// Condition reason.
        reason: FailureReason,
        /// Condition message (bounded when written).
        message: String,
    },
}

/// The newest known scan of a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// UID of the Job that produced it.
    pub job_uid: String,
    /// When it was recorded (whole seconds; written as `lastScanTime`).
    pub at: Timestamp,
    /// What it said.
    pub outcome: ScanOutcome,
}

/// Per-digest scan bookkeeping.
#[derive(Clone, Debug, Default)]
pub struct DigestScan {
    /// The newest result known.
    pub latest: Option<ScanResult>,
    /// Consecutive failures (memory only; after a restart the retry starts from the base).
    pub failures: u32,
    /// A CIS to tell that a Job was created for it: (CIS, Job name).
    pub announce: Option<(CisKey, String)>,
    /// Queue position while waiting for a free Job slot.
    pub queued: Option<QueueKey>,
    /// The placements that failed in this round of tries (`engine::placement`), in order.
    pub round: Vec<PlacementFailure>,
    /// The placement of the last successful scan: tried first next time.
    pub worked: Option<Placement>,
    /// The placement of a Job creation whose result is unknown (it may exist unseen): the
    /// retry creates the same Job, so that it answers "already exists" instead of a second Job
    /// starting elsewhere. Cleared when a Job of the digest is seen or created.
    pub uncertain_create: Option<Placement>,
    /// The newest `lastScanTime` a CIS of the digest shows, also when its outcome is unknown
    /// (a newer scan announced since): a finished Job that ended before it is an older
    /// result, never harvested as the newest (several Jobs of a digest may coexist, in
    /// different namespaces).
    pub seen_scan_at: Option<Timestamp>,
}

/// A placement that failed in a way another placement may fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementFailure {
    /// Where the Job was.
    pub placement: Placement,
    /// Why it failed.
    pub reason: FailureReason,
    /// What the kubelet or the API server said.
    pub message: String,
    /// The Job's UID (empty when it could not be created).
    pub job_uid: String,
}

/// Order of the scan queue: never-scanned first, then the oldest result, then by digest.
pub type QueueKey = (bool, Timestamp, String);

/// A log being read.
#[derive(Clone, Debug)]
pub struct Harvest {
    digest: String,
    job_name: String,
    succeeded: bool,
    /// Only fill the cache for a result already recorded (a later CIS needs the details).
    refetch: bool,
    /// What to say if the log cannot be read or is empty (failed Jobs).
    fallback: String,
}

impl Engine {
    pub(super) fn observe_job(&mut self, stream: StreamId, event: WatchEvent<JobView>) {
        use super::index::{ObjectKind, Tracked};
        match event {
            WatchEvent::Apply(job) | WatchEvent::InitApply(job) => {
                self.index.saw(ObjectKind::Job, stream, "");
                let epoch = self.index.epoch(ObjectKind::Job, stream);
                self.upsert_job(Tracked {
                    view: job,
                    stream,
                    epoch,
                });
            }
            WatchEvent::Delete(job) => {
                self.index.deleted_jobs.insert(&job.uid);
                let key = object_key(&job.namespace, &job.name);
                if self
                    .index
                    .jobs
                    .get(&key)
                    .is_some_and(|t| t.view.uid == job.uid)
                {
                    self.remove_job(&key);
                }
            }
            WatchEvent::InitStarted => {
                self.index.begin_relist(ObjectKind::Job, stream);
            }
            WatchEvent::InitDone => {
                let epoch = self.index.epoch(ObjectKind::Job, stream);
                let gone: Vec<String> = self
                    .index
                    .jobs
                    .iter()
                    .filter(|(_, t)| t.stream == stream && t.epoch != epoch)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    self.remove_job(&key);
                }
            }
        }
    }

    fn upsert_job(&mut self, tracked: super::index::Tracked<JobView>) {
        let key = object_key(&tracked.view.namespace, &tracked.view.name);
        if let Some(old) = self.index.jobs.get(&key)
            && old.view.uid == tracked.view.uid
            && super::index::Index::is_stale(
                old.view.resource_version,
                tracked.view.resource_version,
            )
        {
            return;
        }
        if let Some(d) = &tracked.view.digest {
            self.dirty_digests.insert(d.clone());
            if let Some(scan) = self.digests.get_mut(d) {
                scan.uncertain_create = None;
            }
            self.uncertain_jobs.remove(d);
        }
        let freed = tracked.view.finished.is_some() || tracked.view.deleting;
        self.index.jobs.insert(key, tracked);
        if freed {
            self.wake_queue();
        }
    }

    fn remove_job(&mut self, key: &str) {
        if let Some(old) = self.index.jobs.remove(key) {
            self.failure_logs.remove(&old.view.uid);
            self.index.job_rejections.remove(&old.view.uid);
            for target in [
                Target::Log(old.view.uid.clone()),
                Target::FailureLog(old.view.uid.clone()),
            ] {
                self.attempts.remove(&target);
                self.retry_at.remove(&target);
            }
            if let Some(d) = old.view.digest {
                self.dirty_digests.insert(d);
            }
            self.wake_queue();
        }
    }

    pub(super) fn observe_scan_pod(&mut self, stream: StreamId, event: WatchEvent<ScanPodView>) {
        use super::index::{ObjectKind, Tracked};
        let touched = match event {
            WatchEvent::Apply(pod) | WatchEvent::InitApply(pod) => {
                let epoch = self.index.epoch(ObjectKind::ScanPod, stream);
                let job = pod.job_uid.clone();
                let key = object_key(&pod.namespace, &pod.name);
                let stale = self.index.scan_pods.get(&key).is_some_and(|old| {
                    old.view.uid == pod.uid
                        && super::index::Index::is_stale(
                            old.view.resource_version,
                            pod.resource_version,
                        )
                });
                if !stale {
                    self.index.scan_pods.insert(
                        key,
                        Tracked {
                            view: pod,
                            stream,
                            epoch,
                        },
                    );
                }
                job
            }
            WatchEvent::Delete(pod) => {
                let key = object_key(&pod.namespace, &pod.name);
                if self
                    .index
                    .scan_pods
                    .get(&key)
                    .is_some_and(|t| t.view.uid == pod.uid)
                {
                    self.index.scan_pods.remove(&key);
                }
                pod.job_uid
            }
            WatchEvent::InitStarted => {
                self.index.begin_relist(ObjectKind::ScanPod, stream);
                None
            }
            WatchEvent::InitDone => {
                let epoch = self.index.epoch(ObjectKind::ScanPod, stream);
                self.index
                    .scan_pods
                    .retain(|_, t| t.stream != stream || t.epoch == epoch);
                None
            }
        };
        if let Some(d) =
            touched.and_then(|uid| self.index.job_by_uid(&uid).and_then(|j| j.digest.clone()))
        {
            self.dirty_digests.insert(d);
        }
    }

    pub(super) fn observe_back_off(&mut self, namespace: &str, pod_name: &str) {
        let digest = self
            .index
            .scan_pods
            .get(&object_key(namespace, pod_name))
            .and_then(|p| p.view.job_uid.clone())
            .and_then(|uid| self.index.job_by_uid(&uid).and_then(|j| j.digest.clone()));
        if let Some(d) = digest {
            self.dirty_digests.insert(d);
        }
    }

    /// Remembers that the Job controller could not create the pod of one of our Jobs.
    pub(super) fn observe_job_pod_rejected(
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
        self.dirty_digests.insert(digest);
    }

    /// Learns the newest result of a digest from a CIS status written earlier (by us before a
    /// restart, by another replica, or by the Go operator).
    pub(super) fn learn_result_from_status(&mut self, cis: &CisView) {
        let s = &cis.status;
        let (Some(job_uid), Some(at)) = (&s.last_scan_job_uid, s.last_scan_time) else {
            return;
        };
        let seen = &mut self
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
            None => return,
        };
        let scan = self.digests.entry(cis.spec.digest.clone()).or_default();
        if scan.latest.as_ref().is_none_or(|l| at > l.at) {
            scan.latest = Some(ScanResult {
                job_uid: job_uid.clone(),
                at,
                outcome,
            });
        }
    }

    fn wake_queue(&mut self) {
        let queued: Vec<String> = self
            .digests
            .iter()
            .filter(|(_, s)| s.queued.is_some())
            .map(|(d, _)| d.clone())
            .collect();
        self.dirty_digests.extend(queued);
    }

    pub(super) fn scan_queue_len(&self) -> usize {
        self.digests.values().filter(|s| s.queued.is_some()).count()
    }

    pub(super) fn sync_dirty_digests(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        use std::ops::Bound::{Excluded, Unbounded};
        // One key at a time (see sync_dirty_cis): no copy of the whole dirty set per poll.
        let mut next = self.dirty_digests.first().cloned();
        while let Some(d) = next {
            if !self.capacity_left() {
                return;
            }
            if self.sync_digest(&d, now, out) {
                self.dirty_digests.remove(&d);
            }
            next = self
                .dirty_digests
                .range::<String, _>((Excluded(&d), Unbounded))
                .next()
                .cloned();
        }
    }

    /// The CIS of a digest that take part in scans: existing, not being deleted, scanned
    /// namespace.
    fn live_cis_of(&self, digest: &str) -> Vec<CisKey> {
        self.index
            .cis_by_digest
            .get(digest)
            .map(|set| {
                set.iter()
                    .filter(|k| self.cfg.namespace_allowed(&k.namespace))
                    .filter(|k| self.index.cis.get(*k).is_some_and(|t| !t.view.deleting))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns false when the digest must stay dirty (blocked by capacity).
    fn sync_digest(&mut self, digest: &str, now: Timestamp, out: &mut Vec<Command>) -> bool {
        let cis_keys = self.live_cis_of(digest);
        let jobs: Vec<JobView> = self
            .index
            .jobs_of_digest(digest)
            .into_iter()
            .cloned()
            .collect();
        let active = jobs
            .iter()
            .find(|j| j.finished.is_none() && !j.deleting)
            .cloned();

        // 1. Image-pull back-off of the running Job, or a namespace that refuses its pod: when
        // another placement may do better (credentials, admission), it is tried next.
        if let Some(job) = &active {
            let failure = if let Some(message) = self.pull_back_off(job) {
                Some(match classify_pull_failure(&message) {
                    PullFailure::Credentials => (FailureReason::PullUnauthorized, message, true),
                    PullFailure::Other => (FailureReason::Error, message, false),
                })
            } else {
                self.index.job_rejections.get(&job.uid).map(|message| {
                    let message = format!("the scan pod was not created: {message}");
                    (FailureReason::ScanPodRejected, message, true)
                })
            };
            if let Some((reason, message, placement_related)) = failure {
                let already = self.latest(digest).is_some_and(|l| l.job_uid == job.uid);
                if placement_related {
                    let placement = self.placement_of(job);
                    self.placement_failed(digest, placement, &job.uid, reason, message, now);
                } else if !already {
                    self.record_failure(digest, &job.uid, reason, message, now);
                }
                let target = Target::DeleteJob(object_key(&job.namespace, &job.name));
                let action = Action::DeleteJob {
                    namespace: job.namespace.clone(),
                    name: job.name.clone(),
                    uid: job.uid.clone(),
                };
                if !self.issue(target, action, now, out).settled() {
                    return false;
                }
            }
        }

        // 1a. A local image ID is no registry digest: a Job could never run
        // `name@<image ID>` (nothing pulls or resolves it), so there is none, and every CIS of
        // the digest says why instead. A Job of it from before (the Go operator scanned such
        // digests) ends by its pull back-off above or its deadline.
        if self.local_image_ids.contains(digest) {
            if let Some(scan) = self.digests.get_mut(digest) {
                scan.queued = None;
                scan.announce = None;
            }
            for key in &cis_keys {
                if !self.explain_local_image(key, now, out) {
                    return false;
                }
            }
            return true;
        }

        // 1b. A failed attempt of the running Job: keep its log for the condition message,
        // because Kubernetes deletes the pod when the Job finally fails.
        if let Some(job) = &active
            && !self.prefetch_failure_log(job, now, out)
        {
            return false;
        }

        // 2. Harvest the newest finished Job if it is newer than what we know. Until that
        // result is recorded no new scan starts (its name may still be taken, and its result
        // may be all we need).
        let mut harvest_pending = false;
        if let Some(job) = jobs
            .iter()
            .rev()
            .find(|j| j.finished.is_some() && !j.deleting)
        {
            let seen = self.digests.get(digest).and_then(|s| s.seen_scan_at);
            let after_seen = job
                .finished
                .as_ref()
                .is_some_and(|f| seen.is_none_or(|at| f.at > at));
            let newer = match self.latest(digest) {
                None => after_seen,
                Some(l) => {
                    l.job_uid != job.uid
                        && job.finished.as_ref().is_some_and(|f| f.at > l.at)
                        && after_seen
                }
            };
            if newer {
                match self.harvest(digest, job, false, now, out) {
                    Harvested::Blocked => return false,
                    Harvested::Pending => harvest_pending = true,
                    Harvested::Recorded => {}
                }
            }
        }

        // 3. Fan-out of the newest result.
        let mut need_details = false;
        if let Some(latest) = self.latest(digest).cloned() {
            if let Some((key, job_name)) = self.digests.get(digest).and_then(|s| s.announce.clone())
                && !self.announce(digest, &key, &job_name, now, out)
            {
                return false;
            }
            for key in &cis_keys {
                match self.fan_out(digest, key, &latest, now, out) {
                    FanOut::Done => {}
                    FanOut::Blocked => return false,
                    FanOut::NeedDetails => need_details = true,
                }
            }
            if need_details {
                // The details are not in memory: read the log again while the Job exists.
                if let Some(job) = jobs.iter().find(|j| {
                    j.uid == latest.job_uid && j.finished.as_ref().is_some_and(|f| f.succeeded)
                }) {
                    match self.harvest(digest, job, true, now, out) {
                        Harvested::Blocked => return false,
                        Harvested::Pending => need_details = false,
                        // The log cannot be read again: a new scan gets the details.
                        Harvested::Recorded => {}
                    }
                }
            }
        } else if let Some((key, job_name)) =
            self.digests.get(digest).and_then(|s| s.announce.clone())
            && !self.announce(digest, &key, &job_name, now, out)
        {
            return false;
        }

        // 4. Schedule the next scan.
        let harvesting = harvest_pending || self.harvests.values().any(|h| h.digest == digest);
        let creating = self.busy.contains(&Target::CreateJob(digest.to_string()));
        let due_at = self.due_at(digest);
        let wants_scan = !cis_keys.is_empty()
            && active.is_none()
            && !harvesting
            && !creating
            && (due_at.is_none_or(|at| at <= now) || need_details);
        let queue_key = wants_scan.then(|| {
            let latest_at = self.latest(digest).map(|l| l.at);
            (
                latest_at.is_some(),
                latest_at.unwrap_or_default(),
                digest.to_string(),
            )
        });
        let scan = self.digests.entry(digest.to_string()).or_default();
        scan.queued = queue_key;
        if let (false, Some(at)) = (wants_scan, due_at)
            && !cis_keys.is_empty()
            && at > now
        {
            self.timers.arm(TimerKey::Digest(digest.to_string()), at);
        }
        if cis_keys.is_empty() && active.is_none() && !harvesting {
            // Nothing to do for this digest any more; keep the result (a CIS may come back).
            if let Some(s) = self.digests.get_mut(digest) {
                s.announce = None;
            }
        }
        true
    }

    fn latest(&self, digest: &str) -> Option<&ScanResult> {
        self.digests.get(digest).and_then(|s| s.latest.as_ref())
    }

    /// When the digest is due for a new scan; `None` when it was never scanned.
    fn due_at(&self, digest: &str) -> Option<Timestamp> {
        let scan = self.digests.get(digest)?;
        let latest = scan.latest.as_ref()?;
        Some(match latest.outcome {
            ScanOutcome::Succeeded => latest
                .at
                .plus(self.cfg.scan_interval)
                .plus(jitter(digest, self.cfg.scan_interval)),
            ScanOutcome::Failed { .. } => {
                let doublings = scan.failures.saturating_sub(1).min(20);
                let delay = self
                    .cfg
                    .failed_scan_retry
                    .saturating_mul(1u32 << doublings)
                    .min(self.cfg.scan_interval);
                latest.at.plus(delay)
            }
        })
    }

    /// The waiting message if a pod of `job` cannot pull the scanned image (or an init
    /// container's: trivy's, the Java DB's).
    fn pull_back_off(&self, job: &JobView) -> Option<String> {
        const PULL: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
        self.index.pods_of_job(&job.uid).into_iter().find_map(|p| {
            for (which, c) in [("init container", &p.init), (SCAN_CONTAINER, &p.scan)] {
                if c.waiting_reason
                    .as_deref()
                    .is_some_and(|r| PULL.contains(&r))
                {
                    let message = c.waiting_message.clone().unwrap_or_default();
                    return Some(if which == SCAN_CONTAINER && !message.is_empty() {
                        message
                    } else if message.is_empty() {
                        format!("{which} of pod {} cannot pull its image", p.name)
                    } else {
                        format!("{which}: {message}")
                    });
                }
            }
            None
        })
    }

    /// Starts reading the result of a finished Job, or records it when no log is needed.
    fn harvest(
        &mut self,
        digest: &str,
        job: &JobView,
        refetch: bool,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Harvested {
        let target = Target::Log(job.uid.clone());
        if self.busy.contains(&target) {
            return Harvested::Pending;
        }
        let Some(finish) = &job.finished else {
            return Harvested::Pending;
        };
        let attempts = self.attempts.get(&target).copied().unwrap_or_default();
        let pods = self.index.pods_of_job(&job.uid);
        let fallback = if finish.message.is_empty() {
            format!("scan Job '{}' failed: {}", job.name, finish.reason)
        } else {
            format!("scan Job '{}' failed: {}", job.name, finish.message)
        };
        if !finish.succeeded && !refetch {
            // The log of a failed attempt read while the Job ran says most.
            if let Some(FailureLog { text, .. }) = self.failure_logs.remove(&job.uid) {
                let message = if text.trim().is_empty() {
                    fallback
                } else {
                    text
                };
                self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
                return Harvested::Recorded;
            }
        }
        let pod = if finish.succeeded {
            pods.iter()
                .rev()
                .find(|p| p.scan.exit_code == Some(0))
                .or(pods.last())
        } else {
            pods.iter().rev().find(|p| p.scan.started).or(pods.last())
        };
        let Some(pod) = pod else {
            if now < finish.at.plus(POD_CACHE_GRACE) {
                self.timers.arm(
                    TimerKey::Digest(digest.to_string()),
                    finish.at.plus(POD_CACHE_GRACE),
                );
                return Harvested::Pending;
            }
            if refetch {
                return Harvested::Recorded;
            }
            // A failed Job's pods are deleted by Kubernetes; its condition explains.
            let message = if finish.succeeded {
                format!("no pods found for job \"{}\"", job.name)
            } else {
                fallback
            };
            self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
            return Harvested::Recorded;
        };
        if !finish.succeeded && !pod.scan.started {
            let message = pod
                .scan
                .waiting_message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or(fallback);
            self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
            return Harvested::Recorded;
        }
        if attempts >= MAX_LOG_ATTEMPTS {
            // A refetch keeps its count (dropped with the Job), so the next sync starts a new
            // scan instead of another round of reads.
            if !refetch {
                self.attempts.remove(&target);
                let message = format!(
                    "the log of scan pod {} could not be read after {attempts} attempts",
                    pod.name
                );
                self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
            }
            return Harvested::Recorded;
        }
        let limit = if finish.succeeded {
            self.cfg.log_max_bytes
        } else {
            FAILED_LOG_BYTES
        };
        let action = Action::FetchLog {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            container: SCAN_CONTAINER.to_string(),
            limit_bytes: limit,
            // A failed container that restarted holds the failure in its previous run.
            previous: !finish.succeeded && pod.scan.exit_code.is_none(),
        };
        let harvest = Harvest {
            digest: digest.to_string(),
            job_name: job.name.clone(),
            succeeded: finish.succeeded,
            refetch,
            fallback,
        };
        match self.issue(target, action, now, out) {
            super::Issued::Yes => {
                self.harvests.insert(job.uid.clone(), harvest);
                Harvested::Pending
            }
            super::Issued::Deferred => Harvested::Pending,
            super::Issued::Blocked => Harvested::Blocked,
        }
    }

    /// Reads the log of a failed attempt of a running Job once (the Job may retry; the last
    /// failure read is what the condition shows if the Job fails). Returns false when blocked.
    ///
    /// An empty log is read again when the pod changes next, up to [`FAILURE_LOG_READS`]
    /// times: the pod status may say "terminated" while the kubelet has already restarted the
    /// container (`OnFailure`), and then the current log is the new attempt's, still empty;
    /// the next read takes the previous run's.
    fn prefetch_failure_log(
        &mut self,
        job: &JobView,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> bool {
        if self
            .failure_logs
            .get(&job.uid)
            .is_some_and(|l| !l.text.trim().is_empty() || l.reads >= FAILURE_LOG_READS)
        {
            return true;
        }
        let failed_attempt = self
            .index
            .pods_of_job(&job.uid)
            .into_iter()
            .rev()
            .find_map(|p| {
                let current = p.scan.exit_code.is_some_and(|c| c != 0);
                let previous = p.scan.last_exit_code.is_some_and(|c| c != 0);
                (current || previous).then(|| (p.namespace.clone(), p.name.clone(), !current))
            });
        let Some((namespace, pod_name, previous)) = failed_attempt else {
            return true;
        };
        let action = Action::FetchLog {
            namespace,
            pod_name,
            container: SCAN_CONTAINER.to_string(),
            limit_bytes: FAILED_LOG_BYTES,
            previous,
        };
        self.issue(Target::FailureLog(job.uid.clone()), action, now, out)
            .settled()
    }

    pub(super) fn on_failure_log_outcome(&mut self, job_uid: &str, outcome: Outcome) {
        if let Outcome::Log(bytes) = outcome {
            // Only Jobs still known are worth remembering (bounded by the active Jobs).
            if let Some(d) = self
                .index
                .job_by_uid(job_uid)
                .and_then(|j| j.digest.clone())
            {
                let log = self.failure_logs.entry(job_uid.to_string()).or_default();
                log.text = String::from_utf8_lossy(&bytes).into_owned();
                log.reads += 1;
                // An empty log waits for the pod's next change (no read loop).
                if !log.text.trim().is_empty() {
                    self.dirty_digests.insert(d);
                }
            }
        }
    }

    pub(super) fn on_log_outcome(&mut self, job_uid: &str, outcome: Outcome, now: Timestamp) {
        let Some(h) = self.harvests.remove(job_uid) else {
            return;
        };
        self.dirty_digests.insert(h.digest.clone());
        match outcome {
            Outcome::Log(bytes) if h.succeeded => match parse_report(&bytes, ReportFormat::Auto) {
                Ok(report) => {
                    let vulns = Arc::new(report.vulnerabilities);
                    if h.refetch {
                        self.reports.insert(&h.digest, job_uid, vulns);
                    } else {
                        self.record_success(&h.digest, job_uid, vulns, now);
                    }
                }
                Err(e) if !h.refetch => {
                    let message = format!(
                        "error decoding scan report JSON from job '{}': {e}",
                        h.job_name
                    );
                    self.record_failure(
                        &h.digest,
                        job_uid,
                        FailureReason::ReportDecodeError,
                        message,
                        now,
                    );
                }
                // Read before, unreadable now: reading it again will not help. The attempts
                // are spent, so the next sync starts a new scan for the details (re-reading
                // at once would read the log once per round trip).
                Err(_) => {
                    self.attempts
                        .insert(Target::Log(job_uid.to_string()), MAX_LOG_ATTEMPTS);
                }
            },
            Outcome::Log(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let message = if text.trim().is_empty() {
                    h.fallback
                } else {
                    text.into_owned()
                };
                self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
            }
            Outcome::Failed(err) if h.refetch => {
                let _ = err;
            }
            Outcome::Failed(err) => match err.kind {
                ApiErrorKind::LogTooLarge => {
                    let message = format!(
                        "the scan report of job '{}' is larger than {} bytes (--scan-log-max-bytes)",
                        h.job_name, self.cfg.log_max_bytes
                    );
                    self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
                }
                kind if kind.is_retryable() => {
                    // Tried again by the next sync after the back-off (the Job is still there).
                }
                _ if !h.succeeded => {
                    self.record_failure(&h.digest, job_uid, FailureReason::Error, h.fallback, now);
                }
                _ => {
                    let message = format!(
                        "scan result of job '{}' lost: its log could not be read: {}",
                        h.job_name, err.message
                    );
                    self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
                }
            },
            Outcome::CisApplied(_) | Outcome::JobCreated(_) | Outcome::Done => {}
        }
    }

    fn record_success(
        &mut self,
        digest: &str,
        job_uid: &str,
        vulns: Arc<Vec<Vulnerability>>,
        now: Timestamp,
    ) {
        self.stats.scans_succeeded += 1;
        self.first_result_for(digest, now);
        self.reports.insert(digest, job_uid, vulns);
        let placement = self.index.job_by_uid(job_uid).map(|j| self.placement_of(j));
        let scan = self.digests.entry(digest.to_string()).or_default();
        scan.failures = 0;
        scan.announce = None;
        scan.round.clear();
        if placement.is_some() {
            scan.worked = placement;
        }
        scan.latest = Some(ScanResult {
            job_uid: job_uid.to_string(),
            at: now.truncate_to_secs(),
            outcome: ScanOutcome::Succeeded,
        });
        self.dirty_digests.insert(digest.to_string());
    }

    fn record_failure(
        &mut self,
        digest: &str,
        job_uid: &str,
        reason: FailureReason,
        message: String,
        now: Timestamp,
    ) {
        self.stats.scans_failed += 1;
        self.first_result_for(digest, now);
        let scan = self.digests.entry(digest.to_string()).or_default();
        scan.failures = scan.failures.saturating_add(1);
        scan.announce = None;
        scan.round.clear();
        scan.latest = Some(ScanResult {
            job_uid: job_uid.to_string(),
            at: now.truncate_to_secs(),
            outcome: ScanOutcome::Failed { reason, message },
        });
        self.dirty_digests.insert(digest.to_string());
    }

    /// Writes the `ScanJobCreated` condition on the CIS a Job was created for.
    fn announce(
        &mut self,
        digest: &str,
        key: &CisKey,
        job_name: &str,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> bool {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            if let Some(s) = self.digests.get_mut(digest) {
                s.announce = None;
            }
            return true;
        };
        let target = Target::CisStatus(key.clone());
        let status = status::scan_job_created_status(&cis, job_name, now);
        let action = status_write(key, &cis, status, true);
        match self.issue(target, action, now, out) {
            super::Issued::Yes => {
                if let Some(s) = self.digests.get_mut(digest) {
                    s.announce = None;
                }
                true
            }
            super::Issued::Deferred => true,
            // Blocked means a write in flight for this CIS or a full window: the digest stays
            // dirty until that outcome or a free slot.
            super::Issued::Blocked => false,
        }
    }

    /// Writes `Stalled/NoRegistryDigest` to one CIS of a local image ID unless it shows it
    /// (with a Warning Event once written); false when blocked.
    fn explain_local_image(
        &mut self,
        key: &CisKey,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> bool {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            return true;
        };
        let new_status = status::no_registry_digest_status(&cis, now);
        if status::shows_conditions(&cis, &new_status) {
            return true;
        }
        let note = new_status
            .conditions
            .iter()
            .flatten()
            .map(|c| status::bounded_message(&c.message, 1024))
            .next()
            .unwrap_or_default();
        let target = Target::CisStatus(key.clone());
        let action = status_write(key, &cis, new_status, true);
        match self.issue(target, action, now, out) {
            super::Issued::Yes => {
                let event = EventNote {
                    warning: true,
                    reason: status::REASON_NO_REGISTRY_DIGEST.to_string(),
                    note,
                };
                self.pending_events
                    .push_back(super::PendingEvent::on_cis(key, &cis.uid, event));
                true
            }
            super::Issued::Deferred => true,
            super::Issued::Blocked => false,
        }
    }

    /// Writes the newest result to one CIS if its status does not show it yet.
    fn fan_out(
        &mut self,
        digest: &str,
        key: &CisKey,
        latest: &ScanResult,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> FanOut {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            return FanOut::Done;
        };
        let shows = cis.status.last_scan_job_uid.as_deref() == Some(latest.job_uid.as_str())
            && cis.status.last_scan_time == Some(latest.at)
            && cis.status.observed_generation == Some(cis.generation);
        if shows {
            return FanOut::Done;
        }
        // Never move a CIS back to an older result than the one it shows.
        if cis.status.last_scan_time.is_some_and(|t| t > latest.at) {
            return FanOut::Done;
        }
        let target = Target::CisStatus(key.clone());
        if !self.can_issue(&target, now) {
            return if self.busy.contains(&target) || !self.capacity_left() {
                FanOut::Blocked
            } else {
                FanOut::Done
            };
        }
        let new_status = match &latest.outcome {
            ScanOutcome::Succeeded => {
                let Some(vulns) = self.reports.get(digest, &latest.job_uid) else {
                    return FanOut::NeedDetails;
                };
                let report_key = (key.clone(), latest.job_uid.clone());
                if self.cfg.write_reports && !self.reports_written.contains_key(&report_key) {
                    let budget = self
                        .report_budget_override
                        .get(key)
                        .copied()
                        .unwrap_or(self.cfg.report_max_bytes);
                    let action = Action::ApplyReport {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        report: Box::new(status::report_for(&cis, &vulns, budget)),
                    };
                    let target = Target::Report(key.clone(), latest.job_uid.clone());
                    return match self.issue(target, action, now, out) {
                        super::Issued::Blocked => FanOut::Blocked,
                        super::Issued::Yes | super::Issued::Deferred => FanOut::Done,
                    };
                }
                let budget = self
                    .budget_override
                    .get(key)
                    .copied()
                    .unwrap_or(self.cfg.details_max_bytes);
                let in_report = self.reports_written.get(&report_key) == Some(&ReportFate::Written);
                let write_details = match self.cfg.status_details {
                    StatusDetails::Always => true,
                    StatusDetails::Never => false,
                    StatusDetails::UnlessInReport => !in_report,
                };
                status::success_status(
                    &cis,
                    &vulns,
                    &latest.job_uid,
                    latest.at,
                    budget,
                    write_details,
                )
            }
            ScanOutcome::Failed { reason, message } => {
                let kind = match reason {
                    FailureReason::Error => status::FailureKind::Error,
                    FailureReason::ReportDecodeError => status::FailureKind::Decode,
                    other => status::FailureKind::Other(other.condition_reason()),
                };
                status::failure_status(&cis, &latest.job_uid, latest.at, kind, message)
            }
        };
        let keep_details = matches!(latest.outcome, ScanOutcome::Failed { .. });
        let events = self.events_for(&cis, &latest.outcome, &new_status);
        let action = status_write(key, &cis, new_status, keep_details);
        match self.issue(target, action, now, out) {
            super::Issued::Yes => {
                for e in events {
                    self.pending_events
                        .push_back(super::PendingEvent::on_cis(key, &cis.uid, e));
                }
                FanOut::Done
            }
            super::Issued::Deferred => FanOut::Done,
            super::Issued::Blocked => FanOut::Blocked,
        }
    }

    /// Events worth a human's attention when a new result is written.
    fn events_for(
        &self,
        cis: &CisView,
        outcome: &ScanOutcome,
        new_status: &crate::crd::ContainerImageScanStatus,
    ) -> Vec<EventNote> {
        match outcome {
            ScanOutcome::Failed { message, .. } => vec![EventNote {
                warning: true,
                reason: "ScanFailed".to_string(),
                note: status::bounded_message(message, 1024),
            }],
            ScanOutcome::Succeeded => {
                let critical = |s: Option<&crate::crd::VulnerabilitySummary>| {
                    s.and_then(|s| s.severity_count.as_ref())
                        .and_then(|m| m.get(Severity::Critical.as_str()))
                        .copied()
                        .unwrap_or(0)
                };
                let before = cis
                    .status
                    .last_successful_scan_time
                    .map(|_| critical(cis.status.summary.as_deref()));
                let after = critical(new_status.vulnerability_summary.as_ref());
                match before {
                    Some(b) if after > b => vec![EventNote {
                        warning: true,
                        reason: "NewCriticalVulnerabilities".to_string(),
                        note: format!(
                            "a new scan of {}@{} found {after} CRITICAL vulnerabilities (previous scan: {b})",
                            cis.spec.name, cis.spec.digest
                        ),
                    }],
                    _ => Vec::new(),
                }
            }
        }
    }

    pub(super) fn on_cis_status_outcome(
        &mut self,
        key: CisKey,
        action: &Action,
        outcome: Outcome,
        _now: Timestamp,
    ) {
        let digest = match action {
            Action::ApplyCisStatus { .. } => {
                self.index.cis.get(&key).map(|t| t.view.spec.digest.clone())
            }
            _ => None,
        };
        match outcome {
            Outcome::CisApplied(view) => {
                self.stats.status_writes += 1;
                if let Some(job) = &view.status.last_scan_job_uid {
                    self.reports_written.remove(&(key.clone(), job.clone()));
                }
                let (stream, epoch) = self
                    .index
                    .cis
                    .get(&key)
                    .map(|t| (t.stream, t.epoch))
                    .unwrap_or_else(|| {
                        self.index
                            .home(super::index::ObjectKind::Cis, &key.namespace)
                    });
                self.upsert_cis(super::index::Tracked {
                    view: *view,
                    stream,
                    epoch,
                });
            }
            // The CIS is gone although the watch has not said so yet: forget it (member pods
            // may want it back) instead of writing its status again and again.
            Outcome::Failed(err) if err.kind == ApiErrorKind::NotFound => {
                if let Action::ApplyCisStatus { uid, .. } = action
                    && self.index.cis.get(&key).is_some_and(|t| t.view.uid == *uid)
                {
                    self.remove_cis(&key);
                }
            }
            Outcome::Failed(err) if err.kind == ApiErrorKind::TooLarge => {
                // The API server still refused the size: cut the details further for this CIS.
                let current = self
                    .budget_override
                    .get(&key)
                    .copied()
                    .unwrap_or(self.cfg.details_max_bytes);
                self.budget_override.insert(key.clone(), current / 2);
            }
            _ => {}
        }
        if let Some(d) = digest {
            self.dirty_digests.insert(d);
        }
    }

    /// Starts queued scans while Job slots are free.
    pub(super) fn start_scans(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let mut queue: Vec<QueueKey> = self
            .digests
            .values()
            .filter_map(|s| s.queued.clone())
            .collect();
        self.uncertain_jobs.retain(|_, until| *until > now);
        // A digest whose last create may have been applied goes first: its own retry does not
        // count against the limit and settles the uncertainty ("already exists" or created),
        // while it blocks every other digest when the limit is reached.
        queue.sort_by_key(|(never, at, digest)| {
            (!self.uncertain_jobs.contains_key(digest), *never, *at)
        });
        for (_, _, digest) in queue {
            if !self.capacity_left() {
                return;
            }
            let creating = self
                .busy
                .iter()
                .filter(|t| matches!(t, Target::CreateJob(_)))
                .count();
            self.uncertain_jobs.retain(|_, until| *until > now);
            // Other digests' uncertain Jobs; this digest's own retry settles its uncertainty
            // (JobCreated, or AlreadyExists when the first attempt was applied).
            let uncertain = self
                .uncertain_jobs
                .keys()
                .filter(|d| **d != digest && !self.busy.contains(&Target::CreateJob((*d).clone())))
                .count();
            let limit = self.cfg.active_job_limit as usize;
            if limit > 0 && self.index.active_job_count() + creating + uncertain >= limit {
                return;
            }
            self.create_job(&digest, now, out);
        }
    }

    fn create_job(&mut self, digest: &str, now: Timestamp, out: &mut Vec<Command>) {
        if self.local_image_ids.contains(digest) {
            if let Some(scan) = self.digests.get_mut(digest) {
                scan.queued = None;
            }
            return;
        }
        let cis_keys = self.live_cis_of(digest);
        let pods: Vec<&PodView> = self.member_pods(&cis_keys);
        let uncertain = self
            .digests
            .get(digest)
            .and_then(|s| s.uncertain_create.clone());
        let Some(placement) = uncertain.or_else(|| self.next_placement(digest, &pods)) else {
            // Every candidate failed in this round (the pods changed since it began).
            self.end_round(digest, now);
            return;
        };
        let namespace = match &placement {
            Placement::ScanNamespace => self.cfg.scan_namespace.clone(),
            Placement::Workload { namespace, .. } => namespace.clone(),
        };
        // The CIS that asks: one in the Job's namespace first, one without any result first,
        // then by name.
        let Some(primary) = cis_keys
            .iter()
            .filter_map(|k| self.index.cis.get(k).map(|t| &t.view))
            .min_by_key(|c| {
                (
                    c.namespace != namespace,
                    c.status.last_scan_time.is_some(),
                    &c.namespace,
                    &c.name,
                )
            })
            .cloned()
        else {
            if let Some(s) = self.digests.get_mut(digest) {
                s.queued = None;
            }
            return;
        };
        // Nodes of the pods that run the image with these credentials (any pod's, if none).
        let node_names = |matching: bool| -> BTreeSet<String> {
            pods.iter()
                .filter(|p| !matching || placement.matches(p))
                .filter_map(|p| p.node_name.clone())
                .collect()
        };
        let mut nodes = node_names(true);
        if nodes.is_empty() {
            nodes = node_names(false);
        }
        let (name, credentials, job_config) = match &placement {
            Placement::ScanNamespace => (scan_job_name(&primary.spec.name, digest), None, None),
            Placement::Workload { credentials, .. } => (
                workload_scan_job_name(&primary.spec.name, digest),
                Some(credentials.clone()),
                self.trivy_job_config.clone(),
            ),
        };
        let key = object_key(&namespace, &name);
        if let Some(existing) = self.index.jobs.get(&key).map(|t| t.view.clone()) {
            // The name is taken by a finished Job (e.g. kept for its TTL): delete it first,
            // with background propagation so its pod goes too (spec §7.2).
            if existing.finished.is_some() && !existing.deleting {
                let action = Action::DeleteJob {
                    namespace: existing.namespace.clone(),
                    name: existing.name.clone(),
                    uid: existing.uid.clone(),
                };
                self.issue(Target::DeleteJob(key), action, now, out);
            }
            self.timers.arm(
                TimerKey::Digest(digest.to_string()),
                now.plus(NAME_TAKEN_RETRY),
            );
            return;
        }
        let params = ScanJobParams {
            namespace,
            job_name: name.clone(),
            image_name: primary.spec.name.clone(),
            image_digest: digest.to_string(),
            cis_namespace: primary.namespace.clone(),
            cis_uid: primary.uid.clone(),
            workload_kind: primary.spec.workload.kind.clone(),
            workload_name: primary.spec.workload.name.clone(),
            required_platform: self.platform_of(&nodes),
            preferred_nodes: nodes.into_iter().collect(),
            pull_credentials: credentials,
            job_config,
        };
        let job = build_scan_job(&params, &self.cfg.job);
        let target = Target::CreateJob(digest.to_string());
        if let super::Issued::Yes =
            self.issue(target, Action::CreateJob { job: Box::new(job) }, now, out)
        {
            let scan = self.digests.entry(digest.to_string()).or_default();
            scan.queued = None;
            scan.announce = Some((CisKey::new(&primary.namespace, &primary.name), name));
        }
    }

    /// The pods that run a digest: the members of its live CIS.
    fn member_pods(&self, cis_keys: &[CisKey]) -> Vec<&PodView> {
        cis_keys
            .iter()
            .filter_map(|k| self.index.members.get(k))
            .flatten()
            .filter_map(|p| self.index.pods.get(p))
            .map(|e| &e.tracked.view)
            .collect()
    }

    /// The first candidate placement not tried in this round.
    fn next_placement(&self, digest: &str, pods: &[&PodView]) -> Option<Placement> {
        let scan = self.digests.get(digest);
        let worked = scan.and_then(|s| s.worked.as_ref());
        let round = scan.map(|s| s.round.as_slice()).unwrap_or_default();
        // Without the job config a Job in a workload namespace would scan without the trivy
        // server's address.
        let workload_placement = self.cfg.workload_placement && self.trivy_job_config.is_some();
        placement::candidates(pods.iter().copied(), workload_placement, worked)
            .into_iter()
            .find(|c| !round.iter().any(|f| f.placement == *c))
    }

    /// Where a Job of ours runs: the scan namespace, or a workload namespace with the
    /// credentials of its pod template.
    fn placement_of(&self, job: &JobView) -> Placement {
        self.placement_in(&job.namespace, job.pull_credentials.clone())
    }

    /// Where the Job of a `CreateJob` would run.
    fn placement_of_create(&self, action: &Action) -> Option<Placement> {
        let Action::CreateJob { job } = action else {
            return None;
        };
        let spec = job.spec.as_ref()?.template.spec.as_ref()?;
        let credentials = PullCredentials::of(spec).map(Arc::new);
        Some(self.placement_in(job.metadata.namespace.as_deref()?, credentials))
    }

    /// The placement of a Job in `namespace` with these pod credentials. A workload that runs
    /// in the scan namespace itself, with pull secrets, has a workload placement there: the
    /// pod's credentials, not the scan service account alone.
    fn placement_in(
        &self,
        namespace: &str,
        credentials: Option<Arc<PullCredentials>>,
    ) -> Placement {
        match credentials {
            None if namespace == self.cfg.scan_namespace => Placement::ScanNamespace,
            credentials => Placement::Workload {
                namespace: namespace.to_string(),
                credentials: credentials.unwrap_or_default(),
            },
        }
    }

    /// A placement failed in a way another may fix: the next one is tried when the Job is
    /// gone; after the last, the round's failures become the digest's result.
    fn placement_failed(
        &mut self,
        digest: &str,
        placement: Placement,
        job_uid: &str,
        reason: FailureReason,
        message: String,
        now: Timestamp,
    ) {
        if !job_uid.is_empty() && self.latest(digest).is_some_and(|l| l.job_uid == job_uid) {
            return;
        }
        let scan = self.digests.entry(digest.to_string()).or_default();
        if !job_uid.is_empty() && scan.round.iter().any(|f| f.job_uid == job_uid) {
            return;
        }
        scan.round.push(PlacementFailure {
            placement,
            reason,
            message,
            job_uid: job_uid.to_string(),
        });
        self.dirty_digests.insert(digest.to_string());
        let cis_keys = self.live_cis_of(digest);
        let pods = self.member_pods(&cis_keys);
        if self.next_placement(digest, &pods).is_none() {
            self.end_round(digest, now);
        }
    }

    /// Records the failures of a round of placements as the digest's failed scan.
    fn end_round(&mut self, digest: &str, now: Timestamp) {
        let Some(scan) = self.digests.get_mut(digest) else {
            return;
        };
        scan.queued = None;
        let round = std::mem::take(&mut scan.round);
        let Some(first) = round.first() else {
            return;
        };
        let scan_namespace = &self.cfg.scan_namespace;
        let message = round
            .iter()
            .map(|f| format!("{}: {}", f.placement.describe(scan_namespace), f.message))
            .collect::<Vec<_>>()
            .join("; ");
        let message = if round.len() > 1 {
            format!("no placement of the scan Job worked: {message}")
        } else {
            message
        };
        // The newest Job of the round that was created (none when every create was refused).
        let job_uid = round
            .iter()
            .rev()
            .find(|f| !f.job_uid.is_empty())
            .map(|f| f.job_uid.clone())
            .unwrap_or_default();
        let reason = first.reason.clone();
        self.record_failure(digest, &job_uid, reason, message, now);
    }

    pub(super) fn on_create_job_outcome(
        &mut self,
        digest: &str,
        action: &Action,
        outcome: Outcome,
        now: Timestamp,
    ) {
        self.dirty_digests.insert(digest.to_string());
        match outcome {
            Outcome::JobCreated(view) => {
                self.stats.jobs_created += 1;
                self.uncertain_jobs.remove(digest);
                if self.index.deleted_jobs.contains(&view.uid) {
                    // Created, then deleted (the watch was faster than this answer): it is
                    // not running, and the create is settled.
                    if let Some(scan) = self.digests.get_mut(digest) {
                        scan.uncertain_create = None;
                    }
                    self.wake_queue();
                    return;
                }
                let (stream, epoch) = self
                    .index
                    .jobs
                    .get(&object_key(&view.namespace, &view.name))
                    .map(|t| (t.stream, t.epoch))
                    .unwrap_or_else(|| self.index.home(super::index::ObjectKind::Job, ""));
                self.upsert_job(super::index::Tracked {
                    view: *view,
                    stream,
                    epoch,
                });
            }
            Outcome::Failed(err) => {
                let scan = self.digests.entry(digest.to_string()).or_default();
                scan.announce = None;
                // A definite answer settles an uncertain create: the Job exists (the watch
                // shows it) or that placement does not take it.
                if !matches!(
                    err.kind,
                    ApiErrorKind::Unknown
                        | ApiErrorKind::Conflict
                        | ApiErrorKind::Throttled
                        | ApiErrorKind::ServerError
                ) {
                    scan.uncertain_create = None;
                }
                // A workload namespace that does not take our Job (RBAC bound per namespace,
                // a quota on Jobs, a namespace going away): the next placement.
                if matches!(
                    err.kind,
                    ApiErrorKind::Forbidden
                        | ApiErrorKind::Invalid
                        | ApiErrorKind::NotFound
                        | ApiErrorKind::NamespaceTerminating
                ) && let Some(placement) = self
                    .placement_of_create(action)
                    .filter(|p| *p != Placement::ScanNamespace)
                {
                    let message = format!("scan Job not created: {}", err.message);
                    self.placement_failed(
                        digest,
                        placement,
                        "",
                        FailureReason::ScanPodRejected,
                        message,
                        now,
                    );
                    return;
                }
                match err.kind {
                    // The Job exists (our earlier attempt, or a finished one): the watch shows
                    // it; look again shortly.
                    ApiErrorKind::AlreadyExists => {
                        self.timers.arm(
                            TimerKey::Digest(digest.to_string()),
                            now.plus(NAME_TAKEN_RETRY),
                        );
                    }
                    // The request may have been applied: the Job may exist although the
                    // watch has not shown it yet. It counts against the active-Job limit
                    // until it shows up or the hold expires.
                    ApiErrorKind::Unknown => {
                        let placement = self
                            .placement_of_create(action)
                            .unwrap_or(Placement::ScanNamespace);
                        self.digests
                            .entry(digest.to_string())
                            .or_default()
                            .uncertain_create = Some(placement);
                        let until = now.plus(UNCERTAIN_JOB_HOLD);
                        self.uncertain_jobs.insert(digest.to_string(), until);
                        self.timers.arm(TimerKey::Digest(digest.to_string()), until);
                    }
                    kind if kind.is_retryable() => {}
                    // The Job was rejected (bad settings, missing namespace): users must see it.
                    _ => {
                        let message = format!("scan Job could not be created: {}", err.message);
                        self.record_failure(digest, "", FailureReason::Error, message, now);
                    }
                }
            }
            Outcome::CisApplied(_) | Outcome::Log(_) | Outcome::Done => {}
        }
    }

    pub(super) fn on_delete_job_outcome(&mut self, name: &str, action: &Action, outcome: Outcome) {
        if let Some(d) = self
            .index
            .jobs
            .get(name)
            .and_then(|j| j.view.digest.clone())
        {
            self.dirty_digests.insert(d);
        }
        let Action::DeleteJob { uid, .. } = action else {
            return;
        };
        let ours = self
            .index
            .jobs
            .get(name)
            .is_some_and(|j| j.view.uid == *uid);
        // The server's answer is newer than the watch: a deleted (or already missing) Job must
        // not be deleted again and again until the watch catches up (or, after a lost Delete
        // event, until the next relist).
        match outcome {
            Outcome::Done if ours => {
                if let Some(j) = self.index.jobs.get_mut(name) {
                    j.view.deleting = true;
                }
                self.wake_queue();
            }
            Outcome::Failed(err) if ours && err.kind == ApiErrorKind::NotFound => {
                self.index.deleted_jobs.insert(uid);
                self.remove_job(name);
            }
            _ => {}
        }
    }
}

/// What harvesting a finished Job did.
enum Harvested {
    /// The result is recorded (or, for a refetch, nothing more can be done).
    Recorded,
    /// A log read is in flight, backing off, or the pod is not in the cache yet.
    Pending,
    /// Blocked by capacity; try again.
    Blocked,
}

/// What fan-out did for one CIS.
enum FanOut {
    /// Written, or nothing to write.
    Done,
    /// Blocked by capacity or a write in flight; try again.
    Blocked,
    /// The result is a success whose details are not in memory.
    NeedDetails,
}

/// Deterministic per-digest jitter of up to a tenth of the interval, so that images scanned
/// together are not all rescanned in the same minute.
pub fn jitter(digest: &str, interval: Duration) -> Duration {
    let hash = crate::fingerprint::fnv1a64(digest.as_bytes());
    let permille = hash % 1000;
    interval / 10 * u32::try_from(permille).unwrap_or(0) / 1000
}

impl Engine {
    pub(super) fn on_report_outcome(&mut self, key: CisKey, job_uid: String, outcome: Outcome) {
        let digest = self.index.cis.get(&key).map(|t| t.view.spec.digest.clone());
        match outcome {
            // The status write that follows names the Job; remember which Report is done.
            Outcome::Done => {
                self.reports_written
                    .insert((key.clone(), job_uid), ReportFate::Written);
            }
            Outcome::Failed(err) if err.kind == ApiErrorKind::TooLarge => {
                let current = self
                    .report_budget_override
                    .get(&key)
                    .copied()
                    .unwrap_or(self.cfg.report_max_bytes);
                self.report_budget_override.insert(key.clone(), current / 2);
            }
            // The Report is an extra: when it cannot be written (no permission, CRD removed,
            // repeated errors) the status still gets the result.
            Outcome::Failed(err) => {
                let target = Target::Report(key.clone(), job_uid.clone());
                let attempts = self.attempts.get(&target).copied().unwrap_or_default();
                if !err.kind.is_retryable() || attempts >= MAX_REPORT_ATTEMPTS {
                    self.attempts.remove(&target);
                    self.retry_at.remove(&target);
                    self.stats.reports_skipped += 1;
                    self.reports_written
                        .insert((key.clone(), job_uid), ReportFate::Skipped);
                }
            }
            _ => {}
        }
        if let Some(d) = digest {
            self.dirty_digests.insert(d);
        }
    }
}

/// The status write of one CIS, conditioned on the UID and resourceVersion it was decided on.
fn status_write(
    key: &CisKey,
    cis: &CisView,
    status: crate::crd::ContainerImageScanStatus,
    keep_details: bool,
) -> Action {
    Action::ApplyCisStatus {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid: cis.uid.clone(),
        resource_version: cis.resource_version,
        status: Box::new(status),
        keep_details,
    }
}

impl Engine {
    /// The platforms of `nodes` that the shell reported; nodes not (yet) known add nothing.
    fn platform_of(&self, nodes: &BTreeSet<String>) -> RequiredPlatform {
        let mut required = RequiredPlatform::default();
        for platform in nodes.iter().filter_map(|n| self.node_platforms.get(n)) {
            required.os.extend(platform.os.clone());
            required.arch.extend(platform.arch.clone());
        }
        required
    }
}
