//! End to end: the agents keep containers connected through the faults a real cluster meets, and
//! every fault ends with traffic back within a stated bound and the VPC route table exactly right.
//!
//! Faults that share a lab run one after the other in it, each with its own assertions:
//! - agent `kill -9` and restart (no route write at all), the metadata service down for 60 s with an
//!   agent restarted in the middle of it, the emulator (API + metadata) restarted;
//! - the API down for 2 minutes while the host side is attacked (dockerd restart, `iptables -F` of
//!   crossdock's chains and of DOCKER-USER) and the bip changes (new route in, old route out once the API
//!   is back) — the host side must not depend on the cloud;
//! - the API failing 30 % of calls with 300 ms latency (including lost responses after the write took
//!   effect) at boot, then STS credentials that live 30 s;
//! - ten hosts booting at once into a TaskConflict storm (serialised route writes) and throttling.
//!
//! Durations are the except where the behaviour is the same with less: see each constant.
//! Root only: reports a skip otherwise (`crossdock_lab::testing::skip`).

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::DockerVersion;
use crossdock_vpcsim::admin::{ErrorFault, Faults, Settings};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A restarted agent is healthy again: start-up, identity from metadata, one route read.
const RESTART_BOUND: Duration = Duration::from_secs(30);
/// The metadata service is down this long (the 60 s: long enough for the credentials'
/// retries to back off several times).
const METADATA_OUTAGE: Duration = Duration::from_secs(60);
/// After the metadata service is back: the agent's next identity/credentials attempt (its backoff is
/// capped well below this) plus one route read.
const METADATA_RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// After the emulator is back: the agents' next route resync ([`CLOUD_RESYNC_SECS`]) or retry.
const EMULATOR_RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// The API is down this long (the 2 minutes, not shortened: retry budgets and backoff ceilings
/// are exactly what a long outage exercises).
const API_OUTAGE: Duration = Duration::from_secs(120);
/// After the API is back: one retry (the reconciler waits at most 30 s after a failed pass), the create,
/// `Pending` → `Available`, and the delete of the old route.
const API_RECOVERY_BOUND: Duration = Duration::from_secs(90);
/// Host state repaired after dockerd restarted (a Docker reconnect event, else one host resync).
const DOCKERD_BOUND: Duration = Duration::from_secs(45);
/// Host state repaired after the chains were flushed: one host resync ([`HOST_RESYNC_SECS`]) plus room.
const FLUSH_BOUND: Duration = Duration::from_secs(20);
/// Registration with 30 % of calls failing and 300 ms added to each: several retried passes.
const FLAKY_BOUND: Duration = Duration::from_secs(150);
/// STS credentials live this long (the 30 s).
const CREDENTIAL_LIFETIME_SECS: u64 = 30;
/// Observe this many credential rotations (the issue says "for 3 minutes", i.e. ~6 rotations; two
/// rotations exercise the same refresh path and keep the suite short).
const ROTATIONS: usize = 2;
/// Bound for [`ROTATIONS`] rotations: the agent refreshes a 30 s credential 10 s before expiry.
const ROTATION_BOUND: Duration = Duration::from_secs(110);
/// Ten agents booting at once.
const STORM_HOSTS: usize = 10;
/// After the storm stops: each agent's retry (≤ 30 s) and ten serialised, throttled creates.
const STORM_BOUND: Duration = Duration::from_secs(150);

fn set_faults(lab: &crossdock_lab::Lab, f: Faults) {
    lab.admin_sync(move |c| async move { c.set_faults(&f).await })
        .expect("setting faults");
}

