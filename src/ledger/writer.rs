//! The one place that appends ledger batches: one database transaction per batch,
//! serialised against any other writer (the CLI) so the audit chain stays a chain.
//!
//! SQLite is written by a thread of its own (sqlite_writer.rs). PostgreSQL by this
//! module on a `PgConnection` rather than the generic driver's: the generic driver binds
//! no arrays, so a batch's columns went as text literals (`{"a","b"}`) that the server
//! scanned character by character, a fifth of its own code's CPU under the switch's
//! load (docs/performance.md, session 8). Bound as binary `text[]` and `int8[]` they
//! arrive with their lengths.

use std::str::FromStr;
use std::sync::LazyLock;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, PgConnection};

use super::chain::{batch_hash, GENESIS_HASH};
use super::db::{Backend, Db};
use super::rows::{Batch, EntryRow, TransferRow, ENTRY_COLUMNS, TRANSFER_COLUMNS};
use super::sqlite_writer::SqliteWriter;
use super::LedgerError;

/// Rows per INSERT statement: a tranche of millions of lines goes in statements of
/// bounded size (each column one array parameter).
const ROWS_PER_STATEMENT_MAX: usize = 1_000;
/// Takes the ledger's advisory lock on PostgreSQL for the transaction (8583001: an
/// arbitrary number that names it). One text for every writer and importer.
const PG_TAKE_LEDGER_LOCK: &str = "SELECT pg_advisory_xact_lock(8583001)";

/// The longest a PostgreSQL connect or commit of a switch batch may take before the
/// batch is answered 91. Generous against fsync stalls; short against a terminal's
/// timeout.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Added to the bound for each transfer of the batch: a tranche of hundreds of
/// thousands of lines (one batch) takes far longer than 2 s to write, and failed with
/// the switch's bound (found loading 100,000 families on PostgreSQL). 200 µs a
/// transfer is about ten times what a bulk insert takes here (docs/performance.md).
const COMMIT_TIMEOUT_PER_TRANSFER: std::time::Duration = std::time::Duration::from_micros(200);

/// The bound on connecting, writing and committing a batch of `transfers` rows.
fn commit_timeout(transfers: usize) -> std::time::Duration {
    let transfers = u32::try_from(transfers).unwrap_or(u32::MAX);
    COMMIT_TIMEOUT.saturating_add(COMMIT_TIMEOUT_PER_TRANSFER.saturating_mul(transfers))
}

/// How long the writer may spend finding out whether a commit whose answer was lost went
/// through (fencing the old session, then reading the batch back).
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn timed_out(what: &str, bound: std::time::Duration) -> LedgerError {
    LedgerError::Invariant(format!("ledger {what} took longer than {bound:?}"))
}

/// Where a committed batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub batch_seq: i64,
    pub hash: String,
}

pub struct LedgerWriter {
    db: Db,
    /// PostgreSQL: the connection and the backend serving it (what to fence when a
    /// commit's answer is lost).
    conn: Option<(PgConnection, i32)>,
    source: &'static str,
    /// SQLite goes through its own thread (sqlite_writer.rs); PostgreSQL through `conn`.
    sqlite: Option<SqliteWriter>,
}

impl LedgerWriter {
    /// `source` is written on every batch: `switch` for the running switch, `cli` for
    /// commands, so the switch knows which batches it must pick up from others.
    pub fn new(db: Db, source: &'static str) -> LedgerWriter {
        let sqlite = db.sqlite_path().map(SqliteWriter::start);
        LedgerWriter {
            db,
            conn: None,
            source,
            sqlite,
        }
    }

    /// Appends `batch` durably or not at all. On error the connection is dropped, so the
    /// next commit starts from a fresh one (the database may have restarted).
    pub async fn commit(
        &mut self,
        batch: &mut Batch,
        now_ms: i64,
    ) -> Result<Committed, LedgerError> {
        if let Some(sqlite) = self.sqlite.as_ref() {
            return sqlite.commit(batch, self.source, now_ms).await;
        }
        batch.check_invariants().map_err(LedgerError::Invariant)?;
        let bound = commit_timeout(batch.transfers.len());
        let deadline = tokio::time::Instant::now() + bound;
        if self.conn.is_none() {
            let opened = tokio::time::timeout_at(deadline, open_with_pid(&self.db)).await;
            self.conn = Some(opened.map_err(|_| timed_out("connect", bound))??);
        }
        let Some((conn, pid)) = self.conn.as_mut() else {
            return Err(LedgerError::Invariant("no connection".into()));
        };
        let pid = *pid;
        // A partition that holds packets would leave the writer waiting for ever: past
        // the bound the batch is answered 91 and the connection dropped. Up to COMMIT
        // nothing can have been posted: the server aborts an open transaction when its
        // connection goes.
        let written =
            tokio::time::timeout_at(deadline, write_batch(conn, batch, self.source, now_ms)).await;
        let committed = match written.unwrap_or_else(|_| Err(timed_out("write", bound))) {
            Ok(committed) => committed,
            Err(err) => {
                self.conn = None;
                return Err(err);
            }
        };
        let answered = tokio::time::timeout_at(deadline, exec(conn, "COMMIT")).await;
        if let Ok(Ok(())) = answered {
            return Ok(committed);
        }
        self.conn = None;
        // COMMIT was sent and its answer lost: the batch may or may not be in. A 91 says
        // "nothing was posted", so find out before answering.
        self.resolve(pid, committed).await
    }

