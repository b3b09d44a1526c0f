//! Safety invariants, checked at the moment the API server accepts a write (and in periodic
//! sweeps of the whole state). The oracles are written independently of the core: filtering,
//! summary counting, §10.3 ordering and the truncation shape are recomputed here from the
//! scanner truth the simulator generated.

use std::collections::{BTreeMap, VecDeque};

use image_scanner_api::{
    ContainerImageScanSpec, ContainerImageScanStatus, Severity, Vulnerability, VulnerabilitySummary,
};
use image_scanner_core::port::OwnerRef;

use crate::cluster::{Cluster, Plan};
use crate::kubelet::{Access, Kubelet};

/// Collected violations.
#[derive(Debug, Default)]
pub struct Checker {
    /// `t=… [code] message` lines.
    pub violations: Vec<String>,
    /// Late writes of deposed leaders (exempt from the monotonicity checks).
    pub late_regressions: u64,
    /// Per (instance, incarnation, digest): when its Job creations reached the server within
    /// the last window.
    pub job_creates: BTreeMap<(usize, u32, String), VecDeque<i64>>,
    /// Creations not counted: the digest's result is stamped in the server's future (known
    /// limitation, see `on_job_create_attempt`).
    pub job_creates_exempt: u64,
    /// Per digest: the latest `lastScanTime` (ms) any status write carried.
    pub stamps: BTreeMap<String, i64>,
    /// The most creations of one digest's Jobs within a window so far.
    pub max_job_creates: usize,
}

/// Workload placements the core tries per round at most (`engine::placement`'s
/// `MAX_WORKLOAD_PLACEMENTS`, not exported): the oracle follows the same bound.
pub const MAX_WORKLOAD_PLACEMENTS: usize = 3;

/// The window of the Job creation bound (S9).
pub const JOB_CREATE_WINDOW_MS: i64 = 600_000;
/// Job creations of one digest allowed within the window: a round tries each placement once
/// (at most [`MAX_WORKLOAD_PLACEMENTS`] + 1), failed rounds back off from two
/// minutes on (so three rounds fit), and transient failures, user deletions and taken names
/// add a few. Seeds 0..2000 reach 12 at most.
pub const JOB_CREATE_LIMIT: usize = 4 * (MAX_WORKLOAD_PLACEMENTS + 1);

fn filtered<'a>(
    vulns: &'a [Vulnerability],
    spec: &ContainerImageScanSpec,
) -> Vec<&'a Vulnerability> {
    let min = spec.min_severity.unwrap_or(Severity::Unknown);
    let iu = spec.ignore_unfixed == Some(true);
    vulns
        .iter()
        .filter(|v| v.severity >= min && !(iu && v.fixed_version.is_empty()))
        .collect()
}

/// The summary a CIS with `spec` must show for `vulns`.
pub fn expected_summary(
    vulns: &[Vulnerability],
    spec: &ContainerImageScanSpec,
) -> VulnerabilitySummary {
    let min = spec.min_severity.unwrap_or(Severity::Unknown);
    let f = filtered(vulns, spec);
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for s in [
        Severity::Unknown,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ] {
        if s >= min {
            counts.insert(s.as_str().to_string(), 0);
        }
    }
    let mut fixed = 0;
    let mut fixed_counts = counts.clone();
    for v in &f {
        *counts.entry(v.severity.as_str().to_string()).or_insert(0) += 1;
        let fixable = fixed_counts
            .entry(v.severity.as_str().to_string())
            .or_insert(0);
        if !v.fixed_version.is_empty() {
            fixed += 1;
            *fixable += 1;
        }
    }
    VulnerabilitySummary {
        severity_count: Some(counts),
        fixed_count: fixed,
        unfixed_count: f.len() as i32 - fixed,
        fixed_severity_count: Some(fixed_counts),
    }
}

fn sorted(vulns: &[&Vulnerability]) -> Vec<Vulnerability> {
    let mut v: Vec<Vulnerability> = vulns.iter().map(|x| (*x).clone()).collect();
    v.sort_by(|a, b| {
        (
            a.severity as u8,
            &a.pkg_name,
            &a.installed_version,
            &a.vulnerability_id,
        )
            .cmp(&(
                b.severity as u8,
                &b.pkg_name,
                &b.installed_version,
                &b.vulnerability_id,
            ))
    });
    v
}