/// Samples `check` (about once a second, plus its own run time) for `duration`; panics at the first
/// failure with the lab's diagnosis. The window's length is the fault's duration, not a synchronisation.
fn observe_for(
    lab: &crossdock_lab::Lab,
    duration: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<(), String>,
) -> usize {
    let end = Instant::now() + duration;
    let mut samples = 0;
    while Instant::now() < end {
        if let Err(e) = check() {
            panic!(
                "{what}: failed after {samples} good samples: {e}\n{}",
                diagnosis(lab)
            );
        }
        samples += 1;
        let left = end.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
    samples
}

fn ids(routes: &[crossdock_vpcsim::model::RouteEntry]) -> std::collections::BTreeSet<String> {
    set(routes.iter().map(|r| r.route_entry_id.clone()))
}

#[test]
fn e2e_faults_a_host_side_repairs_while_the_api_is_down_then_a_bip_change() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_faults_a_host_side_repairs_while_the_api_is_down_then_a_bip_change");
    let mut children = Vec::new();
    {
        // Docker 28: its restart rewrites more of the rule set (raw-table drops) than 20.10 does.
        let mut lab = up(options(2, DockerVersion::V28));
        let c1 = container(&lab, 1, "c1");
        let c2 = container(&lab, 2, "c2");
        start_agents(&mut lab, &["h1", "h2"]);
        let (before, _) = wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], ROUTES_BOUND);
        assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);

        set_faults(
            &lab,
            Faults {
                api_down: true,
                ..Faults::default()
            },
        );
        let outage = Instant::now();

        // dockerd restarts (its containers die with it and are started again).
        children.push(restart_dockerd(&lab, 1, None));
        let c1 = restart_container(&lab, 1, "c1");
        let took = assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), DOCKERD_BOUND);
        eprintln!(
            "dockerd restart: connected again after {:.1} s",
            took.as_secs_f64()
        );
        assert!(has_crossdock_rules(&lab, 1, &lab.host(1).subnet));
        assert_narrow_firewall(&lab, 1);

        // Someone flushes crossdock's chains and DOCKER-USER.
        for argv in [
            &["iptables", "-w", "-F", "CROSSDOCK-FORWARD"][..],
            &["iptables", "-w", "-F", "DOCKER-USER"],
            &["iptables", "-w", "-t", "nat", "-F", "CROSSDOCK-POSTROUTING"],
            &["iptables", "-w", "-t", "raw", "-F", "CROSSDOCK-PREROUTING"],
        ] {
            host_sh(&lab, 2, argv);
        }
        let flushed = Instant::now();
        wait_until(
            &lab,
            "h2's rules restored after iptables -F",
            FLUSH_BOUND,
            || has_crossdock_rules(&lab, 2, &lab.host(2).subnet).then_some(()),
        );
        let took = assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), FLUSH_BOUND);
        eprintln!(
            "iptables -F: rules back and connected after {:.1} s",
            flushed.elapsed().as_secs_f64().max(took.as_secs_f64())
        );
        assert_narrow_firewall(&lab, 2);

        // None of that touched the route table (and could not: the API is down).
        assert_eq!(
            ids(&custom_routes(&lab)),
            ids(&before),
            "the route table changed"
        );

        // The bip changes while the API is still down: the host side follows at once, the route waits.
        let new_bip = "10.0.5.1/24";
        let new_subnet = "10.0.5.0/24";
        children.push(restart_dockerd(&lab, 1, Some(new_bip)));
        let c1 = restart_container(&lab, 1, "c1");
        assert!(
            c1.ip.starts_with("10.0.5."),
            "c1 after the bip change: {}",
            c1.ip
        );
        wait_until(&lab, "h1's rules for the new subnet", DOCKERD_BOUND, || {
            has_crossdock_rules(&lab, 1, new_subnet).then_some(())
        });
        wait_condition(&lab, 1, "route", DOCKERD_BOUND, |c| {
            c["state"].as_str().is_some_and(|s| s != "ready")
        });

        // The rest of the outage: both agents stay up and answer, the table stays as it was.
        let pids = [agent_pid_of(&lab, 1), agent_pid_of(&lab, 2)];
        assert!(pids.iter().all(Option::is_some), "agents running");
        let rest = API_OUTAGE.saturating_sub(outage.elapsed());
        observe_for(&lab, rest, "agents alive during the API outage", || {
            for i in [1, 2] {
                if agent_pid_of(&lab, i) != pids[i - 1] {
                    return Err(format!("h{i}'s agent exited"));
                }
                if status(&lab, i).is_none() {
                    return Err(format!("h{i}'s agent does not answer /status"));
                }
            }
            Ok(())
        });
        assert_eq!(ids(&custom_routes(&lab)), ids(&before));

        // The API is back: the new route in, the old one out, nothing else.
        set_faults(&lab, Faults::default());
        let want = vec![
            (new_subnet.to_string(), lab.host(1).instance_id.clone()),
            (lab.host(2).subnet.clone(), lab.host(2).instance_id.clone()),
        ];
        let (_, took) = wait_table(&lab, &want, &[], API_RECOVERY_BOUND);
        eprintln!("API back: table exact after {:.1} s", took.as_secs_f64());
        let took = assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);
        eprintln!("connected {:.1} s later", took.as_secs_f64());
        assert!(
            !has_crossdock_rules(&lab, 1, "10.0.0.0/24"),
            "h1 still has rules for its old subnet\n{}",
            iptables_save(&lab, 1)
        );
    }
    reap(children);
}

