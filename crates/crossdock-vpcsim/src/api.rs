//! The RPC endpoint: `POST /` (or `GET /`) with the parameters in the query, as Alibaba's SDKs send it.
//!
//! The order of the checks follows the real gateway's: service availability, the action's presence,
//! authentication, the action's existence and version, the RAM policy, rate limits, then the injected
//! faults and finally the action itself. Every request ends in the call log, whatever its outcome, so
//! tests can assert on what a client did (for example that a steady-state agent made no write calls).

use crate::actions::{self, ActionSpec, Params};
use crate::admin::CallRecord;
use crate::auth::{self, Caller, SignedRequest};
use crate::error::ApiError;
use crate::model::{now_ms, IdempotencyRecord};
use crate::sim::Sim;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parameters that are about signing, not about the action (left out of the call log and of the
/// idempotency comparison).
const SIGNING_PARAMS: &[&str] = &[
    "Signature",
    "SignatureNonce",
    "Timestamp",
    "SecurityToken",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "Format",
];

/// A request id as Alibaba formats it (upper-case UUID).
pub fn new_request_id() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One decoded API request.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query_params: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub transport: String,
}

impl ApiRequest {
    pub fn from_http(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        transport: String,
    ) -> Self {
        let query_params = crossdock_acs3::parse_query(uri.query().unwrap_or(""));
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut params = query_params.clone();
        let form = headers.iter().any(|(k, v)| {
            k == "content-type" && v.starts_with("application/x-www-form-urlencoded")
        });
        if form && !body.is_empty() {
            params.extend(crossdock_acs3::parse_query(&String::from_utf8_lossy(&body)));
        }
        ApiRequest {
            method: method.as_str().to_string(),
            path: uri.path().to_string(),
            query_params,
            params,
            headers,
            body: body.to_vec(),
            transport,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Handles one request end to end and returns the HTTP response.
pub async fn handle(sim: Arc<Sim>, req: ApiRequest) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let action = req
        .header("x-acs-action")
        .or_else(|| req.param("Action"))
        .unwrap_or_default()
        .to_string();
    let spec = actions::find(&action);
    let mut caller = None;
    let result = process(&sim, &req, &action, spec, &mut caller).await;
    let (status, code, body, headers) = match result {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("RequestId".into(), Value::String(request_id.clone()));
            }
            (200, "Success".to_string(), v, vec![])
        }
        Err(e) => {
            let product = if spec.is_some_and(|s| s.product == "ecs") {
                "Ecs"
            } else {
                "Vpc"
            };
            let host = req.header("host").map(String::from).unwrap_or_else(|| {
                sim.read(|c| {
                    format!(
                        "{}.{}.aliyuncs.com",
                        product.to_ascii_lowercase(),
                        c.state.region_id
                    )
                })
            });
            (
                e.status,
                e.code.clone(),
                e.body(&request_id, &host, product),
                e.headers,
            )
        }
    };
    let params: BTreeMap<String, String> = req
        .params
        .iter()
        .filter(|(k, _)| !SIGNING_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    sim.record_call(CallRecord {
        seq: 0,
        time: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        time_ms: now,
        action: action.clone(),
        write: spec.is_some_and(|s| s.write),
        access_key_id: caller.as_ref().map(|c: &Caller| c.access_key_id.clone()),
        instance_id: caller.as_ref().and_then(|c| c.instance_id.clone()),
        code: code.clone(),
        http_status: status,
        request_id,
        transport: req.transport.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        params,
    });
    let key = caller
        .as_ref()
        .map(|c| c.access_key_id.as_str())
        .unwrap_or("-");
    if status == 200 && !spec.is_some_and(|s| s.write) {
        tracing::debug!(action, code, status, key, "api call");
    } else {
        tracing::info!(action, code, status, key, "api call");
    }
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn process(
    sim: &Arc<Sim>,
    req: &ApiRequest,
    action: &str,
    spec: Option<&'static ActionSpec>,
    caller_out: &mut Option<Caller>,
) -> Result<Value, ApiError> {
    let (api_down, skew_ms) = sim.read(|c| {
        (
            c.faults.api_down,
            c.settings.max_clock_skew_secs as i64 * 1000,
        )
    });
    if api_down {
        return Err(ApiError::service_unavailable());
    }
    if action.is_empty() {
        return Err(ApiError::missing("Action"));
    }
    let signed = SignedRequest {
        method: &req.method,
        path: &req.path,
        params: &req.params,
        query_params: &req.query_params,
        headers: &req.headers,
        body: &req.body,
    };
    let caller = {
        let now = now_ms();
        let sim2 = sim.clone();
        sim.read(|c| auth::verify(&signed, &c.state, &*sim2, now, skew_ms))?
    };
    *caller_out = Some(caller.clone());
    let spec = spec.ok_or_else(|| {
        ApiError::not_found(
            "InvalidAction.NotFound",
            format!("Specified api `{action}` is not found, please check your url and method."),
        )
    })?;
    let version = req.header("x-acs-version").or_else(|| req.param("Version"));
    match version {
        None => return Err(ApiError::missing("Version")),
        Some(v) if v != spec.version => {
            return Err(ApiError::bad(
                "InvalidVersion",
                format!(
                    "Specified parameter Version `{v}` is not valid for {action} (want {}).",
                    spec.version
                ),
            ))
        }
        Some(_) => {}
    }
    if let Some(list) = &caller.allowed_actions {
        if !auth::allows(list, spec.product, spec.name) {
            return Err(ApiError::new(
                403,
                "Forbidden.RAM",
                format!(
                    "User not authorized to operate on the specified resource, or this API doesn't support RAM: the policy of {} does not allow {}:{}.",
                    caller.access_key_id, spec.product, spec.name
                ),
            ));
        }
    }
    if let Err(hint) = sim.throttle(spec.name) {
        let mut e = ApiError::bad(
            "Throttling.User",
            "Request was denied due to user flow control.",
        );
        let now = now_ms();
        e.headers.push((
            format!("x-ratelimit-{}", hint.scope),
            format!(
                "Limit:{},Remain:0,TimeLeft:{},Reset:{}",
                hint.limit,
                hint.time_left_ms,
                now + hint.time_left_ms as i64
            ),
        ));
        return Err(e);
    }
    let params = Params(req.params.clone());
    let (latency, error) = sim.read(|c| {
        let f = &c.faults;
        let latency = f
            .latency_ms
            .get(spec.name)
            .or_else(|| f.latency_ms.get("*"))
            .copied()
            .unwrap_or(0);
        let error = f
            .errors
            .get(spec.name)
            .or_else(|| f.errors.get("*"))
            .cloned();
        (latency, error)
    });
    let injected = error.filter(|e| sim.chance(e.rate));
    if let Some(e) = injected.as_ref().filter(|e| !e.after_commit) {
        tokio::time::sleep(Duration::from_millis(latency)).await;
        return Err(ApiError::injected(&e.code));
    }
    let result = if spec.write {
        run_write(sim, spec, &caller, &params, latency).await
    } else {
        tokio::time::sleep(Duration::from_millis(latency)).await;
        sim.read(|c| {
            // reads take a copy of the core's view so they cannot change it
            let mut view = crate::sim::Core {
                state: c.state.clone(),
                faults: c.faults.clone(),
                settings: c.settings.clone(),
                route_write_in_flight: c.route_write_in_flight,
            };
            crate::sim::advance_core(&mut view, now_ms());
            (spec.run)(&mut view, &params)
        })
    };
    match injected {
        Some(e) if result.is_ok() => Err(ApiError::injected(&e.code)),
        _ => result,
    }
}

/// Clears the in-flight mark when a route write ends, however it ends.
struct InFlight<'a>(&'a Sim);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.end_route_write();
    }
}

