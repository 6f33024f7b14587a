//! Property tests of the configuration parser: whatever text it is given, it never panics, and every
//! refusal is one line naming a field with a fix; whatever it accepts is valid and survives a round trip
//! through `to_toml`; and CIDRs are accepted exactly when they are IPv4 networks with no host bits.
//!
//! The agent reads this file at start and on every SIGHUP (a bad file must be refused, never crash the
//! running agent), and `crossdock doctor` reads it on hosts it knows nothing about.

use crossdock_config::{
    check_subnet, parse, Config, LogFormat, MetadataToken, Provider, SourceDestCheck, SubnetMode,
};
use ipnet::Ipv4Net;
use proptest::prelude::*;

/// Every field name of the schema, plus near misses.
const TOP: &[&str] = &[
    "cluster_cidrs",
    "external_interface",
    "resync_interval_secs",
    "health_socket",
    "log_format",
    "log_level",
    "clustr_cidrs",
    "docker",
    "cloud",
    "subnet",
    "fleet",
];
const DOCKER: &[&str] = &["host", "network", "static_subnet", "hots"];
const FIREWALL: &[&str] = &["lock_wait_secs", "lock_wait"];
const SUBNET: &[&str] = &["mode", "host_ranges", "prefix_len", "prefix"];
const FLEET: &[&str] = &[
    "tag",
    "release_grace_secs",
    "max_deletes_per_pass",
    "sweep_interval_secs",
    "grace",
];
const CLOUD: &[&str] = &[
    "provider",
    "region_id",
    "instance_id",
    "vpc_id",
    "vswitch_id",
    "private_ip",
    "eni_id",
    "route_table_ids",
    "metadata_url",
    "metadata_token",
    "ram_role",
    "vpc_endpoint",
    "ecs_endpoint",
    "route_name",
    "source_dest_check",
    "resync_interval_secs",
    "access_key_id",
    "access_key_secret",
    "region",
];

/// Strings that mean something somewhere in the schema, and some that almost do.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("auto".to_string()),
        Just("alibaba".to_string()),
        Just("none".to_string()),
        Just("report".to_string()),
        Just("disable".to_string()),
        Just("json".to_string()),
        Just("info,crossdock=debug".to_string()),
        Just("unix:///var/run/docker.sock".to_string()),
        Just("http://100.100.100.200".to_string()),
        Just("/run/crossdock/agent.sock".to_string()),
        Just("10.0.0.0/8".to_string()),
        Just("10.1.0.0/24".to_string()),
        Just("0.0.0.0/0".to_string()),
        Just("255.255.255.255/32".to_string()),
        Just("cn-hangzhou".to_string()),
        Just("derived".to_string()),
        Just("docker".to_string()),
        Just("crossdock-cluster=prod".to_string()),
        Just("aliyun=x".to_string()),
        Just("192.168.0.0/16".to_string()),
        Just("\u{0}".to_string()),
        Just("é/ü".to_string()),
        cidr_like(),
        "\\PC{0,20}",
    ]
}

/// Things shaped like `a.b.c.d/p`, often not valid.
fn cidr_like() -> impl Strategy<Value = String> {
    (
        0u32..300,
        0u32..300,
        0u32..300,
        0u32..300,
        0u32..40,
        prop_oneof![Just(""), Just(" "), Just("/8"), Just("x")],
    )
        .prop_map(|(a, b, c, d, p, tail)| format!("{a}.{b}.{c}.{d}/{p}{tail}"))
}

fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        interesting_string().prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(30),
            Just(86_400),
            Just(86_401),
            Just(-1)
        ]
        .prop_map(toml::Value::Integer),
        any::<f64>()
            .prop_filter("TOML floats are finite here", |f| f.is_finite())
            .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn section(keys: &'static [&'static str]) -> impl Strategy<Value = toml::Table> {
    prop::collection::vec((prop::sample::select(keys), value()), 0..5)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A TOML document over the schema's names with values of any type.
fn document() -> impl Strategy<Value = String> {
    (
        section(TOP),
        prop::option::of(section(DOCKER)),
        prop::option::of(section(FIREWALL)),
        prop::option::of(section(CLOUD)),
        prop::bool::weighted(0.7),
        prop::option::of(section(SUBNET)),
        prop::option::of(section(FLEET)),
    )
        .prop_map(
            |(mut top, docker, firewall, cloud, with_cidrs, subnet, fleet)| {
                if with_cidrs && !top.contains_key("cluster_cidrs") {
                    top.insert(
                        "cluster_cidrs".into(),
                        toml::Value::Array(vec![toml::Value::String("10.0.0.0/8".into())]),
                    );
                }
                for (name, t) in [
                    ("docker", docker),
                    ("firewall", firewall),
                    ("cloud", cloud),
                    ("subnet", subnet),
                    ("fleet", fleet),
                ] {
                    if let Some(t) = t {
                        top.insert(name.into(), toml::Value::Table(t));
                    }
                }
                toml::to_string(&top).unwrap_or_default()
            },
        )
}

/// Valid configurations of every shape (disjoint ranges, values inside their bounds).
fn valid_config() -> impl Strategy<Value = Config> {
    let ranges = prop::sample::subsequence(
        vec![
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
        ],
        1..=4,
    );
    (
        ranges,
        (1u64..=86_400, 1u64..=300, 1u64..=86_400),
        (
            prop::sample::select(vec!["auto", "eth0", "ens5"]),
            prop::sample::select(vec!["info", "debug", "crossdock=debug,info", "warn"]),
            prop::sample::select(vec![LogFormat::Text, LogFormat::Json]),
            prop::sample::select(vec!["bridge", "cluster-net"]),
            prop::option::of(0u8..=255),
        ),
        (
            prop::sample::select(vec![Provider::Alibaba, Provider::None]),
            prop::sample::select(vec!["", "cn-hangzhou"]),
            prop::sample::select(vec!["", "i-abc123"]),
            prop::sample::select(vec!["", "192.168.1.11"]),
            prop::collection::vec("vtb-[a-z0-9]{4,12}", 0..3),
            prop::sample::select(vec![SourceDestCheck::Disable, SourceDestCheck::Report]),
            prop::sample::select(vec![
                MetadataToken::Auto,
                MetadataToken::Required,
                MetadataToken::Disabled,
            ]),
            prop::sample::select(vec!["crossdock", "cd-prod"]),
        ),
        (
            any::<bool>(),
            16u8..=30,
            1u64..=604_800,
            1u32..=50,
            5u64..=86_400,
        ),
    )
        .prop_map(
            |(ranges, (resync, lock, cloud_resync), host, cloud, fleet)| {
                let mut c = Config {
                    cluster_cidrs: ranges.iter().map(|r| r.parse().unwrap()).collect(),
                    resync_interval_secs: resync,
                    ..Config::default()
                };
                c.firewall.lock_wait_secs = lock;
                c.external_interface = host.0.into();
                c.log_level = host.1.into();
                c.log_format = host.2;
                c.docker.network = host.3.into();
                if let (Some(third), true) = (host.4, ranges.contains(&"10.0.0.0/8")) {
                    c.docker.static_subnet = Some(format!("10.{third}.0.0/24").parse().unwrap());
                }
                c.cloud.provider = cloud.0;
                c.cloud.region_id = cloud.1.into();
                c.cloud.instance_id = cloud.2.into();
                c.cloud.private_ip = cloud.3.into();
                c.cloud.route_table_ids = cloud.4;
                c.cloud.source_dest_check = cloud.5;
                c.cloud.metadata_token = cloud.6;
                c.cloud.route_name = cloud.7.into();
                c.cloud.resync_interval_secs = cloud_resync;
                c.subnet.prefix_len = fleet.1;
                if fleet.0 && c.docker.static_subnet.is_none() {
                    // Empty host_ranges: the mapping is checked at run time against the VPC CIDR.
                    c.subnet.mode = SubnetMode::Derived;
                    if c.cloud.provider == Provider::Alibaba {
                        c.fleet.tag = Some("crossdock-cluster=prod".parse().unwrap());
                    }
                }
                c.fleet.release_grace_secs = fleet.2;
                c.fleet.max_deletes_per_pass = fleet.3;
                c.fleet.sweep_interval_secs = fleet.4;
                c
            },
        )
}

/// The checks every outcome must pass.
fn check_outcome(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(c) => {
            prop_assert!(c.validate().is_ok(), "parse accepted an invalid config");
            prop_assert!(!c.cluster_cidrs.is_empty());
            if c.cloud.access_key_secret.is_empty() {
                let again = parse(&c.to_toml());
                prop_assert_eq!(again.as_ref(), Ok(&c), "round trip of\n{}", c.to_toml());
            }
            for net in ["10.0.0.0/24", "0.0.0.0/0", "192.168.1.0/24", "10.0.0.0/32"] {
                let _ = check_subnet(net.parse().unwrap(), &c);
            }
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!e.field.is_empty(), "no field named: {shown}");
            prop_assert!(!e.message.is_empty() && !e.fix.is_empty(), "{shown}");
            prop_assert!(!shown.contains('\n'), "not one line: {shown:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,200}") {
        check_outcome(&text)?;
    }

    #[test]
    fn toml_over_the_schema_is_parsed_or_refused_naming_a_field(text in document()) {
        check_outcome(&text)?;
    }

    #[test]
    fn every_valid_config_survives_a_round_trip(c in valid_config()) {
        prop_assert_eq!(c.validate(), Ok(()));
        prop_assert_eq!(parse(&c.to_toml()), Ok(c));
    }

    #[test]
    fn a_cidr_is_accepted_exactly_when_it_is_an_ipv4_network(cidr in prop_oneof![cidr_like(), interesting_string()]) {
        let text = format!("cluster_cidrs = [{}]\n", toml::Value::String(cidr.clone()));
        let expected = cidr
            .trim()
            .parse::<Ipv4Net>()
            .ok()
            .filter(|n| n.trunc() == *n);
        match (parse(&text), expected) {
            (Ok(c), Some(n)) => prop_assert_eq!(c.cluster_cidrs, vec![n]),
            (Err(e), None) => prop_assert_eq!(e.field.as_str(), "cluster_cidrs", "{}", e),
            (got, want) => prop_assert!(false, "{cidr:?}: parsed {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn any_subnet_is_checked_against_any_valid_config(
        a in any::<u32>(), p in 0u8..=32, q in 0u8..=32, b in any::<u32>()
    ) {
        let cluster = Ipv4Net::new(b.into(), q).unwrap().trunc();
        let c = Config { cluster_cidrs: vec![cluster], ..Config::default() };
        let subnet = Ipv4Net::new(a.into(), p).unwrap().trunc();
        let inside = cluster.contains(&subnet.network()) && cluster.prefix_len() <= subnet.prefix_len();
        prop_assert_eq!(check_subnet(subnet, &c).is_ok(), inside);
    }
}
