//! The fleet's catalog: every host's record set, how sets replace each other, when a host's set
//! is withdrawn, and the bounds on what it holds.
//!
//! Merge rules:
//! - A host publishes its **whole** record set with a [`RecordVersion`]: its incarnation (chosen
//!   at agent start, e.g. the start time in milliseconds, so a restarted agent's sets win over
//!   its previous life's) and a counter that grows with every change. A set replaces the host's
//!   previous one only when its version is newer; an equal or older one changes nothing, so sets
//!   arriving twice or out of order are harmless. There is no per-record merging: a container
//!   that is gone from the newest set is gone.
//! - [`Catalog::replace`] skips the version check, for the caller that knows the stored
//!   incarnation is gone (the exchange forgot it) while the newer-looking one stays.
//! - A host is *heard* when its exchange shows it alive ([`Catalog::heard`], or any accepted
//!   set). [`Catalog::expire`] withdraws a host that has been silent for `silent_timeout`, or,
//!   while it is still a member of the fleet (its instance runs: an agent killed or restarting),
//!   for the longer `member_grace`. This host's own set is never withdrawn.
//!
//! Bounds ([`CatalogLimits`]): at most `max_hosts` hosts (a new host beyond that is refused and
//! counted until another is withdrawn) and `max_records_per_host` records per host (a larger set
//! is cut to its first records in container-label order, and the cut is reported). The defaults,
//! 200 hosts (the default VPC route table quota bounds a cluster to about that) × 500 records,
//! bound the catalog to 100,000 records; a record holds two labels of at most 63 bytes and an
//! address, so a full catalog with its zone indexes stays within a few tens of MB and the
//! issue's 20 hosts × 100 containers take well under 1 MB.
//!
//! Time is an argument (an offset from any fixed origin), as in `crossdock-routes`' release
//! tracker, so the rules are tested without waiting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::label::{Label, ZoneName};
use crate::record::ContainerRecord;
use crate::zone::{ZoneTtls, ZoneView};

/// A host's identity in the exchange (e.g. its instance id or private IP): stable across agent
/// restarts, unique in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub String);

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version of a host's record set: newer incarnations win, then higher counters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct RecordVersion {
    /// Chosen at agent start; a restarted agent's is larger.
    pub incarnation: u64,
    /// Grows with every change within an incarnation.
    pub counter: u64,
}

/// One host's whole record set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecords {
    /// `<host>` in `<container>.<host>.<zone>`.
    pub host: Label,
    /// Its version.
    pub version: RecordVersion,
    /// Its records, sorted by container label.
    pub records: Vec<ContainerRecord>,
}

/// Bounds on the catalog (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLimits {
    /// Most hosts held, this one included.
    pub max_hosts: usize,
    /// Most records held per host.
    pub max_records_per_host: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        Self {
            max_hosts: 200,
            max_records_per_host: 500,
        }
    }
}

/// When silent hosts are withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// A host that is no member (any more) is withdrawn after this long without being heard.
    pub silent_timeout: Duration,
    /// A host that is still a member is withdrawn after this long without being heard.
    pub member_grace: Duration,
}

impl Default for Expiry {
    fn default() -> Self {
        Self {
            silent_timeout: Duration::from_secs(30),
            member_grace: Duration::from_secs(300),
        }
    }
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    /// A host not held before.
    Added,
    /// A newer set replaced the held one.
    Replaced,
    /// The same version again: nothing changed (the host counts as heard).
    Unchanged,
    /// An older version: ignored.
    Stale,
    /// A new host beyond `max_hosts`: refused.
    TooManyHosts,
}

impl MergeOutcome {
    /// Whether the catalog's content changed.
    pub fn changed(self) -> bool {
        matches!(self, Self::Added | Self::Replaced)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    set: HostRecords,
    last_heard: Duration,
    cut: usize,
}

/// One host as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    /// Its identity.
    pub id: HostId,
    /// Its label.
    pub host: Label,
    /// Its set's version.
    pub version: RecordVersion,
    /// Records held.
    pub records: usize,
    /// Records cut by `max_records_per_host`.
    pub cut: usize,
    /// When it was last heard (offset from the caller's origin).
    pub last_heard: Duration,
}

/// Every host's record set.
#[derive(Debug, Clone)]
pub struct Catalog {
    own: HostId,
    limits: CatalogLimits,
    hosts: BTreeMap<HostId, Entry>,
    changes: u64,
    refused: u64,
}

