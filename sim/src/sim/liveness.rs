//! Liveness (heal phase): every running container of an included namespace ends with a CIS that
//! shows a successful scan of its digest (or the classified terminal condition of a digest whose
//! scans always fail), no CIS remains for deleted workloads; then a quiet window without writes
//! and without active Jobs, and metrics equal to the render of the stored objects.

use std::collections::BTreeSet;

use image_scanner_api::{
    ContainerImageScan, FindingRecord, Severity, Vulnerability, VulnerabilitySummary,
};
use image_scanner_core::exception::{Applicable, Exception, ScanSubject};
use image_scanner_core::metrics_model::{CisMetricView, render};
use image_scanner_core::time::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Sim;
use super::oracle::{PULL_UNAUTHORIZED, Reach, SCAN_POD_REJECTED};
use crate::checks::expected_summary;
use crate::event::Event;

impl Sim {
    /// Periodic convergence check during the heal phase.
    pub fn convergence_check(&mut self) {
        if self.converged_at.is_some() || self.stop {
            return;
        }
        let problems = self.liveness_problems();
        if problems.is_empty() {
            self.converged_at = Some(self.now);
            self.stats.converge_ms = Some(self.now - self.faults.end());
            self.note(|| "converged".to_string());
            let end = self.quiet_window_end();
            match end {
                Some(end) => self.at(end, Event::QuietEnd),
                None => self.after(1, Event::QuietEnd),
            }
            self.quiet_writes.clear();
        } else if self.now > self.faults.end() + self.opts.heal_limit.as_millis() as i64 {
            let shown: Vec<String> = problems.into_iter().take(6).collect();
            self.checker.violation(
                self.now,
                "L1",
                format!("no convergence within the heal limit: {shown:?}"),
            );
            self.stop = true;
        } else {
            self.note(|| format!("not converged: {:?}", problems.first()));
            self.after(60_000, Event::Check);
        }
    }

    /// Why the world has not converged yet (empty when it has).
    pub fn liveness_diff(&self) -> String {
        format!(
            "{:?}",
            self.liveness_problems()
                .into_iter()
                .take(6)
                .collect::<Vec<_>>()
        )
    }

    fn leader(&self) -> Option<usize> {
        let (i, inc) = self.lease.holder?;
        let x = self.instances.get(i)?;
        (x.inc == inc
            && x.engine.is_some()
            && x.leading
            && x.synced
            && self.lease.expires > self.now)
            .then_some(i)
    }

