//! The per-CIS Prometheus metrics (spec §14) as a pure function from CIS views to the text
//! exposition format.
//!
//! Gauges, each with the common labels: one label per configured `CIS_METRICS_LABELS`
//! key (the key with every run of characters outside `[a-zA-Z0-9_]` replaced by one `_`;
//! value = that CIS label or `""`), then `namespace`, `name`, `image_name`,
//! `image_digest`, `image_tag`.
//!
//! * `image_scanner_container_image_scan_success`: `0` iff the CIS has `Stalled=True`.
//! * `image_scanner_container_image_issues{severity}`: one series per non-zero count of the
//!   CIS's `vulnerabilitySummary.severityCount`, as the Go operator's default (Report-based)
//!   metrics: zeros are most of the series (four of five at 10,000 pods) and `sum`/alerts
//!   read an absent series as 0. The same for `image_scanner_container_image_fixable_issues`.
//! * `image_scanner_container_image_patch_status{condition="fixed"|"unfixed"}`: from
//!   `fixedCount`/`unfixedCount`, both always present when the CIS has a summary.
//! * `image_scanner_container_image_suppressed_issues{reason}`: findings vulnerability
//!   exceptions suppress, one series per reason with any (`suppressedCount.byReason`). The
//!   families above count only what no exception covers, so alerts on them skip accepted risk.
//!
//! Design: issues and patch status come from the CIS summary, which is exact and never
//! truncated, instead of from the (possibly truncated) Report (fixes quirk §19.6, which
//! also gave UNKNOWN an empty `severity` label). A CIS without summary only gets
//! `scan_success`.
//!
//! Output is deterministic: families in the order above, series sorted by namespace, name,
//! then the extra label's value. Within a series, label names are sorted, as the Go and
//! Rust Prometheus clients print them (so the §14 reference exposition matches byte for
//! byte). A configured key whose sanitised name is empty, or collides with a fixed label
//! or an earlier key, is left out (duplicate label names would make the exposition
//! invalid); a name starting with a digit gets a leading `_`.

use std::borrow::Borrow;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::crd::{ContainerImageScan, SuppressedCount, VulnerabilitySummary};

/// Name of the scan-success gauge.
pub const SCAN_SUCCESS: &str = "image_scanner_container_image_scan_success";
/// Name of the issues gauge.
pub const ISSUES: &str = "image_scanner_container_image_issues";
/// Name of the patch-status gauge.
pub const PATCH_STATUS: &str = "image_scanner_container_image_patch_status";
/// Extension: vulnerabilities with a fixed version, by severity (from the summary's
/// `fixedSeverityCount`; absent for CIS written by the Go operator).
pub const FIXABLE_ISSUES: &str = "image_scanner_container_image_fixable_issues";
/// Extension: findings vulnerability exceptions suppress, by the exception's reason (from
/// `suppressedCount.byReason`). They are in none of the families above.
pub const SUPPRESSED_ISSUES: &str = "image_scanner_container_image_suppressed_issues";

const SCAN_SUCCESS_HELP: &str = "Displays whether or not container image scan was a success";
const ISSUES_HELP: &str = "Number of container image scan issues";
const FIXABLE_ISSUES_HELP: &str =
    "Number of container image vulnerabilities that have a fixed version";
const PATCH_STATUS_HELP: &str =
    "Number of detected container image vulnerabilities grouped by fixed/unfixed";
const SUPPRESSED_ISSUES_HELP: &str =
    "Number of container image vulnerabilities suppressed by vulnerability exceptions, by reason";

const FIXED_LABELS: [&str; 5] = [
    "namespace",
    "name",
    "image_name",
    "image_digest",
    "image_tag",
];

