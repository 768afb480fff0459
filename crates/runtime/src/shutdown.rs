//! Shutdown: a [`CancellationToken`] fired by SIGTERM (what Kubernetes sends) or Ctrl-C. Cancelling it starts the
//! drain: health goes NOT_SERVING, no new work is admitted, in-flight work finishes within the grace period
//! ([`crate::GrpcServer::serve`]).

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT: draining"),
                        _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM ({e}); Ctrl-C only");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        fire.cancel();
    });
    token
}

/// Admission state shared by a service's handlers: once the drain starts, new work is refused while work
/// already admitted keeps running.
#[derive(Clone, Debug)]
pub struct Drain(CancellationToken);

impl Drain {
    /// Follows `shutdown`.
    pub fn new(shutdown: &CancellationToken) -> Self {
        Self(shutdown.clone())
    }

    /// True once shutdown has started; handlers answer UNAVAILABLE to new requests.
    pub fn draining(&self) -> bool {
        self.0.is_cancelled()
    }
}
