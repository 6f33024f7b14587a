//! Fleet mode against the in-memory VPC: batches, turns, cleanup of released hosts, evidence.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdock_alibaba::{Identity, Sleeper};

use crate::fake::{fleet_tag, FakeCloud, Op, ME};
use crate::fleet::FleetSettings;
use crate::*;
use crossdock_status::Reason;

const TABLE: &str = "vtb-sys";

fn identity(id: &str, ip: &str) -> Identity {
    Identity {
        instance_id: id.into(),
        region_id: "cn-test-1".into(),
        vpc_id: "vpc-1".into(),
        vswitch_id: "vsw-1".into(),
        private_ip: ip.into(),
        mac: String::new(),
        eni_id: "eni-1".into(),
    }
}

fn settings(grace: Duration) -> FleetSettings {
    FleetSettings {
        tag: fleet_tag(),
        grace,
        max_deletes: 20,
        // Every pass sweeps (the agent's default is a minute).
        sweep_interval: Duration::ZERO,
        batch_slot: Duration::from_millis(1500),
        host_ranges: Vec::new(),
        cluster: vec!["10.0.0.0/8".parse().unwrap()],
        prefix_len: 24,
        account_rate: 20,
    }
}

type Sleeps = Arc<Mutex<Vec<Duration>>>;

fn agent(fake: &Arc<FakeCloud>, id: &str, ip: &str, grace: Duration) -> (RouteReconciler, Sleeps) {
    agent_with(fake, id, ip, |c| c.fleet = Some(settings(grace)))
}

fn agent_with(
    fake: &Arc<FakeCloud>,
    id: &str,
    ip: &str,
    edit: impl FnOnce(&mut RoutesConfig),
) -> (RouteReconciler, Sleeps) {
    let log: Sleeps = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let sleeper: Sleeper = Arc::new(move |d| {
        l.lock().unwrap().push(d);
        Box::pin(async {})
    });
    let mut cfg = RoutesConfig::default();
    edit(&mut cfg);
    let cloud: Arc<dyn RouteCloud> = fake.clone();
    (
        RouteReconciler::new(cloud, cfg, identity(id, ip)).with_sleeper(sleeper),
        log,
    )
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Three running members (this host .11, .12, .13) and an empty table.
fn three_members() -> Arc<FakeCloud> {
    let fake = Arc::new(FakeCloud::standard());
    fake.add_member(ME, ip("192.168.1.11"));
    fake.add_member("i-b", ip("192.168.1.12"));
    fake.add_member("i-c", ip("192.168.1.13"));
    fake
}

fn destinations(fake: &FakeCloud) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fake
        .entries_in(TABLE)
        .into_iter()
        .filter(|e| e.entry_type == "Custom")
        .map(|e| {
            let hop = e.instance_next_hop().unwrap_or_default().to_string();
            (e.destination_cidr_block, hop)
        })
        .collect();
    v.sort();
    v
}

const MY_SUBNET: &str = "10.1.11.0/24";

/// Route writes of every kind the fake saw (the ENI's check is not a route).
fn route_writes(fake: &FakeCloud) -> usize {
    [Op::Create, Op::Delete, Op::CreateBatch, Op::DeleteBatch]
        .into_iter()
        .map(|op| fake.count(op))
        .sum()
}

