//! Deletion: pods with their grace period, workloads, and the ownerReference cascade.

use super::super::Sim;
use crate::cluster::NsState;
use crate::event::{Event, PodStep};
use crate::rng::Draw;

/// Grace period of pod deletion, ms.
const GRACE: (u64, u64) = (200, 20_000);

impl Sim {
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

    pub(super) fn delete_pod_later(&mut self, ns: &str, name: &str, ms: u64) {
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

    pub(super) fn delete_pod_now_marked(&mut self, ns: &str, name: &str) {
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
}
