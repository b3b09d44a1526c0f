//! Fan-out (step 3): every CIS of a digest gets the newest result, filtered by its own
//! `ignoreUnfixed`/`minSeverity`, its Report first (when Reports are written).

use super::*;

impl ScanStage<'_> {
    /// Writes the `ScanJobCreated` condition on the CIS a Job was created for.
    pub(super) fn announce(
        &mut self,
        digest: &str,
        key: &CisKey,
        job_name: &str,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            if let Some(s) = self.state.digests.get_mut(digest) {
                s.announce = None;
            }
            return Ok(());
        };
        let target = Target::CisStatus(key.clone());
        let status = status::scan_job_created_status(&cis, job_name, now);
        let action = status_write(key, &cis, status, true);
        // Blocked means a write in flight for this CIS or a full window: the digest stays
        // dirty until that outcome or a free slot.
        if self.flights.issue(target, action, now, out)? == Issued::Yes
            && let Some(s) = self.state.digests.get_mut(digest)
        {
            s.announce = None;
        }
        Ok(())
    }

    /// Writes `Stalled/NoRegistryDigest` to one CIS of a local image ID unless it shows it
    /// (with a Warning Event once written).
    pub(super) fn explain_local_image(
        &mut self,
        key: &CisKey,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            return Ok(());
        };
        let new_status = status::no_registry_digest_status(&cis, now);
        if status::shows_conditions(&cis, &new_status) {
            return Ok(());
        }
        let note = new_status
            .conditions
            .iter()
            .flatten()
            .map(|c| status::bounded_message(&c.message, 1024))
            .next()
            .unwrap_or_default();
        let target = Target::CisStatus(key.clone());
        let action = status_write(key, &cis, new_status, true);
        if self.flights.issue(target, action, now, out)? == Issued::Yes {
            let event = EventNote {
                warning: true,
                reason: status::REASON_NO_REGISTRY_DIGEST.to_string(),
                note,
            };
            self.pending_events
                .push_back(crate::engine::PendingEvent::on_cis(key, &cis.uid, event));
        }
        Ok(())
    }

    /// Writes the newest result to one CIS if its status does not show it yet.
    pub(super) fn fan_out(
        &mut self,
        digest: &str,
        key: &CisKey,
        latest: &ScanResult,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step<FanOut> {
        let Some(cis) = self.index.cis.get(key).map(|t| t.view.clone()) else {
            return Ok(FanOut::Done);
        };
        // A result is shown with the exceptions that apply now (a failure shows none of its
        // own: it keeps the last success's counts as they were written).
        let exceptions = self.exceptions.applicable(&cis, now);
        let fingerprint = crate::exception::fingerprint(&exceptions);
        let shows = cis.status.last_scan_job_uid.as_deref() == Some(latest.job_uid.as_str())
            && cis.status.last_scan_time == Some(latest.at)
            && cis.status.observed_generation == Some(cis.generation)
            && (!matches!(latest.outcome, ScanOutcome::Succeeded)
                || cis.status.exceptions_fingerprint == fingerprint);
        if shows {
            return Ok(FanOut::Done);
        }
        // Never move a CIS back to an older result than the one it shows; learn it instead
        // (its Job may have been unknown when the status arrived), for the other CIS.
        if self.shows_newer_result(&cis, latest) {
            if self.learn_result_from_status(&cis) {
                self.state.dirty.insert(digest.to_string());
                return Ok(FanOut::Superseded);
            }
            return Ok(FanOut::Done);
        }
        let target = Target::CisStatus(key.clone());
        if !self.flights.can_issue(&target, now) {
            return if self.flights.is_busy(&target) || !self.flights.has_room() {
                Err(Blocked)
            } else {
                Ok(FanOut::Done)
            };
        }
        let new_status = match &latest.outcome {
            ScanOutcome::Succeeded => {
                let Some(vulns) = self.reports.get(digest, &latest.job_uid) else {
                    return Ok(FanOut::NeedDetails);
                };
                let report_key = (key.clone(), latest.job_uid.clone());
                let others = self.others_details(key, &cis);
                let total_budget = self.cfg.details_total_bytes;
                if self.cfg.write_reports && !self.state.reports_written.contains_key(&report_key) {
                    let own_budget = self.state.report_budget.get(key).copied();
                    let max = self.cfg.report_max_bytes;
                    let allowance = cluster_allowance(others, total_budget, max);
                    let budget = Budget::new(own_budget, max, allowance);
                    let (report, bytes) =
                        status::report_for(&cis, &vulns, &exceptions, budget.bytes, |t| {
                            t.reason = Some(budget.reason);
                        });
                    let action = Action::ApplyReport {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        report: Box::new(report),
                    };
                    let target = Target::Report(key.clone(), latest.job_uid.clone());
                    if self.flights.issue(target, action, now, out)? == Issued::Yes {
                        self.state.reserved.set(key, bytes);
                    }
                    return Ok(FanOut::Done);
                }
                let in_report = match self.state.reports_written.get(&report_key) {
                    Some(ReportFate::Written(bytes)) => Some(*bytes),
                    _ => None,
                };
                let write_details = match self.cfg.status_details {
                    StatusDetails::Always => true,
                    StatusDetails::Never => false,
                    StatusDetails::UnlessInReport => in_report.is_none(),
                };
                let report_bytes = in_report.unwrap_or(0);
                let own_budget = self.state.detail_budget.get(key).copied();
                // The Report's details count as another object's.
                let max = self.cfg.details_max_bytes;
                let allowance =
                    cluster_allowance(others.saturating_add(report_bytes), total_budget, max);
                let budget = Budget::new(own_budget, max, allowance);
                let mut status = status::success_status(
                    &cis,
                    &vulns,
                    &exceptions,
                    &latest.job_uid,
                    latest.at,
                    budget.bytes,
                    write_details,
                    self.cfg
                        .notice_min_severity
                        .map(|min| record_spec(min, own_budget, self.cfg.details_max_bytes)),
                );
                if let Some(t) = status.vulnerabilities_truncated.as_mut() {
                    t.reason = Some(budget.reason);
                }
                let status_bytes = status.details_bytes.unwrap_or(0);
                let total = u64::try_from(status_bytes)
                    .unwrap_or(0)
                    .saturating_add(report_bytes);
                status.details_bytes = Some(i64::try_from(total).unwrap_or(i64::MAX));
                status
            }
            ScanOutcome::Failed { reason, message } => {
                let kind = match reason {
                    FailureReason::Error => status::FailureKind::Error,
                    FailureReason::ReportDecodeError => status::FailureKind::Decode,
                    other => status::FailureKind::Other(other.condition_reason()),
                };
                status::failure_status(&cis, &latest.job_uid, latest.at, kind, message)
            }
        };
        let keep_details = matches!(latest.outcome, ScanOutcome::Failed { .. });
        let events = self.events_for(key, &cis, &latest.outcome);
        let details = (!keep_details).then(|| crate::port::details_bytes(&new_status));
        let action = status_write(key, &cis, new_status, keep_details);
        if self.flights.issue(target, action, now, out)? == Issued::Yes {
            if let Some(bytes) = details {
                self.state.reserved.set(key, bytes);
            }
            self.pending_events.extend(events);
        }
        Ok(FanOut::Done)
    }

    /// Bytes of details all other CIS keep, stored or in writes in flight: what the
    /// cluster-wide budget leaves `key` is decided on them (its own are what its write replaces).
    fn others_details(&self, key: &CisKey, cis: &CisView) -> u64 {
        let own = cis
            .status
            .details_bytes
            .saturating_add(self.state.reserved.of(key));
        (self.index.details_bytes)
            .saturating_add(self.state.reserved.total())
            .saturating_sub(own)
    }

    /// Events worth a human's attention when a new result is written: a failed scan on the
    /// CIS, and on its workload when the scan starts failing (the CIS's last attempt did not
    /// fail: once per run of failures, and not again after a restart). What a successful
    /// result changed is told by `engine::notices`.
    pub(super) fn events_for(
        &self,
        key: &CisKey,
        cis: &CisView,
        outcome: &ScanOutcome,
    ) -> Vec<PendingEvent> {
        let ScanOutcome::Failed { message, .. } = outcome else {
            return Vec::new();
        };
        let note = status::bounded_message(message, 1024);
        let mut events = vec![PendingEvent::on_cis(
            key,
            &cis.uid,
            EventNote {
                warning: true,
                reason: "ScanFailed".to_string(),
                note: note.clone(),
            },
        )];
        // The last attempt shown failed (a Job announced since keeps its time): the same run.
        let was_failing = cis.status.last_scan_time.is_some()
            && cis.status.last_scan_time != cis.status.last_successful_scan_time;
        if !was_failing && self.cfg.notice_min_severity.is_some() {
            let text = format!(
                "the scan of container {} (image {}@{}) failed: {note}",
                cis.spec.workload.container_name, cis.spec.name, cis.spec.digest
            );
            let event = EventNote {
                warning: true,
                reason: crate::notice::REASON_SCAN_FAILING.to_string(),
                note: status::bounded_message(&text, crate::notice::MESSAGE_LIMIT),
            };
            events.extend(PendingEvent::on_workload(cis, event));
        }
        events
    }
}

