//! The scan Job as built for each input, and its acceptance cases.

use std::path::Path;

use super::*;
use crate::crd::ContainerImageScan;
use crate::naming::{is_label_value, upstream_scan_job_name};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::Toleration;
use serde_json::{Value, json};

const CIS_UID: &str = "5f0e2c1a-3b4d-4e6f-8a9b-0c1d2e3f4a5b";

/// Fixtures are embedded at compile time: the core does no file I/O, not even in tests.
fn fixture(file: &str) -> String {
    macro_rules! upstream {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/upstream/internal/controller/stas/testdata/scan-job/",
                $name
            ))
        };
    }
    match file {
        "cis.yaml" => upstream!("cis.yaml"),
        "workload-pod.yaml" => upstream!("workload-pod.yaml"),
        "expected-scan-job.yaml" => upstream!("expected-scan-job.yaml"),
        other => panic!("unknown fixture {other}"),
    }
    .to_string()
}

/// The envtest inputs: `cis.yaml` (with the test's UID), `workload-pod.yaml` on `worker-1`.
fn fixture_params() -> ScanJobParams {
    let cis: ContainerImageScan = serde_saphyr::from_str(&fixture("cis.yaml")).expect("cis");
    let pod: Pod = serde_saphyr::from_str(&fixture("workload-pod.yaml")).expect("pod");
    let cis_name = cis.metadata.name.clone().unwrap_or_default();
    let cis_namespace = cis.metadata.namespace.clone().unwrap_or_default();
    let node = pod.spec.and_then(|spec| spec.node_name).unwrap_or_default();
    ScanJobParams {
        namespace: "image-scanner".to_string(),
        job_name: upstream_scan_job_name(&cis_name, &cis_namespace, &cis.spec),
        image_name: cis.spec.name.clone(),
        image_digest: cis.spec.digest.clone(),
        cis_namespace,
        cis_uid: CIS_UID.to_string(),
        workload_kind: cis.spec.workload.kind.clone(),
        workload_name: cis.spec.workload.name.clone(),
        preferred_nodes: vec![node],
        required_platform: RequiredPlatform::default(),
        pull_credentials: None,
        job_config: None,
    }
}

fn fixture_settings() -> ScanJobSettings {
    ScanJobSettings {
        service_account_name: "image-scanner-job".to_string(),
        ttl_seconds_after_finished: 60,
        trivy_image: "aquasecurity/trivy".to_string(),
        trivy_command: TrivyCommand::Rootfs,
        ..ScanJobSettings::default()
    }
}

fn remove(value: &mut Value, pointer: &str, key: &str) {
    let map = value.pointer_mut(pointer).and_then(Value::as_object_mut);
    let removed = map.and_then(|map| map.remove(key));
    assert!(removed.is_some(), "{pointer}/{key} not in fixture");
}

fn set(value: &mut Value, pointer: &str, key: &str, new: Value) {
    match value.pointer_mut(pointer) {
        Some(Value::Object(map)) => {
            map.insert(key.to_string(), new);
        }
        _ => panic!("{pointer} is not an object"),
    }
}

