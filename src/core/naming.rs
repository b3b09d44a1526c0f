//! Object names and label values.
//!
//! * [`cis_name`]: the `ContainerImageScan` name of the Go operator (spec §4.2), bit-exact for
//!   every valid input so that objects it created are adopted, and always a valid DNS-1123
//!   subdomain (fixes quirk §19.16).
//! * [`upstream_scan_job_name`]: the Go operator's scan Job name (§4.3), kept to pin the hash
//!   implementation to its test vectors and to recognise its Jobs.
//! * [`scan_job_name`]: our scan Job name: one scan per image digest cluster-wide.
//! * [`label_value`]: any string turned into a valid label value (fixes quirk §19.15).
//!
//! The short hashes are the first five hex digits of the Go library `hashstructure` (FNV-1,
//! 64-bit), restated in the private `hashstructure` module below.

use crate::crd::ContainerImageScanSpec;

/// Maximum length of a DNS-1123 subdomain (object names such as the CIS).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Maximum length of a DNS-1123 label (Job names: the `job-name` pod label must stay valid).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX: usize = 63;
/// Hex digits of the digest shown in our scan Job name (48 bits: collisions are negligible).
const JOB_NAME_DIGEST_CHARS: usize = 12;
/// Stand-ins when sanitising leaves nothing readable.
const FALLBACK_CIS_PREFIX: &str = "cis";
const FALLBACK_IMAGE_SEGMENT: &str = "image";

/// `ContainerImageScan` name: `<lower(kind)>-<workload>-<container>-<hash5>`, where `hash5`
/// identifies the image (name and digest).
///
/// Too long for a subdomain (253): the workload name is cut by the excess, as upstream; unlike
/// upstream, a cut that leaves a trailing `.` drops it (`.-` is invalid), and when kind and
/// container alone exceed the limit the container is cut too instead of panicking. Inputs that
/// still do not give a valid subdomain (never the case for real Kubernetes names) are sanitised:
/// lower-cased, other characters replaced by `-`, empty and dash-edged dot-labels removed. The
/// result always ends with `-<hash5>`.
pub fn cis_name(
    workload_kind: &str,
    workload_name: &str,
    container_name: &str,
    image_name: &str,
    image_digest: &str,
) -> String {
    use hashstructure::{list, string};
    let suffix = format!(
        "-{}",
        hash5(list(&[string(image_name), string(image_digest)]))
    );
    let budget = DNS1123_SUBDOMAIN_MAX.saturating_sub(suffix.len());
    let kind = workload_kind.to_ascii_lowercase();
    let full_len = kind.len() + 1 + workload_name.len() + 1 + container_name.len();
    let workload = if full_len > budget {
        let keep = workload_name.len().saturating_sub(full_len - budget);
        truncate(workload_name, keep).trim_end_matches('.')
    } else {
        workload_name
    };
    let assembled = format!("{kind}-{workload}-{container_name}");
    let prefix = truncate(&assembled, budget);
    let name = format!("{prefix}{suffix}");
    if is_dns1123_subdomain(&name) {
        return name;
    }
    format!("{}{suffix}", sanitize_subdomain(prefix))
}

/// The Go operator's scan Job name: `<cis name>-<hash5 of (spec, namespace)>`, the CIS name cut
/// to fit 63 characters and stripped of edge dots. Our Jobs use [`scan_job_name`] instead; this
/// exists for compatibility checks and as the test oracle of the structural hash.
pub fn upstream_scan_job_name(
    cis_name: &str,
    cis_namespace: &str,
    spec: &ContainerImageScanSpec,
) -> String {
    use hashstructure::{list, string};
    let suffix = format!(
        "-{}",
        hash5(list(&[spec_hash(spec), string(cis_namespace)]))
    );
    if cis_name.len() + suffix.len() <= DNS1123_LABEL_MAX {
        return format!("{cis_name}{suffix}");
    }
    let prefix = truncate(cis_name, DNS1123_LABEL_MAX.saturating_sub(suffix.len()));
    format!("{}{suffix}", prefix.trim_matches('.'))
}