fn stalled(s: &ContainerImageScanStatus) -> Option<&str> {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
        .map(|c| c.reason.as_str())
}

impl Checker {
    /// Records a violation.
    pub fn violation(&mut self, now: i64, code: &str, message: String) {
        if self.violations.len() < 50 {
            self.violations
                .push(format!("t={} [{code}] {message}", now - crate::cluster::T0));
        }
    }

    /// S1/S2 on a CIS apply: the name is a function of the key; owners are pods; one CIS per
    /// (workload, container, digest).
    #[allow(clippy::too_many_arguments)]
    pub fn on_apply_cis(
        &mut self,
        now: i64,
        cluster: &Cluster,
        ns: &str,
        name: &str,
        _labels: &BTreeMap<String, String>,
        owners: &[OwnerRef],
        spec: &ContainerImageScanSpec,
    ) {
        let w = &spec.workload;
        let expected = image_scanner_core::naming::cis_name(
            &w.kind,
            &w.name,
            &w.container_name,
            &spec.name,
            &spec.digest,
        );
        if expected != name {
            self.violation(
                now,
                "S1",
                format!("CIS {ns}/{name} should be named {expected}"),
            );
        }
        if owners.is_empty()
            || owners
                .iter()
                .any(|o| o.kind != "Pod" || o.api_version != "v1")
        {
            self.violation(
                now,
                "S2",
                format!("CIS {ns}/{name} owners must be pods: {owners:?}"),
            );
        }
        if spec.min_severity.is_some() {
            self.violation(
                now,
                "S2",
                format!("CIS {ns}/{name}: the operator sent spec.minSeverity"),
            );
        }
        if !cluster.namespaces.contains_key(ns) {
            return;
        }
        for ((n, other), c) in cluster.cis.range((ns.to_string(), String::new())..) {
            if n != ns {
                break;
            }
            if other != name
                && c.spec.digest == spec.digest
                && c.spec.name == spec.name
                && c.spec.workload.uid == w.uid
                && c.spec.workload.container_name == w.container_name
            {
                self.violation(
                    now,
                    "S1",
                    format!(
                        "CIS {ns}/{name} duplicates {ns}/{other} (same workload, container, image)"
                    ),
                );
            }
        }
    }

    /// Nothing to check beyond the UID precondition the server enforces.
    pub fn on_delete_cis(&mut self, _now: i64, _cluster: &Cluster, _key: &(String, String)) {}

