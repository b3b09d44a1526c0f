//! An API server in memory that executes the engine's commands with the semantics the
//! Kubernetes API server has for the objects the engine writes, and reports every change as the
//! watch event a real watch would deliver. The scenario tests and the state-machine property
//! test of the engine share it, so no test can pass against a server that behaves differently
//! (a status write that keeps the stored details, an apply that changes nothing, a UID or
//! resourceVersion precondition).
//!
//! What it models: server-side apply of CIS metadata/spec and status (the semantics in
//! [`super::apply`], shared with the simulator; an apply that changes nothing changes no
//! resourceVersion and sends no event), UID and resourceVersion preconditions, Job creation
//! (name taken → already exists; the view is what the shell's conversion makes of the created
//! Job), Job deletion with its pods, Reports owned by their CIS, Events, log reads capped at
//! the asked bytes, vulnerability exceptions and their status writes (UID precondition), and
//! the garbage collector deleting CIS whose owner pods are all gone.
//! Failures are injected per verb ([`FakeApi::answer_next`]); verbs a test wants to answer
//! itself are held ([`FakeApi::hold`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;

use super::apply::{
    ApplyTarget, CIS_RESOURCE, JOB_RESOURCE, apply_metadata_and_spec, created_by_apply,
    delete_precondition, status_after_apply, status_precondition,
};
use crate::convert::job_view;
use crate::crd::ContainerImageScanStatus;
use crate::engine::Engine;
use crate::exception::ExceptionKey;
use crate::port::{
    Action, ApiError, ApiErrorKind, CisStatusView, CisView, Command, EventNote, EventRegarding,
    ExceptionView, JobFinish, JobView, Observation, Outcome, PodView, ScanPodView, StreamId,
    VexMapView, WatchEvent,
};
use crate::time::Timestamp;

/// (namespace, name).
pub type Key = (String, String);

pub const POD_STREAM: StreamId = StreamId(1);
pub const CIS_STREAM: StreamId = StreamId(2);
pub const JOB_STREAM: StreamId = StreamId(10);
pub const SCAN_POD_STREAM: StreamId = StreamId(11);
pub const EXCEPTION_STREAM: StreamId = StreamId(40);
/// The stream VEX ConfigMap events arrive on.
pub const VEX_MAP_STREAM: StreamId = StreamId(41);

/// Rounds of `poll` after which [`FakeApi::run`] calls the engine's work a hot loop.
const MAX_ROUNDS: usize = 500;

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

/// A failed answer of kind `kind`.
pub fn failure(kind: ApiErrorKind) -> Outcome {
    Outcome::Failed(ApiError {
        kind,
        message: format!("{kind:?} (test API server)"),
    })
}

/// A CIS as stored: the view the watch shows and the status with its details.
#[derive(Clone, Debug)]
pub struct StoredCis {
    pub view: CisView,
    pub status: ContainerImageScanStatus,
    /// Label keys the operator's field manager set last: an apply without one removes it.
    our_labels: BTreeSet<String>,
}

