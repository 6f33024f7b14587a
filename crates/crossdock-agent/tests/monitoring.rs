//! The monitoring that ships with the agent: the alert rules (deploy/prometheus/) pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and every metric the rules and the Grafana
//! dashboard (deploy/grafana/) query is one the agent exports, with labels it really sets.
//!
//! The exported set is not a list kept by hand: it is what the agent's `/metrics` handler answers over
//! the TCP scrape endpoint, with the route side's writer switched fully on (cloud calls counted, fleet
//! mode), so a metric renamed in the code breaks this test rather than a dashboard in production.
//!
//! promtool comes from scripts/install-deps (Debian's prometheus package, unpacked into the cache, not
//! installed). Without it the test fails: it is part of the suite, not optional.

use crossdock_agent::routes::{RouteSync, RouteSyncReport};
use crossdock_agent::scrape::ScrapeEndpoint;
use crossdock_agent::state::{AgentState, Update};
use crossdock_routes::metrics::{FleetGauges, RouteMetrics};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Series Prometheus itself adds to every target; the rules may use them.
const FROM_PROMETHEUS: &[&str] = &["up"];
/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// promtool: `CROSSDOCK_PROMTOOL`, else where scripts/install-deps puts it, else on the PATH.
fn promtool() -> PathBuf {
    let cache = std::env::var_os("CROSSDOCK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/crossdock"));
    let mut candidates: Vec<PathBuf> = std::env::var_os("CROSSDOCK_PROMTOOL")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(cache.join("prometheus/root/usr/bin/promtool"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("promtool")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found (looked at $CROSSDOCK_PROMTOOL, {}/prometheus/root/usr/bin/promtool and the PATH): run scripts/install-deps",
                cache.display()
            )
        })
}

fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_alert_rules() {
    let text = run_promtool(&["check", "rules", "crossdock-alerts.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let text = run_promtool(&["test", "rules", "crossdock-alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The route side with everything on: counted cloud calls and fleet mode's gauges.
#[derive(Debug)]
struct EverythingRoutes;

#[async_trait::async_trait]
impl RouteSync for EverythingRoutes {
    async fn sync(&self, _subnet: Option<ipnet::Ipv4Net>) -> RouteSyncReport {
        unreachable!("not synced in this test")
    }
    fn write_prometheus(&self, out: &mut String) {
        let calls = crossdock_alibaba::CallCounters::default();
        calls.record("vpc.cn-hangzhou.aliyuncs.com", "CreateRouteEntry", "ok");
        let metrics = RouteMetrics {
            fleet: Some(FleetGauges {
                table_entries: vec![("vtb-1".into(), 3)],
                ..FleetGauges::default()
            }),
            ..RouteMetrics::default()
        };
        crossdock_routes::metrics::write_prometheus(out, &metrics, Some(&calls.snapshot()));
    }
}

/// `/metrics` as the agent serves it over TCP, after one pass and one error were recorded.
async fn scrape_metrics() -> String {
    let state = Arc::new(Mutex::new(AgentState::new("/x.toml".into())));
    {
        let mut st = state.lock().unwrap();
        st.metrics
            .record_pass("start", false, std::time::Duration::from_millis(5), 1);
        st.metrics.record_error("iptables_lock");
        st.set(
            crossdock_agent::state::Concern::Route,
            Update::failed(crossdock_agent::state::Reason::SourceDestCheckEnabled, "on"),
        );
    }
    let router = crossdock_agent::health::scrape_router(state, Arc::new(EverythingRoutes));
    let mut endpoint = ScrapeEndpoint::new(router);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let cfg = crossdock_config::MetricsConfig {
        listen: Some(addr),
        ..Default::default()
    };
    endpoint.apply(&cfg).await.expect("listening on loopback");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Every series name the exposition can hold, with the label names seen on its samples.
fn exported(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in exposition.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap_or(""));
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                out.entry(format!("{name}{s}")).or_default();
            }
        } else if !l.starts_with('#') && !l.is_empty() {
            let name = l.split(['{', ' ']).next().unwrap();
            let labels = out.entry(name.to_string()).or_default();
            if let Some((_, rest)) = l.split_once('{') {
                let inner = rest.split('}').next().unwrap();
                labels.extend(
                    inner
                        .split(',')
                        .filter_map(|p| p.split_once('=').map(|(k, _)| k.trim().to_string())),
                );
            }
        }
    }
    out
}

/// (metric, label names in its selector) for every metric-looking name in `text`: a name starting
/// with `crossdock_` or `process_`, or one Prometheus adds.
fn queried(text: &str) -> Vec<(String, Vec<String>)> {
    let bytes = text.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let name = &text[start..i];
        let metric = name.starts_with("crossdock_")
            || name.starts_with("process_")
            || FROM_PROMETHEUS.contains(&name);
        if !metric {
            continue;
        }
        let mut labels = Vec::new();
        if bytes.get(i) == Some(&b'{') {
            let end = i + text[i..].find('}').expect("a closed selector");
            for matcher in text[i + 1..end].split(',') {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() {
                    labels.push(label);
                }
            }
            i = end;
        }
        found.push((name.to_string(), labels));
    }
    found
}

/// How many metric uses `text` (of `file`) has, and every one that is not exported as written.
fn check_against(
    file: &str,
    text: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> (usize, Vec<String>) {
    let uses = queried(text);
    let mut problems = Vec::new();
    for (name, labels) in &uses {
        if FROM_PROMETHEUS.contains(&name.as_str()) {
            continue;
        }
        let Some(known) = exported.get(name) else {
            problems.push(format!("{file}: {name} is not exported by the agent"));
            continue;
        };
        for l in labels {
            if !known.contains(l) && !TARGET_LABELS.contains(&l.as_str()) && l != "le" {
                problems.push(format!(
                    "{file}: {name} has no label {l} (it has {known:?})"
                ));
            }
        }
    }
    (uses.len(), problems)
}

#[tokio::test]
async fn the_rules_and_the_dashboard_query_only_exported_metrics() {
    let exposition = scrape_metrics().await;
    let exported = exported(&exposition);
    for must in [
        "crossdock_condition",
        "crossdock_condition_reason",
        "crossdock_reconcile_duration_seconds_bucket",
        "crossdock_cloud_api_calls_total",
        "crossdock_fleet_stale_routes",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            exported.contains_key(must),
            "{must} missing from:\n{exposition}"
        );
    }
    let mut problems = Vec::new();
    for (file, at_least) in [
        ("deploy/prometheus/crossdock-alerts.yml", 10),
        ("deploy/grafana/crossdock-fleet.json", 25),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let (uses, p) = check_against(file, &text, &exported);
        assert!(
            uses >= at_least,
            "{file}: only {uses} metric uses found: the scan is broken"
        );
        problems.extend(p);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan itself catches a name that is not exported and a label that does not exist.
    let bad =
        "rate(crossdock_nope_total[5m]) + crossdock_condition{job=\"crossdock\",conditon=\"x\"}";
    let (uses, p) = check_against("a test", bad, &exported);
    assert_eq!(uses, 2);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("crossdock_nope_total is not exported"),
        "{p:?}"
    );
    assert!(
        p[1].contains("crossdock_condition has no label conditon"),
        "{p:?}"
    );
}

#[test]
fn the_dashboard_is_grafana_json_with_its_variables() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/crossdock-fleet.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(d["uid"], "crossdock-fleet");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance"]);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] != "row" {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
            for t in targets {
                assert!(
                    !t["expr"].as_str().unwrap_or("").is_empty(),
                    "{}",
                    p["title"]
                );
            }
        }
    }
}