    fn liveness_problems(&self) -> Vec<String> {
        let Some(leader) = self.leader() else {
            return vec!["no synced leader".to_string()];
        };
        let cfg = self.instances[leader].cfg.clone();
        let mut problems = Vec::new();
        // The world itself must be at rest: no op, kubelet, controller or GC step pending, no
        // pod waiting for its settle timeout.
        if let Some(ev) = self.pending_world_event() {
            return vec![format!("world still changing: {ev}")];
        }
        let timeout = cfg.pod_settle_timeout.as_millis() as i64;
        for p in self.cluster.pods.values() {
            if p.phase == Some("Running")
                && !p.ready
                && p.start_time.is_some_and(|s| s.0 + timeout > self.now)
            {
                return vec![format!("pod {}/{} not settled yet", p.ns, p.name)];
            }
        }
        // The leader is idle: nothing in flight, nothing queued, no retry due within a minute.
        if let Some(e) = self.instances[leader].engine.as_ref() {
            let soon = self.clock(leader).plus(std::time::Duration::from_secs(60));
            if e.inflight() > 0 || e.queue_depth() > 0 || e.next_wakeup().is_some_and(|w| w < soon)
            {
                return vec![format!(
                    "leader busy: inflight={} queue={} next_wakeup={:?}",
                    e.inflight(),
                    e.queue_depth(),
                    e.next_wakeup()
                )];
            }
        }
        if let Some(j) = self.cluster.active_jobs().next() {
            return vec![format!("scan Job {} still active", j.name)];
        }
        let expected = self.asked_cis(&cfg);
        let reaches = self.reaches(&cfg, &expected);
        for ((ns, name), c) in &self.cluster.cis {
            if c.deleting {
                continue;
            }
            // No CIS for deleted workloads, in any namespace.
            let wuid = c.spec.workload.uid.clone().unwrap_or_default();
            let alive = self.cluster.workloads.values().any(|w| w.uid == wuid)
                || self.cluster.pods.values().any(|p| p.uid == wuid);
            if !alive {
                problems.push(format!("{ns}/{name}: CIS of a deleted workload"));
            }
            if cfg.namespace_allowed(ns) && !expected.contains_key(&(ns.clone(), name.clone())) {
                problems.push(format!("{ns}/{name}: CIS nobody runs"));
            }
        }
        for ((ns, name), e) in &expected {
            let Some(c) = self.cluster.cis.get(&(ns.clone(), name.clone())) else {
                problems.push(format!(
                    "{ns}/{name}: missing CIS for {}/{} {} {}",
                    e.kind, e.workload, e.container, e.digest
                ));
                continue;
            };
            let w = &c.spec.workload;
            if c.spec.digest != e.digest
                || w.kind != e.kind
                || w.name != e.workload
                || w.uid.as_deref() != Some(e.workload_uid.as_str())
                || w.container_name != e.container
            {
                problems.push(format!(
                    "{ns}/{name}: spec {:?} does not match {e:?}",
                    c.spec
                ));
            }
            let owners: BTreeSet<&str> = c.owners.iter().map(|o| o.uid.as_str()).collect();
            let want: BTreeSet<&str> = e.owners.iter().map(String::as_str).collect();
            if owners != want {
                problems.push(format!(
                    "{ns}/{name}: owners {} != pods {}",
                    owners.len(),
                    want.len()
                ));
            }
            let Some(s) = &c.status else {
                problems.push(format!("{ns}/{name}: no status"));
                continue;
            };
            if s.observed_generation != Some(c.generation) {
                problems.push(format!(
                    "{ns}/{name}: observedGeneration {:?} != {}",
                    s.observed_generation, c.generation
                ));
            }
            let Some(truth) = self.scanner.truth.get(&e.digest) else {
                continue;
            };
            let stalled = s
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Stalled" && c.status == "True")
                .map(|c| c.reason.as_str());
            let job_ok = s
                .last_scan_job_uid
                .as_deref()
                .and_then(|u| self.cluster.job_registry.get(u))
                .is_some_and(|r| r.succeeded && r.digest.as_deref() == Some(e.digest.as_str()));
            let conditions = s.conditions.as_ref().is_some_and(|c| !c.is_empty());
            let success = s.last_successful_scan_time.is_some() && job_ok && !conditions;
            if success {
                let (summary, marked, record) =
                    self.expected_under_exceptions(c, &truth.vulns, cfg.notice_min_severity);
                // Issue 21: the record is the result's (cut to fewer IDs for an object the
                // API server found too large), and every change of it was told.
                let record = match (&s.notable_findings, record) {
                    (Some(shown), Some(r)) if shown.left_out > r.left_out => {
                        let kept = shown.ids.values().map(Vec::len).sum();
                        Some(image_scanner_core::finding_record::truncated(r, kept))
                    }
                    (_, r) => r,
                };
                if s.notable_findings != record {
                    problems.push(format!(
                        "{ns}/{name}: notableFindings {:?} != {record:?}",
                        s.notable_findings
                    ));
                } else if s.announced_findings != s.notable_findings {
                    problems.push(format!(
                        "{ns}/{name}: a change of findings not told yet ({:?} -> {:?})",
                        s.announced_findings, s.notable_findings
                    ));
                }
                if s.vulnerability_summary.as_ref() != Some(&summary) {
                    problems.push(format!(
                        "{ns}/{name}: summary differs from the report under the exceptions in force"
                    ));
                }
                let total = s.suppressed_count.as_ref().map_or(0, |x| x.total);
                if total as usize != marked {
                    problems.push(format!(
                        "{ns}/{name}: {total} suppressed, {marked} covered by the exceptions in force"
                    ));
                }
            }
            let reach = reaches.get(&e.digest).cloned().unwrap_or(Reach::Works);
            let class = truth.class.stalled_reason();
            // What a scan of the digest can end with now (`oracle::Reach`); a success from
            // a time when a placement worked stays until the next rescan.
            let ok = match &reach {
                Reach::Works => match class {
                    None => success,
                    Some(reason) => stalled == Some(reason),
                },
                Reach::Fails(reasons) => success || stalled.is_some_and(|r| reasons.contains(r)),
                Reach::Mixed => {
                    success
                        || stalled.is_some_and(|r| {
                            Some(r) == class || r == PULL_UNAUTHORIZED || r == SCAN_POD_REJECTED
                        })
                }
            };
            if !ok {
                problems.push(format!(
                    "{ns}/{name}: digest {} ({:?}, {reach:?}) shows success={success} (job_ok={job_ok}) stalled={stalled:?}, conditions {:?}",
                    e.digest,
                    truth.class,
                    s.conditions.iter().flatten().map(|c| c.reason.as_str()).collect::<Vec<_>>()
                ));
            }
        }
        problems.extend(self.exception_status_problems());
        problems
    }