/// An Event the engine recorded.
#[derive(Clone, Debug)]
pub struct RecordedEvent {
    pub regarding: EventRegarding,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub note: EventNote,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FakeApi {
    /// The cluster's clock; tests move it.
    pub now: Timestamp,
    rv: u64,
    uids: u64,
    pub pods: BTreeMap<Key, PodView>,
    pub cis: BTreeMap<Key, StoredCis>,
    pub jobs: BTreeMap<Key, JobView>,
    pub scan_pods: BTreeMap<Key, ScanPodView>,
    /// OpenReports Reports, as applied.
    pub reports: BTreeMap<Key, serde_json::Value>,
    /// The log of each scan pod's scan container; a pod without one has an empty log.
    pub logs: BTreeMap<Key, Vec<u8>>,
    pub events: Vec<RecordedEvent>,
    /// Deliveries answered `Done`: sink, idempotency key, payload.
    pub deliveries: Vec<(usize, String, Vec<u8>)>,
    /// Vulnerability exceptions (both kinds), status included.
    pub exceptions: BTreeMap<ExceptionKey, ExceptionView>,
    /// ConfigMaps labelled for VEX documents, by namespace and name.
    pub vex_maps: BTreeMap<(String, String), VexMapView>,
    /// Every request received, in order, answered or not.
    pub requests: Vec<Action>,
    /// Every Job created, as stored.
    pub created_jobs: Vec<Job>,
    /// Requests that succeeded, by verb.
    pub succeeded: BTreeMap<&'static str, u64>,
    answers: BTreeMap<&'static str, VecDeque<Outcome>>,
    held: BTreeSet<&'static str>,
    watch: VecDeque<Observation>,
}

impl FakeApi {
    pub fn new(now: Timestamp) -> FakeApi {
        FakeApi {
            now,
            rv: 100,
            uids: 0,
            pods: BTreeMap::new(),
            cis: BTreeMap::new(),
            jobs: BTreeMap::new(),
            scan_pods: BTreeMap::new(),
            reports: BTreeMap::new(),
            logs: BTreeMap::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
            exceptions: BTreeMap::new(),
            vex_maps: BTreeMap::new(),
            requests: Vec::new(),
            created_jobs: Vec::new(),
            succeeded: BTreeMap::new(),
            answers: BTreeMap::new(),
            held: BTreeSet::new(),
            watch: VecDeque::new(),
        }
    }

    pub fn next_rv(&mut self) -> Option<u64> {
        self.rv += 1;
        Some(self.rv)
    }

    /// A UID no test picks for its own objects (`job-1` is a test's favourite).
    pub fn next_uid(&mut self, prefix: &str) -> String {
        self.uids += 1;
        format!("{prefix}-server-{}", self.uids)
    }

    /// The next request of `verb` (see [`Action::verb`]) is answered with `outcome` and changes
    /// nothing.
    pub fn answer_next(&mut self, verb: &'static str, outcome: Outcome) {
        self.answers.entry(verb).or_default().push_back(outcome);
    }

    /// Requests of `verb` are left to the test: [`FakeApi::round`] returns them unanswered.
    pub fn hold(&mut self, verb: &'static str) {
        self.held.insert(verb);
    }

    /// Requests of `verb` are answered again.
    pub fn release(&mut self, verb: &'static str) {
        self.held.remove(verb);
    }

    /// The stored CIS `name` of namespace `namespace`.
    pub fn stored_cis(&self, namespace: &str, name: &str) -> Option<&StoredCis> {
        self.cis.get(&key(namespace, name))
    }

    /// The watch loses the events not delivered yet (the engine learns the state by a relist,
    /// or never).
    pub fn lose_watch_events(&mut self) {
        self.watch.clear();
    }

    /// Whether watch events wait for delivery.
    pub fn has_watch_events(&self) -> bool {
        !self.watch.is_empty()
    }

    /// The engine receives the watch events that happened since the last delivery.
    pub fn deliver(&mut self, engine: &mut Engine) {
        while let Some(event) = self.watch.pop_front() {
            engine.observe(event, self.now);
        }
    }

    /// The engine lists every kind, as after a start (pending watch events are dropped: the
    /// list shows their result).
    pub fn relist(&mut self, engine: &mut Engine) {
        self.watch.clear();
        let now = self.now;
        let mut list = |events: Vec<Observation>| {
            for event in events {
                engine.observe(event, now);
            }
        };
        list(listing(self.pods.values(), |event| Observation::Pod {
            stream: POD_STREAM,
            event,
        }));
        list(listing(self.cis.values().map(|c| &c.view), |event| {
            Observation::Cis {
                stream: CIS_STREAM,
                event,
            }
        }));
        list(listing(self.jobs.values(), |event| Observation::Job {
            stream: JOB_STREAM,
            event,
        }));
        list(listing(self.scan_pods.values(), |event| {
            Observation::ScanPod {
                stream: SCAN_POD_STREAM,
                event,
            }
        }));
        list(listing(self.exceptions.values(), |event| {
            Observation::Exception {
                stream: EXCEPTION_STREAM,
                event,
            }
        }));
        list(listing(self.vex_maps.values(), |event| {
            Observation::VexMap {
                stream: VEX_MAP_STREAM,
                event,
            }
        }));
    }

