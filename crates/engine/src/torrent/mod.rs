//! One torrent's swarm state machine.
//!
//! Inputs are `handle_*` calls, each with `now`; outputs are [`Action`]s taken with
//! [`Torrent::poll_action`], and the next instant [`Torrent::handle_timeout`] must be called at,
//! from [`Torrent::poll_timeout`]. All collections are ordered (`BTreeMap`) and randomness
//! comes from a seeded RNG, so the same inputs give the same outputs.

mod dial;
mod fill;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use shoal_core::{Bitfield, PeerId, PieceIndex, PieceLayout};

use crate::config::EngineConfig;
use crate::interface::{
    Action, ConnectFailure, DisconnectReason, PeerInfo, PieceOutcome, Refusal, Role, TorrentStats,
};
use crate::picker::Rarity;

/// Requests to keep outstanding with a peer: enough to cover `window` of transfer at its
/// measured rate, plus one, at most `max` (two until a rate is known). A slow or shared link
/// thus gets few requests, so each completes quickly instead of all of them trickling in
/// together; a fast one gets the full depth.
fn adaptive_depth(rate: Option<f64>, piece_len: u32, window: Duration, max: usize) -> usize {
    let depth = rate.map_or(2, |r| {
        let pieces = r * window.as_secs_f64() / f64::from(piece_len.max(1));
        1 + pieces.min(1e6) as usize
    });
    depth.clamp(1, max.max(1))
}

/// How long a peer may make no progress before its oldest request times out:
/// `max(request_timeout_min, factor × piece ÷ measured rate)`.
fn stall_timeout(piece_len: u32, config: &EngineConfig, rate: Option<f64>) -> Duration {
    let expected = rate.map_or(Duration::ZERO, |rate| {
        Duration::from_secs_f64((f64::from(piece_len) / rate.max(1.0)).min(1e9))
    });
    expected
        .mul_f64(config.request_timeout_factor)
        .max(config.request_timeout_min)
}

#[derive(Debug)]
struct Peer {
    bitfield: Bitfield,
    is_origin: bool,
    /// We dialled it.
    outbound: bool,
    /// Outstanding requests and when each was sent.
    requests: BTreeMap<u32, Instant>,
    /// Last piece sent or received.
    last_activity: Instant,
    /// Measured download rate from this peer, bytes per second (EWMA); `None` until a piece.
    rate: Option<f64>,
    /// How long it may make no progress before its oldest request times out (from `rate`).
    stall_timeout: Duration,
    /// When the last piece from it arrived (for the rate estimate).
    last_piece_at: Option<Instant>,
    /// Start of the current wait for progress: the last piece from it, the moment it was
    /// given work while idle, or the last timeout. A peer with outstanding requests that makes
    /// no progress for a request timeout loses its oldest request.
    progress_at: Instant,
    timeouts: u32,
    /// Its requests timed out and it has not delivered since: one request at a time.
    probation: bool,
    /// It refused a request: ask it for nothing new until then (or until a piece arrives).
    refused_until: Option<Instant>,
}

/// The engine for one torrent.
#[derive(Debug)]
pub struct Torrent {
    layout: PieceLayout,
    config: EngineConfig,
    me: PeerId,
    role: Role,
    have: Bitfield,
    /// How many connected peers have each piece; our missing pieces ordered by it.
    rarity: Rarity,
    peers: BTreeMap<PeerId, Peer>,
    /// Piece → peers it is requested from.
    inflight: BTreeMap<u32, BTreeSet<PeerId>>,
    /// Per piece: whether it is in `inflight` (a fast check for the picker).
    is_inflight: Vec<bool>,
    /// Piece → a peer not to ask again for it (its request timed out).
    avoid: BTreeMap<u32, (PeerId, Instant)>,
    /// Per piece: whether it is in `avoid` (a fast check for the picker).
    is_avoided: Vec<bool>,
    candidates: VecDeque<PeerInfo>,
    /// Tracker answers so far: from the second on, the swarm has started.
    answers: u32,
    dialing: BTreeSet<PeerId>,
    blacklist: BTreeMap<PeerId, Instant>,
    /// No entry of `blacklist` / `avoid` expires before these (kept so that
    /// [`Torrent::poll_timeout`] need not scan the maps; may be early, never late).
    blacklist_next: Option<Instant>,
    /// `avoid`'s entries by expiry, so expiring them costs only the expired ones.
    avoid_expiry: BTreeSet<(Instant, u32)>,
    actions: VecDeque<Action>,
    rng: StdRng,
    stats: TorrentStats,
    finished: bool,
    /// A reader streams the blob from this piece on: its next missing pieces go first.
    stream_from: Option<u32>,
}

