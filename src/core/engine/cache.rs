//! Parsed scan reports kept in memory, so that a CIS that appears later with an already scanned
//! digest gets the full details without a new scan Job. Bounded by bytes, least recently used
//! evicted first; deterministic (a use counter, not a clock).
//!
//! A report is *pinned* from its insertion until the fan-out of its result has come round every
//! CIS of the digest ([`ReportCache::release`]): evicting it earlier costs a second read of the
//! Job's log (megabytes through the API server and the kubelet) for the CIS still waiting for a
//! write slot. Pins are soft: unpinned reports go first, but the budget holds either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crd::Vulnerability;

#[derive(Debug)]
struct Entry {
    job_uid: String,
    vulnerabilities: Arc<Vec<Vulnerability>>,
    bytes: usize,
    last_use: u64,
    pinned: bool,
}

/// The cache.
#[derive(Debug)]
pub struct ReportCache {
    budget: usize,
    used: usize,
    clock: u64,
    entries: BTreeMap<String, Entry>,
}

/// Rough heap size of a report: strings plus per-item overhead.
pub(in crate::engine) fn approximate_bytes(vulns: &[Vulnerability]) -> usize {
    vulns
        .iter()
        .map(|v| {
            std::mem::size_of::<Vulnerability>()
                + v.vulnerability_id.len()
                + v.pkg_name.len()
                + v.installed_version.len()
                + v.pkg_path.len()
                + v.fixed_version.len()
                + v.title.len()
                + v.primary_url.len()
        })
        .sum()
}

