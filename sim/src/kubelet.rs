//! Pull credentials as the kubelet sees them (KEP-2535, `KubeletEnsureSecretPulledImages`), and
//! the namespaces' side of a scan Job placed in them (pull Secrets, Pod Security, RBAC).
//!
//! The model, per seed ([`KepOptions`], printed with the options):
//! * some digests are private: pulling them needs the credentials of one of two *identities*
//!   (registry accounts); a namespace holds each identity in a Secret under its own name
//!   (`regcred` here, `registry-a` there: same content, so the kubelet treats them alike), or
//!   not at all, and a Secret may be deleted during the run (a pull with it then gets 401);
//! * workload pods of private images name the Secrets of the identities they need (or every
//!   Secret of the namespace, as a ServiceAccount's `imagePullSecrets` injects them, or none,
//!   relying on node-level credentials or on the image being on the node);
//! * per node the feature gate is on or off. Off: any pod uses any image on the node. On: the
//!   node remembers how it got each image; a pod uses it without a pull only if it was pulled
//!   anonymously, with node credentials, or preloaded (before the gate), or if the pod's
//!   Secrets resolve to the identity that pulled it. Otherwise the kubelet pulls with the pod's
//!   credentials (then the node's): success, or `ErrImagePull` with the registry's 401.
//!
//! Only workload pods change what a node remembers. A scan pod's pull would only ever add an
//! identity the same scan pod could pull with anyway (or, with node credentials, what every pod
//! can pull), and leaving it out keeps the world independent of the operator, which the
//! differential check needs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use image_scanner_core::port::PullCredentials;
use k8s_openapi::api::core::v1::PodSpec;

use crate::cluster::{SCAN_NS, T0};
use crate::rng::{Concern, Draw, stream};
use crate::scanner::Scanner;

/// Credential identities (registry accounts).
pub const IDENTITIES: usize = 2;
/// Secret names per identity: namespaces name the same credentials differently.
const SECRET_NAMES: [&[&str]; IDENTITIES] = [
    &["regcred", "registry-a", "pull-secret"],
    &["regcred-b", "acme-pull"],
];

/// What a namespace holds and enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct NsSetup {
    /// The Secret that holds each identity here (`None`: the namespace has none).
    pub secrets: [Option<&'static str>; IDENTITIES],
    /// When that Secret is deleted (ms after the start; 0: a dangling reference).
    pub deleted_at: [Option<i64>; IDENTITIES],
    /// Pods name every Secret of the namespace, needed or not (a ServiceAccount's
    /// `imagePullSecrets` are injected into every pod).
    pub sa_secrets: bool,
    /// Pods name no Secret at all (they rely on node credentials or on cached images).
    pub bare: bool,
    /// Pod Security Admission enforces `restricted`.
    pub restricted: bool,
    /// The operator may not create Jobs here (its RBAC is bound per namespace).
    pub forbidden: bool,
    /// The pods' service account.
    pub service_account: &'static str,
}

/// Namespaces the seed does not set up (`kube-system`, the scan namespace).
const PLAIN: NsSetup = NsSetup {
    secrets: [Some("regcred"), Some("regcred-b")],
    deleted_at: [None, None],
    sa_secrets: false,
    bare: false,
    restricted: false,
    forbidden: false,
    service_account: "default",
};

/// The KEP-2535 options of a seed.
#[derive(Clone, Debug)]
pub struct KepOptions {
    /// Per node (`node-<i>`): the feature gate is on.
    pub gate: Vec<bool>,
    /// Share of digests that need credentials.
    pub private_share: f64,
    /// Nodes hold credentials for every private registry (a config.json or a credential
    /// provider), so any pod can pull.
    pub node_creds: bool,
    /// Probability that a node has a digest from before the gate (usable by every pod).
    pub preload: f64,
    /// The engine may place scan Jobs in workload namespaces.
    pub placement: bool,
    /// Per workload namespace `ns-<i>`.
    pub namespaces: Vec<NsSetup>,
}

