//! The discrete-event loop: one queue of timed events (workload ops, kubelet and controller
//! steps, watch deliveries, API requests and replies, engine wake-ups, faults), processed in
//! (time, sequence) order. Phases: faults on until `fault_phase`, then a heal phase in which the
//! world must converge (liveness), then a quiet window in which nothing may be written.

mod api;
mod gc;
mod kubelet;
mod liveness;
mod operator;
mod oracle;
pub mod receivers;
mod scanjobs;
mod watch;
mod world;

use std::collections::{BTreeMap, BTreeSet};

use image_scanner_core::engine::EngineConfig;

use image_scanner_core::scan_job::{ScanJobParams, build_scan_job};
use k8s_openapi::api::core::v1::PodSpec;

use crate::checks::Checker;
use crate::cluster::{Cluster, T0};
use crate::event::Event;
use crate::faults::Faults;
use crate::instance::{Instance, Lease};
use crate::kubelet::Kubelet;
use crate::options::{Fault, Options};
use crate::rng::{Concern, Fnv, Rng, stream};
use crate::scanner::Scanner;
use crate::workload::{self, Op};

/// Counters of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Commands issued.
    pub commands: u64,
    /// Write commands issued.
    pub writes: u64,
    /// Scan Jobs created at the server.
    pub jobs: u64,
    /// Status writes accepted.
    pub status_writes: u64,
    /// Writes that landed while their instance was not the lease holder.
    pub late_writes: u64,
    pub crashes: u64,
    /// Relists after 410.
    pub relists: u64,
    /// Faults injected.
    pub faults: u64,
    /// Simulated time until convergence in the heal phase (ms).
    pub converge_ms: Option<i64>,
    /// The most Job creations of one digest within the S9 window.
    pub max_job_creates: usize,
    /// Exception applies and deletes that reached the API server.
    pub exception_ops: u64,
    /// Findings marked as suppressed in the accepted status writes.
    pub suppressed_marks: u64,
    /// Of those, the marks by a VEX statement (with its justification).
    pub vex_marks: u64,
    /// Exception status writes accepted.
    pub exception_status_writes: u64,
    /// Change notices (issue 21) recorded as Events, on workloads and CIS.
    pub notice_events: u64,
    /// Deliveries to the notification sinks.
    pub deliveries: u64,
    /// Of those, repeats of a key a receiver had seen.
    pub delivery_repeats: u64,
}

/// Trace: always a cheap hash; the text only when asked for.
#[derive(Debug, Default)]
pub struct Trace {
    /// Keep text lines.
    pub enabled: bool,
    pub lines: Vec<String>,
    /// Hash of the lines (or of the cheap event fingerprint when disabled).
    pub hash: Fnv,
}

/// The result of a run.
#[derive(Debug)]
pub struct RunResult {
    /// Violations found.
    pub violations: Vec<String>,
    /// Counters.
    pub stats: Stats,
    pub trace_hash: u64,
    /// Trace lines (when enabled).
    pub trace: Vec<String>,
    /// Final CIS summary for the differential check.
    pub final_cis: BTreeMap<String, FinalCis>,
    /// Namespaces the final configuration scans.
    pub final_config: Option<EngineConfig>,
}

/// A final CIS as the differential check (L3) compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalCis {
    /// Spec and owner count.
    pub spec: String,
    /// Status class and summary (empty without status).
    pub status: String,
    /// The status depends on when the scans ran (no placement always works): not compared.
    pub history: bool,
}

impl std::fmt::Display for FinalCis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.spec, self.status)
    }
}

