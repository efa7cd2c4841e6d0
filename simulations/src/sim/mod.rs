//! The event loop: the real engine ([`shoal_engine::Torrent`]) for every host and blob, fed
//! messages over a modelled network, with the real origin refusal policy and tracker handout.
//!
//! ## Network model
//! Data moves at piece granularity. Each host's uplink sends one piece at a time, first come
//! first served, at its upload cap; each host's downlink is a reservation clock at its download
//! cap. A piece that starts uploading at `t` arrives at
//! `max(t + len/up, max(t, downlink free) + len/down) + latency`, and the downlink is then
//! reserved until that instant. So no host ever sends faster than its upload cap or receives
//! faster than its download cap, and a receiver shared by many senders slows them all down.
//! Requests enter the uplink as on the agent ([`uplink`]): a few per peer at a time, the rest
//! waiting in order behind them.
//! Control messages (requests, HAVEs, cancels) take the one-way latency and no bandwidth.
//! Dials take a round trip; a failed host stops answering, and its peers see the connection
//! close after the transport's idle timeout (or give up on it earlier through the engine's
//! request timeouts, as the real agent does).

mod actions;
mod outcome;
mod uplink;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use shoal_core::{Bitfield, PeerId};
use shoal_engine::seeding::{DEFAULT_WINDOW, SeedLedger};
use shoal_engine::{ConnectFailure, PeerInfo, PieceOutcome, Role, Torrent};

use crate::report::{Outcome, Progress};
use crate::scenario::{Scenario, ScenarioError};
use crate::tracker::Swarm;
use crate::world::{self, BlobSpec, HostSpec, Nanos, nanos};

/// How long a dial to a host that does not answer takes to fail (the transport's connect
/// timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Ev {
    Join(u32),
    Fail(u32),
    Announce {
        host: u32,
        blob: u32,
    },
    TrackerSweep,
    Timer {
        host: u32,
        blob: u32,
    },
    /// A dial from `from` reaches `to`.
    Dial {
        to: u32,
        from: u32,
        blob: u32,
    },
    /// The answer to `to`'s dial of `from`.
    DialAnswer {
        to: u32,
        from: u32,
        blob: u32,
        failure: Option<ConnectFailure>,
    },
    /// `from` has `piece`: told to every host of batch `batch` (one event for a piece's
    /// HAVEs to all neighbours at the same distance, which are most of the events).
    Haves {
        batch: u32,
        from: u32,
        blob: u32,
        piece: u32,
    },
    Complete {
        to: u32,
        from: u32,
        blob: u32,
    },
    Request {
        to: u32,
        from: u32,
        blob: u32,
        piece: u32,
    },
    Cancel {
        to: u32,
        from: u32,
        blob: u32,
        piece: u32,
    },
    Refused {
        to: u32,
        from: u32,
        blob: u32,
        piece: u32,
    },
    Closed {
        to: u32,
        from: u32,
        blob: u32,
    },
    /// `host`'s uplink finished sending `piece` to `to`; it lands at `arrival`.
    UploadDone {
        host: u32,
        to: u32,
        blob: u32,
        piece: u32,
        arrival: Nanos,
    },
    Piece {
        to: u32,
        from: u32,
        blob: u32,
        piece: u32,
    },
}

