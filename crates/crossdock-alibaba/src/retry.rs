//! Retry policy: capped, jittered exponential backoff, server rate-limit hints, and a shared budget.
//!
//! Why all three: the VPC API serialises route writes per VPC and answers `TaskConflict` when two hosts
//! write at once, so a fleet booting together must spread its retries (jitter) and slow down (exponent,
//! capped so a host never sleeps for hours like GCE's route controller once did). When the server says
//! how long to wait (`x-ratelimit-*: ...,TimeLeft:<ms>` or `Retry-After`), that wins over our guess.
//! The shared [`RetryBudget`] stops a broken endpoint from turning every call into N calls: retries
//! spend tokens, successes earn them back, and with the bucket empty calls fail fast.
//!
//! The arithmetic (capped doubling, jitter, the throttle gate's shared window) is the workspace's one
//! backoff module, [`crossdock_backoff`]; this module adds what is Alibaba's: hints, budget, policy.
//!
//! Sleeping goes through a [`Sleeper`] so tests can record the delays instead of waiting for them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crossdock_backoff::full_jitter;
use crossdock_backoff::{equal_jitter, AdaptiveWindow, Exponential};

/// A function that sleeps for the given duration. The default is `tokio::time::sleep`.
pub type Sleeper = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The real sleeper.
pub fn tokio_sleeper() -> Sleeper {
    Arc::new(|d| Box::pin(tokio::time::sleep(d)))
}

/// How one call is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Upper bound of one backoff.
    pub max_backoff: Duration,
    /// Give up when the next wait would take the call past this much time in total.
    pub max_elapsed: Duration,
    /// Upper bound on how long a server hint may make us wait.
    pub max_hint: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(90),
            max_hint: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The capped doubling of this policy, from `initial_backoff` to `max_backoff`.
    pub fn exponential(&self) -> Exponential {
        Exponential::new(self.initial_backoff, self.max_backoff)
    }

    /// The un-jittered backoff after `retry` failed attempts (1-based): initial * 2^(retry-1), capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.exponential().ceiling(retry)
    }

    /// The jittered backoff: uniformly in [ceiling/2, ceiling] ("equal jitter"), so waits still grow
    /// while hosts that failed together spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        equal_jitter(self.ceiling(retry))
    }

    /// The "full jitter" wait after `retry` failed attempts: uniform in [0, ceiling], for callers that
    /// pace many hosts failing together (they must not come back together), at least the server's hint
    /// (capped at `max_hint`).
    pub fn full_jitter_delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        self.at_least_hint(full_jitter(self.ceiling(retry)), hint)
    }

    /// The wait before the next attempt: the server's hint (capped at `max_hint`) if it gave one and it
    /// is longer than our backoff, else our backoff.
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        self.at_least_hint(self.backoff(retry), hint)
    }

    fn at_least_hint(&self, ours: Duration, hint: Option<Duration>) -> Duration {
        match hint {
            Some(h) => ours.max(h.min(self.max_hint)),
            None => ours,
        }
    }
}

/// Reads a rate-limit hint from response headers: `TimeLeft:<ms>` inside any `x-ratelimit-*` header
/// (Alibaba's `x-ratelimit-user-api: Limit:100,Remain:0,TimeLeft:1500,Reset:...`), or `Retry-After`
/// in seconds. The longest one wins.
pub fn rate_limit_hint<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let found = if name.starts_with("x-ratelimit") {
            value.split(',').find_map(|part| {
                let (k, v) = part.split_once(':')?;
                if k.trim().eq_ignore_ascii_case("timeleft") {
                    v.trim().parse::<u64>().ok().map(Duration::from_millis)
                } else {
                    None
                }
            })
        } else if name == "retry-after" {
            value.trim().parse::<u64>().ok().map(Duration::from_secs)
        } else {
            None
        };
        if let Some(d) = found {
            best = Some(best.map_or(d, |b| b.max(d)));
        }
    }
    best
}

/// A token bucket shared by every call of one client: each retry spends [`RetryBudget::RETRY_COST`]
/// tokens, each success returns one, up to the capacity. An empty bucket means "no more retries";
/// first attempts are never refused.
#[derive(Debug)]
pub struct RetryBudget {
    capacity: u64,
    tokens: AtomicU64,
}

impl RetryBudget {
    /// Tokens one retry costs.
    pub const RETRY_COST: u64 = 5;

    /// A full bucket of `capacity` tokens.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            tokens: AtomicU64::new(capacity),
        }
    }

    /// Takes the cost of one retry; false (and nothing taken) if the bucket has too little.
    pub fn try_spend(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                t.checked_sub(Self::RETRY_COST)
            })
            .is_ok()
    }

    /// Returns one token after a success.
    pub fn refund(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < self.capacity).then_some(t + 1)
            });
    }

    /// Tokens left.
    pub fn available(&self) -> u64 {
        self.tokens.load(Ordering::SeqCst)
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(100)
    }
}

