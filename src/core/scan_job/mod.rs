//! The scan Job (spec §8) as a pure function of its inputs.
//!
//! The Job runs the scanned image itself, pinned by digest with pull policy `IfNotPresent` and
//! preferably on a node that already has it, so no pull secret is needed. An init container
//! copies the `trivy` binary into a shared `emptyDir`, or the trivy image is mounted as an image
//! volume ([`TrivyBinary`]); the scan container runs
//! `trivy rootfs /` against the in-cluster trivy server (configured by the `trivy-job-config`
//! ConfigMap) and prints the flat JSON array of [`TRIVY_TEMPLATE`] to its log.
//!
//! Deliberate differences from the Go operator:
//! * The scan is unfiltered: no `TRIVY_SEVERITY`, no `TRIVY_IGNORE_UNFIXED`. One Job serves every
//!   CIS of a digest, and the core applies each CIS's `minSeverity`/`ignoreUnfixed` when it
//!   reads the result. This replaces upstream acceptance case #20 (severity env in the Job).
//! * Extra label and annotations identify the digest and image the Job scans.
//! * Label values are always valid ([`label_value`]).
//! * Hardening: `drop: [ALL]` (upper-case, as Pod Security Standards compare it), pod-level
//!   `seccompProfile: RuntimeDefault`, a locked-down init container, `enableServiceLinks: false`.
//!   The scan container must read every file of the image, whose ownership and modes we do not
//!   control, so it runs as `runAsUser: 0` with one capability back, `DAC_OVERRIDE` (see
//!   [`SCAN_CAPABILITY`]): uid 0 alone reads nothing a mode such as `0700`/`0600` keeps from
//!   root once the capabilities are dropped, and trivy skips what it cannot read without a
//!   word. These two are the exceptions to the restricted profile; both are Baseline.
//! * The scan skips what the Job itself put into the container, whatever `trivy-job-config`
//!   says: `--skip-dirs` names the trivy binary's directory and `/tmp` (see [`SKIP_DIRS`]).
//! * Preferred nodes are de-duplicated, sorted and capped.
//! * With a Java DB image configured, a second init container copies trivy's Java DB into the
//!   pod and the scan never downloads it (see [`ScanJobSettings::java_db_image`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, ImageVolumeSource, LocalObjectReference, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodSecurityContext, PodSpec, PodTemplateSpec,
    PreferredSchedulingTerm, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

mod settings;

pub use settings::{
    ScanJobSettings, TrivyBinary, TrivyCommand, UnknownTrivyBinary, UnknownTrivyCommand,
    default_init_resources, default_scan_resources,
};

use super::naming::label_value;
use super::port::PullCredentials;

/// Label `app.kubernetes.io/name`, value [`APP_NAME_TRIVY`].
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
/// Value of [`LABEL_APP_NAME`] on scan Jobs.
pub const APP_NAME_TRIVY: &str = "trivy";
/// Label `app.kubernetes.io/managed-by` marking operator-owned objects.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "image-scanner";
/// Namespace of the CIS that requested the scan.
pub const LABEL_CIS_NAMESPACE: &str = "controller.statnett.no/namespace";
/// UID of the CIS that requested the scan.
pub const LABEL_CIS_UID: &str = "controller.statnett.no/uid";
/// Kind of the requesting CIS's workload.
pub const LABEL_WORKLOAD_KIND: &str = "workload.statnett.no/kind";
/// Name of the requesting CIS's workload (as a valid label value).
pub const LABEL_WORKLOAD_NAME: &str = "workload.statnett.no/name";
/// Namespace of the requesting CIS's workload.
pub const LABEL_WORKLOAD_NAMESPACE: &str = "workload.statnett.no/namespace";
/// Label with the digest hex (cut to 63 characters), to select the Job of a digest.
pub const LABEL_DIGEST: &str = "image-scanner.statnett.no/digest";
/// Annotation with the full digest `algorithm:hex` the Job scans.
pub const ANNOTATION_DIGEST: &str = "image-scanner.statnett.no/digest";
/// Annotation with the repository name of the scanned image.
pub const ANNOTATION_IMAGE: &str = "image-scanner.statnett.no/image";

