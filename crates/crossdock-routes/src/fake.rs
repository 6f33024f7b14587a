//! An in-memory VPC for the reconciler's table tests (test-only). It keeps the semantics the
//! reconciler depends on: destinations unique per table (`InvalidCIDRBlock.Duplicate`), `ClientToken`
//! idempotency, new entries `Pending` for a few listings before `Available`, only `Available` entries
//! deletable, quota per table, filters of `DescribeRouteEntryList`, and one-shot injected errors.
//!
//! Fleet mode adds ECS instances (tags, status; a released instance is removed and so absent from every
//! answer) and the batch writes, answered as the emulator and Alibaba do: refused entries come back
//! per entry (`VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE`, `QuotaExceeded`, unknown table, not found,
//! not deletable) while the rest of the batch is applied; new entries are `Pending` like single creates.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crossdock_alibaba::{
    ApiError, BatchFailure, BatchResult, CreateRouteEntry, Error as CloudError, Instance,
    InstanceQuery, InstanceStatus, NewRoute, NextHop, Product, RouteEntry, RouteEntryFilter,
    RouteTable, RouteToDelete, Tag, VSwitch, MAX_ROUTE_BATCH,
};

use crate::cloud::RouteCloud;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Tables,
    Entries,
    Create,
    Delete,
    VpcCidrs,
    VSwitches,
    GetSdc,
    SetSdc,
    Instances,
    CreateBatch,
    DeleteBatch,
}

impl Op {
    fn action(self) -> (Product, &'static str) {
        match self {
            Op::Tables => (Product::Vpc, "DescribeRouteTableList"),
            Op::Entries => (Product::Vpc, "DescribeRouteEntryList"),
            Op::Create => (Product::Vpc, "CreateRouteEntry"),
            Op::Delete => (Product::Vpc, "DeleteRouteEntry"),
            Op::VpcCidrs => (Product::Vpc, "DescribeVpcAttribute"),
            Op::VSwitches => (Product::Vpc, "DescribeVSwitches"),
            Op::GetSdc => (Product::Ecs, "DescribeNetworkInterfaces"),
            Op::SetSdc => (Product::Ecs, "ModifyNetworkInterfaceAttribute"),
            Op::Instances => (Product::Ecs, "DescribeInstances"),
            Op::CreateBatch => (Product::Vpc, "CreateRouteEntries"),
            Op::DeleteBatch => (Product::Vpc, "DeleteRouteEntries"),
        }
    }
}

pub fn api_error(op: Op, code: &str) -> CloudError {
    let (product, action) = op.action();
    CloudError::Api(ApiError::new(product, action, code, "injected by the test"))
}

#[derive(Debug)]
pub struct FakeState {
    pub tables: Vec<RouteTable>,
    pub entries: Vec<RouteEntry>,
    pub vpc_cidrs: Vec<Ipv4Net>,
    pub vswitches: Vec<VSwitch>,
    pub sdc: HashMap<String, Option<bool>>,
    /// ECS instances of the region (released ones are removed).
    pub instances: Vec<Instance>,
    /// Listings of a table a new entry stays `Pending` for.
    pub pending_listings: u32,
    pending_left: HashMap<String, u32>,
    /// Custom entries allowed per table.
    pub quota: usize,
    next_id: u32,
    tokens: HashMap<String, String>,
    /// One-shot errors: the next call of `Op` fails with this.
    pub inject: Vec<(Op, CloudError)>,
    /// Every call, in order: `op` plus detail.
    pub log: Vec<(Op, String)>,
    /// Simulates a race: this entry appears just before the next create is processed.
    pub appears_before_create: Option<RouteEntry>,
    /// What `recently_throttled` answers (a storm on the account).
    pub throttled: bool,
}

#[derive(Debug)]
pub struct FakeCloud {
    pub s: Mutex<FakeState>,
}

pub const ME: &str = "i-me";

/// The cluster tag of [`FakeCloud::add_member`].
pub fn fleet_tag() -> Tag {
    Tag {
        key: "crossdock-cluster".into(),
        value: "test".into(),
    }
}