/// What the metrics need from one CIS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CisMetricView {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The CIS's labels (at least those named in `CIS_METRICS_LABELS`).
    pub labels: Arc<crate::port::Labels>,
    /// `spec.name`.
    pub image_name: String,
    /// `spec.digest`.
    pub image_digest: String,
    /// `spec.tag`, empty when unset.
    pub image_tag: String,
    /// Whether the CIS has condition `Stalled=True`.
    pub stalled: bool,
    /// `status.vulnerabilitySummary`.
    pub summary: Option<Arc<VulnerabilitySummary>>,
    /// `status.suppressedCount`.
    pub suppressed: Option<Arc<SuppressedCount>>,
}

impl CisMetricView {
    /// The view of the engine's compact CIS.
    pub fn from_view(cis: &crate::port::CisView) -> Self {
        CisMetricView {
            namespace: cis.namespace.clone(),
            name: cis.name.clone(),
            labels: cis.labels.clone(),
            image_name: cis.spec.name.clone(),
            image_digest: cis.spec.digest.clone(),
            image_tag: cis.spec.tag.clone().unwrap_or_default(),
            stalled: cis
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True"),
            summary: cis.status.summary.clone(),
            suppressed: cis.status.suppressed.clone(),
        }
    }

    /// The view of a CIS object.
    pub fn from_cis(cis: &ContainerImageScan) -> Self {
        let status = cis.status.as_ref();
        CisMetricView {
            namespace: cis.metadata.namespace.clone().unwrap_or_default(),
            name: cis.metadata.name.clone().unwrap_or_default(),
            labels: Arc::new(cis.metadata.labels.clone().unwrap_or_default()),
            image_name: cis.spec.name.clone(),
            image_digest: cis.spec.digest.clone(),
            image_tag: cis.spec.tag.clone().unwrap_or_default(),
            stalled: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Stalled" && c.status == "True")
                }),
            summary: status.and_then(|s| s.vulnerability_summary.clone().map(Arc::new)),
            suppressed: status.and_then(|s| s.suppressed_count.clone().map(Arc::new)),
        }
    }
}

/// Label name for a `CIS_METRICS_LABELS` key: every run of characters outside
/// `[a-zA-Z0-9_]` becomes one `_`; a leading digit gets a `_` prefix.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_run = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The text exposition of the three gauges for `views`, with one label per usable entry
/// of `label_keys` (see the module doc). Families without series are left out.
pub fn render(views: &[CisMetricView], label_keys: &[String]) -> String {
    let mut sorted: Vec<&CisMetricView> = views.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out = String::new();
    let mut cursor = ExpositionCursor::default();
    // Without a size limit every call writes one whole family.
    while !cursor.is_done() {
        render_chunk(
            &mut out,
            &mut cursor,
            sorted.iter().copied(),
            label_keys,
            usize::MAX,
        );
    }
    out
}

/// Number of CIS metric families ([`SCAN_SUCCESS`], [`ISSUES`], [`PATCH_STATUS`],
/// [`FIXABLE_ISSUES`], [`SUPPRESSED_ISSUES`], in that order).
const FAMILY_COUNT: usize = 5;

/// Where a chunked exposition stands: the family being written, the last CIS (namespace, name)
/// written in it, and whether its header is out. `/metrics` is sent in chunks so that a scrape
/// never holds the whole exposition (~17 MB at 10,000 pods) and the engine is never busy
/// rendering it in one go; CIS that appear or go between chunks are simply in or out, and a
/// series is never written twice because the cursor only moves forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpositionCursor {
    family: usize,
    after: Option<(String, String)>,
    started: bool,
}

impl ExpositionCursor {
    /// Whether every family is written.
    pub fn is_done(&self) -> bool {
        self.family >= FAMILY_COUNT
    }

    /// The (namespace, name) of the last CIS written in the current family; the next chunk
    /// starts strictly after it (from the first CIS when `None`).
    pub fn after(&self) -> Option<(&str, &str)> {
        self.after
            .as_ref()
            .map(|(namespace, name)| (namespace.as_str(), name.as_str()))
    }
}

