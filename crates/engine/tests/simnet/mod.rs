//! The simulated swarm the engine tests run in: a virtual clock, per-peer FIFO uploads at a
//! fixed rate, a fixed message latency, origins that refuse a piece they just sent elsewhere,
//! and peers that are slow, vanish or lie.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_core::{Bitfield, PeerId, PieceIndex, PieceLayout};
use shoal_engine::seeding::SeedLedger;
use shoal_engine::{
    Action, ConnectFailure, DisconnectReason, EngineConfig, PeerInfo, PieceOutcome, Role, Torrent,
};

pub const LATENCY: Duration = Duration::from_millis(1);
pub const PIECE: u32 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    Honest,
    /// Sends pieces whose content fails verification.
    Corrupt,
    /// Stops answering anything after this long, without closing connections.
    VanishesAfter(Duration),
}

pub struct Node {
    pub torrent: Torrent,
    pub rate: f64,
    pub behaviour: Behaviour,
    pub queue: VecDeque<(usize, u32)>,
    pub busy: bool,
    pub done_at: Option<Instant>,
    pub uploaded: u64,
    pub disconnects: Vec<(PeerId, DisconnectReason)>,
    pub cancels: u64,
    /// Origins refuse a piece they sent to another peer just now, as the real driver does.
    pub ledger: Option<SeedLedger>,
}

#[derive(Debug)]
pub enum Ev {
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

pub struct Sim {
    t0: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub ids: Vec<PeerId>,
    pub events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pub payloads: BTreeMap<usize, Ev>,
    pub seq: u64,
    pub layout: PieceLayout,
    /// (node, piece) in the order valid pieces arrived.
    pub arrivals: Vec<(usize, u32)>,
    /// Requests origins refused.
    pub refusals: u64,
}

pub fn id(i: usize) -> PeerId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    PeerId::from_bytes(b)
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 10_000 + i as u16))
}

pub fn test_config(seed: u64) -> EngineConfig {
    EngineConfig {
        request_timeout_min: Duration::from_secs(3),
        busy_retry: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(600),
        seed,
        ..EngineConfig::default()
    }
}

impl Sim {
    pub fn new(pieces: u32) -> Self {
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

    pub fn add(
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

    pub fn index(&self, peer: &PeerId) -> usize {
        self.ids.iter().position(|p| p == peer).unwrap()
    }

    pub fn alive(&self, i: usize) -> bool {
        match self.nodes[i].behaviour {
            Behaviour::VanishesAfter(d) => self.now < self.t0 + d,
            _ => true,
        }
    }

    pub fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        let key = self.seq as usize;
        self.payloads.insert(key, ev);
        self.events.push(Reverse((at, self.seq, key)));
    }

    /// Starts periodic announces.
    pub fn start(&mut self) {
        self.announce_all();
        let at = self.now + Duration::from_secs(1);
        self.schedule(at, Ev::Announce);
    }

    /// Hands every agent the other peers (as a tracker would).
    pub fn announce_all(&mut self) {
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

    pub fn drain(&mut self, i: usize) {
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

    pub fn start_upload(&mut self, i: usize) {
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

    pub fn handle(&mut self, ev: Ev) {
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
    pub fn run(&mut self, limit: Duration) {
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

    pub fn finished(&self, i: usize) -> Option<Duration> {
        self.nodes[i].done_at.map(|t| t - self.t0)
    }
}

pub fn full(pieces: u32) -> Bitfield {
    Bitfield::full(pieces)
}

pub fn empty(pieces: u32) -> Bitfield {
    Bitfield::empty(pieces)
}

pub const MB: f64 = (1 << 20) as f64;
