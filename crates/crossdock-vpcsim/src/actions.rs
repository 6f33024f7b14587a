//! The VPC (2016-04-28) and ECS (2014-05-26) actions, with Alibaba's request and response field names
//! (including its spellings: `RouteEntrys.RouteEntry`, `RouterTableList.RouterTableListType`).
//!
//! Each action is a function of the core and the request's parameters, so the rules (one route write at a
//! time per VPC, duplicates, vSwitch overlap, quota, unknown next hops) are tested without HTTP.

use crate::error::ApiError;
use crate::model::{
    iso, now_ms, EntryType, Instance, InstanceStatus, RouteEntry, RouteStatus, State,
};
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
        let message = if dup_code == BATCH_DUPLICATE {
            format!("Specified CIDR block is already exists, entry.cidrBlock={dst}")
        } else {
            format!("The destination CIDR block {dst} already exists in route table {table_id}.")
        };
        return Err(ApiError::bad(dup_code, message));
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

/// At most this many entries per `CreateRouteEntries` / `DeleteRouteEntries` call.
pub const MAX_BATCH: usize = 50;

/// One `RouteEntries.N.*` object of a batch call, with its index (for error messages).
struct BatchItem {
    n: usize,
    fields: BTreeMap<String, String>,
}

impl BatchItem {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, k: &str) -> Result<&str, ApiError> {
        self.get(k)
            .ok_or_else(|| ApiError::missing(&format!("RouteEntries.{}.{k}", self.n)))
    }

    /// A per-entry failure as the batch answer lists it.
    fn failure(&self, e: &ApiError) -> Value {
        json!({
            "DstCidrBlock": self.get("DstCidrBlock").unwrap_or_default(),
            "NextHop": self.get("NextHop").unwrap_or_default(),
            "FailedCode": e.code,
            "FailedMessage": e.message,
        })
    }
}

/// The `RouteEntries.N` list of a batch call: 1 to [`MAX_BATCH`] entries, each naming its route table
/// (a request that breaks these is refused as a whole, before any entry is looked at).
fn batch_items(p: &Params) -> Result<Vec<BatchItem>, ApiError> {
    let items: Vec<BatchItem> = p
        .objects("RouteEntries")?
        .into_iter()
        .enumerate()
        .map(|(i, fields)| BatchItem { n: i + 1, fields })
        .collect();
    if items.is_empty() {
        return Err(ApiError::missing("RouteEntries.1.RouteTableId"));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "RouteEntries",
            format!(
                "{} entries given, at most {MAX_BATCH} per call",
                items.len()
            ),
        ));
    }
    if let Some(item) = items.iter().find(|i| i.get("RouteTableId").is_none()) {
        return Err(ApiError::bad(
            "MissingParam.RouteTableId",
            format!(
                "The parameter RouteTableId is missing (RouteEntries.{}).",
                item.n
            ),
        ));
    }
    Ok(items)
}

/// A new entry of a `CreateRouteEntries` call, checked.
struct NewEntry {
    table: String,
    dst: Ipv4Net,
    kind: String,
    hop: String,
    name: String,
    description: String,
}

/// The rules of one entry of a batch create, given the entries of the batch accepted before it.
fn check_batch_entry(
    core: &Core,
    item: &BatchItem,
    so_far: &[NewEntry],
) -> Result<NewEntry, ApiError> {
    let table = item.required("RouteTableId")?.to_string();
    let dst = parse_cidr("DstCidrBlock", item.required("DstCidrBlock")?)?;
    let hop = item.required("NextHop")?.to_string();
    let kind = item.get("NextHopType").unwrap_or("Instance").to_string();
    if let Some(v) = item
        .get("IpVersion")
        .filter(|v| !matches!(*v, "4" | "ipv4" | "IPv4"))
    {
        return Err(ApiError::invalid(
            "IpVersion",
            format!("`{v}`: only IPv4 (4) is emulated"),
        ));
    }
    let name = check_len("Name", item.get("Name"), 128)?;
    let description = check_len("Description", item.get("Description"), 256)?;
    let accepted: Vec<(String, Ipv4Net)> =
        so_far.iter().map(|e| (e.table.clone(), e.dst)).collect();
    check_new_entry(core, &table, dst, &kind, &hop, BATCH_DUPLICATE, &accepted)?;
    Ok(NewEntry {
        table,
        dst,
        kind,
        hop,
        name,
        description,
    })
}

