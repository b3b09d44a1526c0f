//! `bench-scale`: the scale benchmark's client (see docs/performance.md and tests/bench/scale.sh).
//!
//! Subcommands, run in this order by `scale.sh` against the benchmark's own local control plane:
//! * `populate`  namespaces, scan namespace, workloads (Deployments, StatefulSets, DaemonSets, bare
//!   pods) drawing images from K digests, a replayed scan log per digest; waits until every pod
//!   is Running and Ready. Writes `plan.json`.
//! * `run`       starts the operator (release binary) as a process, samples its RSS/CPU from
//!   `/proc`, polls its `/metrics` until every running container's CIS shows a result, checks
//!   that through the API, watches a quiet period, measures the CIS as stored in etcd. Writes
//!   `run.json`.
//! * `baseline`  the physical bound: a plain client creating N CIS-sized objects (copies of the
//!   operator's CIS: same labels, owners, spec, status) with the operator's concurrency (32),
//!   create-only, create + status, and server-side apply + status apply. Writes `baseline.json`.
//! * `report`    merges the three into `scale.json` and prints the table.
//!
//! Not part of the operator: its own crate (`image-scanner-bench`, tests/bench). It measures real time, so the
//! purity lints of the core do not apply.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, ResourceExt,
};
use kube::{Client, Resource};
use serde_json::{Value, json};

use image_scanner::core::time::Timestamp;
use image_scanner::crd::ContainerImageScan;

const SCAN_NAMESPACE: &str = "image-scanner";
const NS_PREFIX: &str = "bench-";
const LABEL: &str = "bench=scale";
/// The operator's flow-control window (`MAX_INFLIGHT` in src/shell/runtime.rs).
const OPERATOR_INFLIGHT: usize = 32;
const SMALL_LOG: &str = "tests/fixtures/upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json";
/// Other report formats and sizes, used for one digest in 50 (rotating).
const OTHER_LOGS: [&str; 3] = [
    "tests/fixtures/trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json",
    "tests/fixtures/grype/grype-0.94.0_image_busybox-1.32.1_15matches_epss_empty-fix-state.json",
    "tests/fixtures/trivy/trivy-v0.20.0_image_debian-9.9_os_160vulns.json",
];
/// Write verbs of the operator's request counter.
const WRITE_VERBS: [&str; 6] = [
    "apply_cis",
    "delete_cis",
    "apply_cis_status",
    "create_job",
    "delete_job",
    "record_event",
];

#[derive(Parser)]
#[command(about = "Scale benchmark client (see docs/performance.md)")]
struct Cli {
    /// Directory for plan.json, run.json, baseline.json, scale.json and logs.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Populate {
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 100)]
        namespaces: usize,
        #[arg(long, default_value_t = 1_000)]
        digests: usize,
        /// Number of kwok nodes (each DaemonSet has one pod per node).
        #[arg(long)]
        nodes: usize,
        /// Directory kwok reads container logs from (<state>/logs).
        #[arg(long)]
        logs_dir: PathBuf,
        /// Seconds to wait for all pods to run.
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
    },
    Run {
        /// The operator binary.
        #[arg(long)]
        operator: PathBuf,
        /// Seconds of the quiet period after full coverage.
        #[arg(long, default_value_t = 300)]
        quiet: u64,
        /// --active-scan-job-limit of the operator.
        #[arg(long, default_value_t = 8)]
        job_limit: u32,
        /// Cluster state directory (ports.env gives etcd's port).
        #[arg(long)]
        state: PathBuf,
        /// Seconds to wait for full coverage.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Extra operator flags.
        #[arg(long, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    Baseline {
        #[arg(long, default_value_t = OPERATOR_INFLIGHT)]
        concurrency: usize,
        /// Also time the scan Jobs alone, this many in flight (0: skip; about 2 minutes at
        /// 1,000 Jobs here).
        #[arg(long, default_value_t = 0)]
        jobs_in_flight: usize,
    },
    Report {
        /// Exit non-zero when a performance target is missed too (correctness always counts).
        #[arg(long)]
        strict: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out)?;
    match cli.cmd {
        Cmd::Populate {
            pods,
            namespaces,
            digests,
            nodes,
            logs_dir,
            timeout,
        } => {
            populate(
                &cli.out, pods, namespaces, digests, nodes, &logs_dir, timeout,
            )
            .await
        }
        Cmd::Run {
            operator,
            quiet,
            job_limit,
            state,
            timeout,
            extra,
        } => {
            run(
                &cli.out, &operator, quiet, job_limit, &state, timeout, &extra,
            )
            .await
        }
        Cmd::Baseline {
            concurrency,
            jobs_in_flight,
        } => baseline(&cli.out, concurrency, jobs_in_flight).await,
        Cmd::Report { strict } => report(&cli.out, strict),
    }
}

