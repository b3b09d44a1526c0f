//! The workload script: an op list generated up front from the workload stream, so the same
//! seed gives the same world in a faulty and a fault-free run (and a failing case can be kept as
//! a literal op list).

use std::collections::BTreeMap;

use image_scanner_api::Severity;

use crate::cluster::{Template, kind};
use crate::rng::{Draw, Rng};

/// One change a user or a controller outside the operator makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Create a namespace.
    CreateNamespace(String),
    /// Delete a namespace and everything in it.
    DeleteNamespace(String),
    /// Create a workload (pods follow through the simulated controllers).
    Create {
        /// Index into KINDS.
        kind: u8,
        /// Namespace.
        ns: String,
        name: String,
        /// Pod template.
        template: Template,
        /// Replicas (CronJob: period in minutes).
        replicas: u32,
        /// ignore-unfixed annotation.
        ignore_unfixed: bool,
    },
    /// Change a container's image (a rollout).
    UpdateImage {
        kind: u8,
        /// Namespace.
        ns: String,
        name: String,
        /// Container index.
        container: usize,
        /// New image index.
        image: usize,
    },
    /// Change replicas.
    Scale {
        kind: u8,
        /// Namespace.
        ns: String,
        name: String,
        replicas: u32,
    },
    /// Delete a workload (cascading).
    Delete {
        kind: u8,
        /// Namespace.
        ns: String,
        name: String,
    },
    /// Create a bare pod.
    CreatePod {
        /// Namespace.
        ns: String,
        name: String,
        template: Template,
        /// ignore-unfixed annotation.
        ignore_unfixed: bool,
    },
    /// Delete the n-th pod of a namespace (sorted by name).
    DeletePod {
        /// Namespace.
        ns: String,
        /// Index (modulo the number of pods).
        index: usize,
    },
    /// Change a bare pod's container image in place.
    UpdatePodImage {
        /// Namespace.
        ns: String,
        name: String,
        /// Container index.
        container: usize,
        /// New image.
        image: usize,
    },
    /// Flip the ignore-unfixed annotation of a workload.
    SetIgnoreUnfixed {
        kind: u8,
        /// Namespace.
        ns: String,
        name: String,
        value: bool,
    },
    /// Users set `spec.minSeverity` on every CIS of a namespace (and a webhook on new ones).
    SetMinSeverity {
        /// Namespace.
        ns: String,
        severity: Option<Severity>,
    },
    /// Suspend every CronJob (start of the heal phase).
    SuspendCronJobs,
}

fn template(r: &mut Rng, images: usize, name: &str) -> Template {
    let n = r.between(1, 2) as usize;
    let containers = (0..n)
        .map(|i| {
            let cname = if i == 0 {
                "app".to_string()
            } else {
                format!("side{i}")
            };
            (cname, r.index(images))
        })
        .collect();
    let init = if r.chance(0.2) {
        vec![("init".to_string(), r.index(images))]
    } else {
        Vec::new()
    };
    let mut labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    if r.chance(0.3) {
        labels.insert("team".to_string(), format!("t{}", r.between(1, 3)));
    }
    Template {
        containers,
        init,
        labels,
        never_ready: r.chance(0.05),
    }
}

