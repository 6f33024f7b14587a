//! What crossdock says about itself, as types: which concern, in which state, for which reason, who
//! owns a route and in what state it is.
//!
//! The agent's `/status`, its metric labels, `crossdock status` and the route side all speak this
//! vocabulary; each word's wire spelling (pinned by docs/CONTRACTS.md, used by alerts) is written
//! once, here, so nothing translates strings between crates and a typo is a compile error.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares an enum of unit variants with their wire strings, `as_str`, `ALL`, `Display` and
/// `Serialize` as the string.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }

            /// The value with this wire spelling.
            pub fn parse(wire: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == wire)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let wire = String::deserialize(d)?;
                Self::parse(&wire).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} `{wire}`",
                        stringify!($name).to_lowercase()
                    ))
                })
            }
        }
    };
}

words! {
    /// One concern the agent reports on, in the order `/status` and `crossdock status` show them.
    Concern {
        /// The Docker daemon answers.
        Docker => "docker",
        /// The served network's subnet is known and acceptable.
        Subnet => "subnet",
        /// IP forwarding is on.
        Forwarding => "forwarding",
        /// crossdock's iptables rules are in place.
        Firewall => "firewall",
        /// The VPC route(s) for this host's subnet.
        Route => "route",
        /// The cloud credentials.
        Credentials => "credentials",
    }
}

words! {
    /// A condition's state.
    State {
        /// Done and verified.
        Ready => "ready",
        /// In progress or waiting.
        Pending => "pending",
        /// Needs a human; reconciliation keeps retrying.
        Failed => "failed",
        /// Not this agent's job in this configuration.
        Disabled => "disabled",
    }
}

words! {
    /// Why a condition is in its state: CamelCase, stable for alerts.
    Reason {
        NotCheckedYet => "NotCheckedYet",
        // docker
        Connected => "Connected",
        WaitingForDocker => "WaitingForDocker",
        Unavailable => "Unavailable",
        Reconnecting => "Reconnecting",
        ApiError => "ApiError",
        // subnet
        Learned => "Learned",
        Static => "Static",
        StaticSubnet => "StaticSubnet",
        WaitingForSubnet => "WaitingForSubnet",
        NetworkUnusable => "NetworkUnusable",
        OutsideClusterRange => "OutsideClusterRange",
        // forwarding
        Enabled => "Enabled",
        NoDefaultRoute => "NoDefaultRoute",
        InterfaceNotFound => "InterfaceNotFound",
        SysctlFailed => "SysctlFailed",
        NetlinkFailed => "NetlinkFailed",
        External => "External",
        // firewall
        InPlace => "InPlace",
        IptablesFailed => "IptablesFailed",
        // route
        RouteAvailable => "RouteAvailable",
        RoutePending => "RoutePending",
        RouteConflict => "RouteConflict",
        Deregistered => "Deregistered",
        NoSubnet => "NoSubnet",
        SubnetOverlapsVpc => "SubnetOverlapsVpc",
        SubnetMismatch => "SubnetMismatch",
        MappingInvalid => "MappingInvalid",
        NoRouteTable => "NoRouteTable",
        SourceDestCheckEnabled => "SourceDestCheckEnabled",
        QuotaExceeded => "QuotaExceeded",
        CidrRejected => "CidrRejected",
        CloudBusy => "CloudBusy",
        Throttled => "Throttled",
        CloudUnreachable => "CloudUnreachable",
        CloudError => "CloudError",
        ExternallyManaged => "ExternallyManaged",
        // credentials
        Valid => "Valid",
        NotFetchedYet => "NotFetchedYet",
        NotNeeded => "NotNeeded",
        PermissionDenied => "PermissionDenied",
        CredentialsUnavailable => "CredentialsUnavailable",
        MetadataUnavailable => "MetadataUnavailable",
        ConfigInvalid => "ConfigInvalid",
    }
}

/// Who holds a route entry, from this host's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// crossdock's marker for this instance: ours.
    Us,
    /// Points here without crossdock's marker (someone followed the manual recipe).
    User,
    /// Another crossdock host's route (`crossdock:<instance>`).
    Crossdock(String),
    /// Anything else: its next hop(s), as `<type> <id>` joined by `, `.
    NextHops(String),
}

impl Owner {
    /// The wire spelling: `self`, `user`, `crossdock:<i-...>`, or the next hops.
    pub fn wire(&self) -> String {
        match self {
            Owner::Us => "self".into(),
            Owner::User => "user".into(),
            Owner::Crossdock(instance) => format!("crossdock:{instance}"),
            Owner::NextHops(hops) => hops.clone(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire())
    }
}

impl Serialize for Owner {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.wire())
    }
}

/// A route entry's state: the VPC's own statuses, plus crossdock's words for entries that are not
/// there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteState {
    /// Routing traffic.
    Available,
    /// Being created.
    Pending,
    /// Being deleted.
    Deleting,
    /// Not in the table.
    Missing,
    /// Not created: the subnet is refused (overlaps the VPC).
    Refused,
    /// Deleted by this pass (deregister).
    Deleted,
    /// Any other status the VPC reports, verbatim.
    Other(String),
}

impl RouteState {
    /// Reads the VPC's `Status`.
    pub fn from_vpc(status: &str) -> Self {
        match status {
            "Available" => RouteState::Available,
            "Pending" => RouteState::Pending,
            "Deleting" => RouteState::Deleting,
            other => RouteState::Other(other.to_string()),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            RouteState::Available => "Available",
            RouteState::Pending => "Pending",
            RouteState::Deleting => "Deleting",
            RouteState::Missing => "Missing",
            RouteState::Refused => "Refused",
            RouteState::Deleted => "Deleted",
            RouteState::Other(s) => s,
        }
    }
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RouteState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_round_trip_and_are_unique() {
        for words in [
            Concern::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            State::ALL.iter().map(|c| c.as_str()).collect(),
            Reason::ALL.iter().map(|c| c.as_str()).collect(),
        ] {
            let mut sorted = words.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                words.len(),
                "duplicate wire string in {words:?}"
            );
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Concern::parse("route"), Some(Concern::Route));
        assert_eq!(State::parse("ready"), Some(State::Ready));
        let read: State = serde_json::from_str("\"failed\"").unwrap();
        assert_eq!(read, State::Failed);
        assert!(serde_json::from_str::<State>("\"broken\"").is_err());
    }

    #[test]
    fn serialised_as_the_wire_strings() {
        let v = serde_json::json!({
            "c": Concern::Credentials, "s": State::Disabled, "r": Reason::RouteAvailable,
            "o": [Owner::Us, Owner::User, Owner::Crossdock("i-b".into()), Owner::NextHops("Instance i-x".into())],
            "t": [RouteState::from_vpc("Pending"), RouteState::Missing, RouteState::from_vpc("Modifying")],
        });
        assert_eq!(
            v.to_string(),
            r#"{"c":"credentials","o":["self","user","crossdock:i-b","Instance i-x"],"r":"RouteAvailable","s":"disabled","t":["Pending","Missing","Modifying"]}"#
        );
    }
}
