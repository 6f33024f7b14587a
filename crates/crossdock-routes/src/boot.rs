//! How a fleet member spends its calls at boot, when a whole fleet may be booting together.
//!
//! A scaling group that launches 200 instances at once starts 200 agents within seconds against one
//! account's rate limit (20 calls/s in the storm benchmark). Each of them must make three calls
//! whatever happens (the vSwitches, its ENI, a look at its route), and one member listing plus one
//! table listing is enough to write the whole fleet's routes. If every host swept, the sweeps alone
//! would take the account's budget for a minute, and a throttled answer counts as a call too. A host
//! cannot tell a fleet booting together from a host joining alone before it has called, so at boot,
//! in a VPC with more than [`DRAW_ABOVE`] addresses in use (in `[subnet] host_ranges`' vSwitches, or
//! the whole VPC's):
//!
//! - **A few hosts sweep.** Each host draws whether it sweeps at once, with a chance chosen so that
//!   about [`BOOT_SWEEPERS`] of the hosts that may be booting do: the addresses in use bound how
//!   many instances, so members, there are. A drawn host lists the fleet and writes every missing
//!   route in batches of 50, starting with its own.
//! - **The others wait their turn.** A host not drawn looks for its own route (one filtered read
//!   per table) only once the sweepers have had time to write every member's route
//!   ([`BootPacing::settle`]), at a random moment in a window wide enough that the waiting hosts'
//!   calls stay under the account's rate ([`BootPacing::spread`]); its ENI write waits for the turn
//!   too. A host whose very first call is throttled has not learned the VPC's size: it waits a turn
//!   sized for [`BOOT_GUESS`] addresses before reading the layout again.
//! - **Nobody is left out.** A host whose route is still missing at its look sweeps (and writes) at
//!   once: a drawn sweeper that died, or a draw that picked nobody, costs time, not routes.
//!
//! The price: a host that joins a running fleet alone learns that its route is in place only at
//! its turn (up to settle + spread, 20–42 s at 200 addresses), although the other members' sweeps
//! (about 8 per `sweep_interval_secs` in all) write it well before; and a new cluster of a few hosts in a VPC
//! shared with many other instances waits a whole turn before its first route unless
//! `[subnet] host_ranges` names the cluster's vSwitches.

use std::time::Duration;

/// The addresses in use a host assumes when its very first call is throttled and it cannot know
/// the VPC's size yet (a /24's worth).
pub const BOOT_GUESS: u64 = 256;

/// About this many hosts of a booting fleet sweep at once.
pub const BOOT_SWEEPERS: u64 = 4;

/// At most this many addresses in use, every booting host sweeps, as in a fleet of a few hosts
/// (their sweeps fit in the account's burst).
pub const DRAW_ABOVE: u64 = 16;

/// The waiting hosts' calls are spread so that they take at most this share of the account's rate
/// (the sweepers need the rest).
const RATE_SHARE: f64 = 0.9;

/// Calls a waiting host makes in its turn: its route's look and its ENI write.
const CALLS_PER_TURN: f64 = 2.0;

/// Routes one batch call writes (`CreateRouteEntries`).
const BATCH: u64 = 50;

/// The longest settle time, however large the VPC.
const MAX_SETTLE: Duration = Duration::from_secs(30);

/// The longest spread, however large the VPC.
const MAX_SPREAD: Duration = Duration::from_secs(60);

/// What a booting host does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootRole {
    /// Sweep now and write at once (drawn, or a VPC too small to draw in).
    Sweep,
    /// Look for its own route first; sweep only if it stays missing.
    Wait,
}

/// The boot pacing of one host, from the VPC's size and the account's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootPacing {
    /// Addresses in use in the VPC's vSwitches (0: unknown).
    pub addresses_in_use: u64,
    /// The account's API calls per second.
    pub account_rate: f64,
}

impl BootPacing {
    /// The chance of sweeping at once: about [`BOOT_SWEEPERS`] of the VPC's instances do; 1 when
    /// the VPC's size is unknown or small.
    pub fn sweep_chance(&self) -> f64 {
        if self.addresses_in_use <= DRAW_ABOVE {
            return 1.0;
        }
        BOOT_SWEEPERS as f64 / self.addresses_in_use as f64
    }

