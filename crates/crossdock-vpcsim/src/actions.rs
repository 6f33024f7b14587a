//! The VPC (2016-04-28) and ECS (2014-05-26) actions, with Alibaba's request and response field names
//! (including its spellings: `RouteEntrys.RouteEntry`, `RouterTableList.RouterTableListType`).
//!
//! Each action is a function of the core and the request's parameters, so the rules (one route write at a
//! time per VPC, duplicates, vSwitch overlap, quota, unknown next hops) are tested without HTTP.

use crate::error::ApiError;
use crate::model::{iso, now_ms, EntryType, Instance, RouteEntry, RouteStatus, State};
use crate::sim::Core;
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const VPC_VERSION: &str = "2016-04-28";
pub const ECS_VERSION: &str = "2014-05-26";

/// What the dispatcher knows about an action.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub name: &'static str,
    /// `vpc` or `ecs` (RAM product prefix).
    pub product: &'static str,
    pub version: &'static str,
    pub write: bool,
    /// Serialised per VPC with the route table's other writes.
    pub route_write: bool,
    pub run: fn(&mut Core, &Params) -> Result<Value, ApiError>,
}

const fn vpc(
    name: &'static str,
    write: bool,
    run: fn(&mut Core, &Params) -> Result<Value, ApiError>,
) -> ActionSpec {
    ActionSpec {
        name,
        product: "vpc",
        version: VPC_VERSION,
        write,
        route_write: write,
        run,
    }
}

const fn ecs(
    name: &'static str,
    write: bool,
    run: fn(&mut Core, &Params) -> Result<Value, ApiError>,
) -> ActionSpec {
    ActionSpec {
        name,
        product: "ecs",
        version: ECS_VERSION,
        write,
        route_write: false,
        run,
    }
}

pub static ACTIONS: &[ActionSpec] = &[
    vpc("CreateRouteEntry", true, create_route_entry),
    vpc("CreateRouteEntries", true, create_route_entries),
    vpc("DeleteRouteEntry", true, delete_route_entry),
    vpc("DeleteRouteEntries", true, delete_route_entries),
    vpc("DescribeRouteEntryList", false, describe_route_entry_list),
    vpc("DescribeRouteTableList", false, describe_route_table_list),
    vpc("DescribeVSwitches", false, describe_vswitches),
    vpc("DescribeVpcAttribute", false, describe_vpc_attribute),
    vpc("DescribeVpcs", false, describe_vpcs),
    ecs("DescribeInstances", false, describe_instances),
    ecs(
        "DescribeNetworkInterfaces",
        false,
        describe_network_interfaces,
    ),
    ecs(
        "DescribeNetworkInterfaceAttribute",
        false,
        describe_network_interface_attribute,
    ),
    ecs(
        "ModifyNetworkInterfaceAttribute",
        true,
        modify_network_interface_attribute,
    ),
];

pub fn find(action: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == action)
}

/// A request's parameters (query and form body, decoded).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::missing(name))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(
                name,
                format!("`{v}` is not true or false"),
            )),
        }
    }

    pub fn int(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(
                    name,
                    format!("`{v}` is not a number from {min} to {max}"),
                )),
            },
        }
    }

    /// `Prefix.1.Field`, `Prefix.2.Field`, ... as a list of maps (1-based, in index order).
    pub fn objects(&self, prefix: &str) -> Result<Vec<BTreeMap<String, String>>, ApiError> {
        let mut by_index: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
        let lead = format!("{prefix}.");
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(&lead) else {
                continue;
            };
            let (idx, field) = rest.split_once('.').unwrap_or((rest, ""));
            let idx: usize =
                idx.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::invalid(k, "the list index must be a number from 1")
                })?;
            by_index
                .entry(idx)
                .or_default()
                .insert(field.to_string(), v.clone());
        }
        Ok(by_index.into_values().collect())
    }

    /// `Name.1`, `Name.2`, ... values (1-based, in index order).
    pub fn repeated(&self, name: &str) -> Vec<String> {
        let lead = format!("{name}.");
        let mut v: Vec<(usize, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(&lead)
                    .and_then(|i| i.parse().ok())
                    .map(|i| (i, v.clone()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// A JSON array given as a string parameter (`InstanceIds=["i-1","i-2"]`).
    pub fn json_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                serde_json::from_str::<Vec<String>>(v)
                    .map(Some)
                    .map_err(|_| {
                        ApiError::bad(
                    &format!("Invalid{name}.Malformed"),
                    format!("The specified parameter \"{name}\" is not a JSON array of strings."),
                )
                    })
            }
        }
    }
}

// ----- shared checks -----

fn check_region(state: &State, p: &Params, required: bool) -> Result<(), ApiError> {
    match p.get("RegionId") {
        None if required => Err(ApiError::missing("RegionId")),
        None => Ok(()),
        Some(r) if r == state.region_id => Ok(()),
        Some(r) => Err(ApiError::not_found(
            "InvalidRegionId.NotFound",
            format!(
                "The specified RegionId `{r}` does not exist (this VPC is in {}).",
                state.region_id
            ),
        )),
    }
}

/// A destination CIDR as Alibaba reads it: no mask = /32; host bits must be zero.
pub fn parse_cidr(param: &str, v: &str) -> Result<Ipv4Net, ApiError> {
    let malformed = || {
        ApiError::bad(
            "InvalidCidrBlock.Malformed",
            format!("The specified {param} `{v}` is not a valid IPv4 CIDR block."),
        )
    };
    let net: Ipv4Net = if v.contains('/') {
        v.parse().map_err(|_| malformed())?
    } else {
        Ipv4Net::new(v.parse::<Ipv4Addr>().map_err(|_| malformed())?, 32)
            .map_err(|_| malformed())?
    };
    if net.trunc() != net {
        return Err(malformed());
    }
    Ok(net)
}

fn table_or_404<'s>(state: &'s State, id: &str) -> Result<&'s crate::model::RouteTable, ApiError> {
    state.table(id).ok_or_else(|| {
        ApiError::not_found(
            "InvalidRouteTableId.NotFound",
            format!("The specified route table `{id}` does not exist."),
        )
    })
}

