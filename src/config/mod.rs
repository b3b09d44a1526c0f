//! Configuration: command-line flags, each bound to the environment variable the Go operator
//! used (flag wins over env), validated into an [`OperatorConfig`].
//!
//! Values are taken as strings by clap and validated here, so that every bad value produces one
//! line naming the flag and its env var (exit code 2), instead of clap's multi-line usage dump.

mod duration;
mod gates;
mod logging;
pub mod sinks;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use regex::Regex;

use crate::crd::Severity;

pub use crate::core::scan_job::{TrivyBinary, TrivyCommand};
pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use gates::{FeatureGates, GateSetting};
pub use logging::{LogConfig, LogFormat};
pub use validate::parse_list;

/// A pattern no string matches (an empty exclude pattern means "exclude nothing").
const NEVER_MATCHES: &str = r"[^\s\S]";

pub use crate::core::engine::DEFAULT_EXCLUDE_REGEXP;

/// The command line of `image-scanner-operator`.
#[derive(Debug, Parser)]
#[command(
    name = "image-scanner-operator",
    version,
    args_override_self = true,
    about = "Scans the container images running in a Kubernetes cluster for vulnerabilities.",
    long_about = "Scans the container images running in a Kubernetes cluster for vulnerabilities.\n\n\
        Without a subcommand the operator runs. Every flag can also be set through the environment \
        variable shown next to it; a flag given on the command line wins over the environment."
)]
pub struct Cli {
    /// What to do; without a subcommand the operator runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Operator flags.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a CustomResourceDefinition of the operator as YAML: `containerimagescans` (the
    /// default), `vulnerabilityexceptions` or `clustervulnerabilityexceptions`.
    Crd {
        /// The plural name of the resource.
        #[arg(default_value = "containerimagescans", value_parser = ["containerimagescans", "vulnerabilityexceptions", "clustervulnerabilityexceptions"])]
        plural: String,
    },
    /// Parse a scanner output file (or `-` for stdin) and print, as JSON, the status fragment
    /// the operator would write for it. Exit 1 with one line on bad input.
    Report(crate::report_cli::ReportArgs),
    /// Validate the configuration (the operator's flags, given after this word, and the
    /// environment) and print it; exit 2 when invalid.
    CheckConfig(Box<OperatorArgs>),
}

