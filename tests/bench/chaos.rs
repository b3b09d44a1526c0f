//! `chaos`: the operator's promises under a misbehaving control plane (issue 22), on the
//! populated local cluster (`tests/chaos/chaos.sh` starts it with an audit log of the
//! operator's requests and a proxy in front of the nodes' log endpoint).
//!
//! Two replicas with leader election, each with a client certificate of its own (`chaos-a`,
//! `chaos-b`) so the API server's audit log says which one asked. Fault phases in an order drawn
//! from the seed — printed, and the same for the same seed — each of one fault of the control
//! plane, with user actions among its steps: SIGKILL of the leader and of the standby, SIGSTOP
//! of the leader for longer than the lease, restarts of kube-apiserver (SIGTERM or SIGKILL), of
//! etcd and of the controller-manager, a SIGSTOP of kube-apiserver past the operator's 30 s
//! request timeout, API Priority and Fairness limiting the replicas to one
//! seat (429s), watches expired (etcd compacted, kube-apiserver without its watch cache: 410
//! Gone), a pod log endpoint that is slow, down or hangs (`log_proxy`; while it is down a user
//! deletes the pods of the scans that completed meanwhile, unread: results lost); users delete
//! CIS, scan Jobs, scan pods and a namespace, edit a CIS's spec, put a foreign finalizer on a
//! CIS, roll out to another image, scale. After each phase a heal (every replica running, the log
//! endpoint answering) and the convergence check; the checks:
//!
//! * **convergence**: within `--heal-bound` seconds of each heal, every running container's
//!   CIS exists once, for its current digest, with a successful result (from the API); the
//!   time per phase and per kind of fault goes to `chaos.json`;
//! * **one Job per digest**: never two unfinished, undeleted scan Jobs of one digest, checked
//!   on every event of a Job watch (not sampled);
//! * **no result lost or regressed**: on every event of a CIS watch, a CIS's last successful
//!   scan time never moves back nor disappears while its digest stays;
//! * **fencing**: no CIS or Job written (2xx) by a replica after the other one took the Lease
//!   over, or more than the lease's 15 s after its own last renewal unless it waited in a
//!   stopped kube-apiserver, sent while the lease was valid (`audit`);
//! * **quiet**: no write by either replica in the `--quiet` seconds after the last phase's
//!   convergence (and a settle time);
//! * **bounded**: no object written more than 20 times, nor read (or listed, watched) more than
//!   30 times by one replica, in any minute (`audit`); no replica logging more than
//!   `MAX_LOG_LINES_PER_SECOND` lines in a second (a retry loop without back-off against an
//!   unreachable API server never reaches its audit log); each replica's peak RSS;
//! * **exercised**: a fault that leaves no trace proves nothing — the replicas' logs must show
//!   410s after an expiry, the log proxy delayed, refused or held connections.
//!
//! Results go to `<out>/chaos.json`; any violation fails the run.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::CommandExt;
use std::sync::atomic::Ordering;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};

use super::*;

/// The Lease's name (`shell::leader::LEASE_NAME`).
const LEASE_NAME: &str = "398aa7bc.statnett.no";
/// A loop without back-off: more log lines of a replica in one second than this (info level).
const MAX_LOG_LINES_PER_SECOND: usize = 300;
/// SIGKILLs per phase (leader and standby in turn).
const KILLS_PER_PHASE: usize = 10;
/// kube-apiserver restarts per phase.
const API_RESTARTS_PER_PHASE: usize = 2;
/// The quiet period starts this long after convergence: writes that answer the last faults
/// (an owner list updated after its delay, a Job deleted by the last user action) settle first.
const SETTLE_SECONDS: u64 = 15;

/// The settings of `chaos` (see the subcommand's flags).
pub(crate) struct ChaosSettings {
    pub(crate) seed: u64,
    pub(crate) kills: usize,
    pub(crate) api_restarts: usize,
    pub(crate) api_pauses: usize,
    pub(crate) pauses: usize,
    pub(crate) etcd_restarts: usize,
    pub(crate) kcm_restarts: usize,
    pub(crate) throttles: usize,
    pub(crate) watch_expiries: usize,
    pub(crate) log_faults: usize,
    pub(crate) user_ops: usize,
    pub(crate) heal_bound: u64,
    pub(crate) quiet: u64,
    pub(crate) job_limit: u32,
}

/// What a replica logs when a request got no answer within its timeout, or a log read no
/// byte for 30 s (src/shell/execute.rs): a log read that met the stopped kube-apiserver says
/// the latter (chaos-small seed 1063508541 counted "0 timed out" for three stops that timed
/// out four log reads).
const TIMED_OUT: [&str; 2] = ["no answer within 30s", "sent nothing for 30s"];

/// Whether log line `line` says a request timed out.
fn timed_out(line: &str) -> bool {
    TIMED_OUT.iter().any(|t| line.contains(t))
}

/// CIS specs edited just before kube-apiserver stops: the operator's re-applies are the
/// requests the stop catches.
const EDITS_BEFORE_STOP: usize = 40;

/// One fault of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillLeader,
    KillStandby,
    PauseLeader,
    RestartApiserver,
    /// kube-apiserver stopped (SIGSTOP) past the operator's 30 s request timeout: requests in
    /// flight time out, connections hang rather than fail.
    PauseApiserver,
    RestartEtcd,
    RestartControllerManager,
    Throttle,
    /// etcd compacted, kube-apiserver restarted without its watch cache: every watch resumes
    /// from a revision that is gone (410 Gone, a relist).
    ExpireWatches,
    LogsSlow,
    LogsDown,
    LogsHang,
    /// A phase of user actions only (no fault of the control plane in the settings).
    Churn,
    DeleteCis,
    DeleteJob,
    DeleteScanPod,
    EditCisSpec,
    ForeignFinalizer,
    Rollout,
    Scale,
    DeleteNamespace,
}

impl Fault {
    /// What a phase of this fault is called in the log and in `chaos.json`.
    fn phase_name(self) -> &'static str {
        match self {
            Fault::KillLeader | Fault::KillStandby => "SIGKILL of leader and standby",
            Fault::PauseLeader => "SIGSTOP of the leader past its lease",
            Fault::RestartApiserver => "kube-apiserver restarts",
            Fault::PauseApiserver => "kube-apiserver stopped (request timeouts)",
            Fault::RestartEtcd => "etcd restart",
            Fault::RestartControllerManager => "kube-controller-manager restart",
            Fault::Throttle => "API Priority and Fairness 429s",
            Fault::ExpireWatches => "watches expired (410, relist)",
            Fault::LogsSlow => "slow pod log endpoint",
            Fault::LogsDown => "pod log endpoint down",
            Fault::LogsHang => "pod log endpoint hangs",
            _ => "user actions only",
        }
    }
}

