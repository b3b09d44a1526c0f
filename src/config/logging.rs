//! Logging settings: `--log-format`/`--log-level`, with the Go operator's `ZAP_ENCODER` and
//! `ZAP_LOG_LEVEL` still honoured so existing ConfigMaps keep working.

use super::{ConfigError, OperatorArgs};

/// Output format of logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production default, like zap's production encoder).
    Json,
    /// Human-readable lines.
    Console,
}

/// Validated logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string, e.g. `info`.
    pub filter: String,
}

fn parse_format(
    value: &str,
    flag: &'static str,
    env: &'static str,
) -> Result<LogFormat, ConfigError> {
    match value.trim() {
        "json" => Ok(LogFormat::Json),
        "console" => Ok(LogFormat::Console),
        other => Err(ConfigError::new(
            flag,
            env,
            format!("{other:?} is not json or console"),
        )),
    }
}

/// Maps a zap level name or integer to a tracing filter. Zap integer `n` is zap level `-n`:
/// 0 = info, 1 = debug, 2+ = more verbose (trace), negative = warn/error.
fn zap_level_to_filter(value: &str) -> Option<String> {
    let value = value.trim();
    let level = match value {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => match value.parse::<i32>().ok()? {
            n if n >= 2 => "trace",
            1 => "debug",
            0 => "info",
            -1 => "warn",
            _ => "error",
        },
    };
    Some(level.to_string())
}

fn valid_filter(value: &str) -> bool {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .is_ok()
}

impl LogConfig {
    /// Our flags win over the upstream `ZAP_*` names; `ZAP_DEVEL=true` means console at debug.
    pub fn from_args(args: &OperatorArgs) -> Result<LogConfig, ConfigError> {
        let devel = matches!(args.zap_devel.as_deref().map(str::trim), Some("true" | "1"));
        let format = match (&args.log_format, &args.zap_encoder) {
            (Some(f), _) => parse_format(f, "log-format", "LOG_FORMAT")?,
            (None, Some(f)) => parse_format(f, "zap-encoder", "ZAP_ENCODER")?,
            (None, None) if devel => LogFormat::Console,
            (None, None) => LogFormat::Json,
        };
        let filter = match (&args.log_level, &args.zap_log_level) {
            (Some(level), _) => {
                let filter = zap_level_to_filter(level).unwrap_or_else(|| level.trim().to_string());
                if !valid_filter(&filter) {
                    return Err(ConfigError::new(
                        "log-level",
                        "LOG_LEVEL",
                        format!("{level:?} is not a level (debug, info, warn, error) or filter"),
                    ));
                }
                filter
            }
            (None, Some(level)) => zap_level_to_filter(level).ok_or_else(|| {
                ConfigError::new(
                    "zap-log-level",
                    "ZAP_LOG_LEVEL",
                    format!("{level:?} is not a zap level name or integer"),
                )
            })?,
            (None, None) if devel => "debug".to_string(),
            (None, None) => "info".to_string(),
        };
        Ok(LogConfig { format, filter })
    }
}