impl Torrent {
    /// A torrent with `layout`, of which we already have `have` (e.g. after a restart).
    pub fn new(
        layout: PieceLayout,
        have: Bitfield,
        me: PeerId,
        role: Role,
        config: EngineConfig,
    ) -> Self {
        assert_eq!(
            have.len(),
            layout.piece_count(),
            "bitfield sized for the layout"
        );
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = layout.piece_count();
        let rarity = Rarity::new(n, (0..n).filter(|p| !have.has_index(*p)), &mut rng);
        Self {
            rarity,
            finished: have.is_complete(),
            layout,
            config,
            me,
            role,
            have,
            peers: BTreeMap::new(),
            inflight: BTreeMap::new(),
            is_inflight: vec![false; layout.piece_count() as usize],
            avoid: BTreeMap::new(),
            is_avoided: vec![false; layout.piece_count() as usize],
            candidates: VecDeque::new(),
            answers: 0,
            dialing: BTreeSet::new(),
            blacklist: BTreeMap::new(),
            blacklist_next: None,
            avoid_expiry: BTreeSet::new(),
            actions: VecDeque::new(),
            rng,
            stats: TorrentStats::default(),
            stream_from: None,
        }
    }

    // === queries ===

    /// Pieces we have.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Whether we have every piece.
    pub fn is_complete(&self) -> bool {
        self.have.is_complete()
    }

    /// The layout.
    pub fn layout(&self) -> PieceLayout {
        self.layout
    }

    /// Connected peers.
    pub fn connected(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// Number of connected peers plus dials in progress.
    pub fn connection_count(&self) -> usize {
        self.peers.len() + self.dialing.len()
    }

    /// Counters.
    pub fn stats(&self) -> TorrentStats {
        self.stats
    }

    /// Whether `peer` is blacklisted at `now`.
    pub fn is_blacklisted(&self, peer: &PeerId, now: Instant) -> bool {
        self.blacklist.get(peer).is_some_and(|until| *until > now)
    }

    // === outputs ===

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for peer in self.peers.values() {
            if let Some(deadline) = self.stall_deadline(peer) {
                consider(deadline);
            }
            if peer.requests.is_empty() {
                consider(peer.last_activity + self.config.idle_timeout);
            }
            if let Some(until) = peer.refused_until {
                consider(until);
            }
        }
        if !self.candidates.is_empty()
            && let Some(until) = self.blacklist_next
        {
            consider(until);
        }
        // A piece avoided at one peer may be requestable there again later.
        if let Some((until, _)) = self.avoid_expiry.first() {
            consider(*until);
        }
        next
    }

    // === inputs ===

    /// Peers from the tracker. Agents that still download dial them as connection slots
    /// allow; seeders and origins only remember nothing (they wait to be dialled). On the
    /// first answer at most `max_outbound` connections are our own dials (peers that start
    /// together leave each other room); from the second on we dial until only
    /// `inbound_reserve` slots are free.
    pub fn handle_peers(&mut self, peers: impl IntoIterator<Item = PeerInfo>, now: Instant) {
        if self.role == Role::Origin || self.is_complete() {
            return;
        }
        for p in peers {
            let known = p.peer_id == self.me
                || self.peers.contains_key(&p.peer_id)
                || self.dialing.contains(&p.peer_id)
                || self.candidates.iter().any(|c| c.peer_id == p.peer_id);
            if !known {
                self.candidates.push_back(p);
            }
        }
        self.answers = self.answers.saturating_add(1);
        self.dial(now);
    }

