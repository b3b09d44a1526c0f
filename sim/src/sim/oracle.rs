//! The oracle: what the world asks of the operator, computed from sim truth independently of
//! the core. Which CIS must exist ([`Sim::expected_cis`]), and what scanning a digest can
//! achieve given where it runs and with which credentials ([`Sim::reach`], KEP-2535).

use std::collections::{BTreeMap, BTreeSet};

use image_scanner_core::engine::EngineConfig;
use image_scanner_core::port::PullCredentials;

use super::Sim;
use crate::checks::MAX_WORKLOAD_PLACEMENTS;
use crate::cluster::{CState, NsState, SCAN_NS, SimPod, kind};
use crate::kubelet::Access;

/// The `Stalled` reason when the registry refuses every placement's credentials.
pub const PULL_UNAUTHORIZED: &str = "ImagePullUnauthorized";
/// The `Stalled` reason when every placement's namespace refuses the scan pod or Job.
pub const SCAN_POD_REJECTED: &str = "ScanPodRejected";
/// Nodes a scan Job prefers at most (`scan_job::MAX_PREFERRED_NODES`).
const MAX_PREFERRED_NODES: usize = 10;

/// What a scan Job of a digest can achieve, over every placement the core may choose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Some placement gets the image on every node its pod may land on: the digest's scans
    /// end as its scanner truth says.
    Works,
    /// No placement always works, some sometimes (the scheduler's choice among preferred nodes
    /// with the gate on and off): either ending is right.
    Mixed,
    /// Every placement fails: the scan ends `Stalled` with one of these reasons.
    Fails(BTreeSet<&'static str>),
}

impl Reach {
    fn merge(self, other: Reach) -> Reach {
        match (self, other) {
            (Reach::Works, _) | (_, Reach::Works) => Reach::Works,
            (Reach::Mixed, _) | (_, Reach::Mixed) => Reach::Mixed,
            (Reach::Fails(mut a), Reach::Fails(b)) => {
                a.extend(b);
                Reach::Fails(a)
            }
        }
    }
}

impl Sim {
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
        cfg: &image_scanner_core::engine::EngineConfig,
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
                let name = image_scanner_core::naming::cis_name(
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

    /// The CIS that must exist at rest: created once a member settled, kept while members
    /// exist.
    pub fn asked_cis(&self, cfg: &EngineConfig) -> BTreeMap<(String, String), Expected> {
        let mut expected = self.expected_cis(cfg);
        expected.retain(|k, e| e.settled || self.cluster.cis.get(k).is_some_and(|c| !c.deleting));
        expected
    }

    /// [`Sim::reach`] of every digest of `expected`. Placements beyond the core's bound count
    /// too: a digest that only they could scan is a finding, not an excuse.
    pub fn reaches(
        &self,
        cfg: &EngineConfig,
        expected: &BTreeMap<(String, String), Expected>,
    ) -> BTreeMap<String, Reach> {
        self.members(expected)
            .into_iter()
            .map(|(d, pods)| {
                let reach = self.reach(cfg, &d, &pods, false);
                (d, reach)
            })
            .collect()
    }

    /// The pods that run each digest: the owners of the CIS the world asks for.
    pub fn members<'a>(
        &'a self,
        expected: &BTreeMap<(String, String), Expected>,
    ) -> BTreeMap<String, Vec<&'a SimPod>> {
        let by_uid: BTreeMap<&str, &SimPod> = self
            .cluster
            .pods
            .values()
            .map(|p| (p.uid.as_str(), p))
            .collect();
        let mut out: BTreeMap<String, Vec<&SimPod>> = BTreeMap::new();
        for e in expected.values() {
            let pods = out.entry(e.digest.clone()).or_default();
            for uid in &e.owners {
                if let Some(p) = by_uid.get(uid.as_str()) {
                    pods.push(p);
                }
            }
        }
        out
    }

    /// What scanning `digest`, run by `members`, can achieve now: the scan namespace and the
    /// (namespace, credentials) of the members with imagePullSecrets (the first
    /// [`MAX_WORKLOAD_PLACEMENTS`] in order, when `capped`), each on the nodes its Job
    /// prefers (those of the pods it was taken from, else of all members).
    pub fn reach(
        &self,
        cfg: &EngineConfig,
        digest: &str,
        members: &[&SimPod],
        capped: bool,
    ) -> Reach {
        type Placement = Option<(String, std::sync::Arc<PullCredentials>)>;
        let mut placements: Vec<Placement> = Vec::new();
        if cfg.workload_placement {
            let mut workloads: Vec<(String, std::sync::Arc<PullCredentials>)> = members
                .iter()
                .filter_map(|p| p.pull.clone().map(|c| (p.ns.clone(), c)))
                .collect();
            workloads.sort();
            workloads.dedup();
            if capped {
                workloads.truncate(MAX_WORKLOAD_PLACEMENTS);
            }
            placements.extend(workloads.into_iter().map(Some));
        }
        placements.push(None);
        let mut reach: Option<Reach> = None;
        for placement in placements {
            let matching: BTreeSet<&str> = members
                .iter()
                .filter(|p| match &placement {
                    None => p.pull.is_none(),
                    Some((ns, creds)) => p.ns == *ns && p.pull.as_ref() == Some(creds),
                })
                .filter_map(|p| p.node.as_deref())
                .collect();
            let mut nodes: Vec<String> = if matching.is_empty() {
                members
                    .iter()
                    .filter_map(|p| p.node.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            } else {
                matching.into_iter().map(str::to_string).collect()
            };
            nodes.truncate(MAX_PREFERRED_NODES);
            if nodes.is_empty() {
                nodes = (0..self.opts.nodes).map(|i| format!("node-{i}")).collect();
            }
            let (ns, creds) = match &placement {
                None => (SCAN_NS, None),
                Some((ns, creds)) => (ns.as_str(), Some(creds.as_ref())),
            };
            let here = self.placement_reach(ns, creds, digest, &nodes);
            reach = Some(match reach {
                None => here,
                Some(r) => r.merge(here),
            });
        }
        reach.unwrap_or(Reach::Works)
    }

    fn placement_reach(
        &self,
        ns: &str,
        creds: Option<&PullCredentials>,
        digest: &str,
        nodes: &[String],
    ) -> Reach {
        let rejected = || Reach::Fails([SCAN_POD_REJECTED].into());
        if ns != SCAN_NS {
            let setup = self.kubelet.opts.setup(ns);
            if setup.forbidden || self.cluster.namespaces.get(ns) != Some(&NsState::Active) {
                return rejected();
            }
            if self
                .kubelet
                .pod_rejection(ns, &self.scan_template)
                .is_some()
            {
                return rejected();
            }
        }
        let ok = nodes
            .iter()
            .filter(|node| {
                !matches!(
                    self.kubelet.access(node, digest, "", ns, creds, self.now),
                    Access::Denied(_)
                )
            })
            .count();
        if ok == nodes.len() {
            Reach::Works
        } else if ok == 0 {
            Reach::Fails([PULL_UNAUTHORIZED].into())
        } else {
            Reach::Mixed
        }
    }
}

/// A CIS the world asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub digest: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub workload: String,
    pub workload_uid: String,
    pub container: String,
    /// Owner pod UIDs.
    pub owners: Vec<String>,
    /// Some owner is settled.
    pub settled: bool,
}
