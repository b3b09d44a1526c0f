//! Operator instances at work: an [`Engine`] each, fed exactly as `src/shell/runtime.rs`
//! `drive()` feeds it (watch events, outcomes, leadership, wake-ups; `poll` after each; the
//! watches are in `watch.rs`), the Lease, crashes, pauses, clock skew and config changes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use image_scanner_core::engine::{Engine, EngineConfig};
use image_scanner_core::port::{Action, CommandId, Observation, Outcome};
use image_scanner_core::time::Timestamp;

use super::Sim;
use crate::cluster::Kind;
use crate::event::Event;
use crate::instance::{Instance, describe, outcome_str, regex};
use crate::options::Fault;
use crate::rng::{Draw, Fnv};
use crate::watcher::{EVENT_TTL_MS, Rejection, STREAMS, Watcher};

/// Lease duration and renew period (kube-lease-manager settings of the shell).
const LEASE_MS: i64 = 15_000;
const RENEW_MS: u64 = 5_000;
const RETRY_MS: u64 = 2_000;
/// The shell stops the engine this long before the Lease it last saw renewed runs out
/// (`shell::leader`'s margin).
const MARGIN_MS: i64 = 3_000;

impl Sim {
    /// Starts (or restarts) instance `id` with a fresh engine.
    pub fn start_instance(&mut self, id: usize, first: bool) {
        let mut cfg = if first || self.instances.get(id).is_none() {
            self.base_cfg.clone()
        } else {
            self.instances[id].cfg.clone()
        };
        if !first && self.opts.has(Fault::ConfigChange) && !self.healing_reference() {
            let r = self.faults.config_draw();
            if r.chance(0.7) {
                cfg.scan_interval = [
                    Duration::from_secs(1800),
                    Duration::from_secs(7200),
                    self.opts.scan_interval,
                ][r.index(3)];
                cfg.active_job_limit = [0, 1, 3, self.opts.job_limit][r.index(4)];
                cfg.exclude_namespaces = match r.index(3) {
                    0 => regex("^(kube-|openshift-).*"),
                    1 => regex("^(kube-|openshift-|ns-1$)"),
                    _ => regex("^(kube-|openshift-|ns-0$)"),
                };
                cfg.include_namespaces = if r.chance(0.3) {
                    regex("^ns-[0-2]$")
                } else {
                    regex("")
                };
            }
        }
        if first && id == 1 && self.opts.has(Fault::ConfigChange) {
            // A rolling update: the second replica runs another configuration.
            cfg.active_job_limit = [1, 3][self.faults.config_draw().index(2)];
        }
        let skew = if self.opts.has(Fault::Clock) {
            self.faults.config_draw().between(0, 120_000) as i64 - 60_000
        } else {
            0
        };
        let inc = self.instances.get(id).map_or(0, |i| i.inc + 1);
        let inst = Instance {
            id,
            inc,
            engine: Some(Engine::new(cfg.clone())),
            cfg,
            watchers: STREAMS.iter().map(|k| (*k, Watcher::default())).collect(),
            synced: false,
            config_listed: false,
            leading: false,
            paused: false,
            paused_until: 0,
            skew: if first { skew } else { self.instances[id].skew },
            wake_at: None,
            restart_pending: false,
            repeats: BTreeMap::new(),
            second: (0, 0),
            inflight: VecDeque::new(),
            job_cursor: BTreeMap::new(),
            renewed_at: None,
            clock_back_since_renewal: false,
        };
        if id < self.instances.len() {
            self.instances[id] = inst;
        } else {
            self.instances.push(inst);
        }
        for k in STREAMS {
            let d = self.r_delivery.between(1, 200);
            self.after(
                d,
                Event::Relist {
                    instance: id,
                    inc,
                    kind: k,
                },
            );
        }
        let d = self.r_delivery.between(1, 200);
        self.after(d, Event::ListJobConfig { instance: id, inc });
        let d = self.r_delivery.between(1, 500);
        self.after(d, Event::LeaseTick { instance: id, inc });
        // The Event watch starts with a list: FailedCreate Events of the last hour.
        let now = self.now;
        self.cluster
            .job_events
            .retain(|_, (_, at)| now - *at < EVENT_TTL_MS);
        let events: Vec<Rejection> = self
            .cluster
            .job_events
            .iter()
            .map(|((ns, name, uid), (message, _))| Rejection {
                namespace: ns.clone(),
                job_name: name.clone(),
                job_uid: uid.clone(),
                message: message.clone(),
            })
            .collect();
        for r in events {
            let d = self.r_delivery.between(1, 500);
            self.after(
                d,
                Event::JobRejected {
                    instance: id,
                    inc,
                    rejection: Box::new(r),
                },
            );
        }
        // As the shell: nothing is written before a renewal of its own is seen.
        self.observe(
            id,
            Observation::LeaseValidUntil {
                until: Timestamp::EPOCH,
            },
        );
        self.note(|| format!("inst{id} start inc={inc}"));
    }

