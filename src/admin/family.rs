//! `GET /api/v1/families/{family_id}`: the family's purses, members and cards, read
//! from the database (not from the authoriser's memory, which belongs to its task).
//!
//! The ledger balance of a purse is the sum of its entries. The available balance is
//! that less the open holds, re-derived from the hold rows the way the authoriser
//! rebuilds them at start-up (authoriser/replay.rs, `holds`).

use std::collections::HashMap;

use serde::Serialize;

use super::cards::CardFlags;
use crate::domain::money::{minor_to_rupiah, Purse};
use crate::domain::pan::mask_pan;
use crate::ledger::{Db, LedgerError};

#[derive(Debug, Serialize)]
pub struct FamilyView {
    pub family_id: String,
    pub programme_id: String,
    pub purses: Vec<PurseView>,
    pub members: Vec<MemberView>,
    pub cards: Vec<CardView>,
}

/// Amounts are rupiah with two decimals, as strings: JSON numbers are floats to many
/// readers, and money is never a float.
#[derive(Debug, Serialize)]
pub struct PurseView {
    pub purse: &'static str,
    /// The F54 / F3 account code.
    pub code: &'static str,
    pub available: String,
    pub ledger: String,
    pub held: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MemberView {
    pub member_id: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Serialize)]
pub struct CardView {
    /// First 6 and last 4 digits only.
    pub pan: String,
    pub member_id: String,
    /// YYMM.
    pub expiry: String,
    pub status: &'static str,
    pub pin_locked: bool,
}

#[derive(sqlx::FromRow)]
struct CardRow {
    card_sha: String,
    pan_masked: String,
    member_id: String,
    expiry: String,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    kind: String,
    acquirer: String,
    terminal: String,
    stan: String,
    transmitted: String,
    purse: String,
    amount_minor: i64,
    reference: String,
}

