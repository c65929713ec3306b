//! `multiguna serve`: the ledger, the authoriser, the ISO 8583 listeners and the admin
//! port, wired together, with a graceful stop that drains what is in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminLedger, AdminState};
use crate::authoriser::{self, AuthoriserConfig, AuthoriserHandle};
use crate::config::Config;
use crate::ledger::Db;
use crate::net::tls::TlsEndpoint;
use crate::net::{serve_listener, NetContext};
use crate::policy::Policy;

/// Where the switch listens, once every socket is bound.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Each ISO 8583 listener's name and address, in configuration order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin HTTP port: health, metrics, API, dashboard.
    pub admin: SocketAddr,
}

/// Runs until `shutdown` is cancelled; then stops accepting, answers what is in
/// flight, commits, and returns. `on_ready` gets the bound addresses.
pub async fn run(
    config: Config,
    echo: bool,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    // Before any listener opens: what is recorded before the recorder exists is lost.
    let metrics = admin::metrics::recorder();
    let policy = Arc::new(Policy::from_config(&config).map_err(anyhow::Error::msg)?);
    policy.log_key_check_values();
    let (authoriser, authoriser_join) = if echo {
        (None, None)
    } else {
        let (handle, join) = start_authoriser(&config, &policy).await?;
        (Some(handle), Some(join))
    };
    let tracker = TaskTracker::new();
    let admin_ledger = match &authoriser {
        // Its own pool, so the admin port never takes the authoriser's connections.
        Some(handle) => Some(AdminLedger {
            db: Db::connect(&config.database.url).await?,
            health: handle.health(),
        }),
        None => None,
    };
    let state = AdminState::new(&config, Arc::clone(&policy), admin_ledger, metrics);
    let admin = start_admin(&config, state, &shutdown, &tracker).await?;
    let ctx = Arc::new(NetContext { authoriser, policy });
    let listeners = start_listeners(&config, &ctx, &shutdown, &tracker).await?;
    on_ready(&Bound { listeners, admin });
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

async fn start_authoriser(
    config: &Config,
    policy: &Arc<Policy>,
) -> anyhow::Result<(AuthoriserHandle, JoinHandle<()>)> {
    let db = Db::connect(&config.database.url).await?;
    db.migrate().await?;
    db.ensure_reference_accounts(config).await?;
    let started = authoriser::start(
        db,
        Arc::clone(policy),
        AuthoriserConfig {
            queue_depth_max: config.authoriser.queue_depth_max,
            batch_size_max: config.authoriser.batch_size_max,
            sync_interval: Duration::from_millis(config.switch.sync_interval_ms.max(10)),
            checkpoint_interval: Duration::from_secs(config.switch.checkpoint_interval_s.max(1)),
            projection_interval: Duration::from_millis(
                config.switch.projection_interval_ms.max(10),
            ),
        },
    )
    .await?;
    Ok(started)
}

async fn start_admin(
    config: &Config,
    state: AdminState,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(&config.admin.bind)
        .await
        .map_err(|e| anyhow::anyhow!("admin: cannot bind {}: {e}", config.admin.bind))?;
    let addr = listener.local_addr()?;
    match &config.admin.tls {
        Some(tls) => {
            let endpoint = TlsEndpoint::for_admin(tls)?;
            let listener = admin::tls::TlsListener::new(listener, endpoint, shutdown.clone())?;
            tracker.spawn(admin::serve(listener, state, shutdown.clone()));
        }
        None => {
            tracker.spawn(admin::serve(listener, state, shutdown.clone()));
        }
    }
    Ok(addr)
}

async fn start_listeners(
    config: &Config,
    ctx: &Arc<NetContext>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    let mut bound = Vec::new();
    for listener_config in &config.listeners {
        // Certificates and keys are read before the port opens: a bad file stops start-up.
        let tls = listener_config
            .tls
            .as_ref()
            .map(|tls| TlsEndpoint::for_listener(&listener_config.name, tls).map(Arc::new))
            .transpose()?;
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
            tls,
            Arc::clone(ctx),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    Ok(bound)
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