/// A route write may start only when no entry of the VPC is in transition.
fn check_vpc_idle(state: &State) -> Result<(), ApiError> {
    if let Some(e) = state.entries.iter().find(|e| e.status.is_busy()) {
        return Err(ApiError::incorrect_route_status(format!(
            "route entry {} ({}) is {}; one route write at a time per VPC",
            e.route_entry_id,
            e.destination_cidr_block,
            e.status.as_str()
        )));
    }
    Ok(())
}

/// Resolves a next hop; `Instance` and `NetworkInterface` hops must exist in the VPC.
fn check_next_hop(state: &State, kind: &str, id: &str) -> Result<(), ApiError> {
    let found = match kind {
        "Instance" => state.instance(id).is_some(),
        "NetworkInterface" => state.instance_by_eni(id).is_some(),
        other => {
            return Err(ApiError::bad(
                "IllegalParam.NextHopType",
                format!("The next hop type `{other}` is not supported by this VPC (use Instance or NetworkInterface)."),
            ))
        }
    };
    if !found {
        return Err(ApiError::not_found(
            "InvalidNextHopId.NotFound",
            format!("The specified next hop `{id}` ({kind}) does not exist in this VPC."),
        ));
    }
    Ok(())
}

/// Rules for a new custom entry (besides the one-write-at-a-time rule). `dup_code` differs between the
/// single and the batch action.
fn check_new_entry(
    core: &Core,
    table_id: &str,
    dst: Ipv4Net,
    kind: &str,
    next_hop: &str,
    dup_code: &str,
    batch_so_far: &[(String, Ipv4Net)],
) -> Result<(), ApiError> {
    let state = &core.state;
    table_or_404(state, table_id)?;
    for v in &state.vswitches {
        if v.cidr_block.contains(&dst) {
            return Err(ApiError::bad(
                "InvalidCidrBlock",
                format!(
                    "The destination CIDR block {dst} is the same as or inside the CIDR block {} of vSwitch {}.",
                    v.cidr_block, v.vswitch_id
                ),
            ));
        }
    }
    if crate::model::cloud_service_cidr().contains(&dst) {
        return Err(ApiError::bad(
            "InvalidCidrBlock",
            format!("The destination CIDR block {dst} is inside 100.64.0.0/10, which is reserved for cloud services."),
        ));
    }
    let duplicate = state
        .entries
        .iter()
        .any(|e| e.route_table_id == table_id && e.destination_cidr_block == dst)
        || batch_so_far.iter().any(|(t, d)| t == table_id && *d == dst);
    if duplicate {
        return Err(ApiError::bad(
            dup_code,
            format!("The destination CIDR block {dst} already exists in route table {table_id}."),
        ));
    }
    check_next_hop(state, kind, next_hop)?;
    let custom = state
        .entries
        .iter()
        .filter(|e| e.route_table_id == table_id && e.entry_type == EntryType::Custom)
        .count()
        + batch_so_far.iter().filter(|(t, _)| t == table_id).count();
    if custom >= core.settings.route_entry_quota {
        return Err(ApiError::bad(
            "QuotaExceeded",
            format!(
                "Route entry quota exceeded in route table {table_id}: {} custom entries at most.",
                core.settings.route_entry_quota
            ),
        ));
    }
    Ok(())
}

fn check_len(param: &str, v: Option<&str>, max: usize) -> Result<String, ApiError> {
    let v = v.unwrap_or_default();
    if v.chars().count() > max || v.starts_with("http://") || v.starts_with("https://") {
        return Err(ApiError::bad(
            &format!("Invalid{param}.Malformed"),
            format!("The specified {param} must be 1 to {max} characters and must not start with http:// or https://."),
        ));
    }
    Ok(v.to_string())
}

fn insert_entry(
    core: &mut Core,
    table_id: &str,
    dst: Ipv4Net,
    kind: &str,
    next_hop: &str,
    name: String,
    description: String,
) -> String {
    let now = now_ms();
    let pending = core.settings.pending_ms as i64;
    let id = core.state.new_id("rte-");
    let seq = core.state.take_seq();
    core.state.entries.push(RouteEntry {
        route_entry_id: id.clone(),
        route_table_id: table_id.to_string(),
        destination_cidr_block: dst,
        entry_type: EntryType::Custom,
        status: if pending > 0 {
            RouteStatus::Pending
        } else {
            RouteStatus::Available
        },
        next_hop_type: kind.to_string(),
        next_hop_id: next_hop.to_string(),
        route_entry_name: name,
        description,
        status_until_ms: (pending > 0).then_some(now + pending),
        seq,
        created_at_ms: now,
        modified_at_ms: now,
    });
    id
}

/// Starts the deletion of an entry (`Deleting`, then gone).
fn start_delete(core: &mut Core, entry_id: &str) {
    let now = now_ms();
    let deleting = core.settings.deleting_ms as i64;
    if deleting <= 0 {
        core.state.entries.retain(|e| e.route_entry_id != entry_id);
        return;
    }
    if let Some(e) = core
        .state
        .entries
        .iter_mut()
        .find(|e| e.route_entry_id == entry_id)
    {
        e.status = RouteStatus::Deleting;
        e.status_until_ms = Some(now + deleting);
        e.modified_at_ms = now;
    }
}

fn check_deletable(e: &RouteEntry) -> Result<(), ApiError> {
    if e.entry_type == EntryType::System {
        return Err(ApiError::bad(
            "OperationDenied",
            format!(
                "The route entry {} is a system route and cannot be deleted.",
                e.route_entry_id
            ),
        ));
    }
    if e.status != RouteStatus::Available {
        return Err(ApiError::incorrect_route_status(format!(
            "route entry {} is {}; only Available entries can be deleted",
            e.route_entry_id,
            e.status.as_str()
        )));
    }
    Ok(())
}

fn entry_not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(
        "InvalidRouteEntryId.NotFound",
        format!("The specified route entry does not exist: {what}."),
    )
}

// ----- route writes -----

