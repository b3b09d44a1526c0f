//! Property test of the per-CIS lifecycle (pending → scanning → scanned/failed → due →
//! scanning) with proptest-state-machine: random sequences of pod digests, Job outcomes, CIS
//! deletion and re-creation, time jumps and engine restarts, against a small in-memory API that
//! executes the engine's commands. Results are matched by CIS UID (write precondition) and
//! digest: a Job's result never lands on a CIS of another digest, even when the CIS was deleted
//! and re-created under the same name while the Job ran.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

use super::{Engine, EngineConfig};
use crate::crd::{ContainerImageScanStatus, Severity, Vulnerability};
use crate::image_ref::{DigestKind, container_image};
use crate::port::{
    Action, CisView, ContainerKind, ContainerView, JobView, Observation, Outcome, PodView,
    ScanContainerState, ScanPodView,
};
use crate::test_kit::fake_api::FakeApi;
use crate::time::Timestamp;

const NS: &str = "team";
const DIGESTS: [&str; 3] = [
    "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "sha256:2222222222222222222222222222222222222222222222222222222222222222",
    "sha256:3333333333333333333333333333333333333333333333333333333333333333",
];

/// What happens next in the world.
#[derive(Clone, Debug)]
pub enum Op {
    /// The workload pod is replaced by one running digest `n`.
    RunDigest(usize),
    /// Every running scan Job finishes, successfully or not.
    FinishJobs(bool),
    /// Someone deletes the CIS; the pods still run, so it comes back with a new UID.
    RecreateCis,
    /// Time passes.
    Advance(u64),
    /// The operator restarts (memory lost, everything relisted).
    Restart,
}

/// The reference model: which digest runs and the engine's flow-control window (the
/// invariants are checked on the system itself; the model only steers generation).
#[derive(Clone, Debug)]
pub struct Model {
    digest: Option<usize>,
    /// `max_inflight`: a window of one or two makes most work wait for a free slot.
    window: usize,
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(1usize), Just(2), Just(32)]
            .prop_map(|window| Model {
                digest: None,
                window,
            })
            .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        prop_oneof![
            3 => (0..DIGESTS.len()).prop_map(Op::RunDigest),
            4 => any::<bool>().prop_map(Op::FinishJobs),
            1 => Just(Op::RecreateCis),
            2 => prop_oneof![Just(1u64), Just(60), Just(600), Just(13 * 3600)].prop_map(Op::Advance),
            1 => Just(Op::Restart),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        if let Op::RunDigest(d) = op {
            state.digest = Some(*d);
        }
        state
    }
}

/// One workload pod, its CIS objects, scan Jobs and scan pods, in the test kit's API server,
/// and what the checks need to remember.
pub struct World {
    engine: Engine,
    /// The engine's `max_inflight`.
    window: usize,
    api: FakeApi,
    /// The running workload pod.
    pod: Option<PodView>,
    /// Digest of every Job ever created, by UID.
    job_digests: BTreeMap<String, String>,
    /// Newest finished Job per digest: (UID, succeeded).
    newest_result: BTreeMap<String, (String, bool)>,
    /// Highest `lastScanTime` seen per CIS UID.
    seen_scan_time: BTreeMap<String, Timestamp>,
    /// Jobs created and successful scan logs served since the engine last (re)started: what
    /// its operational counters must show.
    jobs_created_since_start: u64,
    reports_served_since_start: u64,
    /// Spec writes (applied CIS, done deletes) and applied statuses since the engine started.
    spec_writes_since_start: u64,
    status_writes_since_start: u64,
    /// UIDs of the CIS objects a `ScanFailed` Event was recorded for.
    scan_failed_events: BTreeSet<String>,
    /// Every Event recorded: (reason, CIS UID).
    recorded_events: Vec<(String, String)>,
    /// The scan container image of every Job created, in order.
    job_images: Vec<String>,
    /// When the CIS were last deleted by hand (`Op::RecreateCis`).
    deleted_by_hand: Option<Timestamp>,
}

fn report() -> Vec<u8> {
    let vulns = vec![Vulnerability {
        vulnerability_id: "CVE-1".into(),
        pkg_name: "openssl".into(),
        installed_version: "1".into(),
        severity: Severity::Critical,
        pkg_path: String::new(),
        fixed_version: "2".into(),
        title: String::new(),
        primary_url: String::new(),
        suppressed_by: None,
        suppressed_justification: None,
    }];
    serde_json::to_vec(&vulns).unwrap_or_default()
}

