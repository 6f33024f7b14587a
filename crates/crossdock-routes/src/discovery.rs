//! Discovery: the VPC's layout (vSwitches, CIDRs, which table each vSwitch uses, so which tables
//! this host's route must be in) and the ENI's source/destination check, read on the first pass, on
//! a subnet change and every `rediscover_every` passes.

use crossdock_alibaba::{Error as CloudError, RouteEntryFilter};
use crossdock_config::SourceDestCheck as SdcMode;
use crossdock_status::Reason;
use ipnet::Ipv4Net;

use crate::calls::Calls;
use crate::plan::NetworkCidrs;
use crate::problem::{Outcome, Problem, RETRY_PERMANENT};
use crate::reconciler::{RouteReconciler, SyncState};
use crate::report::SourceDestCheck;
use crate::tables::{Senders, TableLayout};

#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    /// The tables this host's route must be in (every table on a path from a sender).
    pub(crate) tables: Vec<String>,
    pub(crate) cidrs: NetworkCidrs,
    /// Which table each vSwitch uses.
    pub(crate) layout: TableLayout,
    /// Addresses taken in each vSwitch (its size less `AvailableIpAddressCount`, reserved addresses
    /// included), where the API said: a bound on how many instances, so members, can be booting
    /// together ([`crate::boot`]).
    pub(crate) in_use: Vec<(Ipv4Net, u64)>,
}

/// The addresses taken in each of `vswitches`: its size less its free addresses, where the API
/// gave both.
pub(crate) fn in_use(vswitches: &[crossdock_alibaba::VSwitch]) -> Vec<(Ipv4Net, u64)> {
    vswitches
        .iter()
        .filter_map(|v| {
            let net: Ipv4Net = v.cidr_block.trim().parse().ok()?;
            let size = 1u64 << (32 - u32::from(net.prefix_len()));
            Some((net, size.saturating_sub(v.available_ip_count?)))
        })
        .collect()
}

impl Discovery {
    /// The addresses in use in the vSwitches inside `ranges` (every vSwitch when `ranges` is
    /// empty).
    pub(crate) fn addresses_in_use(&self, ranges: &[Ipv4Net]) -> u64 {
        self.in_use
            .iter()
            .filter(|(net, _)| ranges.is_empty() || ranges.iter().any(|r| r.contains(net)))
            .map(|(_, n)| n)
            .sum()
    }
}

impl RouteReconciler {
    /// Reads the layout. `first`: the first discovery of this reconciler; in fleet mode it takes the
    /// VPC's primary CIDR from the metadata service ([`crate::RoutesConfig::known_vpc_cidr`]) instead
    /// of `DescribeVpcAttribute`, since a whole fleet boots at once against one account's rate limit;
    /// later discoveries read the attribute (secondary CIDRs included).
    ///
    /// `once`: the vSwitches are read with one attempt ([`RouteCloud::vswitches_once`]), so a
    /// throttled answer comes back at once (a fleet member's first call at boot).
    ///
    /// [`RouteCloud::vswitches_once`]: crate::RouteCloud::vswitches_once
    pub(crate) async fn discover(
        &self,
        calls: &Calls<'_>,
        first: bool,
        once: bool,
    ) -> Result<Discovery, Problem> {
        let vpc = &self.identity.vpc_id;
        let known = self
            .cfg
            .known_vpc_cidr
            .filter(|_| first && self.cfg.fleet.is_some());
        let read_cidrs = async {
            match known {
                Some(cidr) => Ok(vec![cidr]),
                None => calls.vpc_cidrs(vpc).await,
            }
        };
        let (vswitches, vpc_cidrs) = tokio::join!(calls.vswitches(vpc, once), read_cidrs);
        let vswitches = vswitches
            .map_err(|e| Problem::from_error(&format!("list the vSwitches of {vpc}"), &e))?;
        let vpc_cidrs =
            vpc_cidrs.map_err(|e| Problem::from_error(&format!("read the CIDRs of {vpc}"), &e))?;
        let listing =
            if self.cfg.route_table_ids.is_empty() && !TableLayout::complete_from(&vswitches) {
                calls.route_tables(vpc).await.map_err(|e| {
                    Problem::from_error(&format!("list the route tables of {vpc}"), &e)
                })?
            } else {
                Vec::new()
            };
        let no_table = |m: String| {
            Problem::failed(
                Reason::NoRouteTable,
                format!("{m}; fix: set cloud.route_table_ids"),
                Some(RETRY_PERMANENT),
            )
        };
        let layout = if self.cfg.route_table_ids.is_empty() {
            TableLayout::new(&vswitches, &listing).map_err(no_table)?
        } else {
            TableLayout::default()
        };
        let tables = layout
            .tables_on_path(
                &self.cfg.route_table_ids,
                Senders::Vpc,
                &self.identity.vswitch_id,
            )
            .map_err(no_table)?;
        let cidrs = NetworkCidrs {
            vpc: vpc_cidrs,
            vswitches: vswitches
                .iter()
                .filter_map(|v| Some((v.vswitch_id.clone(), v.cidr_block.trim().parse().ok()?)))
                .collect(),
        };
        let in_use = in_use(&vswitches);
        tracing::debug!(?tables, ?cidrs, ?in_use, "VPC layout");
        Ok(Discovery {
            tables,
            cidrs,
            layout,
            in_use,
        })
    }

