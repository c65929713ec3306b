//! Balance checkpoints: every so often, the balances of the accounts touched since the
//! last checkpoint are written down, so start-up reads one row per account plus the
//! entries since, instead of summing all history.

use sqlx::AnyConnection;

use super::db::{exec, Db};
use super::writer::begin_exclusive;
use super::LedgerError;

/// Balance rows written a transaction (three parameters each, under every backend's
/// limit); a national checkpoint of millions of accounts never holds the database's
/// write lock for long.
const CHECKPOINT_ROWS_MAX: usize = 5_000;

/// Commits after `result` is `Ok`, rolls back otherwise.
async fn finish<T>(
    conn: &mut AnyConnection,
    result: Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    match &result {
        Ok(_) => exec(conn, "COMMIT").await?,
        Err(_) => {
            let _ = exec(conn, "ROLLBACK").await;
        }
    }
    result
}

impl Db {
    /// The last checkpoint's batch sequence (0 when there is none).
    pub async fn last_checkpoint(&self, conn: &mut AnyConnection) -> Result<i64, LedgerError> {
        let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(batch_seq) FROM checkpoints")
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.0.unwrap_or(0))
    }

    /// Writes a checkpoint at the current chain head; returns its sequence, or `None`
    /// when nothing was committed since the last one (or another process checkpointed
    /// meanwhile).
    ///
    /// Two phases, so the single writer is never held up by the summing: the balances
    /// are computed in a read snapshot (batches up to the head are immutable, so no lock
    /// is needed), then written in short transactions of `CHECKPOINT_ROWS_MAX` rows, the
    /// `checkpoints` row last. Until that row exists the balance rows of the head are
    /// not read (`balances_from_checkpoint` reads up to the last checkpoint only), and a
    /// retry after a crash writes the same rows again, skipping those already there.
    pub async fn write_checkpoint(&self, now_ms: i64) -> Result<Option<i64>, LedgerError> {
        let mut conn = self.open_connection().await?;
        self.begin_snapshot(&mut conn).await?;
        let summed = self.checkpoint_balances(&mut conn).await;
        let _ = exec(&mut conn, "ROLLBACK").await;
        let Some((previous, head, balances)) = summed? else {
            return Ok(None);
        };
        for chunk in balances.chunks(CHECKPOINT_ROWS_MAX) {
            exec(&mut conn, "BEGIN").await?;
            let written = self.insert_checkpoint_rows(&mut conn, head, chunk).await;
            finish(&mut conn, written).await?;
        }
        begin_exclusive(self.backend, &mut conn).await?;
        let closed = self
            .close_checkpoint(&mut conn, previous, head, now_ms)
            .await;
        finish(&mut conn, closed).await
    }

    /// In a snapshot: the last checkpoint, the head, and the balance at the head of every
    /// account with entries since the last checkpoint.
    async fn checkpoint_balances(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<(i64, i64, Vec<(i64, i64)>)>, LedgerError> {
        let previous = self.last_checkpoint(conn).await?;
        let head = self.last_batch_seq(conn).await?;
        if head <= previous {
            return Ok(None);
        }
        let balances: Vec<(i64, i64)> = sqlx::query_as(&self.sql(
            "SELECT d.account_id, CAST(d.delta + COALESCE((SELECT c.balance_minor FROM balance_checkpoints c \
                 WHERE c.account_id = d.account_id AND c.batch_seq <= ? ORDER BY c.batch_seq DESC LIMIT 1), 0) AS BIGINT) \
             FROM (SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) AS delta FROM entries \
                 WHERE batch_seq > ? AND batch_seq <= ? GROUP BY account_id) d",
        ))
        .bind(previous)
        .bind(previous)
        .bind(head)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some((previous, head, balances)))
    }

    async fn insert_checkpoint_rows(
        &self,
        conn: &mut AnyConnection,
        head: i64,
        rows: &[(i64, i64)],
    ) -> Result<(), LedgerError> {
        let values = vec!["(?, ?, ?)"; rows.len()].join(", ");
        let sql = format!(
            "INSERT INTO balance_checkpoints (batch_seq, account_id, balance_minor) VALUES {values} \
             ON CONFLICT DO NOTHING"
        );
        let sql = self.sql(&sql);
        let mut query = sqlx::query(&sql);
        for (account, balance) in rows {
            query = query.bind(head).bind(*account).bind(*balance);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    /// The checkpoint exists once this row does; skipped when another process wrote a
    /// checkpoint after the one these balances started from.
    async fn close_checkpoint(
        &self,
        conn: &mut AnyConnection,
        previous: i64,
        head: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, LedgerError> {
        if self.last_checkpoint(conn).await? != previous {
            return Ok(None);
        }
        sqlx::query(&self.sql("INSERT INTO checkpoints (batch_seq, at_ms) VALUES (?, ?)"))
            .bind(head)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        Ok(Some(head))
    }

    /// Every account's balance: its latest checkpoint plus the entries after the last
    /// checkpoint.
    pub async fn balances_from_checkpoint(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<(i64, i64)>, LedgerError> {
        let last = self.last_checkpoint(conn).await?;
        let mut balances: std::collections::HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(&self.sql(
            "SELECT c.account_id, c.balance_minor FROM balance_checkpoints c \
             JOIN (SELECT account_id, MAX(batch_seq) AS s FROM balance_checkpoints WHERE batch_seq <= ? \
                 GROUP BY account_id) m \
             ON m.account_id = c.account_id AND m.s = c.batch_seq",
        ))
        .bind(last)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let since: Vec<(i64, i64)> = sqlx::query_as(&self.sql(
            "SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) FROM entries WHERE batch_seq > ? GROUP BY account_id",
        ))
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
        for (account, delta) in since {
            *balances.entry(account).or_insert(0) += delta;
        }
        Ok(balances.into_iter().collect())
    }

    /// All checkpoint rows, by checkpoint, for `ledger verify`.
    pub async fn checkpoint_rows(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<(i64, i64, i64)>, LedgerError> {
        Ok(sqlx::query_as("SELECT batch_seq, account_id, balance_minor FROM balance_checkpoints ORDER BY batch_seq")
            .fetch_all(&mut *conn)
            .await?)
    }
}
