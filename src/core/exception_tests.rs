use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::crd::Severity;
use crate::crd::exception::{ClusterVulnerabilityExceptionSpec, VulnerabilityExceptionSpec};

const VERSION: ObjectVersion<'static> = ObjectVersion {
    uid: "uid-1",
    generation: 1,
};

fn namespaced(ns: &str, spec: serde_json::Value) -> Result<Exception, InvalidException> {
    let spec: VulnerabilityExceptionSpec = serde_json::from_value(spec).expect("a valid spec");
    Exception::namespaced(ns, "ex", VERSION, &spec)
}

fn cluster(spec: serde_json::Value) -> Exception {
    let spec: ClusterVulnerabilityExceptionSpec =
        serde_json::from_value(spec).expect("a valid spec");
    Exception::cluster("ex", VERSION, &spec).expect("compiles")
}

/// A spec covering `ids`, with `extra` fields merged in.
fn spec(ids: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "vulnerabilities": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        "reason": "AcceptedRisk",
        "description": "assessed in SEC-1",
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn finding(id: &str, pkg: &str, version: &str) -> Vulnerability {
    Vulnerability {
        vulnerability_id: id.to_string(),
        pkg_name: pkg.to_string(),
        installed_version: version.to_string(),
        severity: Severity::High,
        pkg_path: String::new(),
        fixed_version: String::new(),
        title: String::new(),
        primary_url: String::new(),
        suppressed_by: None,
        suppressed_justification: None,
    }
}

struct Subject {
    namespace: String,
    image: String,
    digest: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
}

impl Subject {
    fn new(namespace: &str) -> Subject {
        Subject {
            namespace: namespace.to_string(),
            image: "docker.io/library/nginx".to_string(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            kind: "Deployment".to_string(),
            name: "web".to_string(),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        }
    }

    fn view(&self) -> ScanSubject<'_> {
        ScanSubject {
            namespace: &self.namespace,
            image: &self.image,
            digest: &self.digest,
            workload_kind: &self.kind,
            workload_name: &self.name,
            pod_labels: &self.labels,
        }
    }
}

#[test]
fn patterns_match_with_star_as_any_characters() {
    let cases = [
        ("nginx", "nginx", true),
        ("nginx", "nginx2", false),
        ("*", "", true),
        ("*", "anything/at:all", true),
        ("docker.io/*", "docker.io/library/nginx", true),
        ("docker.io/*", "quay.io/docker.io/x", false),
        ("*/nginx", "docker.io/library/nginx", true),
        ("a*b*c", "abc", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("a*a", "a", false),
        ("ab*ba", "aba", false),
        ("ab*ba", "abba", true),
        ("team-*", "team-", true),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            Pattern::new(pattern).matches(text),
            expected,
            "{pattern:?} on {text:?}"
        );
    }
    assert!(!Pattern::exact("a*").matches("ab"));
    assert!(Pattern::exact("a*").matches("a*"));
}

proptest! {
    /// The matcher agrees with the regular expression the pattern stands for.
    #[test]
    fn a_pattern_matches_what_its_regex_matches(
        parts in proptest::collection::vec("[ab/.]{0,3}", 1..5),
        text in "[ab/.]{0,10}",
    ) {
        let pattern = parts.join("*");
        let regex = format!(
            "^{}$",
            parts.iter().map(|p| regex::escape(p)).collect::<Vec<_>>().join(".*")
        );
        let regex = regex::Regex::new(&regex).expect("a valid regex");
        prop_assert_eq!(Pattern::new(&pattern).matches(&text), regex.is_match(&text), "{} on {}", pattern, text);
    }

    /// A namespaced exception never applies to the scans of another namespace, whatever it
    /// is narrowed to.
    #[test]
    fn a_namespaced_exception_never_reaches_another_namespace(
        own in "[a-c]{1,3}",
        other in "[a-c]{1,3}",
        image in prop_oneof![Just(None), Just(Some("*")), Just(Some("docker.io/*"))],
    ) {
        let extra = match image {
            Some(name) => json!({"images": [{"name": name}]}),
            None => json!({}),
        };
        let exception = namespaced(&own, spec(&["CVE-2024-0001"], extra)).expect("compiles");
        let subject = Subject::new(&other);
        prop_assert_eq!(exception.applies_to(&subject.view()), own == other);
    }
}

#[test]
fn ids_and_aliases_match_without_regard_to_case() {
    let exception = namespaced(
        "ns",
        json!({
            "vulnerabilities": [{"id": "CVE-2024-3094", "aliases": ["GHSA-rxwq-x6h5-x525"]}],
            "reason": "NotAffected",
            "description": "xz backdoor: sshd not in the image",
        }),
    )
    .expect("compiles");
    for id in [
        "CVE-2024-3094",
        "cve-2024-3094",
        "GHSA-rxwq-x6h5-x525",
        "ghsa-rxwq-x6h5-x525",
    ] {
        assert!(
            exception.covers(&Applicable::NONE.scan, &finding(id, "xz-utils", "5.6.0")),
            "{id}"
        );
    }
    assert!(!exception.covers(
        &Applicable::NONE.scan,
        &finding("CVE-2024-30940", "xz-utils", "5.6.0")
    ));
    assert!(!exception.covers(
        &Applicable::NONE.scan,
        &finding("CVE-2024-309", "xz-utils", "5.6.0")
    ));
    assert_eq!(exception.ids(), ["CVE-2024-3094", "GHSA-RXWQ-X6H5-X525"]);
}

#[test]
fn packages_narrow_by_name_pattern_and_exact_versions() {
    let exception = namespaced(
        "ns",
        spec(
            &["CVE-2023-0001"],
            json!({"packages": [
                {"name": "libssl*", "versions": ["3.0.11-1~deb12u1", "3.0.11-1~deb12u2"]},
                {"name": "curl"},
            ]}),
        ),
    )
    .expect("compiles");
    let id = "CVE-2023-0001";
    assert!(exception.covers(
        &Applicable::NONE.scan,
        &finding(id, "libssl3", "3.0.11-1~deb12u2")
    ));
    assert!(!exception.covers(
        &Applicable::NONE.scan,
        &finding(id, "libssl3", "3.0.11-1~deb12u3")
    ));
    assert!(exception.covers(&Applicable::NONE.scan, &finding(id, "curl", "7.88.1")));
    assert!(!exception.covers(
        &Applicable::NONE.scan,
        &finding(id, "openssl", "3.0.11-1~deb12u2")
    ));
    assert!(!exception.covers(
        &Applicable::NONE.scan,
        &finding("CVE-2023-0002", "curl", "7.88.1")
    ));
}

#[test]
fn a_purl_matches_the_name_each_ecosystem_reports() {
    let cases = [
        (
            "pkg:golang/github.com/golang-jwt/jwt/v4@v4.5.0",
            "github.com/golang-jwt/jwt/v4",
            "v4.5.0",
        ),
        (
            "pkg:maven/org.yaml/snakeyaml@1.33",
            "org.yaml:snakeyaml",
            "1.33",
        ),
        ("pkg:npm/%40babel/core@7.22.0", "@babel/core", "7.22.0"),
        (
            "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
            "openssl",
            "3.0.11-1~deb12u2",
        ),
        (
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3",
            "libc6",
            "2.36-9+deb12u3",
        ),
        ("pkg:pypi/requests@2.31.0", "requests", "2.31.0"),
    ];
    for (purl, name, version) in cases {
        let exception = namespaced(
            "ns",
            spec(&["CVE-2023-0001"], json!({"packages": [{"purl": purl}]})),
        )
        .unwrap_or_else(|e| panic!("{purl}: {e}"));
        assert!(
            exception.covers(
                &Applicable::NONE.scan,
                &finding("CVE-2023-0001", name, version)
            ),
            "{purl} covers {name} {version}"
        );
        assert!(
            !exception.covers(
                &Applicable::NONE.scan,
                &finding("CVE-2023-0001", name, "0.0.0-other")
            ),
            "{purl}: another version"
        );
    }
    let any_version = namespaced(
        "ns",
        spec(
            &["CVE-2023-0001"],
            json!({"packages": [{"purl": "pkg:pypi/requests"}]}),
        ),
    )
    .expect("compiles");
    assert!(any_version.covers(
        &Applicable::NONE.scan,
        &finding("CVE-2023-0001", "requests", "1.0")
    ));
    for bad in ["pkg:pypi", "pkg:pypi/re%zzquests@1", "npm/x@1"] {
        let result = namespaced(
            "ns",
            spec(&["CVE-2023-0001"], json!({"packages": [{"purl": bad}]})),
        );
        assert!(result.is_err(), "{bad} is refused");
    }
}

#[test]
fn images_narrow_by_name_pattern_and_digest() {
    let subject = Subject::new("ns");
    let applies = |images: serde_json::Value| {
        namespaced("ns", spec(&["CVE-2023-0001"], json!({"images": images})))
            .expect("compiles")
            .applies_to(&subject.view())
    };
    assert!(applies(json!([{"name": "docker.io/library/*"}])));
    assert!(!applies(json!([{"name": "docker.io/library/redis"}])));
    assert!(applies(
        json!([{"digest": subject.digest.to_uppercase().replace("SHA256", "sha256")}])
    ));
    assert!(!applies(
        json!([{"name": "docker.io/library/nginx", "digest": format!("sha256:{}", "cd".repeat(32))}])
    ));
    assert!(applies(json!([{"name": "quay.io/*"}, {"name": "*/nginx"}])));
}

#[test]
fn workloads_narrow_by_kind_name_and_pod_labels() {
    let subject = Subject::new("ns");
    let applies = |workloads: serde_json::Value| {
        namespaced(
            "ns",
            spec(&["CVE-2023-0001"], json!({"workloads": workloads})),
        )
        .expect("compiles")
        .applies_to(&subject.view())
    };
    assert!(applies(json!([{"kind": "Deployment"}])));
    assert!(!applies(json!([{"kind": "StatefulSet"}])));
    assert!(applies(json!([{"kind": "Deployment", "name": "we*"}])));
    assert!(!applies(json!([{"kind": "Deployment", "name": "api"}])));
    assert!(applies(
        json!([{"selector": {"matchLabels": {"app": "web"}}}])
    ));
    assert!(!applies(
        json!([{"selector": {"matchLabels": {"app": "api"}}}])
    ));
    assert!(applies(json!([{"selector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["api", "web"]},
        {"key": "tier", "operator": "DoesNotExist"},
    ]}}])));
    assert!(!applies(json!([{"selector": {"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["web"]},
    ]}}])));
    // As in Kubernetes: NotIn holds for a label that is absent.
    assert!(applies(json!([{"selector": {"matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["db"]},
        {"key": "app", "operator": "Exists"},
    ]}}])));
    let bad = namespaced(
        "ns",
        spec(
            &["CVE-2023-0001"],
            json!({"workloads": [{"selector": {"matchExpressions": [
                {"key": "app", "operator": "Matches", "values": ["w.*"]},
            ]}}]}),
        ),
    );
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.0.contains("unknown operator")),
        "{bad:?}"
    );
}

