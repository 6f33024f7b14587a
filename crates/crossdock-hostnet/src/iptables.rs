//! The iptables driver: reads a table with `iptables-save`, plans one transaction ([`crate::plan`]),
//! applies it with `iptables-restore --noflush`, and reads again to confirm.
//!
//! Why transactions: one `iptables` process per rule left windows where half the rules existed (a
//! jump deleted and not yet re-inserted, a chain flushed and not yet refilled) and cost a fork per
//! rule. `iptables-restore --noflush` commits one table at once: the legacy back-end swaps the whole
//! table in one kernel call, the nft back-end sends one netlink batch; either all of it happens or
//! none of it does. A transaction planned on a read that someone changed meanwhile fails as a whole
//! (rules are deleted by specification), and the driver reads and plans again, a bounded number of
//! times: a program that keeps rewriting the same chain is reported, not fought forever.
//!
//! The xtables lock: every restore carries `-w <lock_wait_secs>` (`[firewall] lock_wait_secs`) and
//! is killed if it outlives that bound by 10 s, so a daemon never hangs behind someone else's lock
//! (the `iptables` crate was not used because it appends an unbounded `--wait`, and iptables honours
//! the last `-w`). `iptables-save` takes no lock: the kernel hands it a consistent snapshot.
//!
//! The programs are `iptables-save` and `iptables-restore` from `PATH` (the ones Docker uses, legacy
//! or nft), named after the configured `iptables` program: `iptables-legacy` gives
//! `iptables-legacy-save`, and a prefix such as `["nsenter", "--net=/run/netns/x", "iptables"]` (the
//! lab, root tests) is kept in front of both.

use crate::command::{self, Output, RunError};
use crate::firewall::{Changes, Firewall, FirewallError};
use crate::plan::{plan_apply, plan_cleanup, Plan, Transaction};
use crate::rules::{desired_rules, DesiredInput, Rule, Table};
use crate::save::{Ruleset, SavedTable};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// iptables at the level of whole tables: what the driver needs from the kernel.
#[async_trait]
pub trait Tables: Send + Sync + std::fmt::Debug {
    /// One table as `iptables-save -t <table>` prints it.
    async fn save(&self, table: Table) -> Result<SavedTable, FirewallError>;
    /// Applies one table's transaction, all or nothing.
    async fn restore(&self, tx: &Transaction) -> Result<(), FirewallError>;
}

/// How many read-plan-write rounds one table gets before the driver gives up.
const MAX_PASSES: usize = 4;

/// The iptables [`Firewall`] driver.
#[derive(Debug, Clone)]
pub struct Iptables {
    tables: Arc<dyn Tables>,
}

impl Iptables {
    /// `iptables-save` / `iptables-restore` from `PATH`, waiting at most `lock_wait_secs` for the
    /// xtables lock.
    pub fn new(lock_wait_secs: u64) -> Self {
        Self::with_program(vec!["iptables".into()], lock_wait_secs)
    }

    /// Another iptables program (`iptables-legacy`), or a prefix in front of it (`nsenter`, `env`):
    /// the last word names the program, `-save` / `-restore` are appended to it.
    pub fn with_program(program: Vec<String>, lock_wait_secs: u64) -> Self {
        Self::over(Arc::new(RestoreCommands::new(program, lock_wait_secs)))
    }

    /// The driver over any implementation of the tables (in memory, for tests).
    pub fn over(tables: Arc<dyn Tables>) -> Self {
        Self { tables }
    }

    /// Brings every table to the iptables rules `desired`.
    pub async fn apply_rules(&self, desired: &[Rule]) -> Result<Changes, FirewallError> {
        let mut changes = Changes::default();
        for table in Table::ALL {
            changes.merge(
                self.converge(table, |now| plan_apply(table, desired, now))
                    .await?,
            );
        }
        Ok(changes)
    }

    /// Read, plan, write, until the plan is empty. A failed write (most likely planned on a read
    /// someone changed meanwhile) is retried from a fresh read; the last failure is returned.
    async fn converge(
        &self,
        table: Table,
        plan: impl Fn(&SavedTable) -> Plan,
    ) -> Result<Changes, FirewallError> {
        let mut changes = Changes::default();
        for pass in 1..=MAX_PASSES {
            let now = self.tables.save(table).await?;
            let p = plan(&now);
            if p.tx.is_empty() {
                return Ok(changes);
            }
            match self.tables.restore(&p.tx).await {
                Ok(()) => changes.merge(p.changes),
                Err(FirewallError::Command { .. }) if pass < MAX_PASSES => {}
                Err(e) => return Err(e),
            }
        }
        Err(FirewallError::NotConverging(format!(
            "{table}: crossdock's rules were changed again after each of {MAX_PASSES} transactions"
        )))
    }
}

#[async_trait]
impl Firewall for Iptables {
    async fn apply(&self, desired: &DesiredInput) -> Result<Changes, FirewallError> {
        self.apply_rules(&desired_rules(desired)).await
    }

