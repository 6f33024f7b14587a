//! The zone's answers, from a snapshot of the catalog.
//!
//! Inside the zone (default `crossdock.internal`):
//! - `<container>.<host>.<zone>`: one A record, that container on that host;
//! - `<name>.<zone>`: one A record per container of that name in the fleet;
//! - `<host>.<zone>`: exists (it has names below it) but holds no record: NOERROR with no
//!   answer, never NXDOMAIN, which would tell caches that nothing below exists either (RFC 8020);
//! - the apex: its SOA;
//! - anything else: NXDOMAIN. A name that exists but not with the asked type: NOERROR, empty.
//!
//! Reverse names (`d.c.b.a.in-addr.arpa`) of an address inside the reverse networks (the
//! cluster ranges: every container address lies in them) are ours too: PTR to every
//! `<container>.<host>.<zone>` holding that address, NXDOMAIN when none does. Every other name
//! is not ours ([`ZoneView::answer`] returns `None`) and is forwarded upstream.
//!
//! Host labels are unique in a healthy fleet (instance hostnames). When two hosts publish the
//! same label, the host with the smaller [`HostId`] owns `<container>.<label>`; the other host's
//! containers are still answered by their fleet names, not by container name or PTR.
//!
//! Negative answers carry the SOA, whose minimum (the negative-caching TTL) is kept short,
//! because a name asked for just before its container starts must not stay unknown for long.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::catalog::{HostId, HostRecords};
use crate::label::{Label, ZoneName};

/// Time to live of the zone's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneTtls {
    /// A and PTR records, in seconds.
    pub answer_secs: u32,
    /// Negative answers (the SOA's minimum), in seconds.
    pub negative_secs: u32,
}

impl Default for ZoneTtls {
    fn default() -> Self {
        Self {
            answer_secs: 5,
            negative_secs: 1,
        }
    }
}

/// The record types the zone distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// IPv4 address.
    A,
    /// Reverse pointer.
    Ptr,
    /// Start of authority.
    Soa,
    /// Every type the name has.
    Any,
    /// Any other type (AAAA, MX, TXT, ...): the zone has none.
    Other,
}

/// The zone's start of authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Owner: the zone apex (or the reverse zone's), fully qualified.
    pub owner: String,
    /// Primary name server, `ns.<zone>.`.
    pub mname: String,
    /// Mailbox, `hostmaster.<zone>.`.
    pub rname: String,
    /// Follows the catalog's changes.
    pub serial: u32,
    /// Refresh, retry, expire: nobody transfers this zone; conventional values.
    pub refresh: i32,
    /// See `refresh`.
    pub retry: i32,
    /// See `refresh`.
    pub expire: i32,
    /// The negative-caching TTL.
    pub minimum: u32,
}

/// One resource record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// Fully qualified target name.
    Ptr(String),
    /// The zone's SOA.
    Soa(Soa),
}

/// A record of an answer: owner name (fully qualified, lower case), TTL, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name.
    pub name: String,
    /// Seconds.
    pub ttl: u32,
    /// Data.
    pub data: RecordData,
}

/// The response code of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// The name exists (the answer may still be empty).
    NoError,
    /// The name does not exist.
    NxDomain,
}

/// The zone's answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section: the SOA on negative answers.
    pub authority: Vec<Record>,
}

/// The zone as of one catalog state: indexes for every question, built once per change.
#[derive(Debug, Clone, Default)]
pub struct ZoneView {
    zone: Vec<String>,
    zone_fqdn: String,
    reverse: Vec<Ipv4Net>,
    ttls: ZoneTtls,
    serial: u32,
    by_container: HashMap<(Label, Label), Ipv4Addr>,
    by_name: BTreeMap<Label, BTreeSet<Ipv4Addr>>,
    by_ip: HashMap<Ipv4Addr, BTreeSet<String>>,
    hosts: BTreeSet<Label>,
}

/// What a query name is, relative to the zone.
enum Place<'a> {
    Zone(Vec<&'a str>),
    Reverse(Ipv4Addr),
    Elsewhere,
}

