//! The reconciler, built from a `[cloud]` config exactly as the agent builds it, against the emulated
//! VPC on loopback: identity and RAM-role credentials from the (hardened) metadata service, signed API
//! calls, routes created with the marker and polled to `Available`, a restart with zero writes, a
//! conflict reported and left alone, a subnet change, and deregister. The emulator's own call log is
//! the witness of what reached the "cloud". No root needed; the lab's netns test comes on top.

use std::sync::Arc;

use crossdock_alibaba::{ConnectOptions, EnvVars};
use crossdock_routes::{RouteReconciler, State};
use crossdock_vpcsim::admin::{AdminClient, CreateInstance, PutRoute, Settings};
use crossdock_vpcsim::dataplane::MemoryDataplane;
use crossdock_vpcsim::model::{Bootstrap, RouteStatus};
use crossdock_vpcsim::server::{start, Server, ServerOptions};

struct Emulator {
    _dir: tempfile::TempDir,
    server: Option<Server>,
    admin: AdminClient,
    cfg: crossdock_config::CloudConfig,
}

impl Emulator {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = ServerOptions {
            state_file: None,
            api_listen: vec!["127.0.0.1:0".parse().unwrap()],
            metadata_listen: vec!["127.0.0.1:0".parse().unwrap()],
            api_socket: None,
            admin_socket: Some(dir.path().join("admin.sock")),
            // The metadata service tells instances apart by source address: the VPC is loopback here.
            bootstrap: Bootstrap {
                vpc_cidr: "127.0.0.0/8".parse().unwrap(),
                vswitch_cidr: "127.0.0.0/24".parse().unwrap(),
                ..Bootstrap::default()
            },
            settings: Settings {
                pending_ms: 300,
                deleting_ms: 100,
                metadata_hardened: true,
                credential_lifetime_secs: 3600,
                action_qps: Default::default(),
                account_qps: 0,
                ..Settings::default()
            },
            dataplane: Arc::new(MemoryDataplane::default()),
        };
        let server = start(opts).await.unwrap();
        let admin = AdminClient::new(dir.path().join("admin.sock"));
        let cfg = crossdock_config::CloudConfig {
            provider: crossdock_config::Provider::Alibaba,
            metadata_url: format!("http://{}", server.metadata_addrs[0]),
            metadata_token: crossdock_config::MetadataToken::Required,
            vpc_endpoint: format!("http://{}", server.api_addrs[0]),
            ecs_endpoint: format!("http://{}", server.api_addrs[0]),
            ..Default::default()
        };
        Emulator {
            _dir: dir,
            server: Some(server),
            admin,
            cfg,
        }
    }

    /// A reconciler as the agent builds it (a fresh one = an agent restart).
    async fn agent(&self) -> RouteReconciler {
        let opts = ConnectOptions {
            env: EnvVars::default(),
            ..ConnectOptions::default()
        };
        crossdock_routes::connect_with(&self.cfg, opts)
            .await
            .unwrap()
    }

    async fn writes_since(&self, seq: u64) -> Vec<String> {
        let log = self.admin.calls(Some(seq)).await.unwrap();
        log.calls
            .iter()
            .filter(|c| c.write)
            .map(|c| format!("{} {}", c.action, c.code))
            .collect()
    }

    async fn next_seq(&self) -> u64 {
        self.admin.calls(None).await.unwrap().next_seq
    }

    async fn entries(&self) -> Vec<crossdock_vpcsim::model::RouteEntry> {
        let state = self.admin.state().await.unwrap();
        state
            .entries
            .into_iter()
            .filter(|e| e.next_hop_type == "Instance")
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            tokio::spawn(s.shutdown());
        }
    }
}

