//! Identity and RAM-role credentials against a loopback metadata server: session tokens (used when
//! offered, required when configured, fallback when the token endpoint fails), refresh before expiry,
//! keeping the last credentials through metadata failures, and the whole chain signing a real call.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration as CDuration, Utc};
use common::{verify_signature, Recorded, Reply, TestServer};
use crossdock_alibaba::*;
use serde_json::json;

const TOKEN: &str = "md-session-token";

/// Scriptable metadata service state.
struct Md {
    /// Answer PUT /latest/api/token.
    offer_token: bool,
    /// Reject GETs without the token.
    require_token: bool,
    /// Which token the service currently accepts (to simulate expiry).
    accepted_token: String,
    tokens_issued: usize,
    /// Credentials document generation; `None` = answer 500.
    creds_generation: Option<u32>,
    /// Expiration of the credentials handed out.
    expiration: DateTime<Utc>,
    role_fetches: usize,
}

fn creds_secret(generation: u32) -> String {
    format!("role-secret-{generation}")
}

fn metadata_handler(md: Arc<Mutex<Md>>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r| {
        let mut m = md.lock().unwrap();
        if r.path == "/latest/api/token" {
            assert_eq!(r.method, "PUT");
            assert_eq!(
                r.header("x-aliyun-ecs-metadata-token-ttl-seconds"),
                Some("21600")
            );
            if !m.offer_token {
                return Reply::text(404, "not found");
            }
            m.tokens_issued += 1;
            return Reply::text(200, &m.accepted_token.clone());
        }
        if !r.path.starts_with("/latest/meta-data/") {
            // An API call (same server plays both roles in the end-to-end test).
            return Reply::json(
                json!({"RequestId": "r", "VpcId": "vpc-md", "CidrBlock": "192.168.0.0/16"}),
            );
        }
        let token = r.header("x-aliyun-ecs-metadata-token");
        if m.require_token && token != Some(m.accepted_token.as_str()) {
            return Reply::text(401, "token required");
        }
        let item = r.path.trim_start_matches("/latest/meta-data/");
        match item {
            "instance-id" => Reply::text(200, "i-md"),
            "region-id" => Reply::text(200, "cn-md-1"),
            "vpc-id" => Reply::text(200, "vpc-md"),
            "vswitch-id" => Reply::text(200, "vsw-md"),
            "private-ipv4" => Reply::text(200, "192.168.1.11\n"),
            "mac" => Reply::text(200, "00:16:3e:00:00:01"),
            "network/interfaces/macs/00:16:3e:00:00:01/network-interface-id" => {
                Reply::text(200, "eni-md")
            }
            "ram/security-credentials/" => Reply::text(200, "crossdock-role"),
            "ram/security-credentials/crossdock-role" => {
                m.role_fetches += 1;
                match m.creds_generation {
                    None => Reply::text(500, "internal error"),
                    Some(g) => Reply::json(json!({
                        "AccessKeyId": format!("STS.AK{g}"),
                        "AccessKeySecret": creds_secret(g),
                        "SecurityToken": format!("sts-token-{g}"),
                        "Expiration": m.expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "LastUpdated": "2026-01-01T00:00:00Z",
                        "Code": "Success"
                    })),
                }
            }
            _ => Reply::text(404, "not found"),
        }
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn md_state(offer: bool, require: bool) -> Arc<Mutex<Md>> {
    Arc::new(Mutex::new(Md {
        offer_token: offer,
        require_token: require,
        accepted_token: TOKEN.into(),
        tokens_issued: 0,
        creds_generation: Some(1),
        expiration: t0() + CDuration::hours(1),
        role_fetches: 0,
    }))
}

fn test_clock() -> (Clock, Arc<Mutex<DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(t0()));
    let n = now.clone();
    (Arc::new(move || *n.lock().unwrap()), now)
}

fn md_client(server: &TestServer, mode: TokenMode, clock: Clock) -> Arc<MetadataClient> {
    Arc::new(
        MetadataClient::new(
            &server.url(),
            mode,
            clock,
            Arc::new(CallCounters::default()),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn identity_comes_from_metadata_with_a_session_token_and_config_overrides() {
    let md = md_state(true, true);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, _) = test_clock();
    let client = md_client(&server, TokenMode::Auto, clock);
    let cfg = Settings {
        instance_id: "i-from-config".into(),
        ..Default::default()
    };
    let id = Identity::resolve(&cfg, Some(&client)).await.unwrap();
    assert_eq!(
        id,
        Identity {
            instance_id: "i-from-config".into(),
            region_id: "cn-md-1".into(),
            vpc_id: "vpc-md".into(),
            vswitch_id: "vsw-md".into(),
            private_ip: "192.168.1.11".into(),
            mac: "00:16:3e:00:00:01".into(),
            eni_id: "eni-md".into(),
        }
    );
    let reqs = server.requests();
    assert_eq!(
        server.count(|r| r.path.ends_with("instance-id")),
        0,
        "configured field not fetched"
    );
    assert_eq!(md.lock().unwrap().tokens_issued, 1, "the token is cached");
    assert!(reqs
        .iter()
        .filter(|r| r.method == "GET")
        .all(|r| r.header("x-aliyun-ecs-metadata-token") == Some(TOKEN)));
}

#[tokio::test]
async fn an_expired_session_token_is_replaced_once() {
    let md = md_state(true, true);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, _) = test_clock();
    let client = md_client(&server, TokenMode::Required, clock);
    assert_eq!(client.get("vpc-id", "identity").await.unwrap(), "vpc-md");
    md.lock().unwrap().accepted_token = "rotated-token".into();
    assert_eq!(client.get("vpc-id", "identity").await.unwrap(), "vpc-md");
    assert_eq!(md.lock().unwrap().tokens_issued, 2);
}

#[tokio::test]
async fn token_endpoint_failure_falls_back_in_auto_and_fails_when_required() {
    let md = md_state(false, false);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, _) = test_clock();
    let auto = md_client(&server, TokenMode::Auto, clock.clone());
    assert_eq!(auto.get("instance-id", "identity").await.unwrap(), "i-md");
    assert_eq!(auto.get("region-id", "identity").await.unwrap(), "cn-md-1");
    assert_eq!(
        server.count(|r| r.path == "/latest/api/token"),
        1,
        "a missing token endpoint is not asked again at every request"
    );
    assert!(server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .all(|r| r.header("x-aliyun-ecs-metadata-token").is_none()));

    let required = md_client(&server, TokenMode::Required, clock.clone());
    let e = required.get("instance-id", "identity").await.unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    assert_eq!(
        server.count(|r| r.method == "GET" && r.path.ends_with("instance-id")),
        1
    );

    let disabled = md_client(&server, TokenMode::Disabled, clock);
    let before = server.count(|r| r.path == "/latest/api/token");
    disabled.get("instance-id", "identity").await.unwrap();
    assert_eq!(server.count(|r| r.path == "/latest/api/token"), before);

    // The environment can only tighten the mode.
    assert_eq!(TokenMode::Auto.tightened(false), TokenMode::Auto);
    assert_eq!(TokenMode::Auto.tightened(true), TokenMode::Required);
    assert_eq!(TokenMode::Disabled.tightened(true), TokenMode::Required);
    assert_eq!(TokenMode::Required.tightened(false), TokenMode::Required);
    let env = EnvVars::from_pairs([("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")]);
    assert!(env.imdsv1_disabled());
}

fn ram_provider(server: &TestServer, clock: Clock, role: &str) -> CredentialsProvider {
    let cfg = Settings {
        ram_role: role.into(),
        ..Default::default()
    };
    CredentialsProvider::from_settings(
        &cfg,
        &EnvVars::default(),
        Some(md_client(server, TokenMode::Auto, clock.clone())),
        clock,
    )
    .unwrap()
}

#[tokio::test]
async fn ram_role_credentials_are_refreshed_before_they_expire() {
    let md = md_state(true, false);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, now) = test_clock();
    let p = ram_provider(&server, clock, "");
    let c = p.get().await.unwrap();
    assert_eq!(c.access_key_id, "STS.AK1");
    assert_eq!(c.source, CredentialSource::RamRole("crossdock-role".into()));
    assert_eq!(
        server.count(|r| r.path.ends_with("security-credentials/")),
        1,
        "role discovered"
    );

    // 30 minutes later: still fresh, no call.
    *now.lock().unwrap() = t0() + CDuration::minutes(30);
    assert_eq!(p.get().await.unwrap().access_key_id, "STS.AK1");
    assert_eq!(md.lock().unwrap().role_fetches, 1);

    // 46 minutes: inside the 15-minute refresh window; the service has rotated.
    {
        let mut m = md.lock().unwrap();
        m.creds_generation = Some(2);
        m.expiration = t0() + CDuration::hours(2);
    }
    *now.lock().unwrap() = t0() + CDuration::minutes(46);
    let c = p.get().await.unwrap();
    assert_eq!(c.access_key_id, "STS.AK2");
    assert_eq!(c.expiration, Some(t0() + CDuration::hours(2)));
    assert_eq!(md.lock().unwrap().role_fetches, 2);
    assert_eq!(
        server.count(|r| r.path.ends_with("security-credentials/")),
        1,
        "role kept"
    );
    let st = p.status();
    assert!(st.valid && st.last_error.is_none());
    assert_eq!(st.last_refresh, Some(t0() + CDuration::minutes(46)));
}

