//! `provider_id,name,channel`: clinics and schools whose terminals send F42.

use super::{read_csv, ImportError, ImportSummary};
use crate::config::Config;
use crate::ledger::registry::kind;
use crate::ledger::writer::begin_exclusive;
use crate::ledger::{Db, LedgerError};

const HEADER: [&str; 3] = ["provider_id", "name", "channel"];
const CHANNELS: [&str; 2] = ["clinic", "school"];
/// F42 is ans15, but the spec's own example id (`KLINIK-SERANG-01`) has 16 characters:
/// longer ids are accepted, and terminals send their first 15 (docs/decisions.md).
const PROVIDER_ID_LEN_MAX: usize = 32;

pub async fn import(
    db: &Db,
    config: &Config,
    name: &str,
    text: &str,
) -> Result<ImportSummary, ImportError> {
    let rows = parse_file(name, text)?;
    let mut conn = db.open_connection().await?;
    begin_exclusive(db.backend, &mut conn)
        .await
        .map_err(LedgerError::from)?;
    let mut summary = ImportSummary::default();
    for (line, id, provider_name, channel) in &rows {
        let existing: Option<(String, String)> =
            sqlx::query_as(&db.sql("SELECT name, channel FROM providers WHERE provider_id = ?"))
                .bind(id)
                .fetch_optional(&mut conn)
                .await
                .map_err(LedgerError::from)?;
        match existing {
            Some(e) if (&e.0, &e.1) != (provider_name, channel) => {
                let _ = crate::ledger::db::exec(&mut conn, "ROLLBACK").await;
                return Err(ImportError::Line {
                    file: name.to_string(),
                    line: *line,
                    reason: format!("provider {id} exists with different data"),
                });
            }
            Some(_) => summary.unchanged += 1,
            None => {
                sqlx::query(
                    &db.sql("INSERT INTO providers (provider_id, name, channel) VALUES (?, ?, ?)"),
                )
                .bind(id)
                .bind(provider_name)
                .bind(channel)
                .execute(&mut conn)
                .await
                .map_err(LedgerError::from)?;
                for programme in &config.programmes {
                    db.ensure_account(&mut conn, kind::PROVIDER, &programme.id, id, "")
                        .await?;
                }
                summary.added += 1;
            }
        }
    }
    crate::ledger::db::exec(&mut conn, "COMMIT")
        .await
        .map_err(LedgerError::from)?;
    Ok(summary)
}

type ProviderLine = (u64, String, String, String);

/// (line, provider id, name, channel) of every row, or the first bad line.
fn parse_file(name: &str, text: &str) -> Result<Vec<ProviderLine>, ImportError> {
    let mut rows = Vec::new();
    for (line, r) in read_csv(name, text, &HEADER)? {
        let f = |i: usize| r.get(i).unwrap_or("").trim().to_string();
        let (id, provider_name, channel) = (f(0), f(1), f(2));
        let reason = if id.is_empty() || id.len() > PROVIDER_ID_LEN_MAX || !id.is_ascii() {
            Some(format!(
                "provider_id must be 1-{PROVIDER_ID_LEN_MAX} ASCII characters"
            ))
        } else if provider_name.is_empty() {
            Some("name is empty".to_string())
        } else if !CHANNELS.contains(&channel.as_str()) {
            Some("channel must be clinic or school".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ImportError::Line {
                file: name.to_string(),
                line,
                reason,
            });
        }
        rows.push((line, id, provider_name, channel));
    }
    Ok(rows)
}
