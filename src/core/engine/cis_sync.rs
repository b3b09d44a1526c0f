//! Stage "cis_sync": the metadata and spec of every CIS follow the pods that run its image.
//!
//! For each CIS name, the desired object comes from its member pods: all pods of the same
//! top-level workload that run the same image digest in the same container own it (fixes quirk
//! §19.9: owners are grouped by top workload, not by direct controller, so a rollout with an
//! unchanged image keeps every pod as owner). A CIS is created once a member has settled; a CIS
//! whose owner pods still exist but no longer run its image is deleted (§5.2 step 7); a CIS whose
//! owners are all gone is left to Kubernetes' garbage collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::dirty_cis::DirtyCis;
use super::flights::{Blocked, Flights, Step};
use super::index::{CisKey, Index, PodKey};
use super::timers::{TimerKey, Timers};
use super::tracked::supersedes;
use super::tracked::{ObjectKind, Tracked};
use super::{Engine, EngineConfig, Target};
use crate::crd::{ContainerImageScanSpec, Workload};
use crate::port::{Action, CisView, Command, Labels, Outcome, OwnerRef, StreamId, WatchEvent};
use crate::time::Timestamp;
use crate::workload::PodTarget;

/// A CIS that went away while held again within this time counts as going away repeatedly.
const RECREATE_WINDOW: Duration = Duration::from_secs(60);
/// First wait before re-creating a CIS that keeps going away; doubles each time.
const RECREATE_BACK_OFF: Duration = Duration::from_secs(1);
/// Longest wait before re-creating it.
const RECREATE_BACK_OFF_MAX: Duration = Duration::from_secs(300);

/// How often, and when last, a CIS went away while held.
#[derive(Clone, Copy, Debug)]
struct Gone {
    /// Times it went away again within [`RECREATE_WINDOW`] of the previous time.
    count: u32,
    /// When it last went away.
    at: Timestamp,
}

/// What the stage keeps between polls.
#[derive(Debug, Default)]
pub(super) struct CisSyncState {
    /// CIS to re-evaluate at the next poll.
    pub(super) dirty: DirtyCis,
    /// Owner-only CIS updates wait until these times.
    owner_delay: BTreeMap<CisKey, Timestamp>,
    /// CIS that went away while held, for the re-creation back-off.
    gone: BTreeMap<CisKey, Gone>,
}

/// Where the wait before an owner-only update of a CIS stands.
enum OwnerDelay {
    /// Started now, until the time given (a wake-up to arm).
    Started(Timestamp),
    Running,
    Passed,
}

/// What the stage works with besides its own state: the configuration, the cluster as
/// observed, and the shared command and timer services.
pub(super) struct StageCx<'a> {
    pub(super) cfg: &'a EngineConfig,
    pub(super) index: &'a Index,
    pub(super) flights: &'a mut Flights,
    pub(super) timers: &'a mut Timers,
}

impl CisSyncState {
    /// Counts a deletion by someone else of a CIS its pods still want.
    fn went_away(&mut self, key: &CisKey, now: Timestamp) {
        // Only the last few minutes matter: the map holds what went away since.
        self.gone
            .retain(|_, g| now < g.at.plus(RECREATE_WINDOW + RECREATE_BACK_OFF_MAX));
        match self.gone.get_mut(key) {
            Some(g) if now < g.at.plus(RECREATE_WINDOW) => {
                g.count = g.count.saturating_add(1);
                g.at = now;
            }
            Some(g) => *g = Gone { count: 0, at: now },
            None => {
                self.gone.insert(key.clone(), Gone { count: 0, at: now });
            }
        }
    }

    /// When a CIS that went away may be created again.
    fn recreate_at(&self, key: &CisKey) -> Option<Timestamp> {
        let g = self.gone.get(key)?;
        if g.count == 0 {
            return None;
        }
        let delay = RECREATE_BACK_OFF
            .saturating_mul(1u32 << (g.count - 1).min(16))
            .min(RECREATE_BACK_OFF_MAX);
        Some(g.at.plus(delay))
    }

    /// Starts the wait before an owner-only update on first sight (`delay` long).
    fn owner_delay(&mut self, key: &CisKey, now: Timestamp, delay: Duration) -> OwnerDelay {
        match self.owner_delay.get(key) {
            Some(at) if *at <= now => OwnerDelay::Passed,
            Some(_) => OwnerDelay::Running,
            None => {
                let at = now.plus(delay);
                self.owner_delay.insert(key.clone(), at);
                OwnerDelay::Started(at)
            }
        }
    }

