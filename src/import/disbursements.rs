//! `batch_ref,family_id,purse,amount`: money in, from the programme's funding account
//! to family purses, as one ledger batch. A line posts once: loading the same batch
//! again changes nothing (a unique index backs this up).

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::{read_csv, ImportError, ImportSummary};
use crate::domain::money::{rupiah_to_minor, Purse};
use crate::domain::time::{BusinessCalendar, TimestampMs};
use crate::ledger::registry::kind;
use crate::ledger::{Batch, Db, LedgerWriter, TransferRow};

const HEADER: [&str; 4] = ["batch_ref", "family_id", "purse", "amount"];
const BATCH_REF_LEN_MAX: usize = 64;

struct Line {
    line: u64,
    batch_ref: String,
    family_id: String,
    purse: Purse,
    amount_minor: i64,
}

fn parse(line: u64, r: &csv::StringRecord) -> Result<Line, String> {
    let f = |i: usize| r.get(i).unwrap_or("").trim();
    let batch_ref = f(0);
    if batch_ref.is_empty() || batch_ref.len() > BATCH_REF_LEN_MAX {
        return Err(format!(
            "batch_ref must be 1-{BATCH_REF_LEN_MAX} characters"
        ));
    }
    let purse = Purse::from_name(f(2)).ok_or_else(|| format!("unknown purse {}", f(2)))?;
    let amount = Decimal::from_str(f(3)).map_err(|_| format!("amount {} is not a number", f(3)))?;
    if amount.is_sign_negative() {
        return Err(format!("negative amount {}", f(3)));
    }
    let amount_minor = rupiah_to_minor(amount)
        .ok_or_else(|| format!("amount {} has more than 2 decimals or is too large", f(3)))?;
    if amount_minor == 0 {
        return Err("amount is zero".into());
    }
    Ok(Line {
        line,
        batch_ref: batch_ref.into(),
        family_id: f(1).into(),
        purse,
        amount_minor,
    })
}

/// Posts the file's lines that are not yet in the ledger, all in one batch.
pub async fn disburse(
    db: &Db,
    calendar: &BusinessCalendar,
    name: &str,
    text: &str,
    programme_id: &str,
    source: &'static str,
) -> Result<ImportSummary, ImportError> {
    let lines = parse_file(name, text)?;
    let funding = db
        .account_id(kind::FUNDING, programme_id, programme_id, "")
        .await?
        .ok_or_else(|| ImportError::File {
            file: name.into(),
            reason: format!("programme {programme_id} has no funding account (run migrate)"),
        })?;
    // A few queries for the whole file, not a few a line: a tranche has millions.
    let known = Known::read(db, programme_id, &lines).await?;
    let now = TimestampMs::now();
    let mut batch = Batch::default();
    let mut summary = ImportSummary::default();
    for line in &lines {
        let line_err = |reason: String| ImportError::Line {
            file: name.to_string(),
            line: line.line,
            reason,
        };
        let purse_account = known
            .purse_accounts
            .get(&(line.family_id.clone(), line.purse.name().to_string()))
            .copied()
            .ok_or_else(|| {
                line_err(format!(
                    "unknown family {} in programme {programme_id}",
                    line.family_id
                ))
            })?;
        let posted = known.posted.get(&(
            line.batch_ref.clone(),
            line.family_id.clone(),
            line.purse.name().to_string(),
        ));
        match posted {
            Some(amount) if *amount != line.amount_minor => {
                return Err(line_err("already disbursed with a different amount".into()));
            }
            Some(_) => summary.unchanged += 1,
            None => {
                let balance = known.negative.get(&purse_account).copied().unwrap_or(0);
                if balance < 0 && balance + line.amount_minor >= 0 {
                    cleared_cards(db, line, &mut batch).await?;
                }
                let legs = [
                    (funding, -line.amount_minor),
                    (purse_account, line.amount_minor),
                ];
                batch.push(transfer(line, programme_id, calendar, now), &legs);
                summary.added += 1;
            }
        }
    }
    if !batch.is_empty() {
        LedgerWriter::new(db.clone(), source)
            .commit(&mut batch, now.0)
            .await?;
    }
    Ok(summary)
}

/// A file naming at most this many families reads only their accounts and balances (a
/// top-up for one family read five million of each at a million families), in one
/// statement of as many parameters (under every backend's limit); a tranche reads the
/// programme's tables once.
const FAMILIES_LOOKED_UP_MAX: usize = 1_000;

