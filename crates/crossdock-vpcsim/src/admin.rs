//! The emulator's admin API: JSON over a unix socket, for the lab and every end-to-end test.
//!
//! The cloud API is what the agent sees; the admin API is the hand of the test author: it registers
//! instances (what `RunInstances` would do), hands out access keys with a RAM policy, reads the call log
//! (so a test can assert "no write calls happened"), injects faults and edits routes behind the API's back
//! (someone else's route, a route stuck in `Pending`). It is deliberately not signed: it lives on a unix
//! socket whose file mode is the access control.
//!
//! Endpoints (all JSON):
//! `GET /healthz`, `GET /info`, `GET /state`,
//! `GET|POST /instances`, `PUT /instances/{id}/tags`, `POST /instances/{id}/stop`,
//! `POST /instances/{id}/start`, `DELETE /instances/{id}` (release), `POST /vswitches`, `POST /route-tables`,
//! `PUT|DELETE /route-tables/{id}/vswitches/{vsw}` (bind / unbind), `POST /access-keys`, `POST /roles`,
//! `GET /calls?since=SEQ`, `POST /calls/reset`,
//! `GET|PUT /faults`, `POST /faults/reset`, `GET|PUT /settings`, `POST /credentials/expire`,
//! `POST /routes`, `PUT /routes/{id}/status`, `DELETE /routes/{id}`, `GET /dataplane`.

use crate::model::{AccessKey, Instance, RouteEntry, RouteStatus, RouteTable, State, Tag, VSwitch};
use ipnet::Ipv4Net;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// `GET /info`: what a user of the lab needs to call the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Info {
    pub region_id: String,
    pub zone_id: String,
    pub vpc_id: String,
    pub vpc_cidr: Ipv4Net,
    pub vrouter_id: String,
    pub vswitch_id: String,
    pub vswitch_cidr: Ipv4Net,
    pub system_route_table_id: String,
    pub admin_access_key_id: String,
    pub admin_access_key_secret: String,
    /// Where the API listens (TCP addresses actually bound, then the unix socket if any).
    pub api_endpoints: Vec<String>,
    pub metadata_endpoints: Vec<String>,
    pub state_file: Option<PathBuf>,
    pub pid: u32,
}

/// `POST /instances`: register an ECS instance (what `RunInstances` would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CreateInstance {
    pub hostname: String,
    pub private_ip: Option<Ipv4Addr>,
    /// Bridge port of the instance in the vRouter namespace, e.g. `p-h1` (source/destination check).
    pub port: Option<String>,
    /// Default: the VPC's first vSwitch.
    pub vswitch_id: Option<String>,
    /// Default: true (Alibaba turns it on for new instances).
    pub source_dest_check: Option<bool>,
    /// Default: `crossdock-node`; `Some("")` = no role attached.
    pub ram_role: Option<String>,
    /// Tags (what a launch template or scaling configuration gives its instances); keys unique.
    pub tags: Vec<Tag>,
}

/// `PUT /instances/{id}/tags`: replaces every tag of the instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SetTags {
    pub tags: Vec<Tag>,
}

/// `POST /vswitches`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CreateVSwitch {
    pub cidr_block: Option<Ipv4Net>,
    pub zone_id: Option<String>,
    pub vswitch_name: String,
}

/// `POST /route-tables`: a custom route table associated with the given vSwitches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CreateRouteTable {
    pub route_table_name: String,
    pub vswitch_ids: Vec<String>,
}

/// `POST /access-keys`: an access key (or STS credential when `security_token` is set) with a RAM policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CreateAccessKey {
    /// Default: generated (`LTAI...`, or `STS....` when a token is given).
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    /// `None` = every action. Entries: `CreateRouteEntry`, `vpc:CreateRouteEntry`, `vpc:Describe*`, `*`.
    pub allowed_actions: Option<Vec<String>>,
    /// Makes it an STS credential (its id must then start with `STS.`; generated if absent).
    pub security_token: Option<String>,
    /// STS expiry, seconds from now (negative = already expired). Default: the credential lifetime.
    pub expires_in_secs: Option<i64>,
    /// Attribute calls made with it to this instance in the call log.
    pub instance_id: Option<String>,
    pub description: String,
}

