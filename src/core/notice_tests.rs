use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::crd::Vulnerability;
use crate::finding_record::{MAX_RECORD_IDS, RecordSpec, record, truncated};
use crate::test_kit::finding;

const C: Severity = Severity::Critical;
const H: Severity = Severity::High;
const M: Severity = Severity::Medium;

fn ids(record: &FindingRecord, severity: Severity) -> Vec<&str> {
    record
        .ids
        .get(severity.as_str())
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn names(list: &[Named]) -> Vec<&str> {
    list.iter().map(|n| n.id.as_str()).collect()
}

#[test]
fn a_record_keeps_each_id_once_at_its_highest_severity_with_a_fix_from_any_package() {
    let findings = vec![
        finding("CVE-2", "openssl", H, ""),
        finding("CVE-2", "libssl", C, ""),
        finding("CVE-1", "zlib", H, ""),
        finding("CVE-1", "zlib-dev", H, "1.2"),
        finding("CVE-3", "bash", M, "5"),
    ];
    let r = record(&findings, RecordSpec::from(H));
    assert_eq!(r.min_severity, H);
    assert_eq!(ids(&r, C), ["CVE-2"]);
    assert_eq!(ids(&r, H), ["CVE-1"]);
    assert!(!r.ids.contains_key("MEDIUM"), "below the threshold");
    assert_eq!(r.fixable, ["CVE-1"]);
    assert_eq!(r.left_out, 0);
}

#[test]
fn suppressed_findings_are_not_recorded() {
    let mut covered = finding("CVE-9", "openssl", C, "3");
    covered.suppressed_by = Some("ns/accepted".into());
    let r = record(
        &[covered, finding("CVE-1", "zlib", C, "")],
        RecordSpec::from(H),
    );
    assert_eq!(ids(&r, C), ["CVE-1"]);
    assert!(r.fixable.is_empty());
}

#[test]
fn a_record_is_bounded_and_leaves_out_the_least_severe_first() {
    let mut findings: Vec<_> = (0..MAX_RECORD_IDS)
        .map(|i| finding(&format!("CVE-H-{i:04}"), "p", H, ""))
        .collect();
    findings.extend((0..10).map(|i| finding(&format!("CVE-C-{i}"), "p", C, "")));
    let r = record(&findings, RecordSpec::from(H));
    assert_eq!(ids(&r, C).len(), 10, "every CRITICAL kept");
    assert_eq!(ids(&r, H).len(), MAX_RECORD_IDS - 10);
    assert_eq!(r.left_out, 10);
    let json = serde_json::to_string(&r).unwrap_or_default();
    assert!(json.len() < 16 * 1024, "{} bytes", json.len());
}

#[test]
fn a_record_cut_further_keeps_the_most_severe_and_counts_what_it_left_out() {
    let r = record(
        &[
            finding("CVE-C", "a", C, "1"),
            finding("CVE-H1", "b", H, "1"),
            finding("CVE-H2", "c", H, ""),
        ],
        RecordSpec::from(H),
    );
    let cut = truncated(r.clone(), 2);
    assert_eq!(ids(&cut, C), ["CVE-C"]);
    assert_eq!(ids(&cut, H), ["CVE-H1"]);
    assert_eq!(cut.fixable, ["CVE-C", "CVE-H1"]);
    assert_eq!(cut.left_out, 1);
    assert_eq!(truncated(r.clone(), 3), r, "nothing to cut");
    let small = record(
        &[finding("CVE-C", "a", C, ""), finding("CVE-H1", "b", H, "")],
        RecordSpec { min: H, max_ids: 1 },
    );
    assert_eq!((ids(&small, C), small.left_out), (vec!["CVE-C"], 1));
}

#[test]
fn the_diff_names_new_resolved_and_newly_fixable_findings() {
    let before = record(
        &[
            finding("CVE-1", "a", C, ""),
            finding("CVE-2", "b", H, ""),
            finding("CVE-3", "c", H, "1.1"),
        ],
        RecordSpec::from(H),
    );
    let after = record(
        &[
            finding("CVE-1", "a", C, "2.0"),
            finding("CVE-3", "c", H, "1.1"),
            finding("CVE-4", "d", C, ""),
            finding("CVE-5", "e", H, ""),
        ],
        RecordSpec::from(H),
    );
    let diff = Diff::between(&before, &after).expect("same threshold");
    assert_eq!(names(&diff.new), ["CVE-4", "CVE-5"], "most severe first");
    assert_eq!(names(&diff.resolved), ["CVE-2"]);
    assert_eq!(names(&diff.fixable), ["CVE-1"]);
    assert_eq!(diff.new[0].severity, C);
}

#[test]
fn records_of_different_thresholds_are_not_compared() {
    let f = [finding("CVE-1", "a", C, "")];
    assert_eq!(
        Diff::between(
            &record(&f, RecordSpec::from(H)),
            &record(&f, RecordSpec::from(C))
        ),
        None
    );
}

#[test]
fn the_severity_where_a_record_was_cut_is_not_compared() {
    let mut before = record(&[finding("CVE-C", "a", C, "")], RecordSpec::from(H));
    before.ids.insert("HIGH".into(), vec!["CVE-H1".into()]);
    before.left_out = 7;
    let after = record(
        &[
            finding("CVE-C", "a", C, ""),
            finding("CVE-H2", "b", H, ""),
            finding("CVE-C2", "b", C, ""),
        ],
        RecordSpec::from(H),
    );
    let diff = Diff::between(&before, &after).expect("comparable");
    assert_eq!(names(&diff.new), ["CVE-C2"], "HIGH was cut: not compared");
    assert!(diff.resolved.is_empty(), "{diff:?}");
}

#[test]
fn diffs_of_several_containers_merge_into_one_naming_each_id_once() {
    let a = Diff {
        new: vec![named(H, "CVE-1"), named(H, "CVE-2")],
        ..Diff::default()
    };
    let b = Diff {
        new: vec![named(C, "CVE-1")],
        resolved: vec![named(H, "CVE-7")],
        ..Diff::default()
    };
    let merged = Diff::merge([a, b]);
    assert_eq!(merged.new, [named(C, "CVE-1"), named(H, "CVE-2")]);
    assert_eq!(names(&merged.resolved), ["CVE-7"]);
}

#[test]
fn notes_are_one_per_kind_of_change_and_bounded() {
    let diff = Diff {
        new: (0..10_000)
            .map(|i| named(if i < 3 { C } else { H }, &format!("CVE-2024-{i:05}")))
            .collect(),
        resolved: vec![named(H, "CVE-1")],
        fixable: Vec::new(),
    };
    let notes = notes(&diff, "image docker.io/library/nginx@sha256:0123456789ab");
    assert_eq!(notes.len(), 2);
    let new = &notes[0];
    assert_eq!((new.reason.as_str(), new.warning), (REASON_NEW, true));
    assert!(new.note.len() <= MESSAGE_LIMIT, "{}", new.note.len());
    assert!(
        new.note.starts_with(
            "10000 new vulnerabilities in image docker.io/library/nginx@sha256:0123456789ab: \
             CRITICAL CVE-2024-00000, CVE-2024-00001, CVE-2024-00002; \
             HIGH CVE-2024-00003, CVE-2024-00004, CVE-2024-00005, CVE-2024-00006, \
             CVE-2024-00007 and 9992 more"
        ),
        "{}",
        new.note
    );
    let resolved = &notes[1];
    assert_eq!(
        (resolved.reason.as_str(), resolved.warning),
        (REASON_RESOLVED, false)
    );
    assert!(
        resolved
            .note
            .starts_with("1 vulnerability no longer reported")
    );
}

#[test]
fn no_change_no_note() {
    assert!(notes(&Diff::default(), "image x").is_empty());
}

fn arb_findings() -> impl Strategy<Value = Vec<Vulnerability>> {
    let severity = prop_oneof![Just(M), Just(H), Just(C)];
    proptest::collection::vec((0..40u32, severity, any::<bool>(), any::<bool>()), 0..60).prop_map(
        |items| {
            items
                .into_iter()
                .map(|(n, s, fix, suppressed)| {
                    let mut f = finding(&format!("CVE-{n}"), "p", s, if fix { "2" } else { "" });
                    if suppressed && n % 5 == 0 {
                        f.suppressed_by = Some("ns/e".into());
                    }
                    f
                })
                .collect()
        },
    )
}

fn id_set(record: &FindingRecord) -> BTreeSet<String> {
    record.ids.values().flatten().cloned().collect()
}

proptest! {
    /// The diff is exact for records that left nothing out: what was announced, minus what it
    /// names resolved, plus what it names new, is what is shown; nothing is both; a newly
    /// fixable finding was there before and has a fix now; the same record twice is no change.
    #[test]
    fn the_diff_turns_the_announced_record_into_the_shown_one(
        before in arb_findings(),
        after in arb_findings(),
    ) {
        let a = record(&before, RecordSpec::from(H));
        let b = record(&after, RecordSpec::from(H));
        let diff = Diff::between(&a, &b).expect("same threshold");
        let new: BTreeSet<String> = diff.new.iter().map(|n| n.id.clone()).collect();
        let resolved: BTreeSet<String> = diff.resolved.iter().map(|n| n.id.clone()).collect();
        prop_assert!(new.is_disjoint(&resolved));
        let mut rebuilt = id_set(&a);
        rebuilt.retain(|id| !resolved.contains(id));
        rebuilt.extend(new);
        prop_assert_eq!(rebuilt, id_set(&b));
        for n in &diff.fixable {
            prop_assert!(id_set(&a).contains(&n.id) && b.fixable.contains(&n.id));
            prop_assert!(!a.fixable.contains(&n.id));
        }
        prop_assert!(Diff::between(&b, &b).is_some_and(|d| d.is_empty()));
        for note in notes(&diff, "image x") {
            prop_assert!(note.note.len() <= MESSAGE_LIMIT);
        }
    }

    /// The record does not depend on the order of the findings.
    #[test]
    fn a_record_is_independent_of_finding_order(mut findings in arb_findings()) {
        let a = record(&findings, RecordSpec::from(H));
        findings.reverse();
        prop_assert_eq!(a, record(&findings, RecordSpec::from(H)));
    }
}

#[test]
fn a_record_that_left_every_id_out_compares_nothing() {
    // A small budget cut the shown record to nothing: not "everything resolved" (sim seed 115).
    let told = FindingRecord {
        min_severity: H,
        ids: BTreeMap::from([("CRITICAL".to_string(), vec!["CVE-1".to_string()])]),
        ..Default::default()
    };
    let cut_to_nothing = FindingRecord {
        min_severity: H,
        left_out: 46,
        ..Default::default()
    };
    assert_eq!(Diff::between(&told, &cut_to_nothing), Some(Diff::default()));
    assert_eq!(Diff::between(&cut_to_nothing, &told), Some(Diff::default()));
}
