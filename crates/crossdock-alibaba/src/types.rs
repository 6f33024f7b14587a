//! The VPC and ECS objects crossdock reads and writes, and their wire shapes.
//!
//! Alibaba's JSON wraps every list in an object named after the element (`{"RouteEntrys":
//! {"RouteEntry": [...]}}`, with the historical misspelling, and `{"RouterTableList":
//! {"RouterTableListType": [...]}}`). The `Raw*` structs mirror that wire shape exactly and are
//! converted into flat public types, so the rest of crossdock never sees the wrappers. Numbers and
//! booleans are read leniently (number or string), because the API is not consistent about them.

use serde::{Deserialize, Deserializer, Serialize};

/// A VPC route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteTable {
    /// `vtb-...`.
    pub route_table_id: String,
    /// `System` or `Custom`.
    pub route_table_type: String,
    /// The VPC.
    pub vpc_id: String,
    /// The vRouter.
    pub router_id: String,
    /// e.g. `Available`.
    pub status: String,
    /// vSwitches associated with this table.
    pub vswitch_ids: Vec<String>,
}

impl RouteTable {
    /// Whether this is the VPC's system route table.
    pub fn is_system(&self) -> bool {
        self.route_table_type.eq_ignore_ascii_case("System")
    }
}

/// One next hop of a route entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextHop {
    /// e.g. `Instance`.
    pub next_hop_type: String,
    /// e.g. `i-...`.
    pub next_hop_id: String,
}

/// A route entry of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// `rte-...`.
    pub route_entry_id: String,
    /// The table it belongs to.
    pub route_table_id: String,
    /// Destination, e.g. `10.10.1.0/24`.
    pub destination_cidr_block: String,
    /// `RouteEntryName` (crossdock's ownership marker lives here and in `description`).
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `Custom`, `System`, ...
    pub entry_type: String,
    /// `Pending`, `Available`, `Modifying`, `Deleting`.
    pub status: String,
    /// Next hops (one for an ordinary route, several for ECMP).
    pub next_hops: Vec<NextHop>,
}

impl RouteEntry {
    /// The single instance this route points at, if it has exactly one next hop of type `Instance`.
    pub fn instance_next_hop(&self) -> Option<&str> {
        match self.next_hops.as_slice() {
            [hop] if hop.next_hop_type.eq_ignore_ascii_case("Instance") => Some(&hop.next_hop_id),
            _ => None,
        }
    }

    /// Whether the entry is `Available`.
    pub fn is_available(&self) -> bool {
        self.status.eq_ignore_ascii_case("Available")
    }
}

/// A vSwitch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VSwitch {
    /// `vsw-...`.
    pub vswitch_id: String,
    /// The VPC.
    pub vpc_id: String,
    /// The vSwitch's IPv4 CIDR.
    pub cidr_block: String,
    /// The route table it is associated with, if the API says.
    pub route_table_id: Option<String>,
    /// `AvailableIpAddressCount`: addresses still free in it, if the API says.
    pub available_ip_count: Option<u64>,
}

/// The CIDRs of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VpcAttribute {
    /// `vpc-...`.
    pub vpc_id: String,
    /// Primary IPv4 CIDR.
    pub cidr_block: String,
    /// Secondary IPv4 CIDRs.
    pub secondary_cidr_blocks: Vec<String>,
    /// User CIDRs.
    pub user_cidrs: Vec<String>,
}

/// An ENI as far as crossdock cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInterface {
    /// `eni-...`.
    pub network_interface_id: String,
    /// The instance it is attached to.
    pub instance_id: String,
    /// `Primary` or `Secondary`.
    pub interface_type: String,
    /// Whether the source/destination check is on; `None` if the API did not say (older regions).
    pub source_dest_check: Option<bool>,
}

/// Filters of `DescribeRouteEntryList` (each `None` = not filtered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteEntryFilter {
    /// `DestinationCidrBlock`.
    pub destination_cidr_block: Option<String>,
    /// `NextHopId`.
    pub next_hop_id: Option<String>,
    /// `RouteEntryType` (`Custom`).
    pub route_entry_type: Option<String>,
    /// `RouteEntryName`.
    pub route_entry_name: Option<String>,
}

/// Parameters of `CreateRouteEntry` with an `Instance` next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRouteEntry {
    /// Table to add to.
    pub route_table_id: String,
    /// Destination CIDR.
    pub destination_cidr_block: String,
    /// The instance next hop.
    pub next_hop_id: String,
    /// `RouteEntryName` (1..=128 characters).
    pub name: String,
    /// `Description` (1..=256 characters).
    pub description: String,
    /// `ClientToken` (≤ 64 ASCII): the same token makes a retried create idempotent.
    pub client_token: String,
}

