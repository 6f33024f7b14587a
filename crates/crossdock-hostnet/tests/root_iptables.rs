//! The iptables driver (iptables-save, iptables-restore --noflush) against a real kernel, in a fresh
//! network namespace (root only), on both iptables back-ends: the nft one Debian uses by default and
//! the legacy one. Docker's layout is imitated with plain iptables commands so the test needs no
//! dockerd; the agent's own integration tests run the same driver against real Docker 20.10 and 28.

use crossdock_hostnet::{DesiredInput, Firewall, FirewallError, Iptables};
use crossdock_lab::netns::Netns;
use std::time::{Duration, Instant};

fn input(subnet: &str) -> DesiredInput {
    DesiredInput {
        cluster_cidrs: vec![
            "10.0.0.0/8".parse().unwrap(),
            "172.20.0.0/16".parse().unwrap(),
        ],
        local_subnet: subnet.parse().unwrap(),
        bridge: Some("docker0".into()),
        scrape: None,
        names: None,
    }
}

fn save(ns: &Netns, program: &str) -> String {
    ns.exec_stdout(&[&format!("{program}-save")]).unwrap()
}

/// Non-crossdock rules and policies, as iptables-save prints them (counters and comments stripped).
fn foreign(ns: &Netns, program: &str) -> Vec<String> {
    save(ns, program)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("crossdock") && !l.contains("CROSSDOCK"))
        .map(|l| l.split(" [").next().unwrap().to_string())
        .collect()
}

fn docker_like(ns: &Netns, program: &str) {
    for cmd in [
        "-N DOCKER-USER",
        "-N DOCKER",
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -o docker0 -j DOCKER",
        "-A DOCKER-USER -j RETURN",
        "-t nat -A POSTROUTING -s 10.1.0.0/24 ! -o docker0 -j MASQUERADE",
        "-t raw -A PREROUTING -d 10.1.0.2/32 ! -i docker0 -j DROP",
    ] {
        let mut argv = vec![program];
        argv.extend(cmd.split(' '));
        ns.exec(&argv).unwrap();
    }
}

