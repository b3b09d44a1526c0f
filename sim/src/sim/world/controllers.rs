//! Workload controllers: Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet, CronJob → Job
//! → Pod, custom kinds; each creates the pods of its template.

use image_scanner_core::port::{ContainerKind, OwnerRef};
use image_scanner_core::time::Timestamp;

use super::super::Sim;
use crate::cluster::{CState, SimContainer, SimPod, SimWorkload, Template, kind, owner_ref};
use crate::event::{Event, PodStep};
use crate::rng::Draw;

impl Sim {
    pub(super) fn reconcile_soon(&mut self, k: u8, ns: &str, name: &str) {
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

    pub(super) fn children_of(
        &self,
        ns: &str,
        owner: &(u8, String, String),
    ) -> Vec<(u8, String, String)> {
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

    pub(super) fn pods_of(&self, ns: &str, owner: &(u8, String, String)) -> Vec<(String, String)> {
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

    pub(super) fn new_replica_set(&mut self, deploy: &(u8, String, String)) {
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

    pub(super) fn create_pod(
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
