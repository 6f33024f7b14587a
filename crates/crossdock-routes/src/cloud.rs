//! The seam between the reconciler and the cloud: eleven calls, one trait.
//!
//! The reconciler's behaviour (in sync → no writes, conflicts never overwritten, old routes deleted
//! only after the new one is Available, errors turned into conditions) is tested against an in-memory
//! implementation; the real one below is a thin mapping onto `crossdock_alibaba::Client`, which is
//! tested on its own against a loopback server and end to end against the lab's emulator.

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crossdock_alibaba::{
    BatchResult, CallCounts, Client, CreateRouteEntry, CredentialStatus, Error as CloudError,
    Instance, InstanceQuery, NewRoute, RouteEntry, RouteEntryFilter, RouteTable, RouteToDelete,
    VSwitch,
};

/// What the route reconciler needs from the cloud.
#[async_trait]
pub trait RouteCloud: Send + Sync {
    /// Route tables of the VPC.
    async fn route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTable>, CloudError>;
    /// Entries of one table matching the filter (implementations may return more; callers filter).
    async fn route_entries(
        &self,
        table_id: &str,
        filter: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, CloudError>;
    /// Creates an entry; returns its id. One attempt: the reconciler paces retries of a refused
    /// write itself (see `RoutesConfig::write_backoff`).
    async fn create_route(&self, req: &CreateRouteEntry) -> Result<String, CloudError>;
    /// Deletes an entry (an error of class `NotFound` means it is already gone).
    async fn delete_route(&self, table_id: &str, entry_id: &str) -> Result<(), CloudError>;
    /// The VPC's IPv4 CIDRs (primary and secondary).
    async fn vpc_cidrs(&self, vpc_id: &str) -> Result<Vec<Ipv4Net>, CloudError>;
    /// The VPC's vSwitches (CIDR and associated route table).
    async fn vswitches(&self, vpc_id: &str) -> Result<Vec<VSwitch>, CloudError>;
    /// [`RouteCloud::vswitches`] with one attempt: a refusal (throttling) comes back at once, for
    /// the caller to decide when to try again.
    async fn vswitches_once(&self, vpc_id: &str) -> Result<Vec<VSwitch>, CloudError> {
        self.vswitches(vpc_id).await
    }
    /// Whether the ENI's source/destination check is on (`None`: the API does not say).
    async fn source_dest_check(&self, eni_id: &str) -> Result<Option<bool>, CloudError>;
    /// Switches the ENI's source/destination check.
    async fn set_source_dest_check(&self, eni_id: &str, enabled: bool) -> Result<(), CloudError>;
    /// ECS instances matching the query (fleet membership; a released instance is absent).
    async fn instances(&self, q: &InstanceQuery) -> Result<Vec<Instance>, CloudError>;
    /// Creates up to `crossdock_alibaba::MAX_ROUTE_BATCH` entries in one call, one attempt (the
    /// caller paces retries). Refused entries come back per entry in [`BatchResult::failed`].
    async fn create_routes(&self, routes: &[NewRoute]) -> Result<BatchResult, CloudError>;
    /// Deletes up to `crossdock_alibaba::MAX_ROUTE_BATCH` entries in one call, one attempt.
    async fn delete_routes(&self, entries: &[RouteToDelete]) -> Result<BatchResult, CloudError>;
    /// The credentials' state, if the implementation has credentials.
    fn credentials_status(&self) -> Option<CredentialStatus> {
        None
    }
    /// API call counters, if the implementation keeps them.
    fn call_counts(&self) -> Option<CallCounts> {
        None
    }
    /// Whether the account throttled one of this client's calls lately (many hosts are calling at
    /// once: spend calls carefully rather than fast).
    fn recently_throttled(&self) -> bool {
        false
    }
}

fn parse_cidrs<'a>(raw: impl IntoIterator<Item = &'a String>) -> Vec<Ipv4Net> {
    raw.into_iter()
        .filter_map(|c| c.trim().parse::<Ipv4Net>().ok())
        .collect()
}

#[async_trait]
impl RouteCloud for Client {
    async fn route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTable>, CloudError> {
        self.describe_route_table_list(vpc_id).await
    }

    async fn route_entries(
        &self,
        table_id: &str,
        filter: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, CloudError> {
        self.describe_route_entry_list(table_id, filter).await
    }

    async fn create_route(&self, req: &CreateRouteEntry) -> Result<String, CloudError> {
        self.create_route_entry_once(req).await
    }

    async fn delete_route(&self, _table_id: &str, entry_id: &str) -> Result<(), CloudError> {
        self.delete_route_entry(entry_id).await
    }

    async fn vpc_cidrs(&self, vpc_id: &str) -> Result<Vec<Ipv4Net>, CloudError> {
        let attr = self.describe_vpc_attribute(vpc_id).await?;
        Ok(parse_cidrs(
            std::iter::once(&attr.cidr_block).chain(attr.secondary_cidr_blocks.iter()),
        ))
    }

    async fn vswitches(&self, vpc_id: &str) -> Result<Vec<VSwitch>, CloudError> {
        self.describe_vswitches(vpc_id).await
    }

    async fn vswitches_once(&self, vpc_id: &str) -> Result<Vec<VSwitch>, CloudError> {
        self.describe_vswitches_once(vpc_id).await
    }

    async fn source_dest_check(&self, eni_id: &str) -> Result<Option<bool>, CloudError> {
        Ok(self
            .describe_network_interface(eni_id)
            .await?
            .source_dest_check)
    }

    async fn set_source_dest_check(&self, eni_id: &str, enabled: bool) -> Result<(), CloudError> {
        self.modify_source_dest_check(eni_id, enabled).await
    }

    async fn instances(&self, q: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        self.describe_instances(q).await
    }

    async fn create_routes(&self, routes: &[NewRoute]) -> Result<BatchResult, CloudError> {
        self.create_route_entries_once(routes).await
    }

    async fn delete_routes(&self, entries: &[RouteToDelete]) -> Result<BatchResult, CloudError> {
        self.delete_route_entries_once(entries).await
    }

    fn credentials_status(&self) -> Option<CredentialStatus> {
        Some(self.credential_status())
    }

    fn call_counts(&self) -> Option<CallCounts> {
        Some(self.counters())
    }

    fn recently_throttled(&self) -> bool {
        self.throttled_within(THROTTLE_MEMORY)
    }
}

/// How long a throttled answer makes the reconciler spend calls carefully.
const THROTTLE_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);