fn config(window: usize) -> EngineConfig {
    let mut cfg = EngineConfig::for_tests("scans");
    cfg.max_inflight = window;
    cfg.owner_update_delay = Duration::ZERO;
    cfg.write_reports = true;
    cfg
}

impl World {
    fn new(window: usize) -> World {
        let mut w = World {
            engine: Engine::new(config(window)),
            window,
            api: FakeApi::new(Timestamp::from_secs(1_800_000_000)),
            pod: None,
            job_digests: BTreeMap::new(),
            newest_result: BTreeMap::new(),
            seen_scan_time: BTreeMap::new(),
            deleted_by_hand: None,
            jobs_created_since_start: 0,
            reports_served_since_start: 0,
            spec_writes_since_start: 0,
            status_writes_since_start: 0,
            scan_failed_events: BTreeSet::new(),
            recorded_events: Vec::new(),
            job_images: Vec::new(),
        };
        w.relist();
        w
    }

    /// The operator restarts: its memory and undelivered events are lost, everything is
    /// relisted.
    fn restart(&mut self) {
        self.engine = Engine::new(config(self.window));
        self.jobs_created_since_start = 0;
        self.reports_served_since_start = 0;
        self.spec_writes_since_start = 0;
        self.status_writes_since_start = 0;
        self.relist();
    }

    /// A fresh engine sees everything through a complete list, as after a restart.
    fn relist(&mut self) {
        self.api.relist(&mut self.engine);
        let now = self.api.now;
        self.engine.observe(Observation::CachesSynced, now);
        self.engine
            .observe(Observation::Leadership { leading: true }, now);
    }

    /// The CIS objects with their stored status.
    fn cis(&self) -> impl Iterator<Item = (&CisView, &ContainerImageScanStatus)> {
        self.api.cis.values().map(|c| (&c.view, &c.status))
    }

    fn run_digest(&mut self, d: usize) {
        let image = format!("registry.test/app@{}", DIGESTS[d]);
        self.run_container(&image, &image, &image);
    }

    /// The workload pod is replaced by one whose container has these spec image, status image
    /// and status image ID.
    fn run_container(&mut self, spec_image: &str, status_image: &str, status_image_id: &str) {
        if let Some(old) = self.pod.take() {
            // Kubernetes' garbage collector: CIS owned only by the old pod go with it.
            self.api.delete_pod(&old.namespace, &old.name);
        }
        let uid = self.api.next_uid("pod");
        let now = self.api.now;
        let pod = PodView {
            namespace: NS.into(),
            name: format!("app-{uid}"),
            uid,
            resource_version: None,
            labels: Default::default(),
            controller: None,
            created: now,
            deleting: false,
            node_name: Some("node-1".into()),
            phase: Some("Running".into()),
            ready: true,
            start_time: Some(now),
            containers: vec![ContainerView {
                kind: ContainerKind::Regular,
                name: "app".into(),
                spec_image: Some(spec_image.into()),
                status_image: status_image.into(),
                status_image_id: status_image_id.into(),
                waiting_reason: None,
            }]
            .into(),
            ignore_unfixed: false,
            pull_credentials: None,
        };
        self.api.put_pod(pod.clone());
        self.pod = Some(pod);
    }

    fn finish_jobs(&mut self, succeeded: bool) {
        let running: Vec<JobView> = self
            .api
            .jobs
            .values()
            .filter(|j| j.finished.is_none() && !j.deleting)
            .cloned()
            .collect();
        for job in running {
            let reason = if succeeded {
                ""
            } else {
                "BackoffLimitExceeded"
            };
            if let Some(d) = &job.digest {
                self.newest_result
                    .insert(d.clone(), (job.uid.clone(), succeeded));
            }
            let pod = ScanPodView {
                namespace: job.namespace.clone(),
                name: format!("{}-pod", job.name),
                uid: self.api.next_uid("scanpod"),
                resource_version: self.api.next_rv(),
                job_uid: Some(job.uid.clone()),
                job_name: Some(job.name.clone()),
                created: self.api.now,
                phase: Some(if succeeded { "Succeeded" } else { "Failed" }.into()),
                evicted: false,
                init: ScanContainerState {
                    exit_code: Some(0),
                    started: true,
                    ..Default::default()
                },
                scan: ScanContainerState {
                    exit_code: Some(if succeeded { 0 } else { 1 }),
                    started: true,
                    ..Default::default()
                },
            };
            let log = if succeeded {
                report()
            } else {
                b"FATAL scan failed".to_vec()
            };
            self.api
                .logs
                .insert((pod.namespace.clone(), pod.name.clone()), log);
            self.api.put_scan_pod(pod);
            self.api
                .finish_job(&job.namespace, &job.name, succeeded, reason, "");
        }
    }