/// A fault phase: one fault of the control plane, repeated or lasting a while, with user
/// actions among its steps; a heal and the convergence check follow it.
struct Phase {
    kind: Fault,
    /// Each step with the pause before it (ms).
    steps: Vec<(u64, Fault)>,
}

/// SplitMix64: the schedule's random stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The phases of `settings` in an order drawn from the seed, the user actions spread over them.
fn schedule(settings: &ChaosSettings) -> Vec<Phase> {
    let mut rng = Rng(settings.seed);
    let mut phases: Vec<Phase> = Vec::new();
    let mut add = |kind: Fault, count: usize, per_phase: usize| {
        let mut left = count;
        while left > 0 {
            let n = left.min(per_phase);
            let steps = (0..n)
                .map(|i| match kind {
                    Fault::KillLeader if i % 2 == 1 => Fault::KillStandby,
                    k => k,
                })
                .map(|f| (0, f))
                .collect();
            phases.push(Phase { kind, steps });
            left -= n;
        }
    };
    add(Fault::KillLeader, settings.kills, KILLS_PER_PHASE);
    add(
        Fault::RestartApiserver,
        settings.api_restarts,
        API_RESTARTS_PER_PHASE,
    );
    add(Fault::PauseLeader, settings.pauses, 1);
    add(Fault::PauseApiserver, settings.api_pauses, 1);
    add(Fault::RestartEtcd, settings.etcd_restarts, 1);
    add(Fault::RestartControllerManager, settings.kcm_restarts, 1);
    add(Fault::Throttle, settings.throttles, 1);
    add(Fault::ExpireWatches, settings.watch_expiries, 1);
    let logs = [Fault::LogsSlow, Fault::LogsDown, Fault::LogsHang];
    for i in 0..settings.log_faults {
        add(logs[i % logs.len()], 1, 1);
    }
    if phases.is_empty() && settings.user_ops > 0 {
        phases.push(Phase {
            kind: Fault::Churn,
            steps: Vec::new(),
        });
    }
    let users = [
        Fault::DeleteCis,
        Fault::DeleteJob,
        Fault::DeleteScanPod,
        Fault::EditCisSpec,
        Fault::ForeignFinalizer,
        Fault::Rollout,
        Fault::Scale,
    ];
    let mut actions: Vec<Fault> = (0..settings.user_ops)
        .map(|i| users[(i + rng.below(users.len())) % users.len()])
        .collect();
    // One namespace deleted whole.
    if settings.user_ops > 0 {
        actions.push(Fault::DeleteNamespace);
    }
    for action in actions {
        let n = phases.len();
        let phase = &mut phases[rng.below(n)];
        let at = rng.below(phase.steps.len() + 1);
        phase.steps.insert(at, (0, action));
    }
    // Fisher-Yates.
    for i in (1..phases.len()).rev() {
        let j = rng.below(i + 1);
        phases.swap(i, j);
    }
    for phase in &mut phases {
        for step in &mut phase.steps {
            step.0 = 500 + rng.below(3_000) as u64;
        }
    }
    phases
}

/// One operator replica.
struct Replica {
    name: &'static str,
    operator: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    peak_rss: u64,
}

