//! Scenario tests of the scan stage (`scans.rs`): a Job is driven to its end and the test checks
//! what the engine writes, and when. One branch of harvest, log reading, fan-out, Reports and
//! Events per test. The simulator's invariants are eventual (every CIS ends with a result of
//! its digest); these pin what the result says and that it is written at once, not later.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde_json::json;

use super::scans::jitter;
use super::tests::{D1, D2, T, at, cis, failed, job, leading_engine};
use super::*;
use crate::cis_status as status;
use crate::crd::{ContainerImageScanStatus, Severity, Vulnerability};
use crate::port::{
    CisStatusView, EventRegarding, JobFinish, JobView, ScanContainerState, ScanPodView, StreamId,
    WatchEvent,
};
use crate::scan_job::SCAN_CONTAINER;
use crate::test_kit::fake_api::{CIS_STREAM, FakeApi, JOB_STREAM};

/// What the engine reads of a failed scan's log (`FAILED_LOG_BYTES`).
const FAILED_LOG_LIMIT: usize = 64 * 1024;

/// The engine and the test kit's API server, for the CIS objects of namespace `ns`, the scan
/// Jobs and their pods; log reads are left to the test. Derefs to the server, so a test reads
/// `api.jobs` or moves `api.now`.
struct Api {
    e: Engine,
    server: FakeApi,
}

impl Deref for Api {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.server
    }
}

impl DerefMut for Api {
    fn deref_mut(&mut self) -> &mut FakeApi {
        &mut self.server
    }
}

impl Api {
    fn new(cfg: EngineConfig) -> Api {
        let mut server = FakeApi::new(at(1));
        server.hold("fetch_log");
        Api {
            e: leading_engine(cfg),
            server,
        }
    }

    /// The engine observes `observation` now.
    fn observe(&mut self, observation: Observation) {
        self.e.observe(observation, self.server.now);
    }

    /// The engine receives the watch events that happened since the last delivery.
    fn deliver(&mut self) {
        self.server.deliver(&mut self.e);
    }

    /// Creates (or replaces) CIS `name` of digest D1 with `status`.
    fn put_cis(&mut self, name: &str, status: CisStatusView) {
        let mut view = cis(name, &format!("uid-{name}"), D1, status);
        view.resource_version = self.next_rv();
        self.apply_cis(view);
    }

    /// The server stores CIS `view` as it is and the engine sees it at once.
    fn apply_cis(&mut self, view: CisView) {
        self.server.put_cis(view, None);
        self.deliver();
    }

    /// A Job of D1 that exists already (created before a restart of the engine).
    fn put_job(&mut self, view: JobView) {
        self.server.put_job(view);
        self.deliver();
    }

    fn put_pod(&mut self, view: ScanPodView) {
        self.server.put_scan_pod(view);
        self.deliver();
    }

    /// The scan pod watch relists: pods that are gone without a Delete event are forgotten.
    fn relist_pods(&mut self) {
        self.server.relist_scan_pods(&mut self.e);
    }

    fn delete_pod(&mut self, name: &str) {
        let job = self.job();
        self.server.delete_scan_pod(&job.namespace, name);
        self.deliver();
    }

    /// The newest Job.
    fn job(&self) -> JobView {
        self.jobs
            .values()
            .max_by_key(|j| (j.created, j.name.clone()))
            .cloned()
            .expect("a Job exists")
    }

    /// A pod of the newest Job whose scan container is in state `scan`.
    fn pod(&self, suffix: &str, scan: ScanContainerState) -> ScanPodView {
        self.pod_of(&self.job(), suffix, scan)
    }

    /// A pod of `job` whose scan container is in state `scan`.
    fn pod_of(&self, job: &JobView, suffix: &str, scan: ScanContainerState) -> ScanPodView {
        ScanPodView {
            namespace: job.namespace.clone(),
            name: format!("{}-{suffix}", job.name),
            uid: format!("{}-{suffix}", job.uid),
            resource_version: Some(1_000),
            job_uid: Some(job.uid.clone()),
            job_name: Some(job.name.clone()),
            created: self.now,
            phase: Some("Running".into()),
            evicted: false,
            init: ScanContainerState {
                exit_code: Some(0),
                started: true,
                ..ScanContainerState::default()
            },
            scan,
        }
    }

    /// The newest Job finishes now.
    fn finish(&mut self, succeeded: bool, reason: &str, message: &str) {
        let job = self.job();
        self.server
            .finish_job(&job.namespace, &job.name, succeeded, reason, message);
        self.deliver();
    }

    /// Polls and answers until the engine has nothing more to do now; returns the commands
    /// left to the test.
    fn run(&mut self) -> Vec<Command> {
        self.server.run(&mut self.e)
    }

    /// Answers one command as the server does; `None` for log reads.
    fn answer(&mut self, action: &Action) -> Option<Outcome> {
        self.server.execute(action)
    }

    /// Job `name` (already deleted for the engine's request, or by someone) goes, and the
    /// watch reports it and its pods.
    fn job_deleted(&mut self, name: &str) {
        let Some(job) = self.jobs.values().find(|j| j.name == name).cloned() else {
            return;
        };
        self.server.delete_job(&job.namespace, &job.name);
        self.deliver();
    }

    fn reply(&mut self, id: CommandId, outcome: Outcome) {
        self.observe(Observation::Outcome { id, outcome });
    }

    /// Time passes until the engine's next timer.
    fn wait_for_timer(&mut self) {
        let next = self.e.next_wakeup().expect("a timer is armed");
        assert!(next > self.now, "timer {next:?} is not in the future");
        self.now = next;
    }

