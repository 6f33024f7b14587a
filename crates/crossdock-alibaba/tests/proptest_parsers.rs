//! Property tests of everything the client parses from the network: API answers (any status, any
//! headers, any body — random text, random JSON, JSON in the API's own shapes with wrong types and
//! missing parts) and metadata answers (identity items, session tokens, RAM-role credential
//! documents). Whatever comes back, every call returns `Ok` or an `Err` with a message and a fix; it
//! never panics, an HTTP error status is never taken for success, and no secret the server sent (an
//! AccessKeySecret, a SecurityToken) ends up in an error message.
//!
//! The answers are served by the loopback server of `tests/common` (real HTTP, real signatures on the
//! requests); the properties run with proptest's runner so a failure shrinks to a small answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Reply, TestServer};
use crossdock_alibaba::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{json, Map, Value};

const SECRET: &str = "client-secret-never-shown";
/// Marks secrets the *server* hands out in credential documents.
const SERVED_SECRET: &str = "served-secret-XYZZY";
const SERVED_TOKEN: &str = "served-token-PLUGH";

/// One canned answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn reply(&self) -> Reply {
        Reply {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            hang: false,
        }
    }
}

/// Field names of the API's and the metadata service's answers, so random JSON often looks right.
const KEYS: &[&str] = &[
    "RequestId",
    "Code",
    "Message",
    "Recommend",
    "HostId",
    "TotalCount",
    "PageNumber",
    "PageSize",
    "NextToken",
    "RouterTableList",
    "RouterTableListType",
    "RouteTableId",
    "RouteTableType",
    "VSwitchIds",
    "VSwitchId",
    "RouteEntrys",
    "RouteEntry",
    "RouteEntryId",
    "RouteEntryName",
    "DestinationCidrBlock",
    "NextHops",
    "NextHop",
    "NextHopId",
    "NextHopType",
    "Status",
    "Type",
    "Description",
    "VSwitches",
    "VpcId",
    "CidrBlock",
    "SecondaryCidrBlocks",
    "SecondaryCidrBlock",
    "UserCidrs",
    "UserCidr",
    "NetworkInterfaceSets",
    "NetworkInterfaceSet",
    "NetworkInterfaceId",
    "InstanceId",
    "SourceDestCheck",
    "Instances",
    "Instance",
    "HostName",
    "VpcAttributes",
    "PrivateIpAddress",
    "IpAddress",
    "NetworkInterfaces",
    "NetworkInterface",
    "PrimaryIpAddress",
    "Tags",
    "Tag",
    "TagKey",
    "TagValue",
    "SuccessCount",
    "FailedCount",
    "RouteEntryIds",
    "FailedRouteEntries",
    "DstCidrBlock",
    "FailedCode",
    "FailedMessage",
    "AccessKeyId",
    "AccessKeySecret",
    "SecurityToken",
    "Expiration",
    "LastUpdated",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just(""),
            Just("Success"),
            Just("Available"),
            Just("Pending"),
            Just("Instance"),
            Just("Custom"),
            Just("System"),
            Just("true"),
            Just("false"),
            Just("10.0.0.0/24"),
            Just("2999-01-01T00:00:00Z"),
            Just("2000-01-01T00:00:00Z"),
            Just("not a date"),
            Just("Throttling.User"),
            Just("TaskConflict"),
            Just("InvalidSecurityToken.Expired"),
            Just("Forbidden.RAM"),
            Just("ServiceUnavailable"),
        ]
        .prop_map(|s| json!(s)),
        "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        4 => prop::sample::select(KEYS).prop_map(str::to_string),
                        1 => "[A-Za-z]{1,10}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON in the API's shapes (list wrappers, pagination) with random leaves.
