//! `family_id,member_id,member_name,role,pan,expiry,pin_offset`

use std::collections::HashMap;

use super::{is_digits, read_csv, ImportError, ImportSummary};
use crate::domain::pan::Pan;
use crate::ledger::writer::begin_exclusive;
use crate::ledger::Db;

const HEADER: [&str; 7] = [
    "family_id",
    "member_id",
    "member_name",
    "role",
    "pan",
    "expiry",
    "pin_offset",
];
const ROLES: [&str; 4] = ["head", "spouse", "child", "other"];

/// One validated row. The PAN lives here only until it is hashed and masked.
#[derive(Clone, PartialEq, Eq)]
struct Row {
    line: u64,
    family_id: String,
    member_id: String,
    member_name: String,
    role: String,
    card_sha: String,
    pan_masked: String,
    expiry: String,
    pin_offset: String,
}

fn parse_row(line: u64, r: &csv::StringRecord) -> Result<Row, String> {
    let f = |i: usize| r.get(i).unwrap_or("").trim();
    let (family_id, member_id, name, role, pan, expiry, offset) =
        (f(0), f(1), f(2), f(3), f(4), f(5), f(6));
    if !is_digits(family_id, 16) {
        return Err("family_id must be 16 digits".into());
    }
    if !is_digits(member_id, 16) {
        return Err("member_id must be 16 digits".into());
    }
    if name.is_empty() {
        return Err("member_name is empty".into());
    }
    if !ROLES.contains(&role) {
        return Err(format!("role must be one of {}", ROLES.join(", ")));
    }
    let pan = Pan::parse(pan)
        .filter(|p| p.digits().len() >= 16)
        .ok_or("pan must be 16-19 digits")?;
    if !pan.luhn_valid() {
        return Err("pan fails the Luhn check".into());
    }
    let month: u32 = expiry.get(2..4).and_then(|m| m.parse().ok()).unwrap_or(0);
    if !is_digits(expiry, 4) || !(1..=12).contains(&month) {
        return Err("expiry must be YYMM".into());
    }
    if !(4..=12).contains(&offset.len()) || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return Err("pin_offset must be 4-12 digits".into());
    }
    Ok(Row {
        line,
        family_id: family_id.into(),
        member_id: member_id.into(),
        member_name: name.into(),
        role: role.into(),
        card_sha: pan.sha256_hex(),
        pan_masked: pan.masked(),
        expiry: expiry.into(),
        pin_offset: offset.into(),
    })
}

/// Loads families, members and cards into `programme_id`, all or nothing.
pub async fn import(
    db: &Db,
    name: &str,
    text: &str,
    programme_id: &str,
) -> Result<ImportSummary, ImportError> {
    let line_err = |line, reason: String| ImportError::Line {
        file: name.to_string(),
        line,
        reason,
    };
    let mut rows = Vec::new();
    for (line, record) in read_csv(name, text, &HEADER)? {
        rows.push(parse_row(line, &record).map_err(|reason| line_err(line, reason))?);
    }
    check_consistent_within(&rows).map_err(|(line, reason)| line_err(line, reason))?;
    let mut conn = db.open_connection().await?;
    begin_exclusive(db.backend, &mut conn)
        .await
        .map_err(crate::ledger::LedgerError::from)?;
    let result = write_rows(db, &mut conn, &rows, programme_id).await;
    match &result {
        Ok(_) => crate::ledger::db::exec(&mut conn, "COMMIT")
            .await
            .map(|_| ()),
        Err(_) => crate::ledger::db::exec(&mut conn, "ROLLBACK")
            .await
            .map(|_| ()),
    }
    .map_err(crate::ledger::LedgerError::from)?;
    result.map_err(|e| match e {
        WriteError::Line(line, reason) => line_err(line, reason),
        WriteError::Ledger(e) => ImportError::Ledger(e),
    })
}

