//! The iptables executor: a small trait ([`Firewall`]) with the real implementation ([`Iptables`])
//! and an in-memory one ([`MemoryFirewall`]) that behaves like iptables for the unit tests of the
//! reconcile logic.
//!
//! Why the real executor runs the `iptables` program itself rather than through the `iptables` crate:
//! that crate appends a bare `--wait` to every command, and iptables honours the last `-w`, so the
//! lock wait would be unbounded whatever `-w N` we passed (seen here: `iptables-legacy -w 2 -S --wait`
//! waited as long as the lock was held, `-w 2` alone gave up after 2 s). A daemon that may hang forever
//! behind someone else's xtables lock cannot report its health, so every call here carries `-w N`
//! (`[firewall] lock_wait_secs`) and is also killed if it outlives that bound by 10 s. The commands
//! run as `tokio::process` children, so no async worker thread ever blocks on them.
//!
//! The program is `iptables` from `PATH` (the same one Docker uses, legacy or nft); tools that act on
//! another network namespace (the lab, the root tests) prefix it, e.g.
//! `["nsenter", "--net=/run/netns/x", "iptables"]`.

use crate::rules::{split_save_line, Table};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Why an iptables operation failed.
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
            FirewallError::Command { .. } => "iptables_command",
            FirewallError::NotConverging(_) => "iptables_not_converging",
        }
    }
}

/// One table as `iptables -t <table> -S` prints it: built-in chain policies and every chain's rules
/// (each rule as the arguments after `-A <chain>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDump {
    pub policies: BTreeMap<String, String>,
    pub chains: BTreeMap<String, Vec<Vec<String>>>,
}

impl TableDump {
    /// Parses `iptables -S` output.
    pub fn parse(text: &str) -> Self {
        let mut dump = TableDump::default();
        for line in text.lines() {
            let args = split_save_line(line);
            match args.first().map(String::as_str) {
                Some("-P") if args.len() >= 3 => {
                    dump.policies.insert(args[1].clone(), args[2].clone());
                    dump.chains.entry(args[1].clone()).or_default();
                }
                Some("-N") if args.len() >= 2 => {
                    dump.chains.entry(args[1].clone()).or_default();
                }
                Some("-A") if args.len() >= 2 => {
                    dump.chains
                        .entry(args[1].clone())
                        .or_default()
                        .push(args[2..].to_vec());
                }
                _ => {}
            }
        }
        dump
    }

    /// The rules of `chain`, or `None` if the chain does not exist.
    pub fn rules(&self, chain: &str) -> Option<&Vec<Vec<String>>> {
        self.chains.get(chain)
    }
}

/// The operations the reconciler needs from iptables. Rules are given as the arguments that follow
/// `-A <chain>` in `iptables -S` output.
#[async_trait]
pub trait Firewall: Send + Sync {
    /// Every chain and rule of a table.
    async fn list_table(&self, table: Table) -> Result<TableDump, FirewallError>;
    /// One chain's rules, `None` if it does not exist.
    async fn list_chain(
        &self,
        table: Table,
        chain: &str,
    ) -> Result<Option<Vec<Vec<String>>>, FirewallError> {
        Ok(self.list_table(table).await?.chains.remove(chain))
    }
    /// Creates a chain unless it exists; true if it was created.
    async fn ensure_chain(&self, table: Table, chain: &str) -> Result<bool, FirewallError>;
    /// Inserts a rule at a 1-based position.
    async fn insert_rule(
        &self,
        table: Table,
        chain: &str,
        position: u32,
        args: &[String],
    ) -> Result<(), FirewallError>;
    /// Appends a rule.
    async fn append_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError>;
    /// Deletes the first rule matching `args`.
    async fn delete_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError>;
    /// Whether a rule matching `args` exists in `chain` (false if the chain does not).
    async fn exists(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, FirewallError>;
    /// Removes every rule of a chain.
    async fn flush_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError>;
    /// Deletes an empty, unreferenced user chain.
    async fn delete_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError>;
}

/// The real executor: runs `iptables` with a bounded lock wait.
#[derive(Debug, Clone)]
pub struct Iptables {
    program: Vec<String>,
    lock_wait_secs: u64,
}

/// Extra time a command may take beyond its lock wait before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(10);

impl Iptables {
    /// `iptables` from `PATH`, waiting at most `lock_wait_secs` for the xtables lock.
    pub fn new(lock_wait_secs: u64) -> Self {
        Self::with_program(vec!["iptables".into()], lock_wait_secs)
    }