fn log(msg: impl AsRef<str>) {
    let now = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    eprintln!("{now} [bench] {}", msg.as_ref());
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading {} (run the earlier steps)", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

// ---------------------------------------------------------------------------------------------
// populate

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    DaemonSet,
    StatefulSet,
    Deployment,
    Pod,
}

/// One workload: its kind, name, replicas and containers (name, digest index).
struct Unit {
    ns: String,
    kind: Kind,
    name: String,
    replicas: usize,
    containers: Vec<(&'static str, usize)>,
}

/// 64 hex characters, deterministic per index (kwok uses the hex of the image's digest as the
/// imageID and as the name of the log file; it need not be a real sha256 of anything).
fn digest_hex(i: usize) -> String {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out
}

fn image(i: usize) -> String {
    format!(
        "registry.bench/team-{}/app-{i}@sha256:{}",
        i % 20,
        digest_hex(i)
    )
}

/// The workload mix of the cluster. Per namespace: a DaemonSet in one namespace of ten (one pod
/// per node), then of the remaining pods ~20% in 2-replica StatefulSets, ~60% in 3-replica
/// Deployments (one in four with a sidecar from a small set of popular images) and the rest bare
/// pods. Main containers take digests round-robin, so every digest is used and shared across
/// namespaces.
fn plan(pods: usize, namespaces: usize, digests: usize, nodes: usize) -> Result<Vec<Unit>> {
    if namespaces == 0 || digests == 0 || pods < namespaces {
        bail!("need PODS >= NAMESPACES >= 1 and DIGESTS >= 1");
    }
    let popular = digests.min(10);
    let mut units = Vec::new();
    let mut next_digest = 0usize;
    let mut sidecars = 0usize;
    let mut take = || {
        let d = next_digest % digests;
        next_digest += 1;
        d
    };
    for i in 0..namespaces {
        let ns = format!("{NS_PREFIX}{i:03}");
        let mut left = pods / namespaces + usize::from(i < pods % namespaces);
        if i % 10 == 0 && left >= nodes + 10 {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::DaemonSet,
                name: format!("ds-{i}"),
                replicas: nodes,
                containers: vec![("agent", take())],
            });
            left -= nodes;
        }
        let sts = left / 10;
        for k in 0..sts {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::StatefulSet,
                name: format!("sts-{k}"),
                replicas: 2,
                containers: vec![("app", take())],
            });
        }
        left -= sts * 2;
        let deps = left * 3 / 4 / 3;
        for k in 0..deps {
            let mut containers = vec![("app", take())];
            if k % 4 == 0 {
                containers.push(("proxy", sidecars % popular));
                sidecars += 1;
            }
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::Deployment,
                name: format!("dep-{k}"),
                replicas: 3,
                containers,
            });
        }
        left -= deps * 3;
        for k in 0..left {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::Pod,
                name: format!("pod-{k}"),
                replicas: 1,
                containers: vec![("app", take())],
            });
        }
    }
    if next_digest < digests {
        bail!(
            "only {next_digest} workload containers for {digests} digests: raise PODS or lower DIGESTS"
        );
    }
    Ok(units)
}

fn pod_spec(unit: &Unit) -> Value {
    let containers: Vec<Value> = unit
        .containers
        .iter()
        .map(|(name, d)| json!({"name": name, "image": image(*d)}))
        .collect();
    json!({
        "containers": containers,
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
    })
}

fn manifest(unit: &Unit) -> Value {
    let kind = format!("{:?}", unit.kind).to_lowercase();
    let labels = json!({"app": unit.name, "bench": "scale", "bench-kind": kind});
    let meta = json!({"name": unit.name, "namespace": unit.ns, "labels": labels});
    let template = json!({"metadata": {"labels": labels}, "spec": pod_spec(unit)});
    let selector = json!({"matchLabels": {"app": unit.name}});
    match unit.kind {
        Kind::Deployment => json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": unit.replicas, "selector": selector, "template": template},
        }),
        Kind::StatefulSet => json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": unit.replicas, "selector": selector, "template": template,
                     "serviceName": unit.name, "podManagementPolicy": "Parallel"},
        }),
        Kind::DaemonSet => json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": selector, "template": template},
        }),
        Kind::Pod => json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec(unit),
        }),
    }
}

