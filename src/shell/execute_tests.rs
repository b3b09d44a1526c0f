//! Each command's wire form, against a mock API server: the method, path, query and body of
//! every request the executor sends, and what it makes of the answers (errors classified, not
//! lost).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use super::Executor;
use crate::core::port::{Action, ApiErrorKind, EventNote, EventRegarding, Outcome, OwnerRef};
use crate::crd::{ContainerImageScanSpec, ContainerImageScanStatus, Workload};

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Exchange {
    method: String,
    /// Path and query.
    uri: String,
    content_type: Option<String>,
    body: Value,
}

impl Exchange {
    fn query(&self) -> BTreeMap<String, String> {
        self.uri
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

type Responder = dyn Fn(&Exchange) -> (u16, String) + Send + Sync;

/// An executor whose client talks to `respond`, and the requests it received.
fn executor(
    respond: impl Fn(&Exchange) -> (u16, String) + Send + Sync + 'static,
) -> (Executor, Arc<Mutex<Vec<Exchange>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond: Arc<Responder> = Arc::new(respond);
    let log = seen.clone();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let log = log.clone();
        let respond = respond.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let exchange = Exchange {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, text) = respond(&exchange);
            log.lock().expect("log").push(exchange);
            let response = http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(text.into_bytes()))
                .expect("response");
            Ok::<_, Infallible>(response)
        }
    });
    let client = kube::Client::new(service, "default");
    (Executor::new(client, "scans", None), seen)
}

/// The server's answer to a create or apply: the object sent, with a UID and a version.
fn echo(exchange: &Exchange) -> (u16, String) {
    let mut object = exchange.body.clone();
    object["metadata"]["uid"] = json!("uid-1");
    object["metadata"]["resourceVersion"] = json!("7");
    (200, object.to_string())
}

fn status_error(code: u16, reason: &str, message: &str) -> (u16, String) {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    });
    (code, body.to_string())
}

fn success_status() -> (u16, String) {
    (
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}).to_string(),
    )
}

fn spec() -> ContainerImageScanSpec {
    ContainerImageScanSpec {
        digest: "sha256:abc".into(),
        name: "docker.io/library/nginx".into(),
        tag: Some("1.27".into()),
        min_severity: None,
        ignore_unfixed: Some(false),
        workload: Workload {
            api_version: Some("apps/v1".into()),
            group: "apps".into(),
            kind: "ReplicaSet".into(),
            name: "web-1".into(),
            uid: Some("rs-uid".into()),
            container_name: "app".into(),
        },
    }
}

fn one(seen: &Arc<Mutex<Vec<Exchange>>>) -> Exchange {
    let seen = seen.lock().expect("log");
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    seen[0].clone()
}

fn is_apply(exchange: &Exchange) {
    assert_eq!(exchange.method, "PATCH");
    assert_eq!(
        exchange.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let query = exchange.query();
    assert_eq!(query["fieldManager"], super::FIELD_MANAGER);
    assert_eq!(query["force"], "true");
}

const CIS_PATH: &str = "/apis/stas.statnett.no/v1alpha1/namespaces/team/containerimagescans";

#[tokio::test]
async fn apply_cis_is_one_server_side_apply_of_labels_owners_and_spec() {
    let (executor, seen) = executor(echo);
    let owner = OwnerRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "web-1-x".into(),
        uid: "pod-uid".into(),
    };
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let outcome = executor
        .execute(Action::ApplyCis {
            namespace: "team".into(),
            name: "replicaset-web-1-app-abc".into(),
            labels: Arc::new(labels),
            owners: vec![owner],
            spec: spec(),
        })
        .await;
    assert!(matches!(outcome, Outcome::CisApplied(_)), "{outcome:?}");
    let exchange = one(&seen);
    is_apply(&exchange);
    assert_eq!(
        exchange.path(),
        format!("{CIS_PATH}/replicaset-web-1-app-abc")
    );
    let body = &exchange.body;
    assert_eq!(body["kind"], "ContainerImageScan");
    assert_eq!(body["metadata"]["labels"]["app"], "web");
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-1-x", "uid": "pod-uid"}])
    );
    assert_eq!(body["spec"]["digest"], "sha256:abc");
    assert!(
        body["spec"].get("minSeverity").is_none(),
        "minSeverity is the user's"
    );
    assert!(body.get("status").is_none());
}

