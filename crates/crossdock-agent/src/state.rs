//! What the agent knows and reports: one condition per concern, the learned network, the routes and
//! the counters, shared between the reconcile loop (writer) and the health server (reader).
//!
//! A condition's `last_change` moves only when its state or reason changes, so a resync that finds
//! everything in place does not look like a change; `last_error` keeps the most recent error even
//! after recovery, which is what someone looking at a flapping host wants to see.

use crate::metrics::{label_value, Metrics};
use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::Ipv4Net;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

pub use crossdock_status::{Concern, Reason, State};

/// The concerns, in the order `/status` and `crossdock status` show them.
pub const CONDITIONS: &[Concern] = Concern::ALL;

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// One concern's condition, as served in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub state: State,
    /// CamelCase, stable for alerts.
    pub reason: Reason,
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
    pub reason: Reason,
    pub message: String,
    /// Set when the step failed: recorded as `last_error`.
    pub error: Option<String>,
}

impl Update {
    pub fn new(state: State, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            state,
            reason,
            message: message.into(),
            error: None,
        }
    }
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(State::Ready, reason, message)
    }
    pub fn pending(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(State::Pending, reason, message)
    }
    pub fn disabled(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(State::Disabled, reason, message)
    }
    /// A failure: the message doubles as `last_error`.
    pub fn failed(reason: Reason, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            state: State::Failed,
            reason,
            error: Some(message.clone()),
            message,
        }
    }
}

