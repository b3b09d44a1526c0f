//! Coverage figures for operational metrics: how many running containers have a scan result.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Engine;
use super::index::CisKey;
use crate::time::Timestamp;

/// Coverage of running containers by successful scans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Containers of workload pods with a resolved digest.
    pub containers: usize,
    /// Of those, containers whose CIS shows a successful scan of that digest.
    pub covered: usize,
    /// Age of the oldest digest seen running without any scan result.
    pub oldest_unscanned: Option<Duration>,
}

impl Coverage {
    /// `covered / containers`, 1 when there is nothing to cover.
    pub fn ratio(&self) -> f64 {
        if self.containers == 0 {
            1.0
        } else {
            self.covered as f64 / self.containers as f64
        }
    }
}

/// Sum and count of the time from first seeing a digest to its first result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Sum in seconds.
    pub sum_secs: f64,
    /// Number of digests.
    pub count: u64,
}

/// Time to a first result: when each digest without one was first seen running, and the
/// time from first sight to first result accumulated.
#[derive(Debug, Default)]
pub(super) struct FirstResults {
    seen: BTreeMap<String, Timestamp>,
    latency: Latency,
}

impl Engine {
    /// Coverage now; O(pods).
    pub fn coverage(&self, now: Timestamp) -> Coverage {
        let mut coverage = Coverage::default();
        for entry in self.index.pods.values() {
            for target in entry.targets.iter() {
                coverage.containers += 1;
                let key = CisKey::new(&entry.tracked.view.namespace, &target.cis_name);
                let covered = self.index.cis.get(&key).is_some_and(|c| {
                    let s = &c.view.status;
                    c.view.spec.digest == target.image.digest
                        && s.last_successful_scan_time.is_some()
                        && !s
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Stalled" && c.status == "True")
                });
                if covered {
                    coverage.covered += 1;
                }
            }
        }
        coverage.oldest_unscanned = self
            .first_results
            .seen
            .iter()
            .filter(|(d, _)| {
                self.scans
                    .digests
                    .get(*d)
                    .is_none_or(|s| s.latest.is_none())
            })
            .map(|(_, at)| now.since(*at))
            .max();
        coverage
    }

    /// Time from first sight of a digest to its first result, accumulated.
    pub fn first_result_latency(&self) -> Latency {
        self.first_results.latency.clone()
    }

    /// Notes that a digest is running (first sight starts its time-to-first-result clock).
    pub(super) fn saw_digest(&mut self, digest: &str, now: Timestamp) {
        if self
            .scans
            .digests
            .get(digest)
            .is_some_and(|s| s.latest.is_some())
        {
            return;
        }
        self.first_results
            .seen
            .entry(digest.to_string())
            .or_insert(now);
    }
}

impl FirstResults {
    /// A digest got its first result.
    pub(super) fn record(&mut self, digest: &str, now: Timestamp) {
        if let Some(seen) = self.seen.remove(digest) {
            self.latency.sum_secs += now.since(seen).as_secs_f64();
            self.latency.count += 1;
        }
    }
}
