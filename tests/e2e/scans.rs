//! Scan Jobs and their results on a real API server (upstream acceptance cases §17.1 #8, #12–#16,
//! #18, #22 and the vulnerability-overflow and metrics scenarios of §17.2).

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(120);

fn bare_pod(name: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_scan_job_is_built_like_upstream_and_its_result_lands_in_the_status() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("job-spec");
    // The slow marker keeps the scan pod running for a while, long enough to see it in progress.
    let image = format!("registry.e2e/slow-8s/app@{digest}");
    serve_log(&digest, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-jobspec"]).await;
    let op = Operator::start(
        "jobspec",
        "e2e-jobspec",
        &["--cis-metrics-labels=app.kubernetes.io/name"],
    );
    apply(&client, Some("e2e-jobspec"), bare_pod("echo", &image)).await;

    let job = eventually(WAIT, "scan Job created", Some(&op), || async {
        scan_jobs(&client).await.into_iter().next()
    })
    .await;
    let created_line = format!(
        "job=image-scanner/{} digest={digest}",
        job.metadata.name.as_deref().unwrap_or_default()
    );
    eventually(
        WAIT,
        "the operator logs the Job with its digest",
        Some(&op),
        || async {
            let log = std::fs::read_to_string(&op.log).ok()?;
            log.lines()
                .any(|l| l.contains("scan Job created") && l.contains(&created_line))
                .then_some(())
        },
    )
    .await;
    let cis = eventually(
        WAIT,
        "CIS Reconciling/ScanJobCreated while the Job runs",
        Some(&op),
        || async {
            let cis = list_cis(&client, "e2e-jobspec").await.into_iter().next()?;
            let c = conditions(&cis);
            (c.len() == 1
                && c[0].0 == "Reconciling"
                && c[0].1 == "True"
                && c[0].2 == "ScanJobCreated")
                .then_some(cis)
        },
    )
    .await;
    let job_name = job.metadata.name.clone().expect("name");
    assert_eq!(
        conditions(&cis)[0].3,
        format!("Job '{job_name}' created to scan image.")
    );
    let status = cis.status.clone().expect("status");
    assert_eq!(status.observed_generation, Some(1));

    // The Job (spec §8) with our documented differences.
    let labels = job.metadata.labels.clone().expect("labels");
    let cis_uid = cis.metadata.uid.clone().expect("uid");
    for (k, v) in [
        ("app.kubernetes.io/name", "trivy"),
        ("app.kubernetes.io/managed-by", "image-scanner"),
        ("controller.statnett.no/namespace", "e2e-jobspec"),
        ("controller.statnett.no/uid", cis_uid.as_str()),
        ("workload.statnett.no/kind", "Pod"),
        ("workload.statnett.no/name", "echo"),
        ("workload.statnett.no/namespace", "e2e-jobspec"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("image-scanner.statnett.no/digest")),
        Some(&digest)
    );
    let spec = job.spec.clone().expect("job spec");
    assert_eq!(spec.backoff_limit, Some(3));
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    assert_eq!(spec.ttl_seconds_after_finished, Some(7200));
    let pod_spec = spec.template.spec.expect("pod spec");
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some("image-scanner-job")
    );
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("OnFailure"));
    let workload_node = pods(&client, "e2e-jobspec").await[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("node");
    let affinity = serde_json::to_value(&pod_spec.affinity).expect("affinity");
    assert_eq!(
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]
            ["matchFields"][0]["values"][0],
        json!(workload_node),
        "prefers the node that runs the image"
    );
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
        ]}]}),
        "requires the platform of the node that runs the image"
    );
    let scan = &pod_spec.containers[0];
    assert_eq!(scan.name, "scan-image");
    assert_eq!(
        scan.image.as_deref(),
        Some(format!("registry.e2e/slow-8s/app@{digest}").as_str())
    );
    assert_eq!(
        scan.command.as_deref(),
        Some(&["/run/image-scanner/trivy".to_string()][..])
    );
    assert_eq!(
        scan.args.as_deref(),
        Some(
            &[
                "rootfs".to_string(),
                "--skip-dirs".to_string(),
                "/run/image-scanner,/tmp,$(TRIVY_SKIP_DIRS)".to_string(),
                "/".to_string()
            ][..]
        )
    );
    let env: Vec<&str> = scan.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(
        !env.contains(&"TRIVY_SEVERITY") && !env.contains(&"TRIVY_IGNORE_UNFIXED"),
        "the scan is unfiltered"
    );
    let sc = scan.security_context.clone().expect("security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let init = &pod_spec.init_containers.expect("init")[0];
    assert_eq!(
        init.image.as_deref(),
        Some("ghcr.io/aquasecurity/trivy:0.74.0")
    );

    // The result (spec §10.3).
    let cis = eventually(WAIT, "CIS scanned", Some(&op), || async {
        list_cis(&client, "e2e-jobspec")
            .await
            .into_iter()
            .find(scanned)
    })
    .await;
    let status = cis.status.clone().expect("status");
    assert_eq!(status.last_scan_job_uid, job.metadata.uid);
    assert!(
        status.conditions.as_ref().is_none_or(Vec::is_empty),
        "success clears conditions"
    );
    assert_eq!(severity_tuple(&cis), (4, 15, 0, 0, 0));
    let summary = status.vulnerability_summary.expect("summary");
    assert_eq!((summary.fixed_count, summary.unfixed_count), (0, 19));
    let details = status.vulnerabilities.expect("details");
    assert_eq!(details.len(), 19);
    assert_eq!(
        details[0].vulnerability_id, "CVE-2022-42916",
        "sorted lowest severity first"
    );
    assert!(status.vulnerabilities_truncated.is_none());

    // Metrics (spec §14), with the configured CIS label.
    let metrics = op.metrics().await;
    let name = cis.metadata.name.clone().expect("name");
    assert!(metrics.contains("# HELP image_scanner_container_image_scan_success Displays whether or not container image scan was a success"));
    let success = metrics
        .lines()
        .find(|l| {
            l.starts_with("image_scanner_container_image_scan_success{")
                && l.contains(&format!("name=\"{name}\""))
        })
        .expect("scan_success series");
    assert!(
        success.ends_with(" 1") && success.contains("app_kubernetes_io_name=\"echo\""),
        "{success}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("image_scanner_container_image_issues{")
                && l.contains("severity=\"CRITICAL\"")
                && l.ends_with(" 4"))
    );
    assert!(metrics.lines().any(
        |l| l.starts_with("image_scanner_container_image_patch_status{")
            && l.contains("condition=\"unfixed\"")
            && l.ends_with(" 19")
    ));
    assert!(metrics.contains("certwatcher_read_certificate_errors_total 0"));
    assert!(metrics.contains("image_scanner_coverage_ratio 1"));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn bad_results_stall_the_cis_with_a_bounded_reason() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let invalid = digest_for("invalid-json");
    let failed = digest_for("failed-job");
    let pull = digest_for("pull-fail");
    serve_log(&invalid, &fixture(INVALID_LOG));
    serve_log(&failed, &fixture(FAILED_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-badscan"]).await;
    let op = Operator::start("badscan", "e2e-badscan", &[]);
    apply(
        &client,
        Some("e2e-badscan"),
        bare_pod("invalid", &format!("registry.e2e/invalid/app@{invalid}")),
    )
    .await;
    apply(
        &client,
        Some("e2e-badscan"),
        bare_pod("failed", &format!("registry.e2e/exit-code-1/app@{failed}")),
    )
    .await;
    apply(
        &client,
        Some("e2e-badscan"),
        bare_pod("pull", &format!("registry.e2e/pull-fail/app@{pull}")),
    )
    .await;

    let stalled = |digest: String| {
        let client = client.clone();
        async move {
            let cis = list_cis(&client, "e2e-badscan")
                .await
                .into_iter()
                .find(|c| c.spec.digest == digest)?;
            let c = conditions(&cis);
            // `then`, not `then_some`: the tuple indexes `c[0]`, which must only be evaluated
            // once the condition holds (a CIS is listed before its first status write).
            (c.len() == 1 && c[0].0 == "Stalled" && c[0].1 == "True")
                .then(|| (cis.clone(), c[0].2.clone(), c[0].3.clone()))
        }
    };
    // Complete Job, invalid JSON (§17.1 #15).
    let (cis, reason, message) = eventually(WAIT, "invalid JSON → Stalled", Some(&op), || {
        stalled(invalid.clone())
    })
    .await;
    assert_eq!(reason, "ScanReportDecodeError");
    assert!(
        message.starts_with("error decoding scan report JSON from job '"),
        "{message}"
    );
    assert!(message.len() <= 4096);
    let status = cis.status.expect("status");
    assert!(status.last_successful_scan_time.is_none() && status.last_scan_time.is_some());

    // Failed Job (§17.1 #16): the log becomes the bounded message, ANSI codes stripped.
    let (cis, reason, message) = eventually(
        Duration::from_secs(240),
        "failed Job → Stalled/Error",
        Some(&op),
        || stalled(failed.clone()),
    )
    .await;
    assert_eq!(reason, "Error");
    assert!(
        message.contains("FATAL") && !message.contains('\u{1b}'),
        "{message}"
    );
    let status = cis.status.clone().expect("status");
    assert!(status.last_successful_scan_time.is_none());
    let job_uid = status.last_scan_job_uid.expect("job uid");
    assert!(
        scan_jobs(&client)
            .await
            .iter()
            .any(|j| j.metadata.uid.as_deref() == Some(job_uid.as_str())),
        "lastScanJobUID is the failed Job"
    );
    // The failure is also a Kubernetes Event on the CIS.
    let events: Api<Event> = Api::namespaced(client.clone(), "e2e-badscan");
    eventually(WAIT, "ScanFailed event", Some(&op), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ScanFailed"))
            .map(|_| ())
    })
    .await;

    // Image pull back-off (§11, §17.1 #18): Job deleted, CIS Stalled with the waiting message.
    let (_, reason, message) = eventually(WAIT, "pull back-off → Stalled", Some(&op), || {
        stalled(pull.clone())
    })
    .await;
    assert_eq!(reason, "Error");
    assert!(!message.is_empty());
    eventually(WAIT, "back-off Job deleted", Some(&op), || async {
        let jobs = scan_jobs(&client).await;
        (!jobs.iter().any(|j| {
            j.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("image-scanner.statnett.no/digest"))
                == Some(&pull)
                && j.metadata.deletion_timestamp.is_none()
        }))
        .then_some(())
    })
    .await;
    let metrics = op.metrics().await;
    assert!(metrics.lines().any(
        |l| l.starts_with("image_scanner_container_image_scan_success{") && l.ends_with(" 0")
    ));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn the_10395_vulnerability_report_fits_with_an_exact_summary() {
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("overflow");
    serve_log(&digest, &fixture(LONG_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-overflow"]).await;
    // Room for one full status (256 KiB) and a little: the second CIS of the digest gets what
    // the cluster-wide bound leaves.
    const TOTAL: i64 = 300_000;
    let op = Operator::start(
        "overflow",
        "e2e-overflow",
        &[&format!("--details-total-bytes={TOTAL}")],
    );
    for name in ["vuln-app", "vuln-app-2"] {
        apply(
            &client,
            Some("e2e-overflow"),
            bare_pod(name, &format!("registry.e2e/overflow/app@{digest}")),
        )
        .await;
    }
    let all = eventually(WAIT, "big report scanned twice", Some(&op), || async {
        let cis = list_cis(&client, "e2e-overflow").await;
        (cis.len() == 2 && cis.iter().all(scanned)).then_some(cis)
    })
    .await;
    let mut stored = 0;
    let mut reasons = Vec::new();
    for cis in all {
        assert_eq!(severity_tuple(&cis), (653, 2606, 3881, 3178, 77));
        let status = cis.status.expect("status");
        let summary = status.vulnerability_summary.expect("summary");
        assert_eq!((summary.fixed_count, summary.unfixed_count), (5267, 5128));
        let truncated = status
            .vulnerabilities_truncated
            .expect("details were cut to the budget");
        let details = status.vulnerabilities.expect("details");
        assert_eq!(
            details.len() + usize::try_from(truncated.dropped_count).expect("count"),
            10_395
        );
        assert!(
            truncated
                .dropped_severities
                .contains(&image_scanner::crd::Severity::Unknown)
        );
        assert!(status.conditions.is_none_or(|c| c.is_empty()));
        // The API server keeps the record of what the details take (the CRD has the field).
        let bytes = status.details_bytes.expect("detailsBytes stored");
        assert_eq!(
            bytes,
            image_scanner::core::status::details_size(&details) as i64
        );
        stored += bytes;
        reasons.push(truncated.reason);
    }
    use image_scanner::crd::TruncationReason::{ClusterBudget, ObjectBudget};
    reasons.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(reasons, [Some(ClusterBudget), Some(ObjectBudget)]);
    assert!(stored <= TOTAL, "{stored} bytes of details, bound {TOTAL}");
    // The operator counts every CIS it sees (those of tests running beside this one too, all in
    // etcd), and its answer to the last status write may come a moment after the object.
    let counted = eventually(WAIT, "the details metric", Some(&op), || async {
        let metrics = op.metrics().await;
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix("image_scanner_details_bytes "))
            .and_then(|v| v.trim().parse::<i64>().ok())?;
        (value >= stored).then_some(value)
    })
    .await;
    assert!(counted <= TOTAL, "{counted} bytes counted, bound {TOTAL}");
    let metrics = op.metrics().await;
    assert!(metrics.contains(&format!("image_scanner_details_budget_bytes {TOTAL}\n")));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn an_openreports_report_accompanies_the_result_when_the_crd_exists() {
    use kube::api::{ApiResource, DeleteParams, DynamicObject};
    let client = client().await;
    prepare_scan_namespace(&client).await;
    // A minimal OpenReports CRD (the real one comes with Kyverno or the openreports chart).
    apply(&client, None, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "reports.openreports.io"},
        "spec": {
            "group": "openreports.io", "scope": "Namespaced",
            "names": {"plural": "reports", "singular": "report", "kind": "Report", "shortNames": ["reps"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })).await;
    // What kustomize/components/openreports grants.
    apply(&client, None, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e-openreports"},
        "rules": [
            {"apiGroups": ["openreports.io"], "resources": ["reports"], "verbs": ["create", "patch"]},
            {"apiGroups": ["stas.statnett.no"], "resources": ["containerimagescans/finalizers"], "verbs": ["update"]}
        ]
    })).await;
    apply(&client, None, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-openreports"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-openreports"},
        "subjects": [{"kind": "ServiceAccount", "name": "image-scanner-controller-manager", "namespace": "image-scanner"}]
    })).await;
    eventually(WAIT, "Report CRD served", None, || async {
        kube::discovery::group(&client, "openreports.io")
            .await
            .ok()?
            .recommended_kind("Report")
            .map(|_| ())
    })
    .await;
    let digest = digest_for("reports");
    serve_log(&digest, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-reports"]).await;
    let op = Operator::start("reports", "e2e-reports", &[]);
    apply(
        &client,
        Some("e2e-reports"),
        bare_pod("echo", &format!("registry.e2e/reports/app@{digest}")),
    )
    .await;
    let cis = eventually(WAIT, "CIS scanned", Some(&op), || async {
        list_cis(&client, "e2e-reports")
            .await
            .into_iter()
            .find(scanned)
    })
    .await;
    let name = cis.metadata.name.clone().expect("name");
    // The details are stored once (NoCISStatusVulnerabilities=auto): in the Report, which is
    // written before the status.
    let status = cis.status.clone().expect("status");
    assert_eq!(status.vulnerabilities, None);
    let summary = status.vulnerability_summary.expect("summary");
    assert_eq!(summary.fixed_count + summary.unfixed_count, 19);
    let resource = ApiResource {
        group: "openreports.io".into(),
        version: "v1alpha1".into(),
        api_version: "openreports.io/v1alpha1".into(),
        kind: "Report".into(),
        plural: "reports".into(),
    };
    let reports: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "e2e-reports", &resource);
    let report = reports
        .get(&name)
        .await
        .expect("a Report with the CIS's name");
    let owner = &report.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        (
            "ContainerImageScan",
            cis.metadata.uid.as_deref().expect("uid"),
            Some(true),
            Some(true)
        )
    );
    assert_eq!(
        report
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("image-scanner")
    );
    assert_eq!(
        report.data["summary"],
        json!({"skip": 0, "warn": 0, "fail": 19})
    );
    assert_eq!(report.data["scope"]["kind"], "Pod");
    let results = report.data["results"].as_array().expect("results");
    assert_eq!(results.len(), 19);
    assert!(
        results
            .iter()
            .all(|r| r["properties"].as_object().is_some_and(|p| !p.is_empty()))
    );

    // Owned by the CIS: the garbage collector removes the Report with it.
    drop(op);
    let cis_api: Api<image_scanner::crd::ContainerImageScan> =
        Api::namespaced(client.clone(), "e2e-reports");
    cis_api
        .delete(&name, &DeleteParams::background())
        .await
        .expect("delete CIS");
    eventually(
        WAIT,
        "Report garbage-collected with its CIS",
        None,
        || async {
            reports
                .get_opt(&name)
                .await
                .ok()
                .and_then(|r| r.is_none().then_some(()))
        },
    )
    .await;
    ns.cleanup().await;
    // Leave the cluster as the other tests expect it: no OpenReports CRD.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let _ = crds
        .delete("reports.openreports.io", &DeleteParams::default())
        .await;
    eventually(WAIT, "Report CRD removed", None, || async {
        crds.get_opt("reports.openreports.io")
            .await
            .ok()
            .and_then(|c| c.is_none().then_some(()))
    })
    .await;
}

