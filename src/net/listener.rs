//! Accepting connections: one task per listener, a bounded number of connections, and
//! a clean stop on shutdown. With TLS, each connection's task does its own handshake,
//! so a slow or hostile peer holds up only itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection;
use super::tls::TlsEndpoint;
use crate::admin::metrics::{CONNECTIONS, CONNECTIONS_REFUSED_TOTAL, TLS_HANDSHAKE_FAILURES_TOTAL};
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

    /// The `channel` label of a request: the channel its MCC selects (the first
    /// programme that has it), `other` for an MCC no channel takes, `none` without one.
    pub fn channel_label(&self, mcc: Option<u16>) -> metrics::SharedString {
        let Some(mcc) = mcc else {
            return metrics::SharedString::const_str("none");
        };
        self.policy
            .programmes
            .iter()
            .find_map(|p| p.channel_for_mcc(mcc))
            .map_or(metrics::SharedString::const_str("other"), |(_, c)| {
                c.name.clone().into()
            })
    }
}

/// Accepts until shutdown. `tls` is the listener's TLS endpoint when `[listeners.tls]`
/// is set; every connection then goes through its handshake first.
pub async fn serve_listener(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    tls: Option<Arc<TlsEndpoint>>,
    ctx: Arc<NetContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(config.connections_max));
    let connections = metrics::gauge!(CONNECTIONS, "listener" => config.name.clone());
    let refused = metrics::counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => config.name.clone());
    // Shown at zero from the start, so the dashboard lists every listener.
    connections.set(0.0);
    refused.absolute(0);
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
            refused.increment(1);
            tracing::warn!(listener = %config.name, %peer, limit = config.connections_max, "connection limit reached: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (config, ctx, shutdown) = (Arc::clone(&config), Arc::clone(&ctx), shutdown.clone());
        let (connections, tls) = (connections.clone(), tls.clone());
        tracker.spawn(async move {
            connections.increment(1.0);
            tracing::debug!(listener = %config.name, %peer, "connection opened");
            match tls {
                Some(tls) => serve_tls(stream, peer, &config, &tls, ctx, shutdown).await,
                None => connection::run(stream.into_split(), &config, ctx, shutdown, None).await,
            }
            tracing::debug!(listener = %config.name, %peer, "connection closed");
            connections.decrement(1.0);
            drop(slot);
        });
    }
    tracing::info!(listener = %config.name, "listener stopped accepting");
}

/// The handshake (bounded by the endpoint's timeout, cut short by shutdown), then the
/// connection bound to its acquirer. A failed handshake closes this connection only.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ListenerConfig,
    tls: &TlsEndpoint,
    ctx: Arc<NetContext>,
    shutdown: CancellationToken,
) {
    let accepted = tokio::select! {
        _ = shutdown.cancelled() => return,
        accepted = tls.accept(stream) => accepted,
    };
    match accepted {
        Ok((stream, acquirer)) => {
            tracing::debug!(listener = %config.name, %peer, acquirer = acquirer.as_deref().unwrap_or("-"), "TLS established");
            let halves = tokio::io::split(stream);
            connection::run(halves, config, ctx, shutdown, acquirer).await;
        }
        Err(err) => {
            metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => config.name.clone(), "reason" => err.reason())
                .increment(1);
            tracing::warn!(listener = %config.name, %peer, reason = err.reason(), error = %err, "TLS refused: connection closed");
        }
    }
}