fn shaped() -> impl Strategy<Value = Value> {
    let item = prop::collection::vec((prop::sample::select(KEYS), scalar()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    (
        prop::sample::select(vec![
            ("RouterTableList", "RouterTableListType"),
            ("RouteEntrys", "RouteEntry"),
            ("VSwitches", "VSwitch"),
            ("NetworkInterfaceSets", "NetworkInterfaceSet"),
            ("SecondaryCidrBlocks", "SecondaryCidrBlock"),
            ("NextHops", "NextHop"),
            ("Instances", "Instance"),
            ("NetworkInterfaces", "NetworkInterface"),
            ("Tags", "Tag"),
            ("RouteEntryIds", "RouteEntryId"),
            ("FailedRouteEntries", "FailedRouteEntry"),
        ]),
        prop::collection::vec(item, 0..3),
        prop::option::of(prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(5)),
            scalar()
        ]),
        prop::option::of(scalar()),
        prop::option::of(scalar()),
    )
        .prop_map(|((outer, inner), items, total, next, code)| {
            let mut o = Map::new();
            o.insert("RequestId".into(), json!("req-prop"));
            o.insert(outer.into(), json!({ inner: items }));
            if let Some(t) = total {
                o.insert("TotalCount".into(), t);
            }
            if let Some(n) = next {
                o.insert("NextToken".into(), n);
            }
            if let Some(c) = code {
                o.insert("Code".into(), c);
            }
            Value::Object(o)
        })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => Just(200u16),
        1 => prop::sample::select(vec![204u16, 400, 403, 404, 409, 429, 500, 502, 503]),
        1 => 200u16..600,
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        any::<bool>(),
        prop::option::of(prop_oneof![
            "Limit:[0-9]{1,4},Remain:[0-9]{1,3},TimeLeft:[0-9]{1,7},Reset:[0-9]{1,13}",
            "[ -~]{0,40}",
        ]),
        prop::option::of("[ -~]{0,12}"),
    )
        .prop_map(|(json_type, limit, retry_after)| {
            let mut h = Vec::new();
            if json_type {
                h.push(("content-type".to_string(), "application/json".to_string()));
            }
            if let Some(l) = limit {
                h.push(("x-ratelimit-user-api".to_string(), l));
            }
            if let Some(r) = retry_after {
                h.push(("retry-after".to_string(), r));
            }
            h
        })
}

fn api_answer() -> impl Strategy<Value = Answer> {
    let body = prop_oneof![
        3 => shaped().prop_map(|v| v.to_string()),
        2 => json_value().prop_map(|v| v.to_string()),
        1 => "\\PC{0,120}",
    ];
    (status(), headers(), body).prop_map(|(status, headers, body)| Answer {
        status,
        headers,
        body,
    })
}

/// A credentials document carrying the served secrets, with any field changed, dropped or added.
fn credentials_answer() -> impl Strategy<Value = Answer> {
    let doc = (
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "Code",
                    "AccessKeyId",
                    "Expiration",
                    "LastUpdated",
                    "SecurityToken",
                    "AccessKeySecret",
                ]),
                prop::option::of(scalar()),
            ),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(changes, keep_secrets)| {
            let mut o = json!({
                "Code": "Success",
                "AccessKeyId": "STS.prop",
                "AccessKeySecret": SERVED_SECRET,
                "SecurityToken": SERVED_TOKEN,
                "Expiration": "2999-01-01T00:00:00Z",
                "LastUpdated": "2000-01-01T00:00:00Z",
            });
            for (k, v) in changes {
                let secret = k == "AccessKeySecret" || k == "SecurityToken";
                match v {
                    // Secrets are only removed or kept: their values are what we look for in errors.
                    _ if secret && keep_secrets => {}
                    None => {
                        o.as_object_mut().unwrap().remove(k);
                    }
                    Some(v) if !secret => {
                        o[k] = v;
                    }
                    Some(_) => {
                        o.as_object_mut().unwrap().remove(k);
                    }
                }
            }
            o.to_string()
        });
    let body = prop_oneof![
        4 => doc,
        1 => json_value().prop_map(|v| v.to_string()),
        1 => Just(format!("{{\"AccessKeySecret\": \"{SERVED_SECRET}\", \"SecurityToken\": \"{SERVED_TOKEN}\"")),
    ];
    (status(), body).prop_map(|(status, body)| Answer {
        status,
        headers: vec![],
        body,
    })
}

