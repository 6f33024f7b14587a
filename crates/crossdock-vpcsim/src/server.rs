//! Runs the emulator: the API on TCP addresses and a unix socket, the metadata service on its own
//! listeners, the admin API on a unix socket, the route timers and the data-plane loop.
//!
//! [`start`] binds everything and returns a [`Server`] handle (tests bind port 0 on 127.0.0.1 and read
//! the bound addresses back); [`serve`] is `start` plus waiting for SIGINT/SIGTERM, what the lab's
//! `crossdock lab vpc-server` runs.

use crate::admin::{
    AdminError, CreateAccessKey, CreateInstance, CreateRouteTable, CreateVSwitch, Faults, Info,
    PutRoute, SetRole, SetRouteStatus, SetTags, Settings,
};
use crate::dataplane::{Dataplane, MemoryDataplane};
use crate::model::{
    now_ms, AccessKey, BindingError, Bootstrap, EntryType, Instance, InstanceStatus, Role,
    RouteEntry, RouteStatus, RouteTable, Tag, VSwitch,
};
use crate::sim::Sim;
use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as AxPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Everything the emulator is started with.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where the state is persisted; `None` = in memory only.
    pub state_file: Option<PathBuf>,
    /// API listeners, e.g. `100.100.100.201:80` (port 0 = any free port).
    pub api_listen: Vec<SocketAddr>,
    /// Metadata listeners, e.g. `100.100.100.200:80`.
    pub metadata_listen: Vec<SocketAddr>,
    /// The API on a unix socket (mode 0660), for tools in the root namespace.
    pub api_socket: Option<PathBuf>,
    /// The admin API's unix socket (mode 0600).
    pub admin_socket: Option<PathBuf>,
    /// What a fresh VPC looks like (ignored when the state file exists).
    pub bootstrap: Bootstrap,
    pub settings: Settings,
    pub dataplane: Arc<dyn Dataplane>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            state_file: None,
            api_listen: vec![],
            metadata_listen: vec![],
            api_socket: None,
            admin_socket: None,
            bootstrap: Bootstrap::default(),
            settings: Settings::default(),
            dataplane: Arc::new(MemoryDataplane::default()),
        }
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct Server {
    pub sim: Arc<Sim>,
    pub api_addrs: Vec<SocketAddr>,
    pub metadata_addrs: Vec<SocketAddr>,
    pub api_socket: Option<PathBuf>,
    pub admin_socket: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Stops every listener and loop and removes the socket files. The state is already on disk.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        for p in [&self.api_socket, &self.admin_socket].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds everything and starts the loops.
pub async fn start(opts: ServerOptions) -> anyhow::Result<Server> {
    let sim = Sim::open(
        opts.state_file.as_deref(),
        &opts.bootstrap,
        opts.settings.clone(),
    )?;
    let mut tasks = vec![];
    tasks.push(tokio::spawn(sim.clone().run_timers()));
    tasks.push(tokio::spawn(
        sim.clone().run_dataplane(opts.dataplane.clone()),
    ));

    let mut api_addrs = vec![];
    for addr in &opts.api_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for the API on {addr} (is the address on an interface of this namespace, is the port free?)"))?;
        api_addrs.push(l.local_addr()?);
        let app = api_router_tcp(sim.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("API listener failed: {e}");
            }
        }));
    }
    let mut metadata_addrs = vec![];
    for addr in &opts.metadata_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for the metadata service on {addr}"))?;
        metadata_addrs.push(l.local_addr()?);
        let app = Router::new()
            .fallback(crate::metadata::handle)
            .with_state(sim.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("metadata listener failed: {e}");
            }
        }));
    }
    if let Some(path) = &opts.api_socket {
        let l = crossdock_unixhttp::bind_socket(path, 0o660)?;
        let app = api_router_unix(sim.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("API socket failed: {e}");
            }
        }));
    }
    if let Some(path) = &opts.admin_socket {
        let l = crossdock_unixhttp::bind_socket(path, 0o600)?;
        let app = admin_router(sim.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("admin socket failed: {e}");
            }
        }));
    }
    {
        let mut ep = sim.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        ep.0 = api_addrs.iter().map(|a| format!("http://{a}")).collect();
        if let Some(p) = &opts.api_socket {
            ep.0.push(format!("unix://{}", p.display()));
        }
        ep.1 = metadata_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
    }
    Ok(Server {
        sim,
        api_addrs,
        metadata_addrs,
        api_socket: opts.api_socket.clone(),
        admin_socket: opts.admin_socket.clone(),
        tasks,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(opts: ServerOptions) -> anyhow::Result<()> {
    let server = start(opts).await?;
    tracing::info!(
        api = ?server.api_addrs,
        metadata = ?server.metadata_addrs,
        api_socket = ?server.api_socket,
        admin_socket = ?server.admin_socket,
        "VPC emulator running"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("VPC emulator stopping");
    server.shutdown().await;
    Ok(())
}

// ----- API routers -----

fn api_router_tcp(sim: Arc<Sim>) -> Router {
    async fn h(
        State(sim): State<Arc<Sim>>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let req =
            crate::api::ApiRequest::from_http(&method, &uri, &headers, body, format!("tcp:{peer}"));
        crate::api::handle(sim, req).await
    }
    Router::new().route("/", any(h)).with_state(sim)
}

fn api_router_unix(sim: Arc<Sim>) -> Router {
    async fn h(
        State(sim): State<Arc<Sim>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let req = crate::api::ApiRequest::from_http(&method, &uri, &headers, body, "unix".into());
        crate::api::handle(sim, req).await
    }
    Router::new().route("/", any(h)).with_state(sim)
}

// ----- admin -----

type AdminErr = (StatusCode, Json<AdminError>);
type AdminResult<T> = Result<Json<T>, AdminErr>;

fn admin_err(status: StatusCode, msg: impl Into<String>) -> AdminErr {
    (status, Json(AdminError { error: msg.into() }))
}

fn bad(msg: impl Into<String>) -> AdminErr {
    admin_err(StatusCode::BAD_REQUEST, msg)
}

/// The admin router (also usable in tests without a socket).
pub fn admin_router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/info", get(info))
        .route(
            "/state",
            get(|State(sim): State<Arc<Sim>>| async move { Json(sim.read(|c| c.state.clone())) }),
        )
        .route("/instances", get(list_instances).post(create_instance))
        .route("/instances/{id}", delete(release_instance))
        .route("/instances/{id}/tags", put(set_instance_tags))
        .route("/instances/{id}/stop", post(stop_instance))
        .route("/instances/{id}/start", post(start_instance))
        .route("/vswitches", post(create_vswitch))
        .route("/route-tables", post(create_route_table))
        .route(
            "/route-tables/{id}/vswitches/{vsw}",
            put(bind_vswitch).delete(unbind_vswitch),
        )
        .route("/access-keys", post(create_access_key))
        .route("/roles", post(set_role))
        .route("/calls", get(calls))
        .route(
            "/calls/reset",
            post(|State(sim): State<Arc<Sim>>| async move {
                sim.reset_calls();
                Json(serde_json::json!({}))
            }),
        )
        .route(
            "/faults",
            get(|State(sim): State<Arc<Sim>>| async move { Json(sim.read(|c| c.faults.clone())) })
                .put(set_faults),
        )
        .route(
            "/faults/reset",
            post(|State(sim): State<Arc<Sim>>| async move {
                sim.mutate(|c| c.faults = Faults::default());
                Json(serde_json::json!({}))
            }),
        )
        .route(
            "/settings",
            get(
                |State(sim): State<Arc<Sim>>| async move { Json(sim.read(|c| c.settings.clone())) },
            )
            .put(set_settings),
        )
        .route(
            "/credentials/expire",
            post(|State(sim): State<Arc<Sim>>| async move {
                let n = sim.expire_credentials();
                Json(serde_json::json!({ "expired": n }))
            }),
        )
        .route("/routes", post(put_route))
        .route("/routes/{id}/status", put(set_route_status))
        .route("/routes/{id}", delete(delete_route))
        .route(
            "/dataplane",
            get(|State(sim): State<Arc<Sim>>| async move { Json(sim.dataplane_status()) }),
        )
        .with_state(sim)
}

async fn info(State(sim): State<Arc<Sim>>) -> Json<Info> {
    let (api, md) = sim
        .endpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let file = sim.state_file().map(|p| p.to_path_buf());
    Json(sim.read(|c| {
        let s = &c.state;
        let admin = s.access_key(&s.admin_access_key_id);
        Info {
            region_id: s.region_id.clone(),
            zone_id: s.zone_id.clone(),
            vpc_id: s.vpc.vpc_id.clone(),
            vpc_cidr: s.vpc.cidr_block,
            vrouter_id: s.vpc.vrouter_id.clone(),
            vswitch_id: s
                .vswitches
                .first()
                .map(|v| v.vswitch_id.clone())
                .unwrap_or_default(),
            vswitch_cidr: s
                .vswitches
                .first()
                .map(|v| v.cidr_block)
                .unwrap_or_else(|| s.vpc.cidr_block),
            system_route_table_id: s.system_table_id().to_string(),
            admin_access_key_id: s.admin_access_key_id.clone(),
            admin_access_key_secret: admin
                .map(|k| k.access_key_secret.clone())
                .unwrap_or_default(),
            api_endpoints: api,
            metadata_endpoints: md,
            state_file: file,
            pid: std::process::id(),
        }
    }))
}

async fn list_instances(State(sim): State<Arc<Sim>>) -> Json<Vec<Instance>> {
    Json(sim.read(|c| c.state.instances.clone()))
}

/// The vSwitch a new instance goes into (the first one by default).
fn vswitch_for(s: &crate::model::State, id: Option<&str>) -> Result<VSwitch, AdminErr> {
    match id {
        Some(id) => s
            .vswitches
            .iter()
            .find(|v| v.vswitch_id == id)
            .cloned()
            .ok_or_else(|| bad(format!("no vSwitch {id}"))),
        None => s
            .vswitches
            .first()
            .cloned()
            .ok_or_else(|| bad("the VPC has no vSwitch")),
    }
}

/// The private IP of a new instance: the one asked for if free and inside the vSwitch, else the first
/// free address after the vSwitch's first nine.
fn ip_for(
    s: &crate::model::State,
    vsw: &VSwitch,
    ip: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, AdminErr> {
    let Some(ip) = ip else {
        return vsw
            .cidr_block
            .hosts()
            .skip(9)
            .find(|ip| s.instance_by_ip(*ip).is_none())
            .ok_or_else(|| bad(format!("vSwitch {} is full", vsw.vswitch_id)));
    };
    if !vsw.cidr_block.contains(&ip) {
        return Err(bad(format!(
            "{ip} is not inside vSwitch {} ({})",
            vsw.vswitch_id, vsw.cidr_block
        )));
    }
    if s.instance_by_ip(ip).is_some() {
        return Err(admin_err(
            StatusCode::CONFLICT,
            format!("{ip} already belongs to an instance"),
        ));
    }
    Ok(ip)
}

fn check_port(s: &crate::model::State, port: Option<&str>) -> Result<(), AdminErr> {
    let Some(port) = port else { return Ok(()) };
    if port.is_empty() || port.len() > 15 || port.contains(['"', ' ', '/']) {
        return Err(bad(format!("`{port}` is not a usable interface name")));
    }
    if s.instances.iter().any(|i| i.port.as_deref() == Some(port)) {
        return Err(admin_err(
            StatusCode::CONFLICT,
            format!("port {port} already belongs to an instance"),
        ));
    }
    Ok(())
}

/// Tags must be valid and their keys unique, as ECS requires.
fn check_tags(tags: &[Tag]) -> Result<(), AdminErr> {
    for (n, t) in tags.iter().enumerate() {
        t.validate().map_err(bad)?;
        if tags[..n].iter().any(|o| o.key == t.key) {
            return Err(bad(format!("tag key {:?} is given twice", t.key)));
        }
    }
    if tags.len() > 20 {
        return Err(bad("an instance has at most 20 tags"));
    }
    Ok(())
}

/// The RAM role of a new instance (`crossdock-node` by default, created if unknown).
fn role_for(s: &mut crate::model::State, asked: Option<&str>) -> Option<String> {
    let role = match asked {
        None => Some(crate::model::DEFAULT_ROLE.to_string()),
        Some("") => None,
        Some(r) => Some(r.to_string()),
    };
    if let Some(r) = &role {
        if !s.roles.iter().any(|x| &x.role_name == r) {
            s.roles.push(Role {
                role_name: r.clone(),
                allowed_actions: None,
            });
        }
    }
    role
}

async fn create_instance(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<CreateInstance>,
) -> AdminResult<Instance> {
    sim.mutate(|c| {
        let s = &mut c.state;
        let vsw = vswitch_for(s, req.vswitch_id.as_deref())?;
        let ip = ip_for(s, &vsw, req.private_ip)?;
        check_port(s, req.port.as_deref())?;
        check_tags(&req.tags)?;
        let instance_id = s.new_id("i-");
        let eni_id = s.new_id("eni-");
        let mac = s.new_mac();
        let ram_role = role_for(s, req.ram_role.as_deref());
        let inst = Instance {
            hostname: if req.hostname.is_empty() {
                instance_id.clone()
            } else {
                req.hostname.clone()
            },
            instance_id,
            private_ip: ip,
            port: req.port.clone(),
            vswitch_id: vsw.vswitch_id.clone(),
            zone_id: vsw.zone_id.clone(),
            eni_id,
            mac,
            source_dest_check: req.source_dest_check.unwrap_or(true),
            ram_role,
            created_at_ms: now_ms(),
            tags: req.tags.clone(),
            status: InstanceStatus::Running,
            seq: s.take_seq(),
        };
        s.instances.push(inst.clone());
        Ok(Json(inst))
    })
}

/// Changes one instance, or answers 404.
fn with_instance(
    sim: &Sim,
    id: &str,
    f: impl FnOnce(&mut Instance) -> Result<(), AdminErr>,
) -> AdminResult<Instance> {
    sim.mutate(|c| {
        let inst = c
            .state
            .instances
            .iter_mut()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| admin_err(StatusCode::NOT_FOUND, format!("no instance {id}")))?;
        f(inst)?;
        Ok(Json(inst.clone()))
    })
}

async fn set_instance_tags(
    State(sim): State<Arc<Sim>>,
    AxPath(id): AxPath<String>,
    Json(req): Json<SetTags>,
) -> AdminResult<Instance> {
    check_tags(&req.tags)?;
    with_instance(&sim, &id, |i| {
        i.tags = req.tags;
        Ok(())
    })
}

async fn stop_instance(
    State(sim): State<Arc<Sim>>,
    AxPath(id): AxPath<String>,
) -> AdminResult<Instance> {
    with_instance(&sim, &id, |i| {
        i.status = InstanceStatus::Stopped;
        Ok(())
    })
}

async fn start_instance(
    State(sim): State<Arc<Sim>>,
    AxPath(id): AxPath<String>,
) -> AdminResult<Instance> {
    with_instance(&sim, &id, |i| {
        i.status = InstanceStatus::Running;
        Ok(())
    })
}

/// Release: the instance leaves the state (and with it its metadata identity and data-plane port);
/// route entries that name it stay, pointing at nothing, as on Alibaba.
async fn release_instance(
    State(sim): State<Arc<Sim>>,
    AxPath(id): AxPath<String>,
) -> AdminResult<Instance> {
    sim.mutate(|c| {
        let at = c
            .state
            .instances
            .iter()
            .position(|i| i.instance_id == id)
            .ok_or_else(|| admin_err(StatusCode::NOT_FOUND, format!("no instance {id}")))?;
        Ok(Json(c.state.instances.remove(at)))
    })
}

async fn create_vswitch(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<CreateVSwitch>,
) -> AdminResult<VSwitch> {
    sim.mutate(|c| {
        let s = &mut c.state;
        let cidr = req
            .cidr_block
            .ok_or_else(|| bad("cidr_block is required"))?;
        if !s.vpc.cidr_block.contains(&cidr) {
            return Err(bad(format!(
                "{cidr} is not inside the VPC's {}",
                s.vpc.cidr_block
            )));
        }
        if let Some(o) = s
            .vswitches
            .iter()
            .find(|v| v.cidr_block.contains(&cidr) || cidr.contains(&v.cidr_block))
        {
            return Err(admin_err(
                StatusCode::CONFLICT,
                format!(
                    "{cidr} overlaps vSwitch {} ({})",
                    o.vswitch_id, o.cidr_block
                ),
            ));
        }
        let v = VSwitch {
            vswitch_id: s.new_id("vsw-"),
            vswitch_name: req.vswitch_name.clone(),
            cidr_block: cidr,
            zone_id: req.zone_id.clone().unwrap_or_else(|| s.zone_id.clone()),
            created_at_ms: now_ms(),
        };
        s.vswitches.push(v.clone());
        let tables: Vec<String> = s
            .route_tables
            .iter()
            .map(|t| t.route_table_id.clone())
            .collect();
        for t in tables {
            s.add_system_entries(&t, cidr);
        }
        Ok(Json(v))
    })
}

async fn create_route_table(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<CreateRouteTable>,
) -> AdminResult<RouteTable> {
    sim.mutate(|c| {
        let s = &mut c.state;
        if s.route_tables
            .iter()
            .filter(|t| t.route_table_type == "Custom")
            .count()
            >= 9
        {
            return Err(bad("a VPC has at most 9 custom route tables"));
        }
        for v in &req.vswitch_ids {
            if !s.vswitches.iter().any(|x| &x.vswitch_id == v) {
                return Err(bad(format!("no vSwitch {v}")));
            }
            if let Some(t) = s
                .route_tables
                .iter()
                .find(|t| t.route_table_type == "Custom" && t.vswitch_ids.contains(v))
            {
                return Err(admin_err(
                    StatusCode::CONFLICT,
                    format!(
                        "vSwitch {v} is already associated with {}",
                        t.route_table_id
                    ),
                ));
            }
        }
        let t = RouteTable {
            route_table_id: s.new_id("vtb-"),
            route_table_name: req.route_table_name.clone(),
            route_table_type: "Custom".into(),
            vswitch_ids: req.vswitch_ids.clone(),
            created_at_ms: now_ms(),
        };
        s.route_tables.push(t.clone());
        let cidrs: Vec<Ipv4Net> = s.vswitches.iter().map(|v| v.cidr_block).collect();
        for cidr in cidrs {
            s.add_system_entries(&t.route_table_id, cidr);
        }
        Ok(Json(t))
    })
}

fn binding_err(e: BindingError) -> AdminErr {
    let status = match e {
        BindingError::NoTable(_) | BindingError::NoVSwitch(_) | BindingError::NotBound { .. } => {
            StatusCode::NOT_FOUND
        }
        BindingError::SystemTable(_) => StatusCode::BAD_REQUEST,
        BindingError::BoundElsewhere { .. } => StatusCode::CONFLICT,
    };
    admin_err(status, e.to_string())
}

fn table_json(s: &crate::model::State, id: &str) -> AdminResult<RouteTable> {
    let t = s.table(id).cloned().expect("the binding checked it");
    Ok(Json(t))
}

/// `PUT /route-tables/{id}/vswitches/{vsw}`: the custom table routes the vSwitch's traffic from now on.
async fn bind_vswitch(
    State(sim): State<Arc<Sim>>,
    AxPath((id, vsw)): AxPath<(String, String)>,
) -> AdminResult<RouteTable> {
    sim.mutate(|c| {
        c.state.bind_vswitch(&id, &vsw).map_err(binding_err)?;
        table_json(&c.state, &id)
    })
}

/// `DELETE /route-tables/{id}/vswitches/{vsw}`: the vSwitch goes back to the system table.
async fn unbind_vswitch(
    State(sim): State<Arc<Sim>>,
    AxPath((id, vsw)): AxPath<(String, String)>,
) -> AdminResult<RouteTable> {
    sim.mutate(|c| {
        c.state.unbind_vswitch(&id, &vsw).map_err(binding_err)?;
        table_json(&c.state, &id)
    })
}

async fn create_access_key(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<CreateAccessKey>,
) -> AdminResult<AccessKey> {
    sim.mutate(|c| {
        let lifetime = c.settings.credential_lifetime_secs as i64;
        let s = &mut c.state;
        let sts = req.security_token.is_some();
        let id = match &req.access_key_id {
            Some(id) if sts && !id.starts_with("STS.") => {
                return Err(bad("an STS credential's AccessKeyId must start with STS."))
            }
            Some(id) if !sts && id.starts_with("STS.") => {
                return Err(bad("AccessKeyIds starting with STS. need a security_token"))
            }
            Some(id) if id.is_empty() => return Err(bad("access_key_id must not be empty")),
            Some(id) => id.clone(),
            None if sts => format!("STS.{}", crate::model::random_secret(24)),
            None => s.new_id("LTAI"),
        };
        if s.access_key(&id).is_some() {
            return Err(admin_err(
                StatusCode::CONFLICT,
                format!("access key {id} exists"),
            ));
        }
        if let Some(i) = &req.instance_id {
            if s.instance(i).is_none() {
                return Err(bad(format!("no instance {i}")));
            }
        }
        let now = now_ms();
        let key = AccessKey {
            access_key_id: id,
            access_key_secret: req
                .access_key_secret
                .clone()
                .unwrap_or_else(|| crate::model::random_secret(30)),
            allowed_actions: req.allowed_actions.clone(),
            security_token: req.security_token.clone(),
            expires_at_ms: sts.then(|| now + req.expires_in_secs.unwrap_or(lifetime) * 1000),
            instance_id: req.instance_id.clone(),
            role: None,
            description: req.description.clone(),
            created_at_ms: now,
        };
        s.access_keys.push(key.clone());
        Ok(Json(key))
    })
}

async fn set_role(State(sim): State<Arc<Sim>>, Json(req): Json<SetRole>) -> AdminResult<Role> {
    if req.role_name.is_empty() {
        return Err(bad("role_name is required"));
    }
    Ok(Json(sim.mutate(|c| {
        let roles = &mut c.state.roles;
        let role = Role {
            role_name: req.role_name.clone(),
            allowed_actions: req.allowed_actions.clone(),
        };
        match roles.iter_mut().find(|r| r.role_name == req.role_name) {
            Some(r) => *r = role.clone(),
            None => roles.push(role.clone()),
        }
        role
    })))
}

#[derive(Debug, Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn calls(State(sim): State<Arc<Sim>>, Query(q): Query<Since>) -> Json<crate::admin::CallLog> {
    Json(sim.call_log(q.since))
}

async fn set_faults(State(sim): State<Arc<Sim>>, Json(f): Json<Faults>) -> AdminResult<Faults> {
    for (a, e) in &f.errors {
        if !(0.0..=1.0).contains(&e.rate) || e.code.is_empty() {
            return Err(bad(format!(
                "errors.{a}: rate must be in [0, 1] and code non-empty"
            )));
        }
    }
    Ok(Json(sim.mutate(|c| {
        c.faults = f;
        c.faults.clone()
    })))
}

async fn set_settings(
    State(sim): State<Arc<Sim>>,
    Json(s): Json<Settings>,
) -> AdminResult<Settings> {
    if s.credential_lifetime_secs == 0 {
        return Err(bad("credential_lifetime_secs must be at least 1"));
    }
    Ok(Json(sim.mutate(|c| {
        c.settings = s;
        c.settings.clone()
    })))
}

async fn put_route(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<PutRoute>,
) -> AdminResult<RouteEntry> {
    sim.mutate(|c| {
        let s = &mut c.state;
        let table = req
            .route_table_id
            .clone()
            .unwrap_or_else(|| s.system_table_id().to_string());
        if s.table(&table).is_none() {
            return Err(admin_err(
                StatusCode::NOT_FOUND,
                format!("no route table {table}"),
            ));
        }
        let dst = req
            .destination_cidr_block
            .ok_or_else(|| bad("destination_cidr_block is required"))?;
        let now = now_ms();
        let e = RouteEntry {
            route_entry_id: s.new_id("rte-"),
            route_table_id: table,
            destination_cidr_block: dst.trunc(),
            entry_type: EntryType::Custom,
            status: req.status,
            next_hop_type: req.next_hop_type.clone(),
            next_hop_id: req.next_hop_id.clone(),
            route_entry_name: req.route_entry_name.clone(),
            description: req.description.clone(),
            status_until_ms: transition_end(req.status, req.status_for_ms, now),
            seq: s.take_seq(),
            created_at_ms: now,
            modified_at_ms: now,
        };
        s.entries.push(e.clone());
        Ok(Json(e))
    })
}

fn transition_end(status: RouteStatus, for_ms: Option<u64>, now: i64) -> Option<i64> {
    if status == RouteStatus::Available {
        None
    } else {
        for_ms.map(|ms| now + ms as i64)
    }
}

async fn set_route_status(
    State(sim): State<Arc<Sim>>,
    AxPath(id): AxPath<String>,
    Json(req): Json<SetRouteStatus>,
) -> AdminResult<RouteEntry> {
    sim.mutate(|c| {
        let e = c
            .state
            .entries
            .iter_mut()
            .find(|e| e.route_entry_id == id)
            .ok_or_else(|| admin_err(StatusCode::NOT_FOUND, format!("no route entry {id}")))?;
        let now = now_ms();
        e.status = req.status;
        e.status_until_ms = transition_end(req.status, req.status_for_ms, now);
        e.modified_at_ms = now;
        Ok(Json(e.clone()))
    })
}

async fn delete_route(State(sim): State<Arc<Sim>>, AxPath(id): AxPath<String>) -> Response {
    let removed = sim.mutate(|c| {
        let before = c.state.entries.len();
        c.state.entries.retain(|e| e.route_entry_id != id);
        before != c.state.entries.len()
    });
    if removed {
        Json(serde_json::json!({})).into_response()
    } else {
        admin_err(StatusCode::NOT_FOUND, format!("no route entry {id}")).into_response()
    }
}
