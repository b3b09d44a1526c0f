//! Telling a workload's owners what changed in the images it runs (issue 21).
//!
//! A CIS is *pending* while its status shows a record (`notableFindings`) other than the one
//! announced (`announcedFindings`): the fan-out keeps the announced record when it writes a new
//! result (`cis_status::announced_after`), so what waits to be told is in the API, not here,
//! and survives a restart or a failover. This stage tells one workload at a time: the Events of
//! all its pending CIS merged into one per kind of change on the workload, and one per kind on
//! each CIS, and one delivery per configured sink (`engine::deliveries`); only when every Event
//! was recorded and every delivery ended does it write each CIS's announced record
//! (`cis_status::announced_status`), so a crash in between tells again rather than never.
//! A workload is told at most once per `notice_cooldown` (changes in between are told
//! together), and workloads at least `notice_spacing` apart cluster-wide, so a database update
//! that changes every image is told at a bounded pace, and a restart tells nothing twice that
//! was recorded as told.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::deliveries::{Deliveries, Outbox, SinkStats};
use super::flights::Flights;
use super::index::{CisKey, Index};
use super::timers::{TimerKey, Timers};
use super::{EngineConfig, Target};
use crate::cis_status::announced_status;
use crate::crd::FindingRecord;
use crate::notice::{Diff, notes};
use crate::notification::{ContainerChange, Notification, WorkloadId, idempotency_key};
use crate::port::{Action, ApiErrorKind, CisView, Command, CommandId, EventNote, EventRegarding};
use crate::time::Timestamp;

/// The workload a CIS names (`spec.workload`), in its namespace.
fn workload_id(cis: &CisView) -> WorkloadId {
    WorkloadId {
        namespace: cis.namespace.clone(),
        kind: cis.spec.workload.kind.clone(),
        name: cis.spec.workload.name.clone(),
    }
}

/// An Event to record: what it regards (kind, namespace, name, UID) and the note.
type Notice = (EventRegarding, String, String, String, EventNote);

/// An announcement under way: its Events are issued as the window has room (a window of one
/// command takes them one by one), and the records are written once all were recorded.
#[derive(Debug)]
struct Telling {
    /// Events not issued yet.
    queued: std::collections::VecDeque<Notice>,
    /// Events issued and not answered yet.
    unanswered: usize,
    /// Whether any Event failed: then nothing is recorded as told, and the workload is told
    /// again after its cooldown.
    failed: bool,
    /// Each CIS told of: its UID and the record it was told up to.
    told: Vec<(CisKey, String, Arc<FindingRecord>)>,
    /// The deliveries to the sinks, when any are configured and there is a change to tell.
    outbox: Option<Outbox>,
}

impl Telling {
    fn is_done(&self) -> bool {
        self.queued.is_empty()
            && self.unanswered == 0
            && self.outbox.as_ref().is_none_or(Outbox::is_done)
    }
}

/// The stage's state: which CIS are pending, by workload, and what is being told.
#[derive(Debug, Default)]
pub struct Notices {
    pending: BTreeMap<WorkloadId, BTreeSet<CisKey>>,
    /// The workload of each pending CIS (to move or drop it when its view changes).
    workload_of: BTreeMap<CisKey, WorkloadId>,
    /// When each workload was last told (this instance's memory: after a restart, the pace
    /// is kept by `notice_spacing` alone).
    last_told: BTreeMap<WorkloadId, Timestamp>,
    /// No workload is told before this.
    next_slot: Timestamp,
    /// Until when no pending workload is due, as last looked (`None`: look again): a poll
    /// before then skips the walk over the pending workloads, unless one was added.
    idle_until: Option<Timestamp>,
    telling: BTreeMap<WorkloadId, Telling>,
    /// Event command ids of the announcements in flight.
    event_owner: BTreeMap<u64, WorkloadId>,
    /// Records told, to be written as announced (CIS, its UID, the record).
    to_record: BTreeMap<CisKey, (String, Arc<FindingRecord>)>,
    /// The announcements' deliveries to the sinks.
    deliveries: Deliveries,
}