#[test]
fn e2e_faults_b_agent_crash_metadata_outage_emulator_restart() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_faults_b_agent_crash_metadata_outage_emulator_restart");
    let mut lab = up(options(2, DockerVersion::V20));
    let c1 = container(&lab, 1, "c1");
    let c2 = container(&lab, 2, "c2");
    start_agents(&mut lab, &["h1", "h2"]);
    let want = expected_table(&lab, &[1, 2]);
    let (before, _) = wait_table(&lab, &want, &[], ROUTES_BOUND);
    wait_ready(&lab, &[1, 2], ROUTES_BOUND);
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);

    // 1. kill -9 and restart: traffic never depended on the process; the restart writes nothing.
    let seq = call_seq(&lab);
    lab.agent_kill("h1").unwrap();
    assert_eq!(lab.agent_health("h1").0, "stopped");
    wait_ping(&lab, 1, "c1", &c2.ip, Duration::from_secs(10));
    wait_ping(&lab, 2, "c2", &c1.ip, Duration::from_secs(10));
    lab.agent_start("h1").unwrap();
    let h1 = lab.host(1).instance_id.clone();
    let (_, took) = wait_until(
        &lab,
        "h1's restarted agent read its route and is ready",
        RESTART_BOUND,
        || {
            let read = calls_since(&lab, seq).calls.iter().any(|c| {
                c.instance_id.as_deref() == Some(h1.as_str())
                    && c.action == "DescribeRouteEntryList"
                    && c.code == "Success"
            });
            (read && lab.agent_health("h1").0 == "ready").then_some(())
        },
    );
    eprintln!(
        "kill -9: ready again {:.1} s after the restart",
        took.as_secs_f64()
    );
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "a restart wrote:\n{}",
        describe_calls(&writes)
    );
    let (after, _) = wait_table(&lab, &want, &[], ROUTES_BOUND);
    assert_eq!(ids(&after), ids(&before), "the same route entries");
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);

    // 2. The metadata service is down for 60 s; every STS credential expires at its start, and h2's
    // agent crashes and restarts in the middle of it (it cannot even learn who it is).
    let seq = call_seq(&lab);
    set_faults(
        &lab,
        Faults {
            metadata_down: true,
            ..Faults::default()
        },
    );
    lab.admin_sync(|c| async move { c.expire_credentials().await })
        .unwrap();
    let outage = Instant::now();
    lab.agent_kill("h2").unwrap();
    lab.agent_start("h2").unwrap();
    let s = wait_condition(&lab, 2, "firewall", RESTART_BOUND, |c| {
        c["state"] == "ready"
    });
    assert_ne!(
        condition_state(&s, "route"),
        "ready",
        "h2 cannot have checked its route without the metadata service"
    );
    let samples = observe_for(
        &lab,
        METADATA_OUTAGE.saturating_sub(outage.elapsed()),
        "traffic during the metadata outage",
        || {
            if !crossdock_lab::demo::ping(&lab, 1, "c1", &c2.ip).unwrap_or(false) {
                return Err("c1 -> c2 ping lost".into());
            }
            if agent_pid_of(&lab, 2).is_none() {
                return Err("h2's agent exited".into());
            }
            Ok(())
        },
    );
    eprintln!("metadata outage: {samples} good traffic samples");
    set_faults(&lab, Faults::default());
    let back = Instant::now();
    for i in [1, 2] {
        wait_condition(&lab, i, "route", METADATA_RECOVERY_BOUND, |c| {
            c["state"] == "ready"
        });
        wait_condition(&lab, i, "credentials", METADATA_RECOVERY_BOUND, |c| {
            c["state"] == "ready"
        });
    }
    eprintln!(
        "metadata back: both agents ready after {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "the outage led to writes:\n{}",
        describe_calls(&writes)
    );
    let (after, _) = wait_table(&lab, &want, &[], ROUTES_BOUND);
    assert_eq!(ids(&after), ids(&before));
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);

    // 3. The emulator (API and metadata) restarts from its state file.
    lab.emulator_stop().unwrap();
    lab.emulator_start().unwrap();
    let restarted = Instant::now();
    let seq = 0; // the call log starts afresh with the process
    let h2 = lab.host(2).instance_id.clone();
    wait_until(
        &lab,
        "both agents read the restarted emulator",
        EMULATOR_RECOVERY_BOUND,
        || {
            let calls = calls_since(&lab, seq).calls;
            [&h1, &h2]
                .iter()
                .all(|i| {
                    calls.iter().any(|c| {
                        c.instance_id.as_deref() == Some(i.as_str())
                            && c.action == "DescribeRouteEntryList"
                            && c.code == "Success"
                    })
                })
                .then_some(())
        },
    );
    for i in [1, 2] {
        wait_condition(&lab, i, "route", EMULATOR_RECOVERY_BOUND, |c| {
            c["state"] == "ready"
        });
    }
    eprintln!(
        "emulator restart: agents ready after {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "the restart led to writes:\n{}",
        describe_calls(&writes)
    );
    let (after, _) = wait_table(&lab, &want, &[], ROUTES_BOUND);
    assert_eq!(ids(&after), ids(&before));
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);
}

