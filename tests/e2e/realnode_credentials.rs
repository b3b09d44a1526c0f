//! The kubelet's pull credential checks (KEP-2535, `KubeletEnsureSecretPulledImages`) on the
//! real node, and where the operator runs a scan Job so that the kubelet lets the scan pod use
//! the image (src/core/engine/placement.rs): the default kubelet (gate on), the gate off,
//! node-level credentials, a deleted pull secret, two namespaces with different secrets, and a
//! namespace whose Pod Security refuses the scan pod.
//!
//! Every test here uses an image no pod has pulled before (tests/realnode/fresh-image.sh): the
//! kubelet's pull records outlive pods and restarts, and an image once pulled without a pod
//! secret is usable by every pod for good.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use crate::realnode::{RealNode, WAIT, expected, status_json};
use crate::support::*;

/// A copy of a test image under a new tag, with a config no pod has pulled.
struct FreshImage {
    reference: String,
    digest: String,
}

impl FreshImage {
    fn of(name: &str) -> FreshImage {
        let script = repo_root().join("tests/realnode/fresh-image.sh");
        let out = std::process::Command::new(&script)
            .arg(name)
            .output()
            .unwrap_or_else(|e| panic!("{script:?}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "fresh-image.sh {name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (reference, digest) = stdout
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("fresh-image.sh {name} printed {stdout:?}"));
        FreshImage {
            reference: reference.to_string(),
            digest: digest.to_string(),
        }
    }

    /// The `sleep` container of this image.
    fn container(&self) -> serde_json::Value {
        json!([{"name": "app", "image": self.reference, "command": ["/bin/sleep", "3600"]}])
    }

    /// Whether a scan Job or pod scans this digest (its `image-scanner.statnett.no/digest`
    /// annotation; the label of that name holds only what fits in a label value).
    fn scanned_by(&self, meta: &ObjectMeta) -> bool {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get("image-scanner.statnett.no/digest"))
            == Some(&self.digest)
    }
}

/// The real node's kubelet in another mode for one test (tests/realnode/kubelet.sh);
/// dropping this restarts it at its defaults (gate on, no node credentials), also when the
/// test fails.
struct KubeletMode;

impl KubeletMode {
    fn restart(args: &[&str]) {
        let script = repo_root().join("tests/realnode/kubelet.sh");
        let status = std::process::Command::new(&script)
            .arg("restart")
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{script:?}: {e}"));
        assert!(status.success(), "kubelet.sh restart {args:?}: {status}");
    }

    fn set(args: &[&str]) -> KubeletMode {
        Self::restart(args);
        KubeletMode
    }
}

impl Drop for KubeletMode {
    fn drop(&mut self) {
        Self::restart(&[]);
    }
}

/// A test's start: the real node, an admin client, the scan namespace with the node's trivy
/// server, the test's namespaces (new), and a fresh copy of the `clean` image.
struct Case {
    node: RealNode,
    client: kube::Client,
    namespaces: TestNamespaces,
    image: FreshImage,
}

impl Case {
    async fn start(namespaces: &[&str]) -> Option<Case> {
        let node = RealNode::get()?;
        let client = client().await;
        prepare_scan_namespace(&client).await;
        node.use_trivy_server(&client).await;
        let namespaces = TestNamespaces::create(&client, namespaces).await;
        let image = FreshImage::of("clean");
        Some(Case {
            node,
            client,
            namespaces,
            image,
        })
    }
}

/// The Deployment `app` in `ns` running `image` (unless `pod` names its containers), pulled
/// with the registry's login in the Secret `secret` (created here); `pod` adds pod spec fields.
async fn deploy_with_secret(
    node: &RealNode,
    client: &kube::Client,
    image: &FreshImage,
    ns: &str,
    secret: &str,
    mut pod: serde_json::Value,
) {
    node.pull_secret(client, ns, secret).await;
    pod["imagePullSecrets"] = json!([{ "name": secret }]);
    if pod.get("containers").is_none() {
        pod["containers"] = image.container();
    }
    node.deploy(client, ns, "app", pod).await;
}

/// Our scan Jobs or pods (`K`) of a digest, in every namespace.
async fn ours_of<K>(client: &kube::Client, image: &FreshImage) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=image-scanner"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| image.scanned_by(o.meta()))
        .collect()
}

async fn jobs_of(client: &kube::Client, image: &FreshImage) -> Vec<Job> {
    ours_of(client, image).await
}

async fn scan_pods_of(client: &kube::Client, image: &FreshImage) -> Vec<Pod> {
    ours_of(client, image).await
}

/// Scan Jobs the operator created so far (its metric `image_scanner_scan_jobs_created_total`).
async fn jobs_created(op: &Operator) -> u64 {
    let metrics = op.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("image_scanner_scan_jobs_created_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no image_scanner_scan_jobs_created_total in:\n{metrics}"))
}

