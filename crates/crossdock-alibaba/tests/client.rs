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
                        "AvailableIpAddressCount": 252 - i,
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
    assert_eq!(vsws[52].available_ip_count, Some(200));
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

/// The underlying error stays reachable through `source()`; `Display` is the same line as without it.
#[tokio::test]
async fn errors_keep_their_underlying_cause_as_source() {
    use std::error::Error as _;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let opts = ClientOptions {
        vpc_endpoint: dead,
        retry: RetryPolicy {
            max_attempts: 1,
            ..fast_retry()
        },
        ..ClientOptions::new("cn-test-1")
    };
    let c = Client::new(opts, static_creds(false), Arc::new(CallCounters::default())).unwrap();
    let e = c.describe_vpc_attribute("vpc-1").await.unwrap_err();
    let cause = e.source().expect("a transport error has a source");
    let reqwest_error = cause
        .downcast_ref::<reqwest::Error>()
        .expect("the HTTP client's error");
    assert!(reqwest_error.is_connect(), "{reqwest_error:?}");
    let Error::Transport {
        action,
        endpoint,
        kind,
        message,
        ..
    } = e.clone()
    else {
        panic!("{e:?}")
    };
    let without = Error::Transport {
        action,
        endpoint,
        kind,
        message,
        source: None,
    };
    assert_eq!(
        e.to_string(),
        without.to_string(),
        "Display ignores the source"
    );

    // A 2xx answer that is not JSON: the parser's error; one that is JSON but no object: none.
    let server = TestServer::start(|r| match r.param("VpcId") {
        Some("vpc-text") => Reply::text(200, "<html>proxy login</html>"),
        _ => Reply::json(json!([1, 2])),
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let e = c.describe_vpc_attribute("vpc-text").await.unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    assert!(e
        .source()
        .and_then(|s| s.downcast_ref::<serde_json::Error>())
        .is_some());
    assert_eq!(
        e.to_string(),
        "DescribeVpcAttribute: unreadable response: HTTP 200 with a body that is not a JSON object \
         — fix: the endpoint does not speak Alibaba's API: check cloud.vpc_endpoint / cloud.ecs_endpoint"
    );
    let e = c.describe_vpc_attribute("vpc-array").await.unwrap_err();
    assert!(
        matches!(e, Error::Decode { .. }) && e.source().is_none(),
        "{e:?}"
    );
    // An API error answer has no underlying error.
    let server = TestServer::start(|_| Reply::error(400, "QuotaExceeded", "full")).await;
    let (c, _) = client_for(&server, false, fast_retry());
    assert!(c
        .describe_vpc_attribute("vpc-1")
        .await
        .unwrap_err()
        .source()
        .is_none());
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

// ---- fleet mode: DescribeInstances, CreateRouteEntries, DeleteRouteEntries ----------------------

/// The request's parameters without the ones every call carries, sorted.
fn own_params(r: &common::Recorded) -> Vec<(String, String)> {
    let mut p: Vec<_> = r
        .query
        .iter()
        .filter(|(k, _)| k != "RegionId")
        .cloned()
        .collect();
    p.sort();
    p
}

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<_> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p.sort();
    p
}

/// An instance of DescribeInstances in Alibaba's shape.
fn instance_json(id: &str, ip: &str, status: &str) -> serde_json::Value {
    json!({
        "InstanceId": id, "HostName": format!("host-{id}"), "Status": status,
        "VpcAttributes": {"VpcId": "vpc-1", "VSwitchId": "vsw-1",
            "PrivateIpAddress": {"IpAddress": [ip]}, "NatIpAddress": ""},
        "NetworkInterfaces": {"NetworkInterface": [
            {"NetworkInterfaceId": format!("eni-2{id}"), "PrimaryIpAddress": "192.168.9.9", "Type": "Secondary"},
            {"NetworkInterfaceId": format!("eni-{id}"), "PrimaryIpAddress": ip, "Type": "Primary"}]},
        "Tags": {"Tag": [{"TagKey": "crossdock-cluster", "TagValue": "prod"}, {"TagKey": "team", "TagValue": "a"}]},
    })
}

fn cluster_tag() -> Tag {
    Tag {
        key: "crossdock-cluster".into(),
        value: "prod".into(),
    }
}

#[tokio::test]
async fn describe_instances_filters_by_vpc_and_tag_and_follows_next_token() {
    let server = TestServer::start(|r| {
        let (items, next) = match r.param("NextToken").unwrap_or("") {
            "" => (
                vec![
                    instance_json("i-a", "192.168.1.10", "Running"),
                    instance_json("i-b", "192.168.1.11", "Stopped"),
                ],
                "p2",
            ),
            "p2" => (
                vec![
                    instance_json("i-c", "192.168.2.10", "Starting"),
                    // Only the required parts: the rest is absent, as some regions answer.
                    json!({"InstanceId": "i-d", "Status": "Rebooting"}),
                ],
                "p3",
            ),
            "p3" => (vec![], ""),
            other => panic!("unexpected token {other}"),
        };
        Reply::json(
            json!({"RequestId": "r", "NextToken": next, "TotalCount": 4, "PageNumber": 1,
            "PageSize": 100, "Instances": {"Instance": items}}),
        )
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let query = InstanceQuery {
        vpc_id: Some("vpc-1".into()),
        tag: Some(cluster_tag()),
        instance_ids: vec![],
    };
    let got = c.describe_instances(&query).await.unwrap();
    let ids: Vec<_> = got.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-a", "i-b", "i-c", "i-d"]);
    assert_eq!(
        got[0],
        Instance {
            instance_id: "i-a".into(),
            hostname: "host-i-a".into(),
            status: InstanceStatus::Running,
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            private_ip: Some("192.168.1.10".parse().unwrap()),
            eni_id: Some("eni-i-a".into()),
            tags: vec![
                cluster_tag(),
                Tag {
                    key: "team".into(),
                    value: "a".into()
                }
            ],
        }
    );
    assert!(got[0].has_tag(&cluster_tag()));
    assert_eq!(got[1].status, InstanceStatus::Stopped);
    assert_eq!(got[2].status, InstanceStatus::Starting);
    assert_eq!(got[3].status, InstanceStatus::Other("Rebooting".into()));
    assert_eq!(got[3].status.as_str(), "Rebooting");
    assert_eq!((got[3].private_ip, got[3].eni_id.as_deref()), (None, None));
    assert!(got[3].tags.is_empty() && got[3].vpc_id.is_empty());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "three pages");
    let tokens: Vec<_> = reqs.iter().map(|r| r.param("NextToken")).collect();
    assert_eq!(tokens, [None, Some("p2"), Some("p3")]);
    for r in &reqs {
        assert_eq!(r.action(), "DescribeInstances");
        assert_eq!(r.header("x-acs-version"), Some("2014-05-26"));
        assert_eq!(r.param("RegionId"), Some("cn-test-1"));
        assert!(verify_signature(r, SECRET).is_ok());
    }
    assert_eq!(
        own_params(&reqs[0]),
        pairs(&[
            ("VpcId", "vpc-1"),
            ("Tag.1.Key", "crossdock-cluster"),
            ("Tag.1.Value", "prod"),
            ("MaxResults", "100"),
        ])
    );
    assert_eq!(c.counters().count("DescribeInstances", "ok"), 3);
}

#[tokio::test]
async fn describe_instances_sends_ids_as_json_arrays_of_at_most_100() {
    // 250 ids, of which every tenth is released (absent from the answer); the first chunk's answer
    // comes in two pages.
    let server = TestServer::start(|r| {
        let ids: Vec<String> = serde_json::from_str(r.param("InstanceIds").unwrap()).unwrap();
        let mut live: Vec<_> = ids
            .iter()
            .filter(|id| !id.ends_with('0'))
            .map(|id| instance_json(id, "192.168.0.1", "Running"))
            .collect();
        let next = match (ids[0].as_str(), r.param("NextToken")) {
            ("i-001", None) => {
                live.truncate(50);
                "second-half"
            }
            ("i-001", Some("second-half")) => {
                live.drain(..50);
                ""
            }
            _ => "",
        };
        Reply::json(json!({"RequestId": "r", "NextToken": next, "Instances": {"Instance": live}}))
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let ids: Vec<String> = (1..=250).map(|n| format!("i-{n:03}")).collect();
    let query = InstanceQuery {
        instance_ids: ids.clone(),
        ..Default::default()
    };
    let got = c.describe_instances(&query).await.unwrap();
    let want: Vec<_> = ids.iter().filter(|id| !id.ends_with('0')).collect();
    let got_ids: Vec<_> = got.iter().map(|i| &i.instance_id).collect();
    assert_eq!(
        got_ids, want,
        "every live instance once, released ones absent"
    );

    let reqs = server.requests();
    let sent: Vec<Vec<String>> = reqs
        .iter()
        .map(|r| serde_json::from_str(r.param("InstanceIds").unwrap()).unwrap())
        .collect();
    let sizes: Vec<_> = sent.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [100, 100, 100, 50],
        "chunk 1 twice (two pages), then 2 and 3"
    );
    assert_eq!(sent[0], sent[1]);
    assert_eq!(sent[0][..], ids[..100]);
    assert_eq!(sent[3][..], ids[200..]);
    assert!(reqs[0]
        .param("InstanceIds")
        .unwrap()
        .starts_with("[\"i-001\",\"i-002\""));
    let tokens: Vec<_> = reqs.iter().map(|r| r.param("NextToken")).collect();
    assert_eq!(tokens, [None, Some("second-half"), None, None]);
    assert!(reqs.iter().all(|r| r.param("VpcId").is_none()
        && r.param("Tag.1.Key").is_none()
        && r.param("MaxResults") == Some("100")));
}

#[tokio::test]
async fn describe_instances_refuses_a_repeated_next_token_and_retries_throttling() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let server = TestServer::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::error(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            );
        }
        Reply::json(json!({"RequestId": "r", "NextToken": "same", "Instances": {"Instance": []}}))
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    let e = c
        .describe_instances(&InstanceQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e}");
    assert!(e.to_string().contains("NextToken"), "{e}");
    assert_eq!(
        server.requests().len(),
        3,
        "throttled read retried, then two pages"
    );
    assert_eq!(sleeps.lock().unwrap().len(), 1);
}

/// The two entries of the reference's sample request.
fn sample_batch() -> Vec<NewRoute> {
    ["i-a", "i-b"]
        .iter()
        .zip(["10.0.0.0/24", "10.1.0.0/24"])
        .map(|(hop, dst)| NewRoute {
            route_table_id: "vtb-1".into(),
            destination_cidr_block: dst.into(),
            next_hop_id: hop.to_string(),
            name: "crossdock".into(),
            description: format!("crossdock:{hop}"),
        })
        .collect()
}

#[tokio::test]
async fn create_route_entries_sends_the_sdks_shape_and_reads_a_partial_failure() {
    let server = TestServer::start(|_| {
        Reply::json(
            json!({"RequestId": "r", "SuccessCount": 1, "FailedCount": "1",
            "RouteEntryIds": ["rte-new"],
            "FailedRouteEntries": [{"DstCidrBlock": "10.1.0.0/24", "NextHop": "i-b",
                "FailedCode": "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE",
                "FailedMessage": "The destination CIDR block already exists."}]}),
        )
    })
    .await;
    let (c, sleeps) = client_for(&server, true, fast_retry());
    let result = c.create_route_entries_once(&sample_batch()).await.unwrap();
    assert_eq!(
        result,
        BatchResult {
            success_count: 1,
            failed_count: 1,
            route_entry_ids: vec!["rte-new".into()],
            failed: vec![BatchFailure {
                destination_cidr_block: "10.1.0.0/24".into(),
                next_hop: "i-b".into(),
                code: "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE".into(),
                message: "The destination CIDR block already exists.".into(),
            }],
        }
    );
    assert!(result.failed[0].is_duplicate());
    assert_eq!(result.failed[0].class(), ErrorClass::Duplicate);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.action(), "CreateRouteEntries");
    assert_eq!(r.header("x-acs-version"), Some("2016-04-28"));
    assert_eq!(r.param("RegionId"), Some("cn-test-1"));
    assert!(verify_signature(r, SECRET).is_ok());
    assert_eq!(
        own_params(r),
        pairs(&[
            ("RouteEntries.1.RouteTableId", "vtb-1"),
            ("RouteEntries.1.DstCidrBlock", "10.0.0.0/24"),
            ("RouteEntries.1.NextHop", "i-a"),
            ("RouteEntries.1.NextHopType", "Instance"),
            ("RouteEntries.1.Name", "crossdock"),
            ("RouteEntries.1.Description", "crossdock:i-a"),
            ("RouteEntries.2.RouteTableId", "vtb-1"),
            ("RouteEntries.2.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.2.NextHop", "i-b"),
            ("RouteEntries.2.NextHopType", "Instance"),
            ("RouteEntries.2.Name", "crossdock"),
            ("RouteEntries.2.Description", "crossdock:i-b"),
        ])
    );
    assert!(sleeps.lock().unwrap().is_empty());
    assert_eq!(c.counters().count("CreateRouteEntries", "ok"), 1);
}

#[tokio::test]
async fn delete_route_entries_sends_ids_or_destinations() {
    let server = TestServer::start(|_| {
        Reply::json(
            json!({"RequestId": "r", "SuccessCount": 1, "FailedCount": 1,
            "FailedRouteEntries": [{"DstCidrBlock": "10.1.0.0/24", "NextHop": "i-b",
                "FailedCode": "InvalidRouteEntryId.NotFound", "FailedMessage": "gone"}]}),
        )
    })
    .await;
    let (c, _) = client_for(&server, false, fast_retry());
    let result = c
        .delete_route_entries_once(&[
            RouteToDelete::ById {
                route_table_id: "vtb-1".into(),
                route_entry_id: "rte-1".into(),
            },
            RouteToDelete::ByDestination {
                route_table_id: "vtb-1".into(),
                destination_cidr_block: "10.1.0.0/24".into(),
                next_hop_id: "i-b".into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!((result.success_count, result.failed_count), (1, 1));
    assert!(result.route_entry_ids.is_empty());
    assert_eq!(result.failed[0].class(), ErrorClass::NotFound);
    assert!(!result.failed[0].is_duplicate());
    let reqs = server.requests();
    assert_eq!(reqs[0].action(), "DeleteRouteEntries");
    assert_eq!(
        own_params(&reqs[0]),
        pairs(&[
            ("RouteEntries.1.RouteTableId", "vtb-1"),
            ("RouteEntries.1.RouteEntryId", "rte-1"),
            ("RouteEntries.2.RouteTableId", "vtb-1"),
            ("RouteEntries.2.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.2.NextHop", "i-b"),
        ])
    );
}

#[tokio::test]
async fn batch_writes_make_one_attempt_and_classify_refusals() {
    let server = TestServer::start(|r| match r.action() {
        "CreateRouteEntries" => Reply::error(400, "TaskConflict", "The operation is too frequent."),
        "DeleteRouteEntries" => Reply::error(
            403,
            "Forbidden.RAM",
            "User not authorized to operate on the specified resource.",
        ),
        _ => Reply::error(403, "Forbidden.RAM", "denied"),
    })
    .await;
    let (c, sleeps) = client_for(&server, false, fast_retry());
    let e = c
        .create_route_entries_once(&sample_batch())
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.code(), Some("TaskConflict"));
    let e = c
        .delete_route_entries_once(&[RouteToDelete::ById {
            route_table_id: "vtb-1".into(),
            route_entry_id: "rte-1".into(),
        }])
        .await
        .unwrap_err();
    assert_eq!(e.denied_action().as_deref(), Some("vpc:DeleteRouteEntries"));
    assert!(e.to_string().contains("vpc:DeleteRouteEntries"), "{e}");
    let e = c
        .describe_instances(&InstanceQuery::default())
        .await
        .unwrap_err();
    assert_eq!(e.denied_action().as_deref(), Some("ecs:DescribeInstances"));
    assert_eq!(server.requests().len(), 3, "one attempt each");
    assert!(
        sleeps.lock().unwrap().is_empty(),
        "the caller paces the writes"
    );
    let counts = c.counters();
    assert_eq!(counts.count("CreateRouteEntries", "retryable"), 1);
    assert_eq!(counts.count("DeleteRouteEntries", "permanent"), 1);
    assert_eq!(counts.count("DescribeInstances", "permanent"), 1);
}

#[tokio::test]
async fn batches_over_50_are_refused_and_empty_ones_make_no_call() {
    let server = TestServer::start(|_| Reply::json(json!({"RequestId": "r"}))).await;
    let (c, _) = client_for(&server, false, fast_retry());
    let many: Vec<NewRoute> = (0..51)
        .map(|n| NewRoute {
            destination_cidr_block: format!("10.{n}.0.0/24"),
            ..sample_batch()[0].clone()
        })
        .collect();
    let e = c.create_route_entries_once(&many).await.unwrap_err();
    assert!(e.to_string().contains("at most 50"), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    let deletes: Vec<RouteToDelete> = (0..51)
        .map(|n| RouteToDelete::ById {
            route_table_id: "vtb-1".into(),
            route_entry_id: format!("rte-{n}"),
        })
        .collect();
    assert!(c.delete_route_entries_once(&deletes).await.is_err());
    assert_eq!(
        c.create_route_entries_once(&[]).await.unwrap(),
        BatchResult::default()
    );
    assert_eq!(
        c.delete_route_entries_once(&[]).await.unwrap(),
        BatchResult::default()
    );
    assert_eq!(server.requests().len(), 0);
    // Exactly 50 goes out, and an answer without the optional lists reads as empty.
    let r = c.create_route_entries_once(&many[..50]).await.unwrap();
    assert_eq!(r, BatchResult::default());
    let keys = server.requests()[0].query.len();
    assert_eq!(keys, 1 + 50 * 6, "RegionId plus six keys per entry");
}