#[test]
fn a_cluster_exception_applies_to_the_namespaces_it_names_or_all() {
    let all = cluster(spec(&["CVE-2023-0001"], json!({})));
    let some = cluster(spec(
        &["CVE-2023-0001"],
        json!({"namespaces": ["team-*", "prod"]}),
    ));
    for (ns, named) in [
        ("team-a", true),
        ("prod", true),
        ("production", false),
        ("dev", false),
    ] {
        let subject = Subject::new(ns);
        assert!(all.applies_to(&subject.view()), "{ns}");
        assert_eq!(some.applies_to(&subject.view()), named, "{ns}");
    }
}

#[test]
fn an_exception_stops_applying_at_its_expiry_exactly() {
    let exception = namespaced(
        "ns",
        spec(
            &["CVE-2023-0001"],
            json!({"expires": "2027-01-31T00:00:00Z"}),
        ),
    )
    .expect("compiles");
    let expires = exception.expires.expect("an expiry");
    assert_eq!(expires, Timestamp::from_secs(1_801_353_600));
    assert!(exception.in_force(expires.minus(std::time::Duration::from_millis(1))));
    assert!(!exception.in_force(expires));
    let forever = namespaced("ns", spec(&["CVE-2023-0001"], json!({}))).expect("compiles");
    assert!(forever.in_force(Timestamp::from_secs(i64::MAX / 2_000)));
}

