//! Delivering announcements to the configured sinks (issue 21): at least once, with bounded
//! retries and back-off, outside the API command window.
//!
//! An announcement of `engine::notices` that has something to tell carries an [`Outbox`]: one
//! delivery per sink. Its records are written as told only once every delivery ended — sent,
//! or given up after [`MAX_ATTEMPTS`] (or at once for an answer that says the request itself
//! is wrong) — so a crash or a failover before that tells again, under the same idempotency
//! key. The queue of what waits to be delivered is therefore the CIS statuses themselves
//! (`notableFindings` ≠ `announcedFindings`): bounded by the number of CIS, and kept in the
//! API. Deliveries do not take the API command window (a receiver that hangs until the
//! shell's timeout would otherwise hold the scans' requests), and at most
//! [`IN_FLIGHT_PER_SINK`] are in flight per sink, so one slow sink slows only itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::flights::Flights;
use crate::notification::{Notification, SinkSpec, WorkloadId, payload};
use crate::port::{Action, ApiErrorKind, Command, CommandId};
use crate::time::Timestamp;

/// Attempts of one delivery before it is given up (about 4 minutes of back-off in between).
pub const MAX_ATTEMPTS: u32 = 8;
/// Deliveries in flight per sink.
pub const IN_FLIGHT_PER_SINK: usize = 2;
/// The first retry's delay; it doubles per failure, capped at [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// Cap of the retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// One sink's delivery of an announcement.
#[derive(Debug)]
struct Delivery {
    sink: usize,
    attempts: u32,
    /// Not tried again before this.
    not_before: Timestamp,
    in_flight: bool,
    /// Sent, or given up.
    ended: bool,
}

/// An announcement's deliveries, one per sink.
#[derive(Debug)]
pub(super) struct Outbox {
    notification: Notification,
    /// When the announcement started (for the age of the oldest delivery waiting).
    since: Timestamp,
    deliveries: Vec<Delivery>,
}

impl Outbox {
    /// Deliveries of `notification` to each of `sinks` sinks, from `now`.
    pub fn new(notification: Notification, sinks: usize, now: Timestamp) -> Outbox {
        Outbox {
            notification,
            since: now,
            deliveries: (0..sinks)
                .map(|sink| Delivery {
                    sink,
                    attempts: 0,
                    not_before: now,
                    in_flight: false,
                    ended: false,
                })
                .collect(),
        }
    }

    /// Whether every delivery ended.
    pub fn is_done(&self) -> bool {
        self.deliveries.iter().all(|d| d.ended)
    }
}

/// What a sink's deliveries came to, for the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Deliveries answered with a 2xx.
    pub sent: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
    /// Deliveries given up.
    pub dropped: u64,
    /// Deliveries not ended yet.
    pub queued: usize,
    /// When the oldest of those started.
    pub oldest_queued: Option<Timestamp>,
}

/// The deliveries in flight, per sink, and what they came to.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    in_flight: BTreeMap<usize, usize>,
    owner: BTreeMap<CommandId, (WorkloadId, usize)>,
    stats: BTreeMap<usize, SinkStats>,
}

impl Deliveries {
    /// Issues the deliveries of `outbox` that are due and fit their sink's share; returns when
    /// the next one waiting for its back-off is due.
    pub fn issue(
        &mut self,
        workload: &WorkloadId,
        outbox: &mut Outbox,
        sinks: &[SinkSpec],
        flights: &mut Flights,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        for d in outbox.deliveries.iter_mut() {
            if d.ended || d.in_flight {
                continue;
            }
            let Some(sink) = sinks.get(d.sink) else {
                d.ended = true;
                continue;
            };
            if d.not_before > now {
                next = Some(next.map_or(d.not_before, |n| n.min(d.not_before)));
                continue;
            }
            let busy = self.in_flight.entry(d.sink).or_default();
            if *busy >= IN_FLIGHT_PER_SINK {
                // An answer frees the slot and brings the next poll.
                continue;
            }
            *busy += 1;
            d.in_flight = true;
            let id = flights.take_id();
            self.owner.insert(id, (workload.clone(), d.sink));
            out.push(Command {
                id,
                action: Action::Deliver {
                    sink: d.sink,
                    key: outbox.notification.key.clone(),
                    content_type: sink.format.content_type(),
                    body: payload(sink.format, &outbox.notification, now),
                },
            });
        }
        next
    }

    /// The workload and sink of delivery command `id`, when it is one (and forgets it).
    pub fn owner_of(&mut self, id: CommandId) -> Option<(WorkloadId, usize)> {
        let owner = self.owner.remove(&id)?;
        if let Some(busy) = self.in_flight.get_mut(&owner.1) {
            *busy = busy.saturating_sub(1);
        }
        Some(owner)
    }

    /// Takes the answer of `sink`'s delivery of `outbox`: `None` for a 2xx, else the kind of
    /// failure.
    pub fn land(
        &mut self,
        outbox: &mut Outbox,
        sink: usize,
        failure: Option<ApiErrorKind>,
        now: Timestamp,
    ) {
        let stats = self.stats.entry(sink).or_default();
        let Some(d) = outbox.deliveries.iter_mut().find(|d| d.sink == sink) else {
            return;
        };
        d.in_flight = false;
        d.attempts = d.attempts.saturating_add(1);
        match failure {
            None => {
                stats.sent += 1;
                d.ended = true;
            }
            Some(kind) => {
                stats.failed += 1;
                // A request the receiver calls wrong (4xx other than 408/429) fails the same
                // way every time.
                let hopeless = matches!(kind, ApiErrorKind::Invalid | ApiErrorKind::NotFound);
                if hopeless || d.attempts >= MAX_ATTEMPTS {
                    stats.dropped += 1;
                    d.ended = true;
                } else {
                    let factor = 1u32 << (d.attempts - 1).min(16);
                    d.not_before = now.plus(RETRY_BASE.saturating_mul(factor).min(RETRY_MAX));
                }
            }
        }
    }

    /// Each sink's figures, with what waits in `outboxes`.
    pub fn stats<'a>(
        &self,
        sinks: usize,
        outboxes: impl Iterator<Item = &'a Outbox>,
    ) -> Vec<SinkStats> {
        let mut all: Vec<SinkStats> = (0..sinks)
            .map(|s| self.stats.get(&s).cloned().unwrap_or_default())
            .collect();
        for outbox in outboxes {
            for d in outbox.deliveries.iter().filter(|d| !d.ended) {
                if let Some(s) = all.get_mut(d.sink) {
                    s.queued += 1;
                    s.oldest_queued = Some(
                        s.oldest_queued
                            .map_or(outbox.since, |o| o.min(outbox.since)),
                    );
                }
            }
        }
        all
    }
}