impl ReportCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> ReportCache {
        ReportCache {
            budget,
            used: 0,
            clock: 0,
            entries: BTreeMap::new(),
        }
    }

    /// Stores the report of `job_uid` for `digest`, pinned, replacing an older one. A report
    /// larger than the whole budget is not kept.
    pub fn insert(
        &mut self,
        digest: &str,
        job_uid: &str,
        vulnerabilities: Arc<Vec<Vulnerability>>,
    ) {
        self.remove(digest);
        let bytes = approximate_bytes(&vulnerabilities);
        if bytes > self.budget {
            return;
        }
        while self.used + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (e.pinned, e.last_use))
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.used += bytes;
        self.entries.insert(
            digest.to_string(),
            Entry {
                job_uid: job_uid.to_string(),
                vulnerabilities,
                bytes,
                last_use: self.clock,
                pinned: true,
            },
        );
    }

    /// The report of `job_uid` for `digest`, if cached.
    pub fn get(&mut self, digest: &str, job_uid: &str) -> Option<Arc<Vec<Vulnerability>>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(digest)?;
        if entry.job_uid != job_uid {
            return None;
        }
        entry.last_use = clock;
        Some(entry.vulnerabilities.clone())
    }

    /// Whether the report of `job_uid` for `digest` is cached (does not count as a use).
    #[cfg(test)]
    pub fn contains(&self, digest: &str, job_uid: &str) -> bool {
        self.entries
            .get(digest)
            .is_some_and(|e| e.job_uid == job_uid)
    }

    /// The fan-out of `digest`'s report is done: it may be evicted like any other.
    pub fn release(&mut self, digest: &str) {
        if let Some(e) = self.entries.get_mut(digest) {
            e.pinned = false;
        }
    }

    /// The digests whose reports are pinned, in order.
    pub fn pinned(&self) -> impl Iterator<Item = &String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.pinned)
            .map(|(d, _)| d)
    }

    /// Drops the report of `digest`.
    pub fn remove(&mut self, digest: &str) {
        if let Some(e) = self.entries.remove(digest) {
            self.used -= e.bytes;
        }
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Severity;

    fn report(n: usize) -> Arc<Vec<Vulnerability>> {
        Arc::new(
            (0..n)
                .map(|i| Vulnerability {
                    vulnerability_id: format!("CVE-{i}"),
                    pkg_name: "pkg".into(),
                    installed_version: "1".into(),
                    severity: Severity::High,
                    pkg_path: String::new(),
                    fixed_version: String::new(),
                    title: String::new(),
                    primary_url: String::new(),
                    suppressed_by: None,
                    suppressed_justification: None,
                })
                .collect(),
        )
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let one = approximate_bytes(&report(10));
        let mut cache = ReportCache::new(one * 2);
        cache.insert("a", "ja", report(10));
        cache.insert("b", "jb", report(10));
        assert!(cache.get("a", "ja").is_some());
        cache.insert("c", "jc", report(10));
        assert!(cache.contains("a", "ja"));
        assert!(!cache.contains("b", "jb"), "b was least recently used");
        assert!(cache.contains("c", "jc"));
        assert!(cache.used_bytes() <= one * 2);
    }

    #[test]
    fn among_reports_never_read_the_oldest_insert_goes_first() {
        let one = approximate_bytes(&report(10));
        let mut cache = ReportCache::new(one * 2);
        cache.insert("b", "jb", report(10));
        cache.insert("a", "ja", report(10));
        cache.insert("c", "jc", report(10));
        assert!(!cache.contains("b", "jb"), "b was inserted first");
        assert!(cache.contains("a", "ja"));
        assert!(cache.contains("c", "jc"));
    }

    #[test]
    fn released_reports_go_before_pinned_ones_whatever_their_use() {
        let one = approximate_bytes(&report(10));
        let mut cache = ReportCache::new(one * 2);
        cache.insert("a", "ja", report(10));
        cache.insert("b", "jb", report(10));
        cache.release("b");
        assert_eq!(cache.pinned().collect::<Vec<_>>(), ["a"]);
        cache.insert("c", "jc", report(10));
        assert!(cache.contains("a", "ja"), "a is pinned");
        assert!(!cache.contains("b", "jb"), "b was released");
        // Pins are soft: the budget holds when only pinned reports are left.
        cache.insert("d", "jd", report(10));
        assert!(
            !cache.contains("a", "ja"),
            "a was the least recently used pin"
        );
        assert!(cache.contains("c", "jc") && cache.contains("d", "jd"));
        assert!(cache.used_bytes() <= one * 2);
    }

    #[test]
    fn a_result_of_another_job_is_a_miss() {
        let mut cache = ReportCache::new(1 << 20);
        cache.insert("a", "job-1", report(1));
        assert!(cache.get("a", "job-2").is_none());
        assert!(cache.get("a", "job-1").is_some());
    }

    #[test]
    fn every_string_byte_counts() {
        let base = approximate_bytes(&report(1));
        let longer: [fn(&mut Vulnerability); 7] = [
            |v| v.vulnerability_id.push_str("abc"),
            |v| v.pkg_name.push_str("abc"),
            |v| v.installed_version.push_str("abc"),
            |v| v.pkg_path.push_str("abc"),
            |v| v.fixed_version.push_str("abc"),
            |v| v.title.push_str("abc"),
            |v| v.primary_url.push_str("abc"),
        ];
        for (field, lengthen) in longer.iter().enumerate() {
            let mut v = report(1)[0].clone();
            lengthen(&mut v);
            assert_eq!(approximate_bytes(&[v]), base + 3, "field {field}");
        }
        assert_eq!(approximate_bytes(&report(3)), 3 * base);
        // The cache accounts exactly what it holds, also across replacement and removal.
        let mut cache = ReportCache::new(1 << 20);
        cache.insert("a", "j1", report(2));
        cache.insert("b", "j2", report(1));
        assert_eq!(cache.used_bytes(), 3 * base);
        cache.insert("a", "j3", report(1));
        assert_eq!(cache.used_bytes(), 2 * base);
        cache.remove("b");
        assert_eq!(cache.used_bytes(), base);
    }

    #[test]
    fn a_report_exactly_the_budget_is_kept() {
        let one = approximate_bytes(&report(2));
        let mut cache = ReportCache::new(one);
        cache.insert("a", "j", report(2));
        assert!(cache.contains("a", "j"));
        assert_eq!(cache.used_bytes(), one);
    }

    #[test]
    fn oversized_reports_are_not_kept() {
        let mut cache = ReportCache::new(10);
        cache.insert("a", "j", report(5));
        assert!(!cache.contains("a", "j"));
        assert_eq!(cache.used_bytes(), 0);
    }
}
