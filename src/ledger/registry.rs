//! Reference data: programmes, accounts, families, members, cards, providers and card
//! events. Not money, but written with the same care: one transaction per command.

use sqlx::AnyConnection;

use super::db::Db;
use super::LedgerError;
use crate::config::Config;
use crate::domain::money::Purse;

/// Account kinds (the `accounts.kind` column).
pub mod kind {
    pub const FUNDING: &str = "funding";
    pub const PURSE: &str = "purse";
    pub const ACQUIRER: &str = "acquirer";
    pub const PROVIDER: &str = "provider";
}

impl Db {
    /// Makes sure every configured programme has its row and funding account, and every
    /// (programme, acquirer) and (programme, provider) pair its settlement account.
    /// Adding a programme or an acquirer is configuration; this runs at start-up.
    pub async fn ensure_reference_accounts(&self, config: &Config) -> Result<(), LedgerError> {
        let providers = {
            let mut conn = self.pool.acquire().await?;
            self.providers_since(&mut conn, 0).await?
        };
        let mut wanted: Vec<(&'static str, String, String)> = Vec::new();
        for programme in &config.programmes {
            sqlx::query(&self.sql(
                "INSERT INTO programmes (programme_id, name) VALUES (?, ?) ON CONFLICT (programme_id) DO NOTHING",
            ))
            .bind(programme.id.to_string())
            .bind(programme.name.to_string())
            .execute(&self.pool)
            .await?;
            wanted.push((kind::FUNDING, programme.id.clone(), programme.id.clone()));
            for acquirer in &config.acquirers {
                wanted.push((kind::ACQUIRER, programme.id.clone(), acquirer.id.clone()));
            }
            for provider in &providers {
                wanted.push((
                    kind::PROVIDER,
                    programme.id.clone(),
                    provider.provider_id.clone(),
                ));
            }
        }
        for (kind, programme_id, owner) in wanted {
            sqlx::query(&self.sql(
                "INSERT INTO accounts (kind, programme_id, owner, purse) VALUES (?, ?, ?, '') \
                 ON CONFLICT (kind, programme_id, owner, purse) DO NOTHING",
            ))
            .bind(kind.to_string())
            .bind(programme_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn ensure_account(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        programme_id: &str,
        owner: &str,
        purse: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql(
            "INSERT INTO accounts (kind, programme_id, owner, purse) VALUES (?, ?, ?, ?) \
             ON CONFLICT (kind, programme_id, owner, purse) DO NOTHING",
        ))
        .bind(kind.to_string())
        .bind(programme_id.to_string())
        .bind(owner.to_string())
        .bind(purse.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn account_id(
        &self,
        kind: &str,
        programme_id: &str,
        owner: &str,
        purse: &str,
    ) -> Result<Option<i64>, LedgerError> {
        let row: Option<(i64,)> = sqlx::query_as(&self.sql(
            "SELECT account_id FROM accounts WHERE kind = ? AND programme_id = ? AND owner = ? AND purse = ?",
        ))
        .bind(kind.to_string())
        .bind(programme_id.to_string())
        .bind(owner.to_string())
        .bind(purse.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Creates a family and its five purse accounts.
    pub(crate) async fn insert_family(
        &self,
        conn: &mut AnyConnection,
        family_id: &str,
        programme_id: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql("INSERT INTO families (family_id, programme_id) VALUES (?, ?)"))
            .bind(family_id.to_string())
            .bind(programme_id.to_string())
            .execute(&mut *conn)
            .await?;
        for purse in Purse::ALL {
            self.ensure_account(conn, kind::PURSE, programme_id, family_id, purse.name())
                .await?;
        }
        Ok(())
    }

    /// Appends a card event (status change or PIN unlock) for the running switch to pick up.
    pub async fn insert_card_event(
        &self,
        card_sha: &str,
        event: &str,
        at_ms: i64,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql("INSERT INTO card_events (card_sha, event, at_ms) VALUES (?, ?, ?)"))
            .bind(card_sha.to_string())
            .bind(event.to_string())
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn card_exists(&self, card_sha: &str) -> Result<bool, LedgerError> {
        let row: Option<(i64,)> =
            sqlx::query_as(&self.sql("SELECT seq FROM cards WHERE card_sha = ?"))
                .bind(card_sha.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}