/// The upstream envtest's expected Job, turned into what we must build:
///
/// 1. Placeholders are replaced: `<CIS-UID>` by the test UID, `<REPORT-TEMPLATE>` by ours.
/// 2. Fields the API server fills in on create (we never send them) are removed, as are the
///    controller-uid/job-name labels it adds to the pod template.
/// 3. Our deliberate differences are applied (each one asserted again below):
///    no severity/ignore-unfixed env (the fixture has none either: upstream case #20 is
///    replaced by the unfiltered scan), the digest label and the digest/image annotations on
///    Job and pod template, `drop: [ALL]` upper-case with `add: [DAC_OVERRIDE]`, the
///    `--skip-dirs` argument, a hardened init container, `seccompProfile: RuntimeDefault`,
///    `enableServiceLinks: false`.
fn expected_job(params: &ScanJobParams) -> Value {
    let job: Job =
        serde_saphyr::from_str(&fixture("expected-scan-job.yaml")).expect("expected job");
    let mut expected = serde_json::to_value(job).expect("json");

    // 1. Placeholders.
    for meta in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let labels = expected.pointer_mut(meta).and_then(Value::as_object_mut);
        let uid = labels.and_then(|labels| labels.get_mut(LABEL_CIS_UID));
        let uid = uid.expect("CIS uid label");
        assert_eq!(*uid, json!("<CIS-UID>"));
        *uid = json!(CIS_UID);
    }
    let template = expected.pointer_mut("/spec/template/spec/containers/0/env/5/value");
    let template = template.expect("template env");
    assert_eq!(*template, json!("<REPORT-TEMPLATE>"));
    *template = json!(TRIVY_TEMPLATE);

    // 2. API-server defaults.
    remove(&mut expected, "/metadata", "generation");
    for key in [
        "completionMode",
        "manualSelector",
        "suspend",
        "podReplacementPolicy",
    ] {
        remove(&mut expected, "/spec", key);
    }
    let template_labels = "/spec/template/metadata/labels";
    for key in [
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "job-name",
        "batch.kubernetes.io/job-name",
    ] {
        remove(&mut expected, template_labels, key);
    }
    let pod = "/spec/template/spec";
    for key in [
        "dnsPolicy",
        "schedulerName",
        "serviceAccount",
        "terminationGracePeriodSeconds",
    ] {
        remove(&mut expected, pod, key);
    }
    for container in [
        "/spec/template/spec/containers/0",
        "/spec/template/spec/initContainers/0",
    ] {
        remove(&mut expected, container, "terminationMessagePath");
    }

    // 3. Deliberate differences.
    let digest_hex = "204d4094343ed60ff60ed4b009785151c43d8f611761929aae3a1beb02fc0ad";
    let annotations = json!({
        ANNOTATION_DIGEST: params.image_digest,
        ANNOTATION_IMAGE: params.image_name,
    });
    for meta in ["/metadata", "/spec/template/metadata"] {
        set(
            &mut expected,
            &format!("{meta}/labels"),
            LABEL_DIGEST,
            json!(digest_hex),
        );
        set(&mut expected, meta, "annotations", annotations.clone());
    }
    set(
        &mut expected,
        "/spec/template/spec/containers/0/securityContext/capabilities",
        "drop",
        json!(["ALL"]),
    );
    set(
        &mut expected,
        "/spec/template/spec/containers/0/securityContext/capabilities",
        "add",
        json!(["DAC_OVERRIDE"]),
    );
    set(
        &mut expected,
        "/spec/template/spec/containers/0",
        "args",
        json!([
            "rootfs",
            "--skip-dirs",
            "/run/image-scanner,/tmp,$(TRIVY_SKIP_DIRS)",
            "/"
        ]),
    );
    set(
        &mut expected,
        pod,
        "securityContext",
        json!({"seccompProfile": {"type": "RuntimeDefault"}}),
    );
    set(&mut expected, pod, "enableServiceLinks", json!(false));
    set(
        &mut expected,
        "/spec/template/spec/initContainers/0",
        "securityContext",
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
        }),
    );
    expected
}

#[test]
fn fixture_job_name_is_the_upstream_one() {
    assert_eq!(fixture_params().job_name, "echo-6bdfc76c56-8ae43-46a3d");
}

#[test]
fn job_matches_the_upstream_expected_job_except_deliberate_differences() {
    let params = fixture_params();
    let built = serde_json::to_value(build_scan_job(&params, &fixture_settings())).expect("json");
    let expected = expected_job(&params);
    assert_eq!(
        built,
        expected,
        "built:\n{}\nexpected:\n{}",
        serde_json::to_string_pretty(&built).unwrap_or_default(),
        serde_json::to_string_pretty(&expected).unwrap_or_default()
    );
}

