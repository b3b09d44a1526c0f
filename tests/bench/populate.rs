//! `populate`: the plan (namespaces, workloads, digests) and the objects that make it.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    DaemonSet,
    StatefulSet,
    Deployment,
    Pod,
}

/// One workload: its kind, name, replicas and containers (name, digest index).
pub(crate) struct Unit {
    pub(crate) ns: String,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) replicas: usize,
    pub(crate) containers: Vec<(&'static str, usize)>,
}

/// 64 hex characters, deterministic per index (kwok uses the hex of the image's digest as the
/// imageID and as the name of the log file; it need not be a real sha256 of anything).
pub(crate) fn digest_hex(i: usize) -> String {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out
}

pub(crate) fn image(i: usize) -> String {
    format!(
        "registry.bench/team-{}/app-{i}@sha256:{}",
        i % 20,
        digest_hex(i)
    )
}

/// The workload mix of the cluster. Per namespace: a DaemonSet in one namespace of ten (one pod
/// per node), then of the remaining pods ~20% in 2-replica StatefulSets, ~60% in 3-replica
/// Deployments (one in four with a sidecar from a small set of popular images) and the rest bare
/// pods. Main containers take digests round-robin, so every digest is used and shared across
/// namespaces.
pub(crate) fn plan(
    pods: usize,
    namespaces: usize,
    digests: usize,
    nodes: usize,
) -> Result<Vec<Unit>> {
    if namespaces == 0 || digests == 0 || pods < namespaces {
        bail!("need PODS >= NAMESPACES >= 1 and DIGESTS >= 1");
    }
    let popular = digests.min(10);
    let mut units = Vec::new();
    let mut next_digest = 0usize;
    let mut sidecars = 0usize;
    let mut take = || {
        let d = next_digest % digests;
        next_digest += 1;
        d
    };
    for i in 0..namespaces {
        let ns = format!("{NS_PREFIX}{i:03}");
        let mut left = pods / namespaces + usize::from(i < pods % namespaces);
        if i % 10 == 0 && left >= nodes + 10 {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::DaemonSet,
                name: format!("ds-{i}"),
                replicas: nodes,
                containers: vec![("agent", take())],
            });
            left -= nodes;
        }
        let sts = left / 10;
        for k in 0..sts {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::StatefulSet,
                name: format!("sts-{k}"),
                replicas: 2,
                containers: vec![("app", take())],
            });
        }
        left -= sts * 2;
        let deps = left * 3 / 4 / 3;
        for k in 0..deps {
            let mut containers = vec![("app", take())];
            if k % 4 == 0 {
                containers.push(("proxy", sidecars % popular));
                sidecars += 1;
            }
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::Deployment,
                name: format!("dep-{k}"),
                replicas: 3,
                containers,
            });
        }
        left -= deps * 3;
        for k in 0..left {
            units.push(Unit {
                ns: ns.clone(),
                kind: Kind::Pod,
                name: format!("pod-{k}"),
                replicas: 1,
                containers: vec![("app", take())],
            });
        }
    }
    if next_digest < digests {
        bail!(
            "only {next_digest} workload containers for {digests} digests: raise PODS or lower DIGESTS"
        );
    }
    Ok(units)
}

pub(crate) fn pod_spec(unit: &Unit) -> Value {
    let containers: Vec<Value> = unit
        .containers
        .iter()
        .map(|(name, d)| json!({"name": name, "image": image(*d)}))
        .collect();
    json!({
        "containers": containers,
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
    })
}

pub(crate) fn manifest(unit: &Unit) -> Value {
    let kind = format!("{:?}", unit.kind).to_lowercase();
    let labels = json!({"app": unit.name, "bench": "scale", "bench-kind": kind});
    let meta = json!({"name": unit.name, "namespace": unit.ns, "labels": labels});
    let template = json!({"metadata": {"labels": labels}, "spec": pod_spec(unit)});
    let selector = json!({"matchLabels": {"app": unit.name}});
    match unit.kind {
        Kind::Deployment => json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": unit.replicas, "selector": selector, "template": template},
        }),
        Kind::StatefulSet => json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": unit.replicas, "selector": selector, "template": template,
                     "serviceName": unit.name, "podManagementPolicy": "Parallel"},
        }),
        Kind::DaemonSet => json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": selector, "template": template},
        }),
        Kind::Pod => json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec(unit),
        }),
    }
}

