//! Metainfo lookup: a bounded LRU cache in front of the origins, one fetch per digest at a time.
//!
//! An origin that seeds over the peer protocol says so in its metainfo response
//! ([`ORIGIN_PEER_ID_HEADER`], [`ORIGIN_PEER_ADDR_HEADER`]); the tracker caches that origin as
//! a peer of the torrent next to the metainfo, and announces hand it out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use shoal_cluster::Cluster;
use shoal_core::{Digest, InfoHash, MetaInfo, PeerId, RepoName};
use shoal_engine::handout::PeerEntry;

use crate::cache::{Entry, MetaCache};
use crate::{ORIGIN_PEER_ADDR_HEADER, ORIGIN_PEER_ID_HEADER};
use shoal_runtime::flight::SingleFlight;

/// Largest metainfo accepted from an origin. 32 bytes per piece: 16 MiB covers half a million
/// pieces (2 TiB at the default 4 MiB pieces).
const MAX_METAINFO_BYTES: usize = 16 << 20;

/// Why a metainfo could not be returned. Cloneable: every caller sharing a fetch gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LookupError {
    /// Every origin answered 404.
    #[error("no origin has {0}")]
    NotFound(Digest),
    /// No origin could be asked, or one failed and none had the blob.
    #[error("origins unavailable: {0}")]
    Unavailable(String),
}

/// Counters of the lookup path.
#[derive(Debug, Clone)]
pub(crate) struct LookupMetrics {
    /// Lookups served from the cache.
    pub(crate) cache_hits: Counter,
    /// Lookups that missed the cache (and joined or started a fetch).
    pub(crate) cache_misses: Counter,
    /// HTTP requests sent to origins.
    pub(crate) origin_requests: Counter,
    /// Origin requests that failed (transport error, bad status or invalid metainfo).
    pub(crate) origin_failures: Counter,
}

/// Finds metainfo: cache first, then the origins in the ring's order for the digest.
#[derive(Debug)]
pub(crate) struct MetaInfoSource {
    origins: Cluster,
    http: reqwest::Client,
    cache: Arc<Mutex<MetaCache>>,
    /// Keyed by namespace too: the origin resolves a blob through its namespace, so a lookup
    /// under a wrong namespace must not hand its 404 to a concurrent lookup under the right one.
    flight: SingleFlight<(RepoName, Digest), Result<Bytes, LookupError>>,
    metrics: LookupMetrics,
}

impl MetaInfoSource {
    pub(crate) fn new(
        origins: Cluster,
        timeout: Duration,
        cache_size: usize,
        metrics: LookupMetrics,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            origins,
            http,
            cache: Arc::new(Mutex::new(MetaCache::new(cache_size))),
            flight: SingleFlight::default(),
            metrics,
        })
    }

    /// Entries in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.cache.lock().len()
    }

    /// The origins that seed torrent `info_hash`, learned when its metainfo was fetched; empty
    /// if that metainfo is not cached (never fetched, or evicted) or no origin of it seeds.
    pub(crate) fn origin_peers(&self, info_hash: &InfoHash) -> Vec<PeerEntry> {
        self.cache.lock().origin_peers(info_hash)
    }

    /// The encoded metainfo of `digest`, fetched via `ns` on a cache miss. Concurrent misses
    /// for one blob share a single fetch, which runs to completion even if its callers go. The
    /// cache is keyed by digest alone: metainfo is content-addressed.
    pub(crate) async fn get(&self, ns: &RepoName, digest: Digest) -> Result<Bytes, LookupError> {
        if let Some(hit) = self.cache.lock().get(&digest) {
            self.metrics.cache_hits.inc();
            return Ok(hit);
        }
        self.metrics.cache_misses.inc();
        let fetch = Fetch {
            origins: self.origins.clone(),
            http: self.http.clone(),
            cache: Arc::clone(&self.cache),
            metrics: self.metrics.clone(),
            ns: ns.clone(),
            digest,
        };
        self.flight
            .run((ns.clone(), digest), move || fetch.run())
            .await
            .unwrap_or_else(|| {
                Err(LookupError::Unavailable(
                    "metainfo fetch task failed".into(),
                ))
            })
    }
}

/// One fetch of one digest, owning what it needs so it can run on its own task.
#[derive(Clone)]
struct Fetch {
    origins: Cluster,
    http: reqwest::Client,
    cache: Arc<Mutex<MetaCache>>,
    metrics: LookupMetrics,
    ns: RepoName,
    digest: Digest,
}

