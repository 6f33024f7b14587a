//! From (desired rules, one table as it is) to one `iptables-restore --noflush` transaction: pure
//! planning, so every decision the iptables driver makes is unit-tested on data.
//!
//! Ownership: everything inside a `CROSSDOCK-*` chain is crossdock's; elsewhere only rules carrying a
//! `crossdock:` comment are. Nothing else is ever touched, and no policy is ever set.
//!
//! The transaction, in order:
//! 1. crossdock's chains that must change are declared (`:CHAIN - [0:0]`, which with `--noflush`
//!    creates a chain or empties an existing one) and refilled as a whole; a missing `DOCKER-USER`
//!    is declared too (Docker adopts an existing one). Their order is moot: each holds one verdict.
//! 2. The rules kept at the head of a chain someone else owns (the jumps from `DOCKER-USER`,
//!    `POSTROUTING`, raw `PREROUTING`): when the head is not exactly them, every crossdock rule in
//!    that chain is deleted and they are inserted at position 1, in order.
//! 3. crossdock rules anywhere else are deleted (an older layout), then crossdock chains no longer
//!    wanted are emptied and deleted.
//!
//! Rules are deleted by specification, never by number, so a transaction planned on a stale read
//! fails as a whole (iptables-restore commits nothing) instead of deleting someone else's rule; the
//! driver then reads again and re-plans. The [`Changes`] count the difference, not the commands.

use crate::command::join_quoted;
use crate::firewall::Changes;
use crate::rules::{is_own_chain, is_tagged, Position, Rule, Table};
use crate::save::{jump_target, SavedTable};
use std::collections::{BTreeMap, BTreeSet};

/// One command of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `:CHAIN - [0:0]`: creates the chain, or empties it if it exists.
    Declare(String),
    /// `-A CHAIN args`.
    Append(String, Vec<String>),
    /// `-I CHAIN 1 args`.
    InsertFirst(String, Vec<String>),
    /// `-D CHAIN args`: the first rule equal to `args`.
    Delete(String, Vec<String>),
    /// `-F CHAIN`.
    Flush(String),
    /// `-X CHAIN`: an empty, unreferenced user chain.
    DeleteChain(String),
}

impl Op {
    /// The line iptables-restore reads.
    pub fn line(&self) -> String {
        match self {
            Op::Declare(c) => format!(":{c} - [0:0]"),
            Op::Append(c, args) => format!("-A {c} {}", join_quoted(args)),
            Op::InsertFirst(c, args) => format!("-I {c} 1 {}", join_quoted(args)),
            Op::Delete(c, args) => format!("-D {c} {}", join_quoted(args)),
            Op::Flush(c) => format!("-F {c}"),
            Op::DeleteChain(c) => format!("-X {c}"),
        }
    }
}

/// One table's changes, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub table: Table,
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The input of `iptables-restore --noflush`.
    pub fn render(&self) -> String {
        let mut out = format!("*{}\n", self.table);
        for op in &self.ops {
            out.push_str(&op.line());
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// A planned transaction and the difference it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tx: Transaction,
    pub changes: Changes,
}

impl Plan {
    fn new(table: Table) -> Self {
        Self {
            tx: Transaction {
                table,
                ops: Vec::new(),
            },
            changes: Changes::default(),
        }
    }

    fn table(&self) -> Table {
        self.tx.table
    }
}

fn rules_of<'a>(current: &'a SavedTable, chain: &str) -> Vec<&'a Vec<String>> {
    current
        .chain(chain)
        .map(|c| c.rules.iter().map(|r| &r.args).collect())
        .unwrap_or_default()
}