#[test]
fn deliberate_differences_hold() {
    let job = build_scan_job(&fixture_params(), &fixture_settings());
    let json = serde_json::to_value(&job).expect("json");
    let scan = &json["spec"]["template"]["spec"]["containers"][0];
    let env_names: Vec<&str> = scan["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| var["name"].as_str())
        .collect();
    assert_eq!(
        env_names,
        [
            "HOME",
            "TRIVY_SCANNERS",
            "TRIVY_CACHE_DIR",
            "TRIVY_QUIET",
            "TRIVY_FORMAT",
            "TRIVY_TEMPLATE"
        ]
    );
    assert_eq!(
        scan["securityContext"]["capabilities"],
        json!({"add": ["DAC_OVERRIDE"], "drop": ["ALL"]})
    );
    assert_eq!(scan["securityContext"]["runAsUser"], json!(0));
    let pod = &json["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    assert_eq!(pod["enableServiceLinks"], json!(false));
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    let init = &pod["initContainers"][0]["securityContext"];
    assert_eq!(init["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(init["allowPrivilegeEscalation"], json!(false));
    assert_eq!(init["readOnlyRootFilesystem"], json!(true));
    assert_eq!(init.get("runAsUser"), None);
    for meta in [&json["metadata"], &json["spec"]["template"]["metadata"]] {
        assert_eq!(
            meta["annotations"][ANNOTATION_DIGEST],
            json!(fixture_params().image_digest)
        );
        assert_eq!(
            meta["annotations"][ANNOTATION_IMAGE],
            json!("docker.io/nginxinc/nginx-unprivileged")
        );
        assert_eq!(
            meta["labels"][LABEL_DIGEST].as_str().map(str::len),
            Some(63)
        );
    }
    assert!(pod.get("tolerations").is_none() && pod.get("priorityClassName").is_none());
}

#[test]
fn optional_settings_reach_the_pod() {
    let toleration = Toleration {
        key: Some("dedicated".to_string()),
        operator: Some("Exists".to_string()),
        ..Toleration::default()
    };
    let settings = ScanJobSettings {
        tolerations: vec![toleration.clone()],
        priority_class_name: Some("low".to_string()),
        trivy_command: TrivyCommand::Filesystem,
        ..fixture_settings()
    };
    let job = build_scan_job(&fixture_params(), &settings);
    let pod = job
        .spec
        .and_then(|spec| spec.template.spec)
        .unwrap_or_default();
    assert_eq!(pod.tolerations, Some(vec![toleration]));
    assert_eq!(pod.priority_class_name.as_deref(), Some("low"));
    let args = pod.containers.first().and_then(|c| c.args.clone());
    assert_eq!(
        args,
        Some(strings(&[
            "filesystem",
            "--skip-dirs",
            "/run/image-scanner,/tmp,$(TRIVY_SKIP_DIRS)",
            "/"
        ]))
    );
}

/// With a Java DB image, a second init container copies the DB to where trivy's cache
/// directory has it, read-only and capability-free like the trivy one, and the scan never
/// downloads it; without one, the Job is the upstream-shaped single init container.
#[test]
fn a_java_db_image_is_copied_into_the_scan_pod_and_never_downloaded() {
    let skip_update = |scan: &Container| {
        scan.env
            .iter()
            .flatten()
            .find(|e| e.name == "TRIVY_SKIP_JAVA_DB_UPDATE")
            .and_then(|e| e.value.clone())
    };
    let init_of = |job: &Job| {
        job.spec
            .as_ref()
            .and_then(|spec| spec.template.spec.as_ref())
            .and_then(|pod| pod.init_containers.clone())
            .unwrap_or_default()
    };
    let plain = build_scan_job(&fixture_params(), &fixture_settings());
    assert_eq!(init_of(&plain).len(), 1);
    assert_eq!(skip_update(&scan_container_of(&plain)), None);

    let settings = ScanJobSettings {
        java_db_image: Some("registry.example/trivy-java-db:1@sha256:ab".to_string()),
        ..fixture_settings()
    };
    let job = build_scan_job(&fixture_params(), &settings);
    let init = init_of(&job);
    assert_eq!(init.len(), 2, "trivy first, then the Java DB");
    let java = &init[1];
    assert_eq!(java.name, JAVA_DB_INIT_CONTAINER);
    assert_eq!(
        java.image.as_deref(),
        Some("registry.example/trivy-java-db:1@sha256:ab")
    );
    assert_eq!(
        java.command,
        Some(strings(&["cp", "-R", "/java-db", "/tmp/java-db"]))
    );
    let mounts: Vec<(&str, &str)> = java
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts, [("tmp", "/tmp")], "the scan container's /tmp");
    assert_eq!(java.security_context, init[0].security_context);
    let scan = scan_container_of(&job);
    assert_eq!(skip_update(&scan).as_deref(), Some("true"));
    // trivy's cache directory is /tmp: the DB lands in <cache>/java-db.
    let cache_dir = scan
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TRIVY_CACHE_DIR")
        .and_then(|e| e.value.clone());
    assert_eq!(
        cache_dir.map(|dir| format!("{dir}/java-db")).as_deref(),
        Some(JAVA_DB_IN_SCAN)
    );
}

fn scan_container_of(job: &Job) -> Container {
    job.spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.containers.first().cloned())
        .expect("scan container")
}

/// With `drop: [ALL]` alone uid 0 cannot read a `0700` directory or a `0600` file of another
/// owner, and trivy skips them silently (false negatives). The scan container gets exactly
/// one capability back, the one that reads everything and is allowed by the Baseline Pod
/// Security Standard the scan namespace enforces; the rest of the lock-down stays.
#[test]
fn scan_container_reads_every_file_with_only_dac_override_added() {
    let job = build_scan_job(&fixture_params(), &fixture_settings());
    let context = scan_container_of(&job).security_context.expect("context");
    assert_eq!(
        context.capabilities,
        Some(Capabilities {
            add: Some(strings(&["DAC_OVERRIDE"])),
            drop: Some(strings(&["ALL"])),
        })
    );
    assert_eq!(context.run_as_user, Some(0));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.privileged, Some(false));
    // Baseline allows these additions and no others (Pod Security Standards, v1.25+).
    let baseline = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    assert!(baseline.contains(&SCAN_CAPABILITY));
    let init = job
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.init_containers)
        .and_then(|init| init.first().cloned())
        .and_then(|init| init.security_context)
        .and_then(|context| context.capabilities);
    assert_eq!(
        init.and_then(|caps| caps.add),
        None,
        "the init container only copies a file: no capability"
    );
}