/// The simulator.
pub struct Sim {
    /// Options.
    pub opts: Options,
    /// Current simulated time (ms since the epoch).
    pub now: i64,
    queue: BTreeMap<(i64, u64), Event>,
    seq: u64,
    /// The API server.
    pub cluster: Cluster,
    /// Scanner truth.
    pub scanner: Scanner,
    /// The workload script.
    pub script: Vec<(i64, Op)>,
    /// The users' exceptions script.
    pub exception_script: Vec<crate::exceptions::ExceptionOp>,
    /// Streams.
    pub r_world: Rng,
    /// Delivery delays.
    pub r_delivery: Rng,
    /// The notification sinks' receivers.
    pub r_sinks: Rng,
    /// What the receivers saw.
    pub receivers: receivers::Receivers,
    /// Scan Job timings.
    pub r_jobs: Rng,
    /// Garbage-collector and finalizer delays (they depend on the operator's writes, so they
    /// must not share the world's stream).
    pub r_gc: Rng,
    /// Operator instances.
    pub instances: Vec<Instance>,
    /// The lease.
    pub lease: Lease,
    /// Which faults fire, until when.
    pub faults: Faults,
    /// Convergence reached at.
    pub converged_at: Option<i64>,
    /// Invariant checker.
    pub checker: Checker,
    pub trace: Trace,
    /// Counters.
    pub stats: Stats,
    /// Engine configuration every instance starts from.
    pub base_cfg: EngineConfig,
    /// minSeverity policy per namespace (a webhook sets it on new CIS).
    pub min_severity_policy: BTreeMap<String, image_scanner_api::Severity>,
    /// Writes issued since the quiet window began.
    pub quiet_writes: Vec<String>,
    /// Stop the loop.
    pub stop: bool,
    /// Whether CronJobs are suspended.
    pub crons_suspended: bool,
    /// Reserved names of scan pods.
    pub used_names: BTreeSet<String>,
    /// Images and credentials on the nodes (KEP-2535).
    pub kubelet: Kubelet,
    /// The pod spec of a scan Job as the engine builds it (for the oracle's admission check).
    pub scan_template: PodSpec,
}

impl Sim {
    /// A simulator for `opts`; `base_cfg` overrides the engine configuration (reference runs).
    pub fn new(opts: Options, base_cfg: Option<EngineConfig>, trace: bool) -> Sim {
        let seed = opts.seed;
        let mut r_workload = stream(seed, Concern::Workload);
        let scanner = Scanner::generate(&mut r_workload, opts.images);
        let script = workload::generate(
            &mut r_workload,
            opts.namespaces,
            opts.workloads,
            opts.ops,
            scanner.images.len(),
            opts.fault_phase.as_millis() as u64,
        );
        let exception_script = crate::exceptions::generate(
            &mut stream(seed, Concern::Exceptions),
            &scanner,
            opts.namespaces,
            opts.fault_phase.as_millis() as u64,
            T0,
        );
        let base_cfg = base_cfg.unwrap_or_else(|| crate::instance::engine_config(&opts));
        let kubelet = Kubelet::new(seed, &opts.kep, &scanner);
        let scan_template = build_scan_job(
            &ScanJobParams {
                namespace: "ns-0".to_string(),
                job_name: "template".to_string(),
                ..ScanJobParams::default()
            },
            &base_cfg.job,
        )
        .spec
        .and_then(|s| s.template.spec)
        .unwrap_or_default();
        let cluster = Cluster::new(seed, scanner.images.clone());
        let mut sim = Sim {
            now: T0,
            queue: BTreeMap::new(),
            seq: 0,
            cluster,
            scanner,
            script,
            exception_script,
            r_world: stream(seed, Concern::World),
            r_delivery: stream(seed, Concern::Delivery),
            r_sinks: stream(seed ^ 0x5e, Concern::Sinks),
            receivers: Default::default(),
            r_jobs: stream(seed, Concern::Jobs),
            r_gc: stream(seed ^ 0x6c, Concern::Jobs),
            instances: Vec::new(),
            lease: Lease::default(),
            faults: Faults::new(&opts),
            converged_at: None,
            checker: Checker::default(),
            trace: Trace {
                enabled: trace,
                ..Trace::default()
            },
            stats: Stats::default(),
            base_cfg,
            min_severity_policy: BTreeMap::new(),
            quiet_writes: Vec::new(),
            stop: false,
            crons_suspended: false,
            used_names: BTreeSet::new(),
            kubelet,
            scan_template,
            opts,
        };
        for (i, (t, _)) in sim.script.clone().into_iter().enumerate() {
            sim.at(T0 + t, Event::Op { index: i });
        }
        let exception_ops: Vec<i64> = sim.exception_script.iter().map(|op| op.at as i64).collect();
        for (index, at) in exception_ops.into_iter().enumerate() {
            sim.at(T0 + at, Event::ExceptionOp { index });
        }
        let n = if sim.opts.has(Fault::Failover) { 2 } else { 1 };
        for id in 0..n {
            sim.start_instance(id, true);
        }
        for (t, ev) in sim.faults.plan(n) {
            sim.at(t, ev);
        }
        let heal = sim.faults.end();
        sim.at(heal, Event::HealStart);
        sim
    }

