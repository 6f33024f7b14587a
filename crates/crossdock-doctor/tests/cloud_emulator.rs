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
    fn config_text(&self) -> String {
        format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"http://{}\"\nvpc_endpoint = \"http://{}\"\necs_endpoint = \"http://{}\"\n",
            self.metadata, self.api, self.api
        )
    }

    fn config(&self) -> crossdock_config::Config {
        crossdock_config::parse(&self.config_text()).unwrap()
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
        self.doctor_with(self.config(), SUBNET, env).await
    }

    /// Doctor with `cfg`, Docker serving `subnet`.
    async fn doctor_with(
        &self,
        cfg: crossdock_config::Config,
        subnet: &str,
        env: &[(&str, &str)],
    ) -> (CloudFacts, Vec<Check>) {
        let probe = RealCloud {
            env: crossdock_alibaba::EnvVars::from_pairs(env.iter().copied()),
            route_quota: 200,
            enabled: true,
        };
        let cloud = probe.cloud(&cfg, Some(subnet.parse().unwrap())).await;
        let facts = facts(cfg, subnet, cloud.clone());
        let checks = run_checks(&checks::all(), &facts);
        (cloud, checks)
    }
}

/// Host and Docker facts of a healthy host serving `subnet`; only the cloud side is real here.
fn facts(cfg: crossdock_config::Config, subnet: &str, cloud: CloudFacts) -> Facts {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
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
                subnet: Some(subnet),
                gateway: subnet.hosts().next(),
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
        names: None,
    }
}

fn status(checks: &[Check], id: &str) -> Status {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .status
}

/// The cloud checks that apply in per-host mode (fleet mode's follow `fleet.mode`, skipped).
fn cloud_statuses(checks: &[Check]) -> Vec<(String, Status)> {
    checks
        .iter()
        .filter(|c| c.id.starts_with("cloud.") || c.id == "subnet.vpc-overlap")
        .filter(|c| c.skipped_by.as_deref() != Some("fleet.mode"))
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
            Status::Skip if other.skipped_by.as_deref() == Some("fleet.mode") => {}
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

// ---------------------------------------------------------------- fleet mode

/// This host's derived subnet: 127.0.0.1 is offset 1 in the host range 127.0.0.0/24.
const FLEET_SUBNET: &str = "10.0.1.0/24";

fn cluster_tag() -> crossdock_vpcsim::model::Tag {
    crossdock_vpcsim::model::Tag::new("crossdock-cluster", "emu")
}

impl Vpc {
    /// Fleet mode: members tagged crossdock-cluster=emu, subnets derived from 127.0.0.0/24 (the
    /// vSwitch) into 10.0.0.0/8 at /24.
    fn fleet_config(&self) -> crossdock_config::Config {
        let text = format!(
            "{}[subnet]\nmode = \"derived\"\nhost_ranges = [\"127.0.0.0/24\"]\n[fleet]\ntag = \"crossdock-cluster=emu\"\n",
            self.config_text()
        );
        crossdock_config::parse(&text).unwrap()
    }

    async fn fleet_doctor(&self) -> Vec<Check> {
        self.doctor_with(self.fleet_config(), FLEET_SUBNET, &[])
            .await
            .1
    }

    /// A host of the VPC with crossdock's marked route to `cidr`.
    async fn host_with_route(&self, name: &str, ip: &str, cidr: &str, tagged: bool) -> String {
        let inst = self
            .admin
            .create_instance(&CreateInstance {
                hostname: name.into(),
                private_ip: Some(ip.parse().unwrap()),
                tags: if tagged { vec![cluster_tag()] } else { vec![] },
                ..Default::default()
            })
            .await
            .unwrap();
        self.marked_route(cidr, &inst.instance_id).await;
        inst.instance_id
    }

    async fn marked_route(&self, cidr: &str, hop: &str) {
        self.admin
            .put_route(&PutRoute {
                destination_cidr_block: Some(cidr.parse().unwrap()),
                next_hop_id: hop.into(),
                route_entry_name: "crossdock".into(),
                description: format!("crossdock:{hop}"),
                status: RouteStatus::Available,
                ..PutRoute::default()
            })
            .await
            .unwrap();
    }

    /// Every route entry as (id, destination, next hop, status).
    async fn entries(&self) -> Vec<(String, String, String, String)> {
        let mut e: Vec<_> = self
            .admin
            .state()
            .await
            .unwrap()
            .entries
            .iter()
            .map(|e| {
                (
                    e.route_entry_id.clone(),
                    e.destination_cidr_block.to_string(),
                    e.next_hop_id.clone(),
                    format!("{:?}", e.status),
                )
            })
            .collect();
        e.sort();
        e
    }
}

fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

/// A fleet member with its peers: one running with its route, one released and one stopped and
/// untagged whose crossdock routes remain, and a user's route. Every check passes, the members'
/// evidence tells them apart, and doctor wrote and deleted nothing (the batch-write permissions
/// are probed with a next hop and an entry that do not exist).
#[tokio::test]
async fn fleet_member_healthy_and_nothing_written() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.admin
        .set_instance_tags(&v.instance_id, &[cluster_tag()])
        .await
        .unwrap();
    v.marked_route(FLEET_SUBNET, &v.instance_id).await;
    v.host_with_route("h2", "127.0.0.2", "10.0.2.0/24", true)
        .await;
    let gone = v
        .host_with_route("h3", "127.0.0.3", "10.0.3.0/24", true)
        .await;
    v.admin.release_instance(&gone).await.unwrap();
    let off = v
        .host_with_route("h4", "127.0.0.4", "10.0.4.0/24", false)
        .await;
    v.admin.stop_instance(&off).await.unwrap();
    v.admin
        .put_route(&PutRoute {
            destination_cidr_block: Some("172.20.0.0/24".parse().unwrap()),
            next_hop_id: off.clone(),
            ..PutRoute::default()
        })
        .await
        .unwrap();
    let before = v.entries().await;

    let checks = v.fleet_doctor().await;
    let not_ok: Vec<String> = checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .filter(|c| c.id.starts_with("cloud.") || c.id.starts_with("fleet."))
        .map(|c| format!("{} {:?}: {}", c.id, c.status, c.evidence))
        .collect();
    assert_eq!(not_ok.len(), 1, "{not_ok:#?}");
    assert!(not_ok[0].starts_with("cloud.permission.DeleteRouteEntry Skip"));
    assert!(check(&checks, "fleet.tag")
        .evidence
        .contains("carries crossdock-cluster=emu"));
    assert!(check(&checks, "fleet.mapping")
        .evidence
        .contains("127.0.0.1 -> 10.0.1.0/24"));
    let members = &check(&checks, "fleet.members").evidence;
    for part in [
        "2 member(s) tagged crossdock-cluster=emu, 2 running",
        "2 in place, 0 missing",
        "2 crossdock route(s) point at 2 non-member instance(s)",
        &format!("1 released ({gone}): its routes are stale, the agents delete them 300 s after the release"),
        &format!("1 still exist, stopped or untagged ({off}): their routes are kept"),
    ] {
        assert!(members.contains(part), "`{part}` missing: {members}");
    }
    for action in ["CreateRouteEntries", "DeleteRouteEntries"] {
        let c = check(&checks, &format!("cloud.permission.{action}"));
        assert!(c.evidence.contains("does not exist"), "{}", c.evidence);
    }

    // Nothing created, nothing deleted; the probes named what does not exist.
    assert_eq!(v.entries().await, before);
    let calls = v.admin.calls(None).await.unwrap().calls;
    let create: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "CreateRouteEntries")
        .collect();
    assert_eq!(create.len(), 1);
    assert_eq!(
        create[0]
            .params
            .get("RouteEntries.1.NextHop")
            .map(String::as_str),
        Some(crossdock_doctor::fleet::PROBE_NEXT_HOP)
    );
    let delete: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "DeleteRouteEntries")
        .collect();
    assert_eq!(delete.len(), 1);
    assert_eq!(
        delete[0]
            .params
            .get("RouteEntries.1.RouteEntryId")
            .map(String::as_str),
        Some(crossdock_doctor::fleet::PROBE_ENTRY_ID)
    );
}