    /// After a lost COMMIT answer: ends the old session (so its transaction can no
    /// longer commit later), then reads the batch back. `Ok` when it is in the ledger
    /// with our hash, so its answers go out as decided; `Err` (91) when it is not, or
    /// when that cannot be known within `RESOLVE_TIMEOUT` (logged as an error: the
    /// rebuilt state will hold the batch if it did commit).
    async fn resolve(
        &mut self,
        old_pid: i32,
        committed: Committed,
    ) -> Result<Committed, LedgerError> {
        let db = self.db.clone();
        let batch_seq = committed.batch_seq;
        let fenced_and_read = tokio::time::timeout(RESOLVE_TIMEOUT, async {
            let (mut conn, pid) = open_with_pid(&db).await?;
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(old_pid)
                .execute(&mut conn)
                .await?;
            while sqlx::query("SELECT pid FROM pg_stat_activity WHERE pid = $1")
                .bind(old_pid)
                .fetch_optional(&mut conn)
                .await?
                .is_some()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let found: Option<(String,)> =
                sqlx::query_as("SELECT hash FROM ledger_batches WHERE batch_seq = $1")
                    .bind(batch_seq)
                    .fetch_optional(&mut conn)
                    .await?;
            Ok::<_, LedgerError>((conn, pid, found))
        })
        .await;
        match fenced_and_read {
            Ok(Ok((conn, pid, found))) => {
                self.conn = Some((conn, pid));
                if found.is_some_and(|(hash,)| hash == committed.hash) {
                    tracing::warn!(batch_seq, "a commit's answer was lost; the batch is in the ledger: answered as decided");
                    Ok(committed)
                } else {
                    tracing::warn!(
                        batch_seq,
                        "a commit's answer was lost; the batch is not in the ledger: answered 91"
                    );
                    Err(LedgerError::Invariant(
                        "ledger commit lost; nothing posted".into(),
                    ))
                }
            }
            Ok(Err(err)) => {
                tracing::error!(batch_seq, error = %err, "ledger commit outcome unknown: the batch is answered 91 and may be in the ledger");
                Err(err)
            }
            Err(_) => {
                tracing::error!(batch_seq, "ledger commit outcome unknown within {RESOLVE_TIMEOUT:?}: the batch is answered 91 and may be in the ledger");
                Err(LedgerError::Invariant(format!(
                    "ledger commit outcome unknown within {RESOLVE_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// A PostgreSQL connection of the writer's own and the backend serving it.
async fn open_with_pid(db: &Db) -> Result<(PgConnection, i32), LedgerError> {
    let mut conn = PgConnectOptions::from_str(db.url())?.connect().await?;
    exec(&mut conn, super::db::PG_SESSION_SETUP).await?;
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    Ok((conn, pid))
}

/// A statement without parameters or results (BEGIN, COMMIT, SET), as a simple query.
async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await.map(|_| ())
}

/// Everything of a batch but its COMMIT, which the caller sends (and, if its answer is
/// lost, resolves).
async fn write_batch(
    conn: &mut PgConnection,
    batch: &Batch,
    source: &str,
    now_ms: i64,
) -> Result<Committed, LedgerError> {
    exec(conn, "BEGIN").await?;
    exec(conn, PG_TAKE_LEDGER_LOCK).await?;
    let head: Option<(i64, String)> = sqlx::query_as(
        "SELECT batch_seq, hash FROM ledger_batches ORDER BY batch_seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let batch_seq = prev_seq + 1;
    let hash = batch_hash(&prev_hash, batch_seq, &batch.transfers, &batch.entries);
    sqlx::query(
        "INSERT INTO ledger_batches (batch_seq, source, committed_ms, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(batch_seq)
    .bind(source)
    .bind(now_ms)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    for chunk in batch.transfers.chunks(ROWS_PER_STATEMENT_MAX) {
        insert_transfers(conn, batch_seq, chunk).await?;
    }
    for chunk in batch.entries.chunks(ROWS_PER_STATEMENT_MAX) {
        insert_entries(conn, batch_seq, chunk).await?;
    }
    for (card_sha, event) in &batch.card_events {
        sqlx::query("INSERT INTO card_events (card_sha, event, at_ms) VALUES ($1, $2, $3)")
            .bind(card_sha)
            .bind(event)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Committed { batch_seq, hash })
}

/// Takes the write lock first, so reading the chain head and appending after it cannot
/// interleave with another writer.
pub(crate) async fn begin_exclusive(
    backend: Backend,
    conn: &mut AnyConnection,
) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            crate::ledger::db::exec(conn, "BEGIN IMMEDIATE").await?;
        }
        Backend::Postgres => {
            crate::ledger::db::exec(conn, "BEGIN").await?;
            crate::ledger::db::exec(conn, PG_TAKE_LEDGER_LOCK).await?;
        }
    }
    Ok(())
}

// One statement text whatever the number of rows, so it is parsed and planned once per
// connection. Each column travels as one binary array and is unnested on the server, in
// the order of TRANSFER_COLUMNS / ENTRY_COLUMNS. (The VALUES form made every batch size
// a statement of its own with 23 parameters a row.)
static PG_INSERT_TRANSFERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) SELECT $1::bigint, u.* FROM UNNEST(\
         $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
         $15::text[], $16::text[], $17::text[], $18::bigint[], $19::text[], $20::text[], \
         $21::bigint[], $22::bigint[], $23::text[]) AS u"
    )
});
static PG_INSERT_ENTRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) SELECT $1::bigint, u.* \
         FROM UNNEST($2::int[], $3::int[], $4::bigint[], $5::bigint[]) AS u"
    )
});

