//! The API client against a loopback HTTP server: signatures as received on the wire, pagination,
//! retry and backoff with rate-limit hints, error classes, timeouts, and no secret in any output.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{recording_sleeper, verify_signature, Reply, TestServer};
use crossdock_alibaba::*;
use serde_json::json;

const SECRET: &str = "test-secret-value-123";
const TOKEN: &str = "sts-token-value-456";

fn static_creds(sts: bool) -> Arc<CredentialsProvider> {
    Arc::new(CredentialsProvider::fixed(Credentials {
        access_key_id: if sts { "STS.AKID" } else { "LTAIAKID" }.into(),
        access_key_secret: Secret::new(SECRET),
        security_token: sts.then(|| Secret::new(TOKEN)),
        expiration: None,
        source: CredentialSource::Environment,
    }))
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(800),
        max_elapsed: Duration::from_secs(60),
        max_hint: Duration::from_secs(10),
    }
}

/// A create request for 10.1.0.0/24 → i-1 in vtb-1, marked as crossdock's.
fn route_to_i1() -> CreateRouteEntry {
    CreateRouteEntry {
        route_table_id: "vtb-1".into(),
        destination_cidr_block: "10.1.0.0/24".into(),
        next_hop_id: "i-1".into(),
        name: "crossdock".into(),
        description: "crossdock:i-1".into(),
        client_token: client_token("i-1", "10.1.0.0/24", "vtb-1", 0),
    }
}

fn client_for(
    server: &TestServer,
    sts: bool,
    retry: RetryPolicy,
) -> (Client, Arc<std::sync::Mutex<Vec<Duration>>>) {
    let (sleeper, log) = recording_sleeper();
    let opts = ClientOptions {
        vpc_endpoint: server.url(),
        ecs_endpoint: server.url(),
        timeout: Duration::from_secs(5),
        retry,
        ..ClientOptions::new("cn-test-1")
    };
    let c = Client::new(opts, static_creds(sts), Arc::new(CallCounters::default()))
        .unwrap()
        .with_sleeper(sleeper);
    (c, log)
}

#[tokio::test]
async fn requests_are_signed_as_received_on_the_wire() {
    let server = TestServer::start(|r| {
        if let Err(e) = verify_signature(r, SECRET) {
            return Reply::error(400, "SignatureDoesNotMatch", &e);
        }
        Reply::json(
            json!({"RequestId": "r1", "VpcId": "vpc-1", "CidrBlock": "192.168.0.0/16",
            "SecondaryCidrBlocks": {"SecondaryCidrBlock": ["172.20.0.0/16"]}}),
        )
    })
    .await;
    for sts in [false, true] {
        let (c, _) = client_for(&server, sts, fast_retry());
        let attr = c.describe_vpc_attribute("vpc-1").await.unwrap();
        assert_eq!(attr.cidr_block, "192.168.0.0/16");
        assert_eq!(attr.secondary_cidr_blocks, ["172.20.0.0/16"]);
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/");
        assert_eq!(r.header("host"), Some(server.addr.to_string().as_str()));
        assert_eq!(r.header("x-acs-action"), Some("DescribeVpcAttribute"));
        assert_eq!(r.header("x-acs-version"), Some("2016-04-28"));
        assert_eq!(r.param("RegionId"), Some("cn-test-1"));
        assert_eq!(r.param("VpcId"), Some("vpc-1"));
        assert_eq!(r.header("accept"), Some("application/json"));
        let date = r.header("x-acs-date").unwrap();
        assert!(
            chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
            "{date}"
        );
    }
    // Plain AccessKey: no token headers. STS: both token headers, both signed.
    assert!(reqs[0].header("x-acs-security-token").is_none());
    assert_eq!(reqs[1].header("x-acs-security-token"), Some(TOKEN));
    assert_eq!(reqs[1].header("x-acs-accesskey-id"), Some("STS.AKID"));
    let signed = crossdock_acs3::parse_authorization(reqs[1].header("authorization").unwrap())
        .unwrap()
        .signed_headers;
    assert!(signed.contains(&"x-acs-security-token".to_string()));
    assert!(signed.contains(&"x-acs-accesskey-id".to_string()));
    assert!(signed.contains(&"host".to_string()));
    // Nonces differ between requests.
    assert_ne!(
        reqs[0].header("x-acs-signature-nonce"),
        reqs[1].header("x-acs-signature-nonce")
    );
}

