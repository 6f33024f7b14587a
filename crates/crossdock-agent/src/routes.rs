//! The seam to the route side: keeping this host's container subnet routed to it in the VPC.
//!
//! The host side (this crate) learns the subnet; whoever implements [`RouteSync`] makes the VPC agree
//! and reports the `route` and `credentials` conditions. With `[cloud] provider = "none"` routes are
//! managed outside crossdock (Terraform, the console), and [`NoRoutes`] reports both conditions as
//! disabled. The route loop runs in its own task so a slow or throttled cloud API never delays the
//! host firewall.

use crate::state::{RouteEntryStatus, Update};
use async_trait::async_trait;
use ipnet::Ipv4Net;
use std::time::Duration;

/// What one route pass found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSyncReport {
    /// → the `route` condition.
    pub route: Update,
    /// → the `credentials` condition.
    pub credentials: Update,
    /// This ECS instance, once known.
    pub instance_id: Option<String>,
    /// The routes for this host, for `/status`.
    pub routes: Vec<RouteEntryStatus>,
    /// Run again after this long instead of the regular `[cloud] resync_interval_secs`.
    pub retry_after: Option<Duration>,
    /// Fleet mode: the cluster as the last sweep saw it.
    pub fleet: Option<crossdock_routes::FleetStatus>,
}

/// Keeps the VPC route for this host's subnet.
#[async_trait]
pub trait RouteSync: Send + Sync {
    /// Brings the VPC in line with `subnet` (`None`: not known yet) and reports.
    async fn sync(&self, subnet: Option<Ipv4Net>) -> RouteSyncReport;
    /// Appends the route side's own Prometheus metrics to `/metrics`.
    fn write_prometheus(&self, _out: &mut String) {}
}

/// `provider = "none"`: routes are somebody else's job.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoutes;

#[async_trait]
impl RouteSync for NoRoutes {
    async fn sync(&self, _subnet: Option<Ipv4Net>) -> RouteSyncReport {
        RouteSyncReport {
            route: Update::disabled(
                "ExternallyManaged",
                "routes are managed outside crossdock ([cloud] provider = \"none\")",
            ),
            credentials: Update::disabled(
                "NotNeeded",
                "no cloud API is called ([cloud] provider = \"none\")",
            ),
            instance_id: None,
            routes: Vec::new(),
            retry_after: None,
            fleet: None,
        }
    }
}

/// Picks the route side for the configuration: [`NoRoutes`] for `provider = "none"`, the Alibaba
/// route reconciler for `provider = "alibaba"`.
pub fn for_config(cfg: &crossdock_config::Config) -> std::sync::Arc<dyn RouteSync> {
    match cfg.cloud.provider {
        crossdock_config::Provider::None => std::sync::Arc::new(NoRoutes),
        crossdock_config::Provider::Alibaba => std::sync::Arc::new(
            AlibabaRoutes::new(cfg.cloud.clone())
                .with_fleet(crossdock_routes::FleetSettings::from_config(cfg)),
        ),
    }
}

/// `provider = "alibaba"`: `crossdock_routes::RouteReconciler`, connected lazily. The metadata service
/// may not answer at boot, so a failed connection is reported (and retried) like any other pass.
#[derive(Debug)]
pub struct AlibabaRoutes {
    cloud: crossdock_config::CloudConfig,
    fleet: Option<crossdock_routes::FleetSettings>,
    inner: tokio::sync::Mutex<Option<std::sync::Arc<crossdock_routes::RouteReconciler>>>,
    ready: std::sync::Mutex<Option<std::sync::Arc<crossdock_routes::RouteReconciler>>>,
}

impl AlibabaRoutes {
    /// Fleet mode's settings (`None`: per-host mode).
    pub fn with_fleet(mut self, fleet: Option<crossdock_routes::FleetSettings>) -> Self {
        self.fleet = fleet;
        self
    }

    pub fn new(cloud: crossdock_config::CloudConfig) -> Self {
        Self {
            cloud,
            fleet: None,
            inner: tokio::sync::Mutex::new(None),
            ready: std::sync::Mutex::new(None),
        }
    }
}

fn update_of(c: &crossdock_routes::Condition) -> Update {
    use crossdock_routes::State as S;
    match c.state {
        S::Ready => Update::ready(&c.reason, c.message.clone()),
        S::Pending => Update::pending(&c.reason, c.message.clone()),
        S::Failed => Update::failed(&c.reason, c.message.clone()),
    }
}

fn convert(r: &crossdock_routes::RouteReport, instance_id: Option<String>) -> RouteSyncReport {
    RouteSyncReport {
        route: update_of(&r.route),
        credentials: update_of(&r.credentials),
        instance_id,
        routes: r
            .routes
            .iter()
            .map(|e| RouteEntryStatus {
                table_id: e.table_id.clone(),
                cidr: e.cidr.clone(),
                entry_id: e.entry_id.clone(),
                status: e.status.clone(),
                owner: e.owner.clone(),
            })
            .collect(),
        retry_after: r.retry_after,
        fleet: r.fleet.clone(),
    }
}

#[async_trait]
impl RouteSync for AlibabaRoutes {
    async fn sync(&self, subnet: Option<Ipv4Net>) -> RouteSyncReport {
        let rec = {
            let mut guard = self.inner.lock().await;
            if guard.is_none() {
                match crossdock_routes::connect(&self.cloud).await {
                    Ok(r) => {
                        let r = std::sync::Arc::new(r.with_fleet(self.fleet.clone()));
                        *self.ready.lock().unwrap() = Some(r.clone());
                        *guard = Some(r);
                    }
                    Err(e) => {
                        return convert(&crossdock_routes::RouteReport::connect_failed(&e), None)
                    }
                }
            }
            guard.clone().expect("connected above")
        };
        let report = rec.sync(subnet).await;
        convert(&report, Some(rec.identity().instance_id.clone()))
    }

    fn write_prometheus(&self, out: &mut String) {
        if let Some(r) = self.ready.lock().unwrap().as_ref() {
            r.write_prometheus(out);
        }
    }
}