#[tokio::test]
async fn delete_cis_is_one_delete_with_a_uid_precondition() {
    let (executor, seen) = executor(|_| success_status());
    let outcome = executor
        .execute(Action::DeleteCis {
            namespace: "team".into(),
            name: "old".into(),
            uid: "cis-uid".into(),
        })
        .await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    let exchange = one(&seen);
    assert_eq!(exchange.method, "DELETE");
    assert_eq!(exchange.path(), format!("{CIS_PATH}/old"));
    assert_eq!(exchange.body["preconditions"]["uid"], "cis-uid");
}

fn status_write(keep_details: bool) -> Action {
    Action::ApplyCisStatus {
        namespace: "team".into(),
        name: "cis".into(),
        uid: "cis-uid".into(),
        resource_version: Some(41),
        status: Box::new(ContainerImageScanStatus {
            observed_generation: Some(2),
            last_scan_job_uid: Some("job-uid".into()),
            ..ContainerImageScanStatus::default()
        }),
        keep_details,
    }
}

#[tokio::test]
async fn a_status_write_is_one_apply_of_the_status_subresource_on_the_version_decided_on() {
    let (executor, seen) = executor(|exchange| {
        let mut object = exchange.body.clone();
        object["spec"] = serde_json::to_value(spec()).expect("spec");
        object["metadata"]["resourceVersion"] = json!("42");
        (200, object.to_string())
    });
    let outcome = executor.execute(status_write(false)).await;
    let Outcome::CisApplied(view) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(view.resource_version, Some(42));
    let exchange = one(&seen);
    is_apply(&exchange);
    assert_eq!(exchange.path(), format!("{CIS_PATH}/cis/status"));
    let metadata = &exchange.body["metadata"];
    assert_eq!(metadata["uid"], "cis-uid");
    assert_eq!(metadata["resourceVersion"], "41");
    assert_eq!(exchange.body["status"]["lastScanJobUID"], "job-uid");
    assert!(exchange.body.get("spec").is_none());
}

#[tokio::test]
async fn a_status_write_that_keeps_the_details_is_one_apply_under_a_manager_that_never_owns_them() {
    let (executor, seen) = executor(|exchange| {
        let mut object = exchange.body.clone();
        object["spec"] = serde_json::to_value(spec()).expect("spec");
        (200, object.to_string())
    });
    let Action::ApplyCisStatus {
        mut status,
        namespace,
        name,
        uid,
        resource_version,
        ..
    } = status_write(true)
    else {
        unreachable!()
    };
    // Whatever the core put there, details are not sent: the stored ones stay.
    status.vulnerabilities = Some(Vec::new());
    status.details_bytes = Some(7);
    let action = Action::ApplyCisStatus {
        namespace,
        name,
        uid,
        resource_version,
        status,
        keep_details: true,
    };
    let outcome = executor.execute(action).await;
    assert!(matches!(outcome, Outcome::CisApplied(_)), "{outcome:?}");
    let exchange = one(&seen);
    assert_eq!(exchange.method, "PATCH");
    assert_eq!(exchange.path(), format!("{CIS_PATH}/cis/status"));
    let query = exchange.query();
    assert_eq!(query["fieldManager"], super::KEEP_DETAILS_FIELD_MANAGER);
    assert_eq!(query["force"], "true");
    let status = &exchange.body["status"];
    assert!(status.get("vulnerabilities").is_none(), "{status}");
    assert!(status.get("vulnerabilitiesTruncated").is_none());
    assert!(status.get("detailsBytes").is_none(), "{status}");
    assert_eq!(status["lastScanJobUID"], "job-uid");
}

#[tokio::test]
async fn a_success_takes_every_field_back_and_clears_the_conditions() {
    let (executor, seen) = executor(|exchange| {
        let mut object = exchange.body.clone();
        object["spec"] = serde_json::to_value(spec()).expect("spec");
        (200, object.to_string())
    });
    executor.execute(status_write(false)).await;
    let exchange = one(&seen);
    assert_eq!(exchange.query()["fieldManager"], super::FIELD_MANAGER);
    assert_eq!(exchange.body["status"]["conditions"], json!([]));
}

