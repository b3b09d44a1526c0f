//! The world around the operator: the scripted user operations (here), workload controllers
//! (Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet, CronJob → Job → Pod, custom kinds,
//! bare pods; `controllers.rs`) and deletion with the ownerReference cascade (`deletion.rs`).
//! The kubelet of workload pods is in `kubelet.rs`, the scan Job controller in `scanjobs.rs`,
//! namespace deletion and the CIS garbage collector in `gc.rs`.

use image_scanner_core::exception::ExceptionKey;
use image_scanner_core::port::ContainerKind;

use super::Sim;
use crate::cluster::{NsState, SimWorkload, kind};
use crate::event::{Event, PodStep};
use crate::rng::Draw;
use crate::workload::Op;

impl Sim {
    /// A user applies or deletes an exception (`exceptions`); refused in a namespace that does
    /// not exist or is being deleted.
    pub fn apply_exception_op(&mut self, index: usize) {
        let op = self.exception_script[index].clone();
        self.note(|| format!("exception op {} {}", op.key.reference(), op.spec.is_some()));
        if let ExceptionKey::Namespaced { namespace, .. } = &op.key
            && self.cluster.namespaces.get(namespace) != Some(&NsState::Active)
        {
            return;
        }
        match op.spec {
            Some(spec) => {
                let held = self.cluster.exceptions.get(&op.key);
                let (uid, generation) = held.map_or_else(
                    || (format!("exception-{index}"), 1),
                    |v| (v.uid.clone(), v.generation + 1),
                );
                let mut view = crate::exceptions::view(&op.key, &uid, generation, spec);
                view.status = held.and_then(|v| v.status.clone());
                (self.cluster.exception_ledger).record(&op.key, Some(&view), self.now);
                self.cluster.exceptions.insert(op.key.clone(), view);
            }
            None => {
                if self.cluster.exceptions.remove(&op.key).is_none() {
                    return;
                }
                (self.cluster.exception_ledger).record(&op.key, None, self.now);
            }
        }
        self.cluster.publish_exception(&op.key);
        self.stats.exception_ops += 1;
    }

