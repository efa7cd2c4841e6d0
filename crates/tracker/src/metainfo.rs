//! Metainfo lookup: a bounded LRU cache in front of the origins, one fetch per digest at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use shoal_core::{Digest, MetaInfo, RepoName};

use crate::flight::SingleFlight;

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

/// Finds metainfo: cache first, then the origins in order.
#[derive(Debug)]
pub(crate) struct MetaInfoSource {
    origins: Arc<[String]>,
    http: reqwest::Client,
    cache: Arc<Mutex<Lru>>,
    /// Keyed by namespace too: the origin resolves a blob through its namespace, so a lookup
    /// under a wrong namespace must not hand its 404 to a concurrent lookup under the right one.
    flight: SingleFlight<(RepoName, Digest), Result<Bytes, LookupError>>,
    metrics: LookupMetrics,
}

impl MetaInfoSource {
    pub(crate) fn new(
        origins: Vec<String>,
        timeout: Duration,
        cache_size: usize,
        metrics: LookupMetrics,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        let origins = origins
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        Ok(Self {
            origins,
            http,
            cache: Arc::new(Mutex::new(Lru::new(cache_size))),
            flight: SingleFlight::default(),
            metrics,
        })
    }

    /// Entries in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.cache.lock().len()
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
            origins: Arc::clone(&self.origins),
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
struct Fetch {
    origins: Arc<[String]>,
    http: reqwest::Client,
    cache: Arc<Mutex<Lru>>,
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
        if self.origins.is_empty() {
            return Err(LookupError::Unavailable("no origins configured".into()));
        }
        let mut last_error = None;
        for origin in self.origins.iter() {
            self.metrics.origin_requests.inc();
            match self.ask_origin(origin).await {
                Ok(Some(bytes)) => {
                    // Cached before the flight ends, so no later caller refetches.
                    self.cache.lock().insert(self.digest, bytes.clone());
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

    /// `Ok(None)` on a 404; `Err` describes any other failure.
    async fn ask_origin(&self, origin: &str) -> Result<Option<Bytes>, String> {
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
        Ok(Some(body))
    }
}

/// A least-recently-used map of digest → encoded metainfo with a fixed entry capacity.
#[derive(Debug)]
struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<Digest, (Bytes, u64)>,
    /// Last-use tick → digest, oldest first.
    order: BTreeMap<u64, Digest>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn get(&mut self, key: &Digest) -> Option<Bytes> {
        let tick = self.next_tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *key);
        Some(value.clone())
    }

    fn insert(&mut self, key: Digest, value: Bytes) {
        let tick = self.next_tick();
        if let Some((_, old)) = self.entries.insert(key, (value, tick)) {
            self.order.remove(&old);
        }
        self.order.insert(tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::Algorithm;

    use super::*;

    fn d(n: u8) -> Digest {
        Digest::compute(Algorithm::Sha256, &[n])
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.insert(d(1), Bytes::from_static(b"1"));
        lru.insert(d(2), Bytes::from_static(b"2"));
        assert_eq!(lru.get(&d(1)).as_deref(), Some(&b"1"[..]));
        lru.insert(d(3), Bytes::from_static(b"3"));
        assert_eq!(lru.len(), 2);
        assert!(lru.get(&d(2)).is_none(), "2 was least recently used");
        assert!(lru.get(&d(1)).is_some() && lru.get(&d(3)).is_some());
        lru.insert(d(3), Bytes::from_static(b"3b"));
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.order.len(), 2);
        assert_eq!(lru.get(&d(3)).as_deref(), Some(&b"3b"[..]));
    }
}
