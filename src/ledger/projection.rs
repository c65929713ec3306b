//! Projections: the ledger's look-ups in random order (a card's transactions, an
//! account's entries), kept off the commit path.
//!
//! Why: an index in random order makes every insert dirty a page of its own, and those
//! pages are what each commit writes and fsyncs. On SQLite the card index and the
//! entries' account index halved the switch (docs/performance.md,
//! `benches/index_cost.sh`). So the ledger's tables keep only append-order keys, and two
//! projections hold the rest: `card_history` (card, time -> transfer) and
//! `account_history` (account -> entry). The projector fills them from the ledger by
//! batch sequence up to `projection_head`, in sorted steps of many batches, without an
//! fsync of its own: they are derived data. A lost, deleted or stale projection is
//! rebuilt from the ledger.
//!
//! A reader never depends on how far behind the projector is: it takes the projected
//! rows up to the head and the ledger's own rows after it (the tail, read by batch
//! sequence), in one snapshot, so every committed row is seen exactly once.
//!
//! Where they live: on SQLite in a file of their own beside the ledger
//! (`<ledger>-projections`, with its own lock and WAL, `synchronous = NORMAL`), attached
//! to every pooled connection as `projections` (never to a ledger writer's connection:
//! a `BEGIN IMMEDIATE` there would lock the projections too). On PostgreSQL in the same
//! database, written with `synchronous_commit = off`. The names are unqualified in every
//! query: SQLite finds a table in an attached database when the main one has none by
//! that name, so one text serves both backends.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::db::{exec, Backend, Db};
use super::rows::TransferRow;
use super::LedgerError;

/// Ledger batches projected in one step (one transaction of the projection store): more
/// than one interval of the switch at its most batches a second (about 500 on two
/// cores, docs/performance.md), so one step a tick keeps up. A switch batch holds at
/// most `authoriser.batch_size_max` transfers, so a step is bounded; a tranche's one
/// batch of millions of lines is one step, off the hot path.
const STEP_BATCHES_MAX: i64 = 16_384;

/// Accounts summed in one statement (one bound parameter each, under every backend's
/// limit).
const ACCOUNTS_PER_QUERY_MAX: usize = 5_000;

/// The projections' layout. A store of another layout (an older build's) is dropped at
/// start-up and projected again from the ledger: the store is derived, rebuilt rather
/// than migrated. 2: the card's hash as its 32 bytes, not 64 hex characters, which took
/// 40% of `card_history`'s pages and of the projector's writes (docs/performance.md,
/// session 10).
const LAYOUT: i64 = 2;

/// The projection tables; `{db}` names the database they live in (SQLite's attached
/// file), `{rowid}` drops SQLite's hidden row id (the key being the table) and `{bytes}`
/// is the backend's byte-string type.
const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS {db}card_history (
    card_sha  {bytes} NOT NULL,
    at_ms     BIGINT NOT NULL,
    batch_seq BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (card_sha, at_ms, batch_seq, idx)
){rowid};
CREATE TABLE IF NOT EXISTS {db}account_history (
    account_id   BIGINT NOT NULL,
    batch_seq    BIGINT NOT NULL,
    transfer_idx INTEGER NOT NULL,
    entry_idx    INTEGER NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (account_id, batch_seq, transfer_idx, entry_idx)
){rowid};
CREATE TABLE IF NOT EXISTS {db}projection_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    batch_seq BIGINT NOT NULL
);
INSERT INTO {db}projection_head (id, batch_seq)
    SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM {db}projection_head);";

/// Which layout the store has, beside it.
const LAYOUT_SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS {db}projection_layout (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
)";

/// A store of an older layout: its tables go, and `SCHEMA` lays them out again, empty.
const DROP_TABLES: &str = "\
DROP TABLE IF EXISTS {db}card_history;
DROP TABLE IF EXISTS {db}account_history;
DROP TABLE IF EXISTS {db}projection_head;";

/// Where a projection step left things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projected {
    /// The last ledger batch projected.
    pub head: i64,
    /// The ledger's last batch when the step read it.
    pub ledger_head: i64,
}

