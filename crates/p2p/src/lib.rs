//! Shoal's swarm driver: the sans-IO [`shoal_engine`] run over the QUIC [`shoal_transport`] and
//! the local piece store ([`shoal_store`]).
//!
//! One [`Swarm`] per host (agent or origin) owns the transport's accept loop and a map of
//! active torrents. Each torrent is one task that owns its engine: peer events and timers go
//! in, engine actions come out and are carried out by small tasks (dials, piece requests,
//! piece serving), whose results come back to the torrent task as events. Nothing else touches
//! the engine, so it needs no lock.
//!
//! Pieces are verified (SHA-256 against the metainfo) and written with positioned writes by
//! the store as they land, off the async threads; the whole blob is checked before it is
//! published (for a SHA-256 chain metainfo, by the piece checks themselves).
//!
//! This crate is **not** the tracker client or an HTTP API: the agent announces and hands the
//! peers it learns to [`TorrentHandle::add_peers`].

mod background;
mod peer;
mod source;
mod swarm;
mod torrent;

pub use source::Source;
pub use swarm::{Resolver, Swarm, SwarmConfig, SwarmStats};
pub use torrent::{DownloadError, TorrentHandle, TorrentState};

/// Reads this host's peer id from `dir/peer_id`, creating a random one on first use, so a
/// host keeps its identity (and its peers' view of it) across restarts.
pub fn load_or_create_peer_id(dir: &std::path::Path) -> std::io::Result<shoal_core::PeerId> {
    let path = dir.join("peer_id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(id) = text.trim().parse()
    {
        return Ok(id);
    }
    let id = shoal_core::PeerId::from_bytes(rand::random());
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}