async fn insert_transfers(
    conn: &mut PgConnection,
    batch_seq: i64,
    rows: &[TransferRow],
) -> Result<(), sqlx::Error> {
    let int = |f: fn(&TransferRow) -> i32| rows.iter().map(f).collect::<Vec<i32>>();
    let bigint = |f: fn(&TransferRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&TransferRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    sqlx::query(&PG_INSERT_TRANSFERS)
        .bind(batch_seq)
        .bind(int(|t| t.idx))
        .bind(text(|t| &t.kind))
        .bind(text(|t| &t.mti))
        .bind(text(|t| &t.rc))
        .bind(text(|t| &t.approval))
        .bind(text(|t| &t.acquirer))
        .bind(text(|t| &t.terminal))
        .bind(text(|t| &t.stan))
        .bind(text(|t| &t.transmitted))
        .bind(text(|t| &t.rrn))
        .bind(text(|t| &t.content_sha))
        .bind(text(|t| &t.card_sha))
        .bind(text(|t| &t.family_id))
        .bind(text(|t| &t.programme_id))
        .bind(text(|t| &t.channel))
        .bind(text(|t| &t.purse))
        .bind(bigint(|t| t.amount_minor))
        .bind(text(|t| &t.acceptor))
        .bind(text(|t| &t.reference))
        .bind(bigint(|t| t.business_day))
        .bind(bigint(|t| t.at_ms))
        .bind(text(|t| &t.balances))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_entries(
    conn: &mut PgConnection,
    batch_seq: i64,
    rows: &[EntryRow],
) -> Result<(), sqlx::Error> {
    let int = |f: fn(&EntryRow) -> i32| rows.iter().map(f).collect::<Vec<i32>>();
    let bigint = |f: fn(&EntryRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(&PG_INSERT_ENTRIES)
        .bind(batch_seq)
        .bind(int(|e| e.transfer_idx))
        .bind(int(|e| e.entry_idx))
        .bind(bigint(|e| e.account_id))
        .bind(bigint(|e| e.amount_minor))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_batch_keeps_the_short_bound_and_a_tranche_gets_time_by_its_size() {
        assert_eq!(commit_timeout(0), COMMIT_TIMEOUT);
        // A full switch batch: still about the terminal-friendly 2 s.
        assert!(commit_timeout(2_048) < std::time::Duration::from_millis(2_500));
        // A province's tranche of 500,000 lines: well past 2 s.
        assert_eq!(commit_timeout(500_000), std::time::Duration::from_secs(102));
        // No overflow, whatever the size.
        assert!(commit_timeout(usize::MAX) > std::time::Duration::from_secs(800_000));
    }
}
