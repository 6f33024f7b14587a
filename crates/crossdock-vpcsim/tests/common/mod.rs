//! A running emulator on loopback for the integration tests, and a signing HTTP client for it.
#![allow(dead_code)]

use crossdock_vpcsim::admin::{AdminClient, CreateInstance, Settings};
use crossdock_vpcsim::dataplane::MemoryDataplane;
use crossdock_vpcsim::model::{iso, now_ms, Bootstrap, Instance};
use crossdock_vpcsim::server::{start, Server, ServerOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
    pub admin: AdminClient,
    pub api: SocketAddr,
    pub metadata: SocketAddr,
    pub dataplane: Arc<MemoryDataplane>,
    pub admin_key: Cred,
    pub http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Cred {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.json["Code"].as_str().unwrap_or("Success")
    }
}

pub fn settings(pending_ms: u64) -> Settings {
    Settings {
        pending_ms,
        deleting_ms: pending_ms / 2,
        action_qps: Default::default(),
        account_qps: 0,
        ..Settings::default()
    }
}

impl Lab {
    pub async fn start(settings: Settings) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, settings).await
    }

    pub async fn start_in(dir: tempfile::TempDir, settings: Settings) -> Lab {
        Self::start_with(dir, settings, Bootstrap::default()).await
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        settings: Settings,
        bootstrap: Bootstrap,
    ) -> Lab {
        let dataplane = Arc::new(MemoryDataplane::default());
        let opts = ServerOptions {
            state_file: Some(dir.path().join("state.json")),
            api_listen: vec!["127.0.0.1:0".parse().unwrap()],
            metadata_listen: vec!["127.0.0.1:0".parse().unwrap()],
            api_socket: Some(dir.path().join("api.sock")),
            admin_socket: Some(dir.path().join("admin.sock")),
            settings,
            dataplane: dataplane.clone(),
            bootstrap,
        };
        let server = start(opts).await.unwrap();
        let admin = AdminClient::new(dir.path().join("admin.sock"));
        let info = admin.info().await.unwrap();
        Lab {
            api: server.api_addrs[0],
            metadata: server.metadata_addrs[0],
            server: Some(server),
            admin,
            dataplane,
            admin_key: Cred {
                id: info.admin_access_key_id,
                secret: info.admin_access_key_secret,
                token: None,
            },
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts another on the same state file (ports change).
    pub async fn restart(mut self, settings: Settings) -> Lab {
        self.server.take().unwrap().shutdown().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Lab::start_in(dir, settings).await
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    pub async fn instance(&self, hostname: &str, ip: &str) -> Instance {
        self.admin
            .create_instance(&CreateInstance {
                hostname: hostname.into(),
                private_ip: Some(ip.parse().unwrap()),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    pub async fn table(&self) -> String {
        self.admin.info().await.unwrap().system_route_table_id
    }

    /// A signed ACS3 call (as the official SDKs send it).
    pub async fn call(&self, cred: &Cred, action: &str, params: &[(&str, &str)]) -> Resp {
        let version = if [
            "DescribeInstances",
            "DescribeNetworkInterfaces",
            "DescribeNetworkInterfaceAttribute",
            "ModifyNetworkInterfaceAttribute",
        ]
        .contains(&action)
        {
            "2014-05-26"
        } else {
            "2016-04-28"
        };
        let mut params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !params.iter().any(|(k, _)| k == "RegionId") {
            params.push(("RegionId".into(), "cn-hangzhou".into()));
        }
        let host = self.api.to_string();
        let date = iso(now_ms());
        let nonce = format!("{:032x}", rand_u128());
        let signed = crossdock_acs3::sign_request(&crossdock_acs3::SigningInput {
            method: "POST",
            host: &host,
            action,
            version,
            params: &params,
            access_key_id: &cred.id,
            access_key_secret: &cred.secret,
            security_token: cred.token.as_deref(),
            date: &date,
            nonce: &nonce,
        });
        let mut rb = self.http.post(format!("http://{host}/?{}", signed.query));
        for (k, v) in &signed.headers {
            if k != "host" {
                rb = rb.header(k, v);
            }
        }
        send(rb).await
    }

    pub async fn admin_call(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        self.call(&self.admin_key.clone(), action, params).await
    }

    /// Creates a route as the admin and waits until it is Available.
    pub async fn available_route(&self, dst: &str, inst: &Instance) -> String {
        let table = self.table().await;
        let r = self
            .admin_call(
                "CreateRouteEntry",
                &[
                    ("RouteTableId", &table),
                    ("DestinationCidrBlock", dst),
                    ("NextHopId", &inst.instance_id),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        let id = r.json["RouteEntryId"].as_str().unwrap().to_string();
        self.wait_status(&id, "Available").await;
        id
    }

    pub async fn entry(&self, id: &str) -> Option<Value> {
        let table = self.table().await;
        let r = self
            .admin_call(
                "DescribeRouteEntryList",
                &[("RouteTableId", &table), ("RouteEntryId", id)],
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        r.json["RouteEntrys"]["RouteEntry"]
            .as_array()
            .unwrap()
            .first()
            .cloned()
    }

    pub async fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.entry(id).await;
            if e.as_ref().and_then(|e| e["Status"].as_str()) == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {status}: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.entry(id).await.is_some() {
            assert!(Instant::now() < deadline, "{id} never went away");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Resp {
        status,
        headers,
        json,
    }
}

pub fn rand_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let a = h.finish() as u128;
    let mut h = RandomState::new().build_hasher();
    h.write_u64(a as u64);
    (a << 64) | h.finish() as u128
}

/// Polls `f` until it returns true, or panics after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
