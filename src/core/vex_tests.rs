use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::crd::Severity;

// The example documents of the Go reference implementation (github.com/openvex/go-vex
// v0.2.7, pkg/vex/testdata, Apache-2.0), unchanged.
const GO_V020: &str = include_str!("testdata/vex/v0.2.0.json");
const GO_V001: &str = include_str!("testdata/vex/v0.0.1.json");
const GO_V001_NO_VERSION: &str = include_str!("testdata/vex/v0.0.1-noversion.json");
const GO_V001_UNDER_INVESTIGATION: &str = include_str!("testdata/vex/v001-1.vex.json");
const GO_V001_FIXED: &str = include_str!("testdata/vex/v001-2.vex.json");

const NGINX: &str = "docker.io/library/nginx";
const ALPINE_DIGEST: &str =
    "sha256:124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126";

fn digest(byte: &str) -> String {
    format!("sha256:{}", byte.repeat(32))
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

/// A v0.2.0 document dated 2024-06-01 with `statements`.
fn document(statements: Value) -> Value {
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "Security Team",
        "timestamp": "2024-06-01T00:00:00Z",
        "version": 1,
        "statements": statements,
    })
}

/// A statement on `id` for `products`, with `extra` fields merged in.
fn statement(id: &str, products: Value, status: &str, extra: Value) -> Value {
    let mut statement = json!({
        "vulnerability": {"name": id},
        "products": products,
        "status": status,
    });
    if let (Some(statement), Some(extra)) = (statement.as_object_mut(), extra.as_object()) {
        statement.extend(extra.clone());
    }
    statement
}

fn not_affected(id: &str, products: Value) -> Value {
    statement(
        id,
        products,
        "not_affected",
        json!({"justification": "vulnerable_code_not_in_execute_path"}),
    )
}

fn parse(document: &Value) -> VexDocument {
    VexDocument::parse(&document.to_string()).expect("a valid document")
}

fn parse_error(document: &Value) -> String {
    VexDocument::parse(&document.to_string()).expect_err("an invalid document")
}

/// The nginx image of digest `ab…` as an `oci` purl, with `qualifiers`.
fn nginx_purl(qualifiers: &str) -> String {
    format!("pkg:oci/nginx@sha256%3A{}{qualifiers}", "ab".repeat(32))
}

fn status_of(doc: &VexDocument, image: &str, digest: &str, v: &Vulnerability) -> Option<VexStatus> {
    doc.verdict(image, digest, v).map(|verdict| verdict.status)
}

#[test]
fn go_v020_example_narrows_an_image_to_its_subcomponents() {
    let doc = VexDocument::parse(GO_V020).expect("the Go v0.2.0 example parses");
    assert_eq!(doc.statements(), 5);
    assert_eq!(doc.ignored_products(), 0);
    let alpine = "docker.io/library/alpine";
    let libssl = finding("CVE-2023-3446", "libssl3", "3.0.8-r3");
    assert_eq!(
        doc.verdict(alpine, ALPINE_DIGEST, &libssl),
        Some(Verdict {
            status: VexStatus::NotAffected,
            justification: "vulnerable_code_not_present",
        })
    );
    assert_eq!(
        doc.verdict(
            alpine,
            ALPINE_DIGEST,
            &finding("CVE-2023-1255", "libcrypto3", "3.0.8-r3")
        ),
        Some(Verdict {
            status: VexStatus::Fixed,
            justification: "fixed",
        })
    );
    // Another version of the subcomponent, another package, another image, another digest.
    let newer = finding("CVE-2023-3446", "libssl3", "3.0.9-r0");
    assert_eq!(doc.verdict(alpine, ALPINE_DIGEST, &newer), None);
    let busybox = finding("CVE-2023-3446", "busybox", "1.36.1-r0");
    assert_eq!(doc.verdict(alpine, ALPINE_DIGEST, &busybox), None);
    assert_eq!(doc.verdict(NGINX, ALPINE_DIGEST, &libssl), None);
    assert_eq!(doc.verdict(alpine, &digest("ab"), &libssl), None);
    // Without repository_url the purl names the image in any registry (the digest decides).
    assert_eq!(
        status_of(&doc, "registry.local/mirror/alpine", ALPINE_DIGEST, &libssl),
        Some(VexStatus::NotAffected)
    );
    assert!(doc.concerns(alpine, ALPINE_DIGEST));
    assert!(!doc.concerns(alpine, &digest("ab")));
}

