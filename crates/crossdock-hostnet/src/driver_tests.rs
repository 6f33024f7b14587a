//! The iptables driver end to end over in-memory tables: what the agent sees through the
//! [`Firewall`] trait (the kernel-backed runs are in `tests/root_iptables.rs`).

use crate::firewall::{Firewall, FirewallError};
use crate::iptables::{Iptables, Tables};
use crate::memory::{MemoryFirewall, MemoryTables};
use crate::plan::Transaction;
use crate::rules::{is_own_chain, is_tagged, DesiredInput, ScrapeGuard, Table, DOCKER_USER};
use crate::save::{split_save_line, SavedTable};
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn input(subnet: &str) -> DesiredInput {
    DesiredInput {
        cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        local_subnet: subnet.parse().unwrap(),
        bridge: Some("docker0".into()),
        scrape: None,
        names: None,
    }
}

/// Docker 28 after start with one container.
fn seed_docker(t: &MemoryTables) {
    t.seed(Table::Filter, DOCKER_USER, &[]);
    t.seed(Table::Filter, "DOCKER-FORWARD", &[]);
    t.seed(
        Table::Filter,
        "FORWARD",
        &["-j DOCKER-USER", "-j DOCKER-FORWARD"],
    );
    t.seed(
        Table::Nat,
        "POSTROUTING",
        &["-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE"],
    );
    t.seed(
        Table::Raw,
        "PREROUTING",
        &["-d 10.1.0.2/32 ! -i docker0 -j DROP"],
    );
}

fn docker_like() -> MemoryFirewall {
    let fw = MemoryFirewall::new();
    seed_docker(fw.tables());
    fw
}

fn rules(t: &SavedTable, chain: &str) -> Vec<Vec<String>> {
    t.chain(chain)
        .map(|c| c.rules.iter().map(|r| r.args.clone()).collect())
        .unwrap_or_default()
}

