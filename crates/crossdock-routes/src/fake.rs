//! An in-memory VPC for the reconciler's table tests (test-only). It keeps the semantics the
//! reconciler depends on: destinations unique per table (`InvalidCIDRBlock.Duplicate`), `ClientToken`
//! idempotency, new entries `Pending` for a few listings before `Available`, only `Available` entries
//! deletable, quota per table, filters of `DescribeRouteEntryList`, and one-shot injected errors.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crossdock_alibaba::{
    ApiError, CreateRouteEntry, Error as CloudError, NextHop, Product, RouteEntry,
    RouteEntryFilter, RouteTable, VSwitch,
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
}

#[derive(Debug)]
pub struct FakeCloud {
    pub s: Mutex<FakeState>,
}

pub const ME: &str = "i-me";

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
                }],
                sdc: HashMap::from([("eni-1".to_string(), Some(false))]),
                pending_listings: 1,
                pending_left: HashMap::new(),
                quota: 200,
                next_id: 1,
                tokens: HashMap::new(),
                inject: Vec::new(),
                log: Vec::new(),
                appears_before_create: None,
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
                .filter(|(op, _)| matches!(op, Op::Create | Op::Delete | Op::SetSdc))
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

#[async_trait]
impl RouteCloud for FakeCloud {
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
        let id = format!("rte-{}", s.next_id);
        s.next_id += 1;
        s.tokens.insert(r.client_token.clone(), id.clone());
        s.entries.push(RouteEntry {
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