/// What the ledger already holds that a disbursement file needs.
struct Known {
    /// (family, purse) -> account.
    purse_accounts: HashMap<(String, String), i64>,
    /// (batch ref, family, purse) -> amount already disbursed.
    posted: HashMap<(String, String, String), i64>,
    /// Purse accounts below zero (after forced advices) -> balance.
    negative: HashMap<i64, i64>,
}

impl Known {
    async fn read(db: &Db, programme_id: &str, lines: &[Line]) -> Result<Known, ImportError> {
        let err = crate::ledger::LedgerError::from;
        let mut conn = db.pool.acquire().await.map_err(err)?;
        let mut families: Vec<&str> = lines.iter().map(|l| l.family_id.as_str()).collect();
        families.sort_unstable();
        families.dedup();
        // A few families: their accounts, and the balances of those. A tranche: the
        // programme's accounts, and every balance from the last checkpoint.
        let few = families.len() <= FAMILIES_LOOKED_UP_MAX;
        let purse_accounts = db
            .purse_accounts(&mut conn, programme_id, few.then_some(families.as_slice()))
            .await?;
        let balances: Vec<(i64, i64)> = if few {
            let ids: Vec<i64> = purse_accounts.iter().map(|(_, _, id)| *id).collect();
            db.account_balances(&mut conn, &ids)
                .await?
                .into_iter()
                .collect()
        } else {
            db.balances_from_checkpoint(&mut conn).await?
        };
        let mut posted = HashMap::new();
        let mut refs: Vec<&str> = lines.iter().map(|l| l.batch_ref.as_str()).collect();
        refs.sort_unstable();
        refs.dedup();
        for batch_ref in refs {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(&db.sql(
                "SELECT family_id, purse, amount_minor FROM transfers WHERE kind = 'disbursement' AND reference = ?",
            ))
            .bind(batch_ref.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
            posted.extend(
                rows.into_iter()
                    .map(|(f, p, a)| ((batch_ref.to_string(), f, p), a)),
            );
        }
        let negative = balances.into_iter().filter(|(_, b)| *b < 0).collect();
        Ok(Known {
            purse_accounts: purse_accounts
                .into_iter()
                .map(|(f, p, a)| ((f, p), a))
                .collect(),
            posted,
            negative,
        })
    }
}

/// Every line checked; a line repeated with the same amount counts once, with another
/// amount it is an error naming the line.
fn parse_file(name: &str, text: &str) -> Result<Vec<Line>, ImportError> {
    let line_err = |line, reason: String| ImportError::Line {
        file: name.to_string(),
        line,
        reason,
    };
    let mut lines = Vec::new();
    let mut seen: HashMap<(String, String, Purse), (u64, i64)> = HashMap::new();
    for (n, record) in read_csv(name, text, &HEADER)? {
        let line = parse(n, &record).map_err(|reason| line_err(n, reason))?;
        let key = (line.batch_ref.clone(), line.family_id.clone(), line.purse);
        if let Some((first, amount)) = seen.insert(key, (n, line.amount_minor)) {
            if amount != line.amount_minor {
                return Err(line_err(
                    n,
                    format!("duplicate of line {first} with a different amount"),
                ));
            }
            continue;
        }
        lines.push(line);
    }
    Ok(lines)
}

fn transfer(
    line: &Line,
    programme_id: &str,
    calendar: &BusinessCalendar,
    now: TimestampMs,
) -> TransferRow {
    TransferRow {
        kind: "disbursement".into(),
        rc: "00".into(),
        family_id: line.family_id.clone(),
        programme_id: programme_id.into(),
        purse: line.purse.name().into(),
        amount_minor: line.amount_minor,
        reference: line.batch_ref.clone(),
        business_day: i64::from(calendar.business_day(now)),
        at_ms: now.0,
        ..TransferRow::default()
    }
}

/// A disbursement that brings a purse from below zero back to zero or more takes the
/// family's cards off the validators' deny list (written with the same batch).
async fn cleared_cards(db: &Db, line: &Line, batch: &mut Batch) -> Result<(), ImportError> {
    let cards: Vec<(String,)> =
        sqlx::query_as(&db.sql("SELECT card_sha FROM cards WHERE family_id = ?"))
            .bind(line.family_id.clone())
            .fetch_all(&db.pool)
            .await
            .map_err(crate::ledger::LedgerError::from)?;
    for (card_sha,) in cards {
        batch
            .card_events
            .push((card_sha, crate::authoriser::DENY_CLEARED.to_string()));
    }
    Ok(())
}