    /// The role for a uniform draw in `[0, 1)`.
    pub fn role(&self, draw: f64) -> BootRole {
        if draw < self.sweep_chance() {
            BootRole::Sweep
        } else {
            BootRole::Wait
        }
    }

    /// When, counted from the agent's start, the sweepers of a throttled boot have written every
    /// member's route: their reads under the throttle, then one batch of 50 at a time.
    pub fn settle(&self) -> Duration {
        let batches = self.addresses_in_use.div_ceil(BATCH).max(1);
        let settle = Duration::from_secs(10)
            + Duration::from_secs(2) * u32::try_from(batches).unwrap_or(u32::MAX);
        settle.min(MAX_SETTLE)
    }

    /// The window over which the waiting hosts' turns are spread: their calls at
    /// [`RATE_SHARE`] of the account's rate, at most [`MAX_SPREAD`].
    pub fn spread(&self) -> Duration {
        if self.account_rate <= 0.0 {
            return MAX_SPREAD;
        }
        let secs = self.addresses_in_use as f64 * CALLS_PER_TURN / (RATE_SHARE * self.account_rate);
        Duration::from_secs_f64(secs.clamp(0.0, MAX_SPREAD.as_secs_f64()))
    }

    /// How long a throttled waiting host waits before its turn, `since_start` after the agent
    /// started, for a uniform draw in `[0, 1)`: until the sweepers are done, then its place in the
    /// spread.
    pub fn turn_in(&self, since_start: Duration, draw: f64) -> Duration {
        self.settle().saturating_sub(since_start) + self.spread().mul_f64(draw.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(in_use: u64) -> BootPacing {
        BootPacing {
            addresses_in_use: in_use,
            account_rate: 20.0,
        }
    }

    #[test]
    fn small_or_unknown_vpcs_sweep_as_before() {
        for n in [0, 1, 2, BOOT_SWEEPERS, DRAW_ABOVE] {
            assert_eq!(pacing(n).sweep_chance(), 1.0, "{n}");
            assert_eq!(pacing(n).role(0.999), BootRole::Sweep, "{n}");
        }
    }

    #[test]
    fn about_boot_sweepers_hosts_of_a_large_vpc_sweep() {
        let p = pacing(204);
        assert!((p.sweep_chance() * 204.0 - BOOT_SWEEPERS as f64).abs() < 1e-9);
        assert_eq!(p.role(0.0), BootRole::Sweep);
        assert_eq!(p.role(p.sweep_chance()), BootRole::Wait);
        assert_eq!(p.role(0.5), BootRole::Wait);
    }

    #[test]
    fn the_settle_time_grows_with_the_batches_to_write() {
        assert_eq!(pacing(0).settle(), Duration::from_secs(12));
        assert_eq!(pacing(50).settle(), Duration::from_secs(12));
        assert_eq!(pacing(51).settle(), Duration::from_secs(14));
        assert_eq!(pacing(204).settle(), Duration::from_secs(20));
        assert_eq!(pacing(100_000).settle(), MAX_SETTLE);
    }

    #[test]
    fn the_spread_keeps_the_waiting_hosts_under_the_rate_and_is_capped() {
        // 200 hosts x 2 calls at 90 % of 20 calls/s.
        let s = pacing(200).spread().as_secs_f64();
        assert!((s - 400.0 / 18.0).abs() < 1e-6, "{s}");
        assert_eq!(pacing(100_000).spread(), MAX_SPREAD);
        let unknown_rate = BootPacing {
            addresses_in_use: 10,
            account_rate: 0.0,
        };
        assert_eq!(unknown_rate.spread(), MAX_SPREAD);
    }

    #[test]
    fn a_turn_waits_for_the_settle_time_then_its_place_in_the_spread() {
        let p = pacing(200);
        assert_eq!(p.turn_in(Duration::ZERO, 0.0), p.settle());
        assert_eq!(
            p.turn_in(Duration::from_secs(5), 1.0),
            p.settle() - Duration::from_secs(5) + p.spread()
        );
        // Later than the settle time: only the place in the spread.
        assert_eq!(
            p.turn_in(Duration::from_secs(60), 0.5),
            p.spread().mul_f64(0.5)
        );
    }
}