    /// Every status write the engine asked for, answered or not: (CIS name, status).
    fn status_requests(&self) -> Vec<(String, ContainerImageScanStatus)> {
        self.requests
            .iter()
            .filter_map(|a| match a {
                Action::ApplyCisStatus { name, status, .. } => {
                    Some((name.clone(), (**status).clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Runs until idle (nothing left unanswered) and gives the status writes asked for so far
    /// as (CIS name, the Job UID each names).
    fn jobs_written(&mut self) -> Vec<(String, Option<String>)> {
        let left = self.run();
        assert!(left.is_empty(), "{:?}", super::tests::verbs(&left));
        self.status_requests()
            .into_iter()
            .map(|(name, s)| (name, s.last_scan_job_uid))
            .collect()
    }

    /// Every Report the engine asked to apply.
    fn report_requests(&self) -> Vec<serde_json::Value> {
        self.requests
            .iter()
            .filter_map(|a| match a {
                Action::ApplyReport { report, .. } => Some((**report).clone()),
                _ => None,
            })
            .collect()
    }

    /// Jobs created so far.
    fn jobs_created(&self) -> usize {
        self.created_jobs.len()
    }

    /// Runs until the engine has created a new Job (waiting for timers as needed).
    fn until_job_created(&mut self) -> JobView {
        let before = self.jobs_created();
        for _ in 0..10 {
            let left = self.run();
            assert!(
                left.is_empty(),
                "unexpected {:?}",
                super::tests::verbs(&left)
            );
            if self.jobs_created() > before {
                return self.job();
            }
            self.wait_for_timer();
        }
        panic!("no Job was created");
    }

    /// The one log read the engine asks for now: (command, pod, limit, previous run).
    fn log_read(&mut self) -> (CommandId, String, usize, bool) {
        let left = self.run();
        match left.as_slice() {
            [
                Command {
                    id,
                    action:
                        Action::FetchLog {
                            pod_name,
                            container,
                            limit_bytes,
                            previous,
                            ..
                        },
                },
            ] => {
                assert_eq!(container, SCAN_CONTAINER);
                (*id, pod_name.clone(), *limit_bytes, *previous)
            }
            other => panic!(
                "expected one log read, got {:?}",
                super::tests::verbs(other)
            ),
        }
    }

    /// A whole successful scan whose log is `log`.
    fn scan(&mut self, log: Vec<u8>) {
        self.until_job_created();
        self.finish_scan(log);
    }

    /// The newest Job's pod exits 0, the Job completes, and its log `log` is read and written:
    /// nothing is left to do.
    fn finish_scan(&mut self, log: Vec<u8>) {
        let pod = self.pod("ok", exited(0));
        self.put_pod(pod);
        self.finish(true, "Complete", "");
        let (id, _, _, _) = self.log_read();
        self.reply(id, Outcome::Log(log));
        assert!(self.run().is_empty());
    }

    /// The newest Job's pod exits 0 and the Job completes; its log is not read yet.
    fn succeed(&mut self) -> ScanPodView {
        let pod = self.pod("1", exited(0));
        self.put_pod(pod.clone());
        self.finish(true, "Complete", "");
        pod
    }

    /// The log read in flight answers a report with one critical finding, which CIS `a` shows.
    fn answer_the_log_read(&mut self) {
        let (id, ..) = self.log_read();
        self.reply(id, Outcome::Log(report(1, 2)));
        self.run();
        assert_eq!(self.stalled("a"), None);
        assert_eq!(self.critical_count("a"), Some(1), "the result is written");
    }

    /// The last status written to CIS `name`.
    fn status(&self, name: &str) -> &CisStatusView {
        &self
            .stored_cis("ns", name)
            .expect("the CIS exists")
            .view
            .status
    }

    /// `(reason, message)` of the `Stalled=True` condition CIS `name` shows.
    fn stalled(&self, name: &str) -> Option<(String, String)> {
        self.status(name)
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    }

    fn critical_count(&self, name: &str) -> Option<i32> {
        self.status(name)
            .summary
            .as_ref()
            .and_then(|s| s.severity_count.as_ref())
            .and_then(|m| m.get("CRITICAL"))
            .copied()
    }

    /// Serialized size of the details of the status writes requested for `name`.
    /// Serialized sizes of the Reports the engine asked to apply.
    fn report_sizes(&self) -> Vec<usize> {
        self.report_requests()
            .iter()
            .map(|r| serde_json::to_vec(r).map_or(0, |b| b.len()))
            .collect()
    }

    fn detail_sizes(&self, name: &str) -> Vec<usize> {
        self.status_requests()
            .iter()
            .filter(|(n, s)| n == name && s.vulnerabilities.is_some())
            .map(|(_, s)| serde_json::to_vec(&s.vulnerabilities).map_or(0, |b| b.len()))
            .collect()
    }
}

fn exited(code: i32) -> ScanContainerState {
    ScanContainerState {
        exit_code: Some(code),
        started: true,
        ..ScanContainerState::default()
    }
}

fn waiting(reason: &str, message: &str) -> ScanContainerState {
    ScanContainerState {
        waiting_reason: Some(reason.into()),
        waiting_message: Some(message.into()),
        ..ScanContainerState::default()
    }
}

/// A scan report (the JSON array the trivy template writes) with `critical` CRITICAL and
/// `low` LOW vulnerabilities.
fn report(critical: usize, low: usize) -> Vec<u8> {
    serde_json::to_vec(&findings(critical, low)).unwrap_or_default()
}

/// The findings of [`report`].
fn findings(critical: usize, low: usize) -> Vec<Vulnerability> {
    let vuln = |i: usize, severity: Severity| Vulnerability {
        vulnerability_id: format!("CVE-2026-{i:05}"),
        pkg_name: format!("package-with-a-long-name-{i}"),
        installed_version: "1.0.0-r1".into(),
        severity,
        pkg_path: String::new(),
        fixed_version: "1.0.1-r0".into(),
        title: format!("a title long enough to weigh something in the details, number {i}"),
        primary_url: format!("https://avd.aquasec.com/nvd/cve-2026-{i:05}"),
        suppressed_by: None,
        suppressed_justification: None,
    };
    (0..critical)
        .map(|i| vuln(i, Severity::Critical))
        .chain((0..low).map(|i| vuln(critical + i, Severity::Low)))
        .collect()
}

/// An API with CIS `a` (no result yet) whose first poll creates a Job.
fn api_with_job(cfg: EngineConfig) -> Api {
    let mut api = Api::new(cfg);
    api.put_cis("a", CisStatusView::default());
    api.until_job_created();
    api
}

fn config() -> EngineConfig {
    EngineConfig::for_tests("scans")
}

#[test]
fn a_succeeded_job_is_read_from_the_pod_that_exited_zero() {
    let cfg = config();
    let log_max_bytes = cfg.log_max_bytes;
    let mut api = api_with_job(cfg);
    let first = api.pod("1", exited(1));
    api.put_pod(first);
    api.now = at(2);
    let second = api.pod("2", exited(0));
    api.put_pod(second.clone());
    api.finish(true, "Complete", "");
    let (id, pod, limit, previous) = api.log_read();
    assert_eq!(
        (pod.as_str(), limit, previous),
        (second.name.as_str(), log_max_bytes, false)
    );
    api.reply(id, Outcome::Log(report(1, 2)));
    assert!(api.run().is_empty());
    assert_eq!(
        api.status("a").last_scan_job_uid.as_deref(),
        Some(api.job().uid.as_str())
    );
    assert_eq!(api.critical_count("a"), Some(1));
    assert_eq!(api.stalled("a"), None);
    assert_eq!(api.e.stats().scans_succeeded, 1);
    assert_eq!(api.e.stats().scans_failed, 0);
    assert_eq!(
        api.e.stats().status_writes,
        api.succeeded.get("apply_cis_status").copied().unwrap_or(0)
    );
}

#[test]
fn the_log_of_a_failed_attempt_read_while_the_job_runs_explains_the_failure() {
    // (current exit code, previous exit code) of the failed attempt: a pod that has not
    // restarted yet, and one that did (its log is in the previous run).
    for (current, last, previous) in [(Some(1), None, false), (None, Some(2), true)] {
        let mut api = api_with_job(config());
        let pod = api.pod(
            "1",
            ScanContainerState {
                exit_code: current,
                last_exit_code: last,
                started: true,
                ..ScanContainerState::default()
            },
        );
        api.put_pod(pod.clone());
        let (id, name, limit, prev) = api.log_read();
        assert_eq!(
            (name.as_str(), limit, prev),
            (pod.name.as_str(), FAILED_LOG_LIMIT, previous)
        );
        api.reply(id, Outcome::Log(b"FATAL: no space left on device".to_vec()));
        assert!(api.run().is_empty(), "the log is read once");
        assert_eq!(api.stalled("a"), None, "the Job still runs");
        // The Job fails; Kubernetes deletes its pod.
        api.now = at(30);
        api.delete_pod(&pod.name);
        api.finish(
            false,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
        assert!(api.run().is_empty(), "no pod left to read");
        assert_eq!(
            api.stalled("a"),
            Some(("Error".into(), "FATAL: no space left on device".into())),
            "previous run: {previous}"
        );
        assert_eq!(api.e.stats().scans_failed, 1);
        assert_eq!(api.e.stats().scans_succeeded, 0);
    }
}

/// Seen on the real node: the pod status still said "terminated" when the kubelet had
/// restarted the container, so the read got the new attempt's empty log. An empty log is read
/// again at the pod's next change (the previous run's), and not in a loop.
#[test]
fn an_empty_failed_attempt_log_is_read_again_when_the_pod_changes() {
    let mut api = api_with_job(config());
    let pod = api.pod("1", exited(1));
    api.put_pod(pod.clone());
    let (id, _, _, previous) = api.log_read();
    assert!(!previous);
    api.reply(id, Outcome::Log(Vec::new()));
    assert!(api.run().is_empty(), "no read loop on an empty log");
    // The restarted container shows up: its previous run holds the failure.
    let restarted = api.pod(
        "1",
        ScanContainerState {
            last_exit_code: Some(1),
            started: true,
            ..ScanContainerState::default()
        },
    );
    api.put_pod(restarted);
    let (id, name, _, previous) = api.log_read();
    assert_eq!((name.as_str(), previous), (pod.name.as_str(), true));
    api.reply(id, Outcome::Log(b"dial tcp: connection refused".to_vec()));
    assert!(api.run().is_empty(), "read once it says something");
    api.delete_pod(&pod.name);
    api.finish(false, "BackoffLimitExceeded", "backoff limit");
    assert!(api.run().is_empty());
    assert_eq!(
        api.stalled("a"),
        Some(("Error".into(), "dial tcp: connection refused".into()))
    );
}

#[test]
fn a_failed_job_is_explained_by_its_log_or_its_condition() {
    let limit_message = "Job has reached the specified backoff limit";
    // (scan container of the only pod, restarted, log, expected message)
    let cases: [(ScanContainerState, &str, &str); 3] = [
        (exited(1), "boom", "boom"),
        (
            ScanContainerState {
                last_exit_code: Some(1),
                started: true,
                ..ScanContainerState::default()
            },
            "boom again",
            "boom again",
        ),
        (
            exited(1),
            " \n",
            "scan Job 'JOB' failed: Job has reached the specified backoff limit",
        ),
    ];
    for (scan, log, expected) in cases {
        let mut api = api_with_job(config());
        // Finished before its pod is seen: no failed attempt was read while it ran.
        api.finish(false, "BackoffLimitExceeded", limit_message);
        let restarted = scan.exit_code.is_none();
        let pod = api.pod("1", scan);
        api.put_pod(pod.clone());
        let (id, name, limit, previous) = api.log_read();
        assert_eq!(
            (name.as_str(), limit, previous),
            (pod.name.as_str(), FAILED_LOG_LIMIT, restarted)
        );
        api.reply(id, Outcome::Log(log.as_bytes().to_vec()));
        assert!(api.run().is_empty());
        let expected = expected.replace("JOB", &api.job().name);
        assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
    }
}

#[test]
fn a_scan_that_never_started_is_explained_by_the_waiting_message_or_the_job_condition() {
    for (message, job_message, expected) in [
        ("secret \"pull\" not found", "", "secret \"pull\" not found"),
        ("", "", "scan Job 'JOB' failed: DeadlineExceeded"),
        (
            "",
            "Job was active longer than specified deadline",
            "scan Job 'JOB' failed: Job was active longer than specified deadline",
        ),
    ] {
        let mut api = api_with_job(config());
        let pod = api.pod("1", waiting("CreateContainerConfigError", message));
        api.put_pod(pod);
        api.finish(false, "DeadlineExceeded", job_message);
        assert!(api.run().is_empty(), "nothing to read");
        let expected = expected.replace("JOB", &api.job().name);
        assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
    }
}

/// Regression (CI, real node): an operator whose namespace filter leaves out `team-b` found a
/// finished Job of its digest there (another test's, its namespace being deleted), took its
/// result and stalled with "no pods found". Such a Job still counts while it runs (the simulator
/// changes the filter under running Jobs), but its result is not ours.
#[test]
fn a_job_in_a_namespace_outside_the_filter_is_not_taken_for_ours() {
    let mut cfg = config();
    cfg.include_namespaces = regex::Regex::new("^ns$").expect("regex");
    let mut api = Api::new(cfg);
    let mut foreign = completed_job("image-scan-nginx-1111", "job-foreign");
    foreign.namespace = "team-b".into();
    api.put_job(foreign);
    api.put_cis("a", CisStatusView::default());
    let job = api.until_job_created();
    assert_eq!(
        (job.namespace.as_str(), job.created),
        ("scans", at(1)),
        "a scan at once"
    );
    let stalled: Vec<_> = api
        .status_requests()
        .into_iter()
        .filter(|(_, s)| s.conditions.iter().flatten().any(|c| c.type_ == "Stalled"))
        .collect();
    assert!(stalled.is_empty(), "{stalled:?}");
}

#[test]
fn a_finished_job_without_pods_waits_for_the_pod_cache_before_it_counts() {
    for succeeded in [true, false] {
        let mut api = api_with_job(config());
        let job = api.job();
        api.now = at(20);
        api.finish(succeeded, "DeadlineExceeded", "");
        api.now = at(21);
        assert!(api.run().is_empty());
        assert_eq!(api.stalled("a"), None, "the pod may still show up");
        assert_eq!(
            api.e.next_wakeup(),
            Some(at(30)),
            "the cache gets ten seconds"
        );
        api.wait_for_timer();
        if succeeded {
            // A lost result: scanned again at once.
            let next = api.until_job_created();
            assert_ne!(next.uid, job.uid);
            assert!(api.now <= at(35), "{:?}", api.now);
            assert_eq!(api.stalled("a"), None);
        } else {
            assert!(api.run().is_empty());
            let expected = format!("scan Job '{}' failed: DeadlineExceeded", job.name);
            assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
        }
    }
}

/// Regression (`make test`, chaos-small seed 900454539): scan pods gone before their log was
/// read (a user deleted one; five went while two kube-apiserver restarts held up the reads)
/// were recorded as failed scans and rescanned only after the 5-minute failed-scan back-off,
/// past the 60 s bound after a heal. The scan worked: only its result was lost.
#[test]
fn a_lost_result_is_scanned_again_at_once_and_the_third_in_a_row_is_a_failure() {
    // How the result is lost: the pod gone before the Job finished (never read), or gone
    // when its log is read (404).
    for at_read in [false, true] {
        let mut api = api_with_job(config());
        for loss in 1..=MAX_LOST {
            let job = api.job();
            if at_read {
                api.succeed();
                let (id, ..) = api.log_read();
                api.reply(id, failed(ApiErrorKind::NotFound));
            } else {
                api.finish(true, "Complete", "");
                api.now = api.now.plus(Duration::from_secs(10));
            }
            let lost_at = api.now;
            if loss < MAX_LOST {
                let next = api.until_job_created();
                assert_ne!(next.uid, job.uid, "{at_read} loss {loss}: a new Job");
                assert!(
                    api.now.0 - lost_at.0 <= 5_000,
                    "{at_read} loss {loss}: at once (the old Job's name freed first), not after \
                     the failed-scan back-off: {} ms",
                    api.now.0 - lost_at.0
                );
                assert_eq!(api.stalled("a"), None, "{at_read} loss {loss}: no failure");
            } else {
                assert!(api.run().is_empty());
                let (reason, message) = api.stalled("a").expect("a failure");
                assert_eq!(reason, "Error");
                assert!(
                    message.ends_with("(the result of 3 scans in a row lost)"),
                    "{message}"
                );
                assert!(message.contains(&job.name), "{message}");
            }
        }
        assert_eq!(
            (api.e.stats().results_lost, api.e.stats().scans_failed),
            (2, 1),
            "{at_read}"
        );
    }
}

#[test]
fn a_result_read_ends_a_run_of_lost_ones() {
    let mut cfg = config();
    cfg.scan_interval = Duration::from_secs(3600);
    let mut api = api_with_job(cfg);
    for round in 0..3 {
        for _ in 1..MAX_LOST {
            api.finish(true, "Complete", "");
            api.now = api.now.plus(Duration::from_secs(10));
            api.until_job_created();
        }
        api.finish_scan(report(0, 1));
        assert_eq!(api.stalled("a"), None, "round {round}");
        api.until_job_created();
    }
    assert_eq!(api.e.stats().scans_failed, 0, "never three losses in a row");
}

/// `scans::MAX_LOST_RESULTS`.
const MAX_LOST: u32 = 3;

#[test]
fn a_log_that_cannot_be_read_ends_in_a_failure_that_says_why() {
    let cases = [
        (
            true,
            ApiErrorKind::LogTooLarge,
            "larger than 67108864 bytes (--scan-log-max-bytes)",
        ),
        (
            true,
            ApiErrorKind::TooLarge,
            "scan result of job 'JOB' lost: its log could not be read: injected",
        ),
        (
            false,
            ApiErrorKind::NotFound,
            "scan Job 'JOB' failed: BackoffLimitExceeded",
        ),
    ];
    for (succeeded, kind, expected) in cases {
        let mut api = api_with_job(config());
        let pod = api.pod("1", exited(if succeeded { 0 } else { 1 }));
        api.put_pod(pod);
        api.finish(succeeded, "BackoffLimitExceeded", "");
        let (id, ..) = api.log_read();
        api.reply(id, failed(kind));
        assert!(api.run().is_empty(), "{kind:?} is not retried");
        let expected = expected.replace("JOB", &api.job().name);
        let (reason, message) = api.stalled("a").expect("a failure is written at once");
        assert_eq!(reason, "Error");
        assert!(message.contains(&expected), "{kind:?}: {message}");
    }
}

#[test]
fn a_log_read_that_keeps_failing_is_retried_for_four_minutes_then_counts_as_failed() {
    let mut api = api_with_job(config());
    let pod = api.succeed();
    let finished = api.now;
    let mut waits = Vec::new();
    for attempt in 1..=11 {
        let (id, ..) = api.log_read();
        api.reply(id, failed(ApiErrorKind::ServerError));
        assert!(
            api.run().is_empty(),
            "attempt {attempt}: not re-read at once"
        );
        assert_eq!(
            api.stalled("a"),
            None,
            "attempt {attempt}: tried again later"
        );
        let before = api.now;
        api.wait_for_timer();
        waits.push((api.now.0 - before.0) / 1000);
    }
    // 1 s doubling, at most 30 s: a node answering again is read within 30 s.
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]);
    let (id, ..) = api.log_read();
    api.reply(id, failed(ApiErrorKind::ServerError));
    assert!(api.run().is_empty());
    api.wait_for_timer();
    let expected = format!(
        "the log of scan pod {} could not be read after 12 attempts",
        pod.name
    );
    assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
    assert!(
        (api.now.0 - finished.0) / 1000 >= 240,
        "given up after four minutes"
    );
}

#[test]
fn a_kubelet_that_refuses_a_finished_containers_log_is_asked_again() {
    let mut api = api_with_job(config());
    api.succeed();
    let (id, ..) = api.log_read();
    api.reply(id, failed(ApiErrorKind::Invalid));
    assert!(api.run().is_empty(), "not re-read at once");
    assert_eq!(api.stalled("a"), None, "not a failure yet");
    api.wait_for_timer();
    api.answer_the_log_read();
}

#[test]
fn a_log_endpoint_down_for_two_minutes_delays_the_result_without_failing_the_scan() {
    let mut api = api_with_job(config());
    api.succeed();
    let finished = api.now;
    while api.now.0 - finished.0 < 120_000 {
        let (id, ..) = api.log_read();
        api.reply(id, failed(ApiErrorKind::ServerError));
        assert!(api.run().is_empty());
        assert_eq!(api.stalled("a"), None, "no failure while it is retried");
        api.wait_for_timer();
    }
    api.answer_the_log_read();
}

#[test]
fn a_report_that_is_not_json_is_a_decode_error() {
    let mut api = api_with_job(config());
    api.finish_scan(b"panic: runtime error".to_vec());
    let (reason, message) = api.stalled("a").expect("failed");
    assert_eq!(reason, "ScanReportDecodeError");
    assert!(
        message.starts_with(&format!(
            "error decoding scan report JSON from job '{}': ",
            api.job().name
        )),
        "{message}"
    );
}

/// A Job of D1 that completed at `T`.
fn completed_job(name: &str, uid: &str) -> JobView {
    let mut view = job(name, uid, D1);
    view.finished = Some(JobFinish {
        succeeded: true,
        at: T,
        reason: "Complete".into(),
        message: String::new(),
    });
    view
}

/// After a restart: CIS `a` shows the success of finished Job `job-1`, CIS `b` (same digest)
/// is new. The details are not in memory, so the engine reads the Job's log again.
fn restarted_with_details_lost() -> (Api, CommandId) {
    let mut api = Api::new(config());
    // An older successful Job of the digest, still there: not the one to read.
    api.put_job(completed_job("a-0000", "job-0"));
    let pod0 = api.pod("0", exited(0));
    api.put_pod(pod0);
    api.put_job(completed_job("a-1111", "job-1"));
    let pod = api.pod("1", exited(0));
    api.put_pod(pod.clone());
    api.put_cis(
        "a",
        CisStatusView {
            observed_generation: Some(1),
            last_scan_job_uid: Some("job-1".into()),
            last_scan_time: Some(T),
            last_successful_scan_time: Some(T),
            conditions: Vec::new(),
            summary: None,
            details_bytes: 0,
            ..CisStatusView::default()
        },
    );
    api.put_cis("b", CisStatusView::default());
    let (id, name, ..) = api.log_read();
    assert_eq!(name, pod.name);
    (api, id)
}

#[test]
fn details_read_again_are_written_to_the_cis_that_lacks_them() {
    let (mut api, id) = restarted_with_details_lost();
    api.reply(id, Outcome::Log(report(2, 0)));
    assert!(api.run().is_empty());
    assert_eq!(api.status("b").last_scan_job_uid.as_deref(), Some("job-1"));
    assert_eq!(api.critical_count("b"), Some(2));
    assert_eq!(api.jobs.len(), 2, "no new scan");
}

/// With one write slot and room for one report in memory, digest D2's result waits for slots
/// to reach its three CIS while the scan of D1 (first in the digests' order) ends: D2's
/// writes go first and its report stays, so each log is read once (D1's read used to push D2's
/// report out, and D2's last CIS read its log a second time).
#[test]
fn a_result_waiting_for_write_slots_keeps_its_report_while_a_newer_log_is_read() {
    let mut cfg = config();
    cfg.max_inflight = 1;
    let one = super::cache::approximate_bytes(&findings(2, 0));
    cfg.report_cache_bytes = one + one / 4;
    let mut api = Api::new(cfg);
    for (name, digest) in [("b1", D2), ("b2", D2), ("b3", D2), ("a", D1)] {
        let mut view = cis(
            name,
            &format!("uid-{name}"),
            digest,
            CisStatusView::default(),
        );
        view.resource_version = api.next_rv();
        api.apply_cis(view);
    }
    assert!(api.run().is_empty());
    let job_of = |api: &Api, digest: &str| {
        api.jobs
            .values()
            .find(|j| j.digest.as_deref() == Some(digest))
            .cloned()
            .expect("a Job per digest")
    };
    let (job1, job2) = (job_of(&api, D1), job_of(&api, D2));
    let mut logs = BTreeMap::new();
    for (job, log) in [(&job2, report(2, 0)), (&job1, report(1, 0))] {
        let pod = api.pod_of(job, "ok", exited(0));
        logs.insert(pod.name.clone(), log);
        api.put_pod(pod);
    }
    api.server
        .finish_job(&job2.namespace, &job2.name, true, "Complete", "");
    api.deliver();
    let (id, pod, ..) = api.log_read();
    api.hold("apply_cis_status");
    api.reply(id, Outcome::Log(logs[&pod].clone()));
    let mut left = api.run();
    // D1's scan ends while D2's CIS wait for the slot.
    api.server
        .finish_job(&job1.namespace, &job1.name, true, "Complete", "");
    api.deliver();
    while let Some(c) = left.pop() {
        let outcome = match &c.action {
            Action::FetchLog { pod_name, .. } => Outcome::Log(logs[pod_name].clone()),
            action => api.server.answer_held(action),
        };
        api.reply(c.id, outcome);
        api.deliver();
        left.extend(api.run());
    }
    let reads: Vec<&String> = api
        .requests
        .iter()
        .filter_map(|a| match a {
            Action::FetchLog { pod_name, .. } => Some(pod_name),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 2, "one read per log: {reads:?}");
    for name in ["b1", "b2", "b3"] {
        assert_eq!(api.status(name).last_scan_job_uid, Some(job2.uid.clone()));
        assert_eq!(api.critical_count(name), Some(2), "{name}");
    }
    assert_eq!(api.status("a").last_scan_job_uid, Some(job1.uid.clone()));
}

#[test]
fn details_that_cannot_be_read_again_never_turn_a_success_into_a_failure() {
    for answer in [
        Outcome::Log(b"truncated {".to_vec()),
        failed(ApiErrorKind::LogTooLarge),
        failed(ApiErrorKind::NotFound),
    ] {
        let (mut api, mut id) = restarted_with_details_lost();
        // Every answer is a permanent failure to get the details: not read again, a new scan
        // gets them.
        let mut reads = 1;
        loop {
            api.reply(id, answer.clone());
            let left = api.run();
            assert!(
                api.stalled("a").is_none() && api.stalled("b").is_none(),
                "{answer:?}: a success never turns into a failure"
            );
            if api.jobs.len() > 2 {
                break;
            }
            assert!(
                left.is_empty(),
                "{answer:?}: read {reads} is not repeated at once"
            );
            api.wait_for_timer();
            let left = api.run();
            if api.jobs.len() > 2 {
                break;
            }
            id = match left.as_slice() {
                [
                    Command {
                        id,
                        action: Action::FetchLog { .. },
                    },
                ] => *id,
                other => panic!("{answer:?}: {:?}", super::tests::verbs(other)),
            };
            reads += 1;
            assert!(reads <= 1, "{answer:?}: read {reads} times");
        }
        assert_eq!(api.status("a").last_scan_job_uid.as_deref(), Some("job-1"));
    }
}

#[test]
fn results_are_learned_from_the_statuses_a_restart_finds() {
    let success = |at: Timestamp, job: &str| CisStatusView {
        observed_generation: Some(1),
        last_scan_job_uid: Some(job.into()),
        last_scan_time: Some(at),
        last_successful_scan_time: Some(at),
        conditions: Vec::new(),
        summary: None,
        details_bytes: 0,
        ..CisStatusView::default()
    };
    let failure = |at: Timestamp, job: &str| CisStatusView {
        last_successful_scan_time: None,
        conditions: super::tests::failed_status(job, at).conditions,
        ..success(at, job)
    };
    let creates = |cmds: &[Command]| {
        cmds.iter()
            .filter(|c| matches!(c.action, Action::CreateJob { .. }))
            .count()
    };
    let now = at(3600);
    // The first poll of an engine that finds these CIS of D1, in this order.
    let first_poll = |found: Vec<(&str, CisStatusView)>| {
        let mut e = leading_engine(config());
        for (name, status) in found {
            let view = cis(name, &format!("uid-{name}"), D1, status);
            super::tests::apply_cis(&mut e, view, now);
        }
        e.poll(now)
    };
    let writes_b = |cmds: &[Command], job: &str| {
        cmds.iter().any(|c| {
            matches!(&c.action, Action::ApplyCisStatus { name, status, .. }
                if name == "b" && status.last_scan_job_uid.as_deref() == Some(job))
        })
    };

    // A success an hour old, while the announcement of a rescan was still shown: not due.
    let mut status = success(at(0), "job-1");
    status.conditions = status::scan_job_created_status(
        &cis("a", "uid-a", D1, CisStatusView::default()),
        "a-1111",
        at(0),
    )
    .conditions
    .unwrap_or_default();
    assert_eq!(
        creates(&first_poll(vec![("a", status)])),
        0,
        "a success is not rescanned before the interval"
    );

    // The last scan is not the last successful one, and no condition says why: unknown.
    let mut status = success(at(60), "job-1");
    status.last_successful_scan_time = Some(at(0));
    assert_eq!(
        creates(&first_poll(vec![("a", status)])),
        1,
        "an unknown result is scanned at once"
    );

    // Two CIS of a digest show different failures: the newest counts (it is not due yet),
    // and the other CIS is brought up to it.
    let cmds = first_poll(vec![
        ("b", failure(at(0), "job-old")),
        ("a", failure(at(3540), "job-new")),
    ]);
    assert_eq!(
        creates(&cmds),
        0,
        "the newest failure is not due for a retry yet"
    );
    assert!(
        writes_b(&cmds, "job-new"),
        "{:?}",
        super::tests::verbs(&cmds)
    );

    // Two failures of the same second: the other CIS is brought in line with the one learned.
    let cmds = first_poll(vec![
        ("a", failure(at(3540), "job-2")),
        ("b", failure(at(3540), "job-1")),
    ]);
    assert!(writes_b(&cmds, "job-2"), "{:?}", super::tests::verbs(&cmds));
}

#[test]
fn a_finished_job_no_newer_than_the_known_result_is_not_read() {
    // CIS `a` shows job-2's success at T; job-1 (another CIS's name) finished at T too.
    let mut api = Api::new(config());
    api.put_job(completed_job("b-1111", "job-1"));
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    api.put_cis(
        "a",
        CisStatusView {
            observed_generation: Some(1),
            last_scan_job_uid: Some("job-2".into()),
            last_scan_time: Some(T),
            last_successful_scan_time: Some(T),
            conditions: Vec::new(),
            summary: None,
            details_bytes: 0,
            ..CisStatusView::default()
        },
    );
    let left = api.run();
    assert!(left.is_empty(), "{:?}", super::tests::verbs(&left));
    assert_eq!(api.status_requests().len(), 0);
}

/// A finished Job of D1 created and finished at the given seconds after T.
fn finished_job_at(name: &str, uid: &str, created: i64, finished: i64) -> JobView {
    let mut view = completed_job(name, uid);
    view.created = at(created);
    if let Some(f) = view.finished.as_mut() {
        f.at = at(finished);
    }
    view
}

#[test]
fn a_job_created_before_the_known_result_is_older_although_it_finished_later() {
    // A deposed leader's late create put a second Job of the digest in another placement:
    // job-new (created T+10) finished first and its result is shown; job-old (created T+5)
    // finished after it. Once job-new is gone, job-old is the newest finished Job left.
    let mut api = Api::new(config());
    api.now = at(40);
    api.put_job(finished_job_at("a-0000", "job-old", 5, 30));
    api.put_job(finished_job_at("a-1111", "job-new", 10, 20));
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    api.put_cis("a", super::tests::failed_status("job-new", at(20)));
    api.job_deleted("a-1111");
    let left = api.run();
    assert!(left.is_empty(), "{:?}", super::tests::verbs(&left));
    assert_eq!(
        api.status_requests().len(),
        0,
        "job-old's result written back"
    );
}

#[test]
fn a_result_of_a_later_job_stamped_by_a_slower_clock_is_the_newest() {
    // Replica clocks differ: CIS `b` shows job-old's failure stamped T+1000 by a replica
    // whose clock ran ahead; CIS `a` shows the failure of job-new (created after job-old)
    // stamped T+100. job-new's result is the newest: `b` gets it and `a` keeps it.
    let mut api = Api::new(config());
    api.now = at(200);
    api.put_job(finished_job_at("a-0000", "job-old", 5, 30));
    api.put_job(finished_job_at("a-1111", "job-new", 50, 90));
    api.put_cis("b", super::tests::failed_status("job-old", at(1000)));
    api.put_cis("a", super::tests::failed_status("job-new", at(100)));
    assert_eq!(api.jobs_written(), [("b".into(), Some("job-new".into()))]);
}

#[test]
fn a_result_of_a_job_gone_before_it_was_learned_is_still_ordered_by_the_jobs_age() {
    // Two replicas recorded failures in one second: CIS `b` shows job-old's, CIS `a` (written
    // later by the other replica) job-new's, whose Job this engine saw created and deleted
    // before that status arrived. Only job-new's creation time orders the two (sim seed 23127:
    // `a` was written back to job-old's failure).
    let mut api = Api::new(config());
    api.now = at(200);
    api.put_job(finished_job_at("a-0000", "job-old", 5, 30));
    api.put_cis("b", super::tests::failed_status("job-old", at(100)));
    api.put_job(finished_job_at("a-1111", "job-new", 50, 90));
    api.job_deleted("a-1111");
    api.put_cis("a", super::tests::failed_status("job-new", at(100)));
    assert_eq!(api.jobs_written(), [("b".into(), Some("job-new".into()))]);
}

#[test]
fn a_new_scan_after_a_result_stamped_in_the_future_is_read_and_stamped_after_it() {
    // A replica whose clock ran 15 minutes ahead wrote job-1's success; after a restart the
    // details are not in memory and job-1 is gone, so a new scan is needed. It finishes
    // (server time) long before that stamp: still the newest result, read once, and stamped
    // after the one it replaces.
    let mut api = Api::new(config());
    let future = at(900);
    api.put_cis(
        "a",
        CisStatusView {
            observed_generation: Some(1),
            last_scan_job_uid: Some("job-1".into()),
            last_scan_time: Some(future),
            last_successful_scan_time: Some(future),
            conditions: Vec::new(),
            summary: None,
            details_bytes: 0,
            ..CisStatusView::default()
        },
    );
    api.put_cis("b", CisStatusView::default());
    api.scan(report(2, 0));
    let new_job = api.job().uid;
    for name in ["a", "b"] {
        let status = api.status(name);
        assert_eq!(status.last_scan_job_uid.as_deref(), Some(new_job.as_str()));
        assert_eq!(status.last_scan_time, Some(at(901)));
    }
    assert_eq!(api.jobs_created(), 1, "the new scan's result was not taken");
}

#[test]
fn a_delete_of_a_later_job_of_the_same_name_removes_the_older_one() {
    // A watch that merged the events of one name delivers only the Delete of the Job that
    // took the name last: the Job indexed under it is gone too (else it holds a Job slot, and
    // the queue, forever). A late Delete of a predecessor removes nothing.
    let mut api = api_with_job(config());
    let older = api.job();
    let mut predecessor = older.clone();
    predecessor.uid = "job-before".into();
    predecessor.resource_version = Some(1);
    api.observe(Observation::Job {
        stream: JOB_STREAM,
        event: WatchEvent::Delete(predecessor),
    });
    assert!(api.e.index.job_by_uid(&older.uid).is_some());
    let mut later = older.clone();
    later.uid = "job-after".into();
    later.resource_version = older.resource_version.map(|rv| rv + 10);
    api.observe(Observation::Job {
        stream: JOB_STREAM,
        event: WatchEvent::Delete(later),
    });
    assert!(api.e.index.job_by_uid(&older.uid).is_none());
}

#[test]
fn a_late_copy_of_a_deleted_cis_does_not_replace_the_one_created_since() {
    // A deposed replica's status write on CIS `a` is answered after `a` was deleted and
    // created again (new UID, empty status): that answer, older than the new object, must
    // not stand for it, or the new CIS would never get its result.
    let mut api = Api::new(config());
    api.put_cis("a", CisStatusView::default());
    api.scan(report(1, 0));
    let old = api.stored_cis("ns", "a").expect("a").view.clone();
    let mut new = cis("a", "uid-a-2", D1, CisStatusView::default());
    new.resource_version = old.resource_version.map(|rv| rv + 10);
    api.apply_cis(new.clone());
    api.apply_cis(old);
    // The server holds the new CIS: the late copy only reached the engine.
    api.server.put_cis(new, None);
    api.lose_watch_events();
    assert_eq!(api.e.index.cis[&CisKey::new("ns", "a")].view.uid, "uid-a-2");
    assert!(api.run().is_empty());
    assert_eq!(api.critical_count("a"), Some(1));
    assert_eq!(
        api.status_requests().last().map(|(n, _)| n.as_str()),
        Some("a")
    );
}

#[test]
fn an_image_that_cannot_be_pulled_deletes_the_job_and_shows_why_at_once() {
    let cases = [
        (
            false,
            "Back-off pulling image \"x\"",
            "Back-off pulling image \"x\"",
        ),
        (
            true,
            "rpc error: not found",
            "init container: rpc error: not found",
        ),
        (false, "", "scan-image of pod POD cannot pull its image"),
    ];
    for (init, message, expected) in cases {
        let mut api = api_with_job(config());
        let mut pod = api.pod("1", ScanContainerState::default());
        let state = waiting("ImagePullBackOff", message);
        if init {
            pod.init = state;
        } else {
            pod.scan = state;
        }
        api.put_pod(pod.clone());
        // One poll: the Job is deleted and the failure written together.
        let cmds = api.e.poll(api.now);
        let delete = cmds
            .iter()
            .find(|c| matches!(c.action, Action::DeleteJob { .. }))
            .expect("the Job is deleted");
        assert!(
            cmds.iter()
                .any(|c| matches!(&c.action, Action::ApplyCisStatus { name, .. } if name == "a")),
            "{:?}",
            super::tests::verbs(&cmds)
        );
        // While the delete is in flight the pod changes again: no second delete.
        let delete_id = delete.id;
        let others: Vec<Command> = cmds.into_iter().filter(|c| c.id != delete_id).collect();
        for c in others {
            if let Some(outcome) = api.answer(&c.action) {
                api.reply(c.id, outcome);
            }
        }
        pod.resource_version = api.next_rv();
        api.put_pod(pod.clone());
        let again = api.e.poll(api.now);
        assert!(
            !again
                .iter()
                .any(|c| matches!(c.action, Action::DeleteJob { .. })),
            "{:?}",
            super::tests::verbs(&again)
        );
        api.reply(delete_id, Outcome::Done);
        let name = api.job().name;
        api.job_deleted(&name);
        assert!(api.run().is_empty());
        let expected = expected.replace("POD", &pod.name);
        assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
        assert_eq!(api.e.stats().scans_failed, 1, "recorded once");
    }
}

#[test]
fn a_scan_container_that_cannot_be_created_for_two_minutes_fails_the_scan() {
    // The kubelet retries CreateContainerConfigError (a missing ConfigMap of `envFrom`) and
    // CreateContainerError (e.g. a runtime without image volumes) without end; the Job would
    // hold its slot until its deadline. A first error may pass; one that lasts fails the scan.
    for (init, reason, message) in [
        (
            false,
            "CreateContainerConfigError",
            "configmap \"trivy-job-config\" not found",
        ),
        (true, "CreateContainerError", "failed to mount image volume"),
    ] {
        let mut api = api_with_job(config());
        let mut pod = api.pod("1", ScanContainerState::default());
        let state = waiting(reason, message);
        if init {
            pod.init = state;
        } else {
            pod.scan = state;
        }
        api.put_pod(pod.clone());
        let cmds = api.run();
        assert!(cmds.is_empty(), "{:?}", super::tests::verbs(&cmds));
        assert!(
            api.requests
                .iter()
                .all(|a| !matches!(a, Action::DeleteJob { .. }))
        );
        assert_eq!(api.stalled("a"), None, "not yet: it may pass");

        // The timer brings the digest back when the grace ends.
        api.wait_for_timer();
        assert_eq!(api.now, pod.created.plus(Duration::from_secs(120)));
        let cmds = api.e.poll(api.now);
        let delete = cmds
            .iter()
            .find(|c| matches!(c.action, Action::DeleteJob { .. }))
            .map(|c| c.id)
            .expect("the Job is deleted");
        for c in cmds.into_iter().filter(|c| c.id != delete) {
            if let Some(outcome) = api.answer(&c.action) {
                api.reply(c.id, outcome);
            }
        }
        api.reply(delete, Outcome::Done);
        let name = api.job().name;
        api.job_deleted(&name);
        assert!(api.run().is_empty());
        let which = if init {
            "init container"
        } else {
            SCAN_CONTAINER
        };
        let expected = format!(
            "{which} of pod {} not created for 120 s: {reason}: {message}",
            pod.name
        );
        assert_eq!(api.stalled("a"), Some(("Error".into(), expected)));
        assert_eq!(api.e.stats().scans_failed, 1, "recorded once");
    }
}

#[test]
fn a_container_created_after_a_first_error_is_no_failure() {
    let mut api = api_with_job(config());
    let mut pod = api.pod("1", waiting("CreateContainerError", "name is reserved"));
    api.put_pod(pod.clone());
    assert!(api.run().is_empty());
    api.now = api.now.plus(Duration::from_secs(30));
    pod.scan = ScanContainerState {
        started: true,
        ..ScanContainerState::default()
    };
    pod.resource_version = pod.resource_version.map(|rv| rv + 1);
    api.put_pod(pod);
    api.now = api.now.plus(Duration::from_secs(300));
    let cmds = api.run();
    assert!(
        cmds.iter()
            .all(|c| !matches!(c.action, Action::DeleteJob { .. })),
        "{:?}",
        super::tests::verbs(&cmds)
    );
    assert_eq!(api.stalled("a"), None);
}

#[test]
fn the_answer_to_deleting_a_job_leaves_a_new_job_of_the_same_name_running() {
    let mut api = api_with_job(config());
    let pod = api.pod("1", waiting("ImagePullBackOff", "Back-off pulling image"));
    api.put_pod(pod);
    let cmds = api.e.poll(api.now);
    let delete = cmds
        .iter()
        .find(|c| matches!(c.action, Action::DeleteJob { .. }))
        .expect("the Job is deleted")
        .id;
    // Before the answer, the watch shows the Job gone and another of the same name (another
    // replica's, or a person's) running.
    let old = api.job();
    api.job_deleted(&old.name);
    let mut again = old.clone();
    again.uid = "job-again".into();
    again.resource_version = api.next_rv();
    api.put_job(again);
    api.deliver();
    assert_eq!(api.e.active_jobs(), 1);
    api.reply(delete, Outcome::Done);
    assert_eq!(api.e.active_jobs(), 1, "the answer was about the old Job");
}

#[test]
fn a_job_the_api_rejects_is_a_failure_users_see() {
    let mut api = Api::new(config());
    api.answer_next("create_job", failed(ApiErrorKind::Invalid));
    api.put_cis("a", CisStatusView::default());
    assert!(api.run().is_empty());
    assert!(api.jobs.is_empty());
    assert_eq!(
        api.stalled("a"),
        Some((
            "Error".into(),
            "scan Job could not be created: injected".into()
        ))
    );
}

/// Notices (issue 21): the Events of reason `reason` recorded so far, as (regarding kind,
/// object name, message).
fn notices(api: &Api, reason: &str) -> Vec<(String, String, String)> {
    api.events
        .iter()
        .filter(|e| e.note.reason == reason)
        .map(|e| {
            let kind = match &e.regarding {
                EventRegarding::Workload { kind, .. } => kind.clone(),
                other => format!("{other:?}"),
            };
            (kind, e.name.clone(), e.note.note.clone())
        })
        .collect()
}

#[test]
fn a_rescan_that_finds_more_is_told_once_on_the_workload_and_the_cis() {
    let mut api = api_with_job(config());
    api.finish_scan(report(1, 2));
    assert!(api.events.is_empty(), "a first result is the baseline");
    let first = api.status("a").clone();
    let recorded = first.notable.as_deref().expect("a record");
    assert_eq!(
        recorded.ids.get("CRITICAL"),
        Some(&vec!["CVE-2026-00000".to_string()])
    );
    assert!(
        !recorded.ids.contains_key("LOW"),
        "below the threshold (HIGH)"
    );
    assert_eq!(first.announced, first.notable, "nothing to tell");

    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(3, 2));
    let image = format!("docker.io/library/nginx@{}", &D1[..19]);
    assert_eq!(
        notices(&api, crate::notice::REASON_NEW),
        vec![
            (
                "Cis".to_string(),
                "a".to_string(),
                format!(
                    "2 new vulnerabilities in image {image}: CRITICAL CVE-2026-00001, CVE-2026-00002"
                )
            ),
            (
                "Pod".to_string(),
                "a".to_string(),
                format!(
                    "2 new vulnerabilities in container app ({image}): CRITICAL CVE-2026-00001, CVE-2026-00002"
                )
            ),
        ]
    );
    let told = api.status("a").clone();
    assert_eq!(told.announced, told.notable, "recorded as told");
    assert_eq!(api.e.notices_pending(), 0);

    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(3, 2));
    assert_eq!(
        notices(&api, crate::notice::REASON_NEW).len(),
        2,
        "the same findings again: nothing new to tell"
    );
    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(1, 2));
    assert_eq!(
        notices(&api, crate::notice::REASON_RESOLVED).len(),
        2,
        "two findings gone: told once on each"
    );
}

#[test]
fn changes_within_a_workloads_cooldown_are_told_together_when_it_ends() {
    let cfg = EngineConfig {
        notice_cooldown: Duration::from_secs(20 * 3600),
        ..config()
    };
    let mut api = api_with_job(cfg);
    api.finish_scan(report(1, 0));
    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(2, 0));
    assert_eq!(notices(&api, crate::notice::REASON_NEW).len(), 2);
    // 14 h later, inside the 20 h cooldown: recorded, not told yet.
    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(3, 0));
    assert_eq!(notices(&api, crate::notice::REASON_NEW).len(), 2);
    assert_eq!(api.e.notices_pending(), 1);
    let pending = api.status("a").clone();
    assert_ne!(
        pending.announced, pending.notable,
        "the change waits in the status"
    );
    // The cooldown ends before the next rescan (26 h after the first notice).
    while api.e.notices_pending() > 0 {
        api.wait_for_timer();
        assert!(api.run().is_empty());
    }
    let new = notices(&api, crate::notice::REASON_NEW);
    assert_eq!(new.len(), 4);
    assert!(
        new[2].2.starts_with("1 new vulnerability in image"),
        "{}",
        new[2].2
    );
    assert!(
        new[2].2.ends_with("CRITICAL CVE-2026-00002"),
        "{}",
        new[2].2
    );
}

#[test]
fn a_change_found_waiting_in_a_status_is_told_by_a_new_engine_and_a_failed_event_retried() {
    let mut api = Api::new(config());
    let record = |ids: &[&str]| {
        std::sync::Arc::new(crate::crd::FindingRecord {
            min_severity: Severity::High,
            ids: BTreeMap::from([(
                "CRITICAL".to_string(),
                ids.iter().map(|s| s.to_string()).collect(),
            )]),
            ..Default::default()
        })
    };
    api.answer_next("record_event", failed(ApiErrorKind::ServerError));
    // What an engine that crashed after its fan-out left: told up to CVE-1, showing CVE-2 too.
    let stored = ContainerImageScanStatus {
        notable_findings: Some((*record(&["CVE-1", "CVE-2"])).clone()),
        announced_findings: Some((*record(&["CVE-1"])).clone()),
        ..ContainerImageScanStatus::default()
    };
    let mut view = cis("a", "uid-a", D1, CisStatusView::of(Some(&stored)));
    view.resource_version = api.next_rv();
    api.server.put_cis(view, Some(stored));
    api.deliver();
    api.run();
    assert_eq!(api.events.len(), 1, "of two Events, the first failed");
    assert_eq!(
        api.e.notices_pending(),
        1,
        "so nothing was recorded as told"
    );
    while api.e.notices_pending() > 0 {
        api.wait_for_timer();
        api.run();
    }
    // Told again, both Events (at least once: the one recorded before comes twice).
    let new = notices(&api, crate::notice::REASON_NEW);
    assert_eq!(new.len(), 3, "{new:?}");
    assert!(new.iter().all(|(_, _, m)| m.ends_with("CRITICAL CVE-2")));
    assert_eq!(api.status("a").announced, api.status("a").notable);
}

/// A scan of CIS `a`'s digest that fails with `log`, from its Job's creation on.
fn failed_scan(api: &mut Api, log: &str) {
    api.until_job_created();
    api.finish(
        false,
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    );
    let pod = api.pod("1", exited(1));
    api.put_pod(pod);
    let (id, ..) = api.log_read();
    api.reply(id, Outcome::Log(log.as_bytes().to_vec()));
    assert!(api.run().is_empty());
}

#[test]
fn a_scan_that_starts_failing_is_told_on_the_workload_once() {
    let mut api = Api::new(config());
    api.put_cis("a", CisStatusView::default());
    failed_scan(&mut api, "boom");
    let failing = notices(&api, crate::notice::REASON_SCAN_FAILING);
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!((failing[0].0.as_str(), failing[0].1.as_str()), ("Pod", "a"));
    assert_eq!(
        failing[0].2,
        format!("the scan of container app (image docker.io/library/nginx@{D1}) failed: boom")
    );
    // The next failure of the same run of failures: the CIS says it failed again, the
    // workload is not told again.
    api.now = api.now.plus(Duration::from_secs(3600));
    failed_scan(&mut api, "boom again");
    assert_eq!(notices(&api, "ScanFailed").len(), 2);
    assert_eq!(notices(&api, crate::notice::REASON_SCAN_FAILING).len(), 1);
}

#[test]
fn a_spec_change_rewrites_the_status_for_the_new_generation() {
    let mut api = api_with_job(config());
    api.finish_scan(report(1, 0));
    let mut view = api.stored_cis("ns", "a").expect("a").view.clone();
    view.generation = 2;
    view.spec.ignore_unfixed = Some(true);
    view.resource_version = api.next_rv();
    api.apply_cis(view);
    assert!(api.run().is_empty());
    assert_eq!(api.status("a").observed_generation, Some(2));
    assert_eq!(
        api.jobs.len(),
        1,
        "the result is filtered again, not rescanned"
    );
}

#[test]
fn a_job_whose_retry_succeeded_after_a_failed_attempt_is_a_success() {
    let mut api = api_with_job(config());
    let first = api.pod("1", exited(1));
    api.put_pod(first);
    let (id, ..) = api.log_read();
    api.reply(id, Outcome::Log(b"attempt 1: connection refused".to_vec()));
    assert!(api.run().is_empty());
    api.now = at(5);
    let second = api.pod("2", exited(0));
    api.put_pod(second.clone());
    api.finish(true, "Complete", "");
    let (id, pod, ..) = api.log_read();
    assert_eq!(pod, second.name);
    api.reply(id, Outcome::Log(report(1, 0)));
    assert!(api.run().is_empty());
    assert_eq!(api.stalled("a"), None);
    assert_eq!(api.critical_count("a"), Some(1));
}

#[test]
fn a_decode_error_learned_from_one_cis_is_shown_with_its_reason_on_another() {
    let mut e = leading_engine(config());
    let mut status = super::tests::failed_status("job-1", at(3540));
    status.conditions[0].reason = "ScanReportDecodeError".into();
    super::tests::apply_cis(&mut e, cis("a", "uid-a", D1, status), at(3600));
    super::tests::apply_cis(&mut e, cis("b", "uid-b", D1, Default::default()), at(3600));
    let cmds = e.poll(at(3600));
    let reasons: Vec<String> = cmds
        .iter()
        .filter_map(|c| match &c.action {
            Action::ApplyCisStatus { name, status, .. } if name == "b" => Some(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| c.reason.clone())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec!["ScanReportDecodeError".to_string()]);
}

#[test]
fn a_log_read_in_flight_for_one_digest_does_not_hold_back_another() {
    let mut api = api_with_job(config());
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    api.finish(true, "Complete", "");
    let _in_flight = api.log_read();
    let mut other = cis("c", "uid-c", super::tests::D2, Default::default());
    other.resource_version = api.next_rv();
    api.apply_cis(other);
    assert!(api.run().is_empty());
    assert!(
        api.jobs
            .values()
            .any(|j| j.digest.as_deref() == Some(super::tests::D2)),
        "the other digest's Job is created at once"
    );
}

/// An exception over one of CIS `a`'s findings.
fn accepting(ids: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "vulnerabilities": ids.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(),
        "reason": "AcceptedRisk",
        "description": "assessed",
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// A user applies or deletes an exception; the engine sees it at once.
fn observe_exception(api: &mut Api, event: WatchEvent<crate::port::ExceptionView>) {
    match event {
        WatchEvent::Apply(view) => api.server.put_exception(view),
        WatchEvent::Delete(view) => api.server.delete_exception(&view.key),
        _ => unreachable!("users apply and delete"),
    }
    api.deliver();
}

/// The last status written to `a`: (CRITICAL in the summary, suppressed in total, findings
/// marked in the details).
fn suppression_of_a(api: &Api) -> (Option<i32>, Option<i32>, usize) {
    let stored = stored_status(api, "a");
    let marked = stored
        .vulnerabilities
        .iter()
        .flatten()
        .filter(|v| v.suppressed_by.is_some())
        .count();
    (
        api.critical_count("a"),
        stored.suppressed_count.as_ref().map(|c| c.total),
        marked,
    )
}

/// CIS `a` showing a success of three CRITICAL findings and one LOW, with its details in
/// the status (where the exceptions' marks are read).
fn scanned_with_details_in_the_status() -> Api {
    let mut cfg = config();
    cfg.status_details = StatusDetails::Always;
    let mut api = api_with_job(cfg);
    api.finish_scan(report(3, 1));
    api
}

/// An exception applied, changed, deleted and expiring rewrites the result without a rescan;
/// one of another namespace writes nothing.
#[test]
fn exceptions_refilter_a_result_without_a_rescan_until_they_go_or_expire() {
    use crate::test_kit::exception;
    let mut api = scanned_with_details_in_the_status();
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));
    let jobs = api.jobs_created();
    let writes = api.status_requests().len();

    // Another namespace's exception over the same IDs: nothing is written.
    let elsewhere = exception(
        Some("other"),
        "x",
        "uid-x",
        1,
        accepting(&["CVE-2026-00000"], json!({})),
    );
    observe_exception(&mut api, WatchEvent::Apply(elsewhere));
    assert!(api.run().is_empty());
    assert_eq!(api.status_requests().len(), writes);

    // Two of the three CRITICAL findings accepted until an hour from now.
    let until = api.now.plus(Duration::from_secs(3600));
    let expires = jiff::Timestamp::from_millisecond(until.0)
        .expect("a time")
        .to_string();
    let spec = accepting(
        &["CVE-2026-00000", "cve-2026-00001"],
        json!({"expires": expires}),
    );
    let accepted = exception(Some("ns"), "accepted", "uid-e", 1, spec);
    observe_exception(&mut api, WatchEvent::Apply(accepted.clone()));
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(1), Some(2), 2));
    // The same object again (a relist) writes nothing.
    let before = api.status_requests().len();
    observe_exception(&mut api, WatchEvent::Apply(accepted));
    assert!(api.run().is_empty());
    assert_eq!(api.status_requests().len(), before);

    // Narrowed to another image: it no longer applies.
    let narrowed = exception(
        Some("ns"),
        "accepted",
        "uid-e",
        2,
        accepting(
            &["CVE-2026-00000"],
            json!({"images": [{"name": "quay.io/*"}], "expires": expires}),
        ),
    );
    observe_exception(&mut api, WatchEvent::Apply(narrowed));
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));

    // Back to the first spec, then it expires: the findings are back at its expiry.
    let spec = accepting(
        &["CVE-2026-00000", "CVE-2026-00001"],
        json!({"expires": expires}),
    );
    observe_exception(
        &mut api,
        WatchEvent::Apply(exception(Some("ns"), "accepted", "uid-e", 3, spec)),
    );
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(1), Some(2), 2));
    // Wake-ups before it write the exception's status; the findings stay suppressed.
    while api.e.next_wakeup().is_some_and(|at| at < until) {
        api.wait_for_timer();
        assert!(api.run().is_empty());
        assert_eq!(suppression_of_a(&api), (Some(1), Some(2), 2));
    }
    api.wait_for_timer();
    assert_eq!(api.now, until, "woken at the expiry");
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));

    // A cluster-wide one for namespaces like ours, then deleted.
    let cluster = exception(
        None,
        "platform",
        "uid-c",
        1,
        accepting(&["CVE-2026-00003"], json!({"namespaces": ["n*"]})),
    );
    observe_exception(&mut api, WatchEvent::Apply(cluster.clone()));
    assert!(api.run().is_empty());
    let stored = stored_status(&api, "a");
    assert_eq!(
        stored.suppressed_count.map(|c| c.by_exception),
        Some(BTreeMap::from([("cluster/platform".to_string(), 1)]))
    );
    observe_exception(&mut api, WatchEvent::Delete(cluster));
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));
    assert_eq!(api.jobs_created(), jobs, "no rescan");
}

