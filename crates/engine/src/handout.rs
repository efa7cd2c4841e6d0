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
use rand::seq::SliceRandom;
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
    let mut out = Vec::with_capacity(limit.min(candidates.len()));
    for mut members in classes {
        let want = (limit - out.len()).min(members.len());
        if want == 0 {
            continue;
        }
        // A partial Fisher-Yates shuffle: `want` uniformly chosen members in random order,
        // without paying for a full shuffle of a large class.
        let (chosen, _) = members.partial_shuffle(rng, want);
        out.extend(chosen.iter().map(|p| (*p).clone()));
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
