//! The checks, one module per category, and what they share: the run context, the recorder
//! that applies skip rules and times checks, and push/pull helpers.

mod bad_input;
mod catalog;
mod discovery;
mod management;
mod pull;
mod push;
mod push_manifests;

use std::future::Future;
use std::time::Instant;

pub use catalog::CATALOG;

use crate::data::{ACCEPT_MANIFESTS, Blob, Manifest, digest_matches};
use crate::http::{Endpoint, Resp, with_query};
use crate::report::{CheckResult, Outcome, Report};
use crate::{Category, SuiteConfig};

/// What every check can use.
pub(crate) struct Ctx {
    /// The registry under test.
    pub(crate) target: Endpoint,
    /// Where setup content goes (the target, unless it is read-only).
    pub(crate) setup: Endpoint,
    /// The run's namespace.
    pub(crate) ns: String,
    /// The target refuses pushes and deletes.
    pub(crate) read_only: bool,
    /// The run's random seed (content differs per run).
    pub(crate) seed: u64,
}

impl Ctx {
    /// `<namespace>/<name>`.
    pub(crate) fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }

    /// A unique pseudo-random seed for content `n` of this run.
    pub(crate) fn seed(&self, n: u64) -> u64 {
        self.seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A config unique to this run, labelled `label`.
    pub(crate) fn config(&self, label: &str) -> Blob {
        crate::data::config(&format!("shoal-conformance {label} {:016x}", self.seed))
    }
}

/// Records outcomes, applying the configuration's skip rules.
pub(crate) struct Recorder<'a> {
    config: &'a SuiteConfig,
    results: Vec<CheckResult>,
}

impl<'a> Recorder<'a> {
    fn new(config: &'a SuiteConfig) -> Self {
        Self {
            config,
            results: Vec::new(),
        }
    }

    /// Runs check `id` (unless a skip rule covers it) and records its outcome; whether it
    /// passed. `check` is not polled when skipped.
    pub(crate) async fn check(
        &mut self,
        id: &'static str,
        check: impl Future<Output = Result<(), String>>,
    ) -> bool {
        if let Some(rule) = self.config.skip_rule(id) {
            let reason = rule.reason.clone();
            self.record(id, Outcome::Skip(reason), Instant::now());
            return false;
        }
        let start = Instant::now();
        let outcome = match check.await {
            Ok(()) => Outcome::Pass,
            Err(message) => Outcome::Fail(message),
        };
        let passed = outcome == Outcome::Pass;
        self.record(id, outcome, start);
        passed
    }

    /// Records check `id` as not applicable.
    pub(crate) fn not_applicable(&mut self, id: &'static str, reason: &str) {
        self.record(id, Outcome::Skip(reason.to_owned()), Instant::now());
    }

    fn record(&mut self, id: &'static str, outcome: Outcome, start: Instant) {
        let category = id
            .split_once('/')
            .and_then(|(c, _)| c.parse().ok())
            .unwrap_or(Category::BadInput);
        let title = catalog::title(id).unwrap_or(id);
        self.results.push(CheckResult {
            id: id.to_owned(),
            category,
            title: title.to_owned(),
            outcome,
            elapsed: start.elapsed(),
        });
    }
}

/// Runs every configured category.
pub(crate) async fn run(config: &SuiteConfig) -> Report {
    let mut rec = Recorder::new(config);
    let endpoints = Endpoint::new(&config.base_url).and_then(|target| {
        let setup = match &config.push_url {
            Some(url) => Endpoint::new(url)?,
            None => target.clone(),
        };
        Ok((target, setup))
    });
    let (target, setup) = match endpoints {
        Ok(e) => e,
        Err(e) => {
            rec.check("pull/base", async { Err(e) }).await;
            return Report {
                results: rec.results,
            };
        }
    };
    let ctx = Ctx {
        target,
        setup,
        ns: config.namespace.clone(),
        read_only: config.read_only,
        seed: crate::data::random_u64(),
    };
    for category in Category::ALL {
        if !config.categories.contains(&category) {
            continue;
        }
        match category {
            Category::Pull => pull::run(&ctx, &mut rec).await,
            Category::Push => push::run(&ctx, &mut rec).await,
            Category::Discovery => discovery::run(&ctx, &mut rec).await,
            Category::Management => management::run(&ctx, &mut rec).await,
            Category::BadInput => bad_input::run(&ctx, &mut rec).await,
        }
    }
    Report {
        results: rec.results,
    }
}

/// `/v2/<repo>/blobs/<digest>`.
pub(crate) fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// `/v2/<repo>/manifests/<reference>`.
pub(crate) fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