/// A deterministic `ClientToken` for a create of `cidr` in `table` pointing at `instance`, plus a
/// generation (0 normally) that the caller bumps only when a token must not be reused (a route
/// created with it has since been deleted). 40 hex characters plus a prefix: well under 64.
pub fn client_token(instance_id: &str, cidr: &str, table_id: &str, generation: u32) -> String {
    let digest = crossdock_acs3::hex_sha256(
        format!("crossdock\0{instance_id}\0{cidr}\0{table_id}\0{generation}").as_bytes(),
    );
    format!("cd-{}", &digest[..40])
}

/// Most route entries one `CreateRouteEntries` / `DeleteRouteEntries` call takes.
pub const MAX_ROUTE_BATCH: usize = 50;

/// Most instance ids one `DescribeInstances` call takes (`InstanceIds`).
pub const MAX_INSTANCE_IDS: usize = 100;

/// A resource tag (`Tag.N.Key` / `Tag.N.Value` in requests, `TagKey` / `TagValue` in answers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Tag {
    /// Tag key, e.g. `crossdock-cluster`.
    pub key: String,
    /// Tag value, e.g. `prod`.
    pub value: String,
}

/// An ECS instance's `Status`. A released instance has none: it is absent from every answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    /// Being created.
    Pending,
    /// Booting.
    Starting,
    /// Running.
    Running,
    /// Shutting down.
    Stopping,
    /// Stopped (still exists, keeps its private IP).
    Stopped,
    /// Any other status the API may report, verbatim.
    Other(String),
}

impl InstanceStatus {
    /// The wire spelling (`Running`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            InstanceStatus::Pending => "Pending",
            InstanceStatus::Starting => "Starting",
            InstanceStatus::Running => "Running",
            InstanceStatus::Stopping => "Stopping",
            InstanceStatus::Stopped => "Stopped",
            InstanceStatus::Other(s) => s,
        }
    }

    /// Reads the wire spelling, ignoring ASCII case; unknown values are kept as [`InstanceStatus::Other`].
    pub fn parse(raw: &str) -> Self {
        let known = [
            InstanceStatus::Pending,
            InstanceStatus::Starting,
            InstanceStatus::Running,
            InstanceStatus::Stopping,
            InstanceStatus::Stopped,
        ];
        known
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(raw.trim()))
            .unwrap_or_else(|| InstanceStatus::Other(raw.trim().to_string()))
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InstanceStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An ECS instance as fleet mode sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// `i-...`.
    pub instance_id: String,
    /// `HostName`.
    pub hostname: String,
    /// `Status`.
    pub status: InstanceStatus,
    /// The VPC (`VpcAttributes.VpcId`).
    pub vpc_id: String,
    /// The vSwitch (`VpcAttributes.VSwitchId`).
    pub vswitch_id: String,
    /// The primary private IPv4 (`VpcAttributes.PrivateIpAddress`, else the primary ENI's
    /// `PrimaryIpAddress`); `None` when the answer has no parsable one.
    pub private_ip: Option<std::net::Ipv4Addr>,
    /// The primary ENI (`NetworkInterfaces`, type `Primary`, else the first listed).
    pub eni_id: Option<String>,
    /// The instance's tags.
    pub tags: Vec<Tag>,
}

impl Instance {
    /// Whether the instance carries `tag` (key and value equal).
    pub fn has_tag(&self, tag: &Tag) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Filters of `DescribeInstances` (each empty/`None` = not filtered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// `VpcId`.
    pub vpc_id: Option<String>,
    /// `Tag.1.Key` / `Tag.1.Value`.
    pub tag: Option<Tag>,
    /// `InstanceIds` (sent as a JSON array, at most [`MAX_INSTANCE_IDS`] per call; the client splits
    /// longer lists).
    pub instance_ids: Vec<String>,
}

/// One entry of `CreateRouteEntries` (next hop type `Instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoute {
    /// `RouteEntries.N.RouteTableId`.
    pub route_table_id: String,
    /// `RouteEntries.N.DstCidrBlock`.
    pub destination_cidr_block: String,
    /// `RouteEntries.N.NextHop`: the instance.
    pub next_hop_id: String,
    /// `RouteEntries.N.Name` (1..=128 characters; empty = not sent).
    pub name: String,
    /// `RouteEntries.N.Description` (1..=256 characters; empty = not sent).
    pub description: String,
}

