//! The health socket: HTTP on a unix socket (mode 0660, so a group can be granted read access without
//! root), serving `/healthz`, `/status` and `/metrics` from the shared [`AgentState`]. The optional TCP
//! scrape endpoint ([`crate::scrape`]) serves the same `/healthz` and `/metrics` handlers through
//! [`scrape_router`]; `/status` (paths, identity, messages) stays on the socket.

use crate::routes::RouteSync;
use crate::state::AgentState;
use axum::extract::State as AxState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<AgentState>>,
    routes: Arc<dyn RouteSync>,
}

/// `/healthz` and `/metrics`: what both the socket and the scrape endpoint serve.
fn common() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The router for the health socket.
pub fn router(state: Arc<Mutex<AgentState>>, routes: Arc<dyn RouteSync>) -> Router {
    common()
        .route("/status", get(status))
        .with_state(Shared { state, routes })
}

/// The router for the TCP scrape endpoint: `/healthz` and `/metrics` only.
pub fn scrape_router(state: Arc<Mutex<AgentState>>, routes: Arc<dyn RouteSync>) -> Router {
    common().with_state(Shared { state, routes })
}

/// 200 `ok` when every condition is ready or disabled; otherwise 503 listing the others, one a line.
async fn healthz(AxState(s): AxState<Shared>) -> impl IntoResponse {
    let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
    let bad = st.conditions.unhealthy();
    if bad.is_empty() {
        return (StatusCode::OK, "ok\n".to_string());
    }
    let body: String = bad
        .iter()
        .map(|(n, c)| format!("{n}: {} ({}): {}\n", c.state.as_str(), c.reason, c.message))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn status(AxState(s): AxState<Shared>) -> impl IntoResponse {
    let v = s
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .status_json();
    axum::Json(v)
}

async fn metrics(AxState(s): AxState<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    {
        let st = s.state.lock().unwrap_or_else(|p| p.into_inner());
        st.metrics.render(&mut out);
        st.conditions.render_prometheus(&mut out);
        if let Some(names) = &st.names {
            names.render_prometheus(&mut out);
        }
    }
    s.routes.write_prometheus(&mut out);
    if let Some(p) = crate::metrics::ProcessStats::read() {
        p.render(&mut out);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::NoRoutes;
    use crate::state::{Reason, Update, CONDITIONS};

    async fn get(
        dir: &std::path::Path,
        router: Router,
        path: &str,
    ) -> crossdock_unixhttp::Response {
        let sock = dir.join("h.sock");
        if !sock.exists() {
            let listener = crossdock_unixhttp::bind_socket(&sock, 0o660).unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        crossdock_unixhttp::request(&sock, "GET", path, None, None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn healthz_status_metrics_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Mutex::new(AgentState::new("/x.toml".into())));
        let r = router(state.clone(), Arc::new(NoRoutes));
        let h = get(dir.path(), r.clone(), "/healthz").await;
        assert_eq!(h.status, 503);
        assert!(
            h.text().contains("docker: pending (NotCheckedYet)"),
            "{}",
            h.text()
        );
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            for &n in CONDITIONS {
                st.set(n, Update::ready(Reason::InPlace, "fine"));
            }
        }
        let h = get(dir.path(), r.clone(), "/healthz").await;
        assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
        let s = get(dir.path(), r.clone(), "/status").await;
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(v["conditions"]["firewall"]["state"], "ready");
        assert_eq!(v["config_path"], "/x.toml");
        let m = get(dir.path(), r, "/metrics").await;
        assert!(m
            .text()
            .contains("# TYPE crossdock_reconcile_total counter"));
        assert!(m
            .text()
            .contains("# TYPE process_resident_memory_bytes gauge"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("h.sock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
    }
}