/// Every condition, keyed by concern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    map: BTreeMap<Concern, Condition>,
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
                        reason: Reason::NotCheckedYet,
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
    pub fn set(&mut self, name: Concern, u: Update, now: DateTime<Utc>) -> bool {
        let c = self.map.entry(name).or_insert_with(|| Condition {
            state: State::Pending,
            reason: Reason::NotCheckedYet,
            message: String::new(),
            last_change: now,
            last_error: None,
        });
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

    pub fn get(&self, name: Concern) -> Option<&Condition> {
        self.map.get(&name)
    }

    /// Conditions that are neither ready nor disabled, in display order.
    pub fn unhealthy(&self) -> Vec<(Concern, &Condition)> {
        self.iter()
            .filter(|(_, c)| matches!(c.state, State::Pending | State::Failed))
            .collect()
    }

    /// In display order.
    pub fn iter(&self) -> impl Iterator<Item = (Concern, &Condition)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    /// The `crossdock_condition` and `crossdock_condition_reason` gauges (Prometheus text 0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP crossdock_condition Current state of each condition (1 for the current state).\n# TYPE crossdock_condition gauge"
        );
        for (name, c) in self.iter() {
            for st in ["ready", "pending", "failed", "disabled"] {
                let v = u8::from(c.state.as_str() == st);
                let _ = writeln!(
                    out,
                    "crossdock_condition{{condition=\"{name}\",state=\"{st}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_condition_reason The current reason of each condition (CamelCase, as in /status), always 1.\n# TYPE crossdock_condition_reason gauge"
        );
        for (name, c) in self.iter() {
            let _ = writeln!(
                out,
                "crossdock_condition_reason{{condition=\"{name}\",reason=\"{}\"}} 1",
                label_value(c.reason.as_str())
            );
        }
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// A VPC route as the route side reports it (`/status` `routes`).
pub use crossdock_routes::RouteStatus as RouteEntryStatus;

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
            let route = match conditions.get(Concern::Route).map(|c| c.state) {
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
            let firewall = match conditions.get(Concern::Firewall).map(|c| c.state) {
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
    /// The served network's gateway (the bridge's address), as Docker reports it.
    pub gateway: Option<std::net::Ipv4Addr>,
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
    /// `[names]`: the names task's report (`None` when off).
    pub names: Option<crate::names_status::NamesStatus>,
    /// Fleet mode: the members' private IPs as the last fleet view had them (kept across passes
    /// that could not read the fleet): the catalog port's allowed peers.
    pub members: Vec<std::net::Ipv4Addr>,
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
            gateway: None,
            docker_version: None,
            external_interface: None,
            conditions: Conditions::new(now),
            routes: Vec::new(),
            fleet: None,
            metrics: Metrics::default(),
            scrape_rules_kept: false,
            names: None,
            members: Vec::new(),
        }
    }

    /// Applies a condition update now, logging transitions.
    pub fn set(&mut self, name: Concern, u: Update) {
        let (state, reason, message) = (u.state, u.reason.as_str(), u.message.clone());
        if self.conditions.set(name, u, Utc::now()) {
            let name = name.as_str();
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
            let watch = self.names.as_ref().and_then(|n| n.agents.as_ref());
            doc["fleet"] =
                crate::fleet_agents::render(fleet, self.instance_id.as_deref(), watch, Utc::now());
        }
        if let Some(names) = &self.names {
            doc["names"] = serde_json::to_value(names).unwrap_or_default();
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn conditions_render_one_gauge_per_state_and_their_reason() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let mut c = Conditions::new(t0);
        c.set(
            Concern::Firewall,
            Update::ready(Reason::InPlace, "9 rules"),
            t0,
        );
        let mut out = String::new();
        c.render_prometheus(&mut out);
        for line in [
            "# TYPE crossdock_condition gauge",
            "crossdock_condition{condition=\"docker\",state=\"pending\"} 1",
            "crossdock_condition{condition=\"docker\",state=\"ready\"} 0",
            "crossdock_condition{condition=\"firewall\",state=\"ready\"} 1",
            "# TYPE crossdock_condition_reason gauge",
            "crossdock_condition_reason{condition=\"firewall\",reason=\"InPlace\"} 1",
            "crossdock_condition_reason{condition=\"docker\",reason=\"NotCheckedYet\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        let samples = out.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, CONDITIONS.len() * 5, "4 states + 1 reason each");
    }

    #[test]
    fn last_change_moves_only_on_state_or_reason_change_and_errors_stick() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 1, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 2, 0).unwrap();
        let mut c = Conditions::new(t0);
        assert!(c.set(
            Concern::Firewall,
            Update::ready(Reason::InPlace, "9 rules"),
            t1
        ));
        assert!(!c.set(
            Concern::Firewall,
            Update::ready(Reason::InPlace, "9 rules, 0 changed"),
            t2
        ));
        let f = c.get(Concern::Firewall).unwrap();
        assert_eq!(f.last_change, t1);
        assert_eq!(f.message, "9 rules, 0 changed");
        assert!(c.set(
            Concern::Firewall,
            Update::failed(Reason::IptablesFailed, "lock"),
            t2
        ));
        assert!(c.set(Concern::Firewall, Update::ready(Reason::InPlace, "ok"), t2));
        assert_eq!(
            c.get(Concern::Firewall).unwrap().last_error.as_deref(),
            Some("lock")
        );
    }

    #[test]
    fn unhealthy_lists_pending_and_failed_only() {
        let now = Utc::now();
        let mut c = Conditions::new(now);
        for &n in CONDITIONS {
            c.set(n, Update::ready(Reason::InPlace, "ok"), now);
        }
        c.set(Concern::Route, Update::disabled(Reason::External, "x"), now);
        assert!(c.unhealthy().is_empty());
        c.set(
            Concern::Forwarding,
            Update::failed(Reason::SysctlFailed, "y"),
            now,
        );
        assert_eq!(
            c.unhealthy().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [Concern::Forwarding]
        );
    }

    fn route(table: &str) -> RouteEntryStatus {
        RouteEntryStatus {
            table_id: table.into(),
            cidr: "10.0.1.0/24".into(),
            entry_id: "rte-1".into(),
            status: crossdock_status::RouteState::Available,
            owner: crossdock_status::Owner::Crossdock("i-1".into()),
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
        for &n in CONDITIONS {
            c.set(n, Update::ready(Reason::InPlace, "ok"), now);
        }
        c.set(
            Concern::Route,
            Update::pending(Reason::RoutePending, "entry rte-1 is Pending in vtb-1"),
            now,
        );
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "pending: route (RoutePending: entry rte-1 is Pending in vtb-1)"
        );
        // A failure outranks a pending condition listed before it.
        c.set(
            Concern::Docker,
            Update::pending(Reason::Reconnecting, "stream ended"),
            now,
        );
        c.set(
            Concern::Firewall,
            Update::failed(Reason::IptablesFailed, "xtables lock\nheld"),
            now,
        );
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "failed: firewall (IptablesFailed: xtables lock held); 2 more not ready"
        );
        for &n in CONDITIONS {
            c.set(n, Update::ready(Reason::InPlace, "ok"), now);
        }
        assert_eq!(
            summary_line(
                &c,
                subnet,
                &[route("vtb-b"), route("vtb-a"), route("vtb-b")]
            ),
            "ready: 10.0.1.0/24 routed via vtb-a,vtb-b; firewall ok"
        );
        c.set(
            Concern::Route,
            Update::disabled(Reason::ExternallyManaged, "x"),
            now,
        );
        c.set(
            Concern::Firewall,
            Update::disabled(Reason::StaticSubnet, "x"),
            now,
        );
        assert_eq!(
            summary_line(&c, subnet, &[]),
            "ready: 10.0.1.0/24 (routes managed outside crossdock); firewall not managed"
        );
    }

    #[test]
    fn summary_line_stays_short_and_keeps_its_shape() {
        let now = Utc::now();
        let mut c = Conditions::new(now);
        for &n in CONDITIONS {
            c.set(n, Update::ready(Reason::InPlace, "ok"), now);
        }
        c.set(
            Concern::Route,
            Update::failed(Reason::ApiError, "é".repeat(300)),
            now,
        );
        let line = summary_line(&c, None, &[]);
        assert!(line.len() <= SUMMARY_MAX, "{} bytes", line.len());
        assert!(line.starts_with("failed: route (ApiError: é"), "{line}");
        assert!(line.ends_with("…)"), "{line}");
    }

    #[test]
    fn status_json_speaks_the_documented_wire_strings() {
        // docs/CONTRACTS.md, health socket: condition keys in display order, lower-case states,
        // CamelCase reasons, route owners and statuses as strings.
        let mut s = AgentState::new("/etc/crossdock/agent.toml".into());
        s.set(
            Concern::Route,
            Update::failed(Reason::RouteConflict, "held by crossdock:i-b"),
        );
        s.routes = vec![RouteEntryStatus {
            table_id: "vtb-1".into(),
            cidr: "10.0.1.0/24".into(),
            entry_id: "rte-1".into(),
            status: crossdock_status::RouteState::Available,
            owner: crossdock_status::Owner::Us,
        }];
        let v = s.status_json();
        let keys: Vec<&str> = v["conditions"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted_expected = vec![
            "docker",
            "subnet",
            "forwarding",
            "firewall",
            "route",
            "credentials",
        ];
        sorted_expected.sort_unstable();
        assert_eq!(keys, sorted_expected, "serde_json maps sort their keys");
        assert_eq!(v["conditions"]["route"]["state"], "failed");
        assert_eq!(v["conditions"]["route"]["reason"], "RouteConflict");
        assert_eq!(
            v["conditions"]["route"]["last_error"],
            "held by crossdock:i-b"
        );
        assert_eq!(v["conditions"]["docker"]["reason"], "NotCheckedYet");
        assert_eq!(
            v["routes"].to_string(),
            r#"[{"cidr":"10.0.1.0/24","entry_id":"rte-1","owner":"self","status":"Available","table_id":"vtb-1"}]"#
        );
        let order: Vec<&str> = CONDITIONS.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            order,
            [
                "docker",
                "subnet",
                "forwarding",
                "firewall",
                "route",
                "credentials"
            ]
        );
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
            let c = &v["conditions"][n.as_str()];
            for k in ["state", "reason", "message", "last_change", "last_error"] {
                assert!(c.get(k).is_some(), "{n} lacks {k}: {c}");
            }
            assert_eq!(c["state"], "pending");
        }
    }
}
