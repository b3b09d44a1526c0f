//! Deliveries of change notices to sinks (`engine::deliveries`), through the scan-stage
//! harness: a real scan's change, the test kit's server answering the deliveries.

use std::collections::BTreeSet;

use super::*;
use crate::engine::deliveries::{MAX_ATTEMPTS, RETRY_BASE};
use crate::notification::{SinkFormat, SinkSpec};

fn with_sinks(formats: &[SinkFormat]) -> EngineConfig {
    EngineConfig {
        sinks: formats
            .iter()
            .enumerate()
            .map(|(i, format)| SinkSpec {
                name: format!("sink-{i}"),
                format: *format,
            })
            .collect(),
        ..config()
    }
}

/// A first result (the baseline), then a rescan 14 h later that finds one more CRITICAL.
fn change(api: &mut Api) {
    api.finish_scan(report(1, 0));
    rescan(api, report(2, 0));
}

/// A rescan 14 h later whose log is `log`, answered up to the log read: unlike
/// `Api::scan`, what the answer starts (deliveries, held or not) is left to the test.
fn rescan(api: &mut Api, log: Vec<u8>) {
    api.now = api.now.plus(Duration::from_secs(14 * 3600));
    api.until_job_created();
    let pod = api.pod("ok", exited(0));
    api.put_pod(pod);
    api.finish(true, "Complete", "");
    let (id, _, _, _) = api.log_read();
    api.reply(id, Outcome::Log(log));
}

fn told(api: &Api) -> bool {
    let s = api.status("a");
    s.announced == s.notable
}

#[test]
fn a_change_is_delivered_to_each_sink_under_one_key_before_it_is_recorded_as_told() {
    let mut api = api_with_job(with_sinks(&[SinkFormat::CloudEvents, SinkFormat::Slack]));
    api.hold("deliver");
    change(&mut api);
    let held = api.run();
    assert_eq!(super::super::tests::verbs(&held), ["deliver", "deliver"]);
    assert!(
        !told(&api),
        "not recorded while the sinks have not answered"
    );
    let mut keys = Vec::new();
    for c in &held {
        let Action::Deliver {
            sink,
            key,
            content_type,
            body,
        } = &c.action
        else {
            panic!("a delivery");
        };
        keys.push(key.clone());
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
        if *sink == 0 {
            assert_eq!(*content_type, "application/cloudevents+json");
            assert_eq!(v["id"], key.as_str());
            assert_eq!(v["subject"], "ns/Pod/a");
            let c = &v["data"]["containers"][0];
            assert_eq!(
                c["new"]["ids"]["CRITICAL"],
                serde_json::json!(["CVE-2026-00001"])
            );
        } else {
            assert!(
                v["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("CVE-2026-00001"))
            );
        }
        let outcome = api.answer_held(&c.action);
        api.reply(c.id, outcome);
    }
    assert_eq!(keys[0], keys[1], "one change, one key");
    assert!(api.run().is_empty());
    assert!(told(&api), "recorded once both sinks answered");
    let stats = api.e.sink_stats();
    assert_eq!((stats[0].sent, stats[1].sent), (1, 1));
    assert_eq!(stats[0].queued, 0);
}

#[test]
fn a_failing_sink_is_tried_again_with_growing_back_off_and_the_change_waits_in_the_status() {
    let mut api = api_with_job(with_sinks(&[SinkFormat::CloudEvents]));
    for _ in 0..3 {
        api.answer_next("deliver", failed(ApiErrorKind::ServerError));
    }
    change(&mut api);
    assert!(api.run().is_empty());
    assert!(api.deliveries.is_empty());
    assert!(!told(&api));
    assert_eq!(api.e.sink_stats()[0].queued, 1);
    // When each attempt was made.
    let attempts = |api: &Api| {
        api.requests
            .iter()
            .filter(|a| matches!(a, Action::Deliver { .. }))
            .count()
    };
    let mut at = vec![api.now];
    while api.deliveries.is_empty() {
        let before = attempts(&api);
        api.wait_for_timer();
        assert!(api.run().is_empty());
        if attempts(&api) > before {
            at.push(api.now);
        }
    }
    let waits: Vec<Duration> = at.windows(2).map(|w| w[1].since(w[0])).collect();
    assert_eq!(
        waits,
        [RETRY_BASE, RETRY_BASE * 2, RETRY_BASE * 4],
        "each failure doubles the wait"
    );
    assert!(told(&api));
    let stats = &api.e.sink_stats()[0];
    assert_eq!((stats.sent, stats.failed, stats.dropped), (1, 3, 0));
    // Every attempt carried the same key.
    let keys: BTreeSet<String> = api
        .requests
        .iter()
        .filter_map(|a| match a {
            Action::Deliver { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 1);
}

#[test]
fn a_delivery_is_given_up_after_its_attempts_or_at_once_when_the_request_is_refused() {
    let mut api = api_with_job(with_sinks(&[SinkFormat::Alertmanager]));
    for _ in 0..MAX_ATTEMPTS {
        api.answer_next("deliver", failed(ApiErrorKind::Unknown));
    }
    change(&mut api);
    assert!(api.run().is_empty());
    assert!(!told(&api));
    let mut rounds = 0;
    while !told(&api) {
        api.wait_for_timer();
        assert!(api.run().is_empty());
        rounds += 1;
        assert!(rounds < 50, "never given up");
    }
    let stats = &api.e.sink_stats()[0];
    assert_eq!(
        (stats.sent, stats.failed, stats.dropped),
        (0, u64::from(MAX_ATTEMPTS), 1),
        "given up, and the change recorded as told (the Events were)"
    );

    // A 4xx the receiver means (400, 404): not tried again.
    let mut api = api_with_job(with_sinks(&[SinkFormat::Slack]));
    api.answer_next("deliver", failed(ApiErrorKind::Invalid));
    change(&mut api);
    assert!(api.run().is_empty());
    assert!(told(&api), "given up at once, so recorded");
    assert_eq!(api.e.sink_stats()[0].dropped, 1);
}

#[test]
fn a_sink_that_never_answers_holds_neither_the_command_window_nor_the_scans() {
    let cfg = EngineConfig {
        max_inflight: 1,
        ..with_sinks(&[SinkFormat::CloudEvents])
    };
    let mut api = api_with_job(cfg);
    api.hold("deliver");
    change(&mut api);
    let held = api.run();
    assert_eq!(super::super::tests::verbs(&held), ["deliver"]);
    assert_eq!(api.e.inflight(), 0, "a delivery is not an API command");
    // The next rescan runs and is written, with a window of one, while the delivery hangs.
    rescan(&mut api, report(3, 0));
    assert!(
        api.run().is_empty(),
        "no second delivery while one is under way"
    );
    assert_eq!(api.critical_count("a"), Some(3));
    assert_eq!(api.e.sink_stats()[0].queued, 1);
    // The shell's timeout ends it; the change is then delivered and told.
    api.reply(held[0].id, failed(ApiErrorKind::Unknown));
    api.release("deliver");
    while !told(&api) {
        api.wait_for_timer();
        api.run();
    }
    assert!(!api.deliveries.is_empty());
}