#[tokio::test]
async fn a_tampered_signature_is_detected_by_the_verifier() {
    // Guards the verifier used above: a request signed with another secret must fail it.
    let server = TestServer::start(|r| match verify_signature(r, "another-secret") {
        Ok(_) => Reply::json(json!({"RequestId": "r"})),
        Err(e) => Reply::error(400, "SignatureDoesNotMatch", &e),
    })
    .await;
    let (c, _) = client_for(&server, true, fast_retry());
    let err = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        server.requests().len(),
        1,
        "permanent errors are not retried"
    );
}

#[tokio::test]
async fn route_entry_listing_follows_next_token() {
    let server = TestServer::start(|r| {
        let token = r.param("NextToken").unwrap_or("");
        let (ids, next) = match token {
            "" => (vec!["rte-1", "rte-2"], "t1"),
            "t1" => (vec!["rte-3", "rte-4"], "t2"),
            "t2" => (vec!["rte-5"], ""),
            other => panic!("unexpected token {other}"),
        };
        let entries: Vec<_> = ids
            .iter()
            .map(|id| json!({"RouteEntryId": id, "RouteTableId": "vtb-1", "DestinationCidrBlock": "10.9.0.0/24",
                "Type": "Custom", "Status": "Available", "RouteEntryName": "crossdock",
                "NextHops": {"NextHop": [{"NextHopType": "Instance", "NextHopId": "i-1"}]}}))
            .collect();
        Reply::json(json!({"RequestId": "r", "NextToken": next, "RouteEntrys": {"RouteEntry": entries}}))
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let filter = RouteEntryFilter {
        next_hop_id: Some("i-1".into()),
        route_entry_type: Some("Custom".into()),
        ..Default::default()
    };
    let entries = c.describe_route_entry_list("vtb-1", &filter).await.unwrap();
    let ids: Vec<_> = entries.iter().map(|e| e.route_entry_id.as_str()).collect();
    assert_eq!(ids, ["rte-1", "rte-2", "rte-3", "rte-4", "rte-5"]);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.param("RouteTableId"), Some("vtb-1"));
        assert_eq!(r.param("NextHopId"), Some("i-1"));
        assert_eq!(r.param("RouteEntryType"), Some("Custom"));
        assert_eq!(r.param("MaxResult"), Some("100"));
    }
    assert_eq!(c.counters().count("DescribeRouteEntryList", "ok"), 3);
}

