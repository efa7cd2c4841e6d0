//! Engine settings.

use std::time::Duration;

/// How the next piece to request is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PiecePolicy {
    /// The piece the fewest neighbours have, ties broken at random (default): keeps every piece
    /// replicated across the swarm so no piece becomes a bottleneck.
    #[default]
    RarestFirst,
    /// Any piece a neighbour has, uniformly at random (for comparison in simulations).
    Random,
}

/// Settings of one torrent's engine. Defaults are chosen for 4 MiB pieces on 1–25 Gbit/s hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Most connected peers per torrent (dialled and accepted). Default 10, as in Kraken: enough
    /// for a well-connected random graph, few enough that each link runs at a useful rate.
    pub max_connections: usize,
    /// Most of those connections that this side dials on the first tracker answer (later ones
    /// see [`Self::inbound_reserve`]); the rest are kept for peers that dial us. Default 5
    /// (half). Without the reserve, peers that start together fill each other's
    /// slots, the swarm splits into cliques, and a clique without the origin waits until
    /// another finishes; with it, every peer accepts late joiners and the connection graph
    /// approaches a random regular graph.
    pub max_outbound: usize,
    /// From the second tracker answer on (the swarm has started), this side also dials past
    /// `max_outbound`, until only this many of the `max_connections` slots are free for
    /// peers that dial us. Without it a peer that got few inbound connections stays at
    /// `max_outbound` peers and downloads (and serves) less than the rest: in 8-agent swarms
    /// some agents had 5 peers and others 8, and the least-connected finished up to 1.3×
    /// later. Default 2: 500 hosts p99 1.19 → 1.15, 32 capped hosts max 1.15 → 1.11
    /// (docs/SIMULATIONS.md).
    pub inbound_reserve: usize,
    /// Most piece requests kept outstanding per connection to an agent; `None` (default) picks
    /// by piece length, see [`Self::pipeline_depth_for`].
    pub pipeline_depth: Option<usize>,
    /// Most piece requests kept outstanding per connection to an origin. Default 16: origins
    /// have more bandwidth and every round trip saved there matters. The requests beyond the
    /// two an origin serves at once wait there in order, so a pause of the agent (a slow
    /// page-cache write, a busy core) does not empty the pipe. One uncapped agent pulling
    /// 1 GiB: 224–316 MB/s at 8, 260–323 MB/s at 16 (six interleaved runs each, means 269 and
    /// 291 MB/s; this VM's page-cache costs make single runs noisy). Swarms were equal, real
    /// and simulated (see `docs/SIMULATIONS.md`).
    pub origin_pipeline_depth: usize,
    /// The depth adapts to each peer's measured rate: one request plus as many pieces as the
    /// peer delivers in this window (two before a rate is measured), up to the maximum depth.
    /// Default 1 s. Slow or shared links get few requests, so each completes quickly.
    pub pipeline_window: Duration,
    /// While a reader streams the blob (see [`crate::Torrent::handle_stream_position`]), the
    /// next this many missing pieces from its position are requested before anything else,
    /// in order. Default 1; 0 gives a reader no priority at all.
    ///
    /// Every streaming agent wanting the same next pieces costs the swarm its diversity: with
    /// 32 capped agents all streaming from byte 0 the simulator's median is 1.095× the minimum
    /// with no reader priority, 1.100× with a window of 1, 1.105× with 2 and 1.41× with 16.
    /// The reader still gets its leading bytes early; the rest of the blob arrives rarest
    /// first. While every connected peer is complete (nobody to trade with, e.g. an origin
    /// alone) the window is the whole blob: the pieces are requested in order.
    pub stream_window: u32,
    /// Endgame starts when this many pieces or fewer are missing and all of them are already
    /// requested: they are then requested from every neighbour that has them, and the
    /// duplicates are cancelled when one copy lands. Capped at a sixteenth of the torrent's
    /// pieces (at least 1). Default 8.
    pub endgame_threshold: u32,
    /// Piece selection policy. Default rarest first.
    pub piece_policy: PiecePolicy,
    /// The shortest request timeout. Default 10 s.
    pub request_timeout_min: Duration,
    /// After a peer refuses a request (an origin refuses a piece it has just sent to someone
    /// else), ask it for nothing new for this long, or until a piece from it arrives: refused
    /// requests must not turn into a request storm. Default 250 ms.
    pub refusal_backoff: Duration,
    /// A peer with outstanding requests that delivers nothing for this many times the time
    /// its measured rate needs for one piece (and at least `request_timeout_min`) loses its
    /// oldest request to another peer. Default 4.
    pub request_timeout_factor: f64,
    /// Timeouts in a row (no piece in between) before a peer is dropped as too slow or gone.
    /// Default 3.
    pub max_timeouts: u32,
    /// A connection with no piece traffic either way for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// How long a peer is not dialled or accepted again after a failed handshake, a corrupt
    /// piece or a protocol violation. Default 5 min.
    pub blacklist_duration: Duration,
    /// How long a peer that refused a connection (busy at its connection limit) or could not
    /// be reached is not dialled again. Default 10 s.
    pub busy_retry: Duration,
    /// Seed for the random choices (tie-breaks, shuffles), so runs are reproducible.
    pub seed: u64,
}