    fn recreate_cis(&mut self) {
        self.deleted_by_hand = Some(self.api.now);
        let keys: Vec<(String, String)> = self.api.cis.keys().cloned().collect();
        for (namespace, name) in keys {
            self.api.delete_cis(&namespace, &name);
        }
    }

    /// Delivers watch events and executes commands until the engine has nothing to do now.
    fn settle(&mut self) {
        for _ in 0..500 {
            self.api.deliver(&mut self.engine);
            let now = self.api.now;
            let commands = self.engine.poll(now);
            assert!(
                commands.len() <= self.window,
                "{} commands from a window of {}",
                commands.len(),
                self.window
            );
            if commands.is_empty() && !self.api.has_watch_events() {
                return;
            }
            for c in commands {
                let outcome = self
                    .api
                    .execute(&c.action)
                    .expect("the test answers no verb itself");
                self.count(&c.action, &outcome);
                self.engine
                    .observe(Observation::Outcome { id: c.id, outcome }, now);
            }
        }
        panic!("the engine did not settle within 500 rounds (a hot loop)");
    }

    /// What the checks remember of an answered request.
    fn count(&mut self, action: &Action, outcome: &Outcome) {
        match (action, outcome) {
            (Action::ApplyCis { .. }, Outcome::CisApplied(_))
            | (Action::DeleteCis { .. }, Outcome::Done) => self.spec_writes_since_start += 1,
            (Action::ApplyCisStatus { .. }, Outcome::CisApplied(_)) => {
                self.status_writes_since_start += 1;
            }
            (Action::CreateJob { job }, Outcome::JobCreated(view)) => {
                self.jobs_created_since_start += 1;
                let scan_image = job
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.template.spec.as_ref())
                    .and_then(|pod| pod.containers.first())
                    .and_then(|c| c.image.clone());
                self.job_images.push(scan_image.unwrap_or_default());
                if let Some(d) = &view.digest {
                    self.job_digests.insert(view.uid.clone(), d.clone());
                }
            }
            (Action::FetchLog { .. }, Outcome::Log(log)) if *log == report() => {
                self.reports_served_since_start += 1;
            }
            (Action::RecordEvent { uid, event, .. }, Outcome::Done) => {
                if event.reason == "ScanFailed" {
                    self.scan_failed_events.insert(uid.clone());
                }
                self.recorded_events
                    .push((event.reason.clone(), uid.clone()));
            }
            _ => {}
        }
    }

    /// Moves time forward, firing the engine's timers on the way.
    fn advance(&mut self, secs: u64) {
        let end = self.api.now.plus(Duration::from_secs(secs));
        while let Some(at) = self.engine.next_wakeup().filter(|at| *at <= end) {
            self.api.now = at.max(self.api.now);
            self.settle();
        }
        self.api.now = end;
        self.settle();
    }

    fn check(&mut self) {
        // The operational gauges of a settled engine: synced, leading, nothing in flight or
        // waiting, every Job it created counted, a parsed report kept once one was read.
        let e = &self.engine;
        assert!(e.is_synced() && e.is_leading());
        assert_eq!((e.inflight(), e.queue_depth()), (0, 0), "settled");
        assert_eq!(e.stats().jobs_created, self.jobs_created_since_start);
        assert_eq!(
            (e.stats().spec_writes, e.stats().status_writes),
            (self.spec_writes_since_start, self.status_writes_since_start),
            "spec and status writes"
        );
        assert_eq!(
            e.report_cache_bytes() > 0,
            self.reports_served_since_start > 0,
            "report cache holds {} bytes after {} reports",
            e.report_cache_bytes(),
            self.reports_served_since_start
        );
        // At most one running Job per digest.
        let mut running: BTreeMap<&str, usize> = BTreeMap::new();
        for j in self
            .api
            .jobs
            .values()
            .filter(|j| j.finished.is_none() && !j.deleting)
        {
            *running
                .entry(j.digest.as_deref().unwrap_or(""))
                .or_default() += 1;
        }
        assert!(
            running.values().all(|n| *n <= 1),
            "two running Jobs for one digest: {running:?}"
        );
        for stored in self.api.cis.values() {
            let (c, full) = (&stored.view, &stored.status);
            // A result comes from a Job of the CIS's own digest.
            if let Some(job) = &full.last_scan_job_uid {
                assert_eq!(
                    self.job_digests.get(job),
                    Some(&c.spec.digest),
                    "CIS {} (digest {}) shows Job {job} of another digest",
                    c.name,
                    c.spec.digest
                );
            }
            // lastScanTime never goes back for one object.
            if let Some(t) = full.last_scan_time.as_ref().map(Timestamp::from_k8s) {
                let seen = self.seen_scan_time.entry(c.uid.clone()).or_insert(t);
                assert!(t >= *seen, "lastScanTime of {} went back", c.name);
                *seen = t;
            }
        }
        // Liveness within a settle: the running image's CIS exists and shows the newest
        // finished Job of its digest, or a Job for it is running.
        if let Some(pod) = &self.pod {
            let c = &pod.containers[0];
            let image =
                container_image(c.spec_image.as_deref(), &c.status_image, &c.status_image_id)
                    .expect("the test's container images parse");
            let digest = image.digest.as_str();
            let cis: Vec<(&CisView, &ContainerImageScanStatus)> = self
                .cis()
                .filter(|(c, _)| c.spec.digest == digest)
                .collect();
            // A CIS deleted by hand again and again comes back after a growing back-off (at
            // most five minutes), with a wake-up armed for it.
            let backing_off = self
                .deleted_by_hand
                .is_some_and(|at| self.api.now < at.plus(Duration::from_secs(360)))
                && self
                    .engine
                    .next_wakeup()
                    .is_some_and(|w| w <= self.api.now.plus(Duration::from_secs(300)));
            if cis.is_empty() && backing_off {
                return;
            }
            assert_eq!(cis.len(), 1, "one CIS for the running container");
            let running = running.contains_key(digest);
            let (view, full) = cis[0];
            if image.digest_kind == DigestKind::LocalImageId {
                // Never scanned; the CIS says why.
                assert!(!running, "a Job for the local image ID {digest}");
                let reasons: Vec<&str> = full
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| c.reason.as_str())
                    .collect();
                assert_eq!(reasons, ["NoRegistryDigest"], "CIS {}", view.name);
            } else if !running {
                let newest = self.newest_result.get(digest);
                assert!(
                    newest.is_some(),
                    "no Job and no result for the running digest"
                );
                let (job_uid, succeeded) = newest.cloned().unwrap_or_default();
                assert_eq!(
                    full.last_scan_job_uid.as_deref(),
                    Some(job_uid.as_str()),
                    "CIS {} shows the newest result",
                    view.name
                );
                let stalled = full
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Stalled");
                assert_eq!(stalled, !succeeded, "Stalled exactly when the scan failed");
                if stalled {
                    assert!(
                        self.scan_failed_events.contains(&view.uid),
                        "no ScanFailed Event for CIS {}",
                        view.name
                    );
                }
                if succeeded {
                    assert_eq!(full.last_successful_scan_time, full.last_scan_time);
                    let report = self
                        .api
                        .reports
                        .get(&(view.namespace.clone(), view.name.clone()))
                        .expect("a Report before the status shows the result");
                    assert_eq!(report["summary"]["fail"], 1);
                    let summary = full
                        .vulnerability_summary
                        .as_ref()
                        .expect("summary after success");
                    assert_eq!(summary.fixed_count, 1);
                }
            }
        }
    }
}