    /// Applies a scripted op.
    pub fn apply_op(&mut self, index: usize, op: Op) {
        match op {
            Op::CreateNamespace(ns) => match self.cluster.namespaces.get(&ns) {
                Some(NsState::Terminating) => self.after(10_000, Event::Op { index }),
                Some(NsState::Active) => {}
                None => {
                    self.cluster.namespaces.insert(ns, NsState::Active);
                }
            },
            Op::DeleteNamespace(ns) => self.delete_namespace(&ns),
            Op::Create {
                kind: k,
                ns,
                name,
                template,
                replicas,
                ignore_unfixed,
            } => {
                if !self.ns_active(&ns) {
                    return;
                }
                let key = (k, ns.clone(), name.clone());
                if self.cluster.workloads.contains_key(&key) {
                    return;
                }
                let uid = self.cluster.uid();
                let period_ms = u64::from(replicas) * 60_000;
                let w = SimWorkload {
                    kind: k,
                    ns: ns.clone(),
                    name: name.clone(),
                    uid,
                    controller: None,
                    ignore_unfixed,
                    template,
                    replicas: if k == kind::CRON { 2 } else { replicas },
                    revision: 1,
                    done: false,
                    period_ms,
                    children: 0,
                };
                self.cluster.workloads.insert(key.clone(), w);
                self.cluster.publish_workload(&key);
                match k {
                    kind::DEPLOY => self.new_replica_set(&key),
                    kind::CRON => {
                        let d = self.r_world.between(5_000, period_ms);
                        self.after(d, Event::CronTick { ns, name });
                    }
                    _ => self.reconcile_soon(k, &ns, &name),
                }
            }
            Op::UpdateImage {
                kind: k,
                ns,
                name,
                container,
                image,
            } => {
                let key = (k, ns.clone(), name.clone());
                let Some(w) = self.cluster.workloads.get_mut(&key) else {
                    return;
                };
                let n = w.template.containers.len();
                let slot = &mut w.template.containers[container % n].1;
                if *slot == image {
                    return;
                }
                *slot = image;
                w.revision += 1;
                match k {
                    kind::DEPLOY => {
                        // Old ReplicaSets scale to zero a little later (a rolling update).
                        let old: Vec<(u8, String, String)> = self.children_of(&ns, &key);
                        for child in old {
                            let d = self.r_world.between(2_000, 30_000);
                            if let Some(rs) = self.cluster.workloads.get_mut(&child) {
                                rs.done = true;
                            }
                            self.after(
                                d,
                                Event::Reconcile {
                                    kind: child.0,
                                    ns: child.1,
                                    name: child.2,
                                },
                            );
                        }
                        self.new_replica_set(&key);
                    }
                    kind::CRON => {}
                    _ => {
                        // Replace pods one by one.
                        let pods = self.pods_of(&ns, &key);
                        let mut d = 0;
                        for p in pods {
                            d += self.r_world.between(1_000, 15_000);
                            self.delete_pod_later(&p.0, &p.1, d);
                        }
                        self.reconcile_soon(k, &ns, &name);
                    }
                }
            }
            Op::Scale {
                kind: k,
                ns,
                name,
                replicas,
            } => {
                let key = (k, ns.clone(), name.clone());
                if k == kind::CRON || k == kind::JOB || k == kind::DS {
                    return;
                }
                let targets: Vec<(u8, String, String)> = if k == kind::DEPLOY {
                    self.children_of(&ns, &key)
                        .into_iter()
                        .filter(|c| self.cluster.workloads.get(c).is_some_and(|w| !w.done))
                        .collect()
                } else {
                    vec![key]
                };
                for t in targets {
                    if let Some(w) = self.cluster.workloads.get_mut(&t) {
                        w.replicas = replicas;
                        self.reconcile_soon(t.0, &t.1, &t.2);
                    }
                }
            }
            Op::Delete { kind: k, ns, name } => {
                self.delete_workload(&(k, ns, name));
            }
            Op::CreatePod {
                ns,
                name,
                template,
                ignore_unfixed,
            } => {
                if !self.ns_active(&ns)
                    || self.cluster.pods.contains_key(&(ns.clone(), name.clone()))
                {
                    return;
                }
                self.create_pod(&ns, &name, &template, None, ignore_unfixed, false);
            }
            Op::DeletePod { ns, index } => {
                let pods: Vec<(String, String)> = self
                    .cluster
                    .pods
                    .range((ns.clone(), String::new())..)
                    .take_while(|((n, _), _)| *n == ns)
                    .filter(|(_, p)| !p.deleting)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !pods.is_empty() {
                    let (ns, name) = pods[index % pods.len()].clone();
                    self.delete_pod(&ns, &name);
                }
            }
            Op::UpdatePodImage {
                ns,
                name,
                container,
                image,
            } => {
                let key = (ns.clone(), name.clone());
                let Some(p) = self.cluster.pods.get_mut(&key) else {
                    return;
                };
                if p.deleting || p.controller.is_some() {
                    return;
                }
                let regular: Vec<usize> = (0..p.containers.len())
                    .filter(|i| p.containers[*i].kind == ContainerKind::Regular)
                    .collect();
                let c = &mut p.containers[regular[container % regular.len()]];
                if c.image == image {
                    return;
                }
                c.image = image;
                let uid = p.uid.clone();
                self.cluster.publish_pod(&ns, &name);
                let d = self.r_world.between(500, 10_000);
                self.after(
                    d,
                    Event::Pod {
                        ns,
                        name,
                        uid,
                        step: PodStep::Restart,
                    },
                );
            }
            Op::SetIgnoreUnfixed {
                kind: k,
                ns,
                name,
                value,
            } => {
                let key = (k, ns, name);
                if let Some(w) = self.cluster.workloads.get_mut(&key)
                    && w.ignore_unfixed != value
                {
                    w.ignore_unfixed = value;
                    self.cluster.publish_workload(&key);
                }
            }
            Op::SetMinSeverity { ns, severity } => {
                match severity {
                    Some(s) => self.min_severity_policy.insert(ns.clone(), s),
                    None => self.min_severity_policy.remove(&ns),
                };
                let keys: Vec<(String, String)> = self
                    .cluster
                    .cis
                    .keys()
                    .filter(|(n, _)| *n == ns)
                    .cloned()
                    .collect();
                for key in keys {
                    self.set_min_severity(&key, severity);
                }
            }
            Op::SuspendCronJobs => {
                self.crons_suspended = true;
            }
        }
    }

    /// A user edit of `spec.minSeverity` (bumps the generation).
    pub fn set_min_severity(
        &mut self,
        key: &(String, String),
        severity: Option<image_scanner_api::Severity>,
    ) {
        if let Some(c) = self.cluster.cis.get_mut(key)
            && c.spec.min_severity != severity
            && !c.deleting
        {
            c.spec.min_severity = severity;
            c.generation += 1;
            c.spec_history.insert(c.generation, c.spec.clone());
            self.cluster.publish_cis(&key.0, &key.1);
        }
    }

    pub(crate) fn ns_active(&self, ns: &str) -> bool {
        self.cluster.namespaces.get(ns) == Some(&NsState::Active)
    }
}

mod controllers;
mod deletion;
