//! Metric names and the one Prometheus recorder of the process (interfaces.md,
//! "Metrics"). The names live here so the code that records a metric, the dashboard that
//! reads it and the tests that look for it agree on one spelling.
//!
//! Labels are bounded sets only: listener and channel names from configuration, MTIs
//! from a fixed list, response codes, reason words. Never a PAN or anything from a card.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Requests answered, by `channel`, `mti` (the request's) and `rc`.
pub const REQUESTS_TOTAL: &str = "multiguna_requests_total";
/// From the moment a frame is read until its response is written, by `channel`.
pub const REQUEST_DURATION_SECONDS: &str = "multiguna_request_duration_seconds";
pub const LEDGER_COMMIT_DURATION_SECONDS: &str = "multiguna_ledger_commit_duration_seconds";
/// Transfers per committed ledger batch.
pub const LEDGER_BATCH_SIZE: &str = "multiguna_ledger_batch_size";
pub const LEDGER_COMMIT_FAILURES_TOTAL: &str = "multiguna_ledger_commit_failures_total";
/// Requests waiting for the single writer when it takes its next batch.
pub const AUTHORISER_QUEUE_DEPTH: &str = "multiguna_authoriser_queue_depth";
/// Decisions the single writer remembers for retries and reversals.
pub const IDEMPOTENCY_DECISIONS: &str = "multiguna_idempotency_decisions";
/// Seconds since the oldest remembered decision: below the idempotency window only when
/// the count bound (`idempotency_decisions_max`) forgets decisions early.
pub const IDEMPOTENCY_HORIZON_SECONDS: &str = "multiguna_idempotency_horizon_seconds";
/// Decisions forgotten before their window ended, because of the count bound.
pub const IDEMPOTENCY_EVICTED_TOTAL: &str = "multiguna_idempotency_evicted_total";
pub const PROJECTION_LAG_BATCHES: &str = "multiguna_projection_lag_batches";
/// Open connections, by `listener`.
pub const CONNECTIONS: &str = "multiguna_connections";
/// Connections closed at once because the listener was full, by `listener`.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "multiguna_connections_refused_total";
/// Frames that ended their connection, by `reason` (`FrameError::reason`).
pub const FRAMES_REJECTED_TOTAL: &str = "multiguna_frames_rejected_total";
/// Messages read but not answered, by `reason`.
pub const MESSAGES_DROPPED_TOTAL: &str = "multiguna_messages_dropped_total";
/// TLS connections closed before any frame, by `listener` and `reason`
/// (`TlsError::reason`: handshake failed or timed out, client certificate bound to no
/// acquirer).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "multiguna_tls_handshake_failures_total";