/// The Job excludes what it mounted itself (trivy's binary, the `/tmp` volume) by an
/// argument, so no ConfigMap content can make trivy report its own vulnerabilities, and a
/// `SKIP_DIRS` of `trivy-job-config` is merged into that argument (a flag would otherwise
/// replace `TRIVY_SKIP_DIRS`); `SKIP_FILES` is left to the ConfigMap alone.
#[test]
fn scan_skips_what_the_job_injected_whatever_the_config_map_says() {
    for command in [TrivyCommand::Rootfs, TrivyCommand::Filesystem] {
        let settings = ScanJobSettings {
            trivy_command: command,
            ..fixture_settings()
        };
        let scan = scan_container_of(&build_scan_job(&fixture_params(), &settings));
        let args = scan.args.clone().unwrap_or_default();
        assert_eq!(args.first().map(String::as_str), Some(command.as_str()));
        assert_eq!(args.last().map(String::as_str), Some("/"), "scans the root");
        let at = args
            .iter()
            .position(|a| a == "--skip-dirs")
            .expect("skip-dirs");
        let dirs: Vec<&str> = args[at + 1].split(',').collect();
        assert_eq!(dirs, ["/run/image-scanner", "/tmp", "$(TRIVY_SKIP_DIRS)"]);
        // The binary and the scratch volume are under the skipped directories.
        let command = scan.command.clone().unwrap_or_default();
        assert!(command[0].starts_with("/run/image-scanner/"));
        let mounts: Vec<String> = scan
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        assert!(mounts.iter().all(|m| dirs.contains(&m.as_str())));
        assert!(
            !args.iter().any(|a| a.starts_with("--skip-files")),
            "SKIP_FILES stays the ConfigMap's"
        );
        // `$(VAR)` expands only for a variable the container defines: the ConfigMap's
        // SKIP_DIRS key arrives as TRIVY_SKIP_DIRS through the envFrom prefix, and no
        // explicit env entry shadows it.
        let from = scan.env_from.clone().unwrap_or_default();
        assert_eq!(from[0].prefix.as_deref(), Some("TRIVY_"));
        assert!(
            !scan
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "TRIVY_SKIP_DIRS" || e.name == "TRIVY_SKIP_FILES")
        );
    }
}

