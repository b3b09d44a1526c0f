//! The kubelet of workload pods: scheduling, pulls under the node's credential rules
//! ([`Kubelet::access`], KEP-2535), readiness, in-place image updates and removal.

use image_scanner_core::port::ContainerKind;
use image_scanner_core::time::Timestamp;

use super::Sim;
use crate::cluster::{CState, kind};
use crate::event::{Event, PodStep};
use crate::kubelet::Access;
use crate::rng::Draw;

impl Sim {
    /// The kubelet of a workload pod: scheduling, pulls (see [`Kubelet::access`]), readiness,
    /// completion, removal.
    pub fn pod_step(&mut self, ns: &str, name: &str, uid: &str, step: PodStep) {
        let key = (ns.to_string(), name.to_string());
        let nodes = self.opts.nodes;
        let Some(p) = self.cluster.pods.get(&key) else {
            return;
        };
        if p.uid != uid {
            return;
        }
        if step == PodStep::Remove {
            self.remove_pod(ns, name);
            return;
        }
        if p.deleting {
            return;
        }
        let mut next: Vec<(u64, PodStep)> = Vec::new();
        let node = format!("node-{}", self.r_world.index(nodes));
        let pull_delay = self.r_world.between(300, 15_000);
        let ready_delay = self.r_world.between(300, 8_000);
        let run_delay = self.r_world.between(5_000, 90_000);
        let images = self.cluster.images.clone();
        let now = Timestamp(self.now).truncate_to_secs();
        let Some(p) = self.cluster.pods.get_mut(&key) else {
            return;
        };
        match step {
            PodStep::Schedule => {
                p.node = Some(node);
                next.push((pull_delay, PodStep::Start));
            }
            PodStep::Start | PodStep::Restart => {
                let mut all_running = true;
                let node = p.node.clone().unwrap_or_default();
                for c in &mut p.containers {
                    if step == PodStep::Restart && c.kind == ContainerKind::Init {
                        continue;
                    }
                    c.running_image = c.image;
                    let image = &images[c.image];
                    if !image.pullable {
                        c.state = CState::Waiting("ErrImagePull");
                        all_running = false;
                        continue;
                    }
                    let spec_ref = format!("{}@{}", image.repo, image.digest);
                    let creds = p.pull.as_deref();
                    match self.kubelet.access(
                        &node,
                        &image.digest,
                        &spec_ref,
                        &p.ns,
                        creds,
                        self.now,
                    ) {
                        Access::Denied(_) => {
                            c.state = CState::Waiting("ErrImagePull");
                            all_running = false;
                            continue;
                        }
                        Access::Pulled(rec) => self.kubelet.record(&node, &image.digest, rec),
                        Access::Present => {}
                    }
                    if let Some(creds) = &p.pull {
                        self.cluster.ran_with.insert((
                            image.digest.clone(),
                            p.ns.clone(),
                            creds.clone(),
                        ));
                    }
                    c.state = match c.kind {
                        ContainerKind::Init => CState::Terminated(0),
                        _ => CState::Running,
                    };
                }
                if all_running {
                    p.phase = Some("Running");
                    p.start_time.get_or_insert(now);
                    p.ready = false;
                    if !p.never_ready {
                        next.push((ready_delay, PodStep::Ready));
                    }
                    if p.completes {
                        next.push((run_delay, PodStep::Complete));
                    }
                } else {
                    p.ready = false;
                    next.push((ready_delay, PodStep::BackOff));
                }
            }
            PodStep::BackOff => {
                for c in &mut p.containers {
                    if c.state == CState::Waiting("ErrImagePull") {
                        c.state = CState::Waiting("ImagePullBackOff");
                    }
                }
            }
            PodStep::Ready => {
                if p.phase == Some("Running") {
                    p.ready = true;
                }
            }
            PodStep::Complete => {
                if p.phase == Some("Running") {
                    for c in &mut p.containers {
                        if c.state == CState::Running {
                            c.state = CState::Terminated(0);
                        }
                    }
                    p.phase = Some("Succeeded");
                    p.ready = false;
                }
            }
            PodStep::Remove => {}
        }
        let completed_job = step == PodStep::Complete
            && p.completes
            && p.controller.as_ref().is_some_and(|c| c.kind == "Job");
        let controller = p.controller.clone();
        self.cluster.publish_pod(ns, name);
        for (d, s) in next {
            self.after(
                d,
                Event::Pod {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    uid: uid.to_string(),
                    step: s,
                },
            );
        }
        if completed_job
            && let Some(c) = controller
            && let Some(w) =
                self.cluster
                    .workloads
                    .get_mut(&(kind::JOB, ns.to_string(), c.name.clone()))
            && w.uid == c.uid
        {
            w.done = true;
        }
    }
}