fn create_route_entry(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, false)?;
    let table = p.required("RouteTableId")?.to_string();
    let dst = parse_cidr("DestinationCidrBlock", p.required("DestinationCidrBlock")?)?;
    let mut kind = p.get("NextHopType").unwrap_or("Instance").to_string();
    let mut hop = p.get("NextHopId").map(String::from);
    let list = p.objects("NextHopList")?;
    if hop.is_none() {
        if let Some(first) = list.first() {
            hop = first.get("NextHopId").cloned();
            if let Some(t) = first.get("NextHopType") {
                kind = t.clone();
            }
        }
    }
    let hop = hop.ok_or_else(|| ApiError::missing("NextHopId"))?;
    let name = check_len("RouteEntryName", p.get("RouteEntryName"), 128)?;
    let description = check_len("Description", p.get("Description"), 256)?;
    table_or_404(&core.state, &table)?;
    check_vpc_idle(&core.state)?;
    check_new_entry(
        core,
        &table,
        dst,
        &kind,
        &hop,
        "InvalidCIDRBlock.Duplicate",
        &[],
    )?;
    let id = insert_entry(core, &table, dst, &kind, &hop, name, description);
    Ok(json!({ "RouteEntryId": id }))
}

fn create_route_entries(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, true)?;
    let items = p.objects("RouteEntries")?;
    if items.is_empty() {
        return Err(ApiError::missing("RouteEntries.1.DstCidrBlock"));
    }
    if items.len() > 50 {
        return Err(ApiError::invalid(
            "RouteEntries",
            "at most 50 entries per call",
        ));
    }
    check_vpc_idle(&core.state)?;
    let mut ok: Vec<(String, Ipv4Net, String, String, String, String)> = vec![];
    let mut failed = vec![];
    for item in &items {
        let get = |k: &str| item.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let dst_raw = get("DstCidrBlock").unwrap_or_default().to_string();
        let hop = get("NextHop").unwrap_or_default().to_string();
        let outcome = (|| -> Result<(String, Ipv4Net, String, String, String), ApiError> {
            let table = get("RouteTableId")
                .ok_or_else(|| ApiError::missing("RouteEntries.N.RouteTableId"))?
                .to_string();
            let dst = parse_cidr(
                "DstCidrBlock",
                get("DstCidrBlock")
                    .ok_or_else(|| ApiError::missing("RouteEntries.N.DstCidrBlock"))?,
            )?;
            let kind = get("NextHopType")
                .ok_or_else(|| ApiError::missing("RouteEntries.N.NextHopType"))?
                .to_string();
            if hop.is_empty() {
                return Err(ApiError::missing("RouteEntries.N.NextHop"));
            }
            if get("IpVersion").is_some_and(|v| !v.eq_ignore_ascii_case("ipv4")) {
                return Err(ApiError::invalid("IpVersion", "only IPv4 is emulated"));
            }
            let name = check_len("Name", get("Name"), 128)?;
            let description = check_len("Description", get("Description"), 256)?;
            let so_far: Vec<(String, Ipv4Net)> = ok.iter().map(|o| (o.0.clone(), o.1)).collect();
            check_new_entry(
                core,
                &table,
                dst,
                &kind,
                &hop,
                "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE",
                &so_far,
            )?;
            Ok((table, dst, kind, name, description))
        })();
        match outcome {
            Ok((t, d, k, n, desc)) => ok.push((t, d, k, hop.clone(), n, desc)),
            Err(e) => failed.push(json!({
                "DstCidrBlock": dst_raw,
                "NextHop": hop,
                "FailedCode": e.code,
                "FailedMessage": e.message,
            })),
        }
    }
    let ids: Vec<String> = ok
        .into_iter()
        .map(|(t, d, k, h, n, desc)| insert_entry(core, &t, d, &k, &h, n, desc))
        .collect();
    Ok(json!({
        "SuccessCount": ids.len(),
        "FailedCount": failed.len(),
        "RouteEntryIds": ids,
        "FailedRouteEntries": failed,
    }))
}

fn delete_route_entry(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, false)?;
    let state = &core.state;
    let entry = if let Some(id) = p.get("RouteEntryId") {
        let e = state
            .entries
            .iter()
            .find(|e| e.route_entry_id == id)
            .ok_or_else(|| entry_not_found(id))?;
        if p.get("RouteTableId").is_some_and(|t| t != e.route_table_id) {
            return Err(entry_not_found(format!(
                "{id} in {}",
                p.get("RouteTableId").unwrap_or_default()
            )));
        }
        e
    } else {
        let table = p.required("RouteTableId")?;
        table_or_404(state, table)?;
        let dst = parse_cidr("DestinationCidrBlock", p.required("DestinationCidrBlock")?)?;
        let hop = p.get("NextHopId");
        state
            .entries
            .iter()
            .find(|e| {
                e.route_table_id == table
                    && e.destination_cidr_block == dst
                    && hop.is_none_or(|h| h == e.next_hop_id)
            })
            .ok_or_else(|| entry_not_found(format!("{dst} in {table}")))?
    };
    let id = entry.route_entry_id.clone();
    check_deletable(entry)?;
    check_vpc_idle(state)?;
    start_delete(core, &id);
    Ok(json!({}))
}

fn delete_route_entries(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, true)?;
    let items = p.objects("RouteEntries")?;
    if items.is_empty() {
        return Err(ApiError::missing("RouteEntries.1.RouteTableId"));
    }
    if items.len() > 50 {
        return Err(ApiError::invalid(
            "RouteEntries",
            "at most 50 entries per call",
        ));
    }
    check_vpc_idle(&core.state)?;
    let mut to_delete = vec![];
    let mut failed = vec![];
    for item in &items {
        let get = |k: &str| item.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let dst_raw = get("DstCidrBlock").unwrap_or_default().to_string();
        let hop = get("NextHop").unwrap_or_default().to_string();
        let state = &core.state;
        let outcome = (|| -> Result<String, ApiError> {
            let table = get("RouteTableId")
                .ok_or_else(|| ApiError::missing("RouteEntries.N.RouteTableId"))?;
            table_or_404(state, table)?;
            let e = if let Some(id) = get("RouteEntryId") {
                state
                    .entries
                    .iter()
                    .find(|e| e.route_entry_id == id && e.route_table_id == table)
                    .ok_or_else(|| entry_not_found(id))?
            } else {
                let dst = parse_cidr(
                    "DstCidrBlock",
                    get("DstCidrBlock")
                        .ok_or_else(|| ApiError::missing("RouteEntries.N.DstCidrBlock"))?,
                )?;
                state
                    .entries
                    .iter()
                    .find(|e| {
                        e.route_table_id == table
                            && e.destination_cidr_block == dst
                            && (hop.is_empty() || e.next_hop_id == hop)
                    })
                    .ok_or_else(|| entry_not_found(format!("{dst} in {table}")))?
            };
            check_deletable(e)?;
            Ok(e.route_entry_id.clone())
        })();
        match outcome {
            Ok(id) if !to_delete.contains(&id) => to_delete.push(id),
            Ok(_) => {}
            Err(e) => failed.push(json!({
                "DstCidrBlock": dst_raw,
                "NextHop": hop,
                "FailedCode": e.code,
                "FailedMessage": e.message,
            })),
        }
    }
    for id in &to_delete {
        start_delete(core, id);
    }
    Ok(json!({
        "SuccessCount": to_delete.len(),
        "FailedCount": failed.len(),
        "FailedRouteEntries": failed,
    }))
}

