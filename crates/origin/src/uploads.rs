//! Uploads in progress: an id → temporary blob map.
//!
//! A request that writes to an upload takes its [`TempBlob`] out of the map for the duration
//! (no lock is held while the body streams) and puts it back afterwards; a second concurrent
//! writer gets [`ApiError::UploadBusy`]. Uploads idle longer than the configured timeout are
//! reaped and their data deleted. Uploads do not survive a restart: clients start over.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_core::RepoName;
use shoal_store::TempBlob;
use tokio::time::Instant;

use crate::error::ApiError;

/// An upload id: 128 random bits as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UploadId([u8; 16]);

impl UploadId {
    fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({self})")
    }
}

impl FromStr for UploadId {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).map_err(|_| ApiError::UploadUnknown)?;
        Ok(Self(b))
    }
}

#[derive(Debug)]
struct Session {
    namespace: RepoName,
    /// `None` while a request is writing to it.
    temp: Option<TempBlob>,
    size: u64,
    last_active: Instant,
}

/// The uploads in progress.
#[derive(Debug)]
pub(crate) struct Uploads {
    sessions: Mutex<HashMap<UploadId, Session>>,
    idle_timeout: Duration,
}

/// An upload taken out of the map by one request.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) id: UploadId,
    pub(crate) temp: TempBlob,
}

impl Uploads {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Self {
            sessions: Mutex::default(),
            idle_timeout,
        }
    }

    /// Registers a new upload.
    pub(crate) fn start(&self, namespace: RepoName, temp: TempBlob) -> UploadId {
        let id = UploadId::random();
        self.sessions.lock().insert(
            id,
            Session {
                namespace,
                size: temp.len(),
                temp: Some(temp),
                last_active: Instant::now(),
            },
        );
        id
    }

    /// Bytes received so far.
    pub(crate) fn size(&self, id: UploadId, namespace: &RepoName) -> Result<u64, ApiError> {
        let mut sessions = self.sessions.lock();
        let s = find(&mut sessions, id, namespace)?;
        s.last_active = Instant::now();
        Ok(s.size)
    }

    /// Takes the upload's blob out for writing.
    pub(crate) fn checkout(
        &self,
        id: UploadId,
        namespace: &RepoName,
    ) -> Result<Checkout, ApiError> {
        let mut sessions = self.sessions.lock();
        let s = find(&mut sessions, id, namespace)?;
        let temp = s.temp.take().ok_or(ApiError::UploadBusy)?;
        s.last_active = Instant::now();
        Ok(Checkout { id, temp })
    }

    /// Puts a checked-out blob back.
    pub(crate) fn checkin(&self, checkout: Checkout) {
        if let Some(s) = self.sessions.lock().get_mut(&checkout.id) {
            s.size = checkout.temp.len();
            s.temp = Some(checkout.temp);
            s.last_active = Instant::now();
        }
    }

    /// Forgets an upload (completed, cancelled, or broken); its data is deleted unless the
    /// caller holds the checked-out blob.
    pub(crate) fn remove(&self, id: UploadId) {
        self.sessions.lock().remove(&id);
    }

    /// Cancels an upload that is not being written to.
    pub(crate) fn cancel(&self, id: UploadId, namespace: &RepoName) -> Result<(), ApiError> {
        let mut sessions = self.sessions.lock();
        let s = find(&mut sessions, id, namespace)?;
        if s.temp.is_none() {
            return Err(ApiError::UploadBusy);
        }
        sessions.remove(&id);
        Ok(())
    }

    /// Deletes uploads idle for longer than the timeout; returns how many.
    pub(crate) fn reap(&self, now: Instant) -> usize {
        let mut sessions = self.sessions.lock();
        let before = sessions.len();
        sessions.retain(|_, s| {
            s.temp.is_none() || now.duration_since(s.last_active) < self.idle_timeout
        });
        before - sessions.len()
    }

    /// Uploads in progress.
    pub(crate) fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

fn find<'a>(
    sessions: &'a mut HashMap<UploadId, Session>,
    id: UploadId,
    namespace: &RepoName,
) -> Result<&'a mut Session, ApiError> {
    match sessions.get_mut(&id) {
        Some(s) if s.namespace == *namespace => Ok(s),
        _ => Err(ApiError::UploadUnknown),
    }
}
