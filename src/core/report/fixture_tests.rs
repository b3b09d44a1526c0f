//! Every scanner fixture under `tests/fixtures/` decodes to the counts its README (or the
//! spec, §17.3) states.

use super::{
    DetectedFormat, EXCERPT_MAX_BYTES, ErrorKind, ReportError, ReportFormat, parse_report,
};
use crate::crd::Severity;
use crate::status::{sort_details, summary_from};

/// A fixture's path and bytes, embedded at compile time (the core reads no files).
macro_rules! fixture {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/",
                $path
            ))
            .as_slice(),
        )
    };
}

/// (file, format, [UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL], fixed, unfixed)
type Case = (
    (&'static str, &'static [u8]),
    DetectedFormat,
    [i32; 5],
    i32,
    i32,
);

const CASES: &[Case] = &[
    (
        fixture!(
            "trivy/trivy-0.56_image_juice-shop-v12.10.2_alpine-3.11-eosl_os-and-node-and-secret_182vulns.json"
        ),
        DetectedFormat::Trivy,
        [0, 6, 48, 100, 28],
        170,
        12,
    ),
    (
        fixture!("trivy/trivy-head_image_alpine-3.9.4-eosl_os_6vulns_all-fixed.json"),
        DetectedFormat::Trivy,
        [0, 0, 4, 0, 2],
        6,
        0,
    ),
    (
        fixture!("trivy/trivy-head_image_alpine-3.9.4_severity-HIGH-CRITICAL_2vulns.json"),
        DetectedFormat::Trivy,
        [0, 0, 0, 0, 2],
        2,
        0,
    ),
    (
        fixture!("trivy/trivy-head_image_centos-7.6_os_3vulns_will_not_fix.json"),
        DetectedFormat::Trivy,
        [0, 2, 1, 0, 0],
        2,
        1,
    ),
    (
        fixture!("trivy/trivy-head_image_debian-10.1_ignore-unfixed_1vuln.json"),
        DetectedFormat::Trivy,
        [0, 0, 0, 0, 1],
        1,
        0,
    ),
    (
        fixture!("trivy/trivy-head_image_debian-10.1_os_2vulns_affected-and-fixed.json"),
        DetectedFormat::Trivy,
        [0, 1, 0, 0, 1],
        1,
        1,
    ),
    (
        fixture!("trivy/trivy-head_image_debian-10.2_os-and-gemspec_2vulns.json"),
        DetectedFormat::Trivy,
        [0, 0, 0, 1, 1],
        2,
        0,
    ),
    (
        fixture!("trivy/trivy-head_image_os-none_no-results.json"),
        DetectedFormat::Trivy,
        [0; 5],
        0,
        0,
    ),
    (
        fixture!("trivy/trivy-head_image_slem-5.4_os_no-vulns.json"),
        DetectedFormat::Trivy,
        [0; 5],
        0,
        0,
    ),
    (
        fixture!("trivy/trivy-head_repo_gomod_lang-pkgs_5vulns_UNKNOWN-severity.json"),
        DetectedFormat::Trivy,
        [4, 0, 1, 0, 0],
        5,
        0,
    ),
    (
        fixture!("trivy/trivy-head_repo_npm_lang-pkgs_1vuln_with-Packages.json"),
        DetectedFormat::Trivy,
        [0, 0, 1, 0, 0],
        1,
        0,
    ),
    (
        fixture!("trivy/trivy-v0.20.0_image_debian-9.9_os_160vulns.json"),
        DetectedFormat::Trivy,
        [0, 104, 20, 24, 12],
        4,
        156,
    ),
    (
        fixture!("grype/grype-0.61.1_image_chainguard-ruby-3.0_apk-and-gem_3matches.json"),
        DetectedFormat::Grype,
        [0, 0, 0, 3, 0],
        2,
        1,
    ),
    (
        fixture!("grype/grype-0.7.0_image_busybox_no-matches.json"),
        DetectedFormat::Grype,
        [0; 5],
        0,
        0,
    ),
    (
        fixture!("grype/grype-0.94.0_image_busybox-1.32.1_15matches_epss_empty-fix-state.json"),
        DetectedFormat::Grype,
        [0, 2, 2, 10, 1],
        1,
        14,
    ),
    (
        fixture!("grype/grype-head_synthetic_image_2matches.json"),
        DetectedFormat::Grype,
        [0, 1, 0, 0, 1],
        1,
        1,
    ),
    (
        fixture!(
            "upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json"
        ),
        DetectedFormat::Template,
        [0, 0, 0, 15, 4],
        0,
        19,
    ),
    (
        fixture!(
            "upstream/internal/controller/stas/testdata/scan-job-successful-long/scan-job-pod.log.json"
        ),
        DetectedFormat::Template,
        [77, 3178, 3881, 2606, 653],
        5267,
        5128,
    ),
];

#[test]
fn every_fixture_decodes_to_its_documented_summary() {
    for ((path, bytes), format, counts, fixed, unfixed) in CASES {
        let report =
            parse_report(bytes, ReportFormat::Auto).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(report.format, *format, "{path}");
        assert_eq!(report.skipped_lines, 0, "{path}");
        let summary = summary_from(&report.vulnerabilities, Severity::Unknown);
        let got: Vec<i32> = Severity::ALL
            .iter()
            .map(|s| {
                summary
                    .severity_count
                    .as_ref()
                    .and_then(|c| c.get(s.as_str()).copied())
                    .unwrap_or(-1)
            })
            .collect();
        assert_eq!(got, counts.to_vec(), "{path}");
        assert_eq!(
            (summary.fixed_count, summary.unfixed_count),
            (*fixed, *unfixed),
            "{path}"
        );
        // The explicit format gives the same result as detection.
        let explicit = match format {
            DetectedFormat::Template => ReportFormat::Template,
            DetectedFormat::Trivy => ReportFormat::Trivy,
            DetectedFormat::Grype => ReportFormat::Grype,
        };
        assert_eq!(parse_report(bytes, explicit).ok(), Some(report), "{path}");
    }
}

