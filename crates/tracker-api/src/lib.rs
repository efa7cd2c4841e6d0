//! The tracker's gRPC API, generated from `proto/tracker.proto` (package `shoal.tracker.v1`):
//! the messages, the server trait (used by `shoal-tracker`) and the client (used by agents).
//!
//! This crate is **not** the tracker: it holds no logic, only the generated code, so clients
//! do not depend on the tracker service.

mod generated {
    #![allow(
        missing_docs,
        unreachable_pub,
        unused_qualifications,
        rust_2018_idioms,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("shoal.tracker.v1");
}

pub use generated::*;

/// Metainfo response header of an origin that seeds over the peer protocol: its peer id, as
/// 64 hex characters. Sent together with [`ORIGIN_PEER_ADDR_HEADER`].
pub const ORIGIN_PEER_ID_HEADER: &str = "shoal-peer-id";

/// Metainfo response header of an origin that seeds over the peer protocol: the `ip:port`
/// where it accepts swarm connections (IPv6 bracketed, as in `[::1]:7101`).
pub const ORIGIN_PEER_ADDR_HEADER: &str = "shoal-peer-addr";
