//! Scenario tests of scan Job placement (`placement.rs`): workload pods with and without
//! imagePullSecrets, a kubelet that refuses the scan pod's pull (KEP-2535) or a namespace that
//! refuses the scan pod, through the whole engine. The cluster here answers every request as
//! the API server would; the tests play the kubelet and the Job controller.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

use super::tests::{at, failed, leading_engine, pod_in};
use super::*;
use crate::port::{
    JobView, NodePlatform, PodView, PullCredentials, ScanContainerState, ScanPodView, StreamId,
    WatchEvent,
};
use crate::test_kit::fake_api::FakeApi;

const SCAN_NS: &str = "scans";
const TRIVY_SERVER: &str = "http://trivy.scans.svc:4954";
const UNAUTHORIZED: &str = "failed to pull and unpack image \"reg.example/app@sha256:11\": failed to resolve reference \"reg.example/app@sha256:11\": unexpected status from HEAD request to https://reg.example/v2/app/manifests/sha256:11: 401 Unauthorized";
const NOT_FOUND: &str = "failed to resolve reference \"reg.example/app@sha256:11\": reg.example/app@sha256:11: not found";

/// The engine and the test kit's API server, for the CIS, Jobs and scan pods the engine works
/// with. Derefs to the server.
struct Cluster {
    e: Engine,
    server: FakeApi,
}

impl Deref for Cluster {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.server
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut FakeApi {
        &mut self.server
    }
}

impl Cluster {
    fn new(cfg: EngineConfig) -> Cluster {
        let mut e = leading_engine(cfg);
        e.observe(
            Observation::TrivyJobConfig {
                data: Some(BTreeMap::from([(s("SERVER"), s(TRIVY_SERVER))])),
            },
            at(1),
        );
        Cluster {
            e,
            server: FakeApi::new(at(1)),
        }
    }

    fn observe(&mut self, observation: Observation) {
        self.e.observe(observation, self.server.now);
    }

    /// The engine receives the watch events that happened since the last delivery.
    fn deliver(&mut self) {
        self.server.deliver(&mut self.e);
    }

    /// A running workload pod of D1.
    fn pod(&mut self, pod: PodView) {
        self.server.put_pod(pod);
        self.deliver();
    }

    fn answer(&mut self, action: &Action) -> Option<Outcome> {
        self.server.execute(action)
    }

    /// Every Job the engine asked to create, created or not, in order.
    fn created(&self) -> Vec<Job> {
        self.requests
            .iter()
            .filter_map(|a| match a {
                Action::CreateJob { job } => Some((**job).clone()),
                _ => None,
            })
            .collect()
    }

    /// Polls and answers until the engine has nothing more to do now.
    fn run(&mut self) {
        let left = self.server.run(&mut self.e);
        assert!(left.is_empty(), "every request is answered");
    }

