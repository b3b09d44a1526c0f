//! Watches of an operator instance, fed as kube-runtime's watcher feeds the shell: per stream a
//! relist on start and after 410 (`InitStarted`/`InitApply`…/`InitDone`), resumption from the
//! last resourceVersion, per-stream delays and chunking (cross-stream reordering), coalescing,
//! dropped deletes, duplicates and stale lists; the `trivy-job-config` ConfigMap; and the
//! Events the engine reacts to (BackOff of scan pods, FailedCreate of scan Jobs), which a
//! starting instance lists again.

use image_scanner_core::port::{NodePlatform, Observation, WatchEvent};

use super::Sim;
use crate::cluster::{Kind, View};
use crate::event::Event;
use crate::options::Fault;
use crate::rng::Draw;
use crate::watcher::{Rejection, stream_id};

impl Sim {
    pub(crate) fn delay(&mut self) -> u64 {
        let max = self.opts.max_delay_ms;
        if self.faults.healing() {
            self.r_delivery.between(1, 20)
        } else if max > 20 && self.r_delivery.chance(0.3) {
            self.r_delivery.between(1, max)
        } else {
            self.r_delivery.between(1, 20)
        }
    }

    /// Schedules a delivery of `k` to every connected watcher that has something new.
    pub fn schedule_deliveries(&mut self, k: Kind) {
        for i in 0..self.instances.len() {
            let inc = self.instances[i].inc;
            if self.instances[i].engine.is_none() {
                continue;
            }
            let Some(w) = self.instances[i].watchers.get(&k) else {
                continue;
            };
            if !w.connected || w.scheduled || !w.listed {
                continue;
            }
            let d = self.delay();
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.scheduled = true;
            }
            self.after(
                d,
                Event::Deliver {
                    instance: i,
                    inc,
                    kind: k,
                },
            );
        }
    }

    /// Compacts a log up to what every connected watcher has seen, within the window.
    pub fn compact(&mut self, k: Kind) {
        let mut upto = u64::MAX;
        for inst in &self.instances {
            if inst.engine.is_none() {
                continue;
            }
            if let Some(w) = inst.watchers.get(&k)
                && w.connected
            {
                upto = upto.min(w.cursor);
            }
        }
        let window = self.opts.compaction_window;
        if let Some(log) = self.cluster.logs.get_mut(&k) {
            if upto == u64::MAX {
                upto = log.head();
            }
            // Keep some history for stale lists even when everyone has seen it.
            let keep_min = 8.min(window);
            let floor_target = if log.changes.len() > keep_min {
                upto
            } else {
                0
            };
            log.compact(floor_target, window.max(keep_min));
        }
    }

    /// Watch delivery.
    pub fn deliver(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        if self.postpone_if_paused(
            i,
            Event::Deliver {
                instance: i,
                inc,
                kind: k,
            },
        ) {
            return;
        }
        let Some(w) = self.instances[i].watchers.get(&k).cloned() else {
            return;
        };
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.scheduled = false;
        }
        if !w.connected {
            return;
        }
        let (floor, changes) = {
            let Some(log) = self.cluster.logs.get(&k) else {
                return;
            };
            let changes: Vec<crate::cluster::Change> = log
                .changes
                .iter()
                .filter(|c| c.rv > w.cursor)
                .cloned()
                .collect();
            (log.floor, changes)
        };
        if w.cursor < floor {
            // Too old a resourceVersion: 410, relist.
            self.stats.relists += 1;
            self.note(|| format!("inst{i} {k:?} 410 (cursor {} < floor {floor})", w.cursor));
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.connected = false;
            }
            let d = self.r_delivery.between(10, 1_000);
            self.after(
                d,
                Event::Relist {
                    instance: i,
                    inc,
                    kind: k,
                },
            );
            return;
        }
        if changes.is_empty() {
            return;
        }
        // Deliver a chunk; the rest follows in a later delivery (interleaving streams).
        let chunk = if self.opts.has(Fault::Delay) && !self.faults.healing() {
            self.r_delivery.between(1, 8) as usize
        } else {
            changes.len()
        };
        let batch = &changes[..chunk.min(changes.len())];
        let last_rv = batch.last().map_or(w.cursor, |c| c.rv);
        let mut events = Vec::new();
        for (n, c) in batch.iter().enumerate() {
            let superseded = batch[n + 1..].iter().any(|l| l.key == c.key);
            if superseded && self.faults.fires(Fault::Coalesce, 5.0) {
                self.note(|| format!("inst{i} {k:?} coalesce rv={}", c.rv));
                continue;
            }
            match (&c.after, &c.before) {
                (Some(v), _) => events.push(WatchEvent::Apply(v.clone())),
                (None, Some(v)) => {
                    if self.faults.fires(Fault::DropDelete, 3.0) {
                        self.note(|| format!("inst{i} {k:?} drop delete {}", c.key));
                        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                            w.must_relist = true;
                        }
                        let d = self.faults.draw().between(1_000, 60_000);
                        self.after(
                            d,
                            Event::Disconnect {
                                instance: i,
                                inc,
                                kind: k,
                            },
                        );
                        continue;
                    }
                    let mut v = v.clone();
                    set_view_rv(&mut v, c.rv);
                    events.push(WatchEvent::Delete(v));
                }
                (None, None) => {}
            }
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.cursor = last_rv;
        }
        let n = events.len();
        self.note(|| format!("inst{i} deliver {k:?} n={n} upto_rv={last_rv}"));
        for ev in events {
            let obs = observation(k, ev);
            self.observe(i, obs);
        }
        self.poll(i);
        if changes.len() > chunk {
            if let Some(w) = self.instances[i].watchers.get_mut(&k) {
                w.scheduled = true;
            }
            let d = self.delay();
            self.after(
                d,
                Event::Deliver {
                    instance: i,
                    inc,
                    kind: k,
                },
            );
        }
    }

    /// A full (re)list: InitStarted, InitApply…, InitDone.
    pub fn relist(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        if self.postpone_if_paused(
            i,
            Event::Relist {
                instance: i,
                inc,
                kind: k,
            },
        ) {
            return;
        }
        let (head, floor) = self
            .cluster
            .logs
            .get(&k)
            .map_or((self.cluster.rv, 0), |l| (l.head(), l.floor));
        let stale_ok = !matches!(k, Kind::Cis | Kind::Job) || self.opts.has(Fault::StaleCis);
        let at = if stale_ok && self.faults.fires(Fault::StaleList, 10.0) {
            self.faults.draw().between(floor, head)
        } else {
            head
        };
        let snapshot = self
            .cluster
            .logs
            .get(&k)
            .map(|l| l.snapshot_at(at))
            .unwrap_or_default();
        let n = snapshot.len();
        self.note(|| format!("inst{i} relist {k:?} at rv={at} (head {head}) n={n}"));
        self.observe(i, observation(k, WatchEvent::InitStarted));
        for (_, v) in snapshot {
            self.observe(i, observation(k, WatchEvent::InitApply(v)));
        }
        self.observe(i, observation(k, WatchEvent::InitDone));
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.cursor = at;
            w.connected = true;
            w.listed = true;
            w.must_relist = false;
            w.scheduled = false;
        }
        self.maybe_synced(i);
        self.poll(i);
        if head > at || self.cluster.logs.get(&k).is_some_and(|l| l.head() > at) {
            self.schedule_deliveries(k);
        }
    }

    /// `CachesSynced` once every watch has listed.
    fn maybe_synced(&mut self, i: usize) {
        let x = &self.instances[i];
        if !x.synced && x.config_listed && x.watchers.values().all(|w| w.listed) {
            self.instances[i].synced = true;
            self.observe(i, Observation::CachesSynced);
        }
    }

    /// The ConfigMap watch lists `trivy-job-config` (it never changes in the simulation).
    pub fn list_job_config(&mut self, i: usize, inc: u32) {
        if !self.live(i, inc)
            || self.postpone_if_paused(i, Event::ListJobConfig { instance: i, inc })
        {
            return;
        }
        // The node watch lists with it (nodes and their labels never change here).
        for (n, arch) in self.opts.node_archs.clone().into_iter().enumerate() {
            let platform = NodePlatform {
                os: Some("linux".to_string()),
                arch: arch.map(str::to_string),
            };
            self.observe(
                i,
                Observation::NodePlatform {
                    node: format!("node-{n}"),
                    platform: Some(platform),
                },
            );
        }
        let data = Some(self.cluster.job_config.clone());
        self.observe(i, Observation::TrivyJobConfig { data });
        self.instances[i].config_listed = true;
        self.maybe_synced(i);
        self.poll(i);
    }

    /// A watch connection drops.
    pub fn disconnect(&mut self, i: usize, inc: u32, k: Kind) {
        let Some(x) = self.instances.get(i) else {
            return;
        };
        let inc = if inc == u32::MAX { x.inc } else { inc };
        if !self.live(i, inc) {
            return;
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            if !w.connected {
                return;
            }
            w.connected = false;
        }
        self.note(|| format!("inst{i} {k:?} disconnect"));
        let d = self.r_delivery.between(200, 5_000);
        self.after(
            d,
            Event::Reconnect {
                instance: i,
                inc,
                kind: k,
            },
        );
    }

    /// Reconnect: resume, or 410 and relist when the cursor was compacted away.
    pub fn reconnect(&mut self, i: usize, inc: u32, k: Kind) {
        if !self.live(i, inc) {
            return;
        }
        let floor = self.cluster.logs.get(&k).map_or(0, |l| l.floor);
        let Some(w) = self.instances[i].watchers.get(&k).cloned() else {
            return;
        };
        if w.must_relist || w.cursor < floor {
            self.stats.relists += 1;
            self.note(|| format!("inst{i} {k:?} reconnect: 410"));
            self.relist(i, inc, k);
            return;
        }
        let mut cursor = w.cursor;
        if self.faults.fires(Fault::Duplicate, 10.0) {
            let back = self.faults.draw().between(1, 10);
            cursor = cursor.saturating_sub(back).max(floor);
            self.note(|| format!("inst{i} {k:?} reconnect re-delivers from rv={cursor}"));
        }
        if let Some(w) = self.instances[i].watchers.get_mut(&k) {
            w.connected = true;
            w.cursor = cursor;
            w.scheduled = false;
        }
        self.schedule_deliveries(k);
    }

    /// A BackOff event of a scan pod reaches every live instance (after a watch delay).
    pub fn broadcast_back_off(&mut self, ns: &str, pod: &str) {
        for i in 0..self.instances.len() {
            if self.instances[i].engine.is_none() {
                continue;
            }
            let inc = self.instances[i].inc;
            let d = self.delay();
            self.after(
                d,
                Event::BackOff {
                    instance: i,
                    inc,
                    ns: ns.to_string(),
                    pod: pod.to_string(),
                },
            );
        }
    }

    /// Delivers a BackOff event.
    pub fn back_off_event(&mut self, i: usize, inc: u32, ns: String, pod: String) {
        if !self.live(i, inc)
            || self.postpone_if_paused(
                i,
                Event::BackOff {
                    instance: i,
                    inc,
                    ns: ns.clone(),
                    pod: pod.clone(),
                },
            )
        {
            return;
        }
        self.observe(
            i,
            Observation::BackOffEvent {
                namespace: ns,
                pod_name: pod,
            },
        );
        self.poll(i);
    }

    /// A FailedCreate event of a scan Job reaches every live instance (after a watch delay).
    pub fn broadcast_job_rejected(&mut self, ns: &str, job: &str, uid: &str, message: &str) {
        for i in 0..self.instances.len() {
            if self.instances[i].engine.is_none() {
                continue;
            }
            let inc = self.instances[i].inc;
            let d = self.delay();
            let r = Rejection {
                namespace: ns.to_string(),
                job_name: job.to_string(),
                job_uid: uid.to_string(),
                message: message.to_string(),
            };
            self.after(
                d,
                Event::JobRejected {
                    instance: i,
                    inc,
                    rejection: Box::new(r),
                },
            );
        }
    }

    /// Delivers a FailedCreate event.
    pub fn job_rejected_event(&mut self, i: usize, inc: u32, r: Rejection) {
        if !self.live(i, inc)
            || self.postpone_if_paused(
                i,
                Event::JobRejected {
                    instance: i,
                    inc,
                    rejection: Box::new(r.clone()),
                },
            )
        {
            return;
        }
        self.note(|| format!("inst{i} FailedCreate {}/{}", r.namespace, r.job_name));
        self.observe(
            i,
            Observation::JobPodRejected {
                namespace: r.namespace,
                job_name: r.job_name,
                job_uid: r.job_uid,
                message: r.message,
            },
        );
        self.poll(i);
    }
}

