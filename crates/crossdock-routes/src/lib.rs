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

pub mod cloud;
pub mod fleet;
pub mod fleet_plan;
pub mod gc;
pub mod metrics;
pub mod plan;
pub mod reconciler;
pub mod report;
pub mod tables;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod fleet_plan_tests;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod tests;

pub use cloud::RouteCloud;
pub use fleet::{FleetSettings, FleetStatus};
pub use metrics::RouteMetrics;
pub use plan::{plan, Action, Desired, Marker, NetworkCidrs, Observed};
pub use reconciler::{RouteReconciler, RoutesConfig};
pub use report::{Condition, RouteReport, RouteStatus, SourceDestCheck, State};

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
    let conn = crossdock_alibaba::connect_with(cfg, opts).await?;
    Ok(RouteReconciler::new(
        conn.client.clone(),
        RoutesConfig::from_cloud_config(cfg),
        conn.identity,
    )
    .with_sleeper(sleeper))
}
