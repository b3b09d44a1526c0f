use super::*;
use clap::Parser;

fn parse(args: &[&str]) -> Result<OperatorConfig, ConfigError> {
    let mut argv = vec!["image-scanner-operator"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .expect("flags parse")
        .operator
        .validate()
}

fn error_of(args: &[&str]) -> ConfigError {
    parse(args).expect_err("configuration must be rejected")
}

/// Every flag of the Go operator (spec §13.2) with its env var and default.
const UPSTREAM_FLAGS: &[(&str, &str, &str)] = &[
    ("--metrics-bind-address", "METRICS_BIND_ADDRESS", ":8080"),
    (
        "--health-probe-bind-address",
        "HEALTH_PROBE_BIND_ADDRESS",
        ":8081",
    ),
    ("--leader-elect", "LEADER_ELECT", "false"),
    ("--enable-profiling", "ENABLE_PROFILING", "false"),
    ("--namespaces", "NAMESPACES", ""),
    ("--cis-metrics-labels", "CIS_METRICS_LABELS", ""),
    ("--scan-interval", "SCAN_INTERVAL", "12h"),
    ("--scan-job-namespace", "SCAN_JOB_NAMESPACE", ""),
    (
        "--scan-job-service-account",
        "SCAN_JOB_SERVICE_ACCOUNT",
        "default",
    ),
    (
        "--scan-job-ttl-seconds-after-finished",
        "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
        "7200",
    ),
    ("--scan-workload-resources", "SCAN_WORKLOAD_RESOURCES", ""),
    (
        "--scan-namespace-exclude-regexp",
        "SCAN_NAMESPACE_EXCLUDE_REGEXP",
        "^(kube-|openshift-).*",
    ),
    (
        "--scan-namespace-include-regexp",
        "SCAN_NAMESPACE_INCLUDE_REGEXP",
        "",
    ),
    (
        "--skip-scan-pod-waiting-reasons",
        "SKIP_SCAN_POD_WAITING_REASONS",
        "",
    ),
    ("--trivy-command", "TRIVY_COMMAND", "rootfs"),
    ("--trivy-image", "TRIVY_IMAGE", ""),
    ("--active-scan-job-limit", "ACTIVE_SCAN_JOB_LIMIT", "8"),
    ("--reuse-scan-results", "REUSE_SCAN_RESULTS", "false"),
];

#[test]
fn every_upstream_flag_has_its_env_var_and_default() {
    let table = flag_env_table();
    for (flag, env, default) in UPSTREAM_FLAGS {
        let row = table
            .iter()
            .find(|(f, ..)| f == flag)
            .unwrap_or_else(|| panic!("{flag} is missing"));
        assert_eq!(row.1, *env, "env var of {flag}");
        assert_eq!(row.2, *default, "default of {flag}");
    }
}

#[test]
fn defaults_validate_to_upstream_values() {
    let c = parse(&["--scan-job-namespace=image-scanner"]).unwrap();
    assert_eq!(
        c.metrics_bind_address,
        Some("0.0.0.0:8080".parse().unwrap())
    );
    assert_eq!(
        c.health_probe_bind_address,
        Some("0.0.0.0:8081".parse().unwrap())
    );
    assert!(!c.leader_elect);
    assert!(c.namespaces.is_empty());
    assert!(c.cis_metrics_labels.is_empty());
    assert_eq!(c.scan_interval, Duration::from_secs(12 * 3600));
    assert_eq!(c.scan_job_namespace, "image-scanner");
    assert_eq!(c.scan_job_service_account, "default");
    assert_eq!(c.scan_job_ttl_seconds_after_finished, 7200);
    assert_eq!(c.scan_job_active_deadline_seconds, 3600);
    assert!(c.scan_workload_resources.is_empty());
    assert!(c.namespace_filter.exclude.is_match("kube-system"));
    assert!(c.namespace_filter.exclude.is_match("openshift-monitoring"));
    assert!(!c.namespace_filter.exclude.is_match("default"));
    assert!(c.namespace_filter.allows("default"));
    assert!(!c.namespace_filter.allows("kube-public"));
    assert_eq!(
        c.skip_scan_pod_waiting_reasons,
        ["ErrImagePull", "ImagePullBackOff"]
    );
    assert_eq!(c.trivy_command, TrivyCommand::Rootfs);
    assert_eq!(c.trivy_image, "");
    assert_eq!(c.active_scan_job_limit, 8);
    assert_eq!(c.feature_gates, FeatureGates::default());
    assert_eq!(c.feature_gates.policy_report, GateSetting::Auto);
    assert_eq!(
        c.feature_gates.no_cis_status_vulnerabilities,
        GateSetting::Auto
    );
    assert_eq!(c.status_details_max_bytes, 262_144);
    assert_eq!(c.details_total_bytes, 512 * 1024 * 1024);
    assert_eq!(
        c.details_total_bytes,
        crate::core::engine::DEFAULT_DETAILS_TOTAL_BYTES,
        "the flag's default is the engine's"
    );
    assert_eq!(c.scan_log_max_bytes, 64 * 1024 * 1024);
    assert_eq!(c.report_cache_max_bytes, 4 * 1024 * 1024);
    let engine = crate::core::engine::EngineConfig::default();
    assert_eq!(
        (c.notice_min_severity, c.notice_cooldown, c.notice_spacing),
        (
            engine.notice_min_severity,
            engine.notice_cooldown,
            engine.notice_spacing
        ),
        "the notice flags' defaults are the engine's"
    );
    assert!(c.scan_job_resources.is_none());
    assert!(c.scan_job_tolerations.is_empty());
    assert!(c.scan_job_priority_class_name.is_none());
    assert_eq!(c.pod_settle_timeout, Duration::from_secs(300));
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Json,
            filter: "info".into()
        }
    );
}