#[test]
fn go_v001_examples_are_legacy_package_products() {
    for text in [GO_V001, GO_V001_NO_VERSION] {
        let doc = VexDocument::parse(text).expect("the Go v0.0.1 example parses");
        assert_eq!(doc.statements(), 1);
        let git = finding("CVE-2023-12345", "git", "2.39.0-r1");
        for image in [NGINX, "ghcr.io/wolfi-dev/git"] {
            assert_eq!(
                doc.verdict(image, &digest("cd"), &git),
                Some(Verdict {
                    status: VexStatus::Fixed,
                    justification: "fixed",
                })
            );
            assert!(doc.concerns(image, &digest("cd")));
        }
        let other = finding("CVE-2023-12345", "git", "2.40.0-r0");
        assert_eq!(doc.verdict(NGINX, &digest("cd"), &other), None);
    }
}

/// The two Go examples without document timestamp, one statement each, merged in the wrong
/// order: the `fixed` statement is the later one (20:56 against 16:36, both at -05:00).
#[test]
fn go_v001_statement_timestamps_order_a_merged_history() {
    let under_investigation = VexDocument::parse(GO_V001_UNDER_INVESTIGATION).expect("parses");
    let fixed = VexDocument::parse(GO_V001_FIXED).expect("parses");
    let bash = finding("CVE-1234-5678", "bash", "1.0.0");
    assert_eq!(
        under_investigation.verdict(NGINX, &digest("ab"), &bash),
        None
    );
    assert_eq!(
        status_of(&fixed, NGINX, &digest("ab"), &bash),
        Some(VexStatus::Fixed)
    );
    let statements = |text: &str| -> Value {
        let doc: Value = serde_json::from_str(text).expect("JSON");
        doc["statements"][0].clone()
    };
    let merged = json!({
        "@context": "https://openvex.dev/ns",
        "statements": [statements(GO_V001_FIXED), statements(GO_V001_UNDER_INVESTIGATION)],
    });
    assert_eq!(
        status_of(&parse(&merged), NGINX, &digest("ab"), &bash),
        Some(VexStatus::Fixed)
    );
}

#[test]
fn image_purl_matches_digest_and_normalised_repository() {
    let purl = nginx_purl("?repository_url=index.docker.io%2Flibrary%2Fnginx&tag=1.25&arch=amd64");
    let doc = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!([{"@id": purl}])
    )])));
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    assert_eq!(
        doc.verdict(NGINX, &digest("ab"), &v),
        Some(Verdict {
            status: VexStatus::NotAffected,
            justification: "vulnerable_code_not_in_execute_path",
        })
    );
    // The short Docker Hub name is the same repository.
    assert_eq!(
        status_of(&doc, "nginx", &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
    assert_eq!(doc.verdict(NGINX, &digest("cd"), &v), None);
    assert_eq!(doc.verdict("ghcr.io/acme/nginx", &digest("ab"), &v), None);
    assert_eq!(
        doc.verdict(
            NGINX,
            &digest("ab"),
            &finding("CVE-2024-2", "openssl", "3.0.11-1")
        ),
        None
    );
}

#[test]
fn image_purl_repository_url_must_name_the_scanned_repository() {
    let products = json!([
        {"identifiers": {"purl": nginx_purl("?repository_url=ghcr.io/acme/nginx")}},
    ]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    assert_eq!(doc.verdict(NGINX, &digest("ab"), &v), None);
    assert_eq!(
        status_of(&doc, "ghcr.io/acme/nginx", &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
}

#[test]
fn image_purl_digest_is_compared_without_regard_to_case() {
    let purl = format!("pkg:oci/NGINX@SHA256%3A{}", "AB".repeat(32));
    let doc = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!([purl])
    )])));
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    assert_eq!(
        status_of(&doc, NGINX, &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
    // And the scan's digest too.
    let lower = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!([nginx_purl("")])
    )])));
    assert_eq!(
        status_of(&lower, NGINX, &digest("AB"), &v),
        Some(VexStatus::NotAffected)
    );
}

