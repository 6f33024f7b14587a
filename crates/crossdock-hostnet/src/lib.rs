//! Host networking the agent reconciles: sysctls, the firewall (intent, iptables transactions), netlink.
//!
//! The agent states what the host must let through ([`DesiredInput`]: cluster range(s), local
//! container subnet, bridge) and a [`Firewall`] driver makes it so and reports the [`Changes`]. The
//! iptables driver ([`Iptables`]) renders the intent as rules ([`desired_rules`], plain data), reads
//! each table with `iptables-save` ([`save`], the workspace's one parser of that format), plans the
//! difference ([`plan`], pure) and applies it as one `iptables-restore --noflush` transaction per
//! table; [`MemoryFirewall`] is the same driver over in-memory tables. Sysctls ([`desired_sysctls`])
//! and netlink look-ups sit behind their own small traits, so all of the logic runs in unit tests
//! without root. External programs run through one runner ([`command`]), shared with the doctor.
//!
//! # The mechanism, and why
//!
//! Containers on different hosts must reach each other by their own IPs, with nothing opened to
//! anyone else and Docker's own rules left alone:
//!
//! * **filter**: chain `CROSSDOCK-FORWARD`, jumped to from the top of `DOCKER-USER`, holds
//!   `-s <cluster> -d <local subnet> -o <bridge> -j ACCEPT` per cluster range. `DOCKER-USER` is the
//!   chain Docker reserves for third parties and jumps to first from `FORWARD`; an ACCEPT there
//!   comes before Docker 28's `DOCKER ! -i br -o br -j DROP`. The FORWARD policy is never touched.
//! * **nat**: chain `CROSSDOCK-POSTROUTING`, jumped to from the top of `POSTROUTING`, holds
//!   `-s <local subnet> -d <cluster> -j ACCEPT`, ahead of Docker's MASQUERADE, so peers see container
//!   IPs rather than the host's. ACCEPT, not RETURN: from a user chain RETURN only resumes
//!   `POSTROUTING`, where the MASQUERADE comes next; ACCEPT ends the nat table (no NAT at all).
//! * **raw**: chain `CROSSDOCK-PREROUTING`, jumped to from the top of raw `PREROUTING`, holds
//!   `-s <cluster> -d <local subnet> ! -i <bridge> -j ACCEPT`. Docker 28.2+ *appends* a
//!   `-d <container> ! -i <bridge> -j DROP` per container there, which runs before any filter rule;
//!   an ACCEPT inserted ahead of it ends the raw table for cluster sources only, so everything else
//!   still meets the DROP. On Docker 20.10 the raw table has nothing to skip and the rule is harmless.
//!   Network-level alternatives (`trusted_host_interfaces`, `gateway_mode_ipv4`) are fixed at network
//!   creation and open the network to *every* source on that interface; `allow-direct-routing` needs
//!   a daemon restart and opens everything too. The raw ACCEPT needs neither and is exactly as wide
//!   as the cluster range. It does not apply to Docker's nftables backend (29+, experimental).
//!
//! * **filter INPUT** (only when `[metrics] listen` is a non-loopback address): chain
//!   `CROSSDOCK-INPUT`, jumped to from the top of `INPUT`, admits the configured scrapers to the
//!   agent's scrape port; right under the jump a REJECT turns everyone else away ([`scrape_rules`]).
//!   With `[names]`, the same chain admits the host's containers to the resolver on the bridge
//!   gateway and the fleet's members to the catalog port; under the jump a REJECT (resolver) and a
//!   DROP (catalog) turn everyone else away ([`names_rules`]).
//!
//! Every rule carries `-m comment --comment "crossdock:..."`; everything in a `CROSSDOCK-*` chain is
//! crossdock's. Docker rebuilds its chains on start and on network changes, and `DOCKER-USER` may be
//! flushed by anyone, so the agent re-applies on every Docker event and on a timer; a transaction
//! re-inserts missing rules, puts displaced jumps back on top and removes stale ones (an old subnet),
//! all at once. [`Firewall::cleanup`] removes all of it and nothing else. Kernel state is
//! deliberately left in place when the agent stops, so a restart does not cut traffic.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod command;
pub mod firewall;
pub mod iptables;
pub mod memory;
pub mod names_guard;
pub mod netlink;
pub mod plan;
pub mod rules;
pub mod save;
pub mod sysctl;

#[cfg(test)]
mod driver_tests;

pub use firewall::{Changes, Firewall, FirewallError};
pub use iptables::{Iptables, RestoreCommands, Tables};
pub use memory::{MemoryFirewall, MemoryTables};
pub use names_guard::{names_rules, NamesGuard};
pub use netlink::{LinkInfo, Links, NetlinkError, RtNetlink};
pub use rules::{
    desired_rules, desired_sysctls, jump_rules, scrape_rules, DesiredInput, Position, Rule,
    ScrapeGuard, SysctlSetting, Table, CHAIN_PREFIX, DOCKER_USER, FORWARD_CHAIN, INPUT_CHAIN,
    POSTROUTING_CHAIN, PREROUTING_CHAIN, TAG_PREFIX,
};
pub use save::{split_save_line, Ruleset, SavedRule, SavedTable};
pub use sysctl::{ensure_sysctls, sysctls_in_place, ProcSysctl, Sysctl, SysctlError};