/// The cases an operator meets: this instance untagged (the tag fails with the tagging command),
/// a member whose route is missing (a warning naming it), the role without the fleet actions (each
/// named, the tag check with the permission fix).
#[tokio::test]
async fn fleet_untagged_missing_route_and_missing_permissions() {
    let v = vpc().await;
    v.switch_off_source_dest_check().await;
    v.marked_route(FLEET_SUBNET, &v.instance_id).await;
    let checks = v.fleet_doctor().await;
    let c = check(&checks, "fleet.tag");
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(c.evidence.contains("has no tags"), "{}", c.evidence);
    assert!(c.fix.as_deref().unwrap().contains(&format!(
        "--ResourceId.1 {} --Tag.1.Key crossdock-cluster --Tag.1.Value emu",
        v.instance_id
    )));
    assert_eq!(
        check(&checks, "fleet.members").blocked_by.as_deref(),
        Some("fleet.tag")
    );

    v.admin
        .set_instance_tags(&v.instance_id, &[cluster_tag()])
        .await
        .unwrap();
    let new = v
        .admin
        .create_instance(&CreateInstance {
            hostname: "h5".into(),
            private_ip: Some("127.0.0.5".parse().unwrap()),
            tags: vec![cluster_tag()],
            ..Default::default()
        })
        .await
        .unwrap();
    let checks = v.fleet_doctor().await;
    assert_eq!(check(&checks, "fleet.tag").status, Status::Ok);
    let c = check(&checks, "fleet.members");
    assert_eq!(c.status, Status::Warn, "{}", c.evidence);
    assert!(
        c.evidence.contains(&format!(
            "1 missing ({} 10.0.5.0/24 in {})",
            new.instance_id, v.table
        )),
        "{}",
        c.evidence
    );

    v.admin
        .set_role(&SetRole {
            role_name: "crossdock-node".into(),
            allowed_actions: Some(vec![
                "vpc:Describe*".into(),
                "vpc:CreateRouteEntry".into(),
                "vpc:DeleteRouteEntry".into(),
                "ecs:DescribeNetworkInterfaces".into(),
                "ecs:ModifyNetworkInterfaceAttribute".into(),
            ]),
        })
        .await
        .unwrap();
    let checks = v.fleet_doctor().await;
    for (id, ram) in [
        (
            "cloud.permission.DescribeInstances",
            "ecs:DescribeInstances",
        ),
        (
            "cloud.permission.CreateRouteEntries",
            "vpc:CreateRouteEntries",
        ),
        (
            "cloud.permission.DeleteRouteEntries",
            "vpc:DeleteRouteEntries",
        ),
        ("fleet.tag", "ecs:DescribeInstances"),
    ] {
        let c = check(&checks, id);
        assert_eq!(c.status, Status::Fail, "{id}: {}", c.evidence);
        assert!(c.fix.as_deref().unwrap().contains(ram), "{id}: {:?}", c.fix);
    }
    // The per-host permissions are untouched.
    assert_eq!(
        check(&checks, "cloud.permission.CreateRouteEntry").status,
        Status::Ok
    );
}
