//! The agent's own counters, rendered as Prometheus text (`/metrics`) and as the `counters` object of
//! `/status`. Hand-written: a handful of counters and one histogram do not justify a metrics stack.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters since the agent started.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Host reconcile passes by (trigger, result).
    pub reconciles: BTreeMap<(String, &'static str), u64>,
    /// Histogram of pass durations: counts per bucket (cumulative at render), sum, count.
    pub duration_buckets: [u64; BUCKETS.len()],
    pub duration_sum: f64,
    pub duration_count: u64,
    /// Errors by kind (`iptables_lock`, `docker_unavailable`, ...).
    pub errors: BTreeMap<String, u64>,
    pub rules_added: u64,
    pub rules_removed: u64,
    pub chains_created: u64,
    pub chains_removed: u64,
    pub sysctl_changes: u64,
    /// Writes (rules, chains, sysctls) made by the most recent pass.
    pub last_changes: u64,
    pub last_duration: Duration,
    pub last_reconcile_at: Option<chrono::DateTime<chrono::Utc>>,
    pub docker_events: u64,
    pub config_reloads: u64,
    pub config_reload_errors: u64,
}

impl Metrics {
    /// Records one finished pass.
    pub fn record_pass(&mut self, trigger: &str, ok: bool, took: Duration, changes: u64) {
        let result = if ok { "ok" } else { "error" };
        *self
            .reconciles
            .entry((trigger.to_string(), result))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.duration_buckets[i] += 1;
        }
        self.duration_sum += secs;
        self.duration_count += 1;
        self.last_changes = changes;
        self.last_duration = took;
        self.last_reconcile_at = Some(chrono::Utc::now());
    }

    pub fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn reconcile_total(&self) -> u64 {
        self.reconciles.values().sum()
    }

    pub fn reconcile_errors(&self) -> u64 {
        self.reconciles
            .iter()
            .filter(|((_, r), _)| *r == "error")
            .map(|(_, n)| n)
            .sum()
    }

    /// The `counters` object of `/status`.
    pub fn counters_json(&self) -> serde_json::Value {
        serde_json::json!({
            "reconciles": self.reconcile_total(),
            "reconcile_errors": self.reconcile_errors(),
            "last_reconcile_changes": self.last_changes,
            "last_reconcile_duration_ms": u64::try_from(self.last_duration.as_millis()).unwrap_or(u64::MAX),
            "last_reconcile_at": self.last_reconcile_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "rules_added": self.rules_added,
            "rules_removed": self.rules_removed,
            "chains_created": self.chains_created,
            "chains_removed": self.chains_removed,
            "sysctl_changes": self.sysctl_changes,
            "docker_events": self.docker_events,
            "config_reloads": self.config_reloads,
            "config_reload_errors": self.config_reload_errors,
            "errors": self.errors,
        })
    }

    /// Prometheus text exposition format (0.0.4). The conditions' gauges are rendered by their owner
    /// (`Conditions::render_prometheus`), so this module knows nothing of the agent's state.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP crossdock_reconcile_total Host reconcile passes, by trigger and result.\n# TYPE crossdock_reconcile_total counter"
        );
        for ((trigger, result), n) in &self.reconciles {
            let _ = writeln!(
                out,
                "crossdock_reconcile_total{{trigger=\"{trigger}\",result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_reconcile_duration_seconds Duration of host reconcile passes.\n# TYPE crossdock_reconcile_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(self.duration_buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "crossdock_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "crossdock_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}\ncrossdock_reconcile_duration_seconds_sum {}\ncrossdock_reconcile_duration_seconds_count {}",
            self.duration_count, self.duration_sum, self.duration_count
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_errors_total Errors, by kind.\n# TYPE crossdock_errors_total counter"
        );
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "crossdock_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_rule_changes_total iptables writes made by the agent, by operation.\n# TYPE crossdock_rule_changes_total counter"
        );
        for (op, n) in [
            ("rule_added", self.rules_added),
            ("rule_removed", self.rules_removed),
            ("chain_created", self.chains_created),
            ("chain_removed", self.chains_removed),
        ] {
            let _ = writeln!(out, "crossdock_rule_changes_total{{op=\"{op}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP crossdock_sysctl_changes_total Sysctl writes made by the agent.\n# TYPE crossdock_sysctl_changes_total counter\ncrossdock_sysctl_changes_total {}",
            self.sysctl_changes
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_last_reconcile_changes Writes made by the most recent host reconcile pass.\n# TYPE crossdock_last_reconcile_changes gauge\ncrossdock_last_reconcile_changes {}",
            self.last_changes
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_docker_events_total Docker events received.\n# TYPE crossdock_docker_events_total counter\ncrossdock_docker_events_total {}",
            self.docker_events
        );
        let _ = writeln!(
            out,
            "# HELP crossdock_config_reloads_total Configuration reloads (SIGHUP), by result.\n# TYPE crossdock_config_reloads_total counter\ncrossdock_config_reloads_total{{result=\"ok\"}} {}\ncrossdock_config_reloads_total{{result=\"error\"}} {}",
            self.config_reloads, self.config_reload_errors
        );
    }
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
pub(crate) fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every architecture the
/// agent is built for (the kernel's ABI value, independent of `CONFIG_HZ`; Prometheus' own process
/// collector assumes the same). Reading it with `sysconf` would need `unsafe`.
const USER_HZ: f64 = 100.0;

