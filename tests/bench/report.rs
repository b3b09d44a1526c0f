//! `report`: merges the runs into `scale.json` and prints the table.

use super::*;

pub(crate) fn report(out: &Path, strict: bool) -> Result<()> {
    let plan = read_json(&out.join("plan.json"))?;
    let run = read_json(&out.join("run.json"))?;
    let base = read_json(&out.join("baseline.json")).unwrap_or(json!({}));
    let f = |v: &Value| v.as_f64();
    let mib = |v: &Value| f(v).map(|b| b / 1048576.0);
    let coverage = f(&run["time_to_coverage_s"]);
    let baseline_s = f(&base["api_baseline_s"]);
    let ratio = match (coverage, baseline_s) {
        (Some(c), Some(b)) if b > 0.0 => Some(c / b),
        _ => None,
    };
    let digests = f(&plan["digests"]).unwrap_or(0.0);
    let mut scale = json!({
        "pods": plan["pods"],
        "namespaces": plan["namespaces"],
        "digests": plan["digests"],
        "nodes": plan["nodes"],
        "containers": plan["containers"],
        "cis": run["cis"],
        "peak_rss_bytes": run["peak_rss_bytes"],
        "steady_rss_bytes": run["steady_rss_bytes"],
        "cpu_seconds": run["cpu_seconds"],
        "cpu_seconds_to_coverage": run["cpu_seconds_to_coverage"],
        "cluster_cpu_seconds_to_coverage": run["cluster_cpu_seconds_to_coverage"],
        "time_to_coverage_s": run["time_to_coverage_s"],
        "milestones": run["milestones"],
        "scan_jobs": run["scan_jobs"],
        "scans_failed": run["scans_failed"],
        "api_requests_by_verb": run["operator_requests_total"],
        "api_requests_to_coverage": run["operator_requests_to_coverage"],
        "apiserver_requests_run": run["apiserver_requests_run"],
        "quiet_s": run["quiet_s"],
        "quiet_writes": run["quiet_writes"],
        "quiet_apiserver_cis_writes": run["quiet_apiserver_cis_writes"],
        "api_baseline_s": base["api_baseline_s"],
        "api_baseline_create_only_s": base["api_baseline_create_only_s"],
        "api_baseline_ssa_s": base["api_baseline_ssa_s"],
        "api_baseline_objects": base["objects"],
        "api_baseline_jobs": base["api_baseline_jobs"],
        "api_baseline_jobs_in_flight": base["api_baseline_jobs_in_flight"],
        "api_baseline_jobs_s": base["api_baseline_jobs_s"],
        "coverage_to_baseline_ratio": ratio,
        "etcd_bytes_per_cis_median": run["etcd_bytes_per_cis_median"],
        "etcd_bytes_per_cis_p90": run["etcd_bytes_per_cis_p90"],
        "etcd_bytes_per_cis_max": run["etcd_bytes_per_cis_max"],
        "etcd_cis_bytes_total": run["etcd_cis_bytes_total"],
        "etcd_report_values": run["etcd_report_values"],
        "etcd_report_bytes_total": run["etcd_report_bytes_total"],
        "apiserver_bytes_run": run["apiserver_bytes_run"],
        "report_mix": plan["report_mix"],
        "logs_per_fixture": plan["logs_per_fixture"],
        "active_scan_job_limit": run["active_scan_job_limit"],
        "populate_running_s": plan["populate_running_s"],
    });
    scale["pipeline_bound_s"] = json!(pipeline_bound(&base));
    scale["restart"] = run["restart"].clone();
    write_json(&out.join("scale.json"), &scale)?;

    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |x| format!("{x:.1}{unit}"));
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut missed_perf = Vec::new();
    let mut broken = Vec::new();
    let mut check =
        |name: &str, value: String, ok: Option<bool>, target: &str, correctness: bool| {
            let verdict = match ok {
                Some(true) => format!("ok ({target})"),
                Some(false) => {
                    if correctness {
                        broken.push(name.to_string());
                    } else {
                        missed_perf.push(name.to_string());
                    }
                    format!("MISSED ({target})")
                }
                None => String::new(),
            };
            rows.push((name.to_string(), value, verdict));
        };
    check(
        "pods / namespaces / digests",
        format!(
            "{} / {} / {}",
            plan["pods"], plan["namespaces"], plan["digests"]
        ),
        None,
        "",
        false,
    );
    check(
        "containers / CIS",
        format!("{} / {}", plan["containers"], run["cis"]),
        Some(run["cis"] == plan["cis_expected"] && run["cis_with_result"] == plan["cis_expected"]),
        "every CIS exists with a result",
        true,
    );
    let peak = mib(&run["peak_rss_bytes"]);
    check(
        "peak RSS (VmHWM)",
        opt(peak, " MiB"),
        peak.map(|p| p <= 40.0),
        "<= 40 MiB",
        false,
    );
    check(
        "steady RSS (median, quiet period)",
        opt(mib(&run["steady_rss_bytes"]), " MiB"),
        None,
        "",
        false,
    );
    check(
        "CPU seconds (whole run) / to coverage",
        format!(
            "{} / {}",
            opt(f(&run["cpu_seconds"]), " s"),
            opt(f(&run["cpu_seconds_to_coverage"]), " s")
        ),
        None,
        "",
        false,
    );
    check(
        "time to full coverage",
        opt(coverage, " s"),
        coverage.is_none().then_some(false),
        "reached",
        true,
    );
    let ms = &run["milestones"];
    check(
        "  ready / all CIS created / all Jobs created / all scans done",
        format!(
            "{} / {} / {} / {}",
            opt(f(&ms["ready_s"]), " s"),
            opt(f(&ms["all_cis_created_s"]), " s"),
            opt(f(&ms["all_jobs_created_s"]), " s"),
            opt(f(&ms["all_scans_done_s"]), " s")
        ),
        None,
        "",
        false,
    );
    check(
        "API baseline: create + status",
        opt(baseline_s, " s"),
        None,
        "",
        false,
    );
    check(
        "API baseline: create only / SSA + status SSA",
        format!(
            "{} / {}",
            opt(f(&base["api_baseline_create_only_s"]), " s"),
            opt(f(&base["api_baseline_ssa_s"]), " s")
        ),
        None,
        "",
        false,
    );
    if let Some(jobs_s) = f(&base["api_baseline_jobs_s"]) {
        check(
            "API baseline: scan Jobs alone (Jobs / in flight)",
            format!(
                "{jobs_s:.1} s ({} / {})",
                base["api_baseline_jobs"], base["api_baseline_jobs_in_flight"]
            ),
            None,
            "",
            false,
        );
    }
    check(
        "coverage / API baseline (create + status)",
        ratio.map_or("-".into(), |r| format!("{r:.2}x")),
        None,
        "",
        false,
    );
    let bound = pipeline_bound(&base);
    let bound_ratio = coverage.zip(bound).map(|(c, b)| c / b);
    check(
        "coverage / pipeline bound (Jobs alone + create + status)",
        match (bound_ratio, bound) {
            (Some(r), Some(b)) => format!("{r:.2}x (bound {b:.1} s)"),
            _ => "- (JOBS_BASELINE=1 measures the bound)".into(),
        },
        bound_ratio.map(|r| r <= 1.1),
        "<= 1.1x",
        false,
    );
    let jobs = f(&run["scan_jobs"]);
    let failed = f(&run["scans_failed"]).unwrap_or(0.0);
    check(
        "scan Jobs created (failed scans)",
        format!("{} ({failed})", opt(jobs, "")),
        Some(jobs == Some(digests + failed)),
        "= digests + failed scans (each failure is rescanned)",
        true,
    );
    let qw = f(&run["quiet_writes"]);
    check(
        &format!("writes in the quiet period ({} s)", run["quiet_s"]),
        format!(
            "{} (API server CIS writes: {})",
            opt(qw, ""),
            run["quiet_apiserver_cis_writes"]
        ),
        Some(qw == Some(0.0) && f(&run["quiet_apiserver_cis_writes"]) == Some(0.0)),
        "0",
        true,
    );
    let restart = &run["restart"];
    if !restart.is_null() {
        let ready = f(&restart["ready_s"]);
        check(
            "restart on the covered cluster: ready / covered again",
            format!(
                "{} / {}",
                opt(ready, " s"),
                opt(f(&restart["covered_s"]), " s")
            ),
            Some(ready.is_some_and(|r| r <= RESTART_READY_TARGET_S)),
            &format!("ready <= {RESTART_READY_TARGET_S} s"),
            false,
        );
        let (writes, jobs) = (f(&restart["writes"]), f(&restart["jobs_created"]));
        check(
            &format!(
                "restart: writes / Jobs in {} s",
                opt(f(&restart["watched_s"]), "")
            ),
            format!(
                "{} / {} (API server CIS writes: {}; peak RSS {})",
                opt(writes, ""),
                opt(jobs, ""),
                restart["apiserver_cis_writes"],
                opt(mib(&restart["peak_rss_bytes"]), " MiB")
            ),
            Some(
                writes == Some(0.0)
                    && jobs == Some(0.0)
                    && f(&restart["apiserver_cis_writes"]) == Some(0.0)
                    && f(&restart["covered_s"]).is_some(),
            ),
            "0 / 0, covered again",
            true,
        );
    }
    check(
        "etcd bytes per CIS: median / p90 / max",
        format!(
            "{} / {} / {}",
            run["etcd_bytes_per_cis_median"],
            run["etcd_bytes_per_cis_p90"],
            run["etcd_bytes_per_cis_max"]
        ),
        None,
        "",
        false,
    );
    let verbs = run["operator_requests_total"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    check("operator API requests by verb", verbs, None, "", false);
    let mib_of = |v: &Value| f(v).map_or("-".to_string(), |b| format!("{:.1} MiB", b / 1048576.0));
    check(
        "etcd bytes: all CIS (count) / all Reports (count)",
        format!(
            "{} ({}) / {} ({})",
            mib_of(&run["etcd_cis_bytes_total"]),
            run["etcd_cis_values"],
            mib_of(&run["etcd_report_bytes_total"]),
            run["etcd_report_values"]
        ),
        None,
        "",
        false,
    );
    // "request|response resource VERB" → bytes; the counts behind them are the " count" keys.
    let bytes = run["apiserver_bytes_run"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for direction in ["request", "response"] {
        let by_verb = bytes
            .iter()
            .filter(|(k, _)| k.starts_with(direction) && !k.ends_with(" count"))
            .map(|(k, v)| {
                let n = bytes.get(&format!("{k} count")).and_then(Value::as_f64);
                let what = k.trim_start_matches(direction).trim();
                let per = match (f(v), n) {
                    (Some(b), Some(n)) if n > 0.0 => format!(", {:.1} KiB each", b / n / 1024.0),
                    _ => String::new(),
                };
                format!("{what}: {}{per}", mib_of(v))
            })
            .collect::<Vec<_>>()
            .join("; ");
        check(
            &format!("API server {direction} bytes (operator's resources)"),
            by_verb,
            None,
            "",
            false,
        );
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(60);
    println!(
        "\nimage-scanner scale benchmark ({})",
        out.join("scale.json").display()
    );
    for (a, b, c) in &rows {
        println!("  {a:<w0$}  {b:<w1$}  {c}");
    }
    if !broken.is_empty() {
        bail!("correctness checks failed: {broken:?}");
    }
    if strict && !missed_perf.is_empty() {
        bail!("performance targets missed: {missed_perf:?}");
    }
    Ok(())
}

/// Issue 19's pipeline bound: the scan Jobs alone plus the CIS writes alone (create + status),
/// when both baselines were measured.
fn pipeline_bound(base: &Value) -> Option<f64> {
    Some(base["api_baseline_jobs_s"].as_f64()? + base["api_baseline_s"].as_f64()?)
}
