//! Who this host is in the VPC: instance, region, VPC, vSwitch, private IP and primary ENI.
//!
//! Resolved field by field: a value given in the [`Settings`] wins, anything left empty is read from
//! the metadata service; with neither, the error names the `cloud.<field>` to set.

use serde::Serialize;

use crate::error::Error;
use crate::metadata::MetadataClient;
use crate::settings::Settings;

/// Who this host is in the VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `i-...`: the route's next hop.
    pub instance_id: String,
    /// e.g. `cn-hangzhou`: selects the API endpoints.
    pub region_id: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// `vsw-...`: selects the default route table.
    pub vswitch_id: String,
    /// Primary private IPv4 address.
    pub private_ip: String,
    /// MAC of the primary interface (empty when `eni_id` came from config).
    pub mac: String,
    /// `eni-...`: the primary ENI, whose source/destination check matters.
    pub eni_id: String,
}

impl Identity {
    /// Resolves every field: from `cfg` when set, else from the metadata service (`md`), else an error
    /// naming the config field to set.
    pub async fn resolve(cfg: &Settings, md: Option<&MetadataClient>) -> Result<Identity, Error> {
        async fn field(
            configured: &str,
            field: &str,
            item: &str,
            md: Option<&MetadataClient>,
        ) -> Result<String, Error> {
            let configured = configured.trim();
            if !configured.is_empty() {
                return Ok(configured.to_string());
            }
            let Some(md) = md else {
                return Err(Error::Config {
                    field: format!("cloud.{field}"),
                    message: "is empty and cloud.metadata_url is not set".into(),
                    fix: format!(
                        "set cloud.{field}, or set cloud.metadata_url to the metadata service"
                    ),
                });
            };
            let value = md.get(item, "identity").await?;
            if value.is_empty() {
                return Err(Error::Metadata {
                    path: format!("/latest/meta-data/{item}"),
                    message: "empty answer".into(),
                    transient: false,
                    source: None,
                });
            }
            Ok(value)
        }
        let instance_id = field(&cfg.instance_id, "instance_id", "instance-id", md).await?;
        let region_id = field(&cfg.region_id, "region_id", "region-id", md).await?;
        let vpc_id = field(&cfg.vpc_id, "vpc_id", "vpc-id", md).await?;
        let vswitch_id = field(&cfg.vswitch_id, "vswitch_id", "vswitch-id", md).await?;
        let private_ip = field(&cfg.private_ip, "private_ip", "private-ipv4", md).await?;
        let (mac, eni_id) = if cfg.eni_id.trim().is_empty() {
            let mac = field("", "eni_id", "mac", md).await?;
            let eni = field(
                "",
                "eni_id",
                &format!("network/interfaces/macs/{mac}/network-interface-id"),
                md,
            )
            .await?;
            (mac, eni)
        } else {
            (String::new(), cfg.eni_id.trim().to_string())
        };
        Ok(Identity {
            instance_id,
            region_id,
            vpc_id,
            vswitch_id,
            private_ip,
            mac,
            eni_id,
        })
    }
}