#[test]
fn lists_durations_and_kinds_parse() {
    let c = parse(&[
        "--scan-job-namespace=ns",
        "--namespaces=a,b, c,",
        "--scan-interval=90m",
        "--scan-workload-resources=deployments.apps,pods,cronjobs.batch,deployments.apps",
        "--skip-scan-pod-waiting-reasons=CrashLoopBackOff,ErrImagePull",
        "--cis-metrics-labels=app.kubernetes.io/name",
        "--trivy-command=filesystem",
        "--metrics-bind-address=0",
        "--health-probe-bind-address=127.0.0.1:9000",
        "--leader-elect=true",
        "--scan-namespace-exclude-regexp=^$",
        "--scan-namespace-include-regexp=^team-",
        "--feature-gates=PolicyReport=false,NoCISStatusVulnerabilities=true",
        "--scan-job-tolerations=[{\"key\":\"dedicated\",\"operator\":\"Exists\"}]",
        "--scan-job-resources={\"limits\":{\"memory\":\"1Gi\"}}",
        "--scan-job-priority-class-name=low",
    ])
    .unwrap();
    assert_eq!(c.namespaces, ["a", "b", "c"]);
    assert_eq!(c.scan_interval, Duration::from_secs(5400));
    let kinds: Vec<String> = c
        .scan_workload_resources
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(kinds, ["deployments.apps", "pods", "cronjobs.batch"]);
    assert_eq!(
        c.skip_scan_pod_waiting_reasons,
        ["ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff"]
    );
    assert_eq!(c.cis_metrics_labels, ["app.kubernetes.io/name"]);
    assert_eq!(c.trivy_command, TrivyCommand::Filesystem);
    assert_eq!(c.metrics_bind_address, None);
    assert_eq!(
        c.health_probe_bind_address,
        Some("127.0.0.1:9000".parse().unwrap())
    );
    assert!(c.leader_elect);
    // `^$` disables exclusion (the upstream unit test's value).
    assert!(!c.namespace_filter.allows("kube-system"));
    assert!(c.namespace_filter.allows("team-a"));
    assert!(!c.namespace_filter.exclude.is_match("kube-system"));
    assert_eq!(c.feature_gates.policy_report, GateSetting::Off);
    assert_eq!(
        c.feature_gates.no_cis_status_vulnerabilities,
        GateSetting::On
    );
    assert_eq!(c.scan_job_tolerations.len(), 1);
    assert!(
        c.scan_job_resources
            .unwrap()
            .limits
            .unwrap()
            .contains_key("memory")
    );
    assert_eq!(c.scan_job_priority_class_name.as_deref(), Some("low"));
}

#[test]
fn boolean_flags_work_without_a_value_like_go_flags() {
    // The Deployment passes `--leader-elect` alone, as the Go operator's manifests do.
    let c = parse(&["--scan-job-namespace=x", "--leader-elect"]).unwrap();
    assert!(c.leader_elect);
    let c = parse(&["--scan-job-namespace=x", "--leader-elect=false"]).unwrap();
    assert!(!c.leader_elect);
    let c = parse(&[
        "--scan-job-namespace=x",
        "--reuse-scan-results",
        "--enable-profiling",
    ])
    .unwrap();
    assert!(!c.leader_elect);
}

#[test]
fn a_flag_given_twice_takes_the_last_value() {
    let c = parse(&["--scan-job-namespace=a", "--scan-job-namespace=b"]).unwrap();
    assert_eq!(c.scan_job_namespace, "b");
}