/// The per-entry code of a destination that already exists in the table (batch calls).
pub const BATCH_DUPLICATE: &str = "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE";

/// `CreateRouteEntries`: refused as a whole while a route of the VPC is in transition (like a single
/// create); otherwise every entry is checked on its own (duplicate, vSwitch overlap, reserved range,
/// unknown next hop, quota counting the entries accepted before it) and the good ones are created,
/// `Pending` then `Available`. Failures come back per entry with HTTP 200.
fn create_route_entries(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, true)?;
    let items = batch_items(p)?;
    check_vpc_idle(&core.state)?;
    let mut ok: Vec<NewEntry> = vec![];
    let mut failed = vec![];
    for item in &items {
        match check_batch_entry(core, item, &ok) {
            Ok(e) => ok.push(e),
            Err(e) => failed.push(item.failure(&e)),
        }
    }
    let ids: Vec<String> = ok
        .into_iter()
        .map(|e| {
            insert_entry(
                core,
                &e.table,
                e.dst,
                &e.kind,
                &e.hop,
                e.name,
                e.description,
            )
        })
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

/// The entry one item of a batch delete names: by `RouteEntryId`, or by `DstCidrBlock` (+ `NextHop`).
fn find_batch_delete<'s>(state: &'s State, item: &BatchItem) -> Result<&'s RouteEntry, ApiError> {
    let table = item.required("RouteTableId")?;
    table_or_404(state, table)?;
    if let Some(id) = item.get("RouteEntryId") {
        return state
            .entries
            .iter()
            .find(|e| e.route_entry_id == id && e.route_table_id == table)
            .ok_or_else(|| entry_not_found(id));
    }
    let dst = parse_cidr("DstCidrBlock", item.required("DstCidrBlock")?)?;
    let hop = item.get("NextHop");
    state
        .entries
        .iter()
        .find(|e| {
            e.route_table_id == table
                && e.destination_cidr_block == dst
                && hop.is_none_or(|h| h == e.next_hop_id)
        })
        .ok_or_else(|| entry_not_found(format!("{dst} in {table}")))
}

