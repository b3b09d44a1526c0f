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
//!
//! This file holds the per-digest bookkeeping, the `ScanStage` (the stage's state with the
//! services it borrows from the engine) and `ScanStage::sync`, which runs the steps in that
//! order; each step's work is in its own file: `observe` (what the watches say), `harvest`,
//! `fan_out`, `schedule` (queue, Job creation, placement).

mod fan_out;
mod harvest;
mod observe;
mod reserved;
mod schedule;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::cache::ReportCache;
use super::coverage::FirstResults;
use super::exceptions::Exceptions;
use super::flights::Flights;
use super::flights::{Blocked, Issued, Step};
use super::index::Index;
use super::index::{CisKey, object_key};
use super::placement::{self, Placement, PullFailure, classify_pull_failure};
use super::timers::TimerKey;
use super::timers::Timers;
use super::{Engine, EngineConfig, EngineStats, PendingEvent, StatusDetails, Target};
use crate::cis_status as status;
use crate::crd::{TruncationReason, Vulnerability};
use crate::naming::{scan_job_name, workload_scan_job_name};
use crate::port::{
    Action, ApiErrorKind, CisView, Command, EventNote, JobView, NodePlatform, Outcome, PodView,
    PullCredentials, ScanPodView, StreamId, WatchEvent,
};
use crate::report::{ReportFormat, parse_report};
use crate::scan_job::{RequiredPlatform, SCAN_CONTAINER, ScanJobParams, build_scan_job};
use crate::time::Timestamp;
use harvest::CreateError;
use reserved::{Reserved, WriteAnswer};

/// What became of a result's Report, until the status write that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReportFate {
    /// The API stored it: it holds the details, this many bytes of them (`detailsBytes`).
    Written(u64),
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
/// Attempts to read one log before the scan counts as failed: with the back-off (1 s doubling,
/// at most 30 s for a log) about four minutes, through a kubelet's restart or its node's
/// hiccup. Five attempts (15 s) turned every scan that finished while a node's log endpoint
/// was down for longer into a failure, rescanned only after the failed-scan back-off, 5 minutes
/// (`make chaos`).
const MAX_LOG_ATTEMPTS: u32 = 12;
/// Results of succeeded Jobs lost in a row before the loss is recorded as a failed scan (with
/// the failed-scan back-off): a pod that is always gone before its log is read (something
/// deleting finished pods at once) costs a Job per loss, not a Job loop.
const MAX_LOST_RESULTS: u32 = 3;
/// Scan logs read at once, at most. A log is up to `log_max_bytes` (MBs for an image with
/// thousands of findings) and is held whole while it is read and parsed, so the reads, not the
/// flow-control window, bound that memory; a few at once keep up with any Job throughput
/// (a read takes milliseconds, a scan Job seconds).
pub(super) const LOG_READS_AT_ONCE: usize = 4;

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
    /// The Job's `creationTimestamp`, when the Job was seen.
    pub job_created: Option<Timestamp>,
    /// What it said.
    pub outcome: ScanOutcome,
}

impl ScanResult {
    /// Whether a result of another Job, created at `created` and recorded at `at`, is newer.
    ///
    /// Jobs are ordered by creation: creation times come from one clock (the API server's),
    /// and the later Job read the fresher database. Two Jobs of a digest coexist when a deposed
    /// leader's create lands beside the new leader's in another placement, and they may finish
    /// in either order. Result times come from the clock of the replica that recorded them and
    /// decide only when a creation time is unknown or both Jobs were created in one second.
    pub fn is_older_than(&self, created: Option<Timestamp>, at: Timestamp) -> bool {
        match (self.job_created, created) {
            (Some(mine), Some(theirs)) if mine != theirs => theirs > mine,
            _ => at > self.at,
        }
    }
}

/// What the stage keeps between polls.
#[derive(Debug, Default)]
pub(super) struct ScanState {
    pub(super) digests: BTreeMap<String, DigestScan>,
    /// Digests to re-evaluate at the next poll.
    pub(super) dirty: BTreeSet<String>,
    /// Logs being read, by Job UID.
    harvests: BTreeMap<String, Harvest>,
    /// Logs of failed attempts of running Jobs, by Job UID (bounded: one per active Job).
    failure_logs: BTreeMap<String, FailureLog>,
    pub(super) uncertain_jobs: UncertainJobs,
    /// Digests seen as a runtime's local image ID (no registry digest): never scanned, their
    /// CIS say why. Only grows, by the distinct local images that ever ran: an image
    /// configuration digest never becomes a registry (manifest) digest.
    pub(super) local_image_ids: BTreeSet<String>,
    /// The data of the scan namespace's `trivy-job-config`, copied into Jobs placed in
    /// workload namespaces; `None` (not seen, or missing): the scan namespace only.
    pub(super) trivy_job_config: Option<Arc<BTreeMap<String, String>>>,
    /// Platform of each node the shell reported (see `Observation::NodePlatform`).
    pub(super) node_platforms: BTreeMap<String, NodePlatform>,
    /// Reports written for (CIS, Job UID) whose status write is still to come: the Report goes
    /// first, so a crash in between re-writes both instead of leaving the Report behind.
    reports_written: BTreeMap<(CisKey, String), ReportFate>,
    /// Per-CIS reduced detail budget after the API answered "too large".
    pub(super) detail_budget: BTreeMap<CisKey, usize>,
    /// Per-CIS reduced Report budget after the API answered "too large".
    report_budget: BTreeMap<CisKey, usize>,
    /// Details bytes of Report and status writes in flight, by CIS: counted against the
    /// cluster-wide budget until the stored status says what they took.
    reserved: Reserved,
}