#[test]
fn image_reference_with_digest_matches_and_by_tag_only_is_ignored() {
    let app = "registry.local:5000/team/app";
    let products = json!([
        format!("{app}:1.0@{}", digest("ab")),
        {"@id": format!("{NGINX}:1.25")},
        {"identifiers": {"cpe23": "cpe:2.3:a:nginx:nginx:1.25.0:*:*:*:*:*:*:*"}},
        {"@id": "https://example.com/products/app"},
    ]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    assert_eq!(doc.ignored_products(), 3);
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    assert_eq!(
        status_of(&doc, app, &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
    assert_eq!(doc.verdict(app, &digest("cd"), &v), None);
    assert_eq!(doc.verdict(NGINX, &digest("ab"), &v), None);
    assert!(!doc.concerns(NGINX, &digest("ab")));
}

#[test]
fn hashes_match_the_digest() {
    let products = json!([
        {"hashes": {"sha-256": "ab".repeat(32)}},
        {"hashes": {"sha-512": "ef".repeat(64)}},
        {"hashes": {"md5": "0123456789abcdef0123456789abcdef"}},
    ]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    assert_eq!(doc.ignored_products(), 1);
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    let sha512 = format!("sha512:{}", "ef".repeat(64));
    for d in [digest("ab"), sha512] {
        assert_eq!(
            status_of(&doc, "quay.io/any/image", &d, &v),
            Some(VexStatus::NotAffected)
        );
    }
    assert_eq!(doc.verdict(NGINX, &digest("cd"), &v), None);
}

#[test]
fn subcomponents_narrow_an_image_product() {
    let products = json!([{
        "@id": nginx_purl(""),
        "subcomponents": [
            {"@id": "pkg:golang/github.com/x/y@v1.2.3"},
            {"@id": "libfoo"},
        ],
    }]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    let matched = |pkg: &str, version: &str| {
        status_of(
            &doc,
            NGINX,
            &digest("ab"),
            &finding("CVE-2024-1", pkg, version),
        )
    };
    assert_eq!(
        matched("github.com/x/y", "v1.2.3"),
        Some(VexStatus::NotAffected)
    );
    assert_eq!(matched("github.com/x/y", "v1.2.4"), None);
    assert_eq!(matched("github.com/x/z", "v1.2.3"), None);
    // A subcomponent that is not a purl is a package name, any version, exactly.
    assert_eq!(matched("libfoo", "1.0"), Some(VexStatus::NotAffected));
    assert_eq!(matched("libfoo2", "1.0"), None);
}

#[test]
fn image_product_without_subcomponents_covers_every_package() {
    let doc = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!([{"@id": nginx_purl(""), "subcomponents": []}])
    )])));
    for pkg in ["openssl", "zlib1g", "github.com/x/y"] {
        assert_eq!(
            status_of(&doc, NGINX, &digest("ab"), &finding("CVE-2024-1", pkg, "1")),
            Some(VexStatus::NotAffected),
            "{pkg}"
        );
    }
}

