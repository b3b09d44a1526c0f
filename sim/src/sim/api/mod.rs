//! The API server's request handling: server-side apply as a field-owner upsert (no
//! resourceVersion bump when nothing changed), generation bumps on spec changes only, the status
//! subresource with a UID precondition, AlreadyExists on create, 409/404 on preconditions, the
//! namespace lifecycle, request size limits, log reads with byte caps — and the injected API
//! faults (409, 404, 429/5xx, timeouts before or after applying).

use std::collections::BTreeSet;
use std::sync::Arc;

use image_scanner_core::port::{
    Action, ApiError, ApiErrorKind, Command, CommandId, Outcome, PullCredentials,
};
use image_scanner_core::scan_job::{
    ANNOTATION_DIGEST, ANNOTATION_IMAGE, LABEL_CIS_NAMESPACE, LABEL_CIS_UID, LABEL_MANAGED_BY,
    MANAGED_BY, SCAN_CONTAINER,
};
use image_scanner_core::test_kit::apply::{
    ApplyTarget, CIS_RESOURCE, JOB_RESOURCE, apply_metadata_and_spec, delete_precondition,
    status_after_apply, status_precondition,
};
use image_scanner_core::time::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;

mod create_job;

use super::Sim;
use crate::cluster::{JobRecord, NsState, SCAN_NS, SimCis, SimJob, cis_view, job_view};
use crate::event::{Event, JobStep};
use crate::options::Fault;
use crate::rng::Draw;

fn fail(kind: ApiErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(ApiError {
        kind,
        message: message.into(),
    })
}

impl Sim {
    /// A request reaches the server.
    pub fn arrive(
        &mut self,
        i: usize,
        inc: u32,
        term: u64,
        issued: (i64, Timestamp),
        cmd: Command,
    ) {
        // A paused process has not flushed its requests yet.
        if self.instances[i].inc == inc && self.instances[i].paused {
            let until = self.instances[i].paused_until;
            let d = self.r_delivery.between(1, 50) as i64;
            self.at(
                until + d,
                Event::Arrive {
                    instance: i,
                    inc,
                    term,
                    issued,
                    command: Box::new(cmd),
                },
            );
            return;
        }
        let id = cmd.id;
        let write = cmd.action.is_write();
        // Injected failures before the request is applied.
        let pre = if self.faults.fires(Fault::Throttle, 1.0) {
            Some(if self.faults.draw().chance(0.5) {
                fail(ApiErrorKind::Throttled, "429 Too Many Requests")
            } else {
                fail(ApiErrorKind::ServerError, "503 Service Unavailable")
            })
        } else if write
            && !matches!(cmd.action, Action::RecordEvent { .. })
            && self.faults.fires(Fault::Conflict, 1.0)
        {
            Some(fail(ApiErrorKind::Conflict, "the object has been modified"))
        } else if self.faults.fires(Fault::Timeout, 0.5) {
            Some(fail(
                ApiErrorKind::Unknown,
                "connection reset (not applied)",
            ))
        } else if matches!(cmd.action, Action::FetchLog { .. })
            && self.faults.fires(Fault::NotFound, 2.0)
        {
            Some(fail(ApiErrorKind::NotFound, "not found (injected)"))
        } else {
            None
        };
        let outcome = match pre {
            Some(o) => o,
            None => {
                // Issued in a term that has ended: decided on what its writer saw then,
                // whoever holds the Lease now.
                let late =
                    write && (self.lease.holder != Some((i, inc)) || self.lease.term != term);
                let orphan =
                    late || self.instances[i].engine.is_none() || self.instances[i].inc != inc;
                if write && orphan {
                    self.stats.late_writes += 1;
                    let d = crate::instance::describe(&cmd.action);
                    self.note(|| format!("inst{i} late write lands: {d}"));
                }
                let o = self.execute(i, inc, id, cmd.action, orphan, issued);
                if self.faults.fires(Fault::Timeout, 0.5) {
                    fail(
                        ApiErrorKind::Unknown,
                        "timeout: no answer within 30s (applied)",
                    )
                } else {
                    o
                }
            }
        };
        // BUGGIFY crash point: applied, reply lost.
        if self.faults.fires(Fault::Crash, 0.3)
            && self.instances[i].inc == inc
            && self.instances[i].engine.is_some()
        {
            self.note(|| format!("inst{i} crash after the server applied #{}", id.0));
            self.crash(i);
            return;
        }
        let d = self.r_delivery.between(1, 20);
        self.after(
            d,
            Event::Reply {
                instance: i,
                inc,
                id,
                outcome: Box::new(outcome),
            },
        );
    }