// ----- route reads -----

fn entry_json(state: &State, e: &RouteEntry) -> Value {
    let hops = if e.next_hop_type == "local" || e.next_hop_type == "service" {
        json!([{ "NextHopType": e.next_hop_type, "NextHopId": "", "Enabled": 1, "Weight": 0,
                 "NextHopRegionId": state.region_id }])
    } else {
        json!([{ "NextHopType": e.next_hop_type, "NextHopId": e.next_hop_id, "Enabled": 1, "Weight": 0,
                 "NextHopRegionId": state.region_id }])
    };
    json!({
        "RouteEntryId": e.route_entry_id,
        "RouteEntryName": e.route_entry_name,
        "RouteTableId": e.route_table_id,
        "DestinationCidrBlock": e.destination_cidr_block.to_string(),
        "Type": e.entry_type.as_str(),
        "Status": e.status.as_str(),
        "Origin": if e.entry_type == EntryType::System { "SystemCreate" } else { "CustomCreate" },
        "IpVersion": "ipv4",
        "Description": e.description,
        "GmtModified": iso(e.modified_at_ms),
        "NextHops": { "NextHop": hops },
    })
}

fn describe_route_entry_list(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let table = p.required("RouteTableId")?;
    table_or_404(state, table)?;
    let max = p.int("MaxResult", 10, 1, 100)? as usize;
    let start: u64 = match p.get("NextToken") {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::bad(
                "IllegalParam.NextToken",
                format!("The NextToken `{t}` is not valid."),
            )
        })?,
    };
    let dst = match p.get("DestinationCidrBlock") {
        Some(d) => Some(parse_cidr("DestinationCidrBlock", d)?),
        None => None,
    };
    if p.get("IpVersion")
        .is_some_and(|v| v.eq_ignore_ascii_case("ipv6"))
    {
        return Ok(json!({ "NextToken": "", "RouteEntrys": { "RouteEntry": [] } }));
    }
    let mut matching: Vec<&RouteEntry> = state
        .entries
        .iter()
        .filter(|e| e.route_table_id == table)
        .filter(|e| p.get("RouteEntryId").is_none_or(|v| v == e.route_entry_id))
        .filter(|e| {
            p.get("RouteEntryName")
                .is_none_or(|v| v == e.route_entry_name)
        })
        .filter(|e| {
            p.get("RouteEntryType")
                .is_none_or(|v| v == e.entry_type.as_str())
        })
        .filter(|e| dst.is_none_or(|d| d == e.destination_cidr_block))
        .filter(|e| p.get("NextHopId").is_none_or(|v| v == e.next_hop_id))
        .filter(|e| p.get("NextHopType").is_none_or(|v| v == e.next_hop_type))
        .filter(|e| e.seq >= start)
        .collect();
    matching.sort_by_key(|e| e.seq);
    let next = if matching.len() > max {
        matching[max].seq.to_string()
    } else {
        String::new()
    };
    let page: Vec<Value> = matching
        .iter()
        .take(max)
        .map(|e| entry_json(state, e))
        .collect();
    Ok(json!({ "NextToken": next, "RouteEntrys": { "RouteEntry": page } }))
}

/// PageNumber/PageSize paging.
fn page<T: Clone>(items: &[T], p: &Params, max_size: u64) -> Result<(Vec<T>, u64, u64), ApiError> {
    let number = p.int("PageNumber", 1, 1, u32::MAX as u64)?;
    let size = p.int("PageSize", 10, 1, max_size)?;
    let skip = ((number - 1) * size) as usize;
    Ok((
        items
            .iter()
            .skip(skip)
            .take(size as usize)
            .cloned()
            .collect(),
        number,
        size,
    ))
}

fn describe_route_table_list(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    if p.get("VpcId").is_some_and(|v| v != state.vpc.vpc_id) {
        return Ok(
            json!({ "TotalCount": 0, "PageNumber": 1, "PageSize": 10, "Success": true,
                          "Code": "200", "Message": "successful",
                          "RouterTableList": { "RouterTableListType": [] } }),
        );
    }
    let tables: Vec<&crate::model::RouteTable> = state
        .route_tables
        .iter()
        .filter(|t| p.get("RouteTableId").is_none_or(|v| v == t.route_table_id))
        .filter(|t| {
            p.get("RouteTableName")
                .is_none_or(|v| v == t.route_table_name)
        })
        .filter(|t| {
            p.get("RouteTableType")
                .is_none_or(|v| v == t.route_table_type)
        })
        .filter(|_| p.get("RouterId").is_none_or(|v| v == state.vpc.vrouter_id))
        .collect();
    let (items, number, size) = page(&tables, p, 50)?;
    let list: Vec<Value> = items
        .iter()
        .map(|t| {
            json!({
                "RouteTableId": t.route_table_id,
                "RouteTableName": t.route_table_name,
                "RouteTableType": t.route_table_type,
                "RouterId": state.vpc.vrouter_id,
                "RouterType": "VRouter",
                "VpcId": state.vpc.vpc_id,
                "Status": "Available",
                "Description": "",
                "CreationTime": iso(t.created_at_ms),
                "AssociateType": "VSwitch",
                "ResourceGroupId": "rg-lab",
                "VSwitchIds": { "VSwitchId": state.vswitches_of_table(t) },
            })
        })
        .collect();
    Ok(json!({
        "TotalCount": tables.len(),
        "PageNumber": number,
        "PageSize": size,
        "Success": true,
        "Code": "200",
        "Message": "successful",
        "RouterTableList": { "RouterTableListType": list },
    }))
}

