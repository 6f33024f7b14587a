//! The cloud checks against the emulated VPC (crossdock-vpcsim) on loopback: real HTTP, real ACS3
//! signatures, the real credential chain through the emulated metadata service. No root needed.
//! Each test breaks one thing through the emulator's admin API and asserts that doctor names that
//! check, with its fix, and holds back only the checks that depend on it.

use crossdock_doctor::checks;
use crossdock_doctor::facts::*;
use crossdock_doctor::gather::{CloudProbe, RealCloud};
use crossdock_doctor::model::{run_checks, Check, Status};
use crossdock_vpcsim::admin::{
    AdminClient, CreateAccessKey, CreateInstance, Faults, PutRoute, SetRole, Settings,
};
use crossdock_vpcsim::model::{Bootstrap, RouteStatus};
use crossdock_vpcsim::server::{start, Server, ServerOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SUBNET: &str = "10.1.0.0/24";

struct Vpc {
    _dir: tempfile::TempDir,
    _server: Server,
    admin: AdminClient,
    api: SocketAddr,
    metadata: SocketAddr,
    instance_id: String,
    eni_id: String,
    table: String,
}

async fn vpc() -> Vpc {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        pending_ms: 200,
        deleting_ms: 100,
        action_qps: BTreeMap::new(),
        account_qps: 0,
        credential_lifetime_secs: 3600,
        ..Settings::default()
    };
    // The instance is 127.0.0.1 (the metadata service tells callers apart by source address), so
    // the VPC is loopback's range.
    let server = start(ServerOptions {
        state_file: Some(dir.path().join("state.json")),
        api_listen: vec!["127.0.0.1:0".parse().unwrap()],
        metadata_listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin_socket: Some(dir.path().join("admin.sock")),
        settings,
        bootstrap: Bootstrap {
            vpc_cidr: "127.0.0.0/8".parse().unwrap(),
            vswitch_cidr: "127.0.0.0/24".parse().unwrap(),
            ..Bootstrap::default()
        },
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let admin = AdminClient::new(dir.path().join("admin.sock"));
    let inst = admin
        .create_instance(&CreateInstance {
            hostname: "h1".into(),
            private_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let table = admin.info().await.unwrap().system_route_table_id;
    Vpc {
        api: server.api_addrs[0],
        metadata: server.metadata_addrs[0],
        _server: server,
        _dir: dir,
        admin,
        instance_id: inst.instance_id,
        eni_id: inst.eni_id,
        table,
    }
}

impl Vpc {
    fn config(&self) -> crossdock_config::Config {
        crossdock_config::parse(&format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"http://{}\"\nvpc_endpoint = \"http://{}\"\necs_endpoint = \"http://{}\"\n",
            self.metadata, self.api, self.api
        ))
        .unwrap()
    }

    async fn our_route(&self, status: RouteStatus) -> String {
        self.admin
            .put_route(&PutRoute {
                destination_cidr_block: Some(SUBNET.parse().unwrap()),
                next_hop_id: self.instance_id.clone(),
                route_entry_name: "crossdock".into(),
                description: format!("crossdock:{}", self.instance_id),
                status,
                ..PutRoute::default()
            })
            .await
            .unwrap()
            .route_entry_id
    }

    async fn switch_off_source_dest_check(&self) {
        let mut inst = self.admin.instances().await.unwrap();
        assert!(inst[0].source_dest_check, "Alibaba's default is on");
        // Through the API, as the agent does.
        let key = self
            .admin
            .create_access_key(&CreateAccessKey::default())
            .await
            .unwrap();
        let mut opts = crossdock_alibaba::ClientOptions::new("cn-hangzhou");
        opts.vpc_endpoint = format!("http://{}", self.api);
        opts.ecs_endpoint = format!("http://{}", self.api);
        let client = crossdock_alibaba::Client::new(
            opts,
            std::sync::Arc::new(crossdock_alibaba::CredentialsProvider::fixed(
                crossdock_alibaba::Credentials {
                    access_key_id: key.access_key_id,
                    access_key_secret: crossdock_alibaba::Secret::new(key.access_key_secret),
                    security_token: None,
                    expiration: None,
                    source: crossdock_alibaba::CredentialSource::Config,
                },
            )),
            Default::default(),
        )
        .unwrap();
        client
            .modify_source_dest_check(&self.eni_id, false)
            .await
            .unwrap();
        inst = self.admin.instances().await.unwrap();
        assert!(!inst[0].source_dest_check);
    }

    async fn doctor(&self, env: &[(&str, &str)]) -> (CloudFacts, Vec<Check>) {
        let cfg = self.config();
        let probe = RealCloud {
            env: crossdock_alibaba::EnvVars::from_pairs(env.iter().copied()),
            route_quota: 200,
            enabled: true,
        };
        let cloud = probe.cloud(&cfg, Some(SUBNET.parse().unwrap())).await;
        let facts = facts(cfg, cloud.clone());
        let checks = run_checks(&checks::all(), &facts);
        (cloud, checks)
    }
}

/// Host and Docker facts of a healthy host; only the cloud side is real here.
fn facts(cfg: crossdock_config::Config, cloud: CloudFacts) -> Facts {
    Facts {
        now: chrono::Utc::now(),
        config: ConfigFacts {
            path: PathBuf::from("agent.toml"),
            config: Ok(cfg),
        },
        docker: Ok(DockerFacts {
            endpoint: "unix:///run/docker.sock".into(),
            version: "28.5.2".into(),
            api_version: "1.51".into(),
            network: Ok(NetworkFacts {
                name: "bridge".into(),
                id: "0".repeat(64),
                driver: "bridge".into(),
                subnet: Some(SUBNET.parse().unwrap()),
                gateway: Some("10.1.0.1".parse().unwrap()),
                bridge: "docker0".into(),
                options: BTreeMap::new(),
                containers: vec![],
            }),
        }),
        host: HostFacts {
            sysctls: BTreeMap::new(),
            external: Err(Unavailable::new("not gathered in this test", "-")),
            bridge: None,
            peer_route: None,
            iptables: Err(Unavailable::new("not gathered in this test", "-")),
        },
        agent: AgentState::NotRunning {
            socket: PathBuf::from("/nonexistent"),
            message: "not started in this test".into(),
        },
        cloud: Some(cloud),
    }
}

fn status(checks: &[Check], id: &str) -> Status {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .status
}

fn cloud_statuses(checks: &[Check]) -> Vec<(String, Status)> {
    checks
        .iter()
        .filter(|c| c.id.starts_with("cloud.") || c.id == "subnet.vpc-overlap")
        .map(|c| (c.id.clone(), c.status))
        .collect()
}

/// Asserts `id` failed with a fix and that every other cloud check is either ok (or the
/// not-probed skip) or held back naming `id`.
fn only_fails(checks: &[Check], id: &str) -> Check {
    let c = checks.iter().find(|c| c.id == id).unwrap().clone();
    assert_eq!(c.status, Status::Fail, "{c:#?}");
    assert!(c.fix.as_deref().is_some_and(|f| !f.is_empty()));
    for other in checks
        .iter()
        .filter(|o| o.id != id && (o.id.starts_with("cloud.") || o.id == "subnet.vpc-overlap"))
    {
        match other.status {
            Status::Ok => {}
            Status::Skip if other.blocked_by.as_deref() == Some(id) => {}
            Status::Skip if other.id == "cloud.permission.DeleteRouteEntry" => {}
            s => panic!("{} is {s:?} too: {}", other.id, other.evidence),
        }
    }
    c
}

#[tokio::test]
async fn healthy_vpc_is_all_ok() {
    let v = vpc().await;
    v.our_route(RouteStatus::Available).await;
    v.switch_off_source_dest_check().await;
    let (cloud, checks) = v.doctor(&[]).await;
    let cred = cloud.credentials.as_ref().unwrap();
    assert_eq!(cred.source, "ram role crossdock-node");
    assert!(
        cred.access_key_id.starts_with("STS."),
        "{}",
        cred.access_key_id
    );
    assert!(cred.access_key_id.contains("****"), "masked");
    let left = cred.expiration.unwrap() - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(50), "{left}");
    assert_eq!(cloud.route_tables.as_ref().unwrap(), &vec![v.table.clone()]);
    for (id, s) in cloud_statuses(&checks) {
        if id == "cloud.permission.DeleteRouteEntry" {
            assert_eq!(s, Status::Skip);
        } else {
            let c = checks.iter().find(|c| c.id == id).unwrap();
            assert_eq!(s, Status::Ok, "{id}: {}", c.evidence);
        }
    }
    // Nothing was written: the permission probes are dry runs.
    let calls = v.admin.calls(None).await.unwrap();
    let writes: Vec<_> = calls
        .calls
        .iter()
        .filter(|c| c.write && c.code == "Success")
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(
        writes,
        vec!["ModifyNetworkInterfaceAttribute"],
        "only the set-up's own write"
    );
    // The route exists, so the dry run of CreateRouteEntry is refused as a duplicate: past the
    // permission check, so allowed, and nothing created.
    let dry: Vec<_> = calls
        .calls
        .iter()
        .filter(|c| c.action == "CreateRouteEntry")
        .collect();
    assert_eq!(dry.len(), 1);
    assert_eq!(
        dry[0].params.get("DryRun").map(String::as_str),
        Some("true")
    );
    assert_ne!(dry[0].code, "Success");
}

#[tokio::test]
async fn route_deleted_from_the_table() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    let (_, checks) = v.doctor(&[]).await;
    let c = only_fails(&checks, "cloud.route");
    assert!(
        c.evidence.contains("no route for 10.1.0.0/24"),
        "{}",
        c.evidence
    );
    // The permission probe was a dry run that passed, and created nothing.
    let calls = v.admin.calls(None).await.unwrap();
    assert!(calls
        .calls
        .iter()
        .any(|c| c.action == "CreateRouteEntry" && c.code == "DryRunOperation"));
    assert!(v
        .admin
        .state()
        .await
        .unwrap()
        .entries
        .iter()
        .all(|e| e.destination_cidr_block.to_string() != SUBNET));
    assert!(c.fix.unwrap().contains(&format!(
        "--RouteTableId {} --DestinationCidrBlock 10.1.0.0/24 --NextHopType Instance --NextHopId {}",
        v.table, v.instance_id
    )));
}

#[tokio::test]
async fn route_pending() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.our_route(RouteStatus::Pending).await;
    let (_, checks) = v.doctor(&[]).await;
    let c = only_fails(&checks, "cloud.route");
    assert!(c.evidence.contains("Pending"), "{}", c.evidence);
}

