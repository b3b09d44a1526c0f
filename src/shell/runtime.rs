//! The operator process: wires watches, the engine task, command execution, leader election and
//! the HTTP endpoints, and shuts them down in order on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::discovery::resolve_workload_kinds;
use super::errors::ShellError;
use super::execute::{Executor, now};
use super::http::{self, EngineQuery, Health};
use super::leader;
use super::metrics::{METRICS_CHUNK_BYTES, RequestCounters, render_metrics_chunk};
use super::sinks::Sinks;
use super::sync_gate::SyncGate;
use super::watch::{WatchPlan, run_watches};
use crate::config::{GateSetting, OperatorConfig};
use crate::core::engine::{Engine, EngineConfig, StatusDetails};
use crate::core::port::{Action, Command, Observation, Outcome};
use crate::core::scan_job::ScanJobSettings;

/// Capacity of the observation channel between watches and the engine.
const OBSERVATION_BUFFER: usize = 1024;
/// How long in-flight commands may finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// Builds the engine settings from the operator configuration and the discovered kinds.
pub fn engine_config(
    config: &OperatorConfig,
    kinds: &[(String, String)],
    write_reports: bool,
) -> EngineConfig {
    let defaults = ScanJobSettings::default();
    let job = ScanJobSettings {
        service_account_name: config.scan_job_service_account.clone(),
        ttl_seconds_after_finished: config.scan_job_ttl_seconds_after_finished,
        active_deadline_seconds: config.scan_job_active_deadline_seconds,
        trivy_image: config.trivy_image.clone(),
        java_db_image: config.trivy_java_db_image.clone(),
        trivy_command: config.trivy_command,
        trivy_binary: config.trivy_binary,
        scan_resources: config
            .scan_job_resources
            .clone()
            .unwrap_or(defaults.scan_resources.clone()),
        tolerations: config.scan_job_tolerations.clone(),
        priority_class_name: config.scan_job_priority_class_name.clone(),
        ..defaults
    };
    EngineConfig {
        scan_namespace: config.scan_job_namespace.clone(),
        exclude_namespaces: config.namespace_filter.exclude.clone(),
        include_namespaces: config.namespace_filter.include.clone(),
        workload_kinds: kinds.iter().cloned().collect(),
        skip_waiting_reasons: config
            .skip_scan_pod_waiting_reasons
            .iter()
            .cloned()
            .collect(),
        scan_interval: config.scan_interval,
        pod_settle_timeout: config.pod_settle_timeout,
        active_job_limit: config.active_scan_job_limit,
        job,
        workload_placement: config.scan_job_in_workload_namespaces,
        details_max_bytes: config.status_details_max_bytes,
        status_details: match config.feature_gates.no_cis_status_vulnerabilities {
            GateSetting::On => StatusDetails::Never,
            GateSetting::Off => StatusDetails::Always,
            GateSetting::Auto => StatusDetails::UnlessInReport,
        },
        write_reports,
        // The same budget, so moving the details between the status and the Report changes
        // where they are, not how many.
        report_max_bytes: config.status_details_max_bytes,
        details_total_bytes: config.details_total_bytes,
        log_max_bytes: config.scan_log_max_bytes,
        report_cache_bytes: config.report_cache_max_bytes,
        notice_min_severity: config.notice_min_severity,
        notice_cooldown: config.notice_cooldown,
        notice_spacing: config.notice_spacing,
        sinks: config.notification_sinks.iter().map(|s| s.spec()).collect(),
        // Flow control, retry and back-off timings: the engine's own defaults.
        ..EngineConfig::default()
    }
}

/// The client configuration in controller-runtime's order: `--kubeconfig`, `KUBECONFIG`, the
/// in-cluster service account, `~/.kube/config` (kube's own `infer` tries the last before
/// the in-cluster one).
async fn client_config(kubeconfig: Option<&std::path::Path>) -> Result<kube::Config, ShellError> {
    let failed = |what: String| ShellError::ClientConfig(what);
    if let Some(path) = kubeconfig {
        let file = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| failed(format!("--kubeconfig {}: {e}", path.display())))?;
        return kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .map_err(|e| failed(format!("--kubeconfig {}: {e}", path.display())));
    }
    if std::env::var_os("KUBECONFIG").is_none()
        && let Ok(in_cluster) = kube::Config::incluster()
    {
        return Ok(in_cluster);
    }
    kube::Config::infer()
        .await
        .map_err(|e| failed(e.to_string()))
}

