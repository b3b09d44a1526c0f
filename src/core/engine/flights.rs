//! Commands in flight: their ids, at most one per target at a time, the flow-control window,
//! and the growing back-off of a target whose command failed. Shared by every stage: a stage
//! names what a command is for (its [`Target`]) and learns here whether it may send it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Target;
use crate::port::{Action, Command, CommandId};
use crate::time::Timestamp;

/// Out of capacity: a command for the target is in flight, or the flow-control window is
/// full. Whatever asked stays dirty and is synced again when an answer frees room; each step
/// passes it up with `?`, so that a stage stops at the first step that cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Blocked;

/// What a step of a stage did, unless it was [`Blocked`].
pub(super) type Step<T = ()> = Result<T, Blocked>;

/// What [`Flights::issue`] did, when not blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Issued {
    /// The command was issued.
    Yes,
    /// The target is backing off after a failure; a timer brings it back.
    Deferred,
}

/// A command in flight.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    /// What it is for.
    pub target: Target,
    /// The request, without its payloads (`Action::in_flight_record`).
    pub action: Action,
}

/// A command's answer, as [`Flights::land`] hands it back.
pub(super) struct Landed {
    /// The command.
    pub flight: InFlight,
    /// When its target may be tried again, after a failure.
    pub retry_at: Option<Timestamp>,
}

/// The commands in flight and the back-off of failed targets.
#[derive(Debug)]
pub(super) struct Flights {
    next_id: u64,
    inflight: BTreeMap<CommandId, InFlight>,
    busy: BTreeSet<Target>,
    /// Consecutive failures per target, for the growing back-off.
    attempts: BTreeMap<Target, u32>,
    /// Until when a failed target is skipped.
    retry_at: BTreeMap<Target, Timestamp>,
    window: usize,
    retry_base: Duration,
    retry_max: Duration,
}

/// The longest back-off of a log read. A log waits on the node's kubelet, which comes back on
/// its own (a restart, a hiccup of its node): at the API requests' cap of minutes, a result
/// would show that much after the node answered again (`make chaos`, a log endpoint down for
/// 20-40 s).
const LOG_RETRY_MAX: Duration = Duration::from_secs(30);

impl Flights {
    /// At most `window` commands in flight; a failed target waits `retry_base` · 2^(failures-1),
    /// at most `retry_max` (a log read at most [`LOG_RETRY_MAX`]).
    pub fn new(window: usize, retry_base: Duration, retry_max: Duration) -> Flights {
        Flights {
            next_id: 1,
            inflight: BTreeMap::new(),
            busy: BTreeSet::new(),
            attempts: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            window,
            retry_base,
            retry_max,
        }
    }