    /// The summary a successful CIS must show under the exceptions in force now, and how many
    /// of its findings they cover (`status::suppress` marks them; the sim's own counting
    /// checks the rest).
    fn expected_under_exceptions(
        &self,
        c: &crate::cluster::SimCis,
        vulns: &[Vulnerability],
        notice_min: Option<Severity>,
    ) -> (VulnerabilitySummary, usize, Option<FindingRecord>) {
        let subject = ScanSubject::of(&c.ns, &c.spec, &c.labels);
        let now = Timestamp(self.now);
        let applicable: Vec<&Exception> = (self.cluster.exceptions.values())
            .filter_map(|v| v.compiled.as_ref().ok())
            .filter(|e| e.in_force(now) && e.applies_to(&subject))
            .collect();
        let mut all = vulns.to_vec();
        let applicable = Applicable {
            scan: subject,
            exceptions: &applicable,
        };
        image_scanner_core::status::suppress(applicable, &mut all);
        let min = c.spec.min_severity.unwrap_or(Severity::Unknown);
        let unfixed_ignored = c.spec.ignore_unfixed == Some(true);
        let shown = |v: &&Vulnerability| {
            v.severity >= min && !(unfixed_ignored && v.fixed_version.is_empty())
        };
        let marked = all
            .iter()
            .filter(shown)
            .filter(|v| v.suppressed_by.is_some())
            .count();
        let record = notice_min.map(|min| {
            let shown_all: Vec<&Vulnerability> = all.iter().filter(shown).collect();
            expected_record(&shown_all, min)
        });
        let unsuppressed: Vec<Vulnerability> = all
            .into_iter()
            .filter(|v| v.suppressed_by.is_none())
            .collect();
        (expected_summary(&unsuppressed, &c.spec), marked, record)
    }