    /// Brings one CIS's metadata and spec to what its pods ask for; [`Blocked`] (a command
    /// for it in flight, or a full window) keeps it dirty.
    fn sync(
        &mut self,
        key: &CisKey,
        now: Timestamp,
        cx: &mut StageCx<'_>,
        out: &mut Vec<Command>,
    ) -> Step {
        let target = Target::CisSpec(key.clone());
        if cx.flights.is_busy(&target) {
            return Err(Blocked);
        }
        if !cx.cfg.namespace_allowed(&key.namespace) {
            return Ok(());
        }
        let existing = cx.index.cis.get(key).map(|t| &t.view);
        if existing.is_some_and(|c| c.deleting) {
            return Ok(());
        }
        let desired = desired_cis(cx.index, key, existing.is_some());
        match (desired, existing) {
            (Some(desired), None) => {
                if let Some(at) = self.recreate_at(key).filter(|at| *at > now) {
                    cx.timers
                        .arm(TimerKey::Cis(key.namespace.clone(), key.name.clone()), at);
                    return Ok(());
                }
                cx.flights
                    .issue(target, apply_action(key, desired), now, out)?;
                Ok(())
            }
            (Some(desired), Some(cis)) => {
                let (spec_ok, labels_ok, owners_ok) = compare(&desired, cis);
                if spec_ok && labels_ok && owners_ok {
                    return Ok(());
                }
                // Owner-only changes wait a little so pods starting together cost one write.
                if spec_ok && labels_ok {
                    match self.owner_delay(key, now, cx.cfg.owner_update_delay) {
                        OwnerDelay::Passed => {}
                        OwnerDelay::Started(at) => {
                            let timer = TimerKey::Cis(key.namespace.clone(), key.name.clone());
                            cx.timers.arm(timer, at);
                            return Ok(());
                        }
                        OwnerDelay::Running => return Ok(()),
                    }
                }
                self.owner_delay.remove(key);
                cx.flights
                    .issue(target, apply_action(key, desired), now, out)?;
                Ok(())
            }
            (None, Some(cis)) => {
                if is_obsolete(cx.index, key, cis) {
                    let action = Action::DeleteCis {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        uid: cis.uid.clone(),
                    };
                    cx.flights.issue(target, action, now, out)?;
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

/// What a CIS should look like according to its member pods.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct DesiredCis {
    pub labels: Arc<Labels>,
    pub owners: Vec<OwnerRef>,
    pub spec: ContainerImageScanSpec,
}

impl Engine {
    pub(super) fn observe_cis(
        &mut self,
        stream: StreamId,
        event: WatchEvent<CisView>,
        now: Timestamp,
    ) {
        let key_of = |c: &CisView| CisKey::new(&c.namespace, &c.name);
        let op =
            (self.index.relists).watch_op(ObjectKind::Cis, stream, &self.index.cis, key_of, event);
        op.apply(self, Self::upsert_cis, |e, key| {
            e.note_gone(key, now);
            e.remove_cis(key);
        });
    }

    /// Remembers that someone else deleted a CIS its pods still want (a person, a pruning
    /// GitOps tool, another replica that also believes it leads, with another configuration):
    /// re-created at once the first time, then after a back-off while it keeps going away, so
    /// that two writers who disagree do not create and delete it many times a second.
    fn note_gone(&mut self, key: &CisKey, now: Timestamp) {
        // Not ours (a Delete we sent, or an apply racing it) and not the garbage collector's
        // (no owner pod runs any more): someone else deleted a CIS that is still wanted.
        let deleted_by_someone_else = self.index.cis.get(key).is_some_and(|t| {
            !t.view.deleting
                && !self.flights.is_busy(&Target::CisSpec(key.clone()))
                && has_live_owner(&self.index, &t.view)
        });
        if deleted_by_someone_else {
            self.cis_sync.went_away(key, now);
        }
    }

    /// Stores a CIS as observed (from a watch or from the response to our own write).
    pub(super) fn upsert_cis(&mut self, mut tracked: Tracked<CisView>) {
        tracked.view = self.index.shared.cis(tracked.view);
        let key = CisKey::new(&tracked.view.namespace, &tracked.view.name);
        let old = self.index.cis.get(&key);
        if !supersedes(old.map(|t| &t.view), &tracked.view) {
            return;
        }
        let old_digest = old.map(|t| t.view.spec.digest.clone());
        let old_details = old.map_or(0, |t| t.view.status.details_bytes);
        if old.and_then(|t| t.view.status.suppressed.as_ref())
            != tracked.view.status.suppressed.as_ref()
        {
            // What the exceptions cover changed (`exception_status`).
            self.exception_statuses.stale = true;
        }
        let new_digest = tracked.view.spec.digest.clone();
        self.index
            .index_cis_digest(&key, old_digest.as_deref(), Some(&new_digest));
        if let Some(d) = old_digest {
            self.scans.dirty.insert(d);
        }
        self.scan_stage().learn_result_from_status(&tracked.view);
        self.scans.dirty.insert(new_digest);
        self.cis_sync.dirty.insert(key.clone());
        self.index.details_bytes = (self.index.details_bytes.saturating_sub(old_details))
            .saturating_add(tracked.view.status.details_bytes);
        self.scans.cis_seen(&key, &tracked.view.status);
        self.notices.observe(&key, Some(&tracked.view));
        self.index.cis.insert(key, Box::new(tracked));
    }

    pub(super) fn remove_cis(&mut self, key: &CisKey) {
        if let Some(old) = self.index.cis.remove(key) {
            if old.view.status.suppressed.is_some() {
                self.exception_statuses.stale = true;
            }
            self.index.details_bytes =
                (self.index.details_bytes).saturating_sub(old.view.status.details_bytes);
            self.index
                .index_cis_digest(key, Some(&old.view.spec.digest), None);
            self.scans.dirty.insert(old.view.spec.digest);
            self.scans.forget_cis(key);
            self.notices.observe(key, None);
        }
        // Member pods may want it back (someone deleted it by hand).
        self.cis_sync.dirty.insert(key.clone());
    }

    pub(super) fn sync_dirty_cis(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        // Walk the set in order, one key at a time: copying all dirty keys on every poll cost
        // O(dirty) allocations per command outcome (most polls stop after a few keys, when the
        // window is full).
        let mut next = self.cis_sync.dirty.first();
        while let Some(key) = next {
            if !self.flights.has_room() {
                return;
            }
            let mut cx = StageCx {
                cfg: &self.cfg,
                index: &self.index,
                flights: &mut self.flights,
                timers: &mut self.timers,
            };
            if self.cis_sync.sync(&key, now, &mut cx, out).is_ok() {
                self.cis_sync.dirty.remove(&key);
            }
            next = self.cis_sync.dirty.after(&key);
        }
    }

    pub(super) fn on_cis_spec_outcome(
        &mut self,
        key: CisKey,
        action: &Action,
        outcome: Outcome,
        _now: Timestamp,
    ) {
        match outcome {
            Outcome::CisApplied(view) => {
                self.stats.spec_writes += 1;
                let stream = self
                    .index
                    .cis
                    .get(&key)
                    .map(|t| (t.stream, t.epoch))
                    .unwrap_or_else(|| self.index.relists.home(ObjectKind::Cis, &key.namespace));
                self.upsert_cis(Tracked {
                    view: *view,
                    stream: stream.0,
                    epoch: stream.1,
                });
            }
            Outcome::Done => {
                if let Action::DeleteCis { uid, .. } = action {
                    self.stats.spec_writes += 1;
                    // Deleted (or waiting for finalizers): do not delete it again before the
                    // watch reports it.
                    if let Some(t) = self.index.cis.get_mut(&key)
                        && t.view.uid == *uid
                    {
                        t.view.deleting = true;
                    }
                }
            }
            Outcome::Failed(err) if err.kind == crate::port::ApiErrorKind::NotFound => {
                if let Action::DeleteCis { uid, .. } = action
                    && self.index.cis.get(&key).is_some_and(|t| t.view.uid == *uid)
                {
                    self.remove_cis(&key);
                }
            }
            // Retryable failures are re-issued after the back-off (the key stays dirty through
            // the timer); permanent ones wait for the next change of the inputs.
            Outcome::Failed(_) | Outcome::JobCreated(_) | Outcome::Log(_) => {}
        }
        self.cis_sync.dirty.insert(key);
    }
}

fn apply_action(key: &CisKey, desired: DesiredCis) -> Action {
    Action::ApplyCis {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        labels: desired.labels,
        owners: desired.owners,
        spec: desired.spec,
    }
}

/// (spec matches, our labels present, owners equal). `minSeverity` belongs to users, and labels
/// added by others are left alone (server-side apply keeps fields other managers own).
fn compare(desired: &DesiredCis, cis: &CisView) -> (bool, bool, bool) {
    let mut spec = desired.spec.clone();
    spec.min_severity = cis.spec.min_severity;
    let spec_ok = spec == cis.spec;
    let labels_ok = desired
        .labels
        .iter()
        .all(|(k, v)| cis.labels.get(k) == Some(v));
    let mut owners = cis.owners.clone();
    owners.sort();
    let owners_ok = owners == desired.owners;
    (spec_ok, labels_ok, owners_ok)
}

/// A CIS nobody wants is deleted only when some of its owner pods still exist (they moved
/// to another image); when all owners are gone, Kubernetes' garbage collector removes it.
fn is_obsolete(index: &Index, key: &CisKey, cis: &CisView) -> bool {
    has_live_owner(index, cis) && !index.members.contains_key(key)
}

/// Whether an owner pod of `cis` still runs (so Kubernetes' garbage collector does not
/// remove it).
fn has_live_owner(index: &Index, cis: &CisView) -> bool {
    cis.owners.iter().any(|o| {
        o.kind == "Pod"
            && index
                .pods
                .get(&super::index::pod_key(&cis.namespace, &o.name))
                .is_some_and(|p| p.tracked.view.uid == o.uid && !p.tracked.view.deleting)
    })
}

/// The CIS its member pods ask for; `None` when there are no members, or no member has
/// settled yet and the CIS does not exist.
pub(super) fn desired_cis(index: &Index, key: &CisKey, exists: bool) -> Option<DesiredCis> {
    let members = index.members.get(key)?;
    // (pod key, its target for this CIS, whether settled)
    let mut rows: Vec<(&PodKey, &PodTarget, bool)> = Vec::new();
    for pod_key in members {
        let Some(entry) = index.pods.get(pod_key) else {
            continue;
        };
        if let Some(t) = entry.targets.iter().find(|t| t.cis_name == key.name) {
            rows.push((pod_key, t, entry.settled));
        }
    }
    // Different workloads/containers can produce the same name (e.g. workload "a-b" with
    // container "c" and workload "a" with container "b-c"); the smallest identity wins.
    let identity = |t: &PodTarget| {
        (
            t.workload.kind.clone(),
            t.workload.name.clone(),
            t.container.clone(),
            t.workload.uid.clone(),
        )
    };
    let winner = rows.iter().map(|(_, t, _)| identity(t)).min()?;
    rows.retain(|(_, t, _)| identity(t) == winner);
    if !exists && !rows.iter().any(|(_, _, settled)| *settled) {
        return None;
    }
    // The newest pod speaks for the workload's current template (labels, tag).
    let (newest_key, newest_target, _) = rows.iter().max_by(|a, b| {
        let pa = index.pods.get(a.0).map(|e| e.tracked.view.created);
        let pb = index.pods.get(b.0).map(|e| e.tracked.view.created);
        (pa, a.0).cmp(&(pb, b.0))
    })?;
    let newest_pod = &index.pods.get(*newest_key)?.tracked.view;
    let mut owners: Vec<OwnerRef> = rows
        .iter()
        .filter_map(|(k, _, _)| index.pods.get(*k))
        .map(|e| OwnerRef {
            api_version: "v1".to_string(),
            kind: "Pod".to_string(),
            name: e.tracked.view.name.clone(),
            uid: e.tracked.view.uid.clone(),
        })
        .collect();
    owners.sort();
    let w = &newest_target.workload;
    Some(DesiredCis {
        labels: newest_pod.labels.clone(),
        owners,
        spec: ContainerImageScanSpec {
            name: newest_target.image.name.clone(),
            digest: newest_target.image.digest.clone(),
            tag: Some(newest_target.image.tag.clone()),
            min_severity: None,
            ignore_unfixed: Some(w.ignore_unfixed || newest_pod.ignore_unfixed),
            workload: Workload {
                api_version: Some(w.api_version.clone()),
                group: w.group.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
                uid: Some(w.uid.clone()),
                container_name: newest_target.container.clone(),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_away_again_within_the_window_backs_off_and_exactly_at_its_end_starts_over() {
        let mut state = CisSyncState::default();
        let key = CisKey::new("ns", "a");
        let t0 = Timestamp::from_secs(1_000);
        state.went_away(&key, t0);
        assert_eq!(state.recreate_at(&key), None, "the first time: at once");
        let t1 = t0.plus(RECREATE_WINDOW - Duration::from_secs(1));
        state.went_away(&key, t1);
        assert_eq!(state.recreate_at(&key), Some(t1.plus(RECREATE_BACK_OFF)));
        state.went_away(&key, t1.plus(RECREATE_WINDOW));
        assert_eq!(
            state.recreate_at(&key),
            None,
            "a window later counts as a first time"
        );
    }
}