impl Engine {
    /// The answer to a status write: the CIS store and the scan state meet here.
    pub(in crate::engine) fn on_cis_status_outcome(
        &mut self,
        key: CisKey,
        action: &Action,
        outcome: Outcome,
        _now: Timestamp,
    ) {
        let digest = match action {
            Action::ApplyCisStatus { .. } => {
                self.index.cis.get(&key).map(|t| t.view.spec.digest.clone())
            }
            _ => None,
        };
        // A result's write is over: from now on the stored status says what its details take
        // — unless its answer was lost, and it may be stored unseen.
        if let Action::ApplyCisStatus {
            keep_details: false,
            status,
            ..
        } = action
        {
            let written = status
                .last_scan_job_uid
                .clone()
                .zip((status.last_scan_time.as_ref()).map(crate::time::Timestamp::from_k8s));
            let answer = match (&outcome, written) {
                (Outcome::CisApplied(_), _) => WriteAnswer::Stored,
                (Outcome::Failed(err), Some((job_uid, at)))
                    if err.kind == ApiErrorKind::Unknown =>
                {
                    WriteAnswer::Lost { job_uid, at }
                }
                _ => WriteAnswer::Refused,
            };
            self.scans.reserved.answered(&key, answer);
        }
        match outcome {
            Outcome::CisApplied(view) => {
                self.stats.status_writes += 1;
                if let Some(job) = &view.status.last_scan_job_uid {
                    self.scans
                        .reports_written
                        .remove(&(key.clone(), job.clone()));
                }
                // The status subresource never creates a CIS: an answer for one no longer
                // held (the watch delivered its Delete before this answer) must not bring it
                // back as a ghost that no later event removes (sim seed 9735).
                let held = self.index.cis.get(&key).filter(|t| t.view.uid == view.uid);
                if let Some((stream, epoch)) = held.map(|t| (t.stream, t.epoch)) {
                    self.upsert_cis(crate::engine::tracked::Tracked {
                        view: *view,
                        stream,
                        epoch,
                    });
                }
            }
            // The CIS is gone although the watch has not said so yet: forget it (member pods
            // may want it back) instead of writing its status again and again.
            Outcome::Failed(err) if err.kind == ApiErrorKind::NotFound => {
                if let Action::ApplyCisStatus { uid, .. } = action
                    && self.index.cis.get(&key).is_some_and(|t| t.view.uid == *uid)
                {
                    self.remove_cis(&key);
                }
            }
            Outcome::Failed(err) if err.kind == ApiErrorKind::TooLarge => {
                // The API server still refused the size: cut the details further for this CIS.
                let current = self
                    .scans
                    .detail_budget
                    .get(&key)
                    .copied()
                    .unwrap_or(self.cfg.details_max_bytes);
                self.scans.detail_budget.insert(key.clone(), current / 2);
            }
            _ => {}
        }
        if let Some(d) = digest {
            self.scans.dirty.insert(d);
        }
    }
}