    fn execute(
        &mut self,
        i: usize,
        inc: u32,
        id: CommandId,
        action: Action,
        orphan: bool,
        issued: (i64, Timestamp),
    ) -> Outcome {
        let now = Timestamp(self.now);
        match action {
            Action::ApplyCis {
                namespace,
                name,
                labels,
                owners,
                spec,
            } => {
                match self.cluster.namespaces.get(&namespace) {
                    None => {
                        return fail(
                            ApiErrorKind::NotFound,
                            format!("namespaces \"{namespace}\" not found"),
                        );
                    }
                    Some(NsState::Terminating)
                        if !self
                            .cluster
                            .cis
                            .contains_key(&(namespace.clone(), name.clone())) =>
                    {
                        return fail(
                            ApiErrorKind::NamespaceTerminating,
                            format!("namespace {namespace} is being terminated"),
                        );
                    }
                    _ => {}
                }
                self.checker.on_apply_cis(
                    self.now,
                    &self.cluster,
                    &namespace,
                    &name,
                    &labels,
                    &owners,
                    &spec,
                );
                let key = (namespace.clone(), name.clone());
                let changed = match self.cluster.cis.get_mut(&key) {
                    Some(c) => {
                        let applied = apply_metadata_and_spec(
                            ApplyTarget {
                                labels: &mut c.labels,
                                our_labels: &mut c.our_labels,
                                owners: &mut c.owners,
                                spec: &mut c.spec,
                                generation: &mut c.generation,
                            },
                            &labels,
                            &owners,
                            &spec,
                        );
                        if applied.spec {
                            c.spec_history.insert(c.generation, c.spec.clone());
                        }
                        if applied.owners {
                            let d = self.r_gc.between(100, 3_000);
                            self.after(
                                d,
                                Event::GcCis {
                                    ns: namespace.clone(),
                                    name: name.clone(),
                                },
                            );
                        }
                        applied.changed()
                    }
                    None => {
                        let uid = self.cluster.uid();
                        let mut spec = spec.clone();
                        spec.min_severity = self.min_severity_policy.get(&namespace).copied();
                        let finalizers = if self.faults.fires(Fault::DeleteRace, 5.0) {
                            vec!["backup.example.com/protect".to_string()]
                        } else {
                            Vec::new()
                        };
                        let c = SimCis {
                            ns: namespace.clone(),
                            name: name.clone(),
                            uid,
                            generation: 1,
                            labels: (*labels).clone(),
                            our_labels: labels.keys().cloned().collect(),
                            owners: owners.clone(),
                            deleting: false,
                            finalizers,
                            spec_history: [(1, spec.clone())].into_iter().collect(),
                            spec,
                            status: None,
                            rv: 0,
                            legit: None,
                            legit_by: None,
                        };
                        self.cluster.cis.insert(key.clone(), c);
                        let d = self.r_gc.between(100, 3_000);
                        self.after(
                            d,
                            Event::GcCis {
                                ns: namespace.clone(),
                                name: name.clone(),
                            },
                        );
                        true
                    }
                };
                if changed {
                    self.cluster.publish_cis(&namespace, &name);
                }
                let view = self.cluster.cis.get(&key).map(cis_view);
                match view {
                    Some(v) => Outcome::CisApplied(Box::new(v)),
                    None => fail(ApiErrorKind::NotFound, "gone"),
                }
            }
            Action::DeleteCis {
                namespace,
                name,
                uid,
            } => {
                let key = (namespace.clone(), name.clone());
                let stored = self.cluster.cis.get(&key).map(|c| c.uid.as_str());
                if let Err(refused) = delete_precondition(CIS_RESOURCE, &name, stored, &uid) {
                    return Outcome::Failed(refused);
                }
                self.checker.on_delete_cis(self.now, &self.cluster, &key);
                self.delete_cis_object(&namespace, &name);
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
                let key = (namespace.clone(), name.clone());
                let stored = self.cluster.cis.get(&key);
                if let Err(refused) = status_precondition(
                    &namespace,
                    &name,
                    stored.map(|c| (c.uid.as_str(), Some(c.rv))),
                    &uid,
                    resource_version,
                ) {
                    return Outcome::Failed(refused);
                }
                let Some(c) = stored else {
                    return fail(ApiErrorKind::NotFound, "gone");
                };
                let new = status_after_apply(c.status.as_ref(), *status, keep_details);
                let size = serde_json::to_vec(&new).map_or(0, |v| v.len())
                    + serde_json::to_vec(&c.spec).map_or(0, |v| v.len())
                    + 300;
                if size > self.opts.request_limit {
                    return fail(ApiErrorKind::TooLarge, "etcdserver: request is too large");
                }
                let cfg_budget = self.instances[i].cfg.details_max_bytes;
                let t = new.last_scan_time.as_ref().map(|t| t.0.as_second());
                self.note(|| {
                    format!(
                        "server: status {namespace}/{name} from inst{i} orphan={orphan} t={t:?}"
                    )
                });
                // A writer whose CIS watch has not delivered the last legit write of another
                // writer decided on a stale view: without a resourceVersion precondition such
                // a write cannot be fenced (see docs/testing.md).
                let stale = {
                    let cursor = self.instances[i]
                        .watchers
                        .get(&crate::cluster::Kind::Cis)
                        .map_or(0, |w| w.cursor);
                    self.cluster.cis.get(&key).is_some_and(|c| {
                        c.legit_by
                            .is_some_and(|(w, rv)| w != (i, inc) && cursor < rv)
                    })
                };
                self.checker.on_status(
                    self.now,
                    &self.cluster,
                    &self.kubelet,
                    &key,
                    &new,
                    cfg_budget,
                    orphan || stale,
                    issued,
                );
                if !(orphan || stale) {
                    self.check_told_was_delivered(&key, &new);
                    let total = self.instances[i].cfg.details_total_bytes;
                    (self.checker).on_details_total(self.now, &self.cluster, &key, &new, total);
                }
                self.stats.status_writes += 1;
                self.stats.suppressed_marks += (new.vulnerabilities.iter().flatten())
                    .filter(|v| v.suppressed_by.is_some())
                    .count() as u64;
                self.stats.vex_marks += (new.vulnerabilities.iter().flatten())
                    .filter(|v| v.suppressed_justification.is_some())
                    .count() as u64;
                let c = self.cluster.cis.get_mut(&key);
                let changed = if let Some(c) = c {
                    if !orphan {
                        c.legit = Some(new.clone());
                        c.legit_by = Some(((i, inc), self.cluster.rv + 1));
                    }
                    if c.status.as_ref() != Some(&new) {
                        c.status = Some(new);
                        true
                    } else {
                        false
                    }
                } else {
                    false
                };
                if changed {
                    self.cluster.publish_cis(&namespace, &name);
                }
                match self.cluster.cis.get(&key) {
                    Some(c) => Outcome::CisApplied(Box::new(cis_view(c))),
                    None => fail(ApiErrorKind::NotFound, "gone"),
                }
            }
            Action::CreateJob { job } => self.create_job((i, inc, id), *job, orphan, now),
            Action::DeleteJob {
                namespace,
                name,
                uid,
            } => {
                let key = (namespace, name);
                let stored = self.cluster.jobs.get(&key).map(|j| j.uid.as_str());
                if let Err(refused) = delete_precondition(JOB_RESOURCE, &key.1, stored, &uid) {
                    return Outcome::Failed(refused);
                }
                self.delete_job_object(&key);
                Outcome::Done
            }
            Action::FetchLog {
                namespace,
                pod_name,
                container,
                limit_bytes,
                previous: _,
            } => {
                let Some(p) = self.cluster.scan_pods.get(&(namespace, pod_name.clone())) else {
                    return fail(
                        ApiErrorKind::NotFound,
                        format!("pods \"{pod_name}\" not found"),
                    );
                };
                if container != SCAN_CONTAINER {
                    return fail(
                        ApiErrorKind::Invalid,
                        format!("container {container} is not valid for pod {pod_name}"),
                    );
                }
                if !p.scan.started {
                    return fail(
                        ApiErrorKind::Invalid,
                        format!(
                            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: PodInitializing"
                        ),
                    );
                }
                if p.log.len() > limit_bytes {
                    return fail(
                        ApiErrorKind::LogTooLarge,
                        format!("log exceeds {limit_bytes} bytes"),
                    );
                }
                Outcome::Log(p.log.as_ref().clone())
            }
            Action::ApplyExceptionStatus { key, uid, status } => {
                let Some(stored) = self.cluster.exceptions.get_mut(&key) else {
                    return fail(ApiErrorKind::NotFound, "exception not found");
                };
                if stored.uid != uid {
                    return fail(ApiErrorKind::Conflict, "UID precondition failed");
                }
                if stored.status.as_ref() != Some(&*status) {
                    stored.status = Some(*status);
                    self.cluster.publish_exception(&key);
                }
                self.stats.exception_status_writes += 1;
                Outcome::Done
            }
            // Sent to the receivers (`sim::receivers`), never to the API server.
            Action::Deliver { .. } => fail(ApiErrorKind::Invalid, "not an API request"),
            // The simulated cluster has no OpenReports CRD; Reports are accepted and dropped.
            Action::ApplyReport { ref namespace, .. }
            | Action::RecordEvent { ref namespace, .. } => {
                if let Action::RecordEvent { event, .. } = &action
                    && [
                        image_scanner_core::notice::REASON_NEW,
                        image_scanner_core::notice::REASON_FIX_AVAILABLE,
                        image_scanner_core::notice::REASON_RESOLVED,
                    ]
                    .contains(&event.reason.as_str())
                {
                    self.stats.notice_events += 1;
                }
                if self.cluster.namespaces.get(namespace) == Some(&NsState::Terminating) {
                    fail(
                        ApiErrorKind::NamespaceTerminating,
                        "namespace is being terminated",
                    )
                } else {
                    Outcome::Done
                }
            }
        }
    }
}
