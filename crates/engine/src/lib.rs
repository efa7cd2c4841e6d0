//! Shoal's swarm engine, sans-IO: the decisions of a torrent peer without any of the I/O.
//!
//! No sockets, no clock, no spawning: callers feed events (`handle_*`, each with `now`) and
//! poll for what to do (`poll_action`, `poll_timeout`). The QUIC driver in the agent and the
//! simulator drive this same code, so every policy that the simulator must share lives here:
//! piece selection, pipelining, endgame, connection policy ([`torrent`]), the origin's
//! seeding policy ([`seeding`]) and the tracker's peer handout ([`handout`]).
//!
//! This crate is **not** a network stack or a storage layer: it never sees piece bytes; the
//! driver verifies pieces and reports the outcome.

pub mod config;
pub mod handout;
mod interface;
mod picker;
pub mod seeding;
pub mod torrent;

pub use config::{EngineConfig, PiecePolicy};
pub use interface::{
    Action, ConnectFailure, DisconnectReason, PeerInfo, PieceOutcome, Refusal, Role, TorrentStats,
};
pub use torrent::Torrent;
