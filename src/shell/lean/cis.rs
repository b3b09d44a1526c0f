//! ContainerImageScans without their details: what `core::convert::strip_details` leaves of a
//! full CIS, decoded without ever holding the `vulnerabilities` list.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::core::NamespaceResourceScope;
use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use super::LeanMeta;
use crate::core::status::{details_size_of, item_size};
use crate::crd::{
    ContainerImageScan, ContainerImageScanSpec, ContainerImageScanStatus, FindingRecord,
    SuppressedCount, VulnerabilitiesTruncated, Vulnerability, VulnerabilitySummary,
};

/// A CIS as `strip_details` leaves it: no `managedFields`, no `vulnerabilities`, and
/// `detailsBytes` set (measured when the stored status does not say).
#[derive(Clone, Debug)]
pub struct WatchedCis(pub ContainerImageScan);

impl kube::Resource for WatchedCis {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ContainerImageScan::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        ContainerImageScan::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        ContainerImageScan::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        ContainerImageScan::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedCis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cis = LeanCis::deserialize(deserializer)?;
        let mut full = ContainerImageScan::new("", cis.spec);
        full.metadata = cis.metadata.into_meta();
        full.status = cis.status.map(LeanStatus::into_status);
        Ok(WatchedCis(full))
    }
}

#[derive(Deserialize)]
struct LeanCis {
    #[serde(default)]
    metadata: LeanMeta,
    spec: ContainerImageScanSpec,
    status: Option<LeanStatus>,
}

/// `ContainerImageScanStatus` with `vulnerabilities` measured instead of kept. A field added to
/// the status must be added here too: the test that builds a status with every field set
/// (without `..Default::default()`) stops compiling until it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanStatus {
    observed_generation: Option<i64>,
    #[serde(rename = "lastScanJobUID")]
    last_scan_job_uid: Option<String>,
    last_scan_time: Option<Time>,
    last_successful_scan_time: Option<Time>,
    conditions: Option<Vec<Condition>>,
    #[serde(default, rename = "vulnerabilities", deserialize_with = "measured")]
    measured_details: Option<u64>,
    vulnerability_summary: Option<VulnerabilitySummary>,
    vulnerabilities_truncated: Option<VulnerabilitiesTruncated>,
    details_bytes: Option<i64>,
    suppressed_count: Option<SuppressedCount>,
    exceptions_fingerprint: Option<String>,
    notable_findings: Option<FindingRecord>,
    announced_findings: Option<FindingRecord>,
}

impl LeanStatus {
    fn into_status(self) -> ContainerImageScanStatus {
        // As `port::details_bytes`: what the status says, else what its details measure.
        let details_bytes = self
            .details_bytes
            .or_else(|| self.measured_details.map(saturating_i64))
            .unwrap_or(0);
        ContainerImageScanStatus {
            observed_generation: self.observed_generation,
            last_scan_job_uid: self.last_scan_job_uid,
            last_scan_time: self.last_scan_time,
            last_successful_scan_time: self.last_successful_scan_time,
            conditions: self.conditions,
            vulnerabilities: None,
            vulnerability_summary: self.vulnerability_summary,
            vulnerabilities_truncated: self.vulnerabilities_truncated,
            details_bytes: Some(details_bytes),
            suppressed_count: self.suppressed_count,
            exceptions_fingerprint: self.exceptions_fingerprint,
            notable_findings: self.notable_findings,
            announced_findings: self.announced_findings,
        }
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `status::details_size` of a `vulnerabilities` list, one item decoded at a time.
fn measured<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Measure;
    impl<'de> Visitor<'de> for Measure {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of vulnerabilities")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
            let (mut total, mut count) = (0usize, 0usize);
            while let Some(item) = items.next_element::<Vulnerability>()? {
                total = total.saturating_add(item_size(&item));
                count += 1;
            }
            Ok(Some(details_size_of(total, count) as u64))
        }
    }
    deserializer.deserialize_option(Measure)
}
