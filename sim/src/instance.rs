//! An operator process as the simulator holds it: its [`Engine`] (fed in `sim/operator.rs`
//! exactly as `src/shell/runtime.rs` `drive()` feeds it), its configuration, watches, pause and
//! clock skew; the coordination Lease; and how commands and answers read in a trace.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use image_scanner_core::engine::{Engine, EngineConfig};
use image_scanner_core::port::{Action, CommandId, Outcome};
use regex::Regex;

use crate::cluster::Kind;
use crate::options::Options;
use crate::watcher::Watcher;

/// The coordination Lease as a sim object.
#[derive(Clone, Debug, Default)]
pub struct Lease {
    /// (instance, incarnation) holding it.
    pub holder: Option<(usize, u32)>,
    /// Expiry.
    pub expires: i64,
    /// Bumped whenever another holder takes it: a write issued in an earlier term lands late
    /// even when its writer holds the Lease again by then.
    pub term: u64,
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
    /// The scan namespace's `trivy-job-config` ConfigMap was listed (one of the watches the
    /// shell waits for before `CachesSynced`).
    pub config_listed: bool,
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
    /// Sim time of this incarnation's last renewal (or acquisition) of the Lease: past it plus
    /// the lease duration, another instance may hold the Lease, so S6 allows no write.
    pub renewed_at: Option<i64>,
    /// The clock went back since that renewal: the engine's validity (in its own clock) then
    /// reaches past the Lease's, as it would for any lease-based election, and S6 cannot ask
    /// more than "told it lost the Lease".
    pub clock_back_since_renewal: bool,
    /// Per CreateJob in flight: how far its Job watch had got when it was decided (what the
    /// Job limit was checked against).
    pub job_cursor: BTreeMap<CommandId, u64>,
}

/// The engine configuration of a run.
pub fn engine_config(opts: &Options) -> EngineConfig {
    let mut cfg = EngineConfig::for_tests(crate::cluster::SCAN_NS);
    cfg.workload_kinds
        .insert(("example.com".to_string(), "Rollout".to_string()));
    cfg.scan_interval = opts.scan_interval;
    cfg.active_job_limit = opts.job_limit;
    cfg.max_inflight = opts.max_inflight;
    cfg.sinks = (0..opts.sinks)
        .map(|i| image_scanner_core::notification::SinkSpec {
            name: format!("sink{i}"),
            format: crate::sim::receivers::FORMATS[i % 2],
        })
        .collect();
    cfg.details_max_bytes = opts.details_max_bytes;
    cfg.details_total_bytes = opts.details_total_bytes;
    cfg.log_max_bytes = 256 * 1024;
    cfg.report_cache_bytes = 256 * 1024;
    cfg.failed_scan_retry = Duration::from_secs(120);
    cfg.api_retry_max = Duration::from_secs(60);
    cfg.job.ttl_seconds_after_finished = 900;
    cfg.job.active_deadline_seconds = 600;
    cfg.job.backoff_limit = 2;
    cfg.workload_placement = opts.kep.placement;
    cfg
}

pub fn regex(p: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(p).expect("constant pattern")
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
        Action::CreateJob { job } => {
            let secrets: Vec<String> = job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.image_pull_secrets.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .collect();
            let digest = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(image_scanner_core::scan_job::ANNOTATION_DIGEST))
                .cloned()
                .unwrap_or_default();
            format!(
                "create_job {}/{} digest={} secrets={secrets:?}",
                job.metadata.namespace.clone().unwrap_or_default(),
                job.metadata.name.clone().unwrap_or_default(),
                short(&digest)
            )
        }
        Action::DeleteJob {
            namespace,
            name,
            uid,
        } => format!("delete_job {namespace}/{name} uid={}", short(uid)),
        Action::FetchLog {
            namespace,
            pod_name,
            limit_bytes,
            ..
        } => format!("fetch_log {namespace}/{pod_name} limit={limit_bytes}"),
        Action::ApplyReport {
            namespace, name, ..
        } => format!("apply_report {namespace}/{name}"),
        Action::RecordEvent {
            namespace,
            name,
            event,
            ..
        } => format!("event {namespace}/{name} {}", event.reason),
        Action::Deliver { sink, key, .. } => format!("deliver sink{sink} {}", short(key)),
        Action::ApplyExceptionStatus { key, status, .. } => format!(
            "exception_status {} ready={:?} covered={:?}",
            key.reference(),
            status
                .conditions
                .iter()
                .flatten()
                .map(|c| c.reason.as_str())
                .collect::<Vec<_>>(),
            status.covered_findings
        ),
    }
}

fn short(s: &str) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    &s[..s.len().min(16)]
}

pub fn outcome_str(o: &Outcome) -> String {
    match o {
        Outcome::CisApplied(v) => format!("cis_applied rv={:?}", v.resource_version),
        Outcome::JobCreated(v) => {
            format!(
                "job_created {}/{} uid={}",
                v.namespace,
                v.name,
                short(&v.uid)
            )
        }
        Outcome::Done => "done".to_string(),
        Outcome::Log(b) => format!("log {} bytes", b.len()),
        Outcome::Failed(e) => format!(
            "failed {:?} {}",
            e.kind,
            &e.message[..e.message.len().min(80)]
        ),
    }
}
