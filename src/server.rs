//! `multiguna serve`: the ledger, the authoriser and the ISO 8583 listeners, wired
//! together, with a graceful stop that drains what is in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authoriser::{self, AuthoriserConfig};
use crate::config::Config;
use crate::ledger::Db;
use crate::net::{serve_listener, NetContext};
use crate::policy::Policy;

/// Runs until `shutdown` is cancelled; then stops accepting, answers what is in
/// flight, commits, and returns. `on_ready` gets each listener's bound address.
pub async fn run(
    config: Config,
    echo: bool,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&[(String, SocketAddr)]),
) -> anyhow::Result<()> {
    let policy = Arc::new(Policy::from_config(&config).map_err(anyhow::Error::msg)?);
    let (authoriser, authoriser_join) = if echo {
        (None, None)
    } else {
        let db = Db::connect(&config.database.url).await?;
        db.migrate().await?;
        db.ensure_reference_accounts(&config).await?;
        let (handle, join) = authoriser::start(
            db,
            Arc::clone(&policy),
            AuthoriserConfig {
                queue_depth_max: config.authoriser.queue_depth_max,
                batch_size_max: config.authoriser.batch_size_max,
                sync_interval: Duration::from_millis(config.switch.sync_interval_ms.max(10)),
            },
        )
        .await?;
        (Some(handle), Some(join))
    };
    let ctx = Arc::new(NetContext { authoriser, policy });
    let tracker = TaskTracker::new();
    let mut bound = Vec::new();
    for listener_config in &config.listeners {
        let listener = TcpListener::bind(&listener_config.bind)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "listener {}: cannot bind {}: {e}",
                    listener_config.name,
                    listener_config.bind
                )
            })?;
        bound.push((listener_config.name.clone(), listener.local_addr()?));
        tracker.spawn(serve_listener(
            listener,
            Arc::new(listener_config.clone()),
            Arc::clone(&ctx),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    on_ready(&bound);
    shutdown.cancelled().await;
    tracker.close();
    tracker.wait().await;
    // Every connection is gone: the last handle goes with the context, the authoriser
    // drains its queue, commits, and stops.
    drop(ctx);
    if let Some(join) = authoriser_join {
        join.await?;
    }
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested: draining");
        token.cancel();
    });
}