/// An author who lists subcomponents means to narrow: a list nothing in can match covers
/// nothing, not the whole image.
#[test]
fn unusable_subcomponents_narrow_to_nothing() {
    let products = json!([{
        "@id": nginx_purl(""),
        "subcomponents": [{"identifiers": {"cpe23": "cpe:2.3:a:openssl:openssl:3.0.11"}}],
    }]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    assert_eq!(doc.ignored_products(), 1);
    let v = finding("CVE-2024-1", "openssl", "3.0.11-1");
    assert_eq!(doc.verdict(NGINX, &digest("ab"), &v), None);
}

#[test]
fn package_product_applies_to_any_image() {
    let products = json!([
        {"identifiers": {"purl": "pkg:deb/debian/openssl@3.0.11-1?arch=amd64"}},
        {
            "@id": "pkg:golang/example.com/app@v1.0.0",
            "subcomponents": [{"@id": "pkg:golang/github.com/x/y"}],
        },
    ]);
    let doc = parse(&document(json!([not_affected("CVE-2024-1", products)])));
    for (image, d) in [(NGINX, digest("ab")), ("quay.io/acme/api", digest("cd"))] {
        assert!(doc.concerns(image, &d));
        let openssl = finding("CVE-2024-1", "openssl", "3.0.11-1");
        assert_eq!(
            status_of(&doc, image, &d, &openssl),
            Some(VexStatus::NotAffected)
        );
        let in_app = finding("CVE-2024-1", "github.com/x/y", "v0.9.0");
        assert_eq!(
            status_of(&doc, image, &d, &in_app),
            Some(VexStatus::NotAffected)
        );
        let app = finding("CVE-2024-1", "example.com/app", "v1.0.0");
        assert_eq!(
            status_of(&doc, image, &d, &app),
            Some(VexStatus::NotAffected)
        );
        let other_version = finding("CVE-2024-1", "openssl", "3.0.13-1");
        assert_eq!(doc.verdict(image, &d, &other_version), None);
    }
}

#[test]
fn aliases_match_and_ids_ignore_ascii_case() {
    let mut s = not_affected("GHSA-abcd-efgh-ijkl", json!([nginx_purl("")]));
    s["vulnerability"]["aliases"] = json!(["CVE-2024-1234", " cve-2024-5678 "]);
    s["vulnerability"]["@id"] = json!("https://github.com/advisories/GHSA-abcd-efgh-ijkl");
    let doc = parse(&document(json!([s])));
    for id in [
        "CVE-2024-1234",
        "cve-2024-1234",
        "CVE-2024-5678",
        "ghsa-ABCD-efgh-IJKL",
        " GHSA-abcd-efgh-ijkl",
    ] {
        assert_eq!(
            status_of(&doc, NGINX, &digest("ab"), &finding(id, "openssl", "1")),
            Some(VexStatus::NotAffected),
            "{id}"
        );
    }
    for id in [
        "CVE-2024-9999",
        "https://github.com/advisories/GHSA-abcd-efgh-ijkl",
    ] {
        assert_eq!(
            doc.verdict(NGINX, &digest("ab"), &finding(id, "openssl", "1")),
            None,
            "{id}"
        );
    }
}

#[test]
fn vulnerability_id_that_is_not_a_url_matches() {
    let mut s = not_affected("CVE-2024-1", json!([nginx_purl("")]));
    s["vulnerability"]["@id"] = json!("OSV-2024-77");
    let doc = parse(&document(json!([s])));
    let v = finding("osv-2024-77", "openssl", "1");
    assert_eq!(
        status_of(&doc, NGINX, &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
}

fn at(s: Value, time: &str) -> Value {
    let mut s = s;
    s["timestamp"] = json!(time);
    s
}

fn affected(id: &str, products: Value) -> Value {
    statement(
        id,
        products,
        "affected",
        json!({"action_statement": "upgrade"}),
    )
}

#[test]
fn later_affected_statement_cancels_earlier_not_affected() {
    let products = json!([nginx_purl("")]);
    let v = finding("CVE-2024-1", "openssl", "1");
    let decide =
        |statements: Value| status_of(&parse(&document(statements)), NGINX, &digest("ab"), &v);
    // By timestamp, whatever the order in the document.
    let earlier = at(
        not_affected("CVE-2024-1", products.clone()),
        "2024-01-01T00:00:00Z",
    );
    let later = at(
        affected("CVE-2024-1", products.clone()),
        "2024-02-01T00:00:00+01:00",
    );
    assert_eq!(decide(json!([earlier.clone(), later.clone()])), None);
    assert_eq!(decide(json!([later, earlier])), None);
    let earlier = at(
        affected("CVE-2024-1", products.clone()),
        "2024-01-01T00:00:00Z",
    );
    let later = at(
        not_affected("CVE-2024-1", products.clone()),
        "2024-02-01T00:00:00Z",
    );
    assert_eq!(
        decide(json!([later, earlier])),
        Some(VexStatus::NotAffected)
    );
    // At equal times (both the document's), the later in the document.
    assert_eq!(
        decide(json!([
            not_affected("CVE-2024-1", products.clone()),
            affected("CVE-2024-1", products.clone())
        ])),
        None
    );
    assert_eq!(
        decide(json!([
            affected("CVE-2024-1", products.clone()),
            not_affected("CVE-2024-1", products.clone())
        ])),
        Some(VexStatus::NotAffected)
    );
    // Equal instants written in different offsets are equal times.
    assert_eq!(
        decide(json!([
            at(
                affected("CVE-2024-1", products.clone()),
                "2024-01-01T01:00:00+01:00"
            ),
            at(
                not_affected("CVE-2024-1", products.clone()),
                "2024-01-01T00:00:00Z"
            ),
        ])),
        Some(VexStatus::NotAffected)
    );
    // A statement dated before the document (2024-06-01) is older than one without date.
    assert_eq!(
        decide(json!([
            affected("CVE-2024-1", products.clone()),
            at(
                not_affected("CVE-2024-1", products.clone()),
                "2024-01-01T00:00:00Z"
            ),
        ])),
        None
    );
    assert_eq!(
        decide(json!([
            affected("CVE-2024-1", products.clone()),
            at(
                not_affected("CVE-2024-1", products.clone()),
                "2024-12-01T00:00:00Z"
            ),
        ])),
        Some(VexStatus::NotAffected)
    );
    let under_investigation = statement(
        "CVE-2024-1",
        products.clone(),
        "under_investigation",
        json!({}),
    );
    assert_eq!(
        decide(json!([
            not_affected("CVE-2024-1", products.clone()),
            under_investigation
        ])),
        None
    );
}

#[test]
fn a_statement_on_another_product_or_id_cancels_nothing() {
    let nginx = json!([nginx_purl("")]);
    let v = finding("CVE-2024-1", "openssl", "1");
    let doc = parse(&document(json!([
        not_affected("CVE-2024-1", nginx.clone()),
        affected(
            "CVE-2024-1",
            json!([format!("ghcr.io/acme/app@{}", digest("ab"))])
        ),
        affected("CVE-2024-2", nginx),
    ])));
    assert_eq!(
        status_of(&doc, NGINX, &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
}

#[test]
fn undated_statements_are_older_than_dated_ones() {
    let products = json!([nginx_purl("")]);
    let undated = json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "statements": [
            at(not_affected("CVE-2024-1", products.clone()), "2020-01-01T00:00:00Z"),
            affected("CVE-2024-1", products),
        ],
    });
    let v = finding("CVE-2024-1", "openssl", "1");
    assert_eq!(
        status_of(&parse(&undated), NGINX, &digest("ab"), &v),
        Some(VexStatus::NotAffected)
    );
}

#[test]
fn fixed_gives_fixed() {
    let doc = parse(&document(json!([statement(
        "CVE-2024-1",
        json!([nginx_purl("")]),
        "fixed",
        json!({})
    )])));
    let v = finding("CVE-2024-1", "openssl", "1");
    assert_eq!(
        doc.verdict(NGINX, &digest("ab"), &v),
        Some(Verdict {
            status: VexStatus::Fixed,
            justification: "fixed",
        })
    );
}

#[test]
fn impact_statement_stands_in_for_a_justification_and_is_bounded() {
    let products = json!([nginx_purl("")]);
    let s = statement(
        "CVE-2024-1",
        products.clone(),
        "not_affected",
        json!({"impact_statement": " the parser is never reached "}),
    );
    let doc = parse(&document(json!([s])));
    let v = finding("CVE-2024-1", "openssl", "1");
    assert_eq!(
        doc.verdict(NGINX, &digest("ab"), &v)
            .map(|v| v.justification),
        Some("impact: the parser is never reached")
    );
    let long = "é".repeat(400);
    let s = statement(
        "CVE-2024-1",
        products,
        "not_affected",
        json!({"impact_statement": long}),
    );
    let doc = parse(&document(json!([s])));
    let justification = doc
        .verdict(NGINX, &digest("ab"), &v)
        .map(|v| v.justification)
        .unwrap_or_default();
    assert!(justification.len() <= MAX_JUSTIFICATION_BYTES);
    assert!(justification.len() >= MAX_JUSTIFICATION_BYTES - 1);
    assert!(format!("impact: {long}").starts_with(justification));
}

#[test]
fn not_affected_without_justification_or_impact_is_an_error() {
    let products = json!([nginx_purl("")]);
    let s = statement("CVE-2024-1", products.clone(), "not_affected", json!({}));
    let error = parse_error(&document(json!([
        affected("CVE-2024-0", products.clone()),
        s
    ])));
    assert!(error.starts_with("statement 2: "), "{error}");
    assert!(error.contains("justification"), "{error}");
    let s = statement(
        "CVE-2024-1",
        products,
        "not_affected",
        json!({"justification": "not_reachable"}),
    );
    let error = parse_error(&document(json!([s])));
    assert!(
        error.starts_with("statement 1: unknown justification \"not_reachable\""),
        "{error}"
    );
}

#[test]
fn unknown_status_is_an_error() {
    let s = statement(
        "CVE-2024-1",
        json!([nginx_purl("")]),
        "not-affected",
        json!({}),
    );
    let error = parse_error(&document(json!([s])));
    assert!(
        error.starts_with("statement 1: unknown status \"not-affected\""),
        "{error}"
    );
    let mut s = not_affected("CVE-2024-1", json!([]));
    if let Some(s) = s.as_object_mut() {
        s.remove("status");
    }
    assert_eq!(parse_error(&document(json!([s]))), "statement 1: no status");
}

#[test]
fn context_must_be_openvex() {
    let mut doc = document(json!([]));
    doc["@context"] = json!("https://cyclonedx.org/vex");
    let error = parse_error(&doc);
    assert!(
        error.starts_with("not an OpenVEX document (@context \"https://cyclonedx.org/vex\""),
        "{error}"
    );
    if let Some(d) = doc.as_object_mut() {
        d.remove("@context");
    }
    assert!(parse_error(&doc).starts_with("not an OpenVEX document (@context"));
    assert!(VexDocument::parse("[]").is_err());
    let csaf = r#"{"document": {"category": "csaf_vex"}, "vulnerabilities": []}"#;
    assert!(VexDocument::parse(csaf).is_err());
}

#[test]
fn malformed_purl_and_timestamp_are_errors_naming_the_statement() {
    let ok = not_affected("CVE-2024-0", json!([nginx_purl("")]));
    let bad_purl = not_affected("CVE-2024-1", json!([{"@id": "pkg:golang"}]));
    let error = parse_error(&document(json!([ok.clone(), bad_purl])));
    assert!(
        error.starts_with("statement 2: product 1: malformed purl \"pkg:golang\""),
        "{error}"
    );
    let bad_oci = not_affected("CVE-2024-1", json!(["pkg:oci/nginx@sha256%3"]));
    let error = parse_error(&document(json!([bad_oci])));
    assert!(
        error.starts_with("statement 1: product 1: malformed purl"),
        "{error}"
    );
    let bad_sub = not_affected(
        "CVE-2024-1",
        json!([{"@id": nginx_purl(""), "subcomponents": ["pkg:npm/%zz"]}]),
    );
    let error = parse_error(&document(json!([bad_sub])));
    assert!(
        error.starts_with("statement 1: product 1: subcomponent 1: malformed purl"),
        "{error}"
    );
    let bad_time = at(ok.clone(), "yesterday");
    let error = parse_error(&document(json!([ok, bad_time])));
    assert_eq!(
        error,
        "statement 2: timestamp \"yesterday\" is not RFC 3339"
    );
    let mut doc = document(json!([]));
    doc["timestamp"] = json!("2024-13-01T00:00:00Z");
    assert!(parse_error(&doc).starts_with("timestamp "));
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    let error = VexDocument::parse("{\n  \"@context\": ,\n}").expect_err("not JSON");
    assert!(error.starts_with("not JSON: "), "{error}");
    assert!(error.contains("line 2 column"), "{error}");
}

#[test]
fn errors_are_one_bounded_line() {
    let s = statement(
        "CVE-2024-1",
        json!([]),
        &format!("no\nsuch {}", "status".repeat(1000)),
        json!({}),
    );
    let error = parse_error(&document(json!([s])));
    assert!(error.len() <= 300, "{}", error.len());
    assert!(!error.contains('\n'));
    assert!(error.starts_with("statement 1: unknown status \"no\\nsuch status"));
    // Escaped control characters are long: the list of justifications no longer fits.
    let s = statement(
        "CVE-2024-1",
        json!([]),
        "not_affected",
        json!({"justification": "\u{1}".repeat(100)}),
    );
    let error = parse_error(&document(json!([s])));
    assert!(error.len() <= 300, "{}", error.len());
    assert!(error.starts_with("statement 1: unknown justification \"\\u{1}"));
    assert!(
        !error.ends_with("inline_mitigations_already_exist)"),
        "{error}"
    );
}

/// The smallest statement: many of them stay well under the size limit.
fn tiny_statements(n: usize) -> Value {
    Value::Array(vec![
        json!({"vulnerability": "CVE-1", "status": "fixed"});
        n
    ])
}

#[test]
fn statements_are_limited() {
    let doc = parse(&document(tiny_statements(MAX_STATEMENTS)));
    assert_eq!(doc.statements(), MAX_STATEMENTS);
    let error = parse_error(&document(tiny_statements(MAX_STATEMENTS + 1)));
    assert_eq!(error, "10001 statements, more than the limit of 10000");
}

#[test]
fn document_size_is_limited() {
    let text = document(json!([])).to_string();
    let padded = format!("{text}{}", " ".repeat(MAX_DOCUMENT_BYTES - text.len()));
    assert!(VexDocument::parse(&padded).is_ok());
    let error = VexDocument::parse(&format!("{padded} ")).expect_err("too large");
    assert_eq!(
        error,
        "document is 1048577 bytes, more than the limit of 1048576"
    );
}

#[test]
fn components_are_limited() {
    let half = MAX_COMPONENTS / 2;
    let products = |n: usize| Value::Array(vec![json!(""); n]);
    let s = |n| not_affected("CVE-2024-1", products(n));
    assert!(VexDocument::parse(&document(json!([s(half), s(half)])).to_string()).is_ok());
    let error = parse_error(&document(json!([s(half), s(half + 1)])));
    assert_eq!(
        error,
        "50001 products and subcomponents, more than the limit of 50000"
    );
    // Subcomponents count too, the legacy statement-level list once.
    let mut legacy = s(half);
    legacy["subcomponents"] = products(half + 1);
    assert!(parse_error(&document(json!([legacy]))).starts_with("50001 products"));
}

#[test]
fn aliases_are_limited() {
    let with_aliases = |n: usize| {
        let mut s = not_affected("CVE-2024-1", json!([]));
        s["vulnerability"]["aliases"] =
            Value::Array((0..n).map(|i| json!(format!("GHSA-{i}"))).collect());
        document(json!([s]))
    };
    assert!(VexDocument::parse(&with_aliases(100).to_string()).is_ok());
    assert_eq!(
        parse_error(&with_aliases(101)),
        "statement 1: 101 aliases, more than the limit of 100"
    );
}

#[test]
fn concerns_images_it_names_and_all_for_package_products() {
    let image_only = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!([nginx_purl("?repository_url=docker.io/library/nginx")])
    )])));
    assert!(image_only.concerns(NGINX, &digest("ab")));
    assert!(!image_only.concerns(NGINX, &digest("cd")));
    assert!(!image_only.concerns("docker.io/library/redis", &digest("ab")));
    assert!(!image_only.concerns("ghcr.io/acme/nginx", &digest("ab")));
    let with_package = parse(&document(json!([
        not_affected("CVE-2024-1", json!([nginx_purl("")])),
        not_affected("CVE-2024-2", json!(["pkg:pypi/requests@2.31.0"])),
    ])));
    assert!(with_package.concerns("docker.io/library/redis", &digest("cd")));
    let nothing = parse(&document(json!([not_affected(
        "CVE-2024-1",
        json!(["cpe:2.3:a:nginx:nginx:*:*:*:*:*:*:*:*"])
    )])));
    assert!(!nothing.concerns(NGINX, &digest("ab")));
}

