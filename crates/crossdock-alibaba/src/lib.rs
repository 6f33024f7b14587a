//! Alibaba Cloud VPC/ECS client: signed RPC calls, typed errors and retries, STS credentials, instance identity.
