//! `baseline`: the physical bound — a plain client writing CIS-sized objects and scan Jobs.

use super::*;

pub(crate) fn cis_resource() -> ApiResource {
    ApiResource::erase::<ContainerImageScan>(&())
}

/// Times `work` over `items` with `concurrency` tasks; returns (seconds, errors).
pub(crate) async fn timed<F, Fut>(items: Vec<Value>, concurrency: usize, work: F) -> (f64, usize)
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(items)
        .map(work)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let errors: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        log(format!("{} errors, first: {e}", errors.len()));
    }
    (t.elapsed().as_secs_f64(), errors.len())
}

pub(crate) async fn baseline(out: &Path, concurrency: usize, jobs_in_flight: usize) -> Result<()> {
    let client = client().await?;
    let ar = cis_resource();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let templates: Vec<DynamicObject> = list_all(&all, &ListParams::default())
        .await?
        .into_iter()
        .filter(|c| c.namespace().is_some_and(|n| n.starts_with(NS_PREFIX)))
        .filter(|c| !c.name_any().starts_with("bl"))
        .collect();
    let n = templates.len();
    if n == 0 {
        bail!("no CIS to copy: run the operator first");
    }
    log(format!(
        "baseline: {n} objects per variant, {concurrency} requests in flight"
    ));
    // (metadata + spec, status) of each copy.
    let copy = |prefix: &str, t: &DynamicObject, i: usize| -> Value {
        let ns = t.namespace().unwrap_or_default();
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.insert("bench-baseline".to_string(), "true".to_string());
        json!({
            "apiVersion": ContainerImageScan::api_version(&()),
            "kind": ContainerImageScan::kind(&()),
            "metadata": {
                "name": format!("{prefix}-{i}"),
                "namespace": ns,
                "labels": labels,
                "ownerReferences": t.metadata.owner_references,
            },
            "spec": t.data["spec"],
            "status": t.data["status"],
        })
    };
    let objects = |prefix: &str| -> Vec<Value> {
        templates
            .iter()
            .enumerate()
            .map(|(i, t)| copy(prefix, t, i))
            .collect()
    };
    let api_for = |obj: &Value| -> Api<DynamicObject> {
        Api::namespaced_with(
            client.clone(),
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            &ar,
        )
    };
    let body_without_status = |obj: &Value| -> Result<DynamicObject> {
        let mut o = obj.clone();
        o.as_object_mut().map(|m| m.remove("status"));
        Ok(serde_json::from_value(o)?)
    };

    // 1. create only.
    let (create_s, create_err) = timed(objects("blc"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            api.create(&PostParams::default(), &body_without_status(&obj)?)
                .await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "create only: {create_s:.1} s ({create_err} errors)"
    ));

    // 2. create + status write (PUT /status with the created object's resourceVersion).
    let (full_s, full_err) = timed(objects("bls"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            let mut created = api
                .create(&PostParams::default(), &body_without_status(&obj)?)
                .await?;
            created.data["status"] = obj["status"].clone();
            let name = created.name_any();
            api.replace_status(&name, &PostParams::default(), &created)
                .await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "create + status: {full_s:.1} s ({full_err} errors)"
    ));

    // 3. what the operator does: server-side apply of metadata/spec, then of the status.
    let (ssa_s, ssa_err) = timed(objects("bla"), concurrency, |obj| {
        let api = api_for(&obj);
        async move {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let pp = PatchParams::apply("bench-baseline").force();
            let mut spec = obj.clone();
            spec.as_object_mut().map(|m| m.remove("status"));
            let applied = api.patch(&name, &pp, &Patch::Apply(&spec)).await?;
            let status = json!({
                "apiVersion": obj["apiVersion"], "kind": obj["kind"],
                "metadata": {"name": name, "namespace": obj["metadata"]["namespace"], "uid": applied.uid()},
                "status": obj["status"],
            });
            api.patch_status(&name, &pp, &Patch::Apply(&status)).await?;
            Ok(())
        }
    })
    .await;
    log(format!(
        "apply + status apply: {ssa_s:.1} s ({ssa_err} errors)"
    ));

    // Remove the copies (they are not the operator's; a later run on a kept cluster must not
    // see them). Not timed.
    let namespaces: std::collections::BTreeSet<String> =
        templates.iter().filter_map(|t| t.namespace()).collect();
    futures::stream::iter(namespaces)
        .map(|ns| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            async move {
                let lp = ListParams::default().labels("bench-baseline=true");
                let _ = api
                    .delete_collection(&kube::api::DeleteParams::background(), &lp)
                    .await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    // 4. the scan Jobs alone (optional).
    let (jobs_n, jobs_s, jobs_err) = if jobs_in_flight > 0 {
        match baseline_jobs(&client, jobs_in_flight).await {
            Ok((n, s, e)) => {
                log(format!(
                    "scan Jobs alone: {n} Jobs, {jobs_in_flight} in flight, {s:.1} s ({e} errors)"
                ));
                (Some(n), Some(s), e)
            }
            Err(e) => {
                log(format!("scan Jobs baseline skipped: {e:#}"));
                (None, None, 0)
            }
        }
    } else {
        (None, None, 0)
    };
    write_json(
        &out.join("baseline.json"),
        &json!({
            "objects": n,
            "concurrency": concurrency,
            "api_baseline_s": full_s,
            "api_baseline_create_only_s": create_s,
            "api_baseline_ssa_s": ssa_s,
            "api_baseline_jobs": jobs_n,
            "api_baseline_jobs_in_flight": (jobs_in_flight > 0).then_some(jobs_in_flight),
            "api_baseline_jobs_s": jobs_s,
            "errors": create_err + full_err + ssa_err + jobs_err,
        }),
    )
}

/// The scan pipeline's physical bound: copies of the operator's scan Jobs, created by a plain
/// client with the operator's job limit in flight, each waited for until Complete and its scan
/// log read (as the operator does). Returns (jobs, seconds, errors).
pub(crate) async fn baseline_jobs(
    client: &Client,
    job_limit: usize,
) -> Result<(usize, f64, usize)> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::LogParams;
    use kube::runtime::watcher;

    const PREFIX: &str = "blj-";
    const LABEL_KEY: &str = "bench-baseline";
    let jobs: Api<Job> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), SCAN_NAMESPACE);
    let templates: Vec<Job> = list_all(&jobs, &ListParams::default())
        .await?
        .into_iter()
        .filter(|j| !j.name_any().starts_with(PREFIX))
        .collect();
    let n = templates.len();
    if n == 0 {
        bail!("no scan Job to copy: run the operator first");
    }
    // Jobs the API server generated fields for (selector, controller-uid labels) are copied
    // without them; the pod template (images, so kwok's stages and replayed logs) is kept.
    let copy = |t: &Job, i: usize| -> Result<Job> {
        let mut spec = t.spec.clone().context("Job without spec")?;
        spec.selector = None;
        spec.manual_selector = None;
        if let Some(meta) = spec.template.metadata.as_mut()
            && let Some(labels) = meta.labels.as_mut()
        {
            labels.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
            labels.insert(LABEL_KEY.to_string(), "true".to_string());
        }
        Ok(Job {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{PREFIX}{i}")),
                namespace: Some(SCAN_NAMESPACE.to_string()),
                labels: Some([(LABEL_KEY.to_string(), "true".to_string())].into()),
                annotations: t.metadata.annotations.clone(),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        })
    };
    let copies: Vec<Job> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| copy(t, i))
        .collect::<Result<_>>()?;

    // One watch tells each waiter when its Job is Complete or Failed.
    type Waiters = Arc<Mutex<BTreeMap<String, tokio::sync::oneshot::Sender<bool>>>>;
    let waiters: Waiters = Arc::default();
    // The operator's own rule for a finished Job (Complete/Failed only).
    let finished = |j: &Job| -> Option<bool> {
        let view = image_scanner::shell::convert::job_view(j, Timestamp::from_secs(0))?;
        view.finished.map(|f| f.succeeded)
    };
    let watch = {
        let waiters = waiters.clone();
        let cfg = watcher::Config::default().labels(&format!("{LABEL_KEY}=true"));
        tokio::spawn(watcher(jobs.clone(), cfg).for_each(move |event| {
            let waiters = waiters.clone();
            async move {
                let job = match event {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => j,
                    _ => return,
                };
                if let Some(ok) = finished(&job)
                    && let Some(tx) = waiters.lock().unwrap().remove(&job.name_any())
                {
                    let _ = tx.send(ok);
                }
            }
        }))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(copies)
        .map(|job| {
            let (jobs, pods, waiters) = (jobs.clone(), pods.clone(), waiters.clone());
            async move {
                let name = job.name_any();
                let (tx, rx) = tokio::sync::oneshot::channel();
                waiters.lock().unwrap().insert(name.clone(), tx);
                jobs.create(&PostParams::default(), &job).await?;
                let ok = tokio::time::timeout(Duration::from_secs(600), rx)
                    .await
                    .map_err(|_| anyhow!("{name}: not finished after 600 s"))??;
                if !ok {
                    bail!("{name} failed");
                }
                let lp = ListParams::default().labels(&format!("job-name={name}"));
                let pod = pods
                    .list(&lp)
                    .await?
                    .items
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("{name}: no pod"))?;
                let lp = LogParams {
                    container: Some(image_scanner::core::scan_job::SCAN_CONTAINER.to_string()),
                    ..LogParams::default()
                };
                pods.logs(&pod.name_any(), &lp).await?;
                Ok(())
            }
        })
        .buffer_unordered(job_limit)
        .collect()
        .await;
    let seconds = t.elapsed().as_secs_f64();
    watch.abort();
    let errors: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = errors.first() {
        log(format!("{} errors, first: {e}", errors.len()));
    }
    let dp = kube::api::DeleteParams::background();
    let _ = jobs
        .delete_collection(
            &dp,
            &ListParams::default().labels(&format!("{LABEL_KEY}=true")),
        )
        .await;
    Ok((n, seconds, errors.len()))
}