/// The transaction bringing `current` (one table) to the rules of `desired` that belong to it.
pub fn plan_apply(table: Table, desired: &[Rule], current: &SavedTable) -> Plan {
    let wanted: Vec<&Rule> = desired.iter().filter(|r| r.table == table).collect();
    // Our chains: those holding desired rules and those our head rules jump to.
    let mut own: BTreeMap<&str, Vec<&Vec<String>>> = BTreeMap::new();
    // Chains someone else owns, with the rules we keep at their head, in order.
    let mut heads: BTreeMap<&str, Vec<&Vec<String>>> = BTreeMap::new();
    for r in &wanted {
        match r.position {
            Position::Append => own.entry(&r.chain).or_default().push(&r.args),
            Position::Top => {
                heads.entry(&r.chain).or_default().push(&r.args);
                if let Some(t) = jump_target(&r.args).filter(|t| is_own_chain(t)) {
                    own.entry(t).or_default();
                }
            }
        }
    }
    let mut plan = Plan::new(table);
    for (chain, rules) in &own {
        plan_own_chain(&mut plan, chain, rules, current);
    }
    for (chain, head) in &heads {
        plan_head(&mut plan, chain, head, current);
    }
    let untouchable = |c: &str| is_own_chain(c) || heads.contains_key(c);
    delete_tagged_elsewhere(&mut plan, current, untouchable);
    let stale: Vec<&str> = current
        .chains
        .keys()
        .map(String::as_str)
        .filter(|c| is_own_chain(c) && !own.contains_key(c))
        .collect();
    remove_own_chains(&mut plan, current, &stale);
    plan
}

/// The transaction removing every crossdock rule and chain from `current`, and nothing else.
pub fn plan_cleanup(table: Table, current: &SavedTable) -> Plan {
    let mut plan = Plan::new(table);
    delete_tagged_elsewhere(&mut plan, current, is_own_chain);
    let own: Vec<&str> = current
        .chains
        .keys()
        .map(String::as_str)
        .filter(|c| is_own_chain(c))
        .collect();
    remove_own_chains(&mut plan, current, &own);
    plan
}

/// An own chain holds exactly `rules` (order is moot): rewritten as a whole when it does not.
fn plan_own_chain(plan: &mut Plan, chain: &str, rules: &[&Vec<String>], current: &SavedTable) {
    let table = plan.table();
    let existing = rules_of(current, chain);
    if current.chain(chain).is_none() {
        plan.changes.chain_created(table, chain);
    } else if same_multiset(&existing, rules) {
        return;
    }
    plan.tx.ops.push(Op::Declare(chain.to_string()));
    let mut missing: Vec<&Vec<String>> = rules.to_vec();
    for rule in &existing {
        match missing.iter().position(|m| m == rule) {
            Some(i) => {
                missing.remove(i);
            }
            None => plan.changes.rule_removed(table, chain, rule),
        }
    }
    for rule in missing {
        plan.changes.rule_added(table, chain, rule, false);
    }
    for rule in rules {
        plan.tx
            .ops
            .push(Op::Append(chain.to_string(), rule.to_vec()));
    }
}

