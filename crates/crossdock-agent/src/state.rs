//! What the agent knows and reports: one condition per concern, the learned network, the routes and
//! the counters, shared between the reconcile loop (writer) and the health server (reader).
//!
//! A condition's `last_change` moves only when its state or reason changes, so a resync that finds
//! everything in place does not look like a change; `last_error` keeps the most recent error even
//! after recovery, which is what someone looking at a flapping host wants to see.

use crate::metrics::Metrics;
use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::Ipv4Net;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The concerns, in the order `/status` and `crossdock status` show them.
pub const CONDITIONS: [&str; 6] = [
    "docker",
    "subnet",
    "forwarding",
    "firewall",
    "route",
    "credentials",
];

/// A condition's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ready,
    Pending,
    Failed,
    /// Not this agent's job in this configuration (e.g. routes managed outside crossdock).
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Pending => "pending",
            State::Failed => "failed",
            State::Disabled => "disabled",
        }
    }
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// One concern's condition, as served in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub state: State,
    /// CamelCase, stable for alerts.
    pub reason: String,
    /// One line for people.
    pub message: String,
    #[serde(serialize_with = "ser_time")]
    pub last_change: DateTime<Utc>,
    /// The most recent error, `null` if there never was one.
    pub last_error: Option<String>,
}

/// A condition update: what a reconcile step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub state: State,
    pub reason: String,
    pub message: String,
    /// Set when the step failed: recorded as `last_error`.
    pub error: Option<String>,
}

impl Update {
    pub fn new(state: State, reason: &str, message: impl Into<String>) -> Self {
        Self {
            state,
            reason: reason.into(),
            message: message.into(),
            error: None,
        }
    }
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self::new(State::Ready, reason, message)
    }
    pub fn pending(reason: &str, message: impl Into<String>) -> Self {
        Self::new(State::Pending, reason, message)
    }
    pub fn disabled(reason: &str, message: impl Into<String>) -> Self {
        Self::new(State::Disabled, reason, message)
    }
    /// A failure: the message doubles as `last_error`.
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            state: State::Failed,
            reason: reason.into(),
            error: Some(message.clone()),
            message,
        }
    }
}

/// Every condition, keyed by concern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    map: BTreeMap<&'static str, Condition>,
}

