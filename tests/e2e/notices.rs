//! Change notices (issue 21) against the real API server: what a result changes is told by
//! Events on the workload (so `kubectl describe deployment` shows them) and on the CIS, once,
//! and the status records what was told.

use std::time::Duration;

use image_scanner::crd::exception::VulnerabilityException;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::support::*;

const NS: &str = "e2e-notices";

/// The Events of `reason` about the object of `kind` and `uid` in `namespace`, as `kubectl
/// describe` finds them (by involvedObject), as their messages; one recorded again (the
/// recorder counts a repeat in `series`) is there twice.
async fn events_about(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    uid: &str,
    reason: &str,
) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.uid.as_deref() == Some(uid)
        })
        .flat_map(|e| {
            let times = e.series.as_ref().and_then(|s| s.count).unwrap_or(1).max(1) as usize;
            std::iter::repeat_n(e.message.unwrap_or_default(), times)
        })
        .collect()
}

/// The messages of the first Events of `reason` on Deployment `uid`, waited for.
async fn told_on_deployment(
    client: &kube::Client,
    op: &Operator,
    uid: &str,
    reason: &str,
) -> Vec<String> {
    let what = format!("a {reason} Event on the Deployment");
    eventually(Duration::from_secs(120), &what, Some(op), || async {
        let found = events_about(client, NS, "Deployment", uid, reason).await;
        (!found.is_empty()).then_some(found)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_change_of_findings_is_told_once_on_the_deployment_and_the_cis() {
    let wait = Duration::from_secs(120);
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("notices");
    // CVE-2019-18224 (libidn2-0, CRITICAL, fixed) and CVE-2019-18276 (bash, LOW).
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let namespaces = TestNamespaces::create(&client, &[NS]).await;
    let op = Operator::start("notices", NS, &["--notice-cooldown=2s"]);
    apply(
        &client,
        Some(NS),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": format!("registry.e2e/notices/app@{digest}")}]}
                }
            }
        }),
    )
    .await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("web")
        .await
        .expect("the Deployment");
    let deployment_uid = deployment.metadata.uid.expect("a UID");
    let cis = eventually(wait, "the scan's result", Some(&op), || async {
        list_cis(&client, NS).await.into_iter().find(scanned)
    })
    .await;
    let status = cis.status.clone().expect("a status");
    let notable = status.notable_findings.clone().expect("a record");
    assert_eq!(
        notable.ids.get("CRITICAL"),
        Some(&vec!["CVE-2019-18224".to_string()])
    );
    assert!(
        !notable.ids.contains_key("LOW"),
        "below --notice-min-severity"
    );
    assert_eq!(notable.fixable, ["CVE-2019-18224"]);
    assert_eq!(
        status.announced_findings,
        Some(notable),
        "a first result is the baseline: nothing to tell"
    );
    let cis_uid = cis.metadata.uid.clone().expect("a UID");
    let jobs = scan_jobs(&client).await.len();

    // An exception takes the CRITICAL finding out of what the CIS shows: told as no longer
    // reported, without a rescan.
    let exceptions: Api<VulnerabilityException> = Api::namespaced(client.clone(), NS);
    let accepted: VulnerabilityException = serde_json::from_value(json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": "VulnerabilityException",
        "metadata": {"name": "libidn2"},
        "spec": {
            "vulnerabilities": [{"id": "CVE-2019-18224"}],
            "reason": "NotAffected",
            "description": "no IDN input reaches libidn2 in this service",
        },
    }))
    .expect("an exception");
    exceptions
        .create(&PostParams::default(), &accepted)
        .await
        .expect("the exception is accepted");
    let resolved =
        told_on_deployment(&client, &op, &deployment_uid, "VulnerabilitiesResolved").await;
    assert_eq!(
        resolved,
        [format!(
            "1 vulnerability no longer reported (fixed or excepted) in container app (registry.e2e/notices/app@{}): CRITICAL CVE-2019-18224",
            &digest[..19]
        )]
    );
    let on_cis = events_about(
        &client,
        NS,
        "ContainerImageScan",
        &cis_uid,
        "VulnerabilitiesResolved",
    )
    .await;
    assert_eq!(on_cis.len(), 1, "{on_cis:?}");
    let told = eventually(wait, "the record written as told", Some(&op), || async {
        let s = list_cis(&client, NS).await.into_iter().next()?.status?;
        (s.suppressed_count.is_some() && s.announced_findings == s.notable_findings).then_some(s)
    })
    .await;
    assert!(told.notable_findings.expect("a record").ids.is_empty());

    // Withdrawn: the finding is back, told as new (the 2 s cooldown has passed by then).
    exceptions
        .delete("libidn2", &DeleteParams::default())
        .await
        .expect("deleted");
    let new = told_on_deployment(&client, &op, &deployment_uid, "NewVulnerabilities").await;
    assert!(new[0].ends_with(": CRITICAL CVE-2019-18224"), "{new:?}");
    eventually(wait, "told, and nothing pending", Some(&op), || async {
        let s = list_cis(&client, NS).await.into_iter().next()?.status?;
        (s.suppressed_count.is_none() && s.announced_findings == s.notable_findings).then_some(())
    })
    .await;
    // Told once each: nothing repeats while the findings stay as they are.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for reason in ["VulnerabilitiesResolved", "NewVulnerabilities"] {
        let found = events_about(&client, NS, "Deployment", &deployment_uid, reason).await;
        assert_eq!(found.len(), 1, "{reason}: {found:?}");
    }
    assert_eq!(scan_jobs(&client).await.len(), jobs, "no rescan");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the installed RBAC suffices");
    drop(op);
    namespaces.cleanup().await;
}