    /// A custom command line in front of the iptables arguments (another binary, or an `nsenter`
    /// prefix to act on another network namespace).
    pub fn with_program(program: Vec<String>, lock_wait_secs: u64) -> Self {
        assert!(
            !program.is_empty(),
            "the iptables program must not be empty"
        );
        Self {
            program,
            lock_wait_secs: lock_wait_secs.max(1),
        }
    }

    /// Runs `iptables -w N -t <table> <args>`; Ok(stdout) on exit 0, Err otherwise.
    async fn run(&self, table: Table, args: &[&str]) -> Result<Output, FirewallError> {
        let wait = self.lock_wait_secs.to_string();
        let mut full: Vec<&str> = vec!["-w", &wait, "-t", table.as_str()];
        full.extend_from_slice(args);
        let shown = format!("iptables {}", shell_words(&full));
        let mut cmd = tokio::process::Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .args(&full)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let limit = Duration::from_secs(self.lock_wait_secs) + KILL_MARGIN;
        let out = match tokio::time::timeout(limit, cmd.output()).await {
            Err(_) => {
                return Err(FirewallError::Timeout {
                    command: shown,
                    secs: limit.as_secs(),
                })
            }
            Ok(Err(e)) => {
                return Err(FirewallError::MissingBinary {
                    program: self.program[0].clone(),
                    message: e.to_string(),
                })
            }
            Ok(Ok(out)) => out,
        };
        Ok(Output {
            command: shown,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            lock_wait_secs: self.lock_wait_secs,
        })
    }

    async fn run_ok(&self, table: Table, args: &[&str]) -> Result<String, FirewallError> {
        let out = self.run(table, args).await?;
        out.ok()
    }
}

#[derive(Debug)]
struct Output {
    command: String,
    code: i32,
    stdout: String,
    stderr: String,
    lock_wait_secs: u64,
}

impl Output {
    fn error(self) -> FirewallError {
        // iptables exits 4 (RESOURCE_PROBLEM) when it gives up on the xtables lock.
        if self.code == 4 && self.stderr.contains("lock") {
            FirewallError::Lock {
                command: self.command,
                wait_secs: self.lock_wait_secs,
                stderr: self.stderr,
            }
        } else {
            FirewallError::Command {
                command: self.command,
                code: self.code,
                stderr: self.stderr,
            }
        }
    }

    fn ok(self) -> Result<String, FirewallError> {
        if self.code == 0 {
            Ok(self.stdout)
        } else {
            Err(self.error())
        }
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("\"{a}\"")
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn with<'a>(head: &[&'a str], rest: &'a [String]) -> Vec<&'a str> {
    let mut v = head.to_vec();
    v.extend(rest.iter().map(String::as_str));
    v
}

#[async_trait]
impl Firewall for Iptables {
    async fn list_table(&self, table: Table) -> Result<TableDump, FirewallError> {
        Ok(TableDump::parse(&self.run_ok(table, &["-S"]).await?))
    }

    async fn ensure_chain(&self, table: Table, chain: &str) -> Result<bool, FirewallError> {
        let out = self.run(table, &["-N", chain]).await?;
        if out.code == 0 {
            return Ok(true);
        }
        if out.stderr.contains("exists") {
            return Ok(false);
        }
        Err(out.error())
    }

    async fn insert_rule(
        &self,
        table: Table,
        chain: &str,
        position: u32,
        args: &[String],
    ) -> Result<(), FirewallError> {
        let pos = position.to_string();
        self.run_ok(table, &with(&["-I", chain, &pos], args))
            .await
            .map(drop)
    }

    async fn append_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError> {
        self.run_ok(table, &with(&["-A", chain], args))
            .await
            .map(drop)
    }

    async fn delete_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError> {
        self.run_ok(table, &with(&["-D", chain], args))
            .await
            .map(drop)
    }

