//! The one place that appends ledger batches: one database transaction per batch,
//! serialised against any other writer (the CLI) so the audit chain stays a chain.

use std::sync::LazyLock;

use sqlx::AnyConnection;

use super::chain::{batch_hash, GENESIS_HASH};
use super::db::{Backend, Db};
use super::rows::{Batch, EntryRow, TransferRow};
use super::sqlite_writer::SqliteWriter;
use super::LedgerError;

const TRANSFER_COLUMNS: &str = "batch_seq, idx, kind, mti, rc, approval, acquirer, terminal, stan, \
     transmitted, rrn, content_sha, card_sha, family_id, programme_id, channel, purse, amount_minor, \
     acceptor, reference, business_day, at_ms, balances";
const TRANSFER_COLUMN_COUNT: usize = 23;
const ENTRY_COLUMNS: &str = "batch_seq, transfer_idx, entry_idx, account_id, amount_minor";
const ENTRY_COLUMN_COUNT: usize = 5;
/// Rows per INSERT statement: under SQLite's 32,766 bound variables and PostgreSQL's
/// 65,535 for the widest row.
const ROWS_PER_STATEMENT_MAX: usize = 1_000;
/// An arbitrary constant that names the ledger's advisory lock on PostgreSQL.
const PG_LEDGER_LOCK: i64 = 8_583_001;

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
    conn: Option<AnyConnection>,
    /// The PostgreSQL backend serving `conn`: what to fence when a commit's answer is lost.
    pid: Option<i32>,
    source: &'static str,
    /// SQLite goes through its own thread (sqlite_writer.rs); PostgreSQL through sqlx.
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
            pid: None,
            source,
            sqlite,
        }
    }

    /// Through sqlx for every backend, SQLite included: the baseline the SQLite writer
    /// thread is measured against (benches/ledger.rs).
    pub fn through_sqlx(db: Db, source: &'static str) -> LedgerWriter {
        LedgerWriter {
            db,
            conn: None,
            pid: None,
            source,
            sqlite: None,
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
        batch.check_balanced().map_err(LedgerError::Invariant)?;
        let bound = commit_timeout(batch.transfers.len());
        let deadline = tokio::time::Instant::now() + bound;
        if self.conn.is_none() {
            let opened = tokio::time::timeout_at(deadline, open_with_pid(&self.db)).await;
            let (conn, pid) = opened.map_err(|_| timed_out("connect", bound))??;
            (self.conn, self.pid) = (Some(conn), pid);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(LedgerError::Invariant("no connection".into()));
        };
        // A partition that holds packets would leave the writer waiting for ever: past
        // the bound the batch is answered 91 and the connection dropped. Up to COMMIT
        // nothing can have been posted: the server aborts an open transaction when its
        // connection goes.
        let written = tokio::time::timeout_at(
            deadline,
            write_batch(&self.db, conn, batch, self.source, now_ms),
        )
        .await;
        let committed = match written.unwrap_or_else(|_| Err(timed_out("write", bound))) {
            Ok(committed) => committed,
            Err(err) => {
                self.conn = None;
                return Err(err);
            }
        };
        let answered =
            tokio::time::timeout_at(deadline, crate::ledger::db::exec(conn, "COMMIT")).await;
        if let Ok(Ok(())) = answered {
            return Ok(committed);
        }
        self.conn = None;
        match self.pid.take() {
            // COMMIT was sent and its answer lost: the batch may or may not be in. A 91
            // says "nothing was posted", so find out before answering.
            Some(old_pid) => self.resolve(old_pid, committed).await,
            // SQLite through sqlx (the benches' baseline): a local error is an answer.
            None => Err(match answered {
                Ok(Err(err)) => err.into(),
                _ => timed_out("commit", bound),
            }),
        }
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
            sqlx::query(&db.sql("SELECT pg_terminate_backend(?)"))
                .bind(old_pid)
                .execute(&mut conn)
                .await?;
            while sqlx::query(&db.sql("SELECT pid FROM pg_stat_activity WHERE pid = ?"))
                .bind(old_pid)
                .fetch_optional(&mut conn)
                .await?
                .is_some()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let found: Option<(String,)> =
                sqlx::query_as(&db.sql("SELECT hash FROM ledger_batches WHERE batch_seq = ?"))
                    .bind(batch_seq)
                    .fetch_optional(&mut conn)
                    .await?;
            Ok::<_, LedgerError>((conn, pid, found))
        })
        .await;
        match fenced_and_read {
            Ok(Ok((conn, pid, found))) => {
                (self.conn, self.pid) = (Some(conn), pid);
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

/// A connection and, on PostgreSQL, the backend serving it.
async fn open_with_pid(db: &Db) -> Result<(AnyConnection, Option<i32>), LedgerError> {
    let mut conn = db.open_connection().await?;
    if db.backend != Backend::Postgres {
        return Ok((conn, None)); // SQLite through sqlx: the benches' baseline
    }
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    Ok((conn, Some(pid)))
}

/// Everything of a batch but its COMMIT, which the caller sends (and, if its answer is
/// lost, resolves).
async fn write_batch(
    db: &Db,
    conn: &mut AnyConnection,
    batch: &Batch,
    source: &str,
    now_ms: i64,
) -> Result<Committed, LedgerError> {
    begin_exclusive(db.backend, conn).await?;
    let head: Option<(i64, String)> = sqlx::query_as(
        "SELECT batch_seq, hash FROM ledger_batches ORDER BY batch_seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let batch_seq = prev_seq + 1;
    let hash = batch_hash(&prev_hash, batch_seq, &batch.transfers, &batch.entries);
    sqlx::query(&db.sql(
        "INSERT INTO ledger_batches (batch_seq, source, committed_ms, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
    ))
    .bind(batch_seq)
    .bind(source)
    .bind(now_ms)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    for chunk in batch.transfers.chunks(ROWS_PER_STATEMENT_MAX) {
        insert_transfers(db, conn, batch_seq, chunk).await?;
    }
    for chunk in batch.entries.chunks(ROWS_PER_STATEMENT_MAX) {
        insert_entries(db, conn, batch_seq, chunk).await?;
    }
    for (card_sha, event) in &batch.card_events {
        sqlx::query(&db.sql("INSERT INTO card_events (card_sha, event, at_ms) VALUES (?, ?, ?)"))
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
            crate::ledger::db::exec(
                conn,
                &format!("SELECT pg_advisory_xact_lock({PG_LEDGER_LOCK})"),
            )
            .await?;
        }
    }
    Ok(())
}

fn values_clause(rows: usize, columns: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

async fn insert_transfers(
    db: &Db,
    conn: &mut AnyConnection,
    batch_seq: i64,
    rows: &[TransferRow],
) -> Result<(), sqlx::Error> {
    if db.backend == Backend::Postgres {
        return insert_transfers_unnest(conn, batch_seq, rows).await;
    }
    let sql = format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES {}",
        values_clause(rows.len(), TRANSFER_COLUMN_COUNT)
    );
    let sql = db.sql(&sql);
    let mut query = sqlx::query(&sql);
    for t in rows {
        query = query
            .bind(batch_seq)
            .bind(t.idx)
            .bind(t.kind.as_str())
            .bind(t.mti.as_str())
            .bind(t.rc.as_str())
            .bind(t.approval.as_str())
            .bind(t.acquirer.as_str())
            .bind(t.terminal.as_str())
            .bind(t.stan.as_str())
            .bind(t.transmitted.as_str())
            .bind(t.rrn.as_str())
            .bind(t.content_sha.as_str())
            .bind(t.card_sha.as_str())
            .bind(t.family_id.as_str())
            .bind(t.programme_id.as_str())
            .bind(t.channel.as_str())
            .bind(t.purse.as_str())
            .bind(t.amount_minor)
            .bind(t.acceptor.as_str())
            .bind(t.reference.as_str())
            .bind(t.business_day)
            .bind(t.at_ms)
            .bind(t.balances.as_str());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

async fn insert_entries(
    db: &Db,
    conn: &mut AnyConnection,
    batch_seq: i64,
    rows: &[EntryRow],
) -> Result<(), sqlx::Error> {
    if db.backend == Backend::Postgres {
        return insert_entries_unnest(conn, batch_seq, rows).await;
    }
    let sql = format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES {}",
        values_clause(rows.len(), ENTRY_COLUMN_COUNT)
    );
    let sql = db.sql(&sql);
    let mut query = sqlx::query(&sql);
    for e in rows {
        query = query
            .bind(batch_seq)
            .bind(e.transfer_idx)
            .bind(e.entry_idx)
            .bind(e.account_id)
            .bind(e.amount_minor);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

// PostgreSQL: one statement text whatever the number of rows, so it is parsed and
// planned once per connection. Each column travels as one array, written as its text
// literal (the generic driver binds no arrays) and unnested on the server, in the order
// of TRANSFER_COLUMNS / ENTRY_COLUMNS. The VALUES form made every batch size a statement
// of its own with 23 parameters a row.
static PG_INSERT_TRANSFERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) SELECT $1::bigint, u.* FROM UNNEST(\
         $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
         $15::text[], $16::text[], $17::text[], $18::bigint[], $19::text[], $20::text[], \
         $21::int[], $22::bigint[], $23::text[]) AS u"
    )
});
static PG_INSERT_ENTRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) SELECT $1::bigint, u.* \
         FROM UNNEST($2::int[], $3::int[], $4::bigint[], $5::bigint[]) AS u"
    )
});

