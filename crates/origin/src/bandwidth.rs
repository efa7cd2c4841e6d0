//! A shared byte-rate limit (token bucket) for repair copies.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Bytes per second shared by every caller, with a burst of one second's worth. A caller that
/// takes more than is available goes into debt and sleeps until the debt is paid, so any chunk
/// size works and the long-run rate is exact.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    /// 0 = unlimited.
    rate: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes available now; negative while in debt.
    available: f64,
    last: Instant,
}

impl Bandwidth {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec,
            state: Mutex::new(State {
                available: bytes_per_sec as f64,
                last: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be sent.
    pub(crate) async fn take(&self, bytes: usize) {
        if self.rate == 0 {
            return;
        }
        let rate = self.rate as f64;
        let wait = {
            let mut s = self.state.lock();
            let now = Instant::now();
            let refill = now.duration_since(s.last).as_secs_f64() * rate;
            s.available = (s.available + refill).min(rate);
            s.last = now;
            s.available -= bytes as f64;
            if s.available < 0.0 {
                Duration::from_secs_f64(-s.available / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_after_a_burst() {
        let bw = Bandwidth::new(1000);
        let start = Instant::now();
        bw.take(1000).await; // the burst
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..10 {
            bw.take(500).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((4.9..=5.1).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_is_unlimited() {
        let bw = Bandwidth::new(0);
        let start = Instant::now();
        bw.take(usize::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
