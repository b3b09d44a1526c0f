//! The CIS lifecycle engine: a sans-io state machine in the style of quinn-proto.
//!
//! * [`Engine::observe`] takes an [`Observation`] (watch events, command outcomes, leadership) and
//!   updates the engine's compact index of the cluster.
//! * [`Engine::poll`] returns the [`Command`]s that bring the cluster closer to the desired state,
//!   at most as many as the flow-control window allows.
//! * [`Engine::next_wakeup`] says when time alone would make `poll` return something new.
//!
//! The stages inside are named after what they decide: `pods` (membership of pods in CIS),
//! `cis_sync` (metadata and spec of each CIS), `scans` (one scan per digest: Jobs, harvesting
//! logs, fan-out of results to statuses). Nothing here reads a clock or talks to the API.

mod cache;
mod cis_sync;
mod config;
mod coverage;
mod deliveries;
mod dirty_cis;
mod exception_status;
mod exceptions;
mod flights;
mod index;
mod intern;
mod notices;
mod placement;
mod pods;
mod scans;
mod timers;
mod tracked;
mod vec_set;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

pub use config::{
    DEFAULT_DETAILS_TOTAL_BYTES, DEFAULT_EXCLUDE_REGEXP, EngineConfig, StatusDetails,
};
pub use coverage::{Coverage, Latency};
pub use deliveries::SinkStats;
pub use index::CisKey;
pub use placement::{Placement, PullFailure, classify_pull_failure};

use self::cache::ReportCache;
use self::flights::Flights;
use self::index::Index;
use self::timers::{TimerKey, Timers};
use super::port::{
    Action, ApiErrorKind, CisView, Command, CommandId, EventNote, EventRegarding, Observation,
    Outcome,
};
use super::time::Timestamp;

/// What a command in flight is about; at most one command per target runs at a time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// Metadata/spec of a CIS (apply or delete).
    CisSpec(CisKey),
    /// Status of a CIS.
    CisStatus(CisKey),
    /// Creating the scan Job of a digest.
    CreateJob(String),
    /// Deleting a Job by `index::object_key`.
    DeleteJob(String),
    /// Reading the log of a Job (by Job UID).
    Log(String),
    /// Reading the log of a failed attempt of a running Job (by Job UID), kept for the
    /// condition message: Kubernetes deletes the pod when the Job finally fails.
    FailureLog(String),
    /// The OpenReports Report of a CIS for the result of a Job (by UID).
    Report(CisKey, String),
    /// An Event about a CIS.
    Event(u64),
    /// The status of a vulnerability exception.
    ExceptionStatus(crate::exception::ExceptionKey),
}

/// An Event waiting for a free slot in the command window.
#[derive(Clone, Debug)]
struct PendingEvent {
    regarding: EventRegarding,
    namespace: String,
    name: String,
    uid: String,
    event: EventNote,
}

impl PendingEvent {
    /// An Event on the top workload of `cis`, when the CIS names its `apiVersion` and UID.
    fn on_workload(cis: &CisView, event: EventNote) -> Option<PendingEvent> {
        let (regarding, uid) = notices::workload_reference(cis)?;
        Some(PendingEvent {
            regarding,
            namespace: cis.namespace.clone(),
            name: cis.spec.workload.name.clone(),
            uid,
            event,
        })
    }

    fn on_cis(key: &CisKey, uid: &str, event: EventNote) -> PendingEvent {
        PendingEvent {
            regarding: EventRegarding::Cis,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            uid: uid.to_string(),
            event,
        }
    }
}

/// Counters the shell exports as operational metrics; all monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Scan Jobs created.
    pub jobs_created: u64,
    /// Scans that ended successfully (per digest).
    pub scans_succeeded: u64,
    /// Scans that ended in failure (per digest).
    pub scans_failed: u64,
    /// Results of succeeded scans lost (the pod gone before its log was read) and scanned
    /// again at once.
    pub results_lost: u64,
    /// Commands that failed, by kind.
    pub command_errors: BTreeMap<ApiErrorKind, u64>,
    pub status_writes: u64,
    /// Spec/metadata writes (apply + delete).
    pub spec_writes: u64,
    /// Reports given up on (the status was written without them).
    pub reports_skipped: u64,
}

/// The engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    index: Index,
    reports: ReportCache,
    timers: Timers,
    flights: Flights,
    cis_sync: cis_sync::CisSyncState,
    scans: scans::ScanState,
    exceptions: exceptions::Exceptions,
    exception_statuses: exception_status::ExceptionStatuses,
    first_results: coverage::FirstResults,
    notices: notices::Notices,
    /// Events waiting for capacity.
    pending_events: VecDeque<PendingEvent>,
    leading: bool,
    /// Until when the Lease is known valid (`Observation::LeaseValidUntil`); `None`: no limit.
    lease_until: Option<Timestamp>,
    synced: bool,
    stats: EngineStats,
}

