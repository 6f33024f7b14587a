//! The TCP scrape endpoint (`[metrics] listen`): `/metrics` and `/healthz` for Prometheus, which
//! scrapes HTTP over TCP and cannot read the health socket. Same handlers as the socket
//! ([`crate::health::scrape_router`]); `/status` is not served here.
//!
//! Why it is guarded twice on a non-loopback address: the host firewall admits only `scrapers` to the
//! port (rules from [`crossdock_hostnet::scrape_rules`], kept by the host pass), and every request's
//! peer address is checked here as well (403), because the rules exist only once the first host pass
//! ran and anyone can flush them. A loopback address is reachable from this host only: every peer is
//! admitted.
//!
//! Why the address is checked against the host's own: binding an address the host does not hold
//! fails anyway, but only when the agent starts and with a bare kernel error; checking first gives the
//! usual one-line configuration error and exit status 2 at `--check-config`, at start and on reload.
//! The kernel is asked through the small [`HostAddresses`] trait, so the check is unit-tested
//! without one.
//!
//! Reload: a changed address is bound before the old listener is let go, so a bad one (port taken)
//! refuses the reload and the old listener stays; changed scrapers apply from the next request.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use crossdock_config::{ConfigError, MetricsConfig};
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;

/// Who may use the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A loopback listener: only this host can connect at all.
    Any,
    /// An exposed listener: peers inside these ranges only.
    Only(Vec<Ipv4Net>),
}

impl Admission {
    pub fn for_config(m: &MetricsConfig) -> Self {
        match m.exposed() {
            None => Admission::Any,
            Some(_) => Admission::Only(m.scrapers.clone()),
        }
    }

    pub fn admits(&self, peer: IpAddr) -> bool {
        match (self, peer.to_canonical()) {
            (Admission::Any, _) => true,
            (Admission::Only(nets), IpAddr::V4(ip)) => nets.iter().any(|n| n.contains(&ip)),
            (Admission::Only(_), IpAddr::V6(_)) => false,
        }
    }
}

/// The IPv4 addresses this host holds.
#[async_trait::async_trait]
pub trait HostAddresses: Send + Sync {
    async fn ipv4(&self) -> Result<Vec<Ipv4Addr>, String>;
}

#[async_trait::async_trait]
impl HostAddresses for crossdock_hostnet::RtNetlink {
    async fn ipv4(&self) -> Result<Vec<Ipv4Addr>, String> {
        self.ipv4_addresses().await.map_err(|e| e.to_string())
    }
}

/// `addr` is a loopback address or one of `held`.
pub fn check_local(addr: SocketAddrV4, held: &[Ipv4Addr]) -> Result<(), ConfigError> {
    if addr.ip().is_loopback() || held.contains(addr.ip()) {
        return Ok(());
    }
    let mut list: Vec<String> = held
        .iter()
        .filter(|ip| !ip.is_loopback())
        .map(ToString::to_string)
        .collect();
    if list.is_empty() {
        list.push("none but loopback".into());
    }
    Err(ConfigError::new(
        "metrics.listen",
        format!(
            "{} is not an address of this host (it has {})",
            addr.ip(),
            list.join(", ")
        ),
        format!(
            "listen on 127.0.0.1:{port} for a Prometheus on this host, or on this host's private IP (one of the above) with metrics.scrapers",
            port = addr.port()
        ),
    ))
}

/// Checks `[metrics] listen` against the host's addresses (nothing to check when it is off or
/// loopback).
pub async fn check_listen(m: &MetricsConfig, host: &dyn HostAddresses) -> Result<(), ConfigError> {
    let Some(addr) = m.exposed() else {
        return Ok(());
    };
    let held = host.ipv4().await.map_err(|e| {
        ConfigError::new(
            "metrics.listen",
            format!("cannot list this host's addresses to check {addr}: {e}"),
            "make sure the agent may use netlink, or listen on 127.0.0.1",
        )
    })?;
    check_local(addr, &held)
}

/// 403 for a peer outside the admitted ranges.
async fn admit(
    State(admission): State<Arc<RwLock<Admission>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if admission
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .admits(peer.ip())
    {
        return next.run(request).await;
    }
    tracing::debug!(peer = %peer, "scrape refused: not in [metrics] scrapers");
    (
        StatusCode::FORBIDDEN,
        format!(
            "{} may not scrape this agent (not in [metrics] scrapers)\n",
            peer.ip()
        ),
    )
        .into_response()
}

/// A bound listener and the way to stop it.
#[derive(Debug)]
struct Serving {
    addr: SocketAddrV4,
    stop: oneshot::Sender<()>,
}

/// The endpoint as configured now: serving on one address, or off.
#[derive(Debug)]
pub struct ScrapeEndpoint {
    router: Router,
    admission: Arc<RwLock<Admission>>,
    serving: Option<Serving>,
}

impl ScrapeEndpoint {
    /// Off until [`ScrapeEndpoint::apply`]; `router` is [`crate::health::scrape_router`].
    pub fn new(router: Router) -> Self {
        Self {
            router,
            admission: Arc::new(RwLock::new(Admission::Only(Vec::new()))),
            serving: None,
        }
    }

    /// Where it listens now.
    pub fn addr(&self) -> Option<SocketAddrV4> {
        self.serving.as_ref().map(|s| s.addr)
    }

    /// Brings the endpoint to `m`: binds a changed address first (on failure nothing changes and
    /// the error says why), then switches admission and lets the old listener go.
    pub async fn apply(&mut self, m: &MetricsConfig) -> Result<(), String> {
        let replacement = match m.listen {
            addr if addr == self.addr() => None,
            Some(addr) => Some(Some(self.bind(addr).await?)),
            None => Some(None),
        };
        *self.admission.write().unwrap_or_else(|p| p.into_inner()) = Admission::for_config(m);
        if let Some(new) = replacement {
            if let Some(old) = std::mem::replace(&mut self.serving, new) {
                // Stops accepting at once; open connections finish their request and close.
                let _ = old.stop.send(());
                tracing::info!(addr = %old.addr, "scrape endpoint closed");
            }
        }
        Ok(())
    }