#[tokio::test]
async fn metadata_not_rotated_yet_is_not_hammered() {
    let md = md_state(true, false);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, now) = test_clock();
    let p = ram_provider(&server, clock, "crossdock-role");
    p.get().await.unwrap();
    // Inside the refresh window, the service still hands out the same credentials.
    *now.lock().unwrap() = t0() + CDuration::minutes(50);
    p.get().await.unwrap();
    assert_eq!(md.lock().unwrap().role_fetches, 2);
    for s in [1, 20, 59] {
        *now.lock().unwrap() = t0() + CDuration::minutes(50) + CDuration::seconds(s);
        assert_eq!(p.get().await.unwrap().access_key_id, "STS.AK1");
    }
    assert_eq!(
        md.lock().unwrap().role_fetches,
        2,
        "at most one fetch a minute"
    );
    *now.lock().unwrap() = t0() + CDuration::minutes(51) + CDuration::seconds(1);
    p.get().await.unwrap();
    assert_eq!(md.lock().unwrap().role_fetches, 3);
}

#[tokio::test]
async fn metadata_errors_keep_the_last_credentials_until_they_expire() {
    let md = md_state(true, false);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, now) = test_clock();
    let p = ram_provider(&server, clock, "crossdock-role");
    p.get().await.unwrap();
    md.lock().unwrap().creds_generation = None; // metadata now answers 500

    // In the refresh window: the fetch fails, the old (still valid) credentials are kept.
    *now.lock().unwrap() = t0() + CDuration::minutes(50);
    assert_eq!(p.get().await.unwrap().access_key_id, "STS.AK1");
    assert_eq!(md.lock().unwrap().role_fetches, 2);
    let st = p.status();
    assert!(st.valid);
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("HTTP 500"),
        "{st:?}"
    );

    // Backing off: no call within the backoff (1 s after the first failure).
    *now.lock().unwrap() = t0() + CDuration::minutes(50) + CDuration::milliseconds(500);
    assert_eq!(p.get().await.unwrap().access_key_id, "STS.AK1");
    assert_eq!(md.lock().unwrap().role_fetches, 2);
    // After it: tried again, still failing, backoff doubles to 2 s.
    *now.lock().unwrap() = t0() + CDuration::minutes(50) + CDuration::seconds(1);
    p.get().await.unwrap();
    assert_eq!(md.lock().unwrap().role_fetches, 3);
    *now.lock().unwrap() = t0() + CDuration::minutes(50) + CDuration::seconds(2);
    p.get().await.unwrap();
    assert_eq!(md.lock().unwrap().role_fetches, 3);

    // Past expiry: the error surfaces, and names the metadata path, without any secret.
    *now.lock().unwrap() = t0() + CDuration::minutes(61);
    let e = p.get().await.unwrap_err();
    assert!(e.to_string().contains("security-credentials"), "{e}");
    assert!(e.is_credentials_problem());
    assert!(!p.status().valid);
    for text in [
        e.to_string(),
        format!("{e:?}"),
        format!("{p:?}"),
        format!("{:?}", p.status()),
    ] {
        assert!(
            !text.contains(&creds_secret(1)) && !text.contains("sts-token-1"),
            "{text}"
        );
    }

    // The service recovers: new credentials.
    {
        let mut m = md.lock().unwrap();
        m.creds_generation = Some(3);
        m.expiration = t0() + CDuration::hours(3);
    }
    *now.lock().unwrap() = t0() + CDuration::minutes(62);
    assert_eq!(p.get().await.unwrap().access_key_id, "STS.AK3");
    assert!(p.status().valid);
}

