//! Reads: what start-up, the sync loop, verify and reports need from the database.

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::AnyConnection;

use super::db::Db;
use super::rows::{EntryRow, TransferRow};
use super::LedgerError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: i64,
    pub kind: String,
    pub programme_id: String,
    pub owner: String,
    pub purse: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FamilyRow {
    pub seq: i64,
    pub family_id: String,
    pub programme_id: String,
}

#[derive(Clone, sqlx::FromRow)]
pub struct CardRow {
    pub seq: i64,
    pub card_sha: String,
    pub pan_masked: String,
    pub member_id: String,
    pub family_id: String,
    pub expiry: String,
    pub pin_offset: String,
}

impl std::fmt::Debug for CardRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRow")
            .field("seq", &self.seq)
            .field("pan_masked", &self.pan_masked)
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CardEventRow {
    pub seq: i64,
    pub card_sha: String,
    pub event: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub seq: i64,
    pub provider_id: String,
    pub name: String,
    pub channel: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub batch_seq: i64,
    pub source: String,
    pub committed_ms: i64,
    pub prev_hash: String,
    pub hash: String,
}

pub(crate) const TRANSFER_SELECT: &str = "SELECT batch_seq, idx, kind, mti, rc, approval, acquirer, terminal, stan, transmitted, rrn, \
     content_sha, card_sha, family_id, programme_id, channel, purse, amount_minor, acceptor, reference, \
     business_day, at_ms, balances FROM transfers";