/// Regression (sim seed 771): an exception moved to a later expiry keeps applying until then
/// and stops at it. The expiry timer keeps the earliest deadline of its key, so the first one
/// fires, finds the later expiry and arms it; it used to find the exception in force and arm
/// nothing, and the exception never expired.
#[test]
fn an_exception_moved_to_a_later_expiry_expires_then() {
    use crate::test_kit::exception;
    let mut api = scanned_with_details_in_the_status();
    let rfc3339 = |t: Timestamp| t.to_k8s().0.to_string();
    let (first, later) = (
        api.now.plus(Duration::from_secs(100)),
        api.now.plus(Duration::from_secs(500)),
    );
    for (generation, until) in [(1, first), (2, later)] {
        let spec = accepting(&["CVE-2026-00000"], json!({"expires": rfc3339(until)}));
        let view = exception(Some("ns"), "accepted", "uid-e", generation, spec);
        observe_exception(&mut api, WatchEvent::Apply(view));
        assert!(api.run().is_empty());
    }
    assert_eq!(suppression_of_a(&api), (Some(2), Some(1), 1));
    settle(&mut api, first.plus(Duration::from_secs(1)));
    assert_eq!(
        suppression_of_a(&api),
        (Some(2), Some(1), 1),
        "still in force"
    );
    settle(&mut api, later);
    assert_eq!(api.now, later, "woken at the later expiry");
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));
}