impl ScanState {
    /// A CIS is gone: nothing it wrote is in flight any more.
    pub(in crate::engine) fn forget_cis(&mut self, key: &CisKey) {
        self.detail_budget.remove(key);
        self.reserved.forget(key);
    }

    /// The engine's view of CIS `key` now shows `status` (from the watch or an answer).
    pub(in crate::engine) fn cis_seen(
        &mut self,
        key: &CisKey,
        status: &crate::port::CisStatusView,
    ) {
        self.reserved.seen(key, status);
    }
}

/// The scans stage at work: its own state over the engine's shared services, borrowed from
/// the engine for one call (`Engine::scan_stage`). It cannot reach the other stages' state;
/// where a status answer must also update the CIS store, the engine does that part
/// (`Engine::on_cis_status_outcome`).
pub(in crate::engine) struct ScanStage<'a> {
    pub(in crate::engine) state: &'a mut ScanState,
    pub(in crate::engine) cfg: &'a EngineConfig,
    pub(in crate::engine) index: &'a mut Index,
    pub(in crate::engine) flights: &'a mut Flights,
    pub(in crate::engine) timers: &'a mut Timers,
    pub(in crate::engine) reports: &'a mut ReportCache,
    pub(in crate::engine) stats: &'a mut EngineStats,
    pub(in crate::engine) pending_events: &'a mut VecDeque<PendingEvent>,
    pub(in crate::engine) first_results: &'a mut FirstResults,
    pub(in crate::engine) exceptions: &'a Exceptions,
}

/// Digests whose Job creation had an unknown result (it may exist unseen), held against the
/// active-Job limit until the watch shows the Job, the retry settles it, or the hold ends.
#[derive(Debug, Default)]
pub(super) struct UncertainJobs(BTreeMap<String, Timestamp>);

impl UncertainJobs {
    /// Holds `digest` until `until`.
    fn hold(&mut self, digest: &str, until: Timestamp) {
        self.0.insert(digest.to_string(), until);
    }

    /// The Job of `digest` was seen or created: its slot is counted as a Job now.
    fn settle(&mut self, digest: &str) {
        self.0.remove(digest);
    }

    /// Ends the holds that are over at `now`.
    fn expire(&mut self, now: Timestamp) {
        self.0.retain(|_, until| *until > now);
    }

    fn contains(&self, digest: &str) -> bool {
        self.0.contains_key(digest)
    }

    /// The end of the hold of `digest`, while it lasts.
    pub(in crate::engine) fn held_until(&self, digest: &str, now: Timestamp) -> Option<Timestamp> {
        self.0.get(digest).copied().filter(|until| *until > now)
    }

    fn digests(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
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
    /// The Job this engine created to follow the newest result it knew then: (its UID, that
    /// result's Job UID). While that result is still the newest, the Job's result is newer,
    /// whatever the clocks say: a replica whose clock ran ahead may have stamped the known
    /// result later than any new Job can finish, and a Job that never counts as newer is
    /// deleted unread and created again, forever.
    pub requested: Option<(String, Option<String>)>,
    /// A succeeded Job whose result was lost: the digest is due again at once.
    pub lost: Option<LostResult>,
}

/// A succeeded Job whose result could not be read: its pod was gone before its log was read
/// (deleted by a user, or gone while a kube-apiserver restart held up the read). The scan
/// worked, so waiting out the failed-scan back-off (5 minutes) would only delay a result
/// that a new Job gives at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostResult {
    /// The Job whose result was lost: never harvested again.
    pub job_uid: String,
    /// When: the digest is due for a new scan from then.
    pub at: Timestamp,
    /// Results lost in a row (reset by any recorded result).
    pub times: u32,
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

impl ScanState {
    /// Every queued digest is looked at again (a Job slot came free).
    fn wake_queue(&mut self) {
        let queued: Vec<String> = self
            .digests
            .iter()
            .filter(|(_, s)| s.queued.is_some())
            .map(|(d, _)| d.clone())
            .collect();
        self.dirty.extend(queued);
    }

