//! Settings of the engine, derived from the operator configuration by the shell (or chosen by
//! the simulator).

use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;

use crate::crd::Severity;
use crate::notification::SinkSpec;

use crate::scan_job::ScanJobSettings;

/// Default of `--scan-namespace-exclude-regexp` (the Go operator's): system namespaces.
pub const DEFAULT_EXCLUDE_REGEXP: &str = "^(kube-|openshift-).*";

/// Whether a result's vulnerability details are written to `status.vulnerabilities`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusDetails {
    /// Always, also when the Report holds them (gate NoCISStatusVulnerabilities=false).
    Always,
    /// Never; without a Report they are stored nowhere (=true, the Go operator's default).
    Never,
    /// When the CIS's Report for that result was not written (no Reports, or this one could not
    /// be written): the details are stored once (=auto, the default).
    UnlessInReport,
}

/// Everything the engine's decisions depend on besides observations and time.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Namespace of scan Jobs.
    pub scan_namespace: String,
    /// Namespaces matching this are not scanned.
    pub exclude_namespaces: Regex,
    /// Only namespaces matching this are scanned.
    pub include_namespaces: Regex,
    /// Configured workload kinds as (group, kind), resolved through discovery by the shell.
    pub workload_kinds: BTreeSet<(String, String)>,
    /// Waiting reasons that keep a pod from being considered settled.
    pub skip_waiting_reasons: BTreeSet<String>,
    /// Rescan age.
    pub scan_interval: Duration,
    /// A Running pod that never becomes Ready counts as settled after this long.
    pub pod_settle_timeout: Duration,
    /// Maximum active scan Jobs; 0 = unlimited.
    pub active_job_limit: u32,
    /// How scan Jobs are built.
    pub job: ScanJobSettings,
    /// Whether a scan Job may run in a workload namespace with a pod's pull credentials
    /// (`engine::placement`); off: always in the scan namespace.
    pub workload_placement: bool,
    /// Byte budget of `status.vulnerabilities`.
    pub details_max_bytes: usize,
    /// Where the vulnerability details of a result go besides the Report (gate
    /// NoCISStatusVulnerabilities).
    pub status_details: StatusDetails,
    /// Whether an OpenReports `Report` is written with each successful result (gate
    /// PolicyReport, on when the `reports.openreports.io` CRD exists).
    pub write_reports: bool,
    /// Bytes of vulnerability JSON a Report holds at most.
    pub report_max_bytes: usize,
    /// Bytes of vulnerability details all CIS statuses and Reports together keep in etcd at
    /// most (their `detailsBytes`); 0: no cluster-wide bound. Past half of it, each new result
    /// gets less room (`scans::fan_out::cluster_allowance`).
    pub details_total_bytes: usize,
    /// Cap on bytes read from a scan log.
    pub log_max_bytes: usize,
    /// Bytes of parsed reports kept in memory to serve later CIS of the same digest.
    pub report_cache_bytes: usize,
    /// Maximum commands outstanding at once (flow control towards the API server).
    pub max_inflight: usize,
    /// First retry delay after a failed scan; doubles per consecutive failure, capped at the
    /// scan interval.
    pub failed_scan_retry: Duration,
    /// First retry delay after a retryable API error; doubles per attempt.
    pub api_retry_base: Duration,
    /// Cap of the API retry delay.
    pub api_retry_max: Duration,
    /// Delay before a CIS whose only change is its owner list is re-applied, so that pods
    /// starting together cause one write, not one each.
    pub owner_update_delay: Duration,
    /// Findings from this severity up are recorded per result and their changes announced by
    /// Events on the workload and the CIS (`engine::notices`); `None`: neither.
    pub notice_min_severity: Option<Severity>,
    /// A workload is told of changes at most once per this long; changes in between wait and
    /// are told together.
    pub notice_cooldown: Duration,
    /// At least this long between two workloads' announcements, cluster-wide: a database
    /// update that changes every image's findings is told at this pace, not in a burst.
    pub notice_spacing: Duration,
    /// Where announcements are delivered besides Events (`engine::deliveries`); the index is
    /// the sink's number in `Action::Deliver`.
    pub sinks: Vec<SinkSpec>,
}