/// One entry of `DeleteRouteEntries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteToDelete {
    /// By entry id.
    ById {
        /// The table.
        route_table_id: String,
        /// `rte-...`.
        route_entry_id: String,
    },
    /// By destination and next hop.
    ByDestination {
        /// The table.
        route_table_id: String,
        /// The destination CIDR.
        destination_cidr_block: String,
        /// The next hop instance.
        next_hop_id: String,
    },
}

impl RouteToDelete {
    /// The table the entry is in.
    pub fn route_table_id(&self) -> &str {
        match self {
            RouteToDelete::ById { route_table_id, .. }
            | RouteToDelete::ByDestination { route_table_id, .. } => route_table_id,
        }
    }
}

/// One refused entry of a batch write (`FailedRouteEntries[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchFailure {
    /// `DstCidrBlock` of the refused entry.
    pub destination_cidr_block: String,
    /// `NextHop` of the refused entry.
    pub next_hop: String,
    /// `FailedCode`, e.g. `VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE`.
    pub code: String,
    /// `FailedMessage`.
    pub message: String,
}

impl BatchFailure {
    /// What to do about this entry, by the same table as whole-call errors ([`crate::error::classify`]).
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::classify(&self.code, 200)
    }

    /// The destination already exists in the table (`VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE` or
    /// `InvalidCIDRBlock.Duplicate`): look it up, ours = done.
    pub fn is_duplicate(&self) -> bool {
        self.class() == crate::error::ErrorClass::Duplicate
    }
}

/// The answer of a batch write: it can succeed partly, each refused entry with its own code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchResult {
    /// `SuccessCount`.
    pub success_count: u32,
    /// `FailedCount`.
    pub failed_count: u32,
    /// `RouteEntryIds` of created entries (empty for deletes).
    pub route_entry_ids: Vec<String>,
    /// `FailedRouteEntries`.
    pub failed: Vec<BatchFailure>,
}

// ---- wire shapes -------------------------------------------------------------------------------

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    Ok(match N::deserialize(d)? {
        N::Num(n) => n,
        N::Str(s) => s.trim().parse().unwrap_or(0),
    })
}