impl FakeCloud {
    /// VPC 192.168.0.0/16 with vSwitch vsw-1 192.168.1.0/24 on the system table vtb-sys; ENI eni-1
    /// with the source/destination check off.
    pub fn standard() -> Self {
        let table = |id: &str, ty: &str, vsw: &[&str]| RouteTable {
            route_table_id: id.into(),
            route_table_type: ty.into(),
            vpc_id: "vpc-1".into(),
            router_id: "vrt-1".into(),
            status: "Available".into(),
            vswitch_ids: vsw.iter().map(|s| s.to_string()).collect(),
        };
        Self {
            s: Mutex::new(FakeState {
                tables: vec![table("vtb-sys", "System", &["vsw-1"])],
                entries: Vec::new(),
                vpc_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
                vswitches: vec![VSwitch {
                    vswitch_id: "vsw-1".into(),
                    vpc_id: "vpc-1".into(),
                    cidr_block: "192.168.1.0/24".into(),
                    route_table_id: Some("vtb-sys".into()),
                    available_ip_count: None,
                }],
                sdc: HashMap::from([("eni-1".to_string(), Some(false))]),
                instances: Vec::new(),
                pending_listings: 1,
                pending_left: HashMap::new(),
                quota: 200,
                next_id: 1,
                tokens: HashMap::new(),
                inject: Vec::new(),
                log: Vec::new(),
                appears_before_create: None,
                throttled: false,
            }),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.s.lock().unwrap())
    }

    pub fn add_table(&self, id: &str, ty: &str) {
        self.with(|s| {
            s.tables.push(RouteTable {
                route_table_id: id.into(),
                route_table_type: ty.into(),
                vpc_id: "vpc-1".into(),
                router_id: "vrt-1".into(),
                status: "Available".into(),
                vswitch_ids: vec![],
            })
        })
    }

    /// Adds an entry directly (someone else's route, or one of ours from an earlier run).
    pub fn add_entry(
        &self,
        table: &str,
        cidr: &str,
        hop: &str,
        name: &str,
        desc: &str,
        status: &str,
    ) -> String {
        self.with(|s| {
            let id = format!("rte-pre{}", s.next_id);
            s.next_id += 1;
            s.entries.push(RouteEntry {
                route_entry_id: id.clone(),
                route_table_id: table.into(),
                destination_cidr_block: cidr.into(),
                name: name.into(),
                description: desc.into(),
                entry_type: "Custom".into(),
                status: status.into(),
                next_hops: vec![NextHop {
                    next_hop_type: "Instance".into(),
                    next_hop_id: hop.into(),
                }],
            });
            id
        })
    }

    pub fn add_ours(&self, table: &str, cidr: &str) -> String {
        self.add_entry(table, cidr, ME, "crossdock", "crossdock:i-me", "Available")
    }

    /// Adds a `Running` instance in vpc-1 / vsw-1 with primary ENI `eni-<id>` and these tags.
    pub fn add_instance(&self, id: &str, ip: Ipv4Addr, tags: &[Tag]) -> Instance {
        let instance = Instance {
            instance_id: id.into(),
            hostname: id.into(),
            status: InstanceStatus::Running,
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            private_ip: Some(ip),
            eni_id: Some(format!("eni-{id}")),
            tags: tags.to_vec(),
        };
        self.with(|s| s.instances.push(instance.clone()));
        instance
    }

    /// Adds a `Running` instance carrying [`fleet_tag`].
    pub fn add_member(&self, id: &str, ip: Ipv4Addr) -> Instance {
        self.add_instance(id, ip, &[fleet_tag()])
    }

    /// Releases an instance: it is absent from every answer afterwards (its routes stay, as in the
    /// cloud). Returns whether it existed.
    pub fn release_instance(&self, id: &str) -> bool {
        self.with(|s| {
            let before = s.instances.len();
            s.instances.retain(|i| i.instance_id != id);
            s.instances.len() != before
        })
    }

    /// Sets an instance's status. Returns whether it exists.
    pub fn set_instance_status(&self, id: &str, status: InstanceStatus) -> bool {
        self.with(|s| {
            s.instances
                .iter_mut()
                .find(|i| i.instance_id == id)
                .map(|i| i.status = status)
                .is_some()
        })
    }

