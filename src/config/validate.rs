//! Validation of the raw flags into an [`OperatorConfig`]: every bad value is one
//! [`ConfigError`] naming the flag and its env var.

use super::*;

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

/// `--notice-min-severity`: a severity name (any case), or `none` (off).
fn parse_notice_severity(value: &str) -> Result<Option<Severity>, ConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Severity::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(value))
        .map(Some)
        .ok_or_else(|| {
            ConfigError::new(
                "notice-min-severity",
                "NOTICE_MIN_SEVERITY",
                format!("{value:?} is not UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL or none"),
            )
        })
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
        let trivy_binary = self
            .trivy_binary
            .trim()
            .parse::<TrivyBinary>()
            .map_err(|e| ConfigError::new("trivy-binary", "TRIVY_BINARY", e.to_string()))?;
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
            trivy_binary,
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
            details_total_bytes: parse_number(
                &self.details_total_bytes,
                "details-total-bytes",
                "DETAILS_TOTAL_BYTES",
            )?,
            notice_min_severity: parse_notice_severity(&self.notice_min_severity)?,
            notice_cooldown: parse_duration_flag(
                &self.notice_cooldown,
                "notice-cooldown",
                "NOTICE_COOLDOWN",
            )?,
            notice_spacing: parse_duration_flag(
                &self.notice_spacing,
                "notice-spacing",
                "NOTICE_SPACING",
            )?,
            notification_sinks: super::sinks::load(&self.notification_sinks_file)?,
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
