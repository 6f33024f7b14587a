//! Container names across hosts, as data: no I/O here.
//!
//! crossdock routes every container address of the fleet, so it can also name every container:
//! a DNS zone (default `crossdock.internal`) where `<container>.<host>.<zone>` is one container
//! and `<name>.<zone>` is every container of that name in the fleet. This crate holds the rules,
//! pure and unit-tested; `crossdock-catalog` exchanges the record sets between hosts and
//! `crossdock-dns` answers queries from them.
//!
//! - [`label`]: DNS labels, the sanitising rule and its collision rule, the zone name;
//! - [`record`]: a host's container records from container metadata (routed network only; only
//!   names and addresses leave the host);
//! - [`catalog`]: every host's record set, versions, merge and withdrawal rules, bounds;
//! - [`zone`]: the answers (A, PTR, NXDOMAIN, empty) of a catalog snapshot.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod catalog;
pub mod label;
pub mod record;
pub mod zone;

pub use catalog::{
    Catalog, CatalogLimits, Expiry, HostId, HostRecords, HostStatus, LocalSet, MergeOutcome,
    RecordVersion,
};
pub use label::{Label, NameError, ZoneName, DEFAULT_ZONE};
pub use record::{build_records, Built, ContainerMeta, ContainerRecord, SkipReason, Skipped};
pub use zone::{Answer, QueryType, Rcode, Record, RecordData, Soa, ZoneTtls, ZoneView};