    /// Schedules `ev` at absolute time `t` (never in the past).
    pub fn at(&mut self, t: i64, ev: Event) {
        self.seq += 1;
        self.queue.insert((t.max(self.now), self.seq), ev);
    }

    /// Schedules `ev` after `ms`.
    pub fn after(&mut self, ms: u64, ev: Event) {
        let t = self.now + ms as i64;
        self.at(t, ev);
    }

    /// Adds a trace line (built only when tracing).
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if self.trace.enabled {
            let mut l = format!("t={} ", self.now - T0);
            l.push_str(&line());
            self.trace.hash.bytes(l.as_bytes());
            self.trace.hash.bytes(b"\n");
            self.trace.lines.push(l);
        }
    }

    /// Runs to the end; returns what happened.
    pub fn run(mut self) -> RunResult {
        let hard_end = self.faults.end() + self.opts.heal_limit.as_millis() as i64 + 4 * 3_600_000;
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > hard_end || self.stop {
                break;
            }
            self.now = t;
            self.stats.events += 1;
            self.trace.hash.num(t as u64);
            self.handle(ev);
            self.after_step();
        }
        if self.converged_at.is_none() && !self.stop {
            let d = self.liveness_diff();
            self.checker
                .violation(self.now, "L1", format!("never converged: {d}"));
        }
        self.checker.sweep(&self.cluster, self.now);
        self.stats.max_job_creates = self.checker.max_job_creates;
        self.stats.faults = self.faults.fired();
        let final_cis = self.final_cis();
        let final_config = self.leader_config();
        RunResult {
            violations: std::mem::take(&mut self.checker.violations),
            trace_hash: self.trace.hash.0,
            trace: std::mem::take(&mut self.trace.lines),
            stats: self.stats.clone(),
            final_cis,
            final_config,
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Op { index: i } => {
                let op = self.script[i].1.clone();
                self.note(|| format!("op {op:?}"));
                self.apply_op(i, op);
            }
            Event::ExceptionOp { index } => self.apply_exception_op(index),
            Event::Pod {
                ns,
                name,
                uid,
                step,
            } => self.pod_step(&ns, &name, &uid, step),
            Event::Reconcile { kind: k, ns, name } => self.reconcile(k, &ns, &name),
            Event::CronTick { ns, name } => self.cron_tick(&ns, &name),
            Event::Cascade { ns, owner_uid: uid } => self.cascade(&ns, &uid),
            Event::GcCis { ns, name } => self.gc_cis(&ns, &name),
            Event::Finalize { ns, name } => self.finalize_cis(&ns, &name),
            Event::NsFinalize { ns } => self.ns_finalize(&ns),
            Event::Job {
                ns,
                name,
                uid,
                step,
            } => self.job_step(&(ns, name), &uid, step),
            Event::ScanPodRemove { ns, name, uid } => self.scan_pod_remove(&(ns, name), &uid),
            Event::Deliver {
                instance: i,
                inc,
                kind: k,
            } => self.deliver(i, inc, k),
            Event::Relist {
                instance: i,
                inc,
                kind: k,
            } => self.relist(i, inc, k),
            Event::ListJobConfig { instance: i, inc } => self.list_job_config(i, inc),
            Event::Disconnect {
                instance: i,
                inc,
                kind: k,
            } => self.disconnect(i, inc, k),
            Event::Reconnect {
                instance: i,
                inc,
                kind: k,
            } => self.reconnect(i, inc, k),
            Event::BackOff {
                instance: i,
                inc,
                ns,
                pod,
            } => self.back_off_event(i, inc, ns, pod),
            Event::JobRejected {
                instance: i,
                inc,
                rejection: r,
            } => self.job_rejected_event(i, inc, *r),
            Event::Arrive {
                instance: i,
                inc,
                term,
                issued,
                command: cmd,
            } => self.arrive(i, inc, term, issued, *cmd),
            Event::Reply {
                instance: i,
                inc,
                id,
                outcome,
            } => self.reply(i, inc, id, *outcome),
            Event::Wake { instance: i, inc } => self.wake(i, inc),
            Event::LeaseTick { instance: i, inc } => self.lease_tick(i, inc),
            Event::Leadership {
                instance: i,
                inc,
                leading,
            } => self.leadership(i, inc, leading),
            Event::LeaseSeen {
                instance: i,
                inc,
                until,
            } => self.lease_seen(i, inc, until),
            Event::Crash { instance: i } => self.crash(i),
            Event::Restart { instance: i } => self.restart(i),
            Event::Pause { instance: i, ms } => self.pause(i, ms),
            Event::Unpause { instance: i } => self.unpause(i),
            Event::ClockJump { instance: i, ms } => self.clock_jump(i, ms),
            Event::UserDelete => self.user_delete(),
            Event::HealStart => self.heal_start(),
            Event::Check => self.convergence_check(),
            Event::QuietEnd => self.quiet_end(),
        }
    }

    /// Schedules deliveries for logs that changed, and compacts them.
    fn after_step(&mut self) {
        if self.cluster.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.cluster.dirty);
        for k in dirty {
            self.schedule_deliveries(k);
            self.compact(k);
        }
        if self.stats.events.is_multiple_of(512) {
            self.checker.sweep(&self.cluster, self.now);
        }
    }

    /// A pending event that changes the world outside the operator, if any.
    pub fn pending_world_event(&self) -> Option<String> {
        self.queue.values().find_map(|ev| match ev {
            Event::Op { index: _ }
            | Event::ExceptionOp { .. }
            | Event::Pod { .. }
            | Event::Reconcile { .. }
            | Event::Cascade { .. }
            | Event::GcCis { .. }
            | Event::Finalize { .. }
            | Event::NsFinalize { .. } => Some(format!("{ev:?}")),
            Event::CronTick { .. } if !self.crons_suspended => Some(format!("{ev:?}")),
            _ => None,
        })
    }

    fn heal_start(&mut self) {
        self.faults.heal();
        self.note(|| "heal".to_string());
        for i in 0..self.instances.len() {
            if self.instances[i].paused {
                self.unpause(i);
            }
            if self.instances[i].engine.is_none() && !self.instances[i].restart_pending {
                self.instances[i].restart_pending = true;
                self.after(100, Event::Restart { instance: i });
            }
        }
        self.after(60_000, Event::Check);
    }

    /// A compact description of the final CIS in namespaces the final configuration scans.
    fn final_cis(&self) -> BTreeMap<String, FinalCis> {
        let cfg = self
            .leader_config()
            .unwrap_or_else(|| self.base_cfg.clone());
        let expected = self.expected_cis(&cfg);
        // Where no placement always works, the result depends on when the scans ran: by the
        // pods of the CIS that exist (what the core chooses from) or of all that run the digest.
        let mut reaches = vec![self.reaches(&cfg, &expected)];
        reaches.push(self.reaches(&cfg, &self.asked_cis(&cfg)));
        let mut out = BTreeMap::new();
        for ((ns, name), c) in &self.cluster.cis {
            if !cfg.namespace_allowed(ns) {
                continue;
            }
            // A CIS whose pods are all unsettled is kept if it exists but not created, so its
            // presence depends on history: not compared.
            if expected
                .get(&(ns.clone(), name.clone()))
                .is_some_and(|e| !e.settled)
            {
                continue;
            }
            let spec = format!(
                "digest={} image={} wl={}/{} c={} iu={:?} min={:?} owners={}",
                c.spec.digest,
                c.spec.name,
                c.spec.workload.kind,
                c.spec.workload.name,
                c.spec.workload.container_name,
                c.spec.ignore_unfixed,
                c.spec.min_severity,
                c.owners.len()
            );
            let status = c.status.as_ref().map(|s| {
                let cond: Vec<String> = s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| format!("{}/{}", c.type_, c.reason))
                    .collect();
                format!(
                    "scanned={} ok={} cond={:?} summary={:?}",
                    s.last_scan_time.is_some(),
                    s.last_successful_scan_time.is_some(),
                    cond,
                    s.vulnerability_summary
                )
            });
            let history = reaches.iter().any(|r| {
                r.get(&c.spec.digest)
                    .is_some_and(|r| *r != oracle::Reach::Works)
            });
            out.insert(
                format!("{ns}/{name}"),
                FinalCis {
                    spec,
                    status: status.unwrap_or_default(),
                    history,
                },
            );
        }
        out
    }
}
