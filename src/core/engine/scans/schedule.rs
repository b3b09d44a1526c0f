//! Schedule (step 4): queued digests start while the active-Job limit allows, each in the
//! placement that comes next (`crate::engine::placement`), on the platform of its nodes.

use super::*;

impl ScanStage<'_> {
    /// Starts queued scans while Job slots are free.
    pub(in crate::engine) fn start_scans(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let mut queue: Vec<QueueKey> = self
            .state
            .digests
            .values()
            .filter_map(|s| s.queued.clone())
            .collect();
        self.state.uncertain_jobs.expire(now);
        // A digest whose last create may have been applied goes first: its own retry does not
        // count against the limit and settles the uncertainty ("already exists" or created),
        // while it blocks every other digest when the limit is reached.
        queue.sort_by_key(|(never, at, digest)| {
            (!self.state.uncertain_jobs.contains(digest), *never, *at)
        });
        for (_, _, digest) in queue {
            if !self.flights.has_room() {
                return;
            }
            let creating = self
                .flights
                .count_busy(|t| matches!(t, Target::CreateJob(_)));
            // Other digests' uncertain Jobs; this digest's own retry settles its uncertainty
            // (JobCreated, or AlreadyExists when the first attempt was applied).
            let uncertain = self
                .state
                .uncertain_jobs
                .digests()
                .filter(|d| {
                    **d != digest && !self.flights.is_busy(&Target::CreateJob((*d).clone()))
                })
                .count();
            let limit = self.cfg.active_job_limit as usize;
            if limit > 0 && self.index.active_job_count() + creating + uncertain >= limit {
                return;
            }
            self.create_job(&digest, now, out);
        }
    }

    pub(super) fn create_job(&mut self, digest: &str, now: Timestamp, out: &mut Vec<Command>) {
        if self.state.local_image_ids.contains(digest) {
            if let Some(scan) = self.state.digests.get_mut(digest) {
                scan.queued = None;
            }
            return;
        }
        let cis_keys = self.live_cis_of(digest);
        let pods: Vec<&PodView> = self.member_pods(&cis_keys);
        let uncertain = self
            .state
            .digests
            .get(digest)
            .and_then(|s| s.uncertain_create.clone());
        let Some(placement) = uncertain.or_else(|| self.next_placement(digest, &pods)) else {
            // Every candidate failed in this round (the pods changed since it began).
            self.end_round(digest, now);
            return;
        };
        let namespace = match &placement {
            Placement::ScanNamespace => self.cfg.scan_namespace.clone(),
            Placement::Workload { namespace, .. } => namespace.clone(),
        };
        // The CIS that asks: one in the Job's namespace first, one without any result first,
        // then by name.
        let Some(primary) = cis_keys
            .iter()
            .filter_map(|k| self.index.cis.get(k).map(|t| &t.view))
            .min_by_key(|c| {
                (
                    c.namespace != namespace,
                    c.status.last_scan_time.is_some(),
                    &c.namespace,
                    &c.name,
                )
            })
            .cloned()
        else {
            if let Some(s) = self.state.digests.get_mut(digest) {
                s.queued = None;
            }
            return;
        };
        // Nodes of the pods that run the image with these credentials (any pod's, if none).
        let node_names = |matching: bool| -> BTreeSet<String> {
            pods.iter()
                .filter(|p| !matching || placement.matches(p))
                .filter_map(|p| p.node_name.clone())
                .collect()
        };
        let mut nodes = node_names(true);
        if nodes.is_empty() {
            nodes = node_names(false);
        }
        let (name, credentials, job_config) = match &placement {
            Placement::ScanNamespace => (scan_job_name(&primary.spec.name, digest), None, None),
            Placement::Workload { credentials, .. } => (
                workload_scan_job_name(&primary.spec.name, digest),
                Some(credentials.clone()),
                self.state.trivy_job_config.clone(),
            ),
        };
        let key = object_key(&namespace, &name);
        if let Some(existing) = self.index.jobs.get(&key).map(|t| t.view.clone()) {
            // The name is taken by a finished Job (e.g. kept for its TTL): delete it first,
            // with background propagation so its pod goes too (spec §7.2).
            if existing.finished.is_some() && !existing.deleting {
                let action = Action::DeleteJob {
                    namespace: existing.namespace.clone(),
                    name: existing.name.clone(),
                    uid: existing.uid.clone(),
                };
                // Issued, backing off or blocked: the timer below brings the digest back.
                let _ = self.flights.issue(Target::DeleteJob(key), action, now, out);
            }
            self.timers.arm(
                TimerKey::Digest(digest.to_string()),
                now.plus(NAME_TAKEN_RETRY),
            );
            return;
        }
        let params = ScanJobParams {
            namespace,
            job_name: name.clone(),
            image_name: primary.spec.name.clone(),
            image_digest: digest.to_string(),
            cis_namespace: primary.namespace.clone(),
            cis_uid: primary.uid.clone(),
            workload_kind: primary.spec.workload.kind.clone(),
            workload_name: primary.spec.workload.name.clone(),
            required_platform: self.platform_of(&nodes),
            preferred_nodes: nodes.into_iter().collect(),
            pull_credentials: credentials,
            job_config,
        };
        let job = build_scan_job(&params, &self.cfg.job);
        let target = Target::CreateJob(digest.to_string());
        if let Ok(Issued::Yes) =
            self.flights
                .issue(target, Action::CreateJob { job: Box::new(job) }, now, out)
        {
            let scan = self.state.digests.entry(digest.to_string()).or_default();
            scan.queued = None;
            scan.announce = Some((CisKey::new(&primary.namespace, &primary.name), name));
        }
    }

    /// The pods that run a digest: the members of its live CIS.
    pub(super) fn member_pods(&self, cis_keys: &[CisKey]) -> Vec<&PodView> {
        cis_keys
            .iter()
            .filter_map(|k| self.index.members.get(k))
            .flatten()
            .filter_map(|p| self.index.pods.get(p))
            .map(|e| &e.tracked.view)
            .collect()
    }

    /// The first candidate placement not tried in this round.
    pub(super) fn next_placement(&self, digest: &str, pods: &[&PodView]) -> Option<Placement> {
        let scan = self.state.digests.get(digest);
        let worked = scan.and_then(|s| s.worked.as_ref());
        let round = scan.map(|s| s.round.as_slice()).unwrap_or_default();
        // Without the job config a Job in a workload namespace would scan without the trivy
        // server's address.
        let workload_placement =
            self.cfg.workload_placement && self.state.trivy_job_config.is_some();
        let failed_rounds = scan.map_or(0, |s| s.failures);
        placement::candidates(
            pods.iter().copied(),
            workload_placement,
            worked,
            failed_rounds,
        )
        .into_iter()
        .find(|c| !round.iter().any(|f| f.placement == *c))
    }

    /// Where a Job of ours runs: the scan namespace, or a workload namespace with the
    /// credentials of its pod template.
    pub(super) fn placement_of(&self, job: &JobView) -> Placement {
        self.placement_in(&job.namespace, job.pull_credentials.clone())
    }

    /// Where the Job of a `CreateJob` would run.
    pub(super) fn placement_of_create(&self, action: &Action) -> Option<Placement> {
        let Action::CreateJob { job } = action else {
            return None;
        };
        let spec = job.spec.as_ref()?.template.spec.as_ref()?;
        let credentials = PullCredentials::of(spec).map(Arc::new);
        Some(self.placement_in(job.metadata.namespace.as_deref()?, credentials))
    }

    /// The placement of a Job in `namespace` with these pod credentials. A workload that runs
    /// in the scan namespace itself, with pull secrets, has a workload placement there: the
    /// pod's credentials, not the scan service account alone.
    pub(super) fn placement_in(
        &self,
        namespace: &str,
        credentials: Option<Arc<PullCredentials>>,
    ) -> Placement {
        match credentials {
            None if namespace == self.cfg.scan_namespace => Placement::ScanNamespace,
            credentials => Placement::Workload {
                namespace: namespace.to_string(),
                credentials: credentials.unwrap_or_default(),
            },
        }
    }

    /// A placement failed in a way another may fix: the next one is tried when the Job is
    /// gone; after the last, the round's failures become the digest's result.
    pub(super) fn placement_failed(
        &mut self,
        digest: &str,
        placement: Placement,
        job_uid: &str,
        reason: FailureReason,
        message: String,
        now: Timestamp,
    ) {
        if !job_uid.is_empty()
            && self
                .state
                .latest(digest)
                .is_some_and(|l| l.job_uid == job_uid)
        {
            return;
        }
        let scan = self.state.digests.entry(digest.to_string()).or_default();
        if !job_uid.is_empty() && scan.round.iter().any(|f| f.job_uid == job_uid) {
            return;
        }
        scan.round.push(PlacementFailure {
            placement,
            reason,
            message,
            job_uid: job_uid.to_string(),
        });
        self.state.dirty.insert(digest.to_string());
        let cis_keys = self.live_cis_of(digest);
        let pods = self.member_pods(&cis_keys);
        if self.next_placement(digest, &pods).is_none() {
            self.end_round(digest, now);
        }
    }

    /// Records the failures of a round of placements as the digest's failed scan.
    pub(super) fn end_round(&mut self, digest: &str, now: Timestamp) {
        let Some(scan) = self.state.digests.get_mut(digest) else {
            return;
        };
        scan.queued = None;
        let round = std::mem::take(&mut scan.round);
        let Some(first) = round.first() else {
            return;
        };
        let scan_namespace = &self.cfg.scan_namespace;
        let message = round
            .iter()
            .map(|f| format!("{}: {}", f.placement.describe(scan_namespace), f.message))
            .collect::<Vec<_>>()
            .join("; ");
        let message = if round.len() > 1 {
            format!("no placement of the scan Job worked: {message}")
        } else {
            message
        };
        // The newest Job of the round that was created (none when every create was refused).
        let job_uid = round
            .iter()
            .rev()
            .find(|f| !f.job_uid.is_empty())
            .map(|f| f.job_uid.clone())
            .unwrap_or_default();
        let reason = first.reason.clone();
        self.record_failure(digest, &job_uid, reason, message, now);
    }

    pub(in crate::engine) fn on_create_job_outcome(
        &mut self,
        digest: &str,
        action: &Action,
        outcome: Outcome,
        now: Timestamp,
    ) {
        self.state.dirty.insert(digest.to_string());
        match outcome {
            Outcome::JobCreated(view) => {
                self.stats.jobs_created += 1;
                self.state.uncertain_jobs.settle(digest);
                if self.index.deleted_jobs.contains(&view.uid) {
                    // Created, then deleted (the watch was faster than this answer): it is
                    // not running, and the create is settled.
                    if let Some(scan) = self.state.digests.get_mut(digest) {
                        scan.uncertain_create = None;
                    }
                    self.state.wake_queue();
                    return;
                }
                let (stream, epoch) = self
                    .index
                    .jobs
                    .get(&object_key(&view.namespace, &view.name))
                    .map(|t| (t.stream, t.epoch))
                    .unwrap_or_else(|| {
                        (self.index.relists)
                            .home(crate::engine::tracked::ObjectKind::Job, &view.namespace)
                    });
                let follows = self.state.latest(digest).map(|l| l.job_uid.clone());
                self.state
                    .digests
                    .entry(digest.to_string())
                    .or_default()
                    .requested = Some((view.uid.clone(), follows));
                self.upsert_job(crate::engine::tracked::Tracked {
                    view: *view,
                    stream,
                    epoch,
                });
            }
            Outcome::Failed(err) => {
                // "Already exists" for a Job the watch has not shown: the earlier attempt that
                // timed out was applied. Its placement stays the one to create in until the
                // watch shows the Job, or the next create would start a second Job elsewhere
                // (sim seed 4092, S3).
                let unseen = match action {
                    Action::CreateJob { job } => !self.index.jobs.contains_key(&object_key(
                        job.metadata.namespace.as_deref().unwrap_or_default(),
                        job.metadata.name.as_deref().unwrap_or_default(),
                    )),
                    _ => false,
                };
                let scan = self.state.digests.entry(digest.to_string()).or_default();
                scan.announce = None;
                // A definite answer settles an uncertain create: the Job exists (the watch
                // shows it) or that placement does not take it.
                let unsettled = matches!(
                    err.kind,
                    ApiErrorKind::Unknown
                        | ApiErrorKind::Conflict
                        | ApiErrorKind::Throttled
                        | ApiErrorKind::ServerError
                ) || (err.kind == ApiErrorKind::AlreadyExists && unseen);
                if !unsettled {
                    scan.uncertain_create = None;
                }
                // A workload namespace that does not take our Job (RBAC bound per namespace,
                // a quota on Jobs, a namespace going away): the next placement.
                if matches!(
                    err.kind,
                    ApiErrorKind::Forbidden
                        | ApiErrorKind::Invalid
                        | ApiErrorKind::NotFound
                        | ApiErrorKind::NamespaceTerminating
                ) && let Some(placement) = self
                    .placement_of_create(action)
                    .filter(|p| *p != Placement::ScanNamespace)
                {
                    let message = format!("scan Job not created: {}", err.message);
                    self.placement_failed(
                        digest,
                        placement,
                        "",
                        FailureReason::ScanPodRejected,
                        message,
                        now,
                    );
                    return;
                }
                match err.kind {
                    // The Job exists (our earlier attempt, or a finished one): the watch shows
                    // it; look again shortly.
                    ApiErrorKind::AlreadyExists => {
                        self.timers.arm(
                            TimerKey::Digest(digest.to_string()),
                            now.plus(NAME_TAKEN_RETRY),
                        );
                    }
                    // The request may have been applied: the Job may exist although the
                    // watch has not shown it yet. It counts against the active-Job limit
                    // until it shows up or the hold expires.
                    ApiErrorKind::Unknown => {
                        let placement = self
                            .placement_of_create(action)
                            .unwrap_or(Placement::ScanNamespace);
                        self.state
                            .digests
                            .entry(digest.to_string())
                            .or_default()
                            .uncertain_create = Some(placement);
                        let until = now.plus(UNCERTAIN_JOB_HOLD);
                        self.state.uncertain_jobs.hold(digest, until);
                        self.timers.arm(TimerKey::Digest(digest.to_string()), until);
                    }
                    kind if kind.is_retryable() => {}
                    // The Job was rejected (bad settings, missing namespace): users must see it.
                    _ => {
                        let message = format!("scan Job could not be created: {}", err.message);
                        self.record_failure(digest, "", FailureReason::Error, message, now);
                    }
                }
            }
            Outcome::CisApplied(_) | Outcome::Log(_) | Outcome::Done => {}
        }
    }

    pub(in crate::engine) fn on_delete_job_outcome(
        &mut self,
        name: &str,
        action: &Action,
        outcome: Outcome,
    ) {
        if let Some(d) = self
            .index
            .jobs
            .get(name)
            .and_then(|j| j.view.digest.clone())
        {
            self.state.dirty.insert(d);
        }
        let Action::DeleteJob { uid, .. } = action else {
            return;
        };
        let ours = self
            .index
            .jobs
            .get(name)
            .is_some_and(|j| j.view.uid == *uid);
        // The server's answer is newer than the watch: a deleted (or already missing) Job must
        // not be deleted again and again until the watch catches up (or, after a lost Delete
        // event, until the next relist).
        match outcome {
            Outcome::Done if ours => {
                if let Some(j) = self.index.jobs.get_mut(name) {
                    j.view.deleting = true;
                }
                self.state.wake_queue();
            }
            Outcome::Failed(err) if ours && err.kind == ApiErrorKind::NotFound => {
                if let Some(j) = self.index.jobs.get(name) {
                    self.index.deleted_jobs.insert(uid, j.view.created);
                }
                self.remove_job(name);
            }
            _ => {}
        }
    }
}

impl ScanStage<'_> {
    /// The platforms of `nodes` that the shell reported; nodes not (yet) known add nothing.
    pub(super) fn platform_of(&self, nodes: &BTreeSet<String>) -> RequiredPlatform {
        let mut required = RequiredPlatform::default();
        for platform in nodes
            .iter()
            .filter_map(|n| self.state.node_platforms.get(n))
        {
            required.os.extend(platform.os.clone());
            required.arch.extend(platform.arch.clone());
        }
        required
    }
}