#[test]
fn hash_changes_with_the_text() {
    let a = VexDocument::parse(GO_V020).expect("parses");
    let b = VexDocument::parse(&format!("{GO_V020}\n")).expect("parses");
    assert_eq!(a.hash(), crate::fingerprint::fnv1a64(GO_V020.as_bytes()));
    assert_ne!(a.hash(), b.hash());
    assert_eq!(
        a.hash(),
        VexDocument::parse(GO_V020).expect("parses").hash()
    );
}

/// A document that exercises every branch of parsing, for the mutation tests.
fn rich_document() -> String {
    let mut aliased = not_affected(
        "GHSA-1",
        json!([{
            "@id": nginx_purl("?repository_url=index.docker.io%2Flibrary%2Fnginx&tag=1"),
            "identifiers": {"purl": "pkg:deb/debian/openssl@3.0.11-1", "cpe23": "cpe:2.3:*"},
            "hashes": {"sha-256": "ab".repeat(32)},
            "subcomponents": [{"@id": "pkg:golang/github.com/x/y@v1.2.3"}, "libfoo", {}],
        }]),
    );
    aliased["vulnerability"]["aliases"] = json!(["CVE-2024-1"]);
    let legacy = json!({
        "vulnerability": "CVE-2024-1",
        "products": [format!("registry.local:5000/app@{}", digest("ab")), "nginx:1"],
        "subcomponents": ["pkg:npm/%40scope/lib@1.0.0", ""],
        "timestamp": "2024-07-01T00:00:00.123456789-05:00",
        "status": "affected",
    });
    let impact = statement(
        "CVE-2024-1",
        json!([{"hashes": {"sha-512": "ef".repeat(64)}}]),
        "not_affected",
        json!({"impact_statement": "unreachable"}),
    );
    document(json!([
        aliased,
        legacy,
        impact,
        statement("CVE-2024-1", json!([]), "fixed", json!({}))
    ]))
    .to_string()
}

