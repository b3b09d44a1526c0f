//! The Go operator's workload-controller acceptance cases (spec §17.1 #3–#6, #8), replayed
//! against the engine: observations in, the commands it issues checked.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Engine, EngineConfig};
use crate::port::{
    Action, Command, ContainerKind, ContainerView, Observation, Outcome, OwnerRef, PodView,
    StreamId, WatchEvent, WorkloadView,
};
use crate::time::Timestamp;

pub(super) const SHA_A: &str =
    "sha256:4b59f7dacd37c688968756d176139715df69d89eb0be1802e059316f9d58d9ef";
pub(super) const SHA_B: &str =
    "sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191";

pub(super) fn now() -> Timestamp {
    Timestamp::from_secs(1_800_000_000)
}

fn engine(kinds: &[(&str, &str)]) -> Engine {
    let mut cfg = EngineConfig::for_tests("image-scanner");
    cfg.workload_kinds = kinds
        .iter()
        .map(|(g, k)| (g.to_string(), k.to_string()))
        .collect();
    cfg.owner_update_delay = Duration::ZERO;
    let mut e = Engine::new(cfg);
    let s = StreamId(1);
    for event in [WatchEvent::InitStarted, WatchEvent::InitDone] {
        e.observe(
            Observation::Pod {
                stream: s,
                event: event.clone(),
            },
            now(),
        );
    }
    e.observe(Observation::CachesSynced, now());
    e.observe(Observation::Leadership { leading: true }, now());
    e
}

pub(super) fn rs(name: &str, uid: &str) -> WorkloadView {
    WorkloadView {
        group: "apps".into(),
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        namespace: "replica-set".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        ignore_unfixed: false,
    }
}

pub(super) fn pod(
    name: &str,
    controller: Option<&WorkloadView>,
    containers: &[(&str, &str, &str)],
) -> PodView {
    PodView {
        namespace: "replica-set".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        resource_version: None,
        labels: BTreeMap::from([("app".to_string(), "my-app".to_string())]).into(),
        controller: controller.map(|w| {
            std::sync::Arc::new(OwnerRef {
                api_version: w.api_version.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
                uid: w.uid.clone(),
            })
        }),
        created: now(),
        deleting: false,
        node_name: Some("worker-1".into()),
        phase: Some("Running".into()),
        ready: true,
        start_time: Some(now()),
        containers: containers
            .iter()
            .map(|(container, image, digest)| ContainerView {
                kind: ContainerKind::Regular,
                name: (*container).into(),
                spec_image: Some(format!("{image}:f54a333e")),
                status_image: format!("{image}:f54a333e"),
                status_image_id: format!("{image}@{digest}"),
                waiting_reason: None,
            })
            .collect(),
        ignore_unfixed: false,
        pull_credentials: None,
    }
}

/// Every CIS apply the engine asks for, by name.
pub(super) fn applies(cmds: &[Command]) -> BTreeMap<String, &Action> {
    cmds.iter()
        .filter_map(|c| match &c.action {
            a @ Action::ApplyCis { name, .. } => Some((name.clone(), a)),
            _ => None,
        })
        .collect()
}

pub(super) fn owner_uids(action: &Action) -> Vec<String> {
    match action {
        Action::ApplyCis { owners, .. } => {
            let mut v: Vec<String> = owners.iter().map(|o| o.uid.clone()).collect();
            v.sort();
            v
        }
        _ => Vec::new(),
    }
}