/// Name of the container that runs trivy inside the scanned image; its log is the result.
pub const SCAN_CONTAINER: &str = "scan-image";
/// Name of the init container that provides the trivy binary.
pub const TRIVY_INIT_CONTAINER: &str = "trivy";
/// Name of the init container that provides the Java DB, when a Java DB image is configured.
pub const JAVA_DB_INIT_CONTAINER: &str = "java-db";
/// ConfigMap in the scan namespace whose keys become `TRIVY_*` environment variables.
pub const TRIVY_JOB_CONFIG_MAP: &str = "trivy-job-config";
/// At most this many preferred nodes; more terms only slow the scheduler down.
pub const MAX_PREFERRED_NODES: usize = 10;

/// `/run`, not `/var/run`: many images link `/var/run` to `/run`, which broke trivy's skip list
/// and made trivy scan its own binary.
const SHARED_VOLUME: &str = "image-scanner";
const SHARED_MOUNT: &str = "/run/image-scanner";
const TRIVY_BINARY: &str = "/run/image-scanner/trivy";
const TRIVY_IN_IMAGE: &str = "/usr/local/bin/trivy";
/// The directory of [`TRIVY_IN_IMAGE`], relative to the image's root: the part of the trivy image
/// an image volume shows at [`SHARED_MOUNT`], so the binary has the same path both ways and
/// the skip list covers it.
const TRIVY_DIR_IN_IMAGE: &str = "usr/local/bin";
const TMP_VOLUME: &str = "tmp";
const TMP_MOUNT: &str = "/tmp";
/// Where a Java DB image keeps the DB: `trivy-java.db` and `metadata.json`.
const JAVA_DB_IN_IMAGE: &str = "/java-db";
/// Where trivy looks for the Java DB: `java-db` under its cache directory, [`TMP_MOUNT`].
const JAVA_DB_IN_SCAN: &str = "/tmp/java-db";
const PREFERRED_NODE_WEIGHT: i32 = 100;

/// The one capability the scan container gets back after `drop: [ALL]`.
///
/// Without it uid 0 is an ordinary user to the kernel's permission checks: a directory of
/// another owner with mode `0700`, or a file with `0600`, cannot be read, and trivy skips it
/// silently (exit code 0, nothing on stderr even without `--quiet`), so the packages in it are
/// missing from the result. Measured with trivy 0.74.0 in an emulated scan container: a
/// `node_modules` under a `0700` home directory and a Go binary with mode `0700`, both of uid
/// 1000, were reported only once a DAC capability was kept; uid 0 holding nothing but
/// `CAP_DAC_OVERRIDE` lists and reads both (the kernel's `generic_permission` lets it override
/// read and search checks on directories and read checks on files, like `CAP_DAC_READ_SEARCH`).
///
/// `CAP_DAC_READ_SEARCH` (read and search only) would be the narrower grant, but:
/// * it is not in the Baseline Pod Security Standard's allowed list, and the installed scan
///   namespace `image-scanner` enforces Baseline (`kustomize/base/namespace.yaml`): every scan
///   pod would be rejected unless the whole namespace, operator and trivy server included, were
///   lowered to `privileged`;
/// * it is the capability that allows `open_by_handle_at(2)` (the container runtimes' default
///   seccomp profile opens that system call to exactly this capability): a process holding it
///   can open files by handle on any filesystem it has a mount of, such as the node filesystem
///   behind an `emptyDir`, which is the classic container breakout.
///
/// `CAP_DAC_OVERRIDE` is Baseline-allowed and in the runtimes' default capability set. It reads
/// and searches everything just the same; what it adds, writing regardless of permission bits,
/// finds nothing to write to here: the root filesystem is read-only and the two `emptyDir`
/// volumes are the pod's own (`/proc/sys` and `/sys` are read-only mounts in an unprivileged
/// container). `allowPrivilegeEscalation: false` and `privileged: false` stay.
pub const SCAN_CAPABILITY: &str = "DAC_OVERRIDE";

