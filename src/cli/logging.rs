//! Where logs go and how they look: stderr, text or JSON lines, coloured only on a terminal.
//!
//! The filter comes from `TANGAROA_LOG` if it is set, else from `RUST_LOG`, else `warn`.
//! The format comes from `--log-format`, else `TANGAROA_LOG_FORMAT`, else `text`.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal and NO_COLOR is unset.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The filter directives in effect and the variable they came from: `TANGAROA_LOG` wins
/// over `RUST_LOG`; neither set means `warn`.
pub fn filter_source() -> (String, &'static str) {
    for var in ["TANGAROA_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return (v, var);
            }
        }
    }
    ("warn".into(), "default")
}

/// Installs the global subscriber. A filter that does not parse is reported (once, on
/// stderr, through the subscriber itself) and replaced by `warn`, never fatal.
pub fn init(format: LogFormat) {
    let (directives, source) = filter_source();
    let (filter, bad) = match EnvFilter::try_new(&directives) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("warn"), Some(e)),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its default reports a failed write with eprintln!, which panics when stderr is
        // a closed pipe: a node whose log reader exited would die (or, in the signal
        // task, ignore SIGTERM for good). A lost log line is not worth the process.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    if let Some(e) = bad {
        tracing::warn!(variable = source, value = %directives, "ignoring a log filter that does not parse ({e}); using warn");
    }
}