#[test]
fn small_upstream_log_sorts_like_the_envtest() {
    let bytes = fixture!("upstream/internal/controller/stas/testdata/scan-job-successful/successful-scan-job-pod.log.json").1;
    let mut v = parse_report(bytes, ReportFormat::Auto)
        .unwrap()
        .vulnerabilities;
    assert_eq!(v.len(), 19);
    assert!(
        v.iter()
            .all(|v| !v.title.is_empty() && !v.primary_url.is_empty() && v.pkg_path.is_empty())
    );
    sort_details(&mut v);
    let key = |x: &crate::crd::Vulnerability| {
        (x.severity, x.pkg_name.clone(), x.vulnerability_id.clone())
    };
    assert_eq!(
        key(&v[0]),
        (Severity::High, "curl".into(), "CVE-2022-42916".into())
    );
    assert_eq!(
        key(&v[18]),
        (
            Severity::Critical,
            "libdb5.3".into(),
            "CVE-2019-8457".into()
        )
    );
}

#[test]
fn long_upstream_log_decodes_and_unescapes() {
    let bytes = fixture!(
        "upstream/internal/controller/stas/testdata/scan-job-successful-long/scan-job-pod.log.json"
    )
    .1;
    let report = parse_report(bytes, ReportFormat::Auto).unwrap();
    assert_eq!(report.vulnerabilities.len(), 10_395);
    assert!(
        report
            .vulnerabilities
            .iter()
            .any(|v| v.fixed_version.contains(">="))
    );
}

#[test]
fn truncated_upstream_log_is_an_end_of_input_error() {
    let bytes = fixture!("upstream/internal/controller/stas/testdata/scan-job-invalid-json/scan-job-pod.log.invalid.json").1;
    let err = parse_report(bytes, ReportFormat::Auto).unwrap_err();
    let ReportError::Json {
        kind,
        line,
        excerpt,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*kind, ErrorKind::UnexpectedEnd);
    assert_eq!(*line, 59_365, "the last line");
    assert!(excerpt.len() <= EXCERPT_MAX_BYTES);
    let text = err.to_string();
    assert!(
        text.starts_with("unexpected end of input at line"),
        "{text}"
    );
    assert!(text.len() < 2 * EXCERPT_MAX_BYTES && !text.contains('\n'));
}

#[test]
fn failed_plain_text_log_is_no_json() {
    let bytes = fixture!(
        "upstream/internal/controller/stas/testdata/scan-job-failed/failed-scan-job-pod.log"
    )
    .1;
    let err = parse_report(bytes, ReportFormat::Auto).unwrap_err();
    assert!(matches!(err, ReportError::NoJson { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("FATAL") && !text.contains('\n'), "{text}");
}

#[test]
fn trivy_fields_map_to_the_template_names() {
    let bytes = fixture!("trivy/trivy-head_image_debian-10.2_os-and-gemspec_2vulns.json").1;
    let v = parse_report(bytes, ReportFormat::Auto)
        .unwrap()
        .vulnerabilities;
    let gem = v.iter().find(|v| !v.pkg_path.is_empty()).unwrap();
    assert_eq!(gem.fixed_version, "6.0.3.1, 5.2.4.3");
    assert!(!gem.title.is_empty() && gem.primary_url.starts_with("https://"));
}

#[test]
fn grype_fields_map_as_documented() {
    let bytes = fixture!("grype/grype-head_synthetic_image_2matches.json").1;
    let v = parse_report(bytes, ReportFormat::Auto)
        .unwrap()
        .vulnerabilities;
    assert_eq!(
        (
            v[0].vulnerability_id.as_str(),
            v[0].pkg_name.as_str(),
            v[0].installed_version.as_str()
        ),
        ("CVE-1999-0001", "package-1", "1.1.1")
    );
    assert_eq!(v[0].fixed_version, "1.2.1, 2.1.3, 3.4.0");
    assert_eq!(v[0].pkg_path, "/foo/bar/somefile-1.txt");
    assert_eq!(v[1].fixed_version, "");
    let ruby = parse_report(
        fixture!("grype/grype-0.61.1_image_chainguard-ruby-3.0_apk-and-gem_3matches.json").1,
        ReportFormat::Auto,
    )
    .unwrap()
    .vulnerabilities;
    assert_eq!(
        ruby[0].primary_url,
        "http://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-2023-28755"
    );
    assert_eq!(ruby[0].fixed_version, "3.0.6-r0");
}

#[test]
fn a_trivy_warning_before_the_report_is_skipped() {
    let mut noisy =
        b"2024-10-28T10:00:00Z\tWARN\tThis OS version is no longer supported\n".to_vec();
    noisy.extend_from_slice(
        fixture!("trivy/trivy-head_image_alpine-3.9.4-eosl_os_6vulns_all-fixed.json").1,
    );
    let r = parse_report(&noisy, ReportFormat::Auto).unwrap();
    assert_eq!((r.skipped_lines, r.vulnerabilities.len()), (1, 6));
}