    /// The scan pod watch alone relists: pods gone without a Delete event are forgotten.
    pub fn relist_scan_pods(&mut self, engine: &mut Engine) {
        for event in listing(self.scan_pods.values(), |event| Observation::ScanPod {
            stream: SCAN_POD_STREAM,
            event,
        }) {
            engine.observe(event, self.now);
        }
    }

    /// One round: the engine polls, every command is executed and its outcome observed, then
    /// the watch events of the round are delivered. Returns the commands, and those of them
    /// left to the test (held verbs).
    fn round(&mut self, engine: &mut Engine) -> (Vec<Command>, Vec<Command>) {
        let commands = engine.poll(self.now);
        let mut left = Vec::new();
        for c in &commands {
            match self.execute(&c.action) {
                Some(outcome) => {
                    engine.observe(Observation::Outcome { id: c.id, outcome }, self.now)
                }
                None => left.push(c.clone()),
            }
        }
        self.deliver(engine);
        (commands, left)
    }

    /// Rounds until the engine has nothing more to do now; returns the commands left to the
    /// test. Panics after [`MAX_ROUNDS`] rounds: the engine is in a hot loop.
    pub fn run(&mut self, engine: &mut Engine) -> Vec<Command> {
        let mut left = Vec::new();
        for _ in 0..MAX_ROUNDS {
            self.deliver(engine);
            let (commands, held) = self.round(engine);
            left.extend(held);
            if commands.is_empty() && self.watch.is_empty() {
                return left;
            }
        }
        panic!(
            "the engine keeps issuing commands at {:?} (a hot loop)",
            self.now
        );
    }

    /// Answers a request of a held verb as the server would have.
    pub fn answer_held(&mut self, action: &Action) -> Outcome {
        let outcome = self.apply(action);
        if !matches!(outcome, Outcome::Failed(_)) {
            *self.succeeded.entry(action.verb()).or_default() += 1;
        }
        outcome
    }

    /// Executes one request: `None` when its verb is held.
    pub fn execute(&mut self, action: &Action) -> Option<Outcome> {
        self.requests.push(action.clone());
        let verb = action.verb();
        if self.held.contains(verb) {
            return None;
        }
        if let Some(answer) = self.answers.get_mut(verb).and_then(VecDeque::pop_front) {
            return Some(answer);
        }
        Some(self.answer_held(action))
    }