/// `POST /roles`: set a RAM role's policy (the actions its STS credentials may call).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SetRole {
    pub role_name: String,
    pub allowed_actions: Option<Vec<String>>,
}

/// One API call, as the call log records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    pub seq: u64,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub time_ms: i64,
    pub action: String,
    /// Whether the action changes state (route and ENI writes).
    pub write: bool,
    pub access_key_id: Option<String>,
    /// The instance the credential belongs to (STS credentials from the metadata service).
    pub instance_id: Option<String>,
    /// `Success`, or the error code returned.
    pub code: String,
    pub http_status: u16,
    pub request_id: String,
    /// `tcp:<peer>` or `unix`.
    pub transport: String,
    pub duration_ms: u64,
    /// The request's parameters (signature fields removed).
    pub params: BTreeMap<String, String>,
}

/// `GET /calls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CallLog {
    pub calls: Vec<CallRecord>,
    /// Calls recorded since the last reset (also those no longer kept in `calls`).
    pub total: u64,
    /// Write calls since the last reset.
    pub writes: u64,
    /// The next sequence number (pass as `since` to get only newer calls).
    pub next_seq: u64,
}

/// An injected error for an action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ErrorFault {
    /// Probability in [0, 1] per call (drawn from the seeded generator).
    pub rate: f64,
    /// The error code returned (`ServiceUnavailable`, `InternalError`, `TaskConflict`, any other).
    pub code: String,
    /// The error comes after the action took effect (a lost response): tests idempotency.
    pub after_commit: bool,
}

impl Default for ErrorFault {
    fn default() -> Self {
        ErrorFault {
            rate: 1.0,
            code: "ServiceUnavailable".into(),
            after_commit: false,
        }
    }
}

/// Transient failures injected into the API and the metadata service (`GET|PUT /faults`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added latency per action in milliseconds; key `*` = every action.
    pub latency_ms: BTreeMap<String, u64>,
    /// Injected errors per action; key `*` = every action.
    pub errors: BTreeMap<String, ErrorFault>,
    /// Every route write gets `TaskConflict` while this is on.
    pub task_conflict_storm: bool,
    /// The API answers 503 `ServiceUnavailable` to everything.
    pub api_down: bool,
    /// The metadata service answers 503 to everything.
    pub metadata_down: bool,
}

/// Limits and timings (`GET|PUT /settings`); persistent for the life of the process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// How long a new route stays `Pending`.
    pub pending_ms: u64,
    /// How long a deleted route stays `Deleting`.
    pub deleting_ms: u64,
    /// Custom entries per route table.
    pub route_entry_quota: usize,
    /// Lifetime of the STS credentials the metadata service hands out.
    pub credential_lifetime_secs: u64,
    /// Allowed clock skew of signed requests.
    pub max_clock_skew_secs: u64,
    /// Requests per second per action (token bucket, burst = rate); key `*` = default for every action;
    /// 0 = unlimited.
    pub action_qps: BTreeMap<String, u32>,
    /// Requests per second over all actions and credentials; 0 = unlimited.
    pub account_qps: u32,
    /// Metadata requires `X-aliyun-ecs-metadata-token` (IMDSv2-like hardened mode).
    pub metadata_hardened: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pending_ms: 2000,
            deleting_ms: 1000,
            route_entry_quota: 200,
            credential_lifetime_secs: 900,
            max_clock_skew_secs: 900,
            action_qps: BTreeMap::from([("*".to_string(), 50)]),
            account_qps: 200,
            metadata_hardened: false,
        }
    }
}

/// `POST /routes`: put an entry into a table behind the API's back (no checks except that the table
/// exists): someone else's route, or a route held in `Pending`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PutRoute {
    /// Default: the system table.
    pub route_table_id: Option<String>,
    pub destination_cidr_block: Option<Ipv4Net>,
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub route_entry_name: String,
    pub description: String,
    pub status: RouteStatus,
    /// For a transitional status: when it ends (milliseconds from now); `None` = it stays until changed.
    pub status_for_ms: Option<u64>,
}

