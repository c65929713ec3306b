//! Start-up's bulk reads: every family, account, balance and card, streamed row by row
//! into a [`BulkSink`] instead of collected first (a million families are some 13
//! million rows). SQLite is read with rusqlite on a read-only connection of its own:
//! the generic driver costs about 3 µs a row. PostgreSQL is read through sqlx streams
//! on the caller's snapshot. The SQL is the same for both, except where noted.

use std::path::Path;

use futures::TryStreamExt;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use sqlx::AnyConnection;

use super::read::TRANSFER_SELECT;
use super::rows::set_text;
use super::{LedgerError, TransferRow};

/// How many rows the tables hold (at most), so the state can be sized once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub families: usize,
    pub cards: usize,
    pub account_id_max: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct AccountRef<'a> {
    pub account_id: i64,
    pub kind: &'a str,
    pub programme_id: &'a str,
    pub owner: &'a str,
    pub purse: &'a str,
}

#[derive(Clone, Copy)]
pub struct CardRef<'a> {
    pub seq: i64,
    pub card_sha: &'a str,
    pub family_id: &'a str,
    pub expiry: &'a str,
    pub pin_offset: &'a str,
}

/// What takes the rows, in this order: sizes, families, accounts, balances, cards.
pub trait BulkSink {
    fn sizes(&mut self, sizes: Sizes);
    fn family(&mut self, seq: i64, family_id: &str, programme_id: &str);
    fn account(&mut self, account: AccountRef<'_>);
    /// Adds to an account's balance: its latest checkpoint, then entries after the last
    /// checkpoint (one row per account, or per entry on SQLite).
    fn balance(&mut self, account_id: i64, amount_minor: i64);
    fn card(&mut self, card: CardRef<'_>);
}

const HEAD: &str = "SELECT CAST(COALESCE(MAX(batch_seq), 0) AS BIGINT) FROM ledger_batches";
/// The largest sequence numbers, not COUNT(*): one b-tree descent each instead of a
/// scan (3 s for the cards of a million families on SQLite), and never fewer.
const SIZES: &str = "SELECT CAST((SELECT COALESCE(MAX(seq), 0) FROM families) AS BIGINT), \
     CAST((SELECT COALESCE(MAX(seq), 0) FROM cards) AS BIGINT), \
     CAST((SELECT COALESCE(MAX(account_id), 0) FROM accounts) AS BIGINT)";
const FAMILIES: &str = "SELECT seq, family_id, programme_id FROM families ORDER BY seq";
const ACCOUNTS: &str =
    "SELECT account_id, kind, programme_id, owner, purse FROM accounts ORDER BY account_id";
const LAST_CHECKPOINT: &str = "SELECT CAST(COALESCE(MAX(batch_seq), 0) AS BIGINT) FROM checkpoints";
/// PostgreSQL: the latest checkpoint row of each account, chosen on the server. Rows
/// after the last closed checkpoint (one being written) are not read.
const CHECKPOINT_BALANCES: &str =
    "SELECT c.account_id, c.balance_minor FROM balance_checkpoints c \
     JOIN (SELECT account_id, MAX(batch_seq) AS s FROM balance_checkpoints WHERE batch_seq <= $1 \
         GROUP BY account_id) m \
     ON m.account_id = c.account_id AND m.s = c.batch_seq";
/// SQLite: every checkpoint row in key order, the last of each account kept while
/// reading (the join above takes 5 s there at five million accounts, this 2 s).
const CHECKPOINT_BALANCES_ORDERED: &str =
    "SELECT account_id, balance_minor FROM balance_checkpoints \
     WHERE batch_seq <= ?1 ORDER BY account_id, batch_seq";
/// PostgreSQL sums on the server: one row per account crosses the wire.
const BALANCES_SINCE_GROUPED: &str =
    "SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) FROM entries \
     WHERE batch_seq > $1 GROUP BY account_id";
/// SQLite reads the entries in key order and the sink adds them: grouping ten million
/// entries (a tranche without a checkpoint yet) would sort them first.
const BALANCES_SINCE_ENTRIES: &str =
    "SELECT account_id, amount_minor FROM entries WHERE batch_seq > ?1";
const CARDS: &str = "SELECT seq, card_sha, family_id, expiry, pin_offset FROM cards ORDER BY seq";

/// Reads a SQLite ledger in one read transaction of a read-only connection; returns the
/// ledger head (last batch) that snapshot saw.
pub fn read_sqlite(path: &Path, sink: &mut impl BulkSink) -> Result<i64, LedgerError> {
    let mut conn = open_read_only(path)?;
    // Deferred: the snapshot is taken at the first read, the head, and holds to the end.
    let tx = conn.transaction()?;
    let head: i64 = tx.query_row(HEAD, [], |r| r.get(0))?;
    let sizes = tx.query_row(SIZES, [], |r| {
        Ok(Sizes {
            families: usize::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            cards: usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            account_id_max: r.get(2)?,
        })
    })?;
    sink.sizes(sizes);
    let mut timer = PhaseTimer::default();
    each_sqlite(&tx, FAMILIES, [], |r| {
        sink.family(r.get(0)?, text(r, 1)?, text(r, 2)?);
        Ok(())
    })?;
    let families_ms = timer.lap_ms();
    each_sqlite(&tx, ACCOUNTS, [], |r| {
        sink.account(sqlite_account(r)?);
        Ok(())
    })?;
    let accounts_ms = timer.lap_ms();
    let last_checkpoint: i64 = tx.query_row(LAST_CHECKPOINT, [], |r| r.get(0))?;
    sqlite_checkpoint_balances(&tx, last_checkpoint, sink)?;
    let checkpoint_ms = timer.lap_ms();
    each_sqlite(&tx, BALANCES_SINCE_ENTRIES, [last_checkpoint], |r| {
        sink.balance(r.get(0)?, r.get(1)?);
        Ok(())
    })?;
    let entries_ms = timer.lap_ms();
    each_sqlite(&tx, CARDS, [], |r| {
        sink.card(CardRef {
            seq: r.get(0)?,
            card_sha: text(r, 1)?,
            family_id: text(r, 2)?,
            expiry: text(r, 3)?,
            pin_offset: text(r, 4)?,
        });
        Ok(())
    })?;
    tracing::info!(
        families_ms,
        accounts_ms,
        checkpoint_ms,
        entries_ms,
        cards_ms = timer.lap_ms(),
        "bulk read of the SQLite ledger"
    );
    Ok(head)
}

/// After [`TRANSFER_SELECT`]: the decided messages at or after a time, in ledger order
/// (not a tranche's disbursements: they have no MTI, no request key, and are millions).
const DECISIONS_SINCE: &str = " WHERE at_ms >= ? AND mti <> '' ORDER BY batch_seq, idx";
/// The legs of the decisions above, in the same order. Ordered by the transfer's columns:
/// that leads SQLite from transfers to their entries, not through every entry (10 M after
/// a tranche: 7 s instead of 1 s).
const ENTRIES_SINCE: &str =
    "SELECT e.batch_seq, e.transfer_idx, e.account_id, e.amount_minor FROM entries e \
     JOIN transfers t ON t.batch_seq = e.batch_seq AND t.idx = e.transfer_idx \
     WHERE t.at_ms >= ? AND t.mti <> '' ORDER BY t.batch_seq, t.idx, e.entry_idx";

/// Streams the decisions at or after `since_ms` (the idempotency window), each with its
/// legs, to `visit`, in ledger order, in one read transaction of a read-only connection,
/// until `visit` says stop (`false`); returns the ledger head it saw. `visit` may take
/// the row and its legs by swapping in others: the next decision is written into those,
/// reusing their buffers, so memory does not grow with the window (a day of traffic can
/// be millions of decisions; the generic driver took ~19 µs a row, 21 s for 841,043 of
/// them after a loaded run).
pub fn read_sqlite_decisions(
    path: &Path,
    since_ms: i64,
    mut visit: impl FnMut(&mut TransferRow, &mut Vec<(i64, i64)>) -> bool,
) -> Result<i64, LedgerError> {
    let mut conn = open_read_only(path)?;
    let tx = conn.transaction()?;
    let head: i64 = tx.query_row(HEAD, [], |r| r.get(0))?;
    // Two cursors in the same snapshot, in the same order: a merge, not a map of legs.
    let mut transfers = tx.prepare(&format!("{TRANSFER_SELECT}{DECISIONS_SINCE}"))?;
    let mut transfer_rows = transfers.query([since_ms])?;
    let mut entries = tx.prepare(ENTRIES_SINCE)?;
    let mut entry_rows = entries.query([since_ms])?;
    let mut next_entry = next_leg(&mut entry_rows)?;
    let mut row = TransferRow::default();
    let mut legs: Vec<(i64, i64)> = Vec::new();
    while let Some(r) = transfer_rows.next()? {
        fill_transfer(r, &mut row)?;
        legs.clear();
        while let Some((batch_seq, idx, account_id, amount_minor)) = next_entry {
            if (batch_seq, idx) > (row.batch_seq, row.idx) {
                break;
            }
            if (batch_seq, idx) == (row.batch_seq, row.idx) {
                legs.push((account_id, amount_minor));
            }
            next_entry = next_leg(&mut entry_rows)?;
        }
        if !visit(&mut row, &mut legs) {
            break;
        }
    }
    Ok(head)
}

fn next_leg(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<(i64, i32, i64, i64)>> {
    rows.next()?
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .transpose()
}

/// A row of [`TRANSFER_SELECT`] into `row`, reusing its strings' buffers.
fn fill_transfer(r: &Row<'_>, row: &mut TransferRow) -> rusqlite::Result<()> {
    let set = |field: &mut String, column: usize| -> rusqlite::Result<()> {
        set_text(field, text(r, column)?);
        Ok(())
    };
    let TransferRow {
        batch_seq,
        idx,
        kind,
        mti,
        rc,
        approval,
        acquirer,
        terminal,
        stan,
        transmitted,
        rrn,
        content_sha,
        card_sha,
        family_id,
        programme_id,
        channel,
        purse,
        amount_minor,
        acceptor,
        reference,
        business_day,
        at_ms,
        balances,
    } = row;
    *batch_seq = r.get(0)?;
    *idx = r.get(1)?;
    set(kind, 2)?;
    set(mti, 3)?;
    set(rc, 4)?;
    set(approval, 5)?;
    set(acquirer, 6)?;
    set(terminal, 7)?;
    set(stan, 8)?;
    set(transmitted, 9)?;
    set(rrn, 10)?;
    set(content_sha, 11)?;
    set(card_sha, 12)?;
    set(family_id, 13)?;
    set(programme_id, 14)?;
    set(channel, 15)?;
    set(purse, 16)?;
    *amount_minor = r.get(17)?;
    set(acceptor, 18)?;
    set(reference, 19)?;
    *business_day = r.get(20)?;
    *at_ms = r.get(21)?;
    set(balances, 22)?;
    Ok(())
}

/// A read-only connection of a start-up reader's own.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Each account's latest checkpoint balance: the rows come by account, then checkpoint.
fn sqlite_checkpoint_balances(
    tx: &rusqlite::Transaction<'_>,
    last_checkpoint: i64,
    sink: &mut impl BulkSink,
) -> rusqlite::Result<()> {
    let mut latest: Option<(i64, i64)> = None;
    each_sqlite(tx, CHECKPOINT_BALANCES_ORDERED, [last_checkpoint], |r| {
        let (account_id, balance_minor): (i64, i64) = (r.get(0)?, r.get(1)?);
        if let Some((done, balance)) = latest.filter(|(a, _)| *a != account_id) {
            sink.balance(done, balance);
        }
        latest = Some((account_id, balance_minor));
        Ok(())
    })?;
    if let Some((account_id, balance_minor)) = latest {
        sink.balance(account_id, balance_minor);
    }
    Ok(())
}

/// Milliseconds of each phase of the bulk read, for the log.
struct PhaseTimer(std::time::Instant);

impl Default for PhaseTimer {
    fn default() -> PhaseTimer {
        PhaseTimer(std::time::Instant::now())
    }
}

impl PhaseTimer {
    fn lap_ms(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.0).as_millis() as u64;
        self.0 = now;
        ms
    }
}

fn each_sqlite<P: rusqlite::Params>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: P,
    mut visit: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare(sql)?;
    let mut rows = statement.query(params)?;
    while let Some(row) = rows.next()? {
        visit(row)?;
    }
    Ok(())
}

/// A text column borrowed from the row: no allocation per value.
fn text<'r>(row: &'r Row<'_>, column: usize) -> rusqlite::Result<&'r str> {
    match row.get_ref(column)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(rusqlite::Error::Utf8Error),
        other => Err(rusqlite::Error::InvalidColumnType(
            column,
            String::new(),
            other.data_type(),
        )),
    }
}