/// Our scan Job name: `<last path segment of the image name>-<first 12 hex of the digest>`, a
/// valid DNS-1123 label for any input.
///
/// Scans are per digest, so the digest part is the identity and the image segment is only there
/// for people reading `kubectl get jobs` (cut to fit, `image` when nothing readable is left). A
/// digest without algorithm is taken as hex; one without any usable hex falls back to an FNV-1
/// hash of the whole string, so the name stays deterministic.
pub fn scan_job_name(image_name: &str, image_digest: &str) -> String {
    prefixed_scan_job_name("", image_name, image_digest)
}

/// The name of a scan Job in a workload namespace (`engine::placement`): `image-scan-`, then
/// what [`scan_job_name`] gives, cut to fit. The prefix tells the namespace's users what the
/// Job is and keeps it apart from their own Jobs.
pub fn workload_scan_job_name(image_name: &str, image_digest: &str) -> String {
    prefixed_scan_job_name(WORKLOAD_SCAN_JOB_PREFIX, image_name, image_digest)
}

/// Prefix of [`workload_scan_job_name`].
pub const WORKLOAD_SCAN_JOB_PREFIX: &str = "image-scan-";

fn prefixed_scan_job_name(prefix: &str, image_name: &str, image_digest: &str) -> String {
    let digest_hex = image_digest.rsplit(':').next().unwrap_or(image_digest);
    let mut id: String = digest_hex
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(JOB_NAME_DIGEST_CHARS)
        .collect();
    if id.is_empty() {
        id = format!("{:016x}", hashstructure::string(image_digest));
        id.truncate(JOB_NAME_DIGEST_CHARS);
    }
    let segment = image_name.rsplit('/').next().unwrap_or(image_name);
    let readable = sanitize_label(segment, DNS1123_LABEL_MAX - prefix.len() - 1 - id.len());
    let readable = if readable.is_empty() {
        FALLBACK_IMAGE_SEGMENT
    } else {
        &readable
    };
    format!("{prefix}{readable}-{id}")
}