impl Engine {
    /// A new engine that knows nothing yet. It does not write until it is leader and its caches
    /// are synced.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            flights: Flights::new(cfg.max_inflight, cfg.api_retry_base, cfg.api_retry_max),
            reports: ReportCache::new(cfg.report_cache_bytes),
            cfg,
            index: Index::default(),
            timers: Timers::default(),
            cis_sync: Default::default(),
            scans: Default::default(),
            exceptions: Default::default(),
            exception_statuses: Default::default(),
            first_results: Default::default(),
            notices: Default::default(),
            pending_events: VecDeque::new(),
            leading: false,
            lease_until: None,
            synced: false,
            stats: EngineStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Takes one observation.
    pub fn observe(&mut self, observation: Observation, now: Timestamp) {
        match observation {
            Observation::Pod { stream, event } => self.observe_pod(stream, event, now),
            Observation::Workload { stream, event } => self.observe_workload(stream, event, now),
            Observation::Cis { stream, event } => self.observe_cis(stream, event, now),
            Observation::Job { stream, event } => self.scan_stage().observe_job(stream, event),
            Observation::ScanPod { stream, event } => {
                self.scan_stage().observe_scan_pod(stream, event)
            }
            Observation::BackOffEvent {
                namespace,
                pod_name,
            } => self.scan_stage().observe_back_off(&namespace, &pod_name),
            Observation::JobPodRejected {
                namespace,
                job_name,
                job_uid,
                message,
            } => self
                .scan_stage()
                .observe_job_pod_rejected(&namespace, &job_name, &job_uid, message),
            Observation::TrivyJobConfig { data } => {
                self.scans.trivy_job_config = data.map(Arc::new)
            }
            Observation::NodePlatform { node, platform } => match platform {
                Some(platform) => {
                    self.scans.node_platforms.insert(node, platform);
                }
                None => {
                    self.scans.node_platforms.remove(&node);
                }
            },
            Observation::Exception { stream, event } => {
                let changed = self
                    .exceptions
                    .observe(&mut self.index.relists, stream, event);
                // Any event, a status-only one too: what we wrote may not be what it says.
                self.exception_statuses.stale = true;
                for (concerns, expiry) in changed {
                    if let Some((key, at)) = expiry
                        && at > now
                    {
                        self.timers.arm(TimerKey::ExceptionExpiry(key), at);
                    }
                    self.rewrite_results(&concerns);
                }
            }
            Observation::VexMap { stream, event } => {
                let concerns =
                    self.exceptions
                        .observe_vex_map(&mut self.index.relists, stream, event);
                if !concerns.is_empty() {
                    self.exception_statuses.stale = true;
                }
                for concerns in concerns {
                    self.rewrite_results(&concerns);
                }
            }
            Observation::CachesSynced => {
                if !self.synced {
                    self.synced = true;
                    self.mark_everything_dirty();
                }
            }
            Observation::Leadership { leading } => {
                if leading && !self.leading {
                    self.mark_everything_dirty();
                }
                self.leading = leading;
            }
            Observation::LeaseValidUntil { until } => self.lease_until = Some(until),
            Observation::Outcome { id, outcome } => self.observe_outcome(id, outcome, now),
        }
    }

