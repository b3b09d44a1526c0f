//! Outbound notifications of a workload's change of findings (issue 21): the payloads a sink
//! receives, and the key that makes redeliveries recognisable.
//!
//! An announcement (`engine::notices`) is delivered to every configured sink at least once:
//! after a failed Event, a restart or a failover it is delivered again, so each payload carries
//! an idempotency key — a hash of what is told (each CIS's UID, the record told before and the
//! record told now) — that is the same for every delivery of the same change and differs for
//! any other, in the CloudEvents `id`, the `Idempotency-Key` header, and the Alertmanager
//! fingerprint. Payloads are bounded: at most [`MAX_IDS_LISTED`] IDs per kind of change and
//! container, the rest counted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::crd::FindingRecord;
use crate::fingerprint::fnv1a64;
use crate::notice::{Diff, Named, notes};
use crate::time::Timestamp;

/// At most this many IDs per kind of change (new, fixable, resolved) and container in a payload.
pub const MAX_IDS_LISTED: usize = 100;
/// The CloudEvents `type` of a change of findings.
pub const CLOUDEVENT_TYPE: &str = "no.statnett.image-scanner.findings.changed.v1";
/// The CloudEvents `source`, and the Alertmanager-style `receiver`/generator name.
pub const SOURCE: &str = "image-scanner";

/// How a sink wants its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SinkFormat {
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    CloudEvents,
    /// A Slack incoming-webhook message (`{"text": …}`, also taken by Mattermost, Rocket.Chat
    /// and Teams' workflow "post to a channel when a webhook request is received").
    Slack,
    /// The payload Alertmanager sends to a webhook receiver (version 4), one alert per
    /// container, so receivers built for Alertmanager take it as it is.
    Alertmanager,
}

impl SinkFormat {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkFormat::CloudEvents => "cloudevents",
            SinkFormat::Slack => "slack",
            SinkFormat::Alertmanager => "alertmanager",
        }
    }

    /// The format named `name` in the configuration.
    pub fn parse(name: &str) -> Option<SinkFormat> {
        [
            SinkFormat::CloudEvents,
            SinkFormat::Slack,
            SinkFormat::Alertmanager,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }

    /// The `Content-Type` of its payloads.
    pub fn content_type(self) -> &'static str {
        match self {
            SinkFormat::CloudEvents => "application/cloudevents+json",
            SinkFormat::Slack | SinkFormat::Alertmanager => "application/json",
        }
    }
}

/// What the core knows of a sink: its name (for metrics) and its format. Where it is and how
/// to reach it is the shell's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSpec {
    pub name: String,
    pub format: SinkFormat,
}

/// One container's change in an announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerChange {
    pub container: String,
    /// Image name without the digest.
    pub image: String,
    pub digest: String,
    /// The CIS's name.
    pub cis: String,
    pub diff: Diff,
}

/// A top workload, as a CIS names it (`spec.workload`) in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadId {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

/// A workload's change of findings, as told to the sinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Same for every delivery of the same change (see the module comment).
    pub key: String,
    pub workload: WorkloadId,
    pub changes: Vec<ContainerChange>,
}

/// The idempotency key of telling each CIS (UID) of the change from its first record to its
/// second: 32 hex digits of two FNV-1a hashes of a canonical encoding, independent of the
/// order the CIS are given in.
pub fn idempotency_key<'a>(
    told: impl IntoIterator<Item = (&'a str, &'a FindingRecord, &'a FindingRecord)>,
) -> String {
    let mut parts: Vec<String> = told
        .into_iter()
        .map(|(uid, before, after)| {
            // serde_json writes maps of a BTreeMap in key order: canonical.
            let encode = |r: &FindingRecord| serde_json::to_string(r).unwrap_or_default();
            format!("{uid}\u{0}{}\u{0}{}", encode(before), encode(after))
        })
        .collect();
    parts.sort();
    let joined = parts.join("\u{1}");
    let salted = format!("image-scanner\u{0}{joined}");
    format!(
        "{:016x}{:016x}",
        fnv1a64(joined.as_bytes()),
        fnv1a64(salted.as_bytes())
    )
}