    /// Every exception's status says whether it applies and how many findings it covers, as
    /// the CIS statuses count them.
    fn exception_status_problems(&self) -> Vec<String> {
        let now = Timestamp(self.now);
        let mut problems = Vec::new();
        for (key, view) in &self.cluster.exceptions {
            let reference = key.reference();
            let (reason, in_force) = match &view.compiled {
                Err(_) => ("Invalid", false),
                Ok(e) if !e.in_force(now) => ("Expired", false),
                Ok(_) => ("InForce", true),
            };
            let covered: i64 = if in_force {
                (self.cluster.cis.values())
                    .filter_map(|c| c.status.as_ref()?.suppressed_count.as_ref())
                    .filter_map(|s| s.by_exception.get(&reference))
                    .map(|n| i64::from(*n))
                    .sum()
            } else {
                0
            };
            let status = view.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.reason.as_str());
            let shown = (
                status.and_then(|s| s.observed_generation),
                ready,
                status.and_then(|s| s.covered_findings),
            );
            if shown != (Some(view.generation), Some(reason), Some(covered)) {
                problems.push(format!(
                    "exception {reference}: status {shown:?} != ({}, {reason}, {covered})",
                    view.generation
                ));
            }
        }
        problems
    }

    /// The end of the window in which nothing is due: the earliest rescan or retry of any CIS.
    fn quiet_window_end(&self) -> Option<i64> {
        let leader = self.leader()?;
        let cfg = &self.instances[leader].cfg;
        let skew = self.instances[leader].skew;
        let mut end = self.now + 2 * 3_600_000;
        for c in self.cluster.cis.values() {
            let Some(s) = &c.status else { continue };
            let Some(t) = &s.last_scan_time else { continue };
            let at = t.0.as_millisecond();
            let failed = s
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Stalled" && c.status == "True");
            let delay = if failed {
                cfg.failed_scan_retry
            } else {
                cfg.scan_interval
            };
            end = end.min(at + delay.as_millis() as i64 - skew);
        }
        // Scan pods may still be settling into their TTL; a window under a minute proves little.
        (end - self.now >= 60_000).then_some(end - 1_000)
    }

    /// End of the quiet window: no writes, no active Jobs, metrics = f(stored statuses).
    pub fn quiet_end(&mut self) {
        if self.stop {
            return;
        }
        self.stop = true;
        if !self.quiet_writes.is_empty() {
            let n = self.quiet_writes.len();
            let first: Vec<String> = self.quiet_writes.iter().take(4).cloned().collect();
            self.checker.violation(
                self.now,
                "L2",
                format!("{n} writes in a quiet world: {first:?}"),
            );
        }
        let active: Vec<String> = self.cluster.active_jobs().map(|j| j.name.clone()).collect();
        if !active.is_empty() {
            self.checker.violation(
                self.now,
                "L2",
                format!("Jobs still active after convergence: {active:?}"),
            );
        }
        // S8: metrics of the leader's cache equal the metrics of the stored objects.
        if let Some(leader) = self.leader() {
            let keys = vec!["app".to_string(), "team".to_string()];
            let engine_views: Vec<CisMetricView> = self.instances[leader]
                .engine
                .as_ref()
                .map(|e| e.cis_views().map(CisMetricView::from_view).collect())
                .unwrap_or_default();
            let stored: Vec<CisMetricView> = self
                .cluster
                .cis
                .values()
                .map(|c| {
                    CisMetricView::from_cis(&ContainerImageScan {
                        metadata: ObjectMeta {
                            name: Some(c.name.clone()),
                            namespace: Some(c.ns.clone()),
                            labels: Some(c.labels.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: c.spec.clone(),
                        status: c.status.clone(),
                    })
                })
                .collect();
            let a = render(&engine_views, &keys);
            let b = render(&stored, &keys);
            if a != b {
                let diff = a
                    .lines()
                    .zip(b.lines())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("engine: {x} | stored: {y}"))
                    .unwrap_or_else(|| {
                        format!("{} vs {} lines", a.lines().count(), b.lines().count())
                    });
                self.checker
                    .violation(self.now, "S8", format!("metrics differ: {diff}"));
            }
        }
    }
}

/// The record a result's status must show (issue 21), computed here rather than by the core's
/// `notice::record`, so that a mistake there is not agreed with: every unsuppressed finding at
/// or above `min`, by ID at its highest severity, fixable when any of its findings has a fix.
fn expected_record(shown: &[&Vulnerability], min: Severity) -> FindingRecord {
    let mut by_id: std::collections::BTreeMap<&str, (Severity, bool)> = Default::default();
    for v in shown
        .iter()
        .filter(|v| v.severity >= min && v.suppressed_by.is_none())
    {
        let e = by_id
            .entry(&v.vulnerability_id)
            .or_insert((v.severity, false));
        e.0 = e.0.max(v.severity);
        e.1 = e.1 || !v.fixed_version.is_empty();
    }
    let mut record = FindingRecord {
        min_severity: min,
        ..FindingRecord::default()
    };
    for (id, (severity, fixable)) in by_id {
        record
            .ids
            .entry(severity.as_str().to_string())
            .or_default()
            .push(id.to_string());
        if fixable {
            record.fixable.push(id.to_string());
        }
    }
    let total: usize = record.ids.values().map(Vec::len).sum();
    let max = image_scanner_core::finding_record::MAX_RECORD_IDS;
    if total > max {
        record = image_scanner_core::finding_record::truncated(
            FindingRecord {
                left_out: 0,
                ..record
            },
            max,
        );
    }
    record
}
