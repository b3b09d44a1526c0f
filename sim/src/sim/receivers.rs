//! The notification sinks' receivers (issue 21): a component of its own, with its own random
//! stream, so seeds without sinks run exactly as before. A receiver answers after a delay,
//! fails some deliveries (a 503, or no answer within the timeout), and checks what it gets:
//!
//! - **S13** every payload is the sink's format and tells a change (no announcement without
//!   a change), and a key always names the same change: a receiver that de-duplicates by
//!   `Idempotency-Key` drops only true repeats, never a different change.
//!
//! - **S14** a record is written as told only after the change was delivered: when a write
//!   of what was told (nothing else changes) moves `announcedFindings` over a change, the CloudEvents receiver has been told of
//!   that CIS's change (its counts) and answered 2xx. (Giving up after 8 failed attempts is possible in
//!   principle; at these failure rates it does not happen.)
//!
//! That every change is told at all is L1.

use std::collections::BTreeMap;

use image_scanner_core::notification::SinkFormat;
use image_scanner_core::port::{ApiError, ApiErrorKind, CommandId, Outcome};

use super::Sim;
use crate::event::Event;
use crate::rng::Draw;

/// The sinks' formats by number (`Options::sinks` of them).
pub const FORMATS: [SinkFormat; 2] = [SinkFormat::CloudEvents, SinkFormat::Alertmanager];

/// What the receivers saw.
#[derive(Debug, Default)]
pub struct Receivers {
    /// Per sink and key: the change delivered under it (the payload without its time).
    seen: BTreeMap<(usize, String), String>,
    /// What the CloudEvents receiver (sink 0) accepted per CIS — (name, new, fixable,
    /// resolved) counts — and when it first answered 2xx to it.
    told: BTreeMap<(String, u64, u64, u64), i64>,
    /// The changes of the delivery being received, until its answer is drawn.
    receiving: Vec<(String, u64, u64, u64)>,
}

impl Sim {
    /// A delivery leaves instance `i`: the receiver answers it later.
    pub fn send_to_receiver(
        &mut self,
        i: usize,
        inc: u32,
        id: CommandId,
        sink: usize,
        key: String,
        body: &[u8],
    ) {
        self.stats.deliveries += 1;
        if let Err(problem) = self.receive(sink, &key, body) {
            self.checker.violation(self.now, "S13", problem);
        }
        let r = &mut self.r_sinks;
        let (delay, outcome) = if r.chance(0.15) {
            (r.between(50, 500), fail(ApiErrorKind::ServerError, "503"))
        } else if r.chance(0.05) {
            (10_000, fail(ApiErrorKind::Unknown, "no answer within 10s"))
        } else {
            (r.between(5, 300), Outcome::Done)
        };
        let receiving = std::mem::take(&mut self.receivers.receiving);
        if outcome == Outcome::Done {
            let at = self.now + delay as i64;
            for change in receiving {
                let first = self.receivers.told.entry(change).or_insert(at);
                *first = (*first).min(at);
            }
        }
        self.after(
            delay,
            Event::Reply {
                instance: i,
                inc,
                id,
                outcome: Box::new(outcome),
            },
        );
    }

    /// Checks one payload; the first time a key is seen, remembers its change.
    fn receive(&mut self, sink: usize, key: &str, body: &[u8]) -> Result<(), String> {
        let format = *FORMATS
            .get(sink % FORMATS.len())
            .ok_or_else(|| format!("delivery to unknown sink {sink}"))?;
        let mut v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("sink{sink}: payload is not JSON: {e}"))?;
        let change = match format {
            SinkFormat::CloudEvents => {
                if v["specversion"] != "1.0" || v["id"] != key {
                    return Err(format!("sink{sink}: not a CloudEvent of key {key}: {v}"));
                }
                let containers = v["data"]["containers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let told = |c: &serde_json::Value| {
                    ["new", "fixAvailable", "resolved"]
                        .iter()
                        .any(|k| c[*k]["count"].as_u64().unwrap_or(0) > 0)
                };
                if containers.is_empty() || !containers.iter().all(told) {
                    return Err(format!("sink{sink}: a notification without a change: {v}"));
                }
                let count = |c: &serde_json::Value, k: &str| c[k]["count"].as_u64().unwrap_or(0);
                for c in &containers {
                    self.receivers.receiving.push((
                        c["containerImageScan"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        count(c, "new"),
                        count(c, "fixAvailable"),
                        count(c, "resolved"),
                    ));
                }
                v["time"] = serde_json::Value::Null;
                v
            }
            _ => {
                if v["groupKey"] != key || v["alerts"].as_array().is_none_or(|a| a.is_empty()) {
                    return Err(format!(
                        "sink{sink}: not an Alertmanager payload of key {key}"
                    ));
                }
                for alert in v["alerts"].as_array_mut().into_iter().flatten() {
                    alert["startsAt"] = serde_json::Value::Null;
                    alert["endsAt"] = serde_json::Value::Null;
                }
                v
            }
        };
        let change = change.to_string();
        match self.receivers.seen.get(&(sink, key.to_string())) {
            Some(before) if *before != change => Err(format!(
                "sink{sink}: key {key} names two different changes:\n  {before}\n  {change}"
            )),
            Some(_) => {
                self.stats.delivery_repeats += 1;
                Ok(())
            }
            None => {
                self.receivers.seen.insert((sink, key.to_string()), change);
                Ok(())
            }
        }
    }
}

impl Sim {
    /// S14 for a status write of CIS `key` that is accepted (not a late or stale one).
    pub fn check_told_was_delivered(
        &mut self,
        key: &(String, String),
        new: &image_scanner_core::crd::ContainerImageScanStatus,
    ) {
        if self.opts.sinks == 0 {
            return;
        }
        let Some(old) = self.cluster.cis.get(key).and_then(|c| c.status.as_ref()) else {
            return;
        };
        let (Some(before), Some(after)) = (&old.announced_findings, &new.announced_findings) else {
            return;
        };
        // Only a write of what was told: a result's write may shorten the told record to a
        // smaller budget (`finding_record::truncated`), which tells nothing.
        let mut only_told = new.clone();
        only_told.announced_findings = old.announced_findings.clone();
        if only_told.conditions.as_ref().is_some_and(Vec::is_empty) {
            only_told.conditions = old.conditions.clone();
        }
        if before == after || only_told != *old {
            return;
        }
        let Some(diff) =
            image_scanner_core::notice::Diff::between(before, after).filter(|d| !d.is_empty())
        else {
            return;
        };
        let told = (
            key.1.clone(),
            diff.new.len() as u64,
            diff.fixable.len() as u64,
            diff.resolved.len() as u64,
        );
        if self
            .receivers
            .told
            .get(&told)
            .is_none_or(|at| *at > self.now)
        {
            self.checker.violation(
                self.now,
                "S14",
                format!(
                    "{}/{}: recorded as told ({} new, {} fixable, {} resolved) but not delivered (told before: {} IDs, {} left out; now {} IDs, {} left out; shown {:?})",
                    key.0,
                    key.1,
                    told.1,
                    told.2,
                    told.3,
                    before.ids.values().map(Vec::len).sum::<usize>(),
                    before.left_out,
                    after.ids.values().map(Vec::len).sum::<usize>(),
                    after.left_out,
                    new.notable_findings.as_ref().map(|n| (n.ids.values().map(Vec::len).sum::<usize>(), n.left_out)),
                ),
            );
        }
    }
}

fn fail(kind: ApiErrorKind, message: &str) -> Outcome {
    Outcome::Failed(ApiError {
        kind,
        message: message.to_string(),
    })
}
