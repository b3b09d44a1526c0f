//! What a seed turns into: the enabled fault kinds (swarm testing: a random subset per seed),
//! their rates, the size of the world and the engine settings. Printed at the start of a run.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::kubelet::KepOptions;
use crate::rng::{Concern, Draw, stream};

/// Every fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Watch connections drop; resuming from a compacted resourceVersion answers 410 → relist.
    Gone,
    /// Several updates of an object reach a watcher as only the last one.
    Coalesce,
    /// A Delete event is lost; a later relist reveals the absence.
    DropDelete,
    /// Reconnects resume from an older resourceVersion and re-deliver events.
    Duplicate,
    /// Per-watcher random delays (cross-stream reordering).
    Delay,
    /// Relists may return an older snapshot than already seen.
    StaleList,
    /// Writes answered 409 Conflict.
    Conflict,
    /// Log reads and deletes answered 404 (object gone meanwhile).
    NotFound,
    /// 429 / 5xx answers.
    Throttle,
    /// A request-size limit below the details budget (413 / etcd "request is too large").
    TooLarge,
    /// The request was applied but the client saw an error (ApiErrorKind::Unknown).
    Timeout,
    /// Operator crash and restart at command boundaries.
    Crash,
    /// Two operator instances, lease expiry while the leader is paused.
    Failover,
    /// Configuration changes on restart (interval, include/exclude, job limit).
    ConfigChange,
    /// Transient scan Job failures: pull back-off, OOM, deadline, garbage/truncated logs.
    ScanFailure,
    /// The TTL controller deletes finished Jobs before their log is read.
    TtlDelete,
    /// Users delete CIS, Jobs and scan pods at random.
    DeleteRace,
    /// Operator clocks are skewed and jump.
    Clock,
    /// Relists of the CIS and Job streams may travel back in time too (opt-in: status writes carry
    /// only a UID precondition, so a decision on a stale CIS can move a status back).
    StaleCis,
}

impl Fault {
    /// All faults.
    pub const ALL: [Fault; 19] = [
        Fault::Gone,
        Fault::Coalesce,
        Fault::DropDelete,
        Fault::Duplicate,
        Fault::Delay,
        Fault::StaleList,
        Fault::Conflict,
        Fault::NotFound,
        Fault::Throttle,
        Fault::TooLarge,
        Fault::Timeout,
        Fault::Crash,
        Fault::Failover,
        Fault::ConfigChange,
        Fault::ScanFailure,
        Fault::TtlDelete,
        Fault::DeleteRace,
        Fault::Clock,
        Fault::StaleCis,
    ];

    /// Lower-case name used by `SIM_FAULTS` / `--faults`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Gone => "gone",
            Fault::Coalesce => "coalesce",
            Fault::DropDelete => "dropdelete",
            Fault::Duplicate => "duplicate",
            Fault::Delay => "delay",
            Fault::StaleList => "stale",
            Fault::Conflict => "conflict",
            Fault::NotFound => "notfound",
            Fault::Throttle => "throttle",
            Fault::TooLarge => "toolarge",
            Fault::Timeout => "timeout",
            Fault::Crash => "crash",
            Fault::Failover => "failover",
            Fault::ConfigChange => "config",
            Fault::ScanFailure => "scanfail",
            Fault::TtlDelete => "ttl",
            Fault::DeleteRace => "delete",
            Fault::Clock => "clock",
            Fault::StaleCis => "timetravel",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Overrides of the seed's fault subset: `all`, `none`, `+crash,-gone`, or a plain list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSpec {
    /// Start from the empty set (`none` or a plain list) instead of the seed's subset.
    pub replace: bool,
    /// Added.
    pub add: BTreeSet<Fault>,
    /// Removed.
    pub remove: BTreeSet<Fault>,
}

