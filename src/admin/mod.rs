//! The admin port (design.md, "admin"): health, Prometheus metrics, the JSON API and
//! the live dashboard, on their own listener so that operators and scrapers never
//! share a queue with card traffic.
//!
//! It holds no authoriser handle, only the authoriser's health flag and a database
//! pool of its own: the admin port can neither keep the switch from stopping nor take
//! connections from the authoriser's sync.

pub mod api;
pub mod auth;
pub mod cards;
pub mod dashboard;
pub mod family;
pub mod metrics;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::authoriser::Health;
use crate::config::Config;
use crate::ledger::Db;
use crate::policy::Policy;

/// A disbursement CSV of a whole province (about 40 bytes a line, five lines a family)
/// fits; anything larger is refused before it is read.
const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// After shutdown, how long open requests (a disbursement being written) may finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    /// `None` in echo mode: no database, and the API answers 503.
    pub ledger: Option<AdminLedger>,
    pub policy: Arc<Policy>,
    pub default_programme: Arc<str>,
    pub token: auth::Token,
    pub metrics: PrometheusHandle,
}

#[derive(Clone)]
pub struct AdminLedger {
    pub db: Db,
    pub health: Arc<Health>,
}

impl AdminState {
    pub fn new(
        config: &Config,
        policy: Arc<Policy>,
        ledger: Option<AdminLedger>,
        metrics: PrometheusHandle,
    ) -> AdminState {
        AdminState {
            ledger,
            policy,
            default_programme: config.switch.default_programme.as_str().into(),
            token: auth::Token::new(&config.admin.token),
            metrics,
        }
    }

    /// No hold older than the longest time to live of any programme can be open.
    fn hold_ttl_max_ms(&self) -> i64 {
        self.policy
            .programmes
            .iter()
            .map(|p| p.hold_ttl_ms)
            .max()
            .unwrap_or(0)
    }
}

/// The routes of interfaces.md. Only `/api/v1` needs the token.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/families/{family_id}", get(api::family))
        .route("/cards/{pan}/transactions", get(api::card_transactions))
        .route("/cards/{pan}/status", post(api::card_status))
        .route("/disbursements", post(api::disbursements))
        .route("/denylist", get(api::denylist))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .fallback(api::not_found);
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(prometheus_text))
        .route("/", get(dashboard::page))
        .nest("/api/v1", api)
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text exposition format.
async fn prometheus_text(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// Serves until `shutdown`, then lets open requests finish for a bounded time.
/// `listener` is the plain TCP listener, or `tls::TlsListener` for HTTPS.
pub async fn serve<L>(listener: L, state: AdminState, shutdown: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(metrics::upkeep(state.metrics.clone(), shutdown.clone()));
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let drain_limit = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = server => {
            if let Err(err) = served {
                tracing::error!(error = %err, "admin server failed");
            }
        }
        () = drain_limit => tracing::warn!("admin server: open requests cut off at shutdown"),
    }
    tracing::info!("admin server stopped");
}