#[tokio::test]
async fn no_role_attached_is_reported_with_the_fix() {
    let server = TestServer::start(|r| {
        if r.path == "/latest/meta-data/ram/security-credentials/" {
            Reply::text(404, "not found")
        } else {
            Reply::text(404, "")
        }
    })
    .await;
    let (clock, _) = test_clock();
    let p = ram_provider(&server, clock, "");
    let e = p.get().await.unwrap_err();
    assert!(matches!(e, Error::Credentials { .. }), "{e:?}");
    assert!(e.fix().contains("attach a RAM role"), "{}", e.fix());
}

/// Metadata failures keep the underlying error (HTTP client, document parser) as `source()`.
#[tokio::test]
async fn metadata_errors_keep_their_underlying_cause_as_source() {
    use std::error::Error as _;
    let server = TestServer::start(|r| {
        if r.path.ends_with("/ram/security-credentials/garbled") {
            Reply::text(200, "{not json")
        } else {
            Reply::text(404, "")
        }
    })
    .await;
    let (clock, _) = test_clock();
    let e = ram_provider(&server, clock.clone(), "garbled")
        .get()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Metadata {
                transient: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("not a credentials document"), "{e}");
    assert!(e
        .source()
        .and_then(|s| s.downcast_ref::<serde_json::Error>())
        .is_some());
    // A plain HTTP error status has no underlying error.
    let md = md_client(&server, TokenMode::Disabled, clock.clone());
    assert!(md
        .get("instance-id", "identity")
        .await
        .unwrap_err()
        .source()
        .is_none());

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let md = MetadataClient::new(
        &dead,
        TokenMode::Disabled,
        clock,
        Arc::new(CallCounters::default()),
    )
    .unwrap();
    let e = md.get("instance-id", "identity").await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("metadata /latest/meta-data/instance-id: connection failed"),
        "{e}"
    );
    let cause = e.source().and_then(|s| s.downcast_ref::<reqwest::Error>());
    assert!(cause.is_some_and(|c| c.is_connect()), "{e:?}");
}