/// Appends the next chunk of the exposition to `out` and moves `cursor` past it: series of the
/// current family, CIS after CIS from `views` — which must yield the CIS strictly after
/// [`ExpositionCursor::after`], sorted by namespace and name — until `out` holds at least
/// `min_bytes` or the family ends (the cursor then moves to the next family). Call again with
/// a fresh `views` until [`ExpositionCursor::is_done`].
pub fn render_chunk<V: Borrow<CisMetricView>>(
    out: &mut String,
    cursor: &mut ExpositionCursor,
    views: impl Iterator<Item = V>,
    label_keys: &[String],
    min_bytes: usize,
) {
    let Some(&(name, help)) = FAMILIES.get(cursor.family) else {
        return;
    };
    let keys = usable_keys(label_keys);
    let mut fam = Family {
        out,
        name,
        help,
        started: cursor.started,
    };
    for view in views {
        let view = view.borrow();
        write_series(&mut fam, view, &keys);
        if fam.out.len() >= min_bytes {
            cursor.started = fam.started;
            cursor.after = Some((view.namespace.clone(), view.name.clone()));
            return;
        }
    }
    cursor.family += 1;
    cursor.after = None;
    cursor.started = false;
}

/// Name and help of each family, in exposition order.
const FAMILIES: [(&str, &str); FAMILY_COUNT] = [
    (SCAN_SUCCESS, SCAN_SUCCESS_HELP),
    (ISSUES, ISSUES_HELP),
    (PATCH_STATUS, PATCH_STATUS_HELP),
    (FIXABLE_ISSUES, FIXABLE_ISSUES_HELP),
    (SUPPRESSED_ISSUES, SUPPRESSED_ISSUES_HELP),
];

/// Writes the series one CIS has in the family `fam` (none in the summary families for a CIS
/// without summary).
fn write_series(fam: &mut Family<'_>, view: &CisMetricView, keys: &[(String, &str)]) {
    let common = common_labels(view, keys);
    if fam.name == SCAN_SUCCESS {
        fam.series(&common, None, i64::from(!view.stalled));
        return;
    }
    if fam.name == SUPPRESSED_ISSUES {
        let by_reason = view.suppressed.as_ref().map(|s| &s.by_reason);
        for (reason, count) in by_reason.into_iter().flatten() {
            if *count != 0 {
                fam.series(&common, Some(("reason", reason)), i64::from(*count));
            }
        }
        return;
    }
    let Some(summary) = view.summary.as_ref() else {
        return;
    };
    match fam.name {
        ISSUES => write_severities(fam, &common, summary.severity_count.as_ref()),
        PATCH_STATUS => {
            let fixed = i64::from(summary.fixed_count);
            let unfixed = i64::from(summary.unfixed_count);
            fam.series(&common, Some(("condition", "fixed")), fixed);
            fam.series(&common, Some(("condition", "unfixed")), unfixed);
        }
        _ => write_severities(fam, &common, summary.fixed_severity_count.as_ref()),
    }
}

fn write_severities(
    fam: &mut Family<'_>,
    common: &[(&str, &str)],
    counts: Option<&std::collections::BTreeMap<String, i32>>,
) {
    for (severity, count) in counts.into_iter().flatten() {
        if *count != 0 {
            fam.series(common, Some(("severity", severity)), i64::from(*count));
        }
    }
}

/// (label name, CIS label key) pairs that make valid, distinct label names.
fn usable_keys(label_keys: &[String]) -> Vec<(String, &str)> {
    let mut taken: Vec<String> = FIXED_LABELS.iter().map(|s| (*s).to_owned()).collect();
    taken.push("severity".into());
    taken.push("condition".into());
    taken.push("reason".into());
    let mut keys = Vec::new();
    for key in label_keys {
        let name = sanitize_label_name(key);
        if name.is_empty() || name.starts_with("__") || taken.contains(&name) {
            continue;
        }
        taken.push(name.clone());
        keys.push((name, key.as_str()));
    }
    keys
}

