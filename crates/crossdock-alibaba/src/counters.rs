//! Counters of API and metadata calls, by action and outcome and by host.
//!
//! Every HTTP attempt counts once (a call retried three times counts four), because what matters for
//! rate limits and for the fleet benchmarks is what reached the server. The agent renders these as
//! Prometheus counters; benchmarks read the per-host totals.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Thread-safe counters, shared by a client and its metadata/credentials helpers.
#[derive(Debug, Default)]
pub struct CallCounters {
    inner: Mutex<Snapshot>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Attempts by (action, outcome). Action is `CreateRouteEntry` etc., or `metadata:<item>`;
    /// outcome is `ok`, `retryable`, `duplicate`, `not_found`, `permanent`, `transport`.
    pub calls: BTreeMap<(String, String), u64>,
    /// Attempts by endpoint host (`vpc.cn-hangzhou.aliyuncs.com`, `100.100.100.200`).
    pub by_host: BTreeMap<String, u64>,
    /// Retries made (attempts after the first).
    pub retries: u64,
    /// Answers that were throttling.
    pub throttled: u64,
    /// Retries refused because the shared retry budget was empty.
    pub budget_exhausted: u64,
}

impl Snapshot {
    /// Total attempts of one action, all outcomes.
    pub fn action_total(&self, action: &str) -> u64 {
        self.calls
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }

    /// Attempts of one action with one outcome.
    pub fn count(&self, action: &str, outcome: &str) -> u64 {
        self.calls
            .get(&(action.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// All attempts.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }
}

impl CallCounters {
    /// Records one attempt.
    pub fn record(&self, host: &str, action: &str, outcome: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s.calls
            .entry((action.to_string(), outcome.to_string()))
            .or_default() += 1;
        *s.by_host.entry(host.to_string()).or_default() += 1;
    }

    /// Records a retry about to happen.
    pub fn record_retry(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).retries += 1;
    }

    /// Records a throttling answer.
    pub fn record_throttled(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .throttled += 1;
    }

    /// Records a retry refused by the budget.
    pub fn record_budget_exhausted(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .budget_exhausted += 1;
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