/// Outside the scan namespace the ConfigMap is out of `envFrom`'s reach: its keys arrive as
/// the same variables, literally, and the Job's own variables still win.
#[test]
fn a_job_outside_the_scan_namespace_carries_the_job_config_as_env() {
    let config = BTreeMap::from(
        [
            ("SERVER", "http://trivy.image-scanner.svc:4954"),
            ("SKIP_DIRS", "/opt/$(HOME)"),
            ("QUIET", "false"),
            ("not a name", "x"),
            ("1ST", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let params = ScanJobParams {
        namespace: "team".to_string(),
        pull_credentials: Some(Arc::new(PullCredentials {
            secrets: strings(&["registry"]),
            service_account: "app".to_string(),
        })),
        job_config: Some(Arc::new(config)),
        ..fixture_params()
    };
    let job = build_scan_job(&params, &fixture_settings());
    let spec = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("app"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let names: Vec<_> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| &s.name)
        .collect();
    assert_eq!(names, ["registry"]);
    let scan = spec.containers.into_iter().next().expect("scan container");
    assert_eq!(scan.env_from, None);
    let env: Vec<(String, String)> = scan
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    let value = |name: &str| -> Vec<&str> {
        env.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        value("TRIVY_SERVER"),
        ["http://trivy.image-scanner.svc:4954"]
    );
    assert_eq!(value("TRIVY_SKIP_DIRS"), ["/opt/$$(HOME)"], "kept literal");
    assert_eq!(value("TRIVY_QUIET"), ["true"], "the Job's own value, once");
    assert!(value("TRIVY_not a name").is_empty() && value("TRIVY_1ST").len() == 1);
    assert!(!is_env_var_name("1ST") && !is_env_var_name("") && is_env_var_name("a.b-c_D"));
}

#[test]
fn every_label_value_is_valid_for_adversarial_inputs() {
    let long = format!("{}-.", "w".repeat(62));
    for workload_name in [
        long.as_str(),
        "name-",
        "name.",
        "-.x_",
        "ünïcode",
        "",
        &"z".repeat(300),
    ] {
        let params = ScanJobParams {
            workload_name: workload_name.to_string(),
            workload_kind: "Weird Kind!".to_string(),
            cis_namespace: "ns-".to_string(),
            cis_uid: "uid with spaces".to_string(),
            image_digest: "sha512:".to_string() + &"f".repeat(128),
            ..fixture_params()
        };
        let job = build_scan_job(&params, &fixture_settings());
        let template_labels = job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone());
        assert_eq!(
            template_labels, job.metadata.labels,
            "Job and pods carry the same labels"
        );
        let labels = job.metadata.labels.unwrap_or_default();
        assert_eq!(labels.len(), 8);
        for (key, value) in labels {
            assert!(
                is_label_value(&value),
                "{key}={value:?} for {workload_name:?}"
            );
        }
    }
}

#[test]
fn preferred_nodes_are_deduplicated_sorted_and_capped() {
    assert_eq!(
        preferred_nodes(["b", "a", "", "b", "a"]),
        strings(&["a", "b"])
    );
    let many: Vec<String> = (0..15).rev().map(|i| format!("node-{i:02}")).collect();
    let nodes = preferred_nodes(many.iter().map(String::as_str));
    assert_eq!(nodes.len(), MAX_PREFERRED_NODES);
    assert_eq!(nodes.first().map(String::as_str), Some("node-00"));
    assert_eq!(nodes.last().map(String::as_str), Some("node-09"));

    let params = ScanJobParams {
        preferred_nodes: many,
        ..fixture_params()
    };
    let job = build_scan_job(&params, &fixture_settings());
    let terms = job
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.affinity)
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    assert_eq!(terms.len(), MAX_PREFERRED_NODES);
    assert!(terms.iter().all(|t| t.weight == 100));
    let first = terms
        .first()
        .and_then(|t| t.preference.match_fields.clone());
    assert_eq!(
        first,
        Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_string(),
            operator: "In".to_string(),
            values: Some(strings(&["node-00"])),
        }])
    );
}

