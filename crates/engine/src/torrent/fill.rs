//! Piece selection for one peer's pipeline: a streaming reader's next pieces, then rarest
//! first (the bucketed order, or a scan of a peer that holds few of our missing pieces), then
//! endgame duplicates.

use std::time::Instant;

use shoal_core::PeerId;

use super::{Torrent, adaptive_depth};
use crate::config::PiecePolicy;
use crate::interface::Action;
use crate::picker::Best;

impl Torrent {
    /// A reader is streaming the blob and waits for `piece` (or `None`: no reader waits). The
    /// first [`crate::EngineConfig::stream_window`] missing pieces from there are requested
    /// before anything else, in order (rarest first orders the rest), so a client reads its
    /// bytes as they arrive instead of waiting for the random fill to close the gaps. Tops up
    /// every pipeline at once.
    pub fn handle_stream_position(&mut self, piece: Option<u32>, now: Instant) {
        self.stream_from = piece.filter(|p| *p < self.layout.piece_count());
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.fill(&id, now);
        }
    }

    /// Up to `limit` of the next missing pieces a streaming reader waits for that are not yet
    /// requested and pass `accept`: among the first
    /// [`crate::EngineConfig::stream_window`] from its position, or among all of them while
    /// every connected peer is complete.
    ///
    /// The window is small because every agent streaming the same blob wants the same next
    /// pieces, which costs the swarm its diversity. That cost needs someone to trade with:
    /// while all our neighbours are seeders (an origin alone, as on a cold pull by one host),
    /// no order is better for the swarm than another, and fetching in order lets the client
    /// read at the download's pace instead of catching up after a random fill.
    fn stream_picks(&self, limit: usize, accept: impl Fn(u32) -> bool) -> Vec<u32> {
        let Some(from) = self.stream_from else {
            return Vec::new();
        };
        let only_seeders = self.peers.values().all(|p| p.bitfield.is_complete());
        let window = if only_seeders {
            usize::MAX
        } else {
            self.config.stream_window as usize
        };
        (from..self.layout.piece_count())
            .filter(|p| !self.have.has_index(*p))
            .take(window)
            .filter(|p| !self.is_inflight[*p as usize] && accept(*p))
            .take(limit)
            .collect()
    }

    /// Missing pieces at which endgame starts: the configured threshold, but at most a
    /// sixteenth of the torrent (at least 1). In a small torrent, 8 pieces would be a quarter
    /// of it sent twice; a sixteenth keeps the duplicates few while still covering the tail
    /// (a capped 32-piece swarm went from 1.72× to 1.59× the minimum in the simulator).
    fn endgame_threshold(&self) -> u32 {
        self.config
            .endgame_threshold
            .min((self.layout.piece_count() / 16).max(1))
    }

    /// Tops up `peer`'s pipeline.
    pub(super) fn fill(&mut self, id: &PeerId, now: Instant) {
        if self.is_complete() {
            return;
        }
        let Some(peer) = self.peers.get(id) else {
            return;
        };
        if peer.refused_until.is_some_and(|until| until > now) {
            return;
        }
        let max_depth = if peer.is_origin {
            self.config.origin_pipeline_depth
        } else {
            self.config.pipeline_depth_for(self.layout.piece_len())
        };
        let depth = adaptive_depth(
            peer.rate,
            self.layout.piece_len(),
            self.config.pipeline_window,
            max_depth,
        );
        let depth = if peer.probation { 1 } else { depth };
        let free = depth.saturating_sub(peer.requests.len());
        if free == 0 {
            return;
        }
        // A streaming reader's next pieces first, from whichever peer has them and has not
        // just refused them (an origin refuses a piece it has just sent to someone else).
        let avoided = |p: &u32| {
            self.is_avoided[*p as usize]
                && self
                    .avoid
                    .get(p)
                    .is_some_and(|(who, until)| who == id && *until > now)
        };
        let mut picks = self.stream_picks(free, |p| peer.bitfield.has_index(p) && !avoided(&p));
        let wanted = |p: u32, picks: &[u32]| {
            !self.is_inflight[p as usize] && !picks.contains(&p) && !avoided(&p)
        };
        if picks.len() < free {
            // A peer with few of the pieces we lack: scan its pieces. Otherwise walk our
            // missing pieces rarest first; the first ones it has are the picks.
            let sparse = (peer.bitfield.count_ones() as usize) * 4 < self.rarity.missing();
            if sparse {
                let mut best = Best::new(free - picks.len());
                for p in peer.bitfield.difference(&self.have) {
                    if wanted(p, &picks) {
                        let availability = self.rarity.get(p);
                        best.offer(self.config.piece_policy, p, availability, &mut self.rng);
                    }
                }
                picks.extend(best.into_pieces());
            } else {
                let mut found = Vec::with_capacity(free - picks.len());
                let room = free - picks.len();
                let mut visit = |p: u32| {
                    if peer.bitfield.has_index(p) && wanted(p, &picks) {
                        found.push(p);
                    }
                    found.len() < room
                };
                match self.config.piece_policy {
                    // Pieces no connected peer has cannot come from this one.
                    PiecePolicy::RarestFirst => self.rarity.walk(1, &mut self.rng, &mut visit),
                    PiecePolicy::Random => self.rarity.walk_all(&mut self.rng, &mut visit),
                }
                picks.extend(found);
            }
        }
        let missing = u32::try_from(self.rarity.missing()).unwrap_or(u32::MAX);
        if picks.len() < free && missing <= self.endgame_threshold() {
            // Endgame: ask for pieces already requested elsewhere, least-requested first.
            let mut dup = Best::new(free - picks.len());
            for (p, holders) in &self.inflight {
                if peer.bitfield.has_index(*p)
                    && !holders.contains(id)
                    && !peer.requests.contains_key(p)
                {
                    let n = u32::try_from(holders.len()).unwrap_or(u32::MAX);
                    dup.offer(PiecePolicy::RarestFirst, *p, n, &mut self.rng);
                }
            }
            picks.extend(dup.into_pieces());
        }
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        if peer.requests.is_empty() && !picks.is_empty() {
            peer.progress_at = now;
        }
        for p in picks {
            peer.requests.insert(p, now);
            self.inflight.entry(p).or_default().insert(*id);
            self.is_inflight[p as usize] = true;
            let piece = self
                .layout
                .piece(p)
                .expect("from a bitfield of this layout");
            self.actions.push_back(Action::Request { peer: *id, piece });
        }
    }
}