    /// Stops an instance (listed with status `Stopped`, keeps its IP and routes).
    pub fn stop_instance(&self, id: &str) -> bool {
        self.set_instance_status(id, InstanceStatus::Stopped)
    }

    /// Starts a stopped instance again.
    pub fn start_instance(&self, id: &str) -> bool {
        self.set_instance_status(id, InstanceStatus::Running)
    }

    pub fn fail_next(&self, op: Op, code: &str) {
        self.with(|s| s.inject.push((op, api_error(op, code))));
    }

    pub fn fail_next_with(&self, op: Op, e: CloudError) {
        self.with(|s| s.inject.push((op, e)));
    }

    pub fn entries_in(&self, table: &str) -> Vec<RouteEntry> {
        self.with(|s| {
            s.entries
                .iter()
                .filter(|e| e.route_table_id == table)
                .cloned()
                .collect()
        })
    }

    pub fn writes(&self) -> Vec<(Op, String)> {
        self.with(|s| {
            s.log
                .iter()
                .filter(|(op, _)| {
                    matches!(
                        op,
                        Op::Create | Op::Delete | Op::SetSdc | Op::CreateBatch | Op::DeleteBatch
                    )
                })
                .cloned()
                .collect()
        })
    }

    pub fn count(&self, op: Op) -> usize {
        self.with(|s| s.log.iter().filter(|(o, _)| *o == op).count())
    }

    fn enter(
        &self,
        op: Op,
        detail: String,
    ) -> Result<std::sync::MutexGuard<'_, FakeState>, CloudError> {
        let mut s = self.s.lock().unwrap();
        s.log.push((op, detail));
        if let Some(i) = s.inject.iter().position(|(o, _)| *o == op) {
            let (_, e) = s.inject.remove(i);
            return Err(e);
        }
        Ok(s)
    }
}

/// What the client answers for a batch larger than the API takes (it refuses before sending).
fn batch_too_large(op: Op, n: usize) -> CloudError {
    let (_, action) = op.action();
    CloudError::Config {
        field: format!("{action} RouteEntries"),
        message: format!("{n} entries in one call; the API takes at most {MAX_ROUTE_BATCH}"),
        fix: "split the batch".into(),
    }
}

fn failure(dst: &str, hop: &str, code: &str) -> BatchFailure {
    BatchFailure {
        destination_cidr_block: dst.into(),
        next_hop: hop.into(),
        code: code.into(),
        message: format!("{code} (fake)"),
    }
}

impl FakeState {
    /// Adds a `Pending` custom entry; returns its id.
    fn insert_pending(&mut self, r: &NewRoute) -> String {
        let id = format!("rte-{}", self.next_id);
        self.next_id += 1;
        self.entries.push(RouteEntry {
            route_entry_id: id.clone(),
            route_table_id: r.route_table_id.clone(),
            destination_cidr_block: r.destination_cidr_block.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            entry_type: "Custom".into(),
            status: "Pending".into(),
            next_hops: vec![NextHop {
                next_hop_type: "Instance".into(),
                next_hop_id: r.next_hop_id.clone(),
            }],
        });
        id
    }

    /// The batch code refusing `r` after the batch's earlier accepted entries, if any.
    fn refuse_new(&self, r: &NewRoute, earlier: &[&NewRoute]) -> Option<&'static str> {
        let table = r.route_table_id.as_str();
        if !self.tables.iter().any(|t| t.route_table_id == table) {
            return Some("InvalidRouteTableId.NotFound");
        }
        let existing: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.route_table_id == table)
            .map(|e| e.destination_cidr_block.as_str())
            .chain(
                earlier
                    .iter()
                    .filter(|o| o.route_table_id == table)
                    .map(|o| o.destination_cidr_block.as_str()),
            )
            .collect();
        if existing.contains(&r.destination_cidr_block.as_str()) {
            return Some("VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE");
        }
        if existing.len() >= self.quota {
            return Some("QuotaExceeded");
        }
        None
    }

    /// The index of the entry `d` names, or the batch code refusing its deletion.
    fn find_deletable(&self, d: &RouteToDelete) -> Result<usize, &'static str> {
        let table = d.route_table_id();
        if !self.tables.iter().any(|t| t.route_table_id == table) {
            return Err("InvalidRouteTableId.NotFound");
        }
        let i = self
            .entries
            .iter()
            .position(|e| {
                e.route_table_id == table
                    && match d {
                        RouteToDelete::ById { route_entry_id, .. } => {
                            &e.route_entry_id == route_entry_id
                        }
                        RouteToDelete::ByDestination {
                            destination_cidr_block,
                            next_hop_id,
                            ..
                        } => {
                            &e.destination_cidr_block == destination_cidr_block
                                && e.next_hops.iter().any(|h| &h.next_hop_id == next_hop_id)
                        }
                    }
            })
            .ok_or("InvalidRouteEntryId.NotFound")?;
        if self.entries[i].status != "Available" {
            return Err("IncorrectRouteEntryStatus");
        }
        Ok(i)
    }
}

