//! Doctor's walk of the iptables tables (crossdock_doctor::iptables) against the kernel itself.
//!
//! Two network namespaces joined by a veth pair stand for this host and a peer. Each case installs a
//! variant of the rules, sends a real ping, reads on the peer which source address arrived (or whether
//! a reply came back), and asserts that the walk over this host's `iptables-save` predicts the same.
//! The cases are the ones doctor's verdicts hinge on: whether a NAT exemption really escapes Docker's
//! MASQUERADE (a RETURN in a chain of one's own does not: it resumes POSTROUTING), and whether an
//! ACCEPT ahead of Docker 28's raw-table DROP lets cluster traffic in.
//! Root only; everything lives in namespaces created here and removed on drop.

use crossdock_doctor::iptables::{Packet, Ruleset, Walk};
use crossdock_lab::netns::{veth, Netns};
use std::net::Ipv4Addr;

struct Pair {
    host: Netns,
    peer: Netns,
}

fn pair(tag: &str) -> Pair {
    let id = std::process::id();
    let host = Netns::create(&format!("cdd-{id}-{tag}h")).unwrap();
    let peer = Netns::create(&format!("cdd-{id}-{tag}p")).unwrap();
    veth(&host, "eth0", &peer, "eth0").unwrap();
    host.addr_add("eth0", "192.168.1.11/24").unwrap();
    peer.addr_add("eth0", "192.168.1.253/24").unwrap();
    // The local "container subnet" and a remote one, as addresses on loopback.
    host.addr_add("lo", "10.1.0.1/32").unwrap();
    peer.addr_add("lo", "10.2.0.5/32").unwrap();
    host.route_replace("10.2.0.0/24", "192.168.1.253").unwrap();
    peer.route_replace("10.1.0.0/24", "192.168.1.11").unwrap();
    Pair { host, peer }
}

fn sh(ns: &Netns, script: &str) {
    ns.exec(&["sh", "-ec", script]).unwrap();
}

fn save(ns: &Netns) -> Ruleset {
    let out = ns.exec_stdout(&["iptables-save", "-c"]).unwrap();
    Ruleset::parse(&out).unwrap()
}

/// One ICMP echo from `src` to `dst` inside `ns`; true if answered (the timeout bounds the wait).
fn ping(ns: &Netns, src: &str, dst: &str) -> bool {
    let argv: Vec<&str> = if which("ping") {
        vec!["ping", "-c", "1", "-W", "2", "-I", src, dst]
    } else {
        vec!["busybox", "ping", "-c", "1", "-W", "2", "-I", src, dst]
    };
    ns.exec_unchecked(&argv).unwrap().status.success()
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn nat_exemption_variants_agree_with_the_kernel() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let p = pair("n");
    // The peer counts which source address its echo requests came from.
    sh(
        &p.peer,
        "iptables -A INPUT -p icmp -s 10.1.0.1 -m comment --comment from-container
         iptables -A INPUT -p icmp -s 192.168.1.11 -m comment --comment from-host",
    );
    let masq = "iptables -t nat -A POSTROUTING -s 10.1.0.0/24 ! -o docker0 -j MASQUERADE";
    let cases: [(&str, String, bool); 4] = [
        ("no exemption", masq.to_string(), true),
        (
            "RETURN in a chain of its own (crossdock-hostnet's first form)",
            format!(
                "iptables -t nat -N CROSSDOCK-POSTROUTING
                 iptables -t nat -A CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8 -j RETURN
                 iptables -t nat -A POSTROUTING -j CROSSDOCK-POSTROUTING
                 {masq}"
            ),
            true,
        ),
        (
            "ACCEPT in a chain of its own",
            format!(
                "iptables -t nat -N CROSSDOCK-POSTROUTING
                 iptables -t nat -A CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8 -j ACCEPT
                 iptables -t nat -A POSTROUTING -j CROSSDOCK-POSTROUTING
                 {masq}"
            ),
            false,
        ),
        (
            "RETURN directly in POSTROUTING (the manual recipe)",
            format!(
                "iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8 -j RETURN
                 {masq}"
            ),
            false,
        ),
    ];
    for (name, rules, want_masq) in cases {
        sh(
            &p.host,
            "iptables -t nat -F; iptables -t nat -X; conntrack -F 2>/dev/null || true",
        );
        sh(&p.host, &rules);
        sh(&p.peer, "iptables -Z INPUT");
        assert!(ping(&p.host, "10.1.0.1", "10.2.0.5"), "{name}: no reply");
        let peer = save(&p.peer);
        let input = &peer.table("filter").chain("INPUT").unwrap().rules;
        let count = |comment: &str| {
            input
                .iter()
                .find(|r| r.args.iter().any(|x| x == comment))
                .and_then(|r| r.counters)
                .map_or(0, |c| c.packets)
        };
        let observed_masq = match (count("from-container"), count("from-host")) {
            (0, n) if n > 0 => true,
            (n, 0) if n > 0 => false,
            other => panic!("{name}: unexpected counts {other:?}"),
        };
        let predicted = save(&p.host).table("nat").trace(
            "POSTROUTING",
            &Packet::new(a("10.1.0.1"), a("10.2.0.5")).leaving_by("eth0"),
        );
        let predicted_masq = predicted.verdict == "MASQUERADE";
        assert_eq!(observed_masq, want_masq, "{name}: the kernel");
        assert_eq!(
            predicted_masq,
            observed_masq,
            "{name}: the walk said {}",
            predicted.describe()
        );
    }
}

#[test]
fn raw_drop_and_the_accept_ahead_of_it_agree_with_the_kernel() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let p = pair("r");
    // Docker 28.2+'s per-container rule, with loopback standing in for the bridge.
    let drop = "iptables -t raw -A PREROUTING -d 10.1.0.1/32 ! -i lo -j DROP";
    let cases: [(&str, String, bool); 3] = [
        ("Docker's drop alone", drop.to_string(), false),
        (
            "crossdock's ACCEPT jumped to ahead of the drop",
            format!(
                "iptables -t raw -N CROSSDOCK-PREROUTING
                 iptables -t raw -A CROSSDOCK-PREROUTING -s 10.0.0.0/8 -d 10.1.0.0/24 ! -i docker0 -j ACCEPT
                 iptables -t raw -A PREROUTING -j CROSSDOCK-PREROUTING
                 {drop}"
            ),
            true,
        ),
        (
            "crossdock's chain jumped to after the drop",
            format!(
                "iptables -t raw -N CROSSDOCK-PREROUTING
                 iptables -t raw -A CROSSDOCK-PREROUTING -s 10.0.0.0/8 -d 10.1.0.0/24 ! -i docker0 -j ACCEPT
                 {drop}
                 iptables -t raw -A PREROUTING -j CROSSDOCK-PREROUTING"
            ),
            false,
        ),
    ];
    for (name, rules, want_answer) in cases {
        sh(&p.host, "iptables -t raw -F; iptables -t raw -X");
        sh(&p.host, &rules);
        let answered = ping(&p.peer, "10.2.0.5", "10.1.0.1");
        let predicted = save(&p.host).table("raw").trace(
            "PREROUTING",
            &Packet::new(a("10.2.0.5"), a("10.1.0.1")).arriving_on("eth0"),
        );
        assert_eq!(answered, want_answer, "{name}: the kernel");
        assert_eq!(
            predicted.verdict != "DROP",
            answered,
            "{name}: the walk said {}",
            predicted.describe()
        );
    }
}