fn sqlite_account<'r>(r: &'r Row<'_>) -> rusqlite::Result<AccountRef<'r>> {
    Ok(AccountRef {
        account_id: r.get(0)?,
        kind: text(r, 1)?,
        programme_id: text(r, 2)?,
        owner: text(r, 3)?,
        purse: text(r, 4)?,
    })
}

/// Reads PostgreSQL on the caller's transaction, which holds the snapshot; returns the
/// ledger head it saw.
pub async fn read_any(
    conn: &mut AnyConnection,
    sink: &mut impl BulkSink,
) -> Result<i64, LedgerError> {
    let (head,): (i64,) = sqlx::query_as(HEAD).fetch_one(&mut *conn).await?;
    let (families, cards, account_id_max): (i64, i64, i64) =
        sqlx::query_as(SIZES).fetch_one(&mut *conn).await?;
    sink.sizes(Sizes {
        families: usize::try_from(families).unwrap_or(0),
        cards: usize::try_from(cards).unwrap_or(0),
        account_id_max,
    });
    let mut rows = sqlx::query_as::<_, (i64, String, String)>(FAMILIES).fetch(&mut *conn);
    while let Some((seq, family_id, programme_id)) = rows.try_next().await? {
        sink.family(seq, &family_id, &programme_id);
    }
    drop(rows);
    let mut rows =
        sqlx::query_as::<_, (i64, String, String, String, String)>(ACCOUNTS).fetch(&mut *conn);
    while let Some((account_id, kind, programme_id, owner, purse)) = rows.try_next().await? {
        sink.account(AccountRef {
            account_id,
            kind: &kind,
            programme_id: &programme_id,
            owner: &owner,
            purse: &purse,
        });
    }
    drop(rows);
    let (last_checkpoint,): (i64,) = sqlx::query_as(LAST_CHECKPOINT)
        .fetch_one(&mut *conn)
        .await?;
    let mut rows = sqlx::query_as::<_, (i64, i64)>(CHECKPOINT_BALANCES)
        .bind(last_checkpoint)
        .fetch(&mut *conn);
    while let Some((account_id, balance_minor)) = rows.try_next().await? {
        sink.balance(account_id, balance_minor);
    }
    drop(rows);
    let mut rows = sqlx::query_as::<_, (i64, i64)>(BALANCES_SINCE_GROUPED)
        .bind(last_checkpoint)
        .fetch(&mut *conn);
    while let Some((account_id, delta_minor)) = rows.try_next().await? {
        sink.balance(account_id, delta_minor);
    }
    drop(rows);
    let mut rows =
        sqlx::query_as::<_, (i64, String, String, String, String)>(CARDS).fetch(&mut *conn);
    while let Some((seq, card_sha, family_id, expiry, pin_offset)) = rows.try_next().await? {
        sink.card(CardRef {
            seq,
            card_sha: &card_sha,
            family_id: &family_id,
            expiry: &expiry,
            pin_offset: &pin_offset,
        });
    }
    Ok(head)
}