impl ScanStage<'_> {
    pub(in crate::engine) fn on_report_outcome(
        &mut self,
        key: CisKey,
        job_uid: String,
        outcome: Outcome,
    ) {
        let digest = self.index.cis.get(&key).map(|t| t.view.spec.digest.clone());
        match outcome {
            // The status write that follows names the Job; remember which Report is done.
            Outcome::Done => {
                let bytes = self.state.reserved.in_flight(&key);
                self.state
                    .reports_written
                    .insert((key.clone(), job_uid), ReportFate::Written(bytes));
            }
            Outcome::Failed(err) if err.kind == ApiErrorKind::TooLarge => {
                let current = self
                    .state
                    .report_budget
                    .get(&key)
                    .copied()
                    .unwrap_or(self.cfg.report_max_bytes);
                self.state.report_budget.insert(key.clone(), current / 2);
            }
            // The Report is an extra: when it cannot be written (no permission, CRD removed,
            // repeated errors) the status still gets the result.
            Outcome::Failed(err) => {
                let target = Target::Report(key.clone(), job_uid.clone());
                let attempts = self.flights.attempts(&target);
                if !err.kind.is_retryable() || attempts >= MAX_REPORT_ATTEMPTS {
                    self.flights.forget(&target);
                    self.stats.reports_skipped += 1;
                    self.state.reserved.answered(&key, WriteAnswer::Refused);
                    self.state
                        .reports_written
                        .insert((key.clone(), job_uid), ReportFate::Skipped);
                }
            }
            _ => {}
        }
        if let Some(d) = digest {
            self.state.dirty.insert(d);
        }
    }
}