/// Courtesy towards an account-wide rate limit, shared by every call of one client.
///
/// A throttle (`Throttling.User`: 20 calls/s for the whole account, say) is shared by every host of
/// the account, and hosts booting together each see only their own calls. Per-call backoff resets with
/// every call and every pass, so a fleet keeps hammering the limit and most of its calls are refused.
/// The gate remembers: each throttled answer doubles a window (from `initial`, up to `max`), each
/// answer that was not throttled halves it (closing below 1 s, or below `initial` if smaller); while
/// it is open, every attempt of this client (first attempts too) waits a random time in [0, window]. The hosts of a
/// storm slow down until the account's limit holds them, and speed up again as the storm ends. A
/// client that is never throttled never waits. Calls whose caller paces its own retries (route
/// writes, see `Client::create_route_entry_once`) are not held back, only counted.
#[derive(Debug)]
pub struct ThrottleGate(AdaptiveWindow);

impl ThrottleGate {
    /// A closed gate. It closes again once it would fall below 1 s (or `initial`, if smaller): a gate
    /// that opens wider (fleet mode) narrows step by step rather than closing at the first success.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self(AdaptiveWindow::new(initial, max).with_floor(Self::FLOOR.min(initial)))
    }

    /// The smallest open window.
    pub const FLOOR: Duration = Duration::from_secs(1);

    /// A throttled answer: the window doubles (opening at `initial`), up to `max`.
    pub fn throttled(&self) {
        self.0.widen();
    }

    /// An answer that was not throttled: the window halves, closing when it falls below `initial`,
    /// so the last hosts of a storm are not held back once the account has room again.
    pub fn passed(&self) {
        self.0.narrow();
    }

    /// The current window (zero: closed).
    pub fn window(&self) -> Duration {
        self.0.window()
    }

    /// The wait before the next attempt: uniform in [0, window]; zero while closed.
    pub fn delay(&self) -> Duration {
        self.0.delay()
    }
}

impl Default for ThrottleGate {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_gate_opens_doubles_caps_and_closes() {
        // A gate that opens wide (fleet mode) narrows to 1 s before it closes.
        let wide = ThrottleGate::new(Duration::from_secs(8), Duration::from_secs(30));
        wide.throttled();
        wide.passed();
        assert_eq!(
            wide.window(),
            Duration::from_secs(4),
            "one success does not close it"
        );
        wide.passed();
        wide.passed();
        assert_eq!(wide.window(), ThrottleGate::FLOOR);
        wide.passed();
        assert_eq!(wide.window(), Duration::ZERO);

        let g = ThrottleGate::new(Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(g.delay(), Duration::ZERO, "closed until throttled");
        g.passed();
        assert_eq!(g.window(), Duration::ZERO);
        g.throttled();
        assert_eq!(g.window(), Duration::from_millis(100));
        g.throttled();
        g.throttled();
        assert_eq!(g.window(), Duration::from_millis(400));
        g.throttled();
        assert_eq!(g.window(), Duration::from_millis(500), "capped");
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = g.delay();
            assert!(d <= Duration::from_millis(500), "{d:?}");
            distinct.insert(d);
        }
        assert!(distinct.len() > 50, "spread: {}", distinct.len());
        g.passed();
        assert_eq!(g.window(), Duration::from_millis(250));
        g.passed();
        assert_eq!(g.window(), Duration::from_millis(125));
        g.passed();
        assert_eq!(
            g.window(),
            Duration::ZERO,
            "closed again below the first window"
        );
        assert_eq!(g.delay(), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_millis(1000));
        assert_eq!(p.ceiling(40), Duration::from_millis(1000));
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = p.backoff(3);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
            distinct.insert(d);
        }
        assert!(distinct.len() > 10, "jitter spreads the waits");
    }

    #[test]
    fn hints_win_when_longer_and_are_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_hint: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert!(p.delay(1, Some(Duration::from_millis(1500))) == Duration::from_millis(1500));
        assert!(p.delay(1, Some(Duration::from_secs(600))) == Duration::from_secs(5));
        assert!(p.delay(1, Some(Duration::from_millis(1))) <= Duration::from_millis(100));
    }

    #[test]
    fn parses_rate_limit_headers() {
        let h = [
            (
                "X-RateLimit-User-Api",
                "Limit:100,Remain:0,TimeLeft:1500,Reset:1732546686",
            ),
            ("content-type", "application/json"),
        ];
        assert_eq!(rate_limit_hint(h), Some(Duration::from_millis(1500)));
        let h = [
            ("x-ratelimit-user", "Limit:10,Remain:0,TimeLeft:200"),
            ("retry-after", "2"),
        ];
        assert_eq!(rate_limit_hint(h), Some(Duration::from_secs(2)));
        assert_eq!(rate_limit_hint([("x-ratelimit-user", "Limit:10")]), None);
    }

    #[test]
    fn budget_spends_and_refunds() {
        let b = RetryBudget::new(10);
        assert!(b.try_spend());
        assert!(b.try_spend());
        assert!(!b.try_spend(), "empty");
        assert_eq!(b.available(), 0);
        for _ in 0..20 {
            b.refund();
        }
        assert_eq!(b.available(), 10, "capped at capacity");
    }
}
