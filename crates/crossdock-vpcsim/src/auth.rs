//! Authentication of API requests the way Alibaba's gateway does it.
//!
//! ACS3-HMAC-SHA256: the canonical request is rebuilt from the request's own `SignedHeaders` list (SDKs
//! differ in what they sign), the body is checked against `x-acs-content-sha256`, then the date window and
//! the nonce are checked, so a captured request can be neither altered nor replayed. Signature v1
//! (HMAC-SHA1 over the sorted query, `Signature` parameter) is accepted too, with the same date and nonce
//! rules. STS credentials (ids starting `STS.`) must come with their security token and be unexpired.

use crate::error::ApiError;
use crate::model::{iso, AccessKey, State};
use crossdock_acs3::constant_time_eq;

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub access_key_id: String,
    pub instance_id: Option<String>,
    pub allowed_actions: Option<Vec<String>>,
}

/// The parts of an HTTP request the verifier needs.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded query (and form body) parameters.
    pub params: &'a [(String, String)],
    /// Query parameters only (what ACS3 signs).
    pub query_params: &'a [(String, String)],
    /// Header names lower-case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        crossdock_acs3::header_value(self.headers, name)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        crossdock_acs3::param_value(self.params, name)
    }
}

/// Checks the replay window: the nonce must not have been seen. Implemented by the emulator core.
pub trait NonceStore {
    fn use_nonce(&self, nonce: &str, now_ms: i64, window_ms: i64) -> bool;
}

impl NonceStore for crate::sim::Sim {
    fn use_nonce(&self, nonce: &str, now_ms: i64, window_ms: i64) -> bool {
        crate::sim::Sim::use_nonce(self, nonce, now_ms, window_ms)
    }
}

fn incomplete(what: impl std::fmt::Display) -> ApiError {
    ApiError::bad(
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards: {what}"),
    )
}

fn mismatch(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad(
        "SignatureDoesNotMatch",
        format!("Specified signature is not matched with our calculation. {detail}"),
    )
}