    pub(crate) fn sdc_problem(&self) -> Problem {
        Problem::failed(
            Reason::SourceDestCheckEnabled,
            format!(
                "the source/destination check of {} is on, so the ENI drops routed container traffic; fix: \
                 switch it off (ECS ModifyNetworkInterfaceAttribute SourceDestCheck=false, or the console), \
                 or set cloud.source_dest_check = \"disable\" to let crossdock do it",
                self.identity.eni_id
            ),
            None,
        )
    }

    /// Takes in a read of the ENI's source/destination check; true when it must be switched off.
    pub(crate) fn note_source_dest(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        read: Result<Option<bool>, CloudError>,
    ) -> bool {
        let eni = &self.identity.eni_id;
        st.sdc_checked = true;
        match read {
            Ok(Some(false)) => st.sdc = SourceDestCheck::Disabled,
            Ok(None) => st.sdc = SourceDestCheck::Unknown,
            Ok(Some(true)) => {
                st.sdc = SourceDestCheck::Enabled;
                match self.cfg.source_dest_check {
                    SdcMode::Report => out.problems.push(self.sdc_problem()),
                    SdcMode::Disable => return true,
                }
            }
            Err(e) => {
                st.sdc_checked = false;
                st.sdc = SourceDestCheck::Unknown;
                out.problems.push(Problem::from_error(
                    &format!("read the source/destination check of {eni}"),
                    &e,
                ));
            }
        }
        false
    }

    /// Takes in the answer to switching the ENI's source/destination check off.
    pub(crate) fn note_source_dest_write(
        &self,
        st: &mut SyncState,
        out: &mut Outcome,
        written: Result<(), CloudError>,
    ) {
        let eni = &self.identity.eni_id;
        match written {
            Ok(()) => {
                tracing::info!(eni = %eni, "switched off the ENI's source/destination check");
                st.sdc = SourceDestCheck::Disabled;
                st.sdc_checked = true;
                out.sdc_disabled += 1;
            }
            Err(e) => {
                st.sdc_checked = false;
                out.problems.push(Problem::from_error(
                    &format!("switch off the source/destination check of {eni}"),
                    &e,
                ));
            }
        }
    }

