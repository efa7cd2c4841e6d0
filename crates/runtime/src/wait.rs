//! Waiting on a condition with a timeout, instead of sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

/// The condition did not hold before the timeout.
#[derive(Debug, thiserror::Error)]
#[error("condition not met within {0:?}: {1}")]
pub struct Timeout(pub Duration, pub String);

/// Polls `condition` (every 10 ms, then backing off to 100 ms) until it returns true or
/// `timeout` passes. `what` names the condition in the error.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> Result<(), Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = Duration::from_millis(10);
    loop {
        if condition().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Timeout(timeout, what.to_owned()));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}
