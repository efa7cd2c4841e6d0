//! The engine in a deterministic simulated swarm with a virtual clock: transfers take
//! `piece length ÷ uploader rate` (one upload at a time per peer, FIFO), messages take a fixed
//! latency. Peers can be slow, vanish, or send corrupt pieces.

#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_core::{Bitfield, PeerId, PieceIndex, PieceLayout};
use shoal_engine::seeding::SeedLedger;
use shoal_engine::{
    Action, ConnectFailure, DisconnectReason, EngineConfig, PeerInfo, PieceOutcome, Refusal, Role,
    Torrent,
};

const LATENCY: Duration = Duration::from_millis(1);
const PIECE: u32 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    /// Sends pieces whose content fails verification.
    Corrupt,
    /// Stops answering anything after this long, without closing connections.
    VanishesAfter(Duration),
}

struct Node {
    torrent: Torrent,
    rate: f64,
    behaviour: Behaviour,
    queue: VecDeque<(usize, u32)>,
    busy: bool,
    done_at: Option<Instant>,
    uploaded: u64,
    disconnects: Vec<(PeerId, DisconnectReason)>,
    cancels: u64,
    /// Origins refuse a piece they sent to another peer just now, as the real driver does.
    ledger: Option<SeedLedger>,
}

#[derive(Debug)]
enum Ev {
    /// Every agent asks the "tracker" again, as drivers do periodically.
    Announce,
    Have {
        to: usize,
        from: usize,
        piece: u32,
    },
    Complete {
        to: usize,
        from: usize,
    },
    Request {
        to: usize,
        from: usize,
        piece: u32,
    },
    Cancel {
        to: usize,
        from: usize,
        piece: u32,
    },
    UploadDone {
        at: usize,
        to: usize,
        piece: u32,
    },
    Piece {
        to: usize,
        from: usize,
        piece: u32,
        corrupt: bool,
    },
    Closed {
        to: usize,
        from: usize,
    },
    /// An origin refused a request (it sent that piece to another peer just now).
    Refused {
        to: usize,
        from: usize,
        piece: u32,
    },
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    ids: Vec<PeerId>,
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    payloads: BTreeMap<usize, Ev>,
    seq: u64,
    layout: PieceLayout,
    /// (node, piece) in the order valid pieces arrived.
    arrivals: Vec<(usize, u32)>,
    /// Requests origins refused.
    refusals: u64,
}

fn id(i: usize) -> PeerId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    PeerId::from_bytes(b)
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 10_000 + i as u16))
}

fn test_config(seed: u64) -> EngineConfig {
    EngineConfig {
        request_timeout_min: Duration::from_secs(3),
        busy_retry: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(600),
        seed,
        ..EngineConfig::default()
    }
}

