//! The `/v2/` API driven over real HTTP against an in-memory store, modelled on the OCI
//! distribution-spec conformance suite (pull, push, content discovery, content management).
#![allow(clippy::unwrap_used)]

mod discovery;
mod management;
mod mem;
mod pull;
mod push;
mod support;
mod validation;
