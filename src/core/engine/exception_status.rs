//! The exceptions' own status (issue 20): whether each one applies (`Ready`: `InForce`,
//! `Expired`, `Invalid`), what it is narrowed to, and how many findings it covers now — the sum
//! of `suppressedCount.byException` over the CIS statuses as observed, so the count is what
//! the CIS show, not what the engine means to write.
//!
//! Written only when it differs from the stored status, and [`SETTLE`] after the change that
//! made it differ: a new exception rewrites its CIS one by one, and their counts settle into
//! one status write instead of one per CIS. A restart finds every status as it would write it,
//! and writes nothing. The `Expired` transition also records an Event on the exception, once
//! per stored transition (a restart after the status landed records none).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::exceptions::Exceptions;
use super::flights::{Flights, Step};
use super::index::Index;
use super::{PendingEvent, Target};
use crate::crd::exception::VulnerabilityExceptionStatus;
use crate::exception::ExceptionKey;
use crate::port::{Action, Command, EventNote, EventRegarding, ExceptionView};
use crate::status::{DEFAULT_MESSAGE_LIMIT, bound_message};
use crate::time::Timestamp;

/// How long after a change the statuses are compared and written.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The type of the one condition an exception's status has.
pub const READY: &str = "Ready";

/// Why an exception is (not) ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It applies.
    InForce,
    /// Its expiry has passed.
    Expired,
    /// The operator cannot use it (the message says why).
    Invalid,
}

impl Readiness {
    fn reason(self) -> &'static str {
        match self {
            Readiness::InForce => "InForce",
            Readiness::Expired => "Expired",
            Readiness::Invalid => "Invalid",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Readiness::InForce => "True",
            Readiness::Expired | Readiness::Invalid => "False",
        }
    }
}

/// Whether the statuses are due for a comparison, and which expiries were announced.
#[derive(Debug, Default)]
pub struct ExceptionStatuses {
    /// Something changed since the last comparison (the settle timer is armed on the next poll).
    pub stale: bool,
    /// The settle timer fired: compare on this poll (kept until the window lets every write out).
    pub due: bool,
    /// (key, UID) of exceptions whose expiry Event was recorded by this instance.
    announced: BTreeSet<(ExceptionKey, String)>,
}

/// The shared services a comparison uses.
pub(super) struct StatusCx<'a> {
    pub exceptions: &'a Exceptions,
    pub index: &'a Index,
    pub flights: &'a mut Flights,
    pub pending_events: &'a mut std::collections::VecDeque<PendingEvent>,
}

impl ExceptionStatuses {
    /// Compares every exception's status with what it should say now and writes those that
    /// differ; `Blocked` when the window is full (the rest waits for the next poll).
    pub(super) fn sync(
        &mut self,
        cx: StatusCx<'_>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step {
        let covered = covered_findings(cx.index);
        for view in cx.exceptions.views() {
            let reference = view.key.reference();
            let count = covered.get(reference.as_str()).copied().unwrap_or(0);
            let (readiness, desired) = desired_status(view, count, now);
            if view.status.as_ref().is_some_and(|s| same(s, &desired)) {
                continue;
            }
            let target = Target::ExceptionStatus(view.key.clone());
            if cx.flights.is_busy(&target) {
                continue;
            }
            let was_expired = view
                .status
                .as_ref()
                .and_then(ready)
                .map(|c| c.reason.as_str())
                == Some(Readiness::Expired.reason());
            let action = Action::ApplyExceptionStatus {
                key: view.key.clone(),
                uid: view.uid.clone(),
                status: Box::new(desired),
            };
            cx.flights.issue(target, action, now, out)?;
            if readiness == Readiness::Expired
                && !was_expired
                && self.announced.insert((view.key.clone(), view.uid.clone()))
            {
                cx.pending_events.push_back(expiry_event(view));
            }
        }
        let held: BTreeSet<(&ExceptionKey, &str)> = cx
            .exceptions
            .views()
            .map(|v| (&v.key, v.uid.as_str()))
            .collect();
        self.announced
            .retain(|(key, uid)| held.contains(&(key, uid.as_str())));
        Ok(())
    }
}