/// (label name, value) of every label a CIS's series carry besides `severity`/`condition`.
fn common_labels<'a>(
    view: &'a CisMetricView,
    keys: &'a [(String, &str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels: Vec<(&str, &str)> = keys
        .iter()
        .map(|(label, key)| {
            (
                label.as_str(),
                view.labels.get(*key).map_or("", String::as_str),
            )
        })
        .collect();
    labels.extend(FIXED_LABELS.into_iter().zip([
        view.namespace.as_str(),
        view.name.as_str(),
        view.image_name.as_str(),
        view.image_digest.as_str(),
        view.image_tag.as_str(),
    ]));
    labels
}

/// One metric family being written: the `# HELP`/`# TYPE` header goes out with the first
/// series, so families without series are left out.
struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
    help: &'static str,
    started: bool,
}

impl Family<'_> {
    /// Writes `name{labels} value`, label names sorted.
    fn series(&mut self, common: &[(&str, &str)], extra: Option<(&str, &str)>, value: i64) {
        let (name, help) = (self.name, self.help);
        if !self.started {
            self.started = true;
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} gauge");
        }
        let mut labels = common.to_vec();
        labels.extend(extra);
        labels.sort_unstable();
        self.out.push_str(name);
        self.out.push('{');
        for (i, (label, value)) in labels.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(value));
        }
        let _ = writeln!(self.out, "}} {value}");
    }
}

/// Label value escaping of the text format: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn keys() -> Vec<String> {
        vec![
            "system.statnett.no/name".into(),
            "app.kubernetes.io/name".into(),
        ]
    }

    fn view(
        name: &str,
        system: &str,
        app: &str,
        image: &str,
        digest: &str,
        tag: &str,
    ) -> CisMetricView {
        CisMetricView {
            namespace: "default".into(),
            name: name.into(),
            labels: BTreeMap::from([
                ("system.statnett.no/name".to_owned(), system.to_owned()),
                ("app.kubernetes.io/name".to_owned(), app.to_owned()),
            ])
            .into(),
            image_name: image.into(),
            image_digest: digest.into(),
            image_tag: tag.into(),
            stalled: false,
            summary: None,
            suppressed: None,
        }
    }

    /// The three CIS of the §14 reference test.
    fn fixture() -> Vec<CisMetricView> {
        let good = view(
            "good-app-aaa123",
            "light-side",
            "good-app",
            "my.registry.com/my-namespace/good-image",
            "sha256:293d59096e2bf7bce8c8af44086f5d3f81c98cad87928837b1cb52a61041e5d5",
            "",
        );
        let mut bad = view(
            "bad-app-666666",
            "dark-side",
            "bad-app",
            "my.registry.com/my-namespace/bad-app",
            "sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",
            "latest",
        );
        bad.summary = Some(Arc::new(VulnerabilitySummary {
            severity_count: Some(BTreeMap::from([("CRITICAL".into(), 1), ("HIGH".into(), 5)])),
            fixed_count: 4,
            unfixed_count: 2,
            fixed_severity_count: None,
        }));
        let mut failed = view(
            "scan-failure-111111",
            "light-side",
            "scan-failure",
            "my.registry.com/my-namespace/scan-error",
            "sha256:babaa4d10a7e388a37b8d41069438518184f13cdec20c580f16114b84819618b",
            "latest",
        );
        failed.stalled = true;
        vec![good, failed, bad]
    }

    const EXPECTED: &str = r#"# HELP image_scanner_container_image_scan_success Displays whether or not container image scan was a success
