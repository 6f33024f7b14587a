//! The emulator's call log, counted the way the control-plane targets are stated: calls per host by
//! action, failed calls (throttled, refused while a route is Pending, conflicts) included, reads and
//! writes apart.

use crossdock_vpcsim::admin::{CallRecord, Settings};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Counts over a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub total: u64,
    pub reads: u64,
    pub writes: u64,
    /// Calls answered with an error code (retries follow those).
    pub failed: u64,
    /// Every call by action.
    pub by_action: BTreeMap<String, u64>,
    /// Failed calls by error code.
    pub by_code: BTreeMap<String, u64>,
    /// Calls by the instance the credential belongs to (only the hosts asked about).
    pub per_host: BTreeMap<String, u64>,
    /// Calls not attributable to one of the hosts (other credentials, unsigned, refused before auth).
    pub unattributed: u64,
}

impl CallStats {
    /// Counts `calls` made in `[from_ms, to_ms)`; `hosts` are the instance ids that count as hosts.
    pub fn of(calls: &[CallRecord], hosts: &[String], from_ms: i64, to_ms: i64) -> CallStats {
        let known: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut s = CallStats::default();
        for h in hosts {
            s.per_host.insert(h.clone(), 0);
        }
        for c in calls
            .iter()
            .filter(|c| c.time_ms >= from_ms && c.time_ms < to_ms)
        {
            s.total += 1;
            if c.write {
                s.writes += 1;
            } else {
                s.reads += 1;
            }
            *s.by_action.entry(c.action.clone()).or_default() += 1;
            if c.code != "Success" {
                s.failed += 1;
                *s.by_code.entry(c.code.clone()).or_default() += 1;
            }
            match c.instance_id.as_deref().filter(|i| known.contains(i)) {
                Some(i) => *s.per_host.entry(i.to_string()).or_default() += 1,
                None => s.unattributed += 1,
            }
        }
        s
    }

    /// Average calls per host (all calls, attributed or not, over the hosts).
    pub fn per_host_mean(&self) -> f64 {
        if self.per_host.is_empty() {
            return f64::NAN;
        }
        self.total as f64 / self.per_host.len() as f64
    }

    /// The most calls one host made.
    pub fn per_host_max(&self) -> u64 {
        self.per_host.values().copied().max().unwrap_or(0)
    }

    /// Average calls per host by action.
    pub fn by_action_per_host(&self) -> BTreeMap<String, f64> {
        let n = self.per_host.len().max(1) as f64;
        self.by_action
            .iter()
            .map(|(a, c)| (a.clone(), *c as f64 / n))
            .collect()
    }
}

/// Reads the call log incrementally (the emulator keeps a bounded number of records, so a long run
/// polls it as it goes instead of reading it once at the end).
#[derive(Debug)]
pub struct Collector {
    admin_socket: PathBuf,
    next_seq: u64,
    pub records: Vec<CallRecord>,
}

impl Collector {
    /// Starts at the log's current end: only calls made from now on are collected.
    pub fn from_now(admin_socket: &Path) -> anyhow::Result<Collector> {
        let log =
            crossdock_lab::lab::admin_call(admin_socket, |c| async move { c.calls(None).await })?;
        Ok(Collector {
            admin_socket: admin_socket.to_path_buf(),
            next_seq: log.next_seq,
            records: Vec::new(),
        })
    }

    /// Fetches the calls recorded since the last poll.
    pub fn poll(&mut self) -> anyhow::Result<()> {
        let since = self.next_seq;
        let log = crossdock_lab::lab::admin_call(&self.admin_socket, move |c| async move {
            c.calls(Some(since)).await
        })?;
        self.next_seq = log.next_seq;
        self.records
            .extend(log.calls.into_iter().filter(|c| c.seq >= since));
        Ok(())
    }
}

/// The emulator as the control-plane targets describe it: routes `Pending` for `pending_ms`, a per-account
/// throttle of `account_qps` calls per second (per-action limits off, so the account limit is the one that
/// bites).
pub fn control_plane_settings(pending_ms: u64, account_qps: u32) -> Settings {
    Settings {
        pending_ms,
        account_qps,
        action_qps: BTreeMap::from([("*".to_string(), 0)]),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(t: i64, action: &str, write: bool, code: &str, inst: Option<&str>) -> CallRecord {
        CallRecord {
            seq: t as u64,
            time: String::new(),
            time_ms: t,
            action: action.into(),
            write,
            access_key_id: None,
            instance_id: inst.map(String::from),
            code: code.into(),
            http_status: if code == "Success" { 200 } else { 400 },
            request_id: String::new(),
            transport: "tcp:192.168.1.11:5000".into(),
            duration_ms: 200,
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn calls_are_counted_per_host_action_and_code_inside_the_window() {
        let calls = vec![
            call(10, "DescribeRouteEntryList", false, "Success", Some("i-a")),
            call(
                11,
                "CreateRouteEntry",
                true,
                "IncorrectRouteEntryStatus",
                Some("i-a"),
            ),
            call(12, "CreateRouteEntry", true, "Success", Some("i-a")),
            call(13, "CreateRouteEntry", true, "Throttling.User", Some("i-b")),
            call(14, "DescribeVpcs", false, "Success", None),
            call(15, "DescribeVpcs", false, "Success", Some("i-other")),
            call(99, "CreateRouteEntry", true, "Success", Some("i-b")),
        ];
        let hosts = vec!["i-a".to_string(), "i-b".to_string(), "i-c".to_string()];
        let s = CallStats::of(&calls, &hosts, 10, 99);
        assert_eq!(s.total, 6);
        assert_eq!((s.reads, s.writes, s.failed), (3, 3, 2));
        assert_eq!(s.by_action["CreateRouteEntry"], 3);
        assert_eq!(s.by_code["Throttling.User"], 1);
        assert_eq!(s.by_code["IncorrectRouteEntryStatus"], 1);
        assert_eq!(s.per_host["i-a"], 3);
        assert_eq!(s.per_host["i-b"], 1);
        assert_eq!(
            s.per_host["i-c"], 0,
            "hosts with no calls are counted as zero"
        );
        assert_eq!(s.unattributed, 2);
        assert_eq!(s.per_host_mean(), 2.0);
        assert_eq!(s.per_host_max(), 3);
        assert_eq!(s.by_action_per_host()["CreateRouteEntry"], 1.0);
    }

    #[test]
    fn no_hosts_means_no_mean() {
        assert!(CallStats::of(&[], &[], 0, 1).per_host_mean().is_nan());
    }

    #[test]
    fn control_settings_turn_the_account_limit_on_and_action_limits_off() {
        let s = control_plane_settings(1000, 20);
        assert_eq!(s.pending_ms, 1000);
        assert_eq!(s.account_qps, 20);
        assert_eq!(s.action_qps["*"], 0);
    }
}
