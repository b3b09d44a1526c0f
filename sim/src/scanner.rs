//! The scanner's side of the world: an image catalog and, per digest, the vulnerabilities a scan
//! finds (the truth the checks recompute statuses from) or a permanent failure class; plus the
//! log bytes a scan Job prints, including garbage, truncated and oversized logs for faults.

use std::collections::BTreeMap;
use std::sync::Arc;

use image_scanner_api::{Severity, Vulnerability};

use crate::cluster::{Image, Plan};
use crate::rng::{Draw, Rng};

/// How scans of a digest end, whatever the faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A valid report.
    Ok,
    /// The scanner prints something that is not a report → `ScanReportDecodeError`.
    Garbage,
    /// The scanner exits non-zero → `Error`.
    ExitError,
    /// The scan pod cannot pull the image → `Error`.
    Unpullable,
    /// The report is larger than the log limit → `Error`.
    Oversized,
}

impl Class {
    /// The `Stalled` reason a permanently failing digest ends with.
    pub fn stalled_reason(self) -> Option<&'static str> {
        match self {
            Class::Ok => None,
            Class::Garbage => Some("ScanReportDecodeError"),
            Class::ExitError | Class::Unpullable | Class::Oversized => Some("Error"),
        }
    }
}

/// What scanning a digest finds.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Vulnerabilities (unfiltered).
    pub vulns: Arc<Vec<Vulnerability>>,
    /// The permanent outcome class.
    pub class: Class,
}

/// Catalog and truths.
#[derive(Clone, Debug, Default)]
pub struct Scanner {
    pub images: Vec<Image>,
    /// Truth per digest.
    pub truth: BTreeMap<String, Truth>,
}

const PACKAGES: [&str; 8] = [
    "openssl",
    "glibc",
    "zlib",
    "busybox",
    "libcurl",
    "ncurses",
    "pkg:npm/lodash",
    "log4j-core",
];

fn vulnerabilities(r: &mut Rng, n: usize) -> Vec<Vulnerability> {
    (0..n)
        .map(|i| {
            let severity = Severity::ALL[r.index(5)];
            let pkg = PACKAGES[r.index(PACKAGES.len())];
            Vulnerability {
                vulnerability_id: format!(
                    "CVE-20{}-{}{i}",
                    r.between(10, 26),
                    r.between(1000, 9999)
                ),
                pkg_name: pkg.to_string(),
                installed_version: format!("1.{}.{}", r.between(0, 9), r.between(0, 30)),
                severity,
                pkg_path: if r.chance(0.2) {
                    format!("usr/lib/{pkg}.jar")
                } else {
                    String::new()
                },
                fixed_version: if r.chance(0.6) {
                    format!("1.{}.{}", r.between(0, 9), r.between(31, 60))
                } else {
                    String::new()
                },
                title: if r.chance(0.7) {
                    format!("{pkg}: issue {}", r.hex(6))
                } else {
                    String::new()
                },
                primary_url: if r.chance(0.5) {
                    format!("https://avd.example/{}", r.hex(8))
                } else {
                    String::new()
                },
                suppressed_by: None,
                suppressed_justification: None,
            }
        })
        .collect()
}