impl Fetch {
    async fn run(self) -> Result<Bytes, LookupError> {
        // A fetch that finished just before this one started has filled the cache.
        if let Some(hit) = self.cache.lock().get(&self.digest) {
            return Ok(hit);
        }
        let route = self.origins.route(self.digest.raw());
        if route.is_empty() {
            return Err(LookupError::Unavailable("no origins configured".into()));
        }
        let mut last_error = None;
        for node in route {
            let origin = node.base_url.as_str();
            self.metrics.origin_requests.inc();
            let answer = self.ask_origin(origin).await;
            match &answer {
                Err(_) => self.origins.report_failure(&node),
                Ok(_) => self.origins.report_success(&node),
            }
            match answer {
                Ok(Some(entry)) => {
                    let bytes = entry.metainfo.clone();
                    let info_hash = entry.info_hash;
                    // Cached before the flight ends, so no later caller refetches, and before
                    // the caller can announce, so the origin peer is handed out at once.
                    self.cache.lock().insert(self.digest, entry);
                    // The blob's other owners seed it too: learn them in the background, so
                    // the swarm keeps an origin if this one goes away mid-transfer.
                    tokio::spawn(self.clone().learn_other_owners(node.id.clone(), info_hash));
                    return Ok(bytes);
                }
                Ok(None) => {
                    tracing::debug!(%origin, digest = %self.digest, "origin does not have the blob");
                }
                Err(e) => {
                    self.metrics.origin_failures.inc();
                    tracing::warn!(%origin, digest = %self.digest, error = %e, "metainfo fetch failed, trying the next origin");
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            None => LookupError::NotFound(self.digest),
            Some(e) => LookupError::Unavailable(e),
        })
    }

    /// Asks the blob's other owners (healthy ones) for the metainfo and records those that seed
    /// the same torrent as further origin peers.
    async fn learn_other_owners(self, answered: String, info_hash: InfoHash) {
        let others: Vec<_> = self
            .origins
            .healthy_owners(self.digest.raw())
            .into_iter()
            .filter(|n| n.id != answered)
            .collect();
        for node in others {
            self.metrics.origin_requests.inc();
            match self.ask_origin(&node.base_url).await {
                Ok(Some(Entry {
                    info_hash: theirs,
                    origin_peers,
                    ..
                })) if theirs == info_hash => {
                    let mut cache = self.cache.lock();
                    for peer in origin_peers {
                        cache.add_origin_peer(&self.digest, info_hash, peer);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.origin_failures.inc();
                    tracing::debug!(origin = %node.id, digest = %self.digest, error = %e, "other owner did not confirm");
                }
            }
        }
    }

    /// `Ok(None)` on a 404; `Err` describes any other failure.
    async fn ask_origin(&self, origin: &str) -> Result<Option<Entry>, String> {
        let url = format!(
            "{origin}/v1/namespace/{}/blobs/{}/metainfo",
            self.ns.as_str().replace('/', "%2F"),
            self.digest
        );
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{origin}: {e}"))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(format!("{origin}: status {other}")),
        }
        let seeds = parse_origin_peer(resp.headers());
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_METAINFO_BYTES as u64)
        {
            return Err(format!(
                "{origin}: metainfo larger than {MAX_METAINFO_BYTES} bytes"
            ));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{origin}: {e}"))? {
            if body.len() + chunk.len() > MAX_METAINFO_BYTES {
                return Err(format!(
                    "{origin}: metainfo larger than {MAX_METAINFO_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        let meta = MetaInfo::decode(&body).map_err(|e| format!("{origin}: bad metainfo: {e}"))?;
        if meta.digest() != self.digest {
            return Err(format!(
                "{origin}: metainfo is for {}, not {}",
                meta.digest(),
                self.digest
            ));
        }
        let origin_peer = match seeds {
            Ok(Some((peer_id, addr))) => {
                tracing::debug!(%origin, digest = %self.digest, %peer_id, %addr, "origin seeds");
                Some(PeerEntry {
                    peer_id,
                    addr,
                    complete: true,
                    is_origin: true,
                    bytes_done: meta.layout().blob_len(),
                })
            }
            Ok(None) => {
                tracing::debug!(%origin, digest = %self.digest, "origin does not seed (no peer headers)");
                None
            }
            Err(e) => {
                tracing::debug!(%origin, digest = %self.digest, error = %e, "ignoring the origin's invalid peer headers");
                None
            }
        };
        Ok(Some(Entry {
            metainfo: body,
            info_hash: meta.info_hash(),
            origin_peers: origin_peer.into_iter().collect(),
        }))
    }
}

/// The origin's swarm identity from its metainfo response headers: `Ok(None)` when it sent
/// neither header (it does not seed), `Err` when a header is missing, repeated or invalid.
/// The address must name a concrete host and port (no `0.0.0.0`, `::` or port 0).
fn parse_origin_peer(headers: &HeaderMap) -> Result<Option<(PeerId, SocketAddr)>, String> {
    let one = |name: &str| -> Result<Option<&str>, String> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(format!("{name} sent more than once"));
        }
        value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| format!("{name} is not text"))
    };
    let (id, addr) = match (one(ORIGIN_PEER_ID_HEADER)?, one(ORIGIN_PEER_ADDR_HEADER)?) {
        (None, None) => return Ok(None),
        (Some(id), Some(addr)) => (id, addr),
        (Some(_), None) => return Err(format!("{ORIGIN_PEER_ADDR_HEADER} is missing")),
        (None, Some(_)) => return Err(format!("{ORIGIN_PEER_ID_HEADER} is missing")),
    };
    if id.len() != 64 {
        return Err(format!(
            "{ORIGIN_PEER_ID_HEADER} {id:?} is not 64 hex characters"
        ));
    }
    let peer_id: PeerId = id
        .parse()
        .map_err(|e| format!("{ORIGIN_PEER_ID_HEADER} {id:?}: {e}"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{ORIGIN_PEER_ADDR_HEADER} {addr:?} is not an ip:port"))?;
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(format!(
            "{ORIGIN_PEER_ADDR_HEADER} {addr} is not a reachable address"
        ));
    }
    Ok(Some((
        peer_id,
        SocketAddr::new(addr.ip().to_canonical(), addr.port()),
    )))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_peer_headers() {
        let id = "ab".repeat(32);
        let ok = |addr: &str| {
            parse_origin_peer(&headers(&[
                ("shoal-peer-id", &id),
                ("Shoal-Peer-Addr", addr),
            ]))
            .unwrap()
            .unwrap()
        };
        let (peer, addr) = ok("127.0.0.1:7101");
        assert_eq!(peer, PeerId::from_bytes([0xab; 32]));
        assert_eq!(addr, "127.0.0.1:7101".parse().unwrap());
        assert_eq!(ok("[::1]:7101").1, "[::1]:7101".parse().unwrap());
        assert_eq!(
            ok(" [::ffff:10.0.0.1]:80 ").1,
            "10.0.0.1:80".parse().unwrap()
        );
        assert_eq!(ok("10.0.0.1:80").0.to_string(), id);
        // Uppercase hex names the same id.
        let upper = parse_origin_peer(&headers(&[
            ("shoal-peer-id", &id.to_uppercase()),
            ("shoal-peer-addr", "10.0.0.1:80"),
        ]));
        assert_eq!(upper.unwrap().unwrap().0, peer);

        assert_eq!(parse_origin_peer(&HeaderMap::new()), Ok(None));
        let bad: [&[(&str, &str)]; 11] = [
            &[("shoal-peer-id", &id)],
            &[("shoal-peer-addr", "10.0.0.1:80")],
            &[
                ("shoal-peer-id", "abcd"),
                ("shoal-peer-addr", "10.0.0.1:80"),
            ],
            &[
                ("shoal-peer-id", &"zz".repeat(32)),
                ("shoal-peer-addr", "10.0.0.1:80"),
            ],
            &[
                ("shoal-peer-id", &"a".repeat(65)),
                ("shoal-peer-addr", "10.0.0.1:80"),
            ],
            &[("shoal-peer-id", &id), ("shoal-peer-addr", "10.0.0.1")],
            &[("shoal-peer-id", &id), ("shoal-peer-addr", "::1:7101")],
            &[
                ("shoal-peer-id", &id),
                ("shoal-peer-addr", "origin.example:7101"),
            ],
            &[("shoal-peer-id", &id), ("shoal-peer-addr", "0.0.0.0:7101")],
            &[("shoal-peer-id", &id), ("shoal-peer-addr", "10.0.0.1:0")],
            &[
                ("shoal-peer-id", &id),
                ("shoal-peer-addr", "10.0.0.1:80"),
                ("shoal-peer-addr", "10.0.0.2:80"),
            ],
        ];
        for pairs in bad {
            let got = parse_origin_peer(&headers(pairs));
            assert!(got.is_err(), "{pairs:?} gave {got:?}");
        }
    }
}