impl Projected {
    pub fn lag_batches(&self) -> i64 {
        self.ledger_head - self.head
    }
}

/// The projections' file of a SQLite ledger file.
pub fn sqlite_projections_path(ledger: &std::path::Path) -> std::path::PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push("-projections");
    std::path::PathBuf::from(name)
}

impl Db {
    /// Creates the projection tables if missing, in this build's layout: a store of
    /// another is dropped, and the projector fills the new one from the ledger (they are
    /// not ledger migrations: the store is derived, and rebuilt rather than migrated).
    pub(crate) async fn ensure_projections(&self) -> Result<(), LedgerError> {
        let (db, rowid, bytes, lock) = match self.backend {
            Backend::Sqlite => (
                "projections.",
                " WITHOUT ROWID",
                "BLOB",
                // The first write takes the projection file's write lock.
                "UPDATE projection_layout SET version = version",
            ),
            Backend::Postgres => (
                "",
                "",
                "BYTEA",
                "LOCK TABLE projection_layout IN SHARE ROW EXCLUSIVE MODE",
            ),
        };
        let laid_out = |text: &str| {
            text.replace("{db}", db)
                .replace("{rowid}", rowid)
                .replace("{bytes}", bytes)
        };
        sqlx::raw_sql(&laid_out(LAYOUT_SCHEMA))
            .execute(&self.pool)
            .await?;
        // Under the lock, so that of two processes starting at once the second finds the
        // first's layout rather than dropping it again.
        let mut tx = self.pool.begin().await?;
        exec(&mut tx, lock).await?;
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM projection_layout WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        let found = found.map(|(version,)| version);
        if found != Some(LAYOUT) {
            tracing::info!(
                found = ?found,
                layout = LAYOUT,
                "projection store laid out anew: projected from the ledger"
            );
            sqlx::raw_sql(&laid_out(DROP_TABLES))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql(&laid_out(SCHEMA)).execute(&mut *tx).await?;
        sqlx::query(&self.sql(
            "INSERT INTO projection_layout (id, version) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        ))
        .bind(LAYOUT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Projects up to `STEP_BATCHES_MAX` ledger batches after the head, in one
    /// transaction of the projection store. Safe to run from several processes at once:
    /// the first statement takes the projection's write lock (only the projection's: the
    /// ledger is only read), so steps never interleave.
    pub async fn project_step(&self) -> Result<Projected, LedgerError> {
        let mut conn = self.pool.acquire().await?;
        exec(&mut conn, "BEGIN").await?;
        let stepped = self.project_step_in(&mut conn).await;
        let committed = match &stepped {
            Ok(_) => exec(&mut conn, "COMMIT").await,
            Err(_) => Ok(()),
        };
        if stepped.is_err() || committed.is_err() {
            // The connection goes back to the pool: never inside a transaction.
            let _ = exec(&mut conn, "ROLLBACK").await;
        }
        committed?;
        stepped
    }

    async fn project_step_in(&self, conn: &mut AnyConnection) -> Result<Projected, LedgerError> {
        if self.backend == Backend::Postgres {
            // Derived data: a crash loses at most the last steps, which are projected
            // again from the ledger.
            exec(conn, "SET LOCAL synchronous_commit = off").await?;
        }
        // A store without its head row was emptied or damaged under us (its tables
        // truncated, a restore without them): start again from nothing, as below.
        let reborn = sqlx::query(
            "INSERT INTO projection_head (id, batch_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        )
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        exec(
            conn,
            "UPDATE projection_head SET batch_seq = batch_seq WHERE id = 1",
        )
        .await?;
        let mut head = self.projection_head(conn).await?;
        let ledger_head = self.last_batch_seq(conn).await?;
        // Ahead of the ledger: the ledger was replaced (a restore) under a projection of
        // another. Either way, start again from nothing.
        let rebuild = if reborn {
            Some("the store has no head")
        } else if head > ledger_head {
            Some("the store is ahead of the ledger")
        } else {
            None
        };
        if let Some(why) = rebuild {
            tracing::warn!(head, ledger_head, why, "projections rebuilt from nothing");
            exec(conn, "DELETE FROM card_history").await?;
            exec(conn, "DELETE FROM account_history").await?;
            head = 0;
        }
        let upto = ledger_head.min(head + STEP_BATCHES_MAX);
        if upto > head {
            // Sorted by each table's key, so the inserts walk each b-tree once. The
            // ledger's card hash is 64 lowercase hex digits or empty (checked before
            // every write and by `ledger verify`), which each backend turns into bytes.
            let card_bytes = match self.backend {
                Backend::Sqlite => "unhex(card_sha)",
                Backend::Postgres => "decode(card_sha, 'hex')",
            };
            sqlx::query(&self.sql(&format!(
                "INSERT INTO card_history (card_sha, at_ms, batch_seq, idx) \
                 SELECT {card_bytes}, at_ms, batch_seq, idx FROM transfers \
                 WHERE batch_seq > ? AND batch_seq <= ? AND card_sha <> '' \
                 ORDER BY 1, 2, 3, 4",
            )))
            .bind(head)
            .bind(upto)
            .execute(&mut *conn)
            .await?;
            sqlx::query(&self.sql(
                "INSERT INTO account_history (account_id, batch_seq, transfer_idx, entry_idx, amount_minor) \
                 SELECT account_id, batch_seq, transfer_idx, entry_idx, amount_minor FROM entries \
                 WHERE batch_seq > ? AND batch_seq <= ? \
                 ORDER BY account_id, batch_seq, transfer_idx, entry_idx",
            ))
            .bind(head)
            .bind(upto)
            .execute(&mut *conn)
            .await?;
            sqlx::query(&self.sql("UPDATE projection_head SET batch_seq = ? WHERE id = 1"))
                .bind(upto)
                .execute(&mut *conn)
                .await?;
        }
        Ok(Projected {
            head: upto.max(head),
            ledger_head,
        })
    }

    /// Steps until the projections hold the ledger as it stood when this began (a
    /// writer going on meanwhile does not keep it running).
    pub async fn project_all(&self) -> Result<Projected, LedgerError> {
        let mut projected = self.project_step().await?;
        let target = projected.ledger_head;
        while projected.head < target {
            projected = self.project_step().await?;
        }
        Ok(projected)
    }

    /// The last ledger batch the projections hold: 0 when the store has lost its head, so
    /// a reader then takes every row from the ledger.
    pub async fn projection_head(&self, conn: &mut AnyConnection) -> Result<i64, LedgerError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT batch_seq FROM projection_head WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?;
        Ok(row.map_or(0, |(head,)| head))
    }

    /// The card's most recent transfers, newest first: the projected ones and the
    /// ledger's tail, in one snapshot.
    pub async fn card_transfers(
        &self,
        conn: &mut AnyConnection,
        card_sha: &str,
        limit: i64,
    ) -> Result<Vec<TransferRow>, LedgerError> {
        self.begin_snapshot(conn).await?;
        let read = self.card_transfers_in(conn, card_sha, limit).await;
        let _ = exec(conn, "ROLLBACK").await;
        read
    }

    async fn card_transfers_in(
        &self,
        conn: &mut AnyConnection,
        card_sha: &str,
        limit: i64,
    ) -> Result<Vec<TransferRow>, LedgerError> {
        // The projection first: on SQLite each file's snapshot starts at its first
        // read, so the ledger's is then no older than the projection's head.
        let head = self.projection_head(conn).await?;
        let select = super::read::TRANSFER_SELECT;
        let newest = "ORDER BY at_ms DESC, batch_seq DESC, idx DESC LIMIT ?";
        // The tail by the ledger's key alone, sorted here: ordered by time, SQLite would
        // walk the time index back through all history looking for this card.
        let tail_sql = format!("{select} WHERE batch_seq > ? AND card_sha = ?");
        let mut rows: Vec<TransferRow> = sqlx::query_as(&self.sql(&tail_sql))
            .bind(head)
            .bind(card_sha)
            .fetch_all(&mut *conn)
            .await?;
        let projected_sql = format!(
            "{select} WHERE (batch_seq, idx) IN (SELECT batch_seq, idx FROM card_history \
             WHERE card_sha = ? AND batch_seq <= ? {newest})"
        );
        // Not hex: no card of ours, so nothing projected either.
        let card_bytes = hex::decode(card_sha).unwrap_or_default();
        rows.extend(
            sqlx::query_as::<_, TransferRow>(&self.sql(&projected_sql))
                .bind(card_bytes)
                .bind(head)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?,
        );
        rows.sort_unstable_by(|a, b| {
            (b.at_ms, b.batch_seq, b.idx).cmp(&(a.at_ms, a.batch_seq, a.idx))
        });
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(rows)
    }

    /// The balance of each account named (the sum of all its entries), in one snapshot;
    /// accounts without entries are absent.
    pub async fn account_balances(
        &self,
        conn: &mut AnyConnection,
        accounts: &[i64],
    ) -> Result<HashMap<i64, i64>, LedgerError> {
        self.begin_snapshot(conn).await?;
        let read = self.account_balances_in(conn, accounts).await;
        let _ = exec(conn, "ROLLBACK").await;
        read
    }

    async fn account_balances_in(
        &self,
        conn: &mut AnyConnection,
        accounts: &[i64],
    ) -> Result<HashMap<i64, i64>, LedgerError> {
        let head = self.projection_head(conn).await?;
        let mut balances = HashMap::with_capacity(accounts.len());
        for chunk in accounts.chunks(ACCOUNTS_PER_QUERY_MAX) {
            let list = vec!["?"; chunk.len()].join(", ");
            // The tail is read by batch sequence (no account index in the ledger) and
            // filtered; the projection by account.
            for sql in [
                format!(
                    "SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) FROM account_history \
                     WHERE batch_seq <= ? AND account_id IN ({list}) GROUP BY account_id"
                ),
                format!(
                    "SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) FROM entries \
                     WHERE batch_seq > ? AND account_id IN ({list}) GROUP BY account_id"
                ),
            ] {
                let sql = self.sql(&sql);
                let mut query = sqlx::query_as::<_, (i64, i64)>(&sql).bind(head);
                for account in chunk {
                    query = query.bind(*account);
                }
                for (account, sum) in query.fetch_all(&mut *conn).await? {
                    *balances.entry(account).or_insert(0) += sum;
                }
            }
        }
        Ok(balances)
    }

    /// Net amount each purse paid each acquirer (debits less refunds and reversals) up
    /// to ledger batch `upto`: the most a refund at that acquirer may return to that
    /// purse. Rows of (purse account, acquirer account, amount). Read in the caller's
    /// snapshot, whose ledger head is `upto`.
    pub async fn refundable(
        &self,
        conn: &mut AnyConnection,
        upto: i64,
    ) -> Result<Vec<(i64, i64, i64)>, LedgerError> {
        let head = self.projection_head(conn).await?.min(upto);
        Ok(sqlx::query_as(&self.sql(
            // From the few acquirer accounts outwards: their entries are the card
            // traffic, not the millions of disbursement entries. The other leg of each
            // by the ledger's key.
            "SELECT p.account_id, a.account_id, CAST(SUM(a.amount_minor) AS BIGINT) \
             FROM (SELECT h.batch_seq, h.transfer_idx, h.account_id, h.amount_minor \
                   FROM accounts aa JOIN account_history h ON h.account_id = aa.account_id \
                   WHERE aa.kind = 'acquirer' AND h.batch_seq <= ? \
                   UNION ALL \
                   SELECT e.batch_seq, e.transfer_idx, e.account_id, e.amount_minor \
                   FROM entries e JOIN accounts aa ON aa.account_id = e.account_id \
                   WHERE aa.kind = 'acquirer' AND e.batch_seq > ? AND e.batch_seq <= ?) a \
             JOIN entries p ON p.batch_seq = a.batch_seq AND p.transfer_idx = a.transfer_idx \
                 AND p.account_id <> a.account_id \
             JOIN accounts pa ON pa.account_id = p.account_id AND pa.kind = 'purse' \
             GROUP BY p.account_id, a.account_id",
        ))
        .bind(head)
        .bind(head)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await?)
    }
}
