//! Scenario tests of the CIS stage (`cis_sync.rs`): when a CIS is written, deleted or left to
//! Kubernetes' garbage collector, checked poll by poll (the simulator's invariants only see
//! the eventual set of CIS objects).

use std::time::Duration;

use super::upstream_cases::{SHA_A, SHA_B, applies, now, owner_uids, pod, rs};
use super::*;
use crate::port::{ApiError, CisStatusView, OwnerRef, PodView, StreamId, WatchEvent};

const IMAGE: &str = "my.registry/repository/app";

/// An engine watching ReplicaSets with an owner-update delay of ten seconds, and ReplicaSet
/// `rs-1`.
fn engine() -> Engine {
    let mut cfg = EngineConfig::for_tests("image-scanner");
    cfg.workload_kinds = [("apps".to_string(), "ReplicaSet".to_string())]
        .into_iter()
        .collect();
    cfg.owner_update_delay = Duration::from_secs(10);
    let mut e = Engine::new(cfg);
    e.observe(Observation::CachesSynced, now());
    e.observe(Observation::Leadership { leading: true }, now());
    e.observe(
        Observation::Workload {
            stream: StreamId(2),
            event: WatchEvent::Apply(rs("rs-1", "rs-1")),
        },
        now(),
    );
    e
}

fn later(secs: u64) -> Timestamp {
    now().plus(Duration::from_secs(secs))
}

fn put_pod(e: &mut Engine, pod: PodView, at: Timestamp) {
    e.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(pod),
        },
        at,
    );
}

fn app_pod(name: &str, digest: &str) -> PodView {
    let owner = rs("rs-1", "rs-1");
    pod(name, Some(&owner), &[("app", IMAGE, digest)])
}

/// Answers every CIS apply with the object the server would return; returns the CIS.
fn apply_all(e: &mut Engine, cmds: &[Command], at: Timestamp) -> Vec<CisView> {
    let mut applied = Vec::new();
    for c in cmds {
        if let Some(view) = crate::engine::tests::created_cis(&c.action, Some(2)) {
            e.observe(
                Observation::Outcome {
                    id: c.id,
                    outcome: Outcome::CisApplied(Box::new(view.clone())),
                },
                at,
            );
            applied.push(view);
        }
    }
    applied
}

#[test]
fn owners_joining_a_cis_are_written_once_the_owner_delay_has_passed() {
    let mut e = engine();
    put_pod(&mut e, app_pod("pod-1", SHA_A), now());
    let first = e.poll(now());
    assert_eq!(apply_all(&mut e, &first, now()).len(), 1);

    // A second replica starts: an owner-only change waits, so replicas starting together
    // cost one write.
    put_pod(&mut e, app_pod("pod-2", SHA_A), now());
    assert!(applies(&e.poll(now())).is_empty(), "written at once");
    let mut pod2 = app_pod("pod-2", SHA_A);
    pod2.resource_version = Some(7);
    put_pod(&mut e, pod2, later(5));
    assert!(
        applies(&e.poll(later(5))).is_empty(),
        "written before the delay passed"
    );
    assert_eq!(e.next_wakeup(), Some(later(10)));
    let cmds = e.poll(later(10));
    let written = applies(&cmds);
    let owners: Vec<Vec<String>> = written.values().map(|a| owner_uids(a)).collect();
    assert_eq!(owners, vec![vec!["uid-pod-1", "uid-pod-2"]]);
}

#[test]
fn a_cis_is_deleted_only_while_an_owner_pod_still_runs() {
    let deletes = |cmds: &[Command]| {
        cmds.iter()
            .filter(|c| matches!(c.action, Action::DeleteCis { .. }))
            .count()
    };
    // A CIS whose owner pod is gone: Kubernetes' garbage collector removes it.
    let mut e = engine();
    let orphan = CisView {
        namespace: "replica-set".into(),
        name: "orphan".into(),
        uid: "uid-orphan".into(),
        resource_version: Some(3),
        generation: 1,
        labels: Default::default(),
        owners: vec![OwnerRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "pod-9".into(),
            uid: "uid-pod-9-before".into(),
        }],
        deleting: false,
        spec: crate::engine::tests::cis("orphan", "uid-orphan", SHA_A, Default::default()).spec,
        status: CisStatusView::default(),
    };
    e.observe(
        Observation::Cis {
            stream: StreamId(3),
            event: WatchEvent::Apply(orphan.clone()),
        },
        now(),
    );
    assert_eq!(deletes(&e.poll(now())), 0, "left to the garbage collector");
    // A new pod under the owner's name (a re-created StatefulSet pod) is not that owner.
    let mut e = engine();
    put_pod(&mut e, app_pod("pod-9", SHA_B), now());
    e.observe(
        Observation::Cis {
            stream: StreamId(3),
            event: WatchEvent::Apply(orphan),
        },
        now(),
    );
    assert_eq!(deletes(&e.poll(now())), 0, "the owner pod is still gone");

    // The owner pod now runs another image: its old CIS is deleted, and a failed delete is
    // retried after a back-off, not forgotten.
    let mut e = engine();
    put_pod(&mut e, app_pod("pod-1", SHA_A), now());
    let first = e.poll(now());
    let old = apply_all(&mut e, &first, now());
    assert_eq!(old.len(), 1);
    let mut moved = app_pod("pod-1", SHA_B);
    moved.resource_version = Some(9);
    put_pod(&mut e, moved, later(1));
    let cmds = e.poll(later(1));
    let delete = cmds
        .iter()
        .find(|c| matches!(&c.action, Action::DeleteCis { name, .. } if *name == old[0].name))
        .expect("the old CIS is deleted");
    e.observe(
        Observation::Outcome {
            id: delete.id,
            outcome: Outcome::Failed(ApiError {
                kind: ApiErrorKind::ServerError,
                message: "injected".into(),
            }),
        },
        later(1),
    );
    assert!(e.cis_views().any(|c| c.name == old[0].name), "forgotten");
    let retry_at = e.next_wakeup().expect("a retry is scheduled");
    let retry = e.poll(retry_at);
    assert_eq!(deletes(&retry), 1, "retried");
    let spec_writes = e.stats().spec_writes;
    for c in retry
        .iter()
        .filter(|c| matches!(c.action, Action::DeleteCis { .. }))
    {
        e.observe(
            Observation::Outcome {
                id: c.id,
                outcome: Outcome::Done,
            },
            retry_at,
        );
    }
    assert_eq!(
        e.stats().spec_writes,
        spec_writes + 1,
        "a delete is a spec write"
    );
}