impl Replica {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.operator);
        // SAFETY: prctl(PR_SET_PDEATHSIG) in the forked child before exec only asks the kernel
        // to kill it when this process dies: no replica outlives a harness that was killed.
        unsafe {
            command.pre_exec(|| {
                die_with_parent();
                Ok(())
            });
        }
        let child = command
            .args(&self.args)
            .env_clear()
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", SCAN_NAMESPACE)
            .env("POD_NAME", self.name)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting replica {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it runs; an exit is an error (a crash loop would show here).
    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!(
                "replica {} exited on its own ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    fn sample(&mut self) {
        if let Some(s) = self.pid().and_then(proc_sample) {
            self.peak_rss = self.peak_rss.max(s.hwm);
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// Restarts a control-plane component of the cluster in `state` the way `up.sh` started it:
/// the same command line (read from /proc), its own session, output appended to its log, its
/// pid file updated (so `down.sh` stops it by PID).
/// `crash`: SIGKILL instead of SIGTERM; `edit` changes the arguments (none: the same). Returns
/// how long the old process took to stop. The new process is kept in `children` (reaped when it
/// is restarted again).
fn restart_component(
    state: &Path,
    name: &str,
    crash: bool,
    children: &mut BTreeMap<String, Child>,
    edit: impl FnOnce(&mut Vec<String>),
) -> Result<f64> {
    let pid_file = state.join("pids").join(format!("{name}.pid"));
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("{name} (pid {pid}) is not running"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow!("{name}: empty command line"))?;
    let mut args = args.to_vec();
    edit(&mut args);
    let stopping = Instant::now();
    let signal = if crash { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status();
    // As down.sh: SIGKILL after 15 s (a kube-apiserver that stopped listening at once may
    // take a minute more to exit).
    let deadline = stopping + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() {
        // Exited, not reaped yet (a zombie: its files, sockets included, are closed by then;
        // an empty command line comes earlier, while its listener may still be bound).
        if let Some(child) = children.get_mut(name) {
            if child.id() == pid && child.try_wait().ok().flatten().is_some() {
                break;
            }
        } else {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            if matches!(state, Some("Z") | Some("X") | None) {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            std::thread::sleep(Duration::from_millis(500));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop_s = stopping.elapsed().as_secs_f64();
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("logs-components").join(format!("{name}.log")))?;
    // A process that exits at once (its port not free yet) is started again, up to 5 times.
    let mut attempt = 0;
    let child = loop {
        attempt += 1;
        // SAFETY: setsid in the forked child before exec, as up.sh's `setsid` does.
        let mut child = unsafe {
            Command::new(program)
                .args(&args)
                .stdout(output.try_clone()?)
                .stderr(output.try_clone()?)
                .stdin(Stdio::null())
                .pre_exec(|| {
                    libc_setsid();
                    Ok(())
                })
                .spawn()?
        };
        std::thread::sleep(Duration::from_secs(2));
        match child.try_wait()? {
            None => break child,
            Some(status) if attempt < 5 => {
                log(format!(
                    "{name} exited at once ({status}); starting it again"
                ));
            }
            Some(status) => bail!("{name} does not start again ({status}); see its log"),
        }
    };
    std::fs::write(&pid_file, format!("{}\n", child.id()))?;
    // Not killed with this process: down.sh stops it by PID.
    if let Some(mut old) = children.insert(name.to_string(), child) {
        let _ = old.try_wait();
    }
    Ok(stop_s)
}

fn die_with_parent() {
    unsafe extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: a plain system call with integer arguments.
    unsafe {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    }
}

fn libc_setsid() {
    unsafe extern "C" {
        fn setsid() -> i32;
    }
    // SAFETY: setsid has no preconditions; in a forked child before exec it only detaches it
    // from this process's session, as up.sh's `setsid` does.
    unsafe {
        setsid();
    }
}

/// Waits until the API server answers /readyz.
async fn api_ready(client: &Client, within: Duration) -> Result<f64> {
    let t0 = Instant::now();
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        if let Ok(text) = client.request_text(req).await
            && text.starts_with("ok")
        {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > within {
            bail!("the API server was not ready within {}s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The UIDs of the scan Jobs that completed (succeeded).
async fn completed_scan_jobs(client: &Client) -> Result<BTreeSet<String>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    Ok(jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0)
        .filter_map(|j| j.uid())
        .collect())
}

/// Deletes the pods of the scan Jobs that completed since `before` was taken; how many Jobs
/// had pods deleted.
async fn delete_pods_of_scans_completed_since(
    client: &Client,
    before: &BTreeSet<String>,
) -> Result<usize> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let mut jobs = 0;
    for uid in completed_scan_jobs(client).await?.difference(before) {
        let selector = format!("batch.kubernetes.io/controller-uid={uid}");
        let of_job = pods.list(&ListParams::default().labels(&selector)).await?;
        for p in &of_job.items {
            pods.delete(&p.name_any(), &Default::default()).await?;
        }
        if !of_job.items.is_empty() {
            jobs += 1;
        }
    }
    Ok(jobs)
}

/// The current holder of the operator's Lease.
async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), SCAN_NAMESPACE);
    leases.get(LEASE_NAME).await.ok()?.spec?.holder_identity
}

/// Watches the scan Jobs and records every moment two unfinished, undeleted Jobs share a
/// digest.
fn watch_jobs(client: Client, violations: Arc<Mutex<Vec<String>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let jobs: Api<Job> = Api::namespaced(client, SCAN_NAMESPACE);
        let mut live: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut init: BTreeMap<String, (String, String)> = BTreeMap::new();
        let digest_of = |job: &Job| {
            job.annotations()
                .get(image_scanner::core::scan_job::ANNOTATION_DIGEST)
                .cloned()
                .unwrap_or_default()
        };
        let active = |job: &Job| {
            job.metadata.deletion_timestamp.is_none()
                && !job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter().any(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                    })
        };
        let mut stream = watcher(jobs, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else {
                continue;
            };
            let apply = |map: &mut BTreeMap<String, (String, String)>, job: Job| {
                let uid = job.uid().unwrap_or_default();
                if active(&job) {
                    map.insert(uid, (digest_of(&job), job.name_any()));
                } else {
                    map.remove(&uid);
                }
            };
            match event {
                watcher::Event::Apply(job) => apply(&mut live, job),
                watcher::Event::Delete(job) => {
                    live.remove(&job.uid().unwrap_or_default());
                }
                watcher::Event::Init => init.clear(),
                watcher::Event::InitApply(job) => apply(&mut init, job),
                watcher::Event::InitDone => live = std::mem::take(&mut init),
            }
            let mut by_digest: HashMap<&str, Vec<&str>> = HashMap::new();
            for (digest, name) in live.values() {
                by_digest.entry(digest).or_default().push(name);
            }
            for (digest, names) in by_digest {
                if names.len() > 1 {
                    let v = format!("two active scan Jobs for {digest}: {names:?}");
                    log(format!("VIOLATION {v}"));
                    if let Ok(mut all) = violations.lock() {
                        all.push(v);
                    }
                }
            }
        }
    })
}

/// Watches the CIS and records every result that went back: a CIS whose last successful scan
/// time moves back, or whose result disappears, for the same digest.
fn watch_results(
    client: Client,
    violations: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ContainerImageScan> = Api::all(client);
        let mut last: HashMap<String, (String, Option<jiff::Timestamp>)> = HashMap::new();
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let cis = match event {
                Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::InitApply(c)) => c,
                Ok(watcher::Event::Delete(c)) => {
                    last.remove(&c.uid().unwrap_or_default());
                    continue;
                }
                _ => continue,
            };
            let uid = cis.uid().unwrap_or_default();
            let digest = cis.spec.digest.clone();
            let success = cis
                .status
                .as_ref()
                .and_then(|s| s.last_successful_scan_time.as_ref())
                .map(|t| t.0);
            if let Some((d, Some(before))) = last.get(&uid)
                && *d == digest
                && success.is_none_or(|now| now < *before)
            {
                let v = format!(
                    "the result of CIS {}/{} went back from {before} to {success:?}",
                    cis.namespace().unwrap_or_default(),
                    cis.name_any()
                );
                log(format!("VIOLATION {v}"));
                if let Ok(mut all) = violations.lock() {
                    all.push(v);
                }
            }
            last.insert(uid, (digest, success));
        }
    })
}

/// Running containers (namespace, container, digest) of the populated namespaces.
async fn running_containers(client: &Client) -> Result<BTreeSet<(String, String, String)>> {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut out = BTreeSet::new();
    for pod in list_all(&pods, &ListParams::default()).await? {
        let ns = pod.namespace().unwrap_or_default();
        if !ns.starts_with(NS_PREFIX) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        for cs in pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default()
        {
            if cs.state.as_ref().is_some_and(|s| s.running.is_some())
                && let Some((_, hex)) = cs.image_id.split_once("sha256:")
            {
                out.insert((ns.clone(), cs.name.clone(), format!("sha256:{hex}")));
            }
        }
    }
    Ok(out)
}

/// Rollouts and scalings not done yet, and pods not running yet: until they are, a container
/// whose result is still to come is not among the running ones (a rollout of the last phase
/// would otherwise be scanned in the quiet period).
async fn unsettled_workloads(client: &Client) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let deployments: Vec<Deployment> = list_populated(client).await?;
    for d in deployments
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
    {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let done = status.observed_generation >= d.metadata.generation
            && status.updated_replicas.unwrap_or(0) == want
            && status.replicas.unwrap_or(0) == want;
        if !done {
            out.push(format!(
                "Deployment {}/{} rolling out",
                d.namespace().unwrap_or_default(),
                d.name_any()
            ));
        }
    }
    let pods: Vec<Pod> = list_populated(client).await?;
    for p in pods.iter().filter(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
    }) {
        out.push(format!(
            "pod {}/{} pending",
            p.namespace().unwrap_or_default(),
            p.name_any()
        ));
    }
    Ok(out)
}

