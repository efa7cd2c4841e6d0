//! Signals → cancellation, with a grace period to drain.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The exit code for bad flags or config (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// Prints a usage or config error and returns [`EXIT_USAGE`].
pub fn usage_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_USAGE)
}

/// Runs a service on a multi-threaded Tokio runtime until it returns or a SIGINT/SIGTERM
/// arrives. On a signal the token passed to `service` is cancelled and the service gets `grace`
/// to drain; a second signal or the end of the grace period ends the process.
pub fn run_until_signal<F, Fut>(grace: Duration, service: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let token = CancellationToken::new();
        let mut task = tokio::spawn(service(token.clone()));
        tokio::select! {
            res = &mut task => return report(res),
            () = signal() => {
                tracing::info!(grace = ?grace, "shutdown signal received, draining");
                token.cancel();
            }
        }
        tokio::select! {
            res = &mut task => report(res),
            () = signal() => {
                tracing::warn!("second signal, exiting now");
                ExitCode::FAILURE
            }
            () = tokio::time::sleep(grace) => {
                tracing::warn!("grace period over, exiting with work still in flight");
                ExitCode::FAILURE
            }
        }
    })
}

fn report(res: Result<anyhow::Result<()>, tokio::task::JoinError>) -> ExitCode {
    match res {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!("fatal: {e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("service task failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
