//! Configuration: command-line flags, each bound to the environment variable the Go operator
//! used (flag wins over env), validated into an [`OperatorConfig`].
//!
//! Values are taken as strings by clap and validated here, so that every bad value produces one
//! line naming the flag and its env var (exit code 2), instead of clap's multi-line usage dump.

mod duration;
mod gates;
mod logging;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use regex::Regex;

pub use crate::core::scan_job::TrivyCommand;
pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use gates::{FeatureGates, GateSetting};
pub use logging::{LogConfig, LogFormat};

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
    /// Print the ContainerImageScan CustomResourceDefinition as YAML.
    Crd,
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
    /// Trivy image for the init container.
    pub trivy_image: String,
    /// Java DB image for the second init container, if any.
    pub trivy_java_db_image: Option<String>,
    /// Active scan Job limit; 0 = unlimited.
    pub active_scan_job_limit: u32,
    /// Feature gates.
    pub feature_gates: FeatureGates,
    /// Byte budget of `status.vulnerabilities`.
    pub status_details_max_bytes: usize,
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

fn parse_bool(value: &str, flag: &'static str, env: &'static str) -> Result<bool, ConfigError> {
    // Go's strconv.ParseBool spellings.
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(ConfigError::new(
            flag,
            env,
            format!("{other:?} is not a boolean"),
        )),
    }
}

/// Comma list; surrounding blanks trimmed and empty entries dropped.
pub fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_regex(value: &str, flag: &'static str, env: &'static str) -> Result<Regex, ConfigError> {
    // The Go operator's message starts with "error parsing regexp"; keep it for log searches.
    Regex::new(value).map_err(|e| {
        let detail = e
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        ConfigError::new(
            flag,
            env,
            format!("error parsing regexp {value:?}: {detail}"),
        )
    })
}

fn parse_bind_address(
    value: &str,
    flag: &'static str,
    env: &'static str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let value = value.trim();
    if value == "0" || value.is_empty() {
        return Ok(None);
    }
    // Go accepts ":8080" for all interfaces.
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse().map(Some).map_err(|_| {
        ConfigError::new(
            flag,
            env,
            format!("{value:?} is not an address like :8080 or 127.0.0.1:8080"),
        )
    })
}

fn parse_number<T: std::str::FromStr>(
    value: &str,
    flag: &'static str,
    env: &'static str,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(flag, env, format!("{value:?} is not a valid number")))
}

fn parse_duration_flag(
    value: &str,
    flag: &'static str,
    env: &'static str,
) -> Result<Duration, ConfigError> {
    parse_go_duration(value).map_err(|e| ConfigError::new(flag, env, e.to_string()))
}

fn parse_group_resources(value: &str) -> Result<Vec<GroupResource>, ConfigError> {
    let mut out = Vec::new();
    for entry in parse_list(value) {
        let (resource, group) = entry.split_once('.').unwrap_or((entry.as_str(), ""));
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        if !valid(resource) || !(group.is_empty() || valid(group)) {
            return Err(ConfigError::new(
                "scan-workload-resources",
                "SCAN_WORKLOAD_RESOURCES",
                format!("{entry:?} is not a resource.group such as deployments.apps"),
            ));
        }
        let gr = GroupResource {
            resource: resource.to_string(),
            group: group.to_string(),
        };
        if !out.contains(&gr) {
            out.push(gr);
        }
    }
    Ok(out)
}

fn parse_json_flag<T: serde::de::DeserializeOwned>(
    value: &str,
    flag: &'static str,
    env: &'static str,
) -> Result<Option<T>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(value)
        .map(Some)
        .map_err(|e| ConfigError::new(flag, env, format!("invalid JSON: {e}")))
}

