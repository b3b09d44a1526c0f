//! Workload pods: the fields of `core::convert::pod_view`.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, EphemeralContainer,
    LocalObjectReference, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::NamespaceResourceScope;
use serde::Deserialize;
use serde::de::Deserializer;

use super::LeanMeta;

/// A workload pod holding only what its view needs (see the module's doc).
#[derive(Clone, Debug)]
pub struct WatchedPod(pub Pod);

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pod::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Pod::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Pod::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Pod::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pod = LeanPod::deserialize(deserializer)?;
        Ok(WatchedPod(pod.into_pod()))
    }
}

#[derive(Deserialize)]
struct LeanPod {
    #[serde(default)]
    metadata: LeanMeta,
    spec: Option<LeanSpec>,
    status: Option<LeanStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanSpec {
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<LeanContainer>,
    init_containers: Option<Vec<LeanContainer>>,
    ephemeral_containers: Option<Vec<LeanContainer>>,
    image_pull_secrets: Option<Vec<LeanReference>>,
    service_account_name: Option<String>,
}

#[derive(Deserialize)]
struct LeanContainer {
    #[serde(default)]
    name: String,
    image: Option<String>,
}

#[derive(Deserialize)]
struct LeanReference {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanStatus {
    phase: Option<String>,
    conditions: Option<Vec<LeanCondition>>,
    start_time: Option<Time>,
    init_container_statuses: Option<Vec<LeanContainerStatus>>,
    container_statuses: Option<Vec<LeanContainerStatus>>,
    ephemeral_container_statuses: Option<Vec<LeanContainerStatus>>,
}

#[derive(Deserialize)]
struct LeanCondition {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct LeanContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(rename = "imageID", default)]
    image_id: String,
    state: Option<LeanState>,
}

#[derive(Deserialize)]
struct LeanState {
    waiting: Option<LeanWaiting>,
}

#[derive(Deserialize)]
struct LeanWaiting {
    reason: Option<String>,
}

impl LeanPod {
    fn into_pod(self) -> Pod {
        Pod {
            metadata: self.metadata.into_meta(),
            spec: self.spec.map(LeanSpec::into_spec),
            status: self.status.map(LeanStatus::into_status),
        }
    }
}

impl LeanContainer {
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            ..Container::default()
        }
    }

    fn into_ephemeral(self) -> EphemeralContainer {
        EphemeralContainer {
            name: self.name,
            image: self.image,
            ..EphemeralContainer::default()
        }
    }
}

impl LeanSpec {
    fn into_spec(self) -> PodSpec {
        let containers = |list: Vec<LeanContainer>| -> Vec<Container> {
            list.into_iter()
                .map(LeanContainer::into_container)
                .collect()
        };
        PodSpec {
            node_name: self.node_name,
            containers: containers(self.containers),
            init_containers: self.init_containers.map(containers),
            ephemeral_containers: self.ephemeral_containers.map(|list| {
                list.into_iter()
                    .map(LeanContainer::into_ephemeral)
                    .collect()
            }),
            image_pull_secrets: self.image_pull_secrets.map(|list| {
                list.into_iter()
                    .map(|r| LocalObjectReference { name: r.name })
                    .collect()
            }),
            service_account_name: self.service_account_name,
            ..PodSpec::default()
        }
    }
}

impl LeanStatus {
    fn into_status(self) -> PodStatus {
        let statuses = |list: Option<Vec<LeanContainerStatus>>| {
            list.map(|l| {
                l.into_iter()
                    .map(LeanContainerStatus::into_status)
                    .collect()
            })
        };
        PodStatus {
            phase: self.phase,
            conditions: self.conditions.map(|list| {
                list.into_iter()
                    .map(|c| PodCondition {
                        type_: c.type_,
                        status: c.status,
                        ..PodCondition::default()
                    })
                    .collect()
            }),
            start_time: self.start_time,
            init_container_statuses: statuses(self.init_container_statuses),
            container_statuses: statuses(self.container_statuses),
            ephemeral_container_statuses: statuses(self.ephemeral_container_statuses),
            ..PodStatus::default()
        }
    }
}

impl LeanContainerStatus {
    fn into_status(self) -> ContainerStatus {
        ContainerStatus {
            name: self.name,
            image: self.image,
            image_id: self.image_id,
            state: self.state.map(|s| ContainerState {
                waiting: s.waiting.map(|w| ContainerStateWaiting {
                    reason: w.reason,
                    ..ContainerStateWaiting::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }
}
