//! Token-bucket bandwidth limiting.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The largest amount one [`TokenBucket::acquire`] step takes, so that concurrent streams
/// interleave in small slices instead of one stream taking a whole piece's worth at once.
pub const SLICE_BYTES: u64 = 64 << 10;

/// A token bucket: `rate` tokens (bytes) per second, holding at most `burst` tokens.
///
/// [`Self::acquire`] *reserves* tokens in slices of at most [`SLICE_BYTES`] and sleeps until the
/// reservation is covered, so waiters are served in arrival order and a steady stream of
/// acquisitions proceeds at exactly `rate` after the initial `burst`. Uses tokio's clock, so
/// tests can run it on a paused clock.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Available tokens; negative while reservations wait for refill.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` and `burst` are clamped to at least 1.
    pub fn new(rate: u64, burst: u64) -> Self {
        let burst = burst.max(1);
        Self {
            rate: rate.max(1),
            burst,
            state: Mutex::new(State {
                tokens: burst as f64,
                last: Instant::now(),
            }),
        }
    }

    /// A bucket for `rate` bytes per second with the default burst: 100 ms worth of the rate,
    /// at least [`SLICE_BYTES`].
    pub fn with_rate(rate: u64) -> Self {
        Self::new(rate, (rate / 10).max(SLICE_BYTES))
    }

    /// Tokens added per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Waits until `n` tokens have been taken. Dropping the future part-way forfeits the slices
    /// already reserved.
    pub async fn acquire(&self, n: u64) {
        let mut remaining = n;
        while remaining > 0 {
            let slice = remaining.min(SLICE_BYTES).min(self.burst);
            let wait = self.reserve(slice);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            remaining -= slice;
        }
    }

    /// Takes `n` tokens now (possibly going negative) and returns how long until they exist.
    fn reserve(&self, n: u64) -> Duration {
        let mut state = self.state.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.last = now;
        state.tokens = (state.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        state.tokens -= n as f64;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn n_bytes_at_rate_r_take_n_over_r() {
        let rate = 1 << 20;
        let bucket = TokenBucket::new(rate, 128 << 10);
        let n: u64 = 8 << 20;
        let start = Instant::now();
        bucket.acquire(n).await;
        let elapsed = start.elapsed().as_secs_f64();
        let ideal = n as f64 / rate as f64;
        let slack = bucket.burst() as f64 / rate as f64;
        assert!(
            elapsed >= ideal - slack - 0.001 && elapsed <= ideal + 0.01,
            "{elapsed} vs {ideal}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_acquirers_share_the_rate() {
        let bucket = Arc::new(TokenBucket::with_rate(1 << 20));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&bucket);
                tokio::spawn(async move {
                    b.acquire(1 << 20).await;
                    start.elapsed().as_secs_f64()
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        // 4 MiB at 1 MiB/s: the last finishes after ~4 s (minus the burst), and the slices
        // interleave so that nobody finishes much before the others.
        let last = done.iter().copied().fold(0.0, f64::max);
        let first = done.iter().copied().fold(f64::MAX, f64::min);
        assert!((3.8..=4.1).contains(&last), "{done:?}");
        assert!(first >= 3.5, "{done:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_refills() {
        let bucket = TokenBucket::new(1000, 500);
        let start = Instant::now();
        bucket.acquire(500).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        bucket.acquire(1000).await;
        let e = start.elapsed().as_secs_f64();
        assert!((0.99..=1.01).contains(&e), "{e}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Refill is capped at the burst.
        let t = Instant::now();
        bucket.acquire(1000).await;
        let e = t.elapsed().as_secs_f64();
        assert!((0.49..=0.51).contains(&e), "{e}");
    }
}