/// (namespace, imagePullSecrets names, service account) of a scan pod.
fn placement(pod: &Pod) -> (String, Vec<String>, String) {
    let spec = pod.spec.as_ref().expect("spec");
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        spec.image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect(),
        spec.service_account_name.clone().unwrap_or_default(),
    )
}

/// Waits until every CIS in `ns` has the real scan result of the `clean` image.
async fn clean_result(client: &kube::Client, op: &Operator, ns: &str) {
    let want = expected("clean.json");
    eventually(
        WAIT,
        &format!("the real scan result in {ns}"),
        Some(op),
        || async {
            let all = list_cis(client, ns).await;
            (!all.is_empty()
                && all.iter().all(|cis| {
                    scanned(cis) && {
                        let status = status_json(cis);
                        status["vulnerabilities"] == want["vulnerabilities"]
                            && status["vulnerabilitySummary"] == want["vulnerabilitySummary"]
                    }
                }))
            .then_some(())
        },
    )
    .await;
}

/// (reason, message) of the first CIS in `ns` once it is `Stalled`.
async fn stalled(client: &kube::Client, op: &Operator, ns: &str) -> (String, String) {
    eventually(
        WAIT,
        &format!("a Stalled CIS in {ns}"),
        Some(op),
        || async {
            let cis = list_cis(client, ns).await.into_iter().next()?;
            let (_, _, reason, message) = conditions(&cis)
                .into_iter()
                .find(|c| c.0 == "Stalled" && c.1 == "True")?;
            Some((reason, message))
        },
    )
    .await
}

/// One digest in two namespaces with differently named pull secrets: one Job, placed in one
/// of them with its secret and service account, and both CIS get the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_private_image_in_two_namespaces_with_different_secrets_is_scanned_once() {
    let (a, b) = ("e2e-real-two-a", "e2e-real-two-b");
    let Some(Case {
        node,
        client,
        namespaces: ns,
        image,
    }) = Case::start(&[a, b]).await
    else {
        return;
    };
    for (namespace, secret) in [(a, "creds-a"), (b, "creds-b")] {
        deploy_with_secret(&node, &client, &image, namespace, secret, json!({})).await;
    }
    let op = node.operator("real-two", "e2e-real-two-", &[]);
    clean_result(&client, &op, a).await;
    clean_result(&client, &op, b).await;
    let jobs = jobs_of(&client, &image).await;
    assert_eq!(jobs.len(), 1, "one scan Job for the digest");
    let pods = scan_pods_of(&client, &image).await;
    assert_eq!(pods.len(), 1, "one scan pod for the digest");
    // In one of the two namespaces (whichever pod the operator saw first), with that
    // namespace's secret and service account.
    let (where_, secrets, service_account) = placement(&pods[0]);
    let secret = if where_ == a { "creds-a" } else { "creds-b" };
    assert!(where_ == a || where_ == b, "scan pod in {where_}");
    assert_eq!(
        (secrets, service_account.as_str()),
        (vec![secret.to_string()], "default")
    );
    for cis in list_cis(&client, a)
        .await
        .into_iter()
        .chain(list_cis(&client, b).await)
    {
        assert_eq!(cis.spec.digest, image.digest);
    }
    ns.cleanup().await;
}

/// A pod runs an image pulled with a Secret that was deleted since: the scan pod in its
/// namespace has no credentials left, nor has one in the scan namespace. The CIS says so
/// (every placement and the registry's 401), and the operator does not loop: one Job per
/// placement, then the failed-scan back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_private_image_whose_secret_was_deleted_stalls_once_with_the_reason() {
    let name = "e2e-real-deleted";
    let Some(Case {
        node,
        client,
        namespaces: ns,
        image,
    }) = Case::start(&[name]).await
    else {
        return;
    };
    deploy_with_secret(
        &node,
        &client,
        &image,
        name,
        "registry-credentials",
        json!({}),
    )
    .await;
    // The kubelet pulled it with the secret; then the secret goes.
    eventually(WAIT, "the workload running", None, || async {
        pods(&client, name)
            .await
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), name);
    secrets
        .delete("registry-credentials", &DeleteParams::default())
        .await
        .expect("secret deleted");

    let op = node.operator("real-deleted", name, &[]);
    let (reason, message) = stalled(&client, &op, name).await;
    assert_eq!(reason, "ImagePullUnauthorized", "{message}");
    assert!(
        message.contains(&format!(
            "namespace '{name}' with imagePullSecrets [registry-credentials]: "
        )) && message.contains(&format!("scan namespace '{SCAN_NAMESPACE}': "))
            && registry_refused(&message),
        "the message names each placement and the registry's answer: {message}"
    );
    let cis = list_cis(&client, name).await.remove(0);
    let status = status_json(&cis);
    assert!(
        status["lastSuccessfulScanTime"].is_null() && status["vulnerabilitySummary"].is_null(),
        "an image the scan could not read must not look clean: {status}"
    );
    // No hot loop: one Job per placement (deleted once refused), and no more for a while (the
    // failed-scan retry waits 5 minutes).
    assert_eq!(jobs_created(&op).await, 2);
    consistently(
        Duration::from_secs(30),
        "two scan Jobs, no more",
        || async { jobs_created(&op).await == 2 },
    )
    .await;
    assert!(
        jobs_of(&client, &image).await.is_empty(),
        "refused Jobs are deleted"
    );
    ns.cleanup().await;
}

