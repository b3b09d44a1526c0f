//! Namespace deletion (everything in it goes, then the namespace), CIS deletion as the API
//! server does it (finalizers), and the garbage collector of CIS whose owner pods are gone.

use image_scanner_core::exception::ExceptionKey;
use std::collections::BTreeMap;

use super::Sim;
use crate::cluster::NsState;
use crate::event::Event;
use crate::rng::Draw;

impl Sim {
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
        for (pns, pname) in keys_in(&self.cluster.pods, ns) {
            self.delete_pod(&pns, &pname);
        }
        // Scan Jobs placed here go with the namespace, and so do its Events.
        self.delete_cis_and_jobs_in(ns);
        self.cluster.job_events.retain(|(n, _, _), _| n != ns);
        self.after(5_000, Event::NsFinalize { ns: ns.to_string() });
    }

    /// Removes a terminating namespace once it is empty.
    pub fn ns_finalize(&mut self, ns: &str) {
        if self.cluster.namespaces.get(ns) != Some(&NsState::Terminating) {
            return;
        }
        let busy = self.cluster.pods.keys().any(|(n, _)| n == ns)
            || self.cluster.cis.keys().any(|(n, _)| n == ns)
            || self.cluster.workloads.keys().any(|(_, n, _)| n == ns)
            || self.cluster.scan_pods.keys().any(|(n, _)| n == ns);
        if busy {
            // Objects created meanwhile (e.g. a CIS apply that raced) are deleted too.
            self.delete_cis_and_jobs_in(ns);
            self.after(5_000, Event::NsFinalize { ns: ns.to_string() });
        } else {
            self.cluster.namespaces.remove(ns);
        }
    }

    /// Deletes the CIS and scan Jobs of a terminating namespace.
    fn delete_cis_and_jobs_in(&mut self, ns: &str) {
        for (cns, cname) in keys_in(&self.cluster.cis, ns) {
            self.delete_cis_object(&cns, &cname);
        }
        let exceptions: Vec<ExceptionKey> = (self.cluster.exceptions.keys())
            .filter(|k| matches!(k, ExceptionKey::Namespaced { namespace, .. } if namespace == ns))
            .cloned()
            .collect();
        for key in exceptions {
            self.cluster.exceptions.remove(&key);
            self.cluster.exception_ledger.record(&key, None, self.now);
            self.cluster.publish_exception(&key);
        }
        for key in keys_in(&self.cluster.jobs, ns) {
            self.delete_job_object(&key);
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
                self.after(
                    d,
                    Event::Finalize {
                        ns: ns.to_string(),
                        name: name.to_string(),
                    },
                );
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
}

/// The (namespace, name) keys of `objects` in `ns`.
fn keys_in<V>(objects: &BTreeMap<(String, String), V>, ns: &str) -> Vec<(String, String)> {
    objects.keys().filter(|(n, _)| n == ns).cloned().collect()
}