impl Sim {
    fn new(pieces: u32) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            nodes: Vec::new(),
            ids: Vec::new(),
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            seq: 0,
            arrivals: Vec::new(),
            refusals: 0,
            layout: PieceLayout::new(u64::from(pieces) * u64::from(PIECE), PIECE).unwrap(),
        }
    }

    fn add(
        &mut self,
        role: Role,
        have: Bitfield,
        rate: f64,
        behaviour: Behaviour,
        config: EngineConfig,
    ) -> usize {
        let i = self.nodes.len();
        self.ids.push(id(i));
        self.nodes.push(Node {
            torrent: Torrent::new(self.layout, have, id(i), role, config),
            rate,
            behaviour,
            queue: VecDeque::new(),
            busy: false,
            done_at: None,
            uploaded: 0,
            disconnects: Vec::new(),
            cancels: 0,
            ledger: (role == Role::Origin)
                .then(|| SeedLedger::new(self.layout.piece_count(), Duration::from_secs(2))),
        });
        i
    }

    fn index(&self, peer: &PeerId) -> usize {
        self.ids.iter().position(|p| p == peer).unwrap()
    }

    fn alive(&self, i: usize) -> bool {
        match self.nodes[i].behaviour {
            Behaviour::VanishesAfter(d) => self.now < self.t0 + d,
            _ => true,
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        let key = self.seq as usize;
        self.payloads.insert(key, ev);
        self.events.push(Reverse((at, self.seq, key)));
    }

    /// Starts periodic announces.
    fn start(&mut self) {
        self.announce_all();
        let at = self.now + Duration::from_secs(1);
        self.schedule(at, Ev::Announce);
    }

    /// Hands every agent the other peers (as a tracker would).
    fn announce_all(&mut self) {
        let infos: Vec<PeerInfo> = (0..self.nodes.len())
            .map(|i| PeerInfo {
                peer_id: self.ids[i],
                addr: addr(i),
                is_origin: false,
            })
            .collect();
        for i in 0..self.nodes.len() {
            let now = self.now;
            self.nodes[i].torrent.handle_peers(infos.clone(), now);
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].torrent.poll_action() {
            let now = self.now;
            match action {
                Action::Connect { peer, .. } => {
                    let j = self.index(&peer);
                    let theirs = self.nodes[j].torrent.have().clone();
                    let ours = self.nodes[i].torrent.have().clone();
                    let j_origin = false;
                    if !self.alive(j) {
                        self.nodes[i].torrent.handle_connect_failed(
                            peer,
                            ConnectFailure::Unreachable,
                            now,
                        );
                        continue;
                    }
                    match self.nodes[j]
                        .torrent
                        .handle_connected(self.ids[i], ours, false, now)
                    {
                        Ok(()) => {
                            if self.nodes[i]
                                .torrent
                                .handle_connected(peer, theirs, j_origin, now)
                                .is_err()
                            {
                                self.nodes[j].torrent.handle_disconnected(self.ids[i], now);
                            }
                        }
                        Err(_) => self.nodes[i].torrent.handle_connect_failed(
                            peer,
                            ConnectFailure::Busy,
                            now,
                        ),
                    }
                    self.drain(j);
                }
                Action::Disconnect { peer, reason } => {
                    self.nodes[i].disconnects.push((peer, reason));
                    let j = self.index(&peer);
                    self.schedule(now + LATENCY, Ev::Closed { to: j, from: i });
                }
                Action::Request { peer, piece } => {
                    let j = self.index(&peer);
                    self.schedule(
                        now + LATENCY,
                        Ev::Request {
                            to: j,
                            from: i,
                            piece: piece.get(),
                        },
                    );
                }
                Action::Cancel { peer, piece } => {
                    self.nodes[i].cancels += 1;
                    let j = self.index(&peer);
                    self.schedule(
                        now + LATENCY,
                        Ev::Cancel {
                            to: j,
                            from: i,
                            piece: piece.get(),
                        },
                    );
                }
                Action::Have { peer, piece } => {
                    let j = self.index(&peer);
                    self.schedule(
                        now + LATENCY,
                        Ev::Have {
                            to: j,
                            from: i,
                            piece: piece.get(),
                        },
                    );
                }
                Action::Complete { peer } => {
                    let j = self.index(&peer);
                    self.schedule(now + LATENCY, Ev::Complete { to: j, from: i });
                }
                Action::Finished => self.nodes[i].done_at = Some(now),
            }
        }
    }

    fn start_upload(&mut self, i: usize) {
        if self.nodes[i].busy || !self.alive(i) {
            return;
        }
        if let Some((to, piece)) = self.nodes[i].queue.pop_front() {
            self.nodes[i].busy = true;
            let secs = f64::from(PIECE) / self.nodes[i].rate;
            let at = self.now + Duration::from_secs_f64(secs);
            self.schedule(at, Ev::UploadDone { at: i, to, piece });
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Have { to, from, piece } => {
                if self.alive(to) {
                    self.nodes[to]
                        .torrent
                        .handle_have(self.ids[from], piece, now);
                    self.drain(to);
                }
            }
            Ev::Complete { to, from } => {
                if self.alive(to) {
                    self.nodes[to].torrent.handle_complete(self.ids[from], now);
                    self.drain(to);
                }
            }
            Ev::Request { to, from, piece } => {
                if self.alive(to) {
                    let refused = self.nodes[to]
                        .ledger
                        .as_mut()
                        .is_some_and(|l| !l.allow(piece, now));
                    if refused {
                        self.refusals += 1;
                        self.schedule(
                            now + LATENCY,
                            Ev::Refused {
                                to: from,
                                from: to,
                                piece,
                            },
                        );
                    } else {
                        self.nodes[to].queue.push_back((from, piece));
                        self.start_upload(to);
                    }
                }
            }
            Ev::Refused { to, from, piece } => {
                if self.alive(to) {
                    let index = self.layout.piece(piece).unwrap();
                    self.nodes[to]
                        .torrent
                        .handle_request_failed(self.ids[from], index, now);
                    self.drain(to);
                }
            }
            Ev::Cancel { to, from, piece } => {
                self.nodes[to].queue.retain(|q| *q != (from, piece));
            }
            Ev::UploadDone { at, to, piece } => {
                self.nodes[at].busy = false;
                if self.alive(at) {
                    self.nodes[at].uploaded += 1;
                    let corrupt = self.nodes[at].behaviour == Behaviour::Corrupt;
                    self.nodes[at].torrent.handle_served(self.ids[to], now);
                    self.schedule(
                        now + LATENCY,
                        Ev::Piece {
                            to,
                            from: at,
                            piece,
                            corrupt,
                        },
                    );
                    self.start_upload(at);
                }
            }
            Ev::Piece {
                to,
                from,
                piece,
                corrupt,
            } => {
                let index: PieceIndex = self.layout.piece(piece).unwrap();
                let outcome = if corrupt {
                    PieceOutcome::Corrupt
                } else {
                    self.arrivals.push((to, piece));
                    PieceOutcome::Valid
                };
                self.nodes[to]
                    .torrent
                    .handle_piece(self.ids[from], index, outcome, now);
                self.drain(to);
            }
            Ev::Announce => {
                self.announce_all();
                self.schedule(now + Duration::from_secs(1), Ev::Announce);
            }
            Ev::Closed { to, from } => {
                self.nodes[to].queue.retain(|q| q.0 != from);
                self.nodes[to]
                    .torrent
                    .handle_disconnected(self.ids[from], now);
                self.drain(to);
            }
        }
    }

    /// Runs until every agent has finished, or the deadline passes.
    fn run(&mut self, limit: Duration) {
        let deadline = self.t0 + limit;
        loop {
            if self.nodes.iter().all(|n| n.torrent.is_complete()) {
                return;
            }
            let next_event = self.events.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.alive(i))
                .filter_map(|i| self.nodes[i].torrent.poll_timeout().map(|t| (t, i)))
                .min();
            let pick_timer = match (next_event, next_timer) {
                (None, None) => return,
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if pick_timer {
                let (t, i) = next_timer.unwrap();
                if t > deadline {
                    return;
                }
                self.now = self.now.max(t);
                let now = self.now;
                self.nodes[i].torrent.handle_timeout(now);
                self.drain(i);
            } else {
                let Reverse((t, _, key)) = self.events.pop().unwrap();
                if t > deadline {
                    return;
                }
                self.now = self.now.max(t);
                let ev = self.payloads.remove(&key).unwrap();
                self.handle(ev);
            }
        }
    }

    fn finished(&self, i: usize) -> Option<Duration> {
        self.nodes[i].done_at.map(|t| t - self.t0)
    }
}

