//! Operating behaviour: one scan per digest across namespaces, rescans, the active-Job limit,
//! restarts and SIGKILL mid-scan (§17.1 #9–#11 and our own guarantees).

use std::collections::BTreeSet;
use std::time::Duration;

use image_scanner::crd::ContainerImageScanStatus;
use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(120);

fn bare_pod(name: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })
}

fn job_uids(jobs: &[k8s_openapi::api::batch::v1::Job]) -> BTreeSet<String> {
    jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn three_namespaces_running_one_digest_share_one_scan_job() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("shared");
    let image = format!("registry.e2e/slow-3s/shared@{digest}");
    serve_log(&digest, &fixture(SMALL_LOG));
    let names = ["e2e-shared-a", "e2e-shared-b", "e2e-shared-c"];
    let ns = TestNamespaces::create(&client, &names).await;
    let op = Operator::start("shared", "e2e-shared-", &[]);
    for n in names {
        apply(&client, Some(n), bare_pod("app", &image)).await;
    }
    for n in names {
        let cis = eventually(WAIT, &format!("CIS in {n} scanned"), Some(&op), || async {
            list_cis(&client, n).await.into_iter().find(scanned)
        })
        .await;
        assert_eq!(severity_counts(&cis)["HIGH"], 15);
    }
    let jobs = scan_jobs(&client).await;
    assert_eq!(jobs.len(), 1, "one scan Job for one digest");
    let uid = jobs[0].metadata.uid.clone();
    for n in names {
        let cis = list_cis(&client, n).await.remove(0);
        assert_eq!(
            cis.status.and_then(|s| s.last_scan_job_uid),
            uid,
            "{n} shows the shared scan"
        );
    }
    // A fourth CIS of the same digest appearing later reuses the result without a new Job.
    let late = TestNamespaces::create(&client, &["e2e-shared-late"]).await;
    apply(&client, Some("e2e-shared-late"), bare_pod("app", &image)).await;
    let cis = eventually(
        WAIT,
        "late CIS gets the cached result",
        Some(&op),
        || async {
            list_cis(&client, "e2e-shared-late")
                .await
                .into_iter()
                .find(scanned)
        },
    )
    .await;
    assert_eq!(cis.status.and_then(|s| s.last_scan_job_uid), uid);
    assert_eq!(
        scan_jobs(&client).await.len(),
        1,
        "no second Job for a fresh result"
    );

    // A quiet cluster: nothing changes, nothing is due, so nothing is written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = writes(&op).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(writes(&op).await, before, "writes in a quiet cluster");
    late.cleanup().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_due_digest_is_rescanned_with_a_new_job() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("rescan");
    serve_log(&digest, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-rescan"]).await;
    // Jitter adds at most a tenth of the interval.
    let op = Operator::start("rescan", "e2e-rescan", &["--scan-interval=20s"]);
    apply(
        &client,
        Some("e2e-rescan"),
        bare_pod("app", &format!("registry.e2e/rescan/app@{digest}")),
    )
    .await;
    let first = eventually(WAIT, "first scan", Some(&op), || async {
        list_cis(&client, "e2e-rescan")
            .await
            .into_iter()
            .find(scanned)
    })
    .await;
    let first_status = first.status.expect("status");
    let second = scanned_after(&client, &op, &first_status, "rescan after the interval").await;
    assert!(
        second.last_scan_time.as_ref().map(|t| t.0)
            > first_status.last_scan_time.as_ref().map(|t| t.0)
    );
    assert!(
        second
            .vulnerabilities
            .as_ref()
            .is_some_and(|v| !v.is_empty()),
        "the success has details in the status"
    );
    // The next scan's report cannot be read: its announcement and its failure are status
    // writes that keep the stored details (under their own field manager: the API server
    // keeps what that manager never sent).
    serve_log(&digest, &fixture(INVALID_LOG));
    let failed = eventually(
        Duration::from_secs(90),
        "a failed rescan",
        Some(&op),
        || async {
            let cis = list_cis(&client, "e2e-rescan").await.into_iter().next()?;
            let s = cis.status.clone()?;
            let stalled = s
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Stalled" && c.status == "True");
            (stalled && s.last_scan_job_uid != second.last_scan_job_uid).then_some(s)
        },
    )
    .await;
    assert_eq!(failed.vulnerabilities, second.vulnerabilities);
    assert_eq!(failed.vulnerability_summary, second.vulnerability_summary);
    assert_eq!(
        failed.last_successful_scan_time,
        second.last_successful_scan_time
    );
    // The scan after it succeeds again: the success takes the conditions back.
    serve_log(&digest, &fixture(SMALL_LOG));
    let recovered = scanned_after(&client, &op, &failed, "a success after the failure").await;
    assert!(recovered.conditions.is_none_or(|c| c.is_empty()));
    assert_eq!(recovered.vulnerabilities, second.vulnerabilities);
    ns.cleanup().await;
}

/// The status of the CIS in `e2e-rescan` once it shows a successful scan by another Job than
/// `before`'s.
async fn scanned_after(
    client: &kube::Client,
    op: &Operator,
    before: &ContainerImageScanStatus,
    what: &str,
) -> ContainerImageScanStatus {
    eventually(Duration::from_secs(120), what, Some(op), || async {
        let cis = list_cis(client, "e2e-rescan")
            .await
            .into_iter()
            .find(scanned)?;
        let s = cis.status.clone()?;
        (s.last_scan_job_uid != before.last_scan_job_uid).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn the_active_job_limit_holds_and_every_image_is_scanned() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let ns = TestNamespaces::create(&client, &["e2e-limit"]).await;
    let op = Operator::start("limit", "e2e-limit", &["--active-scan-job-limit=2"]);
    let digests: Vec<String> = (0..5).map(|i| digest_for(&format!("limit-{i}"))).collect();
    for (i, d) in digests.iter().enumerate() {
        serve_log(d, &fixture(SMALL_LOG));
        apply(
            &client,
            Some("e2e-limit"),
            bare_pod(
                &format!("app-{i}"),
                &format!("registry.e2e/slow-4s/app{i}@{d}"),
            ),
        )
        .await;
    }
    let start = std::time::Instant::now();
    let mut most = 0;
    loop {
        let jobs = scan_jobs(&client).await;
        let active = jobs
            .iter()
            .filter(|j| {
                let done = j
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                    });
                !done && j.metadata.deletion_timestamp.is_none()
            })
            .count();
        most = most.max(active);
        assert!(
            active <= 2,
            "{active} scan Jobs active at once with a limit of 2"
        );
        let list = list_cis(&client, "e2e-limit").await;
        if list.len() == 5 && list.iter().all(scanned) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not all scanned in time:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        most, 2,
        "the limit was reached, so it was what held the Jobs back"
    );
    assert_eq!(
        scan_jobs(&client).await.len(),
        5,
        "one Job per digest, none repeated"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_running_job_survives_a_restart_and_sigkill_loses_no_result() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let slow = digest_for("restart-slow");
    serve_log(&slow, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-restart"]).await;
    // Leader election on, as in production: the restarted process must win the Lease again.
    let mut op = Operator::start("restart", "e2e-restart", &["--leader-elect=true"]);
    op.wait_ready().await;
    apply(
        &client,
        Some("e2e-restart"),
        bare_pod("app", &format!("registry.e2e/slow-25s/app@{slow}")),
    )
    .await;
    let job = eventually(WAIT, "scan Job running", Some(&op), || async {
        scan_jobs(&client).await.into_iter().next()
    })
    .await;

    // Graceful restart while the Job runs: the Job is adopted, not recreated (§17.1 #10).
    let status = op.terminate();
    assert!(
        status.success(),
        "SIGTERM ends the operator cleanly: {status}"
    );
    op.restart();
    op.wait_ready().await;
    consistently(
        Duration::from_secs(4),
        "the running Job is kept",
        || async { job_uids(&scan_jobs(&client).await) == job_uids(std::slice::from_ref(&job)) },
    )
    .await;

    // SIGKILL mid-scan: no graceful shutdown, the Lease must expire before the new process leads.
    op.kill();
    op.restart();
    let cis = eventually(
        Duration::from_secs(150),
        "result written after the SIGKILL",
        Some(&op),
        || async {
            list_cis(&client, "e2e-restart")
                .await
                .into_iter()
                .find(scanned)
        },
    )
    .await;
    assert_eq!(
        cis.status.and_then(|s| s.last_scan_job_uid),
        job.metadata.uid,
        "the original Job's result"
    );
    assert_eq!(
        job_uids(&scan_jobs(&client).await),
        job_uids(&[job]),
        "no duplicate Job"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn an_unknown_or_cluster_scoped_workload_kind_stops_the_start_with_its_name() {
    for (resource, problem) in [
        ("foos.example.com", "not found"),
        ("nodes", "not namespaced"),
    ] {
        let arg = format!("--scan-workload-resources=deployments.apps,{resource}");
        let mut op = Operator::start("bad-kind", "e2e-bad-kind", &[&arg]);
        let status = op.wait_exit(Duration::from_secs(30));
        assert!(!status.success(), "{resource}: the operator must not start");
        let log = std::fs::read_to_string(&op.log).expect("log");
        assert!(
            log.contains(resource) && log.contains(problem),
            "{resource}: {log}"
        );
    }
}

/// Successful write requests the operator made so far (its own counters).
async fn writes(op: &Operator) -> u64 {
    op.metrics()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("image_scanner_api_requests_total{") && !l.contains("verb=\"fetch_log\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
