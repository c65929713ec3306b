//! The settlement report of one business day: per acquirer and per provider, the count
//! and sum of approved debits, refunds and reversals. Computed from the entries on the
//! parties' accounts, so it matches the ledger to the rupiah by construction.

use std::collections::BTreeMap;

use super::db::Db;
use super::LedgerError;
use crate::domain::money::minor_to_rupiah;

pub const HEADER: &str = "business_date,programme_id,party_type,party_id,debit_count,debit_amount,\
refund_count,refund_amount,reversal_count,reversal_amount,net_amount";

/// One party's day. Amounts in minor units; `net_minor` is what the programme owes it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartyDay {
    pub debit_count: i64,
    pub debit_minor: i64,
    pub refund_count: i64,
    pub refund_minor: i64,
    pub reversal_count: i64,
    pub reversal_minor: i64,
    pub net_minor: i64,
}

/// (programme, party type, party id) -> the day.
pub type Settlement = BTreeMap<(String, String, String), PartyDay>;

pub async fn settlement(db: &Db, business_day: u32) -> Result<Settlement, LedgerError> {
    let rows: Vec<(String, String, String, String, i64, i64)> = sqlx::query_as(&db.sql(
        "SELECT a.programme_id, a.kind, a.owner, t.kind, COUNT(*), CAST(SUM(e.amount_minor) AS BIGINT) \
         FROM transfers t \
         JOIN entries e ON e.batch_seq = t.batch_seq AND e.transfer_idx = t.idx \
         JOIN accounts a ON a.account_id = e.account_id \
         WHERE t.business_day = ? AND a.kind IN ('acquirer', 'provider') \
         GROUP BY a.programme_id, a.kind, a.owner, t.kind",
    ))
    .bind(i64::from(business_day))
    .fetch_all(&db.pool)
    .await?;
    let mut out = Settlement::new();
    for (programme, party_type, party, kind, count, sum_minor) in rows {
        let day = out.entry((programme, party_type, party)).or_default();
        match kind.as_str() {
            "refund" => {
                day.refund_count += count;
                day.refund_minor -= sum_minor;
            }
            "reversal" => {
                day.reversal_count += count;
                day.reversal_minor -= sum_minor;
            }
            _ => {
                day.debit_count += count;
                day.debit_minor += sum_minor;
            }
        }
        day.net_minor += sum_minor;
    }
    Ok(out)
}

/// The CSV, header first.
pub fn to_csv(date: &str, settlement: &Settlement) -> String {
    let mut out = format!("{HEADER}\n");
    for ((programme, party_type, party), d) in settlement {
        out.push_str(&format!(
            "{date},{programme},{party_type},{party},{},{},{},{},{},{},{}\n",
            d.debit_count,
            minor_to_rupiah(d.debit_minor),
            d.refund_count,
            minor_to_rupiah(d.refund_minor),
            d.reversal_count,
            minor_to_rupiah(d.reversal_minor),
            minor_to_rupiah(d.net_minor),
        ));
    }
    out
}
