//! The world around the operator: workload controllers (Deployment → ReplicaSet → Pod,
//! StatefulSet, DaemonSet, CronJob → Job → Pod, custom kinds, bare pods) and the ownerReference
//! cascade. The kubelet of workload pods is in `kubelet.rs`, the scan Job controller in
//! `scanjobs.rs`, namespace deletion and the CIS garbage collector in `gc.rs`.

use image_scanner_core::port::{ContainerKind, OwnerRef};
use image_scanner_core::time::Timestamp;

use super::Sim;
use crate::cluster::{
    CState, NsState, SimContainer, SimPod, SimWorkload, Template, kind, owner_ref,
};
use crate::event::{Event, PodStep};
use crate::rng::Draw;
use crate::workload::Op;

/// Grace period of pod deletion, ms.
const GRACE: (u64, u64) = (200, 20_000);

impl Sim {
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

    fn reconcile_soon(&mut self, k: u8, ns: &str, name: &str) {
        let d = self.r_world.between(50, 1_500);
        self.after(
            d,
            Event::Reconcile {
                kind: k,
                ns: ns.to_string(),
                name: name.to_string(),
            },
        );
    }

    fn children_of(&self, ns: &str, owner: &(u8, String, String)) -> Vec<(u8, String, String)> {
        let Some(uid) = self.cluster.workloads.get(owner).map(|w| w.uid.clone()) else {
            return Vec::new();
        };
        self.cluster
            .workloads
            .iter()
            .filter(|((_, n, _), w)| n == ns && w.controller.as_ref().is_some_and(|c| c.uid == uid))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn pods_of(&self, ns: &str, owner: &(u8, String, String)) -> Vec<(String, String)> {
        let Some(uid) = self.cluster.workloads.get(owner).map(|w| w.uid.clone()) else {
            return Vec::new();
        };
        self.cluster
            .pods
            .range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .filter(|(_, p)| !p.deleting && p.controller.as_ref().is_some_and(|c| c.uid == uid))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn new_replica_set(&mut self, deploy: &(u8, String, String)) {
        let Some(d) = self.cluster.workloads.get(deploy).cloned() else {
            return;
        };
        let name = format!("{}-{}", d.name, self.r_world.hex(8));
        let uid = self.cluster.uid();
        let key = (kind::RS, d.ns.clone(), name.clone());
        let rs = SimWorkload {
            kind: kind::RS,
            ns: d.ns.clone(),
            name: name.clone(),
            uid,
            controller: Some(owner_ref(&d)),
            ignore_unfixed: false,
            template: d.template.clone(),
            replicas: d.replicas,
            revision: 1,
            done: false,
            period_ms: 0,
            children: 0,
        };
        self.cluster.workloads.insert(key.clone(), rs);
        self.cluster.publish_workload(&key);
        self.reconcile_soon(kind::RS, &d.ns, &name);
    }

    /// Level-triggered controller of pod-owning workloads.
    pub fn reconcile(&mut self, k: u8, ns: &str, name: &str) {
        let key = (k, ns.to_string(), name.to_string());
        let Some(w) = self.cluster.workloads.get(&key).cloned() else {
            return;
        };
        if k == kind::DEPLOY || k == kind::CRON {
            return;
        }
        let pods = self.pods_of(ns, &key);
        let desired = match k {
            kind::RS if w.done => 0,
            kind::DS => self.opts.nodes as u32,
            kind::JOB if w.done => 0,
            kind::JOB => 1,
            _ => w.replicas,
        };
        if k == kind::JOB && w.done {
            return;
        }
        let have = pods.len() as u32;
        if have < desired {
            for i in 0..(desired - have) {
                let pod_name = match k {
                    kind::STS => {
                        // The lowest free ordinal (the old pod must be gone first).
                        let mut ord = 0;
                        while self
                            .cluster
                            .pods
                            .contains_key(&(ns.to_string(), format!("{name}-{ord}")))
                        {
                            ord += 1;
                        }
                        format!("{name}-{ord}")
                    }
                    _ => format!("{name}-{}", self.r_world.hex(5)),
                };
                let _ = i;
                if self
                    .cluster
                    .pods
                    .contains_key(&(ns.to_string(), pod_name.clone()))
                {
                    continue;
                }
                let completes = k == kind::JOB;
                self.create_pod(
                    ns,
                    &pod_name,
                    &w.template.clone(),
                    Some(owner_ref(&w)),
                    false,
                    completes,
                );
            }
        } else if have > desired {
            let extra = (have - desired) as usize;
            for (pns, pname) in pods.iter().rev().take(extra) {
                self.delete_pod(pns, pname);
            }
        }
    }

    fn create_pod(
        &mut self,
        ns: &str,
        name: &str,
        t: &Template,
        controller: Option<OwnerRef>,
        ignore_unfixed: bool,
        completes: bool,
    ) {
        let uid = self.cluster.uid();
        let mut containers: Vec<SimContainer> = t
            .init
            .iter()
            .map(|(n, i)| SimContainer {
                kind: ContainerKind::Init,
                name: n.clone(),
                image: *i,
                running_image: *i,
                state: CState::Waiting("PodInitializing"),
            })
            .collect();
        containers.extend(t.containers.iter().map(|(n, i)| SimContainer {
            kind: ContainerKind::Regular,
            name: n.clone(),
            image: *i,
            running_image: *i,
            state: CState::Waiting("ContainerCreating"),
        }));
        // imagePullSecrets are part of the pod spec: fixed for the pod's life, also when a
        // bare pod's image is updated in place.
        let digests: Vec<&str> = containers
            .iter()
            .map(|c| self.cluster.images[c.image].digest.as_str())
            .collect();
        let pull = self.kubelet.pod_credentials(ns, digests);
        let pod = SimPod {
            pull,
            ns: ns.to_string(),
            name: name.to_string(),
            uid: uid.clone(),
            labels: t.labels.clone(),
            controller,
            created: Timestamp(self.now).truncate_to_secs(),
            deleting: false,
            node: None,
            phase: Some("Pending"),
            ready: false,
            start_time: None,
            containers,
            ignore_unfixed,
            completes,
            never_ready: t.never_ready,
        };
        self.cluster
            .pods
            .insert((ns.to_string(), name.to_string()), pod);
        self.cluster.publish_pod(ns, name);
        let d = self.r_world.between(100, 2_000);
        self.after(
            d,
            Event::Pod {
                ns: ns.to_string(),
                name: name.to_string(),
                uid,
                step: PodStep::Schedule,
            },
        );
    }

    /// Starts graceful deletion of a pod.
    pub fn delete_pod(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let Some(p) = self.cluster.pods.get_mut(&key) else {
            return;
        };
        if p.deleting {
            return;
        }
        p.deleting = true;
        p.ready = false;
        let uid = p.uid.clone();
        self.cluster.publish_pod(ns, name);
        let d = self.r_world.between(GRACE.0, GRACE.1);
        self.after(
            d,
            Event::Pod {
                ns: ns.to_string(),
                name: name.to_string(),
                uid,
                step: PodStep::Remove,
            },
        );
    }

    fn delete_pod_later(&mut self, ns: &str, name: &str, ms: u64) {
        // Reuse the kubelet queue: a Restart-free deletion through a reconcile of nothing.
        let key = (ns.to_string(), name.to_string());
        if let Some(p) = self.cluster.pods.get(&key) {
            let uid = p.uid.clone();
            self.after(
                ms,
                Event::Pod {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    uid,
                    step: PodStep::Remove,
                },
            );
            // Mark as deleting at once, so the owner creates the replacement.
            self.delete_pod_now_marked(ns, name);
        }
    }

    fn delete_pod_now_marked(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(p) = self.cluster.pods.get_mut(&key)
            && !p.deleting
        {
            p.deleting = true;
            p.ready = false;
            self.cluster.publish_pod(ns, name);
        }
    }

    pub(crate) fn remove_pod(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let Some(p) = self.cluster.pods.remove(&key) else {
            return;
        };
        self.cluster.publish_pod(ns, name);
        // The owner replaces it; the GC looks at CIS it owned.
        if let Some(c) = &p.controller {
            let k = crate::cluster::KINDS
                .iter()
                .position(|(_, kind, _)| *kind == c.kind)
                .unwrap_or(0) as u8;
            self.reconcile_soon(k, ns, &c.name);
        }
        let cis: Vec<(String, String)> = self
            .cluster
            .cis
            .iter()
            .filter(|((n, _), c)| n == ns && c.owners.iter().any(|o| o.uid == p.uid))
            .map(|(k, _)| k.clone())
            .collect();
        for (cns, cname) in cis {
            let d = self.r_gc.between(100, 3_000);
            self.after(
                d,
                Event::GcCis {
                    ns: cns,
                    name: cname,
                },
            );
        }
        if self.cluster.namespaces.get(ns) == Some(&NsState::Terminating) {
            self.after(1_000, Event::NsFinalize { ns: ns.to_string() });
        }
    }

    /// Deletes a workload; dependents go through the garbage collector.
    pub fn delete_workload(&mut self, key: &(u8, String, String)) {
        let Some(w) = self.cluster.workloads.remove(key) else {
            return;
        };
        self.cluster.publish_workload(key);
        let d = self.r_world.between(100, 3_000);
        self.after(
            d,
            Event::Cascade {
                ns: key.1.clone(),
                owner_uid: w.uid,
            },
        );
    }

    /// Background cascade: dependents of `uid` are deleted.
    pub fn cascade(&mut self, ns: &str, uid: &str) {
        let children: Vec<(u8, String, String)> = self
            .cluster
            .workloads
            .iter()
            .filter(|((_, n, _), w)| n == ns && w.controller.as_ref().is_some_and(|c| c.uid == uid))
            .map(|(k, _)| k.clone())
            .collect();
        for c in children {
            self.delete_workload(&c);
        }
        let pods: Vec<(String, String)> = self
            .cluster
            .pods
            .iter()
            .filter(|((n, _), p)| n == ns && p.controller.as_ref().is_some_and(|c| c.uid == uid))
            .map(|(k, _)| k.clone())
            .collect();
        for (pns, pname) in pods {
            self.delete_pod(&pns, &pname);
        }
    }

    /// CronJob: a new Job every period; two kept.
    pub fn cron_tick(&mut self, ns: &str, name: &str) {
        let key = (kind::CRON, ns.to_string(), name.to_string());
        let Some(cj) = self.cluster.workloads.get_mut(&key) else {
            return;
        };
        if self.crons_suspended {
            return;
        }
        cj.children += 1;
        let job_name = format!("{name}-{}", 28_000_000 + cj.children);
        let cj = cj.clone();
        let period = cj.period_ms;
        let jkey = (kind::JOB, ns.to_string(), job_name.clone());
        let uid = self.cluster.uid();
        self.cluster.workloads.insert(
            jkey.clone(),
            SimWorkload {
                kind: kind::JOB,
                ns: ns.to_string(),
                name: job_name.clone(),
                uid,
                controller: Some(owner_ref(&cj)),
                ignore_unfixed: false,
                template: cj.template.clone(),
                replicas: 1,
                revision: 1,
                done: false,
                period_ms: 0,
                children: 0,
            },
        );
        self.cluster.publish_workload(&jkey);
        self.reconcile_soon(kind::JOB, ns, &job_name);
        let mut jobs = self.children_of(ns, &key);
        jobs.sort_by_key(|k| k.2.clone());
        while jobs.len() > cj.replicas as usize {
            let old = jobs.remove(0);
            self.delete_workload(&old);
        }
        self.after(
            period,
            Event::CronTick {
                ns: ns.to_string(),
                name: name.to_string(),
            },
        );
    }
}
