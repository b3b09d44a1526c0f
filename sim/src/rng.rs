//! Seeded randomness: one `u64` seed, independent ChaCha8 sub-streams per concern, so that adding
//! a fault kind does not reshuffle the workload (VOPR / FoundationDB discipline).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG type of every stream.
pub type Rng = ChaCha8Rng;

/// The concerns that draw random numbers, each from its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concern {
    /// Options derived from the seed (fault subset, rates, sizes).
    Options = 1,
    /// The workload script and the scanner outputs.
    Workload = 2,
    /// Kubelet and workload-controller timings.
    World = 3,
    /// Fault injection decisions.
    Faults = 4,
    /// Watch delivery delays and API latencies.
    Delivery = 5,
    /// UIDs of objects created by the operator (CIS, Jobs) and scan pods.
    Uids = 6,
    /// Scan Job controller timings.
    Jobs = 7,
    /// The KEP-2535 setup of the seed (feature gate per node, namespaces' secrets and
    /// admission): drawn from its own stream so the older options keep their values.
    Kubelet = 8,
    /// Which digests need credentials and which nodes have them preloaded.
    Registry = 9,
    /// The nodes' `kubernetes.io/arch` labels.
    Platforms = 10,
    /// The cluster-wide bound on stored details.
    DetailsBudget = 11,
    /// The users' vulnerability exceptions.
    Exceptions = 12,
    /// The notification sinks: how many, and how their receivers answer.
    Sinks = 13,
}

/// SplitMix64 finaliser: spreads seeds that differ in one bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream of `concern` for `seed`.
pub fn stream(seed: u64, concern: Concern) -> Rng {
    ChaCha8Rng::seed_from_u64(mix(seed ^ mix(concern as u64)))
}

/// Helpers on any stream.
pub trait Draw {
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool;
    /// Uniform in `lo..=hi` (milliseconds or counts).
    fn between(&mut self, lo: u64, hi: u64) -> u64;
    /// An index below `n` (n > 0).
    fn index(&mut self, n: usize) -> usize;
    /// Hex string of `len` characters.
    fn hex(&mut self, len: usize) -> String;
}

impl Draw for Rng {
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.random_bool(p.min(1.0))
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.random_range(lo..=hi)
        }
    }
    fn index(&mut self, n: usize) -> usize {
        if n <= 1 { 0 } else { self.random_range(0..n) }
    }
    fn hex(&mut self, len: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(HEX[self.random_range(0..16usize)]))
            .collect()
    }
}

/// FNV-1a 64, for trace hashes (never `DefaultHasher`).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Feeds a number.
    pub fn num(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }
}