pub struct Lifecycle;

impl StateMachineTest for Lifecycle {
    type SystemUnderTest = World;
    type Reference = Model;

    fn init_test(model: &Model) -> World {
        World::new(model.window)
    }

    fn apply(mut world: World, _: &Model, op: Op) -> World {
        match op {
            Op::RunDigest(d) => world.run_digest(d),
            Op::FinishJobs(ok) => world.finish_jobs(ok),
            Op::RecreateCis => world.recreate_cis(),
            Op::Advance(secs) => {
                world.advance(secs);
                world.check();
                return world;
            }
            Op::Restart => world.restart(),
        }
        world.settle();
        // Invariants are checked here rather than in check_invariants: the monotonicity check
        // remembers the scan times it saw, which needs the world mutably.
        world.check();
        world
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]
    #[test]
    fn cis_lifecycle_holds_its_invariants(sequential 1..40 => Lifecycle);
}

/// The scenario the issue names: a Job's result arriving after its CIS was deleted and
/// re-created under the same name lands only if the new CIS has the Job's digest.
#[test]
fn a_result_for_a_recreated_cis_is_matched_by_digest() {
    let mut w = World::new(32);
    w.run_digest(0);
    w.settle();
    assert_eq!(w.api.jobs.len(), 1, "a Job for digest 0");
    // While the Job runs, the CIS is deleted and the pod moves to digest 1.
    w.recreate_cis();
    w.run_digest(1);
    w.settle();
    w.finish_jobs(true);
    w.settle();
    w.check();
    for (c, full) in w.cis() {
        if let Some(job) = &full.last_scan_job_uid {
            assert_eq!(w.job_digests[job], c.spec.digest);
        }
    }
    // Same digest: the re-created CIS legitimately gets the scan of its image.
    let mut w = World::new(32);
    w.run_digest(2);
    w.settle();
    w.recreate_cis();
    w.settle();
    w.finish_jobs(true);
    w.settle();
    w.check();
    let (c, full) = w.cis().next().expect("CIS re-created");
    assert_eq!(
        full.last_scan_job_uid
            .as_ref()
            .map(|j| w.job_digests[j].clone()),
        Some(c.spec.digest.clone())
    );
    assert!(c.uid != "cis-1", "a new object");
}

