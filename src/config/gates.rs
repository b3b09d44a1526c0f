//! Feature gates (`--feature-gates=Name=value,...`), compatible with the Go operator's names.

use super::ConfigError;

/// A gate that can also be left to automatic detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSetting {
    /// Decide at start-up (e.g. enabled when the needed CRD exists).
    Auto,
    /// Forced on.
    On,
    /// Forced off.
    Off,
}

/// The feature gates we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureGates {
    /// Write an OpenReports `Report` per CIS. Default `Auto`: when `reports.openreports.io` exists.
    pub policy_report: GateSetting,
    /// Leave `status.vulnerabilities` empty. Default `Auto`: empty exactly when the details are
    /// in the CIS's Report, so they are stored once (in the status on clusters without
    /// OpenReports). On is the Go operator's default; off writes them to both.
    pub no_cis_status_vulnerabilities: GateSetting,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            policy_report: GateSetting::Auto,
            no_cis_status_vulnerabilities: GateSetting::Auto,
        }
    }
}

fn error(problem: String) -> ConfigError {
    ConfigError::new("feature-gates", "FEATURE_GATES", problem)
}

fn parse_setting(name: &str, value: &str) -> Result<GateSetting, ConfigError> {
    if value.trim().eq_ignore_ascii_case("auto") {
        return Ok(GateSetting::Auto);
    }
    Ok(if parse_value(name, value)? {
        GateSetting::On
    } else {
        GateSetting::Off
    })
}

fn parse_value(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(error(format!("{name}={other:?} is not true or false"))),
    }
}

impl FeatureGates {
    /// Parses `Name=bool,...`. Unknown names are an error, as in Kubernetes components.
    pub fn parse(value: &str) -> Result<FeatureGates, ConfigError> {
        let mut gates = FeatureGates::default();
        for entry in super::parse_list(value) {
            let Some((name, setting)) = entry.split_once('=') else {
                return Err(error(format!("{entry:?} is not Name=value")));
            };
            match name.trim() {
                "PolicyReport" => gates.policy_report = parse_setting(name, setting)?,
                "NoCISStatusVulnerabilities" => {
                    gates.no_cis_status_vulnerabilities = parse_setting(name, setting)?;
                }
                // Kubernetes components accept these; both our gates are Beta.
                "AllAlpha" => {
                    parse_value(name, setting)?;
                }
                "AllBeta" => {
                    let on = if parse_value(name, setting)? {
                        GateSetting::On
                    } else {
                        GateSetting::Off
                    };
                    gates.policy_report = on;
                    gates.no_cis_status_vulnerabilities = on;
                }
                other => {
                    return Err(error(format!(
                        "unknown feature gate {other:?} (known: PolicyReport, NoCISStatusVulnerabilities)"
                    )));
                }
            }
        }
        Ok(gates)
    }
}