/// §17.1 #5: all pods of the same workload running the same container and image own its CIS.
#[test]
fn all_pods_of_the_same_workload_with_the_same_image_are_owners() {
    let mut e = engine(&[("apps", "ReplicaSet"), ("apps", "StatefulSet")]);
    let c1 = rs("controller-1", "rs-1");
    let c2 = rs("controller-2", "rs-2");
    let s = StreamId(2);
    for w in [&c1, &c2] {
        e.observe(
            Observation::Workload {
                stream: s,
                event: WatchEvent::Apply(w.clone()),
            },
            now(),
        );
    }
    let two = |sha| {
        [
            ("app", "my.registry/repository/app", sha),
            ("sidecar", "my.registry/repository/sidecar", sha),
        ]
    };
    let renamed = [
        ("app-old-rs", "my.registry/repository/app", SHA_A),
        ("sidecar-old-rs", "my.registry/repository/sidecar", SHA_A),
    ];
    let pods = [
        pod("pod-1", Some(&c1), &two(SHA_A)),
        pod("pod-2", Some(&c1), &two(SHA_A)),
        pod("pod-3", Some(&c1), &renamed),
        pod("pod-4", Some(&c1), &two(SHA_B)),
        pod("pod-5", Some(&c2), &two(SHA_B)),
    ];
    for p in pods {
        e.observe(
            Observation::Pod {
                stream: StreamId(1),
                event: WatchEvent::Apply(p),
            },
            now(),
        );
    }
    let cmds = e.poll(now());
    let cis = applies(&cmds);
    assert_eq!(cis.len(), 8, "{:?}", cis.keys().collect::<Vec<_>>());
    let mut owner_lists: Vec<Vec<String>> = cis.values().map(|a| owner_uids(a)).collect();
    owner_lists.sort();
    let expected: Vec<Vec<&str>> = vec![
        vec!["uid-pod-1", "uid-pod-2"],
        vec!["uid-pod-1", "uid-pod-2"],
        vec!["uid-pod-3"],
        vec!["uid-pod-3"],
        vec!["uid-pod-4"],
        vec!["uid-pod-4"],
        vec!["uid-pod-5"],
        vec!["uid-pod-5"],
    ];
    assert_eq!(owner_lists, expected);
    // §17.1 #3: the spec and the copied labels.
    let (name, action) = cis
        .iter()
        .find(|(n, _)| n.starts_with("replicaset-controller-1-app-"))
        .map(|(n, a)| (n.clone(), *a))
        .expect("CIS of controller-1/app");
    let Action::ApplyCis {
        spec,
        labels,
        owners,
        ..
    } = action
    else {
        unreachable!()
    };
    assert!(name.len() > "replicaset-controller-1-app-".len());
    assert_eq!(spec.name, "my.registry/repository/app");
    assert_eq!(spec.tag.as_deref(), Some("f54a333e"));
    assert_eq!(labels.get("app").map(String::as_str), Some("my-app"));
    assert!(
        owners
            .iter()
            .all(|o| o.kind == "Pod" && o.api_version == "v1")
    );
    assert_eq!(spec.workload.kind, "ReplicaSet");
}

/// §17.1 #6 and #8: a changed digest deletes the obsolete CIS; a new CIS gets a scan Job and
/// the `Reconciling/ScanJobCreated` status.
#[test]
fn a_changed_digest_deletes_the_obsolete_cis_and_a_new_one_is_scanned() {
    let mut e = engine(&[]);
    let mut p = pod(
        "echo",
        None,
        &[("app", "my.registry/repository/app", SHA_A)],
    );
    p.ignore_unfixed = true;
    e.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(p.clone()),
        },
        now(),
    );
    let cmds = e.poll(now());
    let cis = applies(&cmds);
    let (old_name, action) = cis
        .iter()
        .next()
        .map(|(n, a)| (n.clone(), *a))
        .expect("one CIS");
    // §17.1 #4: the annotation reaches the spec.
    let Action::ApplyCis { spec, .. } = action else {
        unreachable!()
    };
    assert_eq!(spec.ignore_unfixed, Some(true));
    let mut view =
        super::tests::created_cis(action, Some(10)).expect("an ApplyCis creates the CIS");
    view.uid = "cis-old".into();
    let id = cmds
        .iter()
        .find(|c| matches!(c.action, Action::ApplyCis { .. }))
        .map(|c| c.id)
        .expect("id");
    e.observe(
        Observation::Outcome {
            id,
            outcome: Outcome::CisApplied(Box::new(view)),
        },
        now(),
    );
    let cmds = e.poll(now());
    let create = cmds
        .iter()
        .find(|c| matches!(c.action, Action::CreateJob { .. }))
        .expect("a scan Job");
    let Action::CreateJob { job } = &create.action else {
        unreachable!()
    };
    let job_name = job.metadata.name.clone().expect("job name");
    assert!(job_name.len() <= 63);

    // The runtime now reports another digest for the same pod.
    let mut containers = p.containers.to_vec();
    containers[0].status_image_id = format!("my.registry/repository/app@{SHA_B}");
    p.containers = containers.into();
    e.observe(
        Observation::Pod {
            stream: StreamId(1),
            event: WatchEvent::Apply(p),
        },
        now(),
    );
    let cmds = e.poll(now());
    let deleted: Vec<&Command> = cmds
        .iter()
        .filter(|c| matches!(&c.action, Action::DeleteCis { name, .. } if *name == old_name))
        .collect();
    assert_eq!(deleted.len(), 1, "the obsolete CIS is deleted: {cmds:?}");
    let new = applies(&cmds);
    assert_eq!(new.len(), 1);
    assert!(!new.contains_key(&old_name), "a CIS with another name");
}