async fn insert_transfers_unnest(
    conn: &mut AnyConnection,
    batch_seq: i64,
    rows: &[TransferRow],
) -> Result<(), sqlx::Error> {
    let int = |f: fn(&TransferRow) -> i64| pg_array_of_ints(rows.iter().map(f));
    let text = |f: fn(&TransferRow) -> &str| pg_array_of_texts(rows.iter().map(f));
    sqlx::query(&PG_INSERT_TRANSFERS)
        .bind(batch_seq)
        .bind(int(|t| t.idx.into()))
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
        .bind(int(|t| t.amount_minor))
        .bind(text(|t| &t.acceptor))
        .bind(text(|t| &t.reference))
        .bind(int(|t| t.business_day))
        .bind(int(|t| t.at_ms))
        .bind(text(|t| &t.balances))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_entries_unnest(
    conn: &mut AnyConnection,
    batch_seq: i64,
    rows: &[EntryRow],
) -> Result<(), sqlx::Error> {
    let int = |f: fn(&EntryRow) -> i64| pg_array_of_ints(rows.iter().map(f));
    sqlx::query(&PG_INSERT_ENTRIES)
        .bind(batch_seq)
        .bind(int(|e| e.transfer_idx.into()))
        .bind(int(|e| e.entry_idx.into()))
        .bind(int(|e| e.account_id))
        .bind(int(|e| e.amount_minor))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `{1,-2,3}`
fn pg_array_of_ints(values: impl Iterator<Item = i64>) -> String {
    pg_array(values, |out, v| {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{v}"));
    })
}

/// `{"a","b \"c\""}`: every element quoted, so commas, braces, spaces and the word
/// NULL stay text; a quote or backslash inside is escaped with a backslash.
fn pg_array_of_texts<'a>(values: impl Iterator<Item = &'a str>) -> String {
    pg_array(values, |out, v| {
        out.push('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    })
}

/// An array literal: `{`, the elements as `element` writes them, comma-separated, `}`.
fn pg_array<T>(values: impl Iterator<Item = T>, element: impl Fn(&mut String, T)) -> String {
    let mut out = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        element(&mut out, v);
    }
    out.push('}');
    out
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
