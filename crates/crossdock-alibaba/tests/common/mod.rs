//! A loopback HTTP server for the client tests: records every request and answers with a scripted reply.
//! It binds 127.0.0.1 on an ephemeral port and stops when dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Response, StatusCode};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        crossdock_acs3::header_value(&self.headers, name)
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        crossdock_acs3::param_value(&self.query, name)
    }
    pub fn action(&self) -> &str {
        self.header("x-acs-action").unwrap_or("")
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Never answer (to provoke client timeouts).
    pub hang: bool,
}

impl Reply {
    pub fn json(v: serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string(),
            hang: false,
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.to_string(),
            hang: false,
        }
    }
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::json!({"RequestId": "req-test", "HostId": "h", "Code": code, "Message": message})
                .to_string(),
            hang: false,
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn hang() -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: String::new(),
            hang: true,
        }
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let reqs = requests.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let handler = handler.clone();
            let reqs = reqs.clone();
            async move {
                let raw_query = req.uri().query().unwrap_or("").to_string();
                let rec = Recorded {
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    query: crossdock_acs3::parse_query(&raw_query),
                    raw_query,
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect(),
                };
                reqs.lock().unwrap().push(rec.clone());
                let reply = handler(&rec);
                if reply.hang {
                    std::future::pending::<()>().await;
                }
                let mut b = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
                for (k, v) in &reply.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                b.body(Body::from(reply.body)).unwrap()
            }
        });
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            requests,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&Recorded) -> bool) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| pred(r))
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Verifies an ACS3 request with the same check the emulator's gateway uses
/// ([`crossdock_acs3::verify_signature`]); returns the signing AccessKeyId.
pub fn verify_signature(r: &Recorded, secret: &str) -> Result<String, String> {
    let auth = r.header("authorization").ok_or("no Authorization header")?;
    let parsed = crossdock_acs3::parse_authorization(auth).map_err(|e| e.to_string())?;
    let received = crossdock_acs3::Received {
        method: &r.method,
        path: &r.path,
        query: &r.query,
        headers: &r.headers,
    };
    let payload_hash = r
        .header("x-acs-content-sha256")
        .unwrap_or(crossdock_acs3::EMPTY_SHA256);
    crossdock_acs3::verify_signature(&received, &parsed, payload_hash, secret)
        .map(|()| parsed.access_key_id.clone())
        .map_err(|_| format!("signature mismatch for {}", r.action()))
}

/// A sleeper that records the requested delays and returns at once.
pub fn recording_sleeper() -> (crossdock_alibaba::Sleeper, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let sleeper: crossdock_alibaba::Sleeper = Arc::new(move |d| {
        l.lock().unwrap().push(d);
        Box::pin(async {})
    });
    (sleeper, log)
}