/// The payload for a sink of `format`, at `now`.
pub fn payload(format: SinkFormat, n: &Notification, now: Timestamp) -> Vec<u8> {
    let value = match format {
        SinkFormat::CloudEvents => cloud_event(n, now),
        SinkFormat::Slack => json!({ "text": text(n) }),
        SinkFormat::Alertmanager => alertmanager(n, now),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn workload_ref(n: &Notification) -> String {
    let w = &n.workload;
    format!("{}/{}/{}", w.namespace, w.kind, w.name)
}

fn cloud_event(n: &Notification, now: Timestamp) -> Value {
    let containers: Vec<Value> = n
        .changes
        .iter()
        .map(|c| {
            json!({
                "container": c.container,
                "image": c.image,
                "digest": c.digest,
                "containerImageScan": c.cis,
                "new": listed(&c.diff.new),
                "fixAvailable": listed(&c.diff.fixable),
                "resolved": listed(&c.diff.resolved),
            })
        })
        .collect();
    json!({
        "specversion": "1.0",
        "id": n.key,
        "source": SOURCE,
        "type": CLOUDEVENT_TYPE,
        "subject": workload_ref(n),
        "time": now.truncate_to_secs().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "workload": {"namespace": n.workload.namespace, "kind": n.workload.kind, "name": n.workload.name},
            "containers": containers,
            "summary": text(n),
        },
    })
}

/// IDs of one kind of change by severity (most severe first), at most [`MAX_IDS_LISTED`],
/// with the count of all.
fn listed(list: &[Named]) -> Value {
    let mut ids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in list.iter().take(MAX_IDS_LISTED) {
        ids.entry(n.severity.as_str()).or_default().push(&n.id);
    }
    json!({
        "count": list.len(),
        "ids": ids,
        "truncated": list.len() > MAX_IDS_LISTED,
    })
}

/// The change told as lines of text: one per container and kind of change, IDs bounded as in
/// the Events.
fn text(n: &Notification) -> String {
    let w = &n.workload;
    let mut lines = vec![format!(
        "Vulnerabilities changed in {} {}/{}:",
        w.kind, w.namespace, w.name
    )];
    for c in &n.changes {
        let subject = format!("container {} ({}@{})", c.container, c.image, c.digest);
        for note in notes(&c.diff, &subject) {
            lines.push(format!("• {}", note.note));
        }
    }
    lines.join("\n")
}

fn alertmanager(n: &Notification, now: Timestamp) -> Value {
    let w = &n.workload;
    let at = now.truncate_to_secs().to_string();
    let alerts: Vec<Value> = n
        .changes
        .iter()
        .map(|c| {
            let worst = c.diff.new.first().map(|f| f.severity.as_str());
            let status = if c.diff.new.is_empty() {
                "resolved"
            } else {
                "firing"
            };
            let summary = notes(&c.diff, &format!("container {}", c.container))
                .into_iter()
                .map(|e| e.note)
                .collect::<Vec<_>>()
                .join("\n");
            json!({
                "status": status,
                "labels": {
                    "alertname": "ImageVulnerabilitiesChanged",
                    "namespace": w.namespace,
                    "workload_kind": w.kind,
                    "workload": w.name,
                    "container": c.container,
                    "image": c.image,
                    "severity": worst.unwrap_or("none"),
                },
                "annotations": {
                    "summary": summary,
                    "digest": c.digest,
                    "containerimagescan": c.cis,
                },
                "startsAt": at,
                "endsAt": if status == "resolved" { at.clone() } else { "0001-01-01T00:00:00Z".to_string() },
                "generatorURL": "",
                "fingerprint": format!("{}-{}", n.key.get(..16).unwrap_or(&n.key), c.container),
            })
        })
        .collect();
    let firing = n.changes.iter().any(|c| !c.diff.new.is_empty());
    json!({
        "version": "4",
        "groupKey": n.key,
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": SOURCE,
        "groupLabels": {"namespace": w.namespace, "workload": w.name},
        "commonLabels": {
            "alertname": "ImageVulnerabilitiesChanged",
            "namespace": w.namespace,
            "workload_kind": w.kind,
            "workload": w.name,
        },
        "commonAnnotations": {"summary": text(n)},
        "externalURL": "",
        "alerts": alerts,
    })
}

#[cfg(test)]
#[path = "notification_tests.rs"]
mod tests;