/// A mixed amd64/arm64 cluster: an image that runs on an arm64 node is scanned on an arm64 node,
/// by the real scheduler (the other nodes are amd64).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn an_image_is_scanned_on_the_architecture_of_the_nodes_that_run_it() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::DeleteParams;
    const ARM_NODE: &str = "kwok-node-arm64";
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes.delete(ARM_NODE, &DeleteParams::default()).await;
    apply(&client, None, json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": ARM_NODE,
            "labels": {"kubernetes.io/hostname": ARM_NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"}
        }
    }))
    .await;
    eventually(
        WAIT,
        "the arm64 node Ready without taints",
        None,
        || async {
            let node = nodes.get_opt(ARM_NODE).await.ok().flatten()?;
            let ready = node
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let untainted = node
                .spec
                .and_then(|s| s.taints)
                .is_none_or(|t| t.is_empty());
            (ready && untainted).then_some(())
        },
    )
    .await;
    let digest = digest_for("arm64-only");
    serve_log(&digest, &fixture(SMALL_LOG));
    let ns = TestNamespaces::create(&client, &["e2e-arch"]).await;
    let op = Operator::start("arch", "e2e-arch", &[]);
    let mut pod = bare_pod("arm", &format!("registry.e2e/arch/app@{digest}"));
    pod["spec"]["nodeName"] = json!(ARM_NODE);
    apply(&client, Some("e2e-arch"), pod).await;

    let job = eventually(WAIT, "scan Job created", Some(&op), || async {
        scan_jobs(&client).await.into_iter().find(|j| {
            j.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("image-scanner.statnett.no/digest"))
                == Some(&digest)
        })
    })
    .await;
    let affinity = serde_json::to_value(
        job.spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.affinity),
    )
    .expect("affinity");
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][1],
        json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]})
    );
    let job_name = job.metadata.name.clone().expect("name");
    let scan_pods: Api<Pod> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let node = eventually(WAIT, "the scan pod scheduled", Some(&op), || async {
        let list = scan_pods
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await
            .ok()?;
        list.items.into_iter().find_map(|p| p.spec?.node_name)
    })
    .await;
    assert_eq!(node, ARM_NODE, "the only node of the image's architecture");
    eventually(WAIT, "CIS scanned", Some(&op), || async {
        list_cis(&client, "e2e-arch")
            .await
            .into_iter()
            .find(scanned)
    })
    .await;
    drop(op);
    ns.cleanup().await;
    let _ = nodes.delete(ARM_NODE, &DeleteParams::default()).await;
}