fn describe_vswitches(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let vsws: Vec<&crate::model::VSwitch> = state
        .vswitches
        .iter()
        .filter(|_| p.get("VpcId").is_none_or(|v| v == state.vpc.vpc_id))
        .filter(|v| p.get("VSwitchId").is_none_or(|x| x == v.vswitch_id))
        .filter(|v| p.get("ZoneId").is_none_or(|x| x == v.zone_id))
        .filter(|v| {
            p.get("RouteTableId")
                .is_none_or(|x| x == state.table_of_vswitch(&v.vswitch_id))
        })
        .collect();
    let (items, number, size) = page(&vsws, p, 50)?;
    let list: Vec<Value> = items
        .iter()
        .map(|v| {
            let table = state.table_of_vswitch(&v.vswitch_id);
            let table_type = state
                .table(table)
                .map(|t| t.route_table_type.clone())
                .unwrap_or_default();
            let used = state
                .instances
                .iter()
                .filter(|i| i.vswitch_id == v.vswitch_id)
                .count() as u64;
            let size = 1u64 << (32 - v.cidr_block.prefix_len() as u64);
            json!({
                "VSwitchId": v.vswitch_id,
                "VpcId": state.vpc.vpc_id,
                "Status": "Available",
                "CidrBlock": v.cidr_block.to_string(),
                "ZoneId": v.zone_id,
                "VSwitchName": v.vswitch_name,
                "Description": "",
                "CreationTime": iso(v.created_at_ms),
                "IsDefault": false,
                "AvailableIpAddressCount": size.saturating_sub(4 + used),
                "NetworkAclId": "",
                "RouteTable": { "RouteTableId": table, "RouteTableType": table_type },
            })
        })
        .collect();
    Ok(json!({
        "TotalCount": vsws.len(),
        "PageNumber": number,
        "PageSize": size,
        "VSwitches": { "VSwitch": list },
    }))
}

fn vpc_json(state: &State) -> Value {
    json!({
        "VpcId": state.vpc.vpc_id,
        "RegionId": state.region_id,
        "Status": "Available",
        "VpcName": state.vpc.vpc_name,
        "CreationTime": iso(state.vpc.created_at_ms),
        "CidrBlock": state.vpc.cidr_block.to_string(),
        "VRouterId": state.vpc.vrouter_id,
        "Description": "",
        "IsDefault": false,
        "Ipv6CidrBlock": "",
        "SecondaryCidrBlocks": { "SecondaryCidrBlock": [] },
        "UserCidrs": { "UserCidr": [] },
        "VSwitchIds": { "VSwitchId": state.vswitches.iter().map(|v| v.vswitch_id.clone()).collect::<Vec<_>>() },
        "RouterTableIds": { "RouterTableIds": state.route_tables.iter().map(|t| t.route_table_id.clone()).collect::<Vec<_>>() },
    })
}

fn describe_vpc_attribute(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let id = p.required("VpcId")?;
    if id != state.vpc.vpc_id {
        return Err(ApiError::not_found(
            "InvalidVpcId.NotFound",
            format!("Specified VPC `{id}` does not exist."),
        ));
    }
    Ok(vpc_json(state))
}

fn describe_vpcs(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let all = if p
        .get("VpcId")
        .is_none_or(|v| v.split(',').any(|x| x == state.vpc.vpc_id))
    {
        vec![vpc_json(state)]
    } else {
        vec![]
    };
    let (items, number, size) = page(&all, p, 50)?;
    Ok(
        json!({ "TotalCount": all.len(), "PageNumber": number, "PageSize": size, "Vpcs": { "Vpc": items } }),
    )
}

// ----- ECS -----

fn instance_json(state: &State, i: &Instance) -> Value {
    json!({
        "InstanceId": i.instance_id,
        "InstanceName": i.hostname,
        "HostName": i.hostname,
        "RegionId": state.region_id,
        "ZoneId": i.zone_id,
        "Status": "Running",
        "InstanceType": "ecs.g7.large",
        "InstanceNetworkType": "vpc",
        "CreationTime": iso(i.created_at_ms),
        "VpcAttributes": {
            "VpcId": state.vpc.vpc_id,
            "VSwitchId": i.vswitch_id,
            "PrivateIpAddress": { "IpAddress": [i.private_ip.to_string()] },
            "NatIpAddress": "",
        },
        "NetworkInterfaces": { "NetworkInterface": [{
            "NetworkInterfaceId": i.eni_id,
            "MacAddress": i.mac,
            "PrimaryIpAddress": i.private_ip.to_string(),
            "Type": "Primary",
            "PrivateIpSets": { "PrivateIpSet": [{ "PrivateIpAddress": i.private_ip.to_string(), "Primary": true }] },
        }]},
    })
}

/// MaxResults/NextToken paging (token = index of the next item).
fn token_page<T: Clone>(items: &[T], p: &Params, max: u64) -> Result<(Vec<T>, String), ApiError> {
    let size = p.int("MaxResults", 10, 1, max)? as usize;
    let start: usize = match p.get("NextToken") {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::bad(
                "InvalidNextToken.Malformed",
                format!("The NextToken `{t}` is not valid."),
            )
        })?,
    };
    let page: Vec<T> = items.iter().skip(start).take(size).cloned().collect();
    let next = if start + size < items.len() {
        (start + size).to_string()
    } else {
        String::new()
    };
    Ok((page, next))
}