impl Conditions {
    /// All pending "NotCheckedYet" at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        let map = CONDITIONS
            .iter()
            .map(|n| {
                (
                    *n,
                    Condition {
                        state: State::Pending,
                        reason: "NotCheckedYet".into(),
                        message: "the agent has not checked this yet".into(),
                        last_change: now,
                        last_error: None,
                    },
                )
            })
            .collect();
        Self { map }
    }

    /// Applies an update; returns true if the state or reason changed.
    pub fn set(&mut self, name: &'static str, u: Update, now: DateTime<Utc>) -> bool {
        let c = self
            .map
            .get_mut(name)
            .unwrap_or_else(|| panic!("unknown condition {name}"));
        let changed = c.state != u.state || c.reason != u.reason;
        if changed {
            c.last_change = now;
        }
        c.state = u.state;
        c.reason = u.reason;
        c.message = u.message;
        if let Some(e) = u.error {
            c.last_error = Some(e);
        }
        changed
    }

    pub fn get(&self, name: &str) -> Option<&Condition> {
        self.map.get(name)
    }

    /// Conditions that are neither ready nor disabled, in display order.
    pub fn unhealthy(&self) -> Vec<(&'static str, &Condition)> {
        CONDITIONS
            .iter()
            .filter_map(|n| self.map.get_key_value(n))
            .filter(|(_, c)| matches!(c.state, State::Pending | State::Failed))
            .map(|(n, c)| (*n, c))
            .collect()
    }

    /// In display order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Condition)> {
        CONDITIONS
            .iter()
            .filter_map(|n| self.map.get_key_value(n).map(|(k, v)| (*k, v)))
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A VPC route as the route side reports it (`/status` `routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntryStatus {
    pub table_id: String,
    pub cidr: String,
    pub entry_id: String,
    pub status: String,
    pub owner: String,
}

/// The longest summary line: systemd shows it in `systemctl status`, where more than this wraps.
pub const SUMMARY_MAX: usize = 199;

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text[..end].trim_end())
}

/// The agent's health in one line, for systemd's `STATUS=` (what `systemctl status` shows):
/// `ready: <subnet> routed via <tables>; firewall ok` when nothing is pending or failed, otherwise
/// the first failed (else pending) condition in display order with its reason and message, and how
/// many more are unhealthy. At most [`SUMMARY_MAX`] bytes, never a line break.
pub fn summary_line(
    conditions: &Conditions,
    subnet: Option<Ipv4Net>,
    routes: &[RouteEntryStatus],
) -> String {
    let bad = conditions.unhealthy();
    let worst = bad
        .iter()
        .find(|(_, c)| c.state == State::Failed)
        .or_else(|| bad.first());
    let line = match worst {
        Some((name, c)) => {
            let more = match bad.len() - 1 {
                0 => String::new(),
                n => format!("; {n} more not ready"),
            };
            let head = format!("{}: {name} ({}: ", c.state.as_str(), c.reason);
            let budget = SUMMARY_MAX.saturating_sub(head.len() + ")".len() + more.len());
            format!("{head}{}){more}", clip(&c.message, budget))
        }
        None => {
            let subnet = subnet.map_or_else(|| "subnet unknown".to_string(), |s| s.to_string());
            let route = match conditions.get("route").map(|c| c.state) {
                Some(State::Disabled) => format!("{subnet} (routes managed outside crossdock)"),
                _ => {
                    let mut tables: Vec<&str> =
                        routes.iter().map(|r| r.table_id.as_str()).collect();
                    tables.sort_unstable();
                    tables.dedup();
                    if tables.is_empty() {
                        format!("{subnet} routed")
                    } else {
                        format!("{subnet} routed via {}", tables.join(","))
                    }
                }
            };
            let firewall = match conditions.get("firewall").map(|c| c.state) {
                Some(State::Disabled) => "firewall not managed",
                _ => "firewall ok",
            };
            format!("ready: {route}; {firewall}")
        }
    };
    let one_line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(&one_line, SUMMARY_MAX)
}

/// Everything the agent reports.
#[derive(Debug)]
pub struct AgentState {
    pub started_at: DateTime<Utc>,
    pub pid: u32,
    pub config_path: PathBuf,
    pub instance_id: Option<String>,
    pub subnet: Option<Ipv4Net>,
    pub bridge: Option<String>,
    pub docker_version: Option<String>,
    pub external_interface: Option<String>,
    pub conditions: Conditions,
    pub routes: Vec<RouteEntryStatus>,
    /// Fleet mode: the cluster as the route side's last sweep saw it.
    pub fleet: Option<crossdock_routes::FleetStatus>,
    pub metrics: Metrics,
    /// Whether the last successful firewall pass wrote the scrape port's rules (so a static-subnet
    /// host, which otherwise keeps no rules, still removes them once the listener is switched off).
    pub scrape_rules_kept: bool,
}

impl AgentState {
    pub fn new(config_path: PathBuf) -> Self {
        let now = Utc::now();
        Self {
            started_at: now,
            pid: std::process::id(),
            config_path,
            instance_id: None,
            subnet: None,
            bridge: None,
            docker_version: None,
            external_interface: None,
            conditions: Conditions::new(now),
            routes: Vec::new(),
            fleet: None,
            metrics: Metrics::default(),
            scrape_rules_kept: false,
        }
    }

    /// Applies a condition update now, logging transitions.
    pub fn set(&mut self, name: &'static str, u: Update) {
        let (state, reason, message) = (u.state, u.reason.clone(), u.message.clone());
        if self.conditions.set(name, u, Utc::now()) {
            match state {
                State::Failed => {
                    tracing::error!(condition = name, reason, "{message}")
                }
                State::Pending => tracing::warn!(condition = name, reason, "{message}"),
                _ => tracing::info!(
                    condition = name,
                    state = state.as_str(),
                    reason,
                    "{message}"
                ),
            }
        }
    }

    /// [`summary_line`] for the current state.
    pub fn summary_line(&self) -> String {
        summary_line(&self.conditions, self.subnet, &self.routes)
    }

    /// The `/status` document (see docs/CONTRACTS.md).
    pub fn status_json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": self.pid,
            "started_at": self.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "config_path": self.config_path.display().to_string(),
            "instance_id": self.instance_id,
            "subnet": self.subnet.map(|s| s.to_string()),
            "bridge": self.bridge,
            "docker_version": self.docker_version,
            "external_interface": self.external_interface,
            "conditions": self.conditions,
            "routes": self.routes,
            "counters": self.metrics.counters_json(),
        });
        if let Some(fleet) = &self.fleet {
            doc["fleet"] = serde_json::to_value(fleet).unwrap_or_default();
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn last_change_moves_only_on_state_or_reason_change_and_errors_stick() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 1, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 2, 0).unwrap();
        let mut c = Conditions::new(t0);
        assert!(c.set("firewall", Update::ready("InPlace", "9 rules"), t1));
        assert!(!c.set(
            "firewall",
            Update::ready("InPlace", "9 rules, 0 changed"),
            t2
        ));
        let f = c.get("firewall").unwrap();
        assert_eq!(f.last_change, t1);
        assert_eq!(f.message, "9 rules, 0 changed");
        assert!(c.set("firewall", Update::failed("IptablesFailed", "lock"), t2));
        assert!(c.set("firewall", Update::ready("InPlace", "ok"), t2));
        assert_eq!(
            c.get("firewall").unwrap().last_error.as_deref(),
            Some("lock")
        );
    }

    #[test]
    fn unhealthy_lists_pending_and_failed_only() {
        let now = Utc::now();
        let mut c = Conditions::new(now);
        for n in CONDITIONS {
            c.set(n, Update::ready("Ok", "ok"), now);
        }
        c.set("route", Update::disabled("External", "x"), now);
        assert!(c.unhealthy().is_empty());
        c.set("forwarding", Update::failed("X", "y"), now);
        assert_eq!(
            c.unhealthy().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["forwarding"]
        );
    }

    fn route(table: &str) -> RouteEntryStatus {
        RouteEntryStatus {
            table_id: table.into(),
            cidr: "10.0.1.0/24".into(),
            entry_id: "rte-1".into(),
            status: "Available".into(),
            owner: "i-1".into(),
        }
    }

    #[test]
    fn summary_line_names_the_worst_condition_or_what_is_served() {
        let now = Utc::now();
        let subnet = Some("10.0.1.0/24".parse().unwrap());
        let mut c = Conditions::new(now);
        assert_eq!(
            summary_line(&c, None, &[]),
            "pending: docker (NotCheckedYet: the agent has not checked this yet); 5 more not ready"
        );
        for n in CONDITIONS {
            c.set(n, Update::ready("Ok", "ok"), now);
        }
        c.set(
            "route",
            Update::pending("RoutePending", "entry rte-1 is Pending in vtb-1"),
            now,
        );
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "pending: route (RoutePending: entry rte-1 is Pending in vtb-1)"
        );
        // A failure outranks a pending condition listed before it.
        c.set(
            "docker",
            Update::pending("Reconnecting", "stream ended"),
            now,
        );
        c.set(
            "firewall",
            Update::failed("IptablesFailed", "xtables lock\nheld"),
            now,
        );
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "failed: firewall (IptablesFailed: xtables lock held); 2 more not ready"
        );
        for n in CONDITIONS {
            c.set(n, Update::ready("Ok", "ok"), now);
        }
        assert_eq!(
            summary_line(
                &c,
                subnet,
                &[route("vtb-b"), route("vtb-a"), route("vtb-b")]
            ),
            "ready: 10.0.1.0/24 routed via vtb-a,vtb-b; firewall ok"
        );
        c.set("route", Update::disabled("ExternallyManaged", "x"), now);
        c.set("firewall", Update::disabled("StaticSubnet", "x"), now);
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "ready: 10.0.1.0/24 (routes managed outside crossdock); firewall not managed"
        );
    }

    #[test]
    fn summary_line_stays_short_and_keeps_its_shape() {
        let now = Utc::now();
        let mut c = Conditions::new(now);
        for n in CONDITIONS {
            c.set(n, Update::ready("Ok", "ok"), now);
        }
        c.set("route", Update::failed("ApiError", "é".repeat(300)), now);
        let line = summary_line(&c, None, &[]);
        assert!(line.len() <= SUMMARY_MAX, "{} bytes", line.len());
        assert!(line.starts_with("failed: route (ApiError: é"), "{line}");
        assert!(line.ends_with("…)"), "{line}");
    }

    #[test]
    fn status_json_has_the_contract_fields() {
        let s = AgentState::new("/etc/crossdock/agent.toml".into());
        let v = s.status_json();
        for k in [
            "version",
            "pid",
            "started_at",
            "config_path",
            "instance_id",
            "subnet",
            "bridge",
            "docker_version",
            "conditions",
            "routes",
            "counters",
        ] {
            assert!(v.get(k).is_some(), "missing {k}: {v}");
        }
        for n in CONDITIONS {
            let c = &v["conditions"][n];
            for k in ["state", "reason", "message", "last_change", "last_error"] {
                assert!(c.get(k).is_some(), "{n} lacks {k}: {c}");
            }
            assert_eq!(c["state"], "pending");
        }
    }
}