/// The family, or `None` when there is no such family. `holds_from_ms`: hold rows older
/// than the longest hold time to live cannot still be open.
pub async fn family(
    db: &Db,
    family_id: &str,
    holds_from_ms: i64,
) -> Result<Option<FamilyView>, LedgerError> {
    let row: Option<(String,)> =
        sqlx::query_as(&db.sql("SELECT programme_id FROM families WHERE family_id = ?"))
            .bind(family_id.to_string())
            .fetch_optional(&db.pool)
            .await?;
    let Some((programme_id,)) = row else {
        return Ok(None);
    };
    let ledger = purse_balances(db, &programme_id, family_id).await?;
    let held = held_by_purse(&hold_rows(db, family_id, holds_from_ms).await?);
    let members = sqlx::query_as(
        &db.sql("SELECT member_id, name, role FROM members WHERE family_id = ? ORDER BY member_id"),
    )
    .bind(family_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    Ok(Some(FamilyView {
        family_id: family_id.to_string(),
        purses: purse_views(&ledger, &held),
        members,
        cards: cards(db, family_id).await?,
        programme_id,
    }))
}

fn purse_views(ledger: &HashMap<String, i64>, held: &HashMap<String, i64>) -> Vec<PurseView> {
    Purse::ALL
        .iter()
        .map(|p| {
            let ledger_minor = ledger.get(p.name()).copied().unwrap_or(0);
            let held_minor = held.get(p.name()).copied().unwrap_or(0);
            PurseView {
                purse: p.name(),
                code: p.code(),
                available: minor_to_rupiah(ledger_minor - held_minor).to_string(),
                ledger: minor_to_rupiah(ledger_minor).to_string(),
                held: minor_to_rupiah(held_minor).to_string(),
            }
        })
        .collect()
}

async fn purse_balances(
    db: &Db,
    programme_id: &str,
    family_id: &str,
) -> Result<HashMap<String, i64>, LedgerError> {
    let mut conn = db.pool.acquire().await?;
    let accounts = db
        .purse_accounts(&mut conn, programme_id, Some(&[family_id]))
        .await?;
    let ids: Vec<i64> = accounts.iter().map(|(_, _, id)| *id).collect();
    let balances = db.account_balances(&mut conn, &ids).await?;
    Ok(accounts
        .into_iter()
        .map(|(_, purse, id)| (purse, balances.get(&id).copied().unwrap_or(0)))
        .collect())
}

async fn cards(db: &Db, family_id: &str) -> Result<Vec<CardView>, LedgerError> {
    let rows: Vec<CardRow> = sqlx::query_as(&db.sql(
        "SELECT card_sha, pan_masked, member_id, expiry FROM cards WHERE family_id = ? ORDER BY seq",
    ))
    .bind(family_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    let events: Vec<(String, String)> = sqlx::query_as(&db.sql(
        "SELECT e.card_sha, e.event FROM card_events e JOIN cards c ON c.card_sha = e.card_sha \
         WHERE c.family_id = ? ORDER BY e.seq",
    ))
    .bind(family_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    let mut flags: HashMap<String, CardFlags> = HashMap::new();
    for (sha, event) in &events {
        flags.entry(sha.clone()).or_default().apply(event);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let f = flags.get(&r.card_sha).copied().unwrap_or_default();
            CardView {
                pan: masked(r.pan_masked),
                member_id: r.member_id,
                expiry: r.expiry,
                status: f.status.name(),
                pin_locked: f.pin_locked,
            }
        })
        .collect())
}

/// Masked at import; masked here too in case a row was written by other means.
fn masked(pan_masked: String) -> String {
    if pan_masked.contains('*') {
        pan_masked
    } else {
        mask_pan(&pan_masked)
    }
}

async fn hold_rows(db: &Db, family_id: &str, from_ms: i64) -> Result<Vec<HoldRow>, LedgerError> {
    Ok(sqlx::query_as(&db.sql(
        "SELECT kind, acquirer, terminal, stan, transmitted, purse, amount_minor, reference \
         FROM transfers WHERE family_id = ? AND at_ms >= ? \
         AND ((kind = 'hold' AND rc = '00') OR reference LIKE 'K:01%') ORDER BY batch_seq, idx",
    ))
    .bind(family_id.to_string())
    .bind(from_ms)
    .fetch_all(&db.pool)
    .await?)
}

/// Open holds per purse: each hold less what reversals took off it; a completion or an
/// expiry resolves the whole hold. Resolutions name their hold as `K:<mti>:<key>`.
fn held_by_purse(rows: &[HoldRow]) -> HashMap<String, i64> {
    let mut open: HashMap<String, (String, i64)> = HashMap::new();
    for row in rows {
        if row.kind == "hold" {
            let key = format!(
                "{}|{}|{}|{}",
                row.acquirer, row.terminal, row.stan, row.transmitted
            );
            open.insert(key, (row.purse.clone(), row.amount_minor));
            continue;
        }
        let Some((_, key)) = row
            .reference
            .strip_prefix("K:")
            .and_then(|r| r.split_once(':'))
        else {
            continue;
        };
        let Some(hold) = open.get_mut(key) else {
            continue;
        };
        let taken = if row.kind == "reversal" {
            row.amount_minor
        } else {
            i64::MAX
        };
        hold.1 -= taken.clamp(0, hold.1);
        if hold.1 == 0 {
            open.remove(key);
        }
    }
    let mut held = HashMap::new();
    for (purse, amount) in open.into_values() {
        *held.entry(purse).or_insert(0) += amount;
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, stan: &str, amount_minor: i64, reference: &str) -> HoldRow {
        HoldRow {
            kind: kind.into(),
            acquirer: "360001".into(),
            terminal: "T1".into(),
            stan: stan.into(),
            transmitted: "1123101010".into(),
            purse: "cash".into(),
            amount_minor,
            reference: reference.into(),
        }
    }

    #[test]
    fn holds_are_reduced_by_reversals_and_resolved_by_completion() {
        let rows = vec![
            row("hold", "000001", 10_000, "H:7:99"),
            row("hold", "000002", 5_000, "H:7:99"),
            row(
                "reversal",
                "000003",
                4_000,
                "K:0100:360001|T1|000001|1123101010",
            ),
            row(
                "completion",
                "000004",
                1_000,
                "K:0100:360001|T1|000002|1123101010",
            ),
        ];
        assert_eq!(held_by_purse(&rows).get("cash"), Some(&6_000));
    }
}