/// CRI log format, byte-exact like tests/cluster/serve-log.sh: `<ts> stdout F <line>`, lines
/// over 16 KiB split into `P` records, the last record `P` when there is no trailing newline.
fn cri_log(src: &[u8]) -> Vec<u8> {
    const MAX: usize = 16 * 1024;
    let ts = b"2024-01-01T00:00:00.000000000Z";
    let mut out = Vec::with_capacity(src.len() + src.len() / 8);
    let no_trailing_nl = !src.is_empty() && !src.ends_with(b"\n");
    let body = src.strip_suffix(b"\n").unwrap_or(src);
    if src.is_empty() {
        return out;
    }
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    for (i, mut line) in lines.iter().copied().enumerate() {
        while line.len() > MAX {
            out.extend_from_slice(ts);
            out.extend_from_slice(b" stdout P ");
            out.extend_from_slice(&line[..MAX]);
            out.push(b'\n');
            line = &line[MAX..];
        }
        let last = i + 1 == lines.len();
        out.extend_from_slice(ts);
        out.extend_from_slice(if last && no_trailing_nl {
            b" stdout P "
        } else {
            b" stdout F "
        });
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

async fn client() -> Result<Client> {
    Ok(Client::try_default().await?)
}

async fn list_all<K>(api: &Api<K>, lp: &ListParams) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut lp = lp.clone().limit(500);
    loop {
        let page = api.list(&lp).await?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp.continue_token = Some(c),
            _ => break,
        }
    }
    Ok(items)
}

