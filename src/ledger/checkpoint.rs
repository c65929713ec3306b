//! Balance checkpoints: every so often, the balances of the accounts touched since the
//! last checkpoint are written down, so start-up reads one row per account plus the
//! entries since, instead of summing all history.

use sqlx::AnyConnection;

use super::db::{exec, Db};
use super::writer::begin_exclusive;
use super::LedgerError;

impl Db {
    /// The last checkpoint's batch sequence (0 when there is none).
    pub async fn last_checkpoint(&self, conn: &mut AnyConnection) -> Result<i64, LedgerError> {
        let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(batch_seq) FROM checkpoints")
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.0.unwrap_or(0))
    }

    /// Writes a checkpoint at the current chain head; returns its sequence, or `None`
    /// when nothing was committed since the last one.
    pub async fn write_checkpoint(&self, now_ms: i64) -> Result<Option<i64>, LedgerError> {
        let mut conn = self.open_connection().await?;
        begin_exclusive(self.backend, &mut conn).await?;
        let result = self.checkpoint_in_tx(&mut conn, now_ms).await;
        match &result {
            Ok(_) => exec(&mut conn, "COMMIT").await?,
            Err(_) => {
                let _ = exec(&mut conn, "ROLLBACK").await;
            }
        }
        result
    }

    async fn checkpoint_in_tx(
        &self,
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> Result<Option<i64>, LedgerError> {
        let previous = self.last_checkpoint(conn).await?;
        let head = self.last_batch_seq(conn).await?;
        if head <= previous {
            return Ok(None);
        }
        sqlx::query(&self.sql(
            "INSERT INTO balance_checkpoints (batch_seq, account_id, balance_minor) \
             SELECT ?, d.account_id, CAST(d.delta + COALESCE((SELECT c.balance_minor FROM balance_checkpoints c \
                 WHERE c.account_id = d.account_id ORDER BY c.batch_seq DESC LIMIT 1), 0) AS BIGINT) \
             FROM (SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) AS delta FROM entries \
                 WHERE batch_seq > ? AND batch_seq <= ? GROUP BY account_id) d",
        ))
        .bind(head)
        .bind(previous)
        .bind(head)
        .execute(&mut *conn)
        .await?;
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
        let mut balances: std::collections::HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
            "SELECT c.account_id, c.balance_minor FROM balance_checkpoints c \
             JOIN (SELECT account_id, MAX(batch_seq) AS s FROM balance_checkpoints GROUP BY account_id) m \
             ON m.account_id = c.account_id AND m.s = c.batch_seq",
        )
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