    async fn exists(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, FirewallError> {
        let out = self.run(table, &with(&["-C", chain], args)).await?;
        match out.code {
            0 => Ok(true),
            // 1: no such rule (or, with iptables-nft, no such chain).
            1 => Ok(false),
            _ => Err(out.error()),
        }
    }

    async fn flush_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError> {
        self.run_ok(table, &["-F", chain]).await.map(drop)
    }

    async fn delete_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError> {
        self.run_ok(table, &["-X", chain]).await.map(drop)
    }
}

/// An in-memory firewall with iptables' semantics for the operations above (positions, first-match
/// delete, chain existence, no deleting referenced or non-empty chains, jumps only to existing
/// chains). For unit tests of the reconcile logic without root.
#[derive(Debug)]
pub struct MemoryFirewall {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    tables: BTreeMap<Table, TableDump>,
    writes: usize,
    fail_writes: Option<FirewallError>,
}

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

impl Default for MemoryFirewall {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFirewall {
    /// Empty tables with their built-in chains, policies ACCEPT except FORWARD DROP (Docker's).
    pub fn new() -> Self {
        let mut tables = BTreeMap::new();
        for t in Table::ALL {
            let mut dump = TableDump::default();
            let builtins: &[&str] = match t {
                Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
                Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
                Table::Raw => &["PREROUTING", "OUTPUT"],
            };
            for c in builtins {
                let policy = if t == Table::Filter && *c == "FORWARD" {
                    "DROP"
                } else {
                    "ACCEPT"
                };
                dump.policies.insert(c.to_string(), policy.to_string());
                dump.chains.insert(c.to_string(), Vec::new());
            }
            tables.insert(t, dump);
        }
        Self {
            state: Mutex::new(MemoryState {
                tables,
                writes: 0,
                fail_writes: None,
            }),
        }
    }

    /// Adds a chain and rules the way a third party (Docker) would, without counting writes.
    /// Each rule is a save-format string without `-A <chain>`.
    pub fn seed(&self, table: Table, chain: &str, rules: &[&str]) {
        let mut st = self.state.lock().unwrap();
        let dump = st.tables.get_mut(&table).unwrap();
        let c = dump.chains.entry(chain.to_string()).or_default();
        for r in rules {
            c.push(split_save_line(r));
        }
    }

    /// A snapshot of a table.
    pub fn dump(&self, table: Table) -> TableDump {
        self.state.lock().unwrap().tables[&table].clone()
    }

    /// Number of write operations performed so far.
    pub fn writes(&self) -> usize {
        self.state.lock().unwrap().writes
    }

    /// Makes every later write fail with `err` (None: writes work again).
    pub fn fail_writes(&self, err: Option<FirewallError>) {
        self.state.lock().unwrap().fail_writes = err;
    }

    /// Simulates `iptables -F <chain>` by someone else.
    pub fn external_flush(&self, table: Table, chain: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(c) = st.tables.get_mut(&table).unwrap().chains.get_mut(chain) {
            c.clear();
        }
    }

    fn write<T>(
        &self,
        table: Table,
        what: &str,
        f: impl FnOnce(&mut TableDump) -> Result<T, String>,
    ) -> Result<T, FirewallError> {
        let mut st = self.state.lock().unwrap();
        if let Some(e) = &st.fail_writes {
            return Err(e.clone());
        }
        st.writes += 1;
        let dump = st.tables.get_mut(&table).unwrap();
        f(dump).map_err(|stderr| FirewallError::Command {
            command: format!("iptables -t {table} {what}"),
            code: 1,
            stderr,
        })
    }
}

fn check_target(dump: &TableDump, args: &[String]) -> Result<(), String> {
    if let Some(i) = args.iter().position(|a| a == "-j") {
        let target = args.get(i + 1).ok_or("-j without a target")?;
        if !STANDARD_TARGETS.contains(&target.as_str()) && !dump.chains.contains_key(target) {
            return Err(format!("Couldn't load target `{target}'"));
        }
    }
    Ok(())
}

#[async_trait]
impl Firewall for MemoryFirewall {
    async fn list_table(&self, table: Table) -> Result<TableDump, FirewallError> {
        Ok(self.dump(table))
    }

    async fn ensure_chain(&self, table: Table, chain: &str) -> Result<bool, FirewallError> {
        if self.dump(table).chains.contains_key(chain) {
            return Ok(false);
        }
        self.write(table, &format!("-N {chain}"), |d| {
            d.chains.insert(chain.to_string(), Vec::new());
            Ok(true)
        })
    }

    async fn insert_rule(
        &self,
        table: Table,
        chain: &str,
        position: u32,
        args: &[String],
    ) -> Result<(), FirewallError> {
        self.write(table, &format!("-I {chain} {position}"), |d| {
            check_target(d, args)?;
            let c = d
                .chains
                .get_mut(chain)
                .ok_or("No chain/target/match by that name.")?;
            let idx = position as usize;
            if idx == 0 || idx > c.len() + 1 {
                return Err("Index of insertion too big.".into());
            }
            c.insert(idx - 1, args.to_vec());
            Ok(())
        })
    }

