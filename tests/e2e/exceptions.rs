//! Vulnerability exceptions (issue 20) as the real API server sees them: the installed CRDs'
//! schema and CEL rules refuse a bad exception with a message that says what is wrong, the
//! installed roles give namespace editors their namespace's exceptions and nobody but cluster
//! administrators the cluster-scoped ones, and the operator (with its installed RBAC) re-filters
//! a result when an exception comes or goes, without a rescan.

use image_scanner::crd::exception::{ClusterVulnerabilityException, VulnerabilityException};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::support::*;

const NS: &str = "e2e-exceptions";

fn exception(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": "VulnerabilityException",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The API server's answer to creating `manifest`: `Ok` or its message.
async fn create(
    api: &Api<VulnerabilityException>,
    manifest: serde_json::Value,
) -> Result<(), String> {
    let object: VulnerabilityException = match serde_json::from_value(manifest.clone()) {
        Ok(o) => o,
        // What the typed client cannot even build goes as raw JSON.
        Err(_) => {
            let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
                api.clone().into_client(),
                NS,
                &kube::api::ApiResource::erase::<VulnerabilityException>(&()),
            );
            let object = serde_json::from_value(manifest).expect("a JSON object");
            return raw
                .create(&PostParams::default(), &object)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
    };
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn the_api_server_refuses_a_bad_exception_with_a_clear_message() {
    let client = client().await;
    let namespaces = TestNamespaces::create(&client, &[NS]).await;
    let api: Api<VulnerabilityException> = Api::namespaced(client.clone(), NS);
    let good = json!({
        "vulnerabilities": [{"id": "CVE-2024-3094", "aliases": ["GHSA-rxwq-x6h5-x525"]}],
        "packages": [{"name": "xz-utils", "versions": ["5.6.0-0.1"]}, {"purl": "pkg:deb/debian/liblzma5@5.6.0-0.1"}],
        "images": [{"name": "registry.example.com/team/*"}],
        "workloads": [{"kind": "Deployment", "selector": {"matchLabels": {"app": "web"}}}],
        "reason": "NotAffected",
        "description": "sshd is not in the image (SEC-1234)",
        "expires": "2027-01-31T00:00:00Z",
    });
    create(&api, exception("good", good.clone()))
        .await
        .expect("a complete exception is accepted");
    let with = |field: &str, value: serde_json::Value| {
        let mut spec = good.clone();
        spec[field] = value;
        spec
    };
    let without = |field: &str| {
        let mut spec = good.clone();
        spec.as_object_mut().expect("an object").remove(field);
        spec
    };
    // An exception given by a VEX document instead of IDs (its reason is each statement's).
    let vex = |source: serde_json::Value| {
        let mut spec = without("vulnerabilities");
        let spec_map = spec.as_object_mut().expect("an object");
        spec_map.remove("reason");
        spec_map.insert("vex".to_string(), source);
        spec
    };
    let with_reason = |mut spec: serde_json::Value| {
        spec["reason"] = json!("NotAffected");
        spec
    };
    create(
        &api,
        exception(
            "good-vex",
            vex(json!({"configMapKeyRef": {"name": "vex", "key": "app.openvex.json"}})),
        ),
    )
    .await
    .expect("an exception by a VEX document is accepted");
    let cases = [
        (
            "no-reason",
            without("reason"),
            "reason goes with vulnerabilities",
        ),
        (
            "ids-and-vex",
            with("vex", json!({"inline": "{}"})),
            "exactly one of vulnerabilities (with reason) or vex",
        ),
        (
            "vex-two-sources",
            vex(json!({"inline": "{}", "configMapKeyRef": {"name": "a", "key": "b"}})),
            "exactly one of inline or configMapKeyRef",
        ),
        (
            "vex-with-reason",
            with_reason(vex(json!({"inline": "{}"}))),
            "reason goes with vulnerabilities",
        ),
        (
            "no-description",
            without("description"),
            "spec.description: Required value",
        ),
        (
            "no-ids",
            with("vulnerabilities", json!([])),
            "spec.vulnerabilities",
        ),
        (
            "odd-reason",
            with("reason", json!("Because")),
            "spec.reason: Unsupported value",
        ),
        (
            "bad-cve",
            with("vulnerabilities", json!([{"id": "CVE-24-1"}])),
            "a CVE ID is CVE-<year>-<number of 4 or more digits>",
        ),
        (
            "bad-ghsa",
            with("vulnerabilities", json!([{"id": "GHSA-1234"}])),
            "a GHSA ID is GHSA-xxxx-xxxx-xxxx",
        ),
        (
            "not-an-id",
            with("vulnerabilities", json!([{"id": "log4shell"}])),
            "spec.vulnerabilities[0].id",
        ),
        (
            "bad-expiry",
            with("expires", json!("next tuesday")),
            "spec.expires",
        ),
        (
            "name-and-purl",
            with("packages", json!([{"name": "a", "purl": "pkg:npm/a@1"}])),
            "exactly one of name or purl",
        ),
        (
            "purl-versions",
            with(
                "packages",
                json!([{"purl": "pkg:npm/a", "versions": ["1"]}]),
            ),
            "a purl carries its own version",
        ),
        (
            "empty-image",
            with("images", json!([{}])),
            "an image is given by a name, a digest, or both",
        ),
        (
            "empty-workload",
            with("workloads", json!([{}])),
            "a workload is given by kind, name, a label selector",
        ),
    ];
    for (name, spec, message) in cases {
        let answer = create(&api, exception(name, spec)).await;
        match answer {
            Err(e) => assert!(e.contains(message), "{name}: {message:?} not in {e:?}"),
            Ok(()) => panic!("{name} was accepted"),
        }
    }
    namespaces.cleanup().await;
}

/// Whether `user` (with `groups`) may `verb` the `resource` of this group in `namespace`, as
/// the API server's authorizer decides.
async fn may(
    client: &kube::Client,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:authenticated"],
            "resourceAttributes": {
                "group": "stas.statnett.no",
                "resource": resource,
                "verb": verb,
                "namespace": namespace.unwrap_or_default(),
            },
        },
    }))
    .expect("a review");
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("the review is answered");
    answer.status.is_some_and(|s| s.allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn namespace_editors_manage_their_exceptions_and_only_admins_the_cluster_ones() {
    let client = client().await;
    let namespaces = TestNamespaces::create(&client, &[NS, "e2e-exceptions-other"]).await;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), NS);
    for (user, role) in [("editor", "edit"), ("admin", "admin"), ("viewer", "view")] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("e2e-{user}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .expect("a binding");
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .expect("binding created");
    }
    let resource = "vulnerabilityexceptions";
    // Aggregation into the built-in roles is done by the controller-manager: wait for it.
    eventually(
        Duration::from_secs(30),
        "the exception roles aggregated into edit",
        None,
        || async {
            may(&client, "editor", "create", resource, Some(NS))
                .await
                .then_some(())
        },
    )
    .await;
    for user in ["editor", "admin"] {
        for verb in ["create", "update", "delete", "list"] {
            assert!(
                may(&client, user, verb, resource, Some(NS)).await,
                "{user} {verb}"
            );
        }
        assert!(
            !may(
                &client,
                user,
                "create",
                resource,
                Some("e2e-exceptions-other")
            )
            .await,
            "{user} reaches no other namespace"
        );
    }
    assert!(may(&client, "viewer", "list", resource, Some(NS)).await);
    assert!(!may(&client, "viewer", "create", resource, Some(NS)).await);
    for user in ["editor", "admin", "viewer"] {
        for verb in ["create", "delete"] {
            assert!(
                !may(&client, user, verb, "clustervulnerabilityexceptions", None).await,
                "{user} {verb} cluster-scoped exceptions"
            );
        }
    }
    // A cluster administrator may; the type is served cluster-wide.
    let cluster: Api<ClusterVulnerabilityException> = Api::all(client.clone());
    let object: ClusterVulnerabilityException = serde_json::from_value(json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": "ClusterVulnerabilityException",
        "metadata": {"name": "e2e-platform"},
        "spec": {
            "namespaces": ["team-*"],
            "vulnerabilities": [{"id": "CVE-2023-44487"}],
            "reason": "Mitigated",
            "description": "HTTP/2 rapid reset: the ingress limits streams",
        },
    }))
    .expect("an exception");
    let _ = cluster
        .delete("e2e-platform", &DeleteParams::default())
        .await;
    cluster
        .create(&PostParams::default(), &object)
        .await
        .expect("a cluster administrator creates a cluster-scoped exception");
    cluster
        .delete("e2e-platform", &DeleteParams::default())
        .await
        .expect("deleted");
    namespaces.cleanup().await;
}

