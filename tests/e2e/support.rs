//! Test support for the end-to-end suite: a client for the local control plane, the operator
//! as a real child process, scan logs served by kwok, and waiting with useful failure output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use image_scanner::crd::ContainerImageScan;

/// Namespace where the operator runs its scan Jobs (installed by the e2e overlay).
pub const SCAN_NAMESPACE: &str = "image-scanner";
/// The upstream e2e image (spec §17.2).
pub const ECHO_IMAGE: &str = "docker.io/nginxinc/nginx-unprivileged@sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191";
/// Its digest.
pub const ECHO_DIGEST: &str =
    "sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(relative)
}

pub const SMALL_LOG: &str = "upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json";
pub const LONG_LOG: &str =
    "upstream/internal/controller/stas/testdata/scan-job-successful-long/scan-job-pod.log.json";
pub const INVALID_LOG: &str = "upstream/internal/controller/stas/testdata/scan-job-invalid-json/scan-job-pod.log.invalid.json";
pub const FAILED_LOG: &str =
    "upstream/internal/controller/stas/testdata/scan-job-failed/failed-scan-job-pod.log";
pub const DEBIAN_LOG: &str = "trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json";

fn admin_kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/cluster/kubeconfig"))
}

/// The kubeconfig the operator runs with: the installed ServiceAccount's (written by
/// `make install-e2e`) so RBAC is exercised, else the admin one.
pub fn operator_kubeconfig() -> PathBuf {
    let installed = repo_root().join("target/e2e/operator.kubeconfig");
    if installed.exists() {
        installed
    } else {
        admin_kubeconfig()
    }
}

pub async fn client() -> Client {
    let path = admin_kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no kubeconfig at {} ({e}); start the local control plane with `make cluster-up`",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client")
}

/// A sha256 digest unique to `seed` (tests use distinct digests so that scans never mix).
pub fn digest_for(seed: &str) -> String {
    use sha2_shim::sha256_hex;
    format!("sha256:{}", sha256_hex(seed.as_bytes()))
}

/// Serves `file` as the log of every container running an image with `digest`.
pub fn serve_log(digest: &str, file: &Path) {
    let status = Command::new(repo_root().join("tests/cluster/serve-log.sh"))
        .arg(digest)
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("serve-log.sh runs");
    assert!(status.success(), "serve-log.sh failed for {digest}");
}

/// Polls `probe` every 250 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the tail of the operator's log.
pub async fn eventually<T, F, Fut>(
    timeout: Duration,
    what: &str,
    op: Option<&Operator>,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if let Some(op) = op
            && let Some(status) = op.exited()
        {
            panic!(
                "the operator exited ({status}) while waiting for: {what}\n--- operator log (tail) ---\n{}",
                op.log_tail()
            );
        }
        if start.elapsed() > timeout {
            let tail = op.map(Operator::log_tail).unwrap_or_default();
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n--- operator log (tail) ---\n{tail}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts `probe` holds for the whole `duration`.
pub async fn consistently<F, Fut>(duration: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < duration {
        assert!(probe().await, "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The operator binary running as a child process.
pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    pub metrics_port: u16,
    pub health_port: u16,
    name: String,
    args: Vec<String>,
}

impl Operator {
    /// Starts the operator scanning the namespaces whose names start with `prefix`.
    pub fn start(name: &str, prefix: &str, extra: &[&str]) -> Operator {
        let log = repo_root().join(format!("target/e2e/logs/{name}.log"));
        let _ = std::fs::remove_file(&log);
        let mut args: Vec<String> = vec![
            format!("--scan-job-namespace={SCAN_NAMESPACE}"),
            "--scan-job-service-account=image-scanner-job".into(),
            "--trivy-image=ghcr.io/aquasecurity/trivy:0.74.0".into(),
            "--scan-workload-resources=deployments.apps,replicasets.apps,statefulsets.apps,daemonsets.apps,cronjobs.batch,jobs.batch".into(),
            format!("--scan-namespace-include-regexp=^{prefix}"),
            "--log-format=console".into(),
            "--log-level=image_scanner=debug,info".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut op = Operator {
            child: None,
            log,
            metrics_port: free_port(),
            health_port: free_port(),
            name: name.to_string(),
            args,
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(self.log.parent().expect("log dir")).expect("log dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_image-scanner-operator"))
            .args(&self.args)
            .arg(format!(
                "--metrics-bind-address=127.0.0.1:{}",
                self.metrics_port
            ))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{}",
                self.health_port
            ))
            // The flag wins over KUBECONFIG as controller-runtime's does: a variable naming
            // no file proves the operator used the flag.
            .arg(format!("--kubeconfig={}", operator_kubeconfig().display()))
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("POD_NAMESPACE", SCAN_NAMESPACE)
            .env("POD_NAME", format!("e2e-{}", self.name))
            .env_remove("RUST_LOG")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("operator starts");
        self.child = Some(child);
    }

    /// Waits for the process to end on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "the operator did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no graceful shutdown, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait().expect("exit status")
    }

    /// Starts the process again with the same arguments (after `kill`/`terminate`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the operator first");
        self.spawn();
    }

    /// The exit status if the process ended on its own.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_ref()?;
        // try_wait needs &mut; reading /proc keeps this method &self.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok();
        match stat {
            Some(s) if !s.contains(") Z ") => None,
            _ => Some(std::process::ExitStatus::default()),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(60),
            "operator /readyz",
            Some(self),
            || async {
                http_get(self.health_port, "/readyz")
                    .await
                    .filter(|b| b.starts_with("ok"))
                    .map(|_| ())
            },
        )
        .await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal HTTP/1.0 GET against 127.0.0.1 (avoids an HTTP client dependency).
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// A test's namespaces: created fresh, deleted at the end.
pub struct TestNamespaces {
    client: Client,
    pub names: Vec<String>,
}

impl TestNamespaces {
    pub async fn create(client: &Client, names: &[&str]) -> TestNamespaces {
        let api: Api<Namespace> = Api::all(client.clone());
        for name in names {
            delete_namespace_and_wait(client, name).await;
            api.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
            )
            .await
            .expect("namespace created");
            // Pods are rejected until the service-account controller made the default SA.
            let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
            eventually(
                Duration::from_secs(30),
                "default service account",
                None,
                || async { sa.get_opt("default").await.ok().flatten().map(|_| ()) },
            )
            .await;
        }
        TestNamespaces {
            client: client.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub async fn cleanup(self) {
        for name in &self.names {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let _ = api.delete(name, &DeleteParams::background()).await;
        }
    }
}

async fn delete_namespace_and_wait(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.ok().flatten().is_none() {
        return;
    }
    let _ = api.delete(name, &DeleteParams::background()).await;
    eventually(
        Duration::from_secs(90),
        &format!("namespace {name} deleted"),
        None,
        || async {
            api.get_opt(name)
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        },
    )
    .await;
}

/// Makes sure the scan namespace and the scan Job service account exist (the install overlay
/// creates them; this keeps the suite runnable on a bare cluster too) and holds no Jobs.
pub async fn prepare_scan_namespace(client: &Client) {
    ensure_crd(client).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    if ns
        .get_opt(SCAN_NAMESPACE)
        .await
        .expect("read namespace")
        .is_none()
    {
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": SCAN_NAMESPACE}})).expect("ns"),
        )
        .await
        .expect("scan namespace");
    }
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    if sa
        .get_opt("image-scanner-job")
        .await
        .expect("read sa")
        .is_none()
    {
        sa.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "image-scanner-job"}}))
                .expect("sa"),
        )
        .await
        .expect("scan service account");
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let _ = jobs
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
    eventually(
        Duration::from_secs(60),
        "scan namespace without Jobs",
        None,
        || async {
            jobs.list(&ListParams::default())
                .await
                .ok()
                .and_then(|l| l.items.is_empty().then_some(()))
        },
    )
    .await;
}