#[test]
fn the_scope_says_what_the_exception_is_narrowed_to() {
    let narrow = cluster(spec(
        &["CVE-2023-0001"],
        json!({
            "namespaces": ["team-*"],
            "packages": [{"name": "openssl", "versions": ["3.0.1"]}],
            "images": [{"name": "docker.io/library/*"}],
            "workloads": [{"kind": "Deployment", "name": "web"}, {"selector": {"matchLabels": {"a": "b"}}}],
        }),
    ));
    assert_eq!(
        narrow.scope(),
        "namespaces: team-*; packages: openssl@3.0.1; images: docker.io/library/*; \
         workloads: Deployment/web, */* (selector)"
    );
    let wide = cluster(spec(&["CVE-2023-0001"], json!({})));
    assert_eq!(wide.scope(), "all findings of these IDs");
    assert_eq!(wide.key.reference(), "cluster/ex");
}

#[test]
fn the_fingerprint_changes_with_the_exceptions_applied_and_nothing_else() {
    let spec: VulnerabilityExceptionSpec =
        serde_json::from_value(spec(&["CVE-2023-0001"], json!({}))).expect("a valid spec");
    let version = |uid, generation| ObjectVersion { uid, generation };
    let a1 = Exception::namespaced("ns", "a", version("uid-a", 1), &spec).expect("compiles");
    let a2 = Exception::namespaced("ns", "a", version("uid-a", 2), &spec).expect("compiles");
    let a_again = Exception::namespaced("ns", "a", version("uid-a2", 1), &spec).expect("compiles");
    let b = Exception::namespaced("ns", "b", version("uid-b", 1), &spec).expect("compiles");
    assert_eq!(fingerprint(&[]), None);
    let one = fingerprint(&[&a1]);
    assert_eq!(one, fingerprint(&[&a1.clone()]), "stable");
    assert_ne!(one, fingerprint(&[&a2]), "the spec changed");
    assert_ne!(one, fingerprint(&[&a_again]), "deleted and re-created");
    assert_eq!(
        fingerprint(&[&a1, &b]),
        fingerprint(&[&b, &a1]),
        "order does not matter"
    );
    assert_ne!(one, fingerprint(&[&a1, &b]), "one more applies");
}