fn suppressed_total(cis: &image_scanner::crd::ContainerImageScan) -> Option<i32> {
    cis.status
        .as_ref()?
        .suppressed_count
        .as_ref()
        .map(|c| c.total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn an_exception_suppresses_a_finding_without_a_rescan_until_it_is_deleted() {
    const OP_NS: &str = "e2e-exc-op";
    let wait = Duration::from_secs(120);
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("exceptions");
    // CVE-2019-18224 (libidn2-0, CRITICAL, fixed) and CVE-2019-18276 (bash, LOW).
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let namespaces = TestNamespaces::create(&client, &[OP_NS]).await;
    let op = Operator::start("exceptions", OP_NS, &[]);
    apply(
        &client,
        Some(OP_NS),
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": format!("registry.e2e/exc/app@{digest}")}]}
        }),
    )
    .await;
    let cis = eventually(wait, "the scan's result", Some(&op), || async {
        list_cis(&client, OP_NS).await.into_iter().find(scanned)
    })
    .await;
    assert_eq!(severity_counts(&cis).get("CRITICAL"), Some(&1));
    assert_eq!(suppressed_total(&cis), None);
    let jobs = scan_jobs(&client).await.len();

    let exceptions: Api<VulnerabilityException> = Api::namespaced(client.clone(), OP_NS);
    let accepted = json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": "VulnerabilityException",
        "metadata": {"name": "libidn2"},
        "spec": {
            "vulnerabilities": [{"id": "CVE-2019-18224"}],
            "packages": [{"name": "libidn2-0"}],
            "workloads": [{"selector": {"matchLabels": {"app": "web"}}}],
            "reason": "NotAffected",
            "description": "no IDN input reaches libidn2 in this service",
        },
    });
    create(&exceptions, accepted)
        .await
        .expect("the exception is accepted");
    let cis = eventually(wait, "the finding suppressed", Some(&op), || async {
        list_cis(&client, OP_NS)
            .await
            .into_iter()
            .find(|c| suppressed_total(c) == Some(1))
    })
    .await;
    assert_eq!(severity_counts(&cis).get("CRITICAL"), Some(&0));
    assert_eq!(severity_counts(&cis).get("LOW"), Some(&1));
    let status = cis.status.clone().expect("a status");
    let suppressed = status.suppressed_count.expect("counted");
    assert_eq!(
        suppressed.by_exception.get(&format!("{OP_NS}/libidn2")),
        Some(&1)
    );
    assert!(status.exceptions_fingerprint.is_some());
    if let Some(details) = &status.vulnerabilities {
        let marked: Vec<_> = details
            .iter()
            .filter_map(|v| Some((v.vulnerability_id.as_str(), v.suppressed_by.as_deref()?)))
            .collect();
        let reference = format!("{OP_NS}/libidn2");
        assert_eq!(marked, [("CVE-2019-18224", reference.as_str())]);
    }

    exceptions
        .delete("libidn2", &DeleteParams::default())
        .await
        .expect("deleted");
    let cis = eventually(wait, "the finding back", Some(&op), || async {
        list_cis(&client, OP_NS).await.into_iter().find(|c| {
            suppressed_total(c).is_none() && severity_counts(c).get("CRITICAL") == Some(&1)
        })
    })
    .await;
    assert!(cis.status.and_then(|s| s.exceptions_fingerprint).is_none());
    assert_eq!(scan_jobs(&client).await.len(), jobs, "no rescan");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the installed RBAC suffices");
    assert!(log.contains("vulnerability exceptions watched"));
    drop(op);
    namespaces.cleanup().await;
}

