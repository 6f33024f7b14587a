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