/// Directories the scan never reports: what the Job itself mounted into the scanned image.
///
/// * [`SHARED_MOUNT`] holds the trivy binary, copied in by the init container or mounted from
///   the trivy image ([`TrivyBinary`]). Scanned, it adds
///   trivy's own Go standard library and module findings to every image's result, and the
///   template's entries carry no file path to tell them apart (measured: 7 entries instead of
///   6 for one Go advisory).
/// * [`TMP_MOUNT`] is the pod's `emptyDir` (the image's own `/tmp` is hidden behind it), where
///   trivy writes its temporary files and, for images with JARs, downloads the Java DB.
///
/// The upstream operator excluded the binary only through `SKIP_FILES` in the `trivy-job-config`
/// ConfigMap, so an overlay that replaced that key, or the ConfigMap, silently put trivy's own
/// vulnerabilities into every report. Here the exclusion is an argument of the Job, and the
/// ConfigMap keeps its meaning:
/// * `SKIP_FILES` (`TRIVY_SKIP_FILES`) is untouched: the Job passes no `--skip-files`.
/// * `SKIP_DIRS` (`TRIVY_SKIP_DIRS`) is merged: in trivy a flag replaces the environment
///   variable of the same option (viper: flag > env > config file, no merging of lists), so the
///   argument is `<these>,$(TRIVY_SKIP_DIRS)`, which the kubelet expands from the container's
///   environment, `envFrom` included, before starting trivy. trivy splits the flag's value at
///   commas, so comma-separated `SKIP_DIRS` lists work as before (a list separated by spaces
///   only would now be one pattern). Without the key the kubelet leaves `$(TRIVY_SKIP_DIRS)` as
///   it is; trivy resolves that relative pattern against the working directory `/tmp`, which is
///   skipped anyway, so it matches nothing.
///
/// Putting the binary where trivy never looks (its walker always skips `/proc`, `/sys`, `/dev`
/// and `.git` directories) was the alternative; an executable under `/dev` is what runtime
/// security tools flag as malware, and it would depend on an undocumented trivy default.
pub const SKIP_DIRS: [&str; 2] = [SHARED_MOUNT, TMP_MOUNT];

/// The environment variable a `SKIP_DIRS` key of `trivy-job-config` becomes.
const USER_SKIP_DIRS: &str = "TRIVY_SKIP_DIRS";

/// Trivy output template (Go `text/template` with sprig, applied to trivy's `Results`).
///
/// Prints the flat JSON array the result reader expects (spec §9): one object per vulnerability
/// of every result, with `vulnerabilityID`, `pkgName`, `installedVersion` and `severity` always
/// and `pkgPath`, `fixedVersion`, `title`, `primaryURL` only when non-empty; `[]` when nothing
/// was found. Compact `toJson` rather than pretty-printing: the pod log of a large image holds
/// several megabytes, and the reader does not care about layout.
///
/// `pkgPath` says which file a language package was found in: trivy's `PkgPath` where it has
/// one (installed `package.json`, JARs), else the result's `Target` for language results
/// (`lang-pkgs`: a Go or Rust binary, a lock file), whose vulnerabilities carry no path. So the
/// same module in two binaries is two findings that say where each is, not two identical
/// entries (the upstream template's). OS packages keep none: one package database.
pub const TRIVY_TEMPLATE: &str = r#"{{- $found := list -}}
{{- range $result := . -}}
  {{- range $vuln := $result.Vulnerabilities -}}
    {{- $entry := dict "vulnerabilityID" $vuln.VulnerabilityID "pkgName" $vuln.PkgName "installedVersion" $vuln.InstalledVersion "severity" $vuln.Severity -}}
    {{- if $vuln.PkgPath }}{{ $_ := set $entry "pkgPath" $vuln.PkgPath }}{{ else if and $result.Target (eq (toString $result.Class) "lang-pkgs") }}{{ $_ := set $entry "pkgPath" $result.Target }}{{ end -}}
    {{- with $vuln.FixedVersion }}{{ $_ := set $entry "fixedVersion" . }}{{ end -}}
    {{- with $vuln.Title }}{{ $_ := set $entry "title" . }}{{ end -}}
    {{- with $vuln.PrimaryURL }}{{ $_ := set $entry "primaryURL" . }}{{ end -}}
    {{- $found = append $found $entry -}}
  {{- end -}}
{{- end -}}
{{- toJson $found -}}"#;

