//! The chaos test's reading of the API server's audit log (`tests/chaos/chaos.sh` writes its
//! policy: the replicas' writes and reads, at `Metadata`; their Lease writes with the
//! response): fencing by the Lease, and the request rates per verb that a hot loop would raise.

use std::collections::BTreeMap;

use super::*;

/// Seconds a lease is valid after a renewal (`shell::leader`).
pub(crate) const LEASE_SECONDS: i64 = 15;
/// A hot loop: more successful writes of one object within a minute than this.
pub(crate) const MAX_WRITES_PER_OBJECT: usize = 20;
/// A read loop: more reads of one object (or lists and watches of one collection) by one
/// replica within a minute than this. The Lease is left out: the election polls it by design.
pub(crate) const MAX_READS_PER_OBJECT: usize = 30;

/// One request of a replica, as the audit log has it.
#[derive(Debug)]
pub(crate) struct AuditRecord {
    /// When it ended (writes: the API server's clock when the write was stored), or for a read
    /// when it was received (a watch ends minutes later).
    pub(crate) at: jiff::Timestamp,
    pub(crate) user: String,
    pub(crate) verb: String,
    pub(crate) resource: String,
    /// `namespace/name`; a collection (list, watch) has an empty name.
    pub(crate) what: String,
    pub(crate) code: u64,
    /// A further page of a list (`continue=`): the same list as its first page.
    pub(crate) next_page: bool,
    /// For a Lease write: the holder it left (`responseObject`, audited at `RequestResponse`),
    /// `None` after a release; the sender when the response is not in the log. `None` for
    /// every other resource.
    pub(crate) lease_holder: Option<String>,
}

impl AuditRecord {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub(crate) fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// The requests of users `chaos-*`, one record per request (its `ResponseComplete` stage).
pub(crate) fn read_audit(path: &Path) -> Result<Vec<AuditRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the audit log {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["stage"] != "ResponseComplete" {
            continue;
        }
        let user = v["user"]["username"].as_str().unwrap_or("");
        if !user.starts_with("chaos-") {
            continue;
        }
        let verb = v["verb"].as_str().unwrap_or("").to_string();
        let stamp = if matches!(verb.as_str(), "get" | "list" | "watch") {
            "requestReceivedTimestamp"
        } else {
            "stageTimestamp"
        };
        let Some(at) = v[stamp]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let r = &v["objectRef"];
        let (resource, what) = if r.is_object() {
            let resource = match r["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", r["resource"].as_str().unwrap_or("")),
                None => r["resource"].as_str().unwrap_or("").to_string(),
            };
            let what = format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            );
            (resource, what)
        } else {
            // Discovery and the like: by path.
            let uri = v["requestURI"].as_str().unwrap_or("");
            let path = uri.split_once('?').map_or(uri, |(p, _)| p);
            ("non-resource".to_string(), path.to_string())
        };
        let lease_holder = match v["responseObject"]["spec"].as_object() {
            _ if resource != "leases" => None,
            Some(spec) => spec
                .get("holderIdentity")
                .and_then(Value::as_str)
                .map(str::to_string),
            None => Some(user.to_string()),
        };
        out.push(AuditRecord {
            at,
            user: user.to_string(),
            verb,
            lease_holder,
            resource,
            what,
            code: v["responseStatus"]["code"].as_u64().unwrap_or(0),
            next_page: v["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("continue=")),
        });
    }
    out.sort_by_key(|r| r.at);
    Ok(out)
}

/// A stop of kube-apiserver (SIGSTOP to SIGCONT), by the harness's clock (the machine's, as
/// the API server's).
pub(crate) struct Stop {
    pub(crate) from: jiff::Timestamp,
    pub(crate) until: jiff::Timestamp,
}

/// Seconds after a stop's SIGCONT within which the stopped server carries out the requests it
/// received meanwhile.
const CARRIED_OUT_AFTER_A_STOP_S: i64 = 5;

/// What the audit log says of fencing.
pub(crate) struct Fencing {
    pub(crate) violations: Vec<String>,
    /// Writes carried out just after a stop of kube-apiserver by a replica whose lease was
    /// valid when it stopped: sent under the lease, they waited in the stopped server (their
    /// client may have given up on them meanwhile), and no other replica had taken the Lease.
    pub(crate) carried_out_after_a_stop: usize,
}