/// The Ready condition of an exception's status: (status, reason), and its covered findings.
fn readiness(
    status: Option<&image_scanner::crd::exception::VulnerabilityExceptionStatus>,
) -> Option<(String, String, Option<i64>)> {
    let status = status?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        ready.status.clone(),
        ready.reason.clone(),
        status.covered_findings,
    ))
}

/// A platform team's cluster-scoped exception, for one namespace, until a time a minute away:
/// it suppresses the finding there, its status says it is in force and covers it; at its
/// expiry the finding is back, the status says `Expired`, and an Event on it says so — with
/// the installed RBAC, and without a rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_cluster_exception_applies_until_it_expires_with_its_status_and_an_event() {
    const OP_NS: &str = "e2e-exc-cluster";
    const NAME: &str = "e2e-libidn2-until-soon";
    let wait = Duration::from_secs(120);
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let cluster_exceptions: Api<ClusterVulnerabilityException> = Api::all(client.clone());
    let _ = cluster_exceptions
        .delete(NAME, &DeleteParams::default())
        .await;
    let digest = digest_for("exceptions-cluster");
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let namespaces = TestNamespaces::create(&client, &[OP_NS]).await;
    let op = Operator::start("exceptions-cluster", OP_NS, &[]);
    apply(
        &client,
        Some(OP_NS),
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
            "spec": {"containers": [{"name": "app", "image": format!("registry.e2e/exc/cluster@{digest}")}]}
        }),
    )
    .await;
    let cis = eventually(wait, "the scan's result", Some(&op), || async {
        list_cis(&client, OP_NS).await.into_iter().find(scanned)
    })
    .await;
    assert_eq!(severity_counts(&cis).get("CRITICAL"), Some(&1));
    let jobs = scan_jobs(&client).await.len();

    // Whole seconds: the typed client writes `metav1.Time` without a fraction.
    let expires =
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 45).expect("a time");
    let manifest = json!({
        "apiVersion": "stas.statnett.no/v1alpha1",
        "kind": "ClusterVulnerabilityException",
        "metadata": {"name": NAME},
        "spec": {
            "namespaces": [OP_NS],
            "vulnerabilities": [{"id": "cve-2019-18224"}],
            "reason": "AcceptedRisk",
            "description": "accepted until the patched base image ships",
            "expires": expires.to_string(),
        },
    });
    let object: ClusterVulnerabilityException =
        serde_json::from_value(manifest).expect("an exception");
    cluster_exceptions
        .create(&PostParams::default(), &object)
        .await
        .expect("the exception is accepted");
    eventually(wait, "the finding suppressed", Some(&op), || async {
        list_cis(&client, OP_NS)
            .await
            .into_iter()
            .find(|c| suppressed_total(c) == Some(1))
    })
    .await;
    let status = eventually(
        wait,
        "the exception's status in force",
        Some(&op),
        || async {
            let e = cluster_exceptions.get(NAME).await.ok()?;
            (readiness(e.status.as_ref())? == ("True".into(), "InForce".into(), Some(1)))
                .then_some(e.status)
        },
    )
    .await
    .expect("a status");
    assert_eq!(
        status.scope.as_deref(),
        Some(format!("namespaces: {OP_NS}").as_str())
    );

    // Its expiry: the finding is back, the status says so, an Event too.
    eventually(
        wait,
        "the finding back at the expiry",
        Some(&op),
        || async {
            list_cis(&client, OP_NS).await.into_iter().find(|c| {
                suppressed_total(c).is_none() && severity_counts(c).get("CRITICAL") == Some(&1)
            })
        },
    )
    .await;
    assert!(
        jiff::Timestamp::now() >= expires,
        "not before the expiry ({expires})"
    );
    eventually(
        wait,
        "the exception's status expired",
        Some(&op),
        || async {
            let e = cluster_exceptions.get(NAME).await.ok()?;
            (readiness(e.status.as_ref())? == ("False".into(), "Expired".into(), Some(0)))
                .then_some(())
        },
    )
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    eventually(wait, "an ExceptionExpired Event", Some(&op), || async {
        let list = events.list(&kube::api::ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ExceptionExpired")
                    && e.involved_object.name.as_deref() == Some(NAME)
            })
            .map(|_| ())
    })
    .await;
    assert_eq!(scan_jobs(&client).await.len(), jobs, "no rescan");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the installed RBAC suffices");
    drop(op);
    let _ = cluster_exceptions
        .delete(NAME, &DeleteParams::default())
        .await;
    namespaces.cleanup().await;
}

