//! Deterministic simulation testing of the image-scanner core.
//!
//! A seeded discrete-event simulator ([`sim::Sim`]) drives one or two operator instances, each
//! an unmodified [`image_scanner_core::engine::Engine`] fed the way the kube-rs shell feeds it,
//! against a simulated API server and the world around it. Faults are injected swarm-style (a
//! random subset per seed, see [`options::Fault`]); safety invariants are checked whenever the
//! server accepts a write ([`checks`]), liveness after a heal phase, and the final state is
//! compared with a fault-free run of the same script.
//!
//! The modules are layered, with no import cycle: the components at the crate root hold state
//! and know nothing of the event loop — the API server's objects ([`cluster`]), what the nodes
//! hold and the namespaces allow ([`kubelet`], [`admission`]), the scanner's truth
//! ([`scanner`]), the workload script ([`workload`]), the users' vulnerability exceptions and
//! every version stored of them ([`exceptions`], [`exception_ledger`]), the operator processes ([`instance`],
//! [`watcher`]), the invariants ([`checks`]), the options and random streams ([`options`],
//! [`rng`]) and what can happen ([`event`]). [`sim`] is the loop and its handlers, one
//! submodule per actor: the API server's request handling, the watches, the operator
//! instances, the workload controllers, the kubelet, the scan Job controller, the garbage
//! collector, the oracle and the liveness checks.
//!
//! Reproduce a seed with `SIM_SEED=<n> cargo test -p sim --release -- replay --nocapture`.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod admission;
pub mod checks;
pub mod cluster;
pub mod event;
pub mod exception_ledger;
pub mod exceptions;
pub mod faults;
pub mod instance;
pub mod kubelet;
pub mod options;
pub mod rng;
pub mod scanner;
pub mod sim;
pub mod watcher;
pub mod workload;

use std::path::PathBuf;

use options::{FaultSpec, Options};
use sim::{RunResult, Sim, Stats};

/// The outcome of one seed: the faulty run and, when enabled, the differential comparison.
#[derive(Debug)]
pub struct SeedReport {
    /// Options derived from the seed.
    pub options: Options,
    /// Violations (faulty run, reference run, differential).
    pub violations: Vec<String>,
    /// Counters of the faulty run.
    pub stats: Stats,
    /// Events of both runs.
    pub events: u64,
    /// Trace hash of the faulty run.
    pub trace_hash: u64,
}

/// Runs one seed: the faulty run, then (if enabled) the fault-free run of the same script with
/// the final configuration, comparing the final CIS sets (L3).
pub fn run_seed(seed: u64, spec: &FaultSpec, trace: bool) -> (SeedReport, Vec<String>) {
    let options = Options::from_seed(seed, spec);
    run_options(options, trace)
}

/// Runs explicit options (regression tests pin them).
pub fn run_options(options: Options, trace: bool) -> (SeedReport, Vec<String>) {
    let faulty: RunResult = Sim::new(options.clone(), None, trace).run();
    let mut violations = faulty.violations.clone();
    let mut events = faulty.stats.events;
    if options.differential && !options.faults.is_empty() {
        let reference = Sim::new(options.fault_free(), faulty.final_config.clone(), false).run();
        events += reference.stats.events;
        for v in &reference.violations {
            violations.push(format!("reference run: {v}"));
        }
        if reference.violations.is_empty() && faulty.violations.is_empty() {
            for (k, v) in &reference.final_cis {
                match faulty.final_cis.get(k) {
                    None => {
                        violations.push(format!("[L3] {k} exists only in the fault-free run: {v}"))
                    }
                    Some(f)
                        if f.spec != v.spec
                            || (!f.history && !v.history && f.status != v.status) =>
                    {
                        violations.push(format!("[L3] {k} differs: faulty {f} / fault-free {v}"))
                    }
                    _ => {}
                }
            }
            for k in faulty.final_cis.keys() {
                if !reference.final_cis.contains_key(k) {
                    violations.push(format!("[L3] {k} exists only in the faulty run"));
                }
            }
        }
    }
    violations.truncate(40);
    (
        SeedReport {
            options,
            violations,
            stats: faulty.stats,
            events,
            trace_hash: faulty.trace_hash,
        },
        faulty.trace,
    )
}

/// Where traces go: `$CARGO_TARGET_DIR/sim` or `<workspace>/target/sim`.
pub fn trace_dir() -> PathBuf {
    #[allow(clippy::disallowed_methods)]
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("sim")
}

/// Re-runs a failing seed with tracing, writes `<trace_dir>/<seed>.trace` and returns a report
/// with the replay command.
pub fn explain_failure(seed: u64, spec: &FaultSpec, faults_arg: &str) -> String {
    let (report, trace) = run_seed(seed, spec, true);
    let dir = trace_dir();
    let path = dir.join(format!("{seed}.trace"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, trace.join("\n") + "\n"))
        .is_ok();
    let mut out = format!("sim: seed {seed} FAILED\n  options: {}\n", report.options);
    for v in &report.violations {
        out.push_str(&format!("  {v}\n"));
    }
    let faults = if faults_arg.is_empty() {
        String::new()
    } else {
        format!(" SIM_FAULTS={faults_arg}")
    };
    out.push_str(&format!(
        "  replay: SIM_SEED={seed}{faults} cargo test -p sim --release --test sim -- replay --nocapture\n"
    ));
    if written {
        out.push_str(&format!("  trace: {}\n", path.display()));
    }
    out
}