    async fn in_place(&self, desired: &DesiredInput) -> Result<bool, FirewallError> {
        let rules = desired_rules(desired);
        for table in Table::ALL {
            let now = self.tables.save(table).await?;
            if !plan_apply(table, &rules, &now).tx.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn cleanup(&self) -> Result<Changes, FirewallError> {
        let mut changes = Changes::default();
        for table in Table::ALL {
            changes.merge(self.converge(table, |now| plan_cleanup(table, now)).await?);
        }
        Ok(changes)
    }
}

/// The real tables: `iptables-save` and `iptables-restore --noflush` with a bounded lock wait.
#[derive(Debug, Clone)]
pub struct RestoreCommands {
    save: Vec<String>,
    restore: Vec<String>,
    lock_wait_secs: u64,
}

/// Extra time a command may take beyond its lock wait before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(10);

impl RestoreCommands {
    /// See [`Iptables::with_program`].
    pub fn new(program: Vec<String>, lock_wait_secs: u64) -> Self {
        let with_suffix = |suffix: &str| {
            let mut p = program.clone();
            match p.last_mut() {
                Some(last) => last.push_str(suffix),
                None => p.push(format!("iptables{suffix}")),
            }
            p
        };
        Self {
            save: with_suffix("-save"),
            restore: with_suffix("-restore"),
            lock_wait_secs: lock_wait_secs.max(1),
        }
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.lock_wait_secs) + KILL_MARGIN
    }

    fn run_error(&self, e: RunError) -> FirewallError {
        match e {
            RunError::Spawn { program, message } => {
                FirewallError::MissingBinary { program, message }
            }
            RunError::Timeout { command, secs } => FirewallError::Timeout { command, secs },
        }
    }

    fn failure(&self, out: Output, input: Option<&str>) -> FirewallError {
        // iptables exits 4 (RESOURCE_PROBLEM) when it gives up on the xtables lock.
        if out.code == 4 && out.stderr.contains("lock") {
            return FirewallError::Lock {
                command: out.command,
                wait_secs: self.lock_wait_secs,
                stderr: out.stderr,
            };
        }
        let stderr = match input.and_then(|text| failed_line(&out.stderr, text)) {
            Some(line) => format!("{} (the line: `{line}`)", out.stderr),
            None => out.stderr,
        };
        FirewallError::Command {
            command: out.command,
            code: out.code,
            stderr,
        }
    }
}

/// The input line iptables-restore names in `... line N failed ...`.
fn failed_line<'a>(stderr: &str, input: &'a str) -> Option<&'a str> {
    let rest = &stderr[stderr.find("line ")? + 5..];
    let n: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    input.lines().nth(n.checked_sub(1)?)
}

#[async_trait]
impl Tables for RestoreCommands {
    async fn save(&self, table: Table) -> Result<SavedTable, FirewallError> {
        let out = command::run(&self.save, &["-t", table.as_str()], None, self.limit())
            .await
            .map_err(|e| self.run_error(e))?;
        if !out.success() {
            return Err(self.failure(out, None));
        }
        let mut set = Ruleset::parse(&out.stdout).map_err(|e| FirewallError::Unreadable {
            command: out.command.clone(),
            message: e.to_string(),
        })?;
        Ok(set.tables.remove(table.as_str()).unwrap_or_default())
    }

    async fn restore(&self, tx: &Transaction) -> Result<(), FirewallError> {
        let wait = self.lock_wait_secs.to_string();
        let input = tx.render();
        let out = command::run(
            &self.restore,
            &["-w", &wait, "--noflush"],
            Some(&input),
            self.limit(),
        )
        .await
        .map_err(|e| self.run_error(e))?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failure(out, Some(&input)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_restore_are_named_after_the_program() {
        let c = RestoreCommands::new(
            vec![
                "nsenter".into(),
                "--net=/run/netns/x".into(),
                "iptables-legacy".into(),
            ],
            0,
        );
        assert_eq!(
            c.save,
            ["nsenter", "--net=/run/netns/x", "iptables-legacy-save"]
        );
        assert_eq!(c.restore[2], "iptables-legacy-restore");
        assert_eq!(
            c.lock_wait_secs, 1,
            "a zero wait would mean no bound at all"
        );
    }

    #[test]
    fn a_refused_transaction_names_its_line() {
        let input = "*filter\n-D DOCKER-USER -j X\nCOMMIT\n";
        let c = RestoreCommands::new(vec!["iptables".into()], 5);
        let e = c.failure(
            Output {
                command: "iptables-restore -w 5 --noflush".into(),
                code: 1,
                stdout: String::new(),
                stderr: "iptables-restore: line 2 failed: Bad rule (does a matching rule exist in that chain?).".into(),
            },
            Some(input),
        );
        assert_eq!(e.kind(), "iptables_command");
        assert!(
            e.to_string().contains("(the line: `-D DOCKER-USER -j X`)"),
            "{e}"
        );
        let e = c.failure(
            Output {
                command: "iptables-restore -w 5 --noflush".into(),
                code: 4,
                stdout: String::new(),
                stderr:
                    "Another app is currently holding the xtables lock. Stopped waiting after 5s."
                        .into(),
            },
            Some(input),
        );
        assert_eq!(e.kind(), "iptables_lock");
        assert!(e.to_string().contains("lock_wait_secs"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_program_says_how_to_install_it() {
        let fw = Iptables::with_program(vec!["/nonexistent/crossdock-iptables".into()], 1);
        let e = fw.cleanup().await.unwrap_err();
        assert_eq!(e.kind(), "iptables_missing");
        assert!(
            e.to_string()
                .contains("/nonexistent/crossdock-iptables-save"),
            "{e}"
        );
    }
}
