//! Which Alibaba Cloud API a call goes to: its version, RAM prefix, display name and default endpoint.
//!
//! Its own module because both the client (which sends to it) and the errors (which name it and the
//! RAM action it needs) use it, and neither should depend on the other for it.

/// Which API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    /// VPC, API version 2016-04-28.
    Vpc,
    /// ECS, API version 2014-05-26.
    Ecs,
}

impl Product {
    /// The API version sent in `x-acs-version`.
    pub fn version(self) -> &'static str {
        match self {
            Product::Vpc => "2016-04-28",
            Product::Ecs => "2014-05-26",
        }
    }

    /// Prefix of RAM actions (`vpc:`, `ecs:`).
    pub fn ram_prefix(self) -> &'static str {
        match self {
            Product::Vpc => "vpc",
            Product::Ecs => "ecs",
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Product::Vpc => "VPC",
            Product::Ecs => "ECS",
        }
    }

    /// The default endpoint of a region.
    pub fn default_endpoint(self, region: &str) -> String {
        format!("https://{}.{region}.aliyuncs.com", self.ram_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints_and_ram_prefixes() {
        assert_eq!(
            Product::Vpc.default_endpoint("cn-zhangjiakou"),
            "https://vpc.cn-zhangjiakou.aliyuncs.com"
        );
        assert_eq!(
            Product::Ecs.default_endpoint("cn-hangzhou"),
            "https://ecs.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            (Product::Vpc.name(), Product::Ecs.ram_prefix()),
            ("VPC", "ecs")
        );
    }
}
