//! Watches: one kube-runtime watcher per stream, each event converted to a compact view at once
//! and sent to the engine task. Watch errors are logged and retried with kube-runtime's default
//! back-off (they are never fatal: a 410 just restarts the list).

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Pod};
use kube::api::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::convert;
use super::execute::now;
use super::lean::{WatchedCis, WatchedPod, WatchedWorkload};
use super::sync_gate::SyncGate;
use crate::core::convert as core_convert;
use crate::core::exception::VEX_CONFIG_MAP_LABEL;
use crate::core::port::{Observation, StreamId, WatchEvent};
use crate::core::scan_job::TRIVY_JOB_CONFIG_MAP;
use crate::core::workload::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::crd::exception::{ClusterVulnerabilityException, VulnerabilityException};

/// A workload kind resolved through discovery.
#[derive(Clone, Debug)]
pub struct WorkloadKind {
    /// Discovery data for the metadata watch.
    pub resource: ApiResource,
}

/// What to watch.
pub struct WatchPlan {
    /// Namespaces to watch (`None`: all).
    pub namespaces: Option<Vec<String>>,
    /// The scan namespace.
    pub scan_namespace: String,
    /// Workload kinds.
    pub kinds: Vec<WorkloadKind>,
    /// Whether the vulnerability exception CRDs are served (watched only then).
    pub exceptions: bool,
}

impl WatchPlan {
    /// Number of streams that gate readiness.
    pub fn gated_streams(&self) -> usize {
        let scopes = self.namespaces.as_ref().map_or(1, Vec::len);
        // pods + cis + workloads (+ exceptions) per scope, jobs and scan pods (+ VEX
        // ConfigMaps) per Job scope, trivy-job-config, node platforms (+ cluster-wide
        // exceptions).
        let exceptions = usize::from(self.exceptions);
        scopes * (2 + self.kinds.len() + exceptions)
            + (2 + exceptions) * self.job_scopes().len()
            + 2
            + exceptions
    }

