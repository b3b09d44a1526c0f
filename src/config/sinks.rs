//! `--notification-sinks-file`: where change notices are delivered besides Events (issue 21).
//!
//! A YAML (or JSON) file, typically a ConfigMap mounted into the operator's pod:
//!
//! ```yaml
//! sinks:
//!   - name: security-team            # metrics label; lowercase, digits, '-'
//!     url: https://hooks.example.com/image-scanner
//!     format: cloudevents            # cloudevents | slack | alertmanager
//!     caFile: /etc/image-scanner/sink-ca/ca.crt          # optional: trust this CA too
//!     authorizationFile: /etc/image-scanner/sink-token/authorization  # optional
//!     timeout: 10s                   # optional, 1s–60s
//! ```
//!
//! The operator reads no Secret through the API: a sink that needs a credential gets it from a
//! file the user mounts from a Secret of their choice (`authorizationFile`, sent as the
//! `Authorization` header, read at each delivery so a rotated Secret takes effect) — the
//! grant is explicit, per sink, and needs no RBAC.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::duration::parse_go_duration;
use crate::core::notification::{SinkFormat, SinkSpec};

const FLAG: &str = "notification-sinks-file";
const ENV: &str = "NOTIFICATION_SINKS_FILE";
/// Largest sinks file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most sinks configured.
const MAX_SINKS: usize = 16;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinksFile {
    #[serde(default)]
    sinks: Vec<SinkEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SinkEntry {
    name: String,
    url: String,
    format: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    authorization_file: Option<PathBuf>,
    #[serde(default)]
    timeout: Option<String>,
}

/// One sink, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name in metrics and logs.
    pub name: String,
    /// Where payloads are POSTed (`https` only).
    pub url: String,
    /// The payload's shape.
    pub format: SinkFormat,
    /// A PEM file of CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A file whose content is sent as the `Authorization` header.
    pub authorization_file: Option<PathBuf>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

impl SinkConfig {
    /// What the core needs of it.
    pub fn spec(&self) -> SinkSpec {
        SinkSpec {
            name: self.name.clone(),
            format: self.format,
        }
    }
}

fn invalid(problem: impl Into<String>) -> ConfigError {
    ConfigError::new(FLAG, ENV, problem)
}

/// The sinks in the file at `path` (`""`: none).
pub fn load(path: &str) -> Result<Vec<SinkConfig>, ConfigError> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let text = read_bounded(Path::new(path))?;
    parse(&text)
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(invalid(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// The sinks of a sinks file's text.
pub fn parse(text: &str) -> Result<Vec<SinkConfig>, ConfigError> {
    let file: SinksFile = serde_saphyr::from_str(text).map_err(|e| invalid(format!("{e}")))?;
    if file.sinks.len() > MAX_SINKS {
        return Err(invalid(format!("at most {MAX_SINKS} sinks")));
    }
    let mut sinks: Vec<SinkConfig> = Vec::new();
    for entry in file.sinks {
        let name = entry.name.trim().to_string();
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(invalid(format!(
                "sink name {name:?}: 1-63 lowercase letters, digits or '-'"
            )));
        }
        if sinks.iter().any(|s| s.name == name) {
            return Err(invalid(format!("sink {name:?} is configured twice")));
        }
        let url = entry.url.trim().to_string();
        let parsed: Option<http::Uri> = url.parse().ok();
        let https = parsed
            .as_ref()
            .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if !https {
            return Err(invalid(format!(
                "sink {name:?}: url {url:?} is not an https:// URL (payloads are sent only with TLS)"
            )));
        }
        let format = SinkFormat::parse(entry.format.trim()).ok_or_else(|| {
            invalid(format!(
                "sink {name:?}: format {:?} is not one of cloudevents, slack, alertmanager",
                entry.format
            ))
        })?;
        let timeout = match entry.timeout.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_TIMEOUT,
            Some(t) => parse_go_duration(t)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(60)).contains(d))
                .ok_or_else(|| {
                    invalid(format!(
                        "sink {name:?}: timeout {t:?} is not a duration from 1s to 60s"
                    ))
                })?,
        };
        if let Some(ca) = &entry.ca_file {
            read_bounded(ca)?;
        }
        sinks.push(SinkConfig {
            name,
            url,
            format,
            ca_file: entry.ca_file,
            authorization_file: entry.authorization_file,
            timeout,
        });
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sinks_file_gives_each_sink_with_defaults() {
        let sinks = parse(
            "sinks:\n- name: sec\n  url: https://hooks.example.com/x\n  format: cloudevents\n\
             - name: chat\n  url: https://127.0.0.1:8443/slack\n  format: slack\n  timeout: 3s\n  \
             authorizationFile: /run/token\n",
        )
        .expect("valid");
        assert_eq!(sinks.len(), 2);
        assert_eq!(sinks[0].format, SinkFormat::CloudEvents);
        assert_eq!(sinks[0].timeout, Duration::from_secs(10));
        assert_eq!(sinks[1].timeout, Duration::from_secs(3));
        assert_eq!(
            sinks[1].authorization_file.as_deref(),
            Some(Path::new("/run/token"))
        );
        assert_eq!(sinks[1].spec().name, "chat");
        assert_eq!(load("").expect("none"), []);
    }

    #[test]
    fn bad_sinks_are_refused_with_the_reason() {
        let cases = [
            (
                "sinks:\n- name: a\n  url: http://x.example\n  format: slack\n",
                "not an https://",
            ),
            (
                "sinks:\n- name: a\n  url: https://x\n  format: teams\n",
                "not one of",
            ),
            (
                "sinks:\n- name: A_B\n  url: https://x\n  format: slack\n",
                "lowercase",
            ),
            (
                "sinks:\n- name: a\n  url: https://x\n  format: slack\n- name: a\n  url: https://y\n  format: slack\n",
                "twice",
            ),
            (
                "sinks:\n- name: a\n  url: https://x\n  format: slack\n  timeout: 5m\n",
                "1s to 60s",
            ),
            (
                "sinks:\n- name: a\n  url: https://x\n  format: slack\n  retries: 3\n",
                "retries",
            ),
            (
                "sinks:\n- name: a\n  url: https://x\n  format: slack\n  caFile: /nonexistent/ca\n",
                "cannot read",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("NOTIFICATION_SINKS_FILE"), "{err}");
        }
        let err = load("/nonexistent/sinks.yaml")
            .expect_err("missing")
            .to_string();
        assert!(err.contains("cannot read /nonexistent/sinks.yaml"), "{err}");
    }
}