/// The last status the engine wrote to exception `key`: (Ready status, reason, covered).
fn exception_status_of(
    api: &Api,
    key: &crate::exception::ExceptionKey,
) -> Option<(String, String, Option<i64>)> {
    let status = api.server.exceptions.get(key)?.status.clone()?;
    let ready = status
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status, ready.reason, status.covered_findings))
}

fn exception_status_writes(api: &Api) -> usize {
    api.requests
        .iter()
        .filter(|a| matches!(a, Action::ApplyExceptionStatus { .. }))
        .count()
}

/// Run until the settle timer and every write after it are done, at most to `until`.
fn settle(api: &mut Api, until: Timestamp) {
    while api.e.next_wakeup().is_some_and(|at| at <= until) {
        api.wait_for_timer();
        let left = api.run();
        assert!(
            left.is_empty(),
            "{:?} at {:?}",
            super::tests::verbs(&left),
            api.now
        );
    }
}

/// An exception's own status says whether it applies and how many findings it covers (summed
/// from the CIS as written), once the CIS settled; its expiry turns it `Expired` with one
/// Event; an invalid one says why; a restart finds every status right and writes nothing.
#[test]
fn an_exception_status_shows_what_it_covers_and_its_expiry_with_one_event() {
    use crate::exception::ExceptionKey;
    use crate::test_kit::exception;
    let mut api = scanned_with_details_in_the_status();

    let until = api.now.plus(Duration::from_secs(3600));
    let expires = jiff::Timestamp::from_millisecond(until.0)
        .expect("a time")
        .to_string();
    let spec = accepting(
        &["CVE-2026-00000", "CVE-2026-00001"],
        json!({"expires": expires}),
    );
    observe_exception(
        &mut api,
        WatchEvent::Apply(exception(Some("ns"), "accepted", "uid-e", 1, spec)),
    );
    let invalid = exception(
        Some("ns"),
        "broken",
        "uid-b",
        1,
        accepting(&["CVE-2026-00003"], json!({"images": [{}]})),
    );
    observe_exception(&mut api, WatchEvent::Apply(invalid));
    assert!(api.run().is_empty());
    assert_eq!(
        exception_status_writes(&api),
        0,
        "not before the CIS settle"
    );
    let later = api.now.plus(Duration::from_secs(60));
    settle(&mut api, later);
    let accepted = ExceptionKey::Namespaced {
        namespace: "ns".into(),
        name: "accepted".into(),
    };
    let broken = ExceptionKey::Namespaced {
        namespace: "ns".into(),
        name: "broken".into(),
    };
    assert_eq!(
        exception_status_of(&api, &accepted),
        Some(("True".into(), "InForce".into(), Some(2)))
    );
    assert_eq!(
        exception_status_of(&api, &broken),
        Some(("False".into(), "Invalid".into(), Some(0)))
    );
    let stored = api.server.exceptions[&broken]
        .status
        .clone()
        .expect("status");
    let message = &stored.conditions.expect("conditions")[0].message;
    assert!(message.contains("images: each is given by"), "{message}");
    assert_eq!(exception_status_writes(&api), 2, "one write each");

    // Its expiry: Expired, nothing covered, one Event on the exception.
    settle(&mut api, until.plus(Duration::from_secs(60)));
    assert_eq!(
        exception_status_of(&api, &accepted),
        Some(("False".into(), "Expired".into(), Some(0)))
    );
    let expired: Vec<_> = api
        .events
        .iter()
        .filter(|e| e.note.reason == "ExceptionExpired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        (expired[0].regarding.clone(), expired[0].name.as_str()),
        (
            crate::port::EventRegarding::VulnerabilityException,
            "accepted"
        )
    );
    // A restart: the lists show every status as it would be written, the expiry too.
    let (writes, events) = (exception_status_writes(&api), api.events.len());
    let mut restarted = Api::new(config());
    std::mem::swap(&mut restarted.server, &mut api.server);
    restarted.server.relist(&mut restarted.e);
    restarted.observe(Observation::CachesSynced);
    let later = restarted.now.plus(Duration::from_secs(60));
    settle(&mut restarted, later);
    assert_eq!(
        exception_status_writes(&restarted),
        writes,
        "a restart writes nothing"
    );
    assert_eq!(restarted.events.len(), events, "and records no Event");
    let mut api = restarted;

    // Deleted: nothing more is written about it.
    let writes = exception_status_writes(&api);
    api.server.delete_exception(&accepted);
    api.deliver();
    let later = api.now.plus(Duration::from_secs(60));
    settle(&mut api, later);
    assert_eq!(exception_status_writes(&api), writes);
}