#[test]
fn no_affinity_without_nodes() {
    let params = ScanJobParams {
        preferred_nodes: strings(&["", ""]),
        ..fixture_params()
    };
    let job = build_scan_job(&params, &fixture_settings());
    let affinity = job
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.affinity);
    assert_eq!(affinity, None);
}

#[test]
fn the_platform_of_the_nodes_that_run_the_image_is_required() {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let affinity = |nodes: &[&str], os: &[&str], arch: &[&str]| {
        let params = ScanJobParams {
            preferred_nodes: strings(nodes),
            required_platform: RequiredPlatform {
                os: set(os),
                arch: set(arch),
            },
            ..fixture_params()
        };
        build_scan_job(&params, &fixture_settings())
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.affinity)
            .and_then(|a| a.node_affinity)
    };
    let expression = |key: &str, values: &[&str]| NodeSelectorRequirement {
        key: key.to_string(),
        operator: "In".to_string(),
        values: Some(strings(values)),
    };
    let both = affinity(&["n1"], &["linux"], &["arm64", "amd64"]).expect("affinity");
    let required = both
        .required_during_scheduling_ignored_during_execution
        .expect("required");
    assert_eq!(
        required.node_selector_terms,
        [NodeSelectorTerm {
            match_expressions: Some(vec![
                expression("kubernetes.io/os", &["linux"]),
                expression("kubernetes.io/arch", &["amd64", "arm64"]),
            ]),
            ..NodeSelectorTerm::default()
        }]
    );
    assert_eq!(
        both.preferred_during_scheduling_ignored_during_execution
            .map(|t| t.len()),
        Some(1)
    );
    // Without preferred nodes (pods gone) the platform still holds; unknown: no requirement.
    let only_arch = affinity(&[], &[], &["arm64"]).expect("affinity");
    assert_eq!(
        only_arch
            .required_during_scheduling_ignored_during_execution
            .map(|r| r.node_selector_terms[0].match_expressions.clone()),
        Some(Some(vec![expression("kubernetes.io/arch", &["arm64"])]))
    );
    assert_eq!(
        only_arch.preferred_during_scheduling_ignored_during_execution,
        None
    );
    let unknown = affinity(&["n1"], &[], &[]).expect("affinity");
    assert_eq!(
        unknown.required_during_scheduling_ignored_during_execution,
        None
    );
}

#[test]
fn trivy_command_parses_only_known_values() {
    assert_eq!("rootfs".parse(), Ok(TrivyCommand::Rootfs));
    assert_eq!("filesystem".parse(), Ok(TrivyCommand::Filesystem));
    for command in [TrivyCommand::Rootfs, TrivyCommand::Filesystem] {
        assert_eq!(command.to_string().parse(), Ok(command));
    }
    let err = "image".parse::<TrivyCommand>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unrecognized trivy command \"image\" (expected rootfs or filesystem)"
    );
}