    /// Where our Jobs may be: everywhere, or the watched namespaces and the scan namespace.
    pub fn job_scopes(&self) -> Vec<Option<String>> {
        match &self.namespaces {
            None => vec![None],
            Some(list) => {
                let mut scopes: Vec<String> = list.clone();
                scopes.push(self.scan_namespace.clone());
                scopes.sort();
                scopes.dedup();
                scopes.into_iter().map(Some).collect()
            }
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts every watch; returns when `cancel` fires.
pub async fn run_watches(
    client: Client,
    plan: WatchPlan,
    gate: SyncGate,
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_stream = 0u32;
    let mut stream_id = || {
        next_stream += 1;
        StreamId(next_stream)
    };
    let scopes: Vec<Option<String>> = match &plan.namespaces {
        Some(list) => list.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let not_ours = format!("{MANAGED_BY_LABEL}!={MANAGED_BY_VALUE}");
    let ours = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let vex_label = format!("{VEX_CONFIG_MAP_LABEL}=true");
    for scope in &scopes {
        let ns = scope.as_deref();
        // Workload pods, decoded lean (`lean`): ours (scan pods) are left out by the server.
        let pods: Api<WatchedPod> = scoped(&client, ns);
        let cfg = watcher::Config::default().labels(&not_ours).page_size(250);
        let id = stream_id();
        tasks.spawn(forward(
            watcher::watcher(pods, cfg).default_backoff().boxed(),
            id,
            gate.clone(),
            tx.clone(),
            move |event| {
                map_event(event, |pod: &WatchedPod| convert::pod_view(&pod.0))
                    .map(|event| Observation::Pod { stream: id, event })
            },
        ));
        // CIS, decoded without their details (`lean`); small pages all the same, because a
        // page's raw text holds every status whole.
        let cis: Api<WatchedCis> = scoped(&client, ns);
        let cfg = watcher::Config::default().page_size(50);
        let id = stream_id();
        tasks.spawn(forward(
            watcher::watcher(cis, cfg).default_backoff().boxed(),
            id,
            gate.clone(),
            tx.clone(),
            move |event| {
                map_event(event, |cis: &WatchedCis| convert::cis_view(&cis.0))
                    .map(|event| Observation::Cis { stream: id, event })
            },
        ));
        if plan.exceptions {
            // Few and small: decoded whole.
            let exceptions: Api<VulnerabilityException> = scoped(&client, ns);
            let id = stream_id();
            tasks.spawn(forward(
                watcher::watcher(exceptions, watcher::Config::default())
                    .default_backoff()
                    .boxed(),
                id,
                gate.clone(),
                tx.clone(),
                move |event| {
                    map_event(event, core_convert::exception_view)
                        .map(|event| Observation::Exception { stream: id, event })
                },
            ));
        }
        for kind in &plan.kinds {
            let ar = kind.resource.clone();
            let api: Api<WatchedWorkload> = match ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let id = stream_id();
            let (group, version, kind_name) =
                (ar.group.clone(), ar.api_version.clone(), ar.kind.clone());
            tasks.spawn(forward(
                watcher::watcher(api, watcher::Config::default().page_size(500))
                    .default_backoff()
                    .boxed(),
                id,
                gate.clone(),
                tx.clone(),
                move |event| {
                    map_event(event, |o: &WatchedWorkload| {
                        convert::workload_view(&o.metadata, &group, &version, &kind_name)
                    })
                    .map(|event| Observation::Workload { stream: id, event })
                },
            ));
        }
    }
    // Our Jobs and their pods, in the scan namespace and in the workload namespaces
    // (core::engine::placement).
    for scope in plan.job_scopes() {
        let ns = scope.as_deref();
        let jobs: Api<Job> = scoped(&client, ns);
        let id = stream_id();
        tasks.spawn(forward(
            watcher::watcher(jobs, watcher::Config::default().labels(&ours))
                .default_backoff()
                .boxed(),
            id,
            gate.clone(),
            tx.clone(),
            move |event| {
                map_event(event, |j| convert::job_view(j, now()))
                    .map(|event| Observation::Job { stream: id, event })
            },
        ));
        let scan_pods: Api<Pod> = scoped(&client, ns);
        let id = stream_id();
        tasks.spawn(forward(
            watcher::watcher(scan_pods, watcher::Config::default().labels(&ours))
                .default_backoff()
                .boxed(),
            id,
            gate.clone(),
            tx.clone(),
            move |event| {
                map_event(event, convert::scan_pod_view)
                    .map(|event| Observation::ScanPod { stream: id, event })
            },
        ));
        if plan.exceptions {
            // ConfigMaps holding VEX documents, by their label only (never every ConfigMap),
            // where exceptions may read them: the watched namespaces and the operator's own.
            let maps: Api<ConfigMap> = scoped(&client, ns);
            let id = stream_id();
            tasks.spawn(forward(
                watcher::watcher(maps, watcher::Config::default().labels(&vex_label))
                    .default_backoff()
                    .boxed(),
                id,
                gate.clone(),
                tx.clone(),
                move |event| {
                    map_event(event, core_convert::vex_map_view)
                        .map(|event| Observation::VexMap { stream: id, event })
                },
            ));
        }
        // BackOff Events of pods and FailedCreate Events of Jobs: only triggers and
        // explanations (the objects' status is the truth), so not gated.
        let pod_backoff = watch_events(
            scoped(&client, ns),
            "reason=BackOff,involvedObject.kind=Pod",
            tx.clone(),
            |e| {
                Some(Observation::BackOffEvent {
                    namespace: e.involved_object.namespace.clone()?,
                    pod_name: e.involved_object.name.clone()?,
                })
            },
        );
        tasks.spawn(pod_backoff);
        let job_failed_create = watch_events(
            scoped(&client, ns),
            "reason=FailedCreate,involvedObject.kind=Job",
            tx.clone(),
            |e| {
                let message = e.message.clone().unwrap_or_default();
                // The Job controller tries again by itself when it could not reach the API
                // server: no rejection to tell.
                if !crate::core::convert::pod_create_refused(&message) {
                    return None;
                }
                Some(Observation::JobPodRejected {
                    namespace: e.involved_object.namespace.clone()?,
                    job_name: e.involved_object.name.clone()?,
                    job_uid: e.involved_object.uid.clone()?,
                    message,
                })
            },
        );
        tasks.spawn(job_failed_create);
    }
    if plan.exceptions {
        let exceptions: Api<ClusterVulnerabilityException> = Api::all(client.clone());
        let id = stream_id();
        tasks.spawn(forward(
            watcher::watcher(exceptions, watcher::Config::default())
                .default_backoff()
                .boxed(),
            id,
            gate.clone(),
            tx.clone(),
            move |event| {
                map_event(event, core_convert::cluster_exception_view)
                    .map(|event| Observation::Exception { stream: id, event })
            },
        ));
    }
    tasks.spawn(watch_job_config(
        scoped(&client, Some(&plan.scan_namespace)),
        gate.clone(),
        tx.clone(),
    ));
    tasks.spawn(super::nodes::watch_node_platforms(
        client.clone(),
        gate.clone(),
        tx.clone(),
    ));
    cancel.cancelled().await;
    tasks.abort_all();
}

/// Watches the scan namespace's `trivy-job-config` (by name: RBAC grants that one ConfigMap),
/// whose data Jobs in workload namespaces get as a copy. Gated: until it is known, Jobs would
/// go to the scan namespace only.
async fn watch_job_config(
    config_maps: Api<ConfigMap>,
    gate: SyncGate,
    tx: mpsc::Sender<Observation>,
) {
    let fields = format!("metadata.name={TRIVY_JOB_CONFIG_MAP}");
    let cfg = watcher::Config::default().fields(&fields);
    let mut stream = watcher::watcher(config_maps, cfg).default_backoff().boxed();
    let data = |cm: ConfigMap| Some(cm.data.unwrap_or_default());
    // What the current (re)list found: the ConfigMap, or nothing when it does not exist.
    let mut listed = None;
    let mut synced = false;
    while let Some(item) = stream.next().await {
        let observed = match item {
            Ok(Event::Init) => {
                listed = None;
                continue;
            }
            Ok(Event::InitApply(cm)) => {
                listed = data(cm);
                continue;
            }
            Ok(Event::InitDone) => listed.take(),
            Ok(Event::Apply(cm)) => data(cm),
            Ok(Event::Delete(_)) => None,
            Err(e) => {
                tracing::warn!(error = %e, "watch of ConfigMap {TRIVY_JOB_CONFIG_MAP} failed; retrying");
                continue;
            }
        };
        if observed.is_none() {
            tracing::warn!(
                "ConfigMap {TRIVY_JOB_CONFIG_MAP} is missing in the scan namespace: scan Jobs \
                 run there only, and fail until it exists"
            );
        }
        if tx
            .send(Observation::TrivyJobConfig { data: observed })
            .await
            .is_err()
        {
            return;
        }
        if !synced {
            synced = true;
            gate.done_one(&tx).await;
        }
    }
}

/// Watches core/v1 Events matching `fields`, turning each (re)delivered one into an
/// observation.
async fn watch_events(
    events: Api<CoreEvent>,
    fields: &'static str,
    tx: mpsc::Sender<Observation>,
    to_observation: impl Fn(&CoreEvent) -> Option<Observation>,
) {
    let cfg = watcher::Config::default().fields(fields);
    let mut stream = watcher::watcher(events, cfg).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(e) | Event::InitApply(e)) => {
                if let Some(observation) = to_observation(&e)
                    && tx.send(observation).await.is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, fields, "watch of Events failed; retrying"),
        }
    }
}

/// Converts one watcher event; objects that cannot be converted are skipped with a log line.
fn map_event<K, V>(event: Event<K>, convert: impl Fn(&K) -> Option<V>) -> Option<WatchEvent<V>>
where
    K: kube::ResourceExt,
{
    let one = |obj: &K| {
        let view = convert(obj);
        if view.is_none() {
            tracing::warn!(object = %obj.name_any(), "skipping an object without name, namespace or UID");
        }
        view
    };
    Some(match event {
        Event::Init => WatchEvent::InitStarted,
        Event::InitDone => WatchEvent::InitDone,
        Event::InitApply(o) => WatchEvent::InitApply(one(&o)?),
        Event::Apply(o) => WatchEvent::Apply(one(&o)?),
        Event::Delete(o) => WatchEvent::Delete(one(&o)?),
    })
}

async fn forward<K, S>(
    mut stream: S,
    stream_id: StreamId,
    gate: SyncGate,
    tx: mpsc::Sender<Observation>,
    to_observation: impl Fn(Event<K>) -> Option<Observation>,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    let mut synced = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let done = matches!(event, Event::InitDone);
                if let Some(obs) = to_observation(event)
                    && tx.send(obs).await.is_err()
                {
                    return;
                }
                if done && !synced {
                    synced = true;
                    gate.done_one(&tx).await;
                }
            }
            Err(e) => {
                tracing::warn!(stream = stream_id.0, error = %e, "watch failed; retrying with back-off");
            }
        }
    }
}