    fn healing_reference(&self) -> bool {
        false
    }

    /// The configuration of the instance that holds the lease at the end.
    pub fn leader_config(&self) -> Option<EngineConfig> {
        let (i, _) = self.lease.holder?;
        self.instances.get(i).map(|x| x.cfg.clone())
    }

    pub(crate) fn live(&self, i: usize, inc: u32) -> bool {
        self.instances
            .get(i)
            .is_some_and(|x| x.inc == inc && x.engine.is_some())
    }

    /// The instance's clock.
    pub fn clock(&self, i: usize) -> Timestamp {
        Timestamp(self.now + self.instances[i].skew)
    }

    /// Postpones an event of a paused instance; true if postponed.
    pub(crate) fn postpone_if_paused(&mut self, i: usize, ev: Event) -> bool {
        if self.instances[i].paused {
            let until = self.instances[i].paused_until;
            let d = self.r_delivery.between(1, 50) as i64;
            self.at(until + d, ev);
            true
        } else {
            false
        }
    }

    pub(crate) fn observe(&mut self, i: usize, obs: Observation) {
        let now = self.clock(i);
        if let Some(e) = self.instances[i].engine.as_mut() {
            e.observe(obs, now);
        }
    }

    /// Polls the engine and sends its commands.
    pub fn poll(&mut self, i: usize) {
        let now = self.clock(i);
        let inc = self.instances[i].inc;
        let Some(engine) = self.instances[i].engine.as_mut() else {
            return;
        };
        let commands = engine.poll(now);
        let leading = engine.is_leading();
        let next = engine.next_wakeup();
        let inflight = engine.inflight();
        let interval = self.instances[i].cfg.scan_interval;
        // S9: flow control holds (no more commands outstanding than the window allows).
        let max_inflight = self.instances[i].cfg.max_inflight;
        if inflight > max_inflight {
            self.checker.violation(
                self.now,
                "S9",
                format!("inst{i}: {inflight} commands in flight, window {max_inflight}"),
            );
        }
        // S9: the next wake-up is in the future and bounded.
        if let Some(at) = next {
            if at <= now {
                self.checker.violation(
                    self.now,
                    "S9",
                    format!("inst{i}: next_wakeup {at} is not after now {now} (hot loop)"),
                );
            }
            let bound = now.plus(interval * 2).plus(Duration::from_secs(3600));
            if at > bound {
                self.checker.violation(
                    self.now,
                    "S9",
                    format!("inst{i}: next_wakeup {at} beyond {bound}"),
                );
            }
        }
        let skew = self.instances[i].skew;
        let wake_sim = next.map(|t| t.0 - skew);
        if let Some(t) = wake_sim
            && self.instances[i]
                .wake_at
                .is_none_or(|w| t < w || w < self.now)
        {
            self.instances[i].wake_at = Some(t);
            self.at(t.max(self.now + 1), Event::Wake { instance: i, inc });
        }
        if commands.is_empty() {
            return;
        }
        // BUGGIFY crash point: the commands never leave the process.
        if self.faults.fires(Fault::Crash, 0.5) {
            self.note(|| format!("inst{i} crash before sending {} commands", commands.len()));
            self.crash(i);
            return;
        }
        for cmd in commands {
            self.stats.commands += 1;
            let write = cmd.action.is_write();
            if write {
                self.stats.writes += 1;
                // S6: no writes after being told of the lost lease...
                if !leading || !self.instances[i].leading {
                    self.checker.violation(
                        self.now,
                        "S6",
                        format!("inst{i} issued {} while not leading", cmd.action.verb()),
                    );
                }
                // ...nor, told or not, once its own last renewal has run out (another
                // instance may hold the Lease by now: a paused leader that wakes up).
                let inst = &self.instances[i];
                if let Some(renewed) = inst.renewed_at
                    && self.now >= renewed + LEASE_MS
                    && !inst.clock_back_since_renewal
                {
                    self.checker.violation(
                        self.now,
                        "S6",
                        format!(
                            "inst{i} issued {} {} ms after its last renewal of the Lease (valid {LEASE_MS} ms)",
                            cmd.action.verb(),
                            self.now - renewed
                        ),
                    );
                }
                if self.converged_at.is_some() {
                    let d = describe(&cmd.action);
                    self.quiet_writes.push(format!("inst{i} {d}"));
                }
            }
            self.hot_loop_check(i, &cmd.action);
            let id = cmd.id;
            if matches!(cmd.action, Action::CreateJob { .. }) {
                let cursor = self.instances[i]
                    .watchers
                    .get(&Kind::Job)
                    .map_or(0, |w| w.cursor);
                self.instances[i].job_cursor.insert(id, cursor);
            }
            let verb = cmd.action.verb();
            self.note(|| format!("inst{i} cmd#{} {verb} {}", id.0, describe(&cmd.action)));
            self.instances[i].inflight.push_back(id);
            // Not an API request: the sink's receiver answers it.
            if let Action::Deliver {
                sink, key, body, ..
            } = cmd.action
            {
                self.send_to_receiver(i, inc, id, sink, key, &body);
                continue;
            }
            let d = self.delay();
            self.after(
                d,
                Event::Arrive {
                    instance: i,
                    inc,
                    term: self.lease.term,
                    issued: (self.now, self.clock(i)),
                    command: Box::new(cmd),
                },
            );
        }
    }