#[tokio::test]
async fn one_batch_routes_the_whole_fleet_and_the_next_host_writes_nothing() {
    let fake = three_members();
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(300));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::CreateBatch), 1);
    assert_eq!(fake.count(Op::Create), 0, "no single writes in fleet mode");
    assert_eq!(
        destinations(&fake),
        vec![
            ("10.1.11.0/24".into(), ME.into()),
            ("10.1.12.0/24".into(), "i-b".into()),
            ("10.1.13.0/24".into(), "i-c".into()),
        ]
    );
    let entry = fake
        .entries_in(TABLE)
        .into_iter()
        .find(|e| e.destination_cidr_block == "10.1.12.0/24")
        .unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.description.as_str()),
        ("crossdock", "crossdock:i-b")
    );

    let (b, _) = agent(&fake, "i-b", "192.168.1.12", Duration::from_secs(300));
    let report = b.sync(Some("10.1.12.0/24".parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(
        route_writes(&fake),
        1,
        "a host whose route exists makes no route write (the one is the first host's batch)"
    );
    let fleet = report.fleet.expect("fleet status");
    assert_eq!((fleet.members, fleet.running), (3, 3));
    assert!(fleet.routes_missing.is_empty());
}

#[tokio::test]
async fn a_host_waits_its_turn_and_skips_the_write_when_an_earlier_batch_covered_it() {
    let fake = three_members();
    // i-b is first among the missing (i-b < i-c < i-me): it writes at once, for everyone.
    let (b, b_sleeps) = agent(&fake, "i-b", "192.168.1.12", Duration::from_secs(300));
    let report = b.sync(Some("10.1.12.0/24".parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert!(!b_sleeps
        .lock()
        .unwrap()
        .contains(&Duration::from_millis(1500)));
    // This host, later in the same batch, would have waited one slot; its route is there now.
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(300));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(route_writes(&fake), 1, "only i-b's batch: {report:?}");
}

#[tokio::test]
async fn a_refused_batch_is_retried_after_a_backoff_and_a_re_read() {
    let fake = three_members();
    fake.fail_next(Op::CreateBatch, "TaskConflict");
    let (me, sleeps) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(300));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::CreateBatch), 2);
    assert_eq!(destinations(&fake).len(), 3);
    assert!(!sleeps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn released_hosts_routes_wait_for_the_grace_period() {
    let fake = three_members();
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(3600));
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    fake.release_instance("i-c");
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(fake.count(Op::DeleteBatch), 0);
    let fleet = report.fleet.unwrap();
    assert_eq!(fleet.stale_routes.len(), 1);
    assert_eq!(fleet.stale_routes[0].instance_id, "i-c");
    assert_eq!(fleet.stale_routes[0].waiting_for, "grace_period");
    assert!(report
        .retry_after
        .is_some_and(|d| d <= Duration::from_secs(3601)));
}

#[tokio::test]
async fn released_hosts_routes_go_after_the_grace_period_and_nothing_else_does() {
    let fake = three_members();
    fake.add_entry(TABLE, "172.20.0.0/16", "i-c", "", "hand-made", "Available");
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::ZERO);
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    let before: Vec<String> = fake
        .entries_in(TABLE)
        .iter()
        .map(|e| e.route_entry_id.clone())
        .collect();
    fake.release_instance("i-c");
    fake.stop_instance("i-b");
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(fake.count(Op::DeleteBatch), 1);
    let after = destinations(&fake);
    assert!(
        after.contains(&("10.1.12.0/24".into(), "i-b".into())),
        "a stopped member keeps its route"
    );
    assert!(!after.contains(&("10.1.13.0/24".into(), "i-c".into())));
    assert!(
        after.contains(&("172.20.0.0/16".into(), "i-c".into())),
        "unmarked routes are never touched"
    );
    let kept: Vec<String> = fake
        .entries_in(TABLE)
        .iter()
        .map(|e| e.route_entry_id.clone())
        .collect();
    assert!(
        kept.iter().all(|id| before.contains(id)),
        "survivors keep their entry ids"
    );
    assert_eq!(me.metrics().fleet_routes_deleted, 1);
}

#[tokio::test]
async fn an_untagged_instance_keeps_its_route() {
    let fake = three_members();
    fake.add_instance("i-untagged", ip("192.168.1.20"), &[]);
    fake.add_entry(
        TABLE,
        "10.1.20.0/24",
        "i-untagged",
        "crossdock",
        "crossdock:i-untagged",
        "Available",
    );
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::ZERO);
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(fake.count(Op::DeleteBatch), 0);
}

#[tokio::test]
async fn an_answer_that_does_not_show_this_host_deletes_nothing() {
    let fake = Arc::new(FakeCloud::standard());
    // This host is not an instance of the fake: every by-id answer lacks it.
    fake.add_member("i-b", ip("192.168.1.12"));
    fake.add_ours(TABLE, MY_SUBNET);
    fake.add_entry(
        TABLE,
        "10.1.13.0/24",
        "i-gone",
        "crossdock",
        "crossdock:i-gone",
        "Available",
    );
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::ZERO);
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(fake.count(Op::DeleteBatch), 0);
    assert!(destinations(&fake).contains(&("10.1.13.0/24".into(), "i-gone".into())));
}