#[async_trait]
impl RouteCloud for FakeCloud {
    fn recently_throttled(&self) -> bool {
        self.with(|s| s.throttled)
    }

    async fn route_tables(&self, _vpc: &str) -> Result<Vec<RouteTable>, CloudError> {
        Ok(self.enter(Op::Tables, String::new())?.tables.clone())
    }

    async fn route_entries(
        &self,
        table: &str,
        f: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, CloudError> {
        let mut s = self.enter(Op::Entries, format!("{table} {f:?}"))?;
        if !s.tables.iter().any(|t| t.route_table_id == table) {
            return Err(api_error(Op::Entries, "InvalidRouteTableId.NotFound"));
        }
        // Time passes: pending entries of this table settle after their listings.
        let st = &mut *s;
        for e in st.entries.iter_mut().filter(|e| e.route_table_id == table) {
            if e.status == "Pending" {
                let left = st
                    .pending_left
                    .entry(e.route_entry_id.clone())
                    .or_insert(st.pending_listings);
                // Lowering `pending_listings` speeds up entries already pending.
                *left = (*left).min(st.pending_listings);
                if *left == 0 {
                    e.status = "Available".into();
                } else {
                    *left -= 1;
                }
            }
        }
        Ok(st
            .entries
            .iter()
            .filter(|e| e.route_table_id == table)
            .filter(|e| {
                f.destination_cidr_block
                    .as_ref()
                    .is_none_or(|c| &e.destination_cidr_block == c)
            })
            .filter(|e| {
                f.next_hop_id
                    .as_ref()
                    .is_none_or(|h| e.next_hops.iter().any(|n| &n.next_hop_id == h))
            })
            .filter(|e| {
                f.route_entry_type
                    .as_ref()
                    .is_none_or(|t| &e.entry_type == t)
            })
            .filter(|e| f.route_entry_name.as_ref().is_none_or(|n| &e.name == n))
            .cloned()
            .collect())
    }

    async fn create_route(&self, r: &CreateRouteEntry) -> Result<String, CloudError> {
        let mut s = self.enter(
            Op::Create,
            format!("{} {}", r.route_table_id, r.destination_cidr_block),
        )?;
        if let Some(id) = s.tokens.get(&r.client_token) {
            return Ok(id.clone());
        }
        if let Some(e) = s.appears_before_create.take() {
            s.entries.push(e);
        }
        if !s
            .tables
            .iter()
            .any(|t| t.route_table_id == r.route_table_id)
        {
            return Err(api_error(Op::Create, "InvalidRouteTableId.NotFound"));
        }
        let in_table: Vec<&RouteEntry> = s
            .entries
            .iter()
            .filter(|e| e.route_table_id == r.route_table_id)
            .collect();
        if in_table
            .iter()
            .any(|e| e.destination_cidr_block == r.destination_cidr_block)
        {
            return Err(api_error(Op::Create, "InvalidCIDRBlock.Duplicate"));
        }
        if in_table.len() >= s.quota {
            return Err(api_error(Op::Create, "QuotaExceeded"));
        }
        let id = s.insert_pending(&NewRoute {
            route_table_id: r.route_table_id.clone(),
            destination_cidr_block: r.destination_cidr_block.clone(),
            next_hop_id: r.next_hop_id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
        });
        s.tokens.insert(r.client_token.clone(), id.clone());
        Ok(id)
    }

    async fn delete_route(&self, table: &str, id: &str) -> Result<(), CloudError> {
        let mut s = self.enter(Op::Delete, format!("{table} {id}"))?;
        let Some(i) = s.entries.iter().position(|e| e.route_entry_id == id) else {
            return Err(api_error(Op::Delete, "InvalidRouteEntryId.NotFound"));
        };
        if s.entries[i].status != "Available" {
            return Err(api_error(Op::Delete, "IncorrectRouteEntryStatus"));
        }
        s.entries.remove(i);
        Ok(())
    }

    async fn instances(&self, q: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        let s = self.enter(Op::Instances, format!("{q:?}"))?;
        Ok(s.instances
            .iter()
            .filter(|i| q.vpc_id.as_ref().is_none_or(|v| &i.vpc_id == v))
            .filter(|i| q.tag.as_ref().is_none_or(|t| i.has_tag(t)))
            .filter(|i| q.instance_ids.is_empty() || q.instance_ids.contains(&i.instance_id))
            .cloned()
            .collect())
    }

    async fn create_routes(&self, routes: &[NewRoute]) -> Result<BatchResult, CloudError> {
        if routes.is_empty() {
            return Ok(BatchResult::default());
        }
        if routes.len() > MAX_ROUTE_BATCH {
            return Err(batch_too_large(Op::CreateBatch, routes.len()));
        }
        let detail = routes
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.route_table_id, r.destination_cidr_block, r.next_hop_id
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut s = self.enter(Op::CreateBatch, detail)?;
        if let Some(e) = s.appears_before_create.take() {
            s.entries.push(e);
        }
        let mut accepted: Vec<&NewRoute> = Vec::new();
        let mut failed = Vec::new();
        for r in routes {
            match s.refuse_new(r, &accepted) {
                Some(code) => failed.push(failure(&r.destination_cidr_block, &r.next_hop_id, code)),
                None => accepted.push(r),
            }
        }
        let ids: Vec<String> = accepted.iter().map(|r| s.insert_pending(r)).collect();
        Ok(BatchResult {
            success_count: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            failed_count: u32::try_from(failed.len()).unwrap_or(u32::MAX),
            route_entry_ids: ids,
            failed,
        })
    }

    async fn delete_routes(&self, entries: &[RouteToDelete]) -> Result<BatchResult, CloudError> {
        if entries.is_empty() {
            return Ok(BatchResult::default());
        }
        if entries.len() > MAX_ROUTE_BATCH {
            return Err(batch_too_large(Op::DeleteBatch, entries.len()));
        }
        let detail = entries
            .iter()
            .map(|d| match d {
                RouteToDelete::ById {
                    route_table_id,
                    route_entry_id,
                } => format!("{route_table_id} {route_entry_id}"),
                RouteToDelete::ByDestination {
                    route_table_id,
                    destination_cidr_block,
                    next_hop_id,
                } => format!("{route_table_id} {destination_cidr_block} {next_hop_id}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut s = self.enter(Op::DeleteBatch, detail)?;
        let mut doomed: Vec<String> = Vec::new();
        let mut failed = Vec::new();
        for d in entries {
            match s.find_deletable(d) {
                Ok(i) if !doomed.contains(&s.entries[i].route_entry_id) => {
                    doomed.push(s.entries[i].route_entry_id.clone())
                }
                Ok(_) => {}
                Err(code) => {
                    let (dst, hop) = match d {
                        RouteToDelete::ById { .. } => ("", ""),
                        RouteToDelete::ByDestination {
                            destination_cidr_block,
                            next_hop_id,
                            ..
                        } => (destination_cidr_block.as_str(), next_hop_id.as_str()),
                    };
                    failed.push(failure(dst, hop, code));
                }
            }
        }
        s.entries.retain(|e| !doomed.contains(&e.route_entry_id));
        Ok(BatchResult {
            success_count: u32::try_from(doomed.len()).unwrap_or(u32::MAX),
            failed_count: u32::try_from(failed.len()).unwrap_or(u32::MAX),
            route_entry_ids: Vec::new(),
            failed,
        })
    }

    async fn vpc_cidrs(&self, _vpc: &str) -> Result<Vec<Ipv4Net>, CloudError> {
        Ok(self.enter(Op::VpcCidrs, String::new())?.vpc_cidrs.clone())
    }

    async fn vswitches(&self, _vpc: &str) -> Result<Vec<VSwitch>, CloudError> {
        Ok(self.enter(Op::VSwitches, String::new())?.vswitches.clone())
    }

    async fn source_dest_check(&self, eni: &str) -> Result<Option<bool>, CloudError> {
        let s = self.enter(Op::GetSdc, eni.to_string())?;
        match s.sdc.get(eni) {
            Some(v) => Ok(*v),
            None => Err(api_error(Op::GetSdc, "InvalidEniId.NotFound")),
        }
    }

    async fn set_source_dest_check(&self, eni: &str, on: bool) -> Result<(), CloudError> {
        let mut s = self.enter(Op::SetSdc, format!("{eni} {on}"))?;
        s.sdc.insert(eni.to_string(), Some(on));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The fake's fleet calls answer as the emulator does (the reconciler's tests rely on it).

    use super::*;
    use crossdock_alibaba::ErrorClass;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn new_route(table: &str, cidr: &str, hop: &str) -> NewRoute {
        NewRoute {
            route_table_id: table.into(),
            destination_cidr_block: cidr.into(),
            next_hop_id: hop.into(),
            name: "crossdock".into(),
            description: format!("crossdock:{hop}"),
        }
    }

    fn ids(v: &[Instance]) -> Vec<&str> {
        v.iter().map(|i| i.instance_id.as_str()).collect()
    }

    #[tokio::test]
    async fn instances_filter_by_tag_vpc_and_id_and_released_ones_vanish() {
        let f = FakeCloud::standard();
        f.add_member("i-a", ip("192.168.1.10"));
        f.add_member("i-b", ip("192.168.1.11"));
        let other = Tag {
            key: "crossdock-cluster".into(),
            value: "other".into(),
        };
        f.add_instance("i-c", ip("192.168.1.12"), &[other]);
        assert!(f.stop_instance("i-b"));
        assert!(f.release_instance("i-a"));
        assert!(!f.release_instance("i-a"), "already gone");
        let tagged = InstanceQuery {
            vpc_id: Some("vpc-1".into()),
            tag: Some(fleet_tag()),
            instance_ids: vec![],
        };
        let got = f.instances(&tagged).await.unwrap();
        assert_eq!(ids(&got), ["i-b"]);
        assert_eq!(got[0].status, InstanceStatus::Stopped);
        assert!(f.start_instance("i-b"));
        let by_id = InstanceQuery {
            instance_ids: vec!["i-a".into(), "i-c".into()],
            ..Default::default()
        };
        assert_eq!(ids(&f.instances(&by_id).await.unwrap()), ["i-c"]);
        let elsewhere = InstanceQuery {
            vpc_id: Some("vpc-2".into()),
            ..Default::default()
        };
        assert!(f.instances(&elsewhere).await.unwrap().is_empty());
        assert_eq!(f.count(Op::Instances), 3);
        f.fail_next(Op::Instances, "Throttling.User");
        assert!(f.instances(&tagged).await.unwrap_err().is_throttling());
    }

    #[tokio::test]
    async fn batch_create_applies_what_it_can_and_refuses_the_rest_per_entry() {
        let f = FakeCloud::standard();
        f.add_ours("vtb-sys", "10.0.0.0/24");
        f.with(|s| s.quota = 4);
        let batch = [
            new_route("vtb-sys", "10.1.0.0/24", "i-a"),
            new_route("vtb-sys", "10.0.0.0/24", "i-b"), // exists
            new_route("vtb-sys", "10.1.0.0/24", "i-c"), // earlier in this batch
            new_route("vtb-nope", "10.2.0.0/24", "i-d"),
            new_route("vtb-sys", "10.3.0.0/24", "i-e"),
            new_route("vtb-sys", "10.4.0.0/24", "i-f"),
            new_route("vtb-sys", "10.5.0.0/24", "i-g"), // quota (4) reached
        ];
        let r = f.create_routes(&batch).await.unwrap();
        assert_eq!((r.success_count, r.failed_count), (3, 4));
        assert_eq!(r.route_entry_ids.len(), 3);
        let codes: Vec<(&str, &str)> = r
            .failed
            .iter()
            .map(|x| (x.next_hop.as_str(), x.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("i-b", "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE"),
                ("i-c", "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE"),
                ("i-d", "InvalidRouteTableId.NotFound"),
                ("i-g", "QuotaExceeded"),
            ]
        );
        assert!(r.failed[0].is_duplicate() && r.failed[1].is_duplicate());
        // New entries are Pending, then Available after the usual listings.
        let status = |f: &FakeCloud, id: &str| {
            f.entries_in("vtb-sys")
                .into_iter()
                .find(|e| e.route_entry_id == id)
                .map(|e| e.status)
        };
        assert_eq!(
            status(&f, &r.route_entry_ids[0]).as_deref(),
            Some("Pending")
        );
        let filter = RouteEntryFilter::default();
        for _ in 0..=f.with(|s| s.pending_listings) {
            f.route_entries("vtb-sys", &filter).await.unwrap();
        }
        assert_eq!(
            status(&f, &r.route_entry_ids[0]).as_deref(),
            Some("Available")
        );
        assert_eq!(f.count(Op::CreateBatch), 1);
        assert_eq!(f.writes().len(), 1);
    }

    #[tokio::test]
    async fn batch_calls_fail_whole_when_injected_and_check_their_size_before_calling() {
        let f = FakeCloud::standard();
        f.fail_next(Op::CreateBatch, "TaskConflict");
        let e = f
            .create_routes(&[new_route("vtb-sys", "10.1.0.0/24", "i-a")])
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(f.entries_in("vtb-sys").is_empty(), "nothing written");
        let many: Vec<NewRoute> = (0..51)
            .map(|n| new_route("vtb-sys", &format!("10.{n}.0.0/24"), "i-a"))
            .collect();
        assert!(f.create_routes(&many).await.is_err());
        assert_eq!(f.create_routes(&[]).await.unwrap(), BatchResult::default());
        assert_eq!(f.delete_routes(&[]).await.unwrap(), BatchResult::default());
        assert_eq!(
            f.count(Op::CreateBatch),
            1,
            "only the refused call reached the 'API'"
        );
        assert_eq!(f.count(Op::DeleteBatch), 0);
    }

    #[tokio::test]
    async fn batch_delete_by_id_or_destination_only_available_entries() {
        let f = FakeCloud::standard();
        let a = f.add_ours("vtb-sys", "10.0.0.0/24");
        f.add_entry(
            "vtb-sys",
            "10.1.0.0/24",
            "i-b",
            "crossdock",
            "crossdock:i-b",
            "Available",
        );
        let pending = f.add_entry("vtb-sys", "10.2.0.0/24", "i-c", "crossdock", "", "Pending");
        let by_id = |id: &str| RouteToDelete::ById {
            route_table_id: "vtb-sys".into(),
            route_entry_id: id.into(),
        };
        let by_dst = |cidr: &str, hop: &str| RouteToDelete::ByDestination {
            route_table_id: "vtb-sys".into(),
            destination_cidr_block: cidr.into(),
            next_hop_id: hop.into(),
        };
        let r = f
            .delete_routes(&[
                by_id(&a),
                by_id(&a), // the same entry twice counts once
                by_dst("10.1.0.0/24", "i-b"),
                by_dst("10.1.0.0/24", "i-x"), // other next hop: not that route
                by_id(&pending),
                by_id("rte-missing"),
            ])
            .await
            .unwrap();
        assert_eq!((r.success_count, r.failed_count), (2, 3));
        let classes: Vec<ErrorClass> = r.failed.iter().map(|x| x.class()).collect();
        assert_eq!(
            classes,
            [
                ErrorClass::NotFound,
                ErrorClass::Retryable,
                ErrorClass::NotFound
            ]
        );
        assert_eq!(r.failed[0].destination_cidr_block, "10.1.0.0/24");
        let left: Vec<String> = f
            .entries_in("vtb-sys")
            .into_iter()
            .map(|e| e.route_entry_id)
            .collect();
        assert_eq!(left, [pending]);
        assert_eq!(f.writes().len(), 1);
    }
}