impl Catalog {
    /// An empty catalog for the host `own`.
    pub fn new(own: HostId, limits: CatalogLimits) -> Self {
        Self {
            own,
            limits,
            hosts: BTreeMap::new(),
            changes: 0,
            refused: 0,
        }
    }

    /// This host's identity.
    pub fn own(&self) -> &HostId {
        &self.own
    }

    /// Takes in `id`'s set by the merge rules.
    pub fn merge(&mut self, id: HostId, set: HostRecords, now: Duration) -> MergeOutcome {
        let outcome = match self.hosts.get(&id) {
            Some(e) if set.version < e.set.version => return MergeOutcome::Stale,
            Some(e) if set.version == e.set.version => MergeOutcome::Unchanged,
            Some(_) => MergeOutcome::Replaced,
            None if self.hosts.len() >= self.limits.max_hosts => {
                self.refused += 1;
                return MergeOutcome::TooManyHosts;
            }
            None => MergeOutcome::Added,
        };
        if outcome == MergeOutcome::Unchanged {
            self.heard(&id, now);
            return outcome;
        }
        self.store(id, set, now);
        outcome
    }

    /// Replaces `id`'s set whatever the versions (see the module documentation).
    pub fn replace(&mut self, id: HostId, set: HostRecords, now: Duration) -> MergeOutcome {
        if let Some(e) = self.hosts.get(&id) {
            if e.set == set {
                self.heard(&id, now);
                return MergeOutcome::Unchanged;
            }
            self.store(id, set, now);
            return MergeOutcome::Replaced;
        }
        self.merge(id, set, now)
    }

    fn store(&mut self, id: HostId, mut set: HostRecords, now: Duration) {
        set.records.sort();
        let cut = set
            .records
            .len()
            .saturating_sub(self.limits.max_records_per_host);
        set.records.truncate(self.limits.max_records_per_host);
        self.hosts.insert(
            id,
            Entry {
                set,
                last_heard: now,
                cut,
            },
        );
        self.changes += 1;
    }

    /// `id` was seen alive at `now`; false when it is not held.
    pub fn heard(&mut self, id: &HostId, now: Duration) -> bool {
        match self.hosts.get_mut(id) {
            Some(e) => {
                e.last_heard = e.last_heard.max(now);
                true
            }
            None => false,
        }
    }

    /// Withdraws every host silent for too long (see [`Expiry`]); `is_member` tells whether a
    /// host is still a member of the fleet. Returns the withdrawn hosts.
    pub fn expire(
        &mut self,
        now: Duration,
        expiry: &Expiry,
        is_member: impl Fn(&HostId) -> bool,
    ) -> Vec<HostId> {
        let due: Vec<HostId> = self
            .hosts
            .iter()
            .filter(|(id, _)| **id != self.own)
            .filter(|(id, e)| {
                let limit = if is_member(id) {
                    expiry.member_grace.max(expiry.silent_timeout)
                } else {
                    expiry.silent_timeout
                };
                now.saturating_sub(e.last_heard) >= limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.withdraw(id);
        }
        due
    }

    /// Removes `id`'s set; false when it was not held.
    pub fn withdraw(&mut self, id: &HostId) -> bool {
        let removed = self.hosts.remove(id).is_some();
        if removed {
            self.changes += 1;
        }
        removed
    }

    /// `id`'s set, if held.
    pub fn get(&self, id: &HostId) -> Option<&HostRecords> {
        self.hosts.get(id).map(|e| &e.set)
    }

    /// How many effective changes the catalog has seen (the zone's SOA serial follows it).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// How many new hosts were refused because the catalog was full.
    pub fn refused_hosts(&self) -> u64 {
        self.refused
    }

    /// Every host, in id order.
    pub fn hosts(&self) -> Vec<HostStatus> {
        self.hosts
            .iter()
            .map(|(id, e)| HostStatus {
                id: id.clone(),
                host: e.set.host.clone(),
                version: e.set.version,
                records: e.set.records.len(),
                cut: e.cut,
                last_heard: e.last_heard,
            })
            .collect()
    }

    /// The total number of records held.
    pub fn record_count(&self) -> usize {
        self.hosts.values().map(|e| e.set.records.len()).sum()
    }

    /// Every host's set in id order, for building the zone.
    pub fn sets(&self) -> impl Iterator<Item = (&HostId, &HostRecords)> {
        self.hosts.iter().map(|(id, e)| (id, &e.set))
    }

    /// A snapshot of the zone answering from this catalog.
    pub fn view(&self, zone: &ZoneName, reverse: &[ipnet::Ipv4Net], ttls: ZoneTtls) -> ZoneView {
        ZoneView::build(zone, reverse, ttls, self.changes, self.sets())
    }
}

/// This host's own set with its version: the counter moves only when the records change.
#[derive(Debug, Clone)]
pub struct LocalSet {
    current: HostRecords,
}

impl LocalSet {
    /// An empty set for `host` in the incarnation `incarnation`.
    pub fn new(host: Label, incarnation: u64) -> Self {
        Self {
            current: HostRecords {
                host,
                version: RecordVersion {
                    incarnation,
                    counter: 0,
                },
                records: Vec::new(),
            },
        }
    }

