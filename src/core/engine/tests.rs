//! Engine regression tests: each pins a bug the simulator (`sim/`) found.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;
use crate::port::{
    ApiError, CisStatusView, JobView, PodView, ScanContainerState, ScanPodView, StreamId,
    WatchEvent,
};

pub(super) const D1: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub(super) const D2: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";
pub(super) const T: Timestamp = Timestamp(1_700_000_000_000);

pub(super) fn at(secs: i64) -> Timestamp {
    T.plus(std::time::Duration::from_secs(
        u64::try_from(secs).unwrap_or(0),
    ))
}

fn engine() -> Engine {
    leading_engine(EngineConfig::for_tests("scans"))
}

/// An engine with `cfg`, synced and leading.
pub(super) fn leading_engine(cfg: EngineConfig) -> Engine {
    let mut e = Engine::new(cfg);
    e.observe(Observation::CachesSynced, T);
    e.observe(Observation::Leadership { leading: true }, T);
    e
}

pub(crate) use crate::test_kit::cis;

/// The CIS the server returns for an `ApplyCis` that creates it (UID `uid-<name>`, generation
/// 1, no status); `None` for any other action.
pub(super) fn created_cis(action: &Action, resource_version: Option<u64>) -> Option<CisView> {
    let Action::ApplyCis {
        namespace,
        name,
        labels,
        owners,
        spec,
    } = action
    else {
        return None;
    };
    let uid = format!("uid-{name}");
    let at = (namespace.as_str(), name.as_str());
    Some(crate::test_kit::apply::created_by_apply(
        at,
        labels,
        owners,
        spec,
        uid,
        resource_version,
    ))
}

pub(super) fn failed_status(job_uid: &str, at: Timestamp) -> CisStatusView {
    CisStatusView {
        observed_generation: Some(1),
        last_scan_job_uid: Some(job_uid.into()),
        last_scan_time: Some(at),
        last_successful_scan_time: None,
        conditions: vec![Condition {
            last_transition_time: at.to_k8s(),
            message: "scan failed".into(),
            observed_generation: None,
            reason: "Error".into(),
            status: "True".into(),
            type_: "Stalled".into(),
        }],
        summary: None,
        details_bytes: 0,
        ..CisStatusView::default()
    }
}

pub(super) fn apply_cis(e: &mut Engine, view: CisView, now: Timestamp) {
    e.observe(
        Observation::Cis {
            stream: StreamId(2),
            event: WatchEvent::Apply(view),
        },
        now,
    );
}

pub(super) fn failed(kind: ApiErrorKind) -> Outcome {
    Outcome::Failed(ApiError {
        kind,
        message: "injected".into(),
    })
}

fn reply(e: &mut Engine, id: CommandId, outcome: Outcome, now: Timestamp) {
    e.observe(Observation::Outcome { id, outcome }, now);
}

pub(super) fn verbs(cmds: &[Command]) -> Vec<&'static str> {
    cmds.iter().map(|c| c.action.verb()).collect()
}

#[test]
fn a_renewed_leadership_does_not_sync_everything_again() {
    let mut e = engine();
    apply_cis(&mut e, cis("a", "uid-a", D1, failed_status("job-1", T)), T);
    assert!(e.poll(at(1)).is_empty(), "nothing to do until the retry");
    assert_eq!(e.queue_depth(), 0);
    e.observe(Observation::Leadership { leading: true }, at(2));
    assert_eq!(e.queue_depth(), 0, "a renewal changes nothing");
    e.observe(Observation::Leadership { leading: false }, at(3));
    e.observe(Observation::Leadership { leading: true }, at(4));
    assert!(e.queue_depth() > 0, "a new term looks at everything again");
}

