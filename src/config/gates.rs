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
    /// Leave `status.vulnerabilities` empty (details only in the Report). Default off: the CIS
    /// status carries bounded details, which is what `kubectl get cis -o yaml` users expect.
    pub no_cis_status_vulnerabilities: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            policy_report: GateSetting::Auto,
            no_cis_status_vulnerabilities: false,
        }
    }
}

fn error(problem: String) -> ConfigError {
    ConfigError::new("feature-gates", "FEATURE_GATES", problem)
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
                "PolicyReport" => {
                    gates.policy_report = if setting.trim().eq_ignore_ascii_case("auto") {
                        GateSetting::Auto
                    } else if parse_value(name, setting)? {
                        GateSetting::On
                    } else {
                        GateSetting::Off
                    };
                }
                "NoCISStatusVulnerabilities" => {
                    gates.no_cis_status_vulnerabilities = parse_value(name, setting)?;
                }
                // Kubernetes components accept these; both our gates are Beta.
                "AllAlpha" => {
                    parse_value(name, setting)?;
                }
                "AllBeta" => {
                    let on = parse_value(name, setting)?;
                    gates.policy_report = if on {
                        GateSetting::On
                    } else {
                        GateSetting::Off
                    };
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