#[tokio::test]
async fn route_table_and_vswitch_listings_page_by_total_count() {
    let server = TestServer::start(|r| {
        let page: usize = r.param("PageNumber").unwrap().parse().unwrap();
        let size: usize = r.param("PageSize").unwrap().parse().unwrap();
        let total = 53usize;
        let range = ((page - 1) * size)..(page * size).min(total);
        match r.action() {
            "DescribeRouteTableList" => {
                let items: Vec<_> = range
                    .map(|i| json!({"RouteTableId": format!("vtb-{i}"), "RouteTableType": if i == 0 {"System"} else {"Custom"}}))
                    .collect();
                Reply::json(json!({"TotalCount": total, "PageNumber": page, "RouterTableList": {"RouterTableListType": items}}))
            }
            "DescribeVSwitches" => {
                let items: Vec<_> = range
                    .map(|i| json!({"VSwitchId": format!("vsw-{i}"), "CidrBlock": format!("192.168.{i}.0/24"),
                        "RouteTable": {"RouteTableId": "vtb-0", "RouteTableType": "System"}}))
                    .collect();
                Reply::json(json!({"TotalCount": total.to_string(), "VSwitches": {"VSwitch": items}}))
            }
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let tables = c.describe_route_table_list("vpc-1").await.unwrap();
    assert_eq!(tables.len(), 53);
    assert!(tables[0].is_system());
    let vsws = c.describe_vswitches("vpc-1").await.unwrap();
    assert_eq!(vsws.len(), 53);
    assert_eq!(vsws[52].cidr_block, "192.168.52.0/24");
    assert_eq!(vsws[0].route_table_id.as_deref(), Some("vtb-0"));
    assert_eq!(server.requests().len(), 4, "two pages of 50 each");
}

#[tokio::test]
async fn retryable_errors_are_retried_with_growing_jittered_backoff() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let server = TestServer::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::error(400, "TaskConflict", "The operation is too frequent"),
        1 => Reply::error(400, "IncorrectRouteEntryStatus", "pending"),
        2 => Reply::error(503, "ServiceUnavailable", "busy"),
        _ => Reply::json(json!({"RequestId": "r", "RouteEntryId": "rte-new"})),
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    let req = route_to_i1();
    assert_eq!(c.create_route_entry(&req).await.unwrap(), "rte-new");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    // Every attempt carries the same ClientToken: the retried create is idempotent.
    let tokens: std::collections::BTreeSet<_> = reqs
        .iter()
        .map(|r| r.param("ClientToken").unwrap())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(reqs[0].param("NextHopType"), Some("Instance"));
    assert_eq!(reqs[0].param("RouteEntryName"), Some("crossdock"));
    assert_eq!(reqs[0].param("Description"), Some("crossdock:i-1"));
    let sleeps = sleeps.lock().unwrap().clone();
    assert_eq!(sleeps.len(), 3);
    // Equal jitter: retry k waits within [c_k/2, c_k] with c_k = 100ms * 2^(k-1).
    for (k, d) in sleeps.iter().enumerate() {
        let ceiling = Duration::from_millis(100 << k);
        assert!(*d >= ceiling / 2 && *d <= ceiling, "retry {k}: {d:?}");
    }
    let counts = c.counters();
    assert_eq!(counts.count("CreateRouteEntry", "retryable"), 3);
    assert_eq!(counts.count("CreateRouteEntry", "ok"), 1);
    assert_eq!(counts.retries, 3);
    assert_eq!(counts.by_host.get(&server.addr.to_string()), Some(&4));
}

#[tokio::test]
async fn throttling_honours_the_servers_time_left_hint() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let server = TestServer::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
        .with_header(
            "x-ratelimit-user-api",
            "Limit:100,Remain:0,TimeLeft:1500,Reset:1",
        ),
        _ => Reply::json(json!({"RequestId": "r"})),
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    c.delete_route_entry("rte-1").await.unwrap();
    assert_eq!(server.requests().len(), 2);
    let sleeps = sleeps.lock().unwrap().clone();
    assert_eq!(
        sleeps,
        [Duration::from_millis(1500)],
        "the hint beats our 100ms backoff"
    );
    assert_eq!(c.counters().throttled, 1);
}

#[tokio::test]
async fn after_throttling_every_call_waits_in_a_window_that_closes_with_successes() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    // Three throttled answers, then the account has room again.
    let server = TestServer::start(move |_| {
        if n2.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply::error(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
        } else {
            Reply::json(json!({"RequestId": "r", "RouteEntryId": "rte-new"}))
        }
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    assert_eq!(c.throttle_window(), Duration::ZERO, "closed at first");
    c.delete_route_entry("rte-1").await.unwrap();
    assert_eq!(server.requests().len(), 4);
    // Throttled thrice: 1 s, 2 s, 4 s; one success halves it.
    assert_eq!(c.throttle_window(), Duration::from_secs(2));
    let first_call: Vec<Duration> = std::mem::take(&mut *sleeps.lock().unwrap());
    assert_eq!(first_call.len(), 3, "{first_call:?}");
    assert!(first_call.iter().all(|d| *d <= Duration::from_secs(4)));

    // A new call (not a retry) waits in the window before its first attempt; the window keeps
    // closing with every answer that is not throttled.
    c.delete_route_entry("rte-2").await.unwrap();
    let second_call: Vec<Duration> = std::mem::take(&mut *sleeps.lock().unwrap());
    assert!(second_call.len() <= 1, "{second_call:?}");
    assert!(second_call.iter().all(|d| *d <= Duration::from_secs(2)));
    assert_eq!(c.throttle_window(), Duration::from_secs(1));
    // A route write whose caller paces its own retries goes out at once, gate open or not.
    let req = route_to_i1();
    assert_eq!(c.create_route_entry_once(&req).await.unwrap(), "rte-new");
    assert!(sleeps.lock().unwrap().is_empty(), "the write was held back");
    assert_eq!(c.throttle_window(), Duration::ZERO, "but counted");
    sleeps.lock().unwrap().clear();
    c.delete_route_entry("rte-5").await.unwrap();
    assert!(
        sleeps.lock().unwrap().is_empty(),
        "a closed gate never waits"
    );
    assert_eq!(server.requests().len(), 7);
}

#[tokio::test]
async fn permanent_duplicate_and_not_found_are_not_retried() {
    let server = TestServer::start(|r| match r.param("RouteEntryId").unwrap_or("") {
        "rte-quota" => Reply::error(400, "QuotaExceeded", "route entry quota exceeded"),
        "rte-ram" => Reply::error(
            403,
            "Forbidden.RAM",
            "User not authorized to operate on the specified resource.",
        ),
        "rte-gone" => Reply::error(404, "InvalidRouteEntry.NotFound", "not found"),
        _ => Reply::error(400, "InvalidCIDRBlock.Duplicate", "exists"),
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    let e = c.delete_route_entry("rte-quota").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.fix().contains("Quota Center"));
    let e = c.delete_route_entry("rte-ram").await.unwrap_err();
    assert_eq!(e.denied_action().as_deref(), Some("vpc:DeleteRouteEntry"));
    assert!(e.to_string().contains("vpc:DeleteRouteEntry"), "{e}");
    assert!(
        e.to_string().contains("req-test"),
        "request id for support: {e}"
    );
    let e = c.delete_route_entry("rte-gone").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound);
    let e = c.delete_route_entry("rte-dup").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Duplicate);
    assert_eq!(server.requests().len(), 4, "one attempt each");
    assert!(sleeps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_counts_them() {
    let server = TestServer::start(|_| Reply::text(502, "<html>bad gateway</html>")).await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    let e = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    assert_eq!(e.code(), Some("HTTP502"));
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(server.requests().len(), 5);
    let sleeps = sleeps.lock().unwrap().clone();
    assert_eq!(sleeps.len(), 4);
    // Capped: never above max_backoff.
    assert!(sleeps.iter().all(|d| *d <= Duration::from_millis(800)));
    assert_eq!(c.counters().count("DescribeVpcAttribute", "retryable"), 5);
}

#[tokio::test]
async fn the_time_budget_stops_retries_before_a_long_hint() {
    let server = TestServer::start(|_| {
        Reply::error(400, "Throttling", "slow down").with_header("retry-after", "8")
    })
    .await;
    let retry = RetryPolicy {
        max_elapsed: Duration::from_secs(20),
        ..fast_retry()
    };
    let (c, sleeps) = client_for(&server, false, retry);
    assert!(c.describe_vpc_attribute("vpc-1").await.is_err());
    // 8 s + 8 s fit in 20 s, a third 8 s wait does not.
    assert_eq!(sleeps.lock().unwrap().clone(), [Duration::from_secs(8); 2]);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn the_shared_retry_budget_stops_a_retry_storm() {
    let server = TestServer::start(|_| Reply::error(500, "InternalError", "boom")).await;
    let (sleeper, _) = recording_sleeper();
    let opts = ClientOptions {
        vpc_endpoint: server.url(),
        ecs_endpoint: server.url(),
        retry: fast_retry(),
        retry_budget: 12, // two retries' worth
        ..ClientOptions::new("cn-test-1")
    };
    let c = Client::new(opts, static_creds(false), Arc::new(CallCounters::default()))
        .unwrap()
        .with_sleeper(sleeper);
    assert!(c.describe_vpc_attribute("vpc-1").await.is_err());
    assert!(c.describe_vpc_attribute("vpc-1").await.is_err());
    // First call: 1 + 2 retries; second call: first attempt only (budget empty).
    assert_eq!(server.requests().len(), 4);
    assert_eq!(c.counters().budget_exhausted, 2);
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable_transport_errors() {
    let server = TestServer::start(|_| Reply::hang()).await;
    let (sleeper, sleeps) = recording_sleeper();
    let opts = ClientOptions {
        vpc_endpoint: server.url(),
        ecs_endpoint: server.url(),
        timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            max_attempts: 2,
            ..fast_retry()
        },
        ..ClientOptions::new("cn-test-1")
    };
    let c = Client::new(
        opts.clone(),
        static_creds(false),
        Arc::new(CallCounters::default()),
    )
    .unwrap()
    .with_sleeper(sleeper.clone());
    let e = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(sleeps.lock().unwrap().len(), 1);
    assert_eq!(c.counters().count("DescribeVpcAttribute", "transport"), 2);

    // A port nobody listens on (bound, then closed).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let c = Client::new(
        ClientOptions {
            vpc_endpoint: dead.clone(),
            ..opts
        },
        static_creds(false),
        Arc::new(CallCounters::default()),
    )
    .unwrap()
    .with_sleeper(sleeper);
    let e = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert!(
        e.to_string().contains(dead.trim_start_matches("http://")),
        "{e}"
    );
}

#[tokio::test]
async fn real_sleeps_happen_between_attempts() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let server = TestServer::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 | 1 => Reply::error(400, "OperationConflict", "busy"),
        _ => Reply::json(json!({"RequestId": "r"})),
    })
    .await;
    let opts = ClientOptions {
        vpc_endpoint: server.url(),
        ecs_endpoint: server.url(),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(40),
            ..fast_retry()
        },
        ..ClientOptions::new("cn-test-1")
    };
    let c = Client::new(opts, static_creds(false), Arc::new(CallCounters::default())).unwrap();
    let t = std::time::Instant::now();
    c.describe_vpc_attribute("vpc-1").await.unwrap();
    // Waits of at least 20 ms and 40 ms (half of 40 and 80).
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn ecs_calls_use_the_ecs_version_and_parameters() {
    let server = TestServer::start(|r| match r.action() {
        "DescribeNetworkInterfaces" => Reply::json(json!({"RequestId": "r", "NextToken": "",
            "NetworkInterfaceSets": {"NetworkInterfaceSet": [
                {"NetworkInterfaceId": "eni-1", "InstanceId": "i-1", "Type": "Primary", "SourceDestCheck": true}]}})),
        "ModifyNetworkInterfaceAttribute" => Reply::json(json!({"RequestId": "r"})),
        other => panic!("unexpected {other}"),
    })
    .await;
    let (c, _) = client_for(&server, true, fast_retry());
    let eni = c.describe_network_interface("eni-1").await.unwrap();
    assert_eq!(eni.source_dest_check, Some(true));
    c.modify_source_dest_check("eni-1", false).await.unwrap();
    let reqs = server.requests();
    assert!(reqs
        .iter()
        .all(|r| r.header("x-acs-version") == Some("2014-05-26")));
    assert_eq!(reqs[0].param("NetworkInterfaceId.1"), Some("eni-1"));
    assert_eq!(reqs[1].param("NetworkInterfaceId"), Some("eni-1"));
    assert_eq!(reqs[1].param("SourceDestCheck"), Some("false"));
    assert!(reqs.iter().all(|r| verify_signature(r, SECRET).is_ok()));
}

#[tokio::test]
async fn no_secret_in_debug_display_or_errors() {
    let server = TestServer::start(|_| Reply::error(403, "Forbidden.RAM", "denied")).await;
    let (c, _) = client_for(&server, true, fast_retry());
    let e = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    for text in [
        format!("{c:?}"),
        format!("{e}"),
        format!("{e:?}"),
        format!("{:?}", c.credential_status()),
        serde_json::to_string(&c.credential_status()).unwrap(),
    ] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}
