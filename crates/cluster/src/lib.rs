//! Cluster membership and health feeding a live hash-ring view: which members (origins,
//! trackers, …) exist right now, which of them are healthy, and therefore whom a client should
//! ask for a key, in what order.
//!
//! - **Membership** comes from a static list of `host:port` entries and/or a DNS name (e.g. a
//!   Kubernetes headless service) whose A and AAAA records become `ip:port` members, resolved
//!   again every `refresh`. IPv6 members are written `[::1]:7100`. A failed or empty DNS answer
//!   keeps the previous membership.
//! - **Health**: an active checker `GET`s every member's `/health` every `interval` with
//!   hysteresis (unhealthy after `fall` consecutive failures, healthy again after `rise`
//!   passes); clients add passive marks ([`Cluster::report_failure`]): `passive_failures`
//!   failures within `passive_window` make a member unhealthy until `rise` checks pass.
//!   Members start healthy, also when they come back after leaving.
//! - **Placement** is [`shoal_hashring`] over the members (weight 1 each): unhealthy members are
//!   skipped by [`Cluster::healthy_owners`] and tried last by [`Cluster::route`], but stay in the
//!   ring, so a flapping member neither reshuffles placement nor loses its data.
//!
//! [`Cluster`] is a cheap handle (clone it freely); reads take a short read lock and never
//! block on I/O. [`Cluster::changes`] wakes repair and re-announce logic when anything changes.
//!
//! This crate is **not** the placement function (that is `shoal-hashring`), not a client of any
//! service (callers make their own requests in [`Cluster::route`] order and report outcomes),
//! and not a gossip or consensus protocol: every process derives its own view from the same
//! configuration, and views may differ briefly while DNS answers and health checks converge.

mod cluster;
mod config;
mod health;
mod tasks;

use std::net::SocketAddr;

pub use cluster::{Cluster, ClusterStats};
pub use config::{ClusterConfig, DnsConfig, HealthConfig};

/// A ring member as clients address it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// `host:port`, the member's id in the ring (`10.0.0.7:7100`, `[fd00::7]:7100`,
    /// `origin-0.origin:7100`).
    pub id: String,
    /// `http://host:port`, without a trailing slash: append paths such as `/health`.
    pub base_url: String,
}

impl Node {
    /// A node whose id is a normalised `host:port`.
    pub(crate) fn from_id(id: String) -> Self {
        // An IPv6 zone (`[fe80::1%2]:7100`) must be percent-encoded in a URL.
        let base_url = format!("http://{}", id.replace('%', "%25"));
        Self { id, base_url }
    }

    /// A node for a socket address (`1.2.3.4:7100`, `[::1]:7100`).
    pub(crate) fn from_addr(addr: SocketAddr) -> Self {
        Self::from_id(addr.to_string())
    }
}

/// Errors of configuring a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A static member is not a valid `host:port`.
    #[error("invalid cluster member {member:?}: {reason}")]
    InvalidMember {
        /// The entry as configured.
        member: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither static members nor DNS are configured.
    #[error("no cluster members: configure `members` or `dns`")]
    NoMembers,
    /// A count or duration is out of range, or the DNS name or health path is malformed.
    #[error("invalid cluster config: {0}")]
    InvalidConfig(String),
    /// [`Cluster::start`] was called outside a Tokio runtime.
    #[error("Cluster::start needs a Tokio runtime")]
    NoRuntime,
    /// The HTTP client for health checks could not be built.
    #[error("building the health check client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_urls() {
        let v4 = Node::from_addr(SocketAddr::from(([10, 0, 0, 7], 7100)));
        assert_eq!(v4.id, "10.0.0.7:7100");
        assert_eq!(v4.base_url, "http://10.0.0.7:7100");
        let v6 = Node::from_addr(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 7100)));
        assert_eq!(v6.id, "[::1]:7100");
        assert_eq!(v6.base_url, "http://[::1]:7100");
        let zoned = Node::from_addr(SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            7100,
            0,
            2,
        )));
        assert_eq!(zoned.id, "[fe80::1%2]:7100");
        assert_eq!(zoned.base_url, "http://[fe80::1%252]:7100");
    }
}
