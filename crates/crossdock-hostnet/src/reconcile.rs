//! Applying the desired rules idempotently: read first, add what is missing, remove crossdock-tagged
//! rules that are not desired (an old subnet, an old bridge), keep the jumps at the top of the chains
//! Docker owns, and count every write. A second run over an unchanged host makes zero changes.
//!
//! Ownership: everything inside a `CROSSDOCK-*` chain is crossdock's; elsewhere only rules carrying a
//! `crossdock:` comment are. Nothing else is ever modified, and no policy is ever set.

use crate::firewall::{Firewall, FirewallError, TableDump};
use crate::rules::{is_own_chain, is_tagged, Position, Rule, Table};
use std::collections::{BTreeMap, BTreeSet};

/// What one reconcile or cleanup pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub chains_created: usize,
    pub chains_removed: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// One line per write, e.g. `+ -t nat -A CROSSDOCK-POSTROUTING ...`, for the log.
    pub log: Vec<String>,
}

impl Changes {
    /// Total number of writes.
    pub fn total(&self) -> usize {
        self.chains_created + self.chains_removed + self.rules_added + self.rules_removed
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    fn add(&mut self, table: Table, chain: &str, args: &[String], at_top: bool) {
        self.rules_added += 1;
        let verb = if at_top { "-I" } else { "-A" };
        self.log
            .push(format!("+ -t {table} {verb} {chain} {}", args.join(" ")));
    }

    fn remove(&mut self, table: Table, chain: &str, args: &[String]) {
        self.rules_removed += 1;
        self.log
            .push(format!("- -t {table} -D {chain} {}", args.join(" ")));
    }
}

fn jump_target(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|w| w[0] == "-j")
        .map(|w| w[1].as_str())
}

/// How many times a parent chain is re-read and fixed before giving up (someone else fighting us).
const MAX_PASSES: usize = 4;

/// Brings the kernel's rules to `desired` (see [`crate::desired_rules`]); returns what it changed.
pub async fn reconcile(desired: &[Rule], fw: &dyn Firewall) -> Result<Changes, FirewallError> {
    let mut changes = Changes::default();
    for table in Table::ALL {
        let wanted: Vec<&Rule> = desired.iter().filter(|r| r.table == table).collect();
        let dump = fw.list_table(table).await?;
        reconcile_table(table, &wanted, &dump, fw, &mut changes).await?;
    }
    Ok(changes)
}

async fn reconcile_table(
    table: Table,
    wanted: &[&Rule],
    dump: &TableDump,
    fw: &dyn Firewall,
    changes: &mut Changes,
) -> Result<(), FirewallError> {
    // Our chains: those holding desired rules and those our jumps lead to.
    let mut own: BTreeSet<&str> = BTreeSet::new();
    // Parent chains (someone else's) and the rules we keep at their head, in order.
    let mut tops: BTreeMap<&str, Vec<&Vec<String>>> = BTreeMap::new();
    for r in wanted {
        match r.position {
            Position::Append => {
                own.insert(&r.chain);
            }
            Position::Top => {
                tops.entry(&r.chain).or_default().push(&r.args);
                if let Some(t) = jump_target(&r.args).filter(|t| is_own_chain(t)) {
                    own.insert(t);
                }
            }
        }
    }

    // 1. Chains exist (ours, and a missing DOCKER-USER: Docker adopts an existing one).
    for chain in own.iter().chain(tops.keys()) {
        if dump.rules(chain).is_none()
            && !table.is_builtin(chain)
            && fw.ensure_chain(table, chain).await?
        {
            changes.chains_created += 1;
            changes.log.push(format!("+ -t {table} -N {chain}"));
        }
    }

    // 2. Content of our chains: exactly the desired rules (order is moot: one verdict per chain).
    for chain in &own {
        let existing = dump.rules(chain).cloned().unwrap_or_default();
        let mut missing: Vec<&Vec<String>> = wanted
            .iter()
            .filter(|r| r.position == Position::Append && r.chain == *chain)
            .map(|r| &r.args)
            .collect();
        for rule in &existing {
            if let Some(i) = missing.iter().position(|m| *m == rule) {
                missing.remove(i);
            } else {
                fw.delete_rule(table, chain, rule).await?;
                changes.remove(table, chain, rule);
            }
        }
        for rule in missing {
            fw.append_rule(table, chain, rule).await?;
            changes.add(table, chain, rule, false);
        }
    }

    // 3. Jumps at the head of parent chains; stray tagged rules there removed.
    for (chain, top) in &tops {
        let first = dump.rules(chain).cloned().unwrap_or_default();
        keep_at_top(table, chain, top, first, fw, changes).await?;
    }

    // 4. Tagged rules anywhere else (an older layout) and our chains that are no longer wanted.
    for (chain, rules) in &dump.chains {
        if is_own_chain(chain) || tops.contains_key(chain.as_str()) {
            continue;
        }
        for rule in rules.iter().filter(|r| is_tagged(r)) {
            fw.delete_rule(table, chain, rule).await?;
            changes.remove(table, chain, rule);
        }
    }
    for chain in dump.chains.keys().filter(|c| is_own_chain(c)) {
        if !own.contains(chain.as_str()) {
            remove_own_chain(table, chain, fw, changes).await?;
        }
    }
    Ok(())
}