impl KepOptions {
    /// Draws the options of `seed` from their own stream.
    pub fn draw(seed: u64, nodes: usize, namespaces: usize, fault_phase_ms: u64) -> KepOptions {
        let mut r = stream(seed, Concern::Kubelet);
        let gate = match r.index(4) {
            // A cluster before 1.35, or with the gate turned off.
            0 => vec![false; nodes],
            // A rolling node upgrade.
            3 => (0..nodes).map(|_| r.chance(0.5)).collect(),
            _ => vec![true; nodes],
        };
        let private_share = [0.0, 0.3, 0.5, 0.8][r.index(4)];
        let node_creds = r.chance(0.2);
        let preload = [0.0, 0.0, 0.2][r.index(3)];
        let placement = r.chance(0.9);
        let namespaces = (0..namespaces)
            .map(|_| {
                let mut secrets = [None; IDENTITIES];
                let mut deleted_at = [None; IDENTITIES];
                for id in 0..IDENTITIES {
                    if r.chance(0.85) {
                        let names = SECRET_NAMES[id];
                        secrets[id] = Some(names[r.index(names.len())]);
                        if r.chance(0.12) {
                            deleted_at[id] = Some(if r.chance(0.4) {
                                0
                            } else {
                                r.between(60_000, fault_phase_ms) as i64
                            });
                        }
                    }
                }
                NsSetup {
                    secrets,
                    deleted_at,
                    sa_secrets: r.chance(0.25),
                    bare: r.chance(if node_creds { 0.4 } else { 0.1 }),
                    restricted: r.chance(0.2),
                    forbidden: r.chance(0.12),
                    service_account: ["default", "default", "app-runner"][r.index(3)],
                }
            })
            .collect();
        KepOptions {
            gate,
            private_share,
            node_creds,
            preload,
            placement,
            namespaces,
        }
    }

    /// The setup of a namespace.
    pub fn setup(&self, ns: &str) -> &NsSetup {
        ns.strip_prefix("ns-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.namespaces.get(i))
            .unwrap_or(&PLAIN)
    }

    /// Whether the gate is on at `node`.
    pub fn gate_on(&self, node: &str) -> bool {
        node.strip_prefix("node-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.gate.get(i))
            .copied()
            .unwrap_or(false)
    }
}

impl fmt::Display for KepOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gate: Vec<&str> = self
            .gate
            .iter()
            .map(|on| if *on { "on" } else { "off" })
            .collect();
        write!(
            f,
            "kep=[gate={} private={} node_creds={} preload={} placement={}",
            gate.join(","),
            self.private_share,
            self.node_creds,
            self.preload,
            self.placement
        )?;
        for (i, s) in self.namespaces.iter().enumerate() {
            write!(f, " ns-{i}(")?;
            for id in 0..IDENTITIES {
                let name = s.secrets[id].unwrap_or("-");
                write!(f, "{}={name}", ["a", "b"][id])?;
                if let Some(t) = s.deleted_at[id] {
                    write!(f, "@del{}s", t / 1000)?;
                }
                f.write_str(" ")?;
            }
            write!(f, "sa={}", s.service_account)?;
            for (on, flag) in [
                (s.sa_secrets, " sa-secrets"),
                (s.bare, " bare"),
                (s.restricted, " restricted"),
                (s.forbidden, " forbidden"),
            ] {
                if on {
                    f.write_str(flag)?;
                }
            }
            f.write_str(")")?;
        }
        f.write_str("]")
    }
}

/// How an image came onto a node, as far as the gate cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullRecord {
    /// Pulled anonymously or with node credentials, or preloaded: usable by every pod.
    pub anyone: bool,
    /// Bit set of the identities that pulled it.
    pub ids: u8,
}

/// What the kubelet does when a container of a pod needs an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The pod may use the image on the node.
    Present,
    /// Pulled; the node remembers it this way.
    Pulled(PullRecord),
    /// The pull failed: the `ErrImagePull` message.
    Denied(String),
}

