//! `/metrics`: the Go operator's three CIS metrics (a pure function of the CIS statuses, see
//! [`crate::core::metrics_model`]) plus operational metrics of this process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::core::engine::{CisKey, Engine, SinkStats};
use crate::core::metrics_model::{self, ExpositionCursor};
use crate::core::port::Outcome;
use crate::core::time::Timestamp;

/// API requests by verb and result, counted by the executor.
#[derive(Debug, Default)]
pub struct RequestCounters {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl RequestCounters {
    /// Counts one finished command.
    pub fn record(&self, verb: &'static str, outcome: &Outcome) {
        let result = match outcome {
            Outcome::Failed(e) => error_label(e.kind),
            _ => "ok",
        };
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((verb, result)).or_default() += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn error_label(kind: crate::core::port::ApiErrorKind) -> &'static str {
    use crate::core::port::ApiErrorKind::*;
    match kind {
        NotFound => "not_found",
        Conflict => "conflict",
        AlreadyExists => "already_exists",
        Gone => "gone",
        TooLarge => "too_large",
        Throttled => "throttled",
        ServerError => "server_error",
        Unknown => "unknown",
        Invalid => "invalid",
        Forbidden => "forbidden",
        NamespaceTerminating => "namespace_terminating",
        LogTooLarge => "log_too_large",
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn counter_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

/// Each notification sink's deliveries (`--notification-sinks-file`); nothing without sinks.
fn render_sinks(out: &mut String, engine: &Engine, now: Timestamp) {
    let sinks = &engine.config().sinks;
    if sinks.is_empty() {
        return;
    }
    let stats = engine.sink_stats();
    let rows = |out: &mut String, name: &str, value: &dyn Fn(&SinkStats) -> String| {
        for (sink, s) in sinks.iter().zip(&stats) {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.name, value(s));
        }
    };
    counter_header(
        out,
        "image_scanner_notifications_sent_total",
        "Change notices a sink answered with a 2xx.",
    );
    rows(out, "image_scanner_notifications_sent_total", &|s| {
        s.sent.to_string()
    });
    counter_header(
        out,
        "image_scanner_notifications_failed_total",
        "Delivery attempts that failed (each retry counts).",
    );
    rows(out, "image_scanner_notifications_failed_total", &|s| {
        s.failed.to_string()
    });
    counter_header(
        out,
        "image_scanner_notifications_dropped_total",
        "Change notices given up for a sink after its retries (or a 4xx that cannot succeed).",
    );
    rows(out, "image_scanner_notifications_dropped_total", &|s| {
        s.dropped.to_string()
    });
    let _ = writeln!(
        out,
        "# HELP image_scanner_notifications_queued Change notices under way to a sink (the CIS waiting their turn are image_scanner_notices_pending).\n# TYPE image_scanner_notifications_queued gauge"
    );
    rows(out, "image_scanner_notifications_queued", &|s| {
        s.queued.to_string()
    });
    let _ = writeln!(
        out,
        "# HELP image_scanner_notifications_oldest_queued_seconds Age of the oldest change notice under way to a sink (0: none).\n# TYPE image_scanner_notifications_oldest_queued_seconds gauge"
    );
    rows(
        out,
        "image_scanner_notifications_oldest_queued_seconds",
        &|s| {
            s.oldest_queued
                .map_or(0, |at| now.since(at).as_secs())
                .to_string()
        },
    );
}

/// Resident memory and CPU time of this process from `/proc` (Linux); absent elsewhere.
fn process_metrics(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, i.e. 11 and 12 after the name.
    let ticks: f64 = [11usize, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // Linux reports CPU time in clock ticks of 1/100 s on every platform Kubernetes runs on.
    counter_header(
        out,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    );
    let _ = writeln!(out, "process_cpu_seconds_total {}", ticks / 100.0);
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = rss_kb {
            gauge(
                out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                kb * 1024,
            );
        }
    }
}

/// Size a `/metrics` chunk reaches before it is sent: big enough that a scrape at 10,000 pods
/// (~17 MB) takes a few hundred engine turns, small enough to be noise in the operator's memory.
pub const METRICS_CHUNK_BYTES: usize = 64 * 1024;

/// Renders the next chunk of `/metrics` from `cursor`: CIS series (see
/// [`metrics_model::render_chunk`]) until the chunk holds `chunk_bytes`, then, in the last
/// chunk, the operational metrics. Returns the text and where the next chunk starts (`None`
/// after the last).
pub fn render_metrics_chunk(
    engine: &Engine,
    counters: &RequestCounters,
    metric_labels: &[String],
    now: Timestamp,
    mut cursor: ExpositionCursor,
    chunk_bytes: usize,
) -> (String, Option<ExpositionCursor>) {
    let mut out = String::with_capacity(chunk_bytes + chunk_bytes / 4);
    while !cursor.is_done() && out.len() < chunk_bytes {
        let after = cursor
            .after()
            .map(|(namespace, name)| CisKey::new(namespace, name));
        let views = engine
            .cis_views_after(after.as_ref())
            .map(metrics_model::CisMetricView::from_view);
        metrics_model::render_chunk(&mut out, &mut cursor, views, metric_labels, chunk_bytes);
    }
    if !cursor.is_done() {
        return (out, Some(cursor));
    }
    render_operational(&mut out, engine, counters, now);
    (out, None)
}

/// This process's own metrics: requests, scans, queue, coverage, leadership, resources.
fn render_operational(
    out: &mut String,
    engine: &Engine,
    counters: &RequestCounters,
    now: Timestamp,
) {
    let stats = engine.stats();
    counter_header(
        out,
        "image_scanner_api_requests_total",
        "API requests made by the operator, by verb and result (replaces the Go operator's client-go rest_client_requests_total).",
    );
    for ((verb, result), n) in counters.snapshot() {
        let _ = writeln!(
            out,
            "image_scanner_api_requests_total{{verb=\"{verb}\",result=\"{result}\"}} {n}"
        );
    }
    counter_header(
        out,
        "image_scanner_scan_jobs_created_total",
        "Scan Jobs created (the Go operator had no equivalent; its Jobs showed only in controller_runtime_reconcile_total).",
    );
    let _ = writeln!(
        out,
        "image_scanner_scan_jobs_created_total {}",
        stats.jobs_created
    );
    counter_header(
        out,
        "image_scanner_scans_total",
        "Finished scans of image digests, by outcome (lost: succeeded, but the pod was gone before its log was read; scanned again at once) (replaces the Go operator's controller_runtime_reconcile_total{controller=\"job\"}).",
    );
    let _ = writeln!(
        out,
        "image_scanner_scans_total{{outcome=\"succeeded\"}} {}",
        stats.scans_succeeded
    );
    let _ = writeln!(
        out,
        "image_scanner_scans_total{{outcome=\"failed\"}} {}",
        stats.scans_failed
    );
    let _ = writeln!(
        out,
        "image_scanner_scans_total{{outcome=\"lost\"}} {}",
        stats.results_lost
    );
    counter_header(
        out,
        "image_scanner_reports_skipped_total",
        "OpenReports Reports that could not be written; the CIS status got the result and details instead (the Go operator counted them in controller_runtime_reconcile_errors_total).",
    );
    let _ = writeln!(
        out,
        "image_scanner_reports_skipped_total {}",
        stats.reports_skipped
    );
    counter_header(
        out,
        "image_scanner_status_writes_total",
        "CIS status writes (with image_scanner_spec_writes_total, replaces the Go operator's controller_runtime_reconcile_total{controller=\"containerimagescan\"}).",
    );
    let _ = writeln!(
        out,
        "image_scanner_status_writes_total {}",
        stats.status_writes
    );
    counter_header(
        out,
        "image_scanner_spec_writes_total",
        "CIS metadata/spec applies and deletes (replaces the Go operator's controller_runtime_reconcile_total{controller=\"pod\"}).",
    );
    let _ = writeln!(out, "image_scanner_spec_writes_total {}", stats.spec_writes);
    gauge(
        out,
        "image_scanner_active_scan_jobs",
        "Scan Jobs running now (counted against ACTIVE_SCAN_JOB_LIMIT; no Go operator equivalent).",
        engine.active_jobs(),
    );
    gauge(
        out,
        "image_scanner_queue_depth",
        "Keys waiting for a decision or a scan slot (replaces controller-runtime's workqueue_depth).",
        engine.queue_depth(),
    );
    gauge(
        out,
        "image_scanner_notices_pending",
        "CIS whose change of findings (status.notableFindings vs announcedFindings) waits to be told by Events.",
        engine.notices_pending(),
    );
    render_sinks(out, engine, now);
    gauge(
        out,
        "image_scanner_details_bytes",
        "Bytes of vulnerability details the CIS statuses and Reports keep in etcd (the sum of status.detailsBytes).",
        engine.details_bytes(),
    );
    gauge(
        out,
        "image_scanner_details_budget_bytes",
        "The cluster-wide bound on those bytes, --details-total-bytes (0: none); past half of it new results get less room.",
        engine.config().details_total_bytes,
    );
    gauge(
        out,
        "image_scanner_report_cache_bytes",
        "Bytes of parsed scan reports kept to serve later CIS of the same digest.",
        engine.report_cache_bytes(),
    );
    gauge(
        out,
        "image_scanner_commands_in_flight",
        "API commands in flight (replaces controller-runtime's controller_runtime_active_workers).",
        engine.inflight(),
    );
    let coverage = engine.coverage(now);
    gauge(
        out,
        "image_scanner_running_containers",
        "Containers with a resolved image digest in scanned namespaces.",
        coverage.containers,
    );
    gauge(
        out,
        "image_scanner_coverage_ratio",
        "Share of running containers whose CIS shows a successful scan of their digest.",
        coverage.ratio(),
    );
    gauge(
        out,
        "image_scanner_oldest_unscanned_image_age_seconds",
        "Age of the oldest image digest seen running that has no scan result yet.",
        coverage.oldest_unscanned.map_or(0, |d| d.as_secs()),
    );
    let _ = writeln!(
        out,
        "# HELP image_scanner_time_to_first_result_seconds Time from first seeing a digest to its first scan result.\n# TYPE image_scanner_time_to_first_result_seconds summary"
    );
    let first = engine.first_result_latency();
    let _ = writeln!(
        out,
        "image_scanner_time_to_first_result_seconds_sum {}",
        first.sum_secs
    );
    let _ = writeln!(
        out,
        "image_scanner_time_to_first_result_seconds_count {}",
        first.count
    );
    let last_success = engine
        .cis_views()
        .filter_map(|c| c.status.last_successful_scan_time)
        .max();
    gauge(
        out,
        "image_scanner_last_successful_scan_timestamp_seconds",
        "Unix time of the newest successful scan shown by any CIS (0 when none).",
        last_success.map_or(0, |t| t.as_secs()),
    );
    gauge(
        out,
        "image_scanner_leader",
        "1 when this replica holds the lease (replaces controller-runtime's leader_election_master_status).",
        u8::from(engine.is_leading()),
    );
    // The Go operator's e2e test probes this controller-runtime series (spec §14): a constant
    // that says what it is, instead of a lookalike of a certificate watcher we do not have.
    counter_header(
        out,
        "certwatcher_read_certificate_errors_total",
        "Always 0: this operator serves /metrics without TLS and watches no certificate; the series is kept because the Go operator's e2e tests and dashboards probe it to see that the endpoint is up.",
    );
    let _ = writeln!(out, "certwatcher_read_certificate_errors_total 0");
    process_metrics(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::EngineConfig;
    use crate::core::port::{CisStatusView, CisView, Observation, StreamId, WatchEvent};
    use crate::crd::VulnerabilitySummary;

    fn cis(i: usize) -> CisView {
        let summary = (!i.is_multiple_of(3)).then(|| {
            std::sync::Arc::new(VulnerabilitySummary {
                severity_count: Some([("HIGH".to_owned(), i32::try_from(i).unwrap_or(0))].into()),
                fixed_count: 1,
                unfixed_count: 2,
                fixed_severity_count: None,
            })
        });
        let mut view = crate::core::test_kit::cis(
            &format!("cis-{i:03}"),
            &format!("uid-{i}"),
            &format!("sha256:{i:064}"),
            CisStatusView {
                summary,
                ..Default::default()
            },
        );
        view.namespace = format!("ns{}", i % 4);
        view
    }

    /// The chunks of `/metrics` add up to the pure exposition of the engine's CIS followed by
    /// the operational metrics, and each stays near the chunk size.
    #[test]
    fn chunks_add_up_to_the_exposition() {
        let now = Timestamp(1_700_000_000_000);
        let mut engine = Engine::new(EngineConfig::for_tests("scans"));
        for i in 0..60 {
            engine.observe(
                Observation::Cis {
                    stream: StreamId(2),
                    event: WatchEvent::Apply(cis(i)),
                },
                now,
            );
        }
        let counters = RequestCounters::default();
        let views: Vec<metrics_model::CisMetricView> = engine
            .cis_views()
            .map(metrics_model::CisMetricView::from_view)
            .collect();
        let expected = metrics_model::render(&views, &[]);
        assert_eq!(views.len(), 60);

        let chunk_bytes = 2000;
        let mut text = String::new();
        let mut chunks = 0;
        let mut cursor = Some(ExpositionCursor::default());
        while let Some(at) = cursor {
            let (chunk, next) = render_metrics_chunk(&engine, &counters, &[], now, at, chunk_bytes);
            if next.is_some() {
                assert!(chunk.len() < chunk_bytes + 1000, "{}", chunk.len());
            }
            text.push_str(&chunk);
            cursor = next;
            chunks += 1;
            assert!(chunks < 1000, "the cursor does not move");
        }
        assert!(chunks > 5, "{chunks} chunks");
        let (cis_part, operational) = text.split_at(expected.len());
        assert_eq!(cis_part, expected);
        assert!(operational.starts_with("# HELP image_scanner_api_requests_total"));
        assert!(operational.contains("image_scanner_leader 0"));
    }
}
