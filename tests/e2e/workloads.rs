//! Workload resolution on a real API server: names, owners, labels, garbage collection,
//! namespaces, annotations (upstream acceptance cases §17.1 #3–#7 and the §17.2 scenarios).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(90);

fn deployment(
    name: &str,
    image: &str,
    replicas: i32,
    labels: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": ECHO_IMAGE}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn every_workload_kind_gets_its_cis_with_the_upstream_name() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    serve_log(ECHO_DIGEST, &fixture(SMALL_LOG));
    let kinds = [
        "pod",
        "deployment",
        "replicaset",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "widget",
    ];
    let names: Vec<String> = kinds.iter().map(|k| format!("e2e-kinds-{k}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ns = TestNamespaces::create(&client, &refs).await;

    // A custom workload kind whose objects own pods (enabled through SCAN_WORKLOAD_RESOURCES;
    // users grant the extra read permission, as upstream documents).
    apply(&client, None, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.e2e.image-scanner.test"},
        "spec": {
            "group": "e2e.image-scanner.test", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })).await;
    apply(&client, None, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e-widget-reader"},
        "rules": [{"apiGroups": ["e2e.image-scanner.test"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}]
    })).await;
    apply(&client, None, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-widget-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-widget-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "image-scanner-controller-manager", "namespace": "image-scanner"}]
    })).await;
    let api_resources = ["e2e.image-scanner.test"];
    eventually(WAIT, "Widget CRD established", None, || async {
        let d = kube::discovery::group(&client, api_resources[0])
            .await
            .ok()?;
        d.recommended_kind("Widget").map(|_| ())
    })
    .await;

    let op = Operator::start(
        "kinds",
        "e2e-kinds-",
        &[
            "--scan-workload-resources=deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch,widgets.e2e.image-scanner.test",
        ],
    );

    apply(&client, Some("e2e-kinds-pod"), json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {"containers": [{"name": "app", "image": ECHO_IMAGE}]}
    })).await;
    apply(
        &client,
        Some("e2e-kinds-deployment"),
        deployment("echo", ECHO_IMAGE, 1, json!({"app": "echo"})),
    )
    .await;
    apply(&client, Some("e2e-kinds-replicaset"), json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "echo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}}, "template": pod_template("echo")}
    })).await;
    apply(&client, Some("e2e-kinds-statefulset"), json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "echo"},
        "spec": {"replicas": 1, "serviceName": "echo", "selector": {"matchLabels": {"app": "echo"}}, "template": pod_template("echo")}
    })).await;
    apply(
        &client,
        Some("e2e-kinds-daemonset"),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "echo"},
            "spec": {"selector": {"matchLabels": {"app": "echo"}}, "template": pod_template("echo")}
        }),
    )
    .await;
    let mut job_template = pod_template("echo");
    job_template["spec"]["restartPolicy"] = json!("Never");
    apply(
        &client,
        Some("e2e-kinds-job"),
        json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "echo"},
            "spec": {"ttlSecondsAfterFinished": 600, "template": job_template}
        }),
    )
    .await;
    apply(
        &client,
        Some("e2e-kinds-cronjob"),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "echo"},
            "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": job_template}}}
        }),
    )
    .await;
    // Run the CronJob now, as `kubectl create job --from=cronjob/echo` does: a Job controlled by it.
    let cronjobs: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(client.clone(), "e2e-kinds-cronjob");
    let cron_uid = cronjobs
        .get("echo")
        .await
        .expect("cronjob")
        .metadata
        .uid
        .expect("uid");
    apply(&client, Some("e2e-kinds-cronjob"), json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "echo-manual", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "echo", "uid": cron_uid, "controller": true}]},
        "spec": {"template": job_template}
    })).await;
    apply(&client, Some("e2e-kinds-widget"), json!({
        "apiVersion": "e2e.image-scanner.test/v1", "kind": "Widget", "metadata": {"name": "echo"}
    })).await;
    let widgets: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "e2e-kinds-widget",
        &kube::api::ApiResource {
            group: "e2e.image-scanner.test".into(),
            version: "v1".into(),
            api_version: "e2e.image-scanner.test/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        },
    );
    let widget_uid = widgets
        .get("echo")
        .await
        .expect("widget")
        .metadata
        .uid
        .expect("uid");
    apply(&client, Some("e2e-kinds-widget"), json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "echo-widget-pod", "labels": {"app": "echo"},
            "ownerReferences": [{"apiVersion": "e2e.image-scanner.test/v1", "kind": "Widget", "name": "echo", "uid": widget_uid, "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": ECHO_IMAGE}]}
    })).await;

    let expected = [
        ("pod", "v1", "", "Pod"),
        ("deployment", "apps/v1", "apps", "Deployment"),
        ("replicaset", "apps/v1", "apps", "ReplicaSet"),
        ("statefulset", "apps/v1", "apps", "StatefulSet"),
        ("daemonset", "apps/v1", "apps", "DaemonSet"),
        ("job", "batch/v1", "batch", "Job"),
        ("cronjob", "batch/v1", "batch", "CronJob"),
        (
            "widget",
            "e2e.image-scanner.test/v1",
            "e2e.image-scanner.test",
            "Widget",
        ),
    ];
    for (kind, api_version, group, kind_name) in expected {
        let namespace = format!("e2e-kinds-{kind}");
        let name = format!("{kind}-echo-app-ab50d");
        let cis = eventually(
            WAIT,
            &format!("CIS {namespace}/{name} scanned"),
            Some(&op),
            || async { get_cis(&client, &namespace, &name).await.filter(scanned) },
        )
        .await;
        let w = &cis.spec.workload;
        assert_eq!(cis.spec.name, "docker.io/nginxinc/nginx-unprivileged");
        assert_eq!(cis.spec.digest, ECHO_DIGEST);
        assert_eq!(
            cis.spec.tag.as_deref(),
            Some(""),
            "a digest-pinned spec image has no tag"
        );
        assert_eq!(
            (
                w.api_version.as_deref(),
                w.group.as_str(),
                w.kind.as_str(),
                w.name.as_str(),
                w.container_name.as_str()
            ),
            (Some(api_version), group, kind_name, "echo", "app"),
            "workload of {name}"
        );
        assert!(w.uid.as_deref().is_some_and(|u| !u.is_empty()));
        assert_eq!(severity_counts(&cis)["CRITICAL"], 4);
        assert_eq!(
            list_cis(&client, &namespace).await.len(),
            1,
            "exactly one CIS in {namespace}"
        );
        // Details are in the status (bounded); the Go operator left them empty by default.
        assert_eq!(
            cis.status
                .as_ref()
                .and_then(|s| s.vulnerabilities.as_ref())
                .map(Vec::len),
            Some(19)
        );
    }
    // Eight namespaces run one image digest: one scan.
    assert_eq!(scan_jobs(&client).await.len(), 1, "one scan Job per digest");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn all_pods_of_the_workload_own_the_cis_through_scaling_and_rollouts() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("owners");
    let image = format!("registry.e2e/owners/app@{digest}");
    serve_log(&digest, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-owners"]).await;
    let op = Operator::start("owners", "e2e-owners", &[]);
    apply(
        &client,
        Some("e2e-owners"),
        deployment("web", &image, 3, json!({"app": "web", "team": "blue"})),
    )
    .await;

    let name = "deployment-web-app-".to_string();
    let owners_of = |cis: &image_scanner::crd::ContainerImageScan| -> Vec<String> {
        let mut v: Vec<String> = cis
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.clone())
            .collect();
        v.sort();
        v
    };
    let pod_uids = |pods: Vec<Pod>| -> Vec<String> {
        let mut v: Vec<String> = pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid)
            .collect();
        v.sort();
        v
    };
    let cis = eventually(WAIT, "CIS owned by all 3 pods", Some(&op), || async {
        let list = list_cis(&client, "e2e-owners").await;
        let cis = list.into_iter().find(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&name))
        })?;
        let pods = pod_uids(pods(&client, "e2e-owners").await);
        (pods.len() == 3 && owners_of(&cis) == pods).then_some(cis)
    })
    .await;
    let labels = cis.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("blue"),
        "pod labels are copied"
    );
    for o in cis.metadata.owner_references.iter().flatten() {
        assert_eq!((o.api_version.as_str(), o.kind.as_str()), ("v1", "Pod"));
        assert_ne!(o.controller, Some(true), "pods are owners, not controllers");
    }
    let cis_uid = cis.metadata.uid.clone();

    // Scale down: the owner list follows.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e-owners");
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale");
    eventually(WAIT, "owners follow the scale-down", Some(&op), || async {
        let cis = list_cis(&client, "e2e-owners").await.into_iter().next()?;
        let pods = pod_uids(pods(&client, "e2e-owners").await);
        (pods.len() == 1 && owners_of(&cis) == pods).then_some(())
    })
    .await;

    // Rollout with the same image (quirk §19.9): the CIS survives and moves to the new pods.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}),
            ),
        )
        .await
        .expect("rollout");
    let new_rs_pods = eventually(WAIT, "rollout finished", Some(&op), || async {
        let pods: Vec<Pod> = pods(&client, "e2e-owners").await;
        let live: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let rolled = live.len() == 1
            && live.iter().all(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.get("rollout").is_some_and(|v| v == "2"))
            });
        rolled.then(|| pod_uids(pods.clone()))
    })
    .await;
    let cis = eventually(WAIT, "CIS owned by the new pod", Some(&op), || async {
        let cis = list_cis(&client, "e2e-owners").await.into_iter().next()?;
        (owners_of(&cis) == new_rs_pods).then_some(cis)
    })
    .await;
    assert_eq!(
        cis.metadata.uid, cis_uid,
        "the CIS was never deleted during the rollout"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_changed_digest_replaces_the_cis_and_deleting_the_workload_collects_it() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let (a, b) = (digest_for("digest-a"), digest_for("digest-b"));
    serve_log(&a, &fixture(SMALL_LOG));
    serve_log(&b, &fixture(DEBIAN_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-digest"]).await;
    let op = Operator::start("digest", "e2e-digest", &[]);

    // A bare pod whose runtime digest changes (spec §17.1 #6).
    let image = format!("registry.e2e/digest/app@{a}");
    apply(
        &client,
        Some("e2e-digest"),
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }),
    )
    .await;
    let first = eventually(WAIT, "CIS of digest A", Some(&op), || async {
        list_cis(&client, "e2e-digest")
            .await
            .into_iter()
            .find(|c| c.spec.digest == a)
    })
    .await;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "e2e-digest");
    let mut pod = pods_api.get_status("solo").await.expect("pod");
    let statuses = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
        .expect("statuses");
    statuses[0].image_id = format!("registry.e2e/digest/app@{b}");
    pods_api
        .patch_status(
            "solo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"containerStatuses": statuses}})),
        )
        .await
        .expect("status patch");
    eventually(
        WAIT,
        "old CIS deleted, new CIS for digest B",
        Some(&op),
        || async {
            let list = list_cis(&client, "e2e-digest").await;
            let old_gone = list.iter().all(|c| c.metadata.uid != first.metadata.uid);
            let new = list
                .iter()
                .any(|c| c.spec.digest == b && c.metadata.name != first.metadata.name);
            (old_gone && new && list.len() == 1).then_some(())
        },
    )
    .await;

    // A Deployment deleted: Kubernetes' garbage collector removes its CIS with the pods.
    apply(
        &client,
        Some("e2e-digest"),
        deployment(
            "gone",
            &format!("registry.e2e/digest/other@{a}"),
            2,
            json!({"app": "gone"}),
        ),
    )
    .await;
    eventually(WAIT, "CIS of the Deployment", Some(&op), || async {
        get_cis(
            &client,
            "e2e-digest",
            &list_cis(&client, "e2e-digest")
                .await
                .iter()
                .find(|c| c.spec.workload.kind == "Deployment")?
                .metadata
                .name
                .clone()?,
        )
        .await
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "e2e-digest");
    deployments
        .delete("gone", &DeleteParams::background())
        .await
        .expect("delete deployment");
    eventually(
        Duration::from_secs(120),
        "Deployment's CIS garbage-collected",
        Some(&op),
        || async {
            let left = list_cis(&client, "e2e-digest").await;
            (!left.iter().any(|c| c.spec.workload.kind == "Deployment")).then_some(())
        },
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn ignore_unfixed_filters_per_cis_and_excluded_namespaces_are_untouched() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("unfixed");
    let image = format!("registry.e2e/unfixed/app@{digest}");
    // debian-10.1: one LOW without a fix, one CRITICAL with a fix.
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-unfixed", "kube-e2e-unfixed"]).await;
    // Include both namespaces; the default exclude regexp (^(kube-|openshift-)) must still win.
    let op = Operator::start("unfixed", "(e2e-unfixed|kube-e2e-unfixed)$", &[]);
    let mut annotated = deployment("annotated", &image, 1, json!({"app": "annotated"}));
    annotated["metadata"]["annotations"] =
        json!({"image-scanner.statnett.no/ignore-unfixed": "true"});
    apply(&client, Some("e2e-unfixed"), annotated).await;
    apply(&client, Some("e2e-unfixed"), json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "podlevel", "annotations": {"image-scanner.statnett.no/ignore-unfixed": "true"}},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })).await;
    apply(
        &client,
        Some("e2e-unfixed"),
        deployment("plain", &image, 1, json!({"app": "plain"})),
    )
    .await;
    apply(
        &client,
        Some("kube-e2e-unfixed"),
        deployment("plain", &image, 1, json!({"app": "plain"})),
    )
    .await;

    let all = eventually(WAIT, "three CIS scanned", Some(&op), || async {
        let list = list_cis(&client, "e2e-unfixed").await;
        (list.len() == 3 && list.iter().all(scanned)).then_some(list)
    })
    .await;
    for cis in &all {
        let w = &cis.spec.workload;
        let counts = severity_counts(cis);
        let summary = cis
            .status
            .as_ref()
            .and_then(|s| s.vulnerability_summary.clone())
            .expect("summary");
        if w.name == "plain" {
            assert_eq!(cis.spec.ignore_unfixed, Some(false));
            assert_eq!(
                (
                    counts["LOW"],
                    counts["CRITICAL"],
                    summary.fixed_count,
                    summary.unfixed_count
                ),
                (1, 1, 1, 1)
            );
        } else {
            assert_eq!(
                cis.spec.ignore_unfixed,
                Some(true),
                "{} honours the annotation",
                w.name
            );
            assert_eq!(
                (
                    counts["LOW"],
                    counts["CRITICAL"],
                    summary.fixed_count,
                    summary.unfixed_count
                ),
                (0, 1, 1, 0)
            );
        }
    }
    assert_eq!(
        scan_jobs(&client).await.len(),
        1,
        "filters apply per CIS; the scan is shared"
    );
    assert!(
        list_cis(&client, "kube-e2e-unfixed").await.is_empty(),
        "excluded namespace untouched"
    );
    ns.cleanup().await;
}
