//! Transport configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::TlsConfig;

/// The default UDP port peers listen on.
pub const DEFAULT_PORT: u16 = 7602;

/// Settings of a [`crate::Transport`]. Every field has a default, so an empty table is valid;
/// unknown keys are an error.
///
/// ```toml
/// listen = "0.0.0.0:7602"
/// idle_timeout = "30s"
/// keep_alive = "10s"
/// connect_timeout = "5s"
/// handshake_timeout = "10s"
/// max_piece_len = 16777216
/// [tls]
/// ca_cert = "/etc/shoal/ca.pem"
/// cert = "/etc/shoal/peer.pem"
/// key = "/etc/shoal/peer.key"
/// [bandwidth]
/// ingress_bytes_per_sec = 125000000
/// egress_bytes_per_sec = 125000000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// UDP address to listen on and dial from (one socket for both); default `0.0.0.0:7602`.
    /// Port 0 picks a free port (see [`crate::Transport::local_addr`]).
    pub listen: SocketAddr,
    /// TLS material; default (nothing given) is the insecure dev mode, see [`TlsConfig`].
    pub tls: TlsConfig,
    /// A connection with no traffic for this long is closed; default 30 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Interval of keep-alive packets on idle connections (must be below `idle_timeout`);
    /// default 10 s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// How long dialing a peer (the QUIC and TLS handshake) may take; default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long the first frame of a stream may take: the peer's `Handshake` answer on a new
    /// control stream, or the `Request` on a new request stream; default 10 s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Largest piece this peer accepts from others, in bytes; default 16 MiB (4 times the
    /// default piece length). A larger announced length fails the request before any data is
    /// read.
    pub max_piece_len: u32,
    /// Host-wide bandwidth limits; default off.
    pub bandwidth: BandwidthConfig,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            tls: TlsConfig::default(),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_piece_len: 16 << 20,
            bandwidth: BandwidthConfig::default(),
        }
    }
}

impl TransportConfig {
    /// The defaults, listening on `127.0.0.1:0` in dev TLS mode: for tests and local runs.
    pub fn localhost() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ..Self::default()
        }
    }
}

/// Host-wide bandwidth limits, shared by every connection and stream of a transport. Both are
/// off by default. Bursts are 100 ms worth of the rate (at least 64 KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BandwidthConfig {
    /// Cap on piece data received, in bytes per second (`None`: unlimited).
    pub ingress_bytes_per_sec: Option<u64>,
    /// Cap on piece data sent, in bytes per second (`None`: unlimited).
    pub egress_bytes_per_sec: Option<u64>,
}