    /// The vSwitches' table bindings as listed now (`None`: the read failed, or the listing names
    /// no table for some vSwitch: the last full discovery's layout stays until the next one).
    pub(crate) async fn read_layout(&self, calls: &Calls<'_>) -> Option<TableLayout> {
        if !self.cfg.route_table_ids.is_empty() {
            return None;
        }
        match calls.vswitches(&self.identity.vpc_id, false).await {
            Ok(v) if TableLayout::complete_from(&v) => TableLayout::new(&v, &[]).ok(),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "re-reading the vSwitches' tables failed; keeping the last layout");
                None
            }
        }
    }

    /// Takes a newer layout: the tables this host's route must be in follow it.
    /// Returns the tables that left every sender's path (bound to no vSwitch any more).
    pub(crate) fn follow_layout(&self, d: &mut Discovery, layout: TableLayout) -> Vec<String> {
        if layout == d.layout {
            return Vec::new();
        }
        match layout.tables_on_path(&[], Senders::Vpc, &self.identity.vswitch_id) {
            Ok(tables) => {
                if tables != d.tables {
                    tracing::info!(before = ?d.tables, after = ?tables, "the route tables on the senders' paths changed");
                }
                let left = d
                    .tables
                    .iter()
                    .filter(|t| !tables.contains(t))
                    .cloned()
                    .collect();
                d.tables = tables;
                d.layout = layout;
                left
            }
            Err(m) => {
                tracing::warn!("ignoring a vSwitch listing: {m}");
                Vec::new()
            }
        }
    }

    /// Per-host mode: this host's own routes (crossdock's marker, next hop here, `Available`) in
    /// tables that no vSwitch is bound to any more route nobody's traffic: they are deleted. The
    /// evidence is a vSwitch listing that shows this host's vSwitch (see `follow_layout`).
    pub(crate) async fn retire_tables(
        &self,
        calls: &Calls<'_>,
        out: &mut Outcome,
        left: &[String],
    ) {
        let pointing_here = RouteEntryFilter {
            next_hop_id: Some(self.identity.instance_id.clone()),
            route_entry_type: Some("Custom".into()),
            ..Default::default()
        };
        for table in left {
            let entries = match calls.route_entries(table, &pointing_here).await {
                Ok(e) => e,
                Err(e) => {
                    out.notes.push(format!(
                        "could not list {table}, which left the senders' paths: {e}"
                    ));
                    continue;
                }
            };
            for e in entries
                .iter()
                .filter(|e| self.marker.owns(e) && e.is_available())
            {
                tracing::warn!(table, entry = %e.route_entry_id, cidr = %e.destination_cidr_block, "deleting this host's route from a table no vSwitch is bound to any more");
                self.delete_stale(
                    calls,
                    out,
                    table,
                    &e.route_entry_id,
                    &e.destination_cidr_block,
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsw(cidr: &str, available: Option<u64>) -> crossdock_alibaba::VSwitch {
        crossdock_alibaba::VSwitch {
            vswitch_id: format!("vsw-{cidr}"),
            vpc_id: "vpc-1".into(),
            cidr_block: cidr.into(),
            route_table_id: None,
            available_ip_count: available,
        }
    }

    #[test]
    fn addresses_in_use_count_where_the_api_said_and_inside_the_host_ranges() {
        let listed = in_use(&[
            vsw("192.168.1.0/24", Some(200)),
            vsw("192.168.16.0/20", Some(4000)),
            vsw("192.168.2.0/24", None),
            vsw("not a cidr", Some(1)),
        ]);
        assert_eq!(listed.len(), 2, "{listed:?}");
        let d = Discovery {
            tables: Vec::new(),
            cidrs: NetworkCidrs {
                vpc: Vec::new(),
                vswitches: Vec::new(),
            },
            layout: TableLayout::default(),
            in_use: listed,
        };
        assert_eq!(d.addresses_in_use(&[]), 56 + 96);
        assert_eq!(
            d.addresses_in_use(&["192.168.16.0/20".parse().unwrap()]),
            96
        );
        assert_eq!(
            d.addresses_in_use(&["192.168.0.0/16".parse().unwrap()]),
            152
        );
        assert_eq!(d.addresses_in_use(&["10.0.0.0/8".parse().unwrap()]), 0);
    }
}
