//! The JSON routes of interfaces.md ("Admin HTTP"). Handlers are thin: parse, call
//! the library (the same calls the command line makes), shape the answer. Every error
//! is `{"error": "..."}` with the status that says what went wrong.
//!
//! A PAN arrives in the path and never leaves whole: answers and errors name a card
//! by its first 6 and last 4 digits, and the database only ever sees its SHA-256.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::cards::{deny_list, DenyList, EventRow};
use super::family::{self, FamilyView};
use super::{AdminLedger, AdminState};
use crate::domain::money::minor_to_rupiah;
use crate::domain::pan::Pan;
use crate::domain::time::TimestampMs;
use crate::import::{disbursements, ImportError};
use crate::ledger::{LedgerError, TransferRow};

/// A health check that cannot answer within this is as good as a failed one.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
const TRANSACTIONS_LIMIT_DEFAULT: i64 = 50;
const TRANSACTIONS_LIMIT_MAX: i64 = 500;

/// An error answer: a status and `{"error": ..., "line": ...}` (`line` for CSV only).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    line: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            line: None,
        }
    }

    fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.line {
            Some(line) => serde_json::json!({ "error": self.error, "line": line }),
            None => serde_json::json!({ "error": self.error }),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> ApiError {
        // Database messages hold no card data (the database has none); still, the
        // operator reads them in the log, the caller gets the status.
        tracing::error!(error = %err, "admin API: database error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database error")
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn ledger(state: &AdminState) -> Result<&AdminLedger, ApiError> {
    state.ledger.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no ledger: the switch runs in echo mode",
        )
    })
}

fn parse_pan(pan: &str) -> Result<Pan, ApiError> {
    Pan::parse(pan).ok_or_else(|| ApiError::bad_request("PAN must be 12-19 digits"))
}

/// `GET /healthz`: 200 when the last commit worked and the database answers.
pub async fn healthz(State(state): State<AdminState>) -> Response {
    match health(&state).await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(reason) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn health(state: &AdminState) -> Result<(), &'static str> {
    let ledger = state
        .ledger
        .as_ref()
        .ok_or("no ledger: the switch runs in echo mode")?;
    if !ledger.health.ledger_writable.load(Ordering::Relaxed) {
        return Err("ledger not writable: the last commit failed");
    }
    let ping = sqlx::query("SELECT 1").execute(&ledger.db.pool);
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("database unreachable"),
        Err(_) => Err("database did not answer in time"),
    }
}

/// `GET /api/v1/families/{family_id}`.
pub async fn family(
    State(state): State<AdminState>,
    Path(family_id): Path<String>,
) -> ApiResult<FamilyView> {
    let ledger = ledger(&state)?;
    let holds_from_ms = TimestampMs::now().0.saturating_sub(state.hold_ttl_max_ms());
    family::family(&ledger.db, &family_id, holds_from_ms)
        .await?
        .map(Json)
        // The id is not echoed: whatever a caller puts in a path stays out of answers.
        .ok_or_else(|| ApiError::not_found("unknown family"))
}

#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct TransactionsView {
    card: String,
    transactions: Vec<TransactionView>,
}

#[derive(Debug, Serialize)]
pub struct TransactionView {
    at: String,
    at_ms: i64,
    business_day: i64,
    kind: String,
    mti: String,
    rc: String,
    approval: String,
    acquirer: String,
    terminal: String,
    stan: String,
    rrn: String,
    channel: String,
    purse: String,
    /// Rupiah, two decimals.
    amount: String,
    acceptor: String,
}

impl From<TransferRow> for TransactionView {
    fn from(t: TransferRow) -> TransactionView {
        TransactionView {
            at: TimestampMs(t.at_ms).to_utc().to_rfc3339(),
            at_ms: t.at_ms,
            business_day: t.business_day,
            amount: minor_to_rupiah(t.amount_minor).to_string(),
            kind: t.kind,
            mti: t.mti,
            rc: t.rc,
            approval: t.approval,
            acquirer: t.acquirer,
            terminal: t.terminal,
            stan: t.stan,
            rrn: t.rrn,
            channel: t.channel,
            purse: t.purse,
            acceptor: t.acceptor,
        }
    }
}