fn exercise(text: &str) -> Result<(), TestCaseError> {
    match VexDocument::parse(text) {
        Ok(doc) => {
            for v in [
                finding("CVE-2024-1", "openssl", "3.0.11-1"),
                finding("ghsa-1", "github.com/x/y", "v1.2.3"),
                finding("CVE-2024-1", "@scope/lib", "1.0.0"),
            ] {
                for (image, d) in [
                    (NGINX, digest("ab")),
                    ("registry.local:5000/app", digest("ab")),
                ] {
                    let _ = doc.concerns(image, &d);
                    if let Some(verdict) = doc.verdict(image, &d, &v) {
                        prop_assert!(verdict.justification.len() <= MAX_JUSTIFICATION_BYTES);
                        prop_assert!(matches!(
                            verdict.status,
                            VexStatus::NotAffected | VexStatus::Fixed
                        ));
                    }
                }
            }
        }
        Err(error) => {
            prop_assert!(error.len() <= 300, "{}", error.len());
            prop_assert!(!error.contains('\n') && !error.contains('\r'), "{error}");
        }
    }
    Ok(())
}

#[test]
fn the_rich_document_parses_and_matches() {
    let doc = VexDocument::parse(&rich_document()).expect("parses");
    assert_eq!(doc.statements(), 4);
    // The empty subcomponent object and the tag-only `nginx:1`.
    assert_eq!(doc.ignored_products(), 2);
    let y = finding("CVE-2024-1", "github.com/x/y", "v1.2.3");
    assert_eq!(
        status_of(&doc, NGINX, &digest("ab"), &y),
        Some(VexStatus::NotAffected)
    );
    // The later legacy `affected` statement decides for its own image and subcomponent.
    let lib = finding("CVE-2024-1", "@scope/lib", "1.0.0");
    assert_eq!(
        doc.verdict("registry.local:5000/app", &digest("ab"), &lib),
        None
    );
    let sha512 = format!("sha512:{}", "ef".repeat(64));
    assert_eq!(
        doc.verdict("quay.io/x/y", &sha512, &lib)
            .map(|v| v.justification),
        Some("impact: unreachable")
    );
}