impl OperatorArgs {
    /// Validates the raw flags into an [`OperatorConfig`].
    pub fn validate(&self) -> Result<OperatorConfig, ConfigError> {
        let scan_job_namespace = self.scan_job_namespace.trim().to_string();
        if scan_job_namespace.is_empty() {
            return Err(ConfigError::new(
                "scan-job-namespace",
                "SCAN_JOB_NAMESPACE",
                "is required",
            ));
        }
        let ttl: i32 = parse_number(
            &self.scan_job_ttl_seconds_after_finished,
            "scan-job-ttl-seconds-after-finished",
            "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
        )?;
        if ttl <= 0 {
            return Err(ConfigError::new(
                "scan-job-ttl-seconds-after-finished",
                "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
                format!("must be > 0 so that results can be read, got {ttl}"),
            ));
        }
        let deadline: i64 = parse_number(
            &self.scan_job_active_deadline_seconds,
            "scan-job-active-deadline-seconds",
            "SCAN_JOB_ACTIVE_DEADLINE_SECONDS",
        )?;
        if deadline <= 0 {
            return Err(ConfigError::new(
                "scan-job-active-deadline-seconds",
                "SCAN_JOB_ACTIVE_DEADLINE_SECONDS",
                format!("must be > 0, got {deadline}"),
            ));
        }
        let scan_job_in_workload_namespaces = match self.scan_job_placement.trim() {
            "auto" => true,
            "scan-namespace" => false,
            other => {
                return Err(ConfigError::new(
                    "scan-job-placement",
                    "SCAN_JOB_PLACEMENT",
                    format!("unrecognized placement {other:?} (want auto or scan-namespace)"),
                ));
            }
        };
        let trivy_command = match self.trivy_command.trim() {
            "rootfs" => TrivyCommand::Rootfs,
            "filesystem" => TrivyCommand::Filesystem,
            other => {
                return Err(ConfigError::new(
                    "trivy-command",
                    "TRIVY_COMMAND",
                    format!("unrecognized trivy command {other:?} (want rootfs or filesystem)"),
                ));
            }
        };
        let scan_interval =
            parse_duration_flag(&self.scan_interval, "scan-interval", "SCAN_INTERVAL")?;
        if scan_interval.is_zero() {
            return Err(ConfigError::new(
                "scan-interval",
                "SCAN_INTERVAL",
                "must be greater than 0",
            ));
        }
        let pod_settle_timeout = parse_duration_flag(
            &self.pod_settle_timeout,
            "pod-settle-timeout",
            "POD_SETTLE_TIMEOUT",
        )?;
        let status_details_max_bytes: usize = parse_number(
            &self.status_details_max_bytes,
            "status-details-max-bytes",
            "STATUS_DETAILS_MAX_BYTES",
        )?;
        // etcd's default request limit is 1.5 MiB; a larger budget can only fail.
        if status_details_max_bytes > 1_400_000 {
            return Err(ConfigError::new(
                "status-details-max-bytes",
                "STATUS_DETAILS_MAX_BYTES",
                format!(
                    "{status_details_max_bytes} exceeds what etcd stores in one object (max 1400000)"
                ),
            ));
        }
        let scan_log_max_bytes: usize = parse_number(
            &self.scan_log_max_bytes,
            "scan-log-max-bytes",
            "SCAN_LOG_MAX_BYTES",
        )?;
        if scan_log_max_bytes < 1024 {
            return Err(ConfigError::new(
                "scan-log-max-bytes",
                "SCAN_LOG_MAX_BYTES",
                "must be at least 1024",
            ));
        }
        let report_cache_max_bytes: usize = parse_number(
            &self.report_cache_max_bytes,
            "report-cache-max-bytes",
            "REPORT_CACHE_MAX_BYTES",
        )?;
        let mut skip_reasons: Vec<String> = IMAGE_PULL_WAITING_REASONS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for reason in parse_list(&self.skip_scan_pod_waiting_reasons) {
            if !skip_reasons.contains(&reason) {
                skip_reasons.push(reason);
            }
        }
        let priority_class = self.scan_job_priority_class_name.trim();
        Ok(OperatorConfig {
            metrics_bind_address: parse_bind_address(
                &self.metrics_bind_address,
                "metrics-bind-address",
                "METRICS_BIND_ADDRESS",
            )?,
            health_probe_bind_address: parse_bind_address(
                &self.health_probe_bind_address,
                "health-probe-bind-address",
                "HEALTH_PROBE_BIND_ADDRESS",
            )?,
            leader_elect: parse_bool(&self.leader_elect, "leader-elect", "LEADER_ELECT")?,
            namespaces: parse_list(&self.namespaces),
            cis_metrics_labels: parse_list(&self.cis_metrics_labels),
            scan_interval,
            scan_job_service_account: self.scan_job_service_account.trim().to_string(),
            scan_job_in_workload_namespaces,
            scan_job_namespace,
            scan_job_ttl_seconds_after_finished: ttl,
            scan_job_active_deadline_seconds: deadline,
            scan_workload_resources: parse_group_resources(&self.scan_workload_resources)?,
            namespace_filter: NamespaceFilter {
                // An empty pattern matches everything; as an *exclude* pattern that would exclude
                // every namespace (upstream quirk §19.14), so empty means "exclude nothing".
                exclude: parse_regex(
                    if self.scan_namespace_exclude_regexp.is_empty() {
                        NEVER_MATCHES
                    } else {
                        &self.scan_namespace_exclude_regexp
                    },
                    "scan-namespace-exclude-regexp",
                    "SCAN_NAMESPACE_EXCLUDE_REGEXP",
                )?,
                include: parse_regex(
                    &self.scan_namespace_include_regexp,
                    "scan-namespace-include-regexp",
                    "SCAN_NAMESPACE_INCLUDE_REGEXP",
                )?,
            },
            skip_scan_pod_waiting_reasons: skip_reasons,
            trivy_command,
            trivy_image: self.trivy_image.trim().to_string(),
            trivy_java_db_image: Some(self.trivy_java_db_image.trim())
                .filter(|image| !image.is_empty())
                .map(str::to_string),
            active_scan_job_limit: parse_number(
                &self.active_scan_job_limit,
                "active-scan-job-limit",
                "ACTIVE_SCAN_JOB_LIMIT",
            )?,
            feature_gates: FeatureGates::parse(&self.feature_gates)?,
            status_details_max_bytes,
            scan_log_max_bytes,
            report_cache_max_bytes,
            scan_job_resources: parse_json_flag(
                &self.scan_job_resources,
                "scan-job-resources",
                "SCAN_JOB_RESOURCES",
            )?,
            scan_job_tolerations: parse_json_flag(
                &self.scan_job_tolerations,
                "scan-job-tolerations",
                "SCAN_JOB_TOLERATIONS",
            )?
            .unwrap_or_default(),
            scan_job_priority_class_name: (!priority_class.is_empty())
                .then(|| priority_class.to_string()),
            pod_settle_timeout,
            log: LogConfig::from_args(self)?,
            kubeconfig: self
                .kubeconfig
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
        })
        .and_then(|config| {
            // Booleans that are accepted for compatibility still have to be booleans.
            parse_bool(
                &self.enable_profiling,
                "enable-profiling",
                "ENABLE_PROFILING",
            )?;
            parse_bool(
                &self.reuse_scan_results,
                "reuse-scan-results",
                "REUSE_SCAN_RESULTS",
            )?;
            Ok(config)
        })
    }
}

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