/// The kubelets of the cluster, as far as images and credentials go.
#[derive(Clone, Debug)]
pub struct Kubelet {
    /// The seed's options.
    pub opts: KepOptions,
    /// The identity each private digest needs.
    pub private: BTreeMap<String, u8>,
    /// (node, digest) → how it came there (workload pods and preloads).
    pub records: BTreeMap<(String, String), PullRecord>,
}

impl Kubelet {
    /// Which digests are private and what the nodes hold at the start.
    pub fn new(seed: u64, opts: &KepOptions, scanner: &Scanner) -> Kubelet {
        let mut r = stream(seed, Concern::Registry);
        let mut private = BTreeMap::new();
        let mut records = BTreeMap::new();
        for digest in scanner.truth.keys() {
            if r.chance(opts.private_share) {
                private.insert(digest.clone(), r.index(IDENTITIES) as u8);
            }
            for node in 0..opts.gate.len() {
                if r.chance(opts.preload) {
                    let rec = PullRecord {
                        anyone: true,
                        ids: 0,
                    };
                    records.insert((format!("node-{node}"), digest.clone()), rec);
                }
            }
        }
        Kubelet {
            opts: opts.clone(),
            private,
            records,
        }
    }

    /// The identities the Secrets `names` of namespace `ns` hold at time `now`.
    fn identities(&self, ns: &str, names: &[String], now: i64) -> u8 {
        let setup = self.opts.setup(ns);
        let mut ids = 0;
        for id in 0..IDENTITIES {
            let Some(secret) = setup.secrets[id] else {
                continue;
            };
            let deleted = setup.deleted_at[id].is_some_and(|t| T0 + t <= now);
            if !deleted && names.iter().any(|n| n == secret) {
                ids |= 1 << id;
            }
        }
        ids
    }

    /// Whether a pod of `ns` presenting `creds` gets `digest` (written `image`) on `node`.
    pub fn access(
        &self,
        node: &str,
        digest: &str,
        image: &str,
        ns: &str,
        creds: Option<&PullCredentials>,
        now: i64,
    ) -> Access {
        let record = self.records.get(&(node.to_string(), digest.to_string()));
        let Some(&need) = self.private.get(digest) else {
            return match record {
                Some(_) => Access::Present,
                None => Access::Pulled(PullRecord {
                    anyone: true,
                    ids: 0,
                }),
            };
        };
        let ids = creds.map_or(0, |c| self.identities(ns, &c.secrets, now));
        if let Some(r) = record
            && (!self.opts.gate_on(node) || r.anyone || r.ids & ids != 0)
        {
            return Access::Present;
        }
        if ids & (1 << need) != 0 {
            Access::Pulled(PullRecord {
                anyone: false,
                ids: 1 << need,
            })
        } else if self.opts.node_creds {
            Access::Pulled(PullRecord {
                anyone: true,
                ids: 0,
            })
        } else {
            Access::Denied(unauthorized(image, digest))
        }
    }

    /// A workload pod's pull lands on the node.
    pub fn record(&mut self, node: &str, digest: &str, pulled: PullRecord) {
        let r = self
            .records
            .entry((node.to_string(), digest.to_string()))
            .or_default();
        r.anyone |= pulled.anyone;
        r.ids |= pulled.ids;
    }

    /// The `imagePullSecrets` and service account of a new workload pod of `ns` that runs
    /// `digests`.
    pub fn pod_credentials<'a>(
        &self,
        ns: &str,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Option<Arc<PullCredentials>> {
        let setup = self.opts.setup(ns);
        if setup.bare {
            return None;
        }
        let mut needed = 0u8;
        for d in digests {
            if let Some(id) = self.private.get(d) {
                needed |= 1 << id;
            }
        }
        if setup.sa_secrets {
            needed = u8::MAX;
        }
        let secrets: Vec<String> = (0..IDENTITIES)
            .filter(|id| needed & (1 << id) != 0)
            .filter_map(|id| setup.secrets[id].map(str::to_string))
            .collect();
        (!secrets.is_empty()).then(|| {
            Arc::new(PullCredentials {
                secrets,
                service_account: setup.service_account.to_string(),
            })
        })
    }