#[test]
fn e2e_faults_c_flaky_api_at_boot_then_rotating_credentials() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_faults_c_flaky_api_at_boot_then_rotating_credentials");
    let mut opts = options(2, DockerVersion::V20);
    opts.emulator_settings = Some(Settings {
        pending_ms: PENDING_MS,
        credential_lifetime_secs: CREDENTIAL_LIFETIME_SECS,
        ..Settings::default()
    });
    let mut lab = up(opts);
    let c1 = container(&lab, 1, "c1");
    let c2 = container(&lab, 2, "c2");

    // 30 % errors and 300 ms on every call; creates lose their answer after taking effect 30 % of the
    // time (the retry must not create a second route).
    set_faults(
        &lab,
        Faults {
            latency_ms: BTreeMap::from([("*".to_string(), 300)]),
            errors: BTreeMap::from([
                (
                    "*".to_string(),
                    ErrorFault {
                        rate: 0.3,
                        ..ErrorFault::default()
                    },
                ),
                (
                    "CreateRouteEntry".to_string(),
                    ErrorFault {
                        rate: 0.3,
                        code: "InternalError".into(),
                        after_commit: true,
                    },
                ),
            ]),
            ..Faults::default()
        },
    );
    let seq = call_seq(&lab);
    start_agents(&mut lab, &["h1", "h2"]);
    let (_, took) = wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], FLAKY_BOUND);
    let log = calls_since(&lab, seq);
    let failed = log.calls.iter().filter(|c| c.code != "Success").count();
    eprintln!(
        "flaky API: table exact after {:.1} s, {} calls of which {failed} failed",
        took.as_secs_f64(),
        log.calls.len()
    );
    assert!(
        failed > 0,
        "the injected errors never hit: the fault was not active"
    );
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);
    set_faults(&lab, Faults::default());
    // The table can be exact while an agent is still in its backoff before replaying a create whose
    // answer was lost (InternalError after the commit): that replay is part of the flaky phase, so
    // wait until both agents have finished their passes before counting the rotation phase's calls.
    for i in [1, 2] {
        wait_condition(&lab, i, "route", RESTART_BOUND, |c| c["state"] == "ready");
    }

    // Credentials that live 30 s: the agents keep using fresh ones — ROTATIONS natural rotations, then
    // one forced early expiry (the credential in hand is rejected before the agent planned to renew it).
    let seq = call_seq(&lab);
    let h1 = lab.host(1).instance_id.clone();
    let keys_used = || {
        set(calls_since(&lab, seq)
            .calls
            .iter()
            .filter(|c| c.instance_id.as_deref() == Some(h1.as_str()) && c.code == "Success")
            .filter_map(|c| c.access_key_id.clone()))
    };
    let (keys, took) = wait_until(
        &lab,
        &format!("h1 using {} successive STS credentials", ROTATIONS + 1),
        ROTATION_BOUND,
        || {
            let keys = keys_used();
            (keys.len() > ROTATIONS).then_some(keys)
        },
    );
    eprintln!(
        "credentials: {} keys in {:.1} s: {keys:?}",
        keys.len(),
        took.as_secs_f64()
    );
    lab.admin_sync(|c| async move { c.expire_credentials().await })
        .unwrap();
    let (keys, took) = wait_until(
        &lab,
        "h1 using a new credential after a forced expiry",
        RESTART_BOUND,
        || {
            let now = keys_used();
            (now.len() > keys.len()).then_some(now)
        },
    );
    eprintln!(
        "forced expiry: a new key in use after {:.1} s",
        took.as_secs_f64()
    );
    assert!(keys.iter().all(|k| k.starts_with("STS.")), "{keys:?}");
    for i in [1, 2] {
        wait_condition(&lab, i, "credentials", RESTART_BOUND, |c| {
            c["state"] == "ready"
        });
        wait_condition(&lab, i, "route", RESTART_BOUND, |c| c["state"] == "ready");
    }
    let writes = writes_since(&lab, seq);
    assert!(
        writes.is_empty(),
        "rotation led to writes:\n{}",
        describe_calls(&writes)
    );
    wait_table(&lab, &expected_table(&lab, &[1, 2]), &[], ROUTES_BOUND);
    assert_connected(&lab, (1, "c1", &c1), (2, "c2", &c2), TRAFFIC_BOUND);
}