fn set_view_rv(v: &mut View, rv: u64) {
    match v {
        View::Pod(x) => x.resource_version = Some(rv),
        View::Cis(x) => x.resource_version = Some(rv),
        View::Job(x) => x.resource_version = Some(rv),
        View::ScanPod(x) => x.resource_version = Some(rv),
        View::Exception(x) => x.resource_version = Some(rv),
        View::Workload(_) => {}
    }
}

fn observation(k: Kind, ev: WatchEvent<View>) -> Observation {
    let stream = stream_id(k);
    fn map<T>(ev: WatchEvent<View>, f: impl Fn(View) -> Option<T>) -> Option<WatchEvent<T>> {
        Some(match ev {
            WatchEvent::Apply(v) => WatchEvent::Apply(f(v)?),
            WatchEvent::Delete(v) => WatchEvent::Delete(f(v)?),
            WatchEvent::InitApply(v) => WatchEvent::InitApply(f(v)?),
            WatchEvent::InitStarted => WatchEvent::InitStarted,
            WatchEvent::InitDone => WatchEvent::InitDone,
        })
    }
    let none = || Observation::CachesSynced;
    match k {
        Kind::Pod => map(ev, |v| if let View::Pod(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Pod { stream, event }),
        Kind::Cis => map(ev, |v| if let View::Cis(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Cis { stream, event }),
        Kind::Job => map(ev, |v| if let View::Job(p) = v { Some(p) } else { None })
            .map_or_else(none, |event| Observation::Job { stream, event }),
        Kind::ScanPod => map(ev, |v| {
            if let View::ScanPod(p) = v {
                Some(p)
            } else {
                None
            }
        })
        .map_or_else(none, |event| Observation::ScanPod { stream, event }),
        Kind::Workload(_) => map(ev, |v| {
            if let View::Workload(p) = v {
                Some(p)
            } else {
                None
            }
        })
        .map_or_else(none, |event| Observation::Workload { stream, event }),
        Kind::Exception => map(ev, |v| {
            if let View::Exception(p) = v {
                Some(p)
            } else {
                None
            }
        })
        .map_or_else(none, |event| Observation::Exception { stream, event }),
    }
}