/// Raw operator flags as given; see [`OperatorArgs::validate`].
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Address of the Prometheus endpoint (`/metrics`); `0` disables it.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// Address of the health endpoints (`/healthz`, `/readyz`); `0` disables them.
    #[arg(long, env = "HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Elect a leader with a Lease so that only one replica writes.
    #[arg(
        long,
        env = "LEADER_ELECT",
        default_value = "false",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub leader_elect: String,
    /// Accepted for compatibility; Go's pprof endpoint has no Rust equivalent and is not served.
    #[arg(
        long,
        env = "ENABLE_PROFILING",
        default_value = "false",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub enable_profiling: String,
    /// Comma list of namespaces to watch (default: all). The scan-job namespace is always watched.
    #[arg(long, env = "NAMESPACES", default_value = "", value_name = "LIST")]
    pub namespaces: String,
    /// Comma list of CIS label keys to add as labels to the CIS metrics.
    #[arg(
        long,
        env = "CIS_METRICS_LABELS",
        default_value = "",
        value_name = "LIST"
    )]
    pub cis_metrics_labels: String,
    /// Rescan an image when its last scan is older than this (Go duration, e.g. 12h).
    #[arg(
        long,
        env = "SCAN_INTERVAL",
        default_value = "12h",
        value_name = "DURATION"
    )]
    pub scan_interval: String,
    /// Namespace where scan Jobs run (required).
    #[arg(
        long,
        env = "SCAN_JOB_NAMESPACE",
        default_value = "",
        value_name = "NAMESPACE"
    )]
    pub scan_job_namespace: String,
    /// Service account of scan Job pods in the scan namespace (in a workload namespace they
    /// run as the workload pod's).
    #[arg(long, env = "SCAN_JOB_SERVICE_ACCOUNT", default_value = "default")]
    pub scan_job_service_account: String,
    /// Where scan Jobs run: `auto` (an image the workload pulls with imagePullSecrets is
    /// scanned in a namespace that runs it, with that pod's imagePullSecrets names and service
    /// account, as kubelets with KubeletEnsureSecretPulledImages require; others in the scan
    /// namespace) or `scan-namespace` (always there).
    #[arg(long, env = "SCAN_JOB_PLACEMENT", default_value = "auto")]
    pub scan_job_placement: String,
    /// Seconds a finished scan Job is kept (must be > 0 so results can be read).
    #[arg(
        long,
        env = "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
        default_value = "7200",
        value_name = "SECONDS"
    )]
    pub scan_job_ttl_seconds_after_finished: String,
    /// Comma list of workload resources (`resource.group`, `pods` for core) whose objects own
    /// pods, e.g. `deployments.apps,cronjobs.batch`.
    #[arg(
        long,
        env = "SCAN_WORKLOAD_RESOURCES",
        default_value = "",
        value_name = "LIST"
    )]
    pub scan_workload_resources: String,
    /// Namespaces matching this regexp are not scanned.
    #[arg(
        long,
        env = "SCAN_NAMESPACE_EXCLUDE_REGEXP",
        default_value = DEFAULT_EXCLUDE_REGEXP,
        value_name = "REGEXP"
    )]
    pub scan_namespace_exclude_regexp: String,
    /// Only namespaces matching this regexp are scanned (empty: all).
    #[arg(
        long,
        env = "SCAN_NAMESPACE_INCLUDE_REGEXP",
        default_value = "",
        value_name = "REGEXP"
    )]
    pub scan_namespace_include_regexp: String,
    /// Comma list of container waiting reasons that make a pod skipped, in addition to
    /// ErrImagePull and ImagePullBackOff.
    #[arg(
        long,
        env = "SKIP_SCAN_POD_WAITING_REASONS",
        default_value = "",
        value_name = "LIST"
    )]
    pub skip_scan_pod_waiting_reasons: String,
    /// Trivy subcommand used to scan: `rootfs` (installed packages and binaries, as `trivy
    /// image` reports them) or `filesystem` (lock files instead: misses Go binaries, JARs and
    /// node_modules).
    #[arg(long, env = "TRIVY_COMMAND", default_value = "rootfs")]
    pub trivy_command: String,
    /// Image providing /usr/local/bin/trivy, copied into each scan pod (pin it by digest).
    #[arg(long, env = "TRIVY_IMAGE", default_value = "")]
    pub trivy_image: String,
    /// How trivy gets into each scan pod: `copy` (an init container copies the binary into an
    /// emptyDir; any cluster) or `image-volume` (TRIVY_IMAGE mounted as an image volume, no
    /// copy; Kubernetes 1.33+ with the ImageVolume feature, containerd 2.1+ or CRI-O 1.31+).
    #[arg(long, env = "TRIVY_BINARY", default_value = "copy")]
    pub trivy_binary: String,
    /// Image with trivy's Java DB in /java-db (trivy-java.db, metadata.json) and a `cp`,
    /// copied into each scan pod so that images with JARs scan without downloading the Java
    /// DB (docs/install.md); empty: trivy downloads it in every scan pod that finds a JAR.
    #[arg(long, env = "TRIVY_JAVA_DB_IMAGE", default_value = "")]
    pub trivy_java_db_image: String,
    /// Maximum number of active scan Jobs; 0 means no limit.
    #[arg(
        long,
        env = "ACTIVE_SCAN_JOB_LIMIT",
        default_value = "8",
        value_name = "N"
    )]
    pub active_scan_job_limit: String,
    /// Accepted for compatibility: results are always shared between scans of the same digest.
    #[arg(
        long,
        env = "REUSE_SCAN_RESULTS",
        default_value = "false",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub reuse_scan_results: String,
    /// Feature gates, `Name=value,...`: PolicyReport (true|false|auto, default auto),
    /// NoCISStatusVulnerabilities (true|false|auto, default auto).
    #[arg(long, env = "FEATURE_GATES", default_value = "", value_name = "GATES")]
    pub feature_gates: String,
    /// Byte budget for `status.vulnerabilities` of one CIS; lowest severities are dropped first.
    #[arg(
        long,
        env = "STATUS_DETAILS_MAX_BYTES",
        default_value = "262144",
        value_name = "BYTES"
    )]
    pub status_details_max_bytes: String,
    /// Byte budget for the vulnerability details of all CIS statuses and Reports together
    /// (their `status.detailsBytes`); past half of it each new result gets less room, lowest
    /// severities dropped first. 0: no cluster-wide bound.
    #[arg(
        long,
        env = "DETAILS_TOTAL_BYTES",
        default_value = "536870912",
        value_name = "BYTES"
    )]
    pub details_total_bytes: String,
    /// Findings from this severity up (UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL) are recorded per
    /// result, and what a new result changes (new, fixable, resolved; a scan that starts
    /// failing) is told by Events on the workload and the CIS; `none` turns both off.
    #[arg(
        long,
        env = "NOTICE_MIN_SEVERITY",
        default_value = "HIGH",
        value_name = "SEVERITY"
    )]
    pub notice_min_severity: String,
    /// A workload is told of changes at most once per this long (Go duration); changes in
    /// between are told together.
    #[arg(
        long,
        env = "NOTICE_COOLDOWN",
        default_value = "10m",
        value_name = "DURATION"
    )]
    pub notice_cooldown: String,
    /// At least this long between two workloads' change Events, cluster-wide (Go duration): a
    /// vulnerability database update that changes many images is told at this pace.
    #[arg(
        long,
        env = "NOTICE_SPACING",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub notice_spacing: String,
    /// A YAML file of sinks that change notices are also delivered to (HTTPS webhooks:
    /// CloudEvents, Slack, Alertmanager; docs/notices.md); empty: Events only.
    #[arg(
        long,
        env = "NOTIFICATION_SINKS_FILE",
        default_value = "",
        value_name = "PATH"
    )]
    pub notification_sinks_file: String,
    /// Maximum bytes read from a scan pod's log; larger logs fail the scan with a clear message.
    #[arg(
        long,
        env = "SCAN_LOG_MAX_BYTES",
        default_value = "67108864",
        value_name = "BYTES"
    )]
    pub scan_log_max_bytes: String,
    /// Memory budget for parsed scan reports kept to give later CIS of an already scanned digest
    /// their details; beyond it the least recently used are dropped and re-read from the scan
    /// Job's log when needed (0 disables the cache).
    #[arg(
        long,
        env = "REPORT_CACHE_MAX_BYTES",
        default_value = "4194304",
        value_name = "BYTES"
    )]
    pub report_cache_max_bytes: String,
    /// Seconds a scan Job may run before Kubernetes stops it.
    #[arg(
        long,
        env = "SCAN_JOB_ACTIVE_DEADLINE_SECONDS",
        default_value = "3600",
        value_name = "SECONDS"
    )]
    pub scan_job_active_deadline_seconds: String,
    /// Resources of the scan container, as JSON (`{"requests":{"cpu":"100m"},"limits":{...}}`).
    #[arg(
        long,
        env = "SCAN_JOB_RESOURCES",
        default_value = "",
        value_name = "JSON"
    )]
    pub scan_job_resources: String,
    /// Tolerations of scan pods, as a JSON list.
    #[arg(
        long,
        env = "SCAN_JOB_TOLERATIONS",
        default_value = "",
        value_name = "JSON"
    )]
    pub scan_job_tolerations: String,
    /// Priority class of scan pods.
    #[arg(long, env = "SCAN_JOB_PRIORITY_CLASS_NAME", default_value = "")]
    pub scan_job_priority_class_name: String,
    /// A Running pod that never becomes Ready is scanned anyway after this long (Go duration).
    #[arg(
        long,
        env = "POD_SETTLE_TIMEOUT",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub pod_settle_timeout: String,
    /// Log format: `json` or `console`. The Go operator's `ZAP_ENCODER` is honoured too.
    #[arg(long, env = "LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log level or filter (`info`, `debug`, `image_scanner=debug,kube=info`). The Go operator's
    /// `ZAP_LOG_LEVEL` is honoured too.
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Upstream name of --log-format.
    #[arg(long, env = "ZAP_ENCODER", hide = true)]
    pub zap_encoder: Option<String>,
    /// Upstream name of --log-level (a level name or an integer verbosity).
    #[arg(long, env = "ZAP_LOG_LEVEL", hide = true)]
    pub zap_log_level: Option<String>,
    /// Accepted for compatibility with upstream ConfigMaps; timestamps are always RFC 3339.
    #[arg(long, env = "ZAP_TIME_ENCODING", hide = true)]
    pub zap_time_encoding: Option<String>,
    /// Accepted for compatibility; `true` selects console logs at debug level.
    #[arg(long, env = "ZAP_DEVEL", hide = true)]
    pub zap_devel: Option<String>,
    /// Accepted for compatibility; ignored.
    #[arg(long, env = "ZAP_STACKTRACE_LEVEL", hide = true)]
    pub zap_stacktrace_level: Option<String>,
    /// Kubeconfig file to use out of cluster, as controller-runtime's flag: it wins over
    /// `KUBECONFIG`, which wins over the in-cluster service account, then `~/.kube/config`.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// A bad configuration value: renders as one line naming the flag and its env var.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: --{flag} (env {env}): {problem}")]
