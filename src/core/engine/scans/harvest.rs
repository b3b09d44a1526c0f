//! Harvest (step 2): a finished Job newer than the known result → its log read, parsed and
//! recorded as the digest's result; a failed attempt's log kept for the condition message.

use super::*;

/// How long a scan pod's container may fail to be created before the scan counts as failed:
/// a first error can be transient (the kubelet retries), a lasting one is configuration.
pub(super) const CREATE_ERROR_GRACE: Duration = Duration::from_secs(120);

/// A scan pod whose container the kubelet cannot create (see [`ScanStage::create_error`]).
pub(super) enum CreateError {
    /// Not for long enough yet: look again then.
    Since(Timestamp),
    /// For [`CREATE_ERROR_GRACE`]: the kubelet's reason and message.
    Lasting(String),
}

impl ScanStage<'_> {
    /// The waiting message if a pod of `job` cannot pull the scanned image (or an init
    /// container's: trivy's, the Java DB's).
    pub(super) fn pull_back_off(&self, job: &JobView) -> Option<String> {
        const PULL: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
        self.index.pods_of_job(&job.uid).into_iter().find_map(|p| {
            for (which, c) in [("init container", &p.init), (SCAN_CONTAINER, &p.scan)] {
                if c.waiting_reason
                    .as_deref()
                    .is_some_and(|r| PULL.contains(&r))
                {
                    let message = c.waiting_message.clone().unwrap_or_default();
                    return Some(if which == SCAN_CONTAINER && !message.is_empty() {
                        message
                    } else if message.is_empty() {
                        format!("{which} of pod {} cannot pull its image", p.name)
                    } else {
                        format!("{which}: {message}")
                    });
                }
            }
            None
        })
    }

    /// Whether a pod of `job` cannot create its scan (or an init) container: the kubelet's
    /// message once that has lasted [`CREATE_ERROR_GRACE`] since the pod was created, else
    /// when to look again. The kubelet retries such errors without end, so a lasting one (a
    /// missing `trivy-job-config` in `envFrom`, a runtime without image volumes for
    /// `TRIVY_BINARY=image-volume`) would hold the Job until its deadline, an hour by default.
    pub(super) fn create_error(&self, job: &JobView, now: Timestamp) -> Option<CreateError> {
        const CREATE: [&str; 2] = ["CreateContainerError", "CreateContainerConfigError"];
        self.index.pods_of_job(&job.uid).into_iter().find_map(|p| {
            let (which, c) = [("init container", &p.init), (SCAN_CONTAINER, &p.scan)]
                .into_iter()
                .find(|(_, c)| {
                    c.waiting_reason
                        .as_deref()
                        .is_some_and(|r| CREATE.contains(&r))
                })?;
            let until = p.created.plus(CREATE_ERROR_GRACE);
            if now < until {
                return Some(CreateError::Since(until));
            }
            let reason = c.waiting_reason.as_deref().unwrap_or_default();
            let message = c.waiting_message.as_deref().unwrap_or_default();
            Some(CreateError::Lasting(format!(
                "{which} of pod {} not created for {} s: {reason}: {message}",
                p.name,
                CREATE_ERROR_GRACE.as_secs()
            )))
        })
    }

    /// Starts reading the result of a finished Job, or records it when no log is needed.
    pub(super) fn harvest(
        &mut self,
        digest: &str,
        job: &JobView,
        refetch: bool,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step<Harvested> {
        let target = Target::Log(job.uid.clone());
        if self.flights.is_busy(&target) {
            return Ok(Harvested::Pending);
        }
        let Some(finish) = &job.finished else {
            return Ok(Harvested::Pending);
        };
        let attempts = self.flights.attempts(&target);
        let pods = self.index.pods_of_job(&job.uid);
        let fallback = if finish.message.is_empty() {
            format!("scan Job '{}' failed: {}", job.name, finish.reason)
        } else {
            format!("scan Job '{}' failed: {}", job.name, finish.message)
        };
        if !finish.succeeded && !refetch {
            // The log of a failed attempt read while the Job ran says most.
            if let Some(FailureLog { text, .. }) = self.state.failure_logs.remove(&job.uid) {
                let message = if text.trim().is_empty() {
                    fallback
                } else {
                    text
                };
                self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
                return Ok(Harvested::Recorded);
            }
        }
        let pod = if finish.succeeded {
            pods.iter()
                .rev()
                .find(|p| p.scan.exit_code == Some(0))
                .or(pods.last())
        } else {
            pods.iter().rev().find(|p| p.scan.started).or(pods.last())
        };
        let Some(pod) = pod else {
            if now < finish.at.plus(POD_CACHE_GRACE) {
                self.timers.arm(
                    TimerKey::Digest(digest.to_string()),
                    finish.at.plus(POD_CACHE_GRACE),
                );
                return Ok(Harvested::Pending);
            }
            if refetch {
                return Ok(Harvested::Recorded);
            }
            if finish.succeeded {
                let message = format!("no pods found for job \"{}\"", job.name);
                self.lose_result(digest, &job.uid, message, now);
            } else {
                // A failed Job's pods are deleted by Kubernetes; its condition explains.
                self.record_failure(digest, &job.uid, FailureReason::Error, fallback, now);
            }
            return Ok(Harvested::Recorded);
        };
        if !finish.succeeded && !pod.scan.started {
            let message = pod
                .scan
                .waiting_message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or(fallback);
            self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
            return Ok(Harvested::Recorded);
        }
        if attempts >= MAX_LOG_ATTEMPTS {
            // A refetch keeps its count (dropped with the Job), so the next sync starts a new
            // scan instead of another round of reads.
            if !refetch {
                self.flights.forget(&target);
                let message = format!(
                    "the log of scan pod {} could not be read after {attempts} attempts",
                    pod.name
                );
                self.record_failure(digest, &job.uid, FailureReason::Error, message, now);
            }
            return Ok(Harvested::Recorded);
        }
        let limit = if finish.succeeded {
            self.cfg.log_max_bytes
        } else {
            FAILED_LOG_BYTES
        };
        let action = Action::FetchLog {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            container: SCAN_CONTAINER.to_string(),
            limit_bytes: limit,
            // A failed container that restarted holds the failure in its previous run.
            previous: !finish.succeeded && pod.scan.exit_code.is_none(),
        };
        if self.flights.count_busy(|t| matches!(t, Target::Log(_))) >= LOG_READS_AT_ONCE {
            // Stays dirty: synced again when an answer (this read's among them) lands.
            return Err(Blocked);
        }
        let harvest = Harvest {
            digest: digest.to_string(),
            job_name: job.name.clone(),
            succeeded: finish.succeeded,
            refetch,
            fallback,
        };
        if self.flights.issue(target, action, now, out)? == Issued::Yes {
            self.state.harvests.insert(job.uid.clone(), harvest);
        }
        Ok(Harvested::Pending)
    }

    /// Reads the log of a failed attempt of a running Job once (the Job may retry; the last
    /// failure read is what the condition shows if the Job fails).
    ///
    /// An empty log is read again when the pod changes next, up to [`FAILURE_LOG_READS`]
    /// times: the pod status may say "terminated" while the kubelet has already restarted the
    /// container (`OnFailure`), and then the current log is the new attempt's, still empty;
    /// the next read takes the previous run's.
    pub(super) fn prefetch_failure_log(
        &mut self,
        job: &JobView,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) -> Step {
        if self
            .state
            .failure_logs
            .get(&job.uid)
            .is_some_and(|l| !l.text.trim().is_empty() || l.reads >= FAILURE_LOG_READS)
        {
            return Ok(());
        }
        let failed_attempt = self
            .index
            .pods_of_job(&job.uid)
            .into_iter()
            .rev()
            .find_map(|p| {
                let current = p.scan.exit_code.is_some_and(|c| c != 0);
                let previous = p.scan.last_exit_code.is_some_and(|c| c != 0);
                (current || previous).then(|| (p.namespace.clone(), p.name.clone(), !current))
            });
        let Some((namespace, pod_name, previous)) = failed_attempt else {
            return Ok(());
        };
        let action = Action::FetchLog {
            namespace,
            pod_name,
            container: SCAN_CONTAINER.to_string(),
            limit_bytes: FAILED_LOG_BYTES,
            previous,
        };
        self.flights
            .issue(Target::FailureLog(job.uid.clone()), action, now, out)?;
        Ok(())
    }

    pub(in crate::engine) fn on_failure_log_outcome(&mut self, job_uid: &str, outcome: Outcome) {
        if let Outcome::Log(bytes) = outcome {
            // Only Jobs still known are worth remembering (bounded by the active Jobs).
            if let Some(d) = self
                .index
                .job_by_uid(job_uid)
                .and_then(|j| j.digest.clone())
            {
                let log = self
                    .state
                    .failure_logs
                    .entry(job_uid.to_string())
                    .or_default();
                log.text = String::from_utf8_lossy(&bytes).into_owned();
                log.reads += 1;
                // An empty log waits for the pod's next change (no read loop).
                if !log.text.trim().is_empty() {
                    self.state.dirty.insert(d);
                }
            }
        }
    }

    pub(in crate::engine) fn on_log_outcome(
        &mut self,
        job_uid: &str,
        outcome: Outcome,
        now: Timestamp,
    ) {
        let Some(h) = self.state.harvests.remove(job_uid) else {
            return;
        };
        self.state.dirty.insert(h.digest.clone());
        match outcome {
            Outcome::Log(bytes) if h.succeeded => match parse_report(&bytes, ReportFormat::Auto) {
                Ok(report) => {
                    let vulns = Arc::new(report.vulnerabilities);
                    if h.refetch {
                        self.reports.insert(&h.digest, job_uid, vulns);
                    } else {
                        self.record_success(&h.digest, job_uid, vulns, now);
                    }
                }
                Err(e) if !h.refetch => {
                    let message = format!(
                        "error decoding scan report JSON from job '{}': {e}",
                        h.job_name
                    );
                    self.record_failure(
                        &h.digest,
                        job_uid,
                        FailureReason::ReportDecodeError,
                        message,
                        now,
                    );
                }
                // Read before, unreadable now: reading it again will not help. The attempts
                // are spent, so the next sync starts a new scan for the details (re-reading
                // at once would read the log once per round trip).
                Err(_) => {
                    self.flights
                        .set_attempts(Target::Log(job_uid.to_string()), MAX_LOG_ATTEMPTS);
                }
            },
            Outcome::Log(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let message = if text.trim().is_empty() {
                    h.fallback
                } else {
                    text.into_owned()
                };
                self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
            }
            // Details read again: a permanent failure (the pod gone, the log too large) ends
            // the reads at once, and the next sync starts a new scan for them.
            Outcome::Failed(err) if h.refetch => {
                if !err.kind.is_retryable() {
                    self.flights
                        .set_attempts(Target::Log(job_uid.to_string()), MAX_LOG_ATTEMPTS);
                }
            }
            Outcome::Failed(err) => match err.kind {
                ApiErrorKind::LogTooLarge => {
                    let message = format!(
                        "the scan report of job '{}' is larger than {} bytes (--scan-log-max-bytes)",
                        h.job_name, self.cfg.log_max_bytes
                    );
                    self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
                }
                kind if kind.is_retryable() => {
                    // Tried again by the next sync after the back-off (the Job is still there).
                }
                // The kubelet refused the log of a container the pod status says ran to
                // completion: not a final answer (kwok answers "no logs found" until its cache
                // has the pod's log source, as after an API server restart; a restarted kubelet
                // may not know the container yet). Asked again within the attempts.
                ApiErrorKind::Invalid if h.succeeded => {}
                _ if !h.succeeded => {
                    self.record_failure(&h.digest, job_uid, FailureReason::Error, h.fallback, now);
                }
                kind => {
                    let message = format!(
                        "scan result of job '{}' lost: its log could not be read: {}",
                        h.job_name, err.message
                    );
                    // The pod is gone (404): the scan itself worked.
                    if kind == ApiErrorKind::NotFound {
                        self.lose_result(&h.digest, job_uid, message, now);
                    } else {
                        self.record_failure(&h.digest, job_uid, FailureReason::Error, message, now);
                    }
                }
            },
            Outcome::CisApplied(_) | Outcome::JobCreated(_) | Outcome::Done => {}
        }
    }

    /// The result of succeeded Job `job_uid` cannot be read any more (see [`LostResult`]):
    /// the digest is scanned again at once, unless this is the [`MAX_LOST_RESULTS`]th loss in
    /// a row, which is recorded as a failure saying `message`.
    fn lose_result(&mut self, digest: &str, job_uid: &str, message: String, now: Timestamp) {
        let scan = self.state.digests.entry(digest.to_string()).or_default();
        let times = scan.lost.as_ref().map_or(0, |l| l.times) + 1;
        if times >= MAX_LOST_RESULTS {
            let message = format!("{message} (the result of {times} scans in a row lost)");
            self.record_failure(digest, job_uid, FailureReason::Error, message, now);
            return;
        }
        scan.lost = Some(LostResult {
            job_uid: job_uid.to_string(),
            at: now,
            times,
        });
        scan.requested = None;
        self.stats.results_lost += 1;
        self.state.dirty.insert(digest.to_string());
    }

    pub(super) fn record_success(
        &mut self,
        digest: &str,
        job_uid: &str,
        vulns: Arc<Vec<Vulnerability>>,
        now: Timestamp,
    ) {
        self.stats.scans_succeeded += 1;
        self.first_results.record(digest, now);
        self.reports.insert(digest, job_uid, vulns);
        let job = self.index.job_by_uid(job_uid);
        // Gone already (deleted before its log was read): its creation time may still be known.
        let job_created = job
            .map(|j| j.created)
            .or_else(|| self.index.deleted_jobs.created(job_uid));
        let placement = job.map(|j| self.placement_of(j));
        let scan = self.state.digests.entry(digest.to_string()).or_default();
        scan.failures = 0;
        scan.lost = None;
        scan.announce = None;
        scan.round.clear();
        if placement.is_some() {
            scan.worked = placement;
        }
        let at = result_time(scan.latest.as_ref(), job_uid, now);
        scan.requested = None;
        scan.latest = Some(ScanResult {
            job_uid: job_uid.to_string(),
            at,
            job_created,
            outcome: ScanOutcome::Succeeded,
        });
        self.state.dirty.insert(digest.to_string());
    }

    pub(super) fn record_failure(
        &mut self,
        digest: &str,
        job_uid: &str,
        reason: FailureReason,
        message: String,
        now: Timestamp,
    ) {
        self.stats.scans_failed += 1;
        self.first_results.record(digest, now);
        let job_created = self.index.job_created(job_uid);
        let scan = self.state.digests.entry(digest.to_string()).or_default();
        scan.failures = scan.failures.saturating_add(1);
        scan.lost = None;
        scan.announce = None;
        scan.round.clear();
        let at = result_time(scan.latest.as_ref(), job_uid, now);
        scan.requested = None;
        scan.latest = Some(ScanResult {
            job_uid: job_uid.to_string(),
            at,
            job_created,
            outcome: ScanOutcome::Failed { reason, message },
        });
        self.state.dirty.insert(digest.to_string());
    }
}

/// `lastScanTime` of a new result of Job `job_uid`: now, but never before the result it
/// replaces (stamped by a replica whose clock ran ahead): a CIS's `lastScanTime` only moves
/// forward.
fn result_time(replaced: Option<&ScanResult>, job_uid: &str, now: Timestamp) -> Timestamp {
    let now = now.truncate_to_secs();
    match replaced {
        Some(r) if r.job_uid != job_uid && r.at >= now => r.at.plus(Duration::from_secs(1)),
        _ => now,
    }
}
