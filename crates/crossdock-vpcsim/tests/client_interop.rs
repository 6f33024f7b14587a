//! The agent's own Alibaba client (crossdock-alibaba) against the emulator: the two were written apart,
//! so agreeing on field names, pagination and error codes here means neither drifted from the wire.

mod common;

use common::{settings, Lab};
use crossdock_alibaba::types::{CreateRouteEntry, RouteEntryFilter};
use crossdock_alibaba::{
    CallCounters, Client, ClientOptions, CredentialSource, Credentials, CredentialsProvider,
    ErrorClass, Secret, Settings,
};
use std::sync::Arc;

fn client(lab: &Lab) -> Client {
    let mut opts = ClientOptions::new("cn-hangzhou");
    opts.vpc_endpoint = format!("http://{}", lab.api);
    opts.ecs_endpoint = format!("http://{}", lab.api);
    opts.retry.max_attempts = 1;
    let creds = Credentials {
        access_key_id: lab.admin_key.id.clone(),
        access_key_secret: Secret::new(lab.admin_key.secret.clone()),
        security_token: None,
        expiration: None,
        source: CredentialSource::Config,
    };
    Client::new(
        opts,
        Arc::new(CredentialsProvider::fixed(creds)),
        Arc::new(CallCounters::default()),
    )
    .unwrap()
}

#[tokio::test]
async fn the_agents_client_reads_and_writes_the_emulated_vpc() {
    let lab = Lab::start(settings(200)).await;
    let h1 = lab.instance("h1", "192.168.1.11").await;
    let info = lab.admin.info().await.unwrap();
    let c = client(&lab);
    let tables = c.describe_route_table_list(&info.vpc_id).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert!(tables[0].is_system());
    assert_eq!(tables[0].vswitch_ids, vec![info.vswitch_id.clone()]);
    let vsw = c.describe_vswitches(&info.vpc_id).await.unwrap();
    assert_eq!(vsw[0].cidr_block, "192.168.1.0/24");
    let vpc = c.describe_vpc_attribute(&info.vpc_id).await.unwrap();
    assert_eq!(vpc.cidr_block, "192.168.0.0/16");
    let req = CreateRouteEntry {
        route_table_id: info.system_route_table_id.clone(),
        destination_cidr_block: "10.10.1.0/24".into(),
        next_hop_id: h1.instance_id.clone(),
        name: "crossdock".into(),
        description: format!("crossdock:{}", h1.instance_id),
        client_token: "interop-1".into(),
    };
    let id = c.create_route_entry(&req).await.unwrap();
    assert_eq!(
        c.create_route_entry(&req).await.unwrap(),
        id,
        "same ClientToken, same entry"
    );
    let filter = RouteEntryFilter {
        route_entry_type: Some("Custom".into()),
        ..Default::default()
    };
    let entries = c
        .describe_route_entry_list(&info.system_route_table_id, &filter)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].route_entry_id, id);
    assert_eq!(entries[0].status, "Pending");
    assert_eq!(entries[0].name, "crossdock");
    lab.wait_status(&id, "Available").await;
    // a duplicate is classified as such
    let dup = c
        .create_route_entry(&CreateRouteEntry {
            client_token: "interop-2".into(),
            ..req.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.class(), ErrorClass::Duplicate, "{dup}");
    let eni = c.describe_network_interface(&h1.eni_id).await.unwrap();
    assert_eq!(eni.source_dest_check, Some(true));
    assert_eq!(eni.instance_id, h1.instance_id);
    c.modify_source_dest_check(&h1.eni_id, false).await.unwrap();
    assert_eq!(
        c.describe_network_interface(&h1.eni_id)
            .await
            .unwrap()
            .source_dest_check,
        Some(false)
    );
    c.delete_route_entry(&id).await.unwrap();
    lab.wait_gone(&id).await;
    let gone = c.delete_route_entry(&id).await.unwrap_err();
    assert_eq!(gone.class(), ErrorClass::NotFound, "{gone}");
}

#[tokio::test]
async fn the_agents_credential_chain_uses_the_metadata_service() {
    use crossdock_alibaba::{system_clock, EnvVars, MetadataClient, TokenMode};
    let bootstrap = crossdock_vpcsim::model::Bootstrap {
        vpc_cidr: "127.0.0.0/8".parse().unwrap(),
        vswitch_cidr: "127.0.0.0/24".parse().unwrap(),
        ..Default::default()
    };
    let hardened = crossdock_vpcsim::admin::Settings {
        metadata_hardened: true,
        credential_lifetime_secs: 3600,
        ..settings(0)
    };
    let lab = Lab::start_with(tempfile::tempdir().unwrap(), hardened, bootstrap).await;
    let inst = lab
        .admin
        .create_instance(&crossdock_vpcsim::admin::CreateInstance {
            hostname: "n1".into(),
            private_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let counters = Arc::new(CallCounters::default());
    let md = Arc::new(
        MetadataClient::new(
            &format!("http://{}", lab.metadata),
            TokenMode::Required,
            system_clock(),
            counters.clone(),
        )
        .unwrap(),
    );
    assert_eq!(
        md.get("instance-id", "instance-id").await.unwrap(),
        inst.instance_id
    );
    let cfg = Settings::default();
    let provider = CredentialsProvider::from_settings(
        &cfg,
        &EnvVars::from_pairs([]),
        Some(md.clone()),
        system_clock(),
    )
    .unwrap();
    let creds = provider.get().await.unwrap();
    assert!(creds.access_key_id.starts_with("STS."));
    let mut opts = ClientOptions::new("cn-hangzhou");
    opts.vpc_endpoint = format!("http://{}", lab.api);
    opts.ecs_endpoint = format!("http://{}", lab.api);
    let c = Client::new(opts, Arc::new(provider), counters).unwrap();
    let info = lab.admin.info().await.unwrap();
    assert_eq!(c.describe_vswitches(&info.vpc_id).await.unwrap().len(), 1);
    let log = lab.admin.calls(None).await.unwrap();
    assert_eq!(
        log.calls.last().unwrap().instance_id.as_deref(),
        Some(inst.instance_id.as_str())
    );
}
