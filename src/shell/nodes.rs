//! The platform (`kubernetes.io/os`, `kubernetes.io/arch`) of every node, from a metadata-only
//! watch, sent to the core as changes: node heartbeats and other metadata updates that leave
//! the two labels as they were send nothing.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::sync_gate::SyncGate;
use crate::core::port::{NodePlatform, Observation};
use crate::core::scan_job::{LABEL_ARCH, LABEL_OS};

/// The platform a node's labels declare.
pub fn platform_of(node: &PartialObjectMeta<Node>) -> NodePlatform {
    let label = |key: &str| {
        node.metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .filter(|value| !value.is_empty())
            .cloned()
    };
    NodePlatform {
        os: label(LABEL_OS),
        arch: label(LABEL_ARCH),
    }
}

/// What changed between what the core was told (`told`) and one watch event; updates `told`.
/// A relist (`Init` … `InitDone`) ends with removals for the nodes it no longer found.
#[derive(Default)]
pub struct PlatformChanges {
    told: BTreeMap<String, NodePlatform>,
    relisted: Option<BTreeMap<String, NodePlatform>>,
}

impl PlatformChanges {
    /// The observations `event` makes necessary.
    pub fn on(&mut self, event: Event<PartialObjectMeta<Node>>) -> Vec<Observation> {
        let mut out = Vec::new();
        match event {
            Event::Init => self.relisted = Some(BTreeMap::new()),
            Event::InitApply(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let platform = platform_of(&node);
                self.relisted
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name.clone(), platform.clone());
                self.tell(name, Some(platform), &mut out);
            }
            Event::InitDone => {
                let listed = self.relisted.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .told
                    .keys()
                    .filter(|name| !listed.contains_key(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    self.tell(name, None, &mut out);
                }
            }
            Event::Apply(node) => {
                let platform = platform_of(&node);
                self.tell(
                    node.metadata.name.unwrap_or_default(),
                    Some(platform),
                    &mut out,
                );
            }
            Event::Delete(node) => {
                self.tell(node.metadata.name.unwrap_or_default(), None, &mut out)
            }
        }
        out
    }

    fn tell(&mut self, node: String, platform: Option<NodePlatform>, out: &mut Vec<Observation>) {
        if node.is_empty() || self.told.get(&node) == platform.as_ref() {
            return;
        }
        match &platform {
            Some(p) => self.told.insert(node.clone(), p.clone()),
            None => self.told.remove(&node),
        };
        out.push(Observation::NodePlatform { node, platform });
    }
}

/// Watches the metadata of all nodes. Gated, so that no scan Job is created before the
/// platforms are known; a cluster where the operator may not list nodes (an older RBAC) opens
/// the gate with a warning, and Jobs then carry no platform requirement.
pub async fn watch_node_platforms(client: Client, gate: SyncGate, tx: mpsc::Sender<Observation>) {
    let nodes: Api<PartialObjectMeta<Node>> = Api::all(client);
    let cfg = watcher::Config::default().page_size(500);
    let mut stream = watcher::watcher(nodes, cfg).default_backoff().boxed();
    let mut changes = PlatformChanges::default();
    let mut synced = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                if !synced && is_forbidden(&e) {
                    tracing::warn!(
                        error = %e,
                        "cannot list nodes: scan Jobs are not restricted to the platform \
                         (kubernetes.io/os, kubernetes.io/arch) of the nodes that run the image"
                    );
                    synced = true;
                    gate.done_one(&tx).await;
                } else {
                    tracing::warn!(error = %e, "watch of nodes failed; retrying");
                }
                continue;
            }
        };
        let done = matches!(event, Event::InitDone);
        for observation in changes.on(event) {
            if tx.send(observation).await.is_err() {
                return;
            }
        }
        if done && !synced {
            synced = true;
            gate.done_one(&tx).await;
        }
    }
}

fn is_forbidden(e: &watcher::Error) -> bool {
    let api_error = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status,
        _ => return false,
    };
    api_error.code == 403
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn node(name: &str, arch: Option<&str>) -> PartialObjectMeta<Node> {
        let mut labels = BTreeMap::from([(LABEL_OS.to_string(), "linux".to_string())]);
        if let Some(arch) = arch {
            labels.insert(LABEL_ARCH.to_string(), arch.to_string());
        }
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    fn told(observations: Vec<Observation>) -> Vec<(String, Option<Option<String>>)> {
        observations
            .into_iter()
            .filter_map(|o| match o {
                Observation::NodePlatform { node, platform } => {
                    Some((node, platform.map(|p| p.arch)))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_changes_reach_the_core_and_a_relist_removes_vanished_nodes() {
        let mut c = PlatformChanges::default();
        let amd = Some(Some("amd64".to_string()));
        let arm = Some(Some("arm64".to_string()));
        assert_eq!(told(c.on(Event::Init)), []);
        assert_eq!(
            told(c.on(Event::InitApply(node("a", Some("amd64"))))),
            [("a".to_string(), amd.clone())]
        );
        c.on(Event::InitApply(node("b", Some("arm64"))));
        assert_eq!(told(c.on(Event::InitDone)), []);
        // A heartbeat or an unrelated label: nothing to tell.
        assert_eq!(told(c.on(Event::Apply(node("a", Some("amd64"))))), []);
        assert_eq!(
            told(c.on(Event::Apply(node("a", None)))),
            [("a".to_string(), Some(None))]
        );
        // The watch expired while b was deleted: the relist finds only a.
        c.on(Event::Init);
        assert_eq!(told(c.on(Event::InitApply(node("a", None)))), []);
        assert_eq!(told(c.on(Event::InitDone)), [("b".to_string(), None)]);
        assert_eq!(
            told(c.on(Event::Apply(node("c", Some("arm64"))))),
            [("c".to_string(), arm)]
        );
        assert_eq!(
            told(c.on(Event::Delete(node("c", Some("arm64"))))),
            [("c".to_string(), None)]
        );
        assert_eq!(told(c.on(Event::Delete(node("c", None)))), []);
    }
}