    /// Why the API server refuses a scan Job's pod in `ns` (Pod Security), if it does.
    pub fn pod_rejection(&self, ns: &str, spec: &PodSpec) -> Option<String> {
        if ns == SCAN_NS || !self.opts.setup(ns).restricted {
            return None;
        }
        let violations = crate::admission::restricted_violations(spec);
        (!violations.is_empty()).then(|| {
            format!(
                "violates PodSecurity \"restricted:latest\": {}",
                violations.join(", ")
            )
        })
    }
}

/// containerd's answer to a pull the registry refuses.
fn unauthorized(image: &str, digest: &str) -> String {
    let host = match image.split('/').next().unwrap_or("") {
        "docker.io" => "registry-1.docker.io",
        h => h,
    };
    format!(
        "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": pulling from host {host} failed with status code [manifests {digest}]: 401 Unauthorized"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubelet(gate: bool, node_creds: bool) -> Kubelet {
        let setup = NsSetup {
            deleted_at: [None, Some(1_000)],
            ..PLAIN
        };
        let opts = KepOptions {
            gate: vec![gate],
            private_share: 1.0,
            node_creds,
            preload: 0.0,
            placement: true,
            namespaces: vec![
                setup.clone(),
                NsSetup {
                    secrets: [Some("registry-a"), None],
                    ..setup
                },
            ],
        };
        Kubelet {
            opts,
            private: [("sha256:p".to_string(), 0)].into(),
            records: BTreeMap::new(),
        }
    }

    fn creds(secrets: &[&str]) -> PullCredentials {
        PullCredentials {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            service_account: "default".to_string(),
        }
    }

    #[test]
    fn the_gate_lets_a_pod_use_an_image_only_with_the_identity_that_pulled_it() {
        let mut k = kubelet(true, false);
        let a = creds(&["regcred"]);
        let pulled = k.access("node-0", "sha256:p", "r/x", "ns-0", Some(&a), T0);
        let Access::Pulled(rec) = pulled else {
            panic!("{pulled:?}")
        };
        k.record("node-0", "sha256:p", rec);
        // Same identity under another name, in another namespace: no pull.
        let other = creds(&["registry-a"]);
        assert_eq!(
            k.access("node-0", "sha256:p", "r/x", "ns-1", Some(&other), T0),
            Access::Present
        );
        // No credentials: a pull, refused.
        let denied = k.access("node-0", "sha256:p", "r/x", "image-scanner", None, T0);
        assert!(matches!(&denied, Access::Denied(m) if m.contains("401 Unauthorized")));
        // Gate off: anyone uses what is on the node.
        let off = Kubelet {
            opts: KepOptions {
                gate: vec![false],
                ..k.opts.clone()
            },
            ..k.clone()
        };
        assert_eq!(
            off.access("node-0", "sha256:p", "r/x", "image-scanner", None, T0),
            Access::Present
        );
        // Node credentials pull for everyone, and make the image everyone's.
        let node = kubelet(true, true);
        assert_eq!(
            node.access("node-0", "sha256:p", "r/x", "image-scanner", None, T0),
            Access::Pulled(PullRecord {
                anyone: true,
                ids: 0
            })
        );
    }

    #[test]
    fn a_deleted_secret_holds_nothing() {
        let mut k = kubelet(true, false);
        k.private.insert("sha256:q".to_string(), 1);
        let b = creds(&["regcred-b"]);
        assert!(matches!(
            k.access("node-0", "sha256:q", "r/y", "ns-0", Some(&b), T0),
            Access::Pulled(_)
        ));
        assert!(matches!(
            k.access("node-0", "sha256:q", "r/y", "ns-0", Some(&b), T0 + 1_000),
            Access::Denied(_)
        ));
    }
}