#[test]
fn legacy_subcomponents_narrow_every_product() {
    let app = "registry.local:5000/team/app";
    let doc = json!({
        "@context": "https://openvex.dev/ns/v0.0.1",
        "timestamp": "2023-01-08T18:02:03.647787998-06:00",
        "statements": [{
            "vulnerability": "CVE-2024-1",
            "products": [format!("{NGINX}@{}", digest("ab")), format!("{app}@{}", digest("cd"))],
            "subcomponents": ["pkg:npm/%40scope/lib@1.0.0"],
            "status": "not_affected",
            "justification": "component_not_present",
        }],
    });
    let doc = parse(&doc);
    let lib = finding("CVE-2024-1", "@scope/lib", "1.0.0");
    let other = finding("CVE-2024-1", "lodash", "4.17.21");
    for (image, d) in [(NGINX, digest("ab")), (app, digest("cd"))] {
        assert_eq!(
            doc.verdict(image, &d, &lib),
            Some(Verdict {
                status: VexStatus::NotAffected,
                justification: "component_not_present",
            })
        );
        assert_eq!(doc.verdict(image, &d, &other), None);
    }
    assert_eq!(doc.verdict(app, &digest("ab"), &lib), None);
}

/// JSON values built from OpenVEX's vocabulary, so that mutations reach deep into parsing.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("not_affected"),
            Just("affected"),
            Just("fixed"),
            Just("under_investigation"),
            Just("component_not_present"),
            Just("pkg:oci/nginx@sha256%3Aabab?repository_url=%zz"),
            Just("pkg:oci/@"),
            Just("pkg:oci"),
            Just("pkg:golang/github.com/x/y@v1.2.3"),
            Just("pkg:/"),
            Just("pkg:npm/%ff"),
            Just("nginx@sha256:abc"),
            Just("2024-01-01T00:00:00Z"),
            Just("9999-99-99"),
            Just("https://openvex.dev/ns/v0.2.0"),
            Just("CVE-2024-1"),
            Just(""),
            Just("é\u{0}\n"),
        ]
        .prop_map(|s| json!(s)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![
            Just("@id".to_string()),
            Just("@context".to_string()),
            Just("vulnerability".to_string()),
            Just("name".to_string()),
            Just("aliases".to_string()),
            Just("products".to_string()),
            Just("subcomponents".to_string()),
            Just("identifiers".to_string()),
            Just("purl".to_string()),
            Just("hashes".to_string()),
            Just("sha-256".to_string()),
            Just("status".to_string()),
            Just("justification".to_string()),
            Just("impact_statement".to_string()),
            Just("timestamp".to_string()),
            Just("statements".to_string()),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn base_document() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(GO_V020.to_string()),
        Just(GO_V001.to_string()),
        Just(rich_document()),
    ]
}