    pub(in crate::engine) fn queue_len(&self) -> usize {
        self.digests.values().filter(|s| s.queued.is_some()).count()
    }

    fn latest(&self, digest: &str) -> Option<&ScanResult> {
        self.digests.get(digest).and_then(|s| s.latest.as_ref())
    }
}

impl ScanStage<'_> {
    pub(in crate::engine) fn sync_dirty(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        use std::ops::Bound::{Excluded, Unbounded};
        // Results already read go out before new logs are read: each read pins one more
        // report in the cache, and a fan-out that waits for write slots while newer reads push
        // its report out must read its log again. (Few are pinned: those of the reads and
        // writes in flight.)
        let fanning: Vec<String> = self
            .reports
            .pinned()
            .filter(|d| self.state.dirty.contains(*d))
            .cloned()
            .collect();
        for d in fanning {
            if !self.flights.has_room() {
                return;
            }
            if self.sync(&d, now, out).is_ok() {
                self.state.dirty.remove(&d);
            }
        }
        // One key at a time (see sync_dirty_cis): no copy of the whole dirty set per poll.
        let mut next = self.state.dirty.first().cloned();
        while let Some(d) = next {
            if !self.flights.has_room() {
                return;
            }
            if self.sync(&d, now, out).is_ok() {
                self.state.dirty.remove(&d);
            }
            next = self
                .state
                .dirty
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

    /// Whether we place Jobs in `namespace` now: the scan namespace, or a workload namespace
    /// whose pods are scanned (`engine::placement`). A Job of ours elsewhere still counts while
    /// it runs (one active scan per digest), but its result is not taken: it may be another
    /// installation's (namespaces split between two operators) or from before the namespace
    /// filter changed, and its pods may be beyond our watch.
    fn places_jobs_in(&self, namespace: &str) -> bool {
        namespace == self.cfg.scan_namespace || self.cfg.namespace_allowed(namespace)
    }

    /// Brings one digest forward; [`Blocked`] keeps it dirty.
    fn sync(&mut self, digest: &str, now: Timestamp, out: &mut Vec<Command>) -> Step {
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
            let create_error = self.create_error(job, now);
            if let Some(CreateError::Since(until)) = create_error {
                self.timers.arm(TimerKey::Digest(digest.to_string()), until);
            }
            let failure = if let Some(message) = self.pull_back_off(job) {
                Some(match classify_pull_failure(&message) {
                    PullFailure::Credentials => (FailureReason::PullUnauthorized, message, true),
                    PullFailure::Other => (FailureReason::Error, message, false),
                })
            } else if let Some(CreateError::Lasting(message)) = create_error {
                // No other placement creates the container either: the same pod spec, the
                // same runtime configuration.
                Some((FailureReason::Error, message, false))
            } else {
                self.index.job_rejections.get(&job.uid).map(|message| {
                    let message = format!("the scan pod was not created: {message}");
                    (FailureReason::ScanPodRejected, message, true)
                })
            };
            if let Some((reason, message, placement_related)) = failure {
                let already = self
                    .state
                    .latest(digest)
                    .is_some_and(|l| l.job_uid == job.uid);
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
                self.flights.issue(target, action, now, out)?;
            }
        }

        // 1a. A local image ID is no registry digest: a Job could never run
        // `name@<image ID>` (nothing pulls or resolves it), so there is none, and every CIS of
        // the digest says why instead. A Job of it from before (the Go operator scanned such
        // digests) ends by its pull back-off above or its deadline.
        if self.state.local_image_ids.contains(digest) {
            if let Some(scan) = self.state.digests.get_mut(digest) {
                scan.queued = None;
                scan.announce = None;
            }
            for key in &cis_keys {
                self.explain_local_image(key, now, out)?;
            }
            return Ok(());
        }

        // 1b. A failed attempt of the running Job: keep its log for the condition message,
        // because Kubernetes deletes the pod when the Job finally fails.
        if let Some(job) = &active {
            self.prefetch_failure_log(job, now, out)?;
        }

        // 2. Harvest the newest finished Job if it is newer than what we know. Until that
        // result is recorded no new scan starts (its name may still be taken, and its result
        // may be all we need). The newest in a namespace we do not place Jobs in is not ours
        // to read (`places_jobs_in`): nothing is harvested, and an older Job is not taken in
        // its stead.
        let mut harvest_pending = false;
        if let Some(job) = jobs
            .iter()
            .rev()
            .find(|j| j.finished.is_some() && !j.deleting)
            .filter(|j| self.places_jobs_in(&j.namespace))
        {
            let seen = self.state.digests.get(digest).and_then(|s| s.seen_scan_at);
            let after_seen = job
                .finished
                .as_ref()
                .is_some_and(|f| seen.is_none_or(|at| f.at > at));
            let latest_uid = self.state.latest(digest).map(|l| l.job_uid.clone());
            let requested = self
                .state
                .digests
                .get(digest)
                .and_then(|s| s.requested.as_ref())
                .is_some_and(|(uid, follows)| *uid == job.uid && *follows == latest_uid);
            let newer = requested
                || match self.state.latest(digest) {
                    None => after_seen,
                    Some(l) => {
                        l.job_uid != job.uid
                            && job
                                .finished
                                .as_ref()
                                .is_some_and(|f| l.is_older_than(Some(job.created), f.at))
                            && after_seen
                    }
                };
            let lost = self
                .state
                .digests
                .get(digest)
                .and_then(|s| s.lost.as_ref())
                .is_some_and(|l| l.job_uid == job.uid);
            if newer && !lost {
                match self.harvest(digest, job, false, now, out)? {
                    Harvested::Pending => harvest_pending = true,
                    Harvested::Recorded => {}
                }
            }
        }

        // 3. Fan-out of the newest result.
        let mut need_details = false;
        if let Some(latest) = self.state.latest(digest).cloned() {
            if let Some((key, job_name)) = self
                .state
                .digests
                .get(digest)
                .and_then(|s| s.announce.clone())
            {
                self.announce(digest, &key, &job_name, now, out)?;
            }
            for key in &cis_keys {
                match self.fan_out(digest, key, &latest, now, out)? {
                    FanOut::Done => {}
                    FanOut::NeedDetails => need_details = true,
                    FanOut::Superseded => return Ok(()),
                }
            }
            if !need_details {
                // Every CIS shows the result, has its write in flight or waits out a back-off.
                self.reports.release(digest);
            }
            if need_details {
                // The details are not in memory: read the log again while the Job exists.
                if let Some(job) = jobs.iter().find(|j| {
                    j.uid == latest.job_uid && j.finished.as_ref().is_some_and(|f| f.succeeded)
                }) {
                    match self.harvest(digest, job, true, now, out)? {
                        Harvested::Pending => need_details = false,
                        // The log cannot be read again: a new scan gets the details.
                        Harvested::Recorded => {}
                    }
                }
            }
        } else if let Some((key, job_name)) = self
            .state
            .digests
            .get(digest)
            .and_then(|s| s.announce.clone())
        {
            self.announce(digest, &key, &job_name, now, out)?;
        }

        // 4. Schedule the next scan.
        let harvesting =
            harvest_pending || self.state.harvests.values().any(|h| h.digest == digest);
        let creating = self.flights.is_busy(&Target::CreateJob(digest.to_string()));
        let due_at = self.due_at(digest);
        let wants_scan = !cis_keys.is_empty()
            && active.is_none()
            && !harvesting
            && !creating
            && (due_at.is_none_or(|at| at <= now) || need_details);
        let queue_key = wants_scan.then(|| {
            let latest_at = self.state.latest(digest).map(|l| l.at);
            (
                latest_at.is_some(),
                latest_at.unwrap_or_default(),
                digest.to_string(),
            )
        });
        let scan = self.state.digests.entry(digest.to_string()).or_default();
        scan.queued = queue_key;
        if let (false, Some(at)) = (wants_scan, due_at)
            && !cis_keys.is_empty()
            && at > now
        {
            self.timers.arm(TimerKey::Digest(digest.to_string()), at);
        }
        if cis_keys.is_empty() && active.is_none() && !harvesting {
            // Nothing to do for this digest any more; keep the result (a CIS may come back).
            if let Some(s) = self.state.digests.get_mut(digest) {
                s.announce = None;
            }
        }
        Ok(())
    }

    /// When the digest is due for a new scan; `None` when it was never scanned.
    fn due_at(&self, digest: &str) -> Option<Timestamp> {
        let scan = self.state.digests.get(digest)?;
        if let Some(lost) = &scan.lost {
            return Some(lost.at);
        }
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
}

/// What harvesting a finished Job did.
enum Harvested {
    /// The result is recorded (or, for a refetch, nothing more can be done).
    Recorded,
    /// A log read is in flight, backing off, or the pod is not in the cache yet.
    Pending,
}

/// What fan-out did for one CIS.
enum FanOut {
    /// Written, or nothing to write.
    Done,
    /// The result is a success whose details are not in memory.
    NeedDetails,
    /// The CIS showed a newer result, now the digest's newest: the round ends (the digest is
    /// dirty again) so that no other CIS gets the older one.
    Superseded,
}

/// Deterministic per-digest jitter of up to a tenth of the interval, so that images scanned
/// together are not all rescanned in the same minute.
pub fn jitter(digest: &str, interval: Duration) -> Duration {
    let hash = crate::fingerprint::fnv1a64(digest.as_bytes());
    let permille = hash % 1000;
    interval / 10 * u32::try_from(permille).unwrap_or(0) / 1000
}