fn full(pieces: u32) -> Bitfield {
    Bitfield::full(pieces)
}

fn empty(pieces: u32) -> Bitfield {
    Bitfield::empty(pieces)
}

const MB: f64 = (1 << 20) as f64;

#[test]
fn two_peers() {
    let mut sim = Sim::new(20);
    sim.add(
        Role::Origin,
        full(20),
        10.0 * MB,
        Behaviour::Honest,
        test_config(1),
    );
    let a = sim.add(
        Role::Agent,
        empty(20),
        10.0 * MB,
        Behaviour::Honest,
        test_config(2),
    );
    sim.start();
    sim.run(Duration::from_secs(60));
    let t = sim.finished(a).expect("agent finishes");
    // 20 pieces at 10 pieces/s from the only seeder: 2 s plus latencies.
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
    let stats = sim.nodes[a].torrent.stats();
    assert_eq!(stats.pieces_received, 20);
    assert_eq!(stats.duplicate_pieces, 0);
    assert!(sim.nodes[a].torrent.is_complete());
}

#[test]
fn a_streaming_reader_gets_its_next_pieces_first() {
    for seed in 0..5 {
        let mut sim = Sim::new(20);
        sim.add(
            Role::Origin,
            full(20),
            10.0 * MB,
            Behaviour::Honest,
            test_config(seed),
        );
        let a = sim.add(
            Role::Agent,
            empty(20),
            10.0 * MB,
            Behaviour::Honest,
            test_config(seed + 100),
        );
        // A client reads from piece 6 on (e.g. a ranged GET) before any peer is known.
        let now = sim.now;
        sim.nodes[a].torrent.handle_stream_position(Some(6), now);
        sim.start();
        sim.run(Duration::from_secs(60));
        assert!(sim.nodes[a].torrent.is_complete());
        let order: Vec<u32> = sim
            .arrivals
            .iter()
            .filter(|(n, _)| *n == a)
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(&order[..2], &[6, 7], "seed {seed}: {order:?}");
        assert_eq!(order.len(), 20, "no duplicates");
    }
}

