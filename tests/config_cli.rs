//! Configuration through the real binary: environment variables bind to their flags, a flag
//! wins over its variable, `--help` names every variable, and bad values exit 2 with one line.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_image-scanner-operator");

/// Every upstream variable (spec §13.2) with a non-default value and how `check-config` shows it.
const ENV: &[(&str, &str, &str)] = &[
    ("METRICS_BIND_ADDRESS", "127.0.0.1:9090", "127.0.0.1:9090"),
    (
        "HEALTH_PROBE_BIND_ADDRESS",
        "127.0.0.1:9091",
        "127.0.0.1:9091",
    ),
    ("LEADER_ELECT", "true", "leader_elect: true"),
    ("ENABLE_PROFILING", "true", "leader_elect"),
    ("NAMESPACES", "team-a,team-b", "\"team-b\""),
    (
        "CIS_METRICS_LABELS",
        "app.kubernetes.io/name",
        "\"app.kubernetes.io/name\"",
    ),
    ("SCAN_INTERVAL", "90m", "scan_interval: 5400s"),
    ("SCAN_JOB_NAMESPACE", "scans-from-env", "\"scans-from-env\""),
    ("SCAN_JOB_SERVICE_ACCOUNT", "scanner-sa", "\"scanner-sa\""),
    (
        "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
        "600",
        "scan_job_ttl_seconds_after_finished: 600",
    ),
    (
        "SCAN_WORKLOAD_RESOURCES",
        "deployments.apps,jobs.batch",
        "resource: \"jobs\"",
    ),
    ("SCAN_NAMESPACE_EXCLUDE_REGEXP", "^skip-", "^skip-"),
    ("SCAN_NAMESPACE_INCLUDE_REGEXP", "^team-", "^team-"),
    (
        "SKIP_SCAN_POD_WAITING_REASONS",
        "CrashLoopBackOff",
        "\"CrashLoopBackOff\"",
    ),
    ("TRIVY_COMMAND", "filesystem", "Filesystem"),
    (
        "TRIVY_IMAGE",
        "registry.example/trivy@sha256:abc",
        "registry.example/trivy@sha256:abc",
    ),
    (
        "TRIVY_JAVA_DB_IMAGE",
        "registry.example/trivy-java-db:1@sha256:abc",
        "\"registry.example/trivy-java-db:1@sha256:abc\"",
    ),
    ("ACTIVE_SCAN_JOB_LIMIT", "3", "active_scan_job_limit: 3"),
    ("REUSE_SCAN_RESULTS", "true", "scan_job_namespace"),
];

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

#[test]
fn every_variable_binds_to_its_flag() {
    let env: Vec<(&str, &str)> = ENV.iter().map(|(k, v, _)| (*k, *v)).collect();
    let out = run(&["check-config"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (var, _, shown) in ENV {
        assert!(text.contains(shown), "{var}: expected {shown:?} in\n{text}");
    }
}

#[test]
fn a_flag_wins_over_its_variable() {
    let out = run(
        &[
            "check-config",
            "--scan-job-namespace=from-flag",
            "--scan-interval=2h",
        ],
        &[("SCAN_JOB_NAMESPACE", "from-env"), ("SCAN_INTERVAL", "90m")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("\"from-flag\"") && !text.contains("from-env"),
        "{text}"
    );
    assert!(text.contains("scan_interval: 7200s"), "{text}");
}

#[test]
fn zap_variables_of_upstream_configmaps_still_work() {
    let out = run(
        &["check-config"],
        &[
            ("SCAN_JOB_NAMESPACE", "x"),
            ("ZAP_ENCODER", "console"),
            ("ZAP_LOG_LEVEL", "debug"),
            ("ZAP_TIME_ENCODING", "iso8601"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("format: Console") && text.contains("filter: \"debug\""),
        "{text}"
    );
}

#[test]
fn help_lists_every_variable() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (var, _, _) in ENV {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "--help does not name {var}"
        );
    }
    // The upstream HELP=true variable prints the help too.
    let out = run(&[], &[("HELP", "true")]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SCAN_JOB_NAMESPACE")
    );
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_flag_and_variable() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[], "--scan-job-namespace (env SCAN_JOB_NAMESPACE)"),
        (
            &[
                "--scan-job-namespace=x",
                "--scan-namespace-exclude-regexp=[",
            ],
            &[],
            "SCAN_NAMESPACE_EXCLUDE_REGEXP",
        ),
        (
            &["--scan-job-namespace=x", "--trivy-command=foo"],
            &[],
            "TRIVY_COMMAND",
        ),
        (
            &["--scan-job-namespace=x"],
            &[("SCAN_JOB_TTL_SECONDS_AFTER_FINISHED", "0")],
            "SCAN_JOB_TTL_SECONDS_AFTER_FINISHED",
        ),
        (
            &["--scan-job-namespace=x", "--no-such-flag"],
            &[],
            "--no-such-flag",
        ),
    ];
    for (args, env, needle) in cases {
        // Without a subcommand the operator would start; a bad configuration must stop it first.
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should name {needle}"
        );
    }
}

#[test]
fn kubeconfig_flag_wins_over_the_variable_and_a_bad_one_stops_start_up_clearly() {
    let out = run(
        &[
            "--scan-job-namespace=x",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
            "--kubeconfig=/nonexistent/flag-kubeconfig",
        ],
        &[("KUBECONFIG", "/nonexistent/env-kubeconfig")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--kubeconfig /nonexistent/flag-kubeconfig")
            && !stderr.contains("env-kubeconfig"),
        "{stderr}"
    );
}
