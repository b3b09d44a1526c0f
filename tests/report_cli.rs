//! `report` subcommand, called as a function (the binary does not dispatch it yet).

use std::io::Cursor;
use std::path::PathBuf;

use clap::Parser;
use image_scanner::crd::Severity;
use image_scanner::report_cli::{FormatArg, ReportArgs, ReportCliError, read_capped, run};
use serde_json::Value;

const STAS: &str = "tests/fixtures/upstream/internal/controller/stas/testdata";

fn path(rel: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), rel].iter().collect()
}

fn args(file: PathBuf) -> ReportArgs {
    ReportArgs {
        format: FormatArg::Auto,
        min_severity: None,
        ignore_unfixed: false,
        max_bytes: None,
        file,
    }
}

fn run_json(a: &ReportArgs, stdin: &[u8]) -> Value {
    let mut out = Vec::new();
    run(a, &mut Cursor::new(stdin.to_vec()), &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn long_log() -> PathBuf {
    path(&format!(
        "{STAS}/scan-job-successful-long/scan-job-pod.log.json"
    ))
}

#[test]
fn long_log_with_a_budget_keeps_the_exact_summary() {
    let unbounded = run_json(&args(long_log()), b"");
    let bounded = run_json(
        &ReportArgs {
            max_bytes: Some(1_000_000),
            ..args(long_log())
        },
        b"",
    );
    let summary = &bounded["vulnerabilitySummary"];
    assert_eq!(summary, &unbounded["vulnerabilitySummary"]);
    assert_eq!(
        summary["severityCount"],
        serde_json::json!({"CRITICAL": 653, "HIGH": 2606, "MEDIUM": 3881, "LOW": 3178, "UNKNOWN": 77})
    );
    assert_eq!(
        (
            summary["fixedCount"].as_i64(),
            summary["unfixedCount"].as_i64()
        ),
        (Some(5267), Some(5128))
    );

    let details = serde_json::to_vec(&bounded["vulnerabilities"]).unwrap();
    assert!(details.len() <= 1_000_000, "{} bytes", details.len());
    let kept = bounded["vulnerabilities"].as_array().unwrap().len();
    let truncated = &bounded["vulnerabilitiesTruncated"];
    assert_eq!(truncated["budgetBytes"], 1_000_000);
    assert_eq!(
        truncated["droppedCount"].as_u64().unwrap() as usize + kept,
        10_395
    );
    // In the status's compact JSON, HIGH+CRITICAL fits 1 MB (the Report's results, with
    // more keys per item, did not upstream, §10.3), so exactly the lower severities go.
    assert_eq!(
        truncated["droppedSeverities"],
        serde_json::json!(["UNKNOWN", "LOW", "MEDIUM"])
    );
    assert_eq!(kept, 2606 + 653);

    assert_eq!(
        unbounded["vulnerabilities"].as_array().unwrap().len(),
        10_395
    );
    assert!(unbounded.get("vulnerabilitiesTruncated").is_none());
    assert_eq!(
        unbounded.as_object().unwrap().len(),
        2,
        "nothing else is printed"
    );
}

#[test]
fn filters_apply_before_the_summary() {
    let a = ReportArgs {
        min_severity: Some(Severity::High),
        ignore_unfixed: true,
        ..args(long_log())
    };
    let out = run_json(&a, b"");
    let counts = &out["vulnerabilitySummary"]["severityCount"];
    assert_eq!(counts.as_object().unwrap().len(), 2);
    let kept = out["vulnerabilities"].as_array().unwrap();
    assert!(kept.iter().all(|v| v["fixedVersion"].is_string()));
    let total = counts["HIGH"].as_u64().unwrap() + counts["CRITICAL"].as_u64().unwrap();
    assert_eq!(total as usize, kept.len());
    assert_eq!(out["vulnerabilitySummary"]["unfixedCount"], 0);
}

#[test]
fn reads_stdin_and_parses_arguments() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        report: ReportArgs,
    }
    let cli = Cli::try_parse_from([
        "report",
        "--format",
        "grype",
        "--min-severity",
        "high",
        "--max-bytes",
        "10",
        "-",
    ])
    .unwrap();
    assert_eq!(cli.report.format, FormatArg::Grype);
    assert_eq!(cli.report.min_severity, Some(Severity::High));
    assert!(Cli::try_parse_from(["report", "--min-severity", "severe", "-"]).is_err());
    assert!(Cli::try_parse_from(["report", "--format", "xml", "-"]).is_err());

    let grype = std::fs::read(path(
        "tests/fixtures/grype/grype-head_synthetic_image_2matches.json",
    ))
    .unwrap();
    let out = run_json(&args("-".into()), &grype);
    assert_eq!(out["vulnerabilitySummary"]["fixedCount"], 1);
    // Sorted: LOW before CRITICAL.
    assert_eq!(out["vulnerabilities"][0]["severity"], "LOW");
}

#[test]
fn bad_input_is_one_clear_line() {
    let cases = [
        (
            path(&format!(
                "{STAS}/scan-job-invalid-json/scan-job-pod.log.invalid.json"
            )),
            "unexpected end of input",
        ),
        (
            path(&format!("{STAS}/scan-job-failed/failed-scan-job-pod.log")),
            "no JSON report found",
        ),
        (path("tests/fixtures/does-not-exist.json"), "cannot read"),
    ];
    for (file, want) in cases {
        let err = run(&args(file), &mut Cursor::new(Vec::new()), &mut Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(want), "{text}");
        assert!(!text.contains('\n') && text.len() < 2048, "{text}");
    }
    let err = run(
        &args("-".into()),
        &mut Cursor::new(Vec::new()),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "-: unexpected end of input: the scan report is empty"
    );
}

#[test]
fn input_is_capped() {
    let err = read_capped(&mut Cursor::new(vec![b' '; 11]), 10, "-").unwrap_err();
    assert!(matches!(err, ReportCliError::TooLarge { limit: 10, .. }));
    assert_eq!(
        err.to_string(),
        "- is larger than 10 bytes; refusing to read it"
    );
    assert_eq!(
        read_capped(&mut Cursor::new(vec![b' '; 10]), 10, "-")
            .unwrap()
            .len(),
        10
    );
}