/// What one scan Job scans and on whose behalf.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanJobParams {
    /// Namespace the Job runs in: the scan namespace, or a workload namespace.
    pub namespace: String,
    /// Name of the Job, e.g. from [`super::naming::scan_job_name`].
    pub job_name: String,
    /// Repository name of the image, e.g. `docker.io/library/nginx`.
    pub image_name: String,
    /// Digest of the image, `algorithm:hex`.
    pub image_digest: String,
    /// Namespace of the CIS that requested the scan (also its workload's namespace).
    pub cis_namespace: String,
    /// UID of the CIS that requested the scan.
    pub cis_uid: String,
    /// Kind of the requesting CIS's workload.
    pub workload_kind: String,
    /// Name of the requesting CIS's workload.
    pub workload_name: String,
    /// Nodes that run the image (normalised by [`preferred_nodes`]).
    pub preferred_nodes: Vec<String>,
    /// Operating systems and architectures of the nodes that run the image: the scan pod must
    /// run on one of them, preferred node or not.
    pub required_platform: RequiredPlatform,
    /// For a Job in a workload namespace: the imagePullSecrets names and service account of a
    /// pod there that runs the image (`engine::placement`); `None`: the scan service account.
    pub pull_credentials: Option<Arc<PullCredentials>>,
    /// For a Job outside the scan namespace: the data of the scan namespace's
    /// [`TRIVY_JOB_CONFIG_MAP`], copied into the scan container's `env` (an `envFrom` reaches
    /// ConfigMaps of the pod's own namespace only). `None`: `envFrom` that ConfigMap.
    pub job_config: Option<Arc<BTreeMap<String, String>>>,
}

/// Values of `kubernetes.io/os` and `kubernetes.io/arch` a scan pod's node must have; an empty
/// set requires nothing (unknown). In a mixed amd64/arm64 cluster an image that runs only on
/// arm64 nodes cannot start on amd64, and a multi-arch image's other variant is other content:
/// the scan must see what the workload runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequiredPlatform {
    /// Allowed `kubernetes.io/os` values.
    pub os: BTreeSet<String>,
    /// Allowed `kubernetes.io/arch` values.
    pub arch: BTreeSet<String>,
}

/// Node label holding the operating system.
pub const LABEL_OS: &str = "kubernetes.io/os";
/// Node label holding the CPU architecture.
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

/// Node names to prefer: non-empty, de-duplicated, sorted (a stable Job for the same pods), at
/// most [`MAX_PREFERRED_NODES`].
pub fn preferred_nodes<'a>(nodes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    nodes
        .into_iter()
        .filter(|node| !node.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_PREFERRED_NODES)
        .map(str::to_string)
        .collect()
}

/// Labels of the Job and of its pods: the seven upstream labels plus the digest label.
pub fn scan_job_labels(params: &ScanJobParams) -> BTreeMap<String, String> {
    let digest_hex = params
        .image_digest
        .rsplit(':')
        .next()
        .unwrap_or(&params.image_digest);
    [
        (LABEL_APP_NAME, APP_NAME_TRIVY.to_string()),
        (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
        (LABEL_CIS_NAMESPACE, label_value(&params.cis_namespace)),
        (LABEL_CIS_UID, label_value(&params.cis_uid)),
        (LABEL_WORKLOAD_KIND, label_value(&params.workload_kind)),
        (LABEL_WORKLOAD_NAME, label_value(&params.workload_name)),
        (LABEL_WORKLOAD_NAMESPACE, label_value(&params.cis_namespace)),
        (LABEL_DIGEST, label_value(digest_hex)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Builds the scan Job. Pure: the same inputs always give the same Job.
pub fn build_scan_job(params: &ScanJobParams, settings: &ScanJobSettings) -> Job {
    let labels = scan_job_labels(params);
    let annotations = BTreeMap::from([
        (ANNOTATION_DIGEST.to_string(), params.image_digest.clone()),
        (ANNOTATION_IMAGE.to_string(), params.image_name.clone()),
    ]);
    let credentials = params.pull_credentials.as_deref();
    let pod_spec = PodSpec {
        service_account_name: Some(credentials.map_or_else(
            || settings.service_account_name.clone(),
            |c| c.service_account.clone(),
        )),
        image_pull_secrets: credentials.map(|c| {
            c.secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("OnFailure".to_string()),
        affinity: node_affinity(
            &preferred_nodes(params.preferred_nodes.iter().map(String::as_str)),
            &params.required_platform,
        ),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
        priority_class_name: settings.priority_class_name.clone(),
        init_containers: Some(
            (settings.trivy_binary == TrivyBinary::Copy)
                .then(|| trivy_init_container(settings))
                .into_iter()
                .chain(
                    settings
                        .java_db_image
                        .as_deref()
                        .map(|image| java_db_init_container(image, settings)),
                )
                .collect(),
        )
        .filter(|init: &Vec<Container>| !init.is_empty()),
        containers: vec![scan_container(params, settings)],
        volumes: Some(vec![trivy_volume(settings), empty_dir(TMP_VOLUME)]),
        ..PodSpec::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(params.job_name.clone()),
            namespace: Some(params.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            parallelism: Some(1),
            completions: Some(1),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            backoff_limit: Some(settings.backoff_limit),
            ttl_seconds_after_finished: Some(settings.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// One preferred (not required) term per node: a node without the image can still run the scan
/// if it can pull the image itself; but only a node of the image's platform.
fn node_affinity(nodes: &[String], platform: &RequiredPlatform) -> Option<Affinity> {
    let requirements: Vec<NodeSelectorRequirement> =
        [(LABEL_OS, &platform.os), (LABEL_ARCH, &platform.arch)]
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(key, values)| NodeSelectorRequirement {
                key: key.to_string(),
                operator: "In".to_string(),
                values: Some(values.iter().cloned().collect()),
            })
            .collect();
    if nodes.is_empty() && requirements.is_empty() {
        return None;
    }
    let required = (!requirements.is_empty()).then(|| NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: Some(requirements),
            ..NodeSelectorTerm::default()
        }],
    });
    let terms: Vec<PreferredSchedulingTerm> = nodes
        .iter()
        .map(|node| PreferredSchedulingTerm {
            weight: PREFERRED_NODE_WEIGHT,
            preference: NodeSelectorTerm {
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".to_string(),
                    operator: "In".to_string(),
                    values: Some(vec![node.clone()]),
                }]),
                ..NodeSelectorTerm::default()
            },
        })
        .collect();
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: (!terms.is_empty())
                .then_some(terms),
            required_during_scheduling_ignored_during_execution: required,
        }),
        ..Affinity::default()
    })
}

