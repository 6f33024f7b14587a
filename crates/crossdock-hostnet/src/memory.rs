//! In-memory iptables tables with the semantics `iptables-restore --noflush` has for the commands
//! crossdock sends (declare, append, insert, delete by specification, flush, delete chain; jumps only
//! to existing chains; no deleting a referenced or non-empty chain; all or nothing per transaction).
//! [`MemoryFirewall`] is the real iptables driver over them: the agent's and the driver's unit tests
//! exercise the very planning code that runs in production, without root.

use crate::firewall::{Changes, Firewall, FirewallError};
use crate::iptables::{Iptables, Tables};
use crate::plan::{Op, Transaction};
use crate::rules::{DesiredInput, Table};
use crate::save::{split_save_line, Chain, SavedRule, SavedTable};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Targets that are not chains.
const STANDARD_TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "MASQUERADE",
    "DNAT",
    "SNAT",
    "LOG",
    "CT",
    "MARK",
];

/// The tables, a count of committed transactions, and an optional forced failure.
#[derive(Debug)]
pub struct MemoryTables {
    state: Mutex<MemoryState>,
}

#[derive(Debug)]
struct MemoryState {
    tables: BTreeMap<Table, SavedTable>,
    writes: usize,
    fail_writes: Option<FirewallError>,
}

impl Default for MemoryTables {
    fn default() -> Self {
        Self::new()
    }
}

fn builtins(table: Table) -> &'static [&'static str] {
    match table {
        Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
        Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        Table::Raw => &["PREROUTING", "OUTPUT"],
    }
}