/// With OpenReports, an exception also rewrites the Report: the covered finding is `skip`,
/// naming the exception, before the status is written again.
#[test]
fn an_exception_rewrites_the_report_with_the_covered_finding_skipped() {
    use crate::test_kit::exception;
    let mut cfg = config();
    cfg.write_reports = true;
    let mut api = api_with_job(cfg);
    api.finish_scan(report(2, 0));
    let before = api.report_requests().len();
    assert_eq!(before, 1);
    let accepted = exception(
        Some("ns"),
        "accepted",
        "uid-e",
        1,
        accepting(&["CVE-2026-00000"], json!({})),
    );
    observe_exception(&mut api, WatchEvent::Apply(accepted));
    assert!(api.run().is_empty());
    let reports = api.report_requests();
    assert_eq!(reports.len(), before + 1, "the Report is written again");
    let last = reports.last().expect("a Report");
    assert_eq!(last["summary"], json!({"skip": 1, "warn": 0, "fail": 1}));
    let skipped: Vec<&serde_json::Value> = last["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["result"] == "skip")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["policy"], "CVE-2026-00000");
    assert_eq!(skipped[0]["properties"]["suppressedBy"], "ns/accepted");
    assert_eq!(api.critical_count("a"), Some(1));
}

/// Six scans end at once: their logs are read four at a time (each is held whole while it is
/// read and parsed), and every answer lets the next read go; each log is read once.
#[test]
fn scan_logs_are_read_a_few_at_a_time() {
    use super::scans::LOG_READS_AT_ONCE;
    let mut api = Api::new(config());
    let digests: Vec<String> = (3..=8)
        .map(|i| format!("sha256:{}", i.to_string().repeat(64)))
        .collect();
    for (i, digest) in digests.iter().enumerate() {
        let name = format!("c{i}");
        let mut view = cis(&name, &format!("uid-{name}"), digest, Default::default());
        view.resource_version = api.next_rv();
        api.apply_cis(view);
    }
    for _ in 0..20 {
        assert!(api.run().is_empty());
        if api.jobs.len() == 6 {
            break;
        }
        api.wait_for_timer();
    }
    let jobs: Vec<JobView> = api.jobs.values().cloned().collect();
    assert_eq!(jobs.len(), 6);
    for job in &jobs {
        let pod = api.pod_of(job, "ok", exited(0));
        api.put_pod(pod);
        api.server
            .finish_job(&job.namespace, &job.name, true, "Complete", "");
    }
    api.deliver();
    let reads = |commands: &[Command]| {
        commands
            .iter()
            .filter(|c| matches!(c.action, Action::FetchLog { .. }))
            .count()
    };
    let mut left = api.run();
    assert_eq!(reads(&left), LOG_READS_AT_ONCE);
    let mut answered = 0;
    while let Some(c) = left.pop() {
        assert!(
            matches!(c.action, Action::FetchLog { .. }),
            "{:?}",
            c.action
        );
        api.reply(c.id, Outcome::Log(report(1, 0)));
        answered += 1;
        left.extend(api.run());
        assert!(
            reads(&left) <= LOG_READS_AT_ONCE,
            "{} reads at once",
            reads(&left)
        );
    }
    assert_eq!(answered, 6, "one read per log");
    for i in 0..6 {
        assert_eq!(api.critical_count(&format!("c{i}")), Some(1), "c{i}");
    }
}

/// A Job whose report is large: 300 vulnerabilities, far more than the budgets below.
fn large_scan(cfg: EngineConfig, api_setup: impl FnOnce(&mut Api)) -> Api {
    let mut api = api_with_job(cfg);
    api_setup(&mut api);
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    api.finish(true, "Complete", "");
    let (id, ..) = api.log_read();
    api.reply(id, Outcome::Log(report(100, 200)));
    api
}

fn small_budgets() -> EngineConfig {
    let mut cfg = config();
    cfg.write_reports = true;
    cfg.status_details = StatusDetails::Always;
    cfg.report_max_bytes = 16 * 1024;
    cfg.details_max_bytes = 16 * 1024;
    cfg
}

/// Runs, waiting for timers, until CIS `a` shows a result.
fn until_result(api: &mut Api) {
    for _ in 0..10 {
        assert!(api.run().is_empty());
        if api.status("a").last_scan_time.is_some() {
            return;
        }
        api.wait_for_timer();
    }
    panic!("no result written");
}

#[test]
fn a_report_or_status_the_api_finds_too_large_is_retried_at_half_the_size() {
    for (kind, halved) in [
        (ApiErrorKind::TooLarge, true),
        (ApiErrorKind::ServerError, false),
    ] {
        let mut api = large_scan(small_budgets(), |api| {
            api.answer_next("apply_report", failed(kind));
            api.answer_next("apply_cis_status", failed(kind));
        });
        until_result(&mut api);
        let reports = api.report_sizes();
        assert_eq!(reports.len(), 2, "{kind:?}: {reports:?}");
        let details = api.detail_sizes("a");
        assert_eq!(details.len(), 2, "{kind:?}: {details:?}");
        for (what, sizes) in [("Report", reports), ("details", details)] {
            let (first, retry) = (sizes[0], sizes[1]);
            // The budget counts the vulnerabilities, not the envelope around them.
            assert!(first > 12 * 1024 && first <= 24 * 1024, "{what}: {first}");
            if halved {
                assert!(
                    retry < first * 3 / 4 && retry > first / 4,
                    "{what}: {sizes:?}"
                );
            } else {
                assert_eq!(retry, first, "{what}: {kind:?} keeps the size");
            }
        }
        assert_eq!(api.e.stats().reports_skipped, 0);
    }
}

#[test]
fn a_report_that_cannot_be_written_does_not_hold_back_the_status() {
    // (answers to the Report writes, Reports asked for, skipped)
    let cases = [
        (vec![failed(ApiErrorKind::Invalid)], 1, 1),
        (vec![failed(ApiErrorKind::ServerError); 3], 3, 1),
        (vec![failed(ApiErrorKind::ServerError)], 2, 0),
    ];
    for (answers, requests, skipped) in cases {
        let mut api = large_scan(small_budgets(), |api| {
            for answer in &answers {
                api.answer_next("apply_report", answer.clone());
            }
        });
        until_result(&mut api);
        assert!(
            api.status("a").summary.is_some(),
            "{answers:?}: the result is written"
        );
        assert_eq!(api.report_requests().len(), requests, "{answers:?}");
        assert_eq!(api.e.stats().reports_skipped, skipped, "{answers:?}");
    }
}

/// The stored status of CIS `name` with its details, as the API server holds it.
fn stored_status(api: &Api, name: &str) -> crate::crd::ContainerImageScanStatus {
    api.stored_cis("ns", name).expect("stored").status.clone()
}

#[test]
fn as_the_stored_details_near_the_cluster_budget_each_new_result_gets_less_room() {
    let mut cfg = config();
    cfg.status_details = StatusDetails::Always;
    cfg.details_max_bytes = 16 * 1024;
    cfg.details_total_bytes = 40 * 1024;
    let names = ["a", "b", "c", "d"];
    let mut api = large_scan(cfg, |api| {
        for name in &names[1..] {
            api.put_cis(name, CisStatusView::default());
        }
    });
    until_result(&mut api);
    let mut total = 0;
    let mut kept = Vec::new();
    for name in names {
        let status = stored_status(&api, name);
        let details = status.vulnerabilities.clone().unwrap_or_default();
        let bytes = status.details_bytes.expect("detailsBytes written") as usize;
        // detailsBytes says what the details take.
        assert_eq!(bytes, crate::status::details_size(&details), "{name}");
        total += bytes;
        let truncated = status.vulnerabilities_truncated.expect("cut");
        kept.push((name, bytes, truncated.reason, details.len()));
        // What is kept is the highest severities: every CRITICAL before any LOW.
        if details.iter().any(|v| v.severity == Severity::Low) {
            assert!(
                details
                    .iter()
                    .filter(|v| v.severity == Severity::Critical)
                    .count()
                    == 100
            );
        }
    }
    assert!(total <= 40 * 1024, "{total}: {kept:?}");
    assert_eq!(api.e.details_bytes(), total as u64);
    // The first two fit their own budget while the others hold at most half of the total;
    // then the room shrinks.
    use crate::crd::TruncationReason::{ClusterBudget, ObjectBudget};
    let reasons: Vec<_> = kept.iter().map(|k| k.2).collect();
    assert_eq!(
        reasons,
        [
            Some(ObjectBudget),
            Some(ObjectBudget),
            Some(ClusterBudget),
            Some(ClusterBudget)
        ],
        "{kept:?}"
    );
    assert!(kept[2].1 < kept[1].1 && kept[3].1 < kept[2].1, "{kept:?}");
}

#[test]
fn a_report_counts_against_the_cluster_budget_with_its_status() {
    let mut cfg = small_budgets();
    cfg.status_details = StatusDetails::UnlessInReport;
    cfg.details_total_bytes = 24 * 1024;
    let mut api = large_scan(cfg, |api| api.put_cis("b", CisStatusView::default()));
    until_result(&mut api);
    while stored_status(&api, "b").last_scan_time.is_none() {
        assert!(api.run().is_empty());
    }
    let a = stored_status(&api, "a");
    let b = stored_status(&api, "b");
    // The details are in the Reports only; each status says what its Report holds.
    assert!(a.vulnerabilities.is_none() && b.vulnerabilities.is_none());
    let sizes = api.report_sizes();
    let (a_bytes, b_bytes) = (a.details_bytes.unwrap_or(0), b.details_bytes.unwrap_or(0));
    assert!(a_bytes > 12 * 1024, "{a_bytes}");
    assert!(
        b_bytes < a_bytes * 2 / 3,
        "{a_bytes} {b_bytes}: the second Report got less room"
    );
    assert!(a_bytes + b_bytes <= 24 * 1024);
    assert_eq!(sizes.len(), 2, "{sizes:?}");
}

#[test]
fn jitter_spreads_digests_over_a_tenth_of_the_interval() {
    let interval = Duration::from_secs(24 * 3600);
    let values: std::collections::BTreeSet<Duration> = (0..200)
        .map(|i| jitter(&format!("sha256:{i:064x}"), interval))
        .collect();
    assert!(values.iter().all(|j| *j < interval / 10), "{values:?}");
    assert!(values.len() > 150, "only {} distinct values", values.len());
    assert!(values.iter().any(|j| *j > interval / 20));
}

#[test]
fn the_time_to_a_first_result_runs_from_the_first_sight_of_the_digest() {
    let mut api = Api::new(config());
    api.observe(Observation::Pod {
        stream: StreamId(0),
        event: WatchEvent::Apply(super::tests::pod_with(D1)),
    });
    api.until_job_created();
    api.now = at(31);
    api.finish_scan(report(0, 1));
    let latency = api.e.first_result_latency();
    assert_eq!((latency.sum_secs, latency.count), (30.0, 1));
    // A rescan is not a first result.
    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.scan(report(0, 1));
    assert_eq!(api.e.stats().scans_succeeded, 2);
    assert_eq!(api.e.first_result_latency().count, 1);
}

#[test]
fn scan_pods_that_are_gone_are_not_read() {
    // Deleted with an event, or gone while the watch was down (the relist forgets it).
    for relist in [false, true] {
        let mut api = api_with_job(config());
        let pod = api.pod("1", exited(0));
        api.put_pod(pod.clone());
        if relist {
            api.scan_pods
                .remove(&(pod.namespace.clone(), pod.name.clone()));
            api.relist_pods();
        } else {
            api.delete_pod(&pod.name);
        }
        api.now = at(20);
        api.finish(true, "Complete", "");
        api.now = at(21);
        let left = api.run();
        assert!(
            left.is_empty(),
            "relist {relist}: {:?}",
            super::tests::verbs(&left)
        );
        api.now = at(30);
        let old = api.job();
        let next = api.until_job_created();
        assert_ne!(next.uid, old.uid, "relist {relist}: scanned again");
        assert_eq!(
            api.stalled("a"),
            None,
            "relist {relist}: a lost result, not a failure"
        );
    }
}

#[test]
fn a_stale_job_update_does_not_undo_its_end() {
    let mut api = api_with_job(config());
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    let running = api.job();
    api.finish(true, "Complete", "");
    // The watch delivers an older version after the newer one.
    api.observe(Observation::Job {
        stream: JOB_STREAM,
        event: WatchEvent::Apply(running),
    });
    let (_, pod, ..) = api.log_read();
    assert!(pod.ends_with("-1"), "{pod}");
}

#[test]
fn details_are_stored_once_by_default_in_the_report_else_in_the_status() {
    // (where details go, Reports on, answer to the Report write) -> (details in the status,
    // Reports asked for)
    let invalid = || vec![failed(ApiErrorKind::Invalid)];
    let cases = [
        (StatusDetails::UnlessInReport, true, vec![], false, 1),
        (StatusDetails::UnlessInReport, true, invalid(), true, 1),
        (StatusDetails::UnlessInReport, false, vec![], true, 0),
        (StatusDetails::Always, true, vec![], true, 1),
        (StatusDetails::Never, true, vec![], false, 1),
        (StatusDetails::Never, true, invalid(), false, 1),
        (StatusDetails::Never, false, vec![], false, 0),
    ];
    for (status_details, write_reports, answers, in_status, reports) in cases {
        let case = format!("{status_details:?}, reports {write_reports}, {answers:?}");
        let mut cfg = small_budgets();
        cfg.status_details = status_details;
        cfg.write_reports = write_reports;
        let mut api = large_scan(cfg, |api| {
            for answer in &answers {
                api.answer_next("apply_report", answer.clone());
            }
        });
        until_result(&mut api);
        assert!(api.status("a").summary.is_some(), "{case}: the summary");
        assert_eq!(!api.detail_sizes("a").is_empty(), in_status, "{case}");
        assert_eq!(api.report_requests().len(), reports, "{case}");
    }
}

#[test]
fn a_truncated_report_records_what_it_left_out_like_the_status() {
    let mut cfg = small_budgets();
    cfg.status_details = StatusDetails::Never;
    let mut api = large_scan(cfg, |_| {});
    until_result(&mut api);
    let report = api.report_requests().last().expect("a Report").clone();
    let record = report["metadata"]["annotations"][crate::openreports::TRUNCATED_ANNOTATION]
        .as_str()
        .expect("truncation annotation");
    let record: crate::crd::VulnerabilitiesTruncated =
        serde_json::from_str(record).expect("the status's record format");
    assert_eq!(record.budget_bytes, 16 * 1024);
    assert!(record.dropped_count > 0 && !record.dropped_severities.is_empty());
    let results = report["results"].as_array().expect("results").len();
    let summary: i64 = ["skip", "warn", "fail"]
        .iter()
        .map(|k| report["summary"][k].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        i64::try_from(results).unwrap_or(0) + i64::from(record.dropped_count),
        summary
    );
}

/// Polls once and answers each command as the server would, failing the status writes with
/// `fail` (the others as usual); returns the names of the CIS whose status was written.
fn poll_status_writes(api: &mut Api, fail: Option<ApiErrorKind>) -> Vec<String> {
    let mut names = Vec::new();
    for c in api.e.poll(api.now) {
        if let Action::ApplyCisStatus { name, .. } = &c.action {
            names.push(name.clone());
            if let Some(kind) = fail {
                api.reply(c.id, failed(kind));
                continue;
            }
        }
        if let Some(outcome) = api.answer(&c.action) {
            api.reply(c.id, outcome);
        }
    }
    names
}

/// Two CIS `a` and `b` of one digest whose scan has just been read (one critical finding):
/// the next poll writes their statuses.
fn scanned_for_a_and_b(cfg: EngineConfig) -> Api {
    let mut api = Api::new(cfg);
    api.put_cis("a", CisStatusView::default());
    api.put_cis("b", CisStatusView::default());
    api.until_job_created();
    let pod = api.pod("1", exited(0));
    api.put_pod(pod);
    api.finish(true, "Complete", "");
    let (id, ..) = api.log_read();
    api.reply(id, Outcome::Log(report(1, 0)));
    api
}

#[test]
fn status_writes_of_one_digest_that_failed_at_different_times_are_each_retried() {
    // Window of one: `a` and `b` fail 100 ms apart. `a`'s retry fires first and fills the
    // window; when it is answered `b` still backs off. `b` must get its own wake-up (the
    // digest's timer kept only `a`'s end; sim seed 8455 wrote `b` only hours later).
    let mut cfg = config();
    cfg.max_inflight = 1;
    let mut api = scanned_for_a_and_b(cfg);
    assert_eq!(
        poll_status_writes(&mut api, Some(ApiErrorKind::TooLarge)),
        ["a"]
    );
    api.now = api.now.plus(Duration::from_millis(100));
    assert_eq!(
        poll_status_writes(&mut api, Some(ApiErrorKind::TooLarge)),
        ["b"]
    );
    let b_failed = api.now;
    api.wait_for_timer();
    assert_eq!(poll_status_writes(&mut api, None), ["a"]);
    assert!(poll_status_writes(&mut api, None).is_empty(), "b backs off");
    api.wait_for_timer();
    assert_eq!(
        api.now,
        b_failed.plus(Duration::from_secs(1)),
        "b's back-off end"
    );
    assert_eq!(poll_status_writes(&mut api, None), ["b"]);
    assert_eq!(api.critical_count("b"), Some(1));
}

#[test]
fn a_status_answer_after_the_delete_of_its_cis_does_not_bring_it_back() {
    // The watch delivers the Delete of `b` before the answer to a status write on it: the
    // answer must not put `b` back into the index (sim seed 9735: a ghost CIS in the metrics).
    let mut api = scanned_for_a_and_b(config());
    let cmds = api.e.poll(api.now);
    let write_b = cmds
        .iter()
        .find(|c| matches!(&c.action, Action::ApplyCisStatus { name, .. } if name == "b"))
        .expect("b's status is written");
    let answer = api.server.execute(&write_b.action).expect("answered");
    let mut gone = api.stored_cis("ns", "b").expect("b exists").view.clone();
    api.server.delete_cis("ns", "b");
    api.lose_watch_events();
    gone.resource_version = api.next_rv();
    api.observe(Observation::Cis {
        stream: CIS_STREAM,
        event: WatchEvent::Delete(gone),
    });
    api.reply(write_b.id, answer);
    assert!(!api.e.index.cis.contains_key(&CisKey::new("ns", "b")));
    assert_eq!(
        api.e
            .cis_views()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

/// An OpenVEX document for `docker.io/library/nginx` at [`D1`] with `statements` (JSON
/// objects without `products`, which this adds).
fn vex_for_a(statements: &[serde_json::Value]) -> String {
    let product = format!(
        "pkg:oci/nginx@{}?repository_url=index.docker.io/library/nginx",
        D1.replace(':', "%3A")
    );
    let statements: Vec<serde_json::Value> = statements
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["products"] = json!([{"@id": product}]);
            s
        })
        .collect();
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/nginx",
        "author": "platform team",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": statements,
    })
    .to_string()
}