/// A plain-text metadata item.
fn text_answer() -> impl Strategy<Value = Answer> {
    let body = prop_oneof![
        Just("i-abc".to_string()),
        Just("cn-hangzhou".to_string()),
        Just("00:16:3e:00:00:01".to_string()),
        Just(String::new()),
        Just("\n".to_string()),
        "\\PC{0,40}",
    ];
    (status(), body).prop_map(|(status, body)| Answer {
        status,
        headers: vec![],
        body,
    })
}

/// A runtime, the loopback server and the answer it gives, per test.
struct Harness {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    answers: Arc<Mutex<Vec<(String, Answer)>>>,
}

impl Harness {
    /// Answers: the first `(path suffix, answer)` whose suffix ends the request path; "" = any.
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let answers: Arc<Mutex<Vec<(String, Answer)>>> = Arc::default();
        let a = answers.clone();
        let server = rt.block_on(TestServer::start(move |r| {
            let answers = a.lock().unwrap();
            answers
                .iter()
                .find(|(suffix, _)| r.path.ends_with(suffix.as_str()))
                .map(|(_, ans)| ans.reply())
                .unwrap_or_else(|| Reply::text(404, "no answer set"))
        }));
        Harness {
            rt,
            server,
            answers,
        }
    }

    fn set(&self, answers: Vec<(&str, Answer)>) {
        *self.answers.lock().unwrap() = answers
            .into_iter()
            .map(|(s, a)| (s.to_string(), a))
            .collect();
    }
}

