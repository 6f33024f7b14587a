//! Which route tables must hold a container subnet's route.
//!
//! A VPC routes a packet by the table bound to the vSwitch the packet *comes from*. In a multi-zone
//! VPC, vSwitches are often bound to different tables (custom tables for some, the system table for
//! the rest), so a route that lives only in the table of the destination host's own vSwitch is
//! invisible to senders in the other vSwitches: their packets find no route and are dropped, and
//! both agents still look healthy. The route must be in every table on a path from a sender:
//!
//! - `[cloud] route_table_ids` set: exactly those tables (the operator knows best);
//! - fleet mode: the tables bound to the vSwitches where members live;
//! - per-host mode: every table bound to some vSwitch of the VPC (any host may send);
//!
//! A vSwitch with no custom table uses the VPC's system table. A custom table bound to no vSwitch
//! routes nobody's traffic and gets no route.

use std::collections::{BTreeMap, BTreeSet};

use crossdock_alibaba::{RouteTable, VSwitch};

/// The VPC's vSwitches and the table each one uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableLayout {
    /// vSwitch id → the table routing traffic from it.
    bound: BTreeMap<String, String>,
}

/// Whose traffic must find the route.
#[derive(Debug, Clone, Copy)]
pub enum Senders<'a> {
    /// Every vSwitch of the VPC (per-host mode).
    Vpc,
    /// The vSwitches where these members live (fleet mode).
    Members(&'a BTreeSet<String>),
}

impl TableLayout {
    /// Builds the layout from the vSwitch listing (which names each vSwitch's table) and, for
    /// vSwitches the listing leaves without one, the table listing (each table's vSwitches, else
    /// the system table). Fails when some vSwitch has no table at all.
    pub fn new(vswitches: &[VSwitch], tables: &[RouteTable]) -> Result<Self, String> {
        let system = tables.iter().find(|t| t.is_system());
        let mut bound = BTreeMap::new();
        for v in vswitches {
            let table = v
                .route_table_id
                .clone()
                .filter(|t| !t.is_empty())
                .or_else(|| {
                    tables
                        .iter()
                        .find(|t| t.vswitch_ids.contains(&v.vswitch_id))
                        .map(|t| t.route_table_id.clone())
                })
                .or_else(|| system.map(|t| t.route_table_id.clone()))
                .ok_or_else(|| {
                    format!(
                        "no route table is associated with vSwitch {} and the VPC has no system route table",
                        v.vswitch_id
                    )
                })?;
            bound.insert(v.vswitch_id.clone(), table);
        }
        Ok(Self { bound })
    }

    /// Whether every vSwitch's table is known from the vSwitch listing alone (no table listing
    /// needed).
    pub fn complete_from(vswitches: &[VSwitch]) -> bool {
        vswitches
            .iter()
            .all(|v| v.route_table_id.as_deref().is_some_and(|t| !t.is_empty()))
    }

    /// The table routing traffic from `vswitch_id`, if the vSwitch is known.
    pub fn table_of(&self, vswitch_id: &str) -> Option<&str> {
        self.bound.get(vswitch_id).map(String::as_str)
    }

    /// Every table bound to some vSwitch.
    pub fn bound_tables(&self) -> BTreeSet<String> {
        self.bound.values().cloned().collect()
    }

