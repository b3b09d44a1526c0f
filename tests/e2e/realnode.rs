//! The operator on the real node (tests/realnode): real kubelet, containerd and runc, a private
//! registry with authentication, and real trivy 0.74 against an offline DB whose advisories we
//! chose (tests/realnode/trivydb). The results are exact: what the DB says about the test
//! image's packages (tests/realnode/expected), nothing replayed.
//!
//! The real node is tainted: only these tests' pods (and the scan Jobs of the operator they
//! start) tolerate it, so the kwok tests never land there.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

/// A real scan: image pull by the scan pod (none: the image is on the node), trivy start and a
/// round trip to the trivy server take seconds; the rest is the operator's own pacing.
pub(crate) const WAIT: Duration = Duration::from_secs(180);

/// `tests/realnode/up.sh`'s settings (`target/cluster/realnode/realnode.env`), or why the
/// cluster has no real node.
pub(crate) struct RealNode(BTreeMap<String, String>);

impl RealNode {
    /// The running real node's settings. Panics when it is missing, unless `REAL_NODE=0` asked
    /// for a kwok-only cluster (then the caller skips the test, saying so).
    pub(crate) fn get() -> Option<RealNode> {
        let state = repo_root().join("target/cluster");
        if let Ok(reason) = std::fs::read_to_string(state.join("realnode.disabled")) {
            if reason.trim() == "REAL_NODE=0" {
                eprintln!("SKIPPED: the cluster was started with REAL_NODE=0 (kwok only)");
                return None;
            }
            panic!("the local cluster has no real node: {}", reason.trim());
        }
        let env = std::fs::read_to_string(state.join("realnode/realnode.env"))
            .expect("target/cluster/realnode/realnode.env (make cluster-up starts the real node)");
        Some(RealNode(
            env.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    pub(crate) fn var(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing in realnode.env"))
    }

    fn toleration(&self) -> serde_json::Value {
        json!({"key": self.var("TAINT_KEY"), "operator": "Exists", "effect": "NoSchedule"})
    }

    /// The operator, scanning on the real node: the trivy image preloaded there, scan pods that
    /// tolerate its taint.
    pub(crate) fn operator(&self, name: &str, prefix: &str, extra: &[&str]) -> Operator {
        let tolerations = serde_json::to_string(&[self.toleration()]).expect("json");
        let trivy_image = format!("--trivy-image={}", self.var("TRIVY_IMAGE"));
        let tolerations = format!("--scan-job-tolerations={tolerations}");
        let mut args = vec![trivy_image.as_str(), tolerations.as_str()];
        args.extend_from_slice(extra);
        Operator::start(name, prefix, &args)
    }

    /// The scan namespace's trivy-job-config points at the node's trivy server.
    pub(crate) async fn use_trivy_server(&self, client: &kube::Client) {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "trivy-job-config"},
            "data": {"SERVER": self.var("TRIVY_SERVER")}});
        cms.patch(
            "trivy-job-config",
            &PatchParams::apply("e2e-real-node").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("trivy-job-config points at the real node's trivy server");
    }

    /// A Deployment of a private image on the real node, pulled with an imagePullSecret.
    async fn deploy_private(&self, client: &kube::Client, ns: &str, name: &str, image: &str) {
        let containers =
            json!([{"name": "app", "image": image, "command": ["/bin/sleep", "3600"]}]);
        self.deploy_private_pod(client, ns, name, json!([]), containers)
            .await;
    }

    /// A Deployment on the real node whose pod has these init containers and containers, all
    /// pulled from the private registry with the imagePullSecret `registry-credentials`.
    async fn deploy_private_pod(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        init_containers: serde_json::Value,
        containers: serde_json::Value,
    ) {
        self.pull_secret(client, ns, "registry-credentials").await;
        self.deploy(
            client,
            ns,
            name,
            json!({"imagePullSecrets": [{"name": "registry-credentials"}],
                "initContainers": init_containers, "containers": containers}),
        )
        .await;
    }

    /// A Deployment `java` whose init container `unpack` runs the JAR image and whose container
    /// `app` the test image `<app>_IMAGE` (`APP` or `CLEAN`), both private.
    async fn deploy_jar_and_app(&self, client: &kube::Client, ns: &str, app: &str) {
        self.deploy_private_pod(
            client,
            ns,
            "java",
            json!([{"name": "unpack", "image": self.var("JAVA_IMAGE"), "command": ["/bin/sh", "-c", "true"]}]),
            json!([{"name": "app", "image": self.var(&format!("{app}_IMAGE")), "command": ["/bin/sleep", "3600"]}]),
        )
        .await;
    }

    /// Waits until every CIS of `ns` is scanned, one per `(container, image, file)`, then checks
    /// each: the digest of `<image>_DIGEST` and exactly the findings of
    /// tests/realnode/expected/`file`.
    async fn expect_results(
        &self,
        client: &kube::Client,
        op: &Operator,
        ns: &str,
        cases: &[(&str, &str, &str)],
    ) {
        let all = eventually(WAIT, "every CIS scanned", Some(op), || async {
            let all = list_cis(client, ns).await;
            (all.len() == cases.len() && all.iter().all(scanned)).then_some(all)
        })
        .await;
        for (container, image, file) in cases {
            let cis = all
                .iter()
                .find(|c| c.spec.workload.container_name == *container)
                .unwrap_or_else(|| panic!("no CIS for container {container}"));
            let digest = self.var(&format!("{image}_DIGEST"));
            assert_eq!(cis.spec.digest, digest, "{container}");
            let (status, want) = (status_json(cis), expected(file));
            assert_eq!(
                (&status["vulnerabilities"], &status["vulnerabilitySummary"]),
                (&want["vulnerabilities"], &want["vulnerabilitySummary"]),
                "the real scan of {container} (left) differs from tests/realnode/expected/{file}"
            );
        }
    }

    /// The Secret `name` in `ns` with the registry's login, as `kubectl create secret
    /// docker-registry` makes it (the kubelet takes username and password as well as the
    /// base64 `auth` of docker login).
    pub(crate) async fn pull_secret(&self, client: &kube::Client, ns: &str, name: &str) {
        let docker_config = json!({"auths": {self.var("REGISTRY"): {
            "username": self.var("REGISTRY_USER"), "password": self.var("REGISTRY_PASSWORD")}}});
        apply(
            client,
            Some(ns),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name},
                "stringData": {".dockerconfigjson": docker_config.to_string()}}),
        )
        .await;
    }

    /// A one-replica Deployment on the real node; `pod` holds the pod spec's fields besides
    /// the placement on the node (containers, imagePullSecrets, securityContext, ...).
    pub(crate) async fn deploy(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        pod: serde_json::Value,
    ) {
        let mut spec = json!({
            "nodeSelector": {"image-scanner.test/node": "real"},
            "tolerations": [self.toleration()],
            "terminationGracePeriodSeconds": 1});
        let (Some(spec_fields), Some(pod_fields)) = (spec.as_object_mut(), pod.as_object()) else {
            panic!("a pod spec is an object: {pod}");
        };
        spec_fields.extend(pod_fields.clone());
        apply(
            client,
            Some(ns),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}),
        )
        .await;
    }
}

