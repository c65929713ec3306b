//! The SQLite ledger writer: one OS thread with one connection and cached prepared
//! statements. SQLite is synchronous and single-writer anyway; a thread of its own
//! keeps its fsyncs off the async runtime and skips the generic driver's per-value
//! conversions, which were most of a commit's cost (benches/ledger.rs).

use std::path::PathBuf;
use std::sync::{mpsc, LazyLock};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::chain::{batch_hash, GENESIS_HASH};
use super::rows::{Batch, EntryRow, TransferRow, ENTRY_COLUMNS, TRANSFER_COLUMNS};
use super::writer::Committed;
use super::LedgerError;

/// A batch to write, and where to send it back with the result.
struct Work {
    batch: Batch,
    source: &'static str,
    now_ms: i64,
    reply: oneshot::Sender<(Batch, Result<Committed, LedgerError>)>,
}

/// A writer thread for lone commits (the command line's, a disbursement's): batches
/// queue and are written one by one. The switch's writer thread takes its batches from
/// a stage instead (ledger/pipeline.rs); both write through [`SqliteLedger`].
pub struct SqliteWriter {
    tx: mpsc::Sender<Work>,
}

impl SqliteWriter {
    pub fn start(path: PathBuf) -> SqliteWriter {
        let (tx, rx) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("ledger-sqlite".into())
            .spawn(move || {
                let mut ledger = SqliteLedger::start(path);
                for work in rx {
                    let result = ledger.commit(&work.batch, work.source, work.now_ms);
                    let _ = work.reply.send((work.batch, result));
                }
            })
            .map(|_| ())
            .unwrap_or_else(
                |e| tracing::error!(error = %e, "cannot start the SQLite writer thread"),
            );
        SqliteWriter { tx }
    }

    /// Writes `batch` durably or not at all; the batch comes back for reuse.
    pub async fn commit(
        &self,
        batch: &mut Batch,
        source: &'static str,
        now_ms: i64,
    ) -> Result<Committed, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let work = Work {
            batch: std::mem::take(batch),
            source,
            now_ms,
            reply,
        };
        if let Err(mpsc::SendError(work)) = self.tx.send(work) {
            *batch = work.batch;
            return Err(LedgerError::Invariant(
                "the SQLite writer thread is gone".into(),
            ));
        }
        let (returned, result) = answer
            .await
            .map_err(|_| LedgerError::Invariant("the SQLite writer thread stopped".into()))?;
        *batch = returned;
        result
    }
}

/// What a thread that writes SQLite batches owns: its connection with cached prepared
/// statements (opened again after a failure: the file may be back), and the signal to
/// its WAL copy-back thread. Blocking: used from a thread of its own, never the runtime.
pub(super) struct SqliteLedger {
    path: PathBuf,
    conn: Option<Connection>,
    wal: mpsc::SyncSender<()>,
}

impl SqliteLedger {
    /// Starts the WAL copy-back thread beside the caller's; the connection opens at the
    /// first commit.
    pub(super) fn start(path: PathBuf) -> SqliteLedger {
        // One pending "there is WAL to copy back" is enough: signals coalesce.
        let (wal, wal_rx) = mpsc::sync_channel::<()>(1);
        let wal_path = path.clone();
        std::thread::Builder::new()
            .name("ledger-wal".into())
            .spawn(move || copy_back(wal_path, wal_rx))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the SQLite WAL thread"));
        SqliteLedger {
            path,
            conn: None,
            wal,
        }
    }

    /// Writes `batch` durably or not at all; one that does not balance is refused.
    pub(super) fn commit(
        &mut self,
        batch: &Batch,
        source: &str,
        now_ms: i64,
    ) -> Result<Committed, LedgerError> {
        batch.check_invariants().map_err(LedgerError::Invariant)?;
        if self.conn.is_none() {
            self.conn = open(&self.path)
                .map_err(|e| tracing::error!(error = %e, "SQLite ledger open failed"))
                .ok();
        }
        let result = match self.conn.as_mut() {
            Some(c) => write(c, batch, source, now_ms).map_err(LedgerError::from),
            None => Err(LedgerError::Invariant(
                "the SQLite ledger cannot be opened".into(),
            )),
        };
        if result.is_err() {
            // The next batch starts from a fresh connection (the file may be back).
            self.conn = None;
        } else {
            let _ = self.wal.try_send(());
        }
        result
    }
}

