//! What the names task reports: the `names` section of `/status`, its lines in `crossdock status`
//! and its series in `/metrics`.
//!
//! The task writes a [`NamesStatus`] into the shared [`crate::state::AgentState`] whenever something
//! changes (catalog, local records, members, a failure); the query and exchange counters are
//! atomics owned by the resolver and the exchange, read live at render time, so a scrape always
//! sees the current counts without the task waking up for it.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crossdock_catalog::ExchangeStats;
use crossdock_dns::DnsStats;
use crossdock_names::{HostStatus, Skipped};

/// Upper bounds of the publish-latency histogram, in seconds.
const BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0];

/// Where the names task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamesState {
    /// Waiting for what it needs (identity, the served network) or starting the resolver.
    Pending,
    /// Resolver and exchange running.
    Ready,
    /// Something failed; retried (the message says what and the fix).
    Failed,
}

/// One host of the catalog, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// Its identity (instance id).
    pub id: String,
    /// Its label.
    pub host: String,
    /// Records held.
    pub records: usize,
    /// Records cut by the per-host bound.
    pub cut: usize,
    /// Seconds since it was last heard.
    pub last_heard_secs: u64,
}

impl PeerStatus {
    /// From the catalog's view of a host, `now` being the exchange's clock.
    pub fn of(h: &HostStatus, now: Duration) -> Self {
        Self {
            id: h.id.to_string(),
            host: h.host.to_string(),
            records: h.records,
            cut: h.cut,
            last_heard_secs: now.saturating_sub(h.last_heard).as_secs(),
        }
    }
}

fn ser_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
}

/// The live counters behind `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct NamesCounters {
    /// The resolver's query counters (once it runs).
    pub dns: Option<Arc<DnsStats>>,
    /// The exchange's counters (once it runs).
    pub exchange: Option<Arc<ExchangeStats>>,
    /// Local publications by latency from the Docker event (histogram counts per bucket).
    pub publish_buckets: [u64; BUCKETS.len()],
    /// Sum of those latencies, seconds.
    pub publish_sum: f64,
    /// Their number.
    pub publish_count: u64,
    /// Catalog snapshots taken into the resolver.
    pub zone_updates: u64,
}

impl NamesCounters {
    /// Records one publication `took` after the event that caused it.
    pub fn record_publish(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.publish_buckets[i] += 1;
        }
        self.publish_sum += secs;
        self.publish_count += 1;
    }
}

/// The `names` section of `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct NamesStatus {
    /// Pending, ready or failed.
    pub state: NamesState,
    /// One line for people, with the fix when something failed.
    pub message: String,
    /// The zone.
    pub zone: String,
    /// This host's label in the zone, once known.
    pub host: Option<String>,
    /// This host's identity in the catalog, once known.
    pub host_id: Option<String>,
    /// Where the resolver answers (UDP and TCP).
    pub dns_listen: Option<String>,
    /// The client networks it answers (besides loopback): this host's bridge subnets, the served
    /// one first.
    pub dns_clients: Vec<ipnet::Ipv4Net>,
    /// Where the catalog exchange listens (UDP).
    pub catalog_listen: Option<String>,
    /// The upstream resolvers.
    pub upstreams: Vec<String>,
    /// The member hosts' addresses (allowed peers).
    pub members: usize,
    /// Records this host publishes.
    pub local_records: usize,
    /// Local containers not published, and why.
    pub skipped: Vec<Skipped>,
    /// Records in the catalog, every host's.
    pub records: usize,
    /// Distinct fleet names the zone answers.
    pub names: usize,
    /// Every host in the catalog (this one included).
    pub peers: Vec<PeerStatus>,
    /// When the catalog last changed.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_update: Option<DateTime<Utc>>,
    /// When this host last published a change.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_publish: Option<DateTime<Utc>>,
    /// Live counters, for `/metrics`.
    #[serde(skip)]
    pub counters: NamesCounters,
    /// The exchange's agents (once it runs), for the fleet view's versions and last-seen times.
    #[serde(skip)]
    pub agents: Option<crate::fleet_agents::AgentWatch>,
}

impl NamesStatus {
    /// A task that has just started for `zone`.
    pub fn starting(zone: &str) -> Self {
        Self {
            state: NamesState::Pending,
            message: "starting".into(),
            zone: zone.to_string(),
            host: None,
            host_id: None,
            dns_listen: None,
            dns_clients: Vec::new(),
            catalog_listen: None,
            upstreams: Vec::new(),
            members: 0,
            local_records: 0,
            skipped: Vec::new(),
            records: 0,
            names: 0,
            peers: Vec::new(),
            last_update: None,
            last_publish: None,
            counters: NamesCounters::default(),
            agents: None,
        }
    }

    /// Sets the state and message, logging a change.
    pub fn set(&mut self, state: NamesState, message: impl Into<String>) {
        let message = message.into();
        if state != self.state || message != self.message {
            match state {
                NamesState::Failed => tracing::error!(names = "failed", "{message}"),
                NamesState::Pending => tracing::info!(names = "pending", "{message}"),
                NamesState::Ready => tracing::info!(names = "ready", "{message}"),
            }
        }
        self.state = state;
        self.message = message;
    }

