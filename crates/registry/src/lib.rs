//! The OCI Distribution Spec v1.1 as a library: repository/reference/digest validation,
//! manifest parsing and validation, spec error bodies, and an axum [`router`] that serves the
//! `/v2/` API over any [`RegistryStore`].
//!
//! This crate is **not** a storage system: the proxy (push side, origins + build-index) and
//! the agent (pull side, the swarm + build-index) each implement [`RegistryStore`].

mod api;
pub mod error;
pub mod manifest;
mod store;

pub use api::{RegistryStats, router, router_with_stats};
pub use error::RegistryError;
pub use store::{ByteStream, ManifestRecord, OpenBlob, RegistryStore, UploadId};
