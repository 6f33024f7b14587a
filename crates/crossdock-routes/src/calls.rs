//! The cloud calls of one pass, counted: every read and write a pass makes goes through [`Calls`],
//! so the report says exactly how many it made (the steady state's budget is one read).

use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::Ipv4Net;

use crossdock_alibaba::{CreateRouteEntry, Error as CloudError, RouteEntry, RouteEntryFilter};

use crate::cloud::RouteCloud;

/// Counts the calls of one pass. Shared (`&self`) so that independent reads can run concurrently.
pub(crate) struct Calls<'a> {
    cloud: &'a dyn RouteCloud,
    reads: AtomicU32,
    writes: AtomicU32,
}

impl<'a> Calls<'a> {
    pub(crate) fn new(cloud: &'a dyn RouteCloud) -> Self {
        Self {
            cloud,
            reads: AtomicU32::new(0),
            writes: AtomicU32::new(0),
        }
    }
    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reads(&self) -> u32 {
        self.reads.load(Ordering::Relaxed)
    }
    pub(crate) fn writes(&self) -> u32 {
        self.writes.load(Ordering::Relaxed)
    }
    pub(crate) async fn route_tables(
        &self,
        vpc: &str,
    ) -> Result<Vec<crossdock_alibaba::RouteTable>, CloudError> {
        self.read();
        self.cloud.route_tables(vpc).await
    }
    pub(crate) async fn route_entries(
        &self,
        table: &str,
        f: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, CloudError> {
        self.read();
        self.cloud.route_entries(table, f).await
    }
    pub(crate) async fn create_route(&self, req: &CreateRouteEntry) -> Result<String, CloudError> {
        self.write();
        self.cloud.create_route(req).await
    }
    pub(crate) async fn delete_route(&self, table: &str, id: &str) -> Result<(), CloudError> {
        self.write();
        self.cloud.delete_route(table, id).await
    }
    pub(crate) async fn vpc_cidrs(&self, vpc: &str) -> Result<Vec<Ipv4Net>, CloudError> {
        self.read();
        self.cloud.vpc_cidrs(vpc).await
    }
    /// `once`: one attempt ([`RouteCloud::vswitches_once`]).
    pub(crate) async fn vswitches(
        &self,
        vpc: &str,
        once: bool,
    ) -> Result<Vec<crossdock_alibaba::VSwitch>, CloudError> {
        self.read();
        if once {
            self.cloud.vswitches_once(vpc).await
        } else {
            self.cloud.vswitches(vpc).await
        }
    }
    pub(crate) async fn source_dest_check(&self, eni: &str) -> Result<Option<bool>, CloudError> {
        self.read();
        self.cloud.source_dest_check(eni).await
    }
    pub(crate) async fn instances(
        &self,
        q: &crossdock_alibaba::InstanceQuery,
    ) -> Result<Vec<crossdock_alibaba::Instance>, CloudError> {
        self.read();
        self.cloud.instances(q).await
    }
    pub(crate) async fn create_routes(
        &self,
        routes: &[crossdock_alibaba::NewRoute],
    ) -> Result<crossdock_alibaba::BatchResult, CloudError> {
        self.write();
        self.cloud.create_routes(routes).await
    }
    pub(crate) async fn delete_routes(
        &self,
        entries: &[crossdock_alibaba::RouteToDelete],
    ) -> Result<crossdock_alibaba::BatchResult, CloudError> {
        self.write();
        self.cloud.delete_routes(entries).await
    }
    pub(crate) async fn set_source_dest_check(
        &self,
        eni: &str,
        on: bool,
    ) -> Result<(), CloudError> {
        self.write();
        self.cloud.set_source_dest_check(eni, on).await
    }
}