/// A namespace that enforces the `restricted` Pod Security Standard refuses the scan pod (it
/// runs as root with one capability): the Job controller says so in an Event only, and the
/// CIS shows that message as `ScanPodRejected`, after the scan namespace was tried too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn a_namespace_that_refuses_the_scan_pod_gives_a_clear_stalled_reason() {
    let name = "e2e-real-restricted";
    let Some(Case {
        node,
        client,
        namespaces: ns,
        image,
    }) = Case::start(&[name]).await
    else {
        return;
    };
    apply(
        &client,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    )
    .await;
    let restricted = json!({"allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}});
    let mut containers = image.container();
    containers[0]["securityContext"] = restricted;
    let pod = json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers});
    deploy_with_secret(&node, &client, &image, name, "registry-credentials", pod).await;
    let op = node.operator("real-restricted", name, &[]);
    let (reason, message) = stalled(&client, &op, name).await;
    assert_eq!(reason, "ScanPodRejected", "{message}");
    assert!(
        message.contains("the scan pod was not created")
            && message.contains("violates PodSecurity \"restricted:latest\"")
            && registry_refused(&message),
        "the message gives the admission's and the scan namespace's answers: {message}"
    );
    ns.cleanup().await;
}

/// With the gate on (the default), a private image scanned from the scan namespace without
/// its secret is refused (the old placement, `--scan-job-placement=scan-namespace`); with the
/// gate off (the kubelet of Kubernetes ≤ 1.34) the same scan pod uses the image on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn the_scan_namespace_placement_works_with_the_gate_off_only() {
    let name = "e2e-real-gate";
    let Some(Case {
        node,
        client,
        namespaces: ns,
        image,
    }) = Case::start(&[name]).await
    else {
        return;
    };
    deploy_with_secret(
        &node,
        &client,
        &image,
        name,
        "registry-credentials",
        json!({}),
    )
    .await;
    // A short interval: it caps the retry delay after the failed scan.
    let op = node.operator(
        "real-gate",
        name,
        &["--scan-job-placement=scan-namespace", "--scan-interval=30s"],
    );
    let (reason, message) = stalled(&client, &op, name).await;
    assert_eq!(reason, "ImagePullUnauthorized", "{message}");
    assert!(registry_refused(&message), "{message}");

    let gate_off = KubeletMode::set(&["--gate=off"]);
    clean_result(&client, &op, name).await;
    let pods = scan_pods_of(&client, &image).await;
    assert!(
        pods.iter().all(|p| placement(p)
            == (
                SCAN_NAMESPACE.to_string(),
                vec![],
                "image-scanner-job".to_string()
            )),
        "every scan pod in the scan namespace, without secrets: {:?}",
        pods.iter().map(placement).collect::<Vec<_>>()
    );
    drop(op);
    drop(gate_off);
    ns.cleanup().await;
}

/// Node-level registry credentials (the kubelet's own config.json): a pod without
/// imagePullSecrets runs the private image, so the scan pod in the scan namespace may use it
/// too, and that is where the operator puts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane with its real node: make e2e"]
async fn an_image_pulled_with_node_credentials_is_scanned_in_the_scan_namespace() {
    let name = "e2e-real-node-creds";
    let Some(Case {
        node,
        client,
        namespaces: ns,
        image,
    }) = Case::start(&[name]).await
    else {
        return;
    };
    let node_credentials = KubeletMode::set(&["--node-credentials=on"]);
    node.deploy(
        &client,
        name,
        "app",
        json!({"containers": image.container()}),
    )
    .await;
    let op = node.operator("real-node-creds", name, &[]);
    clean_result(&client, &op, name).await;
    let pods = scan_pods_of(&client, &image).await;
    assert_eq!(
        pods.iter().map(placement).collect::<Vec<_>>(),
        [(
            SCAN_NAMESPACE.to_string(),
            vec![],
            "image-scanner-job".to_string()
        )]
    );
    drop(op);
    drop(node_credentials);
    ns.cleanup().await;
}

/// The registry's refusal as containerd words it: without credentials containerd 2 stops at the
/// registry's challenge (`authorization failed: no basic auth credentials`), with wrong ones it
/// (and containerd 1.x in both cases) quotes the answer (`401 Unauthorized`).
fn registry_refused(message: &str) -> bool {
    message.contains("no basic auth credentials") || message.contains("401 Unauthorized")
}