impl Db {
    pub async fn accounts(&self, conn: &mut AnyConnection) -> Result<Vec<AccountRow>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT account_id, kind, programme_id, owner, purse FROM accounts ORDER BY account_id",
        )
        .fetch_all(&mut *conn)
        .await?)
    }

    /// The purse accounts of a programme as (family, purse, account): of the families
    /// named (one statement, a parameter each), or of every family.
    pub async fn purse_accounts(
        &self,
        conn: &mut AnyConnection,
        programme_id: &str,
        families: Option<&[&str]>,
    ) -> Result<Vec<(String, String, i64)>, LedgerError> {
        let mut sql = String::from(
            "SELECT owner, purse, account_id FROM accounts WHERE kind = 'purse' AND programme_id = ?",
        );
        if let Some(families) = families {
            if families.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(
                " AND owner IN ({})",
                vec!["?"; families.len()].join(", ")
            ));
        }
        let sql = self.sql(&sql);
        let mut query = sqlx::query_as(&sql).bind(programme_id);
        for family in families.unwrap_or_default() {
            query = query.bind(*family);
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }

    /// The accounts that are not purses (few), and the purse accounts of the families
    /// added after `family_seq`: what the sync loop needs when families or providers
    /// were added, without reading every purse account.
    pub async fn accounts_of_families_since(
        &self,
        conn: &mut AnyConnection,
        family_seq: i64,
    ) -> Result<Vec<AccountRow>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT account_id, kind, programme_id, owner, purse FROM accounts \
             WHERE kind IN ('funding', 'acquirer', 'provider') \
             UNION ALL \
             SELECT a.account_id, a.kind, a.programme_id, a.owner, a.purse FROM families f \
             JOIN accounts a ON a.kind = 'purse' AND a.programme_id = f.programme_id \
                 AND a.owner = f.family_id \
             WHERE f.seq > ? \
             ORDER BY account_id",
        ))
        .bind(family_seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn families_since(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Vec<FamilyRow>, LedgerError> {
        Ok(sqlx::query_as(
            &self.sql(
                "SELECT seq, family_id, programme_id FROM families WHERE seq > ? ORDER BY seq",
            ),
        )
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn cards_since(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Vec<CardRow>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT seq, card_sha, pan_masked, member_id, family_id, expiry, pin_offset FROM cards WHERE seq > ? ORDER BY seq",
        ))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn card_events_since(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Vec<CardEventRow>, LedgerError> {
        Ok(sqlx::query_as(
            &self.sql(
                "SELECT seq, card_sha, event, at_ms FROM card_events WHERE seq > ? ORDER BY seq",
            ),
        )
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn providers_since(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Vec<ProviderRow>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT seq, provider_id, name, channel FROM providers WHERE seq > ? ORDER BY seq",
        ))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn last_batch_seq(&self, conn: &mut AnyConnection) -> Result<i64, LedgerError> {
        let row: (Option<i64>,) = sqlx::query_as("SELECT MAX(batch_seq) FROM ledger_batches")
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.0.unwrap_or(0))
    }

    pub async fn batches_since(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
    ) -> Result<Vec<BatchRow>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT batch_seq, source, committed_ms, prev_hash, hash FROM ledger_batches WHERE batch_seq > ? ORDER BY batch_seq",
        ))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    /// Batches in `(after, upto]` not written by `except`, with their source.
    pub async fn other_batches_between(
        &self,
        conn: &mut AnyConnection,
        after: i64,
        upto: i64,
        except: &str,
    ) -> Result<Vec<(i64, String)>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT batch_seq, source FROM ledger_batches \
             WHERE batch_seq > ? AND batch_seq <= ? AND source <> ? ORDER BY batch_seq",
        ))
        .bind(after)
        .bind(upto)
        .bind(except)
        .fetch_all(&mut *conn)
        .await?)
    }

    /// The entries of the batches in `(after, upto]` not written by `except`, summed per
    /// account. Streamed and summed here, so a tranche of ten million entries costs one
    /// map entry per account (and no sort on SQLite).
    pub async fn entries_by_account_between(
        &self,
        conn: &mut AnyConnection,
        after: i64,
        upto: i64,
        except: &str,
    ) -> Result<HashMap<i64, i64>, LedgerError> {
        let sql = self.sql(
            "SELECT e.account_id, e.amount_minor FROM ledger_batches b \
             JOIN entries e ON e.batch_seq = b.batch_seq \
             WHERE b.batch_seq > ? AND b.batch_seq <= ? AND b.source <> ?",
        );
        let mut rows = sqlx::query_as::<_, (i64, i64)>(&sql)
            .bind(after)
            .bind(upto)
            .bind(except)
            .fetch(&mut *conn);
        let mut sums = HashMap::new();
        while let Some((account_id, amount_minor)) = rows.try_next().await? {
            *sums.entry(account_id).or_insert(0) += amount_minor;
        }
        Ok(sums)
    }

    pub async fn batch_transfers(
        &self,
        conn: &mut AnyConnection,
        batch_seq: i64,
    ) -> Result<Vec<TransferRow>, LedgerError> {
        let sql = format!("{TRANSFER_SELECT} WHERE batch_seq = ? ORDER BY idx");
        Ok(sqlx::query_as(&self.sql(&sql))
            .bind(batch_seq)
            .fetch_all(&mut *conn)
            .await?)
    }

    pub async fn batch_entries(
        &self,
        conn: &mut AnyConnection,
        batch_seq: i64,
    ) -> Result<Vec<EntryRow>, LedgerError> {
        Ok(sqlx::query_as(&self.sql(
            "SELECT transfer_idx, entry_idx, account_id, amount_minor FROM entries WHERE batch_seq = ? ORDER BY transfer_idx, entry_idx",
        ))
        .bind(batch_seq)
        .fetch_all(&mut *conn)
        .await?)
    }

    /// Approved transfers of one kind in [from, to), for settlement.
    pub async fn approved_between(
        &self,
        conn: &mut AnyConnection,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TransferRow>, LedgerError> {
        let sql = format!("{TRANSFER_SELECT} WHERE at_ms >= ? AND at_ms < ? AND rc = '00' ORDER BY batch_seq, idx");
        Ok(sqlx::query_as(&self.sql(&sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&mut *conn)
            .await?)
    }
}

impl Db {
    /// Holds placed at or after `at_ms` and the rows that resolved them (completions,
    /// reversals and expiries name their hold's key, `K:01..`), in ledger order.
    pub async fn hold_rows_since(
        &self,
        conn: &mut AnyConnection,
        at_ms: i64,
    ) -> Result<Vec<TransferRow>, LedgerError> {
        let sql = format!(
            "{TRANSFER_SELECT} WHERE at_ms >= ? AND ((kind = 'hold' AND rc = '00') OR reference LIKE 'K:01%') \
             ORDER BY batch_seq, idx"
        );
        Ok(sqlx::query_as(&self.sql(&sql))
            .bind(at_ms)
            .fetch_all(&mut *conn)
            .await?)
    }
}