fn lookup<'s>(state: &'s State, id: &str) -> Result<&'s AccessKey, ApiError> {
    state.access_key(id).ok_or_else(|| {
        ApiError::not_found(
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn check_time(value: Option<&str>, what: &str, now: i64, skew_ms: i64) -> Result<(), ApiError> {
    let value = value.ok_or_else(|| incomplete(format!("{what} is missing")))?;
    let t = parse_time(value).ok_or_else(|| {
        ApiError::bad(
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value is not well formatted: {what} `{value}` (want YYYY-MM-DDTHH:MM:SSZ, UTC)."),
        )
    })?;
    if (now - t).abs() > skew_ms {
        return Err(ApiError::bad(
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired: {what} {value}, server time {} (allowed skew {} s).",
                iso(now),
                skew_ms / 1000
            ),
        ));
    }
    Ok(())
}

fn check_nonce(
    nonces: &dyn NonceStore,
    nonce: Option<&str>,
    now: i64,
    skew_ms: i64,
) -> Result<(), ApiError> {
    let nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or_else(|| incomplete("the signature nonce is missing"))?;
    if !nonces.use_nonce(nonce, now, 2 * skew_ms.max(30_000)) {
        return Err(ApiError::bad(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(())
}

fn check_sts(key: &AccessKey, token: Option<&str>, now: i64) -> Result<(), ApiError> {
    if !key.is_sts() {
        return Ok(());
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::bad(
            "MissingSecurityToken",
            "The security token is missing: STS credentials (AccessKeyId STS.*) must send x-acs-security-token or SecurityToken.",
        ));
    };
    let expected = key.security_token.as_deref().unwrap_or_default();
    if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::bad(
            "InvalidSecurityToken.MismatchWithAccessKey",
            "The security token does not belong to this AccessKeyId.",
        ));
    }
    if let Some(exp) = key.expires_at_ms {
        if exp <= now {
            return Err(ApiError::bad(
                "InvalidSecurityToken.Expired",
                format!(
                    "Specified SecurityToken is expired (expired at {}).",
                    iso(exp)
                ),
            ));
        }
    }
    Ok(())
}

fn caller_of(key: &AccessKey, state: &State) -> Caller {
    let allowed = match (&key.role, &key.allowed_actions) {
        (_, Some(list)) => Some(list.clone()),
        (Some(role), None) => state
            .roles
            .iter()
            .find(|r| &r.role_name == role)
            .and_then(|r| r.allowed_actions.clone()),
        (None, None) => None,
    };
    Caller {
        access_key_id: key.access_key_id.clone(),
        instance_id: key.instance_id.clone(),
        allowed_actions: allowed,
    }
}

/// Verifies a request; `skew_ms` is the allowed clock difference.
pub fn verify(
    req: &SignedRequest<'_>,
    state: &State,
    nonces: &dyn NonceStore,
    now: i64,
    skew_ms: i64,
) -> Result<Caller, ApiError> {
    if let Some(auth) = req.header("authorization") {
        verify_acs3(req, auth, state, nonces, now, skew_ms)
    } else if req.param("Signature").is_some() {
        verify_v1(req, state, nonces, now, skew_ms)
    } else {
        Err(incomplete(
            "no Authorization header (ACS3-HMAC-SHA256) and no Signature parameter (v1)",
        ))
    }
}

fn verify_acs3(
    req: &SignedRequest<'_>,
    auth: &str,
    state: &State,
    nonces: &dyn NonceStore,
    now: i64,
    skew_ms: i64,
) -> Result<Caller, ApiError> {
    let auth = crossdock_acs3::parse_authorization(auth).map_err(incomplete)?;
    for required in ["x-acs-date", "x-acs-signature-nonce"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(incomplete(format!(
                "{required} is not among the signed headers"
            )));
        }
    }
    let payload_hash = req
        .header("x-acs-content-sha256")
        .ok_or_else(|| incomplete("the x-acs-content-sha256 header is missing"))?;
    let key = lookup(state, &auth.access_key_id)?;
    if let Some(id) = req.header("x-acs-accesskey-id") {
        if id != auth.access_key_id {
            return Err(mismatch(
                "The x-acs-accesskey-id header differs from the Credential of the Authorization header.",
            ));
        }
    }
    let received = crossdock_acs3::Received {
        method: req.method,
        path: req.path,
        query: req.query_params,
        headers: req.headers,
    };
    crossdock_acs3::verify_signature(&received, &auth, payload_hash, &key.access_key_secret)
        .map_err(|m| {
            mismatch(format!(
                "server string to sign is: {:?}; canonical request: {:?}",
                m.string_to_sign, m.canonical_request
            ))
        })?;
    if !constant_time_eq(
        crossdock_acs3::hex_sha256(req.body).as_bytes(),
        payload_hash.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(mismatch(
            "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
        ));
    }
    check_time(req.header("x-acs-date"), "x-acs-date", now, skew_ms)?;
    check_nonce(nonces, req.header("x-acs-signature-nonce"), now, skew_ms)?;
    let token = req
        .header("x-acs-security-token")
        .or_else(|| req.param("SecurityToken"));
    check_sts(key, token, now)?;
    Ok(caller_of(key, state))
}

fn verify_v1(
    req: &SignedRequest<'_>,
    state: &State,
    nonces: &dyn NonceStore,
    now: i64,
    skew_ms: i64,
) -> Result<Caller, ApiError> {
    let id = req
        .param("AccessKeyId")
        .ok_or_else(|| incomplete("the AccessKeyId parameter is missing"))?;
    match req.param("SignatureMethod") {
        Some("HMAC-SHA1") => {}
        other => {
            return Err(incomplete(format!(
                "SignatureMethod must be HMAC-SHA1, got {other:?}"
            )))
        }
    }
    let key = lookup(state, id)?;
    let given = req.param("Signature").unwrap_or_default();
    let unsigned: Vec<(String, String)> = req
        .params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .cloned()
        .collect();
    let expected = crossdock_acs3::v1_signature(req.method, &unsigned, &key.access_key_secret);
    if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(mismatch(format!(
            "server string to sign is: {}&%2F&{}",
            req.method.to_ascii_uppercase(),
            crossdock_acs3::percent_encode(&crossdock_acs3::canonical_query(&unsigned))
        )));
    }
    check_time(req.param("Timestamp"), "Timestamp", now, skew_ms)?;
    check_nonce(nonces, req.param("SignatureNonce"), now, skew_ms)?;
    check_sts(key, req.param("SecurityToken"), now)?;
    Ok(caller_of(key, state))
}