/// CRI log format, byte-exact like tests/cluster/serve-log.sh: `<ts> stdout F <line>`, lines
/// over 16 KiB split into `P` records, the last record `P` when there is no trailing newline.
pub(crate) fn cri_log(src: &[u8]) -> Vec<u8> {
    const MAX: usize = 16 * 1024;
    let ts = b"2024-01-01T00:00:00.000000000Z";
    let mut out = Vec::with_capacity(src.len() + src.len() / 8);
    let no_trailing_nl = !src.is_empty() && !src.ends_with(b"\n");
    let body = src.strip_suffix(b"\n").unwrap_or(src);
    if src.is_empty() {
        return out;
    }
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    for (i, mut line) in lines.iter().copied().enumerate() {
        while line.len() > MAX {
            out.extend_from_slice(ts);
            out.extend_from_slice(b" stdout P ");
            out.extend_from_slice(&line[..MAX]);
            out.push(b'\n');
            line = &line[MAX..];
        }
        let last = i + 1 == lines.len();
        out.extend_from_slice(ts);
        out.extend_from_slice(if last && no_trailing_nl {
            b" stdout P "
        } else {
            b" stdout F "
        });
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

pub(crate) async fn client() -> Result<Client> {
    Ok(Client::try_default().await?)
}

pub(crate) async fn list_all<K>(api: &Api<K>, lp: &ListParams) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut lp = lp.clone().limit(500);
    loop {
        let page = api.list(&lp).await?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp.continue_token = Some(c),
            _ => break,
        }
    }
    Ok(items)
}

/// Every object of kind `K` in the populated namespaces (`NS_PREFIX`).
pub(crate) async fn list_populated<K>(client: &Client) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(list_all(&api, &ListParams::default())
        .await?
        .into_iter()
        .filter(|o| o.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .collect())
}

