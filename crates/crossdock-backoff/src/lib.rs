//! The workspace's one backoff: how long to wait before trying again, and how to spread hosts out.
//!
//! Every retry loop in crossdock waits by the same rules, so they are written once, here, and unit
//! tested once: the cloud client's retries and its credential refreshes, the route writes and the
//! polls for a created route, `crossdock init`'s metadata reads, the Docker watcher's reconnects.
//! The pieces:
//!
//! - [`Exponential`]: the un-jittered wait before retry *n*, `initial × 2^(n−1)` capped at `max`
//!   ("capped doubling"), and [`Delays`], the same as a sequence for loops that count nothing.
//! - [`full_jitter`]: uniform in `[0, ceiling]`, for callers that pace many hosts failing together
//!   (a fleet refused together must not come back together).
//! - [`equal_jitter`]: uniform in `[ceiling/2, ceiling]`, when waits must still grow while spreading.
//! - [`AdaptiveWindow`]: a window shared by every call of one process that doubles on each refusal
//!   and halves on each success; waits are full-jitter within it. It remembers a storm across calls,
//!   which per-call backoff, restarting at every call, cannot.
//!
//! Jitter has millisecond steps. Nothing here sleeps: callers sleep how they like (tokio, a test's
//! recording sleeper), so every sequence is testable without waiting.
//!
//! No crossdock dependencies, so crates that must not depend on the cloud client (Docker) can use it.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

/// Capped doubling: the wait before retry `n` is `initial × 2^(n−1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    initial: Duration,
    max: Duration,
}

impl Exponential {
    /// Doubling from `initial`, capped at `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The un-jittered wait before retry `retry` (1-based; 0 counts as 1):
    /// `initial × 2^(retry−1)`, capped at `max` (saturating, so it never overflows).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The un-jittered waits in order: `ceiling(1)`, `ceiling(2)`, ... (endless; stays at `max`).
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: *self,
            retry: 1,
        }
    }
}

/// The waits of an [`Exponential`] in order, for a loop that just waits "the next one".
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Exponential,
    retry: u32,
}

impl Delays {
    /// The wait [`Iterator::next`] returns next, without taking it.
    pub fn peek(&self) -> Duration {
        self.backoff.ceiling(self.retry)
    }

    /// Takes the next wait (the sequence never ends).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.peek();
        self.retry = self.retry.saturating_add(1);
        d
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random wait uniformly in `[0, ceiling]` (millisecond steps): "full jitter".
pub fn full_jitter(ceiling: Duration) -> Duration {
    let ms = millis(ceiling);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

/// A uniform draw in `[0, 1)`: for randomised decisions (which hosts of a fleet act first).
pub fn unit_draw() -> f64 {
    rand::thread_rng().gen_range(0.0..1.0)
}

/// A random wait uniformly in `[ceiling/2, ceiling]` (millisecond steps above the half): "equal
/// jitter", so waits still grow while hosts that failed together spread out.
pub fn equal_jitter(ceiling: Duration) -> Duration {
    let half = ceiling / 2;
    let spread = millis(ceiling.saturating_sub(half));
    let jitter = if spread == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=spread)
    };
    half + Duration::from_millis(jitter)
}

/// A backoff window shared by every caller of one process (cheap `&self` methods, atomics inside).
///
/// Each refusal ([`AdaptiveWindow::widen`]) doubles the window, opening it at `initial` and capping it
/// at `max`; each success ([`AdaptiveWindow::narrow`]) halves it, closing it once it would fall below
/// the floor (`initial`, unless [`AdaptiveWindow::with_floor`] set a lower one: a window that opens
/// wide then closes step by step, so one success does not end the spreading at once). While open,
/// [`AdaptiveWindow::delay`] is uniform in `[0, window]`; closed, it is zero, so a caller that is
/// never refused never waits.
#[derive(Debug)]
pub struct AdaptiveWindow {
    initial_ms: u64,
    floor_ms: u64,
    max_ms: u64,
    window_ms: AtomicU64,
}