    fn apply(&mut self, action: &Action) -> Outcome {
        match action {
            Action::ApplyCis {
                namespace,
                name,
                labels,
                owners,
                spec,
            } => {
                let k = key(namespace, name);
                let rv = self.next_rv();
                let stored = match self.cis.get_mut(&k) {
                    Some(stored) => stored,
                    None => {
                        let uid = self.next_uid("cis");
                        let view =
                            created_by_apply((namespace, name), labels, owners, spec, uid, rv);
                        let stored = StoredCis {
                            view,
                            status: ContainerImageScanStatus::default(),
                            our_labels: labels.keys().cloned().collect(),
                        };
                        self.cis.insert(k.clone(), stored.clone());
                        self.changed_cis(&k);
                        return Outcome::CisApplied(Box::new(stored.view));
                    }
                };
                let mut view = stored.view.clone();
                let applied = apply_metadata_and_spec(
                    ApplyTarget {
                        labels: Arc::make_mut(&mut view.labels),
                        our_labels: &mut stored.our_labels,
                        owners: &mut view.owners,
                        spec: &mut view.spec,
                        generation: &mut view.generation,
                    },
                    labels,
                    owners,
                    spec,
                );
                if applied.changed() {
                    view.resource_version = rv;
                    stored.view = view;
                    self.changed_cis(&k);
                }
                Outcome::CisApplied(Box::new(self.cis[&k].view.clone()))
            }
            Action::DeleteCis {
                namespace,
                name,
                uid,
            } => {
                let stored = self
                    .stored_cis(namespace, name)
                    .map(|c| c.view.uid.as_str());
                if let Err(refused) = delete_precondition(CIS_RESOURCE, name, stored, uid) {
                    return Outcome::Failed(refused);
                }
                self.delete_cis(namespace, name);
                Outcome::Done
            }
            Action::ApplyCisStatus {
                namespace,
                name,
                uid,
                resource_version,
                status,
                keep_details,
            } => {
                let k = key(namespace, name);
                let rv = self.next_rv();
                let stored = self
                    .cis
                    .get(&k)
                    .map(|c| (c.view.uid.as_str(), c.view.resource_version));
                if let Err(refused) =
                    status_precondition(namespace, name, stored, uid, *resource_version)
                {
                    return Outcome::Failed(refused);
                }
                let Some(stored) = self.cis.get_mut(&k) else {
                    return failure(ApiErrorKind::NotFound);
                };
                let new =
                    status_after_apply(Some(&stored.status), (**status).clone(), *keep_details);
                if new != stored.status {
                    stored.view.status = CisStatusView::of(Some(&new));
                    stored.status = new;
                    stored.view.resource_version = rv;
                    self.changed_cis(&k);
                }
                Outcome::CisApplied(Box::new(self.cis[&k].view.clone()))
            }
            Action::CreateJob { job } => {
                let mut job = (**job).clone();
                let (Some(namespace), Some(name)) = (&job.metadata.namespace, &job.metadata.name)
                else {
                    return failure(ApiErrorKind::Invalid);
                };
                let k = key(namespace, name);
                if self.jobs.contains_key(&k) {
                    return failure(ApiErrorKind::AlreadyExists);
                }
                job.metadata.uid = Some(self.next_uid("job"));
                job.metadata.resource_version = self.next_rv().map(|rv| rv.to_string());
                job.metadata.creation_timestamp = Some(self.now.to_k8s());
                let Some(view) = job_view(&job, self.now) else {
                    return failure(ApiErrorKind::Invalid);
                };
                self.created_jobs.push(job);
                self.put_job(view.clone());
                Outcome::JobCreated(Box::new(view))
            }
            Action::DeleteJob {
                namespace,
                name,
                uid,
            } => {
                let stored = self.jobs.get(&key(namespace, name)).map(|j| j.uid.as_str());
                if let Err(refused) = delete_precondition(JOB_RESOURCE, name, stored, uid) {
                    return Outcome::Failed(refused);
                }
                self.delete_job(namespace, name);
                Outcome::Done
            }
            Action::FetchLog {
                namespace,
                pod_name,
                limit_bytes,
                ..
            } => {
                let k = key(namespace, pod_name);
                if !self.scan_pods.contains_key(&k) {
                    return failure(ApiErrorKind::NotFound);
                }
                let log = self.logs.get(&k).map(Vec::as_slice).unwrap_or_default();
                Outcome::Log(log[..log.len().min(*limit_bytes)].to_vec())
            }
            Action::ApplyReport {
                namespace,
                name,
                report,
            } => {
                // Owned by its CIS: without one the garbage collector removes it at once.
                let k = key(namespace, name);
                if self.cis.contains_key(&k) {
                    self.reports.insert(k, (**report).clone());
                }
                Outcome::Done
            }
            Action::ApplyExceptionStatus { key, uid, status } => {
                let rv = self.next_rv();
                let Some(stored) = self.exceptions.get_mut(key) else {
                    return failure(ApiErrorKind::NotFound);
                };
                if stored.uid != *uid {
                    return failure(ApiErrorKind::Conflict);
                }
                if stored.status.as_ref() != Some(&**status) {
                    stored.status = Some((**status).clone());
                    stored.resource_version = rv;
                    let view = stored.clone();
                    self.watch.push_back(Observation::Exception {
                        stream: EXCEPTION_STREAM,
                        event: WatchEvent::Apply(view),
                    });
                }
                Outcome::Done
            }
            Action::RecordEvent {
                regarding,
                namespace,
                name,
                uid,
                event,
            } => {
                self.events.push(RecordedEvent {
                    regarding: regarding.clone(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    uid: uid.clone(),
                    note: event.clone(),
                });
                Outcome::Done
            }
            Action::Deliver {
                sink, key, body, ..
            } => {
                self.deliveries.push((*sink, key.clone(), body.clone()));
                Outcome::Done
            }
        }
    }

    /// An exception is created or changed by a user: stored with `view`'s spec and the status
    /// it had, a new resourceVersion, and its watch event.
    pub fn put_exception(&mut self, mut view: ExceptionView) {
        view.resource_version = self.next_rv();
        if let Some(held) = self.exceptions.get(&view.key)
            && held.uid == view.uid
        {
            view.status = held.status.clone();
        }
        self.exceptions.insert(view.key.clone(), view.clone());
        self.watch.push_back(Observation::Exception {
            stream: EXCEPTION_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    /// An exception is deleted.
    pub fn delete_exception(&mut self, key: &ExceptionKey) {
        if let Some(view) = self.exceptions.remove(key) {
            self.watch.push_back(Observation::Exception {
                stream: EXCEPTION_STREAM,
                event: WatchEvent::Delete(view),
            });
        }
    }

    /// A VEX ConfigMap is created or changed: stored with a new resourceVersion, and its
    /// watch event.
    pub fn put_vex_map(&mut self, mut view: VexMapView) {
        view.resource_version = self.next_rv();
        self.vex_maps
            .insert((view.namespace.clone(), view.name.clone()), view.clone());
        self.watch.push_back(Observation::VexMap {
            stream: VEX_MAP_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    /// A VEX ConfigMap is deleted.
    pub fn delete_vex_map(&mut self, namespace: &str, name: &str) {
        if let Some(view) = self
            .vex_maps
            .remove(&(namespace.to_string(), name.to_string()))
        {
            self.watch.push_back(Observation::VexMap {
                stream: VEX_MAP_STREAM,
                event: WatchEvent::Delete(view),
            });
        }
    }

    fn changed_cis(&mut self, k: &Key) {
        let view = self.cis[k].view.clone();
        self.watch.push_back(Observation::Cis {
            stream: CIS_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    /// A CIS (created before the engine started, or by someone else) is stored exactly as
    /// `view` shows it, resourceVersion included, with details `status` when given.
    pub fn put_cis(&mut self, view: CisView, status: Option<ContainerImageScanStatus>) {
        let k = key(&view.namespace, &view.name);
        let our_labels = view.labels.keys().cloned().collect();
        self.cis.insert(
            k.clone(),
            StoredCis {
                view,
                status: status.unwrap_or_default(),
                our_labels,
            },
        );
        self.changed_cis(&k);
    }

    /// The CIS goes (deleted by the engine, by hand, or by the garbage collector), and its
    /// Report with it.
    pub fn delete_cis(&mut self, namespace: &str, name: &str) {
        let k = key(namespace, name);
        self.reports.remove(&k);
        if let Some(c) = self.cis.remove(&k) {
            self.watch.push_back(Observation::Cis {
                stream: CIS_STREAM,
                event: WatchEvent::Delete(c.view),
            });
        }
    }

    /// A workload pod is created or changes.
    pub fn put_pod(&mut self, mut view: PodView) {
        view.resource_version = self.next_rv();
        self.pods
            .insert(key(&view.namespace, &view.name), view.clone());
        self.watch.push_back(Observation::Pod {
            stream: POD_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    /// A workload pod goes; the garbage collector deletes the CIS it was the last owner of.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let Some(view) = self.pods.remove(&key(namespace, name)) else {
            return;
        };
        self.watch.push_back(Observation::Pod {
            stream: POD_STREAM,
            event: WatchEvent::Delete(view),
        });
        let live: BTreeSet<&str> = self.pods.values().map(|p| p.uid.as_str()).collect();
        let orphans: Vec<Key> = self
            .cis
            .iter()
            .filter(|(_, c)| {
                !c.view.owners.is_empty()
                    && c.view.owners.iter().all(|o| !live.contains(o.uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (namespace, name) in orphans {
            self.delete_cis(&namespace, &name);
        }
    }

    /// A Job is stored as `view` shows it (e.g. one created before the engine started).
    pub fn put_job(&mut self, view: JobView) {
        self.jobs
            .insert(key(&view.namespace, &view.name), view.clone());
        self.watch.push_back(Observation::Job {
            stream: JOB_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    /// Job `name` finishes now.
    pub fn finish_job(
        &mut self,
        namespace: &str,
        name: &str,
        succeeded: bool,
        reason: &str,
        message: &str,
    ) {
        let rv = self.next_rv();
        let Some(job) = self.jobs.get_mut(&key(namespace, name)) else {
            return;
        };
        job.finished = Some(JobFinish {
            succeeded,
            at: self.now,
            reason: reason.into(),
            message: message.into(),
        });
        job.resource_version = rv;
        let view = job.clone();
        self.put_job(view);
    }

    /// Job `name` goes, and its pods with it.
    pub fn delete_job(&mut self, namespace: &str, name: &str) {
        let Some(job) = self.jobs.remove(&key(namespace, name)) else {
            return;
        };
        let pods: Vec<Key> = self
            .scan_pods
            .iter()
            .filter(|(_, p)| p.job_uid.as_deref() == Some(job.uid.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for (namespace, name) in pods {
            self.delete_scan_pod(&namespace, &name);
        }
        self.watch.push_back(Observation::Job {
            stream: JOB_STREAM,
            event: WatchEvent::Delete(job),
        });
    }

    /// A scan pod is created or changes.
    pub fn put_scan_pod(&mut self, view: ScanPodView) {
        self.scan_pods
            .insert(key(&view.namespace, &view.name), view.clone());
        self.watch.push_back(Observation::ScanPod {
            stream: SCAN_POD_STREAM,
            event: WatchEvent::Apply(view),
        });
    }

    pub fn delete_scan_pod(&mut self, namespace: &str, name: &str) {
        let k = key(namespace, name);
        self.logs.remove(&k);
        if let Some(view) = self.scan_pods.remove(&k) {
            self.watch.push_back(Observation::ScanPod {
                stream: SCAN_POD_STREAM,
                event: WatchEvent::Delete(view),
            });
        }
    }
}

/// The watch events of a complete list of `objects`.
fn listing<'a, V: Clone + 'a>(
    objects: impl Iterator<Item = &'a V>,
    observation: impl Fn(WatchEvent<V>) -> Observation,
) -> Vec<Observation> {
    let mut events = vec![observation(WatchEvent::InitStarted)];
    events.extend(objects.map(|o| observation(WatchEvent::InitApply(o.clone()))));
    events.push(observation(WatchEvent::InitDone));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Severity, Vulnerability};
    use crate::port::OwnerRef;
    use crate::test_kit::{cis, pod};

    fn apply(view: &CisView) -> Action {
        Action::ApplyCis {
            namespace: view.namespace.clone(),
            name: view.name.clone(),
            labels: view.labels.clone(),
            owners: view.owners.clone(),
            spec: view.spec.clone(),
        }
    }

    fn status_write(api: &FakeApi, keep_details: bool, job: &str) -> Action {
        let stored = api.stored_cis("ns", "a").expect("stored");
        let status = ContainerImageScanStatus {
            last_scan_job_uid: Some(job.into()),
            vulnerabilities: (!keep_details).then(|| {
                vec![Vulnerability {
                    vulnerability_id: "CVE-1".into(),
                    pkg_name: "openssl".into(),
                    installed_version: "1".into(),
                    severity: Severity::High,
                    pkg_path: String::new(),
                    fixed_version: String::new(),
                    title: String::new(),
                    primary_url: String::new(),
                    suppressed_by: None,
                    suppressed_justification: None,
                }]
            }),
            ..Default::default()
        };
        Action::ApplyCisStatus {
            namespace: "ns".into(),
            name: "a".into(),
            uid: stored.view.uid.clone(),
            resource_version: None,
            status: Box::new(status),
            keep_details,
        }
    }

    fn watch_events(api: &mut FakeApi) -> usize {
        std::mem::take(&mut api.watch).len()
    }

    #[test]
    fn an_apply_that_changes_nothing_changes_no_resource_version_and_sends_no_event() {
        let mut api = FakeApi::new(Timestamp::from_secs(1));
        let view = cis("a", "", "sha256:aa", CisStatusView::default());
        let Some(Outcome::CisApplied(first)) = api.execute(&apply(&view)) else {
            panic!("created");
        };
        assert_eq!((first.generation, watch_events(&mut api)), (1, 1));
        let Some(Outcome::CisApplied(again)) = api.execute(&apply(&view)) else {
            panic!("applied");
        };
        assert_eq!(again.resource_version, first.resource_version);
        assert_eq!(watch_events(&mut api), 0);
        let mut changed = view.clone();
        changed.spec.ignore_unfixed = Some(true);
        let Some(Outcome::CisApplied(after)) = api.execute(&apply(&changed)) else {
            panic!("applied");
        };
        assert_eq!((after.generation, watch_events(&mut api)), (2, 1));
        assert_eq!(after.uid, first.uid, "an apply updates the object in place");
    }

    #[test]
    fn a_status_write_that_keeps_details_leaves_the_stored_ones() {
        let mut api = FakeApi::new(Timestamp::from_secs(1));
        api.execute(&apply(&cis("a", "", "sha256:aa", CisStatusView::default())));
        api.execute(&status_write(&api, false, "job-1"));
        api.execute(&status_write(&api, true, "job-2"));
        let stored = &api.stored_cis("ns", "a").expect("stored").status;
        assert_eq!(stored.last_scan_job_uid.as_deref(), Some("job-2"));
        assert_eq!(stored.vulnerabilities.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn preconditions_on_uid_and_resource_version_answer_conflict() {
        let mut api = FakeApi::new(Timestamp::from_secs(1));
        api.execute(&apply(&cis("a", "", "sha256:aa", CisStatusView::default())));
        let mut write = status_write(&api, true, "job-1");
        if let Action::ApplyCisStatus {
            resource_version, ..
        } = &mut write
        {
            *resource_version = Some(1);
        }
        let refused = |outcome: Option<Outcome>| match outcome {
            Some(Outcome::Failed(e)) => Some(e.kind),
            _ => None,
        };
        assert_eq!(refused(api.execute(&write)), Some(ApiErrorKind::Conflict));
        let delete = Action::DeleteCis {
            namespace: "ns".into(),
            name: "a".into(),
            uid: "another".into(),
        };
        assert_eq!(refused(api.execute(&delete)), Some(ApiErrorKind::Conflict));
        assert!(api.stored_cis("ns", "a").is_some());
    }

    #[test]
    fn the_garbage_collector_deletes_a_cis_when_its_last_owner_pod_goes() {
        let mut api = FakeApi::new(Timestamp::from_secs(1));
        let mut view = cis("a", "", "sha256:aa", CisStatusView::default());
        view.owners = ["p1", "p2"]
            .iter()
            .map(|uid| OwnerRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: uid.to_string(),
                uid: uid.to_string(),
            })
            .collect();
        api.execute(&apply(&view));
        for uid in ["p1", "p2"] {
            api.put_pod(pod(uid, uid, "sha256:aa"));
        }
        api.delete_pod("ns", "p1");
        assert!(api.stored_cis("ns", "a").is_some(), "p2 still owns it");
        api.delete_pod("ns", "p2");
        assert!(api.stored_cis("ns", "a").is_none());
    }
}