/// `DeleteRouteEntries`: refused as a whole while a route of the VPC is in transition; otherwise each
/// named entry that exists, is custom and `Available` starts `Deleting` (then is gone), the others fail
/// per entry (`InvalidRouteEntryId.NotFound`, `OperationDenied`, ...).
fn delete_route_entries(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    check_region(&core.state, p, true)?;
    let items = batch_items(p)?;
    check_vpc_idle(&core.state)?;
    let mut to_delete: Vec<String> = vec![];
    let mut failed = vec![];
    for item in &items {
        let found = find_batch_delete(&core.state, item).and_then(|e| {
            check_deletable(e)?;
            Ok(e.route_entry_id.clone())
        });
        match found {
            Ok(id) if !to_delete.contains(&id) => to_delete.push(id),
            Ok(_) => {}
            Err(e) => failed.push(item.failure(&e)),
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
    let tags: Vec<Value> = i
        .tags
        .iter()
        .map(|t| json!({ "TagKey": t.key, "TagValue": t.value }))
        .collect();
    json!({
        "InstanceId": i.instance_id,
        "InstanceName": i.hostname,
        "HostName": i.hostname,
        "RegionId": state.region_id,
        "ZoneId": i.zone_id,
        "Status": i.status.as_str(),
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
        "Tags": { "Tag": tags },
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

/// The filters of `DescribeInstances`; every given filter must match (AND), as on ECS.
#[derive(Debug, Default)]
struct InstanceFilter {
    ids: Option<Vec<String>>,
    ips: Option<Vec<String>>,
    vpc_id: Option<String>,
    vswitch_id: Option<String>,
    zone_id: Option<String>,
    name: Option<String>,
    /// `None` = any; `Some(None)` = a valid status no emulated instance can have (`Pending` ...).
    status: Option<Option<InstanceStatus>>,
    /// Key, and the value when one was given (a key alone matches any value).
    tags: Vec<(String, Option<String>)>,
}

/// ECS takes at most this many ids in `InstanceIds` and tags in `Tag.N`.
const MAX_INSTANCE_IDS: usize = 100;
const MAX_TAG_FILTERS: usize = 20;

impl InstanceFilter {
    fn from_params(p: &Params) -> Result<InstanceFilter, ApiError> {
        let ids = p.json_list("InstanceIds")?;
        if ids.as_ref().is_some_and(|v| v.len() > MAX_INSTANCE_IDS) {
            return Err(ApiError::new(
                403,
                "InvalidParameter.TooManyInstanceIds",
                format!("Instance ids cannot be more than {MAX_INSTANCE_IDS}."),
            ));
        }
        let status = match p.get("Status") {
            None => None,
            Some("Running") => Some(Some(InstanceStatus::Running)),
            Some("Stopped") => Some(Some(InstanceStatus::Stopped)),
            Some("Pending" | "Starting" | "Stopping") => Some(None),
            Some(other) => {
                return Err(ApiError::not_found(
                    "InvalidStatus.NotFound",
                    format!("The specified Status `{other}` is not found (use Pending, Running, Starting, Stopping or Stopped)."),
                ))
            }
        };
        Ok(InstanceFilter {
            ids,
            ips: p.json_list("PrivateIpAddresses")?,
            vpc_id: p.get("VpcId").map(String::from),
            vswitch_id: p.get("VSwitchId").map(String::from),
            zone_id: p.get("ZoneId").map(String::from),
            name: p.get("InstanceName").map(String::from),
            status,
            tags: tag_filters(p)?,
        })
    }

    fn matches(&self, state: &State, i: &Instance) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.ids.as_ref().is_none_or(|v| v.contains(&i.instance_id))
            && self
                .ips
                .as_ref()
                .is_none_or(|v| v.contains(&i.private_ip.to_string()))
            && is(&self.vpc_id, &state.vpc.vpc_id)
            && is(&self.vswitch_id, &i.vswitch_id)
            && is(&self.zone_id, &i.zone_id)
            && is(&self.name, &i.hostname)
            && self.status.is_none_or(|s| s == Some(i.status))
            && self.tags.iter().all(|(k, v)| i.has_tag(k, v.as_deref()))
    }
}

/// `Tag.N.Key` / `Tag.N.Value` (also the legacy lower-case `Tag.N.key` / `Tag.N.value`).
fn tag_filters(p: &Params) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let items = p.objects("Tag")?;
    if items.len() > MAX_TAG_FILTERS {
        return Err(ApiError::bad(
            "InvalidTagCount",
            format!(
                "The specified tags are beyond the permitted range (at most {MAX_TAG_FILTERS})."
            ),
        ));
    }
    let field = |m: &BTreeMap<String, String>, name: &str| {
        m.iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    items
        .iter()
        .map(|m| match (field(m, "Key"), field(m, "Value")) {
            (Some(k), v) => Ok((k, v)),
            (None, _) => Err(ApiError::bad(
                "InvalidTag.Mismatch",
                "The specified Tag.n.Key and Tag.n.Value are not match.",
            )),
        })
        .collect()
}

/// The listing order of instances, and what a `NextToken` points after.
fn instance_key(i: &Instance) -> (u64, String) {
    (i.seq, i.instance_id.clone())
}

/// An opaque paging token: hex of `<seq>/<instance id>` of the last instance of the previous page, so
/// a page boundary stays put when instances are released or added between the calls.
fn encode_instance_token(key: &(u64, String)) -> String {
    hex::encode(format!("{}/{}", key.0, key.1))
}

fn decode_instance_token(t: &str) -> Result<(u64, String), ApiError> {
    let bad = || {
        ApiError::bad(
            "InvalidParameter.NextToken",
            format!("The specified parameter NextToken `{t}` is not valid."),
        )
    };
    let text = String::from_utf8(hex::decode(t).map_err(|_| bad())?).map_err(|_| bad())?;
    let (seq, id) = text.split_once('/').ok_or_else(bad)?;
    Ok((seq.parse().map_err(|_| bad())?, id.to_string()))
}

fn describe_instances(core: &mut Core, p: &Params) -> Result<Value, ApiError> {
    let state = &core.state;
    check_region(state, p, true)?;
    let filter = InstanceFilter::from_params(p)?;
    let mut list: Vec<&Instance> = state
        .instances
        .iter()
        .filter(|i| filter.matches(state, i))
        .collect();
    list.sort_by_key(|i| instance_key(i));
    let total = list.len();
    let token_paging = p.get("MaxResults").is_some() || p.get("NextToken").is_some();
    let (items, number, size, next) = if token_paging {
        instance_token_page(&list, p)?
    } else {
        let (items, number, size) = page(&list, p, 100)?;
        (items, number, size, String::new())
    };
    let v: Vec<Value> = items.iter().map(|i| instance_json(state, i)).collect();
    Ok(json!({
        "TotalCount": total,
        "PageNumber": number,
        "PageSize": size,
        "NextToken": next,
        "Instances": { "Instance": v },
    }))
}

/// `MaxResults` (1..=100, default 10) / `NextToken` paging: (page, page number, page size, next token).
fn instance_token_page<'s>(
    sorted: &[&'s Instance],
    p: &Params,
) -> Result<(Vec<&'s Instance>, u64, u64, String), ApiError> {
    let size = match p.get("MaxResults") {
        None => 10,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    "InvalidParameter.MaxResults",
                    format!("The specified parameter MaxResults `{v}` is not valid (1 to 100)."),
                )
            })?,
    };
    let start = match p.get("NextToken") {
        None => 0,
        Some(t) => {
            let after = decode_instance_token(t)?;
            sorted.partition_point(|i| instance_key(i) <= after)
        }
    };
    let items: Vec<&Instance> = sorted
        .iter()
        .skip(start)
        .take(size as usize)
        .copied()
        .collect();
    let next = match items.last() {
        Some(last) if start + items.len() < sorted.len() => {
            encode_instance_token(&instance_key(last))
        }
        _ => String::new(),
    };
    Ok((items, start as u64 / size + 1, size, next))
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
            let seq = state.take_seq();
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
                tags: vec![],
                status: Default::default(),
                seq,
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
        assert_eq!(r["Instances"]["Instance"].as_array().unwrap().len(), 1);
        let token = r["NextToken"].as_str().unwrap().to_string();
        let r = describe_instances(
            &mut c,
            &params(&[
                ("RegionId", "cn-hangzhou"),
                ("MaxResults", "1"),
                ("NextToken", &token),
            ]),
        )
        .unwrap();
        assert_eq!(r["Instances"]["Instance"][0]["HostName"], "h2");
        assert_eq!(r["NextToken"], "");
        assert_eq!(r["PageNumber"], 2);
    }

    fn describe(c: &mut Core, extra: &[(&str, &str)]) -> Result<Vec<String>, ApiError> {
        let mut p = vec![("RegionId", "cn-hangzhou"), ("MaxResults", "100")];
        p.extend_from_slice(extra);
        let r = describe_instances(c, &params(&p))?;
        Ok(r["Instances"]["Instance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["HostName"].as_str().unwrap().to_string())
            .collect())
    }

    #[test]
    fn instance_filters_and_their_refusals() {
        let mut c = core();
        c.state.instances[0].tags = vec![
            crate::model::Tag::new("crossdock-cluster", "prod"),
            crate::model::Tag::new("team", "a"),
        ];
        c.state.instances[1].tags = vec![crate::model::Tag::new("crossdock-cluster", "dev")];
        c.state.instances[1].status = InstanceStatus::Stopped;
        let tag = |k: &'static str, v: &'static str| vec![("Tag.1.Key", k), ("Tag.1.Value", v)];
        assert_eq!(
            describe(&mut c, &tag("crossdock-cluster", "prod")).unwrap(),
            ["h1"]
        );
        assert_eq!(
            describe(&mut c, &[("Tag.1.Key", "crossdock-cluster")]).unwrap(),
            ["h1", "h2"]
        );
        // every tag must match (AND); the legacy lower-case field names are read too
        let both = [
            ("Tag.1.Key", "crossdock-cluster"),
            ("Tag.1.Value", "prod"),
            ("Tag.2.key", "team"),
            ("Tag.2.value", "b"),
        ];
        assert!(describe(&mut c, &both).unwrap().is_empty());
        assert_eq!(describe(&mut c, &[("Status", "Stopped")]).unwrap(), ["h2"]);
        assert!(describe(&mut c, &[("Status", "Pending")])
            .unwrap()
            .is_empty());
        assert_eq!(
            describe(&mut c, &[("Status", "Sleeping")])
                .unwrap_err()
                .code,
            "InvalidStatus.NotFound"
        );
        assert_eq!(
            describe(&mut c, &[("Tag.1.Value", "prod")])
                .unwrap_err()
                .code,
            "InvalidTag.Mismatch"
        );
        assert!(describe(&mut c, &[("VpcId", "vpc-other")])
            .unwrap()
            .is_empty());
        assert!(describe(&mut c, &[("InstanceIds", "[]")])
            .unwrap()
            .is_empty());
        let many = format!(
            "[{}]",
            (0..101)
                .map(|i| format!("\"i-{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            describe(&mut c, &[("InstanceIds", &many)])
                .unwrap_err()
                .code,
            "InvalidParameter.TooManyInstanceIds"
        );
        for bad in ["0", "101", "x"] {
            let e = describe_instances(
                &mut c,
                &params(&[("RegionId", "cn-hangzhou"), ("MaxResults", bad)]),
            )
            .unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.status),
                ("InvalidParameter.MaxResults", 400)
            );
        }
        let e = describe_instances(
            &mut c,
            &params(&[("RegionId", "cn-hangzhou"), ("NextToken", "zz")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameter.NextToken");
    }

    #[test]
    fn batch_create_checks_ip_version_and_the_batch_shape() {
        let mut c = core();
        let table = c.state.system_table_id().to_string();
        let h0 = c.state.instances[0].instance_id.clone();
        let p = params(&[
            ("RegionId", "cn-hangzhou"),
            ("RouteEntries.1.RouteTableId", &table),
            ("RouteEntries.1.DstCidrBlock", "10.1.0.0/24"),
            ("RouteEntries.1.NextHop", &h0),
            ("RouteEntries.1.IpVersion", "4"),
            ("RouteEntries.2.RouteTableId", &table),
            ("RouteEntries.2.DstCidrBlock", "10.2.0.0/24"),
            ("RouteEntries.2.NextHop", &h0),
            ("RouteEntries.2.IpVersion", "6"),
        ]);
        let r = create_route_entries(&mut c, &p).unwrap();
        assert_eq!(
            (r["SuccessCount"].as_u64(), r["FailedCount"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(r["FailedRouteEntries"][0]["FailedCode"], "InvalidParameter");
        let no_table = params(&[
            ("RegionId", "cn-hangzhou"),
            ("RouteEntries.1.DstCidrBlock", "10.3.0.0/24"),
        ]);
        assert_eq!(
            create_route_entries(&mut c, &no_table).unwrap_err().code,
            "MissingParam.RouteTableId"
        );
    }
}
