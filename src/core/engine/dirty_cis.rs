//! The CIS the CIS stage looks at again at its next poll, walked image by image.
//!
//! Every CIS name ends with a hash of its image name and digest (`naming::cis_name`); the walk
//! goes by that hash first, so the CIS of one digest are created one after the other. A
//! digest's scan starts with its first CIS, and its result is written to the CIS that exist
//! when the scan ends: walked by namespace, the other CIS of a popular image came over the whole
//! creation of a cluster's CIS, each after its digest's report had left the report cache, and
//! each read the scan's log again (656 of 1,000 logs read twice in the realistic benchmark).

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};

use super::index::CisKey;

/// The set, ordered by (image hash, namespace, name).
#[derive(Debug, Default)]
pub(super) struct DirtyCis(BTreeSet<(String, CisKey)>);

/// The `-<hash5>` suffix of a CIS name (the whole name if it has none).
fn image_hash(key: &CisKey) -> String {
    key.name
        .rsplit_once('-')
        .map_or(key.name.as_str(), |(_, hash)| hash)
        .to_string()
}

impl DirtyCis {
    pub(super) fn insert(&mut self, key: CisKey) {
        self.0.insert((image_hash(&key), key));
    }

    pub(super) fn remove(&mut self, key: &CisKey) {
        self.0.remove(&(image_hash(key), key.clone()));
    }

    /// The first key of the walk.
    pub(super) fn first(&self) -> Option<CisKey> {
        self.0.first().map(|(_, k)| k.clone())
    }

    /// The key after `key` in the walk (`key` itself may be gone).
    pub(super) fn after(&self, key: &CisKey) -> Option<CisKey> {
        self.0
            .range((Excluded((image_hash(key), key.clone())), Unbounded))
            .next()
            .map(|(_, k)| k.clone())
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Extend<CisKey> for DirtyCis {
    fn extend<I: IntoIterator<Item = CisKey>>(&mut self, keys: I) {
        for key in keys {
            self.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_takes_one_image_at_a_time_across_namespaces() {
        let mut dirty = DirtyCis::default();
        for (ns, name) in [
            ("a", "deployment-web-app-bbbbb"),
            ("a", "deployment-web-proxy-aaaaa"),
            ("b", "deployment-api-app-ccccc"),
            ("b", "deployment-api-proxy-aaaaa"),
            ("c", "no-hash"),
        ] {
            dirty.insert(CisKey::new(ns, name));
        }
        let mut walk = Vec::new();
        let mut next = dirty.first();
        while let Some(key) = next {
            next = dirty.after(&key);
            walk.push(format!("{}/{}", key.namespace, key.name));
        }
        assert_eq!(
            walk,
            [
                "a/deployment-web-proxy-aaaaa",
                "b/deployment-api-proxy-aaaaa",
                "a/deployment-web-app-bbbbb",
                "b/deployment-api-app-ccccc",
                "c/no-hash",
            ]
        );
        dirty.remove(&CisKey::new("b", "deployment-api-proxy-aaaaa"));
        assert_eq!(
            dirty.after(&CisKey::new("b", "deployment-api-proxy-aaaaa")),
            Some(CisKey::new("a", "deployment-web-app-bbbbb")),
            "the walk goes on from a key just removed"
        );
        assert_eq!(dirty.len(), 4);
    }
}
