//! How every scan Job is set up, from the operator's configuration: the trivy sub-command,
//! images, service account, resources, tolerations, deadlines.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

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

/// How the trivy binary gets into the scan pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrivyBinary {
    /// An init container of the trivy image copies the binary into an `emptyDir`: works on
    /// every cluster, but each scan pod writes the whole binary (about 170 MB for trivy
    /// 0.74) to the node's disk and page cache.
    #[default]
    Copy,
    /// The trivy image is mounted read-only as an image volume (`volumes[].image`, GA in
    /// Kubernetes 1.36; with `subPath`, since 1.33): the runtime shares the image's unpacked
    /// layer with every pod, nothing is copied. Needs a runtime that implements image
    /// volumes (containerd 2.1 or later, CRI-O 1.31 or later); on another one the scan pod
    /// does not start and the CIS says so.
    ImageVolume,
}

impl TrivyBinary {
    /// The setting's value as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            TrivyBinary::Copy => "copy",
            TrivyBinary::ImageVolume => "image-volume",
        }
    }
}

impl fmt::Display for TrivyBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value of [`TrivyBinary`] other than `copy` or `image-volume`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized trivy binary source {0:?} (expected copy or image-volume)")]
pub struct UnknownTrivyBinary(pub String);

impl FromStr for TrivyBinary {
    type Err = UnknownTrivyBinary;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "copy" => Ok(TrivyBinary::Copy),
            "image-volume" => Ok(TrivyBinary::ImageVolume),
            other => Err(UnknownTrivyBinary(other.chars().take(64).collect())),
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
    /// How the trivy binary gets into the scan pod.
    pub trivy_binary: TrivyBinary,
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
            trivy_binary: TrivyBinary::Copy,
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
