//! Accepting connections: one task per listener, a bounded number of connections, and
//! a clean stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection;
use crate::authoriser::AuthoriserHandle;
use crate::config::ListenerConfig;
use crate::policy::Policy;

/// What every connection needs. `authoriser: None` is the echo baseline: the same
/// listeners, framing and codec, answering 00 without policy or ledger.
pub struct NetContext {
    pub authoriser: Option<AuthoriserHandle>,
    pub policy: Arc<Policy>,
}

impl NetContext {
    /// The acquirer link's amount exponent, for F54.
    pub fn exponent(&self, acquirer: &str) -> u32 {
        self.policy
            .acquirers
            .get(acquirer)
            .map_or(0, |a| a.amount_exponent)
    }
}

pub async fn serve_listener(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    ctx: Arc<NetContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(config.connections_max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %config.name, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(listener = %config.name, %peer, limit = config.connections_max, "connection limit reached: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (config, ctx, shutdown) = (Arc::clone(&config), Arc::clone(&ctx), shutdown.clone());
        tracker.spawn(async move {
            tracing::debug!(listener = %config.name, %peer, "connection opened");
            connection::run(stream, &config, ctx, shutdown).await;
            tracing::debug!(listener = %config.name, %peer, "connection closed");
            drop(slot);
        });
    }
    tracing::info!(listener = %config.name, "listener stopped accepting");
}