#[test]
fn leechers_all_streaming_from_the_start_still_complete() {
    // Every agent serves a client reading from byte 0: all want pieces 0 and 1 first, which
    // the origin hands to one peer per 2 s. Refused requests must not starve them.
    let pieces = 32;
    let mut sim = Sim::new(pieces);
    sim.add(
        Role::Origin,
        full(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(0),
    );
    let leechers: Vec<usize> = (1..=12)
        .map(|i| {
            sim.add(
                Role::Agent,
                empty(pieces),
                10.0 * MB,
                Behaviour::Honest,
                test_config(i),
            )
        })
        .collect();
    let now = sim.now;
    for &l in &leechers {
        sim.nodes[l].torrent.handle_stream_position(Some(0), now);
    }
    sim.start();
    sim.run(Duration::from_secs(120));
    for &l in &leechers {
        let t = sim.finished(l).expect("every streaming leecher finishes");
        // 32 pieces at 10 pieces/s: 3.2 s at best for the last one.
        assert!(t < Duration::from_secs(12), "leecher {l} took {t:?}");
    }
    // After a refusal a peer is asked for nothing new for a moment (or until a piece from it
    // arrives): at most about one refusal per piece delivered, not a request storm (without
    // the back-off this run sees ~17 000).
    let delivered = u64::from(pieces) * leechers.len() as u64;
    assert!(sim.refusals <= delivered, "{} refusals", sim.refusals);
}

#[test]
fn one_seeder_many_leechers_share_the_load() {
    let pieces = 32;
    let mut sim = Sim::new(pieces);
    let origin = sim.add(
        Role::Origin,
        full(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(0),
    );
    let agents: Vec<usize> = (0..12)
        .map(|i| {
            sim.add(
                Role::Agent,
                empty(pieces),
                10.0 * MB,
                Behaviour::Honest,
                test_config(100 + i),
            )
        })
        .collect();
    sim.start();
    sim.run(Duration::from_secs(600));
    assert!(
        sim.refusals <= u64::from(pieces) * 12,
        "{} refusals",
        sim.refusals
    );
    for &a in &agents {
        assert!(sim.finished(a).is_some(), "agent {a} finished");
    }
    // The origin alone would need 12 × 32 uploads; swarming spreads them across agents.
    let origin_uploads = sim.nodes[origin].uploaded;
    assert!(
        origin_uploads < 12 * u64::from(pieces) / 2,
        "origin uploaded {origin_uploads}"
    );
    let slowest = agents
        .iter()
        .filter_map(|&a| sim.finished(a))
        .max()
        .unwrap();
    // Serving everyone from the origin would take 38.4 s.
    assert!(slowest < Duration::from_secs(20), "slowest {slowest:?}");
}

#[test]
fn peers_holding_different_pieces_complete_each_other() {
    let pieces = 16;
    let mut sim = Sim::new(pieces);
    let mut agents = Vec::new();
    for quarter in 0..4u32 {
        let mut have = empty(pieces);
        for p in quarter * 4..quarter * 4 + 4 {
            have.set(sim.layout.piece(p).unwrap());
        }
        agents.push(sim.add(
            Role::Agent,
            have,
            10.0 * MB,
            Behaviour::Honest,
            test_config(u64::from(quarter)),
        ));
    }
    sim.start();
    sim.run(Duration::from_secs(60));
    for &a in &agents {
        assert!(sim.nodes[a].torrent.is_complete(), "agent {a}");
    }
}

#[test]
fn slow_peer_is_worked_around() {
    let pieces = 24;
    let mut sim = Sim::new(pieces);
    sim.add(
        Role::Origin,
        full(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(0),
    );
    let slow = sim.add(
        Role::Origin,
        full(pieces),
        0.05 * MB,
        Behaviour::Honest,
        test_config(1),
    );
    let a = sim.add(
        Role::Agent,
        empty(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(2),
    );
    sim.start();
    sim.run(Duration::from_secs(120));
    let t = sim.finished(a).expect("finishes despite the slow peer");
    // The fast origin alone needs 2.4 s; the slow one would need 20 s per piece.
    assert!(t < Duration::from_secs(6), "{t:?}");
    // The slow peer delivered at most the piece it was working on; the rest went elsewhere.
    assert!(
        sim.nodes[slow].uploaded <= 1,
        "{}",
        sim.nodes[slow].uploaded
    );
}

#[test]
fn vanished_peer_is_dropped_and_download_completes() {
    let pieces = 64; // long enough (12.8 s from the live seeder) for three stalls of 3 s
    let mut sim = Sim::new(pieces);
    let gone = sim.add(
        Role::Origin,
        full(pieces),
        10.0 * MB,
        Behaviour::VanishesAfter(Duration::from_millis(300)),
        test_config(0),
    );
    sim.add(
        Role::Origin,
        full(pieces),
        5.0 * MB,
        Behaviour::Honest,
        test_config(1),
    );
    let a = sim.add(
        Role::Agent,
        empty(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(2),
    );
    sim.start();
    sim.run(Duration::from_secs(120));
    assert!(sim.finished(a).is_some());
    assert!(
        sim.nodes[a]
            .disconnects
            .contains(&(sim.ids[gone], DisconnectReason::TooSlow)),
        "{:?}",
        sim.nodes[a].disconnects
    );
}

#[test]
fn corrupt_peer_is_dropped_and_blacklisted() {
    let pieces = 24;
    let mut sim = Sim::new(pieces);
    let liar = sim.add(
        Role::Origin,
        full(pieces),
        20.0 * MB,
        Behaviour::Corrupt,
        test_config(0),
    );
    sim.add(
        Role::Origin,
        full(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(1),
    );
    let a = sim.add(
        Role::Agent,
        empty(pieces),
        10.0 * MB,
        Behaviour::Honest,
        test_config(2),
    );
    sim.start();
    sim.run(Duration::from_secs(60));
    assert!(sim.finished(a).is_some());
    let stats = sim.nodes[a].torrent.stats();
    assert_eq!(stats.corrupt_pieces, 1, "dropped at the first bad piece");
    assert_eq!(stats.pieces_received, u64::from(pieces));
    assert!(
        sim.nodes[a]
            .disconnects
            .contains(&(sim.ids[liar], DisconnectReason::BadPiece))
    );
    let now = sim.now;
    assert!(sim.nodes[a].torrent.is_blacklisted(&sim.ids[liar], now));
    // A blacklisted peer cannot reconnect.
    let refused = sim.nodes[a]
        .torrent
        .handle_connected(sim.ids[liar], full(pieces), true, now);
    assert!(refused.is_err());
}

#[test]
fn endgame_requests_duplicates_and_cancels_them() {
    let layout = PieceLayout::new(2 * u64::from(PIECE), PIECE).unwrap();
    let now = Instant::now();
    let mut t = Torrent::new(
        layout,
        Bitfield::empty(2),
        id(0),
        Role::Agent,
        test_config(3),
    );
    t.handle_connected(id(1), Bitfield::full(2), true, now)
        .unwrap();
    t.handle_connected(id(2), Bitfield::full(2), true, now)
        .unwrap();
    let actions: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    let requests = |peer: PeerId| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Request { peer: p, .. } if *p == peer))
            .count()
    };
    // Two pieces ≤ the endgame threshold: both peers are asked for both.
    assert_eq!(requests(id(1)), 2);
    assert_eq!(requests(id(2)), 2);
    let p0 = layout.piece(0).unwrap();
    t.handle_piece(
        id(1),
        p0,
        PieceOutcome::Valid,
        now + Duration::from_millis(10),
    );
    let after: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    assert!(
        after.contains(&Action::Cancel {
            peer: id(2),
            piece: p0
        }),
        "{after:?}"
    );
    // The duplicate arriving anyway is harmless.
    t.handle_piece(
        id(2),
        p0,
        PieceOutcome::Valid,
        now + Duration::from_millis(11),
    );
    assert_eq!(t.stats().duplicate_pieces, 1);
    let p1 = layout.piece(1).unwrap();
    t.handle_piece(
        id(2),
        p1,
        PieceOutcome::Valid,
        now + Duration::from_millis(12),
    );
    let last: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    assert!(last.contains(&Action::Finished));
    assert!(last.contains(&Action::Cancel {
        peer: id(1),
        piece: p1
    }));
    assert!(t.is_complete());
}

#[test]
fn refusals_and_protocol_violations() {
    let layout = PieceLayout::new(4 * u64::from(PIECE), PIECE).unwrap();
    let now = Instant::now();
    let config = EngineConfig {
        max_connections: 2,
        ..test_config(4)
    };
    let mut t = Torrent::new(layout, Bitfield::empty(4), id(0), Role::Agent, config);
    assert_eq!(
        t.handle_connected(id(0), Bitfield::empty(4), false, now),
        Err(Refusal::SelfConnection)
    );
    assert_eq!(
        t.handle_connected(id(1), Bitfield::empty(5), false, now),
        Err(Refusal::BadBitfield)
    );
    t.handle_connected(id(1), Bitfield::empty(4), false, now)
        .unwrap();
    assert_eq!(
        t.handle_connected(id(1), Bitfield::empty(4), false, now),
        Err(Refusal::AlreadyConnected)
    );
    t.handle_connected(id(2), Bitfield::empty(4), false, now)
        .unwrap();
    assert_eq!(
        t.handle_connected(id(3), Bitfield::empty(4), false, now),
        Err(Refusal::TooManyConnections)
    );
    // A HAVE for a piece that does not exist is a protocol violation.
    t.handle_have(id(1), 99, now);
    let actions: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    assert!(actions.contains(&Action::Disconnect {
        peer: id(1),
        reason: DisconnectReason::Protocol
    }));
    assert!(t.is_blacklisted(&id(1), now));
    assert_eq!(
        t.handle_connected(id(1), Bitfield::empty(4), false, now),
        Err(Refusal::Blacklisted)
    );
    // Complete on both sides: nothing to exchange.
    let mut seeder = Torrent::new(
        layout,
        Bitfield::full(4),
        id(9),
        Role::Origin,
        test_config(5),
    );
    assert_eq!(
        seeder.handle_connected(id(1), Bitfield::full(4), false, now),
        Err(Refusal::BothComplete)
    );
    // Origins never dial.
    seeder.handle_peers(
        [PeerInfo {
            peer_id: id(1),
            addr: addr(1),
            is_origin: false,
        }],
        now,
    );
    assert_eq!(seeder.poll_action(), None);
}

#[test]
fn same_seed_same_run() {
    let run = |seed: u64| {
        let pieces = 16;
        let mut sim = Sim::new(pieces);
        sim.add(
            Role::Origin,
            full(pieces),
            10.0 * MB,
            Behaviour::Honest,
            test_config(seed),
        );
        let agents: Vec<usize> = (0..6)
            .map(|i| {
                sim.add(
                    Role::Agent,
                    empty(pieces),
                    8.0 * MB,
                    Behaviour::Honest,
                    test_config(seed * 10 + i),
                )
            })
            .collect();
        sim.start();
        sim.run(Duration::from_secs(120));
        agents
            .iter()
            .map(|&a| sim.finished(a).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
}
