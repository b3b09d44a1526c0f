//! `bench-scale`: the scale benchmark's client (see docs/performance.md and tests/bench/scale.sh).
//!
//! Subcommands, run in this order by `scale.sh` against the benchmark's own local control plane:
//! * `populate`  namespaces, scan namespace, workloads (Deployments, StatefulSets, DaemonSets, bare
//!   pods) drawing images from K digests, a replayed scan log per digest; waits until every pod
//!   is Running and Ready. Writes `plan.json`.
//! * `run`       starts the operator (release binary) as a process, samples its RSS/CPU from
//!   `/proc`, polls its `/metrics` until every running container's CIS shows a result, checks
//!   that through the API, watches a quiet period, measures the CIS as stored in etcd, then
//!   restarts the operator on the covered cluster and counts what the restart costs. Writes
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

// One file per subcommand (and the measuring tools of `run`); they share the imports and
// helpers of this file through `use super::*`.
mod audit;
mod baseline;
mod chaos;
mod log_proxy;
mod measure;
mod populate;
mod report;
mod restart;
mod run;

use audit::*;
use baseline::*;
use chaos::*;
use log_proxy::*;
use measure::*;
use populate::*;
use report::*;
use restart::*;
use run::*;

const SCAN_NAMESPACE: &str = "image-scanner";
const NS_PREFIX: &str = "bench-";
const LABEL: &str = "bench=scale";
/// The operator's flow-control window (`MAX_INFLIGHT` in src/shell/runtime.rs).
const OPERATOR_INFLIGHT: usize = 32;
/// The upstream operator's sample report (19 findings, the template format).
const SMALL_LOG: &str = "tests/fixtures/upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json";
/// The mix of scan reports the digests replay (`--mix realistic`): real scanner outputs of
/// `tests/fixtures/` and how many digests of every 1,000 get each. Their sizes are the data
/// points of ../shared/docs/scanner-interface.md §1.7 (0, a few, 15–19, 160–182 and 10,395
/// findings); the shares are ours — most images carry tens to hundreds of findings, one in a
/// hundred is an old, unmaintained image with thousands (docs/performance.md, "The report
/// mix"). Mean 191 findings per digest; half the digests carry 19 or fewer.
const REALISTIC_MIX: [(&str, usize); 13] = [
    (
        "tests/fixtures/trivy/trivy-head_image_slem-5.4_os_no-vulns.json",
        60,
    ),
    (
        "tests/fixtures/grype/grype-0.7.0_image_busybox_no-matches.json",
        40,
    ),
    (
        "tests/fixtures/trivy/trivy-head_repo_npm_lang-pkgs_1vuln_with-Packages.json",
        15,
    ),
    (
        "tests/fixtures/trivy/trivy-head_image_debian-10.2_os-and-gemspec_2vulns.json",
        15,
    ),
    (
        "tests/fixtures/trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json",
        50,
    ),
    (
        "tests/fixtures/trivy/trivy-head_image_centos-7.6_os_3vulns_will_not_fix.json",
        40,
    ),
    (
        "tests/fixtures/trivy/trivy-head_repo_gomod_lang-pkgs_5vulns_UNKNOWN-severity.json",
        30,
    ),
    (
        "tests/fixtures/trivy/trivy-head_image_alpine-3.9.4-eosl_os_6vulns_all-fixed.json",
        50,
    ),
    (
        "tests/fixtures/grype/grype-0.94.0_image_busybox-1.32.1_15matches_epss_empty-fix-state.json",
        100,
    ),
    (SMALL_LOG, 100),
    (
        "tests/fixtures/trivy/trivy-v0.20.0_image_debian-9.9_os_160vulns.json",
        270,
    ),
    (
        "tests/fixtures/trivy/trivy-0.56_image_juice-shop-v12.10.2_alpine-3.11-eosl_os-and-node-and-secret_182vulns.json",
        220,
    ),
    (
        "tests/fixtures/upstream/internal/controller/stas/testdata/scan-job-successful-long/scan-job-pod.log.json",
        10,
    ),
];
/// The mix of the benchmark runs before issue 19 (`--mix sample`): the upstream sample report,
/// and one digest in 50 (rotating) one of these.
const SAMPLE_MIX_OTHERS: [&str; 3] = [
    "tests/fixtures/trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json",
    "tests/fixtures/grype/grype-0.94.0_image_busybox-1.32.1_15matches_epss_empty-fix-state.json",
    "tests/fixtures/trivy/trivy-v0.20.0_image_debian-9.9_os_160vulns.json",
];
/// Which reports the digests replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mix {
    /// `REALISTIC_MIX`.
    Realistic,
    /// The runs before issue 19: 49 of 50 digests the upstream sample report.
    Sample,
}