impl EngineConfig {
    /// Whether pods in `namespace` are scanned.
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        !self.exclude_namespaces.is_match(namespace) && self.include_namespaces.is_match(namespace)
    }

    /// Settings for tests and the simulator: the defaults, with a scan namespace, a trivy
    /// image and a larger report cache (fewer log re-reads to reason about).
    pub fn for_tests(scan_namespace: &str) -> EngineConfig {
        EngineConfig {
            scan_namespace: scan_namespace.to_string(),
            job: ScanJobSettings {
                trivy_image: "ghcr.io/aquasecurity/trivy:0.74.0".to_string(),
                ..ScanJobSettings::default()
            },
            report_cache_bytes: 16 * 1024 * 1024,
            ..EngineConfig::default()
        }
    }
}

impl Default for EngineConfig {
    /// The operator's defaults, the one place they are written for the engine: those of its
    /// flags (the Go operator's where it has the flag) and of what is not configurable. The
    /// shell sets what is configured; the scan namespace has no default.
    fn default() -> EngineConfig {
        EngineConfig {
            scan_namespace: String::new(),
            exclude_namespaces: constant_regex(DEFAULT_EXCLUDE_REGEXP),
            include_namespaces: constant_regex(""),
            workload_kinds: [
                ("apps", "ReplicaSet"),
                ("apps", "Deployment"),
                ("apps", "StatefulSet"),
                ("apps", "DaemonSet"),
                ("batch", "Job"),
                ("batch", "CronJob"),
            ]
            .into_iter()
            .map(|(g, k)| (g.to_string(), k.to_string()))
            .collect(),
            skip_waiting_reasons: ["ErrImagePull", "ImagePullBackOff"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            scan_interval: Duration::from_secs(12 * 3600),
            pod_settle_timeout: Duration::from_secs(300),
            active_job_limit: 8,
            job: ScanJobSettings::default(),
            workload_placement: true,
            details_max_bytes: 262_144,
            status_details: StatusDetails::UnlessInReport,
            write_reports: false,
            report_max_bytes: 262_144,
            details_total_bytes: DEFAULT_DETAILS_TOTAL_BYTES,
            log_max_bytes: 64 * 1024 * 1024,
            report_cache_bytes: 4 * 1024 * 1024,
            max_inflight: 32,
            failed_scan_retry: Duration::from_secs(300),
            api_retry_base: Duration::from_secs(1),
            api_retry_max: Duration::from_secs(300),
            owner_update_delay: Duration::from_secs(1),
            notice_min_severity: Some(Severity::High),
            notice_cooldown: Duration::from_secs(600),
            notice_spacing: Duration::from_secs(2),
            sinks: Vec::new(),
        }
    }
}

/// The default cluster-wide bound on stored details: a quarter of etcd's default 2 GiB quota,
/// which leaves room for the cluster's other objects and etcd's history of revisions.
pub const DEFAULT_DETAILS_TOTAL_BYTES: usize = 512 * 1024 * 1024;

/// Compiles a pattern written in this source file.
fn constant_regex(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("constant patterns compile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_scanned_when_included_and_not_excluded() {
        let mut cfg = EngineConfig::for_tests("scans");
        assert!(cfg.namespace_allowed("team"));
        assert!(!cfg.namespace_allowed("kube-system"));
        cfg.include_namespaces = constant_regex("^team-");
        assert!(cfg.namespace_allowed("team-a"));
        assert!(!cfg.namespace_allowed("other"));
        cfg.exclude_namespaces = constant_regex("^team-b$");
        assert!(!cfg.namespace_allowed("team-b"));
        assert!(cfg.namespace_allowed("team-a"));
    }
}
