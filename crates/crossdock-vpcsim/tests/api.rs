//! The API over real HTTP with real signatures: loopback only, no root.

mod common;

use common::{eventually, send, settings, Cred, Lab, Resp};
use crossdock_vpcsim::admin::{CreateAccessKey, ErrorFault, Faults, PutRoute, SetRole, Settings};
use crossdock_vpcsim::model::{RouteStatus, Tag};
use std::collections::BTreeMap;
use std::time::Duration;

const VECTORS: &str = include_str!("../testdata/acs3-signature-vectors.json");

/// Sends a captured request byte for byte (its own host header, date and nonce).
async fn send_vector(
    lab: &Lab,
    v: &serde_json::Value,
    tamper: impl Fn(&mut String, &mut Vec<(String, String)>),
) -> common::Resp {
    let mut pq = v["path_and_query"].as_str().unwrap().to_string();
    let mut headers: Vec<(String, String)> = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    headers.push((
        "authorization".into(),
        v["authorization"].as_str().unwrap().into(),
    ));
    tamper(&mut pq, &mut headers);
    let mut rb = lab.http.post(format!("http://{}{}", lab.api, pq));
    for (k, val) in headers {
        rb = rb.header(k, val);
    }
    send(rb).await
}

async fn vector_lab() -> Lab {
    // the vectors were captured at a fixed date: allow any skew for them
    let bootstrap = crossdock_vpcsim::model::Bootstrap {
        region_id: "cn-zhangjiakou".into(),
        ..Default::default()
    };
    let lab = Lab::start_with(
        tempfile::tempdir().unwrap(),
        Settings {
            max_clock_skew_secs: 20 * 365 * 86400,
            ..settings(100)
        },
        bootstrap,
    )
    .await;
    for (id, token) in [("AKID", None), ("STS.AK", Some("TOKEN"))] {
        lab.admin
            .create_access_key(&CreateAccessKey {
                access_key_id: Some(id.into()),
                access_key_secret: Some("SECRET".into()),
                security_token: token.map(String::from),
                expires_in_secs: Some(3600),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    lab
}

#[tokio::test]
async fn captured_sdk_requests_verify_and_tampered_ones_do_not() {
    let lab = vector_lab().await;
    let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let v0 = &vectors[0];
    let v1 = &vectors[1];
    // tampered first (the genuine request's nonce may be used only once)
    let r = send_vector(&lab, v0, |pq, _| *pq = pq.replace("tok1", "tok2")).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "SignatureDoesNotMatch"),
        "{:?}",
        r.json
    );
    let r = send_vector(&lab, v0, |_, h| {
        for (k, v) in h.iter_mut() {
            if k == "x-acs-date" {
                *v = v.replace(":06Z", ":07Z");
            }
        }
    })
    .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
    let r = send_vector(&lab, v1, |_, h| {
        for (k, v) in h.iter_mut() {
            if k == "authorization" {
                *v = v.replace("Signature=c", "Signature=d");
            }
        }
    })
    .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
    for k in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(
            r.json[k].is_string(),
            "error field {k} missing: {:?}",
            r.json
        );
    }
    // genuine: the signature passes, so the action runs (vtb-1 does not exist in this VPC)
    let r = send_vector(&lab, v0, |_, _| {}).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "InvalidRouteTableId.NotFound"),
        "{:?}",
        r.json
    );
    let r = send_vector(&lab, v1, |_, _| {}).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["TotalCount"], 0);
    assert!(r.json["RouterTableList"]["RouterTableListType"].is_array());
    // replaying a genuine request is refused
    let r = send_vector(&lab, v1, |_, _| {}).await;
    assert_eq!(r.code(), "SignatureNonceUsed");
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(log.total, 6);
    let sts_call = log.calls.iter().find(|c| c.code == "Success").unwrap();
    assert_eq!(sts_call.access_key_id.as_deref(), Some("STS.AK"));
}

