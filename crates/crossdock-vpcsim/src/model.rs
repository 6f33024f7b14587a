//! The emulated cloud's persistent state: one VPC with its vSwitches, route tables and entries, the ECS
//! instances in it and the credentials allowed to call the API.
//!
//! Everything the emulator must remember across a restart lives in [`State`] and nowhere else, so that
//! persisting is one JSON document (written atomically by `store`) and a restart re-derives every runtime
//! structure (timers, kernel routes) from it. Times are milliseconds since the Unix epoch so that a
//! `Pending` deadline written before a restart still means the same instant after it.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// The format version of the state file; bumped on incompatible changes.
pub const STATE_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (Alibaba's timestamp format) for a millisecond timestamp.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Status of a route entry, as Alibaba spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteStatus {
    Pending,
    Available,
    Modifying,
    Deleting,
}

impl RouteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStatus::Pending => "Pending",
            RouteStatus::Available => "Available",
            RouteStatus::Modifying => "Modifying",
            RouteStatus::Deleting => "Deleting",
        }
    }

    /// A transition is in progress: no other route write may start in the VPC.
    pub fn is_busy(self) -> bool {
        !matches!(self, RouteStatus::Available)
    }
}

/// `Custom` entries are made by users; `System` entries by the cloud (vSwitch and cloud-service routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryType {
    Custom,
    System,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Custom => "Custom",
            EntryType::System => "System",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vpc {
    pub vpc_id: String,
    pub vpc_name: String,
    pub cidr_block: Ipv4Net,
    pub vrouter_id: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VSwitch {
    pub vswitch_id: String,
    pub vswitch_name: String,
    pub cidr_block: Ipv4Net,
    pub zone_id: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteTable {
    pub route_table_id: String,
    pub route_table_name: String,
    /// `System` (one per VPC, serves every vSwitch not associated with a custom table) or `Custom`.
    pub route_table_type: String,
    /// vSwitches associated with this custom table (empty for the system table; see
    /// [`State::table_of_vswitch`]).
    pub vswitch_ids: Vec<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteEntry {
    pub route_entry_id: String,
    pub route_table_id: String,
    pub destination_cidr_block: Ipv4Net,
    pub entry_type: EntryType,
    pub status: RouteStatus,
    /// `Instance`, `NetworkInterface`, or `local`/`service` for system entries.
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub route_entry_name: String,
    pub description: String,
    /// When the current transition (`Pending`, `Deleting`, `Modifying`) ends; `None` = it stays.
    pub status_until_ms: Option<i64>,
    /// Creation order; listing order and pagination cursor.
    pub seq: u64,
    pub created_at_ms: i64,
    pub modified_at_ms: i64,
}

/// An instance tag (`Tag.N.Key` / `Tag.N.Value` in requests, `{TagKey, TagValue}` in answers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Checks a tag the way ECS does: a key of 1 to 128 characters not starting with `aliyun` or
    /// `acs:`, a value of at most 128 characters; neither may start with `http://` or `https://`.
    pub fn validate(&self) -> Result<(), String> {
        let web = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if self.key.is_empty() || self.key.chars().count() > 128 || web(&self.key) {
            return Err(format!(
                "tag key {:?} must be 1 to 128 characters and not start with http:// or https://",
                self.key
            ));
        }
        if self.key.starts_with("aliyun") || self.key.starts_with("acs:") {
            return Err(format!(
                "tag key {:?} must not start with aliyun or acs: (reserved by the cloud)",
                self.key
            ));
        }
        if self.value.chars().count() > 128 || web(&self.value) {
            return Err(format!(
                "tag value {:?} must be at most 128 characters and not start with http:// or https://",
                self.value
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl std::str::FromStr for Tag {
    type Err = String;
    /// `key=value` (the value may be empty; the key may not).
    fn from_str(s: &str) -> Result<Tag, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("tag {s:?} is not key=value"))?;
        let tag = Tag::new(key.trim(), value.trim());
        tag.validate()?;
        Ok(tag)
    }
}

/// What an instance is doing. The emulator models the two states a route controller must tell apart:
/// running, and stopped (still listed, keeps its IP and routes). A released instance is not a status:
/// it is gone from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum InstanceStatus {
    #[default]
    Running,
    Stopped,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopped => "Stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub instance_id: String,
    pub hostname: String,
    pub private_ip: Ipv4Addr,
    /// The instance's port on the vSwitch bridge in the vRouter namespace (e.g. `p-h1`), where the
    /// source/destination check is enforced. `None` = no data-plane port.
    pub port: Option<String>,
    pub vswitch_id: String,
    pub zone_id: String,
    pub eni_id: String,
    pub mac: String,
    pub source_dest_check: bool,
    /// The RAM role attached to the instance (served by the metadata service); `None` = no role.
    pub ram_role: Option<String>,
    pub created_at_ms: i64,
    /// Its tags, in the order they were set (state files from before tags load with none).
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub status: InstanceStatus,
    /// Creation order: the listing order of `DescribeInstances` and its paging cursor (0 in state files
    /// from before it existed; ties are broken by the instance id).
    #[serde(default)]
    pub seq: u64,
}

impl Instance {
    /// Whether the instance carries this exact tag.
    pub fn has_tag(&self, key: &str, value: Option<&str>) -> bool {
        self.tags
            .iter()
            .any(|t| t.key == key && value.is_none_or(|v| v == t.value))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Actions this credential may call (`CreateRouteEntry`, `vpc:Describe*`, `*`); `None` = all.
    pub allowed_actions: Option<Vec<String>>,
    /// STS credentials carry a token and an expiry.
    pub security_token: Option<String>,
    pub expires_at_ms: Option<i64>,
    /// STS credentials handed out by the metadata service belong to an instance (for the call log).
    pub instance_id: Option<String>,
    pub role: Option<String>,
    pub description: String,
    pub created_at_ms: i64,
}

impl AccessKey {
    pub fn is_sts(&self) -> bool {
        self.access_key_id.starts_with("STS.")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Role {
    pub role_name: String,
    /// The role's policy as a list of allowed actions; `None` = all.
    pub allowed_actions: Option<Vec<String>>,
}

/// A remembered answer to a request that carried a `ClientToken`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdempotencyRecord {
    /// action + access key + token
    pub key: String,
    /// hash of the request's parameters (without signature/nonce/time), to detect a token reused for
    /// another request (`IdempotentParameterMismatch`).
    pub params_hash: String,
    pub response: serde_json::Value,
    pub at_ms: i64,
}

/// The whole persistent state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    /// Seeds every generated id (with [`State::next_seq`]), so runs are reproducible.
    pub seed: u64,
    pub next_seq: u64,
    pub region_id: String,
    pub zone_id: String,
    pub vpc: Vpc,
    pub vswitches: Vec<VSwitch>,
    pub route_tables: Vec<RouteTable>,
    pub entries: Vec<RouteEntry>,
    pub instances: Vec<Instance>,
    pub access_keys: Vec<AccessKey>,
    pub roles: Vec<Role>,
    pub idempotency: Vec<IdempotencyRecord>,
    /// The access key with every permission, for the lab's operators and tests.
    pub admin_access_key_id: String,
}

/// What a fresh VPC looks like.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub seed: u64,
    pub region_id: String,
    pub zone_id: String,
    pub vpc_cidr: Ipv4Net,
    pub vswitch_cidr: Ipv4Net,
    /// Explicit admin credentials (`None` = generated).
    pub admin_access_key: Option<(String, String)>,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            seed: 1,
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-h".into(),
            vpc_cidr: "192.168.0.0/16".parse().expect("valid"),
            vswitch_cidr: "192.168.1.0/24".parse().expect("valid"),
            admin_access_key: None,
        }
    }
}

/// The cloud-service range every VPC reserves (metadata, API endpoints); routes inside it are refused.
pub fn cloud_service_cidr() -> Ipv4Net {
    "100.64.0.0/10".parse().expect("valid")
}

/// The default role name attached to instances registered without one.
pub const DEFAULT_ROLE: &str = "crossdock-node";

impl State {
    /// A new VPC with one vSwitch, the system route table with its system entries, and an admin key.
    pub fn bootstrap(b: &Bootstrap) -> State {
        let now = now_ms();
        let mut s = State {
            version: STATE_VERSION,
            seed: b.seed,
            next_seq: 1,
            region_id: b.region_id.clone(),
            zone_id: b.zone_id.clone(),
            vpc: Vpc {
                vpc_id: String::new(),
                vpc_name: "crossdock-lab".into(),
                cidr_block: b.vpc_cidr,
                vrouter_id: String::new(),
                created_at_ms: now,
            },
            vswitches: vec![],
            route_tables: vec![],
            entries: vec![],
            instances: vec![],
            access_keys: vec![],
            roles: vec![Role {
                role_name: DEFAULT_ROLE.into(),
                allowed_actions: None,
            }],
            idempotency: vec![],
            admin_access_key_id: String::new(),
        };
        s.vpc.vpc_id = s.new_id("vpc-");
        s.vpc.vrouter_id = s.new_id("vrt-");
        let vsw = s.new_id("vsw-");
        s.vswitches.push(VSwitch {
            vswitch_id: vsw,
            vswitch_name: "crossdock-lab".into(),
            cidr_block: b.vswitch_cidr,
            zone_id: b.zone_id.clone(),
            created_at_ms: now,
        });
        let table = s.new_id("vtb-");
        s.route_tables.push(RouteTable {
            route_table_id: table.clone(),
            route_table_name: String::new(),
            route_table_type: "System".into(),
            vswitch_ids: vec![],
            created_at_ms: now,
        });
        s.add_system_entries(&table, b.vswitch_cidr);
        let service = s.new_id("rte-");
        let seq = s.take_seq();
        s.entries.push(RouteEntry {
            route_entry_id: service,
            route_table_id: table,
            destination_cidr_block: cloud_service_cidr(),
            entry_type: EntryType::System,
            status: RouteStatus::Available,
            next_hop_type: "service".into(),
            next_hop_id: String::new(),
            route_entry_name: String::new(),
            description: "cloud services".into(),
            status_until_ms: None,
            seq,
            created_at_ms: now,
            modified_at_ms: now,
        });
        let (id, secret) = match &b.admin_access_key {
            Some((id, secret)) => (id.clone(), secret.clone()),
            None => (s.new_id("LTAI"), random_secret(30)),
        };
        s.admin_access_key_id = id.clone();
        s.access_keys.push(AccessKey {
            access_key_id: id,
            access_key_secret: secret,
            allowed_actions: None,
            security_token: None,
            expires_at_ms: None,
            instance_id: None,
            role: None,
            description: "lab administrator".into(),
            created_at_ms: now,
        });
        s
    }

    /// The vSwitch's local route in a table (a `System` entry, as the cloud adds it).
    pub fn add_system_entries(&mut self, table_id: &str, cidr: Ipv4Net) {
        let now = now_ms();
        let id = self.new_id("rte-");
        let seq = self.take_seq();
        self.entries.push(RouteEntry {
            route_entry_id: id,
            route_table_id: table_id.to_string(),
            destination_cidr_block: cidr,
            entry_type: EntryType::System,
            status: RouteStatus::Available,
            next_hop_type: "local".into(),
            next_hop_id: String::new(),
            route_entry_name: String::new(),
            description: String::new(),
            status_until_ms: None,
            seq,
            created_at_ms: now,
            modified_at_ms: now,
        });
    }

    pub fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// A new Alibaba-looking id (`prefix` + 21 lower-case alphanumerics) derived from the seed and a
    /// sequence number: unique, and the same in every run with the same seed.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let seq = self.take_seq();
        format!("{prefix}{}", derive_chars(self.seed, seq, prefix, 21))
    }

    /// A MAC in Alibaba's OUI (00:16:3e).
    pub fn new_mac(&mut self) -> String {
        let seq = self.take_seq();
        let h = Sha256::digest(format!("{}:{seq}:mac", self.seed).as_bytes());
        format!("00:16:3e:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
    }

    pub fn system_table_id(&self) -> &str {
        self.route_tables
            .iter()
            .find(|t| t.route_table_type == "System")
            .map(|t| t.route_table_id.as_str())
            .unwrap_or_default()
    }

    /// The route table that serves a vSwitch: its custom table if associated, else the system table.
    pub fn table_of_vswitch(&self, vswitch_id: &str) -> &str {
        self.route_tables
            .iter()
            .find(|t| {
                t.route_table_type == "Custom" && t.vswitch_ids.iter().any(|v| v == vswitch_id)
            })
            .map(|t| t.route_table_id.as_str())
            .unwrap_or_else(|| self.system_table_id())
    }

    /// vSwitches served by a table (for the system table: those not associated with a custom one).
    pub fn vswitches_of_table(&self, table: &RouteTable) -> Vec<String> {
        if table.route_table_type == "Custom" {
            return table.vswitch_ids.clone();
        }
        self.vswitches
            .iter()
            .filter(|v| self.table_of_vswitch(&v.vswitch_id) == table.route_table_id)
            .map(|v| v.vswitch_id.clone())
            .collect()
    }

    /// Binds a vSwitch to a custom table (Alibaba's `AssociateRouteTable`): from then on the table
    /// routes the vSwitch's traffic. Binding it to the table it is bound to already changes nothing
    /// (`Ok(false)`); a vSwitch bound to another custom table must be unbound first.
    pub fn bind_vswitch(&mut self, table_id: &str, vswitch_id: &str) -> Result<bool, BindingError> {
        self.check_binding(table_id, vswitch_id)?;
        let current = self.table_of_vswitch(vswitch_id).to_string();
        if current == table_id {
            return Ok(false);
        }
        if current != self.system_table_id() {
            return Err(BindingError::BoundElsewhere {
                vswitch_id: vswitch_id.into(),
                route_table_id: current,
            });
        }
        let table = self
            .route_tables
            .iter_mut()
            .find(|t| t.route_table_id == table_id)
            .expect("checked");
        table.vswitch_ids.push(vswitch_id.to_string());
        Ok(true)
    }

    /// Unbinds a vSwitch from a custom table (Alibaba's `UnassociateRouteTable`): the system table
    /// routes its traffic again.
    pub fn unbind_vswitch(&mut self, table_id: &str, vswitch_id: &str) -> Result<(), BindingError> {
        self.check_binding(table_id, vswitch_id)?;
        let table = self
            .route_tables
            .iter_mut()
            .find(|t| t.route_table_id == table_id)
            .expect("checked");
        let before = table.vswitch_ids.len();
        table.vswitch_ids.retain(|v| v != vswitch_id);
        if table.vswitch_ids.len() == before {
            return Err(BindingError::NotBound {
                vswitch_id: vswitch_id.into(),
                route_table_id: table_id.into(),
            });
        }
        Ok(())
    }

    /// Both exist and the table is a custom one (the system table's vSwitches are implied).
    fn check_binding(&self, table_id: &str, vswitch_id: &str) -> Result<(), BindingError> {
        let table = self
            .table(table_id)
            .ok_or_else(|| BindingError::NoTable(table_id.into()))?;
        if !self.vswitches.iter().any(|v| v.vswitch_id == vswitch_id) {
            return Err(BindingError::NoVSwitch(vswitch_id.into()));
        }
        if table.route_table_type != "Custom" {
            return Err(BindingError::SystemTable(table_id.into()));
        }
        Ok(())
    }

    pub fn table(&self, id: &str) -> Option<&RouteTable> {
        self.route_tables.iter().find(|t| t.route_table_id == id)
    }

    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.instance_id == id)
    }

    pub fn instance_by_eni(&self, eni: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.eni_id == eni)
    }

    pub fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<&Instance> {
        self.instances.iter().find(|i| i.private_ip == ip)
    }

    pub fn access_key(&self, id: &str) -> Option<&AccessKey> {
        self.access_keys.iter().find(|k| k.access_key_id == id)
    }

    /// The private IP a route's next hop resolves to (`Instance` or `NetworkInterface` hops).
    pub fn next_hop_ip(&self, entry: &RouteEntry) -> Option<Ipv4Addr> {
        match entry.next_hop_type.as_str() {
            "Instance" => self.instance(&entry.next_hop_id).map(|i| i.private_ip),
            "NetworkInterface" => self
                .instance_by_eni(&entry.next_hop_id)
                .map(|i| i.private_ip),
            _ => None,
        }
    }
}