impl MemoryTables {
    /// Every table with its built-in chains, policies ACCEPT except filter FORWARD DROP (Docker's).
    pub fn new() -> Self {
        let mut tables = BTreeMap::new();
        for t in Table::ALL {
            let mut saved = SavedTable::default();
            for c in builtins(t) {
                let policy = if t == Table::Filter && *c == "FORWARD" {
                    "DROP"
                } else {
                    "ACCEPT"
                };
                saved.chains.insert(
                    c.to_string(),
                    Chain {
                        policy: Some(policy.into()),
                        ..Chain::default()
                    },
                );
            }
            tables.insert(t, saved);
        }
        Self {
            state: Mutex::new(MemoryState {
                tables,
                writes: 0,
                fail_writes: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A test that panicked while holding the lock has failed already; its data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(st: &mut MemoryState, table: Table) -> &mut SavedTable {
        st.tables.entry(table).or_default()
    }

    /// Someone else (Docker) appends rules to a chain, creating it if needed; each rule is a
    /// save-format string without `-A <chain>`. Not counted as a write.
    pub fn seed(&self, table: Table, chain: &str, rules: &[&str]) {
        let mut st = self.lock();
        let c = Self::table_mut(&mut st, table)
            .chains
            .entry(chain.to_string())
            .or_default();
        c.rules
            .extend(rules.iter().map(|r| SavedRule::new(split_save_line(r))));
    }

    /// Someone else inserts a rule at the head of an existing chain.
    pub fn external_insert_first(&self, table: Table, chain: &str, rule: &str) {
        let mut st = self.lock();
        if let Some(c) = Self::table_mut(&mut st, table).chains.get_mut(chain) {
            c.rules.insert(0, SavedRule::new(split_save_line(rule)));
        }
    }

    /// Someone else deletes the first rule equal to `rule`.
    pub fn external_delete(&self, table: Table, chain: &str, rule: &str) {
        let args = split_save_line(rule);
        let mut st = self.lock();
        if let Some(c) = Self::table_mut(&mut st, table).chains.get_mut(chain) {
            if let Some(i) = c.position(&args) {
                c.rules.remove(i);
            }
        }
    }

    /// Someone else runs `iptables -F <chain>`.
    pub fn external_flush(&self, table: Table, chain: &str) {
        let mut st = self.lock();
        if let Some(c) = Self::table_mut(&mut st, table).chains.get_mut(chain) {
            c.rules.clear();
        }
    }

    /// A snapshot of a table.
    pub fn dump(&self, table: Table) -> SavedTable {
        self.lock().tables.get(&table).cloned().unwrap_or_default()
    }

    /// Transactions committed so far.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// Makes every later transaction fail with `err` (None: they work again).
    pub fn fail_writes(&self, err: Option<FirewallError>) {
        self.lock().fail_writes = err;
    }
}

fn check_target(table: &SavedTable, args: &[String]) -> Result<(), String> {
    match crate::save::jump_target(args) {
        Some(t) if !STANDARD_TARGETS.contains(&t) && !table.chains.contains_key(t) => {
            Err(format!("Couldn't load target `{t}'"))
        }
        _ => Ok(()),
    }
}

fn existing<'a>(table: &'a mut SavedTable, chain: &str) -> Result<&'a mut Chain, String> {
    table
        .chains
        .get_mut(chain)
        .ok_or_else(|| "No chain/target/match by that name.".to_string())
}

/// One command, as iptables-restore --noflush executes it.
fn execute(table: Table, t: &mut SavedTable, op: &Op) -> Result<(), String> {
    match op {
        Op::Declare(chain) => {
            t.chains.entry(chain.clone()).or_default().rules.clear();
        }
        Op::Append(chain, args) | Op::InsertFirst(chain, args) => {
            check_target(t, args)?;
            let c = existing(t, chain)?;
            let rule = SavedRule::new(args.clone());
            if matches!(op, Op::Append(..)) {
                c.rules.push(rule);
            } else {
                c.rules.insert(0, rule);
            }
        }
        Op::Delete(chain, args) => {
            let c = existing(t, chain)?;
            let i = c
                .position(args)
                .ok_or("Bad rule (does a matching rule exist in that chain?).")?;
            c.rules.remove(i);
        }
        Op::Flush(chain) => existing(t, chain)?.rules.clear(),
        Op::DeleteChain(chain) => {
            if table.is_builtin(chain) {
                return Err("Cannot delete built-in chain".into());
            }
            if !existing(t, chain)?.rules.is_empty() {
                return Err("Directory not empty.".into());
            }
            let referenced = t
                .chains
                .values()
                .flat_map(|c| &c.rules)
                .any(|r| crate::save::jump_target(&r.args) == Some(chain.as_str()));
            if referenced {
                return Err("Too many links.".into());
            }
            t.chains.remove(chain);
        }
    }
    Ok(())
}

#[async_trait]
impl Tables for MemoryTables {
    async fn save(&self, table: Table) -> Result<SavedTable, FirewallError> {
        Ok(self.dump(table))
    }

    async fn restore(&self, tx: &Transaction) -> Result<(), FirewallError> {
        let mut st = self.lock();
        if let Some(e) = &st.fail_writes {
            return Err(e.clone());
        }
        let mut t = st.tables.get(&tx.table).cloned().unwrap_or_default();
        for (i, op) in tx.ops.iter().enumerate() {
            execute(tx.table, &mut t, op).map_err(|message| FirewallError::Command {
                command: "iptables-restore --noflush (in memory)".into(),
                code: 1,
                // Line 1 of the input is `*table`.
                stderr: format!("iptables-restore: line {} failed: {message}", i + 2),
            })?;
        }
        st.tables.insert(tx.table, t);
        st.writes += 1;
        Ok(())
    }
}

/// The iptables driver over [`MemoryTables`], for tests.
#[derive(Debug, Clone)]
pub struct MemoryFirewall {
    tables: Arc<MemoryTables>,
    driver: Iptables,
}

impl Default for MemoryFirewall {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFirewall {
    /// Fresh tables (see [`MemoryTables::new`]).
    pub fn new() -> Self {
        let tables = Arc::new(MemoryTables::new());
        Self {
            driver: Iptables::over(tables.clone()),
            tables,
        }
    }

    /// The tables, to change behind the driver's back and to look at.
    pub fn tables(&self) -> &MemoryTables {
        &self.tables
    }

    /// See [`MemoryTables::seed`].
    pub fn seed(&self, table: Table, chain: &str, rules: &[&str]) {
        self.tables.seed(table, chain, rules);
    }

    /// See [`MemoryTables::dump`].
    pub fn dump(&self, table: Table) -> SavedTable {
        self.tables.dump(table)
    }

    /// See [`MemoryTables::writes`].
    pub fn writes(&self) -> usize {
        self.tables.writes()
    }

    /// See [`MemoryTables::fail_writes`].
    pub fn fail_writes(&self, err: Option<FirewallError>) {
        self.tables.fail_writes(err);
    }

    /// See [`MemoryTables::external_flush`].
    pub fn external_flush(&self, table: Table, chain: &str) {
        self.tables.external_flush(table, chain);
    }
}

#[async_trait]
impl Firewall for MemoryFirewall {
    async fn apply(&self, desired: &DesiredInput) -> Result<Changes, FirewallError> {
        self.driver.apply(desired).await
    }

    async fn in_place(&self, desired: &DesiredInput) -> Result<bool, FirewallError> {
        self.driver.in_place(desired).await
    }

    async fn cleanup(&self) -> Result<Changes, FirewallError> {
        self.driver.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(table: Table, ops: Vec<Op>) -> Transaction {
        Transaction { table, ops }
    }

    fn words(s: &str) -> Vec<String> {
        split_save_line(s)
    }

    #[tokio::test]
    async fn transactions_follow_iptables_rules_and_are_all_or_nothing() {
        let t = MemoryTables::new();
        // A jump to a missing chain is refused, and nothing of the transaction stays.
        let e = t
            .restore(&tx(
                Table::Filter,
                vec![
                    Op::Declare("X".into()),
                    Op::Append("FORWARD".into(), words("-j NOPE")),
                ],
            ))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("line 3 failed"), "{e}");
        assert!(t.dump(Table::Filter).chain("X").is_none());
        assert_eq!(t.writes(), 0);
        t.restore(&tx(
            Table::Filter,
            vec![
                Op::Declare("X".into()),
                Op::Append("X".into(), words("-s 1.1.1.1/32 -j ACCEPT")),
                Op::InsertFirst("FORWARD".into(), words("-j X")),
            ],
        ))
        .await
        .unwrap();
        assert_eq!(t.writes(), 1);
        // Non-empty, referenced and built-in chains cannot be deleted; a missing rule cannot be.
        for op in [
            Op::DeleteChain("X".into()),
            Op::DeleteChain("FORWARD".into()),
            Op::Delete("FORWARD".into(), words("-j ACCEPT")),
        ] {
            assert!(t.restore(&tx(Table::Filter, vec![op])).await.is_err());
        }
        assert!(t
            .restore(&tx(
                Table::Filter,
                vec![Op::Flush("X".into()), Op::DeleteChain("X".into())]
            ))
            .await
            .is_err());
        // Declaring an existing chain empties it.
        t.restore(&tx(Table::Filter, vec![Op::Declare("X".into())]))
            .await
            .unwrap();
        assert!(t.dump(Table::Filter).chain("X").unwrap().rules.is_empty());
        t.restore(&tx(
            Table::Filter,
            vec![
                Op::Delete("FORWARD".into(), words("-j X")),
                Op::DeleteChain("X".into()),
            ],
        ))
        .await
        .unwrap();
        assert!(t.dump(Table::Filter).chain("X").is_none());
    }
}
