//! How a host takes on piece requests, as the real agent's serving loop does
//! (`shoal_p2p`'s `serve`, with [`shoal_engine::seeding::SERVE_PER_PEER`]): at most that many
//! requests of one peer are taken on at a time (sent, or waiting in the host's upload queue);
//! the peer's further requests wait in order on its connection, neither refused nor counted in
//! the upload queue, and move up as its taken ones leave the uplink.

use std::collections::{HashMap, VecDeque};

use shoal_engine::seeding::{DEFAULT_UPLOAD_QUEUE, admit_upload};

use super::{Ev, Sim, Upload, piece_len, secs};

/// Per (requesting peer, blob): requests taken on, and the ones waiting behind them.
#[derive(Debug)]
pub(super) struct PerPeer {
    limit: usize,
    peers: HashMap<(u32, u32), Entry>,
}

#[derive(Debug, Default)]
struct Entry {
    taken: usize,
    parked: VecDeque<u32>,
}

impl PerPeer {
    /// At most `limit` (at least 1) requests of each peer taken on at a time.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            peers: HashMap::new(),
        }
    }

    /// Parks `piece` if `from` already has its share taken on (true), else leaves it to the
    /// host's admission (false).
    pub(super) fn park_if_full(&mut self, from: u32, blob: u32, piece: u32) -> bool {
        let e = self.peers.entry((from, blob)).or_default();
        if e.taken >= self.limit {
            e.parked.push_back(piece);
            true
        } else {
            false
        }
    }

    /// A request of `from` was taken on (queued for the uplink).
    pub(super) fn take(&mut self, from: u32, blob: u32) {
        self.peers.entry((from, blob)).or_default().taken += 1;
    }

    /// A taken request of `from` left the uplink (sent or cancelled).
    pub(super) fn release(&mut self, from: u32, blob: u32) {
        if let Some(e) = self.peers.get_mut(&(from, blob)) {
            e.taken = e.taken.saturating_sub(1);
        }
    }

    /// The next parked request of `from`, if it may be taken on now.
    pub(super) fn next_parked(&mut self, from: u32, blob: u32) -> Option<u32> {
        let e = self.peers.get_mut(&(from, blob))?;
        if e.taken < self.limit {
            e.parked.pop_front()
        } else {
            None
        }
    }

    /// Drops a parked request (the peer cancelled it); false if it was not parked.
    pub(super) fn cancel_parked(&mut self, from: u32, blob: u32, piece: u32) -> bool {
        let Some(e) = self.peers.get_mut(&(from, blob)) else {
            return false;
        };
        match e.parked.iter().position(|p| *p == piece) {
            Some(pos) => {
                e.parked.remove(pos);
                true
            }
            None => false,
        }
    }

    /// The connection to `from` for `blob` closed: forget its requests.
    pub(super) fn forget(&mut self, from: u32, blob: u32) {
        self.peers.remove(&(from, blob));
    }

    /// The host failed: forget everything.
    pub(super) fn clear(&mut self) {
        self.peers.clear();
    }
}

impl Sim {
    pub(super) fn request_arrives(&mut self, to: u32, from: u32, blob: u32, piece: u32) {
        let now = self.instant(self.now);
        let limit = self
            .scenario
            .engine
            .upload_queue
            .unwrap_or(DEFAULT_UPLOAD_QUEUE);
        if !self.alive(to)
            || self.hosts[to as usize]
                .per_peer
                .park_if_full(from, blob, piece)
        {
            return;
        }
        let waiting = self.hosts[to as usize].uplink.len();
        let Some(slot) = self.live_slot(to, blob) else {
            return;
        };
        if !admit_upload(waiting, limit)
            || slot.ledger.as_mut().is_some_and(|l| !l.allow(piece, now))
        {
            self.refusals += 1;
            self.send(
                to,
                from,
                Ev::Refused {
                    to: from,
                    from: to,
                    blob,
                    piece,
                },
            );
            return;
        }
        let host = &mut self.hosts[to as usize];
        host.per_peer.take(from, blob);
        host.uplink.push_back(Upload {
            to: from,
            blob,
            piece,
        });
        self.start_upload(to);
    }

    /// Takes on `from`'s parked requests at `h` while its share allows (each is admitted, or
    /// refused, as if it had just arrived).
    pub(super) fn take_parked(&mut self, h: u32, from: u32, blob: u32) {
        while let Some(piece) = self.hosts[h as usize].per_peer.next_parked(from, blob) {
            self.request_arrives(h, from, blob, piece);
        }
    }

    pub(super) fn start_upload(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        if host.up_busy || !host.alive {
            return;
        }
        let Some(up) = host.uplink.pop_front() else {
            return;
        };
        host.up_busy = true;
        let len = f64::from(piece_len(&self.blobs[up.blob as usize], up.piece));
        let done = self.now + secs(len / host.spec.up);
        let lat = self.lat(h, up.to);
        let rx = &mut self.hosts[up.to as usize];
        let start = (self.now + lat).max(rx.downlink_free);
        let arrival = (done + lat).max(start + secs(len / rx.spec.down));
        rx.downlink_free = arrival;
        self.schedule(
            done,
            Ev::UploadDone {
                host: h,
                to: up.to,
                blob: up.blob,
                piece: up.piece,
                arrival,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use shoal_engine::seeding::SERVE_PER_PEER;

    use super::*;

    #[test]
    fn a_peer_beyond_its_share_waits_in_order() {
        let mut p = PerPeer::new(SERVE_PER_PEER);
        for piece in 0..SERVE_PER_PEER as u32 {
            assert!(!p.park_if_full(7, 0, piece));
            p.take(7, 0);
        }
        assert!(p.park_if_full(7, 0, 10));
        assert!(p.park_if_full(7, 0, 11));
        // Another peer is not held back.
        assert!(!p.park_if_full(8, 0, 10));
        assert_eq!(p.next_parked(7, 0), None, "its share is still taken");
        p.release(7, 0);
        assert_eq!(p.next_parked(7, 0), Some(10));
        assert!(p.cancel_parked(7, 0, 11));
        assert!(!p.cancel_parked(7, 0, 11));
        p.forget(7, 0);
        assert_eq!(p.next_parked(7, 0), None);
    }
}
