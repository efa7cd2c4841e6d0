//! The tracker's peer handout: which peers an announcing peer is told about.
//!
//! The tracker answers every announce with at most `limit` other peers of the same torrent,
//! chosen by [`handout`] in three priority classes:
//!
//! 1. **Seeders**: agents that have the whole blob ([`PeerEntry::complete`], not an origin).
//!    They can serve any piece, and they are the capacity that grows with the swarm, so they go
//!    first.
//! 2. **Origins** ([`PeerEntry::is_origin`]). An origin always has the blob, but it is the one
//!    resource that does *not* grow with the swarm: if every peer were handed the origins first,
//!    the whole cluster would download from them and Shoal would be no better than a central
//!    registry. Listing them after seeders protects them once the blob has spread, while still
//!    handing them out early in a torrent's life, when nobody else has the data.
//! 3. **In-progress peers**: they hold some pieces and exchange the rest among themselves, which
//!    is what makes the swarm scale.
//!
//! Within each class the order is uniformly random (a fresh shuffle per announce). That spreads
//! load evenly across equal peers instead of pointing everyone at the same few, and as peers
//! announce and connect, the connection graph approaches a random regular graph: low diameter
//! and no hot spots, which is what keeps piece propagation fast and even across a large swarm.
//!
//! The function is pure: given the same candidates (in the same order) and an RNG in the same
//! state it returns the same answer, so the simulator can replay it exactly.

use std::net::SocketAddr;

use rand::Rng;
use shoal_core::PeerId;

/// One peer of a torrent as the tracker knows it from its last announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer's identity.
    pub peer_id: PeerId,
    /// Where the peer accepts swarm connections.
    pub addr: SocketAddr,
    /// The peer has every piece of the blob (a seeder).
    pub complete: bool,
    /// The peer is an origin (a dedicated seeder of last resort).
    pub is_origin: bool,
    /// Bytes of the blob the peer has verified, as it last reported.
    pub bytes_done: u64,
}

/// The priority class of a candidate; lower goes first.
fn class(peer: &PeerEntry) -> usize {
    if peer.is_origin {
        1
    } else if peer.complete {
        0
    } else {
        2
    }
}

/// Picks at most `limit` peers from `candidates` for `requester`: seeders first, then origins,
/// then in-progress peers, in random order within each class (see the module docs for why).
///
/// The requester itself is never included. Candidates are expected to have distinct peer ids
/// (the tracker keys its tables by peer id); duplicates are returned as given.
pub fn handout<R: Rng + ?Sized>(
    candidates: &[PeerEntry],
    requester: &PeerId,
    limit: usize,
    rng: &mut R,
) -> Vec<PeerEntry> {
    let mut classes: [Vec<&PeerEntry>; 3] = Default::default();
    for peer in candidates.iter().filter(|p| p.peer_id != *requester) {
        classes[class(peer)].push(peer);
    }
    let [seeders, origins, others] = &classes;
    handout_by_class([seeders, origins, others], limit, |_| false, rng)
        .into_iter()
        .map(|p| (*p).clone())
        .collect()
}