fn check_error(e: &Error, what: &str) -> Result<(), TestCaseError> {
    let shown = format!("{e} {e:?} {}", e.fix());
    prop_assert!(!e.to_string().is_empty(), "{what}: an empty message");
    prop_assert!(!e.fix().is_empty(), "{what}: no fix: {e}");
    for secret in [SECRET, SERVED_SECRET, SERVED_TOKEN] {
        prop_assert!(
            !shown.contains(secret),
            "{what}: a secret in the error: {shown}"
        );
    }
    let _ = (e.class(), e.code(), e.retry_hint(), e.denied_action());
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

#[test]
fn any_api_answer_is_a_result_never_a_panic() {
    let h = Harness::new();
    let client = Client::new(
        ClientOptions {
            vpc_endpoint: h.server.url(),
            ecs_endpoint: h.server.url(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ClientOptions::new("cn-test-1")
        },
        Arc::new(CredentialsProvider::fixed(Credentials {
            access_key_id: "STS.PROPTEST".into(),
            access_key_secret: Secret::new(SECRET),
            security_token: Some(Secret::new("sts-token")),
            expiration: None,
            source: CredentialSource::Environment,
        })),
        Arc::new(CallCounters::default()),
    )
    .unwrap()
    .with_sleeper(Arc::new(|_| Box::pin(async {})));
    runner(192)
        .run(&api_answer(), |answer| {
            h.set(vec![("", answer.clone())]);
            let failed_status = answer.status >= 300;
            let results: Vec<(&str, Result<(), Error>)> = h.rt.block_on(async {
                let create = CreateRouteEntry {
                    route_table_id: "vtb-1".into(),
                    destination_cidr_block: "10.0.0.0/24".into(),
                    next_hop_id: "i-1".into(),
                    name: "crossdock".into(),
                    description: "crossdock:i-1".into(),
                    client_token: client_token("i-1", "10.0.0.0/24", "vtb-1", 0),
                };
                vec![
                    (
                        "DescribeRouteTableList",
                        client.describe_route_table_list("vpc-1").await.map(drop),
                    ),
                    (
                        "DescribeRouteEntryList",
                        client
                            .describe_route_entry_list("vtb-1", &RouteEntryFilter::default())
                            .await
                            .map(drop),
                    ),
                    (
                        "CreateRouteEntry",
                        client.create_route_entry(&create).await.map(drop),
                    ),
                    ("DeleteRouteEntry", client.delete_route_entry("rte-1").await),
                    (
                        "DescribeVSwitches",
                        client.describe_vswitches("vpc-1").await.map(drop),
                    ),
                    (
                        "DescribeVpcAttribute",
                        client.describe_vpc_attribute("vpc-1").await.map(drop),
                    ),
                    (
                        "DescribeNetworkInterfaces",
                        client.describe_network_interface("eni-1").await.map(drop),
                    ),
                    (
                        "ModifyNetworkInterfaceAttribute",
                        client.modify_source_dest_check("eni-1", false).await,
                    ),
                    (
                        "DescribeInstances",
                        client
                            .describe_instances(&InstanceQuery {
                                vpc_id: Some("vpc-1".into()),
                                tag: Some(Tag {
                                    key: "crossdock-cluster".into(),
                                    value: "prod".into(),
                                }),
                                instance_ids: vec!["i-1".into()],
                            })
                            .await
                            .map(drop),
                    ),
                    (
                        "CreateRouteEntries",
                        client
                            .create_route_entries_once(&[NewRoute {
                                route_table_id: "vtb-1".into(),
                                destination_cidr_block: "10.0.0.0/24".into(),
                                next_hop_id: "i-1".into(),
                                name: "crossdock".into(),
                                description: "crossdock:i-1".into(),
                            }])
                            .await
                            .map(drop),
                    ),
                    (
                        "DeleteRouteEntries",
                        client
                            .delete_route_entries_once(&[RouteToDelete::ById {
                                route_table_id: "vtb-1".into(),
                                route_entry_id: "rte-1".into(),
                            }])
                            .await
                            .map(drop),
                    ),
                ]
            });
            for (action, r) in results {
                match r {
                    Ok(()) => prop_assert!(
                        !failed_status,
                        "{action}: HTTP {} taken for success",
                        answer.status
                    ),
                    Err(e) => check_error(&e, action)?,
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_metadata_answer_is_a_result_never_a_panic_and_never_leaks_the_served_secrets() {
    let h = Harness::new();
    let strategy = (
        prop::sample::select(vec![
            TokenMode::Auto,
            TokenMode::Disabled,
            TokenMode::Required,
        ]),
        text_answer(),
        text_answer(),
        credentials_answer(),
    );
    runner(192)
        .run(&strategy, |(mode, token, item, creds)| {
            h.set(vec![
                ("/latest/api/token", token),
                ("/ram/security-credentials/crossdock-role", creds),
                ("", item),
            ]);
            let url = h.server.url();
            h.rt.block_on(async move {
                let md = Arc::new(
                    MetadataClient::new(
                        &url,
                        mode,
                        system_clock(),
                        Arc::new(CallCounters::default()),
                    )
                    .expect("a loopback URL"),
                );
                let cfg = Settings {
                    metadata_url: url.clone(),
                    ram_role: "crossdock-role".into(),
                    ..Default::default()
                };
                match Identity::resolve(&cfg, Some(&md)).await {
                    Ok(id) => prop_assert!(!id.instance_id.is_empty() && !id.eni_id.is_empty()),
                    Err(e) => check_error(&e, "identity")?,
                }
                let provider = CredentialsProvider::from_settings(
                    &cfg,
                    &EnvVars::from_pairs([]),
                    Some(md),
                    system_clock(),
                )
                .expect("a RAM-role provider");
                match provider.get().await {
                    Ok(c) => {
                        prop_assert!(!c.access_key_id.is_empty());
                        let shown = format!("{c:?} {:?}", provider.status());
                        prop_assert!(
                            !shown.contains(SERVED_SECRET) && !shown.contains(SERVED_TOKEN),
                            "secrets in Debug: {shown}"
                        );
                    }
                    Err(e) => check_error(&e, "credentials")?,
                }
                Ok(())
            })
        })
        .unwrap();
}