/// Runs the operator until a termination signal.
pub async fn run(config: OperatorConfig) -> Result<(), ShellError> {
    let mut kube_config = client_config(config.kubeconfig.as_deref()).await?;
    // The engine decides about retries (with growing back-off); the client must not hold a
    // command for minutes retrying on its own.
    kube_config.default_retry = false;
    let client =
        Client::try_from(kube_config).map_err(|e| ShellError::ClientConfig(e.to_string()))?;

    ensure_crd(&client).await?;
    let kinds = resolve_workload_kinds(&client, &config.scan_workload_resources).await?;
    let kind_pairs: Vec<(String, String)> = kinds
        .iter()
        .map(|k| (k.resource.group.clone(), k.resource.kind.clone()))
        .collect();
    tracing::info!(kinds = ?kind_pairs, "workload kinds resolved");
    let write_reports = policy_reports_enabled(&client, config.feature_gates.policy_report).await?;
    let exceptions = exceptions_served(&client).await?;

    let cancel = CancellationToken::new();
    let plan = WatchPlan {
        namespaces: (!config.namespaces.is_empty()).then(|| config.namespaces.clone()),
        scan_namespace: config.scan_job_namespace.clone(),
        kinds,
        exceptions,
    };
    let (gate, synced) = SyncGate::new(plan.gated_streams());
    let (tx, rx) = mpsc::channel(OBSERVATION_BUFFER);
    let (query_tx, query_rx) = mpsc::channel(16);
    let counters = Arc::new(RequestCounters::default());
    let health = Health::new(synced.clone());

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run_watches(
        client.clone(),
        plan,
        gate,
        tx.clone(),
        cancel.clone(),
    ));
    if let Some(address) = config.metrics_bind_address {
        let listener = http::bind(address).await?;
        tasks.spawn(http::serve_metrics(
            listener,
            query_tx.clone(),
            cancel.clone(),
        ));
    }
    if let Some(address) = config.health_probe_bind_address {
        let listener = http::bind(address).await?;
        tasks.spawn(http::serve_health(listener, health.clone(), cancel.clone()));
    }
    let engine = Engine::new(engine_config(&config, &kind_pairs, write_reports));
    let executor = Executor::new(
        client.clone(),
        &config.scan_job_namespace,
        leader::identity(),
    )
    .with_sinks(Sinks::new(&config.notification_sinks)?);
    let engine_task = tokio::spawn(drive(
        engine,
        executor,
        rx,
        tx.clone(),
        query_rx,
        counters.clone(),
        config.cis_metrics_labels.clone(),
        cancel.clone(),
    ));
    // Only now, with the engine taking observations: the watches may have filled the channel
    // already (its 1,024 places are a few seconds of a large cluster's first lists), and a
    // start that waits for a place before the engine runs waits for ever (found by `make
    // chaos` at 2,000 pods: the election's first word did, and both replicas stood still).
    let lease = if config.leader_elect {
        let namespace = leader::lease_namespace(&config);
        Some(leader::start(client.clone(), &namespace, tx.clone()).await?)
    } else {
        let _ = tx.send(Observation::Leadership { leading: true }).await;
        None
    };

    shutdown_signal().await;
    tracing::info!("shutting down: no new work; finishing commands in flight");
    cancel.cancel();
    let _ = engine_task.await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    tasks.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Gate PolicyReport: `auto` writes Reports when the OpenReports CRD is served; `true` requires
/// it.
async fn policy_reports_enabled(client: &Client, gate: GateSetting) -> Result<bool, ShellError> {
    if gate == GateSetting::Off {
        return Ok(false);
    }
    let served = match kube::discovery::group(client, "openreports.io").await {
        Ok(group) => group.recommended_kind("Report").is_some(),
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => false,
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => return Err(ShellError::Discovery(e.to_string())),
    };
    match (gate, served) {
        (GateSetting::On, false) => Err(ShellError::Discovery(
            "feature gate PolicyReport=true, but reports.openreports.io is not installed".into(),
        )),
        (_, served) => {
            tracing::info!(enabled = served, "OpenReports Reports");
            Ok(served)
        }
    }
}

/// Whether the vulnerability exception CRDs are installed (an installation from before
/// them runs without exceptions, and says so).
async fn exceptions_served(client: &Client) -> Result<bool, ShellError> {
    use crate::crd::exception::{CLUSTER_EXCEPTION_KIND, EXCEPTION_KIND};
    let group = match kube::discovery::group(client, crate::crd::GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
            return Ok(false);
        }
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
        Err(e) => return Err(ShellError::Discovery(e.to_string())),
    };
    let served = [EXCEPTION_KIND, CLUSTER_EXCEPTION_KIND]
        .into_iter()
        .all(|kind| group.recommended_kind(kind).is_some());
    if served {
        tracing::info!("vulnerability exceptions watched");
    } else {
        tracing::warn!(
            "the VulnerabilityException CRDs are not installed: no finding is suppressed (install crds/)"
        );
    }
    Ok(served)
}

