//! A per-service Prometheus registry.
//!
//! Each service owns its [`Metrics`] rather than using a process-global recorder, so several
//! services in one test process keep their figures apart.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};

/// A shared handle to a service's metric registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry whose metric names all start with `prefix_`.
    pub fn new(prefix: &str) -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix(prefix))),
        }
    }

    /// Registers a metric; keep the returned clone of `metric` to update it.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.registry.lock().register(name, help, metric.clone());
        metric
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock()).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn encodes_registered_metrics_with_prefix() {
        let m = Metrics::new("shoal_test");
        let c = m.register("things", "Things seen", Counter::<u64>::default());
        c.inc_by(3);
        let text = m.encode();
        assert!(text.contains("shoal_test_things_total 3"), "{text}");
        assert!(
            text.contains("# HELP shoal_test_things Things seen"),
            "{text}"
        );
    }
}