/// `GET /api/v1/cards/{pan}/transactions?limit=N`: newest first.
pub async fn card_transactions(
    State(state): State<AdminState>,
    Path(pan): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult<TransactionsView> {
    let ledger = ledger(&state)?;
    let pan = parse_pan(&pan)?;
    let limit = query?
        .limit
        .unwrap_or(TRANSACTIONS_LIMIT_DEFAULT)
        .clamp(1, TRANSACTIONS_LIMIT_MAX);
    let card_sha = pan.sha256_hex();
    if !ledger.db.card_exists(&card_sha).await? {
        return Err(ApiError::not_found(format!(
            "unknown card {}",
            pan.masked()
        )));
    }
    let mut conn = ledger.db.pool.acquire().await.map_err(LedgerError::from)?;
    let rows = ledger
        .db
        .card_transfers(&mut conn, &card_sha, limit)
        .await?;
    Ok(Json(TransactionsView {
        card: pan.masked(),
        transactions: rows.into_iter().map(TransactionView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
}

/// The card event a status writes: the same events as `multiguna card`.
fn status_event(status: &str) -> Option<&'static str> {
    match status {
        "blocked" => Some("blocked"),
        "active" => Some("unblock"),
        "lost" => Some("lost"),
        "stolen" => Some("stolen"),
        _ => None,
    }
}

/// `POST /api/v1/cards/{pan}/status` with `{"status": "blocked"}`; the running switch
/// picks the event up at its next sync.
pub async fn card_status(
    State(state): State<AdminState>,
    Path(pan): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ledger = ledger(&state)?;
    let pan = parse_pan(&pan)?;
    let body: StatusBody = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"status\": ...}}: {e}")))?;
    let event = status_event(&body.status).ok_or_else(|| {
        ApiError::bad_request("status must be one of blocked, active, lost, stolen")
    })?;
    let card_sha = pan.sha256_hex();
    if !ledger.db.card_exists(&card_sha).await? {
        return Err(ApiError::not_found(format!(
            "unknown card {}",
            pan.masked()
        )));
    }
    ledger
        .db
        .insert_card_event(&card_sha, event, TimestampMs::now().0)
        .await?;
    tracing::info!(card = %pan.masked(), event, "admin API: card event recorded");
    Ok(Json(serde_json::json!({
        "card": pan.masked(),
        "status": body.status,
        "event": event,
    })))
}

#[derive(Debug, Deserialize)]
pub struct ProgrammeQuery {
    programme: Option<String>,
}

/// `POST /api/v1/disbursements?programme=ID`, the body a disbursements CSV: the same
/// load as `multiguna disburse`, all lines or none.
pub async fn disbursements(
    State(state): State<AdminState>,
    query: Result<Query<ProgrammeQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ledger = ledger(&state)?;
    let programme = query?
        .0
        .programme
        .unwrap_or_else(|| state.default_programme.to_string());
    if state.policy.programme_index(&programme).is_none() {
        return Err(ApiError::bad_request(format!(
            "unknown programme {programme}"
        )));
    }
    let text = String::from_utf8(body?.to_vec())
        .map_err(|_| ApiError::bad_request("the CSV must be UTF-8"))?;
    let summary = disbursements::disburse(
        &ledger.db,
        &state.policy.calendar,
        "disbursements",
        &text,
        &programme,
        "api",
    )
    .await
    .map_err(import_error)?;
    tracing::info!(%programme, added = summary.added, unchanged = summary.unchanged, "admin API: disbursement loaded");
    Ok(Json(serde_json::json!({
        "programme": programme,
        "added": summary.added,
        "unchanged": summary.unchanged,
    })))
}

fn import_error(err: ImportError) -> ApiError {
    match err {
        ImportError::Line { line, reason, .. } => ApiError {
            line: Some(line),
            ..ApiError::bad_request(format!("line {line}: {reason}"))
        },
        ImportError::File { reason, .. } => ApiError::bad_request(reason),
        ImportError::Ledger(err) => err.into(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SinceQuery {
    since: Option<i64>,
}

/// `GET /api/v1/denylist?since=N`.
pub async fn denylist(
    State(state): State<AdminState>,
    query: Result<Query<SinceQuery>, QueryRejection>,
) -> ApiResult<DenyList> {
    let ledger = ledger(&state)?;
    let since = query?.since.unwrap_or(0);
    let events: Vec<EventRow> =
        sqlx::query_as("SELECT seq, card_sha, event FROM card_events ORDER BY seq")
            .fetch_all(&ledger.db.pool)
            .await
            .map_err(LedgerError::from)?;
    // Expiry is YYMM text of four digits, so text order is month order.
    let now_yymm = state.policy.calendar.year_month(TimestampMs::now());
    let expired: Vec<(String,)> =
        sqlx::query_as(&ledger.db.sql("SELECT card_sha FROM cards WHERE expiry < ?"))
            .bind(format!("{now_yymm:04}"))
            .fetch_all(&ledger.db.pool)
            .await
            .map_err(LedgerError::from)?;
    let expired: BTreeSet<String> = expired.into_iter().map(|(sha,)| sha).collect();
    Ok(Json(deny_list(&events, &expired, since)))
}

/// Any path the API does not have.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_write_the_events_of_the_card_command() {
        assert_eq!(status_event("blocked"), Some("blocked"));
        assert_eq!(status_event("active"), Some("unblock"));
        assert_eq!(status_event("lost"), Some("lost"));
        assert_eq!(status_event("stolen"), Some("stolen"));
        assert_eq!(status_event("unblock"), None);
    }
}