    /// Other hosts in the catalog.
    pub fn peer_count(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| Some(&p.id) != self.host_id.as_ref())
            .count()
    }

    /// Appends the names series to a Prometheus text.
    pub fn render_prometheus(&self, out: &mut String) {
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            out,
            "crossdock_names_records",
            "Records in the fleet catalog.",
            self.records as u64,
        );
        gauge(
            out,
            "crossdock_names_local_records",
            "Records this host publishes.",
            self.local_records as u64,
        );
        gauge(
            out,
            "crossdock_names_peers",
            "Other hosts in the catalog.",
            self.peer_count() as u64,
        );
        gauge(
            out,
            "crossdock_names_members",
            "Member hosts allowed to exchange the catalog.",
            self.members as u64,
        );
        gauge(
            out,
            "crossdock_names_ready",
            "1 when the resolver and the exchange run.",
            u64::from(self.state == NamesState::Ready),
        );
        self.render_counters(out);
        self.render_publish(out);
    }

    fn render_counters(&self, out: &mut String) {
        let c = &self.counters;
        let _ = writeln!(
            out,
            "# HELP crossdock_names_dns_queries_total DNS questions answered, by how.\n# TYPE crossdock_names_dns_queries_total counter"
        );
        if let Some(d) = &c.dns {
            for (answer, n) in [
                ("local", &d.local_answers),
                ("nxdomain", &d.local_nxdomain),
                ("forwarded", &d.forwarded),
                ("send_error", &d.send_errors),
            ] {
                let _ = writeln!(
                    out,
                    "crossdock_names_dns_queries_total{{answer=\"{answer}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_names_catalog_events_total Catalog exchange events, by kind.\n# TYPE crossdock_names_catalog_events_total counter"
        );
        if let Some(x) = &c.exchange {
            let w = &x.wire;
            for (kind, n) in [
                ("set_merged", &x.sets_merged),
                ("host_withdrawn", &x.hosts_withdrawn),
                ("published", &x.publications),
                ("malformed_entry", &x.malformed_entries),
                ("datagram_received", &w.received),
                ("rejected_peer", &w.rejected_peer),
                ("rejected_key", &w.rejected_tag),
                ("malformed_datagram", &w.malformed),
                ("send_error", &w.send_errors),
            ] {
                let _ = writeln!(
                    out,
                    "crossdock_names_catalog_events_total{{kind=\"{kind}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_names_zone_updates_total Catalog changes taken into the resolver.\n# TYPE crossdock_names_zone_updates_total counter\ncrossdock_names_zone_updates_total {}",
            c.zone_updates
        );
    }

    fn render_publish(&self, out: &mut String) {
        let c = &self.counters;
        let name = "crossdock_names_publish_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a Docker event to this host's changed records published.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(c.publish_buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            c.publish_count, c.publish_sum, c.publish_count
        );
    }
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) if s.is_empty() => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The names lines of `crossdock status`, from `/status`'s `names` section.
pub fn render(out: &mut String, n: &serde_json::Value) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "names {} ({}): zone {}, host {}, resolver {}, catalog {}",
        s(&n["state"]),
        s(&n["message"]),
        s(&n["zone"]),
        s(&n["host"]),
        s(&n["dns_listen"]),
        s(&n["catalog_listen"])
    );
    let peers = n["peers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "  {} records ({} local), {} names, {} hosts in the catalog, {} members; last update {}",
        s(&n["records"]),
        s(&n["local_records"]),
        s(&n["names"]),
        peers.len(),
        s(&n["members"]),
        s(&n["last_update"])
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "  {:<24} {:<24} {:>5} records, heard {} s ago",
            s(&p["id"]),
            s(&p["host"]),
            s(&p["records"]),
            s(&p["last_heard_secs"])
        );
    }
    for k in n["skipped"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "  not published: {} ({})",
            s(&k["container"]),
            s(&k["reason"])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NamesStatus {
        let mut st = NamesStatus::starting("crossdock.internal");
        st.set(NamesState::Ready, "answering");
        st.host = Some("h1".into());
        st.host_id = Some("i-1".into());
        st.records = 3;
        st.local_records = 1;
        st.peers = vec![
            PeerStatus {
                id: "i-1".into(),
                host: "h1".into(),
                records: 1,
                cut: 0,
                last_heard_secs: 0,
            },
            PeerStatus {
                id: "i-2".into(),
                host: "h2".into(),
                records: 2,
                cut: 0,
                last_heard_secs: 1,
            },
        ];
        st.counters.record_publish(Duration::from_millis(30));
        st.counters.dns = Some(Arc::new(DnsStats::default()));
        st
    }

    #[test]
    fn metrics_count_records_peers_queries_and_publish_latency() {
        let st = status();
        st.counters
            .dns
            .as_ref()
            .unwrap()
            .forwarded
            .fetch_add(4, Ordering::Relaxed);
        let mut out = String::new();
        st.render_prometheus(&mut out);
        for line in [
            "crossdock_names_records 3",
            "crossdock_names_local_records 1",
            "crossdock_names_peers 1",
            "crossdock_names_ready 1",
            "crossdock_names_dns_queries_total{answer=\"forwarded\"} 4",
            "crossdock_names_publish_seconds_bucket{le=\"0.025\"} 0",
            "crossdock_names_publish_seconds_bucket{le=\"0.05\"} 1",
            "crossdock_names_publish_seconds_count 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
        }
    }

    #[test]
    fn status_json_and_its_human_lines() {
        let v = serde_json::to_value(status()).unwrap();
        assert_eq!(v["state"], "ready");
        assert_eq!(v["peers"][1]["host"], "h2");
        assert!(v.get("counters").is_none());
        let mut out = String::new();
        render(&mut out, &v);
        assert!(
            out.contains("names ready (answering): zone crossdock.internal, host h1"),
            "{out}"
        );
        assert!(out.contains("3 records (1 local)"), "{out}");
        assert!(out.contains("i-2"), "{out}");
    }
}
