//! The restart phase of `run`: the operator is stopped on the fully covered cluster and started
//! again. A restart must cost nothing but the lists: no CIS written, no Job created, and the
//! results it finds in the statuses counted (coverage 1 again) within seconds.

use super::*;

/// How long after a restart the operator must be ready (issue 19).
pub(crate) const RESTART_READY_TARGET_S: f64 = 15.0;

/// Starts `operator` with `args`, its output to `log_path`.
pub(crate) fn start_operator(
    operator: &Path,
    args: &[String],
    log_path: &Path,
) -> Result<OperatorProcess> {
    let log_file = std::fs::File::create(log_path)?;
    let child = Command::new(operator)
        .args(args)
        // Only what it needs: the benchmark's own variables (NAMESPACES, ...) are operator
        // settings too.
        .env_clear()
        .env(
            "KUBECONFIG",
            std::env::var_os("KUBECONFIG").unwrap_or_default(),
        )
        .env("POD_NAMESPACE", SCAN_NAMESPACE)
        .env("POD_NAME", "bench-operator")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", operator.display()))?;
    Ok(OperatorProcess { child })
}

/// `args` with the metrics and health addresses moved to `metrics_port` and `health_port`.
fn with_ports(args: &[String], metrics_port: u16, health_port: u16) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with("--metrics-bind-address=") {
                format!("--metrics-bind-address=127.0.0.1:{metrics_port}")
            } else if a.starts_with("--health-probe-bind-address=") {
                format!("--health-probe-bind-address=127.0.0.1:{health_port}")
            } else {
                a.clone()
            }
        })
        .collect()
}

/// Restarts the operator on the covered cluster (the first process has exited) and watches it
/// for `watch` seconds after it counts every container covered again (or `timeout` seconds,
/// whichever comes first). Returns what `run.json` records under `restart`.
pub(crate) async fn restart(
    out: &Path,
    operator: &Path,
    args: &[String],
    want_containers: f64,
    watch: u64,
    timeout: u64,
) -> Result<Value> {
    let client = client().await?;
    let api_before = apiserver_counts(&client).await?.requests;
    let (metrics_port, health_port) = (free_port()?, free_port()?);
    let args = with_ports(args, metrics_port, health_port);
    let log_path = out.join("operator-restart.log");
    log("restart: the operator starts again on the covered cluster");
    let t0 = Instant::now();
    let mut op = start_operator(operator, &args, &log_path)?;
    let pid = op.child.id();
    let (mut ready_s, mut covered_s) = (None, None);
    let mut parsed = Vec::new();
    let mut hwm = 0;
    loop {
        if let Ok(Some(status)) = op.child.try_wait() {
            bail!(
                "the restarted operator exited ({status}); see {}",
                log_path.display()
            );
        }
        let t = t0.elapsed().as_secs_f64();
        hwm = proc_sample(pid).map_or(hwm, |s| s.hwm.max(hwm));
        if ready_s.is_none()
            && http_get(health_port, "/readyz").is_some_and(|b| b.starts_with("ok"))
        {
            ready_s = Some(t);
        }
        if let Some(text) = http_get(metrics_port, "/metrics") {
            parsed = parse_metrics(&text);
            let containers = metric(&parsed, "image_scanner_running_containers").unwrap_or(0.0);
            let ratio = metric(&parsed, "image_scanner_coverage_ratio").unwrap_or(0.0);
            if covered_s.is_none() && containers >= want_containers && ratio >= 1.0 {
                covered_s = Some(t);
                log(format!("restart: ready and covered after {t:.1} s"));
            }
        }
        let until = covered_s.map_or(timeout as f64, |c| c + watch as f64);
        if t >= until.min(timeout as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests = requests_by_verb(&parsed);
    let jobs = metric(&parsed, "image_scanner_scan_jobs_created_total").unwrap_or(0.0);
    hwm = proc_sample(pid).map_or(hwm, |s| s.hwm.max(hwm));
    let watched_s = t0.elapsed().as_secs_f64();
    op.terminate();
    let api = delta(&apiserver_counts(&client).await?.requests, &api_before);
    let result = json!({
        "ready_s": ready_s,
        "covered_s": covered_s,
        "watched_s": watched_s,
        "writes": writes(&requests),
        "jobs_created": jobs,
        "operator_requests": requests,
        "apiserver_cis_writes": cis_writes_in(&api),
        "apiserver_requests": api,
        "peak_rss_bytes": hwm,
    });
    log(format!("restart: {result}"));
    Ok(result)
}