    /// S4/S5 on a status write the server accepted (before it is stored).
    #[allow(clippy::too_many_arguments)]
    pub fn on_status(
        &mut self,
        now: i64,
        cluster: &Cluster,
        kubelet: &Kubelet,
        key: &(String, String),
        new: &ContainerImageScanStatus,
        budget: usize,
        orphan: bool,
    ) {
        let Some(c) = cluster.cis.get(key) else {
            return;
        };
        if let Some(t) = &new.last_scan_time {
            let stamp = self.stamps.entry(c.spec.digest.clone()).or_default();
            *stamp = (*stamp).max(t.0.as_millisecond());
        }
        let who = format!(
            "{}/{}{}",
            key.0,
            key.1,
            if orphan { " (late write)" } else { "" }
        );
        // Monotonicity is checked against what current leaders wrote: a late write of a
        // deposed leader may have moved the stored status (see below).
        let old = c.legit.clone().unwrap_or_default();
        // What the write preserves is checked against what is stored, unless a late write of a
        // deposed leader stored it.
        let stored_is_legit = c.legit == c.status;
        // A write of a deposed leader that lands late carries the view it was computed from;
        // without a resourceVersion precondition (the port has only a UID precondition) it may
        // move the result back until the new leader rewrites it. Counted, checked for
        // fidelity, not for monotonicity.
        let old = if orphan {
            self.late_regressions += 1;
            new.clone()
        } else {
            old
        };
        match new.observed_generation {
            None => self.violation(
                now,
                "S4",
                format!("{who}: status without observedGeneration"),
            ),
            Some(g) if g > c.generation => self.violation(
                now,
                "S4",
                format!(
                    "{who}: observedGeneration {g} > generation {}",
                    c.generation
                ),
            ),
            Some(g) if old.observed_generation.is_some_and(|o| g < o) => self.violation(
                now,
                "S4",
                format!(
                    "{who}: observedGeneration went back {:?} -> {g}",
                    old.observed_generation
                ),
            ),
            _ => {}
        }
        let t = |x: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            x.as_ref().map(|t| t.0.as_second())
        };
        // The same Job's result may be stamped by two replicas (each harvests it at its own
        // `now` after a failover): only a move to an older result or an older time for a
        // different Job is a regression.
        let same_job = new.last_scan_job_uid == old.last_scan_job_uid;
        if !same_job && t(&new.last_scan_time) < t(&old.last_scan_time) {
            self.violation(
                now,
                "S4",
                format!(
                    "{who}: lastScanTime went back {:?} -> {:?}",
                    t(&old.last_scan_time),
                    t(&new.last_scan_time)
                ),
            );
        }
        if !same_job && t(&new.last_successful_scan_time) < t(&old.last_successful_scan_time) {
            self.violation(
                now,
                "S4",
                format!("{who}: lastSuccessfulScanTime went back"),
            );
        }
        let record = new
            .last_scan_job_uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .and_then(|u| cluster.job_registry.get(u));
        let reconciling = new
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Reconciling");
        if new.last_scan_job_uid != old.last_scan_job_uid {
            match new.last_scan_job_uid.as_deref() {
                None => self.violation(now, "S4", format!("{who}: lastScanJobUID removed")),
                // A failure without a Job (none could be created), also while the next scan
                // is announced.
                Some("") if stalled(new).is_some() || reconciling => {}
                Some(u) => {
                    match record {
                        None => self.violation(
                            now,
                            "S4",
                            format!("{who}: lastScanJobUID {u} is no Job of ours"),
                        ),
                        Some(r) => {
                            if r.digest.as_deref() != Some(c.spec.digest.as_str()) {
                                self.violation(
                                    now,
                                    "S4",
                                    format!(
                                        "{who}: written from Job {} of digest {:?}, CIS digest {}",
                                        r.name, r.digest, c.spec.digest
                                    ),
                                );
                            }
                            if let Some(o) = old
                                .last_scan_job_uid
                                .as_deref()
                                .and_then(|o| cluster.job_registry.get(o))
                                && r.created_rv < o.created_rv
                                // Jobs created in one second are of the same age to any
                                // client: creationTimestamp has whole seconds.
                                && r.created < o.created
                            {
                                self.violation(now, "S4", format!("{who}: lastScanJobUID went back from Job {} to older Job {}", o.name, r.name));
                            }
                        }
                    }
                }
            }
        } else if let (Some(r), false) = (record, orphan)
            && r.digest.as_deref() != Some(c.spec.digest.as_str())
        {
            self.violation(
                now,
                "S4",
                format!("{who}: shows Job {} of another digest", r.name),
            );
        }
        match (stalled(new), reconciling) {
            (Some(reason), _) => {
                if stored_is_legit
                    && (new.last_successful_scan_time != old.last_successful_scan_time
                        || new.vulnerability_summary != old.vulnerability_summary
                        || new.vulnerabilities != old.vulnerabilities)
                {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: a failure changed the last successful result"),
                    );
                }
                if reason == "ScanReportDecodeError"
                    && let Some(r) = record
                    && matches!(r.plan, Plan::Report { valid: true, .. })
                {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: decode error for the valid report of Job {}", r.name),
                    );
                }
            }
            (None, true) => {
                if stored_is_legit
                    && (new.last_scan_job_uid != old.last_scan_job_uid
                        || new.last_scan_time != old.last_scan_time
                        || new.last_successful_scan_time != old.last_successful_scan_time
                        || new.vulnerability_summary != old.vulnerability_summary)
                {
                    self.violation(
                        now,
                        "S4",
                        format!("{who}: ScanJobCreated changed the result"),
                    );
                }
            }
            (None, false) => {
                if new.last_scan_job_uid.is_none() {
                    if new != &old {
                        self.violation(
                            now,
                            "S5",
                            format!("{who}: a status without result or condition"),
                        );
                    }
                    return;
                }
                if new.last_successful_scan_time != new.last_scan_time {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: success with lastSuccessfulScanTime != lastScanTime"),
                    );
                }
                let Some(r) = record else {
                    return;
                };
                if !r.succeeded {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: success from Job {} which did not complete", r.name),
                    );
                }
                // KEP-2535: its scan pod really got the image. What nodes hold only grows, so
                // asking now with the start time is generous, never strict.
                if let Some((node, at)) = &r.started
                    && let Access::Denied(_) =
                        kubelet.access(node, &c.spec.digest, "", &r.ns, r.pull.as_deref(), *at)
                {
                    self.violation(
                        now,
                        "S5",
                        format!(
                            "{who}: success from Job {}/{} whose pod on {node} could not have used or pulled the image",
                            r.ns, r.name
                        ),
                    );
                }
                let Some(vulns) = &r.vulns else {
                    self.violation(
                        now,
                        "S5",
                        format!(
                            "{who}: success from Job {} whose log was no valid report",
                            r.name
                        ),
                    );
                    return;
                };
                let g = new.observed_generation.unwrap_or(c.generation);
                let spec = c.spec_history.get(&g).unwrap_or(&c.spec);
                self.check_result(now, &who, vulns, spec, new, budget);
            }
        }
    }

    fn check_result(
        &mut self,
        now: i64,
        who: &str,
        vulns: &[Vulnerability],
        spec: &ContainerImageScanSpec,
        new: &ContainerImageScanStatus,
        budget: usize,
    ) {
        let want = expected_summary(vulns, spec);
        if new.vulnerability_summary.as_ref() != Some(&want) {
            self.violation(
                now,
                "S5",
                format!(
                    "{who}: summary {:?} != expected {want:?}",
                    new.vulnerability_summary
                ),
            );
        }
        let f = filtered(vulns, spec);
        let all = sorted(&f);
        let Some(details) = &new.vulnerabilities else {
            self.violation(now, "S5", format!("{who}: success without details"));
            return;
        };
        match &new.vulnerabilities_truncated {
            None => {
                if *details != all {
                    self.violation(
                        now,
                        "S5",
                        format!(
                            "{who}: details ({}) are not the sorted filtered report ({})",
                            details.len(),
                            all.len()
                        ),
                    );
                }
                let size = serde_json::to_vec(details).map_or(0, |v| v.len());
                if size > budget {
                    self.violation(now, "S5", format!("{who}: {size} bytes of details exceed the budget {budget} without truncation"));
                }
            }
            Some(t) => {
                let n = all.len();
                let k = details.len();
                if k > n || details[..] != all[n - k..] {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: truncated details are not the top-ranked tail"),
                    );
                    return;
                }
                if t.dropped_count as usize != n - k {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: droppedCount {} != {}", t.dropped_count, n - k),
                    );
                }
                let kept_min = details.first().map(|v| v.severity);
                let mut sev: Vec<Severity> = Vec::new();
                for v in &all[..n - k] {
                    if kept_min.is_none_or(|m| v.severity < m) && !sev.contains(&v.severity) {
                        sev.push(v.severity);
                    }
                }
                if t.dropped_severities != sev {
                    self.violation(
                        now,
                        "S5",
                        format!(
                            "{who}: droppedSeverities {:?} != {sev:?}",
                            t.dropped_severities
                        ),
                    );
                }
                let size = serde_json::to_vec(details).map_or(0, |v| v.len());
                if size as i64 > t.budget_bytes && !details.is_empty() {
                    self.violation(
                        now,
                        "S5",
                        format!(
                            "{who}: details of {size} bytes exceed their budget {}",
                            t.budget_bytes
                        ),
                    );
                }
                if n == k {
                    self.violation(
                        now,
                        "S5",
                        format!("{who}: truncation marker without anything dropped"),
                    );
                }
            }
        }
    }

    /// S3 when the server creates a scan Job.
    /// `known`: whether the creating instance could know of a Job (it created it, or its Job
    /// watch had delivered the creation): a cache that lags is eventually consistent, not a
    /// bug of the decision, so the limit is checked against what the creator could see.
    pub fn on_job_created(
        &mut self,
        now: i64,
        cluster: &Cluster,
        key: &(String, String),
        limit: u32,
        known: impl Fn(&crate::cluster::SimJob) -> bool,
    ) {
        let Some(j) = cluster.jobs.get(key) else {
            return;
        };
        let name = format!("{}/{}", key.0, key.1);
        let active: Vec<_> = cluster
            .active_jobs()
            .filter(|x| x.uid == j.uid || known(x))
            .collect();
        let orphans = active.iter().filter(|x| x.orphan).count();
        // One scan per digest, wherever it is placed.
        let same: Vec<&crate::cluster::SimJob> = active
            .iter()
            .filter(|x| x.digest == j.digest && x.uid != j.uid)
            .copied()
            .collect();
        if !same.is_empty() && !j.orphan && same.iter().all(|x| !x.orphan) {
            let same: Vec<String> = same
                .iter()
                .map(|x| format!("{}/{}", x.ns, x.name))
                .collect();
            self.violation(
                now,
                "S3",
                format!(
                    "Job {name} is a second active scan of {:?} (also {same:?})",
                    j.digest
                ),
            );
        }
        if limit > 0 && active.len() > limit as usize + orphans {
            self.violation(
                now,
                "S3",
                format!(
                    "Job {name}: {} active Jobs exceed the limit {limit}",
                    active.len()
                ),
            );
        }
    }

    /// S9 when a Job creation reaches the server (created or not): one engine does not create
    /// a digest's Jobs in a loop, e.g. cycling through placements that keep failing. Per
    /// incarnation: a restarted engine has forgotten its back-off and starts a new round.
    /// Not counted while a result of the digest was stamped after the server's now (by an
    /// instance whose clock runs ahead): every new Job then finishes "before" that result, is
    /// never harvested and is replaced until real time catches up — the known limitation of
    /// docs/testing.md (seed 3751), exempt until the core compares differently.
    pub fn on_job_create_attempt(
        &mut self,
        now: i64,
        creator: (usize, u32),
        digest: &str,
        job: &str,
    ) {
        if self.stamps.get(digest).is_some_and(|t| *t > now) {
            self.job_creates_exempt += 1;
            return;
        }
        let key = (creator.0, creator.1, digest.to_string());
        let times = self.job_creates.entry(key).or_default();
        while times
            .front()
            .is_some_and(|t| now - t >= JOB_CREATE_WINDOW_MS)
        {
            times.pop_front();
        }
        times.push_back(now);
        let n = times.len();
        self.max_job_creates = self.max_job_creates.max(n);
        if n == JOB_CREATE_LIMIT + 1 {
            self.violation(
                now,
                "S9",
                format!(
                    "inst{}: {n} Job creations for digest {digest} within {} s (last {job})",
                    creator.0,
                    JOB_CREATE_WINDOW_MS / 1000
                ),
            );
        }
    }

    /// Whole-state sweep: observedGeneration ≤ generation, uniqueness.
    pub fn sweep(&mut self, cluster: &Cluster, now: i64) {
        let mut seen: BTreeMap<(String, Option<String>, String, String, String), String> =
            BTreeMap::new();
        for ((ns, name), c) in &cluster.cis {
            if let Some(g) = c.status.as_ref().and_then(|s| s.observed_generation)
                && g > c.generation
            {
                self.violation(
                    now,
                    "S4",
                    format!(
                        "{ns}/{name}: observedGeneration {g} > generation {}",
                        c.generation
                    ),
                );
            }
            let k = (
                ns.clone(),
                c.spec.workload.uid.clone(),
                c.spec.workload.container_name.clone(),
                c.spec.digest.clone(),
                c.spec.name.clone(),
            );
            if let Some(other) = seen.insert(k, name.clone()) {
                self.violation(
                    now,
                    "S1",
                    format!(
                        "{ns}/{name} and {ns}/{other} scan the same workload container and digest"
                    ),
                );
            }
        }
    }
}