#[test]
fn template_uses_only_the_documented_keys() {
    for key in [
        "vulnerabilityID",
        "pkgName",
        "installedVersion",
        "severity",
        "pkgPath",
        "fixedVersion",
        "title",
        "primaryURL",
    ] {
        assert!(TRIVY_TEMPLATE.contains(&format!("\"{key}\"")), "{key}");
    }
    assert!(!TRIVY_TEMPLATE.contains("toPrettyJson"));
    // Language findings without a PkgPath are located by their result's Target.
    assert!(TRIVY_TEMPLATE.contains(r#"set $entry "pkgPath" $result.Target"#));
    assert!(TRIVY_TEMPLATE.contains(r#""lang-pkgs""#));
}

/// With `image-volume` the trivy image is the volume the binary comes from: no init container
/// copies it, the scan container mounts the binary's directory read-only at the path the
/// command and the skip list name, and the rest of the pod is the same as with `copy`.
#[test]
fn an_image_volume_replaces_the_copy_of_the_trivy_binary() {
    let settings = ScanJobSettings {
        trivy_image: "registry.example/trivy:0.74.0@sha256:cd".to_string(),
        trivy_binary: TrivyBinary::ImageVolume,
        ..fixture_settings()
    };
    let job = build_scan_job(&fixture_params(), &settings);
    let pod = job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.clone())
        .expect("pod spec");
    assert_eq!(pod.init_containers, None, "nothing to copy");
    let volumes = pod.volumes.clone().unwrap_or_default();
    let trivy = volumes
        .iter()
        .find(|v| v.name == SHARED_VOLUME)
        .expect("trivy volume");
    assert_eq!(trivy.empty_dir, None);
    let image = trivy.image.clone().expect("an image volume");
    assert_eq!(
        image.reference.as_deref(),
        Some("registry.example/trivy:0.74.0@sha256:cd")
    );
    assert_eq!(image.pull_policy.as_deref(), Some("IfNotPresent"));

    let scan = scan_container_of(&job);
    assert_eq!(scan.command, Some(strings(&[TRIVY_BINARY])));
    assert_eq!(
        Path::new(TRIVY_BINARY).parent(),
        Some(Path::new(SHARED_MOUNT)),
        "the binary's directory is the mount"
    );
    assert!(TRIVY_IN_IMAGE.ends_with(&format!("{TRIVY_DIR_IN_IMAGE}/trivy")));
    let mounts = scan.volume_mounts.clone().unwrap_or_default();
    let binary = mounts
        .iter()
        .find(|m| m.name == SHARED_VOLUME)
        .expect("trivy mount");
    assert_eq!(binary.mount_path, SHARED_MOUNT);
    assert_eq!(binary.sub_path.as_deref(), Some(TRIVY_DIR_IN_IMAGE));
    assert_eq!(binary.read_only, Some(true));
    assert!(
        SKIP_DIRS.contains(&SHARED_MOUNT),
        "trivy never scans itself"
    );

    // Everything else is as with the copy.
    let without_trivy = |job: &Job| {
        let mut pod = job
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.clone())
            .expect("pod spec");
        pod.init_containers = None;
        pod.volumes = None;
        for c in &mut pod.containers {
            c.volume_mounts = None;
        }
        pod
    };
    let copy_settings = ScanJobSettings {
        trivy_image: settings.trivy_image.clone(),
        ..fixture_settings()
    };
    let copy = build_scan_job(&fixture_params(), &copy_settings);
    assert_eq!(without_trivy(&job), without_trivy(&copy));
    let tmp = |job: &Job| {
        scan_container_of(job)
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name == TMP_VOLUME)
    };
    assert_eq!(tmp(&job), tmp(&copy));

    // A Java DB image is still copied by its init container.
    let with_java = ScanJobSettings {
        java_db_image: Some("registry.example/trivy-java-db:1@sha256:ab".to_string()),
        ..settings
    };
    let init: Vec<String> = build_scan_job(&fixture_params(), &with_java)
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.init_containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(init, [JAVA_DB_INIT_CONTAINER]);
}