impl AdaptiveWindow {
    /// A closed window that opens at `initial` (at least 1 ms) and grows to `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial_ms = millis(initial).max(1);
        Self {
            initial_ms,
            floor_ms: initial_ms,
            max_ms: millis(max).max(initial_ms),
            window_ms: AtomicU64::new(0),
        }
    }

    /// Closes the window only once it would fall below `floor` (at least 1 ms, at most `initial`).
    pub fn with_floor(mut self, floor: Duration) -> Self {
        self.floor_ms = millis(floor).clamp(1, self.initial_ms);
        self
    }

    /// A refusal: the window doubles (opening at `initial`), up to `max`.
    pub fn widen(&self) {
        let _ = self
            .window_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                Some(w.saturating_mul(2).max(self.initial_ms).min(self.max_ms))
            });
    }

    /// A success: the window halves, closing when it would fall below `initial`.
    pub fn narrow(&self) {
        let _ = self
            .window_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w > 0).then_some(if w / 2 < self.floor_ms { 0 } else { w / 2 })
            });
    }

    /// The current window (zero: closed).
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::SeqCst))
    }

    /// The wait before the next attempt: [`full_jitter`] of the window; zero while closed.
    pub fn delay(&self) -> Duration {
        full_jitter(self.window())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_window_with_a_floor_closes_step_by_step() {
        let w = AdaptiveWindow::new(8000 * MS, 30_000 * MS).with_floor(1000 * MS);
        w.widen();
        assert_eq!(w.window(), 8000 * MS, "opens at initial");
        let mut seen = Vec::new();
        for _ in 0..5 {
            w.narrow();
            seen.push(w.window().as_millis());
        }
        assert_eq!(seen, [4000, 2000, 1000, 0, 0]);
        w.widen();
        assert_eq!(
            w.window(),
            8000 * MS,
            "reopens at initial, not at the floor"
        );
    }

    #[test]
    fn exponential_doubles_from_initial_and_stays_at_the_cap() {
        let b = Exponential::new(100 * MS, 1000 * MS);
        let got: Vec<_> = [0, 1, 2, 3, 4, 5, 40, u32::MAX]
            .map(|n| b.ceiling(n).as_millis())
            .to_vec();
        assert_eq!(got, [100, 100, 200, 400, 800, 1000, 1000, 1000]);
        let huge = Exponential::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(huge.ceiling(31), Duration::MAX, "saturates, never panics");
    }

    #[test]
    fn delays_are_the_ceilings_in_order_and_peek_does_not_advance() {
        // The Docker watcher's reconnect waits.
        let mut d = Exponential::new(200 * MS, 5000 * MS).delays();
        assert_eq!(d.peek(), 200 * MS);
        assert_eq!(d.peek(), 200 * MS);
        let seq: Vec<u128> = d.by_ref().take(8).map(|x| x.as_millis()).collect();
        assert_eq!(seq, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(d.next_delay(), 5000 * MS);
    }

    #[test]
    fn full_jitter_spreads_over_zero_to_the_ceiling() {
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
        assert_eq!(full_jitter(Duration::from_micros(900)), Duration::ZERO);
        let seen: BTreeSet<_> = (0..500).map(|_| full_jitter(100 * MS)).collect();
        assert!(seen.iter().all(|d| *d <= 100 * MS), "{seen:?}");
        assert!(seen.len() > 50, "spread: {}", seen.len());
        assert!(*seen.first().unwrap() < 20 * MS && *seen.last().unwrap() > 80 * MS);
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        assert_eq!(equal_jitter(Duration::ZERO), Duration::ZERO);
        let seen: BTreeSet<_> = (0..500).map(|_| equal_jitter(400 * MS)).collect();
        assert!(
            seen.iter().all(|d| (200 * MS..=400 * MS).contains(d)),
            "{seen:?}"
        );
        assert!(seen.len() > 50, "spread: {}", seen.len());
        // An odd ceiling: the half keeps its sub-millisecond part, the jitter is whole milliseconds.
        let d = equal_jitter(301 * MS);
        assert!(
            d >= Duration::from_micros(150_500) && d <= 301 * MS,
            "{d:?}"
        );
    }

    #[test]
    fn adaptive_window_opens_doubles_caps_halves_and_closes() {
        let w = AdaptiveWindow::new(100 * MS, 500 * MS);
        assert_eq!(w.delay(), Duration::ZERO, "closed until refused");
        w.narrow();
        assert_eq!(w.window(), Duration::ZERO);
        let mut windows = Vec::new();
        for _ in 0..4 {
            w.widen();
            windows.push(w.window().as_millis());
        }
        assert_eq!(windows, [100, 200, 400, 500]);
        assert!((0..200).all(|_| w.delay() <= 500 * MS));
        let mut windows = Vec::new();
        for _ in 0..3 {
            w.narrow();
            windows.push(w.window().as_millis());
        }
        assert_eq!(windows, [250, 125, 0], "closes below the first window");
        assert_eq!(w.delay(), Duration::ZERO);
    }

    #[test]
    fn adaptive_window_bounds_are_sane() {
        let w = AdaptiveWindow::new(Duration::ZERO, Duration::ZERO);
        w.widen();
        assert_eq!(
            w.window(),
            MS,
            "opens at 1 ms at least, max never below initial"
        );
    }
}