/// The node's trivy server (tests/realnode/trivy-server.sh), stopped or on another DB for a
/// test; dropping this starts it again on the base DB, so a failing test leaves it as found.
struct TrivyServer;

impl TrivyServer {
    fn control(args: &[&str]) {
        let script = repo_root().join("tests/realnode/trivy-server.sh");
        let status = std::process::Command::new(&script)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{script:?}: {e}"));
        assert!(status.success(), "trivy-server.sh {args:?}: {status}");
    }

    fn stop() -> TrivyServer {
        Self::control(&["stop"]);
        TrivyServer
    }

    fn start(&self, db: &str) {
        Self::control(&["start", db]);
    }
}

impl Drop for TrivyServer {
    fn drop(&mut self) {
        Self::control(&["start", "base"]);
    }
}

/// The status fragment `image-scanner-operator report` gives for the real scanner's output on
/// the image's files: tests/realnode/expected, with the Go version of the image's binary filled
/// in by make-images.sh (tests/realnode/check-scanner.sh proves the files against trivy itself).
pub(crate) fn expected(name: &str) -> serde_json::Value {
    let path = repo_root()
        .join("target/cluster/realnode/images/expected")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub(crate) fn status_json(cis: &image_scanner::crd::ContainerImageScan) -> serde_json::Value {
    serde_json::to_value(cis.status.as_ref().expect("status")).expect("status json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_private_image_is_scanned_by_real_trivy_on_the_node_that_has_it() {
    let Some(node) = RealNode::get() else { return };
    let client = client().await;
    prepare_scan_namespace(&client).await;
    node.use_trivy_server(&client).await;
    let ns = TestNamespaces::create(&client, &["e2e-real-private"]).await;
    let op = node.operator("real-private", "e2e-real-private", &[]);
    node.deploy_private(&client, "e2e-real-private", "app", node.var("APP_IMAGE"))
        .await;

    let cis = eventually(
        WAIT,
        "CIS with a successful real scan",
        Some(&op),
        || async {
            list_cis(&client, "e2e-real-private")
                .await
                .into_iter()
                .find(scanned)
        },
    )
    .await;
    // The digest is the manifest digest the registry serves, not the image config ID the
    // kubelet reports in status.image after a pull by digest.
    assert_eq!(cis.spec.digest, node.var("APP_DIGEST"));
    let registry = node.var("REGISTRY");
    assert_eq!(cis.spec.name, format!("{registry}/test/app"));

    let status = status_json(&cis);
    let want = expected("app.json");
    assert_eq!(
        status["vulnerabilities"], want["vulnerabilities"],
        "vulnerabilities of the real scan (left) differ from tests/realnode/expected/app.json"
    );
    assert_eq!(
        status["vulnerabilitySummary"], want["vulnerabilitySummary"],
        "summary of the real scan (left) differs from tests/realnode/expected/app.json"
    );

    // The scan ran the image itself, by digest, on the real node, in the workload's namespace
    // with its pull secret and service account: the kubelet (KEP-2535 at its defaults) lets a
    // pod use an image pulled with a secret only with matching credentials.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-real-private");
    let scan_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=image-scanner"))
        .await
        .expect("scan pods");
    let scan_pod = scan_pods
        .items
        .iter()
        .find(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.containers
                    .iter()
                    .any(|c| c.image.as_deref().is_some_and(|i| i.contains("/test/app@")))
            })
        })
        .expect("the scan pod of the app image (kept until the Job's TTL)");
    let scan_pod_name = scan_pod.metadata.name.as_deref().unwrap_or_default();
    assert!(
        scan_pod_name.starts_with("image-scan-app-"),
        "{scan_pod_name}"
    );
    let spec = scan_pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some(node.var("NODE_NAME")));
    let secrets: Vec<&str> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(secrets, ["registry-credentials"]);
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(format!("{registry}/test/app@{}", node.var("APP_DIGEST")).as_str())
    );

    // ignore-unfixed on the workload: the unfixed finding goes at once, from the same result.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "e2e-real-private");
    deployments
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "image-scanner.statnett.no/ignore-unfixed": "true"}}})),
        )
        .await
        .expect("annotate");
    let fixed_only: Vec<serde_json::Value> = want["vulnerabilities"]
        .as_array()
        .expect("expected vulnerabilities")
        .iter()
        .filter(|v| v.get("fixedVersion").is_some())
        .cloned()
        .collect();
    assert!(fixed_only.len() < want["vulnerabilities"].as_array().map_or(0, Vec::len));
    eventually(
        WAIT,
        "ignore-unfixed applied to the real result",
        Some(&op),
        || async {
            let cis = list_cis(&client, "e2e-real-private")
                .await
                .into_iter()
                .next()?;
            let status = status_json(&cis);
            (status["vulnerabilities"] == serde_json::Value::from(fixed_only.clone())
                && status["vulnerabilitySummary"]["unfixedCount"] == 0
                && status["vulnerabilitySummary"]["fixedCount"]
                    == want["vulnerabilitySummary"]["fixedCount"])
                .then_some(())
        },
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_scanner_failure_stalls_with_trivys_message_and_a_new_db_is_seen_on_rescan() {
    let Some(node) = RealNode::get() else { return };
    let client = client().await;
    prepare_scan_namespace(&client).await;
    node.use_trivy_server(&client).await;
    let server = TrivyServer::stop();
    let ns = TestNamespaces::create(&client, &["e2e-real-db"]).await;
    // A short interval: it caps the retry delay after a failed scan and paces the rescan.
    let op = node.operator("real-db", "e2e-real-db", &["--scan-interval=30s"]);
    node.deploy_private(&client, "e2e-real-db", "clean", node.var("CLEAN_IMAGE"))
        .await;

    // trivy's own error reaches the CIS; nothing is reported as clean.
    let (cis, message) = eventually(WAIT, "Stalled with trivy's error", Some(&op), || async {
        let cis = list_cis(&client, "e2e-real-db").await.into_iter().next()?;
        let stalled = conditions(&cis)
            .into_iter()
            .find(|c| c.0 == "Stalled" && c.1 == "True")?;
        Some((cis, stalled.3))
    })
    .await;
    assert!(
        message.contains("connection refused"),
        "Stalled message without trivy's cause: {message}"
    );
    let status = status_json(&cis);
    assert!(
        status["lastSuccessfulScanTime"].is_null() && status["vulnerabilitySummary"].is_null(),
        "a failed scan must not look like a clean one: {status}"
    );

    // The server back: the retry succeeds, and the clean image has no findings in the base DB.
    server.start("base");
    let want = expected("clean.json");
    eventually(WAIT, "recovered: a successful scan", Some(&op), || async {
        let cis = list_cis(&client, "e2e-real-db").await.into_iter().next()?;
        let status = status_json(&cis);
        (scanned(&cis)
            && conditions(&cis)
                .iter()
                .all(|c| c.0 != "Stalled" || c.1 != "True")
            && status["vulnerabilitySummary"] == want["vulnerabilitySummary"])
            .then_some(())
    })
    .await;

    // A new advisory in the DB appears at the next rescan, without any change to the workload.
    server.start("updated");
    let want = expected("clean-updated.json");
    eventually(WAIT, "rescan finds the new advisory", Some(&op), || async {
        let cis = list_cis(&client, "e2e-real-db").await.into_iter().next()?;
        let status = status_json(&cis);
        (status["vulnerabilities"] == want["vulnerabilities"]
            && status["vulnerabilitySummary"] == want["vulnerabilitySummary"])
            .then_some(())
    })
    .await;
    drop(server);
    ns.cleanup().await;
}

/// A JAR in an init container's image: init containers get their own CIS, and the scan pod
/// has the Java DB from the Java DB image (an init container copies it in), so trivy names
/// both JARs, one of them only through the Java DB, without downloading anything (the node
/// has no route out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_jar_in_an_init_container_is_scanned_with_the_java_db_image() {
    let Some(node) = RealNode::get() else { return };
    let client = client().await;
    prepare_scan_namespace(&client).await;
    node.use_trivy_server(&client).await;
    let ns = TestNamespaces::create(&client, &["e2e-real-java"]).await;
    let java_db = format!("--trivy-java-db-image={}", node.var("JAVA_DB_IMAGE"));
    let op = node.operator("real-java", "e2e-real-java", &[&java_db]);
    node.deploy_jar_and_app(&client, "e2e-real-java", "CLEAN")
        .await;
    node.expect_results(
        &client,
        &op,
        "e2e-real-java",
        &[
            ("unpack", "JAVA", "java.json"),
            ("app", "CLEAN", "clean.json"),
        ],
    )
    .await;
    ns.cleanup().await;
}