impl Scanner {
    /// A catalog of about `n` digests: some shared by two repositories (a mirror), one pair of
    /// digests with the same 12-hex prefix (same Job name), some images nodes cannot pull, a
    /// few digests whose scans always fail.
    pub fn generate(r: &mut Rng, n: usize) -> Scanner {
        let repos = [
            ("docker.io/library/nginx", Some("nginx")),
            ("docker.io/library/redis", Some("redis")),
            ("registry.example.com/team/api", None),
            ("registry.example.com/team/worker", None),
            ("ghcr.io/acme/sidecar", None),
            ("quay.io/prom/node-exporter", None),
        ];
        let mut images = Vec::new();
        let mut truth = BTreeMap::new();
        let mut prefix_shared: Option<String> = None;
        for i in 0..n {
            let (repo, short) = repos[r.index(repos.len())];
            let digest = match &prefix_shared {
                Some(p) if r.chance(0.3) => format!("sha256:{p}{}", r.hex(52)),
                _ => format!("sha256:{}", r.hex(64)),
            };
            if i == 0 {
                prefix_shared = Some(digest["sha256:".len().."sha256:".len() + 12].to_string());
            }
            let tag = format!("v{}.{}", r.between(1, 3), r.between(0, 20));
            let spec = match short {
                Some(s) if r.chance(0.5) => format!("{s}:{tag}"),
                _ if r.chance(0.15) => format!("{repo}@{digest}"),
                _ => format!("{repo}:{tag}"),
            };
            let pullable = !r.chance(0.08);
            let size = match r.index(10) {
                0 => 0,
                1..=6 => r.between(1, 25) as usize,
                7 | 8 => r.between(25, 120) as usize,
                _ => r.between(120, 400) as usize,
            };
            let class = match r.index(20) {
                0 => Class::Garbage,
                1 => Class::ExitError,
                2 => Class::Unpullable,
                3 => Class::Oversized,
                _ => Class::Ok,
            };
            truth.insert(
                digest.clone(),
                Truth {
                    vulns: Arc::new(vulnerabilities(r, size)),
                    class,
                },
            );
            images.push(Image {
                repo: repo.to_string(),
                spec,
                digest: digest.clone(),
                pullable,
            });
            // The same digest under a mirror's name.
            if r.chance(0.15) {
                images.push(Image {
                    repo: format!(
                        "mirror.example.net/{}",
                        repo.rsplit('/').next().unwrap_or("x")
                    ),
                    spec: format!(
                        "mirror.example.net/{}:{tag}",
                        repo.rsplit('/').next().unwrap_or("x")
                    ),
                    digest,
                    pullable: true,
                });
            }
        }
        Scanner { images, truth }
    }

    /// The plan of a new scan Job of `digest`. `transient` allows a one-off failure.
    pub fn plan(&self, digest: &str, r: &mut Rng, transient: bool, log_limit: usize) -> Plan {
        let Some(t) = self.truth.get(digest) else {
            return Plan::ExitFail {
                code: 1,
                log: Arc::new(b"FATAL unknown image".to_vec()),
            };
        };
        if transient {
            match r.index(8) {
                0 => return Plan::PullBackOff,
                1 => {
                    // OOM: a partial report, exit 137.
                    let full = report_bytes(&t.vulns, false);
                    let cut = r.index(full.len().max(1));
                    return Plan::ExitFail {
                        code: 137,
                        log: Arc::new(full[..cut].to_vec()),
                    };
                }
                2 => return Plan::Hang,
                3 => {
                    let full = report_bytes(&t.vulns, false);
                    let cut = r.index(full.len().max(2)).max(1).min(full.len());
                    let mut log = full[..cut].to_vec();
                    if log.len() == full.len() {
                        log.pop();
                    }
                    return Plan::Report {
                        log: Arc::new(log),
                        valid: false,
                    };
                }
                4 => {
                    return Plan::ExitFail {
                        code: 2,
                        log: Arc::new(
                            b"\x1b[31m2024-01-01T00:00:00Z\tFATAL\x1b[0m\tscan error: connection refused\n"
                                .repeat(r.between(1, 40) as usize),
                        ),
                    };
                }
                _ => {}
            }
        }
        match t.class {
            Class::Ok => Plan::Report {
                log: Arc::new(report_bytes(&t.vulns, r.chance(0.2))),
                valid: true,
            },
            Class::Garbage => Plan::Report {
                log: Arc::new(
                    b"<html><body>502 Bad Gateway</body></html>\nnot json at all\n".to_vec(),
                ),
                valid: false,
            },
            Class::ExitError => Plan::ExitFail {
                code: 1,
                log: Arc::new(b"FATAL: image is not supported by the scanner".to_vec()),
            },
            Class::Unpullable => Plan::PullBackOff,
            Class::Oversized => {
                let mut log = b"[".to_vec();
                log.extend(std::iter::repeat_n(b' ', log_limit + 16));
                log.push(b']');
                Plan::Report {
                    log: Arc::new(log),
                    valid: false,
                }
            }
        }
    }
}

/// The scanner's log for `vulns`: the template's flat JSON array, optionally after warning
/// lines (the parser skips up to 32 of them).
pub fn report_bytes(vulns: &[Vulnerability], noise: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if noise {
        out.extend_from_slice(b"2024-01-01T00:00:00Z\tWARN\tusing a cached DB\n");
    }
    // Serialising plain strings cannot fail.
    out.extend(serde_json::to_vec(vulns).unwrap_or_default());
    out
}
