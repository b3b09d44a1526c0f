//! Watched objects decoded with only the fields their views read: workload pods
//! (`core::convert::pod_view`), workload metadata (`convert::workload_view`) and CIS without
//! their vulnerability details (`core::convert::cis_view`).
//!
//! A pod as the API server sends it is mostly what the operator never looks at: `managedFields`
//! (a JSON tree per field manager), annotations such as `kubectl`'s last-applied configuration,
//! env, volumes, probes, resources. kube's watcher decodes each list page whole before it hands
//! out the first object, so at 10,000 pods the full `Pod` type makes the relist the operator's
//! memory peak (docs/performance.md, "What dominates memory"). `WatchedPod` decodes the same
//! JSON into the same `Pod` type with everything else left out: serde skips unknown fields
//! without building them, so a page costs its raw text and the few strings kept.
//! `WatchedWorkload` does the same for the metadata-only watches of workload kinds, in place of
//! kube's `PartialObjectMeta`, whose flattened type fields make serde buffer each whole object
//! (`managedFields` included) before decoding it.
//!
//! `WatchedCis` measures a CIS's details item by item as they are decoded and keeps none: a page
//! of 50 CIS of realistic images is ~2 MB of details, and each status the operator applies comes
//! back with its details in the answer.
//!
//! The results are ordinary `Pod`s, `ObjectMeta`s and `ContainerImageScan`s, so the views are made by the usual
//! functions, and tests check that full and lean decoding give the same views.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::core::workload::IGNORE_UNFIXED_ANNOTATION;

mod cis;
mod pod;

pub use cis::WatchedCis;
pub use pod::WatchedPod;

/// The metadata of an object of a workload kind (a metadata-only watch, see the module's doc).
#[derive(Clone, Debug)]
pub struct WatchedWorkload {
    pub metadata: ObjectMeta,
}

impl kube::Resource for WatchedWorkload {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    /// Asks the API server for `PartialObjectMetadata`: no spec or status on the wire.
    fn metadata_api() -> bool {
        true
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedWorkload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct LeanObject {
            #[serde(default)]
            metadata: LeanMeta,
        }
        let object = LeanObject::deserialize(deserializer)?;
        Ok(WatchedWorkload {
            metadata: object.metadata.into_meta(),
        })
    }
}

/// The metadata fields the views read.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "ignore_unfixed_only")]
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

/// An annotation's key, allocated only when it is the one kept.
struct KeptKey(Option<String>);

impl<'de> Deserialize<'de> for KeptKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = KeptKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an annotation key")
            }
            fn visit_str<E>(self, key: &str) -> Result<KeptKey, E> {
                Ok(KeptKey(
                    (key == IGNORE_UNFIXED_ANNOTATION).then(|| key.to_string()),
                ))
            }
        }
        deserializer.deserialize_str(Key)
    }
}

/// Keeps the one annotation the view reads; the others (often kilobytes) are skipped unbuilt.
fn ignore_unfixed_only<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Kept;
    impl<'de> Visitor<'de> for Kept {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(KeptKey(key)) = map.next_key()? {
                match key {
                    Some(key) => {
                        kept.insert(key, map.next_value::<String>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Some(kept))
        }
    }
    deserializer.deserialize_option(Kept)
}

impl LeanMeta {
    pub(crate) fn into_meta(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            generation: self.generation,
            labels: self.labels,
            annotations: self.annotations,
            owner_references: self.owner_references,
            creation_timestamp: self.creation_timestamp,
            deletion_timestamp: self.deletion_timestamp,
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
mod tests;