fn same_multiset(a: &[&Vec<String>], b: &[&Vec<String>]) -> bool {
    let mut a: Vec<&Vec<String>> = a.to_vec();
    let mut b: Vec<&Vec<String>> = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// A chain someone else owns starts with exactly `head`, and holds no other crossdock rule.
fn plan_head(plan: &mut Plan, chain: &str, head: &[&Vec<String>], current: &SavedTable) {
    let table = plan.table();
    if current.chain(chain).is_none() && !table.is_builtin(chain) {
        plan.tx.ops.push(Op::Declare(chain.to_string()));
        plan.changes.chain_created(table, chain);
    }
    let existing = rules_of(current, chain);
    let k = head.len();
    let head_ok = existing.len() >= k && existing[..k].iter().zip(head).all(|(a, b)| a == b);
    let strays: Vec<&Vec<String>> = existing
        .iter()
        .enumerate()
        .filter(|(i, r)| is_tagged(r) && !(head_ok && *i < k))
        .map(|(_, r)| *r)
        .collect();
    if head_ok && strays.is_empty() {
        return;
    }
    if head_ok && !strays.iter().any(|s| head.contains(s)) {
        // Only strays below a correct head, none equal to a head rule: deleting by specification
        // removes each stray itself.
        for s in strays {
            delete(plan, chain, s);
        }
        return;
    }
    // The head is wrong (missing, pushed down by someone inserting above it, duplicated): every
    // crossdock rule of the chain goes, and the head is inserted afresh, in the same transaction.
    for r in existing.iter().filter(|r| is_tagged(r)) {
        delete(plan, chain, r);
    }
    for rule in head.iter().rev() {
        plan.tx
            .ops
            .push(Op::InsertFirst(chain.to_string(), rule.to_vec()));
    }
    for rule in head {
        plan.changes.rule_added(table, chain, rule, true);
    }
}

fn delete(plan: &mut Plan, chain: &str, rule: &[String]) {
    let table = plan.table();
    plan.tx
        .ops
        .push(Op::Delete(chain.to_string(), rule.to_vec()));
    plan.changes.rule_removed(table, chain, rule);
}

/// Deletes crossdock's rules from every chain `skip` does not exclude.
fn delete_tagged_elsewhere(plan: &mut Plan, current: &SavedTable, skip: impl Fn(&str) -> bool) {
    for (chain, c) in &current.chains {
        if skip(chain) {
            continue;
        }
        for rule in c.rules.iter().filter(|r| is_tagged(&r.args)) {
            delete(plan, chain, &rule.args);
        }
    }
}

/// Empties, then deletes, crossdock chains (all flushed first, so one may have jumped to another).
fn remove_own_chains(plan: &mut Plan, current: &SavedTable, chains: &[&str]) {
    let table = plan.table();
    let chains: BTreeSet<&str> = chains.iter().copied().collect();
    for chain in &chains {
        let rules = rules_of(current, chain);
        if !rules.is_empty() {
            plan.tx.ops.push(Op::Flush(chain.to_string()));
            for r in rules {
                plan.changes.rule_removed(table, chain, r);
            }
        }
    }
    for chain in chains {
        plan.tx.ops.push(Op::DeleteChain(chain.to_string()));
        plan.changes.chain_removed(table, chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{desired_rules, DesiredInput};
    use crate::save::Ruleset;

    fn input(subnet: &str) -> DesiredInput {
        DesiredInput {
            cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            local_subnet: subnet.parse().unwrap(),
            bridge: Some("docker0".into()),
            scrape: None,
            names: None,
        }
    }

    fn table(text: &str) -> SavedTable {
        Ruleset::parse(text).unwrap().table("filter").clone()
    }

    const JUMP: &str = "-A DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD";
    const ACCEPT: &str = "-A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT";

    #[test]
    fn an_empty_table_gets_its_chains_then_the_jump_in_one_transaction() {
        let p = plan_apply(
            Table::Filter,
            &desired_rules(&input("10.1.0.0/24")),
            &table("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"),
        );
        assert_eq!(
            p.tx.render(),
            format!(
                "*filter\n:CROSSDOCK-FORWARD - [0:0]\n{ACCEPT}\n:DOCKER-USER - [0:0]\n-I DOCKER-USER 1 -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD\nCOMMIT\n"
            )
        );
        assert_eq!((p.changes.chains_created, p.changes.rules_added), (2, 2));
    }

    #[test]
    fn a_table_in_place_plans_nothing() {
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n{JUMP}\n-A DOCKER-USER -j RETURN\n{ACCEPT}\nCOMMIT\n"
        ));
        let p = plan_apply(Table::Filter, &desired_rules(&input("10.1.0.0/24")), &now);
        assert!(p.tx.is_empty(), "{}", p.tx.render());
        assert!(p.changes.is_empty());
    }

    #[test]
    fn a_new_subnet_rewrites_the_own_chain_and_leaves_the_jump() {
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n{JUMP}\n{ACCEPT}\nCOMMIT\n"
        ));
        let p = plan_apply(Table::Filter, &desired_rules(&input("10.2.0.0/24")), &now);
        assert_eq!(p.tx.ops.len(), 2, "{}", p.tx.render());
        assert_eq!(p.tx.ops[0], Op::Declare("CROSSDOCK-FORWARD".into()));
        assert!(p.tx.ops[1].line().contains("-d 10.2.0.0/24"));
        assert_eq!((p.changes.rules_added, p.changes.rules_removed), (1, 1));
    }

    #[test]
    fn a_pushed_down_jump_is_deleted_and_inserted_on_top_atomically() {
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n-A DOCKER-USER -j RETURN\n{JUMP}\n{ACCEPT}\nCOMMIT\n"
        ));
        let p = plan_apply(Table::Filter, &desired_rules(&input("10.1.0.0/24")), &now);
        let lines: Vec<String> = p.tx.ops.iter().map(Op::line).collect();
        assert_eq!(
            lines,
            [
                "-D DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD",
                "-I DOCKER-USER 1 -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD",
            ]
        );
        assert_eq!((p.changes.rules_added, p.changes.rules_removed), (1, 1));
    }

    #[test]
    fn strays_below_a_correct_head_are_deleted_alone() {
        let stray = "-A DOCKER-USER -s 10.9.0.0/24 -m comment --comment crossdock:old -j ACCEPT";
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n{JUMP}\n{stray}\n{ACCEPT}\nCOMMIT\n"
        ));
        let p = plan_apply(Table::Filter, &desired_rules(&input("10.1.0.0/24")), &now);
        assert_eq!(p.tx.ops.len(), 1);
        assert_eq!(p.tx.ops[0].line(), stray.replacen("-A", "-D", 1));
    }

    #[test]
    fn stale_own_chains_are_emptied_after_their_jumps_go_then_deleted() {
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n:CROSSDOCK-OLD - [0:0]\n{JUMP}\n-A FORWARD -m comment --comment crossdock:old -j CROSSDOCK-OLD\n{ACCEPT}\n-A CROSSDOCK-OLD -j ACCEPT\nCOMMIT\n"
        ));
        let p = plan_apply(Table::Filter, &desired_rules(&input("10.1.0.0/24")), &now);
        let lines: Vec<String> = p.tx.ops.iter().map(Op::line).collect();
        assert_eq!(
            lines,
            [
                "-D FORWARD -m comment --comment crossdock:old -j CROSSDOCK-OLD",
                "-F CROSSDOCK-OLD",
                "-X CROSSDOCK-OLD",
            ]
        );
        assert_eq!((p.changes.rules_removed, p.changes.chains_removed), (2, 1));
    }

    #[test]
    fn cleanup_plans_every_tagged_rule_and_own_chain_and_nothing_else() {
        let now = table(&format!(
            "*filter\n:DOCKER-USER - [0:0]\n:CROSSDOCK-FORWARD - [0:0]\n{JUMP}\n-A DOCKER-USER -j RETURN\n{ACCEPT}\nCOMMIT\n"
        ));
        let p = plan_cleanup(Table::Filter, &now);
        let lines: Vec<String> = p.tx.ops.iter().map(Op::line).collect();
        assert_eq!(
            lines,
            [
                "-D DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD",
                "-F CROSSDOCK-FORWARD",
                "-X CROSSDOCK-FORWARD",
            ]
        );
        assert_eq!(p.changes.total(), 3);
        assert!(plan_cleanup(
            Table::Filter,
            &table("*filter\n-A DOCKER-USER -j RETURN\nCOMMIT\n")
        )
        .tx
        .is_empty());
    }

    #[test]
    fn arguments_with_spaces_are_quoted_for_restore() {
        let op = Op::Delete(
            "FORWARD".into(),
            vec![
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                "crossdock:a b".into(),
            ],
        );
        assert_eq!(
            op.line(),
            "-D FORWARD -m comment --comment \"crossdock:a b\""
        );
    }
}
