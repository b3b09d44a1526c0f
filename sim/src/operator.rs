//! Operator instances: an [`Engine`] each, fed exactly as `src/shell/runtime.rs` `drive()` feeds
//! it (watch events, outcomes, leadership, wake-ups; `poll` after each), with simulated watch
//! streams (relist on start and after 410, per-stream delays, coalescing, dropped deletes,
//! duplicates, stale lists), a lease, crashes, pauses, clock skew and config changes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use image_scanner::core::engine::{Engine, EngineConfig};
use image_scanner::core::port::{Action, CommandId, Observation, Outcome, StreamId, WatchEvent};
use image_scanner::core::time::Timestamp;
use regex::Regex;

use crate::cluster::{Kind, View, kind};
use crate::options::{Fault, Options};
use crate::rng::{Draw, Fnv};
use crate::sim::{Event, Sim};

/// Every stream an instance watches (the configured kinds' metadata included).
pub const STREAMS: [Kind; 11] = [
    Kind::Pod,
    Kind::Cis,
    Kind::Workload(0),
    Kind::Workload(1),
    Kind::Workload(2),
    Kind::Workload(3),
    Kind::Workload(4),
    Kind::Workload(5),
    Kind::Workload(6),
    Kind::Job,
    Kind::ScanPod,
];

/// The shell's stream numbering: per scope pods, CIS, each kind; then Jobs and scan pods.
fn stream_id(k: Kind) -> StreamId {
    StreamId(match k {
        Kind::Pod => 1,
        Kind::Cis => 2,
        Kind::Workload(i) => 3 + u32::from(i),
        Kind::Job => 3 + u32::from(kind::CONFIGURED),
        Kind::ScanPod => 4 + u32::from(kind::CONFIGURED),
    })
}

/// Lease duration and renew period (kube-lease-manager settings of the shell).
const LEASE_MS: i64 = 15_000;
const RENEW_MS: u64 = 5_000;
const RETRY_MS: u64 = 2_000;

/// The coordination Lease as a sim object.
#[derive(Clone, Debug, Default)]
pub struct Lease {
    /// (instance, incarnation) holding it.
    pub holder: Option<(usize, u32)>,
    /// Expiry.
    pub expires: i64,
}

/// One watch of one instance.
#[derive(Clone, Debug, Default)]
pub struct Watcher {
    /// Last resourceVersion delivered.
    pub cursor: u64,
    /// Connected (a disconnected watcher reconnects, possibly into a 410).
    pub connected: bool,
    /// Delivered its first complete list.
    pub listed: bool,
    /// A delivery is scheduled.
    pub scheduled: bool,
    /// The next reconnect must relist (a lost delete).
    pub must_relist: bool,
}

/// An operator process.
pub struct Instance {
    /// Index.
    pub id: usize,
    /// Incarnation; bumped by every crash, so stale replies are dropped.
    pub inc: u32,
    /// The engine; `None` while crashed.
    pub engine: Option<Engine>,
    /// Its configuration.
    pub cfg: EngineConfig,
    /// Watches.
    pub watchers: BTreeMap<Kind, Watcher>,
    /// `CachesSynced` delivered.
    pub synced: bool,
    /// Told it leads.
    pub leading: bool,
    /// Paused (stop-the-world).
    pub paused: bool,
    /// Until when.
    pub paused_until: i64,
    /// Clock skew (ms) against the API server.
    pub skew: i64,
    /// Scheduled wake-up (sim time).
    pub wake_at: Option<i64>,
    /// A restart is scheduled.
    pub restart_pending: bool,
    /// Identical commands recently issued: fingerprint → (window start, count).
    pub repeats: BTreeMap<u64, (i64, u32)>,
    /// Commands issued in the current simulated second.
    pub second: (i64, u32),
    /// Commands in flight (issued, no reply observed).
    pub inflight: VecDeque<CommandId>,
}