/// An OpenVEX document for `registry.e2e/exc/vex` at `digest` with `statements` (each given
/// the image as its product).
fn vex_document(digest: &str, statements: &[serde_json::Value]) -> String {
    let product = format!(
        "pkg:oci/vex@{}?repository_url=registry.e2e/exc/vex",
        digest.replace(':', "%3A")
    );
    let statements: Vec<serde_json::Value> = statements
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["products"] = json!([{"@id": product}]);
            s
        })
        .collect();
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://e2e.example/vex",
        "author": "e2e",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": statements,
    })
    .to_string()
}

/// A namespace's exception given by an OpenVEX document in a labelled ConfigMap: its
/// `not_affected` statement suppresses the finding with the justification; a later `affected`
/// statement in the ConfigMap takes it back; the ConfigMap deleted, the exception says
/// `Invalid` — with the installed RBAC (ConfigMaps by label), and without a rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make e2e"]
async fn a_vex_document_in_a_config_map_suppresses_its_statements_until_withdrawn() {
    const OP_NS: &str = "e2e-exc-vex";
    let wait = Duration::from_secs(120);
    let client = client().await;
    prepare_scan_namespace(&client).await;
    let digest = digest_for("exceptions-vex");
    // CVE-2019-18224 (libidn2-0, CRITICAL, fixed) and CVE-2019-18276 (bash, LOW).
    serve_log(&digest, &fixture(DEBIAN_LOG));
    let namespaces = TestNamespaces::create(&client, &[OP_NS]).await;
    let op = Operator::start("exceptions-vex", OP_NS, &[]);
    apply(
        &client,
        Some(OP_NS),
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
            "spec": {"containers": [{"name": "app", "image": format!("registry.e2e/exc/vex@{digest}")}]}
        }),
    )
    .await;
    eventually(wait, "the scan's result", Some(&op), || async {
        list_cis(&client, OP_NS).await.into_iter().find(scanned)
    })
    .await;
    let jobs = scan_jobs(&client).await.len();

    let not_affected = json!({
        "vulnerability": {"name": "CVE-2019-18224", "aliases": ["DSA-4613-1"]},
        "status": "not_affected",
        "justification": "vulnerable_code_not_present",
    });
    let config_map = |document: String| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "vex", "labels": {"image-scanner.statnett.no/vex": "true"}},
            "data": {"app.openvex.json": document},
        })
    };
    apply(
        &client,
        Some(OP_NS),
        config_map(vex_document(&digest, std::slice::from_ref(&not_affected))),
    )
    .await;
    let exceptions: Api<VulnerabilityException> = Api::namespaced(client.clone(), OP_NS);
    create(
        &exceptions,
        json!({
            "apiVersion": "stas.statnett.no/v1alpha1",
            "kind": "VulnerabilityException",
            "metadata": {"name": "vendor-vex"},
            "spec": {
                "vex": {"configMapKeyRef": {"name": "vex", "key": "app.openvex.json"}},
                "description": "the vendor's VEX for the app image",
            },
        }),
    )
    .await
    .expect("the exception is accepted");
    let cis = eventually(wait, "the finding suppressed", Some(&op), || async {
        list_cis(&client, OP_NS)
            .await
            .into_iter()
            .find(|c| suppressed_total(c) == Some(1))
    })
    .await;
    assert_eq!(severity_counts(&cis).get("CRITICAL"), Some(&0));
    let status = cis.status.clone().expect("a status");
    let suppressed = status.suppressed_count.expect("counted");
    assert_eq!(suppressed.by_reason.get("NotAffected"), Some(&1));
    if let Some(details) = &status.vulnerabilities {
        let marked: Vec<_> = details
            .iter()
            .filter(|v| v.suppressed_by.is_some())
            .map(|v| {
                (
                    v.vulnerability_id.as_str(),
                    v.suppressed_justification.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            marked,
            [("CVE-2019-18224", Some("vulnerable_code_not_present"))]
        );
    }
    eventually(
        wait,
        "the exception's status in force",
        Some(&op),
        || async {
            let e = exceptions.get("vendor-vex").await.ok()?;
            (readiness(e.status.as_ref())? == ("True".into(), "InForce".into(), Some(1)))
                .then_some(())
        },
    )
    .await;

    // The author learns more: affected after all. The finding is back.
    let affected = json!({
        "vulnerability": {"name": "CVE-2019-18224"},
        "status": "affected",
        "action_statement": "upgrade libidn2-0",
        "timestamp": "2026-11-20T00:00:00Z",
    });
    apply(
        &client,
        Some(OP_NS),
        config_map(vex_document(&digest, &[not_affected, affected])),
    )
    .await;
    eventually(wait, "the finding back", Some(&op), || async {
        list_cis(&client, OP_NS).await.into_iter().find(|c| {
            suppressed_total(c) == Some(0) && severity_counts(c).get("CRITICAL") == Some(&1)
        })
    })
    .await;

    // The ConfigMap withdrawn: the exception cannot be used, and says why.
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), OP_NS);
    maps.delete("vex", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually(wait, "the exception invalid", Some(&op), || async {
        let e = exceptions.get("vendor-vex").await.ok()?;
        let status = e.status.as_ref()?;
        let message = status.conditions.as_ref()?.first()?.message.clone();
        (readiness(Some(status))? == ("False".into(), "Invalid".into(), Some(0))
            && message.contains("not found"))
        .then_some(())
    })
    .await;
    assert_eq!(scan_jobs(&client).await.len(), jobs, "no rescan");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the installed RBAC suffices");
    drop(op);
    namespaces.cleanup().await;
}