/// A queue entry, ordered by time then insertion.
struct Entry {
    at: Nanos,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Slot {
    torrent: Torrent,
    ledger: Option<SeedLedger>,
    /// The earliest timer event queued for this torrent.
    timer_at: Option<Nanos>,
    /// The piece a streaming reader waits for (`hosts.streaming`); `None` without one.
    stream: Option<u32>,
}

struct Upload {
    to: u32,
    blob: u32,
    piece: u32,
}

struct Host {
    spec: HostSpec,
    alive: bool,
    slots: Vec<Option<Slot>>,
    uplink: VecDeque<Upload>,
    /// Requests taken on per requesting peer, and those waiting behind them.
    per_peer: uplink::PerPeer,
    up_busy: bool,
    downlink_free: Nanos,
    uploaded: u64,
    received: u64,
    duplicates: u64,
    blobs_left: usize,
    done_at: Option<Nanos>,
}

/// A simulation in progress.
pub struct Sim {
    scenario: Scenario,
    t0: Instant,
    now: Nanos,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    hosts: Vec<Host>,
    blobs: Vec<BlobSpec>,
    swarms: Vec<Swarm>,
    rng: StdRng,
    latency: [Nanos; 3],
    /// Agents still expected to finish (joined or not, not failed, not done).
    pending: usize,
    progress: Progress,
    events: u64,
    refusals: u64,
    /// The shortest delay after `now` of any deadline an engine input creates (the refusal
    /// backoff, the avoid window after a refusal, the request timeout): see [`Sim::arm`].
    /// Deadlines derived from older instants (a connection idle since long ago, a blacklist
    /// entry that matters again once new candidates arrive) may be served up to this late,
    /// which those coarse timers (60 s, 10 s) do not notice.
    arm_guard: Nanos,
    /// Recipients of HAVE batches, and the free batch slots.
    batches: Vec<Vec<u32>>,
    free_batches: Vec<u32>,
}

fn peer_id(host: u32) -> PeerId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(u64::from(host) + 1).to_be_bytes());
    PeerId::from_bytes(b)
}

fn host_of(peer: &PeerId) -> u32 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&peer.as_bytes()[..8]);
    u32::try_from(u64::from_be_bytes(b).saturating_sub(1)).unwrap_or(u32::MAX)
}

fn addr(host: u32) -> SocketAddr {
    let [_, a, b, c] = host.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), 7000))
}

impl Sim {
    /// Sets up the scenario's cluster at time zero.
    pub fn new(scenario: &Scenario) -> Result<Self, ScenarioError> {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let (specs, blobs) = world::build(scenario, &mut rng)?;
        let t = &scenario.topology;
        let mut sim = Self {
            t0: Instant::now(),
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            hosts: Vec::with_capacity(specs.len()),
            swarms: blobs.iter().map(|_| Swarm::default()).collect(),
            rng,
            latency: [
                nanos(t.rack_latency),
                nanos(t.zone_latency),
                nanos(t.cross_zone_latency),
            ],
            pending: scenario.hosts.count,
            progress: Progress::default(),
            events: 0,
            refusals: 0,
            batches: Vec::new(),
            free_batches: Vec::new(),
            arm_guard: {
                let c = scenario.engine.config(0);
                nanos(
                    c.refusal_backoff
                        .min(c.request_timeout_min / 5)
                        .min(c.request_timeout_min)
                        .min(c.busy_retry),
                )
            },
            blobs,
            scenario: scenario.clone(),
        };
        let window = scenario
            .engine
            .origin_refusal_window
            .unwrap_or(DEFAULT_WINDOW);
        for (i, spec) in specs.into_iter().enumerate() {
            let h = i as u32;
            let mut slots: Vec<Option<Slot>> = sim.blobs.iter().map(|_| None).collect();
            if spec.origin {
                for (b, blob) in sim.blobs.iter().enumerate() {
                    if blob.owners.contains(&h) {
                        let n = blob.layout.piece_count();
                        slots[b] = Some(Slot {
                            torrent: Torrent::new(
                                blob.layout,
                                Bitfield::full(n),
                                peer_id(h),
                                Role::Origin,
                                sim.scenario.engine.config(seed_of(scenario.seed, h, b)),
                            ),
                            ledger: Some(SeedLedger::new(n, window)),
                            timer_at: None,
                            stream: None,
                        });
                        sim.swarms[b].announce(h, true, true, 0);
                    }
                }
            } else {
                sim.schedule(spec.join_at, Ev::Join(h));
                if let Some(at) = spec.fail_at {
                    sim.schedule(at, Ev::Fail(h));
                }
            }
            sim.hosts.push(Host {
                alive: spec.origin,
                spec,
                slots,
                uplink: VecDeque::new(),
                per_peer: uplink::PerPeer::new(
                    scenario
                        .engine
                        .serve_per_peer
                        .unwrap_or(shoal_engine::seeding::SERVE_PER_PEER),
                ),
                up_busy: false,
                downlink_free: 0,
                uploaded: 0,
                received: 0,
                duplicates: 0,
                blobs_left: sim.blobs.len(),
                done_at: None,
            });
        }
        let interval = nanos(scenario.tracker.announce_interval);
        sim.schedule(interval, Ev::TrackerSweep);
        Ok(sim)
    }

