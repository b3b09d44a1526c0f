//! Executes the core's commands against the API server. Every request is bounded in time, and
//! every failure comes back to the core as a classified [`Outcome::Failed`], never as a panic or
//! a silent drop.

use std::time::Duration;

use futures::AsyncReadExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{
    DeleteParams, LogParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use super::convert;
use super::errors::classify;
use super::lean::WatchedCis;
use super::sinks::Sinks;
use crate::core::exception::ExceptionKey;
use crate::core::port::{Action, ApiError, ApiErrorKind, EventRegarding, Outcome};
use crate::core::time::Timestamp;
use crate::crd::exception::{
    ClusterVulnerabilityException, VulnerabilityException, VulnerabilityExceptionStatus,
};
use crate::crd::{ContainerImageScan, ContainerImageScanStatus};

/// Field manager of every write but the status writes that keep the stored details.
pub const FIELD_MANAGER: &str = "image-scanner-operator";
/// Field manager of the status writes that keep the stored details (failures, announcements):
/// it never sends `vulnerabilities`, `vulnerabilitiesTruncated` or `detailsBytes`, so it never owns them, and
/// server-side apply leaves them to [`FIELD_MANAGER`], which wrote them with the last success.
/// One request, no read: the core holds no details to send along. A success, applied by
/// [`FIELD_MANAGER`], sends every field this manager ever sends (`conditions` too, empty), so
/// taking them back leaves nothing of an earlier failure behind.
pub const KEEP_DETAILS_FIELD_MANAGER: &str = "image-scanner-operator-keep-details";
/// Time limit of one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of reading one scan log.
const LOG_TIMEOUT: Duration = Duration::from_secs(120);
/// Time a scan log may go without a byte (its headers or body) before the read is given up:
/// a hung kubelet would otherwise hold one of the few log reads at once for all of
/// [`LOG_TIMEOUT`], and the results of every other node wait behind it. The container has
/// finished, so its kubelet sends the whole log at once.
const LOG_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a scan log at a time.
const LOG_CHUNK: usize = 64 * 1024;

/// Executes commands with one client.
#[derive(Clone)]
pub struct Executor {
    client: Client,
    scan_namespace: String,
    recorder: Recorder,
    sinks: Sinks,
}

fn failed(kind: ApiErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(ApiError {
        kind,
        message: message.into(),
    })
}

impl Executor {
    /// An executor writing Jobs into `scan_namespace`.
    pub fn new(client: Client, scan_namespace: &str, instance: Option<String>) -> Executor {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Executor {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            scan_namespace: scan_namespace.to_string(),
            sinks: Sinks::default(),
        }
    }

    /// The name of sink `index`, for logs.
    pub fn sink_name(&self, index: usize) -> &str {
        self.sinks.name(index)
    }

    /// The same, delivering `Action::Deliver` to `sinks`.
    pub fn with_sinks(self, sinks: Sinks) -> Executor {
        Executor { sinks, ..self }
    }

    /// Runs one action to completion.
    pub async fn execute(&self, action: Action) -> Outcome {
        // Not an API request: bounded by the sink's own timeout.
        if let Action::Deliver {
            sink,
            key,
            content_type,
            body,
        } = action
        {
            return self.sinks.deliver(sink, &key, content_type, body).await;
        }
        let timeout = match action {
            Action::FetchLog { .. } => LOG_TIMEOUT,
            _ => REQUEST_TIMEOUT,
        };
        match tokio::time::timeout(timeout, self.run(action)).await {
            Ok(outcome) => outcome,
            Err(_) => failed(
                ApiErrorKind::Unknown,
                format!("no answer within {}s", timeout.as_secs()),
            ),
        }
    }

    async fn run(&self, action: Action) -> Outcome {
        match action {
            Action::ApplyCis {
                namespace,
                name,
                labels,
                owners,
                spec,
            } => {
                let api: Api<WatchedCis> = Api::namespaced(self.client.clone(), &namespace);
                let owners: Vec<_> = owners
                    .iter()
                    .map(|o| json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}))
                    .collect();
                let body = json!({
                    "apiVersion": "stas.statnett.no/v1alpha1",
                    "kind": "ContainerImageScan",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": *labels,
                        "ownerReferences": owners,
                    },
                    "spec": spec,
                });
                let pp = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&name, &pp, &Patch::Apply(&body)).await {
                    Ok(cis) => applied(&cis.0),
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::DeleteCis {
                namespace,
                name,
                uid,
            } => {
                let api: Api<ContainerImageScan> = Api::namespaced(self.client.clone(), &namespace);
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&name, &dp).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::ApplyCisStatus {
                namespace,
                name,
                uid,
                resource_version,
                mut status,
                keep_details,
            } => {
                let api: Api<WatchedCis> = Api::namespaced(self.client.clone(), &namespace);
                let manager = if keep_details {
                    crate::core::cis_status::keep_details_fields(&mut status);
                    KEEP_DETAILS_FIELD_MANAGER
                } else {
                    // "A successful scan removes all conditions": also those the other
                    // manager owns.
                    status.conditions.get_or_insert_with(Vec::new);
                    FIELD_MANAGER
                };
                // metadata.uid makes the write a precondition on the object we decided about:
                // a CIS deleted and re-created under the same name answers 409.
                let mut metadata = json!({"name": name, "namespace": namespace, "uid": uid});
                if let Some(rv) = resource_version {
                    metadata["resourceVersion"] = json!(rv.to_string());
                }
                // Encoded once, then the status is dropped: only the bytes wait for the answer.
                let body = serde_json::value::to_raw_value(&StatusApply {
                    api_version: "stas.statnett.no/v1alpha1",
                    kind: "ContainerImageScan",
                    metadata,
                    status: &status,
                });
                drop(status);
                let body = match body {
                    Ok(body) => body,
                    Err(e) => {
                        return failed(
                            ApiErrorKind::Invalid,
                            format!("encoding the status failed: {e}"),
                        );
                    }
                };
                let pp = PatchParams::apply(manager).force();
                match api.patch_status(&name, &pp, &Patch::Apply(&body)).await {
                    Ok(cis) => applied(&cis.0),
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::CreateJob { job } => {
                let namespace = job
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| self.scan_namespace.clone());
                let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
                match api.create(&PostParams::default(), &job).await {
                    Ok(created) => match convert::job_view(&created, now()) {
                        Some(view) => Outcome::JobCreated(Box::new(view)),
                        None => failed(ApiErrorKind::Invalid, "created Job has no name or UID"),
                    },
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::DeleteJob {
                namespace,
                name,
                uid,
            } => {
                let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&name, &dp).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::FetchLog {
                namespace,
                pod_name,
                container,
                limit_bytes,
                previous,
            } => {
                self.fetch_log(&namespace, &pod_name, &container, limit_bytes, previous)
                    .await
            }
            Action::ApplyReport {
                namespace,
                name,
                report,
            } => {
                let resource = kube::api::ApiResource {
                    group: "openreports.io".into(),
                    version: "v1alpha1".into(),
                    api_version: crate::core::openreports::API_VERSION.into(),
                    kind: crate::core::openreports::KIND.into(),
                    plural: "reports".into(),
                };
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &namespace, &resource);
                let pp = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&name, &pp, &Patch::Apply(&*report)).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            Action::ApplyExceptionStatus { key, uid, status } => {
                self.apply_exception_status(key, uid, &status).await
            }
            Action::RecordEvent {
                regarding,
                namespace,
                name,
                uid,
                event,
            } => {
                let (api_version, kind) = match &regarding {
                    EventRegarding::Workload { api_version, kind } => {
                        (api_version.as_str(), kind.as_str())
                    }
                    EventRegarding::Cis => ("stas.statnett.no/v1alpha1", "ContainerImageScan"),
                    EventRegarding::Pod => ("v1", "Pod"),
                    EventRegarding::VulnerabilityException => {
                        ("stas.statnett.no/v1alpha1", "VulnerabilityException")
                    }
                    EventRegarding::ClusterVulnerabilityException => {
                        ("stas.statnett.no/v1alpha1", "ClusterVulnerabilityException")
                    }
                };
                let reference = ObjectReference {
                    api_version: Some(api_version.to_string()),
                    kind: Some(kind.to_string()),
                    name: Some(name),
                    // A cluster-scoped object's Events go to `default` (the Recorder's choice).
                    namespace: (!namespace.is_empty()).then_some(namespace),
                    uid: Some(uid),
                    ..ObjectReference::default()
                };
                let ev = Event {
                    type_: if event.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason,
                    note: Some(event.note),
                    action: "Scan".to_string(),
                    secondary: None,
                };
                match self.recorder.publish(&ev, &reference).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(classify(&e)),
                }
            }
            // Taken by `execute` before the API timeout.
            Action::Deliver {
                sink,
                key,
                content_type,
                body,
            } => self.sinks.deliver(sink, &key, content_type, body).await,
        }
    }

    /// Server-side apply of an exception's status, on the object of this UID only.
    async fn apply_exception_status(
        &self,
        key: ExceptionKey,
        uid: String,
        status: &VulnerabilityExceptionStatus,
    ) -> Outcome {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let mut body = json!({
            "apiVersion": "stas.statnett.no/v1alpha1",
            "metadata": {"uid": uid},
            "status": status,
        });
        let result = match &key {
            ExceptionKey::Namespaced { namespace, name } => {
                body["kind"] = json!("VulnerabilityException");
                body["metadata"]["name"] = json!(name);
                body["metadata"]["namespace"] = json!(namespace);
                let api: Api<VulnerabilityException> =
                    Api::namespaced(self.client.clone(), namespace);
                api.patch_status(name, &pp, &Patch::Apply(&body))
                    .await
                    .map(drop)
            }
            ExceptionKey::Cluster { name } => {
                body["kind"] = json!("ClusterVulnerabilityException");
                body["metadata"]["name"] = json!(name);
                let api: Api<ClusterVulnerabilityException> = Api::all(self.client.clone());
                api.patch_status(name, &pp, &Patch::Apply(&body))
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(classify(&e)),
        }
    }

    /// Reads at most `limit` bytes; one byte more than that means the log is too large.
    async fn fetch_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        limit: usize,
        previous: bool,
    ) -> Outcome {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            limit_bytes: Some(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)),
            previous,
            ..LogParams::default()
        };
        let silent = || {
            failed(
                ApiErrorKind::Unknown,
                format!(
                    "the log of {pod}/{container} sent nothing for {}s",
                    LOG_IDLE_TIMEOUT.as_secs()
                ),
            )
        };
        let stream =
            match tokio::time::timeout(LOG_IDLE_TIMEOUT, api.log_stream(pod, &params)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Outcome::Failed(classify(&e)),
                Err(_) => return silent(),
            };
        let mut bytes = Vec::new();
        let mut limited = stream.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1));
        let mut chunk = vec![0; LOG_CHUNK];
        loop {
            match tokio::time::timeout(LOG_IDLE_TIMEOUT, limited.read(&mut chunk)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    return failed(
                        ApiErrorKind::Unknown,
                        format!("reading the log failed: {e}"),
                    );
                }
                Err(_) => return silent(),
            }
        }
        if bytes.len() > limit {
            return failed(
                ApiErrorKind::LogTooLarge,
                format!("log of {pod}/{container} exceeds {limit} bytes"),
            );
        }
        Outcome::Log(bytes)
    }
}

/// A status apply's body, encoded straight from the status: a `json!` tree of it would first
/// copy every detail into a `Value` (several times their compact size, for each write in flight).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Value,
    status: &'a ContainerImageScanStatus,
}

fn applied(cis: &ContainerImageScan) -> Outcome {
    match convert::cis_view(cis) {
        Some(view) => Outcome::CisApplied(Box::new(view)),
        None => failed(
            ApiErrorKind::Invalid,
            "applied CIS has no name, namespace or UID",
        ),
    }
}

/// The wall clock, the only place the shell turns real time into the core's [`Timestamp`].
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