    /// Returns the commands to execute now, at most the free flow-control window.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Command> {
        for key in self.timers.take_due(now) {
            let key = match key {
                TimerKey::Retry(target) => {
                    self.flights.end_back_off(&target);
                    match self.retry_owner(&target) {
                        Some(owner) => owner,
                        None => continue,
                    }
                }
                key => key,
            };
            match key {
                TimerKey::Pod(pod) => self.recheck_pod(&pod, now),
                TimerKey::Cis(ns, name) => {
                    self.cis_sync.dirty.insert(CisKey::new(&ns, &name));
                }
                TimerKey::Digest(d) => {
                    // An earlier timer of the digest replaced the end of its uncertain-create
                    // hold: keep that wake-up, or a full Job limit may wait for nothing.
                    if let Some(until) = self.scans.uncertain_jobs.held_until(&d, now) {
                        self.timers.arm(TimerKey::Digest(d.clone()), until);
                    }
                    self.scans.dirty.insert(d);
                }
                TimerKey::ExceptionExpiry(key) => match self.exceptions.expiry(&key, now) {
                    exceptions::Expiry::Passed(concerns) => {
                        self.rewrite_results(&concerns);
                        self.exception_statuses.stale = true;
                    }
                    exceptions::Expiry::Later(at) => {
                        self.timers.arm(TimerKey::ExceptionExpiry(key), at);
                    }
                    exceptions::Expiry::Gone => {}
                },
                TimerKey::ExceptionStatuses => self.exception_statuses.due = true,
                // The notices stage looks at its cooldowns on every poll.
                TimerKey::Notices | TimerKey::Retry(_) => {}
            }
        }
        // Without exceptions there is no status to write, and no wake-up for one.
        if std::mem::take(&mut self.exception_statuses.stale) && !self.exceptions.is_empty() {
            self.timers.arm(
                TimerKey::ExceptionStatuses,
                now.plus(exception_status::SETTLE),
            );
        }
        let mut out = Vec::new();
        // Past the Lease's validity nothing is decided: the next renewal seen brings a poll.
        let lease_lapsed = self.lease_until.is_some_and(|until| now >= until);
        if !self.leading || !self.synced || lease_lapsed {
            return out;
        }
        self.flush_events(&mut out);
        // Scans first: a digest's Job can start as soon as its first CIS exists, so the scans
        // (the slow part: a Job runs in the cluster) overlap the creation of the other CIS
        // instead of waiting for all of them.
        self.scan_stage().sync_dirty(now, &mut out);
        self.scan_stage().start_scans(now, &mut out);
        self.sync_dirty_cis(now, &mut out);
        if self.exception_statuses.due {
            let cx = exception_status::StatusCx {
                exceptions: &self.exceptions,
                index: &self.index,
                flights: &mut self.flights,
                pending_events: &mut self.pending_events,
            };
            if self.exception_statuses.sync(cx, now, &mut out).is_ok() {
                self.exception_statuses.due = false;
            }
        }
        let cx = notices::NoticeCx {
            cfg: &self.cfg,
            index: &self.index,
            flights: &mut self.flights,
            timers: &mut self.timers,
        };
        self.notices.sync(cx, now, &mut out);
        out
    }

    /// When the engine next needs `poll` even if nothing is observed.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Whether every watch has delivered its first list.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether this instance currently may write.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Counters for operational metrics.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The CIS objects as last observed, ordered by namespace and name.
    pub fn cis_views(&self) -> impl Iterator<Item = &CisView> {
        self.index.cis.values().map(|t| &t.view)
    }

    /// The CIS views after (namespace, name) `after` (all when `None`), in (namespace, name)
    /// order: where a chunk of `/metrics` resumes.
    pub fn cis_views_after(&self, after: Option<&CisKey>) -> impl Iterator<Item = &CisView> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.index
            .cis
            .range((start, Bound::Unbounded))
            .map(|(_, t)| &t.view)
    }

    /// Number of scan Jobs that are neither finished nor being deleted.
    pub fn active_jobs(&self) -> usize {
        self.index.active_job_count()
    }

    /// Bytes of vulnerability details the CIS statuses and Reports keep in etcd, as their
    /// `status.detailsBytes` say.
    pub fn details_bytes(&self) -> u64 {
        self.index.details_bytes
    }

    /// Bytes of parsed reports held in memory.
    pub fn report_cache_bytes(&self) -> usize {
        self.reports.used_bytes()
    }

    /// Number of commands in flight.
    pub fn inflight(&self) -> usize {
        self.flights.len()
    }

    /// Each configured sink's deliveries (`EngineConfig::sinks` order).
    pub fn sink_stats(&self) -> Vec<SinkStats> {
        self.notices.sink_stats(self.cfg.sinks.len())
    }

    /// CIS whose changes wait to be told (`engine::notices`).
    pub fn notices_pending(&self) -> usize {
        self.notices.pending_count()
    }

    /// Work waiting: dirty keys plus digests queued for a scan slot.
    pub fn queue_depth(&self) -> usize {
        self.cis_sync.dirty.len() + self.scans.dirty.len() + self.scans.queue_len()
    }

    /// The scans stage over the shared services, for one call.
    fn scan_stage(&mut self) -> scans::ScanStage<'_> {
        scans::ScanStage {
            state: &mut self.scans,
            cfg: &self.cfg,
            index: &mut self.index,
            flights: &mut self.flights,
            timers: &mut self.timers,
            reports: &mut self.reports,
            stats: &mut self.stats,
            pending_events: &mut self.pending_events,
            first_results: &mut self.first_results,
            exceptions: &self.exceptions,
        }
    }

    /// The digests of the scans `concerns` covers are synced again: their fan-out writes each
    /// CIS whose exceptions changed (see `exceptions`).
    fn rewrite_results(&mut self, concerns: &exceptions::Concerns) {
        match concerns {
            exceptions::Concerns::All => {
                self.scans
                    .dirty
                    .extend(self.index.cis_by_digest.keys().cloned());
            }
            exceptions::Concerns::Namespace(ns) => {
                let from = CisKey::new(ns, "");
                let digests = self
                    .index
                    .cis
                    .range(from..)
                    .take_while(|(k, _)| k.namespace == *ns)
                    .map(|(_, t)| t.view.spec.digest.clone());
                self.scans.dirty.extend(digests);
            }
        }
    }

    fn mark_everything_dirty(&mut self) {
        self.cis_sync
            .dirty
            .extend(self.index.members.keys().cloned());
        self.cis_sync.dirty.extend(self.index.cis.keys().cloned());
        self.scans
            .dirty
            .extend(self.index.cis_by_digest.keys().cloned());
        self.scans.dirty.extend(self.index.job_digests());
        self.exception_statuses.stale = true;
    }

    fn observe_outcome(&mut self, id: CommandId, outcome: Outcome, now: Timestamp) {
        let failed = match &outcome {
            Outcome::Failed(err) => Some(err.kind),
            _ => None,
        };
        let Some(landed) = self.flights.land(id, failed.is_some(), now) else {
            // Not an API command: a delivery to a sink, or an answer from before a restart.
            self.notices.on_delivery_outcome(id, failed, now);
            return;
        };
        if let Some(kind) = failed {
            *self.stats.command_errors.entry(kind).or_default() += 1;
        }
        let flight = landed.flight;
        if let Some(at) = landed.retry_at {
            self.arm_retry(&flight.target, at);
        }
        match flight.target {
            Target::CisSpec(key) => self.on_cis_spec_outcome(key, &flight.action, outcome, now),
            Target::CisStatus(key) => self.on_cis_status_outcome(key, &flight.action, outcome, now),
            Target::CreateJob(digest) => {
                (self.scan_stage()).on_create_job_outcome(&digest, &flight.action, outcome, now)
            }
            Target::DeleteJob(name) => {
                (self.scan_stage()).on_delete_job_outcome(&name, &flight.action, outcome)
            }
            Target::Log(job_uid) => self.scan_stage().on_log_outcome(&job_uid, outcome, now),
            Target::FailureLog(job_uid) => {
                self.scan_stage().on_failure_log_outcome(&job_uid, outcome)
            }
            Target::Report(key, job_uid) => {
                self.scan_stage().on_report_outcome(key, job_uid, outcome)
            }
            Target::Event(id) => {
                self.notices.on_event_outcome(id, failed.is_some());
            }
            // Compared again at the next settle: a landed write comes back through the watch,
            // a failed one is retried if it still differs.
            Target::ExceptionStatus(_) => self.exception_statuses.stale = true,
        }
    }

    /// Brings a failed target back when its back-off ends, with a timer of its own: a timer of
    /// what it belongs to (shared with other targets, keeping only the earliest deadline) could
    /// fire for another target's retry while this one still backs off, which then skipped it
    /// (`Deferred`) with no wake-up left (sim seed 8455).
    fn arm_retry(&mut self, target: &Target, at: Timestamp) {
        if matches!(target, Target::Event(_)) {
            return;
        }
        let key = TimerKey::Retry(target.clone());
        self.timers.disarm(&key);
        self.timers.arm(key, at);
    }

    /// What a target's retry re-evaluates: the timer of what it belongs to, when it still exists.
    fn retry_owner(&self, target: &Target) -> Option<TimerKey> {
        Some(match target {
            Target::CisSpec(k) => TimerKey::Cis(k.namespace.clone(), k.name.clone()),
            // Events are best effort: a failed one is not retried.
            Target::Event(_) => return None,
            Target::CisStatus(k) | Target::Report(k, _) => match self.index.cis.get(k) {
                Some(t) => TimerKey::Digest(t.view.spec.digest.clone()),
                None => return None,
            },
            Target::CreateJob(d) => TimerKey::Digest(d.clone()),
            Target::ExceptionStatus(_) => TimerKey::ExceptionStatuses,
            Target::DeleteJob(name) => match self
                .index
                .jobs
                .get(name)
                .and_then(|j| j.view.digest.clone())
            {
                Some(d) => TimerKey::Digest(d),
                None => return None,
            },
            Target::Log(job_uid) | Target::FailureLog(job_uid) => match self
                .index
                .job_by_uid(job_uid)
                .and_then(|j| j.digest.clone())
            {
                Some(d) => TimerKey::Digest(d),
                None => return None,
            },
        })
    }

    fn flush_events(&mut self, out: &mut Vec<Command>) {
        while self.flights.has_room() {
            let Some(pending) = self.pending_events.pop_front() else {
                break;
            };
            let target = Target::Event(self.flights.next_id());
            let action = Action::RecordEvent {
                regarding: pending.regarding,
                namespace: pending.namespace,
                name: pending.name,
                uid: pending.uid,
                event: pending.event,
            };
            // Never blocked (room was checked, the target is new) nor backing off.
            let _ = self.flights.issue(target, action, Timestamp::EPOCH, out);
        }
    }
}

#[cfg(test)]
mod cis_stage_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod scan_stage_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod upstream_cases;
