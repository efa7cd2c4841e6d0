//! The peer tables: who is in which torrent, until when.

use std::collections::HashMap;

use dashmap::DashMap;
use shoal_core::{InfoHash, PeerId};
use shoal_engine::handout::{PeerEntry, handout};
use tokio::time::Instant;

#[derive(Debug)]
struct Stored {
    entry: PeerEntry,
    expires: Instant,
}

/// Every torrent's peers, sharded by info hash so announces for different torrents never
/// contend and no lock is ever held across an `.await` (all methods are synchronous).
#[derive(Debug, Default)]
pub(crate) struct PeerTables {
    torrents: DashMap<InfoHash, HashMap<PeerId, Stored>>,
}

impl PeerTables {
    /// Records (or refreshes) `entry` in `torrent` until `expires`, then returns up to `limit`
    /// other live peers of the torrent chosen by the handout policy. `pinned` peers (the
    /// torrent's seeding origins, known from its metainfo) are candidates too without being
    /// stored; a pinned peer that is also in the table is taken as announced.
    pub(crate) fn announce(
        &self,
        torrent: InfoHash,
        entry: PeerEntry,
        pinned: &[PeerEntry],
        expires: Instant,
        now: Instant,
        limit: usize,
    ) -> Vec<PeerEntry> {
        let requester = entry.peer_id;
        let candidates: Vec<PeerEntry> = {
            let mut peers = self.torrents.entry(torrent).or_default();
            peers.insert(requester, Stored { entry, expires });
            let live = peers
                .values()
                .filter(|s| s.expires > now)
                .map(|s| s.entry.clone());
            let extra = pinned
                .iter()
                .filter(|p| peers.get(&p.peer_id).is_none_or(|s| s.expires <= now))
                .cloned();
            live.chain(extra).collect()
        };
        // Shard lock released: the shuffle runs without blocking other announces.
        handout(&candidates, &requester, limit, &mut rand::rng())
    }

    /// Forgets `peer` in `torrent` (a STOPPED announce); drops the torrent once empty.
    pub(crate) fn remove(&self, torrent: &InfoHash, peer: &PeerId) {
        if let Some(mut peers) = self.torrents.get_mut(torrent) {
            peers.remove(peer);
        }
        self.torrents
            .remove_if(torrent, |_, peers| peers.is_empty());
    }

    /// Drops every peer whose entry expired at or before `now`, and torrents left empty.
    /// Returns how many peers were dropped.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut dropped = 0;
        self.torrents.retain(|_, peers| {
            let before = peers.len();
            peers.retain(|_, s| s.expires > now);
            dropped += before - peers.len();
            !peers.is_empty()
        });
        dropped
    }

    /// Torrents with at least one peer (including peers expired but not yet swept).
    pub(crate) fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Peers across all torrents (including peers expired but not yet swept).
    pub(crate) fn peer_count(&self) -> usize {
        self.torrents.iter().map(|t| t.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    fn entry(n: u8) -> PeerEntry {
        PeerEntry {
            peer_id: PeerId::from_bytes([n; 32]),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(n))),
            complete: false,
            is_origin: false,
            bytes_done: 0,
        }
    }

    #[test]
    fn announce_remove_expire_and_sweep() {
        let t = PeerTables::default();
        let h = InfoHash::from_bytes([1; 32]);
        let h2 = InfoHash::from_bytes([2; 32]);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(10);
        assert!(t.announce(h, entry(1), &[], soon, now, 10).is_empty());
        assert_eq!(t.announce(h, entry(2), &[], later, now, 10), vec![entry(1)]);
        assert!(t.announce(h2, entry(1), &[], later, now, 10).is_empty());
        assert_eq!((t.torrent_count(), t.peer_count()), (2, 3));

        // Peer 1 expired in `h`: not handed out even before a sweep.
        let after = now + Duration::from_secs(2);
        assert!(t.announce(h, entry(2), &[], later, after, 10).is_empty());
        assert_eq!(t.sweep(after), 1);
        assert_eq!((t.torrent_count(), t.peer_count()), (2, 2));

        t.remove(&h, &entry(2).peer_id);
        assert_eq!((t.torrent_count(), t.peer_count()), (1, 1));
        // Removing unknown peers or torrents is harmless.
        t.remove(&h, &entry(2).peer_id);
        t.remove(&h2, &entry(9).peer_id);
        assert_eq!(t.sweep(now + Duration::from_secs(60)), 1);
        assert_eq!((t.torrent_count(), t.peer_count()), (0, 0));
    }

    #[test]
    fn pinned_peers_are_handed_out_but_not_stored() {
        let t = PeerTables::default();
        let h = InfoHash::from_bytes([1; 32]);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let origin = PeerEntry {
            complete: true,
            is_origin: true,
            ..entry(50)
        };
        let pinned = [origin.clone()];
        assert_eq!(t.announce(h, entry(1), &pinned, later, now, 10), pinned);
        assert_eq!(t.peer_count(), 1, "the pinned origin is not stored");
        // It counts toward the limit, in the origins class: after seeders.
        let seeder = PeerEntry {
            complete: true,
            ..entry(2)
        };
        t.announce(h, seeder.clone(), &pinned, later, now, 10);
        assert_eq!(t.announce(h, entry(3), &pinned, later, now, 1), [seeder]);
        let got = t.announce(h, entry(3), &pinned, later, now, 2);
        assert_eq!(got[1], origin);
        // The origin itself is not handed itself.
        let got = t.announce(h, origin.clone(), &pinned, later, now, 10);
        assert!(got.iter().all(|p| p.peer_id != origin.peer_id), "{got:?}");
        // Now it is in the table too (it announced): handed out once, as announced.
        let got = t.announce(h, entry(4), &pinned, later, now, 10);
        assert_eq!(
            got.iter().filter(|p| p.peer_id == origin.peer_id).count(),
            1
        );
    }
}
