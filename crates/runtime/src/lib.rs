//! What every Shoal service binary needs, and nothing domain-specific.
//!
//! * [`config`]: load a TOML file into a service's config struct (unknown keys are errors).
//! * [`telemetry`]: human or JSON logs through `tracing`.
//! * [`metrics`] and [`admin`]: a per-service Prometheus registry and the `/health`,
//!   `/readiness` and `/metrics` routes.
//! * [`shutdown`]: SIGINT/SIGTERM → a `CancellationToken`, with a grace period to drain.
//! * [`wait`]: waiting on a condition with a timeout, for tests and start-up probes.
//! * [`flight`]: single-flight (concurrent callers for one key share one job) and [`range`]:
//!   HTTP `Range`/`Content-Range` parsing, shared by the HTTP services.
//! * [`queue`]: a durable task queue (task files, retries with backoff, resume after a
//!   restart, bounded concurrency), for the origin's write-back and replication and the
//!   build-index's tag replication.
//!
//! This crate knows nothing about blobs, peers or storage; services depend on it, never the
//! reverse.

pub mod admin;
pub mod config;
pub mod flight;
pub mod metrics;
pub mod queue;
pub mod range;
pub mod shutdown;
pub mod telemetry;
pub mod wait;

pub use tokio_util::sync::CancellationToken;
