//! This origin's view of its cluster: which origins own a blob, which are its siblings, and
//! clients to talk to them as a replica (see `shoal_origin_client::REPLICA_HEADER`).

use shoal_cluster::{Cluster, Node};
use shoal_core::Digest;
use shoal_origin_client::{OriginClient, OriginClientError, OriginPool};

/// The cluster as seen from one member.
#[derive(Debug)]
pub(crate) struct Peers {
    /// One client (connection pool) per member.
    pool: OriginPool,
    self_id: String,
}

impl Peers {
    /// `self_id` must be spelled as the cluster spells member ids.
    pub(crate) fn new(cluster: Cluster, self_id: String) -> Self {
        Self {
            pool: OriginPool::new(cluster),
            self_id,
        }
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        self.pool.cluster()
    }

    pub(crate) fn self_id(&self) -> &str {
        &self.self_id
    }

    /// Whether this origin is one of the R owners of `digest` (health ignored).
    pub(crate) fn owns(&self, digest: &Digest) -> bool {
        self.cluster().is_owner(&self.self_id, digest.raw())
    }

    /// The R owners of `digest` (health ignored): who should hold it.
    pub(crate) fn owners(&self, digest: &Digest) -> Vec<Node> {
        self.cluster().owners(digest.raw())
    }

    /// Where copies of a blob just stored here should go: its first R healthy owners, except
    /// this origin.
    pub(crate) fn replica_targets(&self, digest: &Digest) -> Vec<Node> {
        let mut targets = self.cluster().healthy_owners(digest.raw());
        targets.retain(|n| n.id != self.self_id);
        targets
    }

    /// The healthy members other than this origin.
    pub(crate) fn siblings(&self) -> Vec<Node> {
        let mut nodes = self.cluster().nodes();
        nodes.retain(|n| n.id != self.self_id && self.cluster().is_healthy(n));
        nodes
    }

    /// The member with this id, if it is one now.
    pub(crate) fn member(&self, id: &str) -> Option<Node> {
        self.cluster().nodes().into_iter().find(|n| n.id == id)
    }

    /// The current member ids, sorted.
    pub(crate) fn member_ids(&self) -> Vec<String> {
        self.cluster().nodes().into_iter().map(|n| n.id).collect()
    }

    /// A replica-mode client of `node` (sharing the member's connections).
    pub(crate) fn client(&self, node: &Node) -> Result<OriginClient, OriginClientError> {
        Ok(self.pool.client(node)?.as_replica())
    }

    /// Reports the outcome of a request to `node` to the cluster's passive health tracking.
    pub(crate) fn report<T>(&self, node: &Node, result: &Result<T, OriginClientError>) {
        self.pool.report(node, result);
    }
}