/// An exception reading its OpenVEX document from a ConfigMap: the document's `not_affected`
/// statement for the scanned image suppresses exactly its finding, with the justification;
/// a later `affected` statement takes it back; the ConfigMap gone, nothing is suppressed and
/// the exception says why. All without a rescan.
#[test]
fn a_vex_document_in_a_config_map_suppresses_what_it_states_until_it_changes() {
    use crate::exception::ExceptionKey;
    use crate::test_kit::{exception, vex_map};
    let mut api = scanned_with_details_in_the_status();
    let jobs = api.jobs_created();
    let key = ExceptionKey::Namespaced {
        namespace: "ns".into(),
        name: "vendor-vex".into(),
    };
    let spec = json!({
        "vex": {"configMapKeyRef": {"name": "vex", "key": "nginx.openvex.json"}},
        "description": "the vendor's VEX for nginx",
    });
    observe_exception(
        &mut api,
        WatchEvent::Apply(exception(Some("ns"), "vendor-vex", "uid-v", 1, spec)),
    );
    assert!(api.run().is_empty());
    let soon = api.now.plus(Duration::from_secs(10));
    settle(&mut api, soon);
    assert_eq!(
        suppression_of_a(&api),
        (Some(3), None, 0),
        "no document yet"
    );
    let (ready, reason, _) = exception_status_of(&api, &key).expect("a status");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Invalid"));

    // The document arrives: CVE-2026-00000 not affected here; CVE-2026-00001 only elsewhere.
    let not_affected = json!({
        "vulnerability": {"name": "CVE-2026-00000"},
        "status": "not_affected",
        "justification": "vulnerable_code_not_in_execute_path",
    });
    let mut document = vex_for_a(std::slice::from_ref(&not_affected));
    let other_digest = document.replace(&D1.replace(':', "%3A"), &D2.replace(':', "%3A"));
    let other = other_digest.replace("CVE-2026-00000", "CVE-2026-00001");
    let put = |api: &mut Api, documents: &[(&str, &str)]| {
        api.server
            .put_vex_map(vex_map("ns", "vex", "uid-cm", documents));
        api.deliver();
        assert!(api.run().is_empty());
    };
    put(
        &mut api,
        &[("nginx.openvex.json", &document), ("other.json", &other)],
    );
    assert_eq!(suppression_of_a(&api), (Some(2), Some(1), 1));
    let stored = stored_status(&api, "a");
    let marked: Vec<(&str, Option<&str>, Option<&str>)> = stored
        .vulnerabilities
        .iter()
        .flatten()
        .filter(|v| v.suppressed_by.is_some())
        .map(|v| {
            (
                v.vulnerability_id.as_str(),
                v.suppressed_by.as_deref(),
                v.suppressed_justification.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        marked,
        [(
            "CVE-2026-00000",
            Some("ns/vendor-vex"),
            Some("vulnerable_code_not_in_execute_path")
        )]
    );
    let by_reason = stored.suppressed_count.map(|c| c.by_reason);
    assert_eq!(
        by_reason,
        Some(BTreeMap::from([("NotAffected".to_string(), 1)]))
    );
    let soon = api.now.plus(Duration::from_secs(10));
    settle(&mut api, soon);
    let (ready, reason, covered) = exception_status_of(&api, &key).expect("a status");
    assert_eq!(
        (ready.as_str(), reason.as_str(), covered),
        ("True", "InForce", Some(1))
    );

    // The same documents again (a relist, a label change): nothing is written.
    let writes = api.status_requests().len();
    put(
        &mut api,
        &[("nginx.openvex.json", &document), ("other.json", &other)],
    );
    assert_eq!(api.status_requests().len(), writes);

    // A later statement: affected after all. The finding is back.
    document = vex_for_a(&[
        not_affected,
        json!({
            "vulnerability": {"name": "CVE-2026-00000"},
            "status": "affected",
            "action_statement": "upgrade to 1.0.1",
            "timestamp": "2026-11-20T00:00:00Z",
        }),
    ]);
    put(&mut api, &[("nginx.openvex.json", &document)]);
    assert_eq!(suppression_of_a(&api), (Some(3), Some(0), 0));

    // The ConfigMap deleted: the exception covers nothing and says why.
    api.server.delete_vex_map("ns", "vex");
    api.deliver();
    assert!(api.run().is_empty());
    assert_eq!(suppression_of_a(&api), (Some(3), None, 0));
    let soon = api.now.plus(Duration::from_secs(10));
    settle(&mut api, soon);
    let (ready, reason, covered) = exception_status_of(&api, &key).expect("a status");
    assert_eq!(
        (ready.as_str(), reason.as_str(), covered),
        ("False", "Invalid", Some(0))
    );
    assert_eq!(api.jobs_created(), jobs, "no rescan");
}

#[path = "delivery_tests.rs"]
mod delivery_tests;
