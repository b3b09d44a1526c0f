//! S4/S5: what a status write must show. The scanner's truth of the digest, filtered by the
//! CIS's own `ignoreUnfixed`/`minSeverity`, counted and ordered here independently of the core;
//! a success only from a Job whose pod could use the image.

use std::collections::BTreeSet;

use image_scanner_core::exception::ScanSubject;
use image_scanner_core::time::Timestamp;

use super::*;
use crate::exception_ledger::Ledger;

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
    /// S10 on a status write of a current leader the server accepted (before it is stored):
    /// its `detailsBytes` says what its details take, and with it the details of all CIS stay
    /// within the cluster-wide bound `total` (0: none). Not checked while a deposed leader's
    /// late write is stored: the leader decided on what it saw, and such a write cannot be
    /// fenced (S4).
    pub fn on_details_total(
        &mut self,
        now: i64,
        cluster: &Cluster,
        key: &(String, String),
        new: &ContainerImageScanStatus,
        total: usize,
    ) {
        if let Some(details) = &new.vulnerabilities {
            let size = image_scanner_core::status::details_size(details) as i64;
            if new.details_bytes != Some(size) {
                self.violation(
                    now,
                    "S10",
                    format!(
                        "{}/{}: detailsBytes {:?} but the details take {size}",
                        key.0, key.1, new.details_bytes
                    ),
                );
            }
        }
        if total == 0 || cluster.cis.values().any(|c| c.status != c.legit) {
            return;
        }
        let others: u64 = cluster
            .cis
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, c)| c.status.as_ref())
            .map(image_scanner_core::port::details_bytes)
            .sum();
        let sum = others + image_scanner_core::port::details_bytes(new);
        if sum > total as u64 {
            self.violation(
                now,
                "S10",
                format!(
                    "{}/{}: the stored details would take {sum} bytes, over the bound {total}",
                    key.0, key.1
                ),
            );
        }
    }

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
        issued: (i64, Timestamp),
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
                // A record of what was told (issue 21): the result stays as it was.
                let mut told = new.clone();
                told.announced_findings = old.announced_findings.clone();
                if told.conditions.as_ref().is_some_and(Vec::is_empty) {
                    told.conditions = old.conditions.clone();
                }
                if new.announced_findings != old.announced_findings && told == old {
                    return;
                }
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
                let subject = ScanSubject::of(&c.ns, spec, &c.labels);
                let ledger = &cluster.exception_ledger;
                self.check_suppression(now, &who, vulns, spec, new, (ledger, &subject, issued));
                self.check_record(now, &who, vulns, new);
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
        let f = filtered(vulns, spec);
        let all = sorted(&f);
        let Some(details) = &new.vulnerabilities else {
            self.violation(now, "S5", format!("{who}: success without details"));
            return;
        };
        // The marks are checked apart (`check_suppression`); here the findings themselves.
        let details: Vec<Vulnerability> = details
            .iter()
            .map(|v| Vulnerability {
                suppressed_by: None,
                suppressed_justification: None,
                ..v.clone()
            })
            .collect();
        let details = &details;
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

    /// S12 (issue 21): a success's record of notable findings names only findings the scan
    /// found, at or above the record's threshold and at most at the highest severity found for
    /// the ID, and a fix only where one of them has one.
    fn check_record(
        &mut self,
        now: i64,
        who: &str,
        vulns: &[Vulnerability],
        new: &ContainerImageScanStatus,
    ) {
        let Some(record) = &new.notable_findings else {
            return;
        };
        for severity in Severity::ALL {
            for id in record.ids.get(severity.as_str()).into_iter().flatten() {
                let found: Vec<&Vulnerability> =
                    vulns.iter().filter(|v| v.vulnerability_id == *id).collect();
                let highest = found.iter().map(|v| v.severity).max();
                if severity < record.min_severity || highest.is_none_or(|h| h < severity) {
                    self.violation(
                        now,
                        "S12",
                        format!("{who}: record names {id} at {severity:?}, found at {highest:?}"),
                    );
                }
                let has_fix = found.iter().any(|v| !v.fixed_version.is_empty());
                if record.fixable.contains(id) && !has_fix {
                    self.violation(now, "S12", format!("{who}: record says {id} has a fix"));
                }
            }
        }
    }

    /// S11 (issue 20): a success counts every finding once — in the summary, or in
    /// `suppressedCount` when an exception covers it — and marks a finding only with an
    /// exception stored when the write was decided (`issued`: simulation time) that covered it
    /// and was in force by the deciding engine's clock.
    fn check_suppression(
        &mut self,
        now: i64,
        who: &str,
        vulns: &[Vulnerability],
        spec: &ContainerImageScanSpec,
        new: &ContainerImageScanStatus,
        (ledger, subject, issued): (&Ledger, &ScanSubject<'_>, (i64, Timestamp)),
    ) {
        let all = expected_summary(vulns, spec);
        let Some(summary) = &new.vulnerability_summary else {
            self.violation(now, "S5", format!("{who}: success without summary"));
            return;
        };
        let details = new.vulnerabilities.as_deref().unwrap_or_default();
        let marked: Vec<&Vulnerability> = details
            .iter()
            .filter(|v| v.suppressed_by.is_some())
            .collect();
        for v in &marked {
            let by = v.suppressed_by.as_deref().unwrap_or_default();
            if !ledger.may_mark(by, v, subject, issued) {
                self.violation(
                    now,
                    "S11",
                    format!(
                        "{who}: {} marked by {by}, which did not cover it in force at {issued:?}",
                        v.vulnerability_id
                    ),
                );
            }
        }
        let Some(suppressed) = &new.suppressed_count else {
            if !marked.is_empty() {
                self.violation(now, "S11", format!("{who}: marks without suppressedCount"));
            }
            if *summary != all {
                self.violation(
                    now,
                    "S5",
                    format!("{who}: summary {summary:?} != expected {all:?}"),
                );
            }
            return;
        };
        let counted = summary.severity_count.clone().unwrap_or_default();
        let wanted = all.severity_count.clone().unwrap_or_default();
        let mut severities: BTreeSet<&String> = counted.keys().collect();
        severities.extend(wanted.keys());
        severities.extend(suppressed.severity_count.keys());
        for s in severities {
            let c = counted.get(s).copied().unwrap_or(0);
            let x = suppressed.severity_count.get(s).copied().unwrap_or(0);
            let w = wanted.get(s).copied().unwrap_or(0);
            if c + x != w {
                self.violation(
                    now,
                    "S11",
                    format!("{who}: {s}: {c} counted + {x} suppressed != {w} found"),
                );
            }
        }
        if suppressed.total != suppressed.severity_count.values().sum::<i32>()
            || suppressed.total != suppressed.by_exception.values().sum::<i32>()
            || suppressed.total != suppressed.by_reason.values().sum::<i32>()
        {
            self.violation(
                now,
                "S11",
                format!("{who}: suppressedCount does not add up: {suppressed:?}"),
            );
        }
        if new.vulnerabilities_truncated.is_none() {
            if marked.len() != suppressed.total as usize {
                self.violation(
                    now,
                    "S11",
                    format!(
                        "{who}: {} marked, suppressedCount {}",
                        marked.len(),
                        suppressed.total
                    ),
                );
            }
            let unmarked: Vec<Vulnerability> = details
                .iter()
                .filter(|v| v.suppressed_by.is_none())
                .cloned()
                .collect();
            let want = expected_summary(&unmarked, spec);
            if *summary != want {
                self.violation(
                    now,
                    "S11",
                    format!("{who}: summary {summary:?} != unsuppressed findings {want:?}"),
                );
            }
        }
    }
}