/// Fencing: the writes of CIS and Jobs by a replica that did not hold the Lease then (the other
/// one renewed later than it did, or its own last renewal is a lease duration old and the write
/// did not wait in a stopped API server).
pub(crate) fn fencing(records: &[AuditRecord], stops: &[Stop]) -> Fencing {
    let mut last_renewal: BTreeMap<&str, jiff::Timestamp> = BTreeMap::new();
    let mut fencing = Fencing {
        violations: Vec::new(),
        carried_out_after_a_stop: 0,
    };
    let lease = jiff::SignedDuration::from_secs(LEASE_SECONDS);
    let grace = jiff::SignedDuration::from_secs(CARRIED_OUT_AFTER_A_STOP_S);
    for w in records.iter().filter(|w| w.ok() && !w.is_read()) {
        if w.resource == "leases" {
            // A renewal of the holder the write left, whoever sent it: the old holder's
            // renewal carried out after a take-over renews the new holder's lease (only
            // `renewTime` is patched; `make test` chaos-small seed 1063508541 counted it as
            // the old holder's and the new holder's writes as 9 violations).
            if let Some(holder) = &w.lease_holder {
                last_renewal.insert(holder.as_str(), w.at);
            }
            continue;
        }
        if !(w.resource.starts_with("containerimagescans") || w.resource == "jobs") {
            continue;
        }
        let own = last_renewal.get(w.user.as_str()).copied();
        let other = last_renewal
            .iter()
            .filter(|(u, _)| **u != w.user)
            .map(|(_, t)| *t)
            .max();
        let Some(own_renewal) = own else {
            fencing.violations.push(format!(
                "{} {} {} {} at {} without ever holding the Lease",
                w.user, w.verb, w.resource, w.what, w.at
            ));
            continue;
        };
        let taken_over = other.is_some_and(|o| o > own_renewal);
        let lapsed = w.at.duration_since(own_renewal).as_secs() >= LEASE_SECONDS;
        let waited_in_a_stop = stops
            .iter()
            .any(|s| s.until <= w.at && w.at <= s.until + grace && own_renewal + lease > s.from);
        if taken_over || (lapsed && !waited_in_a_stop) {
            fencing.violations.push(format!(
                "{} {} {} {} at {} without the Lease (own last renewal {:?}, other's {:?})",
                w.user, w.verb, w.resource, w.what, w.at, own, other
            ));
        } else if lapsed {
            fencing.carried_out_after_a_stop += 1;
        }
    }
    fencing
}

