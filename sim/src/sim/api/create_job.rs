//! Scan Job creation at the API server: AlreadyExists, namespace and RBAC refusals, the
//! scheduling facts the Job's pod template carries (preferred nodes, required architectures)
//! and what Pod Security Admission will say of its pod.

use super::*;

impl Sim {
    pub(super) fn create_job(
        &mut self,
        (i, inc, id): (usize, u32, CommandId),
        job: Job,
        orphan: bool,
        now: Timestamp,
    ) -> Outcome {
        let meta = &job.metadata;
        let Some(name) = meta.name.clone() else {
            self.checker
                .violation(self.now, "JOB", "Job without a name".to_string());
            return fail(ApiErrorKind::Invalid, "name required");
        };
        let ns = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let ann = meta.annotations.clone().unwrap_or_default();
        let digest = ann.get(ANNOTATION_DIGEST).cloned();
        let image = ann.get(ANNOTATION_IMAGE).cloned();
        let spec = job.spec.clone().unwrap_or_default();
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        let scan_image = pod_spec
            .containers
            .iter()
            .find(|c| c.name == SCAN_CONTAINER)
            .and_then(|c| c.image.clone());
        let pull = PullCredentials::of(&pod_spec).map(Arc::new);
        // The Job the core built must identify itself, and run where it may.
        let mut problems = Vec::new();
        if ns == SCAN_NS {
            let sa = pod_spec
                .service_account_name
                .as_deref()
                .unwrap_or("default");
            if pull.is_some() || sa != self.base_cfg.job.service_account_name {
                problems.push(format!(
                    "a Job in the scan namespace with service account {sa} and {pull:?}"
                ));
            }
        } else {
            if !orphan && !self.instances[i].cfg.namespace_allowed(&ns) {
                problems.push(format!("placed in namespace {ns}, which is not scanned"));
            }
            // A workload placement copies the credentials of a pod that runs the digest there:
            // the operator never invents or moves credentials.
            let taken = pull.as_ref().zip(digest.as_ref()).is_some_and(|(c, d)| {
                self.cluster
                    .ran_with
                    .contains(&(d.clone(), ns.clone(), c.clone()))
            });
            if !taken {
                problems.push(format!(
                    "placed in namespace {ns} with {pull:?}, which no pod there runs the digest with"
                ));
            }
        }
        // trivy-job-config exists in the scan namespace only: elsewhere its data must come as
        // a copy (an envFrom of a missing ConfigMap keeps the pod from starting).
        if let Some(scan) = pod_spec
            .containers
            .iter()
            .find(|c| c.name == SCAN_CONTAINER)
        {
            let refs_config = scan
                .env_from
                .iter()
                .flatten()
                .any(|e| e.config_map_ref.is_some());
            let env = scan.env.clone().unwrap_or_default();
            let copied = self.cluster.job_config.iter().all(|(k, v)| {
                env.iter()
                    .any(|e| e.name == format!("TRIVY_{k}") && e.value.as_deref() == Some(v))
            });
            if ns == SCAN_NS && !refs_config {
                problems.push("no envFrom of trivy-job-config in the scan namespace".to_string());
            }
            if ns != SCAN_NS && (refs_config || !copied) {
                problems.push(format!(
                    "trivy-job-config not copied into namespace {ns} (envFrom={refs_config}, copied={copied})"
                ));
            }
        }
        if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
            problems.push("managed-by label missing".to_string());
        }
        if !image_scanner_core::naming::is_dns1123_label(&name) {
            problems.push(format!("name {name} is not a DNS-1123 label"));
        }
        let (Some(d), Some(img)) = (&digest, &image) else {
            problems.push("digest/image annotations missing".to_string());
            self.checker.violation(
                self.now,
                "JOB",
                format!("bad Job {ns}/{name}: {problems:?}"),
            );
            return fail(ApiErrorKind::Invalid, "bad job");
        };
        if scan_image.as_deref() != Some(&format!("{img}@{d}")) {
            problems.push(format!("scan image {scan_image:?} != {img}@{d}"));
        }
        let cis_ns = labels.get(LABEL_CIS_NAMESPACE).cloned();
        let cis_uid = labels.get(LABEL_CIS_UID).cloned();
        if spec.ttl_seconds_after_finished.is_none() || spec.active_deadline_seconds.is_none() {
            problems.push("TTL or deadline missing (Job unbounded)".to_string());
        }
        if !self.scanner.truth.contains_key(d) {
            problems.push(format!("digest {d} was never running"));
        }
        // P1: the scan runs on the architecture of the nodes that run the image (those it
        // prefers); an unlabelled node requires nothing.
        let archs_of_preferred: BTreeSet<String> = preferred_nodes(&pod_spec)
            .iter()
            .filter_map(|n| n.strip_prefix("node-")?.parse::<usize>().ok())
            .filter_map(|n| *self.opts.node_archs.get(n)?)
            .map(str::to_string)
            .collect();
        let required: BTreeSet<String> = required_archs(&pod_spec).into_iter().collect();
        if required != archs_of_preferred {
            problems.push(format!(
                "[P1] required architectures {required:?} != those of its preferred nodes {archs_of_preferred:?}"
            ));
        }
        if !problems.is_empty() {
            self.checker.violation(
                self.now,
                "JOB",
                format!("bad Job {ns}/{name}: {problems:?}"),
            );
        }
        self.checker
            .on_job_create_attempt(self.now, (i, inc), d, &format!("{ns}/{name}"));
        // The API server authorizes first (the operator's RBAC may be bound per namespace),
        // then the namespace's lifecycle admits, then the name must be free.
        if ns != SCAN_NS && self.kubelet.opts.setup(&ns).forbidden {
            return fail(
                ApiErrorKind::Forbidden,
                format!(
                    "jobs.batch is forbidden: User \"system:serviceaccount:{SCAN_NS}:image-scanner\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"{ns}\""
                ),
            );
        }
        match self.cluster.namespaces.get(&ns) {
            None => {
                return fail(
                    ApiErrorKind::NotFound,
                    format!("namespaces \"{ns}\" not found"),
                );
            }
            Some(NsState::Terminating) => {
                return fail(
                    ApiErrorKind::NamespaceTerminating,
                    format!(
                        "jobs.batch \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                    ),
                );
            }
            Some(NsState::Active) => {}
        }
        let key = (ns.clone(), name.clone());
        if self.cluster.jobs.contains_key(&key) {
            return fail(
                ApiErrorKind::AlreadyExists,
                format!("jobs.batch \"{name}\" already exists"),
            );
        }
        let uid = self.cluster.uid();
        let transient = !self.faults.healing()
            && self.opts.has(Fault::ScanFailure)
            && self.faults.draw().chance(self.opts.rate * 3.0);
        let log_limit = self.base_cfg.log_max_bytes;
        let plan = self.scanner.plan(d, &mut self.r_jobs, transient, log_limit);
        let vulns = match &plan {
            crate::cluster::Plan::Report { valid: true, .. } => {
                self.scanner.truth.get(d).map(|t| t.vulns.clone())
            }
            _ => None,
        };
        let rejection = self.kubelet.pod_rejection(&ns, &pod_spec);
        let sj = SimJob {
            ns: ns.clone(),
            name: name.clone(),
            uid: uid.clone(),
            created: now.truncate_to_secs(),
            digest: digest.clone(),
            image: image.clone(),
            cis_ns,
            cis_uid,
            backoff_limit: spec.backoff_limit.unwrap_or(6),
            deadline_s: spec.active_deadline_seconds.unwrap_or(i64::MAX / 4000),
            ttl_s: spec.ttl_seconds_after_finished.unwrap_or(i32::MAX),
            finished: None,
            pod: None,
            failures: 0,
            plan: plan.clone(),
            orphan,
            creator: (i, inc),
            created_rv: 0,
            pull,
            preferred_nodes: preferred_nodes(&pod_spec),
            required_archs: required_archs(&pod_spec),
            rejection,
            refused: 0,
        };
        // A late creation of an earlier incarnation was decided under that incarnation's
        // configuration, which a restart may have changed: its limit is unknown here.
        let limit = if self.instances[i].inc == inc {
            self.instances[i].cfg.active_job_limit
        } else {
            0
        };
        self.cluster.jobs.insert(key.clone(), sj);
        self.cluster.publish_job(&key);
        let created_rv = self.cluster.rv;
        if let Some(j) = self.cluster.jobs.get_mut(&key) {
            j.created_rv = created_rv;
        }
        self.cluster.job_registry.insert(
            uid.clone(),
            JobRecord {
                ns: ns.clone(),
                name: name.clone(),
                digest: digest.clone(),
                created_rv,
                created: now.truncate_to_secs(),
                plan,
                vulns,
                succeeded: false,
                finished: false,
                pull: self.cluster.jobs.get(&key).and_then(|j| j.pull.clone()),
                started: None,
            },
        );
        self.stats.jobs += 1;
        let me = (i, inc);
        // What the creator could know of when it decided (its Job watch may have moved on
        // while the request travelled).
        let cursor = self.instances[i].job_cursor.remove(&id).unwrap_or_else(|| {
            self.instances[i]
                .watchers
                .get(&crate::cluster::Kind::Job)
                .map_or(0, |w| w.cursor)
        });
        self.checker
            .on_job_created(self.now, &self.cluster, &key, limit, |j| {
                j.creator == me || j.created_rv <= cursor
            });
        let deadline = self.cluster.jobs.get(&key).map_or(600, |j| j.deadline_s);
        let d = self.r_jobs.between(200, 2_000);
        let ev = |step| Event::Job {
            ns: ns.clone(),
            name: name.clone(),
            uid: uid.clone(),
            step,
        };
        self.after(d, ev(JobStep::CreatePod));
        self.after(
            u64::try_from(deadline).unwrap_or(600) * 1000,
            ev(JobStep::Deadline),
        );
        let view = self.cluster.jobs.get(&key).map(job_view);
        match view {
            Some(mut v) => {
                v.resource_version = Some(created_rv);
                Outcome::JobCreated(Box::new(v))
            }
            None => fail(ApiErrorKind::NotFound, "gone"),
        }
    }
}

/// The `kubernetes.io/arch` values a pod spec's required node affinity allows.
fn required_archs(spec: &PodSpec) -> Vec<String> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flat_map(|r| r.node_selector_terms.iter())
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|e| e.key == "kubernetes.io/arch" && e.operator == "In")
        .flat_map(|e| e.values.iter().flatten().cloned())
        .collect()
}

/// The nodes a pod spec's preferred node affinity names.
fn preferred_nodes(spec: &PodSpec) -> Vec<String> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .flat_map(|t| t.preference.match_fields.iter().flatten())
        .filter(|r| r.key == "metadata.name" && r.operator == "In")
        .flat_map(|r| r.values.iter().flatten().cloned())
        .collect()
}
