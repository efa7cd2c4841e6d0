//! Clients of a ring of origins: one [`OriginClient`] per member, tried in the ring's order.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_cluster::{Cluster, Node};
use shoal_core::Digest;

use crate::{OriginClient, OriginClientError};

/// The origins of a [`Cluster`], each with its own client (and connection pool), routed by
/// blob digest. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OriginPool {
    cluster: Cluster,
    clients: Arc<Mutex<HashMap<String, OriginClient>>>,
}

impl OriginPool {
    /// A pool over `cluster`'s members.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            clients: Arc::default(),
        }
    }

    /// The ring.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The client of `node`.
    pub fn client(&self, node: &Node) -> Result<OriginClient, OriginClientError> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&node.id) {
            return Ok(c.clone());
        }
        let client = OriginClient::new(&node.base_url)?;
        clients.insert(node.id.clone(), client.clone());
        Ok(client)
    }

    /// Every origin, in the order to try for `digest`: healthy owners first, then the other
    /// healthy members, then unhealthy ones as a last resort.
    pub fn route(&self, digest: &Digest) -> Vec<(Node, OriginClient)> {
        self.cluster
            .route(digest.raw())
            .into_iter()
            .filter_map(|n| self.client(&n).ok().map(|c| (n, c)))
            .collect()
    }

    /// The client of the member with this id, if it is one.
    pub fn by_id(&self, id: &str) -> Option<OriginClient> {
        let node = self.cluster.nodes().into_iter().find(|n| n.id == id)?;
        self.client(&node).ok()
    }

    /// Records the outcome of a request to `node` for the ring's passive health marks:
    /// failures that mean the origin is unreachable count against it.
    pub fn report<T>(&self, node: &Node, result: &Result<T, OriginClientError>) {
        match result {
            Err(OriginClientError::Unavailable { .. }) => self.cluster.report_failure(node),
            _ => self.cluster.report_success(node),
        }
    }
}