fn job() -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nginx-abc", "namespace": "team",
            "annotations": {"image-scanner.statnett.no/image-digest": "sha256:abc"}},
        "spec": {"template": {"spec": {"containers": [{"name": "scan-image", "image": "x"}],
            "restartPolicy": "Never"}}},
    }))
    .expect("job")
}

#[tokio::test]
async fn create_job_posts_the_job_to_its_namespace() {
    let (executor, seen) = executor(echo);
    let outcome = executor
        .execute(Action::CreateJob {
            job: Box::new(job()),
        })
        .await;
    let Outcome::JobCreated(view) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        (view.namespace.as_str(), view.uid.as_str()),
        ("team", "uid-1")
    );
    let exchange = one(&seen);
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.path(), "/apis/batch/v1/namespaces/team/jobs");
    assert_eq!(exchange.body["metadata"]["name"], "nginx-abc");
}

#[tokio::test]
async fn a_job_without_a_namespace_goes_to_the_scan_namespace() {
    let (executor, seen) = executor(echo);
    let mut job = job();
    job.metadata.namespace = None;
    executor
        .execute(Action::CreateJob { job: Box::new(job) })
        .await;
    assert_eq!(one(&seen).path(), "/apis/batch/v1/namespaces/scans/jobs");
}

#[tokio::test]
async fn delete_job_deletes_its_pods_in_the_background_only_if_the_uid_matches() {
    let (executor, seen) = executor(|_| success_status());
    let outcome = executor
        .execute(Action::DeleteJob {
            namespace: "scans".into(),
            name: "nginx-abc".into(),
            uid: "job-uid".into(),
        })
        .await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    let exchange = one(&seen);
    assert_eq!(exchange.method, "DELETE");
    assert_eq!(
        exchange.path(),
        "/apis/batch/v1/namespaces/scans/jobs/nginx-abc"
    );
    assert_eq!(exchange.body["propagationPolicy"], "Background");
    assert_eq!(exchange.body["preconditions"]["uid"], "job-uid");
}

fn fetch_log(limit_bytes: usize) -> Action {
    Action::FetchLog {
        namespace: "scans".into(),
        pod_name: "nginx-abc-x".into(),
        container: "scan-image".into(),
        limit_bytes,
        previous: true,
    }
}

#[tokio::test]
async fn a_log_is_read_with_one_byte_more_than_the_limit_to_tell_a_larger_one() {
    let (executor, seen) = executor(|_| (200, "0123456789".to_string()));
    let outcome = executor.execute(fetch_log(10)).await;
    assert!(
        matches!(&outcome, Outcome::Log(bytes) if bytes == b"0123456789"),
        "{outcome:?}"
    );
    let exchange = one(&seen);
    assert_eq!(exchange.method, "GET");
    assert_eq!(
        exchange.path(),
        "/api/v1/namespaces/scans/pods/nginx-abc-x/log"
    );
    let query = exchange.query();
    assert_eq!(query["container"], "scan-image");
    assert_eq!(query["limitBytes"], "11");
    assert_eq!(query["previous"], "true");
    let outcome = executor.execute(fetch_log(9)).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.kind == ApiErrorKind::LogTooLarge),
        "{outcome:?}"
    );
}