    /// A connection (dialled or accepted) finished its handshake. On a refusal the driver
    /// closes it (and, for a dial, nothing else is expected).
    pub fn handle_connected(
        &mut self,
        peer: PeerId,
        bitfield: Bitfield,
        is_origin: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let dialled = self.dialing.remove(&peer);
        let refusal = if peer == self.me {
            Some(Refusal::SelfConnection)
        } else if self.peers.contains_key(&peer) {
            Some(Refusal::AlreadyConnected)
        } else if self.is_blacklisted(&peer, now) {
            Some(Refusal::Blacklisted)
        } else if !dialled && self.peers.len() + self.dialing.len() >= self.config.max_connections {
            Some(Refusal::TooManyConnections)
        } else if bitfield.len() != self.layout.piece_count() {
            Some(Refusal::BadBitfield)
        } else if bitfield.is_complete() && self.is_complete() {
            Some(Refusal::BothComplete)
        } else {
            None
        };
        if let Some(r) = refusal {
            if dialled {
                self.dial(now);
            }
            return Err(r);
        }
        for p in bitfield.ones() {
            self.rarity.inc(p);
        }
        self.peers.insert(
            peer,
            Peer {
                bitfield,
                is_origin,
                outbound: dialled,
                requests: BTreeMap::new(),
                last_activity: now,
                rate: None,
                stall_timeout: self.config.request_timeout_min,
                last_piece_at: None,
                progress_at: now,
                timeouts: 0,
                probation: false,
                refused_until: None,
            },
        );
        self.fill(&peer, now);
        Ok(())
    }

    /// A dial failed. A failed handshake blacklists the peer for a while; a peer that was
    /// busy or unreachable is retried after a short backoff (it may just be starting or
    /// restarting). Another candidate is dialled either way.
    pub fn handle_connect_failed(&mut self, peer: PeerId, failure: ConnectFailure, now: Instant) {
        self.dialing.remove(&peer);
        // A simultaneous dial from the other side may already have connected us: that is not
        // a failure of the peer.
        if !self.peers.contains_key(&peer) {
            let wait = match failure {
                ConnectFailure::Busy | ConnectFailure::Unreachable => self.config.busy_retry,
                ConnectFailure::Handshake => self.config.blacklist_duration,
            };
            self.ban(peer, now + wait);
        }
        self.dial(now);
    }

    /// The connection to `peer` closed (by either side or the network).
    pub fn handle_disconnected(&mut self, peer: PeerId, now: Instant) {
        self.dialing.remove(&peer);
        if self.remove_peer(&peer) {
            self.fill_all(now);
            self.dial(now);
        }
    }

    /// `peer` announced it has piece number `piece`.
    pub fn handle_have(&mut self, peer: PeerId, piece: u32, now: Instant) {
        let Some(index) = self.layout.piece(piece) else {
            self.drop_peer(peer, DisconnectReason::Protocol, now);
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.bitfield.set(index) {
            self.rarity.inc(piece);
            self.fill(&peer, now);
        }
    }

    /// `peer` announced it has every piece.
    pub fn handle_complete(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for i in 0..self.layout.piece_count() {
            let index = self.layout.piece(i).expect("in range");
            if p.bitfield.set(index) {
                self.rarity.inc(i);
            }
        }
        if self.is_complete() {
            self.disconnect(peer, DisconnectReason::BothComplete);
        } else {
            self.fill(&peer, now);
        }
    }

    /// We served a piece to `peer` (keeps the connection from going idle).
    pub fn handle_served(&mut self, peer: PeerId, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_activity = now;
        }
    }