#[test]
fn nothing_is_issued_once_the_lease_last_seen_renewed_has_run_out() {
    // Found by the chaos test (issue 22): a leader paused past its lease woke up and wrote a
    // CIS 21 s after the other replica took over, before it was told it lost the Lease.
    let mut e = engine();
    e.observe(Observation::LeaseValidUntil { until: at(10) }, T);
    apply_cis(&mut e, cis("a", "uid-a", D1, CisStatusView::default()), T);
    let late = at(30);
    assert!(e.poll(late).is_empty(), "the lease ran out at 10 s");
    assert!(e.queue_depth() > 0, "the work waits");
    e.observe(Observation::LeaseValidUntil { until: at(42) }, late);
    assert!(!e.poll(late).is_empty(), "a renewal seen: back to work");
}

#[test]
fn a_status_write_answered_not_found_forgets_the_cis_instead_of_rewriting_it() {
    // Found by the simulator: the CIS was deleted, the watch had not said so yet, and the
    // engine rewrote its status (plus a ScanFailed Event) once per round trip.
    let mut e = engine();
    apply_cis(&mut e, cis("a", "uid-a", D1, failed_status("job-1", T)), T);
    apply_cis(&mut e, cis("b", "uid-b", D1, CisStatusView::default()), T);
    let now = at(1);
    let cmds = e.poll(now);
    let status = cmds
        .iter()
        .find(|c| matches!(&c.action, Action::ApplyCisStatus { name, .. } if name == "b"))
        .expect("the failure is fanned out to b");
    reply(&mut e, status.id, failed(ApiErrorKind::NotFound), now);
    let again = e.poll(now);
    assert!(
        !again
            .iter()
            .any(|c| matches!(&c.action, Action::ApplyCisStatus { name, .. } if name == "b")),
        "no rewrite of a CIS the server says is gone: {:?}",
        verbs(&again)
    );
    assert!(e.cis_views().all(|c| c.name != "b"));
}

pub(super) fn pod_with(digest: &str) -> PodView {
    let mut pod = crate::test_kit::pod("p", "pod-uid", digest);
    pod.created = T;
    pod.start_time = Some(T);
    pod
}

/// A running pod of `nginx` at [`D1`] in `namespace`, without imagePullSecrets.
pub(super) fn pod_in(namespace: &str, name: &str) -> PodView {
    let mut pod = pod_with(D1);
    pod.namespace = namespace.into();
    pod.name = name.into();
    pod.uid = format!("uid-{namespace}-{name}");
    pod
}

#[test]
fn a_deleted_obsolete_cis_is_not_deleted_again_before_the_watch_says_so() {
    // Found by the simulator: DeleteCis was issued again for every round trip (answered
    // NotFound) while the Delete event was still on its way.
    let mut e = engine();
    e.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(pod_with(D2)),
        },
        T,
    );
    let mut old = cis("pod-p-app-old", "uid-old", D1, CisStatusView::default());
    old.owners = vec![crate::port::OwnerRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "p".into(),
        uid: "pod-uid".into(),
    }];
    apply_cis(&mut e, old, T);
    let cmds = e.poll(at(1));
    let delete = cmds
        .iter()
        .find(|c| matches!(c.action, Action::DeleteCis { .. }))
        .expect("the CIS of the old digest is obsolete");
    reply(&mut e, delete.id, Outcome::Done, at(1));
    let again = e.poll(at(2));
    assert!(
        !again
            .iter()
            .any(|c| matches!(c.action, Action::DeleteCis { .. })),
        "{:?}",
        verbs(&again)
    );
    // Answered NotFound instead (deleted by someone else): forgotten as well.
    let mut e2 = engine();
    e2.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(pod_with(D2)),
        },
        T,
    );
    let mut old = cis("pod-p-app-old", "uid-old", D1, CisStatusView::default());
    old.owners = vec![crate::port::OwnerRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "p".into(),
        uid: "pod-uid".into(),
    }];
    apply_cis(&mut e2, old, T);
    let cmds = e2.poll(at(1));
    let delete = cmds
        .iter()
        .find(|c| matches!(c.action, Action::DeleteCis { .. }))
        .expect("obsolete");
    reply(&mut e2, delete.id, failed(ApiErrorKind::NotFound), at(1));
    let again = e2.poll(at(1));
    assert!(
        !again
            .iter()
            .any(|c| matches!(c.action, Action::DeleteCis { .. }))
    );
    assert!(e2.cis_views().all(|c| c.name != "pod-p-app-old"));
}

