//! The scan Job controller and the kubelet of scan pods: the pod (refused by Pod Security
//! Admission in a `restricted` namespace: `FailedCreate` Events instead, with the Job
//! controller's back-off), scheduling onto a preferred node, the scanned image's pull under
//! the node's credential rules (`kubelet.rs`), pull back-off with BackOff Events, exit codes,
//! restartPolicy OnFailure up to backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished;
//! and users deleting things at random.

use std::sync::Arc;

use image_scanner_core::port::{JobFinish, ScanContainerState};
use image_scanner_core::time::Timestamp;

use super::Sim;
use crate::cluster::{Plan, SimScanPod};
use crate::event::{Event, JobStep};
use crate::kubelet::Access;
use crate::options::Fault;
use crate::rng::Draw;

/// Key of a Job or scan pod: (namespace, name).
pub type Key = (String, String);

/// The Job controller's back-off between refused pod creations: 10 s doubling, at most 6 min.
fn refusal_backoff_ms(refused: u32) -> u64 {
    (10_000u64 << refused.min(6)).min(360_000)
}

impl Sim {
    /// Scan Job controller steps.
    pub fn job_step(&mut self, key: &Key, uid: &str, step: JobStep) {
        let Some(job) = self.cluster.jobs.get(key) else {
            return;
        };
        if job.uid != uid {
            return;
        }
        let job = job.clone();
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let now = Timestamp(self.now).truncate_to_secs();
        let ev = |step| Event::Job {
            ns: key.0.clone(),
            name: key.1.clone(),
            uid: uid.to_string(),
            step,
        };
        match step {
            JobStep::CreatePod => {
                if job.finished.is_some() || job.pod.is_some() {
                    return;
                }
                let pod_name = loop {
                    let n = format!("{name}-{}", self.r_jobs.hex(5));
                    if self.used_names.insert(n.clone()) {
                        break n;
                    }
                };
                if let Some(why) = &job.rejection {
                    // Admission refuses the pod; the Job shows nothing of it, only Events do.
                    let message =
                        format!("Error creating: pods \"{pod_name}\" is forbidden: {why}");
                    self.note(|| format!("job {ns}/{name}: FailedCreate"));
                    self.cluster.job_events.insert(
                        (ns.to_string(), name.to_string(), uid.to_string()),
                        (message.clone(), self.now),
                    );
                    self.broadcast_job_rejected(ns, name, uid, &message);
                    let backoff = refusal_backoff_ms(job.refused);
                    if let Some(j) = self.cluster.jobs.get_mut(key) {
                        j.refused += 1;
                    }
                    self.after(backoff, ev(JobStep::CreatePod));
                    return;
                }
                // The scheduler honours the preferred node affinity (the nodes that run the
                // image); otherwise any node the required one (the image's architecture)
                // allows.
                let node = if job.preferred_nodes.is_empty() {
                    let allowed: Vec<usize> = (0..self.opts.nodes)
                        .filter(|n| {
                            job.required_archs.is_empty()
                                || self.opts.node_archs[*n]
                                    .is_some_and(|a| job.required_archs.iter().any(|r| r == a))
                        })
                        .collect();
                    if allowed.is_empty() {
                        self.checker.violation(
                            self.now,
                            "P1",
                            format!(
                                "job {ns}/{name}: no node has an architecture of {:?}",
                                job.required_archs
                            ),
                        );
                        format!("node-{}", self.r_jobs.index(self.opts.nodes))
                    } else {
                        format!("node-{}", allowed[self.r_jobs.index(allowed.len())])
                    }
                } else {
                    job.preferred_nodes[self.r_jobs.index(job.preferred_nodes.len())].clone()
                };
                let pod_uid = self.cluster.uid();
                let pod_key = (ns.to_string(), pod_name.clone());
                let waiting = ScanContainerState {
                    waiting_reason: Some("PodInitializing".to_string()),
                    ..ScanContainerState::default()
                };
                self.cluster.scan_pods.insert(
                    pod_key.clone(),
                    SimScanPod {
                        ns: ns.to_string(),
                        name: pod_name.clone(),
                        uid: pod_uid,
                        job_uid: job.uid.clone(),
                        job_name: job.name.clone(),
                        created: now,
                        phase: "Pending",
                        init: waiting.clone(),
                        scan: waiting,
                        log: Arc::new(Vec::new()),
                        deleting: false,
                        node,
                        pull_error: None,
                    },
                );
                if let Some(j) = self.cluster.jobs.get_mut(key) {
                    j.pod = Some(pod_name.clone());
                }
                self.cluster.publish_scan_pod(&pod_key);
                let d = self.r_jobs.between(500, 5_000);
                self.after(d, ev(JobStep::Init));
            }
            JobStep::Init => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                let pod_key = (ns.to_string(), pod_name);
                let run = self.r_jobs.between(2_000, 60_000);
                let digest = job.digest.clone().unwrap_or_default();
                let image = format!("{}@{digest}", job.image.clone().unwrap_or_default());
                let Some(p) = self.cluster.scan_pods.get(&pod_key) else {
                    return;
                };
                if p.deleting || job.finished.is_some() {
                    return;
                }
                // The kubelet decides whether this pod may use the image on its node, or pulls
                // it with the pod's credentials (KEP-2535); a missing image comes after that.
                let access = self.kubelet.access(
                    &p.node,
                    &digest,
                    &image,
                    ns,
                    job.pull.as_deref(),
                    self.now,
                );
                let node = p.node.clone();
                self.note(|| format!("scan pod {}/{} on {node}: {access:?}", ns, pod_key.1));
                let pull_error = match access {
                    Access::Denied(message) => Some(message),
                    _ if job.plan == Plan::PullBackOff => Some(format!(
                        "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
                    )),
                    _ => None,
                };
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_key) else {
                    return;
                };
                p.init = ScanContainerState {
                    exit_code: Some(0),
                    started: true,
                    ..ScanContainerState::default()
                };
                let backoff = pull_error.is_some();
                if let Some(message) = pull_error {
                    p.scan = ScanContainerState {
                        waiting_reason: Some("ErrImagePull".to_string()),
                        waiting_message: Some(message.clone()),
                        ..ScanContainerState::default()
                    };
                    p.pull_error = Some(message);
                } else {
                    p.phase = "Running";
                    p.scan = ScanContainerState {
                        started: true,
                        ..ScanContainerState::default()
                    };
                    if let Some(r) = self.cluster.job_registry.get_mut(uid) {
                        r.started = Some((node, self.now));
                    }
                }
                self.cluster.publish_scan_pod(&pod_key);
                if backoff {
                    let d = self.r_jobs.between(1_000, 10_000);
                    self.after(d, ev(JobStep::BackOffEvent));
                } else if job.plan != Plan::Hang {
                    self.after(run, ev(JobStep::Exit));
                }
            }
            JobStep::BackOffEvent => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                let pod_key = (ns.to_string(), pod_name.clone());
                let image = format!(
                    "{}@{}",
                    job.image.clone().unwrap_or_default(),
                    job.digest.clone().unwrap_or_default()
                );
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_key) else {
                    return;
                };
                if p.deleting {
                    return;
                }
                // Since Kubernetes 1.32 the back-off message carries the last pull error.
                let mut message = format!("Back-off pulling image \"{image}\"");
                if let Some(e) = &p.pull_error {
                    message.push_str(&format!(": ErrImagePull: {e}"));
                }
                p.scan.waiting_reason = Some("ImagePullBackOff".to_string());
                p.scan.waiting_message = Some(message);
                self.cluster.publish_scan_pod(&pod_key);
                self.broadcast_back_off(ns, &pod_name);
                let d = self.r_jobs.between(10_000, 60_000);
                self.after(d, ev(JobStep::BackOffEvent));
            }
            JobStep::Exit => {
                let Some(pod_name) = job.pod.clone() else {
                    return;
                };
                let pod_key = (ns.to_string(), pod_name);
                if job.finished.is_some() {
                    return;
                }
                let (code, log) = match &job.plan {
                    Plan::Report { log, .. } => (0, log.clone()),
                    Plan::ExitFail { code, log } => (*code, log.clone()),
                    _ => return,
                };
                let Some(p) = self.cluster.scan_pods.get_mut(&pod_key) else {
                    return;
                };
                if p.deleting {
                    return;
                }
                p.log = log;
                p.scan.exit_code = Some(code);
                p.scan.started = true;
                let finish = if code == 0 {
                    p.phase = "Succeeded";
                    Some(JobFinish {
                        succeeded: true,
                        at: now,
                        reason: "CompletionsReached".to_string(),
                        message: "Reached expected number of succeeded pods".to_string(),
                    })
                } else if job.failures + 1 > job.backoff_limit {
                    p.phase = "Failed";
                    Some(JobFinish {
                        succeeded: false,
                        at: now,
                        reason: "BackoffLimitExceeded".to_string(),
                        message: "Job has reached the specified backoff limit".to_string(),
                    })
                } else {
                    None
                };
                self.cluster.publish_scan_pod(&pod_key);
                match finish {
                    Some(f) => self.finish_job(key, f),
                    None => {
                        // restartPolicy OnFailure: the container restarts in the same pod.
                        if let Some(j) = self.cluster.jobs.get_mut(key) {
                            j.failures += 1;
                        }
                        let run = self.r_jobs.between(5_000, 40_000);
                        if let Some(p) = self.cluster.scan_pods.get_mut(&pod_key) {
                            p.scan.exit_code = None;
                        }
                        self.cluster.publish_scan_pod(&pod_key);
                        self.after(run, ev(JobStep::Exit));
                    }
                }
            }
            JobStep::Deadline => {
                if job.finished.is_some() {
                    return;
                }
                self.finish_job(
                    key,
                    JobFinish {
                        succeeded: false,
                        at: now,
                        reason: "DeadlineExceeded".to_string(),
                        message: "Job was active longer than specified deadline".to_string(),
                    },
                );
                if let Some(p) = job.pod {
                    self.delete_scan_pod(&(ns.to_string(), p));
                }
            }
            JobStep::Ttl => {
                self.note(|| format!("ttl delete job {ns}/{name}"));
                self.delete_job_object(key);
            }
        }
    }

    fn finish_job(&mut self, key: &Key, finish: JobFinish) {
        let Some(j) = self.cluster.jobs.get_mut(key) else {
            return;
        };
        j.finished = Some(finish.clone());
        let uid = j.uid.clone();
        let mut ttl = u64::try_from(j.ttl_s).unwrap_or(0) * 1000;
        if let Some(rec) = self.cluster.job_registry.get_mut(&uid) {
            rec.finished = true;
            rec.succeeded = finish.succeeded;
        }
        self.cluster.publish_job(key);
        self.note(|| format!("job {}/{} finished: {}", key.0, key.1, finish.reason));
        if self.faults.fires(Fault::TtlDelete, 5.0) {
            ttl = self.faults.draw().between(0, 3_000);
        }
        self.after(
            ttl,
            Event::Job {
                ns: key.0.clone(),
                name: key.1.clone(),
                uid,
                step: JobStep::Ttl,
            },
        );
    }

    /// Deletes a Job with background propagation: gone at once, its pod follows.
    pub fn delete_job_object(&mut self, key: &Key) {
        let Some(j) = self.cluster.jobs.remove(key) else {
            return;
        };
        self.cluster.publish_job(key);
        if let Some(p) = j.pod {
            self.delete_scan_pod(&(key.0.clone(), p));
        }
    }

    /// Graceful deletion of a scan pod.
    pub fn delete_scan_pod(&mut self, key: &Key) {
        let Some(p) = self.cluster.scan_pods.get_mut(key) else {
            return;
        };
        if p.deleting {
            return;
        }
        p.deleting = true;
        let uid = p.uid.clone();
        let d = self.r_jobs.between(500, 10_000);
        self.after(
            d,
            Event::ScanPodRemove {
                ns: key.0.clone(),
                name: key.1.clone(),
                uid,
            },
        );
    }

    /// A scan pod's graceful deletion ends.
    pub fn scan_pod_remove(&mut self, key: &Key, uid: &str) {
        if self
            .cluster
            .scan_pods
            .get(key)
            .is_some_and(|p| p.uid == uid)
        {
            self.cluster.scan_pods.remove(key);
            self.cluster.publish_scan_pod(key);
        }
    }

    /// Users delete things at random (deletion races).
    pub fn user_delete(&mut self) {
        match self.faults.draw().index(3) {
            0 => {
                let keys: Vec<Key> = self.cluster.cis.keys().cloned().collect();
                if !keys.is_empty() {
                    let (ns, name) = keys[self.faults.draw().index(keys.len())].clone();
                    self.note(|| format!("user deletes cis {ns}/{name}"));
                    self.delete_cis_object(&ns, &name);
                }
            }
            1 => {
                let keys: Vec<Key> = self.cluster.jobs.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = keys[self.faults.draw().index(keys.len())].clone();
                    self.note(|| format!("user deletes job {}/{}", key.0, key.1));
                    self.delete_job_object(&key);
                }
            }
            _ => {
                let keys: Vec<Key> = self.cluster.scan_pods.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = keys[self.faults.draw().index(keys.len())].clone();
                    self.note(|| format!("user deletes scan pod {}/{}", key.0, key.1));
                    self.delete_scan_pod(&key);
                }
            }
        }
    }
}
