//! The whole-blob check on a thread of its own, at background CPU priority.
//!
//! When a download's last piece lands, the agent fsyncs the blob and, unless its metainfo is a
//! SHA-256 chain whose piece checks already proved the digest, re-reads and re-hashes the whole
//! blob before publishing it. That is bulk work nobody waits for: clients streaming the blob already have
//! (or are reading) verified pieces, and peers are served from the partial file meanwhile. On
//! a host short of CPU it should not slow those down. It runs on a short-lived thread whose
//! nice value is raised (Linux), rather than on the blocking pool: lowering a thread's nice
//! value again needs privileges, and pool threads go on to write pieces.

use std::thread;

use tokio::sync::oneshot;

/// The nice value of the verification thread (0 is normal, 19 the lowest priority).
const BACKGROUND_NICE: i32 = 10;

/// Runs `work` on a new thread at background priority and waits for its result; `Err` if the
/// thread cannot be started or dies.
pub(crate) async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work());
        })
        .map_err(|e| format!("starting the {name} thread: {e}"))?;
    rx.await.map_err(|_| format!("the {name} thread died"))
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux `setpriority(PRIO_PROCESS, tid)` sets one thread's nice value.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
        tracing::debug!("cannot lower the verification thread's priority: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_the_work_at_background_priority() {
        let (value, nice) = super::run("test-background", || {
            #[cfg(target_os = "linux")]
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
            #[cfg(not(target_os = "linux"))]
            let nice: Option<i32> = None;
            (42, nice)
        })
        .await
        .expect("the thread runs");
        assert_eq!(value, 42);
        if cfg!(target_os = "linux") {
            assert_eq!(nice, Some(super::BACKGROUND_NICE));
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_hang() {
        let r = super::run("test-panic", || -> u32 { panic!("boom") }).await;
        assert!(r.is_err());
    }
}
