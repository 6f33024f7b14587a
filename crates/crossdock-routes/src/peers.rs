//! Per-host mode's peers for container names: the hosts behind crossdock's routes.
//!
//! In fleet mode the names catalog's peers are the fleet's members (the sweep lists them). A per-host
//! deployment has no cluster tag, but it has the route table: every route crossdock wrote carries its
//! next hop's instance id in its marker (`crossdock:<instance>`), and those instances are exactly the
//! hosts whose containers this host can reach. So, when asked ([`crate::RoutesConfig::route_peers`]),
//! a pass lists the custom entries of the tables this host's route is in (one read per table) and
//! asks ECS for the private IPs of next hops it has not met yet (`DescribeInstances` by id, only when
//! a new one appears). The answer is the catalog's allowed peers; a pass whose reads fail reports
//! nothing, and the agent keeps the peers it had.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crossdock_alibaba::{InstanceQuery, RouteEntryFilter};

use crate::calls::Calls;
use crate::fleet_plan::crossdock_hop;
use crate::plan::Observed;
use crate::reconciler::RouteReconciler;

/// What per-host mode remembers about the hosts behind crossdock's routes.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    /// Private IP of every next hop met so far (an instance keeps its primary IP for life).
    ips: BTreeMap<String, Ipv4Addr>,
}

/// Next hops of crossdock-marked routes in `observed`, other than `self_id`.
pub fn route_hops(observed: &[Observed], route_name: &str, self_id: &str) -> BTreeSet<String> {
    observed
        .iter()
        .flat_map(|o| o.entries.iter())
        .filter_map(|e| crossdock_hop(e, route_name))
        .filter(|hop| *hop != self_id)
        .map(str::to_string)
        .collect()
}

impl RouteReconciler {
    /// The private IPs of the hosts behind crossdock's routes in `tables` (`None`: a read failed).
    pub(crate) async fn route_peers(
        &self,
        book: &mut PeerBook,
        calls: &Calls<'_>,
        tables: &[String],
    ) -> Option<Vec<Ipv4Addr>> {
        let custom = RouteEntryFilter {
            route_entry_type: Some("Custom".into()),
            ..Default::default()
        };
        let mut observed = Vec::new();
        for table in tables {
            match calls.route_entries(table, &custom).await {
                Ok(entries) => observed.push(Observed {
                    table_id: table.clone(),
                    entries,
                }),
                Err(e) => {
                    tracing::debug!(table, error = %e, "listing the routes for names peers failed; keeping the last peers");
                    return None;
                }
            }
        }
        let hops = route_hops(&observed, &self.cfg.route_name, &self.identity.instance_id);
        book.ips.retain(|id, _| hops.contains(id));
        let unknown: Vec<String> = hops
            .iter()
            .filter(|h| !book.ips.contains_key(*h))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let query = InstanceQuery {
                vpc_id: None,
                tag: None,
                instance_ids: unknown,
            };
            match calls.instances(&query).await {
                Ok(found) => {
                    for i in found {
                        if let Some(ip) = i.private_ip.filter(|_| hops.contains(&i.instance_id)) {
                            book.ips.insert(i.instance_id, ip);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "looking up the hosts behind crossdock's routes failed; keeping the last peers");
                    return None;
                }
            }
        }
        let mut ips: Vec<Ipv4Addr> = book.ips.values().copied().collect();
        ips.sort_unstable();
        ips.dedup();
        Some(ips)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::fake::{FakeCloud, Op, ME};
    use crate::{RouteCloud, RouteReconciler, RoutesConfig};
    use crossdock_alibaba::Identity;

    const SUBNET: &str = "10.1.11.0/24";

    fn per_host(fake: &Arc<FakeCloud>) -> RouteReconciler {
        let cloud: Arc<dyn RouteCloud> = fake.clone();
        let identity = Identity {
            instance_id: ME.into(),
            region_id: "cn-test".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            private_ip: "192.168.1.11".into(),
            mac: String::new(),
            eni_id: "eni-1".into(),
        };
        // Waits (for `Available`) return at once.
        let sleeper: crossdock_alibaba::Sleeper = Arc::new(|_| Box::pin(async {}));
        RouteReconciler::new(cloud, RoutesConfig::default(), identity)
            .with_sleeper(sleeper)
            .with_route_peers(true)
    }

    #[tokio::test]
    async fn per_host_peers_are_the_hosts_behind_crossdocks_routes() {
        let fake = Arc::new(FakeCloud::standard());
        fake.add_instance("i-b", "192.168.1.12".parse().unwrap(), &[]);
        fake.add_instance("i-c", "192.168.1.13".parse().unwrap(), &[]);
        fake.add_instance("i-user", "192.168.1.30".parse().unwrap(), &[]);
        let b = "crossdock:i-b";
        fake.add_entry(
            "vtb-sys",
            "10.1.12.0/24",
            "i-b",
            "crossdock",
            b,
            "Available",
        );
        fake.add_entry(
            "vtb-sys",
            "10.1.13.0/24",
            "i-c",
            "crossdock",
            "crossdock:i-c",
            "Pending",
        );
        // A user's route (no marker) names no peer.
        fake.add_entry("vtb-sys", "10.9.0.0/24", "i-user", "", "", "Available");
        let me = per_host(&fake);
        let report = me.sync(Some(SUBNET.parse().unwrap())).await;
        assert!(report.is_ready(), "{report:?}");
        let want: Vec<std::net::Ipv4Addr> = vec![
            "192.168.1.12".parse().unwrap(),
            "192.168.1.13".parse().unwrap(),
        ];
        assert_eq!(report.peers.as_ref(), Some(&want));
        assert_eq!(fake.count(Op::Instances), 1);

        // Known next hops are not looked up again; a route gone takes its peer with it.
        fake.with(|s| {
            s.entries
                .retain(|e| e.destination_cidr_block != "10.1.13.0/24")
        });
        let report = me.sync(Some(SUBNET.parse().unwrap())).await;
        assert_eq!(
            report.peers,
            Some(vec!["192.168.1.12".parse().unwrap()]),
            "{report:?}"
        );
        assert_eq!(fake.count(Op::Instances), 1, "no lookup for known hosts");
    }

    #[tokio::test]
    async fn a_failed_listing_reports_no_peers_so_the_last_ones_stay() {
        let fake = Arc::new(FakeCloud::standard());
        let me = per_host(&fake);
        me.sync(Some(SUBNET.parse().unwrap())).await;
        fake.fail_next(Op::Instances, "Throttling.User");
        fake.add_instance("i-b", "192.168.1.12".parse().unwrap(), &[]);
        fake.add_entry(
            "vtb-sys",
            "10.1.12.0/24",
            "i-b",
            "crossdock",
            "crossdock:i-b",
            "Available",
        );
        let report = me.sync(Some(SUBNET.parse().unwrap())).await;
        assert_eq!(report.peers, None, "{report:?}");
    }

    #[tokio::test]
    async fn without_names_nothing_more_is_read() {
        let fake = Arc::new(FakeCloud::standard());
        let me = per_host(&fake).with_route_peers(false);
        let report = me.sync(Some(SUBNET.parse().unwrap())).await;
        assert_eq!(report.peers, None);
        assert_eq!(fake.count(Op::Instances), 0);
    }
}