async fn keep_at_top(
    table: Table,
    chain: &str,
    top: &[&Vec<String>],
    mut current: Vec<Vec<String>>,
    fw: &dyn Firewall,
    changes: &mut Changes,
) -> Result<(), FirewallError> {
    let k = top.len();
    for pass in 0..MAX_PASSES {
        if pass > 0 {
            current = fw.list_chain(table, chain).await?.unwrap_or_default();
        }
        let prefix_ok = current.len() >= k && current[..k].iter().zip(top).all(|(a, b)| a == *b);
        let strays: Vec<&Vec<String>> = current
            .iter()
            .enumerate()
            .filter(|(i, r)| is_tagged(r) && !(prefix_ok && *i < k))
            .map(|(_, r)| r)
            .collect();
        if prefix_ok && strays.is_empty() {
            return Ok(());
        }
        if prefix_ok {
            // Only strays below a correct head. Deleting by spec removes the first match, which for a
            // duplicate of a head rule is the head itself: the next pass then puts it back on top.
            for s in strays {
                fw.delete_rule(table, chain, s).await?;
                changes.remove(table, chain, s);
            }
            continue;
        }
        // The head is wrong (missing, or pushed down by someone inserting above it). Misplaced copies
        // of the head rules go first, so the spec-based delete cannot hit the fresh insert; then the
        // head is inserted; then other stale tagged rules go (make before break for those).
        let (copies, others): (Vec<&Vec<String>>, Vec<&Vec<String>>) =
            strays.into_iter().partition(|s| top.contains(s));
        for s in copies {
            fw.delete_rule(table, chain, s).await?;
            changes.remove(table, chain, s);
        }
        for rule in top.iter().rev() {
            fw.insert_rule(table, chain, 1, rule).await?;
            changes.add(table, chain, rule, true);
        }
        for s in others {
            fw.delete_rule(table, chain, s).await?;
            changes.remove(table, chain, s);
        }
    }
    Err(FirewallError::NotConverging(format!(
        "the crossdock jump at the top of {table} {chain} keeps being displaced"
    )))
}

async fn remove_own_chain(
    table: Table,
    chain: &str,
    fw: &dyn Firewall,
    changes: &mut Changes,
) -> Result<(), FirewallError> {
    if let Some(rules) = fw.list_chain(table, chain).await? {
        if !rules.is_empty() {
            fw.flush_chain(table, chain).await?;
            for r in &rules {
                changes.remove(table, chain, r);
            }
        }
        fw.delete_chain(table, chain).await?;
        changes.chains_removed += 1;
        changes.log.push(format!("- -t {table} -X {chain}"));
    }
    Ok(())
}

