//! HTTPS on the admin port (`[admin.tls]`): a listener for `axum::serve` that yields
//! only streams whose TLS handshake has finished.
//!
//! Handshakes run in tasks of their own, at most `HANDSHAKES_MAX` at once, each bounded
//! by the endpoint's timeout, so one slow or hostile client never holds up the accept
//! loop or the operators behind it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::metrics::TLS_HANDSHAKE_FAILURES_TOTAL;
use crate::net::tls::TlsEndpoint;

/// Handshakes in progress at once; past it, accepting waits.
const HANDSHAKES_MAX: usize = 64;
/// Finished handshakes waiting for the HTTP server to take them.
const READY_MAX: usize = 64;

type Ready = (TlsStream<TcpStream>, SocketAddr);

pub struct TlsListener {
    ready: mpsc::Receiver<Ready>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` until `shutdown`.
    pub fn new(
        listener: TcpListener,
        endpoint: TlsEndpoint,
        shutdown: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_MAX);
        tokio::spawn(accept_loop(listener, Arc::new(endpoint), tx, shutdown));
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop ends only at shutdown, when the server stops asking.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    endpoint: Arc<TlsEndpoint>,
    ready: mpsc::Sender<Ready>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "admin: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (endpoint, ready) = (Arc::clone(&endpoint), ready.clone());
        tokio::spawn(async move {
            let handshake = endpoint.accept(stream).await;
            drop(slot);
            match handshake {
                Ok((stream, _)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Err(err) => {
                    metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => "admin", "reason" => err.reason())
                        .increment(1);
                    tracing::warn!(%peer, reason = err.reason(), error = %err, "admin: TLS refused");
                }
            }
        });
    }
}