#[tokio::test]
async fn a_new_host_on_a_released_hosts_ip_replaces_the_stale_route_at_once() {
    let fake = Arc::new(FakeCloud::standard());
    fake.add_member(ME, ip("192.168.1.11"));
    let stale = fake.add_entry(
        TABLE,
        MY_SUBNET,
        "i-old",
        "crossdock",
        "crossdock:i-old",
        "Available",
    );
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(3600));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(destinations(&fake), vec![(MY_SUBNET.into(), ME.into())]);
    assert!(fake
        .entries_in(TABLE)
        .iter()
        .all(|e| e.route_entry_id != stale));
}

#[tokio::test]
async fn a_live_instances_route_on_my_subnet_is_a_conflict() {
    let fake = three_members();
    fake.add_instance("i-other", ip("192.168.1.30"), &[]);
    fake.add_entry(
        TABLE,
        MY_SUBNET,
        "i-other",
        "crossdock",
        "crossdock:i-other",
        "Available",
    );
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::ZERO);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(report.route.reason, Reason::RouteConflict, "{report:?}");
    assert!(destinations(&fake).contains(&(MY_SUBNET.into(), "i-other".into())));
}

#[tokio::test]
async fn a_subnet_other_than_the_mapped_one_is_refused_before_any_write() {
    let fake = three_members();
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::ZERO);
    let report = me.sync(Some("10.200.0.0/24".parse().unwrap())).await;
    assert_eq!(report.route.reason, Reason::SubnetMismatch, "{report:?}");
    assert!(report.route.message.contains("10.1.11.0/24"));
    assert_eq!(route_writes(&fake), 0);
}

#[test]
fn turns_put_one_writer_at_the_head_of_each_batch_of_fifty() {
    use crate::fleet::turn_delay;
    use crate::fleet_plan::Missing;
    let missing: Vec<Missing> = (0..120)
        .map(|i| Missing {
            table_id: TABLE.into(),
            cidr: format!("10.2.{i}.0/24").parse().unwrap(),
            instance_id: format!("i-{i:03}"),
        })
        .collect();
    let slot = Duration::from_millis(1500);
    assert_eq!(turn_delay(&missing, "i-000", slot), Duration::ZERO);
    assert_eq!(
        turn_delay(&missing, "i-001", slot),
        slot,
        "covered by i-000's batch: looks after one slot"
    );
    assert_eq!(
        turn_delay(&missing, "i-050", slot),
        slot,
        "heads the second batch"
    );
    assert_eq!(turn_delay(&missing, "i-100", slot), slot * 2);
    assert_eq!(turn_delay(&missing, "i-119", slot), slot * 3);
    assert_eq!(turn_delay(&missing, "i-absent", slot), Duration::ZERO);
}

#[tokio::test]
async fn a_steady_state_sweep_reads_the_members_the_table_and_the_bindings_once() {
    let fake = three_members();
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(300));
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    // Members, the table (which also answers for this host's own route) and the vSwitches' bindings.
    assert_eq!((report.reads, report.writes), (3, 0), "{report:?}");
}

/// The agent's own timing: a sweep a minute, so passes in between are idle.
fn minute_sweeps(c: &mut RoutesConfig) {
    c.fleet = Some(FleetSettings {
        sweep_interval: Duration::from_secs(60),
        ..settings(Duration::from_secs(300))
    });
}

#[tokio::test]
async fn between_sweeps_a_pass_makes_no_call() {
    let fake = three_members();
    let (me, _) = agent_with(&fake, ME, "192.168.1.11", minute_sweeps);
    let subnet = Some(MY_SUBNET.parse().unwrap());
    me.sync(subnet).await; // writes the batch
    me.sync(subnet).await; // its route is known from the write: no sweep until the interval
    let before = fake.with(|s| s.log.len());
    let report = me.sync(subnet).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!((report.reads, report.writes), (0, 0), "{report:?}");
    assert_eq!(fake.with(|s| s.log.len()), before);
    assert!(
        report.fleet.is_some(),
        "the last sweep's view is still shown"
    );
}

#[tokio::test]
async fn a_booting_fleet_host_switches_the_eni_check_off_without_reading_it_first() {
    let fake = three_members();
    fake.with(|s| s.sdc.insert("eni-1".into(), Some(true)));
    let (me, _) = agent(&fake, ME, "192.168.1.11", Duration::from_secs(300));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!((fake.count(Op::GetSdc), fake.count(Op::SetSdc)), (0, 1));
    assert_eq!(fake.with(|s| s.sdc["eni-1"]), Some(false));
    assert_eq!(report.source_dest_check, crate::SourceDestCheck::Disabled);
    // Later passes read it (every rediscovery), and write only when it is back on.
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::SetSdc), 1);
}

