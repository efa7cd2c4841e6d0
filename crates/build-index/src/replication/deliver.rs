//! Delivering one tag to a remote zone.
//!
//! 1. Walk the tag's manifest from the local origin: parse it, and recurse into the children
//!    of an index, collecting every manifest and every blob (config and layers) it needs.
//! 2. Make sure the remote zone's origins hold each of them (manifests are blobs too): a
//!    `HEAD` on each remote origin, and when none has it, a streamed `GET` from the local
//!    origin piped into a `PUT` on the first remote origin that accepts it. Nothing buffers a
//!    blob; only manifests (at most 4 MiB each) are read into memory.
//! 3. Record every manifest on the remote build-index, children before parents, then the tag
//!    with its generation (a replicated write: the remote applies it only if it is newer and
//!    never replicates it further).
//!
//! Every step is idempotent, so a delivery interrupted anywhere is simply run again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use shoal_build_index_api::{BuildIndexClient, ClientError, ManifestRecord};
use shoal_core::{Digest, RepoName};
use shoal_origin_client::{OriginClient, OriginClientError, OriginPool};
use shoal_registry::manifest::{Descriptor, MAX_MANIFEST_BYTES, Manifest, ManifestError};

use super::Task;
use crate::store::{RecordStore, StoreError};

/// Most manifests one tag may reference (an index and its children); a guard against
/// pathological indexes.
const MAX_MANIFESTS: usize = 1024;