#[tokio::test]
async fn connect_signs_api_calls_with_the_role_credentials() {
    let md = md_state(true, true);
    let server = TestServer::start(metadata_handler(md.clone())).await;
    let (clock, _) = test_clock();
    let cfg = Settings {
        metadata_url: server.url(),
        vpc_endpoint: server.url(),
        ecs_endpoint: server.url(),
        ..Default::default()
    };
    let opts = ConnectOptions {
        env: EnvVars::default(),
        clock,
        ..ConnectOptions::default()
    };
    let conn = connect_with(&cfg, opts).await.unwrap();
    assert_eq!(conn.identity.instance_id, "i-md");
    assert_eq!(conn.client.region(), "cn-md-1");
    let attr = conn.client.describe_vpc_attribute("vpc-md").await.unwrap();
    assert_eq!(attr.vpc_id, "vpc-md");
    let api: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/")
        .collect();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].header("x-acs-security-token"), Some("sts-token-1"));
    assert_eq!(
        verify_signature(&api[0], &creds_secret(1)).unwrap(),
        "STS.AK1"
    );
    assert_eq!(api[0].param("RegionId"), Some("cn-md-1"));
    // Every call, metadata included, is counted.
    let counts = conn.client.counters();
    assert_eq!(counts.count("DescribeVpcAttribute", "ok"), 1);
    assert!(counts.count("metadata:identity", "ok") >= 7);
    assert_eq!(counts.count("metadata:credentials", "ok"), 2);
    assert_eq!(counts.count("metadata:token", "ok"), 1);
}