/// Whether a RAM action list allows `product:action`. Entries: `*`, `vpc:*`, `vpc:Describe*`,
/// `vpc:CreateRouteEntry`, or a bare `CreateRouteEntry` / `Describe*` (any product).
pub fn allows(list: &[String], product: &str, action: &str) -> bool {
    list.iter().any(|entry| {
        let (p, a) = match entry.split_once(':') {
            Some((p, a)) => (Some(p), a),
            None => (None, entry.as_str()),
        };
        if p.is_some_and(|p| !p.eq_ignore_ascii_case(product)) {
            return false;
        }
        match a.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => a == action,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bootstrap;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Nonces(Mutex<HashSet<String>>);
    impl NonceStore for Nonces {
        fn use_nonce(&self, nonce: &str, _now: i64, _w: i64) -> bool {
            self.0.lock().unwrap().insert(nonce.to_string())
        }
    }

    const VECTORS: &str = include_str!("../testdata/acs3-signature-vectors.json");

    struct Vector {
        method: String,
        path: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        date: i64,
    }

    fn vectors() -> Vec<(Vector, serde_json::Value)> {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let (path, query) = v["path_and_query"]
                    .as_str()
                    .unwrap()
                    .split_once('?')
                    .unwrap();
                let mut headers: Vec<(String, String)> = v["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                headers.push((
                    "authorization".into(),
                    v["authorization"].as_str().unwrap().into(),
                ));
                let date = parse_time(v["headers"]["x-acs-date"].as_str().unwrap()).unwrap();
                (
                    Vector {
                        method: v["method"].as_str().unwrap().into(),
                        path: path.into(),
                        query: crossdock_acs3::parse_query(query),
                        headers,
                        date,
                    },
                    v.clone(),
                )
            })
            .collect()
    }

    fn state_with_vector_keys() -> State {
        let mut s = State::bootstrap(&Bootstrap::default());
        for (id, token) in [("AKID", None), ("STS.AK", Some("TOKEN"))] {
            s.access_keys.push(AccessKey {
                access_key_id: id.into(),
                access_key_secret: "SECRET".into(),
                allowed_actions: None,
                security_token: token.map(String::from),
                expires_at_ms: token.map(|_| i64::MAX),
                instance_id: None,
                role: None,
                description: String::new(),
                created_at_ms: 0,
            });
        }
        s
    }

    fn check(v: &Vector, state: &State, nonces: &dyn NonceStore) -> Result<Caller, ApiError> {
        let req = SignedRequest {
            method: &v.method,
            path: &v.path,
            params: &v.query,
            query_params: &v.query,
            headers: &v.headers,
            body: b"",
        };
        verify(&req, state, nonces, v.date, 900_000)
    }

    #[test]
    fn both_captured_vectors_verify() {
        let state = state_with_vector_keys();
        for (v, raw) in vectors() {
            let caller = check(&v, &state, &Nonces::default()).unwrap();
            assert_eq!(
                caller.access_key_id,
                raw["authorization"]
                    .as_str()
                    .unwrap()
                    .split(['=', ','])
                    .nth(1)
                    .unwrap()
            );
        }
    }

    #[test]
    fn a_tampered_byte_fails_with_signature_does_not_match() {
        let state = state_with_vector_keys();
        for (v, _) in vectors() {
            // query
            let mut q = Vector {
                query: v.query.clone(),
                headers: v.headers.clone(),
                method: v.method.clone(),
                path: v.path.clone(),
                date: v.date,
            };
            q.query[0].1.push('x');
            assert_eq!(
                check(&q, &state, &Nonces::default()).unwrap_err().code,
                "SignatureDoesNotMatch"
            );
            // a signed header
            let mut h = Vector {
                query: v.query.clone(),
                headers: v.headers.clone(),
                method: v.method.clone(),
                path: v.path.clone(),
                date: v.date,
            };
            for (k, val) in h.headers.iter_mut() {
                if k == "user-agent" {
                    val.push('!');
                }
            }
            assert_eq!(
                check(&h, &state, &Nonces::default()).unwrap_err().code,
                "SignatureDoesNotMatch"
            );
            // the signature itself
            let mut s = Vector {
                query: v.query.clone(),
                headers: v.headers.clone(),
                method: v.method.clone(),
                path: v.path.clone(),
                date: v.date,
            };
            for (k, val) in s.headers.iter_mut() {
                if k == "authorization" {
                    let last = val.pop().unwrap();
                    val.push(if last == '0' { '1' } else { '0' });
                }
            }
            let e = check(&s, &state, &Nonces::default()).unwrap_err();
            assert_eq!((e.code.as_str(), e.status), ("SignatureDoesNotMatch", 400));
            // the method
            let mut m = Vector {
                query: v.query.clone(),
                headers: v.headers.clone(),
                method: "GET".into(),
                path: v.path.clone(),
                date: v.date,
            };
            m.method = "GET".into();
            assert_eq!(
                check(&m, &state, &Nonces::default()).unwrap_err().code,
                "SignatureDoesNotMatch"
            );
        }
    }

    #[test]
    fn replay_date_key_and_token_are_checked() {
        let state = state_with_vector_keys();
        let (v, _) = vectors().remove(0);
        let nonces = Nonces::default();
        check(&v, &state, &nonces).unwrap();
        assert_eq!(
            check(&v, &state, &nonces).unwrap_err().code,
            "SignatureNonceUsed"
        );
        // 16 minutes later
        let late = Vector {
            date: v.date + 16 * 60_000,
            query: v.query.clone(),
            headers: v.headers.clone(),
            method: v.method.clone(),
            path: v.path.clone(),
        };
        assert_eq!(
            check(&late, &state, &Nonces::default()).unwrap_err().code,
            "InvalidTimeStamp.Expired"
        );
        // unknown key
        let mut other = State::bootstrap(&Bootstrap::default());
        other.access_keys.clear();
        let e = check(&v, &other, &Nonces::default()).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InvalidAccessKeyId.NotFound", 404)
        );
        // expired STS
        let (sts, _) = vectors().remove(1);
        let mut expired = state_with_vector_keys();
        for k in expired.access_keys.iter_mut().filter(|k| k.is_sts()) {
            k.expires_at_ms = Some(sts.date - 1);
        }
        let e = check(&sts, &expired, &Nonces::default()).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InvalidSecurityToken.Expired", 400)
        );
        // wrong token
        let mut wrong = state_with_vector_keys();
        for k in wrong.access_keys.iter_mut().filter(|k| k.is_sts()) {
            k.security_token = Some("OTHER".into());
        }
        assert_eq!(
            check(&sts, &wrong, &Nonces::default()).unwrap_err().code,
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
    }

    #[test]
    fn body_must_match_the_content_hash() {
        let state = state_with_vector_keys();
        let (v, _) = vectors().remove(0);
        let req = SignedRequest {
            method: &v.method,
            path: &v.path,
            params: &v.query,
            query_params: &v.query,
            headers: &v.headers,
            body: b"x",
        };
        let e = verify(&req, &state, &Nonces::default(), v.date, 900_000).unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e.message.contains("x-acs-content-sha256"));
    }

    #[test]
    fn v1_signatures_verify() {
        let state = state_with_vector_keys();
        let now = crate::model::now_ms();
        let mut params: Vec<(String, String)> = [
            ("AccessKeyId", "AKID"),
            ("Action", "DescribeVpcAttribute"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n-1"),
            ("SignatureVersion", "1.0"),
            ("Version", "2016-04-28"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.push(("Timestamp".into(), iso(now)));
        let sig = crossdock_acs3::v1_signature("POST", &params, "SECRET");
        params.push(("Signature".into(), sig));
        let req = |p: &[(String, String)]| -> Result<Caller, ApiError> {
            let r = SignedRequest {
                method: "POST",
                path: "/",
                params: p,
                query_params: p,
                headers: &[],
                body: b"",
            };
            verify(&r, &state, &Nonces::default(), now, 900_000)
        };
        assert_eq!(req(&params).unwrap().access_key_id, "AKID");
        let mut tampered = params.clone();
        tampered[1].1 = "DescribeVpcs".into();
        assert_eq!(req(&tampered).unwrap_err().code, "SignatureDoesNotMatch");
    }

    #[test]
    fn ram_patterns() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(allows(&l(&["*"]), "vpc", "CreateRouteEntry"));
        assert!(allows(
            &l(&["vpc:Describe*"]),
            "vpc",
            "DescribeRouteEntryList"
        ));
        assert!(!allows(&l(&["vpc:Describe*"]), "vpc", "CreateRouteEntry"));
        assert!(!allows(&l(&["vpc:Describe*"]), "ecs", "DescribeInstances"));
        assert!(allows(
            &l(&["ecs:DescribeInstances"]),
            "ecs",
            "DescribeInstances"
        ));
        assert!(allows(&l(&["CreateRouteEntry"]), "vpc", "CreateRouteEntry"));
        assert!(!allows(&l(&[]), "vpc", "CreateRouteEntry"));
    }
}
