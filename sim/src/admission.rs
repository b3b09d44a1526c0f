//! Pod Security Admission's `restricted` level, as far as a scan pod can break it: a scan Job
//! placed in a namespace that enforces it gets no pod, only `FailedCreate` Events with these
//! messages (`kubelet.rs` decides which namespaces enforce it).

use k8s_openapi::api::core::v1::{Container, PodSpec};

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

fn names(list: &[&str]) -> String {
    let quoted: Vec<String> = list.iter().map(|n| format!("{n:?}")).collect();
    let noun = if list.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{noun} {}", quoted.join(", "))
}

/// The checks of the Pod Security Standard `restricted` a scan pod can break, worded as Pod
/// Security Admission words them.
pub fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    let sc = |c: &Container| c.security_context.clone().unwrap_or_default();
    let escalating: Vec<&str> = containers(spec)
        .filter(|c| sc(c).allow_privilege_escalation != Some(false))
        .map(|c| c.name.as_str())
        .collect();
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            names(&escalating)
        ));
    }
    let mut caps = Vec::new();
    let no_drop: Vec<&str> = containers(spec)
        .filter(|c| {
            !sc(c)
                .capabilities
                .and_then(|k| k.drop)
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        })
        .map(|c| c.name.as_str())
        .collect();
    if !no_drop.is_empty() {
        caps.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            names(&no_drop)
        ));
    }
    for c in containers(spec) {
        for add in sc(c).capabilities.and_then(|k| k.add).unwrap_or_default() {
            if add != "NET_BIND_SERVICE" {
                caps.push(format!(
                    "container {:?} must not include {add:?} in securityContext.capabilities.add",
                    c.name
                ));
            }
        }
    }
    if !caps.is_empty() {
        out.push(format!("unrestricted capabilities ({})", caps.join("; ")));
    }
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let pod_non_root = pod_sc.run_as_non_root == Some(true);
    let root_allowed: Vec<&str> = containers(spec)
        .filter(|c| match sc(c).run_as_non_root {
            Some(v) => !v,
            None => !pod_non_root,
        })
        .map(|c| c.name.as_str())
        .collect();
    if !root_allowed.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            names(&root_allowed)
        ));
    }
    let root: Vec<&str> = containers(spec)
        .filter(|c| sc(c).run_as_user == Some(0))
        .map(|c| c.name.as_str())
        .collect();
    if !root.is_empty() || pod_sc.run_as_user == Some(0) {
        out.push(format!(
            "runAsUser=0 (pod and {} must not set runAsUser=0)",
            names(&root)
        ));
    }
    let pod_seccomp = pod_sc
        .seccomp_profile
        .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost");
    let no_seccomp: Vec<&str> = containers(spec)
        .filter(|c| {
            let own = sc(c).seccomp_profile.map(|p| p.type_);
            match own.as_deref() {
                Some("RuntimeDefault" | "Localhost") => false,
                Some(_) => true,
                None => !pod_seccomp,
            }
        })
        .map(|c| c.name.as_str())
        .collect();
    if !no_seccomp.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            names(&no_seccomp)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use image_scanner_core::engine::EngineConfig;
    use image_scanner_core::scan_job::{ScanJobParams, build_scan_job};

    use super::*;
    use crate::cluster::SCAN_NS;

    #[test]
    fn the_scan_pod_breaks_restricted_pod_security() {
        let cfg = EngineConfig::for_tests(SCAN_NS);
        let job = build_scan_job(
            &ScanJobParams {
                namespace: "ns-0".to_string(),
                job_name: "j".to_string(),
                image_name: "r/x".to_string(),
                image_digest: "sha256:p".to_string(),
                ..ScanJobParams::default()
            },
            &cfg.job,
        );
        let spec = job.spec.and_then(|s| s.template.spec).unwrap_or_default();
        let v = restricted_violations(&spec);
        assert!(v.iter().any(|m| m.contains("\"DAC_OVERRIDE\"")), "{v:?}");
        // A container that sets nothing breaks four rules.
        let bare = PodSpec {
            containers: vec![Container {
                name: "c".to_string(),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        assert_eq!(restricted_violations(&bare).len(), 4);
    }
}
