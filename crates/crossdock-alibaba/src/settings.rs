//! What the client needs to be told: where the metadata service and the API endpoints are, which
//! identity fields and credentials are given rather than discovered.
//!
//! The client's own small settings, so that this crate does not depend on how an application spells
//! its configuration: the agent maps its `[cloud]` table onto [`Settings`] at the edge
//! (`crossdock_routes::cloud_settings`). Field names follow that table, and errors about a field name
//! it as `cloud.<field>`, because that is what an operator edits.

use crate::secret::Secret;

/// Whether to use a metadata session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// Ask for a token; without one, fall back to plain requests.
    #[default]
    Auto,
    /// Fail without a token.
    Required,
    /// Never ask.
    Disabled,
}

impl TokenMode {
    /// This mode, tightened to `Required` when `ALIBABA_CLOUD_IMDSV1_DISABLED` is true.
    pub fn tightened(self, imdsv1_disabled: bool) -> Self {
        if imdsv1_disabled {
            TokenMode::Required
        } else {
            self
        }
    }
}

/// The client's settings. Empty strings mean "not given": identity fields are then read from the
/// metadata service, endpoints are the region's public ones, and credentials come from the
/// environment or the instance RAM role.
///
/// The default has no metadata service (`metadata_url` empty), so nothing is contacted that was not
/// configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The metadata service, e.g. `http://100.100.100.200`; empty = none.
    pub metadata_url: String,
    /// Whether to use a metadata session token.
    pub metadata_token: TokenMode,
    /// Region, e.g. `cn-hangzhou`.
    pub region_id: String,
    /// This ECS instance (`i-...`).
    pub instance_id: String,
    /// The VPC (`vpc-...`).
    pub vpc_id: String,
    /// The instance's vSwitch (`vsw-...`).
    pub vswitch_id: String,
    /// The instance's primary private IPv4 address.
    pub private_ip: String,
    /// The primary ENI (`eni-...`).
    pub eni_id: String,
    /// The instance RAM role for STS credentials; empty = `ALIBABA_CLOUD_ECS_METADATA` or discovered.
    pub ram_role: String,
    /// VPC API endpoint; empty = `https://vpc.<region>.aliyuncs.com`.
    pub vpc_endpoint: String,
    /// ECS API endpoint; empty = `https://ecs.<region>.aliyuncs.com`.
    pub ecs_endpoint: String,
    /// Explicit AccessKey id, set together with `access_key_secret`.
    pub access_key_id: String,
    /// Explicit AccessKey secret.
    pub access_key_secret: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imdsv1_disabled_makes_the_token_required() {
        use TokenMode::*;
        let table = [
            (Auto, false, Auto),
            (Auto, true, Required),
            (Disabled, false, Disabled),
            (Disabled, true, Required),
            (Required, false, Required),
        ];
        for (mode, disabled, want) in table {
            assert_eq!(mode.tightened(disabled), want, "{mode:?} {disabled}");
        }
    }

    #[test]
    fn the_default_contacts_nothing() {
        let s = Settings::default();
        assert!(s.metadata_url.is_empty() && s.vpc_endpoint.is_empty());
        assert!(!format!("{s:?}").contains("100.100.100.200"));
    }
}
