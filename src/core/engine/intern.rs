//! Sharing of values that many observed objects carry identically.
//!
//! At 10,000 pods most of what a pod carries is the same for every replica of its workload: the
//! labels, the container list (names, images, image IDs), the controller reference, the CIS it
//! maps to. Kept per pod, that was about half of the operator's heap (docs/performance.md). The
//! engine passes each such value through an [`Interner`] when it stores an object, so equal
//! values share one allocation.

use std::collections::BTreeSet;
use std::sync::Arc;

/// A set of shared values. Values no stored object uses any more are swept out when the set has
/// doubled since the last sweep, so the cost stays amortised O(log n) per call and the set never
/// holds more than about twice what is in use.
#[derive(Debug)]
pub struct Interner<T: ?Sized + Ord> {
    values: BTreeSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + Ord> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: BTreeSet::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

/// Below this many values a sweep is not worth its walk.
const MIN_SWEEP: usize = 1024;

impl<T: ?Sized + Ord> Interner<T> {
    /// The shared copy of `value`: an equal value already held, else `value` itself, now held.
    pub fn share(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(shared) = self.values.get(&value) {
            return shared.clone();
        }
        if self.values.len() >= self.sweep_at {
            // Only the set holds a value nobody else references.
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.sweep_at = (self.values.len() * 2).max(MIN_SWEEP);
        }
        self.values.insert(value.clone());
        value
    }

    /// Number of distinct values held (used or not yet swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.values.len()
    }
}

impl<T: Ord + Clone> Interner<[T]> {
    /// The shared copy of a list.
    pub fn share_vec(&mut self, list: Vec<T>) -> Arc<[T]> {
        if let Some(shared) = self.values.get(list.as_slice()) {
            return shared.clone();
        }
        self.share(list.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let mut interner: Interner<str> = Interner::default();
        let a = interner.share(Arc::from("apps/v1"));
        let b = interner.share(Arc::from("apps/v1"));
        let c = interner.share(Arc::from("v1"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn unused_values_are_swept_once_the_set_doubles() {
        let mut interner: Interner<[u32]> = Interner::default();
        let kept = interner.share_vec(vec![0]);
        for i in 1..MIN_SWEEP as u32 {
            // Dropped at once: only the set holds them.
            interner.share_vec(vec![i]);
        }
        assert_eq!(interner.len(), MIN_SWEEP);
        interner.share_vec(vec![u32::MAX]);
        // The sweep kept the value still in use and the new one.
        assert_eq!(interner.len(), 2);
        assert!(Arc::ptr_eq(&kept, &interner.share_vec(vec![0])));
    }

    #[test]
    fn after_a_sweep_the_next_one_waits_until_the_set_has_doubled() {
        let mut interner: Interner<[u32]> = Interner::default();
        // 600 values stay in use, 424 do not: the first sweep happens at MIN_SWEEP.
        let kept: Vec<Arc<[u32]>> = (0..600).map(|i| interner.share_vec(vec![i])).collect();
        for i in 600..MIN_SWEEP as u32 {
            interner.share_vec(vec![i]);
        }
        interner.share_vec(vec![u32::MAX]);
        assert_eq!(interner.len(), 601, "the 600 in use and the new one");
        // Unused again: no sweep before 1,200 values (twice what the sweep kept).
        for i in 0..(1200 - 601) as u32 {
            interner.share_vec(vec![1_000_000 + i]);
        }
        assert_eq!(interner.len(), 1200);
        interner.share_vec(vec![2_000_000]);
        assert_eq!(interner.len(), 601);
        assert_eq!(kept.len(), 600);
    }
}