pub(super) fn job(name: &str, uid: &str, digest: &str) -> JobView {
    JobView {
        namespace: "scans".into(),
        name: name.into(),
        uid: uid.into(),
        resource_version: Some(5),
        digest: Some(digest.into()),
        image_name: Some("docker.io/library/nginx".into()),
        cis_namespace: Some("ns".into()),
        cis_uid: Some("uid-a".into()),
        created: T,
        finished: None,
        deleting: false,
        pull_credentials: None,
    }
}

fn backing_off_pod(job_uid: &str) -> ScanPodView {
    ScanPodView {
        namespace: "scans".into(),
        name: "nginx-111111111111-abcde".into(),
        uid: "scan-pod".into(),
        resource_version: Some(6),
        job_uid: Some(job_uid.into()),
        job_name: Some("nginx-111111111111".into()),
        created: T,
        phase: Some("Pending".into()),
        evicted: false,
        init: ScanContainerState {
            exit_code: Some(0),
            started: true,
            ..ScanContainerState::default()
        },
        scan: ScanContainerState {
            waiting_reason: Some("ImagePullBackOff".into()),
            waiting_message: Some("Back-off pulling image".into()),
            ..ScanContainerState::default()
        },
    }
}

#[test]
fn a_job_the_server_says_is_gone_is_not_deleted_in_a_loop() {
    // Found by the simulator: DeleteJob answered NotFound (Delete event lost or late) was
    // re-issued once per round trip.
    for answer in [Outcome::Done, failed(ApiErrorKind::NotFound)] {
        let mut e = engine();
        apply_cis(&mut e, cis("a", "uid-a", D1, CisStatusView::default()), T);
        e.observe(
            Observation::Job {
                stream: StreamId(10),
                event: WatchEvent::Apply(job("nginx-111111111111", "job-uid", D1)),
            },
            T,
        );
        e.observe(
            Observation::ScanPod {
                stream: StreamId(11),
                event: WatchEvent::Apply(backing_off_pod("job-uid")),
            },
            T,
        );
        let cmds = e.poll(at(1));
        let delete = cmds
            .iter()
            .find(|c| matches!(c.action, Action::DeleteJob { .. }))
            .expect("a Job that cannot pull is deleted");
        reply(&mut e, delete.id, answer.clone(), at(1));
        let again = e.poll(at(1));
        assert!(
            !again
                .iter()
                .any(|c| matches!(c.action, Action::DeleteJob { .. })),
            "after {answer:?}: {:?}",
            verbs(&again)
        );
        assert_eq!(e.active_jobs(), 0);
    }
}

#[test]
fn a_permanent_write_failure_backs_off_instead_of_being_reissued_at_once() {
    // Found by the simulator: a status write answered with a non-retryable error (413 for a
    // failure status that keeps large details, 422, namespace terminating) was re-issued once
    // per round trip, each time with a new ScanFailed Event.
    for kind in [
        ApiErrorKind::TooLarge,
        ApiErrorKind::Invalid,
        ApiErrorKind::NamespaceTerminating,
    ] {
        let mut e = engine();
        apply_cis(&mut e, cis("a", "uid-a", D1, failed_status("job-1", T)), T);
        apply_cis(&mut e, cis("b", "uid-b", D1, CisStatusView::default()), T);
        let is_b =
            |c: &Command| matches!(&c.action, Action::ApplyCisStatus { name, .. } if name == "b");
        let cmds = e.poll(at(1));
        let status = cmds.iter().find(|c| is_b(c)).expect("fan-out to b");
        reply(&mut e, status.id, failed(kind), at(1));
        assert!(
            !e.poll(at(1)).iter().any(is_b),
            "{kind:?}: re-issued at once"
        );
        let later = e.next_wakeup().expect("a retry is scheduled");
        assert!(later > at(1));
        // Retried exactly when the back-off ends: the timer fires at its deadline.
        assert!(
            e.poll(later).iter().any(is_b),
            "{kind:?}: retried when the back-off ends"
        );
    }
}

