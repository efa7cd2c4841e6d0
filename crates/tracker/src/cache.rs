//! The metainfo cache: a least-recently-used map of digest → encoded metainfo, with an index
//! by info hash to the origin peer learned along with each entry.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use shoal_core::{Digest, InfoHash};
use shoal_engine::handout::PeerEntry;

/// One cached metainfo and what the tracker learned when it fetched it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The encoded metainfo, as the origin sent it.
    pub(crate) metainfo: Bytes,
    /// Its info hash ([`shoal_core::MetaInfo::info_hash`]).
    pub(crate) info_hash: InfoHash,
    /// The origins that serve it and seed over the peer protocol: the one that answered the
    /// lookup, then the blob's other owners as they confirm. Handed out with every announce
    /// for `info_hash` for as long as the entry stays cached, so losing one origin mid-transfer
    /// leaves the swarm others.
    pub(crate) origin_peers: Vec<PeerEntry>,
}

/// A least-recently-used map of digest → [`Entry`] with a fixed entry capacity.
#[derive(Debug)]
pub(crate) struct MetaCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<Digest, (Entry, u64)>,
    /// Last-use tick → digest, oldest first.
    order: BTreeMap<u64, Digest>,
    /// Info hash → digest of the entry holding that torrent's metainfo.
    by_info_hash: HashMap<InfoHash, Digest>,
}

impl MetaCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            by_info_hash: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The encoded metainfo of `key`, marking it most recently used.
    pub(crate) fn get(&mut self, key: &Digest) -> Option<Bytes> {
        let tick = self.next_tick();
        let (entry, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *key);
        Some(entry.metainfo.clone())
    }

    /// The origin peers learned with the metainfo of torrent `info_hash` (empty if that
    /// metainfo is not cached or no origin of it seeds). Does not change the entry's recency:
    /// announces keep no metainfo alive, only metainfo lookups do.
    pub(crate) fn origin_peers(&self, info_hash: &InfoHash) -> Vec<PeerEntry> {
        self.by_info_hash
            .get(info_hash)
            .and_then(|digest| self.entries.get(digest))
            .map(|(entry, _)| entry.origin_peers.clone())
            .unwrap_or_default()
    }

    /// Adds another seeding origin of `key`'s cached metainfo, if that metainfo has the same
    /// info hash (an origin that cut the blob differently seeds another torrent).
    pub(crate) fn add_origin_peer(&mut self, key: &Digest, info_hash: InfoHash, peer: PeerEntry) {
        if let Some((entry, _)) = self.entries.get_mut(key)
            && entry.info_hash == info_hash
            && entry.origin_peers.iter().all(|p| p.peer_id != peer.peer_id)
        {
            entry.origin_peers.push(peer);
        }
    }

    /// Caches `entry` under `key` (replacing any entry of that digest), evicting the least
    /// recently used entries beyond the capacity along with their origin peers.
    pub(crate) fn insert(&mut self, key: Digest, entry: Entry) {
        let tick = self.next_tick();
        let info_hash = entry.info_hash;
        if let Some((old, old_tick)) = self.entries.insert(key, (entry, tick)) {
            self.order.remove(&old_tick);
            // Two origins may cut one blob into different pieces: a new info hash.
            self.by_info_hash.remove(&old.info_hash);
        }
        self.order.insert(tick, key);
        self.by_info_hash.insert(info_hash, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.by_info_hash.remove(&gone.info_hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use shoal_core::{Algorithm, PeerId};

    use super::*;

    fn d(n: u8) -> Digest {
        Digest::compute(Algorithm::Sha256, &[n])
    }

    fn h(n: u8) -> InfoHash {
        InfoHash::from_bytes([n; 32])
    }

    fn origin(n: u8) -> PeerEntry {
        PeerEntry {
            peer_id: PeerId::from_bytes([n; 32]),
            addr: SocketAddr::from(([127, 0, 0, 1], 7100 + u16::from(n))),
            complete: true,
            is_origin: true,
            bytes_done: 10,
        }
    }

    fn entry(n: u8, seeds: bool) -> Entry {
        Entry {
            metainfo: Bytes::from(vec![n]),
            info_hash: h(n),
            origin_peers: seeds.then(|| origin(n)).into_iter().collect(),
        }
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut lru = MetaCache::new(2);
        lru.insert(d(1), entry(1, false));
        lru.insert(d(2), entry(2, false));
        assert_eq!(lru.get(&d(1)).as_deref(), Some(&[1][..]));
        lru.insert(d(3), entry(3, false));
        assert_eq!(lru.len(), 2);
        assert!(lru.get(&d(2)).is_none(), "2 was least recently used");
        assert!(lru.get(&d(1)).is_some() && lru.get(&d(3)).is_some());
        lru.insert(
            d(3),
            Entry {
                metainfo: Bytes::from_static(b"3b"),
                ..entry(3, false)
            },
        );
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.order.len(), 2);
        assert_eq!(lru.by_info_hash.len(), 2);
        assert_eq!(lru.get(&d(3)).as_deref(), Some(&b"3b"[..]));
    }

    #[test]
    fn origin_peers_live_and_die_with_their_entry() {
        let mut lru = MetaCache::new(2);
        lru.insert(d(1), entry(1, true));
        lru.insert(d(2), entry(2, false));
        assert_eq!(lru.origin_peers(&h(1)), [origin(1)]);
        assert_eq!(lru.origin_peers(&h(2)), [], "origin 2 does not seed");
        assert_eq!(lru.origin_peers(&h(9)), [], "unknown torrent");

        // Asking for the origin peer does not keep entry 1 alive; a lookup of 2 makes 1 the
        // least recently used, so inserting 3 evicts it with its origin peer.
        assert!(lru.get(&d(2)).is_some());
        lru.insert(d(3), entry(3, true));
        assert_eq!(lru.origin_peers(&h(1)), []);
        assert_eq!(lru.origin_peers(&h(3)), [origin(3)]);
        assert_eq!(lru.by_info_hash.len(), 2);

        // Replacing a digest's metainfo with one of another info hash re-indexes it.
        lru.insert(
            d(3),
            Entry {
                info_hash: h(4),
                ..entry(3, true)
            },
        );
        assert_eq!(lru.origin_peers(&h(3)), []);
        assert_eq!(lru.origin_peers(&h(4)), [origin(3)]);
        assert_eq!(lru.by_info_hash.len(), 2);
    }

    #[test]
    fn other_owners_join_the_entry_once_and_only_for_the_same_torrent() {
        let mut lru = MetaCache::new(2);
        lru.insert(d(1), entry(1, true));
        lru.add_origin_peer(&d(1), h(1), origin(2));
        lru.add_origin_peer(&d(1), h(1), origin(2));
        lru.add_origin_peer(&d(1), h(9), origin(3));
        lru.add_origin_peer(&d(7), h(1), origin(4));
        assert_eq!(lru.origin_peers(&h(1)), [origin(1), origin(2)]);
    }
}