/// The engine configuration of a run.
pub fn engine_config(opts: &Options) -> EngineConfig {
    let mut cfg = EngineConfig::for_tests(crate::cluster::SCAN_NS);
    cfg.workload_kinds
        .insert(("example.com".to_string(), "Rollout".to_string()));
    cfg.scan_interval = opts.scan_interval;
    cfg.active_job_limit = opts.job_limit;
    cfg.max_inflight = opts.max_inflight;
    cfg.details_max_bytes = opts.details_max_bytes;
    cfg.log_max_bytes = 256 * 1024;
    cfg.report_cache_bytes = 256 * 1024;
    cfg.failed_scan_retry = Duration::from_secs(120);
    cfg.api_retry_max = Duration::from_secs(60);
    cfg.job.ttl_seconds_after_finished = 900;
    cfg.job.active_deadline_seconds = 600;
    cfg.job.backoff_limit = 2;
    cfg
}

fn regex(p: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(p).expect("constant pattern")
}

impl Sim {
    /// Starts (or restarts) instance `id` with a fresh engine.
    pub fn start_instance(&mut self, id: usize, first: bool) {
        let mut cfg = if first || self.instances.get(id).is_none() {
            self.base_cfg.clone()
        } else {
            self.instances[id].cfg.clone()
        };
        if !first && self.opts.has(Fault::ConfigChange) && !self.healing_reference() {
            let r = &mut self.r_config;
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
            cfg.active_job_limit = [1, 3][self.r_config.index(2)];
        }
        let skew = if self.opts.has(Fault::Clock) {
            self.r_config.between(0, 120_000) as i64 - 60_000
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
            leading: false,
            paused: false,
            paused_until: 0,
            skew: if first { skew } else { self.instances[id].skew },
            wake_at: None,
            restart_pending: false,
            repeats: BTreeMap::new(),
            second: (0, 0),
            inflight: VecDeque::new(),
        };
        if id < self.instances.len() {
            self.instances[id] = inst;
        } else {
            self.instances.push(inst);
        }
        for k in STREAMS {
            let d = self.r_delivery.between(1, 200);
            self.after(d, Event::Relist(id, inc, k));
        }
        let d = self.r_delivery.between(1, 500);
        self.after(d, Event::LeaseTick(id, inc));
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

    fn live(&self, i: usize, inc: u32) -> bool {
        self.instances
            .get(i)
            .is_some_and(|x| x.inc == inc && x.engine.is_some())
    }

    /// The instance's clock.
    pub fn clock(&self, i: usize) -> Timestamp {
        Timestamp(self.now + self.instances[i].skew)
    }

    /// Postpones an event of a paused instance; true if postponed.
    fn postpone_if_paused(&mut self, i: usize, ev: Event) -> bool {
        if self.instances[i].paused {
            let until = self.instances[i].paused_until;
            let d = self.r_delivery.between(1, 50) as i64;
            self.at(until + d, ev);
            true
        } else {
            false
        }
    }

    fn delay(&mut self) -> u64 {
        let max = self.opts.max_delay_ms;
        if self.healing {
            self.r_delivery.between(1, 20)
        } else if max > 20 && self.r_delivery.chance(0.3) {
            self.r_delivery.between(1, max)
        } else {
            self.r_delivery.between(1, 20)
        }
    }

    /// Schedules a delivery of `k` to every connected watcher that has something new.
    pub fn schedule_deliveries(&mut self, k: Kind) {
        for i in 0..self.instances.len() {
            let inc = self.instances[i].inc;
            if self.instances[i].engine.is_none() {
                continue;
            }
            let Some(w) = self.instances[i].watchers.get(&k) else {
                continue;
            };
            if !w.connected || w.scheduled || !w.listed {
                continue;
            }
            let d = self.delay();
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.scheduled = true;
            }
            self.after(d, Event::Deliver(i, inc, k));
        }
    }