/// The idempotency window's decisions with their legs (PostgreSQL): one statement, a
/// transfer's columns ([`TRANSFER_SELECT`]'s, not a second list of them) on each of its
/// legs' rows, in entry order.
fn decisions_with_legs() -> String {
    format!(
        "SELECT t.*, e.account_id AS leg_account_id, e.amount_minor AS leg_amount_minor \
         FROM ({TRANSFER_SELECT} WHERE at_ms >= $1 AND mti <> '') t \
         LEFT JOIN entries e ON e.batch_seq = t.batch_seq AND e.transfer_idx = t.idx \
         ORDER BY t.batch_seq, t.idx, e.entry_idx"
    )
}

/// A row of [`decisions_with_legs`]: a decision, and one of its legs if it has any.
#[derive(sqlx::FromRow)]
struct DecisionLeg {
    #[sqlx(flatten)]
    transfer: TransferRow,
    leg_account_id: Option<i64>,
    leg_amount_minor: Option<i64>,
}

/// [`read_sqlite_decisions`] on the caller's transaction, which holds the snapshot: the
/// same decisions, with their legs, in the same order, streamed (never the whole window
/// in memory).
pub async fn read_any_decisions(
    conn: &mut AnyConnection,
    since_ms: i64,
    mut visit: impl FnMut(&TransferRow, &[(i64, i64)]),
) -> Result<(), LedgerError> {
    let sql = decisions_with_legs();
    let mut rows = sqlx::query_as::<_, DecisionLeg>(&sql)
        .bind(since_ms)
        .fetch(&mut *conn);
    let mut current: Option<TransferRow> = None;
    let mut legs: Vec<(i64, i64)> = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let same = current
            .as_ref()
            .is_some_and(|c| (c.batch_seq, c.idx) == (row.transfer.batch_seq, row.transfer.idx));
        if !same {
            if let Some(done) = current.take() {
                visit(&done, &legs);
            }
            legs.clear();
            current = Some(row.transfer);
        }
        if let (Some(account_id), Some(amount_minor)) = (row.leg_account_id, row.leg_amount_minor) {
            legs.push((account_id, amount_minor));
        }
    }
    if let Some(done) = current {
        visit(&done, &legs);
    }
    Ok(())
}