/// The most records of one key within any minute (`times` sorted, in seconds).
fn most_in_a_minute(times: &[i64]) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while times[start] + 60 <= *t {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// Per key, the most records within a minute, of the records `keep` selects.
fn per_minute(
    records: &[AuditRecord],
    keep: impl Fn(&AuditRecord) -> bool,
) -> BTreeMap<(&str, &str, &str, &str), usize> {
    let mut times: BTreeMap<(&str, &str, &str, &str), Vec<i64>> = BTreeMap::new();
    for r in records.iter().filter(|r| keep(r)) {
        times
            .entry((
                r.user.as_str(),
                r.verb.as_str(),
                r.resource.as_str(),
                r.what.as_str(),
            ))
            .or_default()
            .push(r.at.as_second());
    }
    times
        .into_iter()
        .map(|(k, t)| (k, most_in_a_minute(&t)))
        .collect()
}

/// Request rates and hot loops: what `chaos.json` reports of them, and the violations.
pub(crate) struct Rates {
    pub(crate) report: Value,
    pub(crate) violations: Vec<String>,
}

/// Writes of one object and reads of one object (or collection) per minute, per replica; the
/// requests per verb, in all and in their busiest second.
pub(crate) fn rates(records: &[AuditRecord]) -> Rates {
    let mut violations = Vec::new();
    let writes = per_minute(records, |r| {
        r.ok() && !r.is_read() && r.resource != "leases" && r.resource != "events"
    });
    let reads = per_minute(records, |r| {
        r.is_read() && !r.next_page && r.resource != "leases"
    });
    for (limit, what, map) in [
        (MAX_WRITES_PER_OBJECT, "writes", &writes),
        (MAX_READS_PER_OBJECT, "requests", &reads),
    ] {
        for ((user, verb, resource, object), n) in map {
            if *n > limit {
                violations.push(format!(
                    "{user} {verb} {resource} {object}: {n} {what} within a minute (a hot loop)"
                ));
            }
        }
    }
    let mut per_verb: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_second: BTreeMap<(&str, i64), usize> = BTreeMap::new();
    for r in records {
        *per_verb.entry(r.verb.as_str()).or_default() += 1;
        *per_second
            .entry((r.verb.as_str(), r.at.as_second()))
            .or_default() += 1;
    }
    let mut peak_per_verb: BTreeMap<&str, usize> = BTreeMap::new();
    for ((verb, _), n) in &per_second {
        let peak = peak_per_verb.entry(verb).or_default();
        *peak = (*peak).max(*n);
    }
    let top = |map: &BTreeMap<(&str, &str, &str, &str), usize>| {
        map.iter()
            .max_by_key(|(_, n)| **n)
            .map(|((u, v, r, o), n)| format!("{n}: {u} {v} {r} {o}"))
            .unwrap_or_default()
    };
    let expired = records.iter().filter(|r| r.code == 410).count();
    Rates {
        report: json!({
            "requests_per_verb": per_verb,
            "peak_requests_per_second_per_verb": peak_per_verb,
            "most_writes_of_one_object_per_minute": top(&writes),
            "most_reads_of_one_object_per_minute": top(&reads),
            "answered_410": expired,
        }),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_minute_counts_records_less_than_a_minute_apart() {
        assert_eq!(most_in_a_minute(&[0, 10, 59, 60, 61, 200]), 4);
        assert_eq!(most_in_a_minute(&[5]), 1);
        assert_eq!(most_in_a_minute(&[]), 0);
    }

    /// A successful write by `user` of `resource`, `at` seconds.
    fn write(user: &str, resource: &str, at: i64) -> AuditRecord {
        AuditRecord {
            at: jiff::Timestamp::from_second(at).expect("time"),
            user: user.into(),
            verb: "patch".into(),
            resource: resource.into(),
            what: "ns/x".into(),
            code: 200,
            next_page: false,
            lease_holder: Some(user.into()),
        }
    }

    /// A successful write of the Lease by `user`, `at` seconds, that left `holder` holding it.
    fn lease_write(user: &str, holder: &str, at: i64) -> AuditRecord {
        AuditRecord {
            lease_holder: Some(holder.into()),
            ..write(user, "leases", at)
        }
    }

    #[test]
    fn a_lease_write_renews_the_holder_it_leaves_not_its_sender() {
        // b held it; a took it over at 115; b's renewal, sent before, was carried out at 119
        // (its `renewTime` on a's lease).
        let records = [
            lease_write("b", "b", 100),
            lease_write("a", "a", 115),
            lease_write("b", "a", 119),
            write("a", "containerimagescans", 120),
        ];
        let f = fencing(&records, &[]);
        assert!(f.violations.is_empty(), "{:?}", f.violations);
        // The replica taken over writing after that is one.
        let records = [
            lease_write("b", "b", 100),
            lease_write("a", "a", 115),
            lease_write("b", "a", 119),
            write("b", "jobs", 120),
        ];
        assert_eq!(fencing(&records, &[]).violations.len(), 1);
        // A release leaves nobody: it renews nothing (a write 20 s after the last renewal).
        let released = AuditRecord {
            lease_holder: None,
            ..write("a", "leases", 110)
        };
        let records = [
            lease_write("a", "a", 100),
            released,
            write("a", "jobs", 120),
        ];
        assert_eq!(fencing(&records, &[]).violations.len(), 1);
    }

    #[test]
    fn a_write_that_waited_in_a_stopped_api_server_under_a_valid_lease_is_no_violation() {
        let stop = |from, until| Stop {
            from: jiff::Timestamp::from_second(from).expect("time"),
            until: jiff::Timestamp::from_second(until).expect("time"),
        };
        // Renewed at 100, the server stopped from 105 to 140: a write carried out at 141.
        let records = [
            write("a", "leases", 100),
            write("a", "containerimagescans", 141),
        ];
        let f = fencing(&records, &[stop(105, 140)]);
        assert!(f.violations.is_empty(), "{:?}", f.violations);
        assert_eq!(f.carried_out_after_a_stop, 1);
        // Without the stop, or past its few seconds, or with a lease already out when it
        // stopped: a write without the Lease.
        for stops in [vec![], vec![stop(105, 130)], vec![stop(116, 140)]] {
            assert_eq!(fencing(&records, &stops).violations.len(), 1);
        }
        // Taken over before it was carried out: a violation, stop or not.
        let records = [
            write("a", "leases", 100),
            write("b", "leases", 140),
            write("a", "jobs", 141),
        ];
        assert_eq!(fencing(&records, &[stop(105, 140)]).violations.len(), 1);
    }
}