/// Why a delivery failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// No local origin is configured to read manifests and blobs from.
    #[error("no local origin configured")]
    NoLocalOrigin,
    /// A URL in a rule or task is invalid.
    #[error("{0}")]
    Url(String),
    /// The local origin failed.
    #[error("local origin: {0}")]
    LocalOrigin(#[source] OriginClientError),
    /// The local origin does not have content the tag needs.
    #[error("{0} is not on the local origin")]
    Missing(Digest),
    /// Manifest bytes from the local origin do not hash to their digest.
    #[error("manifest {0} from the local origin does not match its digest")]
    Corrupt(Digest),
    /// A manifest could not be parsed.
    #[error("manifest {digest}: {source}")]
    Manifest {
        /// The manifest.
        digest: Digest,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// The tag references more manifests than allowed.
    #[error("more than {MAX_MANIFESTS} manifests")]
    TooManyManifests,
    /// No remote origin accepted a blob.
    #[error("remote origins: {0}")]
    RemoteOrigin(#[source] OriginClientError),
    /// The remote build-index failed or refused.
    #[error("remote build-index: {0}")]
    RemoteIndex(#[source] ClientError),
    /// Reading a local manifest record failed.
    #[error("local records: {0}")]
    Local(#[source] StoreError),
}

/// What deliveries need: the local origin and records, and clients of remote zones.
#[derive(Debug)]
pub(crate) struct Delivery {
    local_origin: Option<OriginPool>,
    store: Arc<RecordStore>,
    blob_concurrency: usize,
    indexes: Mutex<HashMap<String, BuildIndexClient>>,
    origins: Mutex<HashMap<String, OriginClient>>,
    blobs_copied: Counter,
}

impl Delivery {
    /// `local_origin` is this zone's origins' ring.
    pub(crate) fn new(
        local_origin: Option<OriginPool>,
        store: Arc<RecordStore>,
        blob_concurrency: usize,
        blobs_copied: Counter,
    ) -> Result<Self, DeliveryError> {
        Ok(Self {
            local_origin,
            store,
            blob_concurrency: blob_concurrency.max(1),
            indexes: Mutex::default(),
            origins: Mutex::default(),
            blobs_copied,
        })
    }

    /// Checks (and caches clients for) a rule's URLs.
    pub(crate) fn check_urls(
        &self,
        build_index: &str,
        origins: &[String],
    ) -> Result<(), DeliveryError> {
        self.index_client(build_index)?;
        for o in origins {
            self.origin_client(o)?;
        }
        Ok(())
    }

    fn index_client(&self, url: &str) -> Result<BuildIndexClient, DeliveryError> {
        let mut clients = self.indexes.lock();
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let c = BuildIndexClient::new(url).map_err(|e| DeliveryError::Url(e.to_string()))?;
        clients.insert(url.to_owned(), c.clone());
        Ok(c)
    }

    fn origin_client(&self, url: &str) -> Result<OriginClient, DeliveryError> {
        let mut clients = self.origins.lock();
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let c = OriginClient::new(url).map_err(|e| DeliveryError::Url(e.to_string()))?;
        clients.insert(url.to_owned(), c.clone());
        Ok(c)
    }

    /// Copies the task's tag, with everything it references, to the task's remote zone.
    pub(crate) async fn deliver(&self, task: &Task) -> Result<(), DeliveryError> {
        let local = self
            .local_origin
            .as_ref()
            .ok_or(DeliveryError::NoLocalOrigin)?;
        let remote_index = self.index_client(&task.build_index)?;
        let remote_origins = task
            .origins
            .iter()
            .map(|u| self.origin_client(u))
            .collect::<Result<Vec<_>, _>>()?;
        if remote_origins.is_empty() {
            return Err(DeliveryError::Url("the task names no remote origin".into()));
        }
        let repo = &task.repository;

        let (manifests, blobs) = self.collect(local, repo, task.record.digest).await?;
        let content: Vec<Digest> = blobs
            .into_iter()
            .chain(manifests.iter().map(|m| m.descriptor.digest))
            .collect();
        let remotes = remote_origins.as_slice();
        futures_util::stream::iter(content)
            .map(|d| async move { self.ensure_remote(local, remotes, repo, &d).await })
            .buffer_unordered(self.blob_concurrency)
            .try_collect::<()>()
            .await?;

        for record in manifests.iter().rev() {
            remote_index
                .put_manifest(repo, record)
                .await
                .map_err(DeliveryError::RemoteIndex)?;
        }
        remote_index
            .replicate_tag(repo, &task.tag, &task.record)
            .await
            .map_err(DeliveryError::RemoteIndex)
    }

    /// Every manifest reachable from `root` (parents before children) and every blob they
    /// reference, without duplicates.
    async fn collect(
        &self,
        local: &OriginPool,
        repo: &RepoName,
        root: Digest,
    ) -> Result<(Vec<ManifestRecord>, Vec<Digest>), DeliveryError> {
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        let mut seen_blobs = HashSet::new();
        let mut seen = HashSet::from([root]);
        let mut queue = std::collections::VecDeque::from([root]);
        while let Some(digest) = queue.pop_front() {
            let bytes = first_local(local, &digest, |c| {
                let (repo, digest) = (repo.clone(), digest);
                async move { c.get_bytes(&repo, &digest, MAX_MANIFEST_BYTES).await }
            })
            .await?;
            if Digest::compute(digest.algorithm(), &bytes) != digest {
                return Err(DeliveryError::Corrupt(digest));
            }
            let manifest = Manifest::parse(None, &bytes)
                .map_err(|source| DeliveryError::Manifest { digest, source })?;
            for child in manifest.children() {
                if seen.insert(child) {
                    if seen.len() > MAX_MANIFESTS {
                        return Err(DeliveryError::TooManyManifests);
                    }
                    queue.push_back(child);
                }
            }
            for blob in manifest.blobs() {
                if seen_blobs.insert(blob) {
                    blobs.push(blob);
                }
            }
            let record = match self
                .store
                .read_manifest(repo, &digest)
                .await
                .map_err(DeliveryError::Local)?
            {
                Some(record) => record,
                None => derive_record(digest, bytes.len(), &manifest),
            };
            manifests.push(record);
        }
        Ok((manifests, blobs))
    }

    /// Makes sure one of `remotes` holds `digest`, copying it from the local origin if none
    /// does.
    async fn ensure_remote(
        &self,
        local: &OriginPool,
        remotes: &[OriginClient],
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), DeliveryError> {
        let mut last_error = None;
        for remote in remotes {
            match remote.stat(repo, digest).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
        }
        for remote in remotes {
            let (size, body) = first_local(local, digest, |c| {
                let (repo, digest) = (repo.clone(), *digest);
                async move { c.get(&repo, &digest).await }
            })
            .await?;
            match remote.put(repo, digest, body, Some(size)).await {
                Ok(_) => {
                    self.blobs_copied.inc();
                    tracing::debug!(repository = %repo, %digest, size, remote = remote.base_url(),
                        "blob copied to remote origin");
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(DeliveryError::RemoteOrigin(last_error.unwrap_or_else(
            || OriginClientError::InvalidUrl("no remote origin".into()),
        )))
    }
}

/// Reads `digest` from the zone's origins in the ring's order (owners first): the first origin
/// that has it answers; unavailable origins are skipped. `Missing` if every origin answered
/// without it, the last failure if none answered.
async fn first_local<T, F, Fut>(
    local: &OriginPool,
    digest: &Digest,
    mut op: F,
) -> Result<T, DeliveryError>
where
    F: FnMut(OriginClient) -> Fut,
    Fut: Future<Output = Result<Option<T>, OriginClientError>>,
{
    let mut last_error = None;
    for (node, client) in local.route(digest) {
        let result = op(client).await;
        local.report(&node, &result);
        match result {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.map_or(DeliveryError::Missing(*digest), DeliveryError::LocalOrigin))
}

/// A manifest record built from the manifest itself (when the local build-index has none).
fn derive_record(digest: Digest, size: usize, manifest: &Manifest) -> ManifestRecord {
    ManifestRecord {
        descriptor: Descriptor {
            media_type: manifest.media_type.clone(),
            digest,
            size: size as u64,
            artifact_type: manifest.artifact_type.clone(),
            annotations: manifest.annotations.clone(),
            platform: None,
            urls: None,
        },
        subject: manifest.subject.as_ref().map(|s| s.digest),
    }
}