    /// The tables that must hold the route, in a stable order. `own_vswitch` is always a sender
    /// (this host's own vSwitch must reach its peers, and the layout must know it: an answer that
    /// does not is no basis for choosing).
    pub fn tables_on_path(
        &self,
        configured: &[String],
        senders: Senders<'_>,
        own_vswitch: &str,
    ) -> Result<Vec<String>, String> {
        if !configured.is_empty() {
            let mut t = configured.to_vec();
            t.sort();
            t.dedup();
            return Ok(t);
        }
        let Some(own) = self.table_of(own_vswitch) else {
            return Err(format!(
                "the vSwitch listing does not show this host's vSwitch {own_vswitch}; fix: check \
                 [cloud] vswitch_id / the metadata service, or set cloud.route_table_ids"
            ));
        };
        let mut tables: BTreeSet<String> = BTreeSet::from([own.to_string()]);
        match senders {
            Senders::Vpc => tables.extend(self.bound_tables()),
            Senders::Members(vsws) => {
                tables.extend(
                    vsws.iter()
                        .filter_map(|v| self.table_of(v))
                        .map(str::to_string),
                );
            }
        }
        Ok(tables.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsw(id: &str, table: Option<&str>) -> VSwitch {
        VSwitch {
            vswitch_id: id.into(),
            vpc_id: "vpc-1".into(),
            cidr_block: String::new(),
            route_table_id: table.map(str::to_string),
            available_ip_count: None,
        }
    }

    fn table(id: &str, system: bool, vsws: &[&str]) -> RouteTable {
        RouteTable {
            route_table_id: id.into(),
            route_table_type: if system { "System" } else { "Custom" }.into(),
            vpc_id: "vpc-1".into(),
            router_id: "vrt-1".into(),
            status: "Available".into(),
            vswitch_ids: vsws.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Two zones: vsw-a on the system table, vsw-b on custom vtb-b; vtb-idle bound to nothing.
    fn two_zones() -> TableLayout {
        TableLayout::new(
            &[vsw("vsw-a", Some("vtb-sys")), vsw("vsw-b", Some("vtb-b"))],
            &[
                table("vtb-sys", true, &["vsw-a"]),
                table("vtb-b", false, &["vsw-b"]),
                table("vtb-idle", false, &[]),
            ],
        )
        .unwrap()
    }

    /// name, layout, configured tables, senders, own vSwitch, expected tables.
    type Row<'a> = (
        &'a str,
        &'a TableLayout,
        Vec<String>,
        Senders<'a>,
        &'a str,
        Vec<String>,
    );

    #[test]
    fn decision_table() {
        let one = TableLayout::new(&[vsw("vsw-a", Some("vtb-sys"))], &[]).unwrap();
        let zones = two_zones();
        let members_a = set(&["vsw-a"]);
        let members_ab = set(&["vsw-a", "vsw-b"]);
        let rows: Vec<Row<'_>> = vec![
            (
                "one table",
                &one,
                vec![],
                Senders::Vpc,
                "vsw-a",
                names(&["vtb-sys"]),
            ),
            (
                "system + custom, per host: both",
                &zones,
                vec![],
                Senders::Vpc,
                "vsw-a",
                names(&["vtb-b", "vtb-sys"]),
            ),
            (
                "explicit list wins",
                &zones,
                names(&["vtb-x", "vtb-b", "vtb-x"]),
                Senders::Vpc,
                "vsw-a",
                names(&["vtb-b", "vtb-x"]),
            ),
            (
                "unbound table never chosen",
                &zones,
                vec![],
                Senders::Members(&members_ab),
                "vsw-b",
                names(&["vtb-b", "vtb-sys"]),
            ),
            (
                "fleet: no member in vsw-b, its table left out",
                &zones,
                vec![],
                Senders::Members(&members_a),
                "vsw-a",
                names(&["vtb-sys"]),
            ),
            (
                "fleet: own vSwitch always a sender",
                &zones,
                vec![],
                Senders::Members(&members_a),
                "vsw-b",
                names(&["vtb-b", "vtb-sys"]),
            ),
        ];
        for (name, layout, configured, senders, own, want) in rows {
            assert_eq!(
                layout.tables_on_path(&configured, senders, own).unwrap(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_vswitch_without_a_named_table_falls_back_to_the_table_listing_then_the_system_table() {
        let layout = TableLayout::new(
            &[vsw("vsw-a", None), vsw("vsw-b", None)],
            &[
                table("vtb-sys", true, &[]),
                table("vtb-b", false, &["vsw-b"]),
            ],
        )
        .unwrap();
        assert_eq!(layout.table_of("vsw-a"), Some("vtb-sys"));
        assert_eq!(layout.table_of("vsw-b"), Some("vtb-b"));
        assert!(!TableLayout::complete_from(&[vsw("vsw-a", None)]));
        assert!(TableLayout::new(&[vsw("vsw-a", None)], &[]).is_err());
    }

    #[test]
    fn a_listing_without_this_hosts_vswitch_chooses_nothing() {
        let err = two_zones()
            .tables_on_path(&[], Senders::Vpc, "vsw-unknown")
            .unwrap_err();
        assert!(err.contains("vsw-unknown"), "{err}");
    }
}