impl Default for PutRoute {
    fn default() -> Self {
        PutRoute {
            route_table_id: None,
            destination_cidr_block: None,
            next_hop_type: "Instance".into(),
            next_hop_id: String::new(),
            route_entry_name: String::new(),
            description: String::new(),
            status: RouteStatus::Available,
            status_for_ms: None,
        }
    }
}

/// `PUT /routes/{id}/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetRouteStatus {
    pub status: RouteStatus,
    #[serde(default)]
    pub status_for_ms: Option<u64>,
}

/// `GET /dataplane`: what the data plane was last asked to do and whether it managed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DataplaneStatus {
    pub kind: String,
    /// Bumped on every state change that may affect the data plane.
    pub wanted_generation: u64,
    /// The last generation applied successfully.
    pub applied_generation: u64,
    pub last_error: Option<String>,
    /// Each route table bound to a vSwitch: its kernel table, vSwitch CIDRs and custom routes.
    pub tables: Vec<crate::dataplane::TablePlane>,
    pub ports: Vec<crate::dataplane::PortPolicy>,
}

/// An admin API error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdminError {
    pub error: String,
}

/// Client for the admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(admin_socket: impl AsRef<Path>) -> Self {
        AdminClient {
            socket: admin_socket.as_ref().to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let ct = body.as_ref().map(|_| "application/json");
        let resp = crossdock_unixhttp::request(&self.socket, method, path, body, ct)
            .await
            .map_err(|e| anyhow::anyhow!("the VPC emulator's admin socket: {e}"))?;
        if !resp.is_success() {
            let msg = serde_json::from_slice::<AdminError>(&resp.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| resp.text());
            anyhow::bail!(
                "the VPC emulator refused {method} {path} (HTTP {}): {msg}",
                resp.status
            );
        }
        serde_json::from_slice(&resp.body).map_err(|e| {
            anyhow::anyhow!(
                "the VPC emulator's answer to {method} {path} is not the expected JSON: {e}"
            )
        })
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call(method, path, Some(serde_json::to_vec(body)?))
            .await
    }

    /// Ok when the emulator answers.
    pub async fn health(&self) -> anyhow::Result<()> {
        let _: serde_json::Value = self.call("GET", "/healthz", None).await?;
        Ok(())
    }

    pub async fn info(&self) -> anyhow::Result<Info> {
        self.call("GET", "/info", None).await
    }

    pub async fn state(&self) -> anyhow::Result<State> {
        self.call("GET", "/state", None).await
    }

    pub async fn create_instance(&self, req: &CreateInstance) -> anyhow::Result<Instance> {
        self.send("POST", "/instances", req).await
    }

    pub async fn instances(&self) -> anyhow::Result<Vec<Instance>> {
        self.call("GET", "/instances", None).await
    }

    /// Replaces the instance's tags.
    pub async fn set_instance_tags(
        &self,
        instance_id: &str,
        tags: &[Tag],
    ) -> anyhow::Result<Instance> {
        let body = SetTags {
            tags: tags.to_vec(),
        };
        self.send("PUT", &format!("/instances/{instance_id}/tags"), &body)
            .await
    }

    /// Stops the instance (`Status` Stopped; it keeps its IP, ENI and routes).
    pub async fn stop_instance(&self, instance_id: &str) -> anyhow::Result<Instance> {
        self.call("POST", &format!("/instances/{instance_id}/stop"), None)
            .await
    }

    /// Starts a stopped instance again (`Status` Running).
    pub async fn start_instance(&self, instance_id: &str) -> anyhow::Result<Instance> {
        self.call("POST", &format!("/instances/{instance_id}/start"), None)
            .await
    }

    /// Releases the instance: it is removed from the state (absent from every answer, no metadata
    /// identity, no data-plane port); route entries naming it stay, as on Alibaba. Returns what it was.
    pub async fn release_instance(&self, instance_id: &str) -> anyhow::Result<Instance> {
        self.call("DELETE", &format!("/instances/{instance_id}"), None)
            .await
    }

    pub async fn create_vswitch(&self, req: &CreateVSwitch) -> anyhow::Result<VSwitch> {
        self.send("POST", "/vswitches", req).await
    }

    pub async fn create_route_table(&self, req: &CreateRouteTable) -> anyhow::Result<RouteTable> {
        self.send("POST", "/route-tables", req).await
    }

    /// Binds a vSwitch to a custom route table (Alibaba's `AssociateRouteTable`): the table routes the
    /// vSwitch's traffic from now on. Refused when the vSwitch is bound to another custom table.
    pub async fn bind_vswitch(
        &self,
        route_table_id: &str,
        vswitch_id: &str,
    ) -> anyhow::Result<RouteTable> {
        let path = format!("/route-tables/{route_table_id}/vswitches/{vswitch_id}");
        self.call("PUT", &path, None).await
    }

    /// Unbinds a vSwitch from a custom route table: the system table routes its traffic again.
    pub async fn unbind_vswitch(
        &self,
        route_table_id: &str,
        vswitch_id: &str,
    ) -> anyhow::Result<RouteTable> {
        let path = format!("/route-tables/{route_table_id}/vswitches/{vswitch_id}");
        self.call("DELETE", &path, None).await
    }

    pub async fn create_access_key(&self, req: &CreateAccessKey) -> anyhow::Result<AccessKey> {
        self.send("POST", "/access-keys", req).await
    }

    pub async fn set_role(&self, req: &SetRole) -> anyhow::Result<()> {
        let _: serde_json::Value = self.send("POST", "/roles", req).await?;
        Ok(())
    }

    /// The call log; `since` = only calls with `seq >= since`.
    pub async fn calls(&self, since: Option<u64>) -> anyhow::Result<CallLog> {
        let path = match since {
            Some(s) => format!("/calls?since={s}"),
            None => "/calls".to_string(),
        };
        self.call("GET", &path, None).await
    }

    /// Clears the call log and its counters.
    pub async fn reset_calls(&self) -> anyhow::Result<()> {
        let _: serde_json::Value = self.call("POST", "/calls/reset", None).await?;
        Ok(())
    }

    pub async fn faults(&self) -> anyhow::Result<Faults> {
        self.call("GET", "/faults", None).await
    }

    /// Replaces the whole fault set.
    pub async fn set_faults(&self, faults: &Faults) -> anyhow::Result<Faults> {
        self.send("PUT", "/faults", faults).await
    }

    pub async fn reset_faults(&self) -> anyhow::Result<()> {
        let _: serde_json::Value = self.call("POST", "/faults/reset", None).await?;
        Ok(())
    }

    pub async fn settings(&self) -> anyhow::Result<Settings> {
        self.call("GET", "/settings", None).await
    }

    pub async fn set_settings(&self, settings: &Settings) -> anyhow::Result<Settings> {
        self.send("PUT", "/settings", settings).await
    }

    /// Every STS credential expires now; the metadata service hands out new ones on the next fetch.
    pub async fn expire_credentials(&self) -> anyhow::Result<()> {
        let _: serde_json::Value = self.call("POST", "/credentials/expire", None).await?;
        Ok(())
    }

    /// Puts an entry into a table behind the API's back.
    pub async fn put_route(&self, req: &PutRoute) -> anyhow::Result<RouteEntry> {
        self.send("POST", "/routes", req).await
    }

    pub async fn set_route_status(
        &self,
        route_entry_id: &str,
        req: &SetRouteStatus,
    ) -> anyhow::Result<RouteEntry> {
        self.send("PUT", &format!("/routes/{route_entry_id}/status"), req)
            .await
    }

    /// Removes an entry at once, behind the API's back.
    pub async fn delete_route(&self, route_entry_id: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .call("DELETE", &format!("/routes/{route_entry_id}"), None)
            .await?;
        Ok(())
    }

    pub async fn dataplane(&self) -> anyhow::Result<DataplaneStatus> {
        self.call("GET", "/dataplane", None).await
    }
}
