//! The ECS instance metadata service (`http://100.100.100.200` inside the lab).
//!
//! The caller is identified by its source address, as on a real ECS host: the vRouter sees each host's
//! own private IP, so one listener serves every instance. It hands out the instance's identity, the name
//! of its RAM role and that role's STS credentials (short-lived and rotating, so clients must refresh),
//! and supports the token flow (`PUT /latest/api/token`) with an optional hardened mode that refuses
//! requests without a token.

use crate::model::{iso, Instance};
use crate::sim::Sim;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
pub const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [("content-type", "text/plain")], body.into()).into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found")
}

/// The axum handler for every metadata path.
pub async fn handle(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ip = match peer.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    serve(&sim, ip, &method, uri.path(), &headers)
}

/// The metadata answer for a request from `ip` (separate from the handler for tests).
pub fn serve(
    sim: &Sim,
    ip: Ipv4Addr,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    let (down, hardened) = sim.read(|c| (c.faults.metadata_down, c.settings.metadata_hardened));
    if down {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        let ttl = header(TOKEN_TTL_HEADER).and_then(|v| v.trim().parse::<u64>().ok());
        return match ttl {
            Some(ttl) if (1..=21600).contains(&ttl) => {
                if sim.read(|c| c.state.instance_by_ip(ip).is_none()) {
                    return not_found();
                }
                text(StatusCode::OK, sim.issue_metadata_token(ip, ttl))
            }
            _ => text(
                StatusCode::BAD_REQUEST,
                format!("{TOKEN_TTL_HEADER} must be an integer from 1 to 21600"),
            ),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match header(TOKEN_HEADER) {
        Some(token) if !sim.check_metadata_token(ip, token) => {
            return text(
                StatusCode::UNAUTHORIZED,
                "the metadata token is invalid or expired",
            );
        }
        None if hardened => {
            return text(
                StatusCode::UNAUTHORIZED,
                "a metadata token is required: PUT /latest/api/token first",
            );
        }
        _ => {}
    }
    let Some((inst, vpc_cidr, vsw_cidr, vpc_id, region)) = sim.read(|c| {
        let s = &c.state;
        let i = s.instance_by_ip(ip)?.clone();
        let vsw = s
            .vswitches
            .iter()
            .find(|v| v.vswitch_id == i.vswitch_id)
            .map(|v| v.cidr_block.to_string())
            .unwrap_or_default();
        Some((
            i,
            s.vpc.cidr_block.to_string(),
            vsw,
            s.vpc.vpc_id.clone(),
            s.region_id.clone(),
        ))
    }) else {
        return not_found();
    };
    let rest = path.trim_start_matches('/');
    let item = match rest.strip_prefix("latest/meta-data") {
        Some(r) => r.trim_start_matches('/'),
        None => return not_found(),
    };
    let plain = |s: String| text(StatusCode::OK, s);
    match item {
        "" => plain(
            [
                "hostname",
                "instance-id",
                "mac",
                "network/",
                "private-ipv4",
                "ram/",
                "region-id",
                "vpc-cidr-block",
                "vpc-id",
                "vswitch-cidr-block",
                "vswitch-id",
                "zone-id",
            ]
            .join("\n"),
        ),
        "instance-id" => plain(inst.instance_id.clone()),
        "region-id" => plain(region),
        "zone-id" => plain(inst.zone_id.clone()),
        "vpc-id" => plain(vpc_id),
        "vswitch-id" => plain(inst.vswitch_id.clone()),
        "private-ipv4" => plain(inst.private_ip.to_string()),
        "vpc-cidr-block" => plain(vpc_cidr),
        "vswitch-cidr-block" => plain(vsw_cidr),
        "mac" => plain(inst.mac.clone()),
        "hostname" => plain(inst.hostname.clone()),
        "network/" | "network" => plain("interfaces/".into()),
        "network/interfaces/" | "network/interfaces" => plain("macs/".into()),
        "network/interfaces/macs/" | "network/interfaces/macs" => plain(format!("{}/", inst.mac)),
        "ram/" | "ram" => plain("security-credentials/".into()),
        _ => {
            if let Some(r) = item.strip_prefix("network/interfaces/macs/") {
                return mac_item(&inst, r, &vpc_id, &vpc_cidr, &vsw_cidr);
            }
            if let Some(r) = item.strip_prefix("ram/security-credentials") {
                return credentials(sim, &inst, r.trim_start_matches('/'));
            }
            not_found()
        }
    }
}

fn mac_item(inst: &Instance, rest: &str, vpc_id: &str, vpc_cidr: &str, vsw_cidr: &str) -> Response {
    let Some(r) = rest.strip_prefix(&inst.mac) else {
        return not_found();
    };
    let plain = |s: String| text(StatusCode::OK, s);
    match r.trim_start_matches('/') {
        "" => plain(
            [
                "network-interface-id",
                "primary-ip-address",
                "vpc-id",
                "vswitch-id",
                "vpc-cidr-block",
                "vswitch-cidr-block",
            ]
            .join("\n"),
        ),
        "network-interface-id" => plain(inst.eni_id.clone()),
        "primary-ip-address" => plain(inst.private_ip.to_string()),
        "vpc-id" => plain(vpc_id.to_string()),
        "vswitch-id" => plain(inst.vswitch_id.clone()),
        "vpc-cidr-block" => plain(vpc_cidr.to_string()),
        "vswitch-cidr-block" => plain(vsw_cidr.to_string()),
        _ => not_found(),
    }
}

fn credentials(sim: &Sim, inst: &Instance, role: &str) -> Response {
    let Some(attached) = inst.ram_role.clone().filter(|r| !r.is_empty()) else {
        return not_found();
    };
    if role.is_empty() {
        return text(StatusCode::OK, attached);
    }
    if role != attached {
        return not_found();
    }
    let key = sim.role_credentials(&inst.instance_id, &attached);
    let body = serde_json::json!({
        "AccessKeyId": key.access_key_id,
        "AccessKeySecret": key.access_key_secret,
        "SecurityToken": key.security_token,
        "Expiration": iso(key.expires_at_ms.unwrap_or_default()),
        "LastUpdated": iso(key.created_at_ms),
        "Code": "Success",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