#[tokio::test]
async fn the_reconciler_keeps_its_route_in_the_emulated_vpc() {
    let emu = Emulator::start().await;
    let me = emu
        .admin
        .create_instance(&CreateInstance {
            hostname: "h1".into(),
            private_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        me.source_dest_check,
        "new instances start with the check on"
    );

    // First start: create, wait for Available, switch the source/destination check off.
    let agent = emu.agent().await;
    assert_eq!(agent.identity().instance_id, me.instance_id);
    let report = agent.sync(Some("10.10.1.0/24".parse().unwrap())).await;
    assert_eq!(report.route.state, State::Ready, "{}", report.route.message);
    assert_eq!(
        report.credentials.state,
        State::Ready,
        "{}",
        report.credentials.message
    );
    assert!(
        report.credentials.message.contains("RAM role"),
        "{}",
        report.credentials.message
    );
    assert_eq!(report.writes, 2);
    assert_eq!(
        emu.writes_since(0).await,
        [
            "ModifyNetworkInterfaceAttribute Success",
            "CreateRouteEntry Success"
        ]
    );
    let entries = emu.entries().await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.destination_cidr_block.to_string(), "10.10.1.0/24");
    assert_eq!(e.next_hop_id, me.instance_id);
    assert_eq!(e.route_entry_name, "crossdock");
    assert_eq!(e.description, format!("crossdock:{}", me.instance_id));
    assert_eq!(e.status, RouteStatus::Available);
    let inst = emu.admin.instances().await.unwrap();
    assert!(!inst[0].source_dest_check);
    // Every call was made with this instance's STS credentials.
    let log = emu.admin.calls(None).await.unwrap();
    assert!(log
        .calls
        .iter()
        .all(|c| c.instance_id.as_deref() == Some(me.instance_id.as_str())));

    // Periodic resync and an agent restart: reads only.
    let seq = emu.next_seq().await;
    assert_eq!(
        agent
            .sync(Some("10.10.1.0/24".parse().unwrap()))
            .await
            .writes,
        0
    );
    let restarted = emu.agent().await;
    let report = restarted.sync(Some("10.10.1.0/24".parse().unwrap())).await;
    assert!(report.is_ready(), "{}", report.route.message);
    assert_eq!(report.writes, 0);
    assert!(emu.writes_since(seq).await.is_empty());

    // Someone else's route for the destination we are moved to: reported, not touched; our route
    // for the old subnet is kept because the new one cannot be created.
    emu.admin
        .put_route(&PutRoute {
            destination_cidr_block: Some("10.10.2.0/24".parse().unwrap()),
            next_hop_id: "i-someone-else".into(),
            route_entry_name: "theirs".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let seq = emu.next_seq().await;
    let report = restarted.sync(Some("10.10.2.0/24".parse().unwrap())).await;
    assert_eq!(
        (report.route.state, report.route.reason.as_str()),
        (State::Failed, "RouteConflict")
    );
    assert!(
        report.route.message.contains("i-someone-else"),
        "{}",
        report.route.message
    );
    assert!(emu.writes_since(seq).await.is_empty());
    assert_eq!(emu.entries().await.len(), 2);

    // Subnet change to a free destination: the new route first, the old one deleted after.
    let seq = emu.next_seq().await;
    let report = restarted.sync(Some("10.10.3.0/24".parse().unwrap())).await;
    assert!(report.is_ready(), "{}", report.route.message);
    assert_eq!(
        emu.writes_since(seq).await,
        ["CreateRouteEntry Success", "DeleteRouteEntry Success"]
    );
    let ours: Vec<String> = emu
        .entries()
        .await
        .into_iter()
        .filter(|e| e.next_hop_id == me.instance_id && e.status != RouteStatus::Deleting)
        .map(|e| e.destination_cidr_block.to_string())
        .collect();
    assert_eq!(ours, ["10.10.3.0/24"]);

    // Decommissioning: only our route goes.
    let report = restarted.deregister().await;
    assert!(report.is_ready(), "{}", report.route.message);
    assert_eq!(report.routes.len(), 1);
    let left: Vec<String> = emu
        .entries()
        .await
        .into_iter()
        .filter(|e| e.status != RouteStatus::Deleting)
        .map(|e| e.next_hop_id)
        .collect();
    assert_eq!(left, ["i-someone-else"]);

    let mut metrics = String::new();
    restarted.write_prometheus(&mut metrics);
    assert!(
        metrics.contains(
            "crossdock_cloud_api_calls_total{action=\"CreateRouteEntry\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        "crossdock_cloud_api_calls_total{action=\"metadata:credentials\",outcome=\"ok\"}"
    ));
}