#[test]
fn an_empty_exclude_pattern_excludes_nothing() {
    // Upstream quirk §19.14: an empty pattern matched (and so excluded) every namespace.
    let c = parse(&["--scan-job-namespace=x", "--scan-namespace-exclude-regexp="]).unwrap();
    assert!(c.namespace_filter.allows("default"));
    assert!(c.namespace_filter.allows("kube-system"));
    assert!(!c.namespace_filter.exclude.is_match(""));
}

#[test]
fn missing_scan_job_namespace_names_flag_and_env() {
    let e = error_of(&[]);
    assert_eq!(
        e.to_string(),
        "invalid configuration: --scan-job-namespace (env SCAN_JOB_NAMESPACE): is required"
    );
}

#[test]
fn bad_regexp_is_reported_like_go() {
    let e = error_of(&[
        "--scan-job-namespace=x",
        "--scan-namespace-exclude-regexp=[",
    ]);
    let line = e.to_string();
    assert!(line.contains("--scan-namespace-exclude-regexp (env SCAN_NAMESPACE_EXCLUDE_REGEXP)"));
    assert!(line.contains("error parsing regexp"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
    let e = error_of(&[
        "--scan-job-namespace=x",
        "--scan-namespace-include-regexp=(a",
    ]);
    assert_eq!(e.env, "SCAN_NAMESPACE_INCLUDE_REGEXP");
}

#[test]
fn unknown_trivy_command_is_rejected() {
    let e = error_of(&["--scan-job-namespace=x", "--trivy-command=foo"]);
    assert_eq!(e.flag, "trivy-command");
    assert_eq!(e.env, "TRIVY_COMMAND");
    assert!(e.problem.contains("unrecognized trivy command"));
}

#[test]
fn trivy_binary_is_copy_unless_image_volume_is_asked_for() {
    let c = parse(&["--scan-job-namespace=x"]).expect("valid");
    assert_eq!(c.trivy_binary, TrivyBinary::Copy);
    let c = parse(&["--scan-job-namespace=x", "--trivy-binary=image-volume"]).expect("valid");
    assert_eq!(c.trivy_binary, TrivyBinary::ImageVolume);
    let e = error_of(&["--scan-job-namespace=x", "--trivy-binary=volume"]);
    assert_eq!((e.flag, e.env), ("trivy-binary", "TRIVY_BINARY"));
    assert!(
        e.problem.contains("expected copy or image-volume"),
        "{}",
        e.problem
    );
}

#[test]
fn ttl_must_be_positive() {
    for ttl in ["0", "-5"] {
        let arg = format!("--scan-job-ttl-seconds-after-finished={ttl}");
        let e = error_of(&["--scan-job-namespace=x", &arg]);
        assert_eq!(e.env, "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED", "{ttl}");
    }
    let e = error_of(&[
        "--scan-job-namespace=x",
        "--scan-job-ttl-seconds-after-finished=soon",
    ]);
    assert!(e.problem.contains("not a valid number"));
}

#[test]
fn notices_take_a_severity_in_any_case_or_none() {
    for (value, expected) in [
        ("critical", Some(crate::crd::Severity::Critical)),
        ("LOW", Some(crate::crd::Severity::Low)),
        ("none", None),
    ] {
        let arg = format!("--notice-min-severity={value}");
        let c = parse(&["--scan-job-namespace=x", &arg]).expect("valid");
        assert_eq!(c.notice_min_severity, expected, "{value}");
    }
}

#[test]
fn other_bad_values_name_their_flag() {
    let cases: &[(&str, &str)] = &[
        ("--scan-interval=12", "SCAN_INTERVAL"),
        ("--scan-interval=0", "SCAN_INTERVAL"),
        ("--scan-interval=-1h", "SCAN_INTERVAL"),
        ("--leader-elect=yes", "LEADER_ELECT"),
        ("--enable-profiling=maybe", "ENABLE_PROFILING"),
        ("--reuse-scan-results=2", "REUSE_SCAN_RESULTS"),
        ("--active-scan-job-limit=-1", "ACTIVE_SCAN_JOB_LIMIT"),
        ("--metrics-bind-address=localhost", "METRICS_BIND_ADDRESS"),
        (
            "--scan-workload-resources=Deployments.apps",
            "SCAN_WORKLOAD_RESOURCES",
        ),
        ("--feature-gates=Foo=true", "FEATURE_GATES"),
        ("--feature-gates=PolicyReport", "FEATURE_GATES"),
        (
            "--feature-gates=NoCISStatusVulnerabilities=maybe",
            "FEATURE_GATES",
        ),
        (
            "--status-details-max-bytes=5000000",
            "STATUS_DETAILS_MAX_BYTES",
        ),
        ("--details-total-bytes=512Mi", "DETAILS_TOTAL_BYTES"),
        ("--scan-log-max-bytes=10", "SCAN_LOG_MAX_BYTES"),
        ("--report-cache-max-bytes=-1", "REPORT_CACHE_MAX_BYTES"),
        ("--scan-job-tolerations=[{", "SCAN_JOB_TOLERATIONS"),
        (
            "--scan-job-active-deadline-seconds=0",
            "SCAN_JOB_ACTIVE_DEADLINE_SECONDS",
        ),
        ("--log-format=xml", "LOG_FORMAT"),
        ("--log-level=loud[", "LOG_LEVEL"),
        ("--pod-settle-timeout=soon", "POD_SETTLE_TIMEOUT"),
        ("--notice-min-severity=SEVERE", "NOTICE_MIN_SEVERITY"),
        ("--notice-cooldown=10", "NOTICE_COOLDOWN"),
        ("--notice-spacing=-2s", "NOTICE_SPACING"),
    ];
    for (arg, env) in cases {
        let e = error_of(&["--scan-job-namespace=x", arg]);
        assert_eq!(e.env, *env, "{arg}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn zap_settings_are_honoured_and_ours_win() {
    let c = parse(&[
        "--scan-job-namespace=x",
        "--zap-encoder=console",
        "--zap-log-level=debug",
    ])
    .unwrap();
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Console,
            filter: "debug".into()
        }
    );
    let c = parse(&["--scan-job-namespace=x", "--zap-log-level=2"]).unwrap();
    assert_eq!(c.log.filter, "trace");
    let c = parse(&[
        "--scan-job-namespace=x",
        "--zap-encoder=console",
        "--log-format=json",
        "--zap-log-level=debug",
        "--log-level=warn",
    ])
    .unwrap();
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Json,
            filter: "warn".into()
        }
    );
    let c = parse(&[
        "--scan-job-namespace=x",
        "--log-level=image_scanner=debug,kube=info",
    ])
    .unwrap();
    assert_eq!(c.log.filter, "image_scanner=debug,kube=info");
    let e = error_of(&["--scan-job-namespace=x", "--zap-log-level=chatty"]);
    assert_eq!(e.env, "ZAP_LOG_LEVEL");
}