/// `/v2/<repo>/blobs/uploads/`.
pub(crate) fn uploads_path(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

/// Starts an upload session: 202 with a `Location`, which is returned.
pub(crate) async fn start_upload(ep: &Endpoint, repo: &str) -> Result<String, String> {
    let resp = ep
        .send(ep.post(&uploads_path(repo)).header("content-length", "0"))
        .await?;
    resp.expect(&[202])?;
    Ok(resp.required_header("location")?.to_owned())
}

/// Pushes `blob` with `POST` then `PUT` (the one upload every registry must support).
pub(crate) async fn push_blob(ep: &Endpoint, repo: &str, blob: &Blob) -> Result<(), String> {
    let location = start_upload(ep, repo).await?;
    let resp = ep
        .send(
            ep.put(&with_query(&location, "digest", &blob.digest))
                .header("content-type", "application/octet-stream")
                .body(blob.bytes.clone()),
        )
        .await?;
    resp.expect(&[201])?;
    Ok(())
}

/// Pushes every blob.
pub(crate) async fn push_blobs(ep: &Endpoint, repo: &str, blobs: &[&Blob]) -> Result<(), String> {
    for blob in blobs {
        push_blob(ep, repo, blob).await?;
    }
    Ok(())
}

/// `PUT`s `manifest` under `reference` with its media type as `Content-Type`: 201.
pub(crate) async fn push_manifest(
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
) -> Result<Resp, String> {
    let resp = put_manifest(ep, repo, reference, manifest).await?;
    resp.expect(&[201])?;
    Ok(resp)
}

/// `PUT`s `manifest` under `reference` and returns whatever comes back.
pub(crate) async fn put_manifest(
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
) -> Result<Resp, String> {
    ep.send(
        ep.put(&manifest_path(repo, reference))
            .header("content-type", manifest.media_type.as_str())
            .body(manifest.bytes.clone()),
    )
    .await
}

/// `GET` (or `HEAD`) of a manifest, accepting every manifest type.
pub(crate) async fn fetch_manifest(
    ep: &Endpoint,
    repo: &str,
    reference: &str,
    head: bool,
) -> Result<Resp, String> {
    let path = manifest_path(repo, reference);
    let rb = if head { ep.head(&path) } else { ep.get(&path) };
    ep.send(rb.header("accept", ACCEPT_MANIFESTS)).await
}

/// A `Docker-Content-Digest`, if present, is a digest of `data` (the spec lets it use another
/// algorithm than the one asked for, but it must match the content).
pub(crate) fn check_digest_header(resp: &Resp, data: &[u8]) -> Result<(), String> {
    match resp.header("docker-content-digest") {
        Some(d) if !digest_matches(d, data) => Err(format!(
            "{}: Docker-Content-Digest {d} is not the digest of the content",
            resp.what
        )),
        _ => Ok(()),
    }
}

/// `Content-Length` is `len`.
pub(crate) fn check_length(resp: &Resp, len: usize) -> Result<(), String> {
    let got = resp.required_header("content-length")?;
    if got.trim() == len.to_string() {
        Ok(())
    } else {
        Err(format!(
            "{}: Content-Length {got}, expected {len}",
            resp.what
        ))
    }
}

/// A `HEAD` answer has no body.
pub(crate) fn check_no_body(resp: &Resp) -> Result<(), String> {
    if resp.body.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: a HEAD answer has a {}-byte body",
            resp.what,
            resp.body.len()
        ))
    }
}

/// A blob `GET` (or `HEAD`) answer for `blob`: 200, its length, digest and (GET) bytes.
pub(crate) fn check_blob(resp: &Resp, blob: &Blob, head: bool) -> Result<(), String> {
    resp.expect(&[200])?;
    check_length(resp, blob.bytes.len())?;
    check_digest_header(resp, &blob.bytes)?;
    if head {
        check_no_body(resp)
    } else if resp.body == blob.bytes && resp.body_error.is_none() {
        Ok(())
    } else {
        Err(format!(
            "{}: body differs from the pushed blob ({} bytes, expected {})",
            resp.what,
            resp.body.len(),
            blob.bytes.len()
        ))
    }
}

/// A manifest `GET` (or `HEAD`) answer for `manifest`: 200, its media type as
/// `Content-Type`, its length, its digest and (GET) its exact bytes.
pub(crate) fn check_manifest(resp: &Resp, manifest: &Manifest, head: bool) -> Result<(), String> {
    resp.expect(&[200])?;
    let ct = resp.content_type().unwrap_or_default();
    if ct != manifest.media_type {
        return Err(format!(
            "{}: Content-Type {ct:?}, expected {:?}",
            resp.what, manifest.media_type
        ));
    }
    check_length(resp, manifest.bytes.len())?;
    check_digest_header(resp, &manifest.bytes)?;
    if head {
        check_no_body(resp)
    } else if resp.body == manifest.bytes && resp.body_error.is_none() {
        Ok(())
    } else {
        Err(format!(
            "{}: body differs from the pushed manifest (the registry must store it byte for byte)",
            resp.what
        ))
    }
}

/// `GET /v2/` still answers 200 (after a hostile request).
pub(crate) async fn still_serving(ctx: &Ctx) -> Result<(), String> {
    let resp = ctx.target.send(ctx.target.get("/v2/")).await?;
    resp.expect(&[200])
        .map(|_| ())
        .map_err(|e| format!("the registry stopped serving: {e}"))
}

/// Deletes manifests then blobs, ignoring failures (cleanup after a category).
pub(crate) async fn cleanup(ep: &Endpoint, repo: &str, manifests: &[&str], blobs: &[&str]) {
    for m in manifests {
        let _ = ep.send(ep.delete(&manifest_path(repo, m))).await;
    }
    for b in blobs {
        let _ = ep.send(ep.delete(&blob_path(repo, b))).await;
    }
}