impl Mix {
    /// The report fixture digest `d` replays.
    fn fixture(self, d: usize) -> &'static str {
        match self {
            Mix::Sample if d % 50 == 49 => SAMPLE_MIX_OTHERS[(d / 50) % SAMPLE_MIX_OTHERS.len()],
            Mix::Sample => SMALL_LOG,
            Mix::Realistic => {
                // A permutation of each block of 1,000 digests (7919 is prime to 1,000), so
                // every 1,000 consecutive digests hold the mix exactly and its large reports
                // are spread over the digest numbers (the first ten are the popular sidecars).
                let mut slot = (d * 7919) % 1000;
                for (fixture, share) in REALISTIC_MIX {
                    if slot < share {
                        return fixture;
                    }
                    slot -= share;
                }
                unreachable!("the shares sum to 1,000")
            }
        }
    }
}

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
        /// Which scan reports the digests replay.
        #[arg(long, value_enum, default_value_t = Mix::Realistic)]
        mix: Mix,
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
        /// Seconds to watch the restarted operator after it counts full coverage again
        /// (0: no restart phase).
        #[arg(long, default_value_t = 30)]
        restart_watch: u64,
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
    /// Faults on the populated cluster with two replicas (tests/chaos/chaos.sh, issue 22).
    Chaos {
        /// The operator binary.
        #[arg(long)]
        operator: PathBuf,
        /// Cluster state directory (pid files, logs, audit log, the replicas' kubeconfigs).
        #[arg(long)]
        state: PathBuf,
        /// Seed of the fault schedule.
        #[arg(long)]
        seed: u64,
        /// SIGKILLs, of the leader and the standby in turn.
        #[arg(long, default_value_t = 50)]
        kills: usize,
        /// kube-apiserver restarts.
        #[arg(long, default_value_t = 10)]
        api_restarts: usize,
        /// SIGSTOPs of kube-apiserver past the operator's request timeout.
        #[arg(long, default_value_t = 2)]
        api_pauses: usize,
        /// SIGSTOPs of the leader for longer than the lease.
        #[arg(long, default_value_t = 3)]
        pauses: usize,
        /// etcd restarts.
        #[arg(long, default_value_t = 2)]
        etcd_restarts: usize,
        /// kube-controller-manager restarts.
        #[arg(long, default_value_t = 3)]
        kcm_restarts: usize,
        /// Phases of API Priority and Fairness limiting the replicas (429s).
        #[arg(long, default_value_t = 3)]
        throttles: usize,
        /// Phases of expired watches (etcd compacted, kube-apiserver without its watch cache:
        /// 410 Gone, relists).
        #[arg(long, default_value_t = 2)]
        watch_expiries: usize,
        /// Phases of a slow, down or hanging pod log endpoint, in turn.
        #[arg(long, default_value_t = 3)]
        log_faults: usize,
        /// User actions (deleting or editing CIS, Jobs and scan pods; rollouts; scaling).
        #[arg(long, default_value_t = 40)]
        user_ops: usize,
        /// Seconds after the heal by which every container must show its result.
        #[arg(long, default_value_t = 60)]
        heal_bound: u64,
        /// Seconds of the quiet period after convergence.
        #[arg(long, default_value_t = 30)]
        quiet: u64,
        /// --active-scan-job-limit of the replicas.
        #[arg(long, default_value_t = 20)]
        job_limit: u32,
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
            mix,
        } => {
            populate(
                &cli.out, pods, namespaces, digests, nodes, &logs_dir, timeout, mix,
            )
            .await
        }
        Cmd::Run {
            operator,
            quiet,
            job_limit,
            state,
            timeout,
            restart_watch,
            extra,
        } => {
            let settings = RunSettings {
                quiet,
                job_limit,
                timeout,
                restart_watch,
            };
            run(&cli.out, &operator, &settings, &state, &extra).await
        }
        Cmd::Baseline {
            concurrency,
            jobs_in_flight,
        } => baseline(&cli.out, concurrency, jobs_in_flight).await,
        Cmd::Report { strict } => report(&cli.out, strict),
        Cmd::Chaos {
            operator,
            state,
            seed,
            kills,
            api_restarts,
            api_pauses,
            pauses,
            etcd_restarts,
            kcm_restarts,
            throttles,
            watch_expiries,
            log_faults,
            user_ops,
            heal_bound,
            quiet,
            job_limit,
        } => {
            let settings = ChaosSettings {
                seed,
                kills,
                api_restarts,
                api_pauses,
                pauses,
                etcd_restarts,
                kcm_restarts,
                throttles,
                watch_expiries,
                log_faults,
                user_ops,
                heal_bound,
                quiet,
                job_limit,
            };
            chaos(&cli.out, &operator, &state, &settings).await
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_realistic_mix_holds_exactly_in_every_thousand_digests() {
        assert_eq!(REALISTIC_MIX.iter().map(|(_, n)| n).sum::<usize>(), 1000);
        for block in [0, 1000, 7000] {
            let mut count = BTreeMap::<&str, usize>::new();
            for d in block..block + 1000 {
                *count.entry(Mix::Realistic.fixture(d)).or_default() += 1;
            }
            for (fixture, share) in REALISTIC_MIX {
                assert_eq!(count[fixture], share, "{fixture} in block {block}");
            }
        }
    }

    #[test]
    fn every_fixture_of_a_mix_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for fixture in REALISTIC_MIX
            .iter()
            .map(|(f, _)| *f)
            .chain(SAMPLE_MIX_OTHERS)
        {
            assert!(root.join(fixture).is_file(), "{fixture}");
        }
    }
}
