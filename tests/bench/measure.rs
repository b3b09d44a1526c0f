//! What `run` measures with: the operator process and its /proc samples, /metrics and the API
//! server's request counters, etcd sizes, statistics.

use super::*;

/// Operator /proc figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    pub(crate) rss: u64,
    pub(crate) hwm: u64,
    pub(crate) cpu: f64,
}

pub(crate) fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime: fields 14, 15 of the line = 11, 12 after the command name; 100 ticks/s.
    let ticks: f64 = [11usize, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    Some(ProcSample {
        rss: kb("VmRSS:")?,
        hwm: kb("VmHWM:")?,
        cpu: ticks / 100.0,
    })
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_string())
}

/// `name{labels} value` lines → (name, labels, value).
pub(crate) fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n.to_string(), rest.trim_end_matches('}').to_string()),
                None => (key.to_string(), String::new()),
            };
            Some((name, labels, value))
        })
        .collect()
}

pub(crate) fn metric(parsed: &[(String, String, f64)], name: &str) -> Option<f64> {
    parsed
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, v)| *v)
}

pub(crate) fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim_matches('"'))
    })
}

/// The operator's request counter by verb (all results).
pub(crate) fn requests_by_verb(parsed: &[(String, String, f64)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (n, l, v) in parsed {
        if n == "image_scanner_api_requests_total"
            && let (Some(verb), Some(result)) = (label(l, "verb"), label(l, "result"))
        {
            *out.entry(verb.to_string()).or_default() += v;
            if result != "ok" {
                *out.entry(format!("{verb}:{result}")).or_default() += v;
            }
        }
    }
    out
}

pub(crate) fn writes(by_verb: &BTreeMap<String, f64>) -> f64 {
    sum(WRITE_VERBS.iter().filter_map(|v| by_verb.get(*v)))
}

/// A sum that reads 0 when empty (`Iterator::sum` of no floats is -0.0, printed "-0").
pub(crate) fn sum<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

/// What the API server's `/metrics` say about the resources the operator touches (CIS, Jobs,
/// Reports, pod logs), read in one request.
pub(crate) struct ApiServerCounts {
    /// Requests (`apiserver_request_total`) by "resource[/subresource] VERB".
    pub(crate) requests: BTreeMap<String, f64>,
    /// Bytes received (request bodies: `apiserver_request_body_size_bytes`, which has no
    /// subresource label) and sent (`apiserver_response_sizes`) by "request|response
    /// resource[/subresource] verb"; also the request count behind each byte sum (suffix
    /// ` count`).
    pub(crate) bytes: BTreeMap<String, f64>,
}

pub(crate) async fn apiserver_counts(client: &Client) -> Result<ApiServerCounts> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut counts = ApiServerCounts {
        requests: BTreeMap::new(),
        bytes: BTreeMap::new(),
    };
    for (n, l, v) in parse_metrics(&text) {
        let resource = label(&l, "resource").unwrap_or_default();
        let sub = label(&l, "subresource").unwrap_or_default();
        let interesting = matches!(resource, "containerimagescans" | "jobs" | "reports")
            || (resource == "pods" && sub == "log");
        if !interesting {
            continue;
        }
        let what = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        let verb = label(&l, "verb").unwrap_or_default();
        let (direction, suffix) = match n.as_str() {
            "apiserver_request_total" => {
                *counts.requests.entry(format!("{what} {verb}")).or_default() += v;
                continue;
            }
            "apiserver_request_body_size_bytes_sum" => ("request", ""),
            "apiserver_request_body_size_bytes_count" => ("request", " count"),
            "apiserver_response_sizes_sum" => ("response", ""),
            "apiserver_response_sizes_count" => ("response", " count"),
            _ => continue,
        };
        let key = format!("{direction} {what} {}{suffix}", verb.to_lowercase());
        *counts.bytes.entry(key).or_default() += v;
    }
    Ok(counts)
}