    /// Takes the host's current records; returns the new set when they changed.
    pub fn update(&mut self, mut records: Vec<ContainerRecord>) -> Option<&HostRecords> {
        records.sort();
        if records == self.current.records {
            return None;
        }
        self.current.records = records;
        self.current.version.counter += 1;
        Some(&self.current)
    }

    /// The current set.
    pub fn current(&self) -> &HostRecords {
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn id(s: &str) -> HostId {
        HostId(s.into())
    }

    fn rec(c: &str, n: &str, last: u8) -> ContainerRecord {
        ContainerRecord {
            container: Label::new(c).unwrap(),
            name: Label::new(n).unwrap(),
            ip: Ipv4Addr::new(10, 1, 0, last),
        }
    }

    fn set(host: &str, inc: u64, counter: u64, recs: Vec<ContainerRecord>) -> HostRecords {
        HostRecords {
            host: Label::new(host).unwrap(),
            version: RecordVersion {
                incarnation: inc,
                counter,
            },
            records: recs,
        }
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn catalog() -> Catalog {
        Catalog::new(id("me"), CatalogLimits::default())
    }

    #[test]
    fn a_newer_version_replaces_the_whole_set() {
        let mut c = catalog();
        let v1 = set("h1", 1, 1, vec![rec("web", "web", 2), rec("db", "db", 3)]);
        assert_eq!(c.merge(id("h1"), v1, at(0)), MergeOutcome::Added);
        let v2 = set("h1", 1, 2, vec![rec("web", "web", 4)]);
        assert_eq!(c.merge(id("h1"), v2.clone(), at(1)), MergeOutcome::Replaced);
        assert_eq!(c.get(&id("h1")), Some(&v2), "db is gone with the old set");
    }

    #[test]
    fn older_or_equal_versions_change_nothing() {
        let mut c = catalog();
        let v2 = set("h1", 1, 2, vec![rec("web", "web", 4)]);
        c.merge(id("h1"), v2.clone(), at(0));
        let changes = c.changes();
        let v1 = set("h1", 1, 1, vec![rec("old", "old", 9)]);
        assert_eq!(c.merge(id("h1"), v1, at(1)), MergeOutcome::Stale);
        assert_eq!(
            c.merge(id("h1"), v2.clone(), at(2)),
            MergeOutcome::Unchanged
        );
        assert_eq!(c.get(&id("h1")), Some(&v2));
        assert_eq!(c.changes(), changes);
    }

    #[test]
    fn a_restarted_host_wins_with_its_new_incarnation_even_with_a_lower_counter() {
        let mut c = catalog();
        c.merge(id("h1"), set("h1", 100, 57, vec![rec("a", "a", 2)]), at(0));
        let reborn = set("h1", 200, 1, vec![rec("b", "b", 3)]);
        assert_eq!(
            c.merge(id("h1"), reborn.clone(), at(5)),
            MergeOutcome::Replaced
        );
        assert_eq!(c.get(&id("h1")), Some(&reborn));
    }

    #[test]
    fn replace_skips_the_version_check() {
        let mut c = catalog();
        c.merge(id("h1"), set("h1", 200, 5, vec![rec("a", "a", 2)]), at(0));
        // The clock stepped back across a restart: a lower incarnation, known to be current.
        let current = set("h1", 150, 1, vec![rec("b", "b", 3)]);
        assert_eq!(
            c.merge(id("h1"), current.clone(), at(1)),
            MergeOutcome::Stale
        );
        assert_eq!(
            c.replace(id("h1"), current.clone(), at(1)),
            MergeOutcome::Replaced
        );
        assert_eq!(c.get(&id("h1")), Some(&current));
    }

    #[test]
    fn a_silent_non_member_is_withdrawn_after_the_timeout() {
        let mut c = catalog();
        c.merge(id("h1"), set("h1", 1, 1, vec![rec("a", "a", 2)]), at(0));
        let exp = Expiry::default();
        assert!(c.expire(at(29), &exp, |_| false).is_empty());
        c.heard(&id("h1"), at(20));
        assert!(c.expire(at(49), &exp, |_| false).is_empty(), "heard at 20");
        assert_eq!(c.expire(at(50), &exp, |_| false), vec![id("h1")]);
        assert!(c.get(&id("h1")).is_none());
    }

    #[test]
    fn a_silent_member_keeps_its_records_for_the_grace_period() {
        let mut c = catalog();
        c.merge(id("h1"), set("h1", 1, 1, vec![rec("a", "a", 2)]), at(0));
        let exp = Expiry::default();
        let member = |h: &HostId| h.0 == "h1";
        assert!(c.expire(at(299), &exp, member).is_empty());
        // Released in the meantime: the short timeout applies at once.
        assert_eq!(c.expire(at(299), &exp, |_| false), vec![id("h1")]);
        c.merge(id("h1"), set("h1", 1, 1, vec![]), at(300));
        assert_eq!(c.expire(at(600), &exp, member), vec![id("h1")]);
    }

    #[test]
    fn this_hosts_own_set_never_expires() {
        let mut c = catalog();
        c.merge(id("me"), set("me", 1, 1, vec![rec("a", "a", 2)]), at(0));
        assert!(c
            .expire(at(1_000_000), &Expiry::default(), |_| false)
            .is_empty());
    }

    #[test]
    fn limits_bound_hosts_and_records() {
        let limits = CatalogLimits {
            max_hosts: 2,
            max_records_per_host: 2,
        };
        let mut c = Catalog::new(id("me"), limits);
        let three = vec![rec("a", "a", 2), rec("b", "b", 3), rec("c", "c", 4)];
        assert_eq!(
            c.merge(id("h1"), set("h1", 1, 1, three), at(0)),
            MergeOutcome::Added
        );
        assert_eq!(c.get(&id("h1")).unwrap().records.len(), 2);
        assert_eq!(c.hosts()[0].cut, 1);
        c.merge(id("h2"), set("h2", 1, 1, vec![]), at(0));
        let out = c.merge(id("h3"), set("h3", 1, 1, vec![]), at(0));
        assert_eq!(out, MergeOutcome::TooManyHosts);
        assert_eq!(c.refused_hosts(), 1);
        // Room again once a host is withdrawn.
        c.withdraw(&id("h2"));
        assert_eq!(
            c.merge(id("h3"), set("h3", 1, 1, vec![]), at(1)),
            MergeOutcome::Added
        );
    }

    #[test]
    fn a_fresh_catalog_recovers_everything_from_the_sets_it_is_sent() {
        // An agent restarts with an empty catalog; every peer's current set arrives again, in any
        // order, some twice: the result equals the catalog before the restart.
        let sets = [
            (id("h1"), set("h1", 5, 3, vec![rec("web", "web", 2)])),
            (id("h2"), set("h2", 7, 1, vec![rec("web", "web", 9)])),
        ];
        let mut before = catalog();
        for (i, s) in &sets {
            before.merge(i.clone(), s.clone(), at(0));
        }
        let mut after = catalog();
        for (i, s) in sets.iter().rev().chain(sets.iter()) {
            after.merge(i.clone(), s.clone(), at(9));
        }
        let view = |c: &Catalog| {
            c.sets()
                .map(|(i, s)| (i.clone(), s.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(view(&before), view(&after));
    }

    #[test]
    fn the_local_set_counts_only_real_changes() {
        let mut l = LocalSet::new(Label::new("h1").unwrap(), 42);
        assert!(l.update(vec![]).is_none());
        let v = l
            .update(vec![rec("b", "b", 3), rec("a", "a", 2)])
            .unwrap()
            .version;
        assert_eq!(
            v,
            RecordVersion {
                incarnation: 42,
                counter: 1
            }
        );
        assert!(l.update(vec![rec("a", "a", 2), rec("b", "b", 3)]).is_none());
        assert_eq!(l.update(vec![]).unwrap().version.counter, 2);
    }
}