    fn schedule(&mut self, at: Nanos, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn instant(&self, t: Nanos) -> Instant {
        self.t0 + Duration::from_nanos(t)
    }

    fn lat(&self, a: u32, b: u32) -> Nanos {
        let (a, b) = (&self.hosts[a as usize].spec, &self.hosts[b as usize].spec);
        if a.zone != b.zone {
            self.latency[2]
        } else if a.rack != b.rack {
            self.latency[1]
        } else {
            self.latency[0]
        }
    }

    /// Sends a control message from `from` to `to`.
    fn send(&mut self, from: u32, to: u32, ev: Ev) {
        let at = self.now + self.lat(from, to);
        self.schedule(at, ev);
    }

    fn alive(&self, h: u32) -> bool {
        self.hosts[h as usize].alive
    }

    fn slot(&mut self, h: u32, b: u32) -> Option<&mut Slot> {
        self.hosts[h as usize].slots[b as usize].as_mut()
    }

    /// Runs to the end: every agent finished or failed, or the time limit.
    pub fn run(mut self) -> Outcome {
        let limit = nanos(self.scenario.time_limit);
        while self.pending > 0 {
            let Some(Reverse(entry)) = self.queue.pop() else {
                break;
            };
            if entry.at > limit {
                break;
            }
            self.now = entry.at;
            self.events += 1;
            self.handle(entry.ev);
        }
        self.outcome()
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.instant(self.now);
        match ev {
            Ev::Join(h) => self.join(h),
            Ev::Fail(h) => self.fail(h),
            Ev::Announce { host, blob } => self.announce(host, blob),
            Ev::TrackerSweep => {
                let interval = nanos(self.scenario.tracker.announce_interval);
                let cutoff = self.now.saturating_sub(3 * interval);
                for s in &mut self.swarms {
                    s.expire(cutoff);
                }
                self.schedule(self.now + interval, Ev::TrackerSweep);
            }
            Ev::Timer { host, blob } => self.timer(host, blob),
            Ev::Dial { to, from, blob } => self.dial_arrives(to, from, blob),
            Ev::DialAnswer {
                to,
                from,
                blob,
                failure,
            } => {
                if !self.alive(to) {
                    return;
                }
                let theirs = self.bitfield(from, blob);
                let is_origin = self.hosts[from as usize].spec.origin;
                let Some(slot) = self.slot(to, blob) else {
                    return;
                };
                match failure {
                    Some(f) => slot.torrent.handle_connect_failed(peer_id(from), f, now),
                    None => {
                        let theirs = theirs.unwrap_or_else(|| Bitfield::empty(0));
                        if slot
                            .torrent
                            .handle_connected(peer_id(from), theirs, is_origin, now)
                            .is_err()
                        {
                            self.send(
                                to,
                                from,
                                Ev::Closed {
                                    to: from,
                                    from: to,
                                    blob,
                                },
                            );
                        }
                    }
                }
                self.drain(to, blob);
            }
            Ev::Haves {
                batch,
                from,
                blob,
                piece,
            } => {
                let recipients = std::mem::take(&mut self.batches[batch as usize]);
                for &to in &recipients {
                    if let Some(slot) = self.live_slot(to, blob) {
                        slot.torrent.handle_have(peer_id(from), piece, now);
                        self.drain(to, blob);
                    }
                }
                let mut recipients = recipients;
                recipients.clear();
                self.batches[batch as usize] = recipients;
                self.free_batches.push(batch);
            }
            Ev::Complete { to, from, blob } => {
                if let Some(slot) = self.live_slot(to, blob) {
                    slot.torrent.handle_complete(peer_id(from), now);
                    self.drain(to, blob);
                }
            }
            Ev::Request {
                to,
                from,
                blob,
                piece,
            } => self.request_arrives(to, from, blob, piece),
            Ev::Cancel {
                to,
                from,
                blob,
                piece,
            } => {
                let host = &mut self.hosts[to as usize];
                if let Some(pos) = host
                    .uplink
                    .iter()
                    .position(|u| u.to == from && u.blob == blob && u.piece == piece)
                {
                    host.uplink.remove(pos);
                    host.per_peer.release(from, blob);
                    self.take_parked(to, from, blob);
                } else {
                    host.per_peer.cancel_parked(from, blob, piece);
                }
            }
            Ev::Refused {
                to,
                from,
                blob,
                piece,
            } => {
                let layout = self.blobs[blob as usize].layout;
                if let (Some(index), Some(slot)) = (layout.piece(piece), self.live_slot(to, blob)) {
                    slot.torrent
                        .handle_request_failed(peer_id(from), index, now);
                    self.drain(to, blob);
                }
            }
            Ev::Closed { to, from, blob } => {
                if !self.alive(to) {
                    return;
                }
                let host = &mut self.hosts[to as usize];
                host.uplink.retain(|u| !(u.to == from && u.blob == blob));
                host.per_peer.forget(from, blob);
                if let Some(slot) = self.slot(to, blob) {
                    slot.torrent.handle_disconnected(peer_id(from), now);
                    self.drain(to, blob);
                }
            }
            Ev::UploadDone {
                host,
                to,
                blob,
                piece,
                arrival,
            } => {
                let h = &mut self.hosts[host as usize];
                h.up_busy = false;
                if !h.alive {
                    return;
                }
                h.uploaded += u64::from(piece_len(&self.blobs[blob as usize], piece));
                if let Some(slot) = self.slot(host, blob) {
                    slot.torrent.handle_served(peer_id(to), now);
                }
                self.hosts[host as usize].per_peer.release(to, blob);
                self.take_parked(host, to, blob);
                self.schedule(
                    arrival,
                    Ev::Piece {
                        to,
                        from: host,
                        blob,
                        piece,
                    },
                );
                self.start_upload(host);
            }
            Ev::Piece {
                to,
                from,
                blob,
                piece,
            } => self.piece_arrives(to, from, blob, piece),
        }
    }

    /// The slot of a live host.
    fn live_slot(&mut self, h: u32, b: u32) -> Option<&mut Slot> {
        if self.alive(h) { self.slot(h, b) } else { None }
    }

    fn bitfield(&self, h: u32, b: u32) -> Option<Bitfield> {
        self.hosts[h as usize].slots[b as usize]
            .as_ref()
            .map(|s| s.torrent.have().clone())
    }

    fn join(&mut self, h: u32) {
        let host = &mut self.hosts[h as usize];
        if host.spec.fail_at.is_some_and(|t| t <= self.now) {
            return;
        }
        host.alive = true;
        let seed = self.scenario.seed;
        let streaming = self.scenario.hosts.streaming;
        let now = self.instant(self.now);
        for b in 0..self.blobs.len() {
            let layout = self.blobs[b].layout;
            let config = self.scenario.engine.config(seed_of(seed, h, b));
            let mut torrent = Torrent::new(
                layout,
                Bitfield::empty(layout.piece_count()),
                peer_id(h),
                Role::Agent,
                config,
            );
            let stream = streaming.then_some(0);
            if stream.is_some() {
                torrent.handle_stream_position(stream, now);
            }
            self.hosts[h as usize].slots[b] = Some(Slot {
                torrent,
                ledger: None,
                timer_at: None,
                stream,
            });
            self.announce(h, b as u32);
        }
    }

    fn fail(&mut self, h: u32) {
        let detect = nanos(self.scenario.churn.detect_after);
        let host = &mut self.hosts[h as usize];
        let was_alive = host.alive;
        host.alive = false;
        host.uplink.clear();
        host.per_peer.clear();
        if host.done_at.is_none() {
            // Failed before finishing: no longer expected to finish.
            self.pending -= 1;
        }
        if !was_alive {
            return;
        }
        let mut closes = Vec::new();
        for (b, slot) in self.hosts[h as usize].slots.iter().enumerate() {
            if let Some(slot) = slot {
                for p in slot.torrent.connected() {
                    closes.push((host_of(p), b as u32));
                }
            }
        }
        for (p, b) in closes {
            self.schedule(
                self.now + detect,
                Ev::Closed {
                    to: p,
                    from: h,
                    blob: b,
                },
            );
        }
    }

    fn announce(&mut self, h: u32, b: u32) {
        if !self.alive(h) {
            return;
        }
        let complete = self.bitfield_complete(h, b);
        self.swarms[b as usize].announce(h, false, complete, self.now);
        let peers =
            self.swarms[b as usize].handout(h, self.scenario.tracker.max_peers, &mut self.rng);
        let infos: Vec<PeerInfo> = peers
            .into_iter()
            .map(|p| PeerInfo {
                peer_id: peer_id(p),
                addr: addr(p),
                is_origin: self.hosts[p as usize].spec.origin,
            })
            .collect();
        let now = self.instant(self.now);
        if let Some(slot) = self.slot(h, b)
            && !infos.is_empty()
        {
            slot.torrent.handle_peers(infos, now);
        }
        self.drain(h, b);
        let next = self.now + nanos(self.scenario.tracker.announce_interval);
        self.schedule(next, Ev::Announce { host: h, blob: b });
    }

    fn bitfield_complete(&self, h: u32, b: u32) -> bool {
        self.hosts[h as usize].slots[b as usize]
            .as_ref()
            .is_some_and(|s| s.torrent.is_complete())
    }

    fn timer(&mut self, h: u32, b: u32) {
        let now_ns = self.now;
        let now = self.instant(now_ns);
        let alive = self.alive(h);
        let Some(slot) = self.slot(h, b) else {
            return;
        };
        if slot.timer_at != Some(now_ns) {
            return; // superseded by an earlier one
        }
        slot.timer_at = None;
        if !alive {
            return;
        }
        if slot.torrent.poll_timeout().is_some_and(|t| t <= now) {
            slot.torrent.handle_timeout(now);
        }
        self.drain(h, b);
    }

    fn dial_arrives(&mut self, to: u32, from: u32, blob: u32) {
        let now = self.instant(self.now);
        let back = self.lat(to, from);
        if !self.alive(to) {
            let at = self.now + nanos(CONNECT_TIMEOUT).saturating_sub(back);
            let failure = Some(ConnectFailure::Unreachable);
            self.schedule(
                at,
                Ev::DialAnswer {
                    to: from,
                    from: to,
                    blob,
                    failure,
                },
            );
            return;
        }
        let theirs = self.bitfield(from, blob);
        let failure = match (self.slot(to, blob), theirs) {
            (Some(slot), Some(bits)) => slot
                .torrent
                .handle_connected(peer_id(from), bits, false, now)
                .err()
                .map(|_| ConnectFailure::Busy),
            _ => Some(ConnectFailure::Handshake),
        };
        self.send(
            to,
            from,
            Ev::DialAnswer {
                to: from,
                from: to,
                blob,
                failure,
            },
        );
        self.drain(to, blob);
    }

    fn piece_arrives(&mut self, to: u32, from: u32, blob: u32, piece: u32) {
        let now = self.instant(self.now);
        let layout = self.blobs[blob as usize].layout;
        let Some(index) = layout.piece(piece) else {
            return;
        };
        let Some(slot) = self.live_slot(to, blob) else {
            return;
        };
        let before = slot.torrent.stats().duplicate_pieces;
        slot.torrent
            .handle_piece(peer_id(from), index, PieceOutcome::Valid, now);
        let duplicate = slot.torrent.stats().duplicate_pieces > before;
        // The (instant) reader reads on to the next missing piece and says where it waits.
        if let Some(pos) = slot.stream {
            let count = layout.piece_count();
            let mut next = pos;
            while next < count && slot.torrent.have().has_index(next) {
                next += 1;
            }
            if next != pos {
                slot.stream = (next < count).then_some(next);
                slot.torrent.handle_stream_position(slot.stream, now);
            }
        }
        let len = u64::from(layout.len_of(index));
        let host = &mut self.hosts[to as usize];
        host.received += len;
        if duplicate {
            host.duplicates += len;
        } else {
            self.progress.bytes(self.now, len);
        }
        self.drain(to, blob);
    }
}

fn piece_len(blob: &BlobSpec, piece: u32) -> u32 {
    blob.layout
        .piece(piece)
        .map_or(0, |p| blob.layout.len_of(p))
}

fn secs(s: f64) -> Nanos {
    (s * 1e9).ceil() as Nanos
}

/// Each engine's own random stream, reproducible from the scenario seed.
fn seed_of(seed: u64, host: u32, blob: usize) -> u64 {
    seed ^ (u64::from(host) << 20) ^ (blob as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