impl FaultSpec {
    /// Parses `SIM_FAULTS` syntax.
    pub fn parse(text: &str) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => {
                    spec.replace = true;
                    spec.add
                        .extend(Fault::ALL.into_iter().filter(|f| *f != Fault::StaleCis));
                }
                "none" => spec.replace = true,
                "seed" => {}
                _ => {
                    let (sign, name) = match part.as_bytes()[0] {
                        b'+' => (Some(true), &part[1..]),
                        b'-' => (Some(false), &part[1..]),
                        _ => (None, part),
                    };
                    let fault = Fault::parse(name).ok_or_else(|| {
                        format!(
                            "unknown fault '{name}' (known: {})",
                            Fault::ALL.map(Fault::name).join(",")
                        )
                    })?;
                    match sign {
                        Some(true) => {
                            spec.add.insert(fault);
                        }
                        Some(false) => {
                            spec.remove.insert(fault);
                        }
                        None => {
                            spec.replace = true;
                            spec.add.insert(fault);
                        }
                    }
                }
            }
        }
        Ok(spec)
    }

    fn apply(&self, seeded: BTreeSet<Fault>) -> BTreeSet<Fault> {
        let mut set = if self.replace {
            BTreeSet::new()
        } else {
            seeded
        };
        set.extend(self.add.iter().copied());
        for f in &self.remove {
            set.remove(f);
        }
        set
    }
}

/// Everything a run depends on besides the seed's other streams.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// Enabled faults.
    pub faults: BTreeSet<Fault>,
    /// Probability scale of the enabled faults (per opportunity).
    pub rate: f64,
    /// Namespaces (besides the scan namespace).
    pub namespaces: usize,
    /// Workloads created at the start.
    pub workloads: usize,
    /// Workload operations during the fault phase.
    pub ops: usize,
    /// Distinct images (digests).
    pub images: usize,
    /// Length of the fault phase.
    pub fault_phase: Duration,
    /// Bound on the heal phase (liveness).
    pub heal_limit: Duration,
    pub nodes: usize,
    /// Rescan interval of the engine.
    pub scan_interval: Duration,
    /// Active scan Job limit (0 = unlimited).
    pub job_limit: u32,
    /// Flow-control window.
    pub max_inflight: usize,
    /// Details budget of statuses.
    pub details_max_bytes: usize,
    /// Cluster-wide bound on the details of all statuses (0: none).
    pub details_total_bytes: usize,
    /// Request size limit of the API server.
    pub request_limit: usize,
    /// Largest watch delay in ms.
    pub max_delay_ms: u64,
    /// Events kept per watch log before compaction.
    pub compaction_window: usize,
    /// Whether to run the fault-free reference run and compare (L3).
    pub differential: bool,
    /// Pull credentials, the kubelet's feature gate, namespaces' admission (KEP-2535).
    pub kep: KepOptions,
    /// `kubernetes.io/arch` of `node-{i}` (`None`: unlabelled): half the seeds mix amd64 and
    /// arm64 nodes.
    pub node_archs: Vec<Option<&'static str>>,
    /// Notification sinks configured (`sim::receivers`): a CloudEvents one, then an
    /// Alertmanager one.
    pub sinks: usize,
}