/// Installs the committed CRD (the install overlay does the same) and waits until it serves.
async fn ensure_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_saphyr::from_str(include_str!(
        "../../crds/containerimagescans.stas.statnett.no.yaml"
    ))
    .expect("CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "containerimagescans.stas.statnett.no",
        &kube::api::PatchParams::apply("e2e-test").force(),
        &kube::api::Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    eventually(Duration::from_secs(30), "CRD established", None, || async {
        let crd = api.get("containerimagescans.stas.statnett.no").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

pub async fn list_cis(client: &Client, namespace: &str) -> Vec<ContainerImageScan> {
    let api: Api<ContainerImageScan> = Api::namespaced(client.clone(), namespace);
    let mut items = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    items
}

pub async fn get_cis(client: &Client, namespace: &str, name: &str) -> Option<ContainerImageScan> {
    let api: Api<ContainerImageScan> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name).await.ok().flatten()
}

pub async fn scan_jobs(client: &Client) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=image-scanner"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub async fn pods(client: &Client, namespace: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Applies a manifest (YAML or JSON value) with the admin client, server-side.
pub async fn apply(client: &Client, namespace: Option<&str>, manifest: serde_json::Value) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::discovery::{Discovery, Scope};
    let obj: DynamicObject = serde_json::from_value(manifest).expect("manifest");
    let types = obj.types.clone().expect("apiVersion and kind");
    let gvk = kube::api::GroupVersionKind::try_from(&types).expect("gvk");
    // Discovery lists every group; one whose CRD was just created (or removed) can answer 404
    // for a moment while the API server's discovery catches up, so retry for a bounded time.
    let mut attempts = 0;
    let (ar, caps) = loop {
        attempts += 1;
        let found = match Discovery::new(client.clone()).run().await {
            Ok(discovery) => discovery
                .resolve_gvk(&gvk)
                .ok_or_else(|| "unknown kind".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match found {
            Ok(resolved) => break resolved,
            Err(e) if attempts >= 30 => panic!("discovery of {gvk:?}: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    };
    let api: Api<DynamicObject> = match (caps.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    let name = obj.metadata.name.clone().expect("name");
    api.patch(
        &name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {gvk:?} {name}: {e}"));
}

/// Condition (type, status, reason) triples of a CIS.
pub fn conditions(cis: &ContainerImageScan) -> Vec<(String, String, String, String)> {
    cis.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.reason, c.message))
        .collect()
}

/// The summary's counts as (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN); a severity it lacks is 0.
pub fn severity_tuple(cis: &ContainerImageScan) -> (i32, i32, i32, i32, i32) {
    let counts = severity_counts(cis);
    let n = |s: &str| counts.get(s).copied().unwrap_or(0);
    (
        n("CRITICAL"),
        n("HIGH"),
        n("MEDIUM"),
        n("LOW"),
        n("UNKNOWN"),
    )
}

pub fn severity_counts(cis: &ContainerImageScan) -> BTreeMap<String, i32> {
    cis.status
        .as_ref()
        .and_then(|s| s.vulnerability_summary.as_ref())
        .and_then(|s| s.severity_count.clone())
        .unwrap_or_default()
}

pub fn scanned(cis: &ContainerImageScan) -> bool {
    cis.status.as_ref().is_some_and(|s| {
        s.last_successful_scan_time.is_some() && s.last_scan_time == s.last_successful_scan_time
    })
}

mod sha2_shim {
    //! sha256 through the system's `sha256sum` (the tests avoid a crypto dependency).
    pub fn sha256_hex(data: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
        let out = child.wait_with_output().expect("sha256sum output");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
