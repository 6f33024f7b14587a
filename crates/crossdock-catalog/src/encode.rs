//! A host's record set as chitchat key-values, and back.
//!
//! One key per container (`r:<container>` → `<name> <ip>`) plus `host` → the host label (and
//! `agent` → the agent's version, read by [`crate::agents`], not part of the set), so a
//! change to one container sends one key-value, not the whole set: chitchat ships only the keys
//! newer than what a peer has (and tombstones for removed ones). Reading a peer's state back
//! gives the whole set; its version is the chitchat generation (the agent's start time: a new
//! incarnation) and the node's highest key version (grows with every change), which is exactly
//! the [`RecordVersion`] the catalog's merge rules want.
//!
//! Values from peers are checked like any input: a key or value that is not a valid label and
//! address is skipped (and counted), never trusted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crossdock_names::{ContainerRecord, HostRecords, Label, RecordVersion};

/// The key holding the host label.
pub const HOST_KEY: &str = "host";
/// The key holding the agent's version ([`crate::agents::AgentVersion`]).
pub const AGENT_KEY: &str = "agent";
/// The prefix of container keys.
pub const RECORD_PREFIX: &str = "r:";

/// The key-values of a host's records (without the host key).
pub fn to_key_values(records: &[ContainerRecord]) -> BTreeMap<String, String> {
    records
        .iter()
        .map(|r| {
            (
                format!("{RECORD_PREFIX}{}", r.container),
                format!("{} {}", r.name, r.ip),
            )
        })
        .collect()
}

/// A peer's set read back from its key-values; also how many entries were malformed.
pub fn from_key_values<'a>(
    kvs: impl Iterator<Item = (&'a str, &'a str)>,
    version: RecordVersion,
    max_records: usize,
) -> (Option<HostRecords>, usize) {
    let mut host = None;
    let mut records = Vec::new();
    let mut malformed = 0;
    for (k, v) in kvs {
        if k == HOST_KEY {
            host = Label::new(v).ok();
            malformed += usize::from(host.is_none());
        } else if let Some(container) = k.strip_prefix(RECORD_PREFIX) {
            if records.len() > max_records {
                continue;
            }
            match parse_record(container, v) {
                Some(r) => records.push(r),
                None => malformed += 1,
            }
        }
    }
    let set = host.map(|host| HostRecords {
        host,
        version,
        records,
    });
    (set, malformed)
}

fn parse_record(container: &str, value: &str) -> Option<ContainerRecord> {
    let (name, ip) = value.split_once(' ')?;
    Some(ContainerRecord {
        container: Label::new(container).ok()?,
        name: Label::new(name).ok()?,
        ip: ip.parse::<Ipv4Addr>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(c: &str, n: &str, ip: [u8; 4]) -> ContainerRecord {
        ContainerRecord {
            container: Label::new(c).unwrap(),
            name: Label::new(n).unwrap(),
            ip: ip.into(),
        }
    }

    #[test]
    fn records_round_trip_through_key_values() {
        let recs = vec![
            rec("db", "db", [10, 1, 0, 3]),
            rec("web", "web", [10, 1, 0, 2]),
        ];
        let mut kvs = to_key_values(&recs);
        assert_eq!(kvs.get("r:web").map(String::as_str), Some("web 10.1.0.2"));
        kvs.insert(HOST_KEY.into(), "h1".into());
        let v = RecordVersion {
            incarnation: 9,
            counter: 4,
        };
        let (set, bad) = from_key_values(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())), v, 100);
        let set = set.unwrap();
        assert_eq!(bad, 0);
        assert_eq!(set.host.as_str(), "h1");
        assert_eq!(set.version, v);
        assert_eq!(set.records, recs);
    }

    #[test]
    fn malformed_entries_are_skipped_and_counted() {
        let kvs = [
            ("host", "h1"),
            ("r:web", "web 10.1.0.2"),
            ("r:Bad_Label", "web 10.1.0.3"),
            ("r:x", "web not-an-ip"),
            ("r:y", "no-space"),
            ("other", "ignored"),
        ];
        let (set, bad) = from_key_values(kvs.into_iter(), RecordVersion::default(), 100);
        assert_eq!(set.unwrap().records.len(), 1);
        assert_eq!(bad, 3);
    }

    #[test]
    fn a_state_without_a_valid_host_label_is_no_set() {
        let (set, bad) =
            from_key_values([("host", "BAD")].into_iter(), RecordVersion::default(), 1);
        assert!(set.is_none());
        assert_eq!(bad, 1);
        let (set, _) = from_key_values(
            [("r:a", "a 10.0.0.1")].into_iter(),
            RecordVersion::default(),
            1,
        );
        assert!(set.is_none());
    }
}