/// Where the trivy binary comes from: an `emptyDir` the init container fills, or the trivy
/// image itself.
fn trivy_volume(settings: &ScanJobSettings) -> Volume {
    match settings.trivy_binary {
        TrivyBinary::Copy => empty_dir(SHARED_VOLUME),
        TrivyBinary::ImageVolume => Volume {
            name: SHARED_VOLUME.to_string(),
            image: Some(ImageVolumeSource {
                reference: Some(settings.trivy_image.clone()),
                pull_policy: Some("IfNotPresent".to_string()),
            }),
            ..Volume::default()
        },
    }
}

/// The scan container's mount of [`trivy_volume`]: of an image volume only the binary's
/// directory, read-only (image volumes are read-only whatever the mount says).
fn trivy_mount(settings: &ScanJobSettings) -> VolumeMount {
    match settings.trivy_binary {
        TrivyBinary::Copy => mount(SHARED_VOLUME, SHARED_MOUNT),
        TrivyBinary::ImageVolume => VolumeMount {
            read_only: Some(true),
            sub_path: Some(TRIVY_DIR_IN_IMAGE.to_string()),
            ..mount(SHARED_VOLUME, SHARED_MOUNT)
        },
    }
}

fn trivy_init_container(settings: &ScanJobSettings) -> Container {
    copy_init_container(
        TRIVY_INIT_CONTAINER,
        &settings.trivy_image,
        &["cp", "-v", TRIVY_IN_IMAGE, TRIVY_BINARY],
        mount(SHARED_VOLUME, SHARED_MOUNT),
        settings,
    )
}

/// Copies the Java DB into the scan pod's `/tmp`, where the scan container's trivy finds it.
fn java_db_init_container(image: &str, settings: &ScanJobSettings) -> Container {
    copy_init_container(
        JAVA_DB_INIT_CONTAINER,
        image,
        &["cp", "-R", JAVA_DB_IN_IMAGE, JAVA_DB_IN_SCAN],
        mount(TMP_VOLUME, TMP_MOUNT),
        settings,
    )
}

/// An init container that only copies files from its image into one of the pod's volumes.
fn copy_init_container(
    name: &str,
    image: &str,
    command: &[&str],
    volume: VolumeMount,
    settings: &ScanJobSettings,
) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(strings(command)),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        resources: Some(settings.init_resources.clone()),
        // The user of an arbitrary image is unknown, so runAsUser/runAsNonRoot stay unset.
        security_context: Some(locked_down(None)),
        volume_mounts: Some(vec![volume]),
        ..Container::default()
    }
}

