use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::crd::Severity;

fn rec(critical: &[&str], fixable: &[&str]) -> FindingRecord {
    let mut ids = BTreeMap::new();
    if !critical.is_empty() {
        ids.insert(
            "CRITICAL".to_string(),
            critical.iter().map(|s| s.to_string()).collect(),
        );
    }
    FindingRecord {
        min_severity: Severity::High,
        ids,
        fixable: fixable.iter().map(|s| s.to_string()).collect(),
        left_out: 0,
    }
}

fn named(severity: Severity, id: &str) -> Named {
    Named {
        severity,
        id: id.to_string(),
    }
}

fn notification(new: usize) -> Notification {
    Notification {
        key: "0123456789abcdef0123456789abcdef".into(),
        workload: WorkloadId {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        },
        changes: vec![ContainerChange {
            container: "app".into(),
            image: "registry.example/shop/web".into(),
            digest: "sha256:abc".into(),
            cis: "deployment-web-app".into(),
            diff: Diff {
                new: (0..new)
                    .map(|i| named(Severity::Critical, &format!("CVE-2026-{i:05}")))
                    .collect(),
                resolved: vec![named(Severity::High, "CVE-2025-1")],
                fixable: vec![],
            },
        }],
    }
}

fn parse(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("the payload is JSON")
}

#[test]
fn the_key_names_the_change_not_the_order_or_the_delivery() {
    let (a, b, c) = (
        rec(&[], &[]),
        rec(&["CVE-1"], &[]),
        rec(&["CVE-1"], &["CVE-1"]),
    );
    let key = idempotency_key([("uid-1", &a, &b), ("uid-2", &b, &c)]);
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        key,
        idempotency_key([("uid-2", &b, &c), ("uid-1", &a, &b)]),
        "the order of the CIS does not matter"
    );
    // Any other change, CIS or baseline is another key.
    for other in [
        idempotency_key([("uid-1", &a, &b)]),
        idempotency_key([("uid-1", &a, &c), ("uid-2", &b, &c)]),
        idempotency_key([("uid-3", &a, &b), ("uid-2", &b, &c)]),
        idempotency_key([("uid-1", &b, &b), ("uid-2", &b, &c)]),
    ] {
        assert_ne!(key, other);
    }
}

#[test]
fn a_cloud_event_is_structured_mode_with_the_key_as_id() {
    let n = notification(2);
    let at = Timestamp::from_secs(1_764_000_000);
    let body = parse(&payload(SinkFormat::CloudEvents, &n, at));
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["id"], n.key.as_str());
    assert_eq!(body["type"], CLOUDEVENT_TYPE);
    assert_eq!(body["source"], SOURCE);
    assert_eq!(body["subject"], "shop/Deployment/web");
    assert_eq!(body["time"], "2025-11-24T16:00:00Z");
    assert_eq!(body["datacontenttype"], "application/json");
    let c = &body["data"]["containers"][0];
    assert_eq!(c["container"], "app");
    assert_eq!(c["digest"], "sha256:abc");
    assert_eq!(c["new"]["count"], 2);
    assert_eq!(
        c["new"]["ids"]["CRITICAL"],
        serde_json::json!(["CVE-2026-00000", "CVE-2026-00001"])
    );
    assert_eq!(
        c["resolved"]["ids"]["HIGH"],
        serde_json::json!(["CVE-2025-1"])
    );
    assert_eq!(c["fixAvailable"]["count"], 0);
    assert_eq!(
        SinkFormat::CloudEvents.content_type(),
        "application/cloudevents+json"
    );
}

#[test]
fn payloads_list_a_bounded_number_of_ids_and_count_the_rest() {
    let n = notification(5_000);
    for format in [
        SinkFormat::CloudEvents,
        SinkFormat::Slack,
        SinkFormat::Alertmanager,
    ] {
        let bytes = payload(format, &n, Timestamp::EPOCH);
        assert!(bytes.len() < 16 * 1024, "{format:?}: {} bytes", bytes.len());
    }
    let body = parse(&payload(SinkFormat::CloudEvents, &n, Timestamp::EPOCH));
    let new = &body["data"]["containers"][0]["new"];
    assert_eq!(new["count"], 5_000);
    assert_eq!(new["truncated"], true);
    assert_eq!(
        new["ids"]["CRITICAL"].as_array().map(Vec::len),
        Some(MAX_IDS_LISTED)
    );
}

#[test]
fn slack_gets_text_and_alertmanager_its_webhook_shape() {
    let n = notification(1);
    let slack = parse(&payload(SinkFormat::Slack, &n, Timestamp::EPOCH));
    let text = slack["text"].as_str().expect("text");
    assert!(text.starts_with("Vulnerabilities changed in Deployment shop/web:"));
    assert!(
        text.contains("1 new vulnerability in container app"),
        "{text}"
    );
    assert!(text.contains("CRITICAL CVE-2026-00000"), "{text}");

    let am = parse(&payload(SinkFormat::Alertmanager, &n, Timestamp::EPOCH));
    assert_eq!(am["version"], "4");
    assert_eq!(am["status"], "firing");
    assert_eq!(am["groupKey"], n.key.as_str());
    let alert = &am["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "ImageVulnerabilitiesChanged");
    assert_eq!(alert["labels"]["severity"], "CRITICAL");
    assert_eq!(alert["labels"]["container"], "app");
    assert_eq!(alert["status"], "firing");

    // Only resolved findings: a resolved alert.
    let only_resolved = parse(&payload(
        SinkFormat::Alertmanager,
        &notification(0),
        Timestamp::EPOCH,
    ));
    assert_eq!(only_resolved["status"], "resolved");
    assert_eq!(only_resolved["alerts"][0]["labels"]["severity"], "none");
}

#[test]
fn formats_are_named_as_configured() {
    for f in [
        SinkFormat::CloudEvents,
        SinkFormat::Slack,
        SinkFormat::Alertmanager,
    ] {
        assert_eq!(SinkFormat::parse(f.as_str()), Some(f));
    }
    assert_eq!(SinkFormat::parse("teams"), None);
}

proptest! {
    /// Keys of different changes differ; the same change always gives the same key.
    #[test]
    fn keys_are_a_function_of_the_change(
        uids in proptest::collection::vec("[a-f0-9]{4}", 1..4),
        told in proptest::collection::vec("CVE-[0-9]{2}", 0..5),
    ) {
        let before = rec(&[], &[]);
        let ids: Vec<&str> = told.iter().map(String::as_str).collect();
        let after = rec(&ids, &[]);
        let key = |a: &FindingRecord| idempotency_key(uids.iter().map(|u| (u.as_str(), &before, a)));
        prop_assert_eq!(key(&after), key(&after.clone()));
        let mut more = ids.clone();
        more.push("CVE-999");
        let other = rec(&more, &[]);
        prop_assert_ne!(key(&after), key(&other));
    }
}