#[test]
fn the_pod_or_its_workload_turns_on_ignore_unfixed() {
    for (on_workload, on_pod) in [(false, false), (true, false), (false, true)] {
        let mut e = engine();
        let mut owner = rs("rs-1", "rs-1");
        owner.ignore_unfixed = on_workload;
        e.observe(
            Observation::Workload {
                stream: StreamId(2),
                event: WatchEvent::Apply(owner.clone()),
            },
            now(),
        );
        let mut p = pod("pod-1", Some(&owner), &[("app", IMAGE, SHA_A)]);
        p.ignore_unfixed = on_pod;
        put_pod(&mut e, p, now());
        let cmds = e.poll(now());
        let specs: Vec<Option<bool>> = cmds
            .iter()
            .filter_map(|c| match &c.action {
                Action::ApplyCis { spec, .. } => Some(spec.ignore_unfixed),
                _ => None,
            })
            .collect();
        assert_eq!(specs, vec![Some(on_workload || on_pod)]);
    }
}

#[test]
fn pods_of_excluded_namespaces_and_our_own_scan_pods_get_no_cis() {
    use crate::workload::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    let mut excluded = app_pod("pod-1", SHA_A);
    excluded.namespace = "kube-system".into();
    let mut scan_pod = app_pod("pod-2", SHA_A);
    let mut labels = (*scan_pod.labels).clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    scan_pod.labels = labels.into();
    for p in [excluded, scan_pod] {
        let mut e = engine();
        put_pod(&mut e, p.clone(), now());
        assert!(
            applies(&e.poll(now())).is_empty(),
            "{} {}",
            p.namespace,
            p.name
        );
    }
}

#[test]
fn a_stale_pod_update_is_ignored() {
    let mut e = engine();
    let mut current = app_pod("pod-1", SHA_B);
    current.resource_version = Some(5);
    put_pod(&mut e, current, now());
    let first = e.poll(now());
    let applied = apply_all(&mut e, &first, now());
    assert_eq!(applied.len(), 1);
    let mut stale = app_pod("pod-1", SHA_A);
    stale.resource_version = Some(4);
    put_pod(&mut e, stale, later(1));
    let cmds = e.poll(later(1));
    assert!(
        cmds.iter().all(|c| !matches!(
            &c.action,
            Action::ApplyCis { spec, .. } if spec.digest == SHA_A
        )),
        "{:?}",
        crate::engine::tests::verbs(&cmds)
    );
}

#[test]
fn a_cis_that_keeps_being_deleted_is_created_again_after_a_growing_back_off() {
    // Someone else deletes the CIS again and again (a person, a pruning GitOps tool, another
    // replica that also believes it leads with another configuration): created again at once
    // the first time, then after 1 s, 2 s, 4 s instead of many times a second.
    let mut e = engine();
    put_pod(&mut e, app_pod("pod-1", SHA_A), now());
    let first = e.poll(now());
    let mut cis = apply_all(&mut e, &first, now()).remove(0);
    let mut t = 1;
    let mut waits = Vec::new();
    for _ in 0..4 {
        e.observe(
            Observation::Cis {
                stream: StreamId(3),
                event: WatchEvent::Delete(cis.clone()),
            },
            later(t),
        );
        let mut waited = 0;
        loop {
            let cmds = e.poll(later(t + waited));
            if !applies(&cmds).is_empty() {
                cis = apply_all(&mut e, &cmds, later(t + waited)).remove(0);
                break;
            }
            waited += 1;
            assert!(waited < 100, "never created again");
        }
        waits.push(waited);
        t += waited + 1;
    }
    assert_eq!(waits, [0, 1, 2, 4]);
    // Left alone for a while, the next deletion is answered at once again.
    e.observe(
        Observation::Cis {
            stream: StreamId(3),
            event: WatchEvent::Delete(cis),
        },
        later(t + 600),
    );
    assert_eq!(applies(&e.poll(later(t + 600))).len(), 1);
}