    /// Compacts a log up to what every connected watcher has seen, within the window.
    pub fn compact(&mut self, k: Kind) {
        let mut upto = u64::MAX;
        for inst in &self.instances {
            if inst.engine.is_none() {
                continue;
            }
            if let Some(w) = inst.watchers.get(&k)
                && w.connected
            {
                upto = upto.min(w.cursor);
            }
        }
        let window = self.opts.compaction_window;
        if let Some(log) = self.cluster.logs.get_mut(&k) {
            if upto == u64::MAX {
                upto = log.head();
            }
            // Keep some history for stale lists even when everyone has seen it.
            let keep_min = 8.min(window);
            let floor_target = if log.changes.len() > keep_min {
                upto
            } else {
                0
            };
            log.compact(floor_target, window.max(keep_min));
        }
    }

    fn observe(&mut self, i: usize, obs: Observation) {
        let now = self.clock(i);
        if let Some(e) = self.instances[i].engine.as_mut() {
            e.observe(obs, now);
        }
    }

    /// Watch delivery.
    pub fn deliver(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        if self.postpone_if_paused(i, Event::Deliver(i, inc, k)) {
            return;
        }
        let Some(w) = self.instances[i].watchers.get(&k).cloned() else {
            return;
        };
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.scheduled = false;
        }
        if !w.connected {
            return;
        }
        let (floor, changes) = {
            let Some(log) = self.cluster.logs.get(&k) else {
                return;
            };
            let changes: Vec<crate::cluster::Change> = log
                .changes
                .iter()
                .filter(|c| c.rv > w.cursor)
                .cloned()
                .collect();
            (log.floor, changes)
        };
        if w.cursor < floor {
            // Too old a resourceVersion: 410, relist.
            self.stats.relists += 1;
            self.note(|| format!("inst{i} {k:?} 410 (cursor {} < floor {floor})", w.cursor));
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.connected = false;
            }
            let d = self.r_delivery.between(10, 1_000);
            self.after(d, Event::Relist(i, inc, k));
            return;
        }
        if changes.is_empty() {
            return;
        }
        // Deliver a chunk; the rest follows in a later delivery (interleaving streams).
        let chunk = if self.opts.has(Fault::Delay) && !self.healing {
            self.r_delivery.between(1, 8) as usize
        } else {
            changes.len()
        };
        let batch = &changes[..chunk.min(changes.len())];
        let last_rv = batch.last().map_or(w.cursor, |c| c.rv);
        let mut events = Vec::new();
        for (n, c) in batch.iter().enumerate() {
            let superseded = batch[n + 1..].iter().any(|l| l.key == c.key);
            if superseded && self.fault(Fault::Coalesce, 5.0) {
                self.note(|| format!("inst{i} {k:?} coalesce rv={}", c.rv));
                continue;
            }
            match (&c.after, &c.before) {
                (Some(v), _) => events.push(WatchEvent::Apply(v.clone())),
                (None, Some(v)) => {
                    if self.fault(Fault::DropDelete, 3.0) {
                        self.note(|| format!("inst{i} {k:?} drop delete {}", c.key));
                        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                            w.must_relist = true;
                        }
                        let d = self.r_faults.between(1_000, 60_000);
                        self.after(d, Event::Disconnect(i, inc, k));
                        continue;
                    }
                    let mut v = v.clone();
                    set_view_rv(&mut v, c.rv);
                    events.push(WatchEvent::Delete(v));
                }
                (None, None) => {}
            }
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.cursor = last_rv;
        }
        let n = events.len();
        self.note(|| format!("inst{i} deliver {k:?} n={n} upto_rv={last_rv}"));
        for ev in events {
            let obs = observation(k, ev);
            self.observe(i, obs);
        }
        self.poll(i);
        if changes.len() > chunk {
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.scheduled = true;
            }
            let d = self.delay();
            self.after(d, Event::Deliver(i, inc, k));
        }
    }

    /// A full (re)list: InitStarted, InitApply…, InitDone.
    pub fn relist(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        if self.postpone_if_paused(i, Event::Relist(i, inc, k)) {
            return;
        }
        let (head, floor) = self
            .cluster
            .logs
            .get(&k)
            .map_or((self.cluster.rv, 0), |l| (l.head(), l.floor));
        let stale_ok = !matches!(k, Kind::Cis | Kind::Job) || self.opts.has(Fault::StaleCis);
        let at = if stale_ok && self.fault(Fault::StaleList, 10.0) {
            self.r_faults.between(floor, head)
        } else {
            head
        };
        let snapshot = self
            .cluster
            .logs
            .get(&k)
            .map(|l| l.snapshot_at(at))
            .unwrap_or_default();
        let n = snapshot.len();
        self.note(|| format!("inst{i} relist {k:?} at rv={at} (head {head}) n={n}"));
        self.observe(i, observation(k, WatchEvent::InitStarted));
        for (_, v) in snapshot {
            self.observe(i, observation(k, WatchEvent::InitApply(v)));
        }
        self.observe(i, observation(k, WatchEvent::InitDone));
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.cursor = at;
            w.connected = true;
            w.listed = true;
            w.must_relist = false;
            w.scheduled = false;
        }
        if !self.instances[i].synced && self.instances[i].watchers.values().all(|w| w.listed) {
            self.instances[i].synced = true;
            self.observe(i, Observation::CachesSynced);
        }
        self.poll(i);
        if head > at || self.cluster.logs.get(&k).is_some_and(|l| l.head() > at) {
            self.schedule_deliveries(k);
        }
    }

    /// A watch connection drops.
    pub fn disconnect(&mut self, i: usize, inc: u32, k: Kind) {
        let Some(x) = self.instances.get(i) else {
            return;
        };
        let inc = if inc == u32::MAX { x.inc } else { inc };
        if !self.live(i, inc) {
            return;
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            if !w.connected {
                return;
            }
            w.connected = false;
        }
        self.note(|| format!("inst{i} {k:?} disconnect"));
        let d = self.r_delivery.between(200, 5_000);
        self.after(d, Event::Reconnect(i, inc, k));
    }

    /// Reconnect: resume, or 410 and relist when the cursor was compacted away.
    pub fn reconnect(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        let floor = self.cluster.logs.get(&k).map_or(0, |l| l.floor);
        let Some(w) = self.instances[i].watchers.get(&k).cloned() else {
            return;
        };
        if w.must_relist || w.cursor < floor {
            self.stats.relists += 1;
            self.note(|| format!("inst{i} {k:?} reconnect: 410"));
            self.relist(i, inc, k);
            return;
        }
        let mut cursor = w.cursor;
        if self.fault(Fault::Duplicate, 10.0) {
            let back = self.r_faults.between(1, 10);
            cursor = cursor.saturating_sub(back).max(floor);
            self.note(|| format!("inst{i} {k:?} reconnect re-delivers from rv={cursor}"));
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.connected = true;
            w.cursor = cursor;
            w.scheduled = false;
        }
        self.schedule_deliveries(k);
    }

    /// A BackOff event of a scan pod reaches every live instance (after a watch delay).
    pub fn broadcast_back_off(&mut self, pod: &str) {
        for i in 0..self.instances.len() {
            if self.instances[i].engine.is_none() {
                continue;
            }
            let inc = self.instances[i].inc;
            let d = self.delay();
            self.after(d, Event::BackOff(i, inc, pod.to_string()));
        }
    }

    /// Delivers a BackOff event.
    pub fn back_off_event(&mut self, i: usize, inc: u32, pod: String) {
        if !self.live(i, inc) || self.postpone_if_paused(i, Event::BackOff(i, inc, pod.clone())) {
            return;
        }
        self.observe(i, Observation::BackOffEvent { pod_name: pod });
        self.poll(i);
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
            self.at(t.max(self.now + 1), Event::Wake(i, inc));
        }
        if commands.is_empty() {
            return;
        }
        // BUGGIFY crash point: the commands never leave the process.
        if self.fault(Fault::Crash, 0.5) {
            self.note(|| format!("inst{i} crash before sending {} commands", commands.len()));
            self.crash(i);
            return;
        }
        for cmd in commands {
            self.stats.commands += 1;
            let write = cmd.action.is_write();
            if write {
                self.stats.writes += 1;
                // S6: no writes after being told of the lost lease.
                if !leading || !self.instances[i].leading {
                    self.checker.violation(
                        self.now,
                        "S6",
                        format!("inst{i} issued {} while not leading", cmd.action.verb()),
                    );
                }
                if self.converged_at.is_some() {
                    let d = describe(&cmd.action);
                    self.quiet_writes.push(format!("inst{i} {d}"));
                }
            }
            self.hot_loop_check(i, &cmd.action);
            let id = cmd.id;
            let verb = cmd.action.verb();
            self.note(|| format!("inst{i} cmd#{} {verb} {}", id.0, describe(&cmd.action)));
            self.instances[i].inflight.push_back(id);
            let d = self.delay();
            self.after(d, Event::Arrive(i, inc, Box::new(cmd)));
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
            self.at(until + 1, Event::Reply(i, inc, id, Box::new(outcome)));
            return;
        }
        if self.fault(Fault::Crash, 0.3) {
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
        if self.postpone_if_paused(i, Event::Wake(i, inc)) {
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
        if self.postpone_if_paused(i, Event::LeaseTick(i, inc)) {
            return;
        }
        let me = (i, inc);
        let now = self.now;
        let d = self.r_delivery.between(1, 300);
        if self.lease.holder == Some(me) && self.lease.expires > now {
            self.lease.expires = now + LEASE_MS;
            self.after(RENEW_MS, Event::LeaseTick(i, inc));
        } else if self.lease.holder.is_none()
            || self.lease.expires <= now
            || self.lease.holder == Some(me)
        {
            self.lease.holder = Some(me);
            self.lease.expires = now + LEASE_MS;
            self.note(|| format!("inst{i} acquires the lease"));
            self.after(d, Event::Leadership(i, inc, true));
            self.after(RENEW_MS, Event::LeaseTick(i, inc));
        } else {
            if self.instances[i].leading {
                self.note(|| format!("inst{i} finds the lease taken"));
                self.after(d, Event::Leadership(i, inc, false));
            }
            self.after(RETRY_MS, Event::LeaseTick(i, inc));
        }
    }

    /// Leadership reaches the engine.
    pub fn leadership(&mut self, i: usize, inc: u32, leading: bool) {
        if !self.live(i, inc) || self.postpone_if_paused(i, Event::Leadership(i, inc, leading)) {
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
        if self.instances[i].engine.is_none() || self.healing {
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
        let d = self.r_faults.between(500, 20_000);
        self.after(d, Event::Restart(i));
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
        if self.healing || self.instances[i].engine.is_none() || self.instances[i].paused {
            return;
        }
        self.note(|| format!("inst{i} PAUSE {ms}ms"));
        self.instances[i].paused = true;
        self.instances[i].paused_until = self.now + ms as i64;
        self.after(ms, Event::Unpause(i));
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
        if self.healing || i >= self.instances.len() {
            return;
        }
        self.note(|| format!("inst{i} clock jumps {ms}ms"));
        self.instances[i].skew += ms;
        let inc = self.instances[i].inc;
        self.instances[i].wake_at = None;
        self.after(1, Event::Wake(i, inc));
    }
}

fn set_view_rv(v: &mut View, rv: u64) {
    match v {
        View::Pod(x) => x.resource_version = Some(rv),
        View::Cis(x) => x.resource_version = Some(rv),
        View::Job(x) => x.resource_version = Some(rv),
        View::ScanPod(x) => x.resource_version = Some(rv),
        View::Workload(_) => {}
    }
}

fn observation(k: Kind, ev: WatchEvent<View>) -> Observation {
    let stream = stream_id(k);
    fn map<T>(ev: WatchEvent<View>, f: impl Fn(View) -> Option<T>) -> Option<WatchEvent<T>> {
        Some(match ev {
            WatchEvent::Apply(v) => WatchEvent::Apply(f(v)?),
            WatchEvent::Delete(v) => WatchEvent::Delete(f(v)?),
            WatchEvent::InitApply(v) => WatchEvent::InitApply(f(v)?),
            WatchEvent::InitStarted => WatchEvent::InitStarted,
            WatchEvent::InitDone => WatchEvent::InitDone,
        })
    }
    let none = || Observation::CachesSynced;
    match k {
        Kind::Pod => map(ev, |v| if let View::Pod(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Pod { stream, event }),
        Kind::Cis => map(ev, |v| if let View::Cis(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Cis { stream, event }),
        Kind::Job => map(ev, |v| if let View::Job(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Job { stream, event }),
        Kind::ScanPod => map(ev, |v| {
            if let View::ScanPod(p) = v {
                Some(p)
            } else {
                None
            }
        })
        .map_or_else(none, |event| Observation::ScanPod { stream, event }),
        Kind::Workload(_) => map(ev, |v| {
            if let View::Workload(p) = v {
                Some(p)
            } else {
                None
            }
        })
        .map_or_else(none, |event| Observation::Workload { stream, event }),
    }
}

/// A short description of an action for traces and messages.
pub fn describe(a: &Action) -> String {
    match a {
        Action::ApplyCis {
            namespace,
            name,
            owners,
            spec,
            ..
        } => {
            format!(
                "apply_cis {namespace}/{name} digest={} owners={}",
                short(&spec.digest),
                owners.len()
            )
        }
        Action::DeleteCis {
            namespace,
            name,
            uid,
        } => format!("delete_cis {namespace}/{name} uid={}", short(uid)),
        Action::ApplyCisStatus {
            namespace,
            name,
            uid,
            status,
            keep_details,
            ..
        } => format!(
            "apply_status {namespace}/{name} uid={} job={} t={:?} cond={:?} keep={keep_details} summary={:?}",
            short(uid),
            status
                .last_scan_job_uid
                .as_deref()
                .map(short)
                .unwrap_or_default(),
            status.last_scan_time.as_ref().map(|t| t.0.as_second()),
            status
                .conditions
                .iter()
                .flatten()
                .map(|c| format!("{}: {}", c.reason, &c.message[..c.message.len().min(120)]))
                .collect::<Vec<_>>(),
            status
                .vulnerability_summary
                .as_ref()
                .map(|s| (s.fixed_count, s.unfixed_count)),
        ),
        Action::CreateJob { job } => format!(
            "create_job {}",
            job.metadata.name.clone().unwrap_or_default()
        ),
        Action::DeleteJob { name, uid } => format!("delete_job {name} uid={}", short(uid)),
        Action::FetchLog {
            pod_name,
            limit_bytes,
            ..
        } => format!("fetch_log {pod_name} limit={limit_bytes}"),
        Action::ApplyReport {
            namespace, name, ..
        } => format!("apply_report {namespace}/{name}"),
        Action::RecordEvent {
            namespace,
            name,
            event,
            ..
        } => format!("event {namespace}/{name} {}", event.reason),
    }
}

fn short(s: &str) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    &s[..s.len().min(8)]
}

fn outcome_str(o: &Outcome) -> String {
    match o {
        Outcome::CisApplied(v) => format!("cis_applied rv={:?}", v.resource_version),
        Outcome::JobCreated(v) => format!("job_created {} uid={}", v.name, short(&v.uid)),
        Outcome::Done => "done".to_string(),
        Outcome::Log(b) => format!("log {} bytes", b.len()),
        Outcome::Failed(e) => format!(
            "failed {:?} {}",
            e.kind,
            &e.message[..e.message.len().min(80)]
        ),
    }
}