#[tokio::test]
async fn a_booting_fleet_host_takes_the_vpc_cidr_from_metadata() {
    let fake = three_members();
    let (me, _) = agent_with(&fake, ME, "192.168.1.11", |c| {
        c.fleet = Some(settings(Duration::from_secs(300)));
        c.known_vpc_cidr = Some("192.168.0.0/16".parse().unwrap());
    });
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::VpcCidrs), 0);
    // Per-host mode reads it as before.
    let fake = three_members();
    let (me, _) = agent_with(&fake, ME, "192.168.1.11", |c| {
        c.known_vpc_cidr = Some("192.168.0.0/16".parse().unwrap());
    });
    me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!(fake.count(Op::VpcCidrs), 1);
}

/// The fake's one vSwitch (a /24) with 204 addresses in use: a VPC where a booting host draws.
fn large_vpc(fake: &FakeCloud) {
    fake.with(|s| s.vswitches[0].available_ip_count = Some(52));
}

/// Three members in a `large_vpc` whose account throttles the first vSwitch listing.
fn throttled_at_first_call() -> Arc<FakeCloud> {
    let fake = three_members();
    large_vpc(&fake);
    fake.fail_next(Op::VSwitches, "Throttling.User");
    fake.with(|s| s.throttled = true);
    fake
}

/// A booting agent of `large_vpc` whose draws all give `draw`.
fn booting(fake: &Arc<FakeCloud>, draw: f64) -> (RouteReconciler, Sleeps) {
    let (me, sleeps) = agent_with(fake, ME, "192.168.1.11", minute_sweeps);
    (me.with_draw(Arc::new(move || draw)), sleeps)
}

/// Reads filtered to this host's destination before any member listing: the boot turn's looks.
fn own_looks(fake: &FakeCloud) -> usize {
    fake.with(|s| {
        s.log
            .iter()
            .take_while(|(op, _)| *op != Op::Instances)
            .filter(|(op, d)| *op == Op::Entries && d.contains("Some(\"10.1.11.0/24\")"))
            .count()
    })
}

fn custom_listings(fake: &FakeCloud) -> usize {
    fake.with(|s| {
        s.log
            .iter()
            .filter(|(op, d)| {
                *op == Op::Entries && d.contains("destination_cidr_block: None, next_hop_id: None")
            })
            .count()
    })
}

#[tokio::test]
async fn in_a_throttled_boot_a_waiting_host_whose_route_is_in_place_reads_only_its_route() {
    let fake = three_members();
    large_vpc(&fake);
    let (b, _) = agent(&fake, "i-b", "192.168.1.12", Duration::from_secs(300));
    assert!(b
        .sync(Some("10.1.12.0/24".parse().unwrap()))
        .await
        .is_ready());
    fake.with(|s| {
        s.throttled = true;
        s.log.clear();
    });
    let (me, sleeps) = booting(&fake, 0.5);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::Instances), 0, "no member listing");
    // The vSwitches, the VPC's CIDRs (no metadata here) and its own route, nothing else.
    assert_eq!(report.reads, 3, "{report:?}");
    assert_eq!(own_looks(&fake), 1);
    assert_eq!(route_writes(&fake), 0, "i-b's batch covered it");
    // It waited for the sweepers (20 s for 204 addresses) and half the spread, then looked.
    let pacing = crate::boot::BootPacing {
        addresses_in_use: 204,
        account_rate: 20.0,
    };
    let waited = sleeps.lock().unwrap().clone();
    assert_eq!(waited.len(), 1, "{waited:?}");
    let expected = pacing.settle() + pacing.spread().mul_f64(0.5);
    assert!(
        waited[0] <= expected && waited[0] + Duration::from_secs(1) > expected,
        "{waited:?} against {expected:?}"
    );
    // The next pass within the sweep interval makes no call at all.
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!((report.reads, report.writes), (0, 0), "{report:?}");
}