/// Room, in bytes of details, that the cluster-wide budget `total` (0: none) leaves one object
/// while the others' details take `others` bytes: the whole per-object budget `per_object`
/// while they take at most half of it, then less in proportion to what is left, down to
/// nothing when they take all of it — and never more than is left. The cut falls on the lowest
/// severities first (`status::fit_details`), so a filling cluster keeps its CRITICAL findings
/// longest. Objects written earlier keep their details until their next result: shrinking
/// them all at once would be a write storm.
pub(in crate::engine) fn cluster_allowance(others: u64, total: usize, per_object: usize) -> usize {
    if total == 0 {
        return per_object;
    }
    let total = total as u64;
    let left = total.saturating_sub(others);
    let half = total / 2;
    let room = if others <= half {
        per_object as u64
    } else {
        // others > half, so total - half > 0; u128 keeps the product exact.
        let scaled = u128::from(per_object as u64) * u128::from(left) / u128::from(total - half);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    };
    usize::try_from(room.min(left)).unwrap_or(usize::MAX)
}

/// The byte budget one write's details get, and why it is that small when it cuts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Budget {
    bytes: usize,
    reason: TruncationReason,
}

impl Budget {
    /// The smallest of the object's budget after "too large" answers (`reduced`), the
    /// configured one (`configured`) and the cluster's `allowance`.
    fn new(reduced: Option<usize>, configured: usize, allowance: usize) -> Budget {
        let object = match reduced {
            Some(bytes) if bytes < configured => Budget {
                bytes,
                reason: TruncationReason::RequestTooLarge,
            },
            _ => Budget {
                bytes: configured,
                reason: TruncationReason::ObjectBudget,
            },
        };
        if allowance < object.bytes {
            Budget {
                bytes: allowance,
                reason: TruncationReason::ClusterBudget,
            }
        } else {
            object
        }
    }
}

/// How a result's findings are recorded for one CIS: one ID per 64 bytes of its details
/// budget — the configured one, or the halved one once the API server found its object too
/// large (`reduced` below `configured`) — and at most `MAX_RECORD_IDS`. The two records are
/// part of the status too: so they stay a small share of what the status may take (500 IDs
/// from 32 KiB up; the default budget is 256 KiB), and a status that must shrink can (sim
/// seeds 59, 5902: a failure written over a result whose records outgrew the room left).
fn record_spec(
    min: crate::crd::Severity,
    reduced: Option<usize>,
    configured: usize,
) -> crate::finding_record::RecordSpec {
    let budget = reduced.map_or(configured, |bytes| bytes.min(configured));
    let max_ids = (budget / 64).min(crate::finding_record::MAX_RECORD_IDS);
    crate::finding_record::RecordSpec { min, max_ids }
}

/// The status write of one CIS, conditioned on the UID and resourceVersion it was decided on.
fn status_write(
    key: &CisKey,
    cis: &CisView,
    status: crate::crd::ContainerImageScanStatus,
    keep_details: bool,
) -> Action {
    Action::ApplyCisStatus {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid: cis.uid.clone(),
        resource_version: cis.resource_version,
        status: Box::new(status),
        keep_details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn the_whole_object_budget_until_half_the_total_then_less_and_never_more_than_is_left() {
        assert_eq!(
            cluster_allowance(u64::MAX, 0, 16 * KIB),
            16 * KIB,
            "0: no bound"
        );
        assert_eq!(cluster_allowance(0, 100 * KIB, 16 * KIB), 16 * KIB);
        assert_eq!(cluster_allowance(50 * 1024, 100 * KIB, 16 * KIB), 16 * KIB);
        assert_eq!(cluster_allowance(75 * 1024, 100 * KIB, 16 * KIB), 8 * KIB);
        assert_eq!(cluster_allowance(100 * 1024, 100 * KIB, 16 * KIB), 0);
        assert_eq!(cluster_allowance(200 * 1024, 100 * KIB, 16 * KIB), 0);
        // A per-object budget larger than the total: never more than is left.
        assert_eq!(cluster_allowance(40, 100, 1_000), 60);
        let mut last = usize::MAX;
        for others in 0..=120u64 {
            let room = cluster_allowance(others, 100, 30);
            assert!(room <= last, "non-increasing at {others}");
            assert!(
                others + room as u64 <= 100 || room == 0,
                "within the total at {others}"
            );
            last = room;
        }
    }

    #[test]
    fn a_budget_says_which_limit_made_it() {
        use TruncationReason::*;
        let b = |reduced, allowance| Budget::new(reduced, 100, allowance);
        assert_eq!(
            b(None, 1_000),
            Budget {
                bytes: 100,
                reason: ObjectBudget
            }
        );
        assert_eq!(
            b(Some(50), 1_000),
            Budget {
                bytes: 50,
                reason: RequestTooLarge
            }
        );
        assert_eq!(
            b(Some(50), 20),
            Budget {
                bytes: 20,
                reason: ClusterBudget
            }
        );
        assert_eq!(
            b(None, 100),
            Budget {
                bytes: 100,
                reason: ObjectBudget
            }
        );
        assert_eq!(
            b(Some(200), 1_000),
            Budget {
                bytes: 100,
                reason: ObjectBudget
            }
        );
    }
}