/// This process's resource use, read from `/proc/self`, exported under the names every Prometheus
/// client library uses (`process_*`), so the usual dashboards and alerts apply to the agent as-is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` if any part cannot be read (then the samples are left out).
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&status, &stat, &system, open_fds)
    }

    /// From the texts of `/proc/self/status` (`VmRSS`), `/proc/self/stat` (utime, stime,
    /// starttime) and `/proc/stat` (`btime`).
    pub fn parse(status: &str, stat: &str, system: &str, open_fds: u64) -> Option<Self> {
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let boot: f64 = system
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            resident_memory_bytes: rss_kib * 1024,
            cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
            start_time_seconds: boot + field(22)? / USER_HZ,
            open_fds,
        })
    }

    /// Prometheus text for these values.
    pub fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds.to_string(),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_memory_bytes.to_string(),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.to_string(),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let mut m = Metrics::default();
        m.record_pass("start", true, Duration::from_millis(30), 9);
        m.record_pass("resync", true, Duration::from_millis(5), 0);
        m.record_pass("resync", false, Duration::from_secs(20), 0);
        m.record_error("iptables_lock");
        m.rules_added = 9;
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("crossdock_reconcile_total{trigger=\"resync\",result=\"ok\"} 1"));
        assert!(out.contains("crossdock_reconcile_total{trigger=\"resync\",result=\"error\"} 1"));
        assert!(out.contains("crossdock_reconcile_duration_seconds_bucket{le=\"0.01\"} 1"));
        assert!(out.contains("crossdock_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(out.contains("crossdock_reconcile_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(out.contains("crossdock_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(out.contains("crossdock_reconcile_duration_seconds_count 3"));
        assert!(out.contains("crossdock_errors_total{kind=\"iptables_lock\"} 1"));
        assert!(out.contains("crossdock_rule_changes_total{op=\"rule_added\"} 9"));
        assert!(out.contains("crossdock_last_reconcile_changes 0"));
        // Every sample line belongs to a declared metric family.
        let families: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                families
                    .iter()
                    .any(|f| name == *f || name.starts_with(&format!("{f}_"))),
                "{l}"
            );
        }
        let c = m.counters_json();
        assert_eq!(c["reconciles"], 3);
        assert_eq!(c["reconcile_errors"], 1);
        assert_eq!(c["last_reconcile_changes"], 0);
    }

    #[test]
    fn process_stats_come_from_proc_self() {
        let status = "Name:\tcrossdock\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        let stat =
            "4242 (cross dock) S 1 4242 4242 0 -1 4194560 5 0 0 0 150 50 0 0 20 0 3 0 12000 1 2 3";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 99\n";
        let p = ProcessStats::parse(status, stat, system, 17).unwrap();
        assert_eq!(p.resident_memory_bytes, 12345 * 1024);
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.start_time_seconds, 1_700_000_120.0);
        assert_eq!(p.open_fds, 17);
        assert_eq!(ProcessStats::parse("VmRSS: x kB", stat, system, 1), None);
        let mut out = String::new();
        p.render(&mut out);
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2\n")
        );
        assert!(out.contains("process_resident_memory_bytes 12641280\n"));
        // The real thing: this test process has some memory and a start time after boot.
        let me = ProcessStats::read().expect("/proc/self is readable");
        assert!(me.resident_memory_bytes > 0 && me.start_time_seconds > 1.0e9 && me.open_fds > 0);
    }
}