#[tokio::test]
async fn in_a_throttled_boot_a_waiting_host_whose_route_is_still_missing_sweeps_and_writes_at_once()
{
    let fake = three_members();
    large_vpc(&fake);
    fake.with(|s| s.throttled = true);
    let (me, _) = booting(&fake, 0.99);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(own_looks(&fake), 1, "one look after the wait");
    assert_eq!(fake.count(Op::Instances), 1);
    assert_eq!(custom_listings(&fake), 1);
    assert_eq!(
        fake.count(Op::CreateBatch),
        1,
        "all three members' routes in one batch, without waiting for a turn (i-b heads the list)"
    );
    let log: Vec<Op> = fake.with(|s| s.log.iter().map(|(op, _)| *op).collect());
    let position = |op: Op| log.iter().position(|o| *o == op).unwrap();
    assert!(
        position(Op::CreateBatch) < position(Op::SetSdc),
        "throttled: the routes go before the ENI write: {log:?}"
    );
}

#[tokio::test]
async fn a_host_drawn_to_sweep_lists_the_fleet_without_looking_first() {
    let fake = three_members();
    large_vpc(&fake);
    fake.with(|s| s.throttled = true);
    let (me, sleeps) = booting(&fake, 0.0);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(own_looks(&fake), 0);
    assert_eq!(fake.count(Op::Instances), 1);
    assert_eq!(fake.count(Op::CreateBatch), 1);
    assert!(
        sleeps
            .lock()
            .unwrap()
            .iter()
            .all(|d| *d < Duration::from_secs(2)),
        "no turn wait: {:?}",
        sleeps.lock().unwrap()
    );
}

#[tokio::test]
async fn an_unthrottled_host_that_is_not_drawn_also_waits_its_turn_then_looks() {
    // Not throttled: a host of a fleet booting together may still be among the first to call.
    let fake = three_members();
    large_vpc(&fake);
    let (me, sleeps) = booting(&fake, 0.5);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(own_looks(&fake), 1);
    // Nobody wrote its route meanwhile: it swept and wrote itself after its turn.
    assert_eq!(fake.count(Op::CreateBatch), 1);
    let waited = sleeps.lock().unwrap().clone();
    let pacing = crate::boot::BootPacing {
        addresses_in_use: 204,
        account_rate: 20.0,
    };
    assert!(
        waited[0] + Duration::from_secs(1) > pacing.settle(),
        "{waited:?}"
    );
    let log: Vec<Op> = fake.with(|s| s.log.iter().map(|(op, _)| *op).collect());
    let position = |op: Op| log.iter().position(|o| *o == op).unwrap();
    assert!(
        position(Op::CreateBatch) < position(Op::SetSdc),
        "its ENI write waits for its turn too: {log:?}"
    );
}

#[tokio::test]
async fn in_a_vpc_without_address_counts_every_booting_host_sweeps_as_before() {
    let fake = three_members();
    fake.with(|s| s.throttled = true);
    let (me, _) = booting(&fake, 0.99);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(own_looks(&fake), 0, "no look before the member listing");
    assert!(fake.count(Op::Instances) >= 1);
}

#[tokio::test]
async fn a_host_covered_by_another_batch_does_not_sweep_again_at_once() {
    let fake = three_members();
    let (me, sleeps) = agent_with(&fake, ME, "192.168.1.11", minute_sweeps);
    // i-b heads the batch; this host waits one slot, in which i-b writes for everyone.
    let (b, _) = agent(&fake, "i-b", "192.168.1.12", Duration::from_secs(300));
    let writer = Arc::new(b);
    drop(sleeps);
    let me = me.with_sleeper(Arc::new(move |_| {
        let writer = writer.clone();
        Box::pin(async move {
            writer.sync(Some("10.1.12.0/24".parse().unwrap())).await;
        })
    }));
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::CreateBatch), 1, "only i-b wrote");
    let fleet = report.fleet.expect("fleet view");
    assert!(fleet.written_since, "the view predates i-b's batch");
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert_eq!((report.reads, report.writes), (0, 0), "{report:?}");
}

