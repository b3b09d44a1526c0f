//! Change notices delivered to HTTPS sinks (issue 21) by the operator binary, against
//! receivers this test starts on 127.0.0.1 with a CA of its own: one fails its first
//! deliveries, one never answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_scanner::crd::exception::VulnerabilityException;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

const NS: &str = "e2e-sinks";

/// A CA and a server certificate for 127.0.0.1 signed by it, made by `openssl` (which the
/// local control plane needs anyway) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("cert dir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=e2e sinks CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// One request as a receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    key: String,
    authorization: String,
    content_type: String,
    body: serde_json::Value,
}

/// What a receiver does with a request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 503 to the first `n` requests, 200 after.
    FailFirst(usize),
    /// Reads the request and never answers.
    Hang,
}

/// An HTTPS receiver on 127.0.0.1; its requests are in `received`.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(cert: &Path, key: &Path, behaviour: Behaviour) -> Receiver {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(request) = read_request(&mut tls).await else {
                        return;
                    };
                    let n = {
                        let mut all = seen.lock().expect("lock");
                        all.push(request);
                        all.len()
                    };
                    let status = match behaviour {
                        Behaviour::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Behaviour::FailFirst(f) if n <= f => "503 Service Unavailable",
                        Behaviour::FailFirst(_) => "200 OK",
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Receiver { port, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body.
async fn read_request(
    stream: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().ok()?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        key: header("idempotency-key"),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&buf[header_end..header_end + length]).ok()?,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_change_reaches_a_failing_sink_once_after_dedup_and_a_hanging_sink_slows_no_scan() {
    let wait = Duration::from_secs(120);
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let dir = repo_root().join("target/e2e/sinks");
    let (ca, cert, key) = certificates(&dir);
    let flaky = Receiver::start(&cert, &key, Behaviour::FailFirst(2)).await;
    let hanging = Receiver::start(&cert, &key, Behaviour::Hang).await;
    let token = dir.join("authorization");
    std::fs::write(&token, "Bearer e2e-token\n").expect("token file");
    let sinks = dir.join("sinks.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n\
             - name: flaky\n  url: https://127.0.0.1:{}/events\n  format: cloudevents\n  caFile: {}\n  authorizationFile: {}\n\
             - name: hanging\n  url: https://127.0.0.1:{}/hooks\n  format: slack\n  caFile: {}\n  timeout: 2s\n",
            flaky.port,
            ca.display(),
            token.display(),
            hanging.port,
            ca.display()
        ),
    )
    .expect("sinks file");
    let digest = digest_for("sinks");
    // CVE-2019-18224 (libidn2-0, CRITICAL, fixed) and CVE-2019-18276 (bash, LOW).
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let namespaces = TestNamespaces::create(&client, &[NS]).await;
    let sinks_arg = format!("--notification-sinks-file={}", sinks.display());
    let op = Operator::start("sinks", NS, &["--notice-cooldown=2s", &sinks_arg]);
    let deployment = |name: &str, digest: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": format!("registry.e2e/sinks/{name}@{digest}")}]}
                }
            }
        })
    };
    apply(&client, Some(NS), deployment("web", &digest)).await;
    eventually(wait, "the first result", Some(&op), || async {
        list_cis(&client, NS).await.into_iter().find(scanned)
    })
    .await;
    assert!(
        flaky.received().is_empty(),
        "a first result is the baseline"
    );

    // An exception takes the CRITICAL finding out: a change to deliver.
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
    // Two 503s, then accepted: back-off 2 s and 4 s.
    let all = eventually(
        wait,
        "a delivery accepted by the flaky sink",
        Some(&op),
        || async {
            let all = flaky.received();
            (all.len() >= 3).then_some(all)
        },
    )
    .await;
    let first = &all[0];
    assert_eq!(first.content_type, "application/cloudevents+json");
    assert_eq!(first.authorization, "Bearer e2e-token");
    assert_eq!(first.key.len(), 32, "{first:?}");
    assert_eq!(first.body["id"], first.key.as_str());
    assert_eq!(first.body["specversion"], "1.0");
    assert_eq!(first.body["subject"], format!("{NS}/Deployment/web"));
    let container = &first.body["data"]["containers"][0];
    assert_eq!(
        container["resolved"]["ids"]["CRITICAL"],
        json!(["CVE-2019-18224"]),
        "{container}"
    );
    assert!(
        all.iter()
            .all(|r| r.key == first.key && r.body["data"] == first.body["data"]),
        "every attempt is the same notification under the same key"
    );

    // The hanging sink holds its delivery until its 2 s timeout, again and again; scans go on:
    // a new workload's image is scanned as fast as without sinks.
    eventually(wait, "the hanging sink reached", Some(&op), || async {
        (!hanging.received().is_empty()).then_some(())
    })
    .await;
    let other = digest_for("sinks-other");
    serve_log(&other, &fixture(DEBIAN_LOG));
    let started = Instant::now();
    apply(&client, Some(NS), deployment("api", &other)).await;
    eventually(
        Duration::from_secs(60),
        "the second workload's result",
        Some(&op),
        || async {
            list_cis(&client, NS)
                .await
                .into_iter()
                .find(|c| scanned(c) && c.spec.digest == other)
        },
    )
    .await;
    let scan_time = started.elapsed();
    let metrics = op.metrics().await;
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(
        metric("image_scanner_notifications_sent_total{sink=\"flaky\"}"),
        1.0
    );
    assert!(metric("image_scanner_notifications_failed_total{sink=\"flaky\"}") >= 2.0);
    assert_eq!(
        metric("image_scanner_notifications_sent_total{sink=\"hanging\"}"),
        0.0
    );
    assert_eq!(
        metric("image_scanner_notifications_queued{sink=\"hanging\"}"),
        1.0
    );
    // The flaky sink got the change exactly once after de-duplication by key.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let keys: std::collections::BTreeSet<String> =
        flaky.received().into_iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        flaky.received().len(),
        3,
        "no delivery after the accepted one"
    );
    eprintln!(
        "sinks e2e: the second workload was scanned in {:.1}s while the hanging sink held its delivery ({} attempts so far)",
        scan_time.as_secs_f64(),
        hanging.received().len()
    );
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the installed RBAC suffices");
    drop(op);
    namespaces.cleanup().await;
}
