//! Graceful shutdown: one [`CancellationToken`] per process, cancelled on SIGTERM or Ctrl-C.
//! Every component watches it, stops taking new work, finishes or hands back what it holds,
//! commits its progress and returns.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled when the process is asked to stop.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing in-flight work");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs `attempt` until `shutdown`, again after `retry` whenever it ends: a background task that
/// listens for as long as the process lives, and starts over when its connection fails. A
/// failure is logged with `what` (what the task was doing).
pub async fn retry_until_shutdown<F, Fut, E>(what: &str, retry: Duration, shutdown: &CancellationToken, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    while !shutdown.is_cancelled() {
        let outcome = tokio::select! {
            outcome = attempt() => outcome,
            _ = shutdown.cancelled() => return,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "{what} failed; trying again shortly");
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