#[test]
fn batches_start_with_this_hosts_own_and_go_round() {
    let routes: Vec<crossdock_alibaba::NewRoute> = (0..120)
        .map(|i| crossdock_alibaba::NewRoute {
            route_table_id: "vtb-sys".into(),
            destination_cidr_block: format!("10.1.{i}.0/24"),
            next_hop_id: format!("i-{i:03}"),
            name: "crossdock".into(),
            description: String::new(),
        })
        .collect();
    let firsts = |id: &str| -> Vec<String> {
        crate::fleet::batches_from_own(&routes, id)
            .iter()
            .map(|b| b[0].next_hop_id.clone())
            .collect()
    };
    assert_eq!(firsts("i-010"), ["i-000", "i-050", "i-100"]);
    assert_eq!(firsts("i-075"), ["i-050", "i-100", "i-000"]);
    assert_eq!(firsts("i-119"), ["i-100", "i-000", "i-050"]);
    assert_eq!(firsts("i-elsewhere"), ["i-000", "i-050", "i-100"]);
    let sizes: Vec<usize> = crate::fleet::batches_from_own(&routes, "i-075")
        .iter()
        .map(|b| b.len())
        .collect();
    assert_eq!(sizes, [50, 20, 50]);
}

#[tokio::test]
async fn a_host_whose_first_call_is_throttled_waits_its_turn_then_looks_without_drawing_again() {
    let fake = throttled_at_first_call();
    // 0.5: not drawn at the throttled first call; the same draw after the turn would not matter.
    let (me, sleeps) = booting(&fake, 0.5);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(
        fake.count(Op::VSwitches),
        2,
        "once refused, once after the turn"
    );
    assert_eq!(own_looks(&fake), 1, "{:?}", fake.with(|s| s.log.clone()));
    let guess = crate::boot::BootPacing {
        addresses_in_use: crate::boot::BOOT_GUESS,
        account_rate: 20.0,
    };
    let waited = sleeps.lock().unwrap().clone();
    let expected = guess.settle() + guess.spread().mul_f64(0.5);
    assert!(
        waited[0] <= expected && waited[0] + Duration::from_secs(1) > expected,
        "the turn of a host that cannot know the VPC's size yet: {waited:?}"
    );
    // Its route was missing at its look, so it swept and wrote at once.
    assert_eq!(fake.count(Op::CreateBatch), 1);
}

#[tokio::test]
async fn a_host_drawn_at_its_throttled_first_call_reads_again_and_sweeps_without_a_turn() {
    let fake = throttled_at_first_call();
    let (me, sleeps) = booting(&fake, 0.0);
    let report = me.sync(Some(MY_SUBNET.parse().unwrap())).await;
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(fake.count(Op::VSwitches), 2);
    assert_eq!(
        own_looks(&fake),
        0,
        "a sweeper lists the fleet without looking first"
    );
    assert_eq!(fake.count(Op::CreateBatch), 1);
    assert!(
        sleeps
            .lock()
            .unwrap()
            .iter()
            .all(|d| *d < Duration::from_secs(2)),
        "no turn: {:?}",
        sleeps.lock().unwrap()
    );
}

#[test]
fn a_large_fleet_sweeps_about_eight_times_per_interval_in_all() {
    use crate::fleet::{own_sweep_interval, SWEEPS_PER_INTERVAL};
    let minute = Duration::from_secs(60);
    for members in [0, 1, SWEEPS_PER_INTERVAL] {
        assert_eq!(own_sweep_interval(minute, members), minute, "{members}");
    }
    assert_eq!(
        own_sweep_interval(minute, SWEEPS_PER_INTERVAL + 1),
        2 * minute
    );
    assert_eq!(own_sweep_interval(minute, 200), 25 * minute);
    // 200 members, each every 25 minutes: 8 sweeps a minute in all.
    let per_minute = 200.0 / (own_sweep_interval(minute, 200).as_secs_f64() / 60.0);
    assert!((per_minute - 8.0).abs() < 1e-9, "{per_minute}");
}

#[test]
fn a_covered_booting_hosts_first_sweep_comes_an_interval_on_spread_over_its_own_interval() {
    let minute = Duration::from_secs(60);
    // In a small fleet (own interval = the interval): exactly one interval after the turn.
    let t = crate::fleet::first_sweep_phase(minute, minute, 0.7);
    assert!(t.elapsed() < Duration::from_secs(1));
    // Own interval 25 minutes: the first sweep comes 1 to 25 minutes after the turn.
    let own = 25 * minute;
    for (draw, ago_secs) in [(0.0, 1440.0), (0.5, 720.0), (0.999, 1.44)] {
        let elapsed = crate::fleet::first_sweep_phase(minute, own, draw)
            .elapsed()
            .as_secs_f64();
        assert!(
            elapsed >= ago_secs - 0.01 && elapsed < ago_secs + 1.0,
            "{draw}: {elapsed}"
        );
    }
}