    /// Time passes by `secs`.
    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus(Duration::from_secs(secs));
        self.run();
    }

    /// The running Job (there is at most one per digest).
    fn active(&self) -> JobView {
        let mut active = self.jobs.values().filter(|j| j.finished.is_none());
        let job = active.next().cloned().expect("a running Job");
        assert!(active.next().is_none(), "one Job per digest");
        job
    }

    /// The pod of `job` in `phase`, its init container done, its scan container `scan`.
    fn scan_pod(&mut self, job: &JobView, phase: &str, scan: ScanContainerState) -> ScanPodView {
        ScanPodView {
            namespace: job.namespace.clone(),
            name: format!("{}-pod", job.name),
            uid: format!("{}-pod", job.uid),
            resource_version: self.next_rv(),
            job_uid: Some(job.uid.clone()),
            job_name: Some(job.name.clone()),
            created: self.now,
            phase: Some(phase.into()),
            evicted: false,
            init: exited_ok(),
            scan,
        }
    }

    /// The kubelet reports the scan container of the running Job's pod waiting.
    fn scan_pod_waits(&mut self, reason: &str, message: &str) {
        let job = self.active();
        let waiting = ScanContainerState {
            waiting_reason: Some(reason.into()),
            waiting_message: Some(message.into()),
            ..ScanContainerState::default()
        };
        let pod = self.scan_pod(&job, "Pending", waiting);
        self.server.put_scan_pod(pod);
        self.run();
    }

    /// The Job controller could not create the running Job's pod.
    fn scan_pod_rejected(&mut self, message: &str) {
        let job = self.active();
        self.observe(Observation::JobPodRejected {
            namespace: job.namespace.clone(),
            job_name: job.name.clone(),
            job_uid: job.uid.clone(),
            message: message.into(),
        });
        self.run();
    }

    /// The running Job's pod scans and the Job completes.
    fn scan_succeeds(&mut self) {
        let job = self.active();
        let pod = self.scan_pod(&job, "Succeeded", exited_ok());
        self.logs
            .insert((pod.namespace.clone(), pod.name.clone()), b"[]".to_vec());
        self.server.put_scan_pod(pod);
        self.server
            .finish_job(&job.namespace, &job.name, true, "Complete", "");
        self.run();
    }

    /// (namespace, imagePullSecrets, service account) of the `n`th Job created.
    fn placement(&self, n: usize) -> (String, Vec<String>, String) {
        let job = &self.created()[n];
        let spec = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod spec");
        (
            job.metadata.namespace.clone().unwrap_or_default(),
            spec.image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .collect(),
            spec.service_account_name.unwrap_or_default(),
        )
    }

    /// (reason, message) of the `Stalled` condition of every CIS, or `None` each.
    fn stalled(&self) -> Vec<Option<(String, String)>> {
        self.cis
            .values()
            .map(|c| {
                c.view
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Stalled" && c.status == "True")
                    .map(|c| (c.reason.clone(), c.message.clone()))
            })
            .collect()
    }

    /// Whether every CIS shows a successful scan.
    fn all_scanned(&self) -> bool {
        !self.cis.is_empty()
            && self.cis.values().all(|c| {
                let status = &c.view.status;
                status.last_successful_scan_time.is_some()
                    && status.last_successful_scan_time == status.last_scan_time
            })
    }
}

/// A container that ran and exited 0.
fn exited_ok() -> ScanContainerState {
    ScanContainerState {
        exit_code: Some(0),
        started: true,
        ..ScanContainerState::default()
    }
}

fn with_secret(namespace: &str, name: &str, secret: &str, sa: &str) -> PodView {
    let mut pod = pod_in(namespace, name);
    pod.pull_credentials = Some(Arc::new(PullCredentials {
        secrets: vec![secret.to_string()],
        service_account: sa.to_string(),
    }));
    pod
}

fn cluster() -> Cluster {
    Cluster::new(EngineConfig::for_tests(SCAN_NS))
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn a_private_image_is_scanned_where_its_secret_is_with_that_pods_credentials() {
    let mut c = cluster();
    c.pod(with_secret(
        "team",
        "app",
        "registry-credentials",
        "builder",
    ));
    c.run();
    assert_eq!(c.created().len(), 1);
    assert_eq!(
        c.placement(0),
        (s("team"), vec![s("registry-credentials")], s("builder"))
    );
    let job = &c.created()[0];
    let name = job.metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("image-scan-nginx-"), "{name}");
    let pod_spec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    // The workload's service account, never its token.
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    // The scan namespace's trivy-job-config, out of envFrom's reach here, comes as env.
    let scan = &pod_spec.containers[0];
    assert_eq!(scan.env_from, None);
    let server = scan.env.iter().flatten().find(|e| e.name == "TRIVY_SERVER");
    assert_eq!(server.and_then(|e| e.value.as_deref()), Some(TRIVY_SERVER));
    c.scan_succeeds();
    assert!(c.all_scanned());
}

/// Until the trivy-job-config ConfigMap is known (or while it is missing), a Job outside the
/// scan namespace could not reach the trivy server: every scan runs in the scan namespace.
#[test]
fn without_the_job_config_every_scan_runs_in_the_scan_namespace() {
    let mut c = cluster();
    c.observe(Observation::TrivyJobConfig { data: None });
    c.pod(with_secret("team", "app", "creds", "default"));
    c.run();
    assert_eq!(c.placement(0), (s(SCAN_NS), vec![], s("default")));
    let scan = c.created()[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers[0].clone())
        .expect("scan container");
    assert!(scan.env_from.is_some_and(|from| from.len() == 1));
    // Once it is there, the next Job goes where the credentials are.
    c.observe(Observation::TrivyJobConfig {
        data: Some(BTreeMap::new()),
    });
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(c.placement(1).0, "team");
}

