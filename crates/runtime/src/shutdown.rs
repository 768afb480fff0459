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

    /// What a handler serves with (`loaded`, set once the stage's load finished), or why a new call is refused:
    /// draining, or still loading.
    pub fn ready<'a, T>(&self, loaded: &'a std::sync::OnceLock<T>) -> Result<&'a T, crate::status::Refusal> {
        if self.draining() {
            return Err(crate::status::Refusal::Draining);
        }
        loaded.get().ok_or(crate::status::Refusal::NotReady)
    }
}