async fn create_value(client: &Client, obj: Value) -> Result<()> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pp = PostParams::default();
    let res = match kind.as_str() {
        "Pod" => Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&pp, &serde_json::from_value(obj)?)
            .await
            .map(|_| ()),
        "Deployment" => {
            Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        "StatefulSet" => {
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        "DaemonSet" => {
            Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        other => bail!("unexpected kind {other}"),
    };
    match res {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pod_ready(p: &Pod) -> bool {
    let s = p.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready pods: ready replicas of the benchmark's workloads plus its ready bare pods.
async fn count_ready(client: &Client) -> Result<usize> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    let lp = ListParams::default().labels(LABEL);
    let deps = list_all(&Api::<Deployment>::all(client.clone()), &lp).await?;
    let sts = list_all(&Api::<StatefulSet>::all(client.clone()), &lp).await?;
    let ds = list_all(&Api::<DaemonSet>::all(client.clone()), &lp).await?;
    let bare = list_all(
        &Api::<Pod>::all(client.clone()),
        &ListParams::default().labels("bench=scale,bench-kind=pod"),
    )
    .await?;
    let n = |v: Option<i32>| v.unwrap_or(0).max(0) as usize;
    Ok(deps
        .iter()
        .map(|d| n(d.status.as_ref().and_then(|s| s.ready_replicas)))
        .sum::<usize>()
        + sts
            .iter()
            .map(|d| n(d.status.as_ref().and_then(|s| s.ready_replicas)))
            .sum::<usize>()
        + ds.iter()
            .map(|d| n(d.status.as_ref().map(|s| s.number_ready)))
            .sum::<usize>()
        + bare.iter().filter(|p| pod_ready(p)).count())
}

async fn populate(
    out: &Path,
    pods: usize,
    namespaces: usize,
    digests: usize,
    nodes: usize,
    logs_dir: &Path,
    timeout: u64,
) -> Result<()> {
    let units = plan(pods, namespaces, digests, nodes)?;
    let total_pods: usize = units.iter().map(|u| u.replicas).sum();
    let containers: usize = units.iter().map(|u| u.replicas * u.containers.len()).sum();
    let cis: usize = units.iter().map(|u| u.containers.len()).sum();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for u in &units {
        let e = by_kind.entry(format!("{:?}", u.kind)).or_default();
        e.0 += 1;
        e.1 += u.replicas;
    }
    log(format!(
        "plan: {total_pods} pods in {namespaces} namespaces, {containers} containers, {cis} CIS expected, {digests} digests; by kind (objects, pods): {by_kind:?}"
    ));

    // Scan logs first: a scan pod may read its log as soon as it exists.
    std::fs::create_dir_all(logs_dir)?;
    let small = cri_log(&std::fs::read(SMALL_LOG)?);
    let others: Vec<Vec<u8>> = OTHER_LOGS
        .iter()
        .map(|p| std::fs::read(p).map(|b| cri_log(&b)))
        .collect::<std::io::Result<_>>()?;
    let mut log_bytes = BTreeMap::<&str, usize>::new();
    for d in 0..digests {
        let (name, bytes) = if d % 50 == 49 {
            let k = (d / 50) % others.len();
            (OTHER_LOGS[k], &others[k])
        } else {
            (SMALL_LOG, &small)
        };
        *log_bytes.entry(name).or_default() += 1;
        std::fs::write(logs_dir.join(format!("{}.log", digest_hex(d))), bytes)?;
    }
    log(format!(
        "scan logs written to {} (digests per fixture: {log_bytes:?})",
        logs_dir.display()
    ));

    let client = client().await?;
    let t0 = Instant::now();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut ns_names: Vec<String> = (0..namespaces)
        .map(|i| format!("{NS_PREFIX}{i:03}"))
        .collect();
    ns_names.push(SCAN_NAMESPACE.to_string());
    futures::stream::iter(ns_names.clone())
        .map(|name| {
            let api = ns_api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {"bench": "scale"}}}),
                )?;
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(anyhow!("namespace {name}: {e}")),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let job_sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "image-scanner-job"}}))?;
    match sa.create(&PostParams::default(), &job_sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    // Pods are rejected until the service-account controller made `default` in each namespace.
    let all_sa: Api<ServiceAccount> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let defaults = list_all(
            &all_sa,
            &ListParams::default().fields("metadata.name=default"),
        )
        .await?
        .into_iter()
        .filter(|s| s.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .count();
        if defaults == namespaces {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {defaults}/{namespaces} default service accounts after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log(format!(
        "namespaces ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    let manifests: Vec<Value> = units.iter().map(manifest).collect();
    futures::stream::iter(manifests)
        .map(|m| create_value(&client, m))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created_s = t0.elapsed().as_secs_f64();
    log(format!(
        "{} workload objects created in {created_s:.1} s",
        units.len()
    ));

    // Wait until every pod runs and is Ready. Polling 10,000 pods would load the API server
    // that is busy starting them: count ready replicas of the workloads and list only the bare
    // pods, then check every pod once at the end.
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut last_report = Instant::now();
    loop {
        let ready = count_ready(&client).await?;
        if ready >= total_pods {
            let all = list_all(
                &Api::<Pod>::all(client.clone()),
                &ListParams::default().labels(LABEL),
            )
            .await?;
            let ready = all.iter().filter(|p| pod_ready(p)).count();
            if ready == total_pods && all.len() == total_pods {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("only {ready}/{total_pods} pods Running and Ready after {timeout} s");
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            log(format!("{ready}/{total_pods} pods Running and Ready"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let running_s = t0.elapsed().as_secs_f64();
    log(format!(
        "all {total_pods} pods Running and Ready {running_s:.1} s after the start"
    ));
    let kinds: BTreeMap<String, Value> = by_kind
        .into_iter()
        .map(|(k, (objects, pods))| (k, json!({"objects": objects, "pods": pods})))
        .collect();
    write_json(
        &out.join("plan.json"),
        &json!({
            "pods": total_pods,
            "namespaces": namespaces,
            "digests": digests,
            "nodes": nodes,
            "containers": containers,
            "cis_expected": cis,
            "kinds": kinds,
            "logs_per_fixture": log_bytes,
            "populate_create_s": created_s,
            "populate_running_s": running_s,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// run

/// Operator /proc figures.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss: u64,
    hwm: u64,
    cpu: f64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime: fields 14, 15 of the line = 11, 12 after the command name; 100 ticks/s.
    let ticks: f64 = [11usize, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    Some(ProcSample {
        rss: kb("VmRSS:")?,
        hwm: kb("VmHWM:")?,
        cpu: ticks / 100.0,
    })
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_string())
}

/// `name{labels} value` lines → (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
                None => (key.to_string(), String::new()),
            };
            Some((name, labels, value))
        })
        .collect()
}

fn metric(parsed: &[(String, String, f64)], name: &str) -> Option<f64> {
    parsed
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, v)| *v)
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim_matches('"'))
    })
}

/// The operator's request counter by verb (all results).
fn requests_by_verb(parsed: &[(String, String, f64)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (n, l, v) in parsed {
        if n == "image_scanner_api_requests_total"
            && let (Some(verb), Some(result)) = (label(l, "verb"), label(l, "result"))
        {
            *out.entry(verb.to_string()).or_default() += v;
            if result != "ok" {
                *out.entry(format!("{verb}:{result}")).or_default() += v;
            }
        }
    }
    out
}

fn writes(by_verb: &BTreeMap<String, f64>) -> f64 {
    WRITE_VERBS.iter().filter_map(|v| by_verb.get(*v)).sum()
}

/// The API server's request counter for the resources the operator touches, by
/// "resource[/subresource] VERB".
async fn apiserver_requests(client: &Client) -> Result<BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for (n, l, v) in parse_metrics(&text) {
        if n != "apiserver_request_total" {
            continue;
        }
        let resource = label(&l, "resource").unwrap_or_default();
        let sub = label(&l, "subresource").unwrap_or_default();
        let interesting = resource == "containerimagescans"
            || resource == "jobs"
            || (resource == "pods" && sub == "log");
        if !interesting {
            continue;
        }
        let key = if sub.is_empty() {
            format!("{resource} {}", label(&l, "verb").unwrap_or_default())
        } else {
            format!("{resource}/{sub} {}", label(&l, "verb").unwrap_or_default())
        };
        *out.entry(key).or_default() += v;
    }
    Ok(out)
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

fn cis_writes_in(delta: &BTreeMap<String, f64>) -> f64 {
    delta
        .iter()
        .filter(|(k, _)| k.starts_with("containerimagescans"))
        .filter(|(k, _)| !(k.ends_with(" GET") || k.ends_with(" LIST") || k.ends_with(" WATCH")))
        .map(|(_, v)| v)
        .sum()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds of the control plane's processes (from the cluster's pid files) and of this
/// process, by name.
fn cluster_cpu(state: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(state.join("pids")) {
        for entry in dir.flatten() {
            let name = entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".pid")
                .to_string();
            let pid = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(s) = pid.and_then(proc_sample) {
                out.insert(name, s.cpu);
            }
        }
    }
    if let Some(s) = proc_sample(std::process::id()) {
        out.insert("bench-scale (this client)".to_string(), s.cpu);
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sizes of the CIS values as stored in etcd, via etcd's JSON gateway (`/v3/kv/range`), paged.
fn etcd_cis_sizes(state: &Path) -> Result<Vec<f64>> {
    let ports = std::fs::read_to_string(state.join("ports.env"))?;
    let port = ports
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .ok_or_else(|| anyhow!("no ETCD_PORT in ports.env"))?
        .trim()
        .to_string();
    use base64_lite::{decode_len, encode};
    let prefix = b"/registry/stas.statnett.no/containerimagescans/".to_vec();
    let mut end = prefix.clone();
    *end.last_mut().expect("prefix") += 1;
    let mut key = prefix.clone();
    let mut sizes = Vec::new();
    loop {
        let body = json!({"key": encode(&key), "range_end": encode(&end), "limit": 200});
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "60", "-X", "POST"])
            .arg(format!("http://127.0.0.1:{port}/v3/kv/range"))
            .arg("-d")
            .arg(body.to_string())
            .output()?;
        if !out.status.success() {
            bail!(
                "etcd range request failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        for kv in &kvs {
            let k = base64_lite::decode(kv["key"].as_str().unwrap_or_default());
            // Objects in the benchmark namespaces only (baseline copies are made later).
            let rest = &k[prefix.len().min(k.len())..];
            if rest.starts_with(NS_PREFIX.as_bytes()) {
                sizes.push(decode_len(kv["value"].as_str().unwrap_or_default()) as f64);
            }
        }
        if v["more"].as_bool() != Some(true) || kvs.is_empty() {
            break;
        }
        let last = base64_lite::decode(
            kvs.last()
                .and_then(|kv| kv["key"].as_str())
                .unwrap_or_default(),
        );
        key = last;
        key.push(0);
    }
    Ok(sizes)
}

mod base64_lite {
    //! Just enough base64 for etcd's JSON gateway (keys in, keys and value lengths out).
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc = 0u32;
        let mut bits = 0;
        for c in text.bytes() {
            let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
                continue;
            };
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    pub fn decode_len(text: &str) -> usize {
        let pad = text.bytes().rev().take_while(|b| *b == b'=').count();
        text.len() / 4 * 3 - pad
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    out: &Path,
    operator: &Path,
    quiet: u64,
    job_limit: u32,
    state: &Path,
    timeout: u64,
    extra: &[String],
) -> Result<()> {
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
    let api_before = apiserver_requests(&client).await?;
    let cpu_before = cluster_cpu(state);

    let metrics_port = free_port()?;
    let health_port = free_port()?;
    let log_path = out.join("operator.log");
    let log_file = std::fs::File::create(&log_path)?;
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
    let child = Command::new(operator)
        .args(&args)
        // Only what it needs: the benchmark's own variables (NAMESPACES, ...) are operator
        // settings too.
        .env_clear()
        .env(
            "KUBECONFIG",
            std::env::var_os("KUBECONFIG").unwrap_or_default(),
        )
        .env("POD_NAMESPACE", SCAN_NAMESPACE)
        .env("POD_NAME", "bench-operator")
        .env_remove("RUST_LOG")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", operator.display()))?;
    let pid = child.id();
    let mut op = OperatorProcess { child };

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
    let cis_api: Api<ContainerImageScan> = Api::all(client.clone());
    let all_cis: Vec<ContainerImageScan> = list_all(&cis_api, &ListParams::default())
        .await?
        .into_iter()
        .filter(|c| c.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .collect();
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
    let api_quiet_before = apiserver_requests(&client).await?;
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
    let api_after = apiserver_requests(&client).await?;
    let quiet_delta = delta(&after, &before);
    let quiet_writes = (writes(&after) - writes(&before)).max(0.0);
    let api_quiet = delta(&api_after, &api_quiet_before);
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

    let mut sizes = etcd_cis_sizes(state).unwrap_or_else(|e| {
        log(format!("etcd sizes not measured: {e}"));
        Vec::new()
    });
    sizes.sort_by(|a, b| a.total_cmp(b));
    let etcd_median = percentile(&sizes, 0.5);
    log(format!(
        "etcd: {} CIS values, median {etcd_median} bytes, p90 {}, max {}, total {}",
        sizes.len(),
        percentile(&sizes, 0.9),
        percentile(&sizes, 1.0),
        sizes.iter().sum::<f64>()
    ));
    let jobs_metric = metric(&final_parsed, "image_scanner_scan_jobs_created_total").unwrap_or(0.0);

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
            "apiserver_requests_run": delta(&api_after, &api_before),
            "etcd_bytes_per_cis_median": etcd_median,
            "etcd_bytes_per_cis_p90": percentile(&sizes, 0.9),
            "etcd_bytes_per_cis_max": percentile(&sizes, 1.0),
            "etcd_cis_values": sizes.len(),
            "active_scan_job_limit": job_limit,
            "operator_args": args,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// baseline

fn cis_resource() -> ApiResource {
    ApiResource::erase::<ContainerImageScan>(&())
}

/// Times `work` over `items` with `concurrency` tasks; returns (seconds, errors).
async fn timed<F, Fut>(items: Vec<Value>, concurrency: usize, work: F) -> (f64, usize)
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(items)
        .map(work)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let errors: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        log(format!("{} errors, first: {e}", errors.len()));
    }
    (t.elapsed().as_secs_f64(), errors.len())
}

async fn baseline(out: &Path, concurrency: usize, jobs_in_flight: usize) -> Result<()> {
    let client = client().await?;
    let ar = cis_resource();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let templates: Vec<DynamicObject> = list_all(&all, &ListParams::default())
        .await?
        .into_iter()
        .filter(|c| c.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .filter(|c| !c.name_any().starts_with("bl"))
        .collect();
    let n = templates.len();
    if n == 0 {
        bail!("no CIS to copy: run the operator first");
    }
    log(format!(
        "baseline: {n} objects per variant, {concurrency} requests in flight"
    ));
    // (metadata + spec, status) of each copy.
    let copy = |prefix: &str, t: &DynamicObject, i: usize| -> Value {
        let ns = t.namespace().unwrap_or_default();
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.insert("bench-baseline".to_string(), "true".to_string());
        json!({
            "apiVersion": ContainerImageScan::api_version(&()),
            "kind": ContainerImageScan::kind(&()),
            "metadata": {
                "name": format!("{prefix}-{i}"),
                "namespace": ns,
                "labels": labels,
                "ownerReferences": t.metadata.owner_references,
            },
            "spec": t.data["spec"],
            "status": t.data["status"],
        })
    };
    let objects = |prefix: &str| -> Vec<Value> {
        templates
            .iter()
            .enumerate()
            .map(|(i, t)| copy(prefix, t, i))
            .collect()
    };
    let api_for = |obj: &Value| -> Api<DynamicObject> {
        Api::namespaced_with(
            client.clone(),
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            &ar,
        )
    };
    let body_without_status = |obj: &Value| -> Result<DynamicObject> {
        let mut o = obj.clone();
        o.as_object_mut().map(|m| m.remove("status"));
        Ok(serde_json::from_value(o)?)
    };

    // 1. create only.
    let (create_s, create_err) = timed(objects("blc"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            api.create(&PostParams::default(), &body_without_status(&obj)?)
                .await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "create only: {create_s:.1} s ({create_err} errors)"
    ));

    // 2. create + status write (PUT /status with the created object's resourceVersion).
    let (full_s, full_err) = timed(objects("bls"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            let mut created = api
                .create(&PostParams::default(), &body_without_status(&obj)?)
                .await?;
            created.data["status"] = obj["status"].clone();
            let name = created.name_any();
            api.replace_status(&name, &PostParams::default(), &created)
                .await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "create + status: {full_s:.1} s ({full_err} errors)"
    ));

    // 3. what the operator does: server-side apply of metadata/spec, then of the status.
    let (ssa_s, ssa_err) = timed(objects("bla"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let pp = PatchParams::apply("bench-baseline").force();
            let mut spec = obj.clone();
            spec.as_object_mut().map(|m| m.remove("status"));
            let applied = api.patch(&name, &pp, &Patch::Apply(&spec)).await?;
            let status = json!({
                "apiVersion": obj["apiVersion"], "kind": obj["kind"],
                "metadata": {"name": name, "namespace": obj["metadata"]["namespace"], "uid": applied.uid()},
                "status": obj["status"],
            });
            api.patch_status(&name, &pp, &Patch::Apply(&status)).await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "apply + status apply: {ssa_s:.1} s ({ssa_err} errors)"
    ));

    // Remove the copies (they are not the operator's; a later run on a kept cluster must not
    // see them). Not timed.
    let namespaces: std::collections::BTreeSet<String> =
        templates.iter().filter_map(|t| t.namespace()).collect();
    futures::stream::iter(namespaces)
        .map(|ns| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            async move {
                let lp = ListParams::default().labels("bench-baseline=true");
                let _ = api
                    .delete_collection(&kube::api::DeleteParams::background(), &lp)
                    .await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    // 4. the scan Jobs alone (optional).
    let (jobs_n, jobs_s, jobs_err) = if jobs_in_flight > 0 {
        match baseline_jobs(&client, jobs_in_flight).await {
            Ok((n, s, e)) => {
                log(format!(
                    "scan Jobs alone: {n} Jobs, {jobs_in_flight} in flight, {s:.1} s ({e} errors)"
                ));
                (Some(n), Some(s), e)
            }
            Err(e) => {
                log(format!("scan Jobs baseline skipped: {e:#}"));
                (None, None, 0)
            }
        }
    } else {
        (None, None, 0)
    };
    write_json(
        &out.join("baseline.json"),
        &json!({
            "objects": n,
            "concurrency": concurrency,
            "api_baseline_s": full_s,
            "api_baseline_create_only_s": create_s,
            "api_baseline_ssa_s": ssa_s,
            "api_baseline_jobs": jobs_n,
            "api_baseline_jobs_in_flight": (jobs_in_flight > 0).then_some(jobs_in_flight),
            "api_baseline_jobs_s": jobs_s,
            "errors": create_err + full_err + ssa_err + jobs_err,
        }),
    )
}

/// The scan pipeline's physical bound: copies of the operator's scan Jobs, created by a plain
/// client with the operator's job limit in flight, each waited for until Complete and its scan
/// log read (as the operator does). Returns (jobs, seconds, errors).
async fn baseline_jobs(client: &Client, job_limit: usize) -> Result<(usize, f64, usize)> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::LogParams;
    use kube::runtime::watcher;

    const PREFIX: &str = "blj-";
    const LABEL_KEY: &str = "bench-baseline";
    let jobs: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let templates: Vec<Job> = list_all(&jobs, &ListParams::default())
        .await?
        .into_iter()
        .filter(|j| !j.name_any().starts_with(PREFIX))
        .collect();
    let n = templates.len();
    if n == 0 {
        bail!("no scan Job to copy: run the operator first");
    }
    // Jobs the API server generated fields for (selector, controller-uid labels) are copied
    // without them; the pod template (images, so kwok's stages and replayed logs) is kept.
    let copy = |t: &Job, i: usize| -> Result<Job> {
        let mut spec = t.spec.clone().context("Job without spec")?;
        spec.selector = None;
        spec.manual_selector = None;
        if let Some(meta) = spec.template.metadata.as_mut()
            && let Some(labels) = meta.labels.as_mut()
        {
            labels.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
            labels.insert(LABEL_KEY.to_string(), "true".to_string());
        }
        Ok(Job {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{PREFIX}{i}")),
                namespace: Some(SCAN_NAMESPACE.to_string()),
                labels: Some([(LABEL_KEY.to_string(), "true".to_string())].into()),
                annotations: t.metadata.annotations.clone(),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        })
    };
    let copies: Vec<Job> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| copy(t, i))
        .collect::<Result<_>>()?;

    // One watch tells each waiter when its Job is Complete or Failed.
    type Waiters = Arc<Mutex<BTreeMap<String, tokio::sync::oneshot::Sender<bool>>>>;
    let waiters: Waiters = Arc::default();
    // The operator's own rule for a finished Job (Complete/Failed only).
    let finished = |j: &Job| -> Option<bool> {
        let view = image_scanner::shell::convert::job_view(j, Timestamp::from_secs(0))?;
        view.finished.map(|f| f.succeeded)
    };
    let watch = {
        let waiters = waiters.clone();
        let cfg = watcher::Config::default().labels(&format!("{LABEL_KEY}=true"));
        tokio::spawn(watcher(jobs.clone(), cfg).for_each(move |event| {
            let waiters = waiters.clone();
            async move {
                let job = match event {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => j,
                    _ => return,
                };
                if let Some(ok) = finished(&job)
                    && let Some(tx) = waiters.lock().unwrap().remove(&job.name_any())
                {
                    let _ = tx.send(ok);
                }
            }
        }))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(copies)
        .map(|job| {
            let (jobs, pods, waiters) = (jobs.clone(), pods.clone(), waiters.clone());
            async move {
                let name = job.name_any();
                let (tx, rx) = tokio::sync::oneshot::channel();
                waiters.lock().unwrap().insert(name.clone(), tx);
                jobs.create(&PostParams::default(), &job).await?;
                let ok = tokio::time::timeout(Duration::from_secs(600), rx)
                    .await
                    .map_err(|_| anyhow!("{name}: not finished after 600 s"))??;
                if !ok {
                    bail!("{name} failed");
                }
                let lp = ListParams::default().labels(&format!("job-name={name}"));
                let pod = pods
                    .list(&lp)
                    .await?
                    .items
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("{name}: no pod"))?;
                let lp = LogParams {
                    container: Some(image_scanner::core::scan_job::SCAN_CONTAINER.to_string()),
                    ..LogParams::default()
                };
                pods.logs(&pod.name_any(), &lp).await?;
                Ok(())
            }
        })
        .buffer_unordered(job_limit)
        .collect()
        .await;
    let seconds = t.elapsed().as_secs_f64();
    watch.abort();
    let errors: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        log(format!("{} errors, first: {e}", errors.len()));
    }
    let dp = kube::api::DeleteParams::background();
    let _ = jobs
        .delete_collection(
            &dp,
            &ListParams::default().labels(&format!("{LABEL_KEY}=true")),
        )
        .await;
    Ok((n, seconds, errors.len()))
}

// ---------------------------------------------------------------------------------------------
// report

fn report(out: &Path, strict: bool) -> Result<()> {
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
    let scale = json!({
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
        "active_scan_job_limit": run["active_scan_job_limit"],
        "populate_running_s": plan["populate_running_s"],
    });
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
        peak.map(|p| p <= 50.0),
        "<= 50 MiB",
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
        Some(coverage.is_some_and(|c| c <= 60.0)),
        "<= 60 s",
        coverage.is_none(),
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
        "coverage / baseline",
        ratio.map_or("-".into(), |r| format!("{r:.2}x")),
        ratio.map(|r| r <= 1.2),
        "<= 1.2x",
        false,
    );
    let jobs = f(&run["scan_jobs"]);
    check(
        "scan Jobs created",
        opt(jobs, ""),
        Some(jobs == Some(digests)),
        "= digests",
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