/// `--trivy-binary=image-volume`: the scan pod mounts the trivy image as an image volume
/// (containerd 2.1+, the real node's runtime) instead of copying the binary in, and the
/// result is exactly the one of the copy; the Java DB image is still copied by its own init
/// container, and trivy finds the JAR through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn the_trivy_image_mounted_as_an_image_volume_scans_without_a_copy() {
    let Some(node) = RealNode::get() else { return };
    let client = client().await;
    prepare_scan_namespace(&client).await;
    node.use_trivy_server(&client).await;
    let ns = TestNamespaces::create(&client, &["e2e-real-volume"]).await;
    let java_db = format!("--trivy-java-db-image={}", node.var("JAVA_DB_IMAGE"));
    let op = node.operator(
        "real-volume",
        "e2e-real-volume",
        &["--trivy-binary=image-volume", &java_db],
    );
    node.deploy_jar_and_app(&client, "e2e-real-volume", "APP")
        .await;
    node.expect_results(
        &client,
        &op,
        "e2e-real-volume",
        &[("unpack", "JAVA", "java.json"), ("app", "APP", "app.json")],
    )
    .await;

    // The scan pods ran trivy from the image volume: no init container copied it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-real-volume");
    let scan_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=image-scanner"))
        .await
        .expect("scan pods");
    assert!(
        !scan_pods.items.is_empty(),
        "the scan pods are kept until the Jobs' TTL"
    );
    for pod in &scan_pods.items {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref().expect("spec");
        let init: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init, ["java-db"], "{name}: only the Java DB is copied");
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "image-scanner")
            .and_then(|v| v.image.as_ref())
            .unwrap_or_else(|| panic!("{name}: trivy comes from an image volume"));
        assert_eq!(volume.reference.as_deref(), Some(node.var("TRIVY_IMAGE")));
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        assert_eq!(phase, Some("Succeeded"), "{name}");
    }
    ns.cleanup().await;
}