#[test]
fn e2e_faults_d_ten_hosts_boot_into_a_task_conflict_storm_and_throttling() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_faults_d_ten_hosts_boot_into_a_task_conflict_storm_and_throttling");
    let mut opts = options(0, DockerVersion::V20);
    opts.static_hosts = STORM_HOSTS; // no dockerd: the route side is what is under test
    opts.emulator_settings = Some(Settings {
        pending_ms: PENDING_MS,
        action_qps: BTreeMap::from([
            ("*".to_string(), 50),
            ("CreateRouteEntry".to_string(), 2),
            ("DescribeRouteEntryList".to_string(), 2),
        ]),
        ..Settings::default()
    });
    let mut lab = up(opts);
    set_faults(
        &lab,
        Faults {
            task_conflict_storm: true,
            ..Faults::default()
        },
    );
    let seq = call_seq(&lab);
    let names: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    start_agents(&mut lab, &names);

    // The storm until half of the hosts were refused at least once.
    wait_until(
        &lab,
        "TaskConflict answers to half of the hosts",
        STORM_BOUND,
        || {
            let hit = set(calls_since(&lab, seq)
                .calls
                .iter()
                .filter(|c| c.action == "CreateRouteEntry" && c.code == "TaskConflict")
                .filter_map(|c| c.instance_id.clone()));
            (hit.len() >= STORM_HOSTS / 2).then_some(())
        },
    );
    set_faults(&lab, Faults::default());
    let calm = Instant::now();
    let indexes: Vec<usize> = (1..=STORM_HOSTS).collect();
    let (_, took) = wait_table(&lab, &expected_table(&lab, &indexes), &[], STORM_BOUND);
    eprintln!(
        "storm over: {STORM_HOSTS} routes exact after {:.1} s",
        took.as_secs_f64()
    );
    for &i in &indexes {
        wait_condition(
            &lab,
            i,
            "route",
            STORM_BOUND
                .saturating_sub(calm.elapsed())
                .max(Duration::from_secs(30)),
            |c| c["state"] == "ready",
        );
    }
    let log = calls_since(&lab, seq);
    let count = |code: &str| log.calls.iter().filter(|c| c.code == code).count();
    eprintln!(
        "storm: {} calls, {} TaskConflict, {} throttled",
        log.calls.len(),
        count("TaskConflict"),
        count("Throttling.User")
    );
    assert!(
        count("Throttling.User") > 0,
        "throttling never hit: the limits were not in the way"
    );
}
