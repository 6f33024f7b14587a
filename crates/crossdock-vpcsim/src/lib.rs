//! An emulated Alibaba VPC: the RPC API with real signatures, the metadata service, fault injection, the vRouter's routes.