fn describe_instances(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let ids = p.json_list("InstanceIds")?;
    let ips = p.json_list("PrivateIpAddresses")?;
    let list: Vec<&Instance> = state
        .instances
        .iter()
        .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.instance_id)))
        .filter(|i| {
            ips.as_ref()
                .is_none_or(|ips| ips.contains(&i.private_ip.to_string()))
        })
        .filter(|_| p.get("VpcId").is_none_or(|v| v == state.vpc.vpc_id))
        .filter(|i| p.get("VSwitchId").is_none_or(|v| v == i.vswitch_id))
        .filter(|i| p.get("ZoneId").is_none_or(|v| v == i.zone_id))
        .filter(|i| p.get("InstanceName").is_none_or(|v| v == i.hostname))
        .collect();
    let total = list.len();
    if p.get("MaxResults").is_some() || p.get("NextToken").is_some() {
        let (items, next) = token_page(&list, p, 100)?;
        let v: Vec<Value> = items.iter().map(|i| instance_json(state, i)).collect();
        return Ok(
            json!({ "TotalCount": total, "NextToken": next, "Instances": { "Instance": v } }),
        );
    }
    let (items, number, size) = page(&list, p, 100)?;
    let v: Vec<Value> = items.iter().map(|i| instance_json(state, i)).collect();
    Ok(
        json!({ "TotalCount": total, "PageNumber": number, "PageSize": size, "NextToken": "",
               "Instances": { "Instance": v } }),
    )
}

fn eni_json(state: &State, i: &Instance) -> Value {
    json!({
        "NetworkInterfaceId": i.eni_id,
        "NetworkInterfaceName": "",
        "InstanceId": i.instance_id,
        "MacAddress": i.mac,
        "PrivateIpAddress": i.private_ip.to_string(),
        "VpcId": state.vpc.vpc_id,
        "VSwitchId": i.vswitch_id,
        "ZoneId": i.zone_id,
        "Status": "InUse",
        "Type": "Primary",
        "CreationTime": iso(i.created_at_ms),
        "SourceDestCheck": i.source_dest_check,
        "PrivateIpSets": { "PrivateIpSet": [{ "PrivateIpAddress": i.private_ip.to_string(), "Primary": true }] },
    })
}

fn describe_network_interfaces(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let ids = p.repeated("NetworkInterfaceId");
    let list: Vec<&Instance> = state
        .instances
        .iter()
        .filter(|i| ids.is_empty() || ids.contains(&i.eni_id))
        .filter(|i| p.get("InstanceId").is_none_or(|v| v == i.instance_id))
        .filter(|_| p.get("VpcId").is_none_or(|v| v == state.vpc.vpc_id))
        .filter(|i| p.get("VSwitchId").is_none_or(|v| v == i.vswitch_id))
        .filter(|i| {
            p.get("PrimaryIpAddress")
                .is_none_or(|v| v == i.private_ip.to_string())
        })
        .filter(|_| p.get("Type").is_none_or(|v| v == "Primary"))
        .collect();
    let total = list.len();
    if p.get("MaxResults").is_some() || p.get("NextToken").is_some() {
        let (items, next) = token_page(&list, p, 500)?;
        let v: Vec<Value> = items.iter().map(|i| eni_json(state, i)).collect();
        return Ok(json!({ "TotalCount": total, "NextToken": next,
                          "NetworkInterfaceSets": { "NetworkInterfaceSet": v } }));
    }
    let (items, number, size) = page(&list, p, 1000)?;
    let v: Vec<Value> = items.iter().map(|i| eni_json(state, i)).collect();
    Ok(
        json!({ "TotalCount": total, "PageNumber": number, "PageSize": size, "NextToken": "",
               "NetworkInterfaceSets": { "NetworkInterfaceSet": v } }),
    )
}

fn eni_or_404<'s>(state: &'s State, p: &Params) -> Result<&'s Instance, ApiError> {
    let id = p.required("NetworkInterfaceId")?;
    state.instance_by_eni(id).ok_or_else(|| {
        ApiError::not_found(
            "InvalidEniId.NotFound",
            format!("The specified NetworkInterfaceId `{id}` does not exist."),
        )
    })
}

fn describe_network_interface_attribute(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    Ok(eni_json(state, eni_or_404(state, p)?))
}