#[test]
fn owners_and_results_survive_a_restart_without_a_second_job() {
    let mut w = World::new(32);
    w.run_digest(0);
    w.settle();
    let jobs_before = w.job_digests.len();
    w.restart();
    w.settle();
    assert_eq!(
        w.job_digests.len(),
        jobs_before,
        "the running Job is adopted after a restart"
    );
    w.finish_jobs(true);
    w.settle();
    w.check();
    w.restart();
    w.settle();
    assert_eq!(
        w.job_digests.len(),
        jobs_before,
        "a fresh result is not scanned again"
    );
    w.advance(13 * 3600);
    assert_eq!(
        w.job_digests.len(),
        jobs_before + 1,
        "due after the interval"
    );
}

// The container status forms a real kubelet 1.36 with containerd reports
// (/work/shared/docs/real-node-notes.md), through the whole engine.
const REAL_PULLED: &str = "sha256:7e04c8b0e1d1f1aa1a6d1b2c3d4e5f60718293a4b5c6d7e8f9012345a6b7c8d9";
const REAL_OTHER: &str = "sha256:37a0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddee";
const REAL_OTHER_CONFIG: &str =
    "sha256:1509614a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
const REAL_PRELOADED_CONFIG: &str =
    "sha256:3558993a4b5c6d7e8f9012345a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7";

/// Pulled by tag; by digest while present by tag (containerd reports the tag); a fresh pull by
/// digest (containerd reports the image configuration digest as the image): each is scanned as
/// `<repository>@<manifest digest>`, a reference the node resolves, under a real name.
#[test]
fn real_containerd_forms_with_a_registry_digest_are_scanned_by_it() {
    let busybox = "127.0.0.1:5443/test/busybox";
    let by_digest = format!("{busybox}@{REAL_PULLED}");
    let other = format!("127.0.0.1:5443/test/other@{REAL_OTHER}");
    let rows = [
        (
            format!("{busybox}:1"),
            format!("{busybox}:1"),
            by_digest.clone(),
            by_digest.clone(),
        ),
        (
            by_digest.clone(),
            format!("{busybox}:1"),
            by_digest.clone(),
            by_digest.clone(),
        ),
        (
            other.clone(),
            REAL_OTHER_CONFIG.to_string(),
            other.clone(),
            other.clone(),
        ),
    ];
    for (spec, image, image_id, scanned) in rows {
        let mut w = World::new(32);
        w.run_container(&spec, &image, &image_id);
        w.settle();
        w.check();
        assert_eq!(
            w.job_images,
            std::slice::from_ref(&scanned),
            "{image} / {image_id}"
        );
        let (c, _) = w.cis().next().expect("a CIS");
        assert_eq!(
            format!("{}@{}", c.spec.name, c.spec.digest),
            scanned,
            "CIS name and digest"
        );
        assert!(!c.spec.name.contains("sha256"), "{}", c.spec.name);
        w.finish_jobs(true);
        w.settle();
        w.check();
    }
}