#[test]
fn an_image_a_pod_runs_without_secrets_is_scanned_in_the_scan_namespace() {
    let mut c = cluster();
    c.pod(pod_in("team", "app"));
    c.pod(with_secret("other", "app", "creds", "default"));
    c.run();
    assert_eq!(c.placement(0), (s(SCAN_NS), vec![], s("default")));
    let name = c.created()[0].metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("nginx-"), "{name}");
    c.scan_succeeds();
    assert!(c.all_scanned());
}

#[test]
fn a_digest_in_two_namespaces_with_different_secrets_is_scanned_once() {
    let mut c = cluster();
    c.pod(with_secret("team-b", "app", "creds-b", "default"));
    c.pod(with_secret("team-a", "app", "creds-a", "default"));
    c.run();
    assert_eq!(c.created().len(), 1);
    assert_eq!(
        c.placement(0),
        (s("team-a"), vec![s("creds-a")], s("default"))
    );
    c.scan_succeeds();
    assert_eq!(c.cis.len(), 2);
    assert!(c.all_scanned());
    assert_eq!(c.created().len(), 1);
}

#[test]
fn a_credential_refusal_moves_the_scan_to_the_next_placement_at_once() {
    let mut c = cluster();
    c.pod(with_secret("team-a", "app", "creds-a", "default"));
    c.pod(with_secret("team-b", "app", "creds-b", "default"));
    c.run();
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    // No failure shown: the next placement runs now, in team-b.
    assert_eq!(c.created().len(), 2);
    assert_eq!(
        c.placement(1),
        (s("team-b"), vec![s("creds-b")], s("default"))
    );
    assert!(c.stalled().iter().all(Option::is_none), "{:?}", c.stalled());
    c.scan_succeeds();
    assert!(c.all_scanned());
    // The rescan starts where the scan worked.
    c.advance(13 * 3600 + 600);
    assert_eq!(c.created().len(), 3);
    assert_eq!(c.placement(2).0, "team-b");
}

#[test]
fn when_every_placement_is_refused_the_scan_fails_once_with_every_reason_and_backs_off() {
    let mut c = cluster();
    c.pod(with_secret("team", "app", "deleted-secret", "default"));
    c.run();
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(c.placement(1).0, SCAN_NS);
    c.scan_pod_waits("ImagePullBackOff", UNAUTHORIZED);
    let stalled = c.stalled();
    let (reason, message) = stalled[0].clone().expect("Stalled");
    assert_eq!(reason, "ImagePullUnauthorized");
    assert!(
        message.starts_with("no placement of the scan Job worked: ")
            && message.contains("namespace 'team' with imagePullSecrets [deleted-secret]: ")
            && message.contains("scan namespace 'scans': ")
            && message.contains("401 Unauthorized"),
        "{message}"
    );
    // No hot loop: the next round waits for the failed-scan retry (5 min), then tries each
    // placement once more.
    assert_eq!(c.created().len(), 2);
    c.advance(299);
    assert_eq!(c.created().len(), 2);
    c.advance(2);
    assert_eq!(c.created().len(), 3);
    assert_eq!(c.placement(2).0, "team");
}

#[test]
fn a_missing_image_fails_at_once_without_trying_other_placements() {
    let mut c = cluster();
    c.pod(with_secret("team", "app", "creds", "default"));
    c.run();
    c.scan_pod_waits("ErrImagePull", NOT_FOUND);
    assert_eq!(c.created().len(), 1);
    let (reason, message) = c.stalled()[0].clone().expect("Stalled");
    assert_eq!((reason.as_str(), message.as_str()), ("Error", NOT_FOUND));
}

#[test]
fn a_namespace_that_refuses_the_scan_pod_is_named_in_a_scan_pod_rejected_failure() {
    const PSA: &str = "pods \"image-scan-nginx-111111111111-x\" is forbidden: violates PodSecurity \"restricted:latest\": unrestricted capabilities (container \"scan-image\" must not include \"DAC_OVERRIDE\" in securityContext.capabilities.add)";
    let mut c = cluster();
    c.pod(with_secret("restricted", "app", "creds", "default"));
    c.run();
    c.scan_pod_rejected(PSA);
    // The scan namespace next (a kubelet without the credential check lets it use the image).
    assert_eq!(c.created().len(), 2);
    assert_eq!(c.placement(1).0, SCAN_NS);
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    let (reason, message) = c.stalled()[0].clone().expect("Stalled");
    assert_eq!(
        reason, "ScanPodRejected",
        "the preferred placement's reason"
    );
    assert!(message.contains("violates PodSecurity"), "{message}");
    assert!(message.contains("401 Unauthorized"), "{message}");
}

