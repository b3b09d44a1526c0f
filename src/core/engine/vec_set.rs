//! A small ordered set kept in a sorted `Vec`.
//!
//! The reverse indexes (pods of a CIS, pods of a controller, CIS of a digest) hold a handful of
//! keys each, thousands of times over. A `BTreeSet` allocates a whole eleven-slot node for its
//! first key, so at 10,000 pods these sets were a measurable part of the operator's memory
//! (docs/performance.md); a sorted `Vec` costs what it holds. Iteration is in order, like a `BTreeSet`, so
//! decisions stay deterministic. Insertion is O(n) in the set's size, which is the number of
//! replicas of one workload: cheap even for large DaemonSets, and the initial list arrives in
//! key order, which appends.

/// The set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecSet<T>(Vec<T>);

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet(Vec::new())
    }
}

impl<T: Ord> VecSet<T> {
    /// Adds `value`; false when it was already there.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Removes `value`; false when it was not there. Gives memory back once the set has shrunk
    /// to a quarter of its capacity.
    pub fn remove(&mut self, value: &T) -> bool {
        match self.0.binary_search(value) {
            Ok(at) => {
                self.0.remove(at);
                if self.0.len() * 4 <= self.0.capacity() {
                    self.0.shrink_to(self.0.len() * 2);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: &T) -> bool {
        self.0.binary_search(value).is_ok()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The values in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> IntoIterator for VecSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shrinking_gives_memory_back_but_keeps_room_to_grow() {
        let mut set = VecSet::default();
        for i in 0..64u32 {
            set.insert(i);
        }
        let full = set.0.capacity();
        for i in 0..48u32 {
            assert!(set.remove(&i));
        }
        assert_eq!(set.len(), 16);
        let capacity = set.0.capacity();
        assert!(
            capacity < full && capacity >= 2 * set.len(),
            "capacity {capacity} (was {full}) for {} values",
            set.len()
        );
    }

    #[test]
    fn capacity_is_kept_until_the_set_is_down_to_a_quarter() {
        let mut set = VecSet::default();
        for i in 0..64u32 {
            set.insert(i);
        }
        let full = set.0.capacity();
        for i in 0..64u32 {
            set.remove(&i);
            if set.len() * 4 > full {
                assert_eq!(set.0.capacity(), full, "shrunk at {} values", set.len());
            }
        }
    }

    #[test]
    fn an_owned_set_iterates_in_order() {
        let mut set = VecSet::default();
        for v in [3u8, 1, 2] {
            set.insert(v);
        }
        assert_eq!(set.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same members, in the same order, as
        /// a `BTreeSet`, with the same answers along the way.
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u8..32), 0..200)) {
            let mut ours = VecSet::default();
            let mut model = BTreeSet::new();
            for (insert, v) in ops {
                if insert {
                    prop_assert_eq!(ours.insert(v), model.insert(v));
                } else {
                    prop_assert_eq!(ours.remove(&v), model.remove(&v));
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert_eq!(ours.is_empty(), model.is_empty());
                prop_assert_eq!(ours.contains(&v), model.contains(&v));
                prop_assert!(ours.iter().eq(model.iter()));
            }
        }
    }
}