fn scan_container(params: &ScanJobParams, settings: &ScanJobSettings) -> Container {
    Container {
        name: SCAN_CONTAINER.to_string(),
        image: Some(format!("{}@{}", params.image_name, params.image_digest)),
        // Explicit although it is the default for digest references: the image is on the node
        // (the Job prefers the workload's nodes), and the kubelet decides whether this pod may
        // use it without a pull (KEP-2535; `engine::placement` chooses the credentials).
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(strings(&[TRIVY_BINARY])),
        args: Some(scan_args(settings.trivy_command)),
        working_dir: Some(TMP_MOUNT.to_string()),
        env: Some(
            [
                env("HOME", TMP_MOUNT),
                env("TRIVY_SCANNERS", "vuln"),
                env("TRIVY_CACHE_DIR", TMP_MOUNT),
                // The log is the result: nothing but the template output may reach it.
                env("TRIVY_QUIET", "true"),
                env("TRIVY_FORMAT", "template"),
                env("TRIVY_TEMPLATE", TRIVY_TEMPLATE),
            ]
            .into_iter()
            // The init container put the DB in place: never download it (an `env` entry
            // wins over the same key from `envFrom`).
            .chain(
                settings
                    .java_db_image
                    .is_some()
                    .then(|| env("TRIVY_SKIP_JAVA_DB_UPDATE", "true")),
            )
            .collect::<Vec<_>>(),
        )
        .map(|own| match params.job_config.as_deref() {
            Some(config) => [config_env(config, &own), own].concat(),
            None => own,
        }),
        env_from: params.job_config.is_none().then(|| {
            vec![EnvFromSource {
                prefix: Some(CONFIG_ENV_PREFIX.to_string()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: TRIVY_JOB_CONFIG_MAP.to_string(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources: Some(settings.scan_resources.clone()),
        // Root plus SCAN_CAPABILITY, to read every file of the image whatever its owner and
        // mode (the exceptions to the restricted Pod Security Standard, both within Baseline);
        // everything else is locked down.
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(strings(&[SCAN_CAPABILITY])),
                drop: Some(strings(&["ALL"])),
            }),
            ..locked_down(Some(0))
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        volume_mounts: Some(vec![trivy_mount(settings), mount(TMP_VOLUME, TMP_MOUNT)]),
        ..Container::default()
    }
}

/// `<command> --skip-dirs <SKIP_DIRS>,$(TRIVY_SKIP_DIRS) /` (see [`SKIP_DIRS`]).
/// The prefix of the environment variables the keys of [`TRIVY_JOB_CONFIG_MAP`] become.
const CONFIG_ENV_PREFIX: &str = "TRIVY_";

/// `trivy-job-config`'s data as `env` entries, the same variables its `envFrom` gives in the
/// scan namespace: `TRIVY_<key>`, the Job's own variables winning (`env` wins over `envFrom`),
/// keys that make no valid variable name left out (the kubelet skips them in an `envFrom`),
/// and every `$` doubled: an `env` value expands `$(VAR)` references, an `envFrom` value not.
fn config_env(config: &BTreeMap<String, String>, own: &[EnvVar]) -> Vec<EnvVar> {
    config
        .iter()
        .map(|(key, value)| (format!("{CONFIG_ENV_PREFIX}{key}"), value))
        .filter(|(name, _)| is_env_var_name(name) && !own.iter().any(|e| e.name == *name))
        .map(|(name, value)| env(&name, &value.replace('$', "$$")))
        .collect()
}

/// Kubernetes' classic rule for environment variable names (`[-._a-zA-Z][-._a-zA-Z0-9]*`),
/// which every API server version accepts.
fn is_env_var_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    name.chars().next().is_some_and(|c| !c.is_ascii_digit()) && name.chars().all(allowed)
}

fn scan_args(command: TrivyCommand) -> Vec<String> {
    let skip_dirs = format!("{},$({USER_SKIP_DIRS})", SKIP_DIRS.join(","));
    vec![
        command.as_str().to_string(),
        "--skip-dirs".to_string(),
        skip_dirs,
        "/".to_string(),
    ]
}

fn locked_down(run_as_user: Option<i64>) -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(strings(&["ALL"])),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_user,
        ..SecurityContext::default()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests;
