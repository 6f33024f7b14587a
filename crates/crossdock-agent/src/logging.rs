//! Logging to stderr (journald picks it up), as text or one JSON object per line, with the filter
//! reloadable on SIGHUP. Nothing secret is ever logged: the configuration is not logged as a whole
//! and its one secret ([`crossdock_config::Secret`]) prints redacted.

use crossdock_config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Changes the log filter of the running process.
#[derive(Debug, Clone)]
pub struct LogHandle(Option<reload::Handle<EnvFilter, Registry>>);

impl LogHandle {
    /// A handle that changes nothing (tests, or when another subscriber was installed first).
    pub fn detached() -> Self {
        Self(None)
    }

    /// Applies a new `log_level` directive (already validated by the config).
    pub fn set_level(&self, level: &str) {
        if let (Some(h), Ok(f)) = (&self.0, filter(level)) {
            let _ = h.reload(f);
        }
    }
}

/// Libraries quieted unless the directive names them: netlink-packet-route warns on every link dump
/// of a kernel newer than itself (a harmless size difference in IFLA_INET6_CONF); hickory logs
/// every DNS query at info and chitchat every membership change (`[names]`).
const QUIETED: &[(&str, &str)] = &[
    ("netlink_packet_route", "error"),
    ("hickory_server", "warn"),
    ("hickory_proto", "warn"),
    ("hickory_resolver", "warn"),
    ("hickory_net", "warn"),
    ("chitchat", "warn"),
];

/// The configured directive, plus [`QUIETED`] for the libraries it does not name.
fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut directive = level.to_string();
    for (target, quiet) in QUIETED {
        if !level.contains(target) {
            directive.push_str(&format!(",{target}={quiet}"));
        }
    }
    EnvFilter::try_new(directive)
}

/// Installs the global subscriber; a second call (tests) leaves the first in place.
pub fn init(format: LogFormat, level: &str) -> LogHandle {
    let filter = filter(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let base = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    let ok = match format {
        LogFormat::Text => Registry::default().with(filter).with(base).try_init(),
        LogFormat::Json => Registry::default()
            .with(filter)
            .with(base.json().flatten_event(true))
            .try_init(),
    };
    LogHandle(ok.is_ok().then_some(handle))
}
