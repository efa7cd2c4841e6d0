//! The origin's Prometheus metrics (prefix `shoal_origin_`), registered in one place.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_runtime::metrics::Metrics;
use shoal_runtime::queue::QueueMetrics;

use crate::blobs::BlobMetrics;
use crate::repair::RepairMetrics;

/// Every metric the origin updates.
#[derive(Debug, Clone)]
pub(crate) struct OriginMetrics {
    pub(crate) writeback: QueueMetrics,
    pub(crate) replication: QueueMetrics,
    /// Bytes pushed to sibling origins by the replication queue.
    pub(crate) replication_bytes: Counter,
    pub(crate) blobs: BlobMetrics,
    pub(crate) repair: RepairMetrics,
    pub(crate) cluster_members: Gauge,
    pub(crate) cluster_healthy: Gauge,
}

impl OriginMetrics {
    pub(crate) fn register(m: &Metrics) -> Self {
        let counter = |name: &str, help: &str| m.register(name, help, Counter::default());
        let gauge = |name: &str, help: &str| m.register(name, help, Gauge::default());
        Self {
            writeback: QueueMetrics {
                depth: gauge(
                    "writeback_queue_depth",
                    "Committed blobs not yet written back to their backend",
                ),
                completed: counter("writeback_completed", "Write-back tasks completed"),
                failures: counter(
                    "writeback_failures",
                    "Write-back attempts that failed and will be retried",
                ),
            },
            replication: QueueMetrics {
                depth: gauge(
                    "replication_queue_depth",
                    "Copies to sibling origins not yet done (replication and repair handoffs)",
                ),
                completed: counter("replication_completed", "Replication tasks finished"),
                failures: counter(
                    "replication_failures",
                    "Replication attempts that failed and will be retried",
                ),
            },
            replication_bytes: counter(
                "replication_bytes",
                "Bytes pushed to sibling origins by replication and handoffs",
            ),
            blobs: BlobMetrics {
                backend_fetches: counter(
                    "backend_fetches",
                    "Blobs fetched from a backend on a cache miss",
                ),
                backend_fetch_failures: counter(
                    "backend_fetch_failures",
                    "Backend fetches that failed",
                ),
                commits: counter("uploads_committed", "Uploads committed"),
                metainfo_reads: counter(
                    "metainfo_builds_from_disk",
                    "Metainfos built by reading a cached blob back (the others come from the \
                     hash pass that verified the blob as it arrived)",
                ),
                store_bytes: gauge("store_bytes", "Bytes in the local blob cache"),
                store_blobs: gauge("store_blobs", "Blobs in the local blob cache"),
                evictions: gauge(
                    "store_evictions",
                    "Blobs evicted from the local cache since start",
                ),
            },
            repair: RepairMetrics {
                passes: counter("repair_passes", "Repair passes completed"),
                blobs_copied: counter(
                    "repair_blobs_copied",
                    "Blobs this origin owns that repair copied here (from siblings or a backend)",
                ),
                bytes_copied: counter("repair_bytes_copied", "Bytes of the blobs repair copied"),
                copy_failures: counter(
                    "repair_copy_failures",
                    "Blobs repair could copy neither from a sibling nor from a backend",
                ),
                blobs_dropped: counter(
                    "repair_blobs_dropped",
                    "Blobs this origin no longer owns dropped from its cache once owners held them",
                ),
                handoffs: counter(
                    "repair_handoffs",
                    "Pushes queued to owners that lacked a blob this origin was about to drop",
                ),
            },
            cluster_members: gauge("cluster_members", "Origins in the cluster"),
            cluster_healthy: gauge("cluster_healthy_members", "Healthy origins in the cluster"),
        }
    }
}