#[tokio::test]
async fn the_default_clock_window_refuses_old_requests() {
    let lab = Lab::start(settings(100)).await;
    let mut headers = vec![];
    let cred = lab.admin_key.clone();
    let params = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
    let host = lab.api.to_string();
    let signed = crossdock_acs3::sign_request(&crossdock_acs3::SigningInput {
        method: "POST",
        host: &host,
        action: "DescribeVSwitches",
        version: "2016-04-28",
        params: &params,
        access_key_id: &cred.id,
        access_key_secret: &cred.secret,
        security_token: None,
        date: "2020-01-01T00:00:00Z",
        nonce: "n",
    });
    headers.extend(signed.headers.into_iter().filter(|(k, _)| k != "host"));
    let mut rb = lab.http.post(format!("http://{host}/?{}", signed.query));
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let r = send(rb).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "InvalidTimeStamp.Expired"),
        "{:?}",
        r.json
    );
    // an unknown key
    let r = lab
        .call(
            &Cred {
                id: "LTAInope".into(),
                secret: "x".into(),
                token: None,
            },
            "DescribeVSwitches",
            &[],
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidAccessKeyId.NotFound"));
    // a wrong secret
    let r = lab
        .call(
            &Cred {
                secret: "wrong".into(),
                ..cred.clone()
            },
            "DescribeVSwitches",
            &[],
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    // unsigned
    let r = send(lab.http.post(format!(
        "http://{host}/?Action=DescribeVSwitches&RegionId=cn-hangzhou"
    )))
    .await;
    assert_eq!((r.status, r.code()), (400, "IncompleteSignature"));
    // an action that does not exist
    let r = lab.admin_call("DescribeNothing", &[]).await;
    assert_eq!((r.status, r.code()), (404, "InvalidAction.NotFound"));
}

#[tokio::test]
async fn signature_v1_over_get_is_accepted() {
    let lab = Lab::start(settings(100)).await;
    let cred = lab.admin_key.clone();
    let mut params: Vec<(String, String)> = [
        ("AccessKeyId", cred.id.as_str()),
        ("Action", "DescribeVSwitches"),
        ("Format", "JSON"),
        ("RegionId", "cn-hangzhou"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "v1-nonce-1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2016-04-28"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.push((
        "Timestamp".into(),
        crossdock_vpcsim::model::iso(crossdock_vpcsim::model::now_ms()),
    ));
    let sig = crossdock_acs3::v1_signature("GET", &params, &cred.secret);
    params.push(("Signature".into(), sig));
    let url = format!(
        "http://{}/?{}",
        lab.api,
        crossdock_acs3::canonical_query(&params)
    );
    let r = send(lab.http.get(&url)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        r.json["VSwitches"]["VSwitch"][0]["CidrBlock"],
        "192.168.1.0/24"
    );
    // the same URL again is a replay
    let r = send(lab.http.get(&url)).await;
    assert_eq!(r.code(), "SignatureNonceUsed");
    // POST with the same signature: the method is signed
    let r = send(lab.http.post(url.replace("v1-nonce-1", "v1-nonce-2"))).await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
}

#[tokio::test]
async fn routes_go_pending_then_available_and_reach_the_data_plane() {
    let lab = Lab::start(settings(300)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let table = lab.table().await;
    let r = lab
        .admin_call(
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.1.0.0/24"),
                ("NextHopType", "Instance"),
                ("NextHopId", &h1.instance_id),
                ("RouteEntryName", "crossdock"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let id = r.json["RouteEntryId"].as_str().unwrap().to_string();
    assert!(id.starts_with("rte-"));
    assert!(r.json["RequestId"].is_string());
    let e = lab.entry(&id).await.unwrap();
    assert_eq!(e["Status"], "Pending");
    assert!(lab
        .dataplane
        .applied
        .lock()
        .unwrap()
        .routes_of(&table)
        .is_empty());
    lab.wait_status(&id, "Available").await;
    let dp = lab.dataplane.clone();
    eventually(5, "the data plane to get the route", || {
        let (dp, table) = (dp.clone(), table.clone());
        async move {
            dp.applied
                .lock()
                .unwrap()
                .routes_of(&table)
                .get(&"10.1.0.0/24".parse().unwrap())
                == Some(&"192.168.1.11".parse().unwrap())
        }
    })
    .await;
    let st = lab.admin.dataplane().await.unwrap();
    assert_eq!(st.kind, "memory");
    // delete: Deleting, then gone, and out of the data plane
    let r = lab
        .admin_call("DeleteRouteEntry", &[("RouteEntryId", &id)])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    lab.wait_gone(&id).await;
    eventually(5, "the data plane to drop the route", || {
        let (dp, table) = (dp.clone(), table.clone());
        async move { dp.applied.lock().unwrap().routes_of(&table).is_empty() }
    })
    .await;
    let r = lab
        .admin_call("DeleteRouteEntry", &[("RouteEntryId", &id)])
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidRouteEntryId.NotFound"));
}

#[tokio::test]
async fn one_route_write_at_a_time_per_vpc() {
    let lab = Lab::start(settings(400)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let h2 = lab.instance("h2", "192.168.1.12").await;
    let table = lab.table().await;
    let r = lab
        .admin_call(
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.1.0.0/24"),
                ("NextHopId", &h1.instance_id),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let first = r.json["RouteEntryId"].as_str().unwrap().to_string();
    let r = lab
        .admin_call(
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.2.0.0/24"),
                ("NextHopId", &h2.instance_id),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "IncorrectRouteEntryStatus"),
        "{:?}",
        r.json
    );
    lab.wait_status(&first, "Available").await;
    // two writes in flight at once: the one that comes second gets TaskConflict
    lab.admin
        .set_faults(&Faults {
            latency_ms: BTreeMap::from([("CreateRouteEntry".into(), 300)]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let pa = [
        ("RouteTableId", table.as_str()),
        ("DestinationCidrBlock", "10.2.0.0/24"),
        ("NextHopId", h2.instance_id.as_str()),
    ];
    let a = lab.admin_call("CreateRouteEntry", &pa);
    let pb = [
        ("RouteTableId", table.as_str()),
        ("DestinationCidrBlock", "10.3.0.0/24"),
        ("NextHopId", h2.instance_id.as_str()),
    ];
    // both are sent at once; whichever starts first holds the VPC for 300 ms
    let b = lab.admin_call("CreateRouteEntry", &pb);
    let (a, b) = tokio::join!(a, b);
    let mut codes = vec![a.code().to_string(), b.code().to_string()];
    codes.sort();
    assert_eq!(codes, vec!["Success", "TaskConflict"]);
    // a TaskConflict storm refuses every route write, and stops when switched off
    lab.admin
        .set_faults(&Faults {
            task_conflict_storm: true,
            ..Faults::default()
        })
        .await
        .unwrap();
    let created = if a.code() == "Success" {
        a.json["RouteEntryId"].as_str().unwrap().to_string()
    } else {
        b.json["RouteEntryId"].as_str().unwrap().to_string()
    };
    lab.wait_status(&created, "Available").await;
    let r = lab
        .admin_call("DeleteRouteEntry", &[("RouteEntryId", &created)])
        .await;
    assert_eq!(r.code(), "TaskConflict");
    lab.admin.reset_faults().await.unwrap();
    let r = lab
        .admin_call("DeleteRouteEntry", &[("RouteEntryId", &created)])
        .await;
    assert_eq!(r.code(), "Success");
}

#[tokio::test]
async fn conflicts_quota_and_unknown_hops_answer_with_alibabas_codes() {
    let lab = Lab::start(Settings {
        route_entry_quota: 2,
        ..settings(0)
    })
    .await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let table = lab.table().await;
    let create = |dst: &'static str, hop: String| {
        let lab = &lab;
        let table = table.clone();
        async move {
            lab.admin_call(
                "CreateRouteEntry",
                &[
                    ("RouteTableId", &table),
                    ("DestinationCidrBlock", dst),
                    ("NextHopId", &hop),
                ],
            )
            .await
        }
    };
    assert_eq!(
        create("10.1.0.0/24", h1.instance_id.clone()).await.code(),
        "Success"
    );
    let r = create("10.1.0.0/24", h1.instance_id.clone()).await;
    assert_eq!((r.status, r.code()), (400, "InvalidCIDRBlock.Duplicate"));
    let r = create("192.168.1.64/26", h1.instance_id.clone()).await;
    assert_eq!((r.status, r.code()), (400, "InvalidCidrBlock"));
    let r = create("100.64.1.0/24", h1.instance_id.clone()).await;
    assert_eq!((r.status, r.code()), (400, "InvalidCidrBlock"));
    let r = create("10.2.0.0/24", "i-doesnotexist".into()).await;
    assert_eq!((r.status, r.code()), (404, "InvalidNextHopId.NotFound"));
    assert_eq!(
        create("10.2.0.0/24", h1.instance_id.clone()).await.code(),
        "Success"
    );
    let r = create("10.3.0.0/24", h1.instance_id.clone()).await;
    assert_eq!((r.status, r.code()), (400, "QuotaExceeded"));
    // someone else's route, put in behind the API's back, is a duplicate too
    lab.admin
        .set_settings(&Settings {
            route_entry_quota: 200,
            ..settings(0)
        })
        .await
        .unwrap();
    lab.admin
        .put_route(&PutRoute {
            destination_cidr_block: Some("10.9.0.0/24".parse().unwrap()),
            next_hop_id: "i-someoneelse".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        create("10.9.0.0/24", h1.instance_id.clone()).await.code(),
        "InvalidCIDRBlock.Duplicate"
    );
    // a route held Pending by the admin blocks writes until released
    let held = lab
        .admin
        .put_route(&PutRoute {
            destination_cidr_block: Some("10.8.0.0/24".parse().unwrap()),
            next_hop_id: h1.instance_id.clone(),
            status: RouteStatus::Pending,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        create("10.7.0.0/24", h1.instance_id.clone()).await.code(),
        "IncorrectRouteEntryStatus"
    );
    lab.admin
        .set_route_status(
            &held.route_entry_id,
            &crossdock_vpcsim::admin::SetRouteStatus {
                status: RouteStatus::Available,
                status_for_ms: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        create("10.7.0.0/24", h1.instance_id.clone()).await.code(),
        "Success"
    );
}

#[tokio::test]
async fn ram_policies_limit_actions() {
    let lab = Lab::start(settings(0)).await;
    let key = lab
        .admin
        .create_access_key(&CreateAccessKey {
            allowed_actions: Some(vec!["vpc:Describe*".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    let cred = Cred {
        id: key.access_key_id,
        secret: key.access_key_secret,
        token: None,
    };
    assert_eq!(
        lab.call(&cred, "DescribeVSwitches", &[]).await.code(),
        "Success"
    );
    let table = lab.table().await;
    let r = lab
        .call(
            &cred,
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.1.0.0/24"),
                ("NextHopId", "i-x"),
            ],
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "Forbidden.RAM"));
    let r = lab.call(&cred, "DescribeInstances", &[]).await;
    assert_eq!((r.status, r.code()), (403, "Forbidden.RAM"));
    // the call log attributes calls to the key and counts write attempts
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(log.writes, 1);
    assert!(log
        .calls
        .iter()
        .all(|c| c.access_key_id.as_deref() == Some(cred.id.as_str())));
    lab.admin.reset_calls().await.unwrap();
    assert_eq!(lab.admin.calls(None).await.unwrap().total, 0);
}

#[tokio::test]
async fn sts_tokens_are_checked_and_expire() {
    let lab = Lab::start(settings(0)).await;
    let key = lab
        .admin
        .create_access_key(&CreateAccessKey {
            security_token: Some("tok-1".into()),
            expires_in_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(key.access_key_id.starts_with("STS."));
    let good = Cred {
        id: key.access_key_id.clone(),
        secret: key.access_key_secret.clone(),
        token: Some("tok-1".into()),
    };
    assert_eq!(
        lab.call(&good, "DescribeVSwitches", &[]).await.code(),
        "Success"
    );
    let r = lab
        .call(
            &Cred {
                token: Some("tok-2".into()),
                ..good.clone()
            },
            "DescribeVSwitches",
            &[],
        )
        .await;
    assert_eq!(r.code(), "InvalidSecurityToken.MismatchWithAccessKey");
    let r = lab
        .call(
            &Cred {
                token: None,
                ..good.clone()
            },
            "DescribeVSwitches",
            &[],
        )
        .await;
    assert_eq!(r.code(), "MissingSecurityToken");
    lab.admin.expire_credentials().await.unwrap();
    let r = lab.call(&good, "DescribeVSwitches", &[]).await;
    assert_eq!((r.status, r.code()), (400, "InvalidSecurityToken.Expired"));
    let old = lab
        .admin
        .create_access_key(&CreateAccessKey {
            security_token: Some("t".into()),
            expires_in_secs: Some(-5),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = lab
        .call(
            &Cred {
                id: old.access_key_id,
                secret: old.access_key_secret,
                token: Some("t".into()),
            },
            "DescribeVSwitches",
            &[],
        )
        .await;
    assert_eq!(r.code(), "InvalidSecurityToken.Expired");
}

#[tokio::test]
async fn throttling_per_action_and_per_account() {
    let lab = Lab::start(Settings {
        action_qps: BTreeMap::from([("DescribeVSwitches".into(), 3)]),
        account_qps: 0,
        ..settings(0)
    })
    .await;
    let mut codes = vec![];
    for _ in 0..6 {
        codes.push(lab.admin_call("DescribeVSwitches", &[]).await);
    }
    let throttled: Vec<_> = codes
        .iter()
        .filter(|r| r.code() == "Throttling.User")
        .collect();
    // 3 tokens of burst; 6 calls in well under a second refill at most 2 more
    assert!(
        !throttled.is_empty() && throttled.len() <= 3,
        "{:?}",
        codes.iter().map(|r| r.code()).collect::<Vec<_>>()
    );
    let t = throttled[0];
    assert_eq!(t.status, 400);
    let hint = t
        .headers
        .get("x-ratelimit-user-api")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        hint.contains("Limit:3") && hint.contains("TimeLeft:"),
        "{hint}"
    );
    // other actions are not limited by that action's bucket
    assert_eq!(lab.admin_call("DescribeVpcs", &[]).await.code(), "Success");
    // the account limit covers every action
    lab.admin
        .set_settings(&Settings {
            account_qps: 2,
            ..settings(0)
        })
        .await
        .unwrap();
    let mut n = 0;
    for _ in 0..5 {
        let r = lab.admin_call("DescribeVpcs", &[]).await;
        if r.code() == "Throttling.User" {
            assert!(r.headers.get("x-ratelimit-user").is_some());
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[tokio::test]
async fn client_token_makes_creates_idempotent() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let table = lab.table().await;
    let p = [
        ("RouteTableId", table.as_str()),
        ("DestinationCidrBlock", "10.1.0.0/24"),
        ("NextHopId", h1.instance_id.as_str()),
        ("ClientToken", "tok-abc"),
    ];
    let a = lab.admin_call("CreateRouteEntry", &p).await;
    let b = lab.admin_call("CreateRouteEntry", &p).await;
    assert_eq!(a.code(), "Success");
    assert_eq!(b.code(), "Success", "{:?}", b.json);
    assert_eq!(a.json["RouteEntryId"], b.json["RouteEntryId"]);
    assert_ne!(a.json["RequestId"], b.json["RequestId"]);
    let state = lab.admin.state().await.unwrap();
    assert_eq!(
        state
            .entries
            .iter()
            .filter(|e| e.destination_cidr_block.to_string() == "10.1.0.0/24")
            .count(),
        1
    );
    let r = lab
        .admin_call(
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.2.0.0/24"),
                ("NextHopId", &h1.instance_id),
                ("ClientToken", "tok-abc"),
            ],
        )
        .await;
    assert_eq!(r.code(), "IdempotentParameterMismatch");
    // a response lost after the write: the retry with the same token gets the original answer
    lab.admin
        .set_faults(&Faults {
            errors: BTreeMap::from([(
                "CreateRouteEntry".into(),
                ErrorFault {
                    rate: 1.0,
                    code: "ServiceUnavailable".into(),
                    after_commit: true,
                },
            )]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let p = [
        ("RouteTableId", table.as_str()),
        ("DestinationCidrBlock", "10.3.0.0/24"),
        ("NextHopId", h1.instance_id.as_str()),
        ("ClientToken", "tok-lost"),
    ];
    let r = lab.admin_call("CreateRouteEntry", &p).await;
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable"));
    lab.admin.reset_faults().await.unwrap();
    let r = lab.admin_call("CreateRouteEntry", &p).await;
    assert_eq!(r.code(), "Success");
    let state = lab.admin.state().await.unwrap();
    assert_eq!(
        state
            .entries
            .iter()
            .filter(|e| e.destination_cidr_block.to_string() == "10.3.0.0/24")
            .count(),
        1
    );
}

#[tokio::test]
async fn faults_api_down_and_error_rates() {
    let lab = Lab::start(settings(0)).await;
    lab.admin
        .set_faults(&Faults {
            api_down: true,
            ..Faults::default()
        })
        .await
        .unwrap();
    let r = lab.admin_call("DescribeVSwitches", &[]).await;
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable"));
    lab.admin
        .set_faults(&Faults {
            errors: BTreeMap::from([(
                "*".into(),
                ErrorFault {
                    rate: 0.5,
                    code: "InternalError".into(),
                    after_commit: false,
                },
            )]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let mut failed = 0;
    for _ in 0..40 {
        let r = lab.admin_call("DescribeVpcs", &[]).await;
        if r.code() == "InternalError" {
            assert_eq!(r.status, 500);
            failed += 1;
        }
    }
    assert!(
        (5..=35).contains(&failed),
        "{failed} of 40 failed at rate 0.5"
    );
    lab.admin.reset_faults().await.unwrap();
    // latency is added
    lab.admin
        .set_faults(&Faults {
            latency_ms: BTreeMap::from([("*".into(), 200)]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let t = std::time::Instant::now();
    assert_eq!(lab.admin_call("DescribeVpcs", &[]).await.code(), "Success");
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn listings_page_through_everything() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let table = lab.table().await;
    let batch: Vec<(String, String)> = (0..30)
        .flat_map(|i| {
            vec![
                (
                    format!("RouteEntries.{}.RouteTableId", i + 1),
                    table.clone(),
                ),
                (
                    format!("RouteEntries.{}.DstCidrBlock", i + 1),
                    format!("10.{i}.0.0/24"),
                ),
                (
                    format!("RouteEntries.{}.NextHop", i + 1),
                    h1.instance_id.clone(),
                ),
                (
                    format!("RouteEntries.{}.NextHopType", i + 1),
                    "Instance".into(),
                ),
            ]
        })
        .collect();
    let refs: Vec<(&str, &str)> = batch
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = lab.admin_call("CreateRouteEntries", &refs).await;
    assert_eq!(r.json["SuccessCount"], 30, "{:?}", r.json);
    assert_eq!(r.json["RouteEntryIds"].as_array().unwrap().len(), 30);
    let mut token = String::new();
    let mut n = 0;
    let mut pages = 0;
    loop {
        let mut p = vec![
            ("RouteTableId", table.as_str()),
            ("RouteEntryType", "Custom"),
            ("MaxResult", "7"),
        ];
        if !token.is_empty() {
            p.push(("NextToken", token.as_str()));
        }
        let r = lab.admin_call("DescribeRouteEntryList", &p).await;
        n += r.json["RouteEntrys"]["RouteEntry"]
            .as_array()
            .unwrap()
            .len();
        pages += 1;
        token = r.json["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!((n, pages), (30, 5));
    for i in 2..=9 {
        lab.instance(&format!("h{i}"), &format!("192.168.1.{}", 10 + i))
            .await;
    }
    let r = lab
        .admin_call(
            "DescribeInstances",
            &[("PageSize", "4"), ("PageNumber", "3")],
        )
        .await;
    assert_eq!(r.json["TotalCount"], 9);
    assert_eq!(r.json["Instances"]["Instance"].as_array().unwrap().len(), 1);
    let r = lab
        .admin_call("DescribeRouteTableList", &[("PageSize", "51")])
        .await;
    assert_eq!(r.code(), "InvalidParameter");
}

#[tokio::test]
async fn eni_source_dest_check_is_on_by_default_and_can_be_switched_off() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab
        .admin
        .create_instance(&crossdock_vpcsim::admin::CreateInstance {
            hostname: "h1".into(),
            private_ip: Some("192.168.1.11".parse().unwrap()),
            port: Some("p-h1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(h1.source_dest_check);
    assert!(h1.mac.starts_with("00:16:3e:"));
    let r = lab
        .admin_call(
            "DescribeNetworkInterfaces",
            &[("NetworkInterfaceId.1", &h1.eni_id)],
        )
        .await;
    assert_eq!(
        r.json["NetworkInterfaceSets"]["NetworkInterfaceSet"][0]["SourceDestCheck"],
        true
    );
    let dp = lab.dataplane.clone();
    eventually(5, "the port policy", || {
        let dp = dp.clone();
        async move {
            dp.applied
                .lock()
                .unwrap()
                .ports
                .iter()
                .any(|p| p.port == "p-h1" && p.source_dest_check)
        }
    })
    .await;
    let r = lab
        .admin_call(
            "ModifyNetworkInterfaceAttribute",
            &[
                ("NetworkInterfaceId", &h1.eni_id),
                ("SourceDestCheck", "false"),
            ],
        )
        .await;
    assert_eq!(r.code(), "Success", "{:?}", r.json);
    eventually(5, "the port policy to be relaxed", || {
        let dp = dp.clone();
        async move {
            dp.applied
                .lock()
                .unwrap()
                .ports
                .iter()
                .any(|p| p.port == "p-h1" && !p.source_dest_check)
        }
    })
    .await;
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(log.writes, 1);
}

#[tokio::test]
async fn state_survives_a_restart_and_timers_resume() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let id = lab.available_route("10.1.0.0/24", &h1).await;
    lab.admin
        .set_role(&SetRole {
            role_name: "limited".into(),
            allowed_actions: Some(vec!["vpc:Describe*".into()]),
        })
        .await
        .unwrap();
    // a route that will still be Pending when the emulator stops
    lab.admin.set_settings(&settings(1500)).await.unwrap();
    let table = lab.table().await;
    let r = lab
        .admin_call(
            "CreateRouteEntry",
            &[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.2.0.0/24"),
                ("NextHopId", &h1.instance_id),
            ],
        )
        .await;
    let pending = r.json["RouteEntryId"].as_str().unwrap().to_string();
    let before = lab.admin.state().await.unwrap();
    let lab = lab.restart(settings(1500)).await;
    let after = lab.admin.state().await.unwrap();
    assert_eq!(after.vpc, before.vpc);
    assert_eq!(after.instances, before.instances);
    assert_eq!(after.access_keys, before.access_keys);
    assert_eq!(after.roles, before.roles);
    assert_eq!(lab.entry(&id).await.unwrap()["Status"], "Available");
    lab.wait_status(&pending, "Available").await;
    // routes are re-applied to the (new) data plane
    let dp = lab.dataplane.clone();
    eventually(5, "routes re-applied after restart", || {
        let dp = dp.clone();
        async move { route_count(&dp.applied.lock().unwrap()) == 2 }
    })
    .await;
    // new ids do not collide with the old ones
    let h2 = lab.instance("h2", "192.168.1.12").await;
    assert!(before
        .instances
        .iter()
        .all(|i| i.instance_id != h2.instance_id));
}

#[tokio::test]
async fn the_api_socket_speaks_the_same_protocol() {
    let lab = Lab::start(settings(0)).await;
    // the socket carries the same signed requests; an unsigned one is refused the same way
    let r = crossdock_unixhttp::request(
        lab.dir.path().join("api.sock"),
        "POST",
        "/?Action=DescribeVpcs&RegionId=cn-hangzhou",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["Code"], "IncompleteSignature");
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(log.calls[0].transport, "unix");
}

// ----- fleet mode: instance listing and batch route writes -----

/// `RouteEntries.N.*` parameters for a batch create: (destination, next hop) per entry.
fn batch_params(table: &str, entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .enumerate()
        .flat_map(|(i, (dst, hop))| {
            let n = i + 1;
            [
                (format!("RouteEntries.{n}.RouteTableId"), table.to_string()),
                (format!("RouteEntries.{n}.DstCidrBlock"), dst.to_string()),
                (format!("RouteEntries.{n}.NextHop"), hop.to_string()),
                (format!("RouteEntries.{n}.NextHopType"), "Instance".into()),
                (format!("RouteEntries.{n}.Name"), "crossdock".into()),
                (
                    format!("RouteEntries.{n}.Description"),
                    format!("crossdock:{hop}"),
                ),
            ]
        })
        .collect()
}

fn refs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Every page of a tag-filtered `DescribeInstances`, following `NextToken`: (instance ids, pages).
async fn list_tagged(lab: &Lab, key: &str, value: &str, page: &str) -> (Vec<String>, usize) {
    let info = lab.admin.info().await.unwrap();
    let (mut ids, mut pages, mut token) = (vec![], 0, String::new());
    loop {
        let mut p = vec![
            ("VpcId", info.vpc_id.as_str()),
            ("Tag.1.Key", key),
            ("Tag.1.Value", value),
            ("MaxResults", page),
        ];
        if !token.is_empty() {
            p.push(("NextToken", token.as_str()));
        }
        let r = lab.admin_call("DescribeInstances", &p).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        for k in [
            "RequestId",
            "NextToken",
            "TotalCount",
            "PageNumber",
            "PageSize",
        ] {
            assert!(!r.json[k].is_null(), "{k} missing: {:?}", r.json);
        }
        for i in r.json["Instances"]["Instance"].as_array().unwrap() {
            ids.push(i["InstanceId"].as_str().unwrap().to_string());
        }
        pages += 1;
        token = r.json["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            return (ids, pages);
        }
    }
}

async fn tagged_instance(
    lab: &Lab,
    n: u8,
    tags: &[(&str, &str)],
) -> crossdock_vpcsim::model::Instance {
    lab.admin
        .create_instance(&crossdock_vpcsim::admin::CreateInstance {
            hostname: format!("h{n}"),
            private_ip: Some(format!("192.168.1.{}", 10 + n).parse().unwrap()),
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn describe_instances_filters_by_tag_pages_and_forgets_released_instances() {
    let lab = Lab::start(settings(0)).await;
    let mut prod = vec![];
    for n in 1..=23 {
        let cluster = if n % 4 == 0 { "dev" } else { "prod" };
        let i = tagged_instance(
            &lab,
            n,
            &[("crossdock-cluster", cluster), ("n", &n.to_string())],
        )
        .await;
        if cluster == "prod" {
            prod.push(i.instance_id);
        }
    }
    let (ids, pages) = list_tagged(&lab, "crossdock-cluster", "prod", "5").await;
    assert_eq!(
        (ids.clone(), pages),
        (prod.clone(), 4),
        "creation order, every page once"
    );
    // one item of the answer, in Alibaba's shape
    let r = lab
        .admin_call(
            "DescribeInstances",
            &[("InstanceIds", &format!("[\"{}\"]", prod[0]))],
        )
        .await;
    let i = &r.json["Instances"]["Instance"][0];
    assert_eq!(r.json["TotalCount"], 1);
    assert_eq!(
        (i["Status"].as_str(), i["HostName"].as_str()),
        (Some("Running"), Some("h1"))
    );
    assert_eq!(
        i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0],
        "192.168.1.11"
    );
    assert_eq!(
        i["NetworkInterfaces"]["NetworkInterface"][0]["Type"],
        "Primary"
    );
    assert_eq!(
        i["Tags"]["Tag"][0],
        serde_json::json!({"TagKey": "crossdock-cluster", "TagValue": "prod"})
    );
    assert_eq!(i["RegionId"], "cn-hangzhou");
    // stop one, release another (between two pages of a listing: the token still holds)
    let r = lab
        .admin_call(
            "DescribeInstances",
            &[
                ("Tag.1.Key", "crossdock-cluster"),
                ("Tag.1.Value", "prod"),
                ("MaxResults", "3"),
            ],
        )
        .await;
    let token = r.json["NextToken"].as_str().unwrap().to_string();
    lab.admin.stop_instance(&prod[5]).await.unwrap();
    let released = lab.admin.release_instance(&prod[3]).await.unwrap();
    assert_eq!(released.instance_id, prod[3]);
    let r = lab
        .admin_call(
            "DescribeInstances",
            &[
                ("Tag.1.Key", "crossdock-cluster"),
                ("Tag.1.Value", "prod"),
                ("MaxResults", "3"),
                ("NextToken", &token),
            ],
        )
        .await;
    let second: Vec<&str> = r.json["Instances"]["Instance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert_eq!(
        second,
        [prod[4].as_str(), prod[5].as_str(), prod[6].as_str()]
    );
    assert_eq!(r.json["Instances"]["Instance"][1]["Status"], "Stopped");
    let by_id = format!("[\"{}\",\"{}\"]", prod[3], prod[5]);
    let r = lab
        .admin_call("DescribeInstances", &[("InstanceIds", &by_id)])
        .await;
    assert_eq!(
        r.json["TotalCount"], 1,
        "the released instance is absent: {:?}",
        r.json
    );
    let r = lab
        .admin_call("DescribeInstances", &[("Status", "Stopped")])
        .await;
    assert_eq!(
        r.json["Instances"]["Instance"][0]["InstanceId"],
        prod[5].as_str()
    );
    // untagging takes an instance out of the fleet; starting brings Running back
    lab.admin.set_instance_tags(&prod[0], &[]).await.unwrap();
    lab.admin.start_instance(&prod[5]).await.unwrap();
    let (ids, _) = list_tagged(&lab, "crossdock-cluster", "prod", "100").await;
    assert_eq!(ids.len(), prod.len() - 2);
    assert!(!ids.contains(&prod[0]) && !ids.contains(&prod[3]));
    // refusals with Alibaba's codes; the IP of the released instance can be used again
    let r = lab
        .admin_call("DescribeInstances", &[("MaxResults", "101")])
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter.MaxResults"));
    assert!(lab.admin.release_instance(&prod[3]).await.is_err());
    let again = lab
        .instance("h4-again", &released.private_ip.to_string())
        .await;
    assert_ne!(again.instance_id, released.instance_id);
}

#[tokio::test]
async fn describe_instances_needs_its_ram_action() {
    let lab = Lab::start(settings(0)).await;
    let key = lab
        .admin
        .create_access_key(&CreateAccessKey {
            allowed_actions: Some(vec![
                "ecs:DescribeInstances".into(),
                "vpc:CreateRouteEntries".into(),
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    let cred = Cred {
        id: key.access_key_id,
        secret: key.access_key_secret,
        token: None,
    };
    assert_eq!(
        lab.call(&cred, "DescribeInstances", &[]).await.code(),
        "Success"
    );
    assert_eq!(
        lab.call(&cred, "DeleteRouteEntries", &[]).await.code(),
        "Forbidden.RAM"
    );
    assert_eq!(
        lab.call(&cred, "DescribeNetworkInterfaces", &[])
            .await
            .code(),
        "Forbidden.RAM"
    );
}

#[tokio::test]
async fn released_instances_leave_the_data_plane_and_their_routes_stay() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab
        .admin
        .create_instance(&crossdock_vpcsim::admin::CreateInstance {
            hostname: "h1".into(),
            private_ip: Some("192.168.1.11".parse().unwrap()),
            port: Some("p-h1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let route = lab.available_route("10.1.0.0/24", &h1).await;
    let dp = lab.dataplane.clone();
    eventually(5, "the route and the port in the data plane", || {
        let dp = dp.clone();
        async move {
            let a = dp.applied.lock().unwrap();
            route_count(&a) == 1 && a.ports.len() == 1
        }
    })
    .await;
    lab.admin.release_instance(&h1.instance_id).await.unwrap();
    eventually(
        5,
        "the released instance's port and route out of the data plane",
        || {
            let dp = dp.clone();
            async move {
                let a = dp.applied.lock().unwrap();
                route_count(&a) == 0 && a.ports.is_empty()
            }
        },
    )
    .await;
    let e = lab
        .entry(&route)
        .await
        .expect("the route entry stays in the table");
    assert_eq!(
        e["NextHops"]["NextHop"][0]["NextHopId"],
        h1.instance_id.as_str()
    );
}

#[tokio::test]
async fn batch_create_fails_per_entry_and_respects_the_quota() {
    let lab = Lab::start(Settings {
        route_entry_quota: 4,
        ..settings(300)
    })
    .await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let h2 = lab.instance("h2", "192.168.1.12").await;
    let table = lab.table().await;
    let existing = lab.available_route("10.0.0.0/24", &h1).await;
    let (a, b) = (h1.instance_id.as_str(), h2.instance_id.as_str());
    let p = batch_params(
        &table,
        &[
            ("10.0.0.0/24", a),    // exists already
            ("10.1.0.0/24", a),    // ok
            ("10.1.0.0/24", b),    // duplicate within the batch
            ("192.168.1.0/25", b), // inside the vSwitch
            ("100.64.3.0/24", b),  // cloud services
            ("10.2.0.0/24", "i-gone"),
            ("10.3.0.0/24", b), // ok
            ("10.4.0.0/24", b), // ok: the 4th custom entry, the quota
            ("10.5.0.0/24", b), // over the quota
            ("10.6.0.0/24", a), // over the quota
        ],
    );
    let r = lab.admin_call("CreateRouteEntries", &refs(&p)).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        (
            r.json["SuccessCount"].as_u64(),
            r.json["FailedCount"].as_u64()
        ),
        (Some(3), Some(7))
    );
    let codes: Vec<(&str, &str)> = r.json["FailedRouteEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["DstCidrBlock"].as_str().unwrap(),
                f["FailedCode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("10.0.0.0/24", "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE"),
            ("10.1.0.0/24", "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE"),
            ("192.168.1.0/25", "InvalidCidrBlock"),
            ("100.64.3.0/24", "InvalidCidrBlock"),
            ("10.2.0.0/24", "InvalidNextHopId.NotFound"),
            ("10.5.0.0/24", "QuotaExceeded"),
            ("10.6.0.0/24", "QuotaExceeded"),
        ]
    );
    // the created entries are Pending, then Available, with the name and description given
    let ids: Vec<String> = r.json["RouteEntryIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lab.entry(&ids[0]).await.unwrap()["Status"], "Pending");
    // while they are Pending, every route write of the VPC is refused, batch or single
    let more = batch_params(&table, &[("10.9.0.0/24", a)]);
    assert_eq!(
        lab.admin_call("CreateRouteEntries", &refs(&more))
            .await
            .code(),
        "IncorrectRouteEntryStatus"
    );
    let del = lab
        .admin_call(
            "DeleteRouteEntries",
            &[
                ("RouteEntries.1.RouteTableId", &table),
                ("RouteEntries.1.RouteEntryId", &existing),
            ],
        )
        .await;
    assert_eq!(del.code(), "IncorrectRouteEntryStatus");
    for id in &ids {
        lab.wait_status(id, "Available").await;
    }
    let e = lab.entry(&ids[2]).await.unwrap();
    assert_eq!(
        (e["RouteEntryName"].as_str(), e["Description"].as_str()),
        (Some("crossdock"), Some(format!("crossdock:{b}").as_str()))
    );
    // more than 50 entries are refused as a whole
    let dsts: Vec<String> = (0..51).map(|i| format!("10.100.{i}.0/24")).collect();
    let big: Vec<(&str, &str)> = dsts.iter().map(|d| (d.as_str(), a)).collect();
    let r = lab
        .admin_call("CreateRouteEntries", &refs(&batch_params(&table, &big)))
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
}

#[tokio::test]
async fn batch_writes_are_serialised_with_single_writes_and_obey_faults() {
    let lab = Lab::start(settings(0)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let table = lab.table().await;
    let a = h1.instance_id.as_str();
    lab.admin
        .set_faults(&Faults {
            latency_ms: BTreeMap::from([("CreateRouteEntries".into(), 300)]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let batch = batch_params(&table, &[("10.1.0.0/24", a), ("10.2.0.0/24", a)]);
    let batch_refs = refs(&batch);
    let single = [
        ("RouteTableId", table.as_str()),
        ("DestinationCidrBlock", "10.3.0.0/24"),
        ("NextHopId", a),
    ];
    let (first, second) = tokio::join!(lab.admin_call("CreateRouteEntries", &batch_refs), async {
        // the batch holds the VPC's write slot for 300 ms
        tokio::time::sleep(Duration::from_millis(100)).await;
        lab.admin_call("CreateRouteEntry", &single).await
    });
    assert_eq!(first.json["SuccessCount"], 2, "{:?}", first.json);
    assert_eq!(second.code(), "TaskConflict");
    // injected errors and the TaskConflict storm reach batch writes like any other write
    lab.admin
        .set_faults(&Faults {
            task_conflict_storm: true,
            ..Faults::default()
        })
        .await
        .unwrap();
    let more = batch_params(&table, &[("10.4.0.0/24", a)]);
    assert_eq!(
        lab.admin_call("CreateRouteEntries", &refs(&more))
            .await
            .code(),
        "TaskConflict"
    );
    lab.admin
        .set_faults(&Faults {
            errors: BTreeMap::from([(
                "DeleteRouteEntries".into(),
                ErrorFault {
                    code: "Throttling.User".into(),
                    ..Default::default()
                },
            )]),
            ..Faults::default()
        })
        .await
        .unwrap();
    let del = [
        ("RouteEntries.1.RouteTableId", table.as_str()),
        ("RouteEntries.1.DstCidrBlock", "10.1.0.0/24"),
        ("RouteEntries.1.NextHop", a),
    ];
    assert_eq!(
        lab.admin_call("DeleteRouteEntries", &del).await.code(),
        "Throttling.User"
    );
    let log = lab.admin.calls(None).await.unwrap();
    assert!(log
        .calls
        .iter()
        .any(|c| c.action == "CreateRouteEntries" && c.write));
}

#[tokio::test]
async fn batch_delete_by_id_or_destination_goes_deleting_then_gone() {
    let lab = Lab::start(settings(200)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let h2 = lab.instance("h2", "192.168.1.12").await;
    let table = lab.table().await;
    let r1 = lab.available_route("10.1.0.0/24", &h1).await;
    let r2 = lab.available_route("10.2.0.0/24", &h2).await;
    let keep = lab.available_route("10.3.0.0/24", &h2).await;
    let system = lab.admin.state().await.unwrap().entries[0]
        .route_entry_id
        .clone();
    let p = [
        ("RouteEntries.1.RouteTableId", table.as_str()),
        ("RouteEntries.1.RouteEntryId", r1.as_str()),
        ("RouteEntries.2.RouteTableId", table.as_str()),
        ("RouteEntries.2.DstCidrBlock", "10.2.0.0/24"),
        ("RouteEntries.2.NextHop", h2.instance_id.as_str()),
        // the right destination with another next hop is not that entry
        ("RouteEntries.3.RouteTableId", table.as_str()),
        ("RouteEntries.3.DstCidrBlock", "10.3.0.0/24"),
        ("RouteEntries.3.NextHop", h1.instance_id.as_str()),
        ("RouteEntries.4.RouteTableId", table.as_str()),
        ("RouteEntries.4.RouteEntryId", system.as_str()),
    ];
    let r = lab.admin_call("DeleteRouteEntries", &p).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        (
            r.json["SuccessCount"].as_u64(),
            r.json["FailedCount"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let codes: Vec<&str> = r.json["FailedRouteEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FailedCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["InvalidRouteEntryId.NotFound", "OperationDenied"]);
    assert_eq!(lab.entry(&r1).await.unwrap()["Status"], "Deleting");
    lab.wait_gone(&r1).await;
    lab.wait_gone(&r2).await;
    assert_eq!(lab.entry(&keep).await.unwrap()["Status"], "Available");
}

fn route_count(d: &crossdock_vpcsim::dataplane::Desired) -> usize {
    d.tables.iter().map(|t| t.routes.len()).sum()
}

/// Each vSwitch's table as DescribeVSwitches reports it: vSwitch id -> (RouteTableId, RouteTableType).
async fn vswitch_tables(lab: &Lab) -> BTreeMap<String, (String, String)> {
    let r = lab.admin_call("DescribeVSwitches", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["VSwitches"]["VSwitch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let t = &v["RouteTable"];
            (
                v["VSwitchId"].as_str().unwrap().to_string(),
                (
                    t["RouteTableId"].as_str().unwrap().to_string(),
                    t["RouteTableType"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Each table's vSwitches as DescribeRouteTableList reports them.
async fn table_vswitches(lab: &Lab) -> BTreeMap<String, Vec<String>> {
    let r = lab.admin_call("DescribeRouteTableList", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["RouterTableList"]["RouterTableListType"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let vsws = t["VSwitchIds"]["VSwitchId"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (t["RouteTableId"].as_str().unwrap().to_string(), vsws)
        })
        .collect()
}

async fn create_in(lab: &Lab, table: &str, dst: &str, hop: &str) -> Resp {
    lab.admin_call(
        "CreateRouteEntry",
        &[
            ("RouteTableId", table),
            ("DestinationCidrBlock", dst),
            ("NextHopId", hop),
        ],
    )
    .await
}

#[tokio::test]
async fn vswitches_bound_to_custom_tables_are_described_routed_and_counted_per_table() {
    use crossdock_vpcsim::admin::{CreateRouteTable, CreateVSwitch};
    let lab = Lab::start(Settings {
        route_entry_quota: 1,
        ..settings(0)
    })
    .await;
    let system = lab.table().await;
    let a = lab.admin.info().await.unwrap().vswitch_id;
    let b = lab
        .admin
        .create_vswitch(&CreateVSwitch {
            cidr_block: Some("192.168.2.0/24".parse().unwrap()),
            zone_id: Some("cn-hangzhou-i".into()),
            vswitch_name: "zone-i".into(),
        })
        .await
        .unwrap()
        .vswitch_id;
    let custom = lab
        .admin
        .create_route_table(&CreateRouteTable {
            route_table_name: "zone-i".into(),
            vswitch_ids: vec![b.clone()],
        })
        .await
        .unwrap()
        .route_table_id;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let h2 = lab
        .admin
        .create_instance(&crossdock_vpcsim::admin::CreateInstance {
            hostname: "h2".into(),
            private_ip: Some("192.168.2.12".parse().unwrap()),
            vswitch_id: Some(b.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(h2.zone_id, "cn-hangzhou-i");

    // the API reports each vSwitch's table, and each table's vSwitches, as Alibaba does
    let sys = |s: &str| (s.to_string(), "System".to_string());
    let cus = |s: &str| (s.to_string(), "Custom".to_string());
    assert_eq!(
        vswitch_tables(&lab).await,
        BTreeMap::from([(a.clone(), sys(&system)), (b.clone(), cus(&custom))])
    );
    assert_eq!(
        table_vswitches(&lab).await,
        BTreeMap::from([
            (system.clone(), vec![a.clone()]),
            (custom.clone(), vec![b.clone()])
        ])
    );
    let r = lab
        .admin_call("DescribeVSwitches", &[("RouteTableId", &custom)])
        .await;
    assert_eq!(r.json["VSwitches"]["VSwitch"][0]["VSwitchId"], b.as_str());
    assert_eq!(r.json["TotalCount"], 1);

    // the quota is per table: one entry fits in each, a second one in either does not
    for (table, dst, hop) in [
        (&system, "10.1.0.0/24", &h2.instance_id),
        (&custom, "10.0.0.0/24", &h1.instance_id),
    ] {
        let r: Resp = create_in(&lab, table, dst, hop).await;
        assert_eq!(r.status, 200, "{:?}", r.json);
    }
    let r = create_in(&lab, &custom, "10.9.0.0/24", &h1.instance_id).await;
    assert_eq!(r.code(), "QuotaExceeded");
    // a destination inside the other vSwitch is refused in the custom table too (system route)
    let r = create_in(&lab, &custom, "192.168.1.0/25", &h1.instance_id).await;
    assert_eq!(r.code(), "InvalidCidrBlock");

    // the data plane has one table per bound route table, each with its vSwitch and its own routes
    let dp = lab.dataplane.clone();
    let (s2, c2) = (system.clone(), custom.clone());
    eventually(5, "both tables in the data plane", move || {
        let (dp, s2, c2) = (dp.clone(), s2.clone(), c2.clone());
        async move {
            let d = dp.applied.lock().unwrap().clone();
            d.tables.len() == 2
                && d.routes_of(&s2)
                    .keys()
                    .map(|k| k.to_string())
                    .eq(["10.1.0.0/24"])
                && d.routes_of(&c2)
                    .keys()
                    .map(|k| k.to_string())
                    .eq(["10.0.0.0/24"])
                && d.table(&c2).unwrap().vswitches
                    == vec!["192.168.2.0/24".parse::<ipnet::Ipv4Net>().unwrap()]
        }
    })
    .await;

    // unbind: the vSwitch goes back to the system table, which then serves both
    lab.admin.unbind_vswitch(&custom, &b).await.unwrap();
    assert_eq!(
        vswitch_tables(&lab).await,
        BTreeMap::from([(a.clone(), sys(&system)), (b.clone(), sys(&system))])
    );
    let listed = table_vswitches(&lab).await;
    assert_eq!(listed[&system], vec![a.clone(), b.clone()]);
    assert!(listed[&custom].is_empty());
    let dp = lab.dataplane.clone();
    eventually(5, "the unbound table out of the data plane", move || {
        let dp = dp.clone();
        async move { dp.applied.lock().unwrap().tables.len() == 1 }
    })
    .await;

    // bind the first vSwitch to the custom table (twice: the same answer); the other one is refused
    // while bound, and the system table cannot be bound to
    let t = lab.admin.bind_vswitch(&custom, &a).await.unwrap();
    assert_eq!(t.vswitch_ids, vec![a.clone()]);
    lab.admin.bind_vswitch(&custom, &a).await.unwrap();
    assert_eq!(vswitch_tables(&lab).await[&a], cus(&custom));
    let other = lab
        .admin
        .create_route_table(&CreateRouteTable {
            route_table_name: "other".into(),
            vswitch_ids: vec![],
        })
        .await
        .unwrap()
        .route_table_id;
    for (table, vsw, status) in [
        (&other, &a, "409"),
        (&system, &b, "400"),
        (&other, &"vsw-nope".to_string(), "404"),
    ] {
        let e = lab.admin.bind_vswitch(table, vsw).await.unwrap_err();
        assert!(e.to_string().contains(&format!("HTTP {status}")), "{e}");
    }
    let e = lab.admin.unbind_vswitch(&other, &a).await.unwrap_err();
    assert!(e.to_string().contains("is not bound to"), "{e}");
}