impl ZoneView {
    /// Builds the view from the catalog's sets (in host id order, which decides label ownership).
    pub fn build<'a>(
        zone: &ZoneName,
        reverse: &[Ipv4Net],
        ttls: ZoneTtls,
        changes: u64,
        sets: impl Iterator<Item = (&'a HostId, &'a HostRecords)>,
    ) -> Self {
        let mut v = Self {
            zone: zone.labels().iter().map(|l| l.to_string()).collect(),
            zone_fqdn: zone.fqdn(&[]),
            reverse: reverse.iter().map(|n| n.trunc()).collect(),
            ttls,
            serial: u32::try_from(changes % (u64::from(u32::MAX) + 1)).unwrap_or(u32::MAX),
            ..Self::default()
        };
        for (_, set) in sets {
            v.add_host(zone, set);
        }
        v
    }

    fn add_host(&mut self, zone: &ZoneName, set: &HostRecords) {
        let owns_label = self.hosts.insert(set.host.clone());
        for r in &set.records {
            self.by_name.entry(r.name.clone()).or_default().insert(r.ip);
            if owns_label {
                self.by_container
                    .insert((r.container.clone(), set.host.clone()), r.ip);
                let fqdn = zone.fqdn(&[&r.container, &set.host]);
                self.by_ip.entry(r.ip).or_default().insert(fqdn);
            }
        }
    }

    /// The SOA serial (the catalog's change count, wrapping).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The zone's answer to `qname` (any case, trailing dot optional) and `qtype`; `None` when the
    /// name is not the zone's (forward it).
    pub fn answer(&self, qname: &str, qtype: QueryType) -> Option<Answer> {
        let lower = qname.trim_end_matches('.').to_ascii_lowercase();
        match self.place(&lower) {
            Place::Elsewhere => None,
            Place::Zone(labels) => Some(self.zone_answer(&labels, qtype)),
            Place::Reverse(ip) => Some(self.reverse_answer(ip, qtype)),
        }
    }

    fn place<'a>(&self, name: &'a str) -> Place<'a> {
        let labels: Vec<&str> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').collect()
        };
        if labels.len() >= self.zone.len() {
            let (inner, tail) = labels.split_at(labels.len() - self.zone.len());
            if tail.iter().zip(&self.zone).all(|(a, b)| a == b) {
                return Place::Zone(inner.to_vec());
            }
        }
        match reverse_ip(&labels) {
            Some(ip) if self.reverse.iter().any(|n| n.contains(&ip)) => Place::Reverse(ip),
            _ => Place::Elsewhere,
        }
    }

    fn zone_answer(&self, labels: &[&str], qtype: QueryType) -> Answer {
        let fqdn = |labels: &[&str]| {
            let mut s: String = labels.iter().map(|l| format!("{l}.")).collect();
            s.push_str(&self.zone_fqdn);
            s
        };
        let found: Option<Vec<Ipv4Addr>> = match labels {
            [] => {
                return match qtype {
                    QueryType::Soa | QueryType::Any => Answer {
                        rcode: Rcode::NoError,
                        answers: vec![self.soa_record(self.zone_fqdn.clone())],
                        authority: Vec::new(),
                    },
                    _ => self.negative(Rcode::NoError, self.zone_fqdn.clone()),
                }
            }
            [one] => self.by_name_or_host(one),
            [container, host] => self.by_container(container, host),
            _ => None,
        };
        match found {
            None => self.negative(Rcode::NxDomain, self.zone_fqdn.clone()),
            Some(ips) if matches!(qtype, QueryType::A | QueryType::Any) && !ips.is_empty() => {
                let name = fqdn(labels);
                self.positive(ips.into_iter().map(|ip| (name.clone(), RecordData::A(ip))))
            }
            Some(_) => self.negative(Rcode::NoError, self.zone_fqdn.clone()),
        }
    }

    /// The addresses of a fleet name; an empty list for a host label (a name without records).
    fn by_name_or_host(&self, one: &str) -> Option<Vec<Ipv4Addr>> {
        let label = Label::new(one).ok()?;
        match self.by_name.get(&label) {
            Some(ips) => Some(ips.iter().copied().collect()),
            None => self.hosts.contains(&label).then(Vec::new),
        }
    }

    fn by_container(&self, container: &str, host: &str) -> Option<Vec<Ipv4Addr>> {
        let key = (Label::new(container).ok()?, Label::new(host).ok()?);
        self.by_container.get(&key).map(|ip| vec![*ip])
    }

    fn reverse_answer(&self, ip: Ipv4Addr, qtype: QueryType) -> Answer {
        let owner = reverse_zone(&self.reverse, ip);
        match self.by_ip.get(&ip) {
            None => self.negative(Rcode::NxDomain, owner),
            Some(targets) if matches!(qtype, QueryType::Ptr | QueryType::Any) => {
                let name = reverse_name(ip);
                self.positive(
                    targets
                        .iter()
                        .map(|t| (name.clone(), RecordData::Ptr(t.clone()))),
                )
            }
            Some(_) => self.negative(Rcode::NoError, owner),
        }
    }

    fn positive(&self, records: impl Iterator<Item = (String, RecordData)>) -> Answer {
        Answer {
            rcode: Rcode::NoError,
            answers: records
                .map(|(name, data)| Record {
                    name,
                    ttl: self.ttls.answer_secs,
                    data,
                })
                .collect(),
            authority: Vec::new(),
        }
    }

    fn negative(&self, rcode: Rcode, soa_owner: String) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            authority: vec![self.soa_record(soa_owner)],
        }
    }

    fn soa_record(&self, owner: String) -> Record {
        Record {
            name: owner.clone(),
            ttl: self.ttls.negative_secs,
            data: RecordData::Soa(Soa {
                owner,
                mname: format!("ns.{}", self.zone_fqdn),
                rname: format!("hostmaster.{}", self.zone_fqdn),
                serial: self.serial,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: self.ttls.negative_secs,
            }),
        }
    }

    /// How many distinct fleet names the zone answers.
    pub fn name_count(&self) -> usize {
        self.by_name.len()
    }
}

