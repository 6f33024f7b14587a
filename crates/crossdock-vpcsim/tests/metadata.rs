//! The metadata service over HTTP on loopback: the caller is 127.0.0.1, so the tests register an
//! instance with that private IP.

mod common;

use common::{eventually, send, settings, Cred, Lab};
use crossdock_vpcsim::admin::{CreateInstance, Faults, SetRole, Settings};

async fn lab_with_local_instance(s: Settings) -> (Lab, crossdock_vpcsim::model::Instance) {
    let dir = tempfile::tempdir().unwrap();
    // the instance's IP must be in its vSwitch: use a VPC around loopback
    let bootstrap = crossdock_vpcsim::model::Bootstrap {
        vpc_cidr: "127.0.0.0/8".parse().unwrap(),
        vswitch_cidr: "127.0.0.0/24".parse().unwrap(),
        ..Default::default()
    };
    let lab = Lab::start_with(dir, s, bootstrap).await;
    let inst = lab
        .admin
        .create_instance(&CreateInstance {
            hostname: "node-1".into(),
            private_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    (lab, inst)
}

async fn get(lab: &Lab, path: &str, token: Option<&str>) -> (u16, String) {
    let mut rb = lab.http.get(format!("http://{}{path}", lab.metadata));
    if let Some(t) = token {
        rb = rb.header("X-aliyun-ecs-metadata-token", t);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn identity_by_source_address() {
    let (lab, inst) = lab_with_local_instance(settings(0)).await;
    let info = lab.admin.info().await.unwrap();
    let want = [
        ("instance-id", inst.instance_id.clone()),
        ("region-id", info.region_id.clone()),
        ("zone-id", info.zone_id.clone()),
        ("vpc-id", info.vpc_id.clone()),
        ("vswitch-id", info.vswitch_id.clone()),
        ("private-ipv4", "127.0.0.1".into()),
        ("vpc-cidr-block", "127.0.0.0/8".into()),
        ("vswitch-cidr-block", "127.0.0.0/24".into()),
        ("mac", inst.mac.clone()),
        ("hostname", "node-1".into()),
        (
            &format!("network/interfaces/macs/{}/network-interface-id", inst.mac),
            inst.eni_id.clone(),
        ),
    ];
    for (item, value) in want {
        assert_eq!(
            get(&lab, &format!("/latest/meta-data/{item}"), None).await,
            (200, value),
            "{item}"
        );
    }
    assert_eq!(get(&lab, "/latest/meta-data/nothing", None).await.0, 404);
}

#[tokio::test]
async fn unknown_hosts_get_nothing() {
    let lab = Lab::start(settings(0)).await; // no instance has 127.0.0.1
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", None).await.0,
        404
    );
}

#[tokio::test]
async fn role_credentials_work_against_the_api_and_rotate() {
    let (lab, inst) = lab_with_local_instance(Settings {
        credential_lifetime_secs: 2,
        ..settings(0)
    })
    .await;
    let (status, role) = get(&lab, "/latest/meta-data/ram/security-credentials/", None).await;
    assert_eq!((status, role.as_str()), (200, "crossdock-node"));
    let fetch = || async {
        let (s, body) = get(
            &lab,
            "/latest/meta-data/ram/security-credentials/crossdock-node",
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let c = fetch().await;
    assert_eq!(c["Code"], "Success");
    let id = c["AccessKeyId"].as_str().unwrap().to_string();
    assert!(id.starts_with("STS."));
    assert!(c["Expiration"].as_str().unwrap().ends_with('Z'));
    let cred = Cred {
        id: id.clone(),
        secret: c["AccessKeySecret"].as_str().unwrap().into(),
        token: Some(c["SecurityToken"].as_str().unwrap().into()),
    };
    let r = lab.call(&cred, "DescribeVpcs", &[]).await;
    assert_eq!(r.code(), "Success", "{:?}", r.json);
    // the call log knows which instance called
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(
        log.calls.last().unwrap().instance_id.as_deref(),
        Some(inst.instance_id.as_str())
    );
    // the same set until half its lifetime, then a new one
    assert_eq!(fetch().await["AccessKeyId"], id.as_str());
    eventually(5, "rotation", || async {
        fetch().await["AccessKeyId"] != id.as_str()
    })
    .await;
    // and the old one expires
    eventually(5, "expiry", || async {
        lab.call(&cred, "DescribeVpcs", &[]).await.code() == "InvalidSecurityToken.Expired"
    })
    .await;
    // expire-now: the current set dies at once, the next fetch hands out a working one
    let c = fetch().await;
    let cred = Cred {
        id: c["AccessKeyId"].as_str().unwrap().into(),
        secret: c["AccessKeySecret"].as_str().unwrap().into(),
        token: Some(c["SecurityToken"].as_str().unwrap().into()),
    };
    lab.admin.expire_credentials().await.unwrap();
    assert_eq!(
        lab.call(&cred, "DescribeVpcs", &[]).await.code(),
        "InvalidSecurityToken.Expired"
    );
    let c = fetch().await;
    assert_ne!(c["AccessKeyId"].as_str().unwrap(), cred.id);
}

#[tokio::test]
async fn the_role_policy_applies_to_its_credentials() {
    let (lab, _) = lab_with_local_instance(settings(0)).await;
    lab.admin
        .set_role(&SetRole {
            role_name: "crossdock-node".into(),
            allowed_actions: Some(vec!["vpc:DescribeVpcs".into()]),
        })
        .await
        .unwrap();
    let (_, body) = get(
        &lab,
        "/latest/meta-data/ram/security-credentials/crossdock-node",
        None,
    )
    .await;
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cred = Cred {
        id: c["AccessKeyId"].as_str().unwrap().into(),
        secret: c["AccessKeySecret"].as_str().unwrap().into(),
        token: Some(c["SecurityToken"].as_str().unwrap().into()),
    };
    assert_eq!(lab.call(&cred, "DescribeVpcs", &[]).await.code(), "Success");
    assert_eq!(
        lab.call(&cred, "DescribeVSwitches", &[]).await.code(),
        "Forbidden.RAM"
    );
}

#[tokio::test]
async fn token_flow_and_hardened_mode() {
    let (lab, inst) = lab_with_local_instance(Settings {
        metadata_hardened: true,
        ..settings(0)
    })
    .await;
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", None).await.0,
        401
    );
    let url = format!("http://{}/latest/api/token", lab.metadata);
    let r = send(lab.http.put(&url)).await;
    assert_eq!(r.status, 400, "a token needs a TTL");
    let r = send(
        lab.http
            .put(&url)
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "99999"),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = send(
        lab.http
            .put(&url)
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60"),
    )
    .await;
    assert_eq!(r.status, 200);
    let token = r.json.as_str().unwrap().to_string();
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", Some(&token)).await,
        (200, inst.instance_id.clone())
    );
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", Some("forged"))
            .await
            .0,
        401
    );
    // without hardening, no token is fine but a bad one is still refused
    let mut s = lab.admin.settings().await.unwrap();
    s.metadata_hardened = false;
    lab.admin.set_settings(&s).await.unwrap();
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", None).await.0,
        200
    );
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", Some("forged"))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn metadata_down() {
    let (lab, _) = lab_with_local_instance(settings(0)).await;
    lab.admin
        .set_faults(&Faults {
            metadata_down: true,
            ..Faults::default()
        })
        .await
        .unwrap();
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", None).await.0,
        503
    );
    lab.admin.reset_faults().await.unwrap();
    assert_eq!(
        get(&lab, "/latest/meta-data/instance-id", None).await.0,
        200
    );
}