#[test]
fn a_job_creation_with_unknown_result_counts_against_the_job_limit() {
    // Found by the simulator: a CreateJob that timed out after the server applied it was not
    // counted, so the next digest got a Job at once and the limit was exceeded.
    let mut cfg = EngineConfig::for_tests("scans");
    cfg.active_job_limit = 1;
    let mut e = leading_engine(cfg);
    apply_cis(&mut e, cis("a", "uid-a", D1, CisStatusView::default()), T);
    apply_cis(&mut e, cis("b", "uid-b", D2, CisStatusView::default()), T);
    let creates = |cmds: &[Command]| {
        cmds.iter()
            .filter(|c| matches!(c.action, Action::CreateJob { .. }))
            .count()
    };
    let cmds = e.poll(at(1));
    assert_eq!(creates(&cmds), 1, "one Job under a limit of one");
    let create = cmds
        .iter()
        .find(|c| matches!(c.action, Action::CreateJob { .. }))
        .expect("created");
    reply(&mut e, create.id, failed(ApiErrorKind::Unknown), at(1));
    assert_eq!(
        creates(&e.poll(at(1))),
        0,
        "the uncertain Job still holds the slot"
    );
    // The retry of the same digest goes out after the back-off; another digest may not.
    let retry = e.poll(at(3));
    assert_eq!(creates(&retry), 1, "the retry settles the uncertainty");
    assert!(
        retry.iter().all(|c| match &c.action {
            Action::CreateJob { job } => job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("image-scanner.statnett.no/digest"))
                .is_some_and(|d| d == D1),
            _ => true,
        }),
        "{:?}",
        verbs(&retry)
    );
    // Without any news the hold expires and the queue moves on.
    let later = e.poll(at(120));
    assert!(creates(&later) <= 1);
}

fn relist_cis(e: &mut Engine, views: Vec<CisView>, now: Timestamp) {
    let stream = StreamId(2);
    e.observe(
        Observation::Cis {
            stream,
            event: WatchEvent::InitStarted,
        },
        now,
    );
    for v in views {
        e.observe(
            Observation::Cis {
                stream,
                event: WatchEvent::InitApply(v),
            },
            now,
        );
    }
    e.observe(
        Observation::Cis {
            stream,
            event: WatchEvent::InitDone,
        },
        now,
    );
}