/// An executor whose client gets `response` (headers, then the body's frames) for a log
/// request, or no answer at all when it is `None`.
fn log_server(response: Option<(&'static [u8], bool)>) -> Executor {
    use futures::StreamExt;
    let service = tower::service_fn(move |_: http::Request<kube::client::Body>| async move {
        let Some((first, then_hang)) = response else {
            // A kubelet that took the request and never answers.
            return futures::future::pending().await;
        };
        let data = futures::stream::once(async move {
            Ok::<_, Infallible>(http_body::Frame::data(bytes::Bytes::from_static(first)))
        });
        let rest = if then_hang {
            futures::stream::pending().boxed()
        } else {
            futures::stream::empty().boxed()
        };
        let body = http_body_util::StreamBody::new(data.chain(rest));
        Ok::<_, Infallible>(http::Response::new(body))
    });
    Executor::new(kube::Client::new(service, "default"), "scans", None)
}

#[tokio::test(start_paused = true)]
async fn a_log_read_gives_up_after_30_s_without_a_byte_long_before_the_2_minutes_of_a_read() {
    for response in [None, Some((&b"{\"Results\""[..], true))] {
        let started = tokio::time::Instant::now();
        let outcome = log_server(response).execute(fetch_log(100)).await;
        assert!(
            matches!(&outcome, Outcome::Failed(e) if e.kind == ApiErrorKind::Unknown
                && e.message.contains("sent nothing for 30s")),
            "{response:?}: {outcome:?}"
        );
        assert_eq!(started.elapsed().as_secs(), 30, "{response:?}");
    }
    // A log that keeps coming is read to its end.
    let outcome = log_server(Some((b"{}", false)))
        .execute(fetch_log(100))
        .await;
    assert!(
        matches!(&outcome, Outcome::Log(b) if b == b"{}"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_report_is_one_server_side_apply_in_the_openreports_group() {
    let (executor, seen) = executor(echo);
    let report = json!({"apiVersion": "openreports.io/v1alpha1", "kind": "Report",
        "metadata": {"name": "cis", "namespace": "team"}, "results": []});
    let outcome = executor
        .execute(Action::ApplyReport {
            namespace: "team".into(),
            name: "cis".into(),
            report: Box::new(report.clone()),
        })
        .await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    let exchange = one(&seen);
    is_apply(&exchange);
    assert_eq!(
        exchange.path(),
        "/apis/openreports.io/v1alpha1/namespaces/team/reports/cis"
    );
    assert_eq!(exchange.body, report);
}

#[tokio::test]
async fn an_event_is_posted_regarding_the_cis() {
    let (executor, seen) = executor(echo);
    let outcome = executor
        .execute(Action::RecordEvent {
            regarding: EventRegarding::Cis,
            namespace: "team".into(),
            name: "cis".into(),
            uid: "cis-uid".into(),
            event: EventNote {
                warning: true,
                reason: "ScanFailed".into(),
                note: "trivy said no".into(),
            },
        })
        .await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    let exchange = one(&seen);
    assert_eq!(exchange.method, "POST");
    assert_eq!(
        exchange.path(),
        "/apis/events.k8s.io/v1/namespaces/team/events"
    );
    let body = &exchange.body;
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "ScanFailed");
    assert_eq!(body["note"], "trivy said no");
    assert_eq!(body["regarding"]["kind"], "ContainerImageScan");
    assert_eq!(body["regarding"]["uid"], "cis-uid");
}

#[tokio::test]
async fn api_errors_come_back_classified() {
    let cases = [
        (
            status_error(409, "Conflict", "the object has been modified"),
            ApiErrorKind::Conflict,
        ),
        (
            status_error(409, "AlreadyExists", "exists"),
            ApiErrorKind::AlreadyExists,
        ),
        (status_error(410, "Expired", "too old"), ApiErrorKind::Gone),
        (
            status_error(413, "RequestEntityTooLarge", "too large"),
            ApiErrorKind::TooLarge,
        ),
        (
            status_error(429, "TooManyRequests", "slow down"),
            ApiErrorKind::Throttled,
        ),
        (
            status_error(500, "InternalError", "etcdserver: request is too large"),
            ApiErrorKind::TooLarge,
        ),
        (
            status_error(503, "ServiceUnavailable", "later"),
            ApiErrorKind::ServerError,
        ),
        (
            status_error(403, "Forbidden", "no"),
            ApiErrorKind::Forbidden,
        ),
        (
            (502, "<html>bad gateway</html>".to_string()),
            ApiErrorKind::ServerError,
        ),
    ];
    for ((code, body), kind) in cases {
        let (executor, _) = executor(move |_| (code, body.clone()));
        let outcome = executor
            .execute(Action::CreateJob {
                job: Box::new(job()),
            })
            .await;
        assert!(
            matches!(&outcome, Outcome::Failed(e) if e.kind == kind),
            "{code}: {outcome:?}"
        );
    }
}