/// The same family, member or card twice in one file must agree with itself.
fn check_consistent_within(rows: &[Row]) -> Result<(), (u64, String)> {
    let mut members: HashMap<&str, &Row> = HashMap::new();
    let mut cards: HashMap<&str, &Row> = HashMap::new();
    for row in rows {
        if let Some(first) = members.insert(&row.member_id, row) {
            if (&first.family_id, &first.member_name, &first.role)
                != (&row.family_id, &row.member_name, &row.role)
            {
                return Err((
                    row.line,
                    format!("member {} differs from line {}", row.member_id, first.line),
                ));
            }
        }
        if let Some(first) = cards.insert(&row.card_sha, row) {
            if first != row
                && (&first.member_id, &first.expiry, &first.pin_offset)
                    != (&row.member_id, &row.expiry, &row.pin_offset)
            {
                return Err((
                    row.line,
                    format!("card {} differs from line {}", row.pan_masked, first.line),
                ));
            }
        }
    }
    Ok(())
}

enum WriteError {
    Line(u64, String),
    Ledger(crate::ledger::LedgerError),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Ledger(e.into())
    }
}

impl From<crate::ledger::LedgerError> for WriteError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        WriteError::Ledger(e)
    }
}

async fn write_rows(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    rows: &[Row],
    programme_id: &str,
) -> Result<ImportSummary, WriteError> {
    let mut summary = ImportSummary::default();
    for row in rows {
        write_family(db, conn, row, programme_id).await?;
        write_member(db, conn, row).await?;
        if write_card(db, conn, row).await? {
            summary.added += 1;
        } else {
            summary.unchanged += 1;
        }
    }
    Ok(summary)
}

/// A new family gets its purses; a known one must be in the same programme.
async fn write_family(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    row: &Row,
    programme_id: &str,
) -> Result<(), WriteError> {
    let family: Option<(String,)> =
        sqlx::query_as(&db.sql("SELECT programme_id FROM families WHERE family_id = ?"))
            .bind(&row.family_id)
            .fetch_optional(&mut *conn)
            .await?;
    match family {
        Some((p,)) if p != programme_id => Err(WriteError::Line(
            row.line,
            format!("family {} exists in programme {p}", row.family_id),
        )),
        Some(_) => Ok(()),
        None => Ok(db.insert_family(conn, &row.family_id, programme_id).await?),
    }
}

async fn write_member(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    row: &Row,
) -> Result<(), WriteError> {
    let member: Option<(String, String, String)> =
        sqlx::query_as(&db.sql("SELECT family_id, name, role FROM members WHERE member_id = ?"))
            .bind(&row.member_id)
            .fetch_optional(&mut *conn)
            .await?;
    let same = |m: &(String, String, String)| {
        (&m.0, &m.1, &m.2) == (&row.family_id, &row.member_name, &row.role)
    };
    match member {
        Some(m) if !same(&m) => Err(WriteError::Line(
            row.line,
            format!("member {} exists with different data", row.member_id),
        )),
        Some(_) => Ok(()),
        None => {
            sqlx::query(
                &db.sql(
                    "INSERT INTO members (member_id, family_id, name, role) VALUES (?, ?, ?, ?)",
                ),
            )
            .bind(&row.member_id)
            .bind(&row.family_id)
            .bind(&row.member_name)
            .bind(&row.role)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    }
}

/// `Ok(true)` when the card is new.
async fn write_card(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    row: &Row,
) -> Result<bool, WriteError> {
    let card: Option<(String, String, String)> = sqlx::query_as(
        &db.sql("SELECT member_id, expiry, pin_offset FROM cards WHERE card_sha = ?"),
    )
    .bind(&row.card_sha)
    .fetch_optional(&mut *conn)
    .await?;
    let same = |c: &(String, String, String)| {
        (&c.0, &c.1, &c.2) == (&row.member_id, &row.expiry, &row.pin_offset)
    };
    match card {
        Some(c) if !same(&c) => Err(WriteError::Line(
            row.line,
            format!("card {} exists with different data", row.pan_masked),
        )),
        Some(_) => Ok(false),
        None => {
            sqlx::query(&db.sql(
                "INSERT INTO cards (card_sha, pan_masked, member_id, family_id, expiry, pin_offset) VALUES (?, ?, ?, ?, ?, ?)",
            ))
            .bind(&row.card_sha)
            .bind(&row.pan_masked)
            .bind(&row.member_id)
            .bind(&row.family_id)
            .bind(&row.expiry)
            .bind(&row.pin_offset)
            .execute(&mut *conn)
            .await?;
            Ok(true)
        }
    }
}