#[test]
fn objects_learned_from_outcomes_are_forgotten_by_a_relist_that_lacks_them() {
    // Found by the simulator: a CIS created by our apply (or a Job by our create) was filed
    // under StreamId(0), which no relist ever sweeps; after its Delete event was lost the
    // engine kept it forever (stale metrics, and a ghost active Job blocking its digest).
    let mut e = Engine::new(EngineConfig::for_tests("scans"));
    relist_cis(&mut e, Vec::new(), T);
    for event in [WatchEvent::InitStarted, WatchEvent::InitDone] {
        e.observe(
            Observation::Job {
                stream: StreamId(10),
                event,
            },
            T,
        );
    }
    e.observe(Observation::CachesSynced, T);
    e.observe(Observation::Leadership { leading: true }, T);
    e.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(pod_with(D1)),
        },
        T,
    );
    let cmds = e.poll(at(1));
    let apply = cmds
        .iter()
        .find_map(|c| match &c.action {
            Action::ApplyCis { name, spec, .. } => Some((c.id, name.clone(), spec.clone())),
            _ => None,
        })
        .expect("the pod's CIS is created");
    let mut created = cis(&apply.1, "uid-new", D1, CisStatusView::default());
    created.spec = apply.2;
    reply(
        &mut e,
        apply.0,
        Outcome::CisApplied(Box::new(created)),
        at(1),
    );
    assert_eq!(e.cis_views().count(), 1);
    let cmds = e.poll(at(2));
    let create = cmds
        .iter()
        .find(|c| matches!(c.action, Action::CreateJob { .. }))
        .expect("a scan Job is created");
    reply(
        &mut e,
        create.id,
        Outcome::JobCreated(Box::new(job("nginx-111111111111", "job-uid", D1))),
        at(2),
    );
    assert_eq!(e.active_jobs(), 1);
    // Both were deleted meanwhile and their Delete events lost; the relists do not show them.
    relist_cis(&mut e, Vec::new(), at(3));
    assert_eq!(e.cis_views().count(), 0, "the relist forgets the CIS");
    for event in [WatchEvent::InitStarted, WatchEvent::InitDone] {
        e.observe(
            Observation::Job {
                stream: StreamId(10),
                event,
            },
            at(3),
        );
    }
    assert_eq!(e.active_jobs(), 0, "the relist forgets the Job");
}

/// The values `/metrics` exports as operational gauges follow the engine's state: not synced
/// or leading until told, commands in flight, and work waiting counted once per dirty CIS,
/// dirty digest and digest queued for a scan slot.
#[test]
fn operational_gauges_follow_the_engine_state() {
    let mut cfg = EngineConfig::for_tests("scans");
    cfg.active_job_limit = 1;
    let mut e = Engine::new(cfg);
    assert!(!e.is_synced() && !e.is_leading());
    for (name, digest) in [("a", D1), ("b", D2), ("c", D2)] {
        let view = cis(
            name,
            &format!("uid-{name}"),
            digest,
            CisStatusView::default(),
        );
        apply_cis(&mut e, view, T);
    }
    // Three dirty CIS and two dirty digests; nothing decided before the caches are synced.
    assert_eq!((e.queue_depth(), e.inflight()), (5, 0));
    e.observe(Observation::CachesSynced, T);
    assert!(e.is_synced() && !e.is_leading());
    assert!(e.poll(at(1)).is_empty(), "no writes before leading");
    e.observe(Observation::Leadership { leading: true }, T);
    assert!(e.is_synced() && e.is_leading());
    let cmds = e.poll(at(1));
    // One Job (the job limit), the other digest queued for a slot.
    assert_eq!(verbs(&cmds), ["create_job"]);
    assert_eq!((e.queue_depth(), e.inflight()), (1, 1));
    reply(&mut e, cmds[0].id, failed(ApiErrorKind::Throttled), at(2));
    assert_eq!(e.inflight(), 0);
    assert_eq!(e.stats().jobs_created, 0);
    assert_eq!(
        e.stats().command_errors.get(&ApiErrorKind::Throttled),
        Some(&1)
    );
    e.observe(Observation::Leadership { leading: false }, at(3));
    assert!(!e.is_leading());
    assert_eq!(e.queue_depth(), 2, "both digests still wait for a Job");
    // A new term starts from everything: three CIS and two digests dirty, one digest queued.
    e.observe(Observation::Leadership { leading: true }, at(4));
    assert_eq!(e.queue_depth(), 6);
}