    /// Issues a command for `target` unless one is already in flight, the window is full, or
    /// the target is backing off.
    pub fn issue(
        &mut self,
        target: Target,
        action: Action,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step<Issued> {
        if self.busy.contains(&target) || !self.has_room() {
            return Err(Blocked);
        }
        if self.retry_at.get(&target).is_some_and(|at| *at > now) {
            return Ok(Issued::Deferred);
        }
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.busy.insert(target.clone());
        self.inflight.insert(
            id,
            InFlight {
                target,
                action: action.in_flight_record(),
            },
        );
        out.push(Command { id, action });
        Ok(Issued::Yes)
    }

    /// Whether a command for `target` may be issued now.
    pub fn can_issue(&self, target: &Target, now: Timestamp) -> bool {
        !self.busy.contains(target)
            && self.has_room()
            && self.retry_at.get(target).is_none_or(|at| *at <= now)
    }

    /// Whether the window has room for another command.
    pub fn has_room(&self) -> bool {
        self.inflight.len() < self.window
    }

    /// Whether a command for `target` is in flight.
    pub fn is_busy(&self, target: &Target) -> bool {
        self.busy.contains(target)
    }

    /// Commands in flight for targets that `matches`.
    pub fn count_busy(&self, matches: impl Fn(&Target) -> bool) -> usize {
        self.busy.iter().filter(|t| matches(t)).count()
    }

    /// Commands in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// The id the next command gets (Events are their own targets, one per command).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// An id for a command issued outside the window (a delivery to a sink): never that of
    /// another command, and unknown to [`Flights::land`].
    pub fn take_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Takes the answer to command `id`: `None` for a command not (or no longer) in flight (an
    /// answer from before a restart of the engine, or a duplicate). A failure backs the target
    /// off, also a permanent one: the same request fails the same way until some observation
    /// changes it (without this it was re-issued once per round trip: a hot loop). A success
    /// clears the target's back-off.
    pub fn land(&mut self, id: CommandId, failed: bool, now: Timestamp) -> Option<Landed> {
        let flight = self.inflight.remove(&id)?;
        self.busy.remove(&flight.target);
        let retry_at = if failed {
            Some(self.back_off(&flight.target, now))
        } else {
            self.forget(&flight.target);
            None
        };
        Some(Landed { flight, retry_at })
    }

    /// Consecutive failures of `target`.
    pub fn attempts(&self, target: &Target) -> u32 {
        self.attempts.get(target).copied().unwrap_or_default()
    }

    /// Counts `target`'s attempts as `attempts` (a stage giving up on it early).
    pub fn set_attempts(&mut self, target: Target, attempts: u32) {
        self.attempts.insert(target, attempts);
    }

    /// Ends `target`'s back-off (its retry timer fired), keeping its failure count. From then on
    /// the target may be tried whatever the clock says: a clock that goes back after the timer
    /// fired would otherwise make it back off again with no timer left to end it (sim seed
    /// 29389: a CIS got its result hours late).
    pub fn end_back_off(&mut self, target: &Target) {
        self.retry_at.remove(target);
    }

    /// Forgets `target`'s failures and back-off.
    pub fn forget(&mut self, target: &Target) {
        self.attempts.remove(target);
        self.retry_at.remove(target);
    }

    /// Growing back-off after a failure: base · 2^attempt, capped. Returns its end.
    fn back_off(&mut self, target: &Target, now: Timestamp) -> Timestamp {
        let attempt = self.attempts.entry(target.clone()).or_default();
        *attempt = attempt.saturating_add(1);
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        let cap = match target {
            Target::Log(_) | Target::FailureLog(_) => self.retry_max.min(LOG_RETRY_MAX),
            _ => self.retry_max,
        };
        let delay = self.retry_base.saturating_mul(factor).min(cap);
        let at = now.plus(delay);
        self.retry_at.insert(target.clone(), at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ContainerImageScanStatus;
    use crate::engine::index::CisKey;
    use crate::port::{EventNote, EventRegarding};

    fn event() -> Action {
        Action::RecordEvent {
            regarding: EventRegarding::Cis,
            namespace: "ns".into(),
            name: "a".into(),
            uid: "uid-a".into(),
            event: EventNote {
                warning: false,
                reason: "Test".into(),
                note: String::new(),
            },
        }
    }

    /// Events are targets of their own, named by the id their command will get: two Events
    /// flushed in one poll must not share a target (the second would be blocked and lost).
    #[test]
    fn a_write_in_flight_is_remembered_without_its_details_and_landed_with_the_rest() {
        let status: ContainerImageScanStatus = serde_json::from_value(serde_json::json!({
            "lastScanJobUID": "job-1",
            "lastScanTime": "2026-12-04T10:00:00Z",
            "vulnerabilities": [{"vulnerabilityID": "CVE-1", "pkgName": "p",
                "installedVersion": "1", "severity": "HIGH", "pkgPath": "",
                "fixedVersion": "", "title": "t", "primaryURL": ""}],
            "vulnerabilitySummary": {"severityCount": {"HIGH": 1}, "fixedCount": 0,
                "unfixedCount": 1},
            "detailsBytes": 120
        }))
        .expect("a status");
        let write = Action::ApplyCisStatus {
            namespace: "ns".into(),
            name: "a".into(),
            uid: "uid-a".into(),
            resource_version: Some(7),
            status: Box::new(status.clone()),
            keep_details: false,
        };
        let report = Action::ApplyReport {
            namespace: "ns".into(),
            name: "a".into(),
            report: Box::new(serde_json::json!({"results": [1, 2, 3]})),
        };
        let t0 = Timestamp(0);
        let mut flights = Flights::new(4, Duration::from_secs(1), Duration::from_secs(60));
        let mut out = Vec::new();
        let key = CisKey::new("ns", "a");
        for (target, action) in [
            (Target::CisStatus(key.clone()), write.clone()),
            (Target::Report(key.clone(), "job-1".into()), report),
            (Target::Event(1), event()),
        ] {
            assert_eq!(flights.issue(target, action, t0, &mut out), Ok(Issued::Yes));
        }
        // The requests go out whole.
        assert_eq!(out[0].action, write);
        let landed: Vec<Action> = (0..3)
            .filter_map(|i| flights.land(out[i].id, false, t0))
            .map(|l| l.flight.action)
            .collect();
        let Action::ApplyCisStatus { status: kept, .. } = &landed[0] else {
            panic!("not a status write: {:?}", landed[0]);
        };
        assert_eq!(
            **kept,
            ContainerImageScanStatus {
                vulnerabilities: None,
                ..status
            }
        );
        assert!(matches!(&landed[1], Action::ApplyReport { report, .. } if report.is_null()));
        assert_eq!(landed[2], event());
    }

    #[test]
    fn next_id_is_the_id_of_the_next_command_issued() {
        let mut flights = Flights::new(8, Duration::from_secs(1), Duration::from_secs(60));
        let mut out = Vec::new();
        for _ in 0..2 {
            let id = flights.next_id();
            let issued = flights.issue(Target::Event(id), event(), Timestamp::EPOCH, &mut out);
            assert_eq!(issued, Ok(Issued::Yes));
            assert_eq!(out.last().map(|c| c.id), Some(CommandId(id)));
        }
        assert_eq!(flights.len(), 2);
    }

    #[test]
    fn a_back_off_ended_by_its_timer_holds_no_more_when_the_clock_goes_back() {
        let mut flights = Flights::new(8, Duration::from_secs(10), Duration::from_secs(60));
        let target = Target::CreateJob("sha256:d1".into());
        let t0 = Timestamp::from_secs(1_000);
        let mut out = Vec::new();
        assert_eq!(
            flights.issue(target.clone(), event(), t0, &mut out),
            Ok(Issued::Yes)
        );
        let landed = flights.land(CommandId(1), true, t0).map(|l| l.retry_at);
        let retry_at = Timestamp::from_secs(1_010);
        assert_eq!(landed, Some(Some(retry_at)));
        assert!(!flights.can_issue(&target, t0), "backing off");
        flights.end_back_off(&target);
        let earlier = Timestamp::from_secs(990);
        assert!(flights.can_issue(&target, earlier), "the timer ended it");
        assert_eq!(
            flights.issue(target.clone(), event(), earlier, &mut out),
            Ok(Issued::Yes)
        );
        let again = flights
            .land(CommandId(2), true, earlier)
            .map(|l| l.retry_at);
        assert_eq!(
            again,
            Some(Some(Timestamp::from_secs(1_010))),
            "the failure count is kept: the next back-off is twice as long"
        );
    }
}
