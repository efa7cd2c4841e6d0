//! How an origin spreads its uplink: each piece once, to one peer at a time.
//!
//! When many agents start at once, each sees the pieces only the origin has as the rarest and
//! asks the origin for them; without a policy the origin sends the same rare piece to many
//! agents while other pieces wait. An origin therefore refuses a piece it sent to another peer
//! within the last `window` (the requester tries another piece, and gets this one from the
//! peer that just received it); after the window it serves the piece again, so a recipient that
//! vanished costs only a delay. This is BitTorrent's "super-seeding", reduced to one rule.
//!
//! Every host, agent or origin, also bounds its upload queue ([`admit_upload`]): a request
//! that finds [`DEFAULT_UPLOAD_QUEUE`] pieces already waiting for the uplink is refused at
//! once. Without the bound, requests pile up at whichever peers hold the rarest pieces and
//! wait there for seconds while other uplinks idle; with it, the requester hears "busy" and
//! asks another holder (the engine backs off the busy peer for `refusal_backoff`). In the
//! simulator's sweep (500 hosts, 1 GB) the median host went from 1.08× the theoretical
//! minimum unbounded (p99 1.34×) to 1.06× with 4 waiting (p99 1.17×); 2 gave 1.14× (see
//! `docs/SIMULATIONS.md`).

use std::time::{Duration, Instant};

/// The default window: about the time a 4 MiB piece takes to reach a peer and be announced.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);

/// Pieces a host lets wait for its uplink, beyond those being sent. Default 4.
pub const DEFAULT_UPLOAD_QUEUE: usize = 4;

/// Requests of one peer a host takes on at a time (sending, or waiting for its uplink). The
/// peer's further requests wait on its connection, in order: they are neither refused nor
/// counted in the host's upload queue, so one peer cannot fill that queue by itself.
pub const SERVE_PER_PEER: usize = 2;

/// Whether a host with `waiting` uploads queued (not yet being sent) takes another request;
/// if not, it refuses it at once. `limit` is usually [`DEFAULT_UPLOAD_QUEUE`].
pub fn admit_upload(waiting: usize, limit: usize) -> bool {
    waiting < limit
}

/// When each piece was last handed out.
#[derive(Debug, Clone)]
pub struct SeedLedger {
    window: Duration,
    last_served: Vec<Option<Instant>>,
}

impl SeedLedger {
    /// A ledger for `pieces` pieces.
    pub fn new(pieces: u32, window: Duration) -> Self {
        Self {
            window,
            last_served: vec![None; pieces as usize],
        }
    }

    /// Whether to serve `piece` now; records the serving if so. Out-of-range pieces are
    /// refused.
    pub fn allow(&mut self, piece: u32, now: Instant) -> bool {
        let Some(slot) = self.last_served.get_mut(piece as usize) else {
            return false;
        };
        match slot {
            Some(at) if now.saturating_duration_since(*at) < self.window => false,
            _ => {
                *slot = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_piece_once_per_window() {
        let t0 = Instant::now();
        let mut l = SeedLedger::new(3, Duration::from_secs(2));
        assert!(l.allow(0, t0));
        assert!(
            !l.allow(0, t0 + Duration::from_millis(500)),
            "recently sent elsewhere"
        );
        assert!(
            l.allow(1, t0 + Duration::from_millis(500)),
            "other pieces are served"
        );
        assert!(
            l.allow(0, t0 + Duration::from_secs(2)),
            "again after the window"
        );
        assert!(!l.allow(3, t0), "no such piece");
    }
}
