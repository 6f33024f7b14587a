//! The firewall seam: what the agent asks of a host firewall, at the level of intent.
//!
//! The agent says *what* must hold on this host ([`DesiredInput`]: the cluster ranges, the local
//! subnet, the bridge, optionally the scrape port) and a [`Firewall`] makes it so, in whatever
//! language the host's firewall speaks, and reports what it changed. The agent never names a table, a
//! chain or a command. Today's driver is [`crate::Iptables`] (`iptables-save` to read, one atomic
//! `iptables-restore --noflush` transaction per table to write); [`crate::MemoryFirewall`] runs the
//! same driver over in-memory tables for tests. A driver for Docker 29's nftables backend (a table of
//! crossdock's own, with base chains at the right priorities instead of jumps from Docker's chains)
//! would be one more implementation of this trait, chosen where the agent builds its dependencies.
//!
//! The contract every driver keeps: idempotent (a second `apply` over an unchanged host changes
//! nothing), ownership-bounded (only what carries crossdock's marker is ever changed; no policy is
//! ever set), and no half-applied state visible to traffic within one unit of atomicity (an iptables
//! table, an nftables transaction).

use crate::rules::{DesiredInput, Table};
use async_trait::async_trait;

/// A host firewall driver.
#[async_trait]
pub trait Firewall: Send + Sync + std::fmt::Debug {
    /// Brings the host's firewall to exactly what `desired` asks for (adding what is missing,
    /// removing crossdock's leftovers such as an old subnet's rules), and says what changed.
    async fn apply(&self, desired: &DesiredInput) -> Result<Changes, FirewallError>;
    /// Whether the host already holds exactly `desired` (an `apply` would change nothing).
    async fn in_place(&self, desired: &DesiredInput) -> Result<bool, FirewallError>;
    /// Removes everything crossdock put in place, and nothing else.
    async fn cleanup(&self) -> Result<Changes, FirewallError>;
}

/// What one `apply` or `cleanup` changed. Counted as the difference between the state before and
/// after, whatever the number of commands it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub chains_created: usize,
    pub chains_removed: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// One line per change, e.g. `+ -t nat -A CROSSDOCK-POSTROUTING ...`, for the log.
    pub log: Vec<String>,
}

impl Changes {
    /// Total number of changes.
    pub fn total(&self) -> usize {
        self.chains_created + self.chains_removed + self.rules_added + self.rules_removed
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Adds another pass's changes to these.
    pub fn merge(&mut self, other: Changes) {
        self.chains_created += other.chains_created;
        self.chains_removed += other.chains_removed;
        self.rules_added += other.rules_added;
        self.rules_removed += other.rules_removed;
        self.log.extend(other.log);
    }

    pub(crate) fn chain_created(&mut self, table: Table, chain: &str) {
        self.chains_created += 1;
        self.log.push(format!("+ -t {table} -N {chain}"));
    }

    pub(crate) fn chain_removed(&mut self, table: Table, chain: &str) {
        self.chains_removed += 1;
        self.log.push(format!("- -t {table} -X {chain}"));
    }

    pub(crate) fn rule_added(&mut self, table: Table, chain: &str, args: &[String], top: bool) {
        self.rules_added += 1;
        let verb = if top { "-I" } else { "-A" };
        self.log
            .push(format!("+ -t {table} {verb} {chain} {}", args.join(" ")));
    }

    pub(crate) fn rule_removed(&mut self, table: Table, chain: &str, args: &[String]) {
        self.rules_removed += 1;
        self.log
            .push(format!("- -t {table} -D {chain} {}", args.join(" ")));
    }
}

/// Why a firewall operation failed. Every message names the thing and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run `{program}`: {message} (fix: install the iptables package, or put iptables on the agent's PATH)")]
    MissingBinary { program: String, message: String },
    #[error("`{command}` could not get the xtables lock within {wait_secs} s: {stderr} (fix: find what holds /run/xtables.lock, or raise [firewall] lock_wait_secs)")]
    Lock {
        command: String,
        wait_secs: u64,
        stderr: String,
    },
    #[error("`{command}` did not finish within {secs} s and was killed (fix: check what is slowing iptables down, e.g. a huge ruleset)")]
    Timeout { command: String, secs: u64 },
    #[error("`{command}` failed (exit {code}): {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("`{command}` printed something that is not the iptables-save format: {message} (fix: report this with the output of iptables-save attached)")]
    Unreadable { command: String, message: String },
    #[error(
        "firewall state did not converge: {0} (fix: find the other program rewriting this chain)"
    )]
    NotConverging(String),
}

impl FirewallError {
    /// A short label for metrics (`errors_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            FirewallError::MissingBinary { .. } => "iptables_missing",
            FirewallError::Lock { .. } => "iptables_lock",
            FirewallError::Timeout { .. } => "iptables_timeout",
            FirewallError::Command { .. } | FirewallError::Unreadable { .. } => "iptables_command",
            FirewallError::NotConverging(_) => "iptables_not_converging",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_add_up_and_log_one_line_each() {
        let mut a = Changes::default();
        a.chain_created(Table::Nat, "CROSSDOCK-POSTROUTING");
        a.rule_added(
            Table::Nat,
            "POSTROUTING",
            &["-j".into(), "CROSSDOCK-POSTROUTING".into()],
            true,
        );
        let mut b = Changes::default();
        b.rule_removed(Table::Filter, "FORWARD", &["-j".into(), "ACCEPT".into()]);
        b.chain_removed(Table::Filter, "CROSSDOCK-OLD");
        a.merge(b);
        assert_eq!(a.total(), 4);
        assert_eq!(
            a.log,
            [
                "+ -t nat -N CROSSDOCK-POSTROUTING",
                "+ -t nat -I POSTROUTING -j CROSSDOCK-POSTROUTING",
                "- -t filter -D FORWARD -j ACCEPT",
                "- -t filter -X CROSSDOCK-OLD",
            ]
        );
        assert!(!a.is_empty() && Changes::default().is_empty());
    }
}