    async fn append_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError> {
        self.write(table, &format!("-A {chain}"), |d| {
            check_target(d, args)?;
            let c = d
                .chains
                .get_mut(chain)
                .ok_or("No chain/target/match by that name.")?;
            c.push(args.to_vec());
            Ok(())
        })
    }

    async fn delete_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(), FirewallError> {
        self.write(table, &format!("-D {chain}"), |d| {
            let c = d
                .chains
                .get_mut(chain)
                .ok_or("No chain/target/match by that name.")?;
            let i = c
                .iter()
                .position(|r| r == args)
                .ok_or("Bad rule (does a matching rule exist in that chain?).")?;
            c.remove(i);
            Ok(())
        })
    }

    async fn exists(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, FirewallError> {
        Ok(self
            .dump(table)
            .chains
            .get(chain)
            .is_some_and(|c| c.iter().any(|r| r == args)))
    }

    async fn flush_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError> {
        self.write(table, &format!("-F {chain}"), |d| {
            d.chains
                .get_mut(chain)
                .ok_or("No chain/target/match by that name.")?
                .clear();
            Ok(())
        })
    }

    async fn delete_chain(&self, table: Table, chain: &str) -> Result<(), FirewallError> {
        self.write(table, &format!("-X {chain}"), |d| {
            if table.is_builtin(chain) {
                return Err("Cannot delete built-in chain".into());
            }
            let c = d
                .chains
                .get(chain)
                .ok_or("No chain/target/match by that name.")?;
            if !c.is_empty() {
                return Err("Directory not empty.".into());
            }
            let referenced = d
                .chains
                .values()
                .flatten()
                .any(|r| r.windows(2).any(|w| w[0] == "-j" && w[1] == chain));
            if referenced {
                return Err("Too many links.".into());
            }
            d.chains.remove(chain);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_save_output() {
        let text = r#"-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER-USER
-N CROSSDOCK-FORWARD
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -m comment --comment "crossdock:jump" -j CROSSDOCK-FORWARD
-A DOCKER-USER -j RETURN
"#;
        let d = TableDump::parse(text);
        assert_eq!(d.policies["FORWARD"], "DROP");
        assert_eq!(d.rules("CROSSDOCK-FORWARD"), Some(&vec![]));
        assert_eq!(d.rules("DOCKER-USER").unwrap().len(), 2);
        assert_eq!(
            d.rules("DOCKER-USER").unwrap()[0],
            [
                "-m",
                "comment",
                "--comment",
                "crossdock:jump",
                "-j",
                "CROSSDOCK-FORWARD"
            ]
        );
        assert!(d.rules("NOPE").is_none());
    }

    #[tokio::test]
    async fn memory_firewall_behaves_like_iptables() {
        let fw = MemoryFirewall::new();
        let rule = |s: &str| split_save_line(s);
        // Jump to a missing chain is refused.
        assert!(fw
            .append_rule(Table::Filter, "FORWARD", &rule("-j NOPE"))
            .await
            .is_err());
        assert!(fw.ensure_chain(Table::Filter, "X").await.unwrap());
        assert!(!fw.ensure_chain(Table::Filter, "X").await.unwrap());
        fw.append_rule(Table::Filter, "FORWARD", &rule("-j X"))
            .await
            .unwrap();
        fw.append_rule(Table::Filter, "X", &rule("-s 1.1.1.1/32 -j ACCEPT"))
            .await
            .unwrap();
        // Non-empty and referenced chains cannot be deleted.
        assert!(fw.delete_chain(Table::Filter, "X").await.is_err());
        fw.flush_chain(Table::Filter, "X").await.unwrap();
        assert!(fw.delete_chain(Table::Filter, "X").await.is_err());
        fw.delete_rule(Table::Filter, "FORWARD", &rule("-j X"))
            .await
            .unwrap();
        fw.delete_chain(Table::Filter, "X").await.unwrap();
        assert!(fw
            .insert_rule(Table::Filter, "FORWARD", 2, &rule("-j ACCEPT"))
            .await
            .is_err());
        assert!(fw
            .delete_rule(Table::Filter, "FORWARD", &rule("-j ACCEPT"))
            .await
            .is_err());
    }
}