pub(crate) fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match Option::<B>::deserialize(d)? {
        Some(B::Bool(b)) => Some(b),
        Some(B::Str(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(B::Str(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

#[derive(Deserialize, Default)]
pub(crate) struct RawStrings {
    #[serde(
        alias = "VSwitchId",
        alias = "SecondaryCidrBlock",
        alias = "UserCidr",
        alias = "IpAddress",
        default
    )]
    pub items: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawRouteTableList {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_count: u64,
    #[serde(default)]
    pub router_table_list: Option<RawRouterTableList>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawRouterTableList {
    #[serde(rename = "RouterTableListType", default)]
    pub items: Vec<RawRouteTable>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawRouteTable {
    #[serde(default)]
    pub route_table_id: String,
    #[serde(default)]
    pub route_table_type: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub router_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(rename = "VSwitchIds", default)]
    pub vswitch_ids: Option<RawStrings>,
}

impl From<RawRouteTable> for RouteTable {
    fn from(r: RawRouteTable) -> Self {
        Self {
            route_table_id: r.route_table_id,
            route_table_type: r.route_table_type,
            vpc_id: r.vpc_id,
            router_id: r.router_id,
            status: r.status,
            vswitch_ids: r.vswitch_ids.unwrap_or_default().items,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawRouteEntryList {
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(rename = "RouteEntrys", default)]
    pub route_entrys: Option<RawRouteEntrys>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawRouteEntrys {
    #[serde(rename = "RouteEntry", default)]
    pub items: Vec<RawRouteEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawRouteEntry {
    #[serde(default)]
    pub route_entry_id: String,
    #[serde(default)]
    pub route_table_id: String,
    #[serde(default)]
    pub destination_cidr_block: String,
    #[serde(default)]
    pub route_entry_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "Type", default)]
    pub entry_type: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub next_hops: Option<RawNextHops>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawNextHops {
    #[serde(rename = "NextHop", default)]
    pub items: Vec<RawNextHop>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawNextHop {
    #[serde(default)]
    pub next_hop_type: String,
    #[serde(default)]
    pub next_hop_id: String,
}

impl From<RawRouteEntry> for RouteEntry {
    fn from(r: RawRouteEntry) -> Self {
        Self {
            route_entry_id: r.route_entry_id,
            route_table_id: r.route_table_id,
            destination_cidr_block: r.destination_cidr_block,
            name: r.route_entry_name,
            description: r.description,
            entry_type: r.entry_type,
            status: r.status,
            next_hops: r
                .next_hops
                .unwrap_or_default()
                .items
                .into_iter()
                .map(|h| NextHop {
                    next_hop_type: h.next_hop_type,
                    next_hop_id: h.next_hop_id,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawCreateRouteEntry {
    #[serde(default)]
    pub route_entry_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawVSwitchList {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_count: u64,
    #[serde(rename = "VSwitches", default)]
    pub vswitches: Option<RawVSwitches>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawVSwitches {
    #[serde(rename = "VSwitch", default)]
    pub items: Vec<RawVSwitch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawVSwitch {
    #[serde(rename = "VSwitchId", default)]
    pub vswitch_id: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub cidr_block: String,
    #[serde(default)]
    pub route_table: Option<RawVSwitchRouteTable>,
    #[serde(default)]
    pub available_ip_address_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawVSwitchRouteTable {
    #[serde(default)]
    pub route_table_id: String,
}

impl From<RawVSwitch> for VSwitch {
    fn from(r: RawVSwitch) -> Self {
        Self {
            vswitch_id: r.vswitch_id,
            vpc_id: r.vpc_id,
            cidr_block: r.cidr_block,
            route_table_id: r
                .route_table
                .map(|t| t.route_table_id)
                .filter(|t| !t.is_empty()),
            available_ip_count: r.available_ip_address_count,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawVpcAttribute {
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub cidr_block: String,
    #[serde(default)]
    pub secondary_cidr_blocks: Option<RawStrings>,
    #[serde(default)]
    pub user_cidrs: Option<RawStrings>,
}

impl From<RawVpcAttribute> for VpcAttribute {
    fn from(r: RawVpcAttribute) -> Self {
        Self {
            vpc_id: r.vpc_id,
            cidr_block: r.cidr_block,
            secondary_cidr_blocks: r.secondary_cidr_blocks.unwrap_or_default().items,
            user_cidrs: r.user_cidrs.unwrap_or_default().items,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawNetworkInterfaces {
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub network_interface_sets: Option<RawNetworkInterfaceSets>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawNetworkInterfaceSets {
    #[serde(rename = "NetworkInterfaceSet", default)]
    pub items: Vec<RawNetworkInterface>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawNetworkInterface {
    #[serde(default)]
    pub network_interface_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(rename = "Type", default)]
    pub interface_type: String,
    #[serde(default, deserialize_with = "lenient_opt_bool")]
    pub source_dest_check: Option<bool>,
}

impl From<RawNetworkInterface> for NetworkInterface {
    fn from(r: RawNetworkInterface) -> Self {
        Self {
            network_interface_id: r.network_interface_id,
            instance_id: r.instance_id,
            interface_type: r.interface_type,
            source_dest_check: r.source_dest_check,
        }
    }
}

/// A list that Alibaba sends either bare (`[..]`) or wrapped in an object named after its element
/// (`{"RouteEntryId": [..]}`); `null` or absent reads as empty.
pub(crate) fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L<T> {
        Bare(Vec<T>),
        Wrapped(std::collections::BTreeMap<String, Vec<T>>),
    }
    Ok(match Option::<L<T>>::deserialize(d)? {
        Some(L::Bare(v)) => v,
        Some(L::Wrapped(m)) => m.into_values().flatten().collect(),
        None => Vec::new(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInstances {
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub instances: Option<RawInstanceList>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawInstanceList {
    #[serde(rename = "Instance", default)]
    pub items: Vec<RawInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInstance {
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub host_name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub vpc_attributes: Option<RawInstanceVpc>,
    #[serde(default)]
    pub network_interfaces: Option<RawInstanceEnis>,
    #[serde(default)]
    pub tags: Option<RawTags>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInstanceVpc {
    #[serde(default)]
    pub vpc_id: String,
    #[serde(rename = "VSwitchId", default)]
    pub vswitch_id: String,
    #[serde(default)]
    pub private_ip_address: Option<RawStrings>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawInstanceEnis {
    #[serde(rename = "NetworkInterface", default)]
    pub items: Vec<RawInstanceEni>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInstanceEni {
    #[serde(default)]
    pub network_interface_id: String,
    #[serde(default)]
    pub primary_ip_address: String,
    #[serde(rename = "Type", default)]
    pub interface_type: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawTags {
    #[serde(rename = "Tag", default)]
    pub items: Vec<RawTag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawTag {
    #[serde(default)]
    pub tag_key: String,
    #[serde(default)]
    pub tag_value: String,
}

impl From<RawInstance> for Instance {
    fn from(r: RawInstance) -> Self {
        let vpc = r.vpc_attributes.unwrap_or_default();
        let enis = r.network_interfaces.unwrap_or_default().items;
        let primary = enis
            .iter()
            .find(|n| n.interface_type.eq_ignore_ascii_case("Primary"))
            .or_else(|| enis.first());
        let private_ip = vpc
            .private_ip_address
            .unwrap_or_default()
            .items
            .iter()
            .chain(primary.map(|n| &n.primary_ip_address))
            .find_map(|ip| ip.trim().parse().ok());
        Self {
            instance_id: r.instance_id,
            hostname: r.host_name,
            status: InstanceStatus::parse(&r.status),
            vpc_id: vpc.vpc_id,
            vswitch_id: vpc.vswitch_id,
            private_ip,
            eni_id: primary
                .map(|n| n.network_interface_id.clone())
                .filter(|id| !id.is_empty()),
            tags: r
                .tags
                .unwrap_or_default()
                .items
                .into_iter()
                .map(|t| Tag {
                    key: t.tag_key,
                    value: t.tag_value,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawBatchResult {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub success_count: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub failed_count: u64,
    #[serde(default, deserialize_with = "lenient_list")]
    pub route_entry_ids: Vec<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub failed_route_entries: Vec<RawBatchFailure>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawBatchFailure {
    #[serde(default)]
    pub dst_cidr_block: String,
    #[serde(default)]
    pub next_hop: String,
    #[serde(default)]
    pub failed_code: String,
    #[serde(default)]
    pub failed_message: String,
}

impl From<RawBatchResult> for BatchResult {
    fn from(r: RawBatchResult) -> Self {
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            success_count: count(r.success_count),
            failed_count: count(r.failed_count),
            route_entry_ids: r.route_entry_ids,
            failed: r
                .failed_route_entries
                .into_iter()
                .map(|f| BatchFailure {
                    destination_cidr_block: f.dst_cidr_block,
                    next_hop: f.next_hop,
                    code: f.failed_code,
                    message: f.failed_message,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wire_shapes() {
        let v = serde_json::json!({
            "RequestId": "r", "NextToken": "",
            "RouteEntrys": {"RouteEntry": [{
                "RouteEntryId": "rte-1", "RouteTableId": "vtb-1", "DestinationCidrBlock": "10.1.0.0/24",
                "RouteEntryName": "crossdock", "Description": "crossdock:i-1", "Type": "Custom",
                "Status": "Available",
                "NextHops": {"NextHop": [{"NextHopType": "Instance", "NextHopId": "i-1", "Enabled": 1, "Weight": 0}]}
            }]}
        });
        let raw: RawRouteEntryList = serde_json::from_value(v).unwrap();
        let e: RouteEntry = raw
            .route_entrys
            .unwrap()
            .items
            .into_iter()
            .next()
            .unwrap()
            .into();
        assert_eq!(e.instance_next_hop(), Some("i-1"));
        assert!(e.is_available());
        assert_eq!(e.name, "crossdock");

        let v = serde_json::json!({"TotalCount": "2", "RouterTableList": {"RouterTableListType": [
            {"RouteTableId": "vtb-1", "RouteTableType": "System", "VSwitchIds": {"VSwitchId": ["vsw-1"]}},
            {"RouteTableId": "vtb-2", "RouteTableType": "Custom"}
        ]}});
        let raw: RawRouteTableList = serde_json::from_value(v).unwrap();
        assert_eq!(raw.total_count, 2);
        let t: Vec<RouteTable> = raw
            .router_table_list
            .unwrap()
            .items
            .into_iter()
            .map(Into::into)
            .collect();
        assert!(t[0].is_system() && t[0].vswitch_ids == ["vsw-1"]);
        assert!(t[1].vswitch_ids.is_empty());

        let v = serde_json::json!({"NetworkInterfaceSets": {"NetworkInterfaceSet": [
            {"NetworkInterfaceId": "eni-1", "SourceDestCheck": "true", "Type": "Primary"}]}});
        let raw: RawNetworkInterfaces = serde_json::from_value(v).unwrap();
        assert_eq!(
            raw.network_interface_sets.unwrap().items[0].source_dest_check,
            Some(true)
        );

        let v = serde_json::json!({"VpcId": "vpc-1", "CidrBlock": "192.168.0.0/16",
            "SecondaryCidrBlocks": {"SecondaryCidrBlock": ["172.16.0.0/16"]}, "UserCidrs": {"UserCidr": []}});
        let a: VpcAttribute = serde_json::from_value::<RawVpcAttribute>(v).unwrap().into();
        assert_eq!(a.secondary_cidr_blocks, ["172.16.0.0/16"]);
    }

    #[test]
    fn reads_instances_with_fallbacks_for_missing_parts() {
        let v = serde_json::json!({"NextToken": "", "Instances": {"Instance": [
            // No VpcAttributes IP: the primary ENI's address; no Primary type: the first ENI.
            {"InstanceId": "i-1", "Status": "stopped",
             "VpcAttributes": {"VpcId": "vpc-1", "PrivateIpAddress": {"IpAddress": []}},
             "NetworkInterfaces": {"NetworkInterface": [
                {"NetworkInterfaceId": "eni-9", "PrimaryIpAddress": "192.168.3.4"}]}},
            // An unparsable IP is no IP; an empty ENI id is no ENI; null wrappers are empty.
            {"InstanceId": "i-2", "Status": "Running",
             "VpcAttributes": {"PrivateIpAddress": {"IpAddress": ["not-an-ip"]}},
             "NetworkInterfaces": {"NetworkInterface": [{"NetworkInterfaceId": "", "Type": "Primary"}]},
             "Tags": null},
        ]}});
        let raw: RawInstances = serde_json::from_value(v).unwrap();
        let got: Vec<Instance> = raw
            .instances
            .unwrap()
            .items
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(got[0].status, InstanceStatus::Stopped);
        assert_eq!(got[0].private_ip, Some("192.168.3.4".parse().unwrap()));
        assert_eq!(got[0].eni_id.as_deref(), Some("eni-9"));
        assert_eq!((got[1].private_ip, got[1].eni_id.clone()), (None, None));
        assert!(got[1].tags.is_empty());
        for s in [
            "Pending", "Starting", "Running", "Stopping", "Stopped", "Deleted",
        ] {
            assert_eq!(InstanceStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            serde_json::to_value(InstanceStatus::Running).unwrap(),
            "Running"
        );
    }

    #[test]
    fn reads_batch_answers_bare_or_wrapped() {
        let bare: BatchResult = serde_json::from_value::<RawBatchResult>(serde_json::json!({
            "SuccessCount": "2", "FailedCount": 0, "RouteEntryIds": ["rte-1", "rte-2"],
            "FailedRouteEntries": []}))
        .unwrap()
        .into();
        let wrapped: BatchResult = serde_json::from_value::<RawBatchResult>(serde_json::json!({
            "SuccessCount": 2, "RouteEntryIds": {"RouteEntryId": ["rte-1", "rte-2"]},
            "FailedRouteEntries": {"FailedRouteEntry": []}}))
        .unwrap()
        .into();
        assert_eq!(bare, wrapped);
        assert_eq!(bare.route_entry_ids, ["rte-1", "rte-2"]);
        let empty: BatchResult =
            serde_json::from_value::<RawBatchResult>(serde_json::json!({"RouteEntryIds": null}))
                .unwrap()
                .into();
        assert_eq!(empty, BatchResult::default());
        let dup = |code: &str| BatchFailure {
            destination_cidr_block: "10.0.0.0/24".into(),
            next_hop: "i-1".into(),
            code: code.into(),
            message: String::new(),
        };
        assert!(dup("VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE").is_duplicate());
        assert!(dup("InvalidCIDRBlock.Duplicate").is_duplicate());
        assert!(!dup("QuotaExceeded").is_duplicate());
    }

    #[test]
    fn client_token_is_deterministic_and_short() {
        let a = client_token("i-1", "10.1.0.0/24", "vtb-1", 0);
        assert_eq!(a, client_token("i-1", "10.1.0.0/24", "vtb-1", 0));
        assert_ne!(a, client_token("i-2", "10.1.0.0/24", "vtb-1", 0));
        assert_ne!(a, client_token("i-1", "10.1.1.0/24", "vtb-1", 0));
        assert_ne!(a, client_token("i-1", "10.1.0.0/24", "vtb-2", 0));
        assert_ne!(a, client_token("i-1", "10.1.0.0/24", "vtb-1", 1));
        assert!(a.len() <= 64 && a.is_ascii());
    }
}