async fn full_cycle(program: &str) {
    let ns = Netns::create(&format!("cd-hostnet-{}-{program}", std::process::id())).unwrap();
    docker_like(&ns, program);
    let before = foreign(&ns, program);
    let fw = Iptables::with_program(vec!["nsenter".into(), ns.nsenter_arg(), program.into()], 5);

    let want = input("10.1.0.0/24");
    let first = fw.apply(&want).await.unwrap();
    assert_eq!(first.chains_created, 3, "{:?}", first.log);
    assert_eq!(first.rules_added, 9, "{:?}", first.log);
    assert!(fw.in_place(&want).await.unwrap());
    // Idempotent against the real kernel: what iptables prints back equals what we asked for.
    let again = fw.apply(&want).await.unwrap();
    assert_eq!(again.total(), 0, "{:?}", again.log);
    assert_eq!(
        foreign(&ns, program),
        before,
        "Docker's rules must be untouched"
    );
    // The rules as iptables itself checks them (-C), the jumps first in their chains.
    for rule in [
        "-C CROSSDOCK-FORWARD -s 172.20.0.0/16 -d 10.1.0.0/24 -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT",
        "-t nat -C CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8 -m comment --comment crossdock:keep-container-source -j ACCEPT",
        "-t raw -C CROSSDOCK-PREROUTING -s 10.0.0.0/8 -d 10.1.0.0/24 ! -i docker0 -m comment --comment crossdock:cluster-before-docker-raw-drop -j ACCEPT",
    ] {
        let mut argv = vec![program];
        argv.extend(rule.split(' '));
        ns.exec(&argv).unwrap();
    }
    for (table, chain) in [
        ("filter", "DOCKER-USER"),
        ("nat", "POSTROUTING"),
        ("raw", "PREROUTING"),
    ] {
        let listed = ns
            .exec_stdout(&[program, "-t", table, "-S", chain])
            .unwrap();
        let first = listed.lines().nth(1).unwrap_or_default();
        assert!(
            first.contains("crossdock:jump"),
            "{table} {chain}:\n{listed}"
        );
    }

    // Someone flushes our chain and DOCKER-USER: both come back, and Docker's RETURN does not.
    ns.exec(&[program, "-F", "CROSSDOCK-FORWARD"]).unwrap();
    ns.exec(&[program, "-F", "DOCKER-USER"]).unwrap();
    assert!(!fw.in_place(&want).await.unwrap());
    let restored = fw.apply(&want).await.unwrap();
    assert_eq!(restored.rules_added, 3, "{:?}", restored.log);
    assert!(fw.in_place(&want).await.unwrap());
    // (Docker would put its RETURN back on its next start; do it here so `before` holds again.)
    ns.exec(&[program, "-A", "DOCKER-USER", "-j", "RETURN"])
        .unwrap();
    assert_eq!(fw.apply(&want).await.unwrap().total(), 0);

    // Docker restarts and inserts its MASQUERADE above our jump: the jump goes back on top.
    let masquerade = "-s 10.1.0.0/24 ! -o docker0 -j MASQUERADE";
    let mut argv = vec![program, "-t", "nat", "-I", "POSTROUTING", "1"];
    argv.extend(masquerade.split(' '));
    ns.exec(&argv).unwrap();
    let moved = fw.apply(&want).await.unwrap();
    assert_eq!(
        (moved.rules_added, moved.rules_removed),
        (1, 1),
        "{:?}",
        moved.log
    );
    let post = ns
        .exec_stdout(&[program, "-t", "nat", "-S", "POSTROUTING"])
        .unwrap();
    assert!(
        post.lines()
            .nth(1)
            .unwrap_or_default()
            .contains("CROSSDOCK-POSTROUTING"),
        "{post}"
    );
    let mut argv = vec![program, "-t", "nat", "-D", "POSTROUTING"];
    argv.extend(masquerade.split(' '));
    ns.exec(&argv).unwrap();

    // A new subnet replaces the old rules.
    let moved_subnet = input("10.2.0.0/24");
    let c = fw.apply(&moved_subnet).await.unwrap();
    assert_eq!((c.rules_added, c.rules_removed), (6, 6), "{:?}", c.log);
    let text = save(&ns, program);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("crossdock") && l.contains("10.1.0.0/24")),
        "{text}"
    );
    assert_eq!(fw.apply(&moved_subnet).await.unwrap().total(), 0);

    // The policy is still DROP; cleanup leaves exactly Docker's state.
    assert!(text.contains(":FORWARD DROP"), "{text}");
    let removed = fw.cleanup().await.unwrap();
    assert_eq!(removed.chains_removed, 3);
    let text = save(&ns, program);
    assert!(!text.to_lowercase().contains("crossdock"), "{text}");
    assert_eq!(foreign(&ns, program), before);
    assert_eq!(fw.cleanup().await.unwrap().total(), 0);
}

#[tokio::test]
async fn full_cycle_on_iptables_nft() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    full_cycle("iptables-nft").await;
}

#[tokio::test]
async fn full_cycle_on_iptables_legacy() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    full_cycle("iptables-legacy").await;
}

/// Kills the lock holder (a process this test started) on every exit path.
#[tokio::test]
async fn lock_wait_is_bounded() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    // A private lock file (XTABLES_LOCKFILE) so the system's xtables lock is never held.
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("xtables.lock");
    std::fs::write(&lock, "").unwrap();
    let lock_s = lock.to_str().unwrap().to_string();
    // Held by this test process itself (flock, as iptables-legacy takes it), released on drop: no helper
    // process that could outlive the test.
    let holder = std::fs::File::open(&lock).unwrap();
    holder.lock().expect("take the private xtables lock");
    assert!(
        !std::process::Command::new("flock")
            .args(["-n", &lock_s, "true"])
            .status()
            .unwrap()
            .success(),
        "another process could still take the lock"
    );
    let ns = Netns::create(&format!("cd-hostnet-lock-{}", std::process::id())).unwrap();
    let fw = Iptables::with_program(
        vec![
            "env".into(),
            format!("XTABLES_LOCKFILE={lock_s}"),
            "nsenter".into(),
            ns.nsenter_arg(),
            "iptables-legacy".into(),
        ],
        1,
    );
    let start = Instant::now();
    let e = fw.apply(&input("10.1.0.0/24")).await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, FirewallError::Lock { .. }), "{e}");
    assert!(
        took < Duration::from_secs(5),
        "waited {took:?} for a 1 s bound"
    );
    assert!(e.to_string().contains("lock_wait_secs"), "{e}");
}