# TYPE image_scanner_container_image_scan_success gauge
image_scanner_container_image_scan_success{app_kubernetes_io_name="bad-app",image_digest="sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",image_name="my.registry.com/my-namespace/bad-app",image_tag="latest",name="bad-app-666666",namespace="default",system_statnett_no_name="dark-side"} 1
image_scanner_container_image_scan_success{app_kubernetes_io_name="good-app",image_digest="sha256:293d59096e2bf7bce8c8af44086f5d3f81c98cad87928837b1cb52a61041e5d5",image_name="my.registry.com/my-namespace/good-image",image_tag="",name="good-app-aaa123",namespace="default",system_statnett_no_name="light-side"} 1
image_scanner_container_image_scan_success{app_kubernetes_io_name="scan-failure",image_digest="sha256:babaa4d10a7e388a37b8d41069438518184f13cdec20c580f16114b84819618b",image_name="my.registry.com/my-namespace/scan-error",image_tag="latest",name="scan-failure-111111",namespace="default",system_statnett_no_name="light-side"} 0
# HELP image_scanner_container_image_issues Number of container image scan issues
# TYPE image_scanner_container_image_issues gauge
image_scanner_container_image_issues{app_kubernetes_io_name="bad-app",image_digest="sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",image_name="my.registry.com/my-namespace/bad-app",image_tag="latest",name="bad-app-666666",namespace="default",severity="CRITICAL",system_statnett_no_name="dark-side"} 1
image_scanner_container_image_issues{app_kubernetes_io_name="bad-app",image_digest="sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",image_name="my.registry.com/my-namespace/bad-app",image_tag="latest",name="bad-app-666666",namespace="default",severity="HIGH",system_statnett_no_name="dark-side"} 5
# HELP image_scanner_container_image_patch_status Number of detected container image vulnerabilities grouped by fixed/unfixed
# TYPE image_scanner_container_image_patch_status gauge
image_scanner_container_image_patch_status{app_kubernetes_io_name="bad-app",condition="fixed",image_digest="sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",image_name="my.registry.com/my-namespace/bad-app",image_tag="latest",name="bad-app-666666",namespace="default",system_statnett_no_name="dark-side"} 4
image_scanner_container_image_patch_status{app_kubernetes_io_name="bad-app",condition="unfixed",image_digest="sha256:aa5f8d668258d929ee42f000b71318379a86b56e72e301ced34df8887ccbc76a",image_name="my.registry.com/my-namespace/bad-app",image_tag="latest",name="bad-app-666666",namespace="default",system_statnett_no_name="dark-side"} 2
"#;

    /// Suppressed findings are a family of their own, by reason: one series per reason with
    /// any, and not a single one in the issue families (the CIS summary never counts them).
    #[test]
    fn suppressed_findings_are_counted_by_reason_apart_from_the_issues() {
        let mut cis = view("app-1", "s", "app", "reg/app", "sha256:11", "1");
        cis.summary = Some(Arc::new(VulnerabilitySummary {
            severity_count: Some(BTreeMap::from([("HIGH".into(), 1)])),
            fixed_count: 1,
            unfixed_count: 0,
            fixed_severity_count: None,
        }));
        cis.suppressed = Some(Arc::new(SuppressedCount {
            total: 3,
            severity_count: BTreeMap::from([("CRITICAL".into(), 3)]),
            by_exception: BTreeMap::from([("ns/a".into(), 2), ("cluster/b".into(), 1)]),
            by_reason: BTreeMap::from([
                ("AcceptedRisk".into(), 2),
                ("NotAffected".into(), 1),
                ("Mitigated".into(), 0),
            ]),
        }));
        let text = render(&[cis], &[]);
        let suppressed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(SUPPRESSED_ISSUES))
            .collect();
        let common = r#"image_digest="sha256:11",image_name="reg/app",image_tag="1",name="app-1",namespace="default""#;
        assert_eq!(
            suppressed,
            [
                format!(r#"{SUPPRESSED_ISSUES}{{{common},reason="AcceptedRisk"}} 2"#),
                format!(r#"{SUPPRESSED_ISSUES}{{{common},reason="NotAffected"}} 1"#),
            ]
        );
        assert!(!text.contains("CRITICAL"), "{text}");
    }

    #[test]
    fn reproduces_the_spec_14_exposition() {
        assert_eq!(render(&fixture(), &keys()), EXPECTED);
    }

    /// Chunks of any size, each rendered from a fresh iterator after the cursor, add up to the
    /// whole exposition, and every chunk but a family's last reaches the size asked for.
    #[test]
    fn chunks_add_up_to_the_whole_exposition() {
        let mut views = fixture();
        views[0].summary = Some(Arc::new(VulnerabilitySummary {
            severity_count: Some(BTreeMap::from([("LOW".into(), 7)])),
            fixed_count: 1,
            unfixed_count: 6,
            fixed_severity_count: Some(BTreeMap::from([("LOW".into(), 1)])),
        }));
        let whole = render(&views, &keys());
        views.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for min_bytes in [1, 100, 400, 1000, 5000] {
            let mut cursor = ExpositionCursor::default();
            let mut text = String::new();
            let mut chunks = 0;
            while !cursor.is_done() {
                let after = cursor.after().map(|(ns, n)| (ns.to_owned(), n.to_owned()));
                let rest = views
                    .iter()
                    .filter(|v| {
                        after
                            .as_ref()
                            .is_none_or(|(ns, n)| (&v.namespace, &v.name) > (ns, n))
                    })
                    .cloned();
                let mut chunk = String::new();
                let family = cursor.family;
                render_chunk(&mut chunk, &mut cursor, rest, &keys(), min_bytes);
                assert!(
                    chunk.len() >= min_bytes || cursor.family > family,
                    "{min_bytes}"
                );
                text.push_str(&chunk);
                chunks += 1;
                assert!(chunks < 100, "the cursor does not move");
            }
            assert_eq!(text, whole, "chunks of at least {min_bytes} bytes");
            assert!(
                min_bytes > 1000 || chunks > FAMILY_COUNT,
                "{min_bytes}: {chunks} chunks"
            );
        }
    }

    /// A CIS deleted between chunks is left out, one created behind the cursor is not written
    /// (its series come with the next scrape), and no series is written twice.
    #[test]
    fn chunks_follow_changes_without_repeating_series() {
        let views = fixture();
        let mut sorted = views.clone();
        sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut cursor = ExpositionCursor::default();
        let mut text = String::new();
        render_chunk(
            &mut text,
            &mut cursor,
            sorted.clone().into_iter(),
            &keys(),
            1,
        );
        assert_eq!(cursor.after(), Some(("default", "bad-app-666666")));
        // "bad-app-666666" is gone, an "a" CIS appears before the cursor.
        let mut changed: Vec<CisMetricView> = sorted[1..].to_vec();
        changed.insert(0, view("a", "", "", "img", "sha256:1", ""));
        while !cursor.is_done() {
            let after = cursor.after().map(|(ns, n)| (ns.to_owned(), n.to_owned()));
            let rest: Vec<CisMetricView> = changed
                .iter()
                .filter(|v| {
                    after
                        .as_ref()
                        .is_none_or(|(ns, n)| (&v.namespace, &v.name) > (ns, n))
                })
                .cloned()
                .collect();
            render_chunk(&mut text, &mut cursor, rest.into_iter(), &keys(), 1);
        }
        let success_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(SCAN_SUCCESS))
            .collect();
        assert_eq!(success_lines.len(), 3, "{text}");
        assert_eq!(
            text.matches("# TYPE").count(),
            1,
            "only scan_success has series: {text}"
        );
        let mut lines: Vec<&str> = text.lines().collect();
        let before = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), before);
    }

    #[test]
    fn fixable_issues_follow_the_summary_extension() {
        let mut v = view("a", "", "", "img", "sha256:1", "");
        v.summary = Some(Arc::new(VulnerabilitySummary {
            severity_count: Some(BTreeMap::from([("CRITICAL".into(), 3), ("HIGH".into(), 1)])),
            fixed_count: 2,
            unfixed_count: 2,
            fixed_severity_count: Some(BTreeMap::from([
                ("CRITICAL".into(), 2),
                ("HIGH".into(), 0),
            ])),
        }));
        let text = render(&[v], &[]);
        assert!(text.contains("# TYPE image_scanner_container_image_fixable_issues gauge"));
        assert!(text.contains(
            r#"image_scanner_container_image_fixable_issues{image_digest="sha256:1",image_name="img",image_tag="",name="a",namespace="default",severity="CRITICAL"} 2"#
        ));
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(FIXABLE_ISSUES) && l.contains(r#"severity="HIGH""#)),
            "{text}"
        );
    }

    #[test]
    fn zero_buckets_are_left_out_and_unknown_is_exported() {
        let mut v = view("a", "", "", "img", "sha256:1", "");
        v.summary = Some(Arc::new(VulnerabilitySummary {
            severity_count: Some(BTreeMap::from([
                ("UNKNOWN".into(), 1),
                ("LOW".into(), 0),
                ("MEDIUM".into(), 2),
            ])),
            fixed_count: 0,
            unfixed_count: 3,
            fixed_severity_count: None,
        }));
        let text = render(&[v], &[]);
        assert!(
            text.contains(r#"image_tag="",name="a",namespace="default",severity="UNKNOWN"} 1"#)
        );
        assert!(text.contains(r#"namespace="default",severity="MEDIUM"} 2"#));
        assert!(!text.contains(r#"severity="LOW""#), "{text}");
        assert!(text.contains(r#"condition="fixed",image_digest="sha256:1""#));
        assert!(text.contains(r#"image_tag="",name="a",namespace="default"} 1"#));
    }

    #[test]
    fn empty_input_renders_nothing() {
        assert_eq!(render(&[], &keys()), "");
    }

    #[test]
    fn label_names_are_sanitised_and_deduplicated() {
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(sanitize_label_name("a..//b"), "a_b");
        assert_eq!(sanitize_label_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name("ünï"), "_n_");
        let keys: Vec<String> = ["a.b", "a/b", "namespace", "", "c"]
            .map(String::from)
            .to_vec();
        let names: Vec<String> = usable_keys(&keys).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a_b", "c"]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
    }

    #[test]
    fn views_are_stalled_only_by_a_true_stalled_condition() {
        use crate::crd::{ContainerImageScanSpec, ContainerImageScanStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let condition = |type_: &str, status: &str| Condition {
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            message: String::new(),
            observed_generation: None,
            reason: "Error".into(),
            status: status.into(),
            type_: type_.into(),
        };
        let cases: [(&[(&str, &str)], bool); 5] = [
            (&[], false),
            (&[("Stalled", "True")], true),
            (&[("Stalled", "False")], false),
            (&[("Ready", "True")], false),
            (&[("Ready", "False"), ("Stalled", "True")], true),
        ];
        for (conditions, stalled) in cases {
            let conditions: Vec<Condition> =
                conditions.iter().map(|(t, s)| condition(t, s)).collect();
            let mut cis = ContainerImageScan::new(
                "x",
                ContainerImageScanSpec {
                    name: "img".into(),
                    digest: "sha256:1".into(),
                    ..Default::default()
                },
            );
            cis.status = Some(ContainerImageScanStatus {
                conditions: Some(conditions.clone()),
                ..Default::default()
            });
            let v = CisMetricView::from_cis(&cis);
            assert_eq!(v.stalled, stalled, "from_cis {conditions:?}");
            assert_eq!((v.name.as_str(), v.image_tag.as_str()), ("x", ""));

            let view = crate::engine::tests::cis(
                "x",
                "u",
                "sha256:1",
                crate::port::CisStatusView {
                    conditions: conditions.clone(),
                    ..Default::default()
                },
            );
            let v = CisMetricView::from_view(&view);
            assert_eq!(v.stalled, stalled, "from_view {conditions:?}");
            assert_eq!(v.image_tag, "1");
        }
        let mut cis = ContainerImageScan::new("x", ContainerImageScanSpec::default());
        cis.status = None;
        assert!(!CisMetricView::from_cis(&cis).stalled);
    }

    /// Lints the reference exposition with `promtool check metrics` when it is installed.
    #[test]
    fn promtool_lints_clean() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let text = render(&fixture(), &keys());
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            println!("note: promtool not installed; skipping the exposition lint");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