/// A valid label value for any string: characters outside `[A-Za-z0-9_.-]` become `-`, the
/// value is cut to 63 characters and must start and end alphanumeric (possibly leaving `""`).
/// Upstream cut long workload names to 62 characters and could end in `-` or `.` (§19.15).
pub fn label_value(value: &str) -> String {
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let not_alnum = |c: char| !c.is_ascii_alphanumeric();
    let start = mapped.trim_start_matches(not_alnum);
    truncate(start, LABEL_VALUE_MAX)
        .trim_end_matches(not_alnum)
        .to_string()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`, at most 253 characters.
pub fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX && value.split('.').all(is_dns1123_label_shape)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(value: &str) -> bool {
    value.len() <= DNS1123_LABEL_MAX && is_dns1123_label_shape(value)
}

/// Empty, or `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` of at most 63 characters.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.is_empty()
        || (value.len() <= LABEL_VALUE_MAX
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
}

fn is_dns1123_label_shape(value: &str) -> bool {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = value.as_bytes();
    bytes.first().is_some_and(is_alnum)
        && bytes.last().is_some_and(is_alnum)
        && bytes.iter().all(|b| is_alnum(b) || *b == b'-')
}

/// Lower-case alphanumerics and single dashes, no dash at either end, at most `max` bytes.
fn sanitize_label(value: &str, max: usize) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max.min(out.len()));
    out.trim_end_matches('-').to_string()
}

/// Makes a CIS-name prefix (everything before `-<hash5>`) a valid subdomain ending alphanumeric.
fn sanitize_subdomain(prefix: &str) -> String {
    let mapped: String = prefix
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|label| label.trim_matches('-'))
        .filter(|label| !label.is_empty())
        .collect();
    if labels.is_empty() {
        FALLBACK_CIS_PREFIX.to_string()
    } else {
        labels.join(".")
    }
}

/// The longest prefix of at most `max` bytes that ends on a character boundary.
fn truncate(value: &str, max: usize) -> &str {
    let mut end = max.min(value.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or("")
}

/// First five digits of Go's `%x` (no zero padding, so a tiny hash gives fewer digits).
fn hash5(hash: u64) -> String {
    let mut hex = format!("{hash:x}");
    hex.truncate(5);
    hex
}

/// Structural hash of the Go `ContainerImageScanSpec`, walking the Go struct layout: type and
/// field names are part of the hash (§4.3). `Tag`, `Workload.APIVersion` and `Workload.UID` are
/// plain Go strings, absent meaning `""`; `MinSeverity` and `IgnoreUnfixed` are pointers.
fn spec_hash(spec: &ContainerImageScanSpec) -> u64 {
    use hashstructure::{boolean, int, nil, string, structure};
    let text = |value: &Option<String>| string(value.as_deref().unwrap_or(""));
    let image = structure(
        "Image",
        &[
            ("Name", string(&spec.name)),
            ("Digest", string(&spec.digest)),
        ],
    );
    let min_severity = spec
        .min_severity
        .map_or_else(nil, |severity| int(severity.rank() as i64));
    let ignore_unfixed = spec.ignore_unfixed.map_or_else(nil, boolean);
    let scan_config = structure(
        "ScanConfig",
        &[
            ("MinSeverity", min_severity),
            ("IgnoreUnfixed", ignore_unfixed),
        ],
    );
    let image_scan_spec = structure(
        "ImageScanSpec",
        &[("Image", image), ("ScanConfig", scan_config)],
    );
    let workload = &spec.workload;
    let workload = structure(
        "Workload",
        &[
            ("APIVersion", text(&workload.api_version)),
            ("Group", string(&workload.group)),
            ("Kind", string(&workload.kind)),
            ("Name", string(&workload.name)),
            ("UID", text(&workload.uid)),
            ("ContainerName", string(&workload.container_name)),
        ],
    );
    structure(
        "ContainerImageScanSpec",
        &[
            ("ImageScanSpec", image_scan_spec),
            ("Tag", text(&spec.tag)),
            ("Workload", workload),
        ],
    )
}

/// The Go library `hashstructure` (gohugoio v1 / mitchellh v2 FormatV2) for the value shapes the
/// operator hashes, over FNV-1 64 (multiply, then xor; not FNV-1a).
mod hashstructure {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn fnv1(bytes: &[u8]) -> u64 {
        bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
            hash.wrapping_mul(PRIME) ^ u64::from(byte)
        })
    }

    /// Combines two hashes where order matters.
    fn ordered(a: u64, b: u64) -> u64 {
        let mut bytes = [0u8; 16];
        let (first, second) = bytes.split_at_mut(8);
        first.copy_from_slice(&a.to_le_bytes());
        second.copy_from_slice(&b.to_le_bytes());
        fnv1(&bytes)
    }

    /// Go hashes each struct field's xor-accumulator once more after every field.
    fn finish(a: u64) -> u64 {
        fnv1(&a.to_le_bytes())
    }

    pub fn string(value: &str) -> u64 {
        fnv1(value.as_bytes())
    }

    /// Go `int`/`int64` and int-kinded named types, as 8 little-endian bytes.
    pub fn int(value: i64) -> u64 {
        fnv1(&value.to_le_bytes())
    }

    pub fn boolean(value: bool) -> u64 {
        fnv1(&[u8::from(value)])
    }

    /// A nil pointer hashes as the zero `int`.
    pub fn nil() -> u64 {
        int(0)
    }

    /// A slice or the top-level argument list.
    pub fn list(items: &[u64]) -> u64 {
        items.iter().fold(0, |hash, &item| ordered(hash, item))
    }

    /// A struct of Go type `type_name` with its exported fields in declaration order.
    pub fn structure(type_name: &str, fields: &[(&str, u64)]) -> u64 {
        fields
            .iter()
            .fold(string(type_name), |hash, &(name, value)| {
                finish(hash ^ ordered(string(name), value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Workload;
    use proptest::prelude::*;

    const NGINX_UNPRIVILEGED: &str = "docker.io/nginxinc/nginx-unprivileged";

    fn application(workload: &str, container: &str, image: &str, digest: &str) -> String {
        cis_name("Application", workload, container, image, digest)
    }

    #[test]
    fn cis_name_vectors_of_the_naming_test() {
        let cases = [
            (
                application("workload", "app", "img-name", "img-digest"),
                "application-workload-app-88c48",
            ),
            (
                application("other-workload", "app", "img-name", "img-digest"),
                "application-other-workload-app-88c48",
            ),
            (
                application("workload", "app", "other-img", "img-digest"),
                "application-workload-app-91ac0",
            ),
            (
                application("workload", "app", "img-name", "other-digest"),
                "application-workload-app-faf6e",
            ),
            (
                application("workload", "foo", "img-name", "img-digest"),
                "application-workload-foo-88c48",
            ),
            (
                cis_name("Deployment", "workload", "app", "img-name", "img-digest"),
                "deployment-workload-app-88c48",
            ),
        ];
        for (actual, expected) in cases {
            assert_eq!(actual, expected);
        }
    }

    #[test]
    fn cis_name_of_a_253_character_workload_is_cut_to_253() {
        let name = application(&"a".repeat(253), "app", "img-name", "img-digest");
        assert_eq!(name.len(), 253);
        assert!(name.contains("-88c48"));
        assert!(name.starts_with("application-aaa"));
        assert!(name.ends_with("a-app-88c48"));
    }

    #[test]
    fn cis_name_vectors_of_the_e2e_tests() {
        let echo_digest = "sha256:1645798310a56491acb75d750ed6a4693a35506c9860503d21a877cc54d95191";
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
        ] {
            let expected = format!("{}-echo-app-ab50d", kind.to_lowercase());
            assert_eq!(
                cis_name(kind, "echo", "app", NGINX_UNPRIVILEGED, echo_digest),
                expected
            );
        }
        let vuln_digest = "sha256:144322e8e96be2be6675dcf6e3ee15697c5d052d14d240e8914871a2a83990af";
        assert_eq!(
            cis_name(
                "Deployment",
                "vuln-app",
                "app",
                "docker.io/kennship/http-echo",
                vuln_digest
            ),
            "deployment-vuln-app-app-d7f94"
        );
        let nginx_digest =
            "sha256:3fbc5ad2c00a62a6c175e9a9a3b2de2b3011f3e5d005a091276620b34e1bae39";
        assert_eq!(
            cis_name("Pod", "nginx", "app", NGINX_UNPRIVILEGED, nginx_digest),
            "pod-nginx-app-8d8bf"
        );
    }

    #[test]
    fn cis_name_keeps_upstream_shape_for_an_empty_container_name() {
        assert_eq!(
            cis_name("Pod", "nginx", "", "img-name", "img-digest"),
            "pod-nginx--88c48"
        );
    }

    #[test]
    fn cis_name_cut_never_leaves_dot_dash() {
        // Upstream cuts "x.x.x…" right after a dot here and produces `….-apps-88c48`.
        let workload = "x.".repeat(150);
        let name = application(&workload, "apps", "img-name", "img-digest");
        assert!(is_dns1123_subdomain(&name), "{name}");
        assert!(name.ends_with(".x-apps-88c48"), "{name}");
        assert_eq!(name.len(), 252);
    }

    #[test]
    fn cis_name_exactly_at_the_limit_is_not_cut() {
        // kind + workload + container fill the 247 bytes before `-<hash5>` exactly: nothing is
        // cut, so the workload keeps its trailing dot and only sanitising mends the `.-`.
        let workload = format!("{}.", "x".repeat(240));
        let name = cis_name("Pod", &workload, "c", "img-name", "img-digest");
        assert_eq!(name, format!("pod-{}.c-88c48", "x".repeat(240)));
        // One byte more and the workload is cut by one, dropping the dot instead.
        let workload = format!("{}.", "x".repeat(241));
        let name = cis_name("Pod", &workload, "c", "img-name", "img-digest");
        assert_eq!(name, format!("pod-{}-c-88c48", "x".repeat(241)));
    }

    #[test]
    fn cis_name_survives_a_container_name_longer_than_the_limit() {
        let name = application("workload", &"c".repeat(400), "img-name", "img-digest");
        assert!(is_dns1123_subdomain(&name), "{name}");
        assert!(name.ends_with("-88c48"));
        assert_eq!(name.len(), 253);
    }

    #[test]
    fn cis_name_sanitises_invalid_inputs() {
        assert_eq!(
            cis_name("Custom.Kind", "My_App", "-app-", "img-name", "img-digest"),
            "custom.kind-my-app--app-88c48"
        );
        assert_eq!(cis_name("", "", "", "img-name", "img-digest"), "cis-88c48");
        assert_eq!(
            cis_name("Pod", ".", ".", "img-name", "img-digest"),
            "pod-88c48"
        );
    }

    fn empty_spec() -> ContainerImageScanSpec {
        ContainerImageScanSpec::default()
    }

    #[test]
    fn upstream_job_name_vectors() {
        assert_eq!(
            upstream_scan_job_name("bar", "foo", &empty_spec()),
            "bar-5e09e"
        );

        let long = upstream_scan_job_name(&"a".repeat(128), "foo", &empty_spec());
        assert_eq!(long, format!("{}-5e09e", "a".repeat(57)));
        assert_eq!(long.len(), 63);

        let dotted =
            upstream_scan_job_name(&format!("bar{}", "a.".repeat(64)), "foo", &empty_spec());
        assert_eq!(dotted, format!("bar{}a-5e09e", "a.".repeat(26)));
        assert_eq!(dotted.len(), 62);

        // Only a cut strips edge dots: a name that fits is kept as it is.
        let fits = upstream_scan_job_name(&format!(".{}.", "a".repeat(55)), "foo", &empty_spec());
        assert_eq!(fits, format!(".{}.-5e09e", "a".repeat(55)));
        assert_eq!(fits.len(), 63);
    }

    #[test]
    fn upstream_job_name_tells_every_ignore_unfixed_value_apart() {
        // Go's hashstructure hashes the pointee of `*bool` (one byte) and a nil pointer as the
        // zero int: unset, false and true are three different specs.
        let names: Vec<String> = [None, Some(false), Some(true)]
            .into_iter()
            .map(|ignore_unfixed| {
                let spec = ContainerImageScanSpec {
                    ignore_unfixed,
                    ..empty_spec()
                };
                upstream_scan_job_name("bar", "foo", &spec)
            })
            .collect();
        assert_eq!(names[0], "bar-5e09e");
        assert!(
            names[0] != names[1] && names[1] != names[2] && names[0] != names[2],
            "{names:?}"
        );
    }

    #[test]
    fn truncate_backs_off_to_a_character_boundary() {
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("é", 1), "");
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn upstream_job_name_of_the_envtest_expected_job() {
        let spec = ContainerImageScanSpec {
            name: NGINX_UNPRIVILEGED.to_string(),
            digest: "sha256:204d4094343ed60ff60ed4b009785151c43d8f611761929aae3a1beb02fc0adf"
                .to_string(),
            tag: Some(String::new()),
            workload: Workload {
                api_version: Some("v1".to_string()),
                group: String::new(),
                kind: "Pod".to_string(),
                name: "echo".to_string(),
                uid: None,
                container_name: "app".to_string(),
            },
            ..ContainerImageScanSpec::default()
        };
        assert_eq!(
            upstream_scan_job_name("echo-6bdfc76c56-8ae43", "replica-set", &spec),
            "echo-6bdfc76c56-8ae43-46a3d"
        );
    }

    #[test]
    fn scan_job_name_shapes() {
        let digest = "sha256:204d4094343ed60ff60ed4b009785151c43d8f611761929aae3a1beb02fc0adf";
        let cases = [
            (
                NGINX_UNPRIVILEGED,
                digest,
                "nginx-unprivileged-204d4094343e",
            ),
            ("docker.io/library/nginx", digest, "nginx-204d4094343e"),
            (
                "Registry.Example/Team/My_App.Server",
                digest,
                "my-app-server-204d4094343e",
            ),
            ("", digest, "image-204d4094343e"),
            ("___", digest, "image-204d4094343e"),
            ("nginx", "204D4094343ED60FF60ED4B0", "nginx-204d4094343e"),
            ("nginx", "sha256:abc", "nginx-abc"),
        ];
        for (image, digest, expected) in cases {
            assert_eq!(scan_job_name(image, digest), expected, "{image} {digest}");
        }
        let long = scan_job_name(&format!("r.io/{}", "x".repeat(100)), digest);
        assert_eq!(long, format!("{}-204d4094343e", "x".repeat(50)));
        let cut_at_dash = scan_job_name(&"x-".repeat(100), digest);
        assert_eq!(cut_at_dash, format!("{}x-204d4094343e", "x-".repeat(24)));
        let no_hex = scan_job_name("nginx", "sha256:");
        assert!(
            is_dns1123_label(&no_hex) && no_hex.len() == "nginx-".len() + 12,
            "{no_hex}"
        );
        assert_ne!(scan_job_name("nginx", ""), scan_job_name("nginx", "!!"));
    }

    #[test]
    fn label_value_shapes() {
        assert_eq!(label_value("echo"), "echo");
        assert_eq!(label_value(""), "");
        assert_eq!(label_value("-._"), "");
        assert_eq!(label_value("My App/v1"), "My-App-v1");
        let cut_at_dash = format!("{}-rest", "a".repeat(62));
        assert_eq!(label_value(&cut_at_dash), "a".repeat(62));
        let cut_at_dot = format!("{}.rest", "b".repeat(61));
        assert_eq!(
            label_value(&format!("x{cut_at_dot}")),
            format!("x{}", "b".repeat(61))
        );
        assert_eq!(label_value(&"c".repeat(100)), "c".repeat(63));
    }

    #[test]
    fn validators() {
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a.-b"));
        assert!(!is_dns1123_subdomain(""));
        assert!(!is_dns1123_subdomain("A"));
        assert!(is_dns1123_label("a-b"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_label_value("") && is_label_value("A_b.c-D"));
        assert!(!is_label_value("a-") && !is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn hash5_is_not_zero_padded() {
        assert_eq!(hash5(0xabc), "abc");
        assert_eq!(hash5(0x1234_5678), "12345");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9._-]{0,300}",
            "[a-z0-9.-]{0,300}",
            "[a-z.]{200,300}",
        ]
    }

    proptest! {
        #[test]
        fn cis_name_is_always_a_valid_subdomain_with_the_hash(
            kind in any_text(), workload in any_text(), container in any_text(),
            image in any_text(), digest in any_text(),
        ) {
            let name = cis_name(&kind, &workload, &container, &image, &digest);
            prop_assert!(is_dns1123_subdomain(&name), "{name}");
            let suffix = format!("-{}", hash5(hashstructure::list(&[
                hashstructure::string(&image), hashstructure::string(&digest),
            ])));
            prop_assert!(name.ends_with(&suffix));
        }

        #[test]
        fn scan_job_name_is_always_a_valid_label(image in any_text(), digest in any_text()) {
            let name = scan_job_name(&image, &digest);
            prop_assert!(is_dns1123_label(&name), "{name}");
        }

        #[test]
        fn label_value_is_always_valid(value in any_text()) {
            let label = label_value(&value);
            prop_assert!(is_label_value(&label), "{label}");
        }
    }
}