impl Options {
    /// Derives the options of `seed`, then applies `spec` to the fault subset.
    pub fn from_seed(seed: u64, spec: &FaultSpec) -> Options {
        let mut r = stream(seed, Concern::Options);
        let seeded: BTreeSet<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| r.chance(0.4) && *f != Fault::StaleCis)
            .collect();
        let faults = spec.apply(seeded);
        let rate = [0.02, 0.05, 0.1, 0.2][r.index(4)];
        let namespaces = r.between(2, 5) as usize;
        let workloads = r.between(3, 10) as usize;
        let ops = r.between(4, 20) as usize;
        let images = r.between(3, 9) as usize;
        let fault_phase = Duration::from_secs(r.between(8, 25) * 60);
        let scan_interval = Duration::from_secs([3600, 7200, 4 * 3600][r.index(3)]);
        let job_limit = [0, 1, 2, 3, 8][r.index(5)];
        let max_inflight = [1, 2, 4, 8, 32][r.index(5)];
        let details_max_bytes = [2048, 4096, 8192][r.index(3)];
        let request_limit = if faults.contains(&Fault::TooLarge) {
            details_max_bytes / 2 + r.between(0, details_max_bytes as u64) as usize + 4096
        } else {
            usize::MAX
        };
        let max_delay_ms = if faults.contains(&Fault::Delay) {
            r.between(500, 20_000)
        } else {
            20
        };
        let compaction_window = if faults.contains(&Fault::Gone) {
            r.between(2, 40) as usize
        } else {
            100_000
        };
        let nodes = r.between(1, 3) as usize;
        let kep = KepOptions::draw(seed, nodes, namespaces, fault_phase.as_millis() as u64);
        let node_archs = draw_node_archs(seed, nodes);
        Options {
            seed,
            faults,
            rate,
            namespaces,
            workloads,
            ops,
            images,
            fault_phase,
            heal_limit: scan_interval * 3,
            nodes,
            scan_interval,
            job_limit,
            max_inflight,
            details_max_bytes,
            details_total_bytes: draw_details_total(seed, details_max_bytes),
            request_limit,
            max_delay_ms,
            compaction_window,
            differential: true,
            kep,
            node_archs,
            sinks: draw_sinks(seed),
        }
    }

    /// Whether `fault` is enabled.
    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// The same world without any fault (the differential reference).
    pub fn fault_free(&self) -> Options {
        let mut o = self.clone();
        o.faults.clear();
        o.request_limit = usize::MAX;
        o.max_delay_ms = 20;
        o.compaction_window = 100_000;
        o
    }
}

/// The cluster-wide details bound of one seed in three, from its own stream (the older options
/// keep their values): two to six statuses' worth, so that a few results fill it.
fn draw_details_total(seed: u64, details_max_bytes: usize) -> usize {
    let mut r = stream(seed, Concern::DetailsBudget);
    if r.chance(1.0 / 3.0) {
        details_max_bytes * r.between(2, 6) as usize
    } else {
        0
    }
}

/// How many notification sinks (0–2), from their own stream (the older options keep their
/// values).
fn draw_sinks(seed: u64) -> usize {
    stream(seed, Concern::Sinks).index(3)
}

/// The nodes' architectures, from their own stream (the older options keep their values).
fn draw_node_archs(seed: u64, nodes: usize) -> Vec<Option<&'static str>> {
    let mut r = stream(seed, Concern::Platforms);
    let mixed = r.chance(0.5);
    (0..nodes)
        .map(|_| {
            if r.chance(0.1) {
                None
            } else if mixed && r.chance(0.5) {
                Some("arm64")
            } else {
                Some("amd64")
            }
        })
        .collect()
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = self.faults.iter().map(|x| x.name()).collect();
        write!(
            f,
            "seed={} faults=[{}] rate={} ns={} workloads={} ops={} images={} nodes={} fault_phase={}s heal_limit={}s interval={}s job_limit={} inflight={} details={} details_total={} request_limit={} max_delay={}ms window={} {} archs=[{}] sinks={}",
            self.seed,
            faults.join(","),
            self.rate,
            self.namespaces,
            self.workloads,
            self.ops,
            self.images,
            self.nodes,
            self.fault_phase.as_secs(),
            self.heal_limit.as_secs(),
            self.scan_interval.as_secs(),
            self.job_limit,
            self.max_inflight,
            self.details_max_bytes,
            self.details_total_bytes,
            if self.request_limit == usize::MAX {
                "none".to_string()
            } else {
                self.request_limit.to_string()
            },
            self.max_delay_ms,
            self.compaction_window,
            self.kep,
            self.node_archs
                .iter()
                .map(|a| a.unwrap_or("-"))
                .collect::<Vec<_>>()
                .join(","),
            self.sinks,
        )
    }
}
