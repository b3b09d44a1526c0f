//! Resolves the configured workload resources (`resource.group`) through API discovery, as the
//! Go operator's REST mapper does (spec §5.4): each must exist and be namespaced.

use std::collections::BTreeMap;

use kube::Client;
use kube::discovery::{self, ApiGroup, Scope};

use super::errors::ShellError;
use super::watch::WorkloadKind;
use crate::config::GroupResource;

/// Resolves every configured resource, failing on the first that is unknown or cluster-scoped.
/// Each group is discovered once (two requests): the six default resources are in two groups,
/// and a replica restarting in a loop asked the API server's group list eight times per start
/// (`make chaos`'s audit log).
pub async fn resolve_workload_kinds(
    client: &Client,
    resources: &[GroupResource],
) -> Result<Vec<WorkloadKind>, ShellError> {
    let mut groups: BTreeMap<&str, ApiGroup> = BTreeMap::new();
    let mut kinds = Vec::new();
    for gr in resources {
        if !groups.contains_key(gr.group.as_str()) {
            let found = discovery::group(client, &gr.group).await.map_err(|e| {
                ShellError::WorkloadResource {
                    resource: gr.to_string(),
                    problem: format!("API group {:?} not found: {e}", gr.group),
                }
            })?;
            groups.insert(&gr.group, found);
        }
        let group = &groups[gr.group.as_str()];
        let found = group
            .recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.plural == gr.resource);
        let Some((resource, caps)) = found else {
            return Err(ShellError::WorkloadResource {
                resource: gr.to_string(),
                problem: "no such resource in the API".to_string(),
            });
        };
        if caps.scope != Scope::Namespaced {
            return Err(ShellError::WorkloadResource {
                resource: gr.to_string(),
                problem: format!("resource {:?} is not namespaced", gr.to_string()),
            });
        }
        kinds.push(WorkloadKind { resource });
    }
    Ok(kinds)
}