/// What still keeps the cluster from converged: containers without a CIS showing a result of
/// their digest, and CIS that exist twice for one workload container.
async fn not_converged(client: &Client) -> Result<Vec<String>> {
    let mut missing = unsettled_workloads(client).await?;
    let containers = running_containers(client).await?;
    let all: Vec<ContainerImageScan> = list_populated(client).await?;
    let mut scanned: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut seen: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    for c in &all {
        let ns = c.namespace().unwrap_or_default();
        let w = &c.spec.workload;
        *seen
            .entry((
                ns.clone(),
                w.kind.clone(),
                w.name.clone(),
                w.container_name.clone(),
            ))
            .or_default() += 1;
        let ok = c.metadata.deletion_timestamp.is_none()
            && c.status.as_ref().is_some_and(|s| {
                s.last_successful_scan_time.is_some()
                    && s.last_scan_time == s.last_successful_scan_time
            });
        if ok {
            scanned.insert((ns, w.container_name.clone(), c.spec.digest.clone()));
        }
    }
    missing.extend(
        containers
            .difference(&scanned)
            .map(|(ns, c, d)| format!("{ns} container {c} digest {}", &d[..19.min(d.len())])),
    );
    missing.extend(
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((ns, k, n, c), count)| format!("{count} CIS for {ns}/{k}/{n} container {c}")),
    );
    Ok(missing)
}

/// A user action of the churn; `Ok(description)`.
async fn user_action(
    client: &Client,
    fault: Fault,
    rng: &mut Rng,
    digests: usize,
) -> Result<String> {
    let pick = |n: usize, rng: &mut Rng| rng.below(n);
    match fault {
        Fault::DeleteCis | Fault::EditCisSpec | Fault::ForeignFinalizer => {
            let all: Vec<ContainerImageScan> = list_populated(client).await?;
            if all.is_empty() {
                return Ok("no CIS yet".into());
            }
            let c = &all[pick(all.len(), rng)];
            let ns = c.namespace().unwrap_or_default();
            let name = c.name_any();
            let api: Api<ContainerImageScan> = Api::namespaced(client.clone(), &ns);
            match fault {
                Fault::DeleteCis => {
                    api.delete(&name, &Default::default()).await?;
                    Ok(format!("deleted CIS {ns}/{name}"))
                }
                Fault::EditCisSpec => {
                    edit_spec(&api, &name).await?;
                    Ok(format!("edited the spec of CIS {ns}/{name}"))
                }
                _ => {
                    // On, then off again a few seconds later (a stuck finalizer is the user's).
                    let on = json!({"metadata": {"finalizers": ["chaos.example.com/hold"]}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&on))
                        .await?;
                    let api2 = api.clone();
                    let name2 = name.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        let off = json!({"metadata": {"finalizers": null}});
                        let _ = api2
                            .patch(&name2, &PatchParams::default(), &Patch::Merge(&off))
                            .await;
                    });
                    Ok(format!("a foreign finalizer on CIS {ns}/{name} for 5 s"))
                }
            }
        }
        Fault::DeleteJob | Fault::DeleteScanPod => {
            let jobs: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
            let pods: Api<Pod> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
            if fault == Fault::DeleteJob {
                let all = jobs.list(&ListParams::default()).await?.items;
                if all.is_empty() {
                    return Ok("no scan Job to delete".into());
                }
                let j = &all[pick(all.len(), rng)];
                let dp = kube::api::DeleteParams::background();
                jobs.delete(&j.name_any(), &dp).await?;
                Ok(format!("deleted scan Job {}", j.name_any()))
            } else {
                let all = pods.list(&ListParams::default()).await?.items;
                if all.is_empty() {
                    return Ok("no scan pod to delete".into());
                }
                let p = &all[pick(all.len(), rng)];
                pods.delete(&p.name_any(), &Default::default()).await?;
                Ok(format!("deleted scan pod {}", p.name_any()))
            }
        }
        Fault::Rollout => {
            let digest = pick(digests, rng);
            roll_out(client, rng, digest).await
        }
        Fault::Scale => {
            let all: Vec<Deployment> = list_populated(client).await?;
            if all.is_empty() {
                return Ok("no Deployment".into());
            }
            let d = &all[pick(all.len(), rng)];
            let ns = d.namespace().unwrap_or_default();
            let name = d.name_any();
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let replicas = 1 + pick(4, rng);
            let patch = json!({"spec": {"replicas": replicas}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(format!("scaled {ns}/{name} to {replicas}"))
        }
        Fault::DeleteNamespace => {
            let api: Api<Namespace> = Api::all(client.clone());
            let all: Vec<Namespace> = api
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|n| {
                    n.name_any().starts_with(NS_PREFIX) && n.metadata.deletion_timestamp.is_none()
                })
                .collect();
            if all.len() < 2 {
                return Ok("no namespace to spare".into());
            }
            let n = all[pick(all.len(), rng)].name_any();
            api.delete(&n, &Default::default()).await?;
            Ok(format!("deleted namespace {n}"))
        }
        _ => Ok(String::new()),
    }
}

/// A user's edit of a CIS's spec (the operator applies its own spec again).
async fn edit_spec(api: &Api<ContainerImageScan>, name: &str) -> kube::Result<ContainerImageScan> {
    let patch = json!({"spec": {"tag": "edited-by-chaos"}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Rolls a Deployment drawn from `rng` out to the image of digest #`digest`.
async fn roll_out(client: &Client, rng: &mut Rng, digest: usize) -> Result<String> {
    let all: Vec<Deployment> = list_populated(client).await?;
    if all.is_empty() {
        return Ok("no Deployment".into());
    }
    let d = &all[rng.below(all.len())];
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let container = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": container, "image": image(digest)}
    ]}}}});
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(format!("rolled {ns}/{name} out to digest #{digest}"))
}

/// Digests no workload had before (numbered from the populated ones on): a rollout to one
/// makes a scan Job run and its log be read, during the fault at hand.
struct FreshDigests {
    next: usize,
    populated: usize,
    logs_dir: PathBuf,
}

impl FreshDigests {
    /// Rolls a Deployment out to the next fresh digest, whose scan log is a populated digest's.
    async fn roll_out(&mut self, client: &Client, rng: &mut Rng) -> String {
        let digest = self.next;
        self.next += 1;
        let log = |d: usize| self.logs_dir.join(format!("{}.log", digest_hex(d)));
        if let Err(e) = std::fs::copy(log(digest % self.populated), log(digest)) {
            return format!("no scan log for digest #{digest}: {e}");
        }
        match roll_out(client, rng, digest).await {
            Ok(what) => what,
            Err(e) => format!("a rollout to digest #{digest} failed: {e}"),
        }
    }
}