/// Copies committed WAL frames back into the database file on a connection of its own,
/// so the writer's commits (and the answers waiting for them) never wait for it, and
/// flushes what it copied. A PASSIVE checkpoint takes no write lock. Ends when the
/// writer thread does.
///
/// Why the flush: SQLite syncs the database file only at a checkpoint that reaches the
/// WAL's end, and under a commit every few hundred microseconds these passes never do
/// (the writer appends while they copy); the WAL then starts again only through the
/// writer's own checkpoint at `WAL_AUTOCHECKPOINT_PAGES`, inside a commit, whose one
/// sync flushed every page copied back since the last one: two seconds of them at
/// 20,000 requests/s, 10-25 ms, with the answers waiting behind it (docs/performance.md,
/// session 9). Flushed after each pass here, that sync finds a few pages. An fsync
/// through a descriptor of our own flushes the file's pages whoever wrote them; SQLite
/// relies on nothing it changes.
fn copy_back(path: PathBuf, wal: mpsc::Receiver<()>) {
    let mut opened: Option<(Connection, std::fs::File)> = None;
    for () in wal {
        if opened.is_none() {
            opened = Connection::open(&path)
                .and_then(|c| c.busy_timeout(std::time::Duration::from_secs(5)).map(|_| c))
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    std::fs::File::open(&path)
                        .map(|file| (c, file))
                        .map_err(|e| e.to_string())
                })
                .map_err(
                    |e| tracing::warn!(error = %e, "SQLite WAL copy-back cannot open the ledger"),
                )
                .ok();
        }
        let Some((c, file)) = opened.as_ref() else {
            continue;
        };
        let copied = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| e.to_string())
            .and_then(|()| file.sync_data().map_err(|e| e.to_string()));
        if let Err(e) = copied {
            tracing::warn!(error = %e, "SQLite WAL copy-back failed; will retry");
            opened = None;
        }
        // At most a few copy-backs a second: each one reads what the last left.
        std::thread::sleep(WAL_COPY_BACK_PAUSE);
    }
}

/// WAL pages after which a commit itself copies the WAL back into the database file:
/// only a backstop, for when the copy-back thread falls behind (or cannot open).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 50_000;
/// Pause after each background copy-back.
const WAL_COPY_BACK_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A 00 leaves only after an fsync'd commit.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Keep the hot tables' upper b-tree levels and the time index in memory (negative =
    // KiB) instead of SQLite's 2 MB default.
    conn.pragma_update(None, "cache_size", -262_144)?;
    // A batch of 2,048 transfers dirties thousands of pages, past SQLite's default of
    // 1,000 WAL pages: the default copied the WAL back into the database (and fsync'd
    // it) inside nearly every commit. The copy-back thread does it beside the writer;
    // this only bounds the WAL (200 MB) if that thread falls behind.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(conn)
}