fn params_hash(params: &Params) -> String {
    let mut p: Vec<&(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| !SIGNING_PARAMS.contains(&k.as_str()))
        .collect();
    p.sort();
    crossdock_acs3::hex_sha256(format!("{p:?}").as_bytes())
}

async fn run_write(
    sim: &Arc<Sim>,
    spec: &'static ActionSpec,
    caller: &Caller,
    params: &Params,
    latency: u64,
) -> Result<Value, ApiError> {
    let token = params.get("ClientToken").map(String::from);
    if token
        .as_ref()
        .is_some_and(|t| t.len() > 64 || !t.is_ascii())
    {
        return Err(ApiError::invalid(
            "ClientToken",
            "at most 64 ASCII characters",
        ));
    }
    let key = token
        .as_ref()
        .map(|t| format!("{}|{}|{t}", spec.name, caller.access_key_id));
    let hash = params_hash(params);
    if let Some(key) = &key {
        let previous = sim.read(|c| c.state.idempotency.iter().find(|r| &r.key == key).cloned());
        if let Some(rec) = previous {
            if rec.params_hash != hash {
                return Err(ApiError::bad(
                    "IdempotentParameterMismatch",
                    "The ClientToken was used before with other parameters.",
                ));
            }
            return Ok(rec.response);
        }
    }
    let dry_run = params.bool("DryRun")?.unwrap_or(false);
    let _guard = if spec.route_write {
        if !sim.begin_route_write() {
            return Err(ApiError::task_conflict());
        }
        Some(InFlight(sim))
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(latency)).await;
    sim.mutate(|c| {
        if dry_run {
            let mut copy = crate::sim::Core {
                state: c.state.clone(),
                faults: c.faults.clone(),
                settings: c.settings.clone(),
                route_write_in_flight: false,
            };
            (spec.run)(&mut copy, params)?;
            return Err(ApiError::bad(
                "DryRunOperation",
                "Request validation has been passed with DryRun flag set.",
            ));
        }
        let result = (spec.run)(c, params)?;
        if let Some(key) = key {
            c.state.idempotency.push(IdempotencyRecord {
                key,
                params_hash: hash,
                response: result.clone(),
                at_ms: now_ms(),
            });
            Sim::trim_idempotency(c);
        }
        Ok(result)
    })
}
