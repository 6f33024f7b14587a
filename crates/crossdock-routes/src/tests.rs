//! Reconciler behaviour against the in-memory VPC: a table of single-pass cases, then multi-pass
//! scenarios (restart, subnet change, throttling, missing permission, slow routes, deregister).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::fake::{api_error, FakeCloud, Op, ME};
use crate::*;
use crossdock_alibaba::{ErrorClass, Identity, Sleeper};

fn identity() -> Identity {
    Identity {
        instance_id: ME.into(),
        region_id: "cn-test-1".into(),
        vpc_id: "vpc-1".into(),
        vswitch_id: "vsw-1".into(),
        private_ip: "192.168.1.11".into(),
        mac: String::new(),
        eni_id: "eni-1".into(),
    }
}

fn cfg() -> RoutesConfig {
    RoutesConfig {
        wait_available: Duration::from_secs(60),
        poll_initial: Duration::from_secs(1),
        poll_max: Duration::from_secs(8),
        ..RoutesConfig::default()
    }
}

type Sleeps = Arc<Mutex<Vec<Duration>>>;

fn reconciler(fake: &Arc<FakeCloud>, cfg: RoutesConfig) -> (RouteReconciler, Sleeps) {
    let log: Sleeps = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let sleeper: Sleeper = Arc::new(move |d| {
        l.lock().unwrap().push(d);
        Box::pin(async {})
    });
    let cloud: Arc<dyn RouteCloud> = fake.clone();
    (
        RouteReconciler::new(cloud, cfg, identity()).with_sleeper(sleeper),
        log,
    )
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

const SUBNET: &str = "10.1.0.0/24";

struct Case {
    name: &'static str,
    setup: fn(&FakeCloud),
    cfg: fn(&mut RoutesConfig),
    subnet: &'static str,
    state: State,
    reason: &'static str,
    writes: u32,
    /// Extra check on the fake after the pass.
    check: fn(&FakeCloud, &RouteReport),
}

fn nothing(_: &FakeCloud) {}
fn default_cfg(_: &mut RoutesConfig) {}
fn no_check(_: &FakeCloud, _: &RouteReport) {}

/// One pass of a fresh reconciler, per case.
#[tokio::test]
async fn single_pass_table() {
    let cases = vec![
        Case {
            name: "missing: create, wait for Available, ready",
            setup: nothing,
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 1,
            check: |f, r| {
                let e = &f.entries_in("vtb-sys")[0];
                assert_eq!(e.destination_cidr_block, SUBNET);
                assert_eq!(e.name, "crossdock");
                assert_eq!(e.description, "crossdock:i-me");
                assert_eq!(e.status.to_string(), "Available");
                assert_eq!(r.routes.len(), 1);
                assert_eq!(r.routes[0].owner.to_string(), "self");
                assert_eq!(r.routes[0].status.to_string(), "Available");
                assert_eq!(r.routes[0].table_id, "vtb-sys");
            },
        },
        Case {
            name: "in sync (earlier run): reads only",
            setup: |f| {
                f.add_ours("vtb-sys", SUBNET);
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 0,
            check: |f, r| {
                assert_eq!(f.count(Op::Tables), 0, "the vSwitch listing named the table");
                assert_eq!(r.routes[0].entry_id, "rte-pre1");
            },
        },
        Case {
            name: "same CIDR pointing elsewhere: conflict, never overwritten",
            setup: |f| {
                f.add_entry("vtb-sys", SUBNET, "i-other", "", "", "Available");
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "RouteConflict",
            writes: 0,
            check: |f, r| {
                assert_eq!(f.entries_in("vtb-sys")[0].next_hops[0].next_hop_id, "i-other");
                assert_eq!(r.routes[0].owner.to_string(), "Instance i-other");
                assert!(r.route.message.contains("never overwrites"), "{}", r.route.message);
            },
        },
        Case {
            name: "same CIDR held by another crossdock host: conflict",
            setup: |f| {
                f.add_entry("vtb-sys", SUBNET, "i-two", "crossdock", "crossdock:i-two", "Available");
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "RouteConflict",
            writes: 0,
            check: |_, r| assert_eq!(r.routes[0].owner.to_string(), "crossdock:i-two"),
        },
        Case {
            name: "unmarked route to us for our CIDR: ready, left alone",
            setup: |f| {
                f.add_entry("vtb-sys", SUBNET, ME, "by-hand", "", "Available");
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 0,
            check: |_, r| {
                assert_eq!(r.routes[0].owner.to_string(), "user");
                assert!(r.route.message.contains("no crossdock marker"));
            },
        },
        Case {
            name: "user route to our instance for another CIDR: untouched",
            setup: |f| {
                f.add_ours("vtb-sys", SUBNET);
                f.add_entry("vtb-sys", "172.30.0.0/16", ME, "vpn", "users vpn", "Available");
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 0,
            check: |f, _| assert_eq!(f.entries_in("vtb-sys").len(), 2),
        },
        Case {
            name: "overlaps a vSwitch: refused with the fix, no write",
            setup: nothing,
            cfg: default_cfg,
            subnet: "192.168.1.128/25",
            state: State::Failed,
            reason: "SubnetOverlapsVpc",
            writes: 0,
            check: |f, r| {
                assert!(r.route.message.contains("vSwitch vsw-1") && r.route.message.contains("fix:"));
                assert_eq!(f.count(Op::Entries), 0, "no route reads either");
            },
        },
        Case {
            name: "inside the VPC CIDR: refused",
            setup: nothing,
            cfg: default_cfg,
            subnet: "192.168.77.0/24",
            state: State::Failed,
            reason: "SubnetOverlapsVpc",
            writes: 0,
            check: no_check,
        },
        Case {
            name: "quota: reported with the fix",
            setup: |f| f.with(|s| s.quota = 0),
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "QuotaExceeded",
            writes: 1,
            check: |_, r| {
                assert!(r.route.message.contains("Quota Center"), "{}", r.route.message);
                assert_eq!(r.routes[0].status.to_string(), "Missing");
                assert_eq!(r.retry_after, Some(Duration::from_secs(300)));
            },
        },
        Case {
            name: "throttled write: backed off and written again in the same pass",
            setup: |f| f.fail_next(Op::Create, "Throttling.User"),
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 2,
            check: |f, _| assert_eq!(f.entries_in("vtb-sys").len(), 1),
        },
        Case {
            name: "throttled past the write patience: pending, retry later",
            setup: |f| f.fail_next(Op::Create, "Throttling.User"),
            cfg: |c| c.write_patience = Duration::ZERO,
            subnet: SUBNET,
            state: State::Pending,
            reason: "Throttled",
            writes: 1,
            check: |f, r| {
                assert!(f.entries_in("vtb-sys").is_empty());
                assert_eq!(r.retry_after, Some(Duration::from_secs(30)));
            },
        },
        Case {
            name: "task conflict past the write patience (another host writing): pending",
            setup: |f| f.fail_next(Op::Create, "TaskConflict"),
            cfg: |c| c.write_patience = Duration::ZERO,
            subnet: SUBNET,
            state: State::Pending,
            reason: "CloudBusy",
            writes: 1,
            check: no_check,
        },
        Case {
            name: "Forbidden.RAM on create: names the action, retries slowly",
            setup: |f| f.fail_next(Op::Create, "Forbidden.RAM"),
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "PermissionDenied",
            writes: 1,
            check: |_, r| {
                assert!(r.route.message.contains("vpc:CreateRouteEntry"), "{}", r.route.message);
                assert_eq!(r.credentials.state, State::Failed);
                assert_eq!(r.credentials.reason.to_string(), "PermissionDenied");
                assert!(r.credentials.message.contains("vpc:CreateRouteEntry"));
                assert_eq!(r.retry_after, Some(Duration::from_secs(300)));
            },
        },
        Case {
            name: "Forbidden.RAM on a read: names the read action",
            setup: |f| f.fail_next(Op::VSwitches, "Forbidden.RAM"),
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "PermissionDenied",
            writes: 0,
            check: |_, r| assert!(r.route.message.contains("vpc:DescribeVSwitches")),
        },
        Case {
            name: "source/dest check on: switched off through ECS",
            setup: |f| {
                f.with(|s| s.sdc.insert("eni-1".into(), Some(true)));
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 2,
            check: |f, r| {
                assert_eq!(f.with(|s| s.sdc["eni-1"]), Some(false));
                assert_eq!(r.source_dest_check, SourceDestCheck::Disabled);
            },
        },
        Case {
            name: "source/dest check on, config says report: failed, not touched",
            setup: |f| {
                f.with(|s| s.sdc.insert("eni-1".into(), Some(true)));
            },
            cfg: |c| c.source_dest_check = crossdock_config::SourceDestCheck::Report,
            subnet: SUBNET,
            state: State::Failed,
            reason: "SourceDestCheckEnabled",
            writes: 1, // the route is still created
            check: |f, r| {
                assert_eq!(f.with(|s| s.sdc["eni-1"]), Some(true));
                assert_eq!(r.source_dest_check, SourceDestCheck::Enabled);
                assert!(r.route.message.contains("eni-1"));
            },
        },
        Case {
            name: "source/dest check cannot be switched off (permission): failed naming the ECS action",
            setup: |f| {
                f.with(|s| s.sdc.insert("eni-1".into(), Some(true)));
                f.fail_next(Op::SetSdc, "Forbidden.RAM");
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "PermissionDenied",
            writes: 2,
            check: |_, r| assert!(r.route.message.contains("ecs:ModifyNetworkInterfaceAttribute")),
        },
        Case {
            name: "several configured tables: a route in each",
            setup: |f| {
                f.add_table("vtb-a", "Custom");
                f.add_table("vtb-b", "Custom");
                f.add_ours("vtb-a", SUBNET);
            },
            cfg: |c| c.route_table_ids = vec!["vtb-a".into(), "vtb-b".into()],
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 1,
            check: |f, r| {
                assert_eq!(f.entries_in("vtb-a").len(), 1);
                assert_eq!(f.entries_in("vtb-b").len(), 1);
                assert!(f.entries_in("vtb-sys").is_empty());
                assert!(r.route.message.contains("vtb-a, vtb-b"), "{}", r.route.message);
            },
        },
        Case {
            name: "vSwitch bound to a custom table: that table",
            setup: |f| {
                f.add_table("vtb-custom", "Custom");
                f.with(|s| s.vswitches[0].route_table_id = Some("vtb-custom".into()));
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 1,
            check: |f, _| assert_eq!(f.entries_in("vtb-custom").len(), 1),
        },
        Case {
            name: "vSwitch listing without its table: the system table from the table list",
            setup: |f| f.with(|s| s.vswitches[0].route_table_id = None),
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Ready,
            reason: "RouteAvailable",
            writes: 1,
            check: |f, _| {
                assert_eq!(f.count(Op::Tables), 1);
                assert_eq!(f.entries_in("vtb-sys").len(), 1);
            },
        },
        Case {
            name: "destination taken between our read and our create: conflict",
            setup: |f| {
                let e = crossdock_alibaba::RouteEntry {
                    route_entry_id: "rte-race".into(),
                    route_table_id: "vtb-sys".into(),
                    destination_cidr_block: SUBNET.into(),
                    name: String::new(),
                    description: String::new(),
                    entry_type: "Custom".into(),
                    status: "Available".into(),
                    next_hops: vec![crossdock_alibaba::NextHop {
                        next_hop_type: "Instance".into(),
                        next_hop_id: "i-racer".into(),
                    }],
                };
                f.with(|s| s.appears_before_create = Some(e));
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "RouteConflict",
            writes: 1,
            check: |f, r| {
                assert_eq!(r.routes[0].entry_id, "rte-race");
                assert_eq!(f.entries_in("vtb-sys").len(), 1, "nothing overwritten");
            },
        },
        Case {
            name: "credentials unavailable: both conditions failed",
            setup: |f| {
                f.fail_next_with(
                    Op::VSwitches,
                    crossdock_alibaba::Error::Credentials {
                        message: "no RAM role attached".into(),
                        fix: "attach a RAM role".into(),
                    },
                )
            },
            cfg: default_cfg,
            subnet: SUBNET,
            state: State::Failed,
            reason: "CredentialsUnavailable",
            writes: 0,
            check: |_, r| {
                assert_eq!(r.credentials.state, State::Failed);
                assert!(r.credentials.message.contains("attach a RAM role"));
            },
        },
    ];
    for case in cases {
        let fake = Arc::new(FakeCloud::standard());
        (case.setup)(&fake);
        let mut c = cfg();
        (case.cfg)(&mut c);
        let (rec, _) = reconciler(&fake, c);
        let report = rec.sync(Some(net(case.subnet))).await;
        assert_eq!(
            (report.route.state, report.route.reason.as_str()),
            (case.state, case.reason),
            "case `{}`: {}",
            case.name,
            report.route.message
        );
        assert_eq!(
            report.writes,
            case.writes,
            "case `{}`: writes {:?}",
            case.name,
            fake.writes()
        );
        assert_eq!(
            report.writes as usize,
            fake.writes().len(),
            "case `{}`: the report counts what reached the cloud",
            case.name
        );
        (case.check)(&fake, &report);
    }
}

#[tokio::test]
async fn in_sync_passes_only_read_and_restarts_write_nothing() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, sleeps) = reconciler(&fake, cfg());
    let first = rec.sync(Some(net(SUBNET))).await;
    assert!(first.is_ready(), "{}", first.route.message);
    assert_eq!(first.writes, 1);
    // Polled with backoff until Available: waits 1 s, then 2 s.
    assert_eq!(
        sleeps.lock().unwrap().clone(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );

    // Periodic resync: one filtered read per table and the vSwitches' table bindings (so a table
    // bound later is followed within one pass), nothing else.
    for _ in 0..5 {
        let r = rec.sync(Some(net(SUBNET))).await;
        assert!(r.is_ready());
        assert_eq!((r.reads, r.writes), (2, 0));
    }
    // Every `rediscover_every` passes the whole layout and the ENI are re-read; still no writes.
    let mut extra = 0;
    for _ in 0..10 {
        let r = rec.sync(Some(net(SUBNET))).await;
        assert_eq!(r.writes, 0);
        extra += r.reads - 2;
    }
    assert_eq!(
        extra, 2,
        "VPC CIDRs + ENI beside the vSwitches once in ten passes"
    );

    // An agent restart: a new reconciler finds the route and writes nothing.
    let (restarted, _) = reconciler(&fake, cfg());
    let r = restarted.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready());
    assert_eq!(r.writes, 0);
    assert_eq!(
        r.reads, 5,
        "vSwitches, VPC, ENI, routes pointing here, holders of the subnet"
    );
    assert_eq!(fake.count(Op::Create), 1);
    let m = restarted.metrics();
    assert_eq!((m.syncs, m.writes, m.routes_created), (1, 0, 0));
}

#[tokio::test]
async fn subnet_change_creates_new_waits_then_deletes_old() {
    let fake = Arc::new(FakeCloud::standard());
    fake.with(|s| s.pending_listings = 2);
    let (rec, _) = reconciler(&fake, cfg());
    assert!(rec.sync(Some(net("10.9.0.0/24"))).await.is_ready());
    let old = fake.entries_in("vtb-sys")[0].route_entry_id.clone();
    fake.with(|s| s.log.clear());

    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    let remaining = fake.entries_in("vtb-sys");
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].destination_cidr_block, SUBNET);
    assert_ne!(remaining[0].route_entry_id, old);
    // Order: create, listings until Available, then delete the old one.
    let log = fake.with(|s| s.log.clone());
    let create = log.iter().position(|(o, _)| *o == Op::Create).unwrap();
    let delete = log.iter().position(|(o, _)| *o == Op::Delete).unwrap();
    assert!(create < delete);
    let polls = log[create..delete]
        .iter()
        .filter(|(o, _)| *o == Op::Entries)
        .count();
    assert_eq!(polls, 3, "two Pending listings, then Available");
    assert!(log[delete].1.contains(&old));
    assert_eq!(rec.metrics().routes_deleted, 1);
}

#[tokio::test]
async fn old_route_is_kept_while_the_new_one_cannot_be_created() {
    let fake = Arc::new(FakeCloud::standard());
    let old = fake.add_ours("vtb-sys", "10.9.0.0/24");
    fake.add_entry("vtb-sys", SUBNET, "i-other", "", "", "Available");
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.sync(Some(net(SUBNET))).await;
    assert_eq!(r.route.reason.to_string(), "RouteConflict");
    assert_eq!(r.writes, 0);
    assert!(fake
        .entries_in("vtb-sys")
        .iter()
        .any(|e| e.route_entry_id == old));
    assert!(r
        .routes
        .iter()
        .any(|s| s.entry_id == old && s.owner.to_string() == "self"));
}

#[tokio::test]
async fn throttled_then_recovers_on_the_next_pass() {
    let fake = Arc::new(FakeCloud::standard());
    fake.fail_next(Op::Create, "Throttling");
    let c = RoutesConfig {
        write_patience: Duration::ZERO,
        ..cfg()
    };
    let (rec, _) = reconciler(&fake, c);
    let r = rec.sync(Some(net(SUBNET))).await;
    assert_eq!(r.route.state, State::Pending);
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    assert_eq!(fake.entries_in("vtb-sys").len(), 1);
}

#[tokio::test]
async fn refused_writes_back_off_in_growing_jittered_windows_without_rereading() {
    let fake = Arc::new(FakeCloud::standard());
    for code in [
        "TaskConflict",
        "IncorrectRouteEntryStatus",
        "TaskConflict",
        "Throttling.User",
    ] {
        fake.fail_next(Op::Create, code);
    }
    let c = RoutesConfig {
        write_backoff: Duration::from_millis(400),
        write_backoff_max: Duration::from_millis(1000),
        ..cfg()
    };
    let (rec, sleeps) = reconciler(&fake, c);
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    assert_eq!(fake.count(Op::Create), 5, "four refusals, then the write");
    let sleeps = sleeps.lock().unwrap().clone();
    // Windows 400, 800, 1000 (capped), 1000 ms; then the polls for Available (1 s, 2 s).
    for (i, (slept, window)) in sleeps.iter().zip([400u64, 800, 1000, 1000]).enumerate() {
        assert!(
            *slept <= Duration::from_millis(window),
            "backoff {i}: {slept:?} > {window} ms"
        );
    }
    assert_eq!(
        sleeps[4..],
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    // Nothing was re-read between the attempts: the reads are the boot round and the polls.
    assert_eq!(fake.count(Op::Entries), 4, "two observe reads, two polls");
    assert_eq!(rec.metrics().write_refusals, 4);
    let mut text = String::new();
    rec.write_prometheus(&mut text);
    assert!(
        text.contains("crossdock_route_write_refusals_total 4"),
        "{text}"
    );
}

#[tokio::test]
async fn refusal_delays_spread_hosts_refused_together() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    let delays: Vec<Duration> = (0..200).map(|_| rec.write_delay(1, None)).collect();
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(
        distinct.len() > 100,
        "full jitter: {} distinct of 200",
        distinct.len()
    );
    assert!(delays.iter().all(|d| *d <= Duration::from_millis(500)));
    // A server hint is a floor, capped at the largest window.
    assert!(rec.write_delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    assert!(rec.write_delay(1, Some(Duration::from_secs(600))) <= Duration::from_secs(8));
}

#[tokio::test]
async fn missing_permission_keeps_running_and_recovers_when_granted() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    for _ in 0..3 {
        fake.fail_next(Op::Create, "Forbidden.RAM");
        let r = rec.sync(Some(net(SUBNET))).await;
        assert_eq!(r.route.reason.to_string(), "PermissionDenied");
        assert_eq!(r.retry_after, Some(Duration::from_secs(300)));
    }
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready());
    assert_eq!(r.credentials.state, State::Ready);
    assert_eq!(rec.metrics().failed_passes, 3);
}

#[tokio::test]
async fn a_slow_route_reports_pending_then_ready_without_a_second_create() {
    let fake = Arc::new(FakeCloud::standard());
    fake.with(|s| s.pending_listings = 100);
    let (rec, sleeps) = reconciler(&fake, cfg());
    let r = rec.sync(Some(net(SUBNET))).await;
    assert_eq!(
        (r.route.state, r.route.reason.as_str()),
        (State::Pending, "RoutePending")
    );
    assert_eq!(r.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(r.routes[0].status.to_string(), "Pending");
    // Waited with doubling, capped polls, within the 60 s budget: 1+2+4+8+8+8+8+8+8 = 55 s.
    let waits = sleeps.lock().unwrap().clone();
    assert_eq!(waits.iter().sum::<Duration>(), Duration::from_secs(55));
    assert!(waits.iter().all(|d| *d <= Duration::from_secs(8)));
    fake.with(|s| s.pending_listings = 0);
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    assert_eq!(
        r.writes, 0,
        "the pending route is awaited, not created again"
    );
    assert_eq!(fake.count(Op::Create), 1);
}

#[tokio::test]
async fn no_subnet_yet_touches_nothing() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.sync(None).await;
    assert_eq!(
        (r.route.state, r.route.reason.as_str()),
        (State::Pending, "NoSubnet")
    );
    assert_eq!((r.reads, r.writes), (0, 0));
    assert!(fake.with(|s| s.log.is_empty()));
}

#[tokio::test]
async fn a_vanished_route_is_recreated_with_a_fresh_client_token() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    assert!(rec.sync(Some(net(SUBNET))).await.is_ready());
    // Someone deletes the route; the old client token still maps to the deleted id in the fake (as the
    // cloud's idempotency window would).
    let id = fake.entries_in("vtb-sys")[0].route_entry_id.clone();
    fake.with(|s| s.entries.retain(|e| e.route_entry_id != id));
    // The route was in place at the last pass and is gone now: the create carries a fresh token, so
    // the route is back within this one pass (no replay answered with the deleted id first).
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    let e = &fake.entries_in("vtb-sys")[0];
    assert_ne!(e.route_entry_id, id);
    assert_eq!(fake.count(Op::Create), 2);
}

#[tokio::test]
async fn deregister_deletes_only_this_hosts_marked_routes_in_every_table() {
    let fake = Arc::new(FakeCloud::standard());
    fake.add_table("vtb-other", "Custom");
    fake.add_ours("vtb-sys", SUBNET);
    let pending = fake.add_entry(
        "vtb-other",
        "10.9.0.0/24",
        ME,
        "crossdock",
        "crossdock:i-me",
        "Pending",
    );
    let user = fake.add_entry("vtb-sys", "172.30.0.0/16", ME, "vpn", "", "Available");
    let other_host = fake.add_entry(
        "vtb-sys",
        "10.2.0.0/24",
        "i-two",
        "crossdock",
        "crossdock:i-two",
        "Available",
    );
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.deregister().await;
    assert_eq!(
        (r.route.state, r.route.reason.as_str()),
        (State::Ready, "Deregistered"),
        "{}",
        r.route.message
    );
    assert_eq!(r.routes.len(), 2);
    assert!(r
        .routes
        .iter()
        .any(|s| s.entry_id == pending && s.status.to_string() == "Deleted"));
    let left: Vec<String> =
        fake.with(|s| s.entries.iter().map(|e| e.route_entry_id.clone()).collect());
    assert_eq!(left.len(), 2);
    assert!(left.contains(&user) && left.contains(&other_host));
    assert_eq!(rec.metrics().routes_deleted, 2);
    // Idempotent: a second run finds nothing to do.
    let r = rec.deregister().await;
    assert!(r.is_ready());
    assert_eq!(r.writes, 0);
}

#[tokio::test]
async fn deregister_counts_an_already_deleted_route_as_done() {
    let fake = Arc::new(FakeCloud::standard());
    fake.add_ours("vtb-sys", SUBNET);
    fake.fail_next(Op::Delete, "InvalidRouteEntry.NotFound");
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.deregister().await;
    assert!(r.is_ready(), "{}", r.route.message);
    assert_eq!(r.routes.len(), 1);
    assert_eq!(
        api_error(Op::Delete, "InvalidRouteEntry.NotFound").class(),
        ErrorClass::NotFound
    );
}

#[tokio::test]
async fn report_serialises_for_status() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.sync(Some(net(SUBNET))).await;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["route"]["state"], "ready");
    assert_eq!(v["routes"][0]["table_id"], "vtb-sys");
    assert_eq!(v["routes"][0]["owner"], "self");
    assert_eq!(v["source_dest_check"], "disabled");
    assert_eq!(rec.last_report(), Some(r));
    let mut text = String::new();
    rec.write_prometheus(&mut text);
    assert!(text.contains("crossdock_route_ready 1"));
    assert!(text.contains("crossdock_route_created_total 1"));
}

#[tokio::test]
async fn an_old_route_that_is_not_available_is_deleted_on_a_later_pass() {
    let fake = Arc::new(FakeCloud::standard());
    let old = fake.add_entry(
        "vtb-sys",
        "10.9.0.0/24",
        ME,
        "crossdock",
        "crossdock:i-me",
        "Modifying",
    );
    let (rec, _) = reconciler(&fake, cfg());
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{}", r.route.message);
    assert_eq!(
        r.writes, 1,
        "only the create: the old entry cannot be deleted while Modifying"
    );
    assert!(r
        .routes
        .iter()
        .any(|s| s.entry_id == old && s.status.to_string() == "Modifying"));
    fake.with(|s| {
        s.entries
            .iter_mut()
            .filter(|e| e.route_entry_id == old)
            .for_each(|e| e.status = "Available".into())
    });
    let r = rec.sync(Some(net(SUBNET))).await;
    assert_eq!(r.writes, 1);
    assert_eq!(fake.entries_in("vtb-sys").len(), 1);
    assert_eq!(fake.writes().last().unwrap().0, Op::Delete);
}

#[test]
fn connect_failures_become_a_report() {
    let e = crossdock_alibaba::Error::Metadata {
        path: "/latest/meta-data/instance-id".into(),
        message: "connection failed".into(),
        transient: true,
        source: None,
    };
    let r = RouteReport::connect_failed(&e);
    assert_eq!(
        (r.route.state, r.route.reason.as_str()),
        (State::Pending, "MetadataUnavailable")
    );
    assert!(r.route.message.contains("instance-id"));
    assert_eq!(r.retry_after, Some(Duration::from_secs(5)));
    let e = crossdock_alibaba::Error::Config {
        field: "cloud.vpc_endpoint".into(),
        message: "not a URL".into(),
        fix: "set it to http(s)://host".into(),
    };
    let r = RouteReport::connect_failed(&e);
    assert_eq!(
        (r.route.state, r.route.reason.as_str()),
        (State::Failed, "ConfigInvalid")
    );
    assert!(r.route.message.contains("cloud.vpc_endpoint"));
}

#[tokio::test]
async fn the_binding_check_can_be_spaced_out_to_one_read_per_pass() {
    let fake = Arc::new(FakeCloud::standard());
    let cfg = RoutesConfig {
        layout_check_every: 10,
        ..cfg()
    };
    let (rec, _) = reconciler(&fake, cfg);
    assert!(rec.sync(Some(net(SUBNET))).await.is_ready());
    let r = rec.sync(Some(net(SUBNET))).await;
    assert_eq!((r.reads, r.writes), (1, 0));
}

#[tokio::test]
async fn a_table_bound_later_gets_the_route_on_the_next_pass() {
    let fake = Arc::new(FakeCloud::standard());
    let (rec, _) = reconciler(&fake, cfg());
    assert!(rec.sync(Some(net(SUBNET))).await.is_ready());
    // A second vSwitch appears on a custom table.
    fake.add_table("vtb-b", "Custom");
    fake.with(|s| {
        s.vswitches.push(crossdock_alibaba::VSwitch {
            vswitch_id: "vsw-2".into(),
            vpc_id: "vpc-1".into(),
            cidr_block: "192.168.2.0/24".into(),
            route_table_id: Some("vtb-b".into()),
            available_ip_count: None,
        })
    });
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{r:?}");
    assert!(
        fake.entries_in("vtb-b")
            .iter()
            .any(|e| e.destination_cidr_block == SUBNET),
        "the new table holds the route"
    );
}

#[tokio::test]
async fn a_table_left_unbound_loses_this_hosts_route_and_nothing_else() {
    let fake = Arc::new(FakeCloud::standard());
    fake.add_table("vtb-b", "Custom");
    fake.with(|s| {
        s.vswitches.push(crossdock_alibaba::VSwitch {
            vswitch_id: "vsw-2".into(),
            vpc_id: "vpc-1".into(),
            cidr_block: "192.168.2.0/24".into(),
            route_table_id: Some("vtb-b".into()),
            available_ip_count: None,
        })
    });
    let user = fake.add_entry("vtb-b", "172.30.0.0/16", ME, "vpn", "", "Available");
    let (rec, _) = reconciler(&fake, cfg());
    assert!(rec.sync(Some(net(SUBNET))).await.is_ready());
    assert!(fake
        .entries_in("vtb-b")
        .iter()
        .any(|e| e.destination_cidr_block == SUBNET));
    // vsw-2 moves to the system table: vtb-b routes nobody now.
    fake.with(|s| s.vswitches[1].route_table_id = Some("vtb-sys".into()));
    let r = rec.sync(Some(net(SUBNET))).await;
    assert!(r.is_ready(), "{r:?}");
    let left: Vec<String> = fake
        .entries_in("vtb-b")
        .into_iter()
        .map(|e| e.route_entry_id)
        .collect();
    assert_eq!(
        left,
        vec![user],
        "only the unmarked route stays in the unbound table"
    );
    assert!(fake
        .entries_in("vtb-sys")
        .iter()
        .any(|e| e.destination_cidr_block == SUBNET));
}
