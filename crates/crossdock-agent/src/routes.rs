//! The seam to the route side: keeping this host's container subnet routed to it in the VPC.
//!
//! The host side (this crate) learns the subnet; whoever implements [`RouteSync`] makes the VPC agree
//! and reports the `route` and `credentials` conditions. With `[cloud] provider = "none"` routes are
//! managed outside crossdock (Terraform, the console), and [`NoRoutes`] reports both conditions as
//! disabled. The route loop runs in its own task so a slow or throttled cloud API never delays the
//! host firewall.

use crate::state::Update;
use async_trait::async_trait;
use crossdock_routes::{Condition, RouteReport, SourceDestCheck};
use crossdock_status::{Reason, State};
use ipnet::Ipv4Net;

/// What one route pass found: the `route` and `credentials` conditions, this instance, the
/// routes for `/status`, when to run again, fleet mode's view. The route side's own report, used
/// as it is.
pub type RouteSyncReport = RouteReport;

impl From<&Condition> for Update {
    /// A route-side condition as a condition update (a failure's message is its last error).
    fn from(c: &Condition) -> Self {
        match c.state {
            State::Failed => Update::failed(c.reason, c.message.clone()),
            state => Update::new(state, c.reason, c.message.clone()),
        }
    }
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
        RouteReport {
            route: Condition::new(
                State::Disabled,
                Reason::ExternallyManaged,
                "routes are managed outside crossdock ([cloud] provider = \"none\")",
            ),
            credentials: Condition::new(
                State::Disabled,
                Reason::NotNeeded,
                "no cloud API is called ([cloud] provider = \"none\")",
            ),
            routes: Vec::new(),
            source_dest_check: SourceDestCheck::Unknown,
            reads: 0,
            writes: 0,
            retry_after: None,
            instance_id: None,
            fleet: None,
            peers: None,
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
                .with_fleet(crossdock_routes::FleetSettings::from_config(cfg))
                .with_route_peers(cfg.names.enabled),
        ),
    }
}

/// `provider = "alibaba"`: `crossdock_routes::RouteReconciler`, connected lazily. The metadata service
/// may not answer at boot, so a failed connection is reported (and retried) like any other pass.
#[derive(Debug)]
pub struct AlibabaRoutes {
    cloud: crossdock_config::CloudConfig,
    fleet: Option<crossdock_routes::FleetSettings>,
    /// Names on: report the hosts behind crossdock's routes (per-host mode's catalog peers).
    route_peers: bool,
    inner: tokio::sync::Mutex<Option<std::sync::Arc<crossdock_routes::RouteReconciler>>>,
    ready: std::sync::Mutex<Option<std::sync::Arc<crossdock_routes::RouteReconciler>>>,
}

impl AlibabaRoutes {
    /// Fleet mode's settings (`None`: per-host mode).
    pub fn with_fleet(mut self, fleet: Option<crossdock_routes::FleetSettings>) -> Self {
        self.fleet = fleet;
        self
    }

    /// `[names]` on: in per-host mode the catalog's peers are the hosts behind crossdock's routes.
    pub fn with_route_peers(mut self, on: bool) -> Self {
        self.route_peers = on;
        self
    }

    pub fn new(cloud: crossdock_config::CloudConfig) -> Self {
        Self {
            cloud,
            fleet: None,
            route_peers: false,
            inner: tokio::sync::Mutex::new(None),
            ready: std::sync::Mutex::new(None),
        }
    }
}

impl AlibabaRoutes {
    /// Fleet mode opens the client's throttle gate wider at the first throttled answer: the hosts
    /// of a fleet boot together against one account's rate limit (see
    /// [`crossdock_routes::fleet::FLEET_THROTTLE_WINDOW`]).
    fn connect_options(&self) -> crossdock_alibaba::ConnectOptions {
        let defaults = crossdock_alibaba::ConnectOptions::default();
        match self.fleet {
            Some(_) => crossdock_alibaba::ConnectOptions {
                throttle_window: crossdock_routes::fleet::FLEET_THROTTLE_WINDOW,
                ..defaults
            },
            None => defaults,
        }
    }
}

#[async_trait]
impl RouteSync for AlibabaRoutes {
    async fn sync(&self, subnet: Option<Ipv4Net>) -> RouteSyncReport {
        let rec = {
            let mut guard = self.inner.lock().await;
            match guard.clone() {
                Some(r) => r,
                None => match crossdock_routes::connect_with(&self.cloud, self.connect_options())
                    .await
                {
                    Ok(r) => {
                        let r = std::sync::Arc::new(
                            r.with_fleet(self.fleet.clone())
                                .with_route_peers(self.route_peers),
                        );
                        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
                        *guard = Some(r.clone());
                        r
                    }
                    Err(e) => return RouteReport::connect_failed(&e),
                },
            }
        };
        rec.sync(subnet).await
    }

    fn write_prometheus(&self, out: &mut String) {
        if let Some(r) = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            r.write_prometheus(out);
        }
    }
}
