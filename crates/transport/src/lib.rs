//! Shoal's QUIC peer transport.
//!
//! Every link is QUIC with TLS 1.3 ([`tls`]: a cluster CA with mutual authentication, or an
//! insecure dev mode). There is **one QUIC connection per peer pair**, pooled by remote address
//! and used in both directions; torrents are multiplexed over it:
//!
//! * a **session** per torrent: a bidirectional *control stream* that starts with a handshake
//!   each way ([`Transport::connect`] / [`Acceptor::accept`] + [`IncomingSession::accept`]) and
//!   then carries `Have`, `Cancel`, `Complete` and `Error` frames
//!   ([`SessionSender::send`], [`ControlReceiver::recv`]);
//! * a **request stream** per piece request ([`SessionSender::request`] /
//!   [`RequestReceiver::next`] + [`IncomingRequest::respond`]): a slow piece never blocks
//!   another, and dropping the request future stops the stream so the server stops sending.
//!
//! Optional host-wide ingress and egress limits ([`BandwidthConfig`], [`TokenBucket`]) throttle
//! piece data shared across all connections.
//!
//! Frames are `shoal-wire` frames; piece data follows its `Piece` header raw.
//!
//! This crate is **not** the swarm logic: it does not choose peers or pieces, check bitfields
//! against layouts, verify piece hashes or store anything. It moves validated frames and piece
//! bytes between peers.

mod bandwidth;
mod config;
mod endpoint;
mod error;
mod io;
mod request;
mod session;
pub mod tls;

#[cfg(test)]
mod tests;

pub use bandwidth::{SLICE_BYTES, TokenBucket};
pub use config::{BandwidthConfig, DEFAULT_PORT, TransportConfig};
pub use endpoint::{Acceptor, Transport};
pub use error::{RequestError, RespondError, SessionError, TransportError};
pub use request::IncomingRequest;
pub use session::{ControlReceiver, IncomingSession, RequestReceiver, Session, SessionSender};
pub use tls::TlsConfig;