/// Removes every crossdock rule (tagged rules in any chain, everything in `CROSSDOCK-*` chains) and
/// every crossdock chain, and nothing else.
pub async fn cleanup(fw: &dyn Firewall) -> Result<Changes, FirewallError> {
    let mut changes = Changes::default();
    for table in Table::ALL {
        let dump = fw.list_table(table).await?;
        for (chain, rules) in &dump.chains {
            if is_own_chain(chain) {
                continue;
            }
            for rule in rules.iter().filter(|r| is_tagged(r)) {
                fw.delete_rule(table, chain, rule).await?;
                changes.remove(table, chain, rule);
            }
        }
        for chain in dump.chains.keys().filter(|c| is_own_chain(c)) {
            remove_own_chain(table, chain, fw, &mut changes).await?;
        }
    }
    Ok(changes)
}

/// Whether the kernel holds exactly what `desired` asks for (used by status checks and tests).
pub async fn in_place(desired: &[Rule], fw: &dyn Firewall) -> Result<bool, FirewallError> {
    for table in Table::ALL {
        let dump = fw.list_table(table).await?;
        for r in desired.iter().filter(|r| r.table == table) {
            let Some(rules) = dump.rules(&r.chain) else {
                return Ok(false);
            };
            let ok = match r.position {
                Position::Top => rules.first() == Some(&r.args),
                Position::Append => rules.contains(&r.args),
            };
            if !ok {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::MemoryFirewall;
    use crate::rules::{desired_rules, split_save_line, DesiredInput, DOCKER_USER};

    fn input(subnet: &str) -> DesiredInput {
        DesiredInput {
            cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            local_subnet: subnet.parse().unwrap(),
            bridge: "docker0".into(),
            external_interface: "eth0".into(),
        }
    }

    /// A firewall looking like Docker 28 after start with one container.
    fn docker_like() -> MemoryFirewall {
        let fw = MemoryFirewall::new();
        fw.seed(Table::Filter, DOCKER_USER, &[]);
        fw.seed(Table::Filter, "DOCKER-FORWARD", &[]);
        fw.seed(
            Table::Filter,
            "FORWARD",
            &["-j DOCKER-USER", "-j DOCKER-FORWARD"],
        );
        fw.seed(
            Table::Nat,
            "POSTROUTING",
            &["-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE"],
        );
        fw.seed(
            Table::Raw,
            "PREROUTING",
            &["-d 10.1.0.2/32 ! -i docker0 -j DROP"],
        );
        fw
    }

    fn foreign(fw: &MemoryFirewall) -> Vec<(Table, String, Vec<String>)> {
        let mut out = Vec::new();
        for t in Table::ALL {
            for (c, rules) in fw.dump(t).chains {
                for r in rules
                    .into_iter()
                    .filter(|r| !is_tagged(r) && !is_own_chain(&c))
                {
                    out.push((t, c.clone(), r));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn first_run_builds_everything_second_run_changes_nothing() {
        let fw = docker_like();
        let before = foreign(&fw);
        let want = desired_rules(&input("10.1.0.0/24"));
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!(c.chains_created, 3);
        assert_eq!(c.rules_added, 6);
        assert_eq!(c.rules_removed, 0);
        assert_eq!(c.total(), c.log.len());
        assert!(in_place(&want, &fw).await.unwrap());
        let writes = fw.writes();
        let again = reconcile(&want, &fw).await.unwrap();
        assert_eq!(again.total(), 0, "{:?}", again.log);
        assert_eq!(fw.writes(), writes);
        // Docker's rules untouched, policy untouched.
        assert_eq!(foreign(&fw), before);
        assert_eq!(fw.dump(Table::Filter).policies["FORWARD"], "DROP");
        // Jumps at the top, Docker's raw DROP still after ours.
        let raw = fw.dump(Table::Raw);
        assert_eq!(
            raw.chains["PREROUTING"][1],
            split_save_line("-d 10.1.0.2/32 ! -i docker0 -j DROP")
        );
        assert!(is_tagged(&raw.chains["PREROUTING"][0]));
    }

    #[tokio::test]
    async fn flushed_chains_come_back() {
        let fw = docker_like();
        let want = desired_rules(&input("10.1.0.0/24"));
        reconcile(&want, &fw).await.unwrap();
        fw.external_flush(Table::Filter, "CROSSDOCK-FORWARD");
        fw.external_flush(Table::Filter, DOCKER_USER);
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!(c.rules_added, 2, "{:?}", c.log);
        assert_eq!(c.rules_removed, 0);
        assert!(in_place(&want, &fw).await.unwrap());
    }

    #[tokio::test]
    async fn missing_docker_user_is_created_for_docker_to_adopt() {
        let fw = MemoryFirewall::new();
        let want = desired_rules(&input("10.1.0.0/24"));
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!(c.chains_created, 4);
        assert!(fw.dump(Table::Filter).chains.contains_key(DOCKER_USER));
    }

    #[tokio::test]
    async fn subnet_change_replaces_old_rules() {
        let fw = docker_like();
        reconcile(&desired_rules(&input("10.1.0.0/24")), &fw)
            .await
            .unwrap();
        let want = desired_rules(&input("10.2.0.0/24"));
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!(c.rules_removed, 3, "{:?}", c.log);
        assert_eq!(c.rules_added, 3);
        assert!(in_place(&want, &fw).await.unwrap());
        for t in Table::ALL {
            let text = format!("{:?}", fw.dump(t).chains);
            let own: Vec<_> = fw
                .dump(t)
                .chains
                .into_iter()
                .filter(|(c, _)| is_own_chain(c))
                .collect();
            assert!(!format!("{own:?}").contains("10.1.0.0/24"), "{text}");
        }
        assert_eq!(reconcile(&want, &fw).await.unwrap().total(), 0);
    }

    #[tokio::test]
    async fn jump_pushed_down_by_docker_goes_back_to_the_top_once() {
        let fw = docker_like();
        let want = desired_rules(&input("10.1.0.0/24"));
        reconcile(&want, &fw).await.unwrap();
        // Docker restarts and inserts its MASQUERADE above our jump.
        fw.insert_rule(
            Table::Nat,
            "POSTROUTING",
            1,
            &split_save_line("-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE"),
        )
        .await
        .unwrap();
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!(c.rules_added, 1, "{:?}", c.log);
        assert_eq!(c.rules_removed, 1);
        let post = &fw.dump(Table::Nat).chains["POSTROUTING"];
        assert!(is_tagged(&post[0]));
        assert_eq!(post.iter().filter(|r| is_tagged(r)).count(), 1);
        assert_eq!(
            post.len(),
            3,
            "Docker's two MASQUERADE copies stay: {post:?}"
        );
    }

    #[tokio::test]
    async fn duplicate_jumps_and_strays_are_removed() {
        let fw = docker_like();
        let want = desired_rules(&input("10.1.0.0/24"));
        reconcile(&want, &fw).await.unwrap();
        let jump = split_save_line("-m comment --comment crossdock:jump -j CROSSDOCK-FORWARD");
        fw.append_rule(Table::Filter, DOCKER_USER, &jump)
            .await
            .unwrap();
        let stray = split_save_line("-s 10.9.0.0/24 -m comment --comment crossdock:old -j ACCEPT");
        fw.append_rule(Table::Filter, "FORWARD", &stray)
            .await
            .unwrap();
        reconcile(&want, &fw).await.unwrap();
        let du = &fw.dump(Table::Filter).chains[DOCKER_USER];
        assert_eq!(du, &vec![jump]);
        assert!(!fw.dump(Table::Filter).chains["FORWARD"].contains(&stray));
        assert_eq!(reconcile(&want, &fw).await.unwrap().total(), 0);
    }

    #[tokio::test]
    async fn foreign_rules_in_own_chain_are_removed() {
        let fw = docker_like();
        let want = desired_rules(&input("10.1.0.0/24"));
        reconcile(&want, &fw).await.unwrap();
        fw.append_rule(
            Table::Filter,
            "CROSSDOCK-FORWARD",
            &split_save_line("-j ACCEPT"),
        )
        .await
        .unwrap();
        let c = reconcile(&want, &fw).await.unwrap();
        assert_eq!((c.rules_removed, c.rules_added), (1, 0));
    }

    #[tokio::test]
    async fn cleanup_removes_ours_and_nothing_else() {
        let fw = docker_like();
        let before = foreign(&fw);
        reconcile(&desired_rules(&input("10.1.0.0/24")), &fw)
            .await
            .unwrap();
        let c = cleanup(&fw).await.unwrap();
        assert_eq!(c.chains_removed, 3);
        assert_eq!(c.rules_removed, 6);
        assert_eq!(foreign(&fw), before);
        for t in Table::ALL {
            let d = fw.dump(t);
            assert!(d.chains.keys().all(|c| !is_own_chain(c)));
            assert!(d.chains.values().flatten().all(|r| !is_tagged(r)));
        }
        // DOCKER-USER is Docker's: it stays.
        assert!(fw.dump(Table::Filter).chains.contains_key(DOCKER_USER));
        assert_eq!(cleanup(&fw).await.unwrap().total(), 0);
    }

    #[tokio::test]
    async fn write_failures_surface_as_errors() {
        let fw = docker_like();
        fw.fail_writes(Some(FirewallError::Lock {
            command: "iptables -A".into(),
            wait_secs: 5,
            stderr: "Another app is currently holding the xtables lock".into(),
        }));
        let e = reconcile(&desired_rules(&input("10.1.0.0/24")), &fw)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "iptables_lock");
        assert!(e.to_string().contains("lock_wait_secs"));
    }

    #[tokio::test]
    async fn a_fighting_program_is_reported() {
        /// Puts a foreign rule on top of DOCKER-USER after every insert.
        struct Fighter(MemoryFirewall);
        #[async_trait::async_trait]
        impl Firewall for Fighter {
            async fn list_table(&self, t: Table) -> Result<TableDump, FirewallError> {
                self.0.list_table(t).await
            }
            async fn ensure_chain(&self, t: Table, c: &str) -> Result<bool, FirewallError> {
                self.0.ensure_chain(t, c).await
            }
            async fn insert_rule(
                &self,
                t: Table,
                c: &str,
                p: u32,
                a: &[String],
            ) -> Result<(), FirewallError> {
                self.0.insert_rule(t, c, p, a).await?;
                self.0
                    .insert_rule(t, c, 1, &split_save_line("-j RETURN"))
                    .await
            }
            async fn append_rule(
                &self,
                t: Table,
                c: &str,
                a: &[String],
            ) -> Result<(), FirewallError> {
                self.0.append_rule(t, c, a).await
            }
            async fn delete_rule(
                &self,
                t: Table,
                c: &str,
                a: &[String],
            ) -> Result<(), FirewallError> {
                self.0.delete_rule(t, c, a).await
            }
            async fn exists(&self, t: Table, c: &str, a: &[String]) -> Result<bool, FirewallError> {
                self.0.exists(t, c, a).await
            }
            async fn flush_chain(&self, t: Table, c: &str) -> Result<(), FirewallError> {
                self.0.flush_chain(t, c).await
            }
            async fn delete_chain(&self, t: Table, c: &str) -> Result<(), FirewallError> {
                self.0.delete_chain(t, c).await
            }
        }
        let fw = Fighter(docker_like());
        let e = reconcile(&desired_rules(&input("10.1.0.0/24")), &fw)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "iptables_not_converging");
    }
}