/// The shared services the stage uses.
pub(super) struct NoticeCx<'a> {
    pub cfg: &'a EngineConfig,
    pub index: &'a Index,
    pub flights: &'a mut Flights,
    pub timers: &'a mut Timers,
}

/// Whether a CIS's status waits to be told: it shows a record that is not the announced one.
pub fn is_pending(cis: &CisView) -> bool {
    match (&cis.status.notable, &cis.status.announced) {
        (Some(n), Some(a)) => !cis.deleting && !Arc::ptr_eq(n, a) && n != a,
        _ => false,
    }
}

impl Notices {
    /// Follows a CIS's view as stored (`None`: gone).
    pub fn observe(&mut self, key: &CisKey, view: Option<&CisView>) {
        if let Some(old) = self.workload_of.remove(key)
            && let Some(keys) = self.pending.get_mut(&old)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.pending.remove(&old);
            }
        }
        if let Some(cis) = view.filter(|c| is_pending(c)) {
            let workload = workload_id(cis);
            self.pending
                .entry(workload.clone())
                .or_default()
                .insert(key.clone());
            self.workload_of.insert(key.clone(), workload);
        }
        self.idle_until = None;
    }

    /// Number of CIS waiting to be told.
    pub fn pending_count(&self) -> usize {
        self.workload_of.len()
    }

    /// The answer to an Event: `true` when it was one of this stage's.
    pub fn on_event_outcome(&mut self, id: u64, failed: bool) -> bool {
        let Some(workload) = self.event_owner.remove(&id) else {
            return false;
        };
        if let Some(telling) = self.telling.get_mut(&workload) {
            telling.unanswered = telling.unanswered.saturating_sub(1);
            telling.failed |= failed;
            self.finish(&workload);
        }
        true
    }

    /// The answer to a delivery to a sink: `false` when `id` is not a delivery of this stage.
    pub fn on_delivery_outcome(
        &mut self,
        id: CommandId,
        failure: Option<ApiErrorKind>,
        now: Timestamp,
    ) -> bool {
        let Some((workload, sink)) = self.deliveries.owner_of(id) else {
            return false;
        };
        if let Some(outbox) = self
            .telling
            .get_mut(&workload)
            .and_then(|t| t.outbox.as_mut())
        {
            self.deliveries.land(outbox, sink, failure, now);
            self.finish(&workload);
        }
        true
    }

    /// Each configured sink's figures.
    pub fn sink_stats(&self, sinks: usize) -> Vec<SinkStats> {
        self.deliveries.stats(
            sinks,
            self.telling.values().filter_map(|t| t.outbox.as_ref()),
        )
    }

    /// Ends an announcement whose Events were all answered and deliveries ended: its records
    /// are written unless an Event failed.
    fn finish(&mut self, workload: &WorkloadId) {
        let done = self.telling.get(workload).is_some_and(Telling::is_done);
        if !done {
            return;
        }
        self.idle_until = None;
        if let Some(telling) = self.telling.remove(workload)
            && !telling.failed
        {
            for (key, uid, record) in telling.told {
                self.to_record.insert(key, (uid, record));
            }
        }
    }

    /// Issues the queued Events of the announcements under way, as far as the window allows.
    fn issue_queued(&mut self, cx: &mut NoticeCx<'_>, now: Timestamp, out: &mut Vec<Command>) {
        for (workload, telling) in &mut self.telling {
            while cx.flights.has_room() {
                let Some((regarding, namespace, name, uid, event)) = telling.queued.pop_front()
                else {
                    break;
                };
                let id = cx.flights.next_id();
                let action = Action::RecordEvent {
                    regarding,
                    namespace,
                    name,
                    uid,
                    event,
                };
                // Room was checked and the target is new: never blocked nor backing off.
                let _ = cx.flights.issue(Target::Event(id), action, now, out);
                self.event_owner.insert(id, workload.clone());
                telling.unanswered += 1;
            }
        }
    }

    /// Issues the deliveries to the sinks that are due, and arms the timer of the next retry.
    fn issue_deliveries(&mut self, cx: &mut NoticeCx<'_>, now: Timestamp, out: &mut Vec<Command>) {
        let mut next: Option<Timestamp> = None;
        for (workload, telling) in &mut self.telling {
            if let Some(outbox) = telling.outbox.as_mut()
                && let Some(at) =
                    self.deliveries
                        .issue(workload, outbox, &cx.cfg.sinks, cx.flights, now, out)
            {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if let Some(at) = next {
            cx.timers.arm(TimerKey::Notices, at);
        }
    }

    /// Writes the records told, then tells the next workload that is due.
    pub(super) fn sync(&mut self, mut cx: NoticeCx<'_>, now: Timestamp, out: &mut Vec<Command>) {
        self.record_told(&mut cx, now, out);
        self.issue_queued(&mut cx, now, out);
        self.issue_deliveries(&mut cx, now, out);
        if cx.cfg.notice_min_severity.is_none() || self.pending.is_empty() {
            return;
        }
        if now < self.next_slot {
            cx.timers.arm(TimerKey::Notices, self.next_slot);
            return;
        }
        if self.idle_until.is_some_and(|until| now < until) {
            return;
        }
        let mut earliest: Option<Timestamp> = None;
        let mut due = Vec::new();
        for workload in self.pending.keys() {
            // Like scans, a namespace no longer scanned is left as it is.
            if self.telling.contains_key(workload) || !cx.cfg.namespace_allowed(&workload.namespace)
            {
                continue;
            }
            let free_at = self
                .last_told
                .get(workload)
                .map_or(now, |t| t.plus(cx.cfg.notice_cooldown));
            if free_at > now {
                earliest = Some(earliest.map_or(free_at, |e| e.min(free_at)));
            } else {
                due.push(workload.clone());
            }
        }
        // The first due workload that has something to tell now; the others wait their turn.
        let told = due.into_iter().find(|w| self.tell(&mut cx, w, now, out));
        if let Some(workload) = told {
            self.last_told.insert(workload, now);
            self.next_slot = now.plus(cx.cfg.notice_spacing);
            earliest = Some(self.next_slot);
        }
        if let Some(at) = earliest {
            cx.timers.arm(TimerKey::Notices, at);
        }
        // Nothing is due before `earliest` unless a CIS changes or an announcement ends.
        self.idle_until = earliest;
        // Cooldowns of workloads no longer pending are not needed any more.
        let pending = &self.pending;
        let cooldown = cx.cfg.notice_cooldown;
        self.last_told
            .retain(|w, t| pending.contains_key(w) || t.plus(cooldown) > now);
    }

    /// Starts telling one workload of its pending CIS's changes; `false` when none of them can
    /// be told now (each waits for its told record to be written).
    fn tell(
        &mut self,
        cx: &mut NoticeCx<'_>,
        workload: &WorkloadId,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> bool {
        let keys = self.pending.get(workload).cloned().unwrap_or_default();
        let mut events: Vec<Notice> = Vec::new();
        let mut told = Vec::new();
        let mut diffs = Vec::new();
        let mut containers = Vec::new();
        let mut changes = Vec::new();
        let mut changed = Vec::new();
        let mut owner = None;
        for key in &keys {
            // A CIS whose told record waits to be written is told again only after that.
            if self.to_record.contains_key(key) {
                continue;
            }
            let Some(cis) = cx.index.cis.get(key).map(|t| &t.view) else {
                continue;
            };
            let (Some(notable), Some(announced)) = (&cis.status.notable, &cis.status.announced)
            else {
                continue;
            };
            told.push((key.clone(), cis.uid.clone(), notable.clone()));
            // Not comparable (another threshold) or no change worth telling: only recorded.
            let Some(diff) = Diff::between(announced, notable).filter(|d| !d.is_empty()) else {
                continue;
            };
            let subject = format!("image {}", image_of(cis));
            for note in notes(&diff, &subject) {
                events.push((
                    EventRegarding::Cis,
                    cis.namespace.clone(),
                    cis.name.clone(),
                    cis.uid.clone(),
                    note,
                ));
            }
            containers.push(format!(
                "{} ({})",
                cis.spec.workload.container_name,
                image_of(cis)
            ));
            if !cx.cfg.sinks.is_empty() {
                changed.push((cis.uid.clone(), announced.clone(), notable.clone()));
                changes.push(ContainerChange {
                    container: cis.spec.workload.container_name.clone(),
                    image: cis.spec.name.clone(),
                    digest: cis.spec.digest.clone(),
                    cis: cis.name.clone(),
                    diff: diff.clone(),
                });
            }
            diffs.push(diff);
            if owner.is_none() {
                owner = workload_reference(cis);
            }
        }
        if told.is_empty() {
            return false;
        }
        if let Some((regarding, uid)) = owner {
            let subject = match containers.as_slice() {
                [one] => format!("container {one}"),
                many => format!("containers {}", many.join(", ")),
            };
            for note in notes(&Diff::merge(diffs), &subject) {
                events.push((
                    regarding.clone(),
                    workload.namespace.clone(),
                    workload.name.clone(),
                    uid.clone(),
                    note,
                ));
            }
        }
        let outbox = (!changes.is_empty()).then(|| {
            let key = idempotency_key(changed.iter().map(|(u, a, n)| (u.as_str(), &**a, &**n)));
            let notification = Notification {
                key,
                workload: workload.clone(),
                changes,
            };
            Outbox::new(notification, cx.cfg.sinks.len(), now)
        });
        if events.is_empty() && outbox.is_none() {
            // Nothing worth an Event: the records are written as told straight away.
            for (key, uid, record) in told {
                self.to_record.insert(key, (uid, record));
            }
            return true;
        }
        self.telling.insert(
            workload.clone(),
            Telling {
                queued: events.into(),
                unanswered: 0,
                failed: false,
                told,
                outbox,
            },
        );
        self.issue_queued(cx, now, out);
        self.issue_deliveries(cx, now, out);
        true
    }

    /// Writes `announcedFindings` of the CIS whose changes were told.
    fn record_told(&mut self, cx: &mut NoticeCx<'_>, now: Timestamp, out: &mut Vec<Command>) {
        let keys: Vec<CisKey> = self.to_record.keys().cloned().collect();
        for key in keys {
            let Some((uid, record)) = self.to_record.get(&key) else {
                continue;
            };
            let cis = cx.index.cis.get(&key).map(|t| &t.view);
            // Gone or re-created: nothing to record (a re-created CIS starts a new baseline).
            let Some(cis) = cis.filter(|c| c.uid == *uid && !c.deleting) else {
                self.to_record.remove(&key);
                continue;
            };
            if cis.status.announced.as_deref() == Some(&**record) {
                self.to_record.remove(&key);
                continue;
            }
            let target = Target::CisStatus(key.clone());
            if !cx.flights.can_issue(&target, now) {
                if !cx.flights.has_room() {
                    return;
                }
                // A write of this CIS is in flight: its answer brings the next poll.
                continue;
            }
            let action = Action::ApplyCisStatus {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                uid: cis.uid.clone(),
                resource_version: cis.resource_version,
                status: Box::new(announced_status(cis, record)),
                keep_details: true,
            };
            // Kept until the view shows it: a refused write (a conflict) is tried again.
            let _ = cx.flights.issue(target, action, now, out);
        }
    }
}

/// `name@sha256:0123456789ab`: the image of a CIS with its digest shortened for a message.
fn image_of(cis: &CisView) -> String {
    let digest = &cis.spec.digest;
    let short = digest
        .char_indices()
        .nth(digest.find(':').map_or(12, |i| i + 13))
        .map_or(digest.as_str(), |(i, _)| &digest[..i]);
    format!("{}@{short}", cis.spec.name)
}

/// The Event reference of a CIS's top workload, when the CIS names its `apiVersion` and UID
/// (objects written by the Go operator may not).
pub(super) fn workload_reference(cis: &CisView) -> Option<(EventRegarding, String)> {
    let w = &cis.spec.workload;
    let api_version = w.api_version.clone().filter(|v| !v.is_empty())?;
    let uid = w.uid.clone().filter(|u| !u.is_empty())?;
    Some((
        EventRegarding::Workload {
            api_version,
            kind: w.kind.clone(),
        },
        uid,
    ))
}