/// An image imported with `ctr` has only a local image ID (its configuration digest) as image
/// ID. Nothing resolves `name@<that>`: no Job is created for it, ever, and its CIS says so
/// (Stalled/NoRegistryDigest, one Warning Event) and is not rewritten afterwards, neither as
/// time passes nor after a restart.
#[test]
fn real_containerd_imported_image_is_not_scanned_by_its_local_image_id() {
    let mut w = World::new(32);
    let image = "localhost/test/preloaded:1";
    w.run_container(image, image, REAL_PRELOADED_CONFIG);
    w.settle();
    w.check();
    assert!(w.job_images.is_empty(), "Jobs: {:?}", w.job_images);
    let (c, full) = w
        .cis()
        .next()
        .map(|(c, s)| (c.clone(), s.clone()))
        .expect("a CIS");
    assert_eq!(
        (
            c.spec.name.as_str(),
            c.spec.digest.as_str(),
            c.spec.tag.as_deref()
        ),
        ("localhost/test/preloaded", REAL_PRELOADED_CONFIG, Some("1"))
    );
    let conditions = full.conditions.clone().unwrap_or_default();
    assert_eq!(conditions.len(), 1);
    let condition = &conditions[0];
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_str()
        ),
        ("Stalled", "True", "NoRegistryDigest")
    );
    assert!(
        condition.message.contains(REAL_PRELOADED_CONFIG)
            && condition.message.contains("localhost/test/preloaded"),
        "{}",
        condition.message
    );
    assert_eq!(full.last_scan_job_uid, None, "no scan ran");
    assert_eq!(
        w.recorded_events,
        [("NoRegistryDigest".to_string(), c.uid.clone())]
    );
    assert_eq!(
        w.engine.coverage(w.api.now).oldest_unscanned,
        None,
        "not waiting for a scan"
    );
    let writes = w.status_writes_since_start;
    w.advance(13 * 3600);
    assert!(
        w.job_images.is_empty(),
        "no Job after the scan interval either"
    );
    assert_eq!(
        w.status_writes_since_start, writes,
        "the status is written once"
    );
    w.restart();
    w.settle();
    w.check();
    assert!(w.job_images.is_empty(), "no Job after a restart");
    assert_eq!(
        w.status_writes_since_start, 0,
        "nothing rewritten after a restart"
    );
    assert_eq!(w.recorded_events.len(), 1);
}

/// A container whose image ID does not parse as a reference (here the Docker shim's
/// `docker-pullable://` form) cannot have a CIS. Its pod gets one Warning Event saying which
/// container goes unscanned and why — once per pod, not on every pod update or as time
/// passes — and a replacement pod with the same problem gets its own.
#[test]
fn a_container_that_cannot_be_scanned_is_reported_once_on_its_pod() {
    let mut w = World::new(32);
    let image = "reg.example/shim:1";
    let unparseable = "docker-pullable://reg.example/shim@sha256:zz";
    w.run_container(image, image, unparseable);
    // (Not w.check(): its liveness part expects a container that can have a CIS.)
    w.settle();
    assert!(w.cis().next().is_none(), "no CIS for it");
    assert!(w.job_images.is_empty(), "no Job for it");
    let first = w.pod.as_ref().map(|p| p.uid.clone()).expect("pod");
    assert_eq!(
        w.recorded_events,
        [("UnscannableImage".to_string(), first.clone())]
    );
    w.advance(13 * 3600);
    assert_eq!(w.recorded_events.len(), 1, "{:?}", w.recorded_events);

    w.run_container(image, image, unparseable);
    w.settle();
    let second = w.pod.as_ref().map(|p| p.uid.clone()).expect("pod");
    assert_ne!(first, second);
    assert_eq!(
        w.recorded_events,
        [
            ("UnscannableImage".to_string(), first),
            ("UnscannableImage".to_string(), second)
        ]
    );
}