/// Generates the script: namespaces and initial workloads in the first minute, then `ops`
/// changes spread over the fault phase, then suspension of CronJobs.
pub fn generate(
    r: &mut Rng,
    namespaces: usize,
    workloads: usize,
    ops: usize,
    images: usize,
    fault_phase_ms: u64,
) -> Vec<(i64, Op)> {
    let mut script = Vec::new();
    let mut nss: Vec<String> = (0..namespaces).map(|i| format!("ns-{i}")).collect();
    nss.push("kube-system".to_string());
    for ns in &nss {
        script.push((0, Op::CreateNamespace(ns.clone())));
    }
    // (kind, ns, name) of live workloads, and bare pods.
    let mut live: Vec<(u8, String, String)> = Vec::new();
    let mut bare: Vec<(String, String, usize)> = Vec::new();
    let mut counter = 0u32;
    let mut create = |r: &mut Rng,
                      t: i64,
                      ns: &str,
                      script: &mut Vec<(i64, Op)>,
                      live: &mut Vec<(u8, String, String)>,
                      bare: &mut Vec<(String, String, usize)>| {
        counter += 1;
        let k = match r.index(10) {
            0..=2 => kind::DEPLOY,
            3 => kind::STS,
            4 => kind::DS,
            5 => kind::CRON,
            6 => kind::JOB,
            7 => kind::ROLLOUT,
            8 => kind::THING,
            _ => u8::MAX,
        };
        let name = format!("w{counter}");
        let tpl = template(r, images, &name);
        if k == u8::MAX {
            let containers = tpl.containers.len();
            script.push((
                t,
                Op::CreatePod {
                    ns: ns.to_string(),
                    name: name.clone(),
                    template: tpl,
                    ignore_unfixed: r.chance(0.2),
                },
            ));
            bare.push((ns.to_string(), name, containers));
        } else {
            let replicas = if k == kind::CRON {
                r.between(3, 8) as u32
            } else {
                r.between(1, 3) as u32
            };
            script.push((
                t,
                Op::Create {
                    kind: k,
                    ns: ns.to_string(),
                    name: name.clone(),
                    template: tpl,
                    replicas,
                    ignore_unfixed: r.chance(0.2),
                },
            ));
            live.push((k, ns.to_string(), name));
        }
    };
    for _ in 0..workloads {
        let t = r.between(0, 60_000) as i64;
        let ns = nss[r.index(nss.len())].clone();
        create(r, t, &ns, &mut script, &mut live, &mut bare);
    }
    let mut deleted_ns: Vec<String> = Vec::new();
    let mut times: Vec<i64> = (0..ops)
        .map(|_| r.between(60_000, fault_phase_ms.saturating_sub(60_000).max(60_001)) as i64)
        .collect();
    times.sort_unstable();
    for t in times {
        let active: Vec<String> = nss
            .iter()
            .filter(|n| !deleted_ns.contains(n))
            .cloned()
            .collect();
        match r.index(12) {
            0 | 1 => {
                let ns = active[r.index(active.len())].clone();
                create(r, t, &ns, &mut script, &mut live, &mut bare);
            }
            2..=4 if !live.is_empty() => {
                let (k, ns, name) = live[r.index(live.len())].clone();
                let container = r.index(2);
                script.push((
                    t,
                    Op::UpdateImage {
                        kind: k,
                        ns,
                        name,
                        container,
                        image: r.index(images),
                    },
                ));
            }
            5 if !live.is_empty() => {
                let (k, ns, name) = live[r.index(live.len())].clone();
                script.push((
                    t,
                    Op::Scale {
                        kind: k,
                        ns,
                        name,
                        replicas: r.between(0, 3) as u32,
                    },
                ));
            }
            6 if !live.is_empty() => {
                let i = r.index(live.len());
                let (k, ns, name) = live.remove(i);
                script.push((t, Op::Delete { kind: k, ns, name }));
            }
            7 => {
                let ns = active[r.index(active.len())].clone();
                script.push((
                    t,
                    Op::DeletePod {
                        ns,
                        index: r.index(16),
                    },
                ));
            }
            8 if !bare.is_empty() => {
                let (ns, name, n) = bare[r.index(bare.len())].clone();
                script.push((
                    t,
                    Op::UpdatePodImage {
                        ns,
                        name,
                        container: r.index(n),
                        image: r.index(images),
                    },
                ));
            }
            9 if !live.is_empty() => {
                let (k, ns, name) = live[r.index(live.len())].clone();
                script.push((
                    t,
                    Op::SetIgnoreUnfixed {
                        kind: k,
                        ns,
                        name,
                        value: r.chance(0.5),
                    },
                ));
            }
            10 => {
                let ns = active[r.index(active.len())].clone();
                let severity = [None, Some(Severity::Medium), Some(Severity::High)][r.index(3)];
                script.push((t, Op::SetMinSeverity { ns, severity }));
            }
            11 if active.len() > 2 && t + 300_000 < fault_phase_ms as i64 => {
                let ns = active[r.index(active.len())].clone();
                if ns != "kube-system" {
                    live.retain(|(_, n, _)| *n != ns);
                    bare.retain(|(n, _, _)| *n != ns);
                    script.push((t, Op::DeleteNamespace(ns.clone())));
                    deleted_ns.push(ns.clone());
                    // Re-created a little later, empty, with a new workload.
                    let later = t + r.between(60_000, 180_000) as i64;
                    debug_assert!(later + 1000 < fault_phase_ms as i64);
                    script.push((later, Op::CreateNamespace(ns.clone())));
                    deleted_ns.retain(|n| *n != ns);
                    create(r, later + 1000, &ns, &mut script, &mut live, &mut bare);
                }
            }
            _ => {
                let ns = active[r.index(active.len())].clone();
                script.push((
                    t,
                    Op::DeletePod {
                        ns,
                        index: r.index(16),
                    },
                ));
            }
        }
    }
    script.push((fault_phase_ms as i64, Op::SuspendCronJobs));
    script.sort_by_key(|(t, _)| *t);
    script
}
