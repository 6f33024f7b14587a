//! Host networking the agent reconciles: sysctls, iptables rules as data, netlink look-ups.
//!
//! The desired state is computed as plain data ([`desired_rules`], [`desired_sysctls`]) from the
//! cluster range(s), the local container subnet and the bridge, then applied idempotently by
//! [`reconcile`] through the small [`Firewall`] trait. Everything that touches the kernel (iptables,
//! `/proc/sys`, rtnetlink) sits behind a trait, so the logic runs in unit tests without root.
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
//! Every rule carries `-m comment --comment "crossdock:..."`; everything in a `CROSSDOCK-*` chain is
//! crossdock's. Docker rebuilds its chains on start and on network changes, and `DOCKER-USER` may be
//! flushed by anyone, so the agent re-runs [`reconcile`] on every Docker event and on a timer; it
//! re-inserts missing rules, puts displaced jumps back on top and removes stale ones (an old subnet).
//! [`cleanup`] removes all of it and nothing else. Kernel state is deliberately left in place when the
//! agent stops, so a restart does not cut traffic.

pub mod firewall;
pub mod netlink;
pub mod reconcile;
pub mod rules;
pub mod sysctl;

pub use firewall::{Firewall, FirewallError, Iptables, MemoryFirewall, TableDump};
pub use netlink::{LinkInfo, Links, NetlinkError, RtNetlink};
pub use reconcile::{cleanup, in_place, reconcile, Changes};
pub use rules::{
    desired_rules, desired_sysctls, jump_rules, DesiredInput, Position, Rule, SysctlSetting, Table,
    CHAIN_PREFIX, DOCKER_USER, FORWARD_CHAIN, POSTROUTING_CHAIN, PREROUTING_CHAIN, TAG_PREFIX,
};
pub use sysctl::{ensure_sysctls, sysctls_in_place, ProcSysctl, Sysctl, SysctlError};