/// Everything that is not crossdock's.
fn foreign(fw: &MemoryFirewall) -> Vec<(Table, String, Vec<String>)> {
    let mut out = Vec::new();
    for t in Table::ALL {
        for (c, chain) in fw.dump(t).chains {
            for r in chain.rules {
                if !is_tagged(&r.args) && !is_own_chain(&c) {
                    out.push((t, c.clone(), r.args));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn first_apply_builds_everything_second_changes_nothing() {
    let fw = docker_like();
    let before = foreign(&fw);
    let want = input("10.1.0.0/24");
    let c = fw.apply(&want).await.unwrap();
    assert_eq!(c.chains_created, 3);
    assert_eq!(c.rules_added, 6);
    assert_eq!(c.rules_removed, 0);
    assert_eq!(c.total(), c.log.len());
    assert_eq!(fw.writes(), 3, "one transaction per table");
    assert!(fw.in_place(&want).await.unwrap());
    let again = fw.apply(&want).await.unwrap();
    assert_eq!(again.total(), 0, "{:?}", again.log);
    assert_eq!(fw.writes(), 3);
    // Docker's rules untouched, policy untouched.
    assert_eq!(foreign(&fw), before);
    let filter = fw.dump(Table::Filter);
    assert_eq!(
        filter.chain("FORWARD").unwrap().policy.as_deref(),
        Some("DROP")
    );
    // Jumps at the top, Docker's raw DROP still after ours.
    let raw = rules(&fw.dump(Table::Raw), "PREROUTING");
    assert!(is_tagged(&raw[0]));
    assert_eq!(
        raw[1],
        split_save_line("-d 10.1.0.2/32 ! -i docker0 -j DROP")
    );
}

#[tokio::test]
async fn flushed_chains_come_back() {
    let fw = docker_like();
    let want = input("10.1.0.0/24");
    fw.apply(&want).await.unwrap();
    fw.external_flush(Table::Filter, "CROSSDOCK-FORWARD");
    fw.external_flush(Table::Filter, DOCKER_USER);
    assert!(!fw.in_place(&want).await.unwrap());
    let c = fw.apply(&want).await.unwrap();
    assert_eq!((c.rules_added, c.rules_removed), (2, 0), "{:?}", c.log);
    assert!(fw.in_place(&want).await.unwrap());
}

#[tokio::test]
async fn a_missing_docker_user_is_created_for_docker_to_adopt() {
    let fw = MemoryFirewall::new();
    let c = fw.apply(&input("10.1.0.0/24")).await.unwrap();
    assert_eq!(c.chains_created, 4);
    assert!(fw.dump(Table::Filter).chain(DOCKER_USER).is_some());
}

#[tokio::test]
async fn a_subnet_change_replaces_the_old_rules() {
    let fw = docker_like();
    fw.apply(&input("10.1.0.0/24")).await.unwrap();
    let want = input("10.2.0.0/24");
    let c = fw.apply(&want).await.unwrap();
    assert_eq!((c.rules_removed, c.rules_added), (3, 3), "{:?}", c.log);
    assert!(fw.in_place(&want).await.unwrap());
    for t in Table::ALL {
        for (name, chain) in fw.dump(t).chains {
            if is_own_chain(&name) {
                assert!(!format!("{chain:?}").contains("10.1.0.0/24"), "{name}");
            }
        }
    }
    assert_eq!(fw.apply(&want).await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_jump_pushed_down_by_docker_goes_back_to_the_top_once() {
    let fw = docker_like();
    let want = input("10.1.0.0/24");
    fw.apply(&want).await.unwrap();
    // Docker restarts and inserts its MASQUERADE above our jump.
    fw.tables().external_insert_first(
        Table::Nat,
        "POSTROUTING",
        "-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE",
    );
    let c = fw.apply(&want).await.unwrap();
    assert_eq!((c.rules_added, c.rules_removed), (1, 1), "{:?}", c.log);
    let post = rules(&fw.dump(Table::Nat), "POSTROUTING");
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
    let want = input("10.1.0.0/24");
    fw.apply(&want).await.unwrap();
    let jump = "-m comment --comment crossdock:jump -j CROSSDOCK-FORWARD";
    let stray = "-s 10.9.0.0/24 -m comment --comment crossdock:old -j ACCEPT";
    fw.seed(Table::Filter, DOCKER_USER, &[jump]);
    fw.seed(Table::Filter, "FORWARD", &[stray]);
    fw.apply(&want).await.unwrap();
    let filter = fw.dump(Table::Filter);
    assert_eq!(rules(&filter, DOCKER_USER), vec![split_save_line(jump)]);
    assert!(!rules(&filter, "FORWARD").contains(&split_save_line(stray)));
    assert_eq!(fw.apply(&want).await.unwrap().total(), 0);
}

#[tokio::test]
async fn foreign_rules_in_an_own_chain_are_removed() {
    let fw = docker_like();
    let want = input("10.1.0.0/24");
    fw.apply(&want).await.unwrap();
    fw.seed(Table::Filter, "CROSSDOCK-FORWARD", &["-j ACCEPT"]);
    let c = fw.apply(&want).await.unwrap();
    assert_eq!((c.rules_removed, c.rules_added), (1, 0));
}

#[tokio::test]
async fn cleanup_removes_ours_and_nothing_else() {
    let fw = docker_like();
    let before = foreign(&fw);
    fw.apply(&input("10.1.0.0/24")).await.unwrap();
    let c = fw.cleanup().await.unwrap();
    assert_eq!((c.chains_removed, c.rules_removed), (3, 6));
    assert_eq!(foreign(&fw), before);
    for t in Table::ALL {
        let d = fw.dump(t);
        assert!(d.chains.keys().all(|c| !is_own_chain(c)));
        assert!(d
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .all(|r| !is_tagged(&r.args)));
    }
    // DOCKER-USER is Docker's: it stays.
    assert!(fw.dump(Table::Filter).chain(DOCKER_USER).is_some());
    assert_eq!(fw.cleanup().await.unwrap().total(), 0);
}

#[tokio::test]
async fn the_scrape_port_rules_come_and_go_with_the_setting() {
    let fw = docker_like();
    fw.seed(Table::Filter, "INPUT", &["-i lo -j ACCEPT"]);
    let before = foreign(&fw);
    let want = DesiredInput {
        scrape: Some(ScrapeGuard {
            listen: "192.168.1.11:9464".parse().unwrap(),
            scrapers: vec!["192.168.1.12/32".parse().unwrap()],
        }),
        ..input("10.1.0.0/24")
    };
    let c = fw.apply(&want).await.unwrap();
    assert_eq!((c.chains_created, c.rules_added), (4, 9), "{:?}", c.log);
    assert!(fw.in_place(&want).await.unwrap());
    assert_eq!(fw.apply(&want).await.unwrap().total(), 0);
    // In order at the head of INPUT: the jump to the scrapers' ACCEPTs, then the REJECT.
    let head = rules(&fw.dump(Table::Filter), "INPUT");
    assert!(head[0].ends_with(&["-j".to_string(), "CROSSDOCK-INPUT".to_string()]));
    assert!(head[1].contains(&"REJECT".to_string()), "{head:?}");
    assert_eq!(head[2], split_save_line("-i lo -j ACCEPT"));
    // Someone inserts above them: both go back on top, in order.
    let icmp = "-p icmp -j ACCEPT";
    fw.tables()
        .external_insert_first(Table::Filter, "INPUT", icmp);
    assert!(!fw.in_place(&want).await.unwrap());
    fw.apply(&want).await.unwrap();
    assert!(fw.in_place(&want).await.unwrap());
    fw.tables().external_delete(Table::Filter, "INPUT", icmp);

    // The listener switched off: the rules and the chain go, nothing else does.
    let c = fw.apply(&input("10.1.0.0/24")).await.unwrap();
    assert_eq!((c.chains_removed, c.rules_removed), (1, 3), "{:?}", c.log);
    assert!(fw.dump(Table::Filter).chain("CROSSDOCK-INPUT").is_none());
    assert_eq!(foreign(&fw), before);
    // And cleanup removes them as well.
    fw.apply(&want).await.unwrap();
    fw.cleanup().await.unwrap();
    assert_eq!(foreign(&fw), before);
}

#[tokio::test]
async fn write_failures_surface_as_errors() {
    let fw = docker_like();
    fw.fail_writes(Some(FirewallError::Lock {
        command: "iptables-restore -w 5 --noflush".into(),
        wait_secs: 5,
        stderr: "Another app is currently holding the xtables lock".into(),
    }));
    let e = fw.apply(&input("10.1.0.0/24")).await.unwrap_err();
    assert_eq!(e.kind(), "iptables_lock");
    assert!(e.to_string().contains("lock_wait_secs"));
    assert_eq!(fw.writes(), 0);
}

/// Tables whose state someone changes right after every read (once) or every write (always).
#[derive(Debug)]
struct Meddler {
    inner: MemoryTables,
    after_read: AtomicUsize,
    after_every_write: bool,
}

impl Meddler {
    fn new(after_read: usize, after_every_write: bool) -> Arc<Self> {
        let inner = MemoryTables::new();
        seed_docker(&inner);
        Arc::new(Self {
            inner,
            after_read: AtomicUsize::new(after_read),
            after_every_write,
        })
    }
}

#[async_trait]
impl Tables for Meddler {
    async fn save(&self, table: Table) -> Result<SavedTable, FirewallError> {
        let now = self.inner.save(table).await?;
        let left = self.after_read.load(Ordering::SeqCst);
        if table == Table::Filter && left > 0 {
            self.after_read.store(left - 1, Ordering::SeqCst);
            // Docker removes the chain our stale plan is about to delete a rule from.
            self.inner.external_delete(
                Table::Filter,
                DOCKER_USER,
                "-m comment --comment crossdock:old -j ACCEPT",
            );
        }
        Ok(now)
    }

    async fn restore(&self, tx: &Transaction) -> Result<(), FirewallError> {
        self.inner.restore(tx).await?;
        if self.after_every_write && tx.table == Table::Filter {
            self.inner
                .external_insert_first(Table::Filter, DOCKER_USER, "-j RETURN");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_transaction_planned_on_a_stale_read_is_planned_again() {
    let tables = Meddler::new(1, false);
    tables.inner.seed(
        Table::Filter,
        DOCKER_USER,
        &["-m comment --comment crossdock:old -j ACCEPT"],
    );
    let fw = Iptables::over(tables.clone());
    let want = input("10.1.0.0/24");
    let c = fw.apply(&want).await.unwrap();
    assert!(fw.in_place(&want).await.unwrap(), "{:?}", c.log);
    // The refused transaction changed nothing and is not counted.
    assert_eq!(c.rules_removed, 0, "{:?}", c.log);
}

#[tokio::test]
async fn a_program_rewriting_the_chain_after_every_write_is_reported() {
    let fw = Iptables::over(Meddler::new(0, true));
    let e = fw.apply(&input("10.1.0.0/24")).await.unwrap_err();
    assert_eq!(e.kind(), "iptables_not_converging");
    assert!(e.to_string().contains("filter"), "{e}");
}