/// Pieces longer than this get [`LARGE_PIECE_PIPELINE_DEPTH`] by default, the others
/// [`PIPELINE_DEPTH`]: 16 MiB, the transport's default `max_piece_len`, so only deployments
/// that raise it for very large blobs see the deeper pipeline.
pub const LARGE_PIECE_LEN: u32 = 16 << 20;
/// The default most requests outstanding per agent connection, for pieces up to
/// [`LARGE_PIECE_LEN`]: [`crate::seeding::SERVE_PER_PEER`], the requests of one peer a host
/// serves at a time.
pub const PIPELINE_DEPTH: usize = crate::seeding::SERVE_PER_PEER;
/// The default most requests outstanding per agent connection for pieces over
/// [`LARGE_PIECE_LEN`].
pub const LARGE_PIECE_PIPELINE_DEPTH: usize = 4;

impl EngineConfig {
    /// The most requests kept outstanding per agent connection for pieces of `piece_len`:
    /// [`Self::pipeline_depth`] if set, else [`PIPELINE_DEPTH`] (2), or
    /// [`LARGE_PIECE_PIPELINE_DEPTH`] (4) for pieces over [`LARGE_PIECE_LEN`].
    ///
    /// A host serves at most 2 requests of one peer at a time; further requests wait at the
    /// server. With pieces of the usual size (256 KiB – 4 MiB) those waiting requests buy
    /// nothing (the round trip they hide is short next to a piece) and they commit pieces to
    /// one peer early, which costs rarest-first and endgame their choices. The simulator,
    /// depth 2 against 4 (p50 / p99 / p99.9): 32 capped agents 1.044 / 1.061 / 1.089 p50 at
    /// 8 / 16 / 32 agents against 1.047 / 1.069 / 1.100; 500 hosts 1.041 / 1.192 / 1.279
    /// against 1.046 / 1.210 / 1.326; Kraken's 2600 hosts 1.058 / 1.156 / 1.206 against
    /// 1.065 / 1.167 / 1.225; churn 1.126 / 1.198 / 1.214 against 1.202 / 1.287 / 1.645. Real
    /// agents (8, capped like the origin): 1.03 against 1.07. But the 10,000-host scenario
    /// with 128 MiB pieces keeps a better tail at 4: p99.9 1.227 / 1.250 / 1.220 against
    /// 1.255 / 1.262 / 1.240 over three seeds, hence the piece-length rule.
    pub fn pipeline_depth_for(&self, piece_len: u32) -> usize {
        self.pipeline_depth
            .unwrap_or(if piece_len > LARGE_PIECE_LEN {
                LARGE_PIECE_PIPELINE_DEPTH
            } else {
                PIPELINE_DEPTH
            })
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            max_outbound: 5,
            inbound_reserve: 2,
            pipeline_depth: None,
            origin_pipeline_depth: 16,
            pipeline_window: Duration::from_secs(1),
            stream_window: 1,
            endgame_threshold: 8,
            piece_policy: PiecePolicy::RarestFirst,
            request_timeout_min: Duration::from_secs(10),
            refusal_backoff: Duration::from_millis(250),
            request_timeout_factor: 4.0,
            max_timeouts: 3,
            idle_timeout: Duration::from_secs(60),
            blacklist_duration: Duration::from_secs(300),
            busy_retry: Duration::from_secs(10),
            seed: 0,
        }
    }
}
