//! `run`: the operator against the populated cluster, until full coverage and a quiet period.

use super::*;

/// The settings of `run` (see the `Run` subcommand's flags).
pub(crate) struct RunSettings {
    pub(crate) quiet: u64,
    pub(crate) job_limit: u32,
    pub(crate) timeout: u64,
    pub(crate) restart_watch: u64,
}

pub(crate) async fn run(
    out: &Path,
    operator: &Path,
    settings: &RunSettings,
    state: &Path,
    extra: &[String],
) -> Result<()> {
    let &RunSettings {
        quiet,
        job_limit,
        timeout,
        restart_watch,
    } = settings;
    let plan = read_json(&out.join("plan.json"))?;
    let want_containers = plan["containers"].as_f64().unwrap_or(0.0);
    let want_cis = plan["cis_expected"].as_u64().unwrap_or(0) as usize;
    let digests = plan["digests"].as_u64().unwrap_or(0);
    let client = client().await?;
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    if !jobs_api
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
    {
        bail!("the scan namespace already holds Jobs: start from a fresh cluster (scale.sh does)");
    }
    let before_run = apiserver_counts(&client).await?;
    let cpu_before = cluster_cpu(state);

    let metrics_port = free_port()?;
    let health_port = free_port()?;
    let log_path = out.join("operator.log");
    let mut args: Vec<String> = vec![
        format!("--scan-job-namespace={SCAN_NAMESPACE}"),
        "--scan-job-service-account=image-scanner-job".into(),
        "--trivy-image=ghcr.io/aquasecurity/trivy:0.74.0".into(),
        "--scan-workload-resources=deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch".into(),
        format!("--active-scan-job-limit={job_limit}"),
        format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
        format!("--health-probe-bind-address=127.0.0.1:{health_port}"),
        "--log-format=json".into(),
        "--log-level=info".into(),
    ];
    args.extend(extra.iter().cloned());
    log(format!(
        "starting {} {}",
        operator.display(),
        args.join(" ")
    ));
    let t0 = Instant::now();
    let mut op = start_operator(operator, &args, &log_path)?;
    let pid = op.child.id();

    // /proc sampler: every 100 ms.
    let samples: Arc<Mutex<Vec<(f64, ProcSample)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let samples = samples.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(s) = proc_sample(pid)
                    && let Ok(mut v) = samples.lock()
                {
                    v.push((t0.elapsed().as_secs_f64(), s));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Milestones from /readyz and /metrics, polled every 500 ms.
    let mut milestones: BTreeMap<&str, f64> = BTreeMap::new();
    let mut timeline: Vec<Value> = Vec::new();
    let deadline = t0 + Duration::from_secs(timeout);
    let mut last_log = Instant::now();
    let mut last_parsed = Vec::new();
    let coverage_s = loop {
        if let Ok(Some(status)) = op.child.try_wait() {
            bail!("the operator exited ({status}); see {}", log_path.display());
        }
        let t = t0.elapsed().as_secs_f64();
        if !milestones.contains_key("ready_s")
            && http_get(health_port, "/readyz").is_some_and(|b| b.starts_with("ok"))
        {
            milestones.insert("ready_s", t);
        }
        if let Some(text) = http_get(metrics_port, "/metrics") {
            let parsed = parse_metrics(&text);
            let containers = metric(&parsed, "image_scanner_running_containers").unwrap_or(0.0);
            let ratio = metric(&parsed, "image_scanner_coverage_ratio").unwrap_or(0.0);
            let spec = metric(&parsed, "image_scanner_spec_writes_total").unwrap_or(0.0);
            let status = metric(&parsed, "image_scanner_status_writes_total").unwrap_or(0.0);
            let jobs = metric(&parsed, "image_scanner_scan_jobs_created_total").unwrap_or(0.0);
            let scans = parsed
                .iter()
                .filter(|(n, _, _)| n == "image_scanner_scans_total")
                .map(|(_, _, v)| v)
                .sum::<f64>();
            timeline.push(json!({"t": t, "containers": containers, "coverage": ratio,
                "spec_writes": spec, "status_writes": status, "jobs": jobs, "scans": scans}));
            let mut mark = |name: &'static str, cond: bool| {
                if cond && !milestones.contains_key(name) {
                    milestones.insert(name, t);
                }
            };
            mark("first_cis_s", spec >= 1.0);
            mark("all_cis_created_s", spec >= want_cis as f64);
            mark("first_job_s", jobs >= 1.0);
            mark("all_jobs_created_s", jobs >= digests as f64);
            mark("all_scans_done_s", scans >= digests as f64);
            last_parsed = parsed;
            if containers >= want_containers && ratio >= 1.0 {
                break Some(t);
            }
            if last_log.elapsed() > Duration::from_secs(10) {
                log(format!(
                    "t={t:.0}s coverage {ratio:.3} of {containers} containers; CIS writes: {spec} spec, {status} status; {jobs} jobs, {scans} scans done"
                ));
                last_log = Instant::now();
            }
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    match coverage_s {
        Some(t) => log(format!("full coverage after {t:.1} s")),
        None => log(format!("NO full coverage after {timeout} s")),
    }
    let cpu_at_coverage = samples.lock().ok().and_then(|v| v.last().map(|s| s.1.cpu));
    let cluster_cpu_to_coverage = delta(&cluster_cpu(state), &cpu_before);
    log(format!(
        "CPU seconds of the control plane until then: {cluster_cpu_to_coverage:?}"
    ));
    let at_coverage = requests_by_verb(&last_parsed);

    // Check through the API: every CIS exists and shows a successful scan.
    let all_cis: Vec<ContainerImageScan> = list_populated(&client).await?;
    let with_result = all_cis
        .iter()
        .filter(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.last_successful_scan_time.is_some()
                    && s.last_scan_time == s.last_successful_scan_time
            })
        })
        .count();
    let api_jobs = list_all(
        &jobs_api,
        &ListParams::default().labels("app.kubernetes.io/managed-by=image-scanner"),
    )
    .await?
    .len();
    log(format!(
        "API: {} CIS (expected {want_cis}), {with_result} with a result; {api_jobs} scan Jobs",
        all_cis.len()
    ));

    // Quiet period: nothing changes in the cluster and nothing is due.
    let api_quiet_before = apiserver_counts(&client).await?.requests;
    let before = requests_by_verb(&parse_metrics(
        &http_get(metrics_port, "/metrics").unwrap_or_default(),
    ));
    let quiet_start = t0.elapsed().as_secs_f64();
    log(format!("quiet period: {quiet} s"));
    let mut waited = 0;
    while waited < quiet {
        let step = (quiet - waited).min(30);
        tokio::time::sleep(Duration::from_secs(step)).await;
        waited += step;
        if let Ok(Some(status)) = op.child.try_wait() {
            bail!("the operator exited ({status}) in the quiet period");
        }
    }
    let final_text = http_get(metrics_port, "/metrics").unwrap_or_default();
    let final_parsed = parse_metrics(&final_text);
    let after = requests_by_verb(&final_parsed);
    let after_run = apiserver_counts(&client).await?;
    let quiet_delta = delta(&after, &before);
    let quiet_writes = (writes(&after) - writes(&before)).max(0.0);
    let api_quiet = delta(&after_run.requests, &api_quiet_before);
    log(format!(
        "quiet period: {quiet_writes} operator writes; operator requests {quiet_delta:?}; API server CIS/Job requests {api_quiet:?}"
    ));

    // Stop the sampler, then the operator.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let last = proc_sample(pid);
    op.terminate();
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let peak_sampled = samples.iter().map(|s| s.1.rss).max().unwrap_or(0);
    let hwm = last
        .map(|s| s.hwm)
        .unwrap_or(0)
        .max(samples.iter().map(|s| s.1.hwm).max().unwrap_or(0));
    let mut quiet_rss: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= quiet_start)
        .map(|(_, s)| s.rss as f64)
        .collect();
    let steady_rss = median(&mut quiet_rss);
    let cpu = last
        .map(|s| s.cpu)
        .or(samples.last().map(|s| s.1.cpu))
        .unwrap_or(0.0);

    let etcd_sizes = |prefix: &str| {
        let mut sizes = etcd_value_sizes(state, prefix).unwrap_or_else(|e| {
            log(format!("etcd sizes under {prefix} not measured: {e}"));
            Vec::new()
        });
        sizes.sort_by(|a, b| a.total_cmp(b));
        sizes
    };
    let sizes = etcd_sizes(ETCD_CIS_PREFIX);
    let report_sizes = etcd_sizes(ETCD_REPORT_PREFIX);
    let etcd_median = percentile(&sizes, 0.5);
    let cis_total = sum(sizes.iter());
    let report_total = sum(report_sizes.iter());
    log(format!(
        "etcd: {} CIS values, median {etcd_median} bytes, p90 {}, max {}, total {cis_total}; {} Reports, total {report_total} bytes",
        sizes.len(),
        percentile(&sizes, 0.9),
        percentile(&sizes, 1.0),
        report_sizes.len(),
    ));
    let api_bytes = delta(&after_run.bytes, &before_run.bytes);
    log(format!(
        "API server bytes for the operator's resources: {api_bytes:?}"
    ));
    let restart = if restart_watch > 0 {
        restart::restart(
            out,
            operator,
            &args,
            want_containers,
            restart_watch,
            timeout.min(300),
        )
        .await?
    } else {
        Value::Null
    };
    let jobs_metric = metric(&final_parsed, "image_scanner_scan_jobs_created_total").unwrap_or(0.0);
    // A failed scan is rescanned after its back-off: a Job more for that digest.
    let scans_failed: f64 = final_parsed
        .iter()
        .filter(|(n, l, _)| {
            n == "image_scanner_scans_total" && label(l, "outcome") == Some("failed")
        })
        .map(|(_, _, v)| v)
        .sum();

    // A small CSV of the run for plots: t, rss, cpu.
    let mut csv = String::from("t_s,rss_bytes,cpu_seconds\n");
    for (t, s) in samples.iter().step_by(5) {
        csv.push_str(&format!("{t:.1},{},{:.2}\n", s.rss, s.cpu));
    }
    std::fs::write(out.join("samples.csv"), csv)?;
    write_json(&out.join("timeline.json"), &Value::Array(timeline))?;

    write_json(
        &out.join("run.json"),
        &json!({
            "time_to_coverage_s": coverage_s,
            "milestones": milestones,
            "peak_rss_bytes": hwm,
            "peak_rss_sampled_bytes": peak_sampled,
            "steady_rss_bytes": steady_rss,
            "cpu_seconds": cpu,
            "cpu_seconds_to_coverage": cpu_at_coverage,
            "cluster_cpu_seconds_to_coverage": cluster_cpu_to_coverage,
            "scan_jobs": jobs_metric,
            "scans_failed": scans_failed,
            "scan_jobs_api": api_jobs,
            "cis": all_cis.len(),
            "cis_with_result": with_result,
            "cis_expected": want_cis,
            "quiet_s": quiet,
            "quiet_writes": quiet_writes,
            "quiet_operator_requests": quiet_delta,
            "quiet_apiserver_cis_writes": cis_writes_in(&api_quiet),
            "quiet_apiserver_requests": api_quiet,
            "operator_requests_to_coverage": at_coverage,
            "operator_requests_total": after,
            "apiserver_requests_run": delta(&after_run.requests, &before_run.requests),
            "etcd_bytes_per_cis_median": etcd_median,
            "etcd_bytes_per_cis_p90": percentile(&sizes, 0.9),
            "etcd_bytes_per_cis_max": percentile(&sizes, 1.0),
            "etcd_cis_values": sizes.len(),
            "etcd_cis_bytes_total": cis_total,
            "etcd_report_values": report_sizes.len(),
            "etcd_report_bytes_total": report_total,
            "etcd_bytes_per_report_max": percentile(&report_sizes, 1.0),
            "apiserver_bytes_run": api_bytes,
            "active_scan_job_limit": job_limit,
            "operator_args": args,
            "restart": restart,
        }),
    )
}
