//! A per-service Prometheus registry.
//!
//! Each service owns its [`Metrics`] rather than using a process-global recorder, so several
//! services in one test process keep their figures apart.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};

type Hook = Box<dyn Fn() + Send + Sync>;

/// A shared handle to a service's metric registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
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
            hooks: Arc::default(),
        }
    }

    /// Registers a metric; keep the returned clone of `metric` to update it.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.registry.lock().register(name, help, metric.clone());
        metric
    }

    /// Runs `hook` before every [`Self::encode`], to refresh gauges that mirror state kept
    /// elsewhere (e.g. bytes in a cache). Hooks must be quick and must not block.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.lock().push(Box::new(hook));
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        for hook in self.hooks.lock().iter() {
            hook();
        }
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
        let hooked = c.clone();
        m.on_scrape(move || {
            hooked.inc();
        });
        let text = m.encode();
        assert!(text.contains("shoal_test_things_total 4"), "{text}");
        assert!(
            text.contains("# HELP shoal_test_things Things seen"),
            "{text}"
        );
    }
}