#[test]
fn a_namespace_where_the_operator_may_not_create_jobs_falls_back_to_the_scan_namespace() {
    let mut c = cluster();
    c.answer_next("create_job", failed(ApiErrorKind::Forbidden));
    c.pod(with_secret("locked", "app", "creds", "default"));
    c.run();
    // Retried after the API back-off (1 s), in the scan namespace.
    c.advance(2);
    assert_eq!(c.created().len(), 2);
    assert_eq!(c.placement(0).0, "locked");
    assert_eq!(c.placement(1).0, SCAN_NS);
    c.scan_succeeds();
    assert!(c.all_scanned());
}

/// A workload in the scan namespace itself (e.g. the operator's own pods, pulled with a secret):
/// its placement there is a workload placement, told apart from the scan namespace's by its
/// credentials, so a refusal moves on instead of repeating it.
#[test]
fn a_workload_in_the_scan_namespace_has_a_placement_of_its_own() {
    let mut c = cluster();
    c.pod(with_secret(SCAN_NS, "app", "creds", "default"));
    c.run();
    assert_eq!(c.placement(0), (s(SCAN_NS), vec![s("creds")], s("default")));
    let name = c.created()[0].metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("image-scan-"), "{name}");
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(c.placement(1), (s(SCAN_NS), vec![], s("default")));
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(c.created().len(), 2, "one Job per placement");
    assert_eq!(
        c.stalled()[0].clone().map(|s| s.0).as_deref(),
        Some("ImagePullUnauthorized")
    );
}

#[test]
fn with_placement_off_every_scan_runs_in_the_scan_namespace() {
    let mut cfg = EngineConfig::for_tests(SCAN_NS);
    cfg.workload_placement = false;
    let mut c = Cluster::new(cfg);
    c.pod(with_secret("team", "app", "creds", "default"));
    c.run();
    assert_eq!(c.placement(0), (s(SCAN_NS), vec![], s("default")));
    c.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(c.created().len(), 1);
    assert_eq!(
        c.stalled()[0].clone().map(|s| s.0).as_deref(),
        Some("ImagePullUnauthorized")
    );
}

#[test]
fn a_restarted_engine_knows_the_placement_of_a_running_job_from_the_job() {
    let mut c = cluster();
    c.pod(with_secret("team", "app", "creds", "default"));
    c.run();
    let job = c.active();
    assert_eq!(
        job.pull_credentials.as_deref().map(|p| p.secrets.clone()),
        Some(vec![s("creds")])
    );
    // A new engine sees the pod, the CIS and the running Job, then the refusal.
    let mut fresh = cluster();
    fresh.now = c.now;
    fresh.pod(with_secret("team", "app", "creds", "default"));
    for stored in c.cis.values() {
        fresh
            .server
            .put_cis(stored.view.clone(), Some(stored.status.clone()));
    }
    fresh.server.put_job(job);
    fresh.run();
    fresh.scan_pod_waits("ErrImagePull", UNAUTHORIZED);
    assert_eq!(
        fresh.created().len(),
        1,
        "a new Job once the running one was refused"
    );
    assert_eq!(fresh.placement(0).0, SCAN_NS);
}