/// Seconds: a commit is a few milliseconds on a good disk; a second is already trouble.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Powers of two up to past the largest configured batch (`batch_size_max` 2048).
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// Histograms keep samples until rendered or until upkeep drains them; upkeep bounds
/// that memory when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Everything recorded before it is
/// installed is lost, so the server calls this before it opens a listener.
pub fn recorder() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    // Buckets make true Prometheus histograms (the default would be summaries, from
    // which the dashboard could not take percentiles of a window).
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(LEDGER_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
        })
        .expect("bucket lists are non-empty constants")
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Another recorder came first (an embedding program): ours then renders nothing.
        tracing::warn!("a metrics recorder was already installed: /metrics stays empty");
    }
    describe();
    handle
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by channel, MTI and response code"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "From frame read to response written, by channel"
    );
    metrics::describe_histogram!(
        LEDGER_COMMIT_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "One ledger batch commit (one database transaction)"
    );
    metrics::describe_histogram!(LEDGER_BATCH_SIZE, "Transfers per committed ledger batch");
    metrics::describe_counter!(
        LEDGER_COMMIT_FAILURES_TOTAL,
        "Ledger batches whose commit failed (answered 91)"
    );
    metrics::describe_gauge!(
        AUTHORISER_QUEUE_DEPTH,
        "Requests waiting for the single writer"
    );
    metrics::describe_gauge!(CONNECTIONS, "Open connections, by listener");
    metrics::describe_gauge!(
        IDEMPOTENCY_DECISIONS,
        "Decisions remembered for idempotent retries and reversals"
    );
    metrics::describe_gauge!(
        IDEMPOTENCY_HORIZON_SECONDS,
        "Age of the oldest decision remembered for retries and reversals"
    );
    metrics::describe_counter!(
        IDEMPOTENCY_EVICTED_TOTAL,
        "Decisions forgotten before the idempotency window ended (count bound reached)"
    );
    metrics::describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections closed because the listener was full"
    );
    metrics::describe_counter!(
        FRAMES_REJECTED_TOTAL,
        "Frames that ended their connection, by reason"
    );
    metrics::describe_counter!(
        MESSAGES_DROPPED_TOTAL,
        "Messages read but not answered, by reason"
    );
    metrics::describe_counter!(
        TLS_HANDSHAKE_FAILURES_TOTAL,
        "TLS connections closed before any frame, by listener and reason"
    );
    metrics::describe_gauge!(
        PROJECTION_LAG_BATCHES,
        "Ledger batches committed but not yet projected into card and account history"
    );
    // Series that may stay at zero for a long time are shown from the start, so an
    // alert on them has something to read.
    metrics::counter!(LEDGER_COMMIT_FAILURES_TOTAL).absolute(0);
    metrics::gauge!(AUTHORISER_QUEUE_DEPTH).set(0.0);
}

/// Drains histogram samples now and then until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// One ledger commit of the authoriser: how long it took, and either the transfers it
/// wrote or a failure.
pub fn ledger_commit(elapsed: Duration, transfers: usize, committed: bool) {
    metrics::histogram!(LEDGER_COMMIT_DURATION_SECONDS).record(elapsed.as_secs_f64());
    if committed {
        metrics::histogram!(LEDGER_BATCH_SIZE).record(transfers as f64);
    } else {
        metrics::counter!(LEDGER_COMMIT_FAILURES_TOTAL).increment(1);
    }
}

/// Requests still queued for the authoriser when it takes a batch.
pub fn authoriser_queue_depth(waiting: usize) {
    metrics::gauge!(AUTHORISER_QUEUE_DEPTH).set(waiting as f64);
}

/// The journal of recent decisions: its size, its reach back in time, and how many
/// decisions the count bound has forgotten early (a running total).
pub fn idempotency_journal(decisions: usize, horizon: Duration, evicted_total: u64) {
    metrics::gauge!(IDEMPOTENCY_DECISIONS).set(decisions as f64);
    metrics::gauge!(IDEMPOTENCY_HORIZON_SECONDS).set(horizon.as_secs_f64());
    metrics::counter!(IDEMPOTENCY_EVICTED_TOTAL).absolute(evicted_total);
}

/// Ledger batches not yet in the projections (card history, account entries) after a
/// projector step: readers read those from the ledger's tail, which grows with it.
pub fn projection_lag(batches: i64) {
    metrics::gauge!(PROJECTION_LAG_BATCHES).set(batches as f64);
}

/// The MTI label: one of the MTIs the switch knows, or `other`, so a peer sending
/// garbage cannot grow the number of series.
pub fn mti_label(frame: &[u8]) -> &'static str {
    const KNOWN: [&str; 12] = [
        "0100", "0101", "0200", "0201", "0220", "0221", "0400", "0401", "0420", "0421", "0800",
        "0801",
    ];
    frame
        .get(..4)
        .and_then(|mti| KNOWN.iter().find(|k| k.as_bytes() == mti))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mti_label_is_a_known_mti_or_other() {
        assert_eq!(mti_label(b"0200\x72\x00"), "0200");
        assert_eq!(mti_label(b"0800"), "0800");
        assert_eq!(mti_label(b"9999xx"), "other");
        assert_eq!(mti_label(b"02"), "other");
    }
}
