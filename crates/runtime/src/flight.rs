//! Single-flight: concurrent requests for the same key share one execution.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Runs at most one job per key at a time; callers that arrive while it runs wait for its
/// result. The job runs on its own task, so it finishes even if the caller that started it
/// goes away (a client disconnecting does not cancel a fetch that others wait for).
#[derive(Debug)]
pub struct SingleFlight<K, V> {
    inflight: Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Returns the result of the job for `key`, starting `job` only if none is running;
    /// `None` if the job's task died without a result (it panicked).
    pub async fn run<F, Fut>(&self, key: K, job: F) -> Option<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut rx = {
            let mut map = self.inflight.lock();
            if let Some(rx) = map.get(&key) {
                rx.clone()
            } else {
                let (tx, rx) = watch::channel(None);
                map.insert(key.clone(), rx.clone());
                let fut = job();
                let inflight = Arc::clone(&self.inflight);
                tokio::spawn(async move {
                    let v = fut.await;
                    // Remove first: a caller arriving after this starts a fresh job.
                    inflight.lock().remove(&key);
                    let _ = tx.send(Some(v));
                });
                rx
            }
        };
        if let Ok(v) = rx.wait_for(Option::is_some).await {
            return v.clone();
        }
        rx.borrow().clone()
    }

    /// Number of jobs running now.
    pub fn len(&self) -> usize {
        self.inflight.lock().len()
    }

    /// Whether no job is running.
    pub fn is_empty(&self) -> bool {
        self.inflight.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flight = Arc::new(SingleFlight::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let mut handles = Vec::new();
        for _ in 0..10 {
            let flight = Arc::clone(&flight);
            let runs = Arc::clone(&runs);
            let mut release = release_rx.clone();
            handles.push(tokio::spawn(async move {
                flight
                    .run(7, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        42
                    })
                    .await
            }));
        }
        crate::wait::wait_until(std::time::Duration::from_secs(5), "job started", || {
            let n = runs.load(Ordering::SeqCst);
            async move { n == 1 }
        })
        .await
        .unwrap();
        release_tx.send(true).unwrap();
        for h in handles {
            assert_eq!(h.await.unwrap(), Some(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.len(), 0);
        assert!(flight.is_empty());
        // A later call runs again.
        assert_eq!(flight.run(7, || async { 43 }).await, Some(43));
    }
}