/// The flow-control window: with one command allowed in flight, the work that did not fit
/// stays queued and is issued once the slot frees, without any new watch event.
#[test]
fn work_that_does_not_fit_the_window_waits_for_a_free_slot() {
    let mut cfg = EngineConfig::for_tests("scans");
    cfg.max_inflight = 1;
    let mut e = leading_engine(cfg);
    for (name, digest) in [("p1", D1), ("p2", D2)] {
        let mut pod = pod_with(digest);
        pod.name = name.into();
        pod.uid = format!("{name}-uid");
        e.observe(
            Observation::Pod {
                stream: StreamId(0),
                event: WatchEvent::Apply(pod),
            },
            T,
        );
    }
    let mut server = crate::test_kit::fake_api::FakeApi::new(at(1));
    let mut applied = Vec::new();
    for round in 0..10 {
        let cmds = e.poll(at(1));
        assert!(cmds.len() <= 1, "round {round}: {:?}", verbs(&cmds));
        let Some(cmd) = cmds.into_iter().next() else {
            break;
        };
        assert_eq!(e.inflight(), 1);
        assert!(e.poll(at(1)).is_empty(), "the window is full");
        // Answered without the watch events that would follow: only the freed slot brings
        // the waiting work back.
        let outcome = match &cmd.action {
            Action::ApplyCis { name, .. } => {
                applied.push(name.clone());
                let outcome = server.execute(&cmd.action).expect("answered");
                server.lose_watch_events();
                outcome
            }
            _ => Outcome::Failed(ApiError {
                kind: ApiErrorKind::Throttled,
                message: "not part of this test".into(),
            }),
        };
        reply(&mut e, cmd.id, outcome, at(1));
    }
    assert_eq!(
        applied.len(),
        2,
        "both CIS applied one after the other: {applied:?}"
    );
    assert_ne!(applied[0], applied[1]);
}

/// Coverage (exported as a gauge): a container is covered when its CIS shows a successful,
/// not stalled, scan of the digest it runs; the time to the first result is accumulated.
#[test]
fn coverage_counts_containers_with_a_successful_scan_of_their_digest() {
    assert_eq!(Coverage::default().ratio(), 1.0);
    let quarter = Coverage {
        containers: 4,
        covered: 1,
        oldest_unscanned: None,
    };
    assert_eq!(quarter.ratio(), 0.25);

    let mut e = engine();
    e.observe(
        Observation::Pod {
            stream: StreamId(0),
            event: WatchEvent::Apply(pod_with(D1)),
        },
        T,
    );
    let name = e
        .poll(T)
        .iter()
        .find_map(|c| match &c.action {
            Action::ApplyCis { name, .. } => Some(name.clone()),
            _ => None,
        })
        .expect("the CIS is applied");
    let unscanned = e.coverage(at(10));
    assert_eq!((unscanned.containers, unscanned.covered), (1, 0));
    assert_eq!(
        unscanned.oldest_unscanned,
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(unscanned.ratio(), 0.0);

    let success = CisStatusView {
        observed_generation: Some(1),
        last_scan_job_uid: Some("job-1".into()),
        last_scan_time: Some(at(20)),
        last_successful_scan_time: Some(at(20)),
        ..Default::default()
    };
    // A success of another digest does not cover the container.
    apply_cis(&mut e, cis(&name, "uid", D2, success.clone()), at(20));
    assert_eq!(e.coverage(at(20)).covered, 0);
    apply_cis(&mut e, cis(&name, "uid", D1, success.clone()), at(20));
    let covered = e.coverage(at(30));
    assert_eq!((covered.containers, covered.covered), (1, 1));
    // A later failure (Stalled) uncovers it even though an older success is kept.
    let mut stalled = failed_status("job-2", at(40));
    stalled.last_successful_scan_time = Some(at(20));
    apply_cis(&mut e, cis(&name, "uid", D1, stalled), at(40));
    assert_eq!(e.coverage(at(40)).covered, 0);
    // A condition other than Stalled=True does not.
    let mut ready = success;
    ready.conditions = failed_status("job-1", at(20)).conditions;
    ready.conditions[0].status = "False".into();
    apply_cis(&mut e, cis(&name, "uid", D1, ready), at(50));
    assert_eq!(e.coverage(at(50)).covered, 1);
}
