//! The engine in a deterministic simulated swarm with a virtual clock: transfers take
//! `piece length ÷ uploader rate` (one upload at a time per peer, FIFO), messages take a fixed
//! latency. Peers can be slow, vanish, or send corrupt pieces.

#![allow(clippy::unwrap_used)]

mod simnet;

use std::time::{Duration, Instant};

use shoal_core::{Bitfield, PeerId, PieceLayout};
use shoal_engine::{
    Action, DisconnectReason, EngineConfig, PeerInfo, PieceOutcome, Refusal, Role, Torrent,
};
use simnet::*;

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
            EngineConfig {
                stream_window: 3,
                ..test_config(seed + 100)
            },
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
        assert_eq!(&order[..3], &[6, 7, 8], "seed {seed}: {order:?}");
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
    // 32 pieces of which we have all but 0 and 1 (endgame covers at most a sixteenth of a
    // torrent: 2 pieces here).
    let layout = PieceLayout::new(32 * u64::from(PIECE), PIECE).unwrap();
    let now = Instant::now();
    let mut have = Bitfield::empty(32);
    for p in layout.pieces().skip(2) {
        have.set(p);
    }
    let mut t = Torrent::new(layout, have, id(0), Role::Agent, test_config(3));
    t.handle_connected(id(1), Bitfield::full(32), true, now)
        .unwrap();
    t.handle_connected(id(2), Bitfield::full(32), true, now)
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

#[test]
fn a_stall_hands_every_stuck_request_to_others_and_puts_the_peer_on_probation() {
    let layout = PieceLayout::new(8 * u64::from(PIECE), PIECE).unwrap();
    let t0 = Instant::now();
    let mut t = Torrent::new(layout, empty(8), id(0), Role::Agent, test_config(5));
    t.handle_connected(id(1), full(8), false, t0).unwrap();
    let pieces = |actions: &[Action], cancels: bool, to: Option<PeerId>| -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match *a {
                Action::Request { peer, piece } if !cancels && to.is_none_or(|p| p == peer) => {
                    Some(piece.get())
                }
                Action::Cancel { piece, .. } if cancels => Some(piece.get()),
                _ => None,
            })
            .collect()
    };
    let actions: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    let first = pieces(&actions, false, None);
    assert_eq!(first.len(), 2, "two requests before a rate is known");
    // Nothing arrives for the request timeout (3 s in the test config).
    let later = t0 + Duration::from_secs(4);
    assert!(t.poll_timeout().is_some_and(|d| d <= later));
    t.handle_timeout(later);
    let actions: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    let cancelled = pieces(&actions, true, None);
    assert_eq!(
        cancelled.len(),
        2,
        "every stuck request, not just the oldest: {actions:?}"
    );
    let retried = pieces(&actions, false, None);
    assert_eq!(
        retried.len(),
        1,
        "one request at a time on probation: {actions:?}"
    );
    assert!(
        !first.contains(&retried[0]),
        "not a piece that just stalled there"
    );
    // Another peer gets the stuck pieces.
    t.handle_connected(id(2), full(8), false, later).unwrap();
    let actions: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
    let to_other = pieces(&actions, false, Some(id(2)));
    assert!(!to_other.is_empty());
}

/// A tracker answer naming the agents with these ids.
fn answer(ids: std::ops::RangeInclusive<usize>) -> Vec<PeerInfo> {
    ids.map(|i| PeerInfo {
        peer_id: id(i),
        addr: addr(i),
        is_origin: false,
    })
    .collect()
}

#[test]
fn half_the_connections_are_kept_for_peers_that_dial_us() {
    let layout = PieceLayout::new(8 * u64::from(PIECE), PIECE).unwrap();
    let now = Instant::now();
    let config = test_config(9);
    let mut t = Torrent::new(layout, empty(8), id(0), Role::Agent, config.clone());
    t.handle_peers(answer(1..=20), now);
    let dials = std::iter::from_fn(|| t.poll_action())
        .filter(|a| matches!(a, Action::Connect { .. }))
        .count();
    assert_eq!(dials, config.max_outbound, "dials only its outbound share");
    // Peers that dial us fill the rest, up to the connection limit.
    let mut accepted = 0;
    for i in 21..40 {
        if t.handle_connected(id(i), empty(8), false, now).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, config.max_connections - config.max_outbound);
}

#[test]
fn after_the_start_an_agent_dials_until_the_inbound_reserve_is_left() {
    let layout = PieceLayout::new(8 * u64::from(PIECE), PIECE).unwrap();
    let now = Instant::now();
    let config = test_config(9);
    assert!(config.max_outbound + config.inbound_reserve < config.max_connections);
    let mut t = Torrent::new(layout, empty(8), id(0), Role::Agent, config.clone());
    let answer = answer(1..=30);
    let dials = |t: &mut Torrent| {
        std::iter::from_fn(|| t.poll_action())
            .filter_map(|a| match a {
                Action::Connect { peer, .. } => Some(peer),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The first answer: the outbound share, so that peers starting together leave each
    // other room.
    t.handle_peers(answer.clone(), now);
    let first = dials(&mut t);
    assert_eq!(first.len(), config.max_outbound);
    for p in &first {
        t.handle_connected(*p, empty(8), false, now).unwrap();
    }
    // Few peers dialled us meanwhile; the next answer tops the connections up, short of
    // the inbound reserve.
    t.handle_connected(id(40), empty(8), false, now).unwrap();
    t.handle_peers(answer, now);
    let top_up = dials(&mut t);
    assert_eq!(
        first.len() + 1 + top_up.len(),
        config.max_connections - config.inbound_reserve
    );
    assert!(top_up.iter().all(|p| !first.contains(p)));
    for p in &top_up {
        t.handle_connected(*p, empty(8), false, now).unwrap();
    }
    // The reserve still takes peers that dial us, up to the limit.
    let accepted = (41..60)
        .filter(|i| t.handle_connected(id(*i), empty(8), false, now).is_ok())
        .count();
    assert_eq!(accepted, config.inbound_reserve);
}