/// Why a vSwitch could not be bound to or unbound from a route table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("no route table {0}")]
    NoTable(String),
    #[error("no vSwitch {0}")]
    NoVSwitch(String),
    #[error("{0} is the system route table: it serves every vSwitch bound to no custom table (bind the vSwitch to a custom table, or unbind it from one)")]
    SystemTable(String),
    #[error("vSwitch {vswitch_id} is bound to {route_table_id} already: unbind it from that table first")]
    BoundElsewhere {
        vswitch_id: String,
        route_table_id: String,
    },
    #[error("vSwitch {vswitch_id} is not bound to {route_table_id}")]
    NotBound {
        vswitch_id: String,
        route_table_id: String,
    },
}

fn derive_chars(seed: u64, seq: u64, salt: &str, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let h = Sha256::digest(format!("{seed}:{seq}:{salt}").as_bytes());
    h.iter()
        .cycle()
        .take(n)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A random secret of `n` alphanumerics from the OS's generator (secrets are not derived from the seed).
pub fn random_secret(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_makes_one_vpc_with_its_system_table() {
        let s = State::bootstrap(&Bootstrap::default());
        assert!(s.vpc.vpc_id.starts_with("vpc-") && s.vpc.vpc_id.len() == 25);
        assert_eq!(s.vswitches.len(), 1);
        let table = s.system_table_id().to_string();
        assert!(table.starts_with("vtb-"));
        assert_eq!(s.table_of_vswitch(&s.vswitches[0].vswitch_id), table);
        assert_eq!(s.entries.len(), 2);
        assert!(s.entries.iter().all(|e| e.entry_type == EntryType::System));
        assert!(s.access_key(&s.admin_access_key_id).is_some());
        // same seed, same ids; another seed, other ids
        let again = State::bootstrap(&Bootstrap::default());
        assert_eq!(again.vpc.vpc_id, s.vpc.vpc_id);
        let other = State::bootstrap(&Bootstrap {
            seed: 2,
            ..Bootstrap::default()
        });
        assert_ne!(other.vpc.vpc_id, s.vpc.vpc_id);
    }

    #[test]
    fn instances_of_older_state_files_load_running_and_untagged() {
        let old = r#"{"instance_id":"i-1","hostname":"h1","private_ip":"192.168.1.11","port":null,
            "vswitch_id":"vsw-1","zone_id":"z","eni_id":"eni-1","mac":"00:16:3e:00:00:01",
            "source_dest_check":true,"ram_role":null,"created_at_ms":0}"#;
        let i: Instance = serde_json::from_str(old).unwrap();
        assert_eq!(
            (i.status, i.tags.len(), i.seq),
            (InstanceStatus::Running, 0, 0)
        );
    }

    #[test]
    fn tags_parse_from_key_value_and_are_checked() {
        let t: Tag = "crossdock-cluster=prod".parse().unwrap();
        assert_eq!(t, Tag::new("crossdock-cluster", "prod"));
        assert_eq!(t.to_string(), "crossdock-cluster=prod");
        assert_eq!("k=".parse::<Tag>().unwrap().value, "");
        for bad in ["novalue", "=v", "aliyun-x=1", "acs:x=1", "http://k=v"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn vswitches_bind_to_one_custom_table_at_a_time() {
        let mut s = State::bootstrap(&Bootstrap::default());
        let a = s.vswitches[0].vswitch_id.clone();
        let system = s.system_table_id().to_string();
        let custom = |s: &mut State, id: &str| {
            s.route_tables.push(RouteTable {
                route_table_id: id.into(),
                route_table_name: String::new(),
                route_table_type: "Custom".into(),
                vswitch_ids: vec![],
                created_at_ms: 0,
            })
        };
        custom(&mut s, "vtb-b");
        custom(&mut s, "vtb-c");
        assert_eq!(s.bind_vswitch("vtb-b", &a), Ok(true));
        assert_eq!(s.table_of_vswitch(&a), "vtb-b");
        assert_eq!(s.bind_vswitch("vtb-b", &a), Ok(false), "idempotent");
        assert_eq!(
            s.bind_vswitch("vtb-c", &a),
            Err(BindingError::BoundElsewhere {
                vswitch_id: a.clone(),
                route_table_id: "vtb-b".into()
            })
        );
        assert!(s.vswitches_of_table(s.table(&system).unwrap()).is_empty());
        assert_eq!(
            s.unbind_vswitch("vtb-c", &a),
            Err(BindingError::NotBound {
                vswitch_id: a.clone(),
                route_table_id: "vtb-c".into()
            })
        );
        s.unbind_vswitch("vtb-b", &a).unwrap();
        assert_eq!(s.table_of_vswitch(&a), system);
        assert_eq!(
            s.bind_vswitch(&system, &a),
            Err(BindingError::SystemTable(system.clone()))
        );
        assert_eq!(
            s.bind_vswitch("vtb-x", &a),
            Err(BindingError::NoTable("vtb-x".into()))
        );
        assert_eq!(
            s.bind_vswitch("vtb-b", "vsw-x"),
            Err(BindingError::NoVSwitch("vsw-x".into()))
        );
    }

    #[test]
    fn ids_are_unique() {
        let mut s = State::bootstrap(&Bootstrap::default());
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| s.new_id("rte-")).collect();
        assert_eq!(ids.len(), 1000);
        assert!(s.new_mac().starts_with("00:16:3e:"));
    }
}
