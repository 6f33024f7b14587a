//! Host networking the agent reconciles: sysctls, iptables rules as data, netlink look-ups.