    fn hot_loop_check(&mut self, i: usize, action: &Action) {
        let now = self.now;
        let inst = &mut self.instances[i];
        if inst.second.0 != now / 1000 {
            inst.second = (now / 1000, 0);
        }
        inst.second.1 += 1;
        if inst.second.1 == 2_000 {
            self.checker.violation(
                now,
                "S9",
                format!("inst{i}: 2000 commands in one simulated second"),
            );
        }
        let mut h = Fnv::default();
        h.bytes(format!("{action:?}").as_bytes());
        let e = inst.repeats.entry(h.0).or_insert((now, 0));
        if now - e.0 > 60_000 {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 == 25 {
            let d = describe(action);
            self.checker.violation(
                now,
                "S9",
                format!("inst{i}: the same command 25 times within 60 s (hot loop): {d}"),
            );
        }
        if inst.repeats.len() > 4096 {
            inst.repeats.retain(|_, (t, _)| now - *t <= 60_000);
        }
    }

    /// A reply reaches the instance.
    pub fn reply(&mut self, i: usize, inc: u32, id: CommandId, outcome: Outcome) {
        if !self.live(i, inc) {
            return;
        }
        if self.instances[i].paused {
            let until = self.instances[i].paused_until;
            self.at(
                until + 1,
                Event::Reply {
                    instance: i,
                    inc,
                    id,
                    outcome: Box::new(outcome),
                },
            );
            return;
        }
        if self.faults.fires(Fault::Crash, 0.3) {
            self.note(|| format!("inst{i} crash before reading reply #{}", id.0));
            self.crash(i);
            return;
        }
        self.instances[i].inflight.retain(|x| *x != id);
        self.note(|| format!("inst{i} reply#{} {}", id.0, outcome_str(&outcome)));
        self.observe(i, Observation::Outcome { id, outcome });
        self.poll(i);
    }

    /// Engine timer.
    pub fn wake(&mut self, i: usize, inc: u32) {
        if !self.live(i, inc) {
            return;
        }
        if self.instances[i].wake_at.is_some_and(|w| w > self.now) {
            return;
        }
        if self.postpone_if_paused(i, Event::Wake { instance: i, inc }) {
            return;
        }
        self.instances[i].wake_at = None;
        self.poll(i);
    }

    /// Lease renewal / acquisition.
    pub fn lease_tick(&mut self, i: usize, inc: u32) {
        if !self.live(i, inc) {
            return;
        }
        if self.postpone_if_paused(i, Event::LeaseTick { instance: i, inc }) {
            return;
        }
        let me = (i, inc);
        let now = self.now;
        let d = self.r_delivery.between(1, 300);
        if self.lease.holder == Some(me) && self.lease.expires > now {
            self.lease.expires = now + LEASE_MS;
            self.renewed(i, inc);
            self.after(RENEW_MS, Event::LeaseTick { instance: i, inc });
        } else if self.lease.holder.is_none()
            || self.lease.expires <= now
            || self.lease.holder == Some(me)
        {
            if self.lease.holder != Some(me) {
                self.lease.term += 1;
            }
            self.lease.holder = Some(me);
            self.lease.expires = now + LEASE_MS;
            self.renewed(i, inc);
            self.note(|| format!("inst{i} acquires the lease"));
            self.after(
                d,
                Event::Leadership {
                    instance: i,
                    inc,
                    leading: true,
                },
            );
            self.after(RENEW_MS, Event::LeaseTick { instance: i, inc });
        } else {
            if self.instances[i].leading {
                self.note(|| format!("inst{i} finds the lease taken"));
                self.after(
                    d,
                    Event::Leadership {
                        instance: i,
                        inc,
                        leading: false,
                    },
                );
            }
            self.after(RETRY_MS, Event::LeaseTick { instance: i, inc });
        }
    }

    /// A renewal (or acquisition) by instance `i` is written: its Lease watch shows it a
    /// moment later, with the validity the shell derives from the `renewTime` it wrote.
    fn renewed(&mut self, i: usize, inc: u32) {
        self.instances[i].renewed_at = Some(self.now);
        self.instances[i].clock_back_since_renewal = false;
        let until = Timestamp(self.clock(i).0 + LEASE_MS - MARGIN_MS);
        let d = self.r_delivery.between(1, 300);
        self.after(
            d,
            Event::LeaseSeen {
                instance: i,
                inc,
                until,
            },
        );
    }

    /// The Lease watch's news of a renewal reaches the engine.
    pub fn lease_seen(&mut self, i: usize, inc: u32, until: Timestamp) {
        if !self.live(i, inc)
            || self.postpone_if_paused(
                i,
                Event::LeaseSeen {
                    instance: i,
                    inc,
                    until,
                },
            )
        {
            return;
        }
        self.observe(i, Observation::LeaseValidUntil { until });
        self.poll(i);
    }

    /// Leadership reaches the engine.
    pub fn leadership(&mut self, i: usize, inc: u32, leading: bool) {
        if !self.live(i, inc)
            || self.postpone_if_paused(
                i,
                Event::Leadership {
                    instance: i,
                    inc,
                    leading,
                },
            )
        {
            return;
        }
        if leading && self.lease.holder != Some((i, inc)) {
            return;
        }
        self.instances[i].leading = leading;
        self.note(|| format!("inst{i} leading={leading}"));
        self.observe(i, Observation::Leadership { leading });
        self.poll(i);
    }

    /// Crash: the engine and everything in memory is gone; requests already sent still land.
    pub fn crash(&mut self, i: usize) {
        let usize_max = i == usize::MAX;
        let i = if usize_max { 0 } else { i };
        if self.instances[i].engine.is_none() || self.faults.healing() {
            return;
        }
        self.stats.crashes += 1;
        self.note(|| format!("inst{i} CRASH"));
        let inst = &mut self.instances[i];
        inst.engine = None;
        inst.leading = false;
        inst.paused = false;
        inst.wake_at = None;
        inst.inflight.clear();
        inst.inc += 1;
        inst.restart_pending = true;
        let d = self.faults.draw().between(500, 20_000);
        self.after(d, Event::Restart { instance: i });
    }

    /// Restart after a crash (possibly with another configuration).
    pub fn restart(&mut self, i: usize) {
        if self.instances[i].engine.is_some() {
            return;
        }
        self.start_instance(i, false);
    }

    /// Stop-the-world pause of the lease holder (or of instance `i`).
    pub fn pause(&mut self, i: usize, ms: u64) {
        let i = if i == usize::MAX {
            match self.lease.holder {
                Some((h, _)) => h,
                None => return,
            }
        } else {
            i
        };
        if self.faults.healing() || self.instances[i].engine.is_none() || self.instances[i].paused {
            return;
        }
        self.note(|| format!("inst{i} PAUSE {ms}ms"));
        self.instances[i].paused = true;
        self.instances[i].paused_until = self.now + ms as i64;
        self.after(ms, Event::Unpause { instance: i });
    }

    /// The pause ends.
    pub fn unpause(&mut self, i: usize) {
        if !self.instances[i].paused {
            return;
        }
        self.instances[i].paused = false;
        self.instances[i].paused_until = self.now;
        self.note(|| format!("inst{i} unpaused"));
    }

    /// The instance's clock jumps.
    pub fn clock_jump(&mut self, i: usize, ms: i64) {
        if self.faults.healing() || i >= self.instances.len() {
            return;
        }
        self.note(|| format!("inst{i} clock jumps {ms}ms"));
        self.instances[i].skew += ms;
        if ms < 0 {
            self.instances[i].clock_back_since_renewal = true;
        }
        let inc = self.instances[i].inc;
        self.instances[i].wake_at = None;
        self.after(1, Event::Wake { instance: i, inc });
    }
}