/// The handout over candidates already sorted into their classes (seeders, origins,
/// in-progress peers), for a caller that keeps them that way (the simulator's tracker): at most
/// `limit` members, the classes in order, each class's share a uniform random sample in random
/// order; members for which `skip` holds (the requester) are never returned. Costs
/// O(`limit`), not O(candidates), which is what lets a simulated tracker answer 10k-peer
/// swarms. [`handout`] is this function over the classes it builds.
pub fn handout_by_class<'a, T, R: Rng + ?Sized>(
    classes: [&'a [T]; 3],
    limit: usize,
    skip: impl Fn(&T) -> bool,
    rng: &mut R,
) -> Vec<&'a T> {
    let mut out = Vec::with_capacity(limit.min(classes.iter().map(|c| c.len()).sum()));
    for members in classes {
        let room = limit - out.len();
        if room == 0 {
            break;
        }
        if members.is_empty() {
            continue;
        }
        // One extra draw covers a skipped member (the requester appears at most once).
        let want = (room + 1).min(members.len());
        let before = out.len();
        for i in rand::seq::index::sample(rng, members.len(), want) {
            if !skip(&members[i]) {
                out.push(&members[i]);
            }
        }
        out.truncate(before + room.min(out.len() - before));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    fn peer(n: u8, complete: bool, is_origin: bool) -> PeerEntry {
        PeerEntry {
            peer_id: id(n),
            addr: SocketAddr::from(([10, 0, 0, n], 7000 + u16::from(n))),
            complete,
            is_origin,
            bytes_done: if complete || is_origin { 100 } else { 10 },
        }
    }

    /// 3 seeders (1..=3), 2 origins (10, 11), 4 in-progress peers (20..=23), the requester (99).
    fn swarm() -> Vec<PeerEntry> {
        let mut v = vec![peer(99, false, false)];
        v.extend((1..=3).map(|n| peer(n, true, false)));
        v.extend((20..=23).map(|n| peer(n, false, false)));
        v.extend((10..=11).map(|n| peer(n, true, true)));
        v
    }

    fn ids(peers: &[PeerEntry]) -> Vec<u8> {
        peers.iter().map(|p| p.peer_id.as_bytes()[0]).collect()
    }

    #[test]
    fn classes_in_order_requester_excluded() {
        let mut rng = StdRng::seed_from_u64(1);
        let out = handout(&swarm(), &id(99), 100, &mut rng);
        let got = ids(&out);
        assert_eq!(got.len(), 9, "{got:?}");
        assert!(!got.contains(&99));
        let mut seeders = got[..3].to_vec();
        seeders.sort_unstable();
        assert_eq!(seeders, [1, 2, 3]);
        let mut origins = got[3..5].to_vec();
        origins.sort_unstable();
        assert_eq!(origins, [10, 11]);
        let mut rest = got[5..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, [20, 21, 22, 23]);
    }

    #[test]
    fn an_origin_that_is_complete_is_still_an_origin() {
        let mut rng = StdRng::seed_from_u64(2);
        let cands = [peer(10, true, true), peer(20, false, false)];
        let out = handout(&cands, &id(99), 1, &mut rng);
        assert_eq!(ids(&out), [10]);
        let cands = [peer(10, true, true), peer(1, true, false)];
        let out = handout(&cands, &id(99), 1, &mut rng);
        assert_eq!(ids(&out), [1]);
    }

    #[test]
    fn limit_truncates_by_class() {
        let mut rng = StdRng::seed_from_u64(3);
        let got = ids(&handout(&swarm(), &id(99), 4, &mut rng));
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(|n| (1..=3).contains(n)), "{got:?}");
        assert!((10..=11).contains(&got[3]), "{got:?}");
        assert!(handout(&swarm(), &id(99), 0, &mut rng).is_empty());
        let got = ids(&handout(&swarm(), &id(99), 2, &mut rng));
        assert!(got.iter().all(|n| (1..=3).contains(n)), "{got:?}");
    }

    #[test]
    fn empty_and_lonely_swarms() {
        let mut rng = StdRng::seed_from_u64(4);
        assert!(handout(&[], &id(1), 10, &mut rng).is_empty());
        assert!(handout(&[peer(1, false, false)], &id(1), 10, &mut rng).is_empty());
    }

    #[test]
    fn deterministic_for_a_seed() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..5)
                .map(|_| ids(&handout(&swarm(), &id(99), 6, &mut rng)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        // Different seeds give (with overwhelming probability) a different sequence.
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn selection_within_a_class_is_spread() {
        // 50 in-progress peers, limit 5: over many draws every peer is picked, and roughly
        // equally often (expected 2000 × 5 / 50 = 200 each).
        let cands: Vec<_> = (0..50).map(|n| peer(n, false, false)).collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: HashMap<u8, usize> = HashMap::new();
        let mut first: HashMap<u8, usize> = HashMap::new();
        for _ in 0..2000 {
            let out = ids(&handout(&cands, &id(200), 5, &mut rng));
            assert_eq!(out.len(), 5);
            *first.entry(out[0]).or_default() += 1;
            for n in out {
                *counts.entry(n).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 50, "every candidate gets picked");
        assert!(
            counts.values().all(|&c| (100..=300).contains(&c)),
            "{counts:?}"
        );
        assert!(first.len() > 40, "the first slot rotates too: {first:?}");
    }

    #[test]
    fn by_class_skips_the_requester_and_costs_no_scan() {
        let mut rng = StdRng::seed_from_u64(11);
        let seeders: Vec<u32> = (0..3).collect();
        let origins: Vec<u32> = vec![100, 101];
        let others: Vec<u32> = (1000..101_000).collect();
        for _ in 0..200 {
            let got = handout_by_class([&seeders, &origins, &others], 10, |p| *p == 1, &mut rng);
            assert_eq!(got.len(), 10);
            assert!(!got.contains(&&1), "the requester is skipped");
            let got: Vec<u32> = got.into_iter().copied().collect();
            let mut first: Vec<u32> = got[..2].to_vec();
            first.sort_unstable();
            assert_eq!(first, [0, 2], "seeders first");
            assert!(got[2..4].iter().all(|p| *p >= 100 && *p <= 101), "{got:?}");
            assert!(got[4..].iter().all(|p| *p >= 1000), "{got:?}");
            let mut d = got.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 10, "distinct");
        }
        // Only the requester in a class: nothing from it.
        let lone = [7u32];
        assert!(handout_by_class([&lone, &[], &[]], 5, |p| *p == 7, &mut rng).is_empty());
    }

    #[test]
    fn picks_are_distinct() {
        let cands: Vec<_> = (0..30).map(|n| peer(n, n % 3 == 0, n % 7 == 0)).collect();
        let mut rng = StdRng::seed_from_u64(9);
        for limit in [1, 5, 10, 29, 30, 31] {
            let mut got = ids(&handout(&cands, &id(5), limit, &mut rng));
            assert_eq!(got.len(), limit.min(29));
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), limit.min(29));
        }
    }
}