pub(crate) async fn create_value(client: &Client, obj: Value) -> Result<()> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pp = PostParams::default();
    let res = match kind.as_str() {
        "Pod" => Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&pp, &serde_json::from_value(obj)?)
            .await
            .map(|_| ()),
        "Deployment" => {
            Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        "StatefulSet" => {
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        "DaemonSet" => {
            Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), &ns)
                .create(&pp, &serde_json::from_value(obj)?)
                .await
                .map(|_| ())
        }
        other => bail!("unexpected kind {other}"),
    };
    match res {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn pod_ready(p: &Pod) -> bool {
    let s = p.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready pods: ready replicas of the benchmark's workloads plus its ready bare pods.
pub(crate) async fn count_ready(client: &Client) -> Result<usize> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    let lp = ListParams::default().labels(LABEL);
    let deps = list_all(&Api::<Deployment>::all(client.clone()), &lp).await?;
    let sts = list_all(&Api::<StatefulSet>::all(client.clone()), &lp).await?;
    let ds = list_all(&Api::<DaemonSet>::all(client.clone()), &lp).await?;
    let bare = list_all(
        &Api::<Pod>::all(client.clone()),
        &ListParams::default().labels("bench=scale,bench-kind=pod"),
    )
    .await?;
    let n = |v: Option<i32>| v.unwrap_or(0).max(0) as usize;
    Ok(deps
        .iter()
        .map(|d| n(d.status.as_ref().and_then(|s| s.ready_replicas)))
        .sum::<usize>()
        + sts
            .iter()
            .map(|d| n(d.status.as_ref().and_then(|s| s.ready_replicas)))
            .sum::<usize>()
        + ds.iter()
            .map(|d| n(d.status.as_ref().map(|s| s.number_ready)))
            .sum::<usize>()
        + bare.iter().filter(|p| pod_ready(p)).count())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn populate(
    out: &Path,
    pods: usize,
    namespaces: usize,
    digests: usize,
    nodes: usize,
    logs_dir: &Path,
    timeout: u64,
    mix: Mix,
) -> Result<()> {
    let units = plan(pods, namespaces, digests, nodes)?;
    let total_pods: usize = units.iter().map(|u| u.replicas).sum();
    let containers: usize = units.iter().map(|u| u.replicas * u.containers.len()).sum();
    let cis: usize = units.iter().map(|u| u.containers.len()).sum();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for u in &units {
        let e = by_kind.entry(format!("{:?}", u.kind)).or_default();
        e.0 += 1;
        e.1 += u.replicas;
    }
    log(format!(
        "plan: {total_pods} pods in {namespaces} namespaces, {containers} containers, {cis} CIS expected, {digests} digests; by kind (objects, pods): {by_kind:?}"
    ));

    // Scan logs first: a scan pod may read its log as soon as it exists.
    std::fs::create_dir_all(logs_dir)?;
    // One CRI log per fixture, written once per digest that replays it.
    let mut logs = BTreeMap::<&str, Vec<u8>>::new();
    let mut log_bytes = BTreeMap::<&str, usize>::new();
    for d in 0..digests {
        let fixture = mix.fixture(d);
        if !logs.contains_key(fixture) {
            let bytes = std::fs::read(fixture).with_context(|| fixture.to_string())?;
            logs.insert(fixture, cri_log(&bytes));
        }
        *log_bytes.entry(fixture).or_default() += 1;
        std::fs::write(
            logs_dir.join(format!("{}.log", digest_hex(d))),
            &logs[fixture],
        )?;
    }
    log(format!(
        "scan logs written to {} (digests per fixture: {log_bytes:?})",
        logs_dir.display()
    ));

    let client = client().await?;
    let t0 = Instant::now();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut ns_names: Vec<String> = (0..namespaces)
        .map(|i| format!("{NS_PREFIX}{i:03}"))
        .collect();
    ns_names.push(SCAN_NAMESPACE.to_string());
    futures::stream::iter(ns_names.clone())
        .map(|name| {
            let api = ns_api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {"bench": "scale"}}}),
                )?;
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(anyhow!("namespace {name}: {e}")),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let job_sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "image-scanner-job"}}))?;
    match sa.create(&PostParams::default(), &job_sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    // Pods are rejected until the service-account controller made `default` in each namespace.
    let all_sa: Api<ServiceAccount> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let defaults = list_all(
            &all_sa,
            &ListParams::default().fields("metadata.name=default"),
        )
        .await?
        .into_iter()
        .filter(|s| s.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .count();
        if defaults == namespaces {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {defaults}/{namespaces} default service accounts after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log(format!(
        "namespaces ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    let manifests: Vec<Value> = units.iter().map(manifest).collect();
    futures::stream::iter(manifests)
        .map(|m| create_value(&client, m))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created_s = t0.elapsed().as_secs_f64();
    log(format!(
        "{} workload objects created in {created_s:.1} s",
        units.len()
    ));

    // Wait until every pod runs and is Ready. Polling 10,000 pods would load the API server
    // that is busy starting them: count ready replicas of the workloads and list only the bare
    // pods, then check every pod once at the end.
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut last_report = Instant::now();
    loop {
        let ready = count_ready(&client).await?;
        if ready >= total_pods {
            let all = list_all(
                &Api::<Pod>::all(client.clone()),
                &ListParams::default().labels(LABEL),
            )
            .await?;
            let ready = all.iter().filter(|p| pod_ready(p)).count();
            if ready == total_pods && all.len() == total_pods {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("only {ready}/{total_pods} pods Running and Ready after {timeout} s");
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            log(format!("{ready}/{total_pods} pods Running and Ready"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let running_s = t0.elapsed().as_secs_f64();
    log(format!(
        "all {total_pods} pods Running and Ready {running_s:.1} s after the start"
    ));
    let kinds: BTreeMap<String, Value> = by_kind
        .into_iter()
        .map(|(k, (objects, pods))| (k, json!({"objects": objects, "pods": pods})))
        .collect();
    write_json(
        &out.join("plan.json"),
        &json!({
            "pods": total_pods,
            "namespaces": namespaces,
            "digests": digests,
            "nodes": nodes,
            "containers": containers,
            "cis_expected": cis,
            "kinds": kinds,
            "logs_per_fixture": log_bytes,
            "report_mix": format!("{mix:?}").to_lowercase(),
            "populate_create_s": created_s,
            "populate_running_s": running_s,
        }),
    )
}