/// Compacts etcd at its current revision (its JSON gateway); returns the revision.
fn etcd_compact(state: &Path) -> Result<i64> {
    // Any key: the answer's header carries the store's revision.
    let range = etcd_post(state, "/v3/kv/range", &json!({"key": "AA==", "limit": 1}))?;
    let revision: i64 = range["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| anyhow!("etcd gave no revision: {range}"))?;
    etcd_post(
        state,
        "/v3/kv/compaction",
        &json!({"revision": revision.to_string()}),
    )?;
    Ok(revision)
}

/// Heal: every replica runs, none is stopped; the log endpoint answers.
fn heal(replicas: &mut [Replica], proxy: &LogProxy) -> Result<()> {
    proxy.set(LogMode::Pass);
    for r in replicas {
        r.signal("CONT");
        if r.child.is_none() {
            r.start()?;
        }
    }
    Ok(())
}

/// Seconds from now until every running container shows its result (`None`: not within
/// `bound`, then a violation is recorded).
async fn converge(
    client: &Client,
    replicas: &mut [Replica],
    bound: u64,
    after: &str,
    violations: &Mutex<Vec<String>>,
) -> Result<Option<f64>> {
    let healed = Instant::now();
    let mut last_missing: Vec<String>;
    let mut next_report = 10;
    loop {
        for r in replicas.iter_mut() {
            r.check_alive()?;
            r.sample();
        }
        match not_converged(client).await {
            // A replica that never finishes starting is no standby (the other one converges
            // alone): both have to be past their start. Their logs are read only then.
            Ok(missing) if missing.is_empty() => {
                let unstarted: Vec<String> = replicas
                    .iter()
                    .filter(|r| !finished_starting(&r.log))
                    .map(|r| {
                        format!(
                            "replica {} never told the engine of its leadership since its start",
                            r.name
                        )
                    })
                    .collect();
                if unstarted.is_empty() {
                    return Ok(Some(healed.elapsed().as_secs_f64()));
                }
                last_missing = unstarted;
            }
            Ok(missing) => last_missing = missing,
            Err(e) => last_missing = vec![format!("listing failed: {e}")],
        }
        // What a slow convergence waits for, every 10 s (what the bound's violation says only
        // once it is crossed).
        let waited = healed.elapsed().as_secs();
        if waited >= next_report {
            next_report = waited + 10;
            log(format!(
                "not yet converged {waited} s after the heal: {} left, e.g. {:?}",
                last_missing.len(),
                &last_missing[..last_missing.len().min(3)]
            ));
        }
        if healed.elapsed() > Duration::from_secs(bound) {
            let v = format!(
                "not converged {bound} s after the heal of {after}: {} left, e.g. {:?}",
                last_missing.len(),
                &last_missing[..last_missing.len().min(5)]
            );
            log(format!("VIOLATION {v}"));
            violations.lock().map_err(|_| anyhow!("lock"))?.push(v);
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether a replica's log, since its last start, shows the election telling the engine who
/// leads (the last step of a start).
fn finished_starting(log: &Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    since_last_start(&text).contains("leadership changed")
}

/// The part of a replica's log since its last start (all of it if it never restarted).
fn since_last_start(text: &str) -> &str {
    text.rfind("starting image-scanner-operator")
        .map_or(text, |at| &text[at..])
}

/// Since when a replica's log shows it leading: its last word on leadership since its last
/// start says it leads (`None`: not leading, or not yet told).
fn leading_since(log: &Path) -> Option<jiff::Timestamp> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = since_last_start(&text)
        .lines()
        .rfind(|l| l.contains("leadership changed"))?;
    let v: Value = serde_json::from_str(line).ok()?;
    if v["leading"] != true {
        return None;
    }
    v["timestamp"].as_str()?.parse().ok()
}

/// How long a leader has led before the kube-apiserver stop: its engine acts on the edits
/// then (a leader of a moment ago may still be taking over).
const LEADING_BEFORE_STOP: Duration = Duration::from_secs(5);

/// The lines of a replica's log that `matches` takes.
fn lines_with(log: &Path, matches: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| matches(l))
        .count()
}

/// What the steps of the fault phases act on.
struct Run<'a> {
    client: Client,
    out: &'a Path,
    state: &'a Path,
    replicas: Vec<Replica>,
    proxy: LogProxy,
    fresh: FreshDigests,
    digests: usize,
    rng: Rng,
    counts: BTreeMap<String, usize>,
    api_ready_s: Vec<f64>,
    /// The stops of kube-apiserver, for the fencing check.
    api_stops: Vec<Stop>,
    /// Control-plane processes restarted by the harness.
    components: BTreeMap<String, Child>,
}

impl Run<'_> {
    /// Waits (at most `within`) until a replica has led for [`LEADING_BEFORE_STOP`]; says
    /// which, or that none did.
    async fn wait_for_a_settled_leader(&self, within: Duration) -> String {
        let started = std::time::Instant::now();
        loop {
            let now = jiff::Timestamp::now();
            let settled = LEADING_BEFORE_STOP.as_secs() as i64;
            if let Some(r) = self.replicas.iter().find(|r| {
                leading_since(&r.log).is_some_and(|t| now.duration_since(t).as_secs() >= settled)
            }) {
                return format!("{} leading for {settled} s", r.name);
            }
            if started.elapsed() >= within {
                return format!(
                    "no replica led for {settled} s within {} s",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops kube-apiserver (SIGSTOP) for 31-35 s, past the operator's request timeout, while
    /// the operator writes: CIS specs are edited just before, and each edit is re-applied.
    /// A request that reaches the stopped server in its first seconds times out; one in
    /// flight may still be carried out once it runs again. Tried again (at most 3 times)
    /// until a request of the operator's has timed out: a stop that met no request proves
    /// nothing.
    async fn stop_apiserver(&mut self) -> Result<String> {
        let pid_file = self.state.join("pids/kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)?.trim().to_string();
        let signal = |s: &str| Command::new("kill").arg(format!("-{s}")).arg(&pid).status();
        let timeouts_logged = |replicas: &[Replica]| -> usize {
            replicas.iter().map(|r| lines_with(&r.log, timed_out)).sum()
        };
        let before = timeouts_logged(&self.replicas);
        let rolled = self.fresh.roll_out(&self.client, &mut self.rng).await;
        let mut tries = Vec::new();
        for attempt in 1..=3 {
            // A stop meets the operator's writes only if one replica leads: a stop longer
            // than the lease leaves none for a while after it (chaos-small seed 1063508541: a
            // stop 3 s after the replicas started, then two while no replica led or one had
            // just taken over — nothing timed out).
            let leader = self
                .wait_for_a_settled_leader(Duration::from_secs(90))
                .await;
            let edits = self.edit_specs(EDITS_BEFORE_STOP).await?;
            // Time for the first edits to reach the operator and its re-applies to leave.
            let lead_ms = 20 + self.rng.below(40) as u64;
            tokio::time::sleep(Duration::from_millis(lead_ms)).await;
            let secs = 31 + self.rng.below(5) as u64;
            let from = jiff::Timestamp::now();
            signal("STOP")?;
            tokio::time::sleep(Duration::from_secs(secs)).await;
            signal("CONT")?;
            self.api_stops.push(Stop {
                from,
                until: jiff::Timestamp::now(),
            });
            let ready = api_ready(&self.client, Duration::from_secs(90)).await?;
            let edited = futures::future::join_all(edits)
                .await
                .into_iter()
                .filter(|e| matches!(e, Ok(Ok(_))))
                .count();
            let timeouts = timeouts_logged(&self.replicas) - before;
            tries.push(format!(
                "{leader}; {edited} CIS specs edited, SIGSTOP {lead_ms} ms later for {secs} s, \
                 SIGCONT (ready {ready:.1} s after): {timeouts} requests timed out"
            ));
            if timeouts > 0 || attempt == 3 {
                break;
            }
        }
        Ok(format!("{rolled}; {}", tries.join("; then ")))
    }

    /// Edits the spec of `n` CIS drawn from the rng, each edit a task of its own (they run
    /// on while the caller goes on).
    async fn edit_specs(
        &mut self,
        n: usize,
    ) -> Result<Vec<tokio::task::JoinHandle<kube::Result<ContainerImageScan>>>> {
        let all: Vec<ContainerImageScan> = list_populated(&self.client).await?;
        let mut edits = Vec::new();
        for _ in 0..n.min(all.len()) {
            let c = &all[self.rng.below(all.len())];
            let api: Api<ContainerImageScan> =
                Api::namespaced(self.client.clone(), &c.namespace().unwrap_or_default());
            let name = c.name_any();
            edits.push(tokio::spawn(async move { edit_spec(&api, &name).await }));
        }
        Ok(edits)
    }

    /// Restarts kube-apiserver (`edit` changes its arguments) and waits until it is ready.
    async fn restart_apiserver(
        &mut self,
        crash: bool,
        edit: impl FnOnce(&mut Vec<String>),
    ) -> Result<String> {
        let stop_s = restart_component(
            self.state,
            "kube-apiserver",
            crash,
            &mut self.components,
            edit,
        )?;
        let ready = api_ready(&self.client, Duration::from_secs(90)).await?;
        self.api_ready_s.push(ready);
        Ok(format!(
            "{} and restart of kube-apiserver (stopped in {stop_s:.1} s, ready again {ready:.1} s after its start)",
            if crash { "SIGKILL" } else { "SIGTERM" }
        ))
    }

    /// Plays one step; `Ok(what happened)`.
    async fn step(&mut self, fault: Fault) -> Result<String> {
        let holder = lease_holder(&self.client).await;
        let leader = self
            .replicas
            .iter()
            .position(|r| Some(r.name) == holder.as_deref() && r.child.is_some());
        let rng = &mut self.rng;
        Ok(match fault {
            Fault::KillLeader | Fault::KillStandby => {
                let target = match (fault, leader) {
                    (Fault::KillLeader, Some(l)) => l,
                    (Fault::KillStandby, Some(l)) => 1 - l,
                    _ => rng.below(2),
                };
                let r = &mut self.replicas[target];
                r.kill();
                let name = r.name;
                // Back after 0.2-2 s, as a kubelet restarts a container.
                tokio::time::sleep(Duration::from_millis(200 + rng.below(1_800) as u64)).await;
                r.start()?;
                format!(
                    "SIGKILL {name} ({})",
                    if Some(target) == leader {
                        "leader"
                    } else {
                        "standby"
                    }
                )
            }
            Fault::PauseLeader => match leader {
                Some(l) => {
                    let r = &self.replicas[l];
                    r.signal("STOP");
                    let pause = LEASE_SECONDS as u64 + 5 + rng.below(10) as u64;
                    tokio::time::sleep(Duration::from_secs(pause)).await;
                    r.signal("CONT");
                    format!("SIGSTOP {} for {pause} s, then SIGCONT", r.name)
                }
                None => "no leader to pause".into(),
            },
            Fault::RestartApiserver => {
                // Every other one a crash.
                let crash = self.counts.get("RestartApiserver").copied().unwrap_or(0) % 2 == 1;
                self.restart_apiserver(crash, |_| {}).await?
            }
            Fault::PauseApiserver => self.stop_apiserver().await?,
            Fault::RestartEtcd | Fault::RestartControllerManager => {
                let name = if fault == Fault::RestartEtcd {
                    "etcd"
                } else {
                    "kube-controller-manager"
                };
                let crash = rng.below(2) == 1;
                let stop_s =
                    restart_component(self.state, name, crash, &mut self.components, |_| {})?;
                let ready = api_ready(&self.client, Duration::from_secs(90)).await?;
                format!(
                    "{} and restart of {name} (stopped in {stop_s:.1} s; API ready {ready:.1} s after)",
                    if crash { "SIGKILL" } else { "SIGTERM" }
                )
            }
            Fault::Throttle => {
                let manifest = self.out.join("throttle.yaml");
                let kubectl = self.state.join("bin/kubectl");
                let run = |verb: &str| {
                    Command::new(&kubectl)
                        .args([verb, "-f"])
                        .arg(&manifest)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false)
                };
                let secs = 10 + rng.below(10) as u64;
                if run("apply") {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    let _ = run("delete");
                    format!(
                        "API Priority and Fairness: the replicas limited to one seat (429 beyond) for {secs} s"
                    )
                } else {
                    "throttling could not be applied".into()
                }
            }
            Fault::ExpireWatches => {
                const NO_CACHE: &str = "--watch-cache=false";
                let revision = etcd_compact(self.state)?;
                let first = self
                    .restart_apiserver(true, |a| a.push(NO_CACHE.into()))
                    .await?;
                // Events on the watches before the watch cache comes back.
                let rolled = self.fresh.roll_out(&self.client, &mut self.rng).await;
                let secs = 5 + self.rng.below(6) as u64;
                tokio::time::sleep(Duration::from_secs(secs)).await;
                let second = self
                    .restart_apiserver(true, |a| a.retain(|x| x != NO_CACHE))
                    .await?;
                format!(
                    "etcd compacted at revision {revision}; {first} without its watch cache (each watch resumes from a compacted revision); {rolled}; after {secs} s, {second} with it"
                )
            }
            Fault::LogsSlow | Fault::LogsDown | Fault::LogsHang => {
                let mode = match fault {
                    Fault::LogsSlow => LogMode::Slow(Duration::from_secs(2 + rng.below(7) as u64)),
                    Fault::LogsDown => LogMode::Down,
                    _ => LogMode::Hang,
                };
                let secs = 20 + rng.below(21) as u64;
                let completed_before = completed_scan_jobs(&self.client).await;
                self.proxy.set(mode);
                // Scans whose logs are read while it lasts.
                let mut rolled = Vec::new();
                for _ in 0..2 {
                    rolled.push(self.fresh.roll_out(&self.client, &mut self.rng).await);
                }
                tokio::time::sleep(Duration::from_secs(secs)).await;
                // With no log readable, a scan that completed meanwhile is unread: a user
                // deleting its pod now loses its result, which must be scanned again within
                // the bound, not after the failed-scan back-off.
                let lost = match (mode, completed_before) {
                    (LogMode::Down, Ok(before)) => {
                        match delete_pods_of_scans_completed_since(&self.client, &before).await {
                            Ok(n) => format!(
                                "; deleted the unread pods of {n} scans completed meanwhile"
                            ),
                            Err(e) => format!("; deleting the unread scan pods failed: {e}"),
                        }
                    }
                    (LogMode::Down, Err(e)) => format!("; listing the scan Jobs failed: {e}"),
                    _ => String::new(),
                };
                self.proxy.set(LogMode::Pass);
                format!(
                    "pod log endpoint {mode:?} for {secs} s; {}{lost}",
                    rolled.join("; ")
                )
            }
            user => match user_action(&self.client, user, rng, self.digests).await {
                Ok(what) => what,
                Err(e) => format!("{user:?} failed: {e}"),
            },
        })
    }
}

pub(crate) async fn chaos(
    out: &Path,
    operator: &Path,
    state: &Path,
    settings: &ChaosSettings,
) -> Result<()> {
    let plan = read_json(&out.join("plan.json"))?;
    let digests = plan["digests"].as_u64().unwrap_or(1) as usize;
    let client = client().await?;
    let phases = schedule(settings);
    let steps: usize = phases.iter().map(|p| p.steps.len()).sum();
    log(format!(
        "chaos seed {}: {} phases, {steps} steps",
        settings.seed,
        phases.len()
    ));
    for (p, phase) in phases.iter().enumerate() {
        log(format!(
            "  phase {}: {}: {}",
            p + 1,
            phase.kind.phase_name(),
            phase
                .steps
                .iter()
                .map(|(_, f)| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let job_watch = watch_jobs(client.clone(), violations.clone());
    let result_watch = watch_results(client.clone(), violations.clone());
    let proxy = LogProxy::start(
        cluster_port(state, "KWOK_NODE_PORT")?,
        cluster_port(state, "KWOK_PORT")?,
    )
    .await?;

    let replicas: Vec<Replica> = ["chaos-a", "chaos-b"]
        .into_iter()
        .map(|name| {
            Ok(Replica {
                name,
                operator: operator.to_path_buf(),
                args: vec![
                    format!("--scan-job-namespace={SCAN_NAMESPACE}"),
                    "--scan-job-service-account=image-scanner-job".into(),
                    "--trivy-image=ghcr.io/aquasecurity/trivy:0.74.0".into(),
                    "--scan-workload-resources=deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch".into(),
                    format!("--active-scan-job-limit={}", settings.job_limit),
                    "--leader-elect=true".into(),
                    format!("--metrics-bind-address=127.0.0.1:{}", free_port()?),
                    format!("--health-probe-bind-address=127.0.0.1:{}", free_port()?),
                    "--log-format=json".into(),
                    "--log-level=info".into(),
                ],
                kubeconfig: state.join(format!("{name}.kubeconfig")),
                log: out.join(format!("{name}.log")),
                child: None,
                peak_rss: 0,
            })
        })
        .collect::<Result<_>>()?;
    let mut run = Run {
        client: client.clone(),
        out,
        state,
        replicas,
        proxy,
        fresh: FreshDigests {
            next: digests,
            populated: digests,
            logs_dir: state.join("logs"),
        },
        digests,
        rng: Rng(settings.seed ^ 0xc4a0),
        counts: BTreeMap::new(),
        api_ready_s: Vec::new(),
        api_stops: Vec::new(),
        components: BTreeMap::new(),
    };
    for r in &mut run.replicas {
        let _ = std::fs::remove_file(&r.log);
        r.start()?;
    }
    let t0 = Instant::now();
    let mut done = 0;
    let mut by_kind: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut phase_reports = Vec::new();
    for (p, phase) in phases.iter().enumerate() {
        let phase_t0 = Instant::now();
        let name = phase.kind.phase_name();
        for (pause_ms, fault) in &phase.steps {
            tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
            for r in &mut run.replicas {
                r.check_alive()?;
                r.sample();
            }
            let what = run.step(*fault).await?;
            *run.counts.entry(format!("{fault:?}")).or_default() += 1;
            done += 1;
            log(format!(
                "phase {}/{} ({name}) step {done}/{steps} t={:.0}s: {what}",
                p + 1,
                phases.len(),
                t0.elapsed().as_secs_f64()
            ));
        }
        // Heal; the clock of the bound starts.
        heal(&mut run.replicas, &run.proxy)?;
        let phase_s = phase_t0.elapsed().as_secs_f64();
        let converged = converge(
            &client,
            &mut run.replicas,
            settings.heal_bound,
            name,
            &violations,
        )
        .await?;
        match converged {
            Some(s) => log(format!(
                "phase {}/{} ({name}, {phase_s:.0} s): healed; converged {s:.1} s after the heal",
                p + 1,
                phases.len()
            )),
            None => log(format!(
                "phase {}/{} ({name}): not converged within {} s of the heal",
                p + 1,
                phases.len(),
                settings.heal_bound
            )),
        }
        by_kind.entry(name).or_default().push(converged);
        phase_reports.push(json!({
            "phase": name,
            "steps": phase.steps.len(),
            "seconds": phase_s,
            "convergence_after_heal_s": converged,
        }));
    }
    let fault_phase_s = t0.elapsed().as_secs_f64();
    let mut replicas = std::mem::take(&mut run.replicas);

    // Quiet period, after the settle time.
    tokio::time::sleep(Duration::from_secs(SETTLE_SECONDS)).await;
    let quiet_from = jiff::Timestamp::now();
    log(format!("quiet period: {} s", settings.quiet));
    for _ in 0..settings.quiet {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for r in &mut replicas {
            r.check_alive()?;
            r.sample();
        }
    }
    job_watch.abort();
    result_watch.abort();
    for r in &mut replicas {
        r.signal("TERM");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The audit log: fencing, quiet, rates.
    let records = read_audit(&state.join("audit.log"))?;
    let fenced = fencing(&records, &run.api_stops);
    for v in fenced.violations.iter().take(20) {
        log(format!("VIOLATION fencing: {v}"));
    }
    let quiet_writes: Vec<&AuditRecord> = records
        .iter()
        .filter(|w| {
            w.ok()
                && !w.is_read()
                && w.at > quiet_from
                && w.at < quiet_from + jiff::SignedDuration::from_secs(settings.quiet as i64)
                && w.resource != "leases"
                && w.resource != "events"
        })
        .collect();
    let rates = rates(&records);
    let mut all_violations = violations.lock().map_err(|_| anyhow!("lock"))?.clone();
    all_violations.extend(fenced.violations.iter().map(|v| format!("fencing: {v}")));
    all_violations.extend(rates.violations.iter().cloned());
    if !quiet_writes.is_empty() {
        all_violations.push(format!(
            "{} writes in the quiet period, e.g. {:?}",
            quiet_writes.len(),
            quiet_writes.iter().take(3).collect::<Vec<_>>()
        ));
    }
    // Log storms: a loop that retries without back-off shows in the replica's log (a refused
    // or unreachable API server never sees those requests).
    let mut loudest_second = 0;
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        let mut per_second: BTreeMap<&str, usize> = BTreeMap::new();
        for line in text.lines() {
            if let Some(at) = line
                .strip_prefix("{\"timestamp\":\"")
                .and_then(|l| l.get(..19))
            {
                *per_second.entry(at).or_default() += 1;
            }
        }
        if let Some((at, n)) = per_second.iter().max_by_key(|(_, n)| **n) {
            loudest_second = loudest_second.max(*n);
            if *n > MAX_LOG_LINES_PER_SECOND {
                all_violations.push(format!(
                    "replica {} logged {n} lines in the second {at}: a loop without back-off",
                    r.name
                ));
            }
        }
    }
    // A fault that did not happen proves nothing: each one leaves a trace.
    let expired: BTreeMap<&str, usize> = replicas
        .iter()
        // Watch failures with 410 Gone (`Expired`): each one a relist.
        .map(|r| {
            let expired = |l: &str| l.contains("watch failed") && l.contains(": Expired");
            (r.name, lines_with(&r.log, expired))
        })
        .collect();
    let timeouts: BTreeMap<&str, usize> = replicas
        .iter()
        .map(|r| (r.name, lines_with(&r.log, timed_out)))
        .collect();
    let proxy_counts = &run.proxy.counts;
    let traces = [
        (
            Fault::ExpireWatches,
            expired.values().sum::<usize>(),
            "no watch of either replica failed with 410 Gone",
        ),
        (
            Fault::LogsSlow,
            proxy_counts.delayed.load(Ordering::Relaxed) as usize,
            "no log request was delayed",
        ),
        (
            Fault::PauseApiserver,
            timeouts.values().sum::<usize>(),
            "no request of the operator's timed out",
        ),
        (
            Fault::LogsDown,
            proxy_counts.refused.load(Ordering::Relaxed) as usize,
            "no log request was refused",
        ),
        (
            Fault::LogsHang,
            proxy_counts.held.load(Ordering::Relaxed) as usize,
            "no log request was held",
        ),
    ];
    for (fault, seen, missing) in traces {
        if run.counts.contains_key(&format!("{fault:?}")) && seen == 0 {
            all_violations.push(format!(
                "the fault '{}' was not exercised: {missing}",
                fault.phase_name()
            ));
        }
    }
    let convergence_by_kind: BTreeMap<&str, Value> = by_kind
        .iter()
        .map(|(kind, times)| {
            let ok: Vec<f64> = times.iter().flatten().copied().collect();
            (
                *kind,
                json!({
                    "phases": times.len(),
                    "max_s": ok.iter().copied().reduce(f64::max),
                    "not_converged": times.len() - ok.len(),
                }),
            )
        })
        .collect();
    let result = json!({
        "seed": settings.seed,
        "faults": run.counts,
        "phases": phases.len(),
        "fault_phase_s": fault_phase_s,
        "heal_bound_s": settings.heal_bound,
        "convergence_by_kind": convergence_by_kind,
        "phase_results": phase_reports,
        "api_ready_after_restart_s": run.api_ready_s,
        "operator_writes": records.iter().filter(|w| w.ok() && !w.is_read() && w.resource != "leases").count(),
        "refused_writes": records.iter().filter(|w| !w.ok() && !w.is_read()).count(),
        "requests": rates.report,
        "watch_410s_per_replica": expired,
        "request_timeouts_per_replica": timeouts,
        "log_endpoint_connections": proxy_counts.report(),
        "most_log_lines_per_second": loudest_second,
        "quiet_writes": quiet_writes.len(),
        "writes_carried_out_after_a_stop": fenced.carried_out_after_a_stop,
        "peak_rss_mib": replicas.iter().map(|r| (r.name, r.peak_rss as f64 / 1048576.0)).collect::<BTreeMap<_, _>>(),
        "violations": all_violations,
    });
    write_json(&out.join("chaos.json"), &result)?;
    log(format!(
        "chaos result: {}",
        serde_json::to_string_pretty(&result)?
    ));
    if !all_violations.is_empty() {
        // The first few again, last: a CI log's tail is often all there is to read.
        let first: Vec<String> = all_violations
            .iter()
            .take(5)
            .map(|v| {
                format!(
                    "\n  - {}",
                    image_scanner::core::status::bound_message(v, 400)
                )
            })
            .collect();
        bail!(
            "{} violations (seed {}; replay: SEED={} and the same make target, \
             make chaos or make chaos-small), the first:{}",
            all_violations.len(),
            settings.seed,
            settings.seed,
            first.concat()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_leads_since_its_last_word_on_leadership_after_its_last_start() {
        let dir = std::env::temp_dir().join(format!("chaos-leading-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("replica.log");
        let line = |at: &str, message: &str, leading: Option<bool>| {
            let mut v = json!({"timestamp": at, "level": "INFO", "message": message});
            if let Some(l) = leading {
                v["leading"] = json!(l);
            }
            v.to_string()
        };
        let start = line(
            "2026-12-06T10:00:00Z",
            "starting image-scanner-operator",
            None,
        );
        let lost = line("2026-12-06T10:00:01Z", "leadership changed", Some(false));
        let led = line("2026-12-06T10:00:02Z", "leadership changed", Some(true));
        let cases = [
            (vec![&start, &lost], None),
            (vec![&start, &lost, &led], Some("2026-12-06T10:00:02Z")),
            (vec![&start, &led, &lost], None),
            // Restarted since it led: not told yet.
            (vec![&start, &lost, &led, &start], None),
        ];
        for (lines, want) in cases {
            let text: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
            std::fs::write(&log, text.join("\n")).expect("write");
            let want = want.map(|t| t.parse::<jiff::Timestamp>().expect("time"));
            assert_eq!(leading_since(&log), want, "{text:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
