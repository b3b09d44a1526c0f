//! What the API server does with the operator's server-side applies of a CIS, shared by the
//! test kit's [`FakeApi`](super::fake_api::FakeApi) and the simulator's API server, so both
//! answer the engine alike.
//!
//! * Metadata and spec (field manager `image-scanner-operator`): the labels the manager set last
//!   and no longer sends are removed, the others set; owner references are a set keyed by UID
//!   (the same owners in another order change nothing); a spec field the apply leaves out
//!   (`minSeverity`, set by whoever else) keeps its value; `generation` grows exactly when the
//!   spec changes.
//! * Status: written only to the object the write names (UID, and resourceVersion when sent);
//!   replaced as sent, except that a write that keeps the details is applied by a manager
//!   that never owns them, so the stored details stay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::crd::{ContainerImageScanSpec, ContainerImageScanStatus};
use crate::port::{ApiError, ApiErrorKind, CisStatusView, CisView, Labels, OwnerRef};

/// How the API server names the CIS resource in its messages.
pub const CIS_RESOURCE: &str = "containerimagescans.stas.statnett.no";
/// How the API server names the Job resource in its messages.
pub const JOB_RESOURCE: &str = "jobs.batch";

/// The fields of a stored CIS an apply of metadata and spec may change.
pub struct ApplyTarget<'a> {
    pub labels: &'a mut BTreeMap<String, String>,
    /// Label keys the operator's field manager set last.
    pub our_labels: &'a mut BTreeSet<String>,
    pub owners: &'a mut Vec<OwnerRef>,
    pub spec: &'a mut ContainerImageScanSpec,
    pub generation: &'a mut i64,
}

/// What an apply changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub labels: bool,
    pub owners: bool,
    pub spec: bool,
}

impl Applied {
    /// Whether the object changed (a new resourceVersion and a watch event).
    pub fn changed(&self) -> bool {
        self.labels || self.owners || self.spec
    }
}

/// Applies the operator's labels, owners and spec to `target`.
pub fn apply_metadata_and_spec(
    target: ApplyTarget<'_>,
    labels: &BTreeMap<String, String>,
    owners: &[OwnerRef],
    spec: &ContainerImageScanSpec,
) -> Applied {
    let mut applied = Applied::default();
    for gone in target
        .our_labels
        .iter()
        .filter(|k| !labels.contains_key(*k))
    {
        applied.labels |= target.labels.remove(gone).is_some();
    }
    for (k, v) in labels {
        if target.labels.get(k) != Some(v) {
            target.labels.insert(k.clone(), v.clone());
            applied.labels = true;
        }
    }
    *target.our_labels = labels.keys().cloned().collect();
    let uids = |owners: &[OwnerRef]| {
        let mut sorted = owners.to_vec();
        sorted.sort();
        sorted
    };
    if uids(owners) != uids(target.owners) {
        *target.owners = owners.to_vec();
        applied.owners = true;
    }
    let mut new_spec = spec.clone();
    if new_spec.min_severity.is_none() {
        new_spec.min_severity = target.spec.min_severity;
    }
    if new_spec != *target.spec {
        *target.spec = new_spec;
        *target.generation += 1;
        applied.spec = true;
    }
    applied
}

/// What the API server says to a status write whose preconditions do not hold: the stored
/// object (its UID and resourceVersion) is not the one the write names (`uid`, and
/// `resource_version` when the write carries one).
pub fn status_precondition(
    namespace: &str,
    name: &str,
    stored: Option<(&str, Option<u64>)>,
    uid: &str,
    resource_version: Option<u64>,
) -> Result<(), ApiError> {
    let refuse = |kind, message: String| Err(ApiError { kind, message });
    match stored {
        None => refuse(ApiErrorKind::NotFound, format!("{namespace}/{name} not found")),
        Some((stored_uid, _)) if stored_uid != uid => refuse(
            ApiErrorKind::Conflict,
            "Precondition failed: UID in object meta".into(),
        ),
        Some((_, stored_rv)) if resource_version.is_some_and(|rv| Some(rv) != stored_rv) => refuse(
            ApiErrorKind::Conflict,
            "the object has been modified; please apply your changes to the latest version and try again".into(),
        ),
        Some(_) => Ok(()),
    }
}

/// The CIS the API server creates for an `ApplyCis` (its `labels`, `owners` and `spec`) of a
/// CIS it does not hold: generation 1, no status.
pub fn created_by_apply(
    (namespace, name): (&str, &str),
    labels: &Arc<Labels>,
    owners: &[OwnerRef],
    spec: &ContainerImageScanSpec,
    uid: String,
    resource_version: Option<u64>,
) -> CisView {
    CisView {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid,
        resource_version,
        generation: 1,
        labels: labels.clone(),
        owners: owners.to_vec(),
        deleting: false,
        spec: spec.clone(),
        status: CisStatusView::default(),
    }
}

