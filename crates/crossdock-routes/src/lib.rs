//! The agent's VPC route reconciler: this host's container subnet → this ECS instance, kept in the VPC
//! route table(s), with an explicit ownership marker, conflicts reported and never overwritten.
//!
//! The step the manual recipe does in the console, done by the agent and kept done. It is split the
//! way the rest of crossdock is: a pure planner ([`plan`]) tested as a decision table, a reconciler
//! ([`RouteReconciler`]) that executes plans one write at a time and turns every outcome into the
//! agent's `route` and `credentials` conditions ([`RouteReport`]), and a small trait ([`RouteCloud`])
//! at the edge, implemented by `crossdock_alibaba::Client`.
//!
//! Wiring in the agent:
//! ```no_run
//! # async fn demo(cfg: crossdock_config::Config, subnet: ipnet::Ipv4Net) -> Result<(), crossdock_alibaba::Error> {
//! let routes = crossdock_routes::connect(&cfg.cloud).await?;
//! let report = routes.sync(Some(subnet)).await;        // on start, subnet change, every resync
//! println!("{:?} {}", report.route.state, report.route.message);
//! let mut metrics = String::new();
//! routes.write_prometheus(&mut metrics);
//! # Ok(()) }
//! ```

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod boot;
mod calls;
pub mod cloud;
mod deregister;
mod discovery;
mod finish;
pub mod fleet;
pub mod fleet_plan;
pub mod gc;
pub mod metrics;
pub mod peers;
pub mod plan;
mod problem;
pub mod reconciler;
pub mod report;
pub mod tables;
mod wait;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod fleet_plan_tests;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod tests;

pub use cloud::RouteCloud;
pub use fleet::{FleetHost, FleetSettings, FleetStatus};
pub use metrics::RouteMetrics;
pub use plan::{plan, Action, Desired, Marker, NetworkCidrs, Observed};
pub use reconciler::{RouteReconciler, RoutesConfig};
pub use report::{Condition, RouteReport, RouteStatus, SourceDestCheck, State};

/// The cloud client's settings from the `[cloud]` table: the one mapping from the agent's
/// configuration onto `crossdock_alibaba::Settings` (the client does not read the application's
/// configuration itself). The doctor uses it too, so both see the cloud the same way.
pub fn cloud_settings(cfg: &crossdock_config::CloudConfig) -> crossdock_alibaba::Settings {
    use crossdock_alibaba::TokenMode;
    use crossdock_config::MetadataToken;
    crossdock_alibaba::Settings {
        metadata_url: cfg.metadata_url.clone(),
        metadata_token: match cfg.metadata_token {
            MetadataToken::Auto => TokenMode::Auto,
            MetadataToken::Required => TokenMode::Required,
            MetadataToken::Disabled => TokenMode::Disabled,
        },
        region_id: cfg.region_id.clone(),
        instance_id: cfg.instance_id.clone(),
        vpc_id: cfg.vpc_id.clone(),
        vswitch_id: cfg.vswitch_id.clone(),
        private_ip: cfg.private_ip.clone(),
        eni_id: cfg.eni_id.clone(),
        ram_role: cfg.ram_role.clone(),
        vpc_endpoint: cfg.vpc_endpoint.clone(),
        ecs_endpoint: cfg.ecs_endpoint.clone(),
        access_key_id: cfg.access_key_id.clone(),
        access_key_secret: cfg.access_key_secret.clone(),
    }
}

/// Builds the reconciler for Alibaba Cloud from the `[cloud]` table: identity from config/metadata,
/// credentials from config/environment/RAM role, the signed client. Fails only if identity cannot be
/// resolved or the configuration is unusable (retry later: the metadata service may not be up yet).
pub async fn connect(
    cfg: &crossdock_config::CloudConfig,
) -> Result<RouteReconciler, crossdock_alibaba::Error> {
    connect_with(cfg, crossdock_alibaba::ConnectOptions::default()).await
}

/// [`connect`] with explicit environment, clock, sleeper and retry policy (tests, the lab).
pub async fn connect_with(
    cfg: &crossdock_config::CloudConfig,
    opts: crossdock_alibaba::ConnectOptions,
) -> Result<RouteReconciler, crossdock_alibaba::Error> {
    let sleeper = opts.sleeper.clone();
    let conn = crossdock_alibaba::connect_with(&cloud_settings(cfg), opts).await?;
    let routes_cfg = RoutesConfig {
        known_vpc_cidr: known_vpc_cidr(conn.metadata.as_deref()).await,
        ..RoutesConfig::from_cloud_config(cfg)
    };
    Ok(RouteReconciler::new(conn.client.clone(), routes_cfg, conn.identity).with_sleeper(sleeper))
}

/// The VPC's primary CIDR from the metadata service (`vpc-cidr-block`), best effort: a metadata
/// read costs no API call and no share of the account's rate limit.
async fn known_vpc_cidr(md: Option<&crossdock_alibaba::MetadataClient>) -> Option<ipnet::Ipv4Net> {
    let raw = md?.get("vpc-cidr-block", "identity").await.ok()?;
    raw.trim().parse().ok()
}

#[cfg(test)]
mod cloud_settings_tests {
    use crossdock_alibaba::{Secret, Settings, TokenMode};
    use crossdock_config::{CloudConfig, MetadataToken};

    #[test]
    fn every_cloud_field_the_client_reads_is_carried_over() {
        let cfg = CloudConfig {
            metadata_url: "http://md".into(),
            metadata_token: MetadataToken::Required,
            region_id: "r".into(),
            instance_id: "i".into(),
            vpc_id: "v".into(),
            vswitch_id: "s".into(),
            private_ip: "p".into(),
            eni_id: "e".into(),
            ram_role: "role".into(),
            vpc_endpoint: "http://vpc".into(),
            ecs_endpoint: "http://ecs".into(),
            access_key_id: "ak".into(),
            access_key_secret: Secret::new("sk"),
            ..CloudConfig::default()
        };
        let want = Settings {
            metadata_url: "http://md".into(),
            metadata_token: TokenMode::Required,
            region_id: "r".into(),
            instance_id: "i".into(),
            vpc_id: "v".into(),
            vswitch_id: "s".into(),
            private_ip: "p".into(),
            eni_id: "e".into(),
            ram_role: "role".into(),
            vpc_endpoint: "http://vpc".into(),
            ecs_endpoint: "http://ecs".into(),
            access_key_id: "ak".into(),
            access_key_secret: Secret::new("sk"),
        };
        assert_eq!(super::cloud_settings(&cfg), want);
        for (m, t) in [
            (MetadataToken::Auto, TokenMode::Auto),
            (MetadataToken::Disabled, TokenMode::Disabled),
        ] {
            let c = CloudConfig {
                metadata_token: m,
                ..CloudConfig::default()
            };
            assert_eq!(super::cloud_settings(&c).metadata_token, t);
        }
    }
}