#[tokio::test]
async fn conflicting_route() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.our_route(RouteStatus::Available).await;
    let other = v
        .admin
        .create_instance(&CreateInstance {
            hostname: "h2".into(),
            private_ip: Some("127.0.0.2".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    v.admin
        .put_route(&PutRoute {
            destination_cidr_block: Some("10.1.0.128/25".parse().unwrap()),
            next_hop_id: other.instance_id.clone(),
            ..PutRoute::default()
        })
        .await
        .unwrap();
    let (_, checks) = v.doctor(&[]).await;
    let c = only_fails(&checks, "cloud.route-conflicts");
    assert!(c.evidence.contains("10.1.0.128/25"), "{}", c.evidence);
    assert!(c.evidence.contains(&other.instance_id), "{}", c.evidence);
}

#[tokio::test]
async fn source_destination_check_on() {
    let v = vpc().await;
    v.our_route(RouteStatus::Available).await;
    let (_, checks) = v.doctor(&[]).await;
    let c = only_fails(&checks, "cloud.source-dest-check");
    assert!(c.evidence.contains(&v.eni_id));
    assert!(c.fix.unwrap().contains("--SourceDestCheck false"));
}

#[tokio::test]
async fn metadata_down() {
    let v = vpc().await;
    v.our_route(RouteStatus::Available).await;
    v.admin
        .set_faults(&Faults {
            metadata_down: true,
            ..Faults::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let (_, checks) = v.doctor(&[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "doctor must not hang on a dead metadata service"
    );
    let c = only_fails(&checks, "cloud.metadata");
    assert!(
        c.evidence.contains("503") || c.evidence.contains("metadata"),
        "{}",
        c.evidence
    );
    // Everything else in the cloud is held back, naming the metadata service.
    assert_eq!(status(&checks, "cloud.route"), Status::Skip);
    assert_eq!(status(&checks, "cloud.credentials"), Status::Skip);
}

#[tokio::test]
async fn sts_credentials_expired() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.our_route(RouteStatus::Available).await;
    // An STS token exported into the environment that has run out.
    let key = v
        .admin
        .create_access_key(&CreateAccessKey {
            security_token: Some("CAIS-expired-token".into()),
            expires_in_secs: Some(-60),
            ..CreateAccessKey::default()
        })
        .await
        .unwrap();
    let token = key.security_token.clone().unwrap();
    let (_, checks) = v
        .doctor(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.access_key_id.as_str()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                key.access_key_secret.as_str(),
            ),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", token.as_str()),
        ])
        .await;
    let c = only_fails(&checks, "cloud.credentials");
    assert!(
        c.evidence.contains("InvalidSecurityToken.Expired"),
        "{}",
        c.evidence
    );
}

#[tokio::test]
async fn role_without_create_permission() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.our_route(RouteStatus::Available).await;
    v.admin
        .set_role(&SetRole {
            role_name: "crossdock-node".into(),
            allowed_actions: Some(vec![
                "vpc:Describe*".into(),
                "vpc:DeleteRouteEntry".into(),
                "ecs:DescribeNetworkInterfaces".into(),
                "ecs:ModifyNetworkInterfaceAttribute".into(),
            ]),
        })
        .await
        .unwrap();
    let (_, checks) = v.doctor(&[]).await;
    let c = only_fails(&checks, "cloud.permission.CreateRouteEntry");
    assert!(c.fix.unwrap().contains("vpc:CreateRouteEntry"));
}