/// What the API server says to a delete with a UID precondition (`resource` as the API names
/// it, e.g. `jobs.batch`) when `stored_uid` (`None`: nothing stored) is not `uid`.
pub fn delete_precondition(
    resource: &str,
    name: &str,
    stored_uid: Option<&str>,
    uid: &str,
) -> Result<(), ApiError> {
    match stored_uid {
        None => Err(ApiError {
            kind: ApiErrorKind::NotFound,
            message: format!("{resource} \"{name}\" not found"),
        }),
        Some(stored) if stored != uid => Err(ApiError {
            kind: ApiErrorKind::Conflict,
            message: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// The status stored after a status apply of `status` onto `stored`.
pub fn status_after_apply(
    stored: Option<&ContainerImageScanStatus>,
    mut status: ContainerImageScanStatus,
    keep_details: bool,
) -> ContainerImageScanStatus {
    if keep_details {
        // What such a write sends (`keep_details_fields`) replaces those fields; the result's
        // fields stay as the other field manager wrote them.
        crate::cis_status::keep_details_fields(&mut status);
        return crate::cis_status::after_keep_details_write(stored, status);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Severity;
    use crate::test_kit::cis;

    fn owner(uid: &str) -> OwnerRef {
        OwnerRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: uid.into(),
            uid: uid.into(),
        }
    }

    struct Stored {
        labels: BTreeMap<String, String>,
        our_labels: BTreeSet<String>,
        owners: Vec<OwnerRef>,
        spec: ContainerImageScanSpec,
        generation: i64,
    }

    impl Stored {
        fn apply(
            &mut self,
            labels: &[(&str, &str)],
            owners: &[OwnerRef],
            spec: &ContainerImageScanSpec,
        ) -> Applied {
            let labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            apply_metadata_and_spec(
                ApplyTarget {
                    labels: &mut self.labels,
                    our_labels: &mut self.our_labels,
                    owners: &mut self.owners,
                    spec: &mut self.spec,
                    generation: &mut self.generation,
                },
                &labels,
                owners,
                spec,
            )
        }
    }

    #[test]
    fn labels_owners_and_spec_follow_the_apply_and_only_a_spec_change_bumps_the_generation() {
        let spec = cis("a", "u", "sha256:aa", Default::default()).spec;
        let mut stored = Stored {
            labels: BTreeMap::from([("team".to_string(), "x".to_string())]),
            our_labels: BTreeSet::new(),
            owners: Vec::new(),
            spec: spec.clone(),
            generation: 1,
        };
        stored.spec.min_severity = Some(Severity::High);
        let first = stored.apply(&[("app", "1")], &[owner("p1"), owner("p2")], &spec);
        assert_eq!(
            first,
            Applied {
                labels: true,
                owners: true,
                spec: false
            },
            "minSeverity, left out of the apply, keeps its value"
        );
        assert_eq!(stored.generation, 1);
        let again = stored.apply(&[("app", "1")], &[owner("p2"), owner("p1")], &spec);
        assert!(!again.changed(), "the same owners in another order");
        let mut changed = spec.clone();
        changed.ignore_unfixed = Some(true);
        let last = stored.apply(&[], &[owner("p1")], &changed);
        assert_eq!((last.spec, stored.generation), (true, 2));
        assert_eq!(
            stored.labels,
            BTreeMap::from([("team".to_string(), "x".to_string())]),
            "our label removed, a label of someone else kept"
        );
    }

    #[test]
    fn a_status_write_keeps_the_stored_details_only_when_asked() {
        let stored = ContainerImageScanStatus {
            vulnerabilities: Some(Vec::new()),
            ..Default::default()
        };
        let sent = ContainerImageScanStatus {
            last_scan_job_uid: Some("job".into()),
            ..Default::default()
        };
        let kept = status_after_apply(Some(&stored), sent.clone(), true);
        assert_eq!(kept.vulnerabilities, Some(Vec::new()));
        assert_eq!(kept.last_scan_job_uid.as_deref(), Some("job"));
        assert_eq!(
            status_after_apply(Some(&stored), sent, false).vulnerabilities,
            None
        );
    }

    #[test]
    fn a_delete_names_what_is_missing_and_both_uids_when_they_differ() {
        assert_eq!(
            delete_precondition(JOB_RESOURCE, "scan-a", Some("u1"), "u1"),
            Ok(())
        );
        let missing = delete_precondition(JOB_RESOURCE, "scan-a", None, "u1").unwrap_err();
        assert_eq!(missing.kind, ApiErrorKind::NotFound);
        assert_eq!(missing.message, "jobs.batch \"scan-a\" not found");
        let other = delete_precondition(CIS_RESOURCE, "a", Some("u2"), "u1").unwrap_err();
        assert_eq!(other.kind, ApiErrorKind::Conflict);
        assert_eq!(
            other.message,
            "Precondition failed: UID in precondition: u1, UID in object meta: u2"
        );
    }
}