fn modify_network_interface_attribute(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, true)?;
    let eni = eni_or_404(&core.state, p)?.eni_id.clone();
    let check = p.bool("SourceDestCheck")?;
    if let Some(i) = core.state.instances.iter_mut().find(|i| i.eni_id == eni) {
        if let Some(c) = check {
            i.source_dest_check = c;
        }
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{Faults, Settings};
    use crate::model::Bootstrap;

    fn core() -> Core {
        let mut state = State::bootstrap(&Bootstrap::default());
        for (n, ip) in [("h1", "192.168.1.11"), ("h2", "192.168.1.12")] {
            let id = state.new_id("i-");
            let eni = state.new_id("eni-");
            let mac = state.new_mac();
            let vsw = state.vswitches[0].vswitch_id.clone();
            state.instances.push(Instance {
                instance_id: id,
                hostname: n.into(),
                private_ip: ip.parse().unwrap(),
                port: None,
                vswitch_id: vsw,
                zone_id: "z".into(),
                eni_id: eni,
                mac,
                source_dest_check: true,
                ram_role: None,
                created_at_ms: 0,
            });
        }
        Core {
            state,
            faults: Faults::default(),
            settings: Settings::default(),
            route_write_in_flight: false,
        }
    }

    fn params(v: &[(&str, &str)]) -> Params {
        Params(
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn create(c: &mut Core, dst: &str, inst: usize) -> Result<Value, ApiError> {
        let table = c.state.system_table_id().to_string();
        let hop = c.state.instances[inst].instance_id.clone();
        create_route_entry(
            c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("RouteTableId", &table),
                ("DestinationCidrBlock", dst),
                ("NextHopType", "Instance"),
                ("NextHopId", &hop),
            ]),
        )
    }

    fn settle(c: &mut Core) {
        crate::sim::advance_core(c, i64::MAX - 1);
    }

    #[test]
    fn a_new_route_is_pending_then_available() {
        let mut c = core();
        let id = create(&mut c, "10.1.0.0/24", 0).unwrap()["RouteEntryId"]
            .as_str()
            .unwrap()
            .to_string();
        let e = c
            .state
            .entries
            .iter()
            .find(|e| e.route_entry_id == id)
            .unwrap();
        assert_eq!(e.status, RouteStatus::Pending);
        let until = e.status_until_ms.unwrap();
        crate::sim::advance_core(&mut c, until - 1);
        assert_eq!(
            c.state
                .entries
                .iter()
                .find(|e| e.route_entry_id == id)
                .unwrap()
                .status,
            RouteStatus::Pending
        );
        crate::sim::advance_core(&mut c, until);
        assert_eq!(
            c.state
                .entries
                .iter()
                .find(|e| e.route_entry_id == id)
                .unwrap()
                .status,
            RouteStatus::Available
        );
    }

    #[test]
    fn writes_are_serial_per_vpc() {
        let mut c = core();
        create(&mut c, "10.1.0.0/24", 0).unwrap();
        let e = create(&mut c, "10.2.0.0/24", 1).unwrap_err();
        assert_eq!(e.code, "IncorrectRouteEntryStatus");
        let id = c.state.entries.last().unwrap().route_entry_id.clone();
        let del = delete_route_entry(&mut c, &params(&[("RouteEntryId", &id)])).unwrap_err();
        assert_eq!(del.code, "IncorrectRouteEntryStatus");
        settle(&mut c);
        create(&mut c, "10.2.0.0/24", 1).unwrap();
    }

    #[test]
    fn duplicate_overlap_reserved_and_unknown_hops_are_refused() {
        let mut c = core();
        c.settings.pending_ms = 0;
        create(&mut c, "10.1.0.0/24", 0).unwrap();
        assert_eq!(
            create(&mut c, "10.1.0.0/24", 1).unwrap_err().code,
            "InvalidCIDRBlock.Duplicate"
        );
        assert_eq!(
            create(&mut c, "192.168.1.0/24", 1).unwrap_err().code,
            "InvalidCidrBlock"
        );
        assert_eq!(
            create(&mut c, "192.168.1.128/25", 1).unwrap_err().code,
            "InvalidCidrBlock"
        );
        // wider than the vSwitch is allowed
        create(&mut c, "192.168.0.0/16", 1).unwrap();
        assert_eq!(
            create(&mut c, "100.100.100.0/24", 1).unwrap_err().code,
            "InvalidCidrBlock"
        );
        assert_eq!(
            create(&mut c, "10.3.0.1/24", 1).unwrap_err().code,
            "InvalidCidrBlock.Malformed"
        );
        // no mask = /32
        create(&mut c, "10.9.9.9", 1).unwrap();
        assert!(c
            .state
            .entries
            .iter()
            .any(|e| e.destination_cidr_block.to_string() == "10.9.9.9/32"));
        let table = c.state.system_table_id().to_string();
        let e = create_route_entry(
            &mut c,
            &params(&[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.4.0.0/24"),
                ("NextHopId", "i-nope"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InvalidNextHopId.NotFound", 404)
        );
        let e = create_route_entry(
            &mut c,
            &params(&[
                ("RouteTableId", "vtb-nope"),
                ("DestinationCidrBlock", "10.4.0.0/24"),
                ("NextHopId", "i-nope"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InvalidRouteTableId.NotFound", 404)
        );
    }

    #[test]
    fn quota_is_enforced_per_table() {
        let mut c = core();
        c.settings.pending_ms = 0;
        c.settings.route_entry_quota = 3;
        for i in 0..3 {
            create(&mut c, &format!("10.{i}.0.0/24"), 0).unwrap();
        }
        assert_eq!(
            create(&mut c, "10.200.0.0/24", 0).unwrap_err().code,
            "QuotaExceeded"
        );
    }

    #[test]
    fn delete_finds_entries_by_id_or_destination() {
        let mut c = core();
        c.settings.pending_ms = 0;
        c.settings.deleting_ms = 0;
        let id = create(&mut c, "10.1.0.0/24", 0).unwrap()["RouteEntryId"]
            .as_str()
            .unwrap()
            .to_string();
        let e = delete_route_entry(&mut c, &params(&[("RouteEntryId", "rte-nope")])).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InvalidRouteEntryId.NotFound", 404)
        );
        delete_route_entry(&mut c, &params(&[("RouteEntryId", &id)])).unwrap();
        assert!(!c.state.entries.iter().any(|e| e.route_entry_id == id));
        create(&mut c, "10.1.0.0/24", 0).unwrap();
        let table = c.state.system_table_id().to_string();
        delete_route_entry(
            &mut c,
            &params(&[
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.1.0.0/24"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.state
                .entries
                .iter()
                .filter(|e| e.entry_type == EntryType::Custom)
                .count(),
            0
        );
        let sys = c.state.entries[0].route_entry_id.clone();
        assert_eq!(
            delete_route_entry(&mut c, &params(&[("RouteEntryId", &sys)]))
                .unwrap_err()
                .code,
            "OperationDenied"
        );
    }

    #[test]
    fn batch_create_reports_failures_per_entry() {
        let mut c = core();
        let table = c.state.system_table_id().to_string();
        let h0 = c.state.instances[0].instance_id.clone();
        let p = params(&[
            ("RegionId", "cn-hangzhou"),
            ("RouteEntries.1.RouteTableId", &table),
            ("RouteEntries.1.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.1.NextHop", &h0),
            ("RouteEntries.1.NextHopType", "Instance"),
            ("RouteEntries.2.RouteTableId", &table),
            ("RouteEntries.2.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.2.NextHop", &h0),
            ("RouteEntries.2.NextHopType", "Instance"),
            ("RouteEntries.3.RouteTableId", &table),
            ("RouteEntries.3.DstCidrBlock", "10.2.0.0/24"),
            ("RouteEntries.3.NextHop", "i-missing"),
            ("RouteEntries.3.NextHopType", "Instance"),
        ]);
        let r = create_route_entries(&mut c, &p).unwrap();
        assert_eq!(r["SuccessCount"], 1);
        assert_eq!(r["FailedCount"], 2);
        assert_eq!(
            r["FailedRouteEntries"][0]["FailedCode"],
            "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE"
        );
        assert_eq!(
            r["FailedRouteEntries"][1]["FailedCode"],
            "InvalidNextHopId.NotFound"
        );
        // while that entry is pending the next batch is refused as a whole
        assert_eq!(
            create_route_entries(&mut c, &p).unwrap_err().code,
            "IncorrectRouteEntryStatus"
        );
        settle(&mut c);
        let d = params(&[
            ("RegionId", "cn-hangzhou"),
            ("RouteEntries.1.RouteTableId", &table),
            ("RouteEntries.1.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.1.NextHop", &h0),
            ("RouteEntries.2.RouteTableId", &table),
            ("RouteEntries.2.DstCidrBlock", "10.7.0.0/24"),
        ]);
        let r = delete_route_entries(&mut c, &d).unwrap();
        assert_eq!(
            (r["SuccessCount"].as_u64(), r["FailedCount"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            r["FailedRouteEntries"][0]["FailedCode"],
            "InvalidRouteEntryId.NotFound"
        );
    }

    #[test]
    fn entry_list_pages_with_next_token_and_filters() {
        let mut c = core();
        c.settings.pending_ms = 0;
        for i in 0..25 {
            create(&mut c, &format!("10.{i}.0.0/24"), i % 2).unwrap();
        }
        let table = c.state.system_table_id().to_string();
        let mut token = String::new();
        let mut seen = vec![];
        loop {
            let mut p = vec![
                ("RegionId", "cn-hangzhou"),
                ("RouteTableId", table.as_str()),
                ("MaxResult", "10"),
            ];
            if !token.is_empty() {
                p.push(("NextToken", token.as_str()));
            }
            let r = describe_route_entry_list(&mut c, &params(&p)).unwrap();
            for e in r["RouteEntrys"]["RouteEntry"].as_array().unwrap() {
                seen.push(e["RouteEntryId"].as_str().unwrap().to_string());
            }
            token = r["NextToken"].as_str().unwrap().to_string();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen.len(), 27); // 25 custom + 2 system
        let h1 = c.state.instances[1].instance_id.clone();
        let r = describe_route_entry_list(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("RouteTableId", &table),
                ("NextHopId", &h1),
                ("MaxResult", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(r["RouteEntrys"]["RouteEntry"].as_array().unwrap().len(), 12);
        let r = describe_route_entry_list(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("RouteTableId", &table),
                ("RouteEntryType", "System"),
            ]),
        )
        .unwrap();
        assert_eq!(r["RouteEntrys"]["RouteEntry"].as_array().unwrap().len(), 2);
        let e = &describe_route_entry_list(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("RouteTableId", &table),
                ("DestinationCidrBlock", "10.3.0.0/24"),
            ]),
        )
        .unwrap()["RouteEntrys"]["RouteEntry"][0];
        assert_eq!(e["Status"], "Available");
        assert_eq!(e["Type"], "Custom");
        assert_eq!(e["NextHops"]["NextHop"][0]["NextHopType"], "Instance");
        assert_eq!(
            describe_route_entry_list(
                &mut c,
                &params(&[
                    ("RegionId", "cn-hangzhou"),
                    ("RouteTableId", &table),
                    ("MaxResult", "101")
                ])
            )
            .unwrap_err()
            .code,
            "InvalidParameter"
        );
    }

    #[test]
    fn route_tables_and_vswitches_are_described() {
        let mut c = core();
        let r = describe_route_table_list(&mut c, &params(&[("RegionId", "cn-hangzhou")])).unwrap();
        let t = &r["RouterTableList"]["RouterTableListType"][0];
        assert_eq!(t["RouteTableType"], "System");
        assert_eq!(
            t["VSwitchIds"]["VSwitchId"][0],
            c.state.vswitches[0].vswitch_id
        );
        assert_eq!(r["TotalCount"], 1);
        let r = describe_vswitches(&mut c, &params(&[("RegionId", "cn-hangzhou")])).unwrap();
        assert_eq!(r["VSwitches"]["VSwitch"][0]["CidrBlock"], "192.168.1.0/24");
        let vpc = c.state.vpc.vpc_id.clone();
        let r = describe_vpc_attribute(
            &mut c,
            &params(&[("RegionId", "cn-hangzhou"), ("VpcId", &vpc)]),
        )
        .unwrap();
        assert_eq!(r["CidrBlock"], "192.168.0.0/16");
        assert_eq!(
            describe_vpc_attribute(
                &mut c,
                &params(&[("RegionId", "cn-hangzhou"), ("VpcId", "vpc-x")])
            )
            .unwrap_err()
            .code,
            "InvalidVpcId.NotFound"
        );
        assert_eq!(
            describe_vswitches(&mut c, &params(&[("RegionId", "cn-beijing")]))
                .unwrap_err()
                .code,
            "InvalidRegionId.NotFound"
        );
    }

    #[test]
    fn instances_and_enis() {
        let mut c = core();
        let id = c.state.instances[1].instance_id.clone();
        let r = describe_instances(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("InstanceIds", &format!("[\"{id}\"]")),
            ]),
        )
        .unwrap();
        assert_eq!(r["TotalCount"], 1);
        let i = &r["Instances"]["Instance"][0];
        assert_eq!(
            i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0],
            "192.168.1.12"
        );
        let eni = i["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]
            .as_str()
            .unwrap()
            .to_string();
        let r = describe_network_interfaces(
            &mut c,
            &params(&[("RegionId", "cn-hangzhou"), ("NetworkInterfaceId.1", &eni)]),
        )
        .unwrap();
        assert_eq!(
            r["NetworkInterfaceSets"]["NetworkInterfaceSet"][0]["SourceDestCheck"],
            true
        );
        modify_network_interface_attribute(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("NetworkInterfaceId", &eni),
                ("SourceDestCheck", "false"),
            ]),
        )
        .unwrap();
        assert!(!c.state.instances[1].source_dest_check);
        assert!(c.state.instances[0].source_dest_check);
        let e = modify_network_interface_attribute(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("NetworkInterfaceId", "eni-x"),
                ("SourceDestCheck", "false"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidEniId.NotFound");
        let r = describe_instances(
            &mut c,
            &params(&[("RegionId", "cn-hangzhou"), ("MaxResults", "1")]),
        )
        .unwrap();
        assert_eq!(r["NextToken"], "1");
        assert_eq!(r["Instances"]["Instance"].as_array().unwrap().len(), 1);
    }
}
