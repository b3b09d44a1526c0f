//! The scan Job (spec §8) as a pure function of its inputs.
//!
//! The Job runs the scanned image itself, pinned by digest with pull policy `IfNotPresent` and
//! preferably on a node that already has it, so no pull secret is needed. An init container
//! copies the `trivy` binary into a shared `emptyDir`; the scan container runs
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
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSecurityContext, PodSpec, PodTemplateSpec, PreferredSchedulingTerm,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
/// * [`SHARED_MOUNT`] holds the trivy binary copied in by the init container. Scanned, it adds
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

/// The trivy sub-command that scans the container's own filesystem.
///
/// The two look at different files for language packages, and neither finds everything the
/// other does (trivy 0.74.0, `pkg/commands/artifact/run.go`: `rootfs` disables the lock-file
/// analyzers, `filesystem` the installed-package ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrivyCommand {
    /// `trivy rootfs /`: the default, what `trivy image` reports for the image: OS packages
    /// and the language packages actually installed (`node_modules/*/package.json`, Python
    /// `site-packages`, gemspecs, composer `vendor`), Go and Rust binaries and JAR/WAR/EAR
    /// files. Lock files are ignored.
    #[default]
    Rootfs,
    /// `trivy filesystem /`: meant for source trees: OS packages and the dependencies that
    /// language lock and manifest files declare (`package-lock.json`, `yarn.lock`, `go.mod`,
    /// `pom.xml`, `Pipfile.lock`, `Gemfile.lock`, …), but none of the installed packages and
    /// binaries `rootfs` reports: a container's Go binaries, JARs and `node_modules` go
    /// unscanned. Not a superset of `rootfs`.
    Filesystem,
}

impl TrivyCommand {
    /// The sub-command as trivy spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TrivyCommand::Rootfs => "rootfs",
            TrivyCommand::Filesystem => "filesystem",
        }
    }
}

impl fmt::Display for TrivyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trivy command other than `rootfs` or `filesystem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized trivy command {0:?} (expected rootfs or filesystem)")]
pub struct UnknownTrivyCommand(pub String);

impl FromStr for TrivyCommand {
    type Err = UnknownTrivyCommand;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "rootfs" => Ok(TrivyCommand::Rootfs),
            "filesystem" => Ok(TrivyCommand::Filesystem),
            other => Err(UnknownTrivyCommand(other.chars().take(64).collect())),
        }
    }
}

/// Operator-wide settings of every scan Job.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanJobSettings {
    /// Service account of the scan pods (its token is not mounted).
    pub service_account_name: String,
    /// Seconds a finished Job is kept; long enough for the result to be read.
    pub ttl_seconds_after_finished: i32,
    /// Hard limit on the scan's run time.
    pub active_deadline_seconds: i64,
    /// Pod retries before the Job fails.
    pub backoff_limit: i32,
    /// Image providing `/usr/local/bin/trivy`, e.g. `ghcr.io/aquasecurity/trivy:0.74.0`.
    pub trivy_image: String,
    /// Image providing trivy's Java DB in `/java-db` and a `cp` (see [`JAVA_DB_INIT_CONTAINER`]).
    ///
    /// trivy identifies the packages in JAR, WAR and EAR files with its Java DB, and opens it
    /// in the client, i.e. in the scan pod, even in client/server mode. Without this image
    /// each scan pod that meets a JAR downloads the whole DB (hundreds of MB) from
    /// `JAVA_DB_REPOSITORY` into its `emptyDir`, and fails where that registry is out of reach.
    /// With it, a second init container copies the DB from the node's image store into the
    /// pod (a local copy of an image pulled once per node) and the scan runs with
    /// `TRIVY_SKIP_JAVA_DB_UPDATE=true`: no download, ever.
    pub java_db_image: Option<String>,
    /// `rootfs` or `filesystem`.
    pub trivy_command: TrivyCommand,
    /// Resources of the scan container.
    pub scan_resources: ResourceRequirements,
    /// Resources of the trivy init container.
    pub init_resources: ResourceRequirements,
    /// Tolerations of the scan pods, e.g. to follow workloads onto tainted nodes.
    pub tolerations: Vec<Toleration>,
    /// Priority class of the scan pods.
    pub priority_class_name: Option<String>,
}

impl Default for ScanJobSettings {
    /// The Go operator's defaults; `trivy_image` has none and must be configured.
    fn default() -> Self {
        ScanJobSettings {
            service_account_name: "default".to_string(),
            ttl_seconds_after_finished: 7200,
            active_deadline_seconds: 3600,
            backoff_limit: 3,
            trivy_image: String::new(),
            java_db_image: None,
            trivy_command: TrivyCommand::Rootfs,
            scan_resources: default_scan_resources(),
            init_resources: default_init_resources(),
            tolerations: Vec::new(),
            priority_class_name: None,
        }
    }
}

/// Upstream scan container resources: requests 100m / 100M, limits 500m / 500M (decimal `M`).
pub fn default_scan_resources() -> ResourceRequirements {
    resources(("100m", "100M"), ("500m", "500M"))
}

/// Upstream init container resources: requests 10m / 50Mi, limits 50m / 200Mi.
pub fn default_init_resources() -> ResourceRequirements {
    resources(("10m", "50Mi"), ("50m", "200Mi"))
}

fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let cpu_memory = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    ResourceRequirements {
        requests: Some(cpu_memory(requests)),
        limits: Some(cpu_memory(limits)),
        ..ResourceRequirements::default()
    }
}

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
            std::iter::once(trivy_init_container(settings))
                .chain(
                    settings
                        .java_db_image
                        .as_deref()
                        .map(|image| java_db_init_container(image, settings)),
                )
                .collect(),
        ),
        containers: vec![scan_container(params, settings)],
        volumes: Some(vec![empty_dir(SHARED_VOLUME), empty_dir(TMP_VOLUME)]),
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
        volume_mounts: Some(vec![
            mount(SHARED_VOLUME, SHARED_MOUNT),
            mount(TMP_VOLUME, TMP_MOUNT),
        ]),
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
mod tests {
    use super::*;
    use crate::crd::ContainerImageScan;
    use crate::naming::{is_label_value, upstream_scan_job_name};
    use k8s_openapi::api::core::v1::Pod;
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
        let built =
            serde_json::to_value(build_scan_job(&params, &fixture_settings())).expect("json");
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
}
