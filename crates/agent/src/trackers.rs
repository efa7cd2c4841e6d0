//! The trackers' ring as the agent uses it: one gRPC client per tracker, tried in the ring's
//! order for a key (a torrent's info hash, or a blob digest for metainfo), failing over to the
//! next tracker when one does not answer.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_cluster::{Cluster, Node};
use shoal_tracker_api::tracker_client::TrackerClient;
use tonic::transport::{Channel, Endpoint};

/// How long a tracker call may take before the next tracker is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The trackers, each with a lazily connected channel.
#[derive(Debug)]
pub(crate) struct Trackers {
    cluster: Cluster,
    clients: Mutex<HashMap<String, TrackerClient<Channel>>>,
}

impl Trackers {
    pub(crate) fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            clients: Mutex::default(),
        }
    }

    fn client(&self, node: &Node) -> Option<TrackerClient<Channel>> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&node.id) {
            return Some(c.clone());
        }
        let channel = Endpoint::from_shared(node.base_url.clone())
            .ok()?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        let client = TrackerClient::new(channel);
        clients.insert(node.id.clone(), client.clone());
        Some(client)
    }

    /// Every tracker in the order to try for `key`: its owner first, healthy ones first.
    pub(crate) fn route(&self, key: &[u8]) -> Vec<(Node, TrackerClient<Channel>)> {
        self.cluster
            .route(key)
            .into_iter()
            .filter_map(|n| self.client(&n).map(|c| (n, c)))
            .collect()
    }

    /// Records the outcome of a call to `node` for the ring's passive health marks. Only
    /// failures that say the tracker itself is unreachable count against it.
    pub(crate) fn report(&self, node: &Node, result: Result<(), &tonic::Status>) {
        match result {
            Err(status) if is_unreachable(status) => self.cluster.report_failure(node),
            _ => self.cluster.report_success(node),
        }
    }
}

/// Whether a failed call means "this tracker did not answer" (try the next one) rather than an
/// answer such as "not found".
pub(crate) fn is_unreachable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
    )
}