    async fn bind(&self, addr: SocketAddrV4) -> Result<Serving, String> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            format!("cannot listen on {addr} ([metrics] listen): {e} (fix: choose a free port, or stop what holds this one)")
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = self
            .router
            .clone()
            .layer(middleware::from_fn_with_state(
                self.admission.clone(),
                admit,
            ))
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(addr = %addr, "scrape endpoint failed: {e}");
            }
        });
        tracing::info!(addr = %addr, "scrape endpoint listening (/metrics, /healthz)");
        Ok(Serving { addr, stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::NoRoutes;
    use crate::state::AgentState;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(text: &str) -> MetricsConfig {
        crossdock_config::parse(&format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[metrics]\n{text}"
        ))
        .unwrap()
        .metrics
    }

    struct Held(Vec<Ipv4Addr>);
    #[async_trait::async_trait]
    impl HostAddresses for Held {
        async fn ipv4(&self) -> Result<Vec<Ipv4Addr>, String> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn only_loopback_or_an_address_of_this_host_is_accepted() {
        let host = Held(vec![Ipv4Addr::LOCALHOST, "192.168.1.11".parse().unwrap()]);
        let ok = [
            "",
            "listen = \"127.0.0.1:9464\"",
            "listen = \"127.0.0.2:9464\"",
            "listen = \"192.168.1.11:9464\"\nscrapers = [\"192.168.1.0/24\"]",
        ];
        for text in ok {
            assert!(check_listen(&config(text), &host).await.is_ok(), "{text}");
        }
        let other = config("listen = \"192.168.1.12:9464\"\nscrapers = [\"192.168.1.0/24\"]");
        let e = check_listen(&other, &host).await.unwrap_err();
        assert_eq!(e.field, "metrics.listen");
        assert!(
            e.message
                .contains("192.168.1.12 is not an address of this host (it has 192.168.1.11)"),
            "{e}"
        );
        assert!(e.fix.contains("127.0.0.1:9464"), "{e}");
    }

    #[test]
    fn admission_follows_the_scrapers_for_an_exposed_address_only() {
        let exposed = Admission::for_config(&config(
            "listen = \"192.168.1.11:9464\"\nscrapers = [\"192.168.1.12/32\", \"10.9.0.0/16\"]",
        ));
        assert!(exposed.admits("192.168.1.12".parse().unwrap()));
        assert!(exposed.admits("10.9.200.1".parse().unwrap()));
        assert!(exposed.admits("::ffff:192.168.1.12".parse().unwrap()));
        assert!(!exposed.admits("192.168.1.13".parse().unwrap()));
        assert!(!exposed.admits("127.0.0.1".parse().unwrap()));
        assert!(!exposed.admits("::1".parse().unwrap()));
        let local = Admission::for_config(&config("listen = \"127.0.0.1:9464\""));
        assert_eq!(local, Admission::Any);
    }

    /// One HTTP/1.0 GET over TCP; (status, body), or None when the connection is refused.
    async fn get(addr: SocketAddrV4, path: &str) -> Option<(u16, String)> {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A real listener on loopback: admission by peer address (403), the same handlers as the
    /// socket, no `/status`, rebinding on a new address and refusing a taken one.
    #[tokio::test]
    async fn serves_metrics_and_healthz_to_admitted_peers_only() {
        let state = Arc::new(Mutex::new(AgentState::new("/x.toml".into())));
        let router = crate::health::scrape_router(state, Arc::new(NoRoutes));
        let mut ep = ScrapeEndpoint::new(router);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        ep.apply(&config(&format!("listen = \"{addr}\"")))
            .await
            .unwrap();
        let (code, body) = get(addr, "/metrics").await.expect("answered");
        assert_eq!(code, 200);
        assert!(body.contains("# TYPE crossdock_condition gauge"), "{body}");
        assert_eq!(get(addr, "/healthz").await.unwrap().0, 503);
        assert_eq!(get(addr, "/status").await.unwrap().0, 404);

        // The peer check, as an exposed listener applies it (the peer here is 127.0.0.1).
        *ep.admission.write().unwrap_or_else(|p| p.into_inner()) =
            Admission::Only(vec!["10.9.0.0/16".parse().unwrap()]);
        let (code, body) = get(addr, "/metrics").await.unwrap();
        assert_eq!(code, 403);
        assert!(body.contains("127.0.0.1 may not scrape"), "{body}");
        *ep.admission.write().unwrap_or_else(|p| p.into_inner()) =
            Admission::Only(vec!["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(get(addr, "/metrics").await.unwrap().0, 200);

        // A new address: bound first, the old one closed.
        let moved = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        ep.apply(&config(&format!("listen = \"{moved}\"")))
            .await
            .unwrap();
        assert_eq!(ep.addr(), Some(moved));
        assert_eq!(get(moved, "/metrics").await.unwrap().0, 200);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the old address still accepts"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // A taken address is refused and the running listener stays.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_addr = match taken.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        let e = ep
            .apply(&config(&format!("listen = \"{taken_addr}\"")))
            .await
            .unwrap_err();
        assert!(e.contains("cannot listen on") && e.contains("fix:"), "{e}");
        assert_eq!(ep.addr(), Some(moved));
        assert_eq!(get(moved, "/metrics").await.unwrap().0, 200);

        // Switched off.
        ep.apply(&config("")).await.unwrap();
        assert_eq!(ep.addr(), None);
    }
}