async fn ensure_crd(client: &Client) -> Result<(), ShellError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    match api.get_opt("containerimagescans.stas.statnett.no").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ShellError::CrdMissing),
        // Reading CRDs may not be allowed (least privilege); the watch will tell if it is missing.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        Err(e) => Err(ShellError::Discovery(e.to_string())),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The engine task: feeds observations to the engine, executes its commands concurrently and
/// feeds their outcomes back, and wakes up for the engine's timers.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut engine: Engine,
    executor: Executor,
    mut rx: mpsc::Receiver<Observation>,
    tx: mpsc::Sender<Observation>,
    mut queries: mpsc::Receiver<EngineQuery>,
    counters: Arc<RequestCounters>,
    metric_labels: Vec<String>,
    cancel: CancellationToken,
) {
    let mut running = FuturesUnordered::new();
    loop {
        let wake = engine.next_wakeup().map(|at| {
            let wait = at.since(now());
            tokio::time::Instant::now() + wait
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            // Before observations: a scrape at 10,000 pods is a few hundred small chunks, each
            // asked for only after the previous one was sent, so serving them first never
            // starves the watches, while queueing each behind a burst of events could push the
            // scrape past Prometheus's timeout.
            Some(query) = queries.recv() => {
                match query {
                    EngineQuery::MetricsChunk { cursor, reply } => {
                        let _ = reply.send(render_metrics_chunk(
                            &engine,
                            &counters,
                            &metric_labels,
                            now(),
                            cursor,
                            METRICS_CHUNK_BYTES,
                        ));
                    }
                }
                continue;
            }
            Some((id, outcome)) = running.next(), if !running.is_empty() => {
                engine.observe(Observation::Outcome { id, outcome }, now());
            }
            Some(obs) = rx.recv() => {
                engine.observe(obs, now());
                // Take whatever else is queued before deciding, so a burst costs one pass.
                for _ in 0..OBSERVATION_BUFFER {
                    match rx.try_recv() {
                        Ok(obs) => engine.observe(obs, now()),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(wake) => {}
        }
        for Command { id, action } in engine.poll(now()) {
            let executor = executor.clone();
            let counters = counters.clone();
            running.push(async move {
                let verb = action.verb();
                let what = match &action {
                    Action::Deliver { sink, key, .. } => {
                        format!("sink {} notification {key}", executor.sink_name(*sink))
                    }
                    other => describe(other),
                };
                tracing::debug!(verb, object = %what, "executing");
                let outcome = executor.execute(action).await;
                log_outcome(verb, &what, &outcome);
                // The API request counters count API requests; deliveries have their own.
                if verb != "deliver" {
                    counters.record(verb, &outcome);
                }
                (id, outcome)
            });
        }
    }
    drop(tx);
    // Let commands in flight finish (a write that reached the server is then observed on the
    // next start anyway; nothing depends on waiting longer).
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while running.next().await.is_some() {}
    })
    .await;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The object a command is about, for logs.
fn describe(action: &Action) -> String {
    match action {
        Action::ApplyCis {
            namespace, name, ..
        }
        | Action::DeleteCis {
            namespace, name, ..
        }
        | Action::ApplyCisStatus {
            namespace, name, ..
        }
        | Action::RecordEvent {
            namespace, name, ..
        } => format!("{namespace}/{name}"),
        Action::ApplyReport {
            namespace, name, ..
        } => format!("report {namespace}/{name}"),
        Action::CreateJob { job } => format!("job/{}", job.metadata.name.as_deref().unwrap_or("")),
        Action::DeleteJob { name, .. } => format!("job/{name}"),
        Action::FetchLog { pod_name, .. } => format!("pod/{pod_name}"),
        Action::ApplyExceptionStatus { key, .. } => format!("exception {}", key.reference()),
        Action::Deliver { sink, key, .. } => format!("sink #{sink} notification {key}"),
    }
}

fn log_outcome(verb: &'static str, what: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Failed(e) if e.kind.is_retryable() => {
            tracing::info!(verb, object = %what, kind = ?e.kind, error = %e.message, "request failed; will retry");
        }
        Outcome::Failed(e) => {
            tracing::warn!(verb, object = %what, kind = ?e.kind, error = %e.message, "request failed");
        }
        Outcome::JobCreated(job) => {
            tracing::info!(
                job = %format_args!("{}/{}", job.namespace, job.name),
                digest = %job.digest.as_deref().unwrap_or("(none)"),
                "scan Job created"
            )
        }
        Outcome::Log(bytes) => tracing::info!(object = %what, bytes = bytes.len(), "scan log read"),
        Outcome::CisApplied(_) | Outcome::Done => tracing::debug!(verb, object = %what, "done"),
    }
}