pub struct ConfigError {
    /// Flag name without dashes.
    pub flag: &'static str,
    /// Environment variable name.
    pub env: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    fn new(flag: &'static str, env: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            flag,
            env,
            problem: problem.into(),
        }
    }
}

/// A workload kind given as `resource.group` (the group is empty for the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupResource {
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    /// API group, e.g. `apps`; empty for core.
    pub group: String,
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Namespace include/exclude rules (RE2-style, unanchored search like Go's `MatchString`).
#[derive(Debug, Clone)]
pub struct NamespaceFilter {
    /// Namespaces matching this are skipped.
    pub exclude: Regex,
    /// Only namespaces matching this are scanned.
    pub include: Regex,
}

impl NamespaceFilter {
    /// Whether pods in `namespace` are scanned.
    pub fn allows(&self, namespace: &str) -> bool {
        !self.exclude.is_match(namespace) && self.include.is_match(namespace)
    }
}

/// Validated configuration of the running operator.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Metrics endpoint address; `None` disables it.
    pub metrics_bind_address: Option<SocketAddr>,
    /// Health endpoint address; `None` disables it.
    pub health_probe_bind_address: Option<SocketAddr>,
    /// Whether to run leader election.
    pub leader_elect: bool,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// CIS label keys exported as metric labels.
    pub cis_metrics_labels: Vec<String>,
    /// Rescan interval.
    pub scan_interval: Duration,
    /// Namespace of scan Jobs.
    pub scan_job_namespace: String,
    /// Service account of scan pods.
    pub scan_job_service_account: String,
    /// Whether scan Jobs may run in workload namespaces (`SCAN_JOB_PLACEMENT=auto`).
    pub scan_job_in_workload_namespaces: bool,
    /// TTL of finished scan Jobs, seconds (> 0).
    pub scan_job_ttl_seconds_after_finished: i32,
    /// Active deadline of scan Jobs, seconds (> 0).
    pub scan_job_active_deadline_seconds: i64,
    /// Configured workload kinds.
    pub scan_workload_resources: Vec<GroupResource>,
    /// Namespace filter.
    pub namespace_filter: NamespaceFilter,
    /// Waiting reasons that make a pod skipped (always includes the image-pull ones).
    pub skip_scan_pod_waiting_reasons: Vec<String>,
    /// Trivy subcommand.
    pub trivy_command: TrivyCommand,
    /// Trivy image for the init container or the image volume.
    pub trivy_image: String,
    /// How trivy gets into the scan pods.
    pub trivy_binary: TrivyBinary,
    /// Java DB image for the second init container, if any.
    pub trivy_java_db_image: Option<String>,
    /// Active scan Job limit; 0 = unlimited.
    pub active_scan_job_limit: u32,
    /// Feature gates.
    pub feature_gates: FeatureGates,
    /// Byte budget of `status.vulnerabilities`.
    pub status_details_max_bytes: usize,
    /// Byte budget of the details of all CIS and Reports together; 0: none.
    pub details_total_bytes: usize,
    /// Threshold of change notices; `None`: off.
    pub notice_min_severity: Option<Severity>,
    /// Per-workload cooldown of change notices.
    pub notice_cooldown: Duration,
    /// Cluster-wide spacing of change notices.
    pub notice_spacing: Duration,
    /// Where change notices are delivered besides Events.
    pub notification_sinks: Vec<sinks::SinkConfig>,
    /// Cap on bytes read from one scan log.
    pub scan_log_max_bytes: usize,
    /// Budget of the parsed-report cache.
    pub report_cache_max_bytes: usize,
    /// Scan container resources (`None`: upstream defaults).
    pub scan_job_resources: Option<ResourceRequirements>,
    /// Scan pod tolerations.
    pub scan_job_tolerations: Vec<Toleration>,
    /// Scan pod priority class.
    pub scan_job_priority_class_name: Option<String>,
    /// Running-but-never-Ready pods are scanned after this long.
    pub pod_settle_timeout: Duration,
    /// Logging.
    pub log: LogConfig,
    /// `--kubeconfig`, when given (it must name a readable file).
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// Waiting reasons that always make a pod skipped.
pub const IMAGE_PULL_WAITING_REASONS: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];

/// Every flag with its env var, in `--help` order; the README's table is checked against it.
pub fn flag_env_table() -> Vec<(String, String, String, String)> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_long().is_some())
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().to_string();
            let default = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join(",");
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some((format!("--{}", a.get_long()?), env, default, help))
        })
        .collect()
}

#[cfg(test)]
mod tests;
