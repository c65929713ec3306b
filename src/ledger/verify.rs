//! `multiguna ledger verify`: the hash chain unbroken, every transfer balanced, the
//! whole ledger summing to zero, and no purse below zero. Reads back what the writer
//! asserted before writing (paired assertions).

use std::collections::HashMap;

use super::chain::{batch_hash, GENESIS_HASH};
use super::db::Db;
use super::registry::kind;
use super::rows::Batch;
use super::LedgerError;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub batches: u64,
    pub transfers: u64,
    pub entries: u64,
    pub accounts: u64,
    pub checkpoints: u64,
    /// The ledger batch up to which the projections were checked.
    pub projected: i64,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ledger verified: {} batches, {} transfers, {} entries, {} accounts, {} checkpoints; chain intact, double entry holds, checkpoints match the entries, no purse below zero but by forced advices; projections match the ledger up to batch {}",
            self.batches, self.transfers, self.entries, self.accounts, self.checkpoints, self.projected
        )
    }
}

/// Walks the whole ledger once. The first broken row is the error.
pub async fn verify(db: &Db) -> Result<VerifyReport, LedgerError> {
    let mut conn = db.pool.acquire().await?;
    let mut report = VerifyReport::default();
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut balances: HashMap<i64, i128> = HashMap::new();
    let mut checkpoints = checkpoints_by_seq(db.checkpoint_rows(&mut conn).await?);
    // Read before the walk: a running switch's projector may go on meanwhile.
    let projected = db.projection_head(&mut conn).await?;
    let mut at_projected = Projection::default();
    for (expected_seq, batch) in (1..).zip(db.batches_since(&mut conn, 0).await?) {
        let broken =
            |what: String| LedgerError::Invariant(format!("batch {}: {what}", batch.batch_seq));
        if batch.batch_seq != expected_seq {
            return Err(broken(format!(
                "expected batch {expected_seq}: a batch is missing"
            )));
        }
        if batch.prev_hash != prev_hash {
            return Err(broken("prev_hash does not match the batch before".into()));
        }
        let transfers = db.batch_transfers(&mut conn, batch.batch_seq).await?;
        let entries = db.batch_entries(&mut conn, batch.batch_seq).await?;
        if batch_hash(&prev_hash, batch.batch_seq, &transfers, &entries) != batch.hash {
            return Err(broken(
                "hash does not match its rows: a row was changed, added or removed".into(),
            ));
        }
        let readback = Batch {
            transfers,
            entries,
            ..Batch::default()
        };
        readback.check_invariants().map_err(broken)?;
        for e in &readback.entries {
            *balances.entry(e.account_id).or_insert(0) += i128::from(e.amount_minor);
        }
        if let Some(rows) = checkpoints.remove(&batch.batch_seq) {
            check_checkpoint(batch.batch_seq, &rows, &balances)?;
            report.checkpoints += 1;
        }
        if batch.batch_seq <= projected {
            at_projected.add(&readback);
        }
        report.batches += 1;
        report.transfers += readback.transfers.len() as u64;
        report.entries += readback.entries.len() as u64;
        prev_hash = batch.hash;
    }
    if let Some(seq) = checkpoints.keys().next() {
        return Err(LedgerError::Invariant(format!(
            "checkpoint {seq} names a batch that does not exist"
        )));
    }
    let total: i128 = balances.values().sum();
    if total != 0 {
        return Err(LedgerError::Invariant(format!(
            "all entries sum to {total}, not zero"
        )));
    }
    for account in db.accounts(&mut conn).await? {
        let balance = balances.get(&account.account_id).copied().unwrap_or(0);
        if account.kind == kind::PURSE && balance < 0 && !had_forced_advice(db, &account).await? {
            return Err(LedgerError::Invariant(format!(
                "purse account {} ({} of family {}) is below zero",
                account.account_id, account.purse, account.owner
            )));
        }
    }
    report.accounts = balances.len() as u64;
    if projected > i64::try_from(report.batches).unwrap_or(i64::MAX) {
        return Err(LedgerError::Invariant(format!(
            "projections: their head is batch {projected}, the ledger ends at batch {}",
            report.batches
        )));
    }
    check_projections(db, &mut conn, projected, &at_projected).await?;
    report.projected = projected;
    Ok(report)
}