/// Findings covered per exception reference, over the CIS statuses as observed.
fn covered_findings(index: &Index) -> BTreeMap<&str, i64> {
    let mut covered: BTreeMap<&str, i64> = BTreeMap::new();
    for tracked in index.cis.values() {
        let Some(suppressed) = &tracked.view.status.suppressed else {
            continue;
        };
        for (reference, count) in &suppressed.by_exception {
            let sum = covered.entry(reference.as_str()).or_default();
            *sum = sum.saturating_add(i64::from(*count));
        }
    }
    covered
}

/// What the status of `view` should say at `now`, covering `covered` findings. The condition
/// keeps its `lastTransitionTime` while its status stays.
pub fn desired_status(
    view: &ExceptionView,
    covered: i64,
    now: Timestamp,
) -> (Readiness, VulnerabilityExceptionStatus) {
    let (readiness, message, scope) = match &view.compiled {
        Err(invalid) => (Readiness::Invalid, invalid.0.clone(), None),
        Ok(e) if e.unusable().is_some() => (
            Readiness::Invalid,
            e.unusable().unwrap_or_default().to_string(),
            Some(e.scope()),
        ),
        Ok(e) if !e.in_force(now) => {
            let at = e.expires.unwrap_or(now).to_k8s().0;
            (
                Readiness::Expired,
                format!("expired at {at}"),
                Some(e.scope()),
            )
        }
        Ok(e) => {
            let message = match e.expires {
                Some(at) => format!("applies until {}", at.to_k8s().0),
                None => "applies without expiry".to_string(),
            };
            let message = match e.vex_summary() {
                Some(vex) => format!("{message}; {vex}"),
                None => message,
            };
            (Readiness::InForce, message, Some(e.scope()))
        }
    };
    let previous = view.status.as_ref().and_then(ready);
    let last_transition_time = previous
        .filter(|c| c.status == readiness.status())
        .map_or(now.to_k8s(), |c| c.last_transition_time.clone());
    let condition = Condition {
        last_transition_time,
        message: bound_message(&message, DEFAULT_MESSAGE_LIMIT),
        observed_generation: Some(view.generation),
        reason: readiness.reason().to_string(),
        status: readiness.status().to_string(),
        type_: READY.to_string(),
    };
    let covered = if readiness == Readiness::InForce {
        covered
    } else {
        0
    };
    let status = VulnerabilityExceptionStatus {
        observed_generation: Some(view.generation),
        conditions: Some(vec![condition]),
        scope,
        covered_findings: Some(covered),
    };
    (readiness, status)
}

fn ready(status: &VulnerabilityExceptionStatus) -> Option<&Condition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == READY)
}

/// Whether two statuses say the same, whatever their transition times.
fn same(a: &VulnerabilityExceptionStatus, b: &VulnerabilityExceptionStatus) -> bool {
    let conditions = |s: &VulnerabilityExceptionStatus| -> Vec<Condition> {
        let mut list = s.conditions.clone().unwrap_or_default();
        for c in &mut list {
            c.last_transition_time = Timestamp::EPOCH.to_k8s();
        }
        list
    };
    a.observed_generation == b.observed_generation
        && a.scope == b.scope
        && a.covered_findings == b.covered_findings
        && conditions(a) == conditions(b)
}

fn expiry_event(view: &ExceptionView) -> PendingEvent {
    let (regarding, namespace, name) = match &view.key {
        ExceptionKey::Namespaced { namespace, name } => (
            EventRegarding::VulnerabilityException,
            namespace.clone(),
            name.clone(),
        ),
        ExceptionKey::Cluster { name } => (
            EventRegarding::ClusterVulnerabilityException,
            String::new(),
            name.clone(),
        ),
    };
    let at = view
        .compiled
        .as_ref()
        .ok()
        .and_then(|e| e.expires)
        .map(|at| at.to_k8s().0.to_string())
        .unwrap_or_default();
    PendingEvent {
        regarding,
        namespace,
        name,
        uid: view.uid.clone(),
        event: EventNote {
            warning: true,
            reason: "ExceptionExpired".to_string(),
            note: format!(
                "expired at {at}: the findings it covered count again in the scans it applied to"
            ),
        },
    }
}