/// Every node of `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(
        text in "\\PC{0,200}|[{}\\[\\]\":, a-z@/%0-9-]{0,200}",
    ) {
        exercise(&text)?;
    }

    /// Characters deleted, inserted or replaced anywhere in a valid document.
    #[test]
    fn parse_never_panics_on_mutated_text(
        base in base_document(),
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), 0..4usize, prop_oneof![
                Just("\""), Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"),
                Just("null"), Just("1"), Just("%"), Just("@"), Just("é"), Just("\\u0000"),
                Just("\"pkg:oci/x\""), Just("\"fixed\""),
            ]),
            1..6,
        ),
    ) {
        let mut chars: Vec<char> = base.chars().collect();
        for (index, op, snippet) in edits {
            let at = index.index(chars.len().max(1)).min(chars.len());
            let end = (at + 8).min(chars.len());
            match op {
                0 => { chars.drain(at..end); }
                1 => { chars.splice(at..at, snippet.chars()); }
                _ => { chars.splice(at..end, snippet.chars()); }
            }
        }
        exercise(&chars.into_iter().collect::<String>())?;
    }

    /// A node of a valid document replaced by another JSON value.
    #[test]
    fn parse_never_panics_on_mutated_structure(
        base in base_document(),
        replacements in proptest::collection::vec(
            (any::<prop::sample::Index>(), json_value()),
            1..4,
        ),
    ) {
        let mut doc: Value = serde_json::from_str(&base).expect("JSON");
        for (index, replacement) in replacements {
            let mut all = Vec::new();
            pointers(&doc, String::new(), &mut all);
            let pointer = index.get(&all).clone();
            if let Some(node) = doc.pointer_mut(&pointer) {
                *node = replacement;
            }
        }
        exercise(&doc.to_string())?;
    }
}