/// What the projections must hold up to their head, from the ledger's own rows.
#[derive(Default)]
struct Projection {
    card_rows: i64,
    balances: HashMap<i64, i64>,
}

impl Projection {
    fn add(&mut self, batch: &Batch) {
        self.card_rows += batch
            .transfers
            .iter()
            .filter(|t| !t.card_sha.is_empty())
            .count() as i64;
        for e in &batch.entries {
            *self.balances.entry(e.account_id).or_insert(0) += e.amount_minor;
        }
    }
}

/// The projections (ledger/projection.rs) are derived data: up to their head they must
/// hold a row for each transfer with a card and, per account, its entries' sum.
async fn check_projections(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    head: i64,
    want: &Projection,
) -> Result<(), LedgerError> {
    let broken = |what: String| LedgerError::Invariant(format!("projections: {what}"));
    let cards: (i64,) =
        sqlx::query_as(&db.sql("SELECT COUNT(*) FROM card_history WHERE batch_seq <= ?"))
            .bind(head)
            .fetch_one(&mut *conn)
            .await?;
    if cards.0 != want.card_rows {
        return Err(broken(format!(
            "card history holds {} transfers up to batch {head}, the ledger {}",
            cards.0, want.card_rows
        )));
    }
    let sums: Vec<(i64, i64)> = sqlx::query_as(&db.sql(
        "SELECT account_id, CAST(SUM(amount_minor) AS BIGINT) FROM account_history \
         WHERE batch_seq <= ? GROUP BY account_id",
    ))
    .bind(head)
    .fetch_all(&mut *conn)
    .await?;
    if sums.len() != want.balances.len() {
        return Err(broken(format!(
            "account history holds {} accounts up to batch {head}, the ledger {}",
            sums.len(),
            want.balances.len()
        )));
    }
    for (account, sum) in sums {
        if want.balances.get(&account) != Some(&sum) {
            return Err(broken(format!(
                "account {account} sums to {sum} up to batch {head}, in the ledger to {:?}",
                want.balances.get(&account)
            )));
        }
    }
    Ok(())
}

/// A purse may be below zero only because a bus validator's offline advice had to post.
async fn had_forced_advice(
    db: &Db,
    account: &super::read::AccountRow,
) -> Result<bool, LedgerError> {
    let row: (i64,) = sqlx::query_as(&db.sql(
        "SELECT COUNT(*) FROM transfers WHERE kind = 'advice' AND rc = '00' AND family_id = ? AND purse = ?",
    ))
    .bind(account.owner.clone())
    .bind(account.purse.clone())
    .fetch_one(&db.pool)
    .await?;
    Ok(row.0 > 0)
}

fn checkpoints_by_seq(
    rows: Vec<(i64, i64, i64)>,
) -> std::collections::BTreeMap<i64, Vec<(i64, i64)>> {
    let mut out: std::collections::BTreeMap<i64, Vec<(i64, i64)>> = Default::default();
    for (batch_seq, account, balance) in rows {
        out.entry(batch_seq).or_default().push((account, balance));
    }
    out
}

/// The balances a checkpoint holds must be those the entries give at its batch.
fn check_checkpoint(
    batch_seq: i64,
    rows: &[(i64, i64)],
    balances: &HashMap<i64, i128>,
) -> Result<(), LedgerError> {
    for (account, stored) in rows {
        let derived = balances.get(account).copied().unwrap_or(0);
        if derived != i128::from(*stored) {
            return Err(LedgerError::Invariant(format!(
                "checkpoint at batch {batch_seq}: account {account} holds {stored}, the entries give {derived}"
            )));
        }
    }
    Ok(())
}