#[test]
fn both_gates_take_true_false_or_auto_and_all_beta_forces_them() {
    use GateSetting::{Auto, Off, On};
    let cases = [
        ("", (Auto, Auto)),
        ("NoCISStatusVulnerabilities=false", (Auto, Off)),
        ("NoCISStatusVulnerabilities=TRUE", (Auto, On)),
        (
            "PolicyReport=false,NoCISStatusVulnerabilities=auto",
            (Off, Auto),
        ),
        ("AllBeta=false", (Off, Off)),
        ("AllBeta=true,NoCISStatusVulnerabilities=auto", (On, Auto)),
    ];
    for (value, (policy_report, no_details)) in cases {
        let gates = FeatureGates::parse(value).unwrap();
        assert_eq!(
            (gates.policy_report, gates.no_cis_status_vulnerabilities),
            (policy_report, no_details),
            "{value:?}"
        );
    }
}

/// The flags' defaults and the engine's defaults are written in two places (clap, the core);
/// an operator started without flags must run with exactly the engine's.
#[test]
fn the_flag_defaults_give_the_engine_defaults() {
    use crate::core::engine::EngineConfig;
    let config = parse(&["--scan-job-namespace=scans"]).unwrap();
    let defaults = EngineConfig::default();
    let kinds: Vec<(String, String)> = defaults.workload_kinds.iter().cloned().collect();
    let from_flags = crate::shell::runtime::engine_config(&config, &kinds, false);
    let shown = |c: &EngineConfig| {
        format!(
            "{:?}",
            (
                c.exclude_namespaces.as_str(),
                c.include_namespaces.as_str(),
                &c.skip_waiting_reasons,
                c.scan_interval,
                c.pod_settle_timeout,
                (c.active_job_limit, c.workload_placement, c.max_inflight),
                (c.details_max_bytes, c.status_details, c.report_max_bytes),
                (c.log_max_bytes, c.report_cache_bytes),
                (c.failed_scan_retry, c.api_retry_base, c.api_retry_max),
                c.owner_update_delay,
            )
        )
    };
    assert_eq!(shown(&from_flags), shown(&defaults));
    assert_eq!(from_flags.scan_namespace, "scans");
}