/// `d.c.b.a.in-addr.arpa` (labels) to `a.b.c.d`; `None` for anything else, including octets
/// written with leading zeros.
fn reverse_ip(labels: &[&str]) -> Option<Ipv4Addr> {
    let [d, c, b, a, "in-addr", "arpa"] = labels else {
        return None;
    };
    let octet = |s: &str| {
        let n: u8 = s.parse().ok()?;
        (n.to_string() == s).then_some(n)
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// The reverse name of an address, fully qualified.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
}

/// The owner of the reverse SOA: the reverse network holding `ip`, widened to whole octets.
fn reverse_zone(reverse: &[Ipv4Net], ip: Ipv4Addr) -> String {
    let prefix = reverse
        .iter()
        .find(|n| n.contains(&ip))
        .map_or(0, |n| n.prefix_len());
    let octets = usize::from(prefix / 8).max(1);
    let mut s: String = ip.octets()[..octets]
        .iter()
        .rev()
        .map(|o| format!("{o}."))
        .collect();
    s.push_str("in-addr.arpa.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, CatalogLimits, RecordVersion};
    use crate::record::ContainerRecord;
    use std::time::Duration;

    fn rec(c: &str, n: &str, ip: [u8; 4]) -> ContainerRecord {
        ContainerRecord {
            container: Label::new(c).unwrap(),
            name: Label::new(n).unwrap(),
            ip: ip.into(),
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::new(HostId("i-1".into()), CatalogLimits::default());
        let hosts = [
            (
                "i-1",
                "h1",
                vec![
                    rec("web", "web", [10, 1, 0, 2]),
                    rec("db-1", "db", [10, 1, 0, 3]),
                ],
            ),
            ("i-3", "h3", vec![rec("web-a", "web", [10, 3, 0, 2])]),
            ("i-4", "h4", vec![]),
            // Claims h1's label: its container answers only by fleet name.
            ("i-9", "h1", vec![rec("api", "api", [10, 9, 0, 2])]),
        ];
        for (id, host, records) in hosts {
            let set = HostRecords {
                host: Label::new(host).unwrap(),
                version: RecordVersion {
                    incarnation: 1,
                    counter: 1,
                },
                records,
            };
            c.merge(HostId(id.into()), set, Duration::ZERO);
        }
        c
    }

    fn view() -> ZoneView {
        let reverse = ["10.0.0.0/8".parse().unwrap()];
        catalog().view(&ZoneName::default(), &reverse, ZoneTtls::default())
    }

    fn a(ans: &Answer) -> Vec<Ipv4Addr> {
        ans.answers
            .iter()
            .filter_map(|r| match r.data {
                RecordData::A(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_container_on_a_host_has_one_address() {
        let ans = view()
            .answer("WEB.h1.Crossdock.Internal.", QueryType::A)
            .unwrap();
        assert_eq!(ans.rcode, Rcode::NoError);
        assert_eq!(a(&ans), vec![Ipv4Addr::new(10, 1, 0, 2)]);
        assert_eq!(ans.answers[0].name, "web.h1.crossdock.internal.");
        assert_eq!(ans.answers[0].ttl, 5);
    }

    #[test]
    fn a_fleet_name_has_every_containers_address() {
        let ans = view()
            .answer("web.crossdock.internal", QueryType::A)
            .unwrap();
        assert_eq!(
            a(&ans),
            vec![Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 3, 0, 2)]
        );
        // The shadowed host's container still answers by its fleet name.
        let api = view()
            .answer("api.crossdock.internal", QueryType::A)
            .unwrap();
        assert_eq!(a(&api), vec![Ipv4Addr::new(10, 9, 0, 2)]);
        assert_eq!(
            view()
                .answer("api.h1.crossdock.internal", QueryType::A)
                .unwrap()
                .rcode,
            Rcode::NxDomain
        );
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain_with_the_soa() {
        for q in [
            "nope.crossdock.internal",
            "web.h9.crossdock.internal",
            "a.b.c.crossdock.internal",
            "bad_label.crossdock.internal",
        ] {
            let ans = view().answer(q, QueryType::A).unwrap();
            assert_eq!(ans.rcode, Rcode::NxDomain, "{q}");
            assert!(ans.answers.is_empty());
            assert!(
                matches!(&ans.authority[0].data, RecordData::Soa(s) if s.minimum == 1 && s.owner == "crossdock.internal.")
            );
        }
    }

    #[test]
    fn existing_names_without_the_type_and_host_labels_are_empty_not_nxdomain() {
        for (q, t) in [
            ("web.crossdock.internal", QueryType::Other),
            ("h4.crossdock.internal", QueryType::A),
            ("h3.crossdock.internal", QueryType::A),
            ("crossdock.internal", QueryType::A),
        ] {
            let ans = view().answer(q, t).unwrap();
            assert_eq!(ans.rcode, Rcode::NoError, "{q}");
            assert!(ans.answers.is_empty(), "{q}");
            assert_eq!(ans.authority.len(), 1, "{q}");
        }
        let soa = view()
            .answer("crossdock.internal.", QueryType::Soa)
            .unwrap();
        assert!(matches!(soa.answers[0].data, RecordData::Soa(_)));
    }

    #[test]
    fn ptr_names_a_container_address_and_nxdomain_covers_the_rest_of_the_cluster() {
        let v = view();
        let ans = v.answer("2.0.1.10.in-addr.arpa.", QueryType::Ptr).unwrap();
        assert_eq!(
            ans.answers[0].data,
            RecordData::Ptr("web.h1.crossdock.internal.".into())
        );
        assert_eq!(ans.answers[0].name, "2.0.1.10.in-addr.arpa.");
        let none = v.answer("99.0.1.10.in-addr.arpa", QueryType::Ptr).unwrap();
        assert_eq!(none.rcode, Rcode::NxDomain);
        assert!(
            matches!(&none.authority[0].data, RecordData::Soa(s) if s.owner == "10.in-addr.arpa.")
        );
        // The shadowed host's address has no PTR.
        assert_eq!(
            v.answer("2.0.9.10.in-addr.arpa", QueryType::Ptr)
                .unwrap()
                .rcode,
            Rcode::NxDomain
        );
    }

    #[test]
    fn names_outside_the_zone_and_the_cluster_are_forwarded() {
        let v = view();
        for q in [
            "example.com.",
            "internal.",
            "1.1.168.192.in-addr.arpa.",
            "0.1.10.in-addr.arpa.",
            "02.0.1.10.in-addr.arpa.",
        ] {
            assert_eq!(v.answer(q, QueryType::A), None, "{q}");
        }
    }

    #[test]
    fn the_serial_follows_the_catalog() {
        let mut c = catalog();
        let z = ZoneName::default();
        let s1 = c.view(&z, &[], ZoneTtls::default()).serial();
        c.withdraw(&HostId("i-4".into()));
        assert!(c.view(&z, &[], ZoneTtls::default()).serial() > s1);
    }
}