    /// A piece requested from `peer` arrived and the driver checked it.
    pub fn handle_piece(
        &mut self,
        peer: PeerId,
        piece: PieceIndex,
        outcome: PieceOutcome,
        now: Instant,
    ) {
        let raw = piece.get();
        if raw >= self.layout.piece_count() {
            return;
        }
        let connected = if let Some(p) = self.peers.get_mut(&peer) {
            p.requests.remove(&raw);
            p.last_activity = now;
            true
        } else {
            false
        };
        self.unmark_inflight(raw, &peer);
        if outcome == PieceOutcome::Corrupt {
            // A corrupt piece still in flight from a peer already dropped changes nothing.
            if connected {
                self.stats.corrupt_pieces += 1;
                self.drop_peer(peer, DisconnectReason::BadPiece, now);
            }
            return;
        }
        self.stats.pieces_received += 1;
        if let Some(p) = self.peers.get_mut(&peer) {
            let len = f64::from(self.layout.len_of(piece));
            let since = p
                .last_piece_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            p.last_piece_at = Some(now);
            if since > Duration::ZERO {
                let sample = len / since.as_secs_f64();
                p.rate = Some(p.rate.map_or(sample, |r| 0.7 * r + 0.3 * sample));
            }
            p.stall_timeout = stall_timeout(self.layout.piece_len(), &self.config, p.rate);
            p.timeouts = 0;
            p.probation = false;
            p.progress_at = now;
            p.refused_until = None;
        }
        if self.have.set(piece) {
            self.rarity.remove(raw);
        } else {
            self.stats.duplicate_pieces += 1;
            self.fill(&peer, now);
            return;
        }
        if let Some((_, until)) = self.avoid.remove(&raw) {
            self.is_avoided[raw as usize] = false;
            self.avoid_expiry.remove(&(until, raw));
        }
        // Endgame: cancel the copies still on their way.
        let mut refill = vec![peer];
        self.is_inflight[raw as usize] = false;
        if let Some(others) = self.inflight.remove(&raw) {
            for other in others {
                if let Some(o) = self.peers.get_mut(&other) {
                    o.requests.remove(&raw);
                    self.actions
                        .push_back(Action::Cancel { peer: other, piece });
                    refill.push(other);
                }
            }
        }
        let complete = self.is_complete();
        let tell: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.bitfield.is_complete())
            .map(|(id, _)| *id)
            .collect();
        for id in tell {
            self.actions.push_back(if complete {
                Action::Complete { peer: id }
            } else {
                Action::Have { peer: id, piece }
            });
        }
        if complete {
            if !self.finished {
                self.finished = true;
                self.actions.push_back(Action::Finished);
            }
            self.candidates.clear();
            let done: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.bitfield.is_complete())
                .map(|(id, _)| *id)
                .collect();
            for id in done {
                self.disconnect(id, DisconnectReason::BothComplete);
            }
            return;
        }
        for id in refill {
            self.fill(&id, now);
        }
    }

    /// A request to `peer` failed without data (the peer refused it, or its stream broke).
    pub fn handle_request_failed(&mut self, peer: PeerId, piece: PieceIndex, now: Instant) {
        let raw = piece.get();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.requests.remove(&raw);
            p.refused_until = Some(now + self.config.refusal_backoff);
        }
        self.unmark_inflight(raw, &peer);
        // Refused or failed: try others for this piece for a moment (an origin refuses a
        // piece it has just sent to someone else, who will soon have it).
        self.avoid_piece(raw, peer, now + self.config.request_timeout_min / 5);
        self.fill_all(now);
    }

    /// Time passed: expire requests and idle connections, retry dials.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut idle = Vec::new();
        for (id, peer) in &self.peers {
            if let Some(deadline) = self.stall_deadline(peer)
                && deadline <= now
            {
                expired.push(*id);
            }
            if peer.requests.is_empty() && now >= peer.last_activity + self.config.idle_timeout {
                idle.push(*id);
            }
        }
        for id in expired {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            // Nothing arrived for the whole timeout: every request queued behind the stalled
            // one is as stuck (a vanished peer holds them all), so all of them go to other
            // peers now rather than one per timeout. Until it delivers again the peer gets one
            // request at a time.
            let stuck: Vec<u32> = std::mem::take(&mut p.requests).into_keys().collect();
            p.timeouts += 1;
            p.progress_at = now;
            p.probation = true;
            let too_slow = p.timeouts >= self.config.max_timeouts;
            self.stats.timeouts += 1;
            for raw in stuck {
                self.unmark_inflight(raw, &id);
                self.avoid_piece(raw, id, now + self.config.request_timeout_min);
                let piece = self
                    .layout
                    .piece(raw)
                    .expect("requested pieces are in range");
                self.actions.push_back(Action::Cancel { peer: id, piece });
            }
            if too_slow {
                // Not blacklisted: a congested peer may be fine later, and a vanished one will
                // fail its next handshake (which does blacklist it).
                self.disconnect(id, DisconnectReason::TooSlow);
            }
        }
        for id in idle {
            self.disconnect(id, DisconnectReason::Idle);
        }
        if self.blacklist_next.is_some_and(|t| t <= now) {
            self.blacklist.retain(|_, until| *until > now);
            self.blacklist_next = self.blacklist.values().min().copied();
        }
        while let Some(&(until, piece)) = self.avoid_expiry.first()
            && until <= now
        {
            self.avoid_expiry.pop_first();
            self.avoid.remove(&piece);
            self.is_avoided[piece as usize] = false;
        }
        for p in self.peers.values_mut() {
            if p.refused_until.is_some_and(|until| until <= now) {
                p.refused_until = None;
            }
        }
        self.fill_all(now);
        self.dial(now);
    }

    // === internals ===

    /// When the peer's outstanding requests time out: when it has made no progress (no
    /// piece) for `max(request_timeout_min, factor × piece ÷ measured rate)`. Progress, not
    /// each request's age, is what counts: a busy uploader that delivers steadily is never
    /// timed out, however long its queue. `None` without outstanding requests.
    fn stall_deadline(&self, peer: &Peer) -> Option<Instant> {
        (!peer.requests.is_empty()).then(|| peer.progress_at + peer.stall_timeout)
    }

    fn ban(&mut self, peer: PeerId, until: Instant) {
        self.blacklist.insert(peer, until);
        self.blacklist_next = Some(self.blacklist_next.map_or(until, |t| t.min(until)));
    }

    fn avoid_piece(&mut self, piece: u32, peer: PeerId, until: Instant) {
        if let Some((_, old)) = self.avoid.insert(piece, (peer, until)) {
            self.avoid_expiry.remove(&(old, piece));
        }
        self.avoid_expiry.insert((until, piece));
        self.is_avoided[piece as usize] = true;
    }

    fn unmark_inflight(&mut self, raw: u32, peer: &PeerId) {
        if let Some(set) = self.inflight.get_mut(&raw) {
            set.remove(peer);
            if set.is_empty() {
                self.inflight.remove(&raw);
                self.is_inflight[raw as usize] = false;
            }
        }
    }

    fn fill_all(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.fill(&id, now);
        }
    }

    /// Forgets a peer's state; returns whether it was connected.
    fn remove_peer(&mut self, id: &PeerId) -> bool {
        let Some(peer) = self.peers.remove(id) else {
            return false;
        };
        for p in peer.bitfield.ones() {
            self.rarity.dec(p);
        }
        for p in peer.requests.keys() {
            self.unmark_inflight(*p, id);
        }
        true
    }

    fn disconnect(&mut self, id: PeerId, reason: DisconnectReason) {
        if self.remove_peer(&id) {
            self.actions
                .push_back(Action::Disconnect { peer: id, reason });
        }
    }

    /// Disconnects and blacklists a misbehaving peer, then reassigns its work.
    fn drop_peer(&mut self, id: PeerId, reason: DisconnectReason, now: Instant) {
        self.ban(id, now + self.config.blacklist_duration);
        self.disconnect(id, reason);
        self.fill_all(now);
        self.dial(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_follows_the_measured_rate() {
        let w = Duration::from_secs(1);
        let mib = f64::from(1u32 << 20);
        assert_eq!(adaptive_depth(None, 4 << 20, w, 8), 2);
        assert_eq!(adaptive_depth(None, 4 << 20, w, 1), 1);
        // 1 MiB/s with 4 MiB pieces: one request at a time.
        assert_eq!(adaptive_depth(Some(mib), 4 << 20, w, 8), 1);
        // 12 MiB/s: three pieces a second, plus one.
        assert_eq!(adaptive_depth(Some(12.0 * mib), 4 << 20, w, 8), 4);
        // 1 GiB/s: capped.
        assert_eq!(adaptive_depth(Some(1024.0 * mib), 4 << 20, w, 8), 8);
        assert_eq!(adaptive_depth(Some(f64::INFINITY), 4 << 20, w, 8), 8);
    }

    #[test]
    fn the_depth_cap_follows_the_piece_length_unless_set() {
        use crate::config::{LARGE_PIECE_LEN, LARGE_PIECE_PIPELINE_DEPTH, PIPELINE_DEPTH};
        let auto = EngineConfig::default();
        assert_eq!(auto.pipeline_depth, None);
        assert_eq!(PIPELINE_DEPTH, crate::seeding::SERVE_PER_PEER);
        assert_eq!(auto.pipeline_depth_for(256 << 10), 2);
        assert_eq!(auto.pipeline_depth_for(4 << 20), 2);
        assert_eq!(auto.pipeline_depth_for(LARGE_PIECE_LEN), 2);
        assert_eq!(auto.pipeline_depth_for(LARGE_PIECE_LEN + 1), 4);
        assert_eq!(
            auto.pipeline_depth_for(128 << 20),
            LARGE_PIECE_PIPELINE_DEPTH
        );
        let set = EngineConfig {
            pipeline_depth: Some(6),
            ..EngineConfig::default()
        };
        assert_eq!(set.pipeline_depth_for(256 << 10), 6);
        assert_eq!(set.pipeline_depth_for(128 << 20), 6);
    }

    /// An agent's torrent of 64 pieces of `piece_len`, with nothing yet, and a full bitfield.
    fn empty_agent(piece_len: u32) -> (Torrent, Bitfield) {
        let layout = PieceLayout::new(64 * u64::from(piece_len), piece_len).unwrap();
        let t = Torrent::new(
            layout,
            Bitfield::for_layout(&layout),
            PeerId::from_bytes([1; 32]),
            Role::Agent,
            EngineConfig::default(),
        );
        let mut full = Bitfield::for_layout(&layout);
        for p in layout.pieces() {
            full.set(p);
        }
        (t, full)
    }

    /// Requests outstanding with one fast, complete agent peer once its rate is measured.
    fn outstanding_with_a_fast_peer(piece_len: u32) -> usize {
        let (mut t, full) = empty_agent(piece_len);
        let peer = PeerId::from_bytes([2; 32]);
        let start = Instant::now();
        t.handle_connected(peer, full, false, start).unwrap();
        let mut outstanding = Vec::new();
        let drain = |t: &mut Torrent, outstanding: &mut Vec<PieceIndex>| {
            while let Some(a) = t.poll_action() {
                if let Action::Request { piece, .. } = a {
                    outstanding.push(piece);
                }
            }
        };
        drain(&mut t, &mut outstanding);
        // A piece every millisecond: a rate far above anything the depth could cover.
        for ms in 1..=4 {
            let piece = outstanding.remove(0);
            let now = start + Duration::from_millis(ms);
            t.handle_piece(peer, piece, PieceOutcome::Valid, now);
            drain(&mut t, &mut outstanding);
        }
        outstanding.len()
    }

    /// The pieces requested from an origin, in order, for a reader streaming from piece 0,
    /// with or without a leecher among our neighbours.
    fn requests_to_the_origin_while_streaming(with_leecher: bool) -> Vec<u32> {
        let (mut t, full) = empty_agent(256 * 1024);
        let layout = t.layout();
        let origin = PeerId::from_bytes([2; 32]);
        let leecher = PeerId::from_bytes([3; 32]);
        let start = Instant::now();
        if with_leecher {
            // A neighbour with nothing yet: someone to trade with later.
            t.handle_connected(leecher, Bitfield::for_layout(&layout), false, start)
                .unwrap();
        }
        t.handle_stream_position(Some(0), start);
        t.handle_connected(origin, full, true, start).unwrap();
        let mut requested = Vec::new();
        let mut outstanding = Vec::new();
        for ms in 1..=16 {
            while let Some(a) = t.poll_action() {
                if let Action::Request { peer, piece } = a {
                    assert_eq!(peer, origin);
                    requested.push(piece.get());
                    outstanding.push(piece);
                }
            }
            let piece = outstanding.remove(0);
            let now = start + Duration::from_millis(ms);
            t.handle_piece(origin, piece, PieceOutcome::Valid, now);
            let next = (0..64).find(|p| !t.have().has_index(*p));
            t.handle_stream_position(next, now);
        }
        requested
    }

    #[test]
    fn a_reader_with_only_seeders_around_gets_the_blob_in_order() {
        let alone = requests_to_the_origin_while_streaming(false);
        assert!(alone.len() >= 16, "{alone:?}");
        assert_eq!(alone, (0..alone.len() as u32).collect::<Vec<_>>());
        // With a leecher to trade with, only the reader's next piece goes first; the rest is
        // rarest first (random among equals), for the swarm's diversity.
        let traded = requests_to_the_origin_while_streaming(true);
        assert_ne!(traded, (0..traded.len() as u32).collect::<Vec<_>>());
        assert!(traded.iter().any(|p| *p >= 32), "{traded:?}");
    }

    #[test]
    fn a_fast_peer_gets_the_piece_length_s_depth() {
        assert_eq!(outstanding_with_a_fast_peer(256 << 10), 2);
        assert_eq!(outstanding_with_a_fast_peer(4 << 20), 2);
        assert_eq!(outstanding_with_a_fast_peer(32 << 20), 4);
    }
}