fn write(
    conn: &mut Connection,
    batch: &Batch,
    source: &str,
    now_ms: i64,
) -> rusqlite::Result<Committed> {
    // IMMEDIATE takes the write lock first: reading the chain head and appending after
    // it cannot interleave with another writer (the CLI).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Cached like the inserts: parsing it again was a commit's fixed cost, thousands of
    // times a second in an open loop (one commit of a few transfers each).
    let head: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT batch_seq, hash FROM ledger_batches ORDER BY batch_seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let batch_seq = prev_seq + 1;
    let hash = batch_hash(&prev_hash, batch_seq, &batch.transfers, &batch.entries);
    tx.prepare_cached("INSERT INTO ledger_batches (batch_seq, source, committed_ms, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![batch_seq, source, now_ms, prev_hash, hash])?;
    insert_rows(&tx, batch_seq, batch, now_ms)?;
    tx.commit()?;
    Ok(Committed { batch_seq, hash })
}

/// Rows one INSERT carries: a statement's fixed cost (bind, reset, the VDBE's start)
/// spread over many rows. 16 x 23 and 32 x 5 parameters are far under SQLite's limit
/// of 32,766.
const TRANSFERS_A_STATEMENT: usize = 16;
const ENTRIES_A_STATEMENT: usize = 32;
/// A row's parameters: one a column of `TRANSFER_COLUMNS` / `ENTRY_COLUMNS`.
const TRANSFER_PARAMS: usize = 23;
const ENTRY_PARAMS: usize = 5;

/// The two statements that insert a table's rows: `many` of `per` rows, and `one` for
/// the rows past the last full `many`. Built once; the parameters a row come from the
/// column list.
struct RowsInsert {
    many: String,
    one: String,
    per: usize,
    params: usize,
}

impl RowsInsert {
    fn new(table: &str, columns: &str, per: usize) -> RowsInsert {
        let params = columns.split(',').count();
        let row = format!("({})", vec!["?"; params].join(", "));
        let sql = |rows| {
            format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                vec![row.as_str(); rows].join(", ")
            )
        };
        RowsInsert {
            many: sql(per),
            one: sql(1),
            per,
            params,
        }
    }

    /// Inserts `rows`, by `many` while a full statement's worth is left, then one at a
    /// time. `values` lists a row's parameters in the column order.
    fn run<'a, R, const N: usize>(
        &self,
        tx: &rusqlite::Transaction<'_>,
        rows: &'a [R],
        values: impl Fn(&'a R) -> [&'a dyn rusqlite::ToSql; N],
    ) -> rusqlite::Result<()> {
        debug_assert_eq!(self.params, N, "a parameter for each column");
        let bind = |statement: &mut rusqlite::CachedStatement<'_>, chunk: &'a [R]| {
            for (n, row) in chunk.iter().enumerate() {
                for (i, value) in values(row).into_iter().enumerate() {
                    statement.raw_bind_parameter(n * N + i + 1, value)?;
                }
            }
            statement.raw_execute()
        };
        let chunks = rows.chunks_exact(self.per);
        let rest = chunks.remainder();
        let mut statement = tx.prepare_cached(&self.many)?;
        for chunk in chunks {
            bind(&mut statement, chunk)?;
        }
        let mut statement = tx.prepare_cached(&self.one)?;
        for row in rest.chunks(1) {
            bind(&mut statement, row)?;
        }
        Ok(())
    }
}

static INSERT_TRANSFERS: LazyLock<RowsInsert> =
    LazyLock::new(|| RowsInsert::new("transfers", TRANSFER_COLUMNS, TRANSFERS_A_STATEMENT));
static INSERT_ENTRIES: LazyLock<RowsInsert> =
    LazyLock::new(|| RowsInsert::new("entries", ENTRY_COLUMNS, ENTRIES_A_STATEMENT));

fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    batch_seq: i64,
    batch: &Batch,
    now_ms: i64,
) -> rusqlite::Result<()> {
    INSERT_TRANSFERS.run(tx, &batch.transfers, |t| transfer_values(&batch_seq, t))?;
    INSERT_ENTRIES.run(tx, &batch.entries, |e| entry_values(&batch_seq, e))?;
    let mut events =
        tx.prepare_cached("INSERT INTO card_events (card_sha, event, at_ms) VALUES (?1, ?2, ?3)")?;
    for (card_sha, event) in &batch.card_events {
        events.execute(params![card_sha, event, now_ms])?;
    }
    Ok(())
}

/// A transfer row's parameters, in `TRANSFER_COLUMNS`' order.
fn transfer_values<'a>(
    batch_seq: &'a i64,
    t: &'a TransferRow,
) -> [&'a dyn rusqlite::ToSql; TRANSFER_PARAMS] {
    [
        batch_seq,
        &t.idx,
        &t.kind,
        &t.mti,
        &t.rc,
        &t.approval,
        &t.acquirer,
        &t.terminal,
        &t.stan,
        &t.transmitted,
        &t.rrn,
        &t.content_sha,
        &t.card_sha,
        &t.family_id,
        &t.programme_id,
        &t.channel,
        &t.purse,
        &t.amount_minor,
        &t.acceptor,
        &t.reference,
        &t.business_day,
        &t.at_ms,
        &t.balances,
    ]
}

/// An entry row's parameters, in `ENTRY_COLUMNS`' order.
fn entry_values<'a>(
    batch_seq: &'a i64,
    e: &'a EntryRow,
) -> [&'a dyn rusqlite::ToSql; ENTRY_PARAMS] {
    [
        batch_seq,
        &e.transfer_idx,
        &e.entry_idx,
        &e.account_id,
        &e.amount_minor,
    ]
}