pub(crate) fn delta(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

pub(crate) fn cis_writes_in(delta: &BTreeMap<String, f64>) -> f64 {
    let writes = delta
        .iter()
        .filter(|(k, _)| k.starts_with("containerimagescans"))
        .filter(|(k, _)| !(k.ends_with(" GET") || k.ends_with(" LIST") || k.ends_with(" WATCH")))
        .map(|(_, v)| v);
    sum(writes)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) struct OperatorProcess {
    pub(crate) child: Child,
}

impl OperatorProcess {
    pub(crate) fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds of the control plane's processes (from the cluster's pid files) and of this
/// process, by name.
pub(crate) fn cluster_cpu(state: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(state.join("pids")) {
        for entry in dir.flatten() {
            let name = entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".pid")
                .to_string();
            let pid = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(s) = pid.and_then(proc_sample) {
                out.insert(name, s.cpu);
            }
        }
    }
    if let Some(s) = proc_sample(std::process::id()) {
        out.insert("bench-scale (this client)".to_string(), s.cpu);
    }
    out
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Where etcd keeps the CIS.
pub(crate) const ETCD_CIS_PREFIX: &str = "/registry/stas.statnett.no/containerimagescans/";
/// Where etcd keeps the OpenReports Reports.
pub(crate) const ETCD_REPORT_PREFIX: &str = "/registry/openreports.io/reports/";

/// A port of the local cluster in `state` (`ports.env`, written by `up.sh`): `key` is e.g.
/// `ETCD_PORT`.
pub(crate) fn cluster_port(state: &Path, key: &str) -> Result<u16> {
    let ports = std::fs::read_to_string(state.join("ports.env"))
        .with_context(|| format!("reading {}/ports.env", state.display()))?;
    ports
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| anyhow!("no {key} in ports.env"))?
        .trim()
        .parse()
        .with_context(|| format!("{key} in ports.env"))
}

/// A request to the local cluster's etcd through its JSON gateway (`path` e.g. `/v3/kv/range`).
pub(crate) fn etcd_post(state: &Path, path: &str, body: &Value) -> Result<Value> {
    let port = cluster_port(state, "ETCD_PORT")?;
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "60", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .arg("-d")
        .arg(body.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "etcd request {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Sizes of the values under `prefix` (one of the `ETCD_*_PREFIX`) of the benchmark namespaces as
/// stored in etcd, via etcd's JSON gateway (`/v3/kv/range`), paged.
pub(crate) fn etcd_value_sizes(state: &Path, prefix: &str) -> Result<Vec<f64>> {
    use base64_lite::{decode_len, encode};
    let prefix = prefix.as_bytes().to_vec();
    let mut end = prefix.clone();
    *end.last_mut().expect("prefix") += 1;
    let mut key = prefix.clone();
    let mut sizes = Vec::new();
    loop {
        let body = json!({"key": encode(&key), "range_end": encode(&end), "limit": 200});
        let v = etcd_post(state, "/v3/kv/range", &body)?;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        for kv in &kvs {
            let k = base64_lite::decode(kv["key"].as_str().unwrap_or_default());
            // Objects in the benchmark namespaces only (baseline copies are made later).
            let rest = &k[prefix.len().min(k.len())..];
            if rest.starts_with(NS_PREFIX.as_bytes()) {
                sizes.push(decode_len(kv["value"].as_str().unwrap_or_default()) as f64);
            }
        }
        if v["more"].as_bool() != Some(true) || kvs.is_empty() {
            break;
        }
        let last = base64_lite::decode(
            kvs.last()
                .and_then(|kv| kv["key"].as_str())
                .unwrap_or_default(),
        );
        key = last;
        key.push(0);
    }
    Ok(sizes)
}

pub(crate) mod base64_lite {
    //! Just enough base64 for etcd's JSON gateway (keys in, keys and value lengths out).
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc = 0u32;
        let mut bits = 0;
        for c in text.bytes() {
            let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
                continue;
            };
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    pub fn decode_len(text: &str) -> usize {
        let pad = text.bytes().rev().take_while(|b| *b == b'=').count();
        text.len() / 4 * 3 - pad
    }
}
