//! The world around the operator: workload controllers (Deployment → ReplicaSet → Pod,
//! StatefulSet, DaemonSet, CronJob → Job → Pod, custom kinds, bare pods), the kubelet (a digest
//! appears only once a container runs; pull back-off), the garbage collector (ownerReference
//! cascade; CIS removed when all owner pods are gone), namespace deletion, and the scan Job
//! controller (pods, backoffLimit, activeDeadlineSeconds, TTL).

use std::collections::BTreeMap;
use std::sync::Arc;

use image_scanner::core::port::{ContainerKind, JobFinish, OwnerRef, ScanContainerState};
use image_scanner::core::time::Timestamp;

use crate::cluster::{
    CState, NsState, Plan, SCAN_NS, SimContainer, SimPod, SimScanPod, SimWorkload, Template, kind,
    owner_ref,
};
use crate::options::Fault;
use crate::rng::Draw;
use crate::sim::{Event, JobStep, PodStep, Sim};
use crate::workload::Op;

/// Grace period of pod deletion, ms.
const GRACE: (u64, u64) = (200, 20_000);

impl Sim {
    /// Applies a scripted op.
    pub fn apply_op(&mut self, index: usize, op: Op) {
        match op {
            Op::CreateNamespace(ns) => match self.cluster.namespaces.get(&ns) {
                Some(NsState::Terminating) => self.after(10_000, Event::Op(index)),
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
                let uid = self.uid();
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
                        self.after(d, Event::CronTick(ns, name));
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
                            self.after(d, Event::Reconcile(child.0, child.1, child.2));
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
                self.after(d, Event::Pod(ns, name, uid, PodStep::Restart));
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
        severity: Option<image_scanner::crd::Severity>,
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

    fn ns_active(&self, ns: &str) -> bool {
        self.cluster.namespaces.get(ns) == Some(&NsState::Active)
    }

    fn reconcile_soon(&mut self, k: u8, ns: &str, name: &str) {
        let d = self.r_world.between(50, 1_500);
        self.after(d, Event::Reconcile(k, ns.to_string(), name.to_string()));
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
        let uid = self.uid();
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
        let uid = self.uid();
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
        let pod = SimPod {
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
            Event::Pod(ns.to_string(), name.to_string(), uid, PodStep::Schedule),
        );
    }

    /// Kubelet.
    pub fn pod_step(&mut self, ns: &str, name: &str, uid: &str, step: PodStep) {
        let key = (ns.to_string(), name.to_string());
        let nodes = self.opts.nodes;
        let Some(p) = self.cluster.pods.get(&key) else {
            return;
        };
        if p.uid != uid {
            return;
        }
        if step == PodStep::Remove {
            self.remove_pod(ns, name);
            return;
        }
        if p.deleting {
            return;
        }
        let mut next: Vec<(u64, PodStep)> = Vec::new();
        let node = format!("node-{}", self.r_world.index(nodes));
        let pull_delay = self.r_world.between(300, 15_000);
        let ready_delay = self.r_world.between(300, 8_000);
        let run_delay = self.r_world.between(5_000, 90_000);
        let images = self.cluster.images.clone();
        let now = Timestamp(self.now).truncate_to_secs();
        let Some(p) = self.cluster.pods.get_mut(&key) else {
            return;
        };
        match step {
            PodStep::Schedule => {
                p.node = Some(node);
                next.push((pull_delay, PodStep::Start));
            }
            PodStep::Start | PodStep::Restart => {
                let mut all_running = true;
                for c in &mut p.containers {
                    if step == PodStep::Restart && c.kind == ContainerKind::Init {
                        continue;
                    }
                    c.running_image = c.image;
                    if !images[c.image].pullable {
                        c.state = CState::Waiting("ErrImagePull");
                        all_running = false;
                        continue;
                    }
                    c.state = match c.kind {
                        ContainerKind::Init => CState::Terminated(0),
                        _ => CState::Running,
                    };
                }
                if all_running {
                    p.phase = Some("Running");
                    p.start_time.get_or_insert(now);
                    p.ready = false;
                    if !p.never_ready {
                        next.push((ready_delay, PodStep::Ready));
                    }
                    if p.completes {
                        next.push((run_delay, PodStep::Complete));
                    }
                } else {
                    p.ready = false;
                    next.push((ready_delay, PodStep::BackOff));
                }
            }
            PodStep::BackOff => {
                for c in &mut p.containers {
                    if c.state == CState::Waiting("ErrImagePull") {
                        c.state = CState::Waiting("ImagePullBackOff");
                    }
                }
            }
            PodStep::Ready => {
                if p.phase == Some("Running") {
                    p.ready = true;
                }
            }
            PodStep::Complete => {
                if p.phase == Some("Running") {
                    for c in &mut p.containers {
                        if c.state == CState::Running {
                            c.state = CState::Terminated(0);
                        }
                    }
                    p.phase = Some("Succeeded");
                    p.ready = false;
                }
            }
            PodStep::Remove => {}
        }
        let completed_job = step == PodStep::Complete
            && p.completes
            && p.controller.as_ref().is_some_and(|c| c.kind == "Job");
        let controller = p.controller.clone();
        self.cluster.publish_pod(ns, name);
        for (d, s) in next {
            self.after(
                d,
                Event::Pod(ns.to_string(), name.to_string(), uid.to_string(), s),
            );
        }
        if completed_job
            && let Some(c) = controller
            && let Some(w) =
                self.cluster
                    .workloads
                    .get_mut(&(kind::JOB, ns.to_string(), c.name.clone()))
            && w.uid == c.uid
        {
            w.done = true;
        }
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
            Event::Pod(ns.to_string(), name.to_string(), uid, PodStep::Remove),
        );
    }

    fn delete_pod_later(&mut self, ns: &str, name: &str, ms: u64) {
        // Reuse the kubelet queue: a Restart-free deletion through a reconcile of nothing.
        let key = (ns.to_string(), name.to_string());
        if let Some(p) = self.cluster.pods.get(&key) {
            let uid = p.uid.clone();
            self.after(
                ms,
                Event::Pod(ns.to_string(), name.to_string(), uid, PodStep::Remove),
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

    fn remove_pod(&mut self, ns: &str, name: &str) {
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
            self.after(d, Event::GcCis(cns, cname));
        }
        if self.cluster.namespaces.get(ns) == Some(&NsState::Terminating) {
            self.after(1_000, Event::NsFinalize(ns.to_string()));
        }
    }

    /// Deletes a workload; dependents go through the garbage collector.
    pub fn delete_workload(&mut self, key: &(u8, String, String)) {
        let Some(w) = self.cluster.workloads.remove(key) else {
            return;
        };
        self.cluster.publish_workload(key);
        let d = self.r_world.between(100, 3_000);
        self.after(d, Event::Cascade(key.1.clone(), w.uid));
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
        let uid = self.uid();
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
        self.after(period, Event::CronTick(ns.to_string(), name.to_string()));
    }

    /// Deletes a namespace: everything in it goes, then the namespace.
    pub fn delete_namespace(&mut self, ns: &str) {
        if !self.ns_active(ns) {
            return;
        }
        self.cluster
            .namespaces
            .insert(ns.to_string(), NsState::Terminating);
        let workloads: Vec<(u8, String, String)> = self
            .cluster
            .workloads
            .keys()
            .filter(|(_, n, _)| n == ns)
            .cloned()
            .collect();
        for w in workloads {
            self.delete_workload(&w);
        }
        let pods: Vec<(String, String)> = self
            .cluster
            .pods
            .keys()
            .filter(|(n, _)| n == ns)
            .cloned()
            .collect();
        for (pns, pname) in pods {
            self.delete_pod(&pns, &pname);
        }
        let cis: Vec<(String, String)> = self
            .cluster
            .cis
            .keys()
            .filter(|(n, _)| n == ns)
            .cloned()
            .collect();
        for (cns, cname) in cis {
            self.delete_cis_object(&cns, &cname);
        }
        self.after(5_000, Event::NsFinalize(ns.to_string()));
    }

    /// Removes a terminating namespace once it is empty.
    pub fn ns_finalize(&mut self, ns: &str) {
        if self.cluster.namespaces.get(ns) != Some(&NsState::Terminating) {
            return;
        }
        let busy = self.cluster.pods.keys().any(|(n, _)| n == ns)
            || self.cluster.cis.keys().any(|(n, _)| n == ns)
            || self.cluster.workloads.keys().any(|(_, n, _)| n == ns);
        if busy {
            // Objects created meanwhile (e.g. a CIS apply that raced) are deleted too.
            let cis: Vec<(String, String)> = self
                .cluster
                .cis
                .keys()
                .filter(|(n, _)| n == ns)
                .cloned()
                .collect();
            for (cns, cname) in cis {
                self.delete_cis_object(&cns, &cname);
            }
            self.after(5_000, Event::NsFinalize(ns.to_string()));
        } else {
            self.cluster.namespaces.remove(ns);
        }
    }

    /// Deletes a CIS as the API server does: with finalizers it only gets a deletionTimestamp.
    pub fn delete_cis_object(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let Some(c) = self.cluster.cis.get_mut(&key) else {
            return;
        };
        if !c.finalizers.is_empty() {
            if !c.deleting {
                c.deleting = true;
                self.cluster.publish_cis(ns, name);
                let d = self.r_gc.between(1_000, 30_000);
                self.after(d, Event::Finalize(ns.to_string(), name.to_string()));
            }
            return;
        }
        self.cluster.cis.remove(&key);
        self.cluster.publish_cis(ns, name);
    }

    /// A foreign controller removes its finalizer.
    pub fn finalize_cis(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(c) = self.cluster.cis.get_mut(&key) {
            c.finalizers.clear();
            if c.deleting {
                self.cluster.cis.remove(&key);
                self.cluster.publish_cis(ns, name);
            }
        }
    }

    /// Garbage collector: a CIS none of whose owner pods exists is deleted.
    pub fn gc_cis(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let Some(c) = self.cluster.cis.get(&key) else {
            return;
        };
        if c.owners.is_empty() {
            return;
        }
        let alive = c.owners.iter().any(|o| {
            o.kind == "Pod"
                && self
                    .cluster
                    .pods
                    .get(&(ns.to_string(), o.name.clone()))
                    .is_some_and(|p| p.uid == o.uid)
        });
        if !alive {
            self.note(|| format!("gc cis {ns}/{name}"));
            self.delete_cis_object(ns, name);
        }
    }

    // ----- scan Job controller -----

    /// Scan Job controller steps.
    pub fn job_step(&mut self, name: &str, uid: &str, step: JobStep) {
        let Some(job) = self.cluster.jobs.get(name) else {
            return;
        };
        if job.uid != uid {
            return;
        }
        let job = job.clone();
        let now = Timestamp(self.now).truncate_to_secs();
        match step {
            JobStep::CreatePod => {
                if job.finished.is_some() || job.pod.is_some() {
                    return;
                }
                let pod_name = loop {
                    let n = format!("{name}-{}", self.r_jobs.hex(5));
                    if self.used_names.insert(n.clone()) {
                        break n;
                    }
                };
                let pod_uid = self.uid();
                self.cluster.scan_pods.insert(
                    pod_name.clone(),
                    SimScanPod {
                        name: pod_name.clone(),
                        uid: pod_uid,
                        job_uid: job.uid.clone(),
                        job_name: job.name.clone(),
                        created: now,
                        phase: "Pending",
                        init: ScanContainerState {
                            waiting_reason: Some("PodInitializing".to_string()),
                            ..ScanContainerState::default()
                        },
                        scan: ScanContainerState {
                            waiting_reason: Some("PodInitializing".to_string()),
                            ..ScanContainerState::default()
                        },
                        log: Arc::new(Vec::new()),
                        deleting: false,
                    },
                );
                if let Some(j) = self.cluster.jobs.get_mut(name) {
                    j.pod = Some(pod_name.clone());
                }
                self.cluster.publish_scan_pod(&pod_name);
                let d = self.r_jobs.between(500, 5_000);
                self.after(
                    d,
                    Event::Job(name.to_string(), uid.to_string(), JobStep::Init),
                );
            }
            JobStep::Init => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                let run = self.r_jobs.between(2_000, 60_000);
                let image = format!(
                    "{}@{}",
                    job.image.clone().unwrap_or_default(),
                    job.digest.clone().unwrap_or_default()
                );
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_name) else {
                    return;
                };
                if p.deleting || job.finished.is_some() {
                    return;
                }
                p.init = ScanContainerState {
                    exit_code: Some(0),
                    started: true,
                    ..ScanContainerState::default()
                };
                let mut backoff = false;
                if job.plan == Plan::PullBackOff {
                    p.scan = ScanContainerState {
                        waiting_reason: Some("ErrImagePull".to_string()),
                        waiting_message: Some(format!(
                            "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
                        )),
                        ..ScanContainerState::default()
                    };
                    backoff = true;
                } else {
                    p.phase = "Running";
                    p.scan = ScanContainerState {
                        started: true,
                        ..ScanContainerState::default()
                    };
                }
                self.cluster.publish_scan_pod(&pod_name);
                if backoff {
                    let d = self.r_jobs.between(1_000, 10_000);
                    self.after(
                        d,
                        Event::Job(name.to_string(), uid.to_string(), JobStep::BackOffEvent),
                    );
                } else if job.plan != Plan::Hang {
                    self.after(
                        run,
                        Event::Job(name.to_string(), uid.to_string(), JobStep::Exit),
                    );
                }
            }
            JobStep::BackOffEvent => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                let image = format!(
                    "{}@{}",
                    job.image.clone().unwrap_or_default(),
                    job.digest.clone().unwrap_or_default()
                );
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_name) else {
                    return;
                };
                if p.deleting {
                    return;
                }
                p.scan.waiting_reason = Some("ImagePullBackOff".to_string());
                p.scan.waiting_message = Some(format!("Back-off pulling image \"{image}\""));
                self.cluster.publish_scan_pod(&pod_name);
                self.broadcast_back_off(&pod_name);
                let d = self.r_jobs.between(10_000, 60_000);
                self.after(
                    d,
                    Event::Job(name.to_string(), uid.to_string(), JobStep::BackOffEvent),
                );
            }
            JobStep::Exit => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                if job.finished.is_some() {
                    return;
                }
                let (code, log) = match &job.plan {
                    Plan::Report { log, .. } => (0, log.clone()),
                    Plan::ExitFail { code, log } => (*code, log.clone()),
                    _ => return,
                };
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_name) else {
                    return;
                };
                if p.deleting {
                    return;
                }
                p.log = log;
                p.scan.exit_code = Some(code);
                p.scan.started = true;
                let finish = if code == 0 {
                    p.phase = "Succeeded";
                    Some(JobFinish {
                        succeeded: true,
                        at: now,
                        reason: "CompletionsReached".to_string(),
                        message: "Reached expected number of succeeded pods".to_string(),
                    })
                } else if job.failures + 1 > job.backoff_limit {
                    p.phase = "Failed";
                    Some(JobFinish {
                        succeeded: false,
                        at: now,
                        reason: "BackoffLimitExceeded".to_string(),
                        message: "Job has reached the specified backoff limit".to_string(),
                    })
                } else {
                    None
                };
                self.cluster.publish_scan_pod(&pod_name);
                match finish {
                    Some(f) => self.finish_job(name, f),
                    None => {
                        // restartPolicy OnFailure: the container restarts in the same pod.
                        if let Some(j) = self.cluster.jobs.get_mut(name) {
                            j.failures += 1;
                        }
                        let run = self.r_jobs.between(5_000, 40_000);
                        if let Some(p) = self.cluster.scan_pods.get_mut(&pod_name) {
                            p.scan.exit_code = None;
                        }
                        self.cluster.publish_scan_pod(&pod_name);
                        self.after(
                            run,
                            Event::Job(name.to_string(), uid.to_string(), JobStep::Exit),
                        );
                    }
                }
            }
            JobStep::Deadline => {
                if job.finished.is_some() {
                    return;
                }
                self.finish_job(
                    name,
                    JobFinish {
                        succeeded: false,
                        at: now,
                        reason: "DeadlineExceeded".to_string(),
                        message: "Job was active longer than specified deadline".to_string(),
                    },
                );
                if let Some(p) = job.pod {
                    self.delete_scan_pod(&p);
                }
            }
            JobStep::Ttl => {
                self.note(|| format!("ttl delete job {name}"));
                self.delete_job_object(name);
            }
        }
    }

    fn finish_job(&mut self, name: &str, finish: JobFinish) {
        let Some(j) = self.cluster.jobs.get_mut(name) else {
            return;
        };
        j.finished = Some(finish.clone());
        let uid = j.uid.clone();
        let mut ttl = u64::try_from(j.ttl_s).unwrap_or(0) * 1000;
        if let Some(rec) = self.cluster.job_registry.get_mut(&uid) {
            rec.finished = true;
            rec.succeeded = finish.succeeded;
        }
        self.cluster.publish_job(name);
        if self.fault(Fault::TtlDelete, 5.0) {
            ttl = self.r_faults.between(0, 3_000);
        }
        self.after(ttl, Event::Job(name.to_string(), uid, JobStep::Ttl));
    }

    /// Deletes a Job with background propagation: gone at once, its pod follows.
    pub fn delete_job_object(&mut self, name: &str) {
        let Some(j) = self.cluster.jobs.remove(name) else {
            return;
        };
        self.cluster.publish_job(name);
        if let Some(p) = j.pod {
            self.delete_scan_pod(&p);
        }
    }

    /// Graceful deletion of a scan pod.
    pub fn delete_scan_pod(&mut self, name: &str) {
        let Some(p) = self.cluster.scan_pods.get_mut(name) else {
            return;
        };
        if p.deleting {
            return;
        }
        p.deleting = true;
        let uid = p.uid.clone();
        let d = self.r_jobs.between(500, 10_000);
        self.after(d, Event::ScanPodRemove(name.to_string(), uid));
    }

    /// A scan pod's graceful deletion ends.
    pub fn scan_pod_remove(&mut self, name: &str, uid: &str) {
        if self
            .cluster
            .scan_pods
            .get(name)
            .is_some_and(|p| p.uid == uid)
        {
            self.cluster.scan_pods.remove(name);
            self.cluster.publish_scan_pod(name);
        }
    }

    /// Users delete things at random (deletion races).
    pub fn user_delete(&mut self) {
        match self.r_faults.index(3) {
            0 => {
                let keys: Vec<(String, String)> = self.cluster.cis.keys().cloned().collect();
                if !keys.is_empty() {
                    let (ns, name) = keys[self.r_faults.index(keys.len())].clone();
                    self.note(|| format!("user deletes cis {ns}/{name}"));
                    self.delete_cis_object(&ns, &name);
                }
            }
            1 => {
                let keys: Vec<String> = self.cluster.jobs.keys().cloned().collect();
                if !keys.is_empty() {
                    let name = keys[self.r_faults.index(keys.len())].clone();
                    self.note(|| format!("user deletes job {name}"));
                    self.delete_job_object(&name);
                }
            }
            _ => {
                let keys: Vec<String> = self.cluster.scan_pods.keys().cloned().collect();
                if !keys.is_empty() {
                    let name = keys[self.r_faults.index(keys.len())].clone();
                    self.note(|| format!("user deletes scan pod {name}"));
                    self.delete_scan_pod(&name);
                }
            }
        }
    }

    /// The namespace of scan Jobs.
    pub fn scan_ns() -> &'static str {
        SCAN_NS
    }

    /// Pods by their owner chain: (ns, name) → top workload (kind, name, uid), if every link
    /// is a configured kind that exists (sim truth, for the oracle).
    pub fn top_workload(&self, p: &SimPod) -> Option<(String, String, String)> {
        let Some(mut c) = p.controller.clone() else {
            return Some(("Pod".to_string(), p.name.clone(), p.uid.clone()));
        };
        let configured = |k: &str| {
            crate::cluster::KINDS[..kind::CONFIGURED as usize]
                .iter()
                .any(|(_, kind, _)| *kind == k)
        };
        if !configured(&c.kind) {
            return None;
        }
        for _ in 0..8 {
            let k = crate::cluster::KINDS
                .iter()
                .position(|(_, kind, _)| *kind == c.kind)? as u8;
            let w = self
                .cluster
                .workloads
                .get(&(k, p.ns.clone(), c.name.clone()))?;
            if w.uid != c.uid {
                return None;
            }
            match &w.controller {
                Some(next) if configured(&next.kind) => c = next.clone(),
                _ => return Some((c.kind.clone(), w.name.clone(), w.uid.clone())),
            }
        }
        None
    }

    /// Pod settledness by sim truth (the oracle's rule).
    pub fn settled(&self, p: &SimPod, timeout_ms: i64) -> bool {
        if p.deleting {
            return false;
        }
        if p.containers.iter().any(|c| {
            matches!(
                c.state,
                CState::Waiting("ErrImagePull") | CState::Waiting("ImagePullBackOff")
            )
        }) {
            return false;
        }
        match p.phase {
            Some("Succeeded" | "Failed") => true,
            Some("Running") => {
                p.ready || p.start_time.is_some_and(|s| s.0 + timeout_ms <= self.now)
            }
            _ => false,
        }
    }

    /// Every CIS the world asks for, by sim truth: key → (digest, image repo, kind, workload
    /// name, workload uid, container, owner pod uids, settled).
    pub fn expected_cis(
        &self,
        cfg: &image_scanner::core::engine::EngineConfig,
    ) -> BTreeMap<(String, String), Expected> {
        let timeout = cfg.pod_settle_timeout.as_millis() as i64;
        let mut out: BTreeMap<(String, String), Expected> = BTreeMap::new();
        for p in self.cluster.pods.values() {
            if p.deleting || !cfg.namespace_allowed(&p.ns) {
                continue;
            }
            let Some((k, wname, wuid)) = self.top_workload(p) else {
                continue;
            };
            let settled = self.settled(p, timeout);
            for c in &p.containers {
                if !matches!(c.state, CState::Running | CState::Terminated(_)) {
                    continue;
                }
                let img = &self.cluster.images[c.running_image];
                let name = image_scanner::core::naming::cis_name(
                    &k,
                    &wname,
                    &c.name,
                    &img.repo,
                    &img.digest,
                );
                let e = out.entry((p.ns.clone(), name)).or_insert_with(|| Expected {
                    digest: img.digest.clone(),
                    kind: k.clone(),
                    workload: wname.clone(),
                    workload_uid: wuid.clone(),
                    container: c.name.clone(),
                    owners: Vec::new(),
                    settled: false,
                });
                e.owners.push(p.uid.clone());
                e.settled |= settled;
            }
        }
        out
    }
}

/// A CIS the world asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Digest.
    pub digest: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub workload: String,
    /// Workload UID.
    pub workload_uid: String,
    /// Container.
    pub container: String,
    /// Owner pod UIDs.
    pub owners: Vec<String>,
    /// Some owner is settled.
    pub settled: bool,
}