#[test]
fn a_scan_job_requires_the_platform_of_the_nodes_that_run_the_image() {
    let required = |job: &Job| {
        job.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .map(|r| {
                r.node_selector_terms[0]
                    .match_expressions
                    .iter()
                    .flatten()
                    .map(|e| (e.key.clone(), e.values.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
            })
    };
    let platform = |arch: &str| {
        Some(NodePlatform {
            os: Some(s("linux")),
            arch: Some(s(arch)),
        })
    };
    let mut c = cluster();
    for (node, arch) in [("n1", "arm64"), ("n2", "amd64")] {
        c.observe(Observation::NodePlatform {
            node: s(node),
            platform: platform(arch),
        });
    }
    // The only pod of the image runs on the arm64 node: the amd64 one must not take the scan.
    c.pod(pod_in("team", "app"));
    c.run();
    assert_eq!(
        required(&c.created()[0]),
        Some(vec![
            (s("kubernetes.io/os"), vec![s("linux")]),
            (s("kubernetes.io/arch"), vec![s("arm64")]),
        ])
    );

    // A node the shell knows nothing of (deleted, or no labels) requires nothing.
    let mut c = cluster();
    c.observe(Observation::NodePlatform {
        node: s("n1"),
        platform: platform("arm64"),
    });
    c.observe(Observation::NodePlatform {
        node: s("n1"),
        platform: None,
    });
    c.pod(pod_in("team", "app"));
    c.run();
    assert_eq!(required(&c.created()[0]), None);
}

/// Seen on the real node: Pod Security refused the scan pod so fast that the watch delivered
/// the Job, the `FailedCreate` Event and (after our delete) the Job's deletion before the
/// answer to the create; that answer brought the deleted Job back as running, and the digest
/// waited for it until its deadline.
#[test]
fn a_create_answer_after_the_watch_saw_the_job_deleted_does_not_bring_it_back() {
    const PSA: &str = "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\"";
    let mut c = cluster();
    c.pod(with_secret("restricted", "app", "creds", "default"));
    // Answer everything but the Job's creation.
    let mut create = None;
    for _ in 0..10 {
        for cmd in c.e.poll(c.now) {
            if matches!(cmd.action, Action::CreateJob { .. }) {
                create = Some(cmd);
                continue;
            }
            let outcome = c.answer(&cmd.action).expect("answered");
            c.observe(Observation::Outcome {
                id: cmd.id,
                outcome,
            });
        }
        c.deliver();
    }
    let create = create.expect("a Job");
    // The server created it; its answer is still on the way.
    let held = c.answer(&create.action).expect("answered");
    // The watch events come in the order the test gives.
    c.lose_watch_events();
    let job = c.active();
    c.observe(Observation::Job {
        stream: StreamId(10),
        event: WatchEvent::Apply(job.clone()),
    });
    c.observe(Observation::JobPodRejected {
        namespace: job.namespace.clone(),
        job_name: job.name.clone(),
        job_uid: job.uid.clone(),
        message: PSA.into(),
    });
    let delete =
        c.e.poll(c.now)
            .into_iter()
            .find(|cmd| matches!(cmd.action, Action::DeleteJob { .. }))
            .expect("the refused Job is deleted");
    let done = c.answer(&delete.action).expect("answered");
    c.observe(Observation::Outcome {
        id: delete.id,
        outcome: done,
    });
    c.observe(Observation::Job {
        stream: StreamId(10),
        event: WatchEvent::Delete(job),
    });
    c.lose_watch_events();
    c.observe(Observation::Outcome {
        id: create.id,
        outcome: held,
    });
    c.run();
    assert_eq!(c.created().len(), 2, "the next placement at once");
    assert_eq!(c.placement(1).0, SCAN_NS);
}

#[test]
fn a_job_whose_creation_timed_out_and_already_exists_is_not_created_again_elsewhere() {
    let mut c = cluster();
    c.pod(with_secret("team-b", "app", "creds-b", "default"));
    // The Job's creation is applied, but its answer and its watch event are lost.
    let mut lost = false;
    for _ in 0..10 {
        for cmd in c.e.poll(c.now) {
            let creates = matches!(cmd.action, Action::CreateJob { .. });
            if creates && !lost {
                c.deliver();
            }
            let mut outcome = c.answer(&cmd.action).expect("answered");
            if creates && !lost {
                lost = true;
                c.lose_watch_events();
                outcome = failed(ApiErrorKind::Unknown);
            }
            c.observe(Observation::Outcome {
                id: cmd.id,
                outcome,
            });
        }
        c.deliver();
    }
    assert!(lost, "a Job was created");
    // A pod of another namespace, with credentials of its own, now runs the image too: a
    // placement that comes before team-b's.
    c.pod(with_secret("team-a", "app", "creds-a", "default"));
    // The retry answers "already exists"; the Job is team-b's, still unseen.
    c.advance(5);
    c.advance(5);
    let namespaces: Vec<String> = (0..c.created().len()).map(|n| c.placement(n).0).collect();
    assert!(
        namespaces.len() >= 2 && namespaces.iter().all(|n| n == "team-b"),
        "the retries name the same Job, none starts elsewhere: {namespaces:?}"
    );
    // The watch shows the Job at last; the scan goes on with it.
    let job = c.active();
    c.server.put_job(job);
    c.run();
    let creates = c.created().len();
    c.scan_succeeds();
    assert!(c.all_scanned());
    assert_eq!(
        c.created().len(),
        creates,
        "no Job after the watch showed it"
    );
}
