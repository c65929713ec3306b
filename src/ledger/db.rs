//! Connection handling for both backends and the migrations.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection};

use super::projection::sqlite_projections_path;
use super::LedgerError;

static SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_ledger.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_checkpoints.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_hot_indexes.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_projected_indexes.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_entries_keyed.sql"),
    ),
];
static POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_ledger.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_checkpoints.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_hot_indexes.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_projected_indexes.sql"),
    ),
];

/// How long a writer waits for another process's write lock (the CLI loading a file
/// while the switch runs) before the commit fails.
const BUSY_TIMEOUT_MS: u64 = 5_000;
const POOL_CONNECTIONS_MAX: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool for reads and short writes, plus what is needed to open the ledger writer's
/// own connection.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    url: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db, LedgerError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = prepare_url(url, backend)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let projections =
            sqlite_file(&url).map(|f| sqlite_projections_path(std::path::Path::new(f)));
        let pool = AnyPoolOptions::new()
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                let projections = projections.clone();
                Box::pin(async move {
                    session_setup(conn, backend).await?;
                    match projections {
                        Some(path) => attach_projections(conn, &path).await,
                        None => Ok(()),
                    }
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db { pool, backend, url })
    }

    /// The database's URL (it may hold a password: never logged).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The SQLite database file, when that is the backend.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        sqlite_file(&self.url).map(std::path::PathBuf::from)
    }

    /// A dedicated connection, set up like the pool's but without the projections (a
    /// `BEGIN IMMEDIATE` would lock them too), for a ledger writer.
    pub async fn open_connection(&self) -> Result<AnyConnection, LedgerError> {
        let options = AnyConnectOptions::from_str(&self.url)?;
        let mut conn = options.connect().await?;
        session_setup(&mut conn, self.backend).await?;
        Ok(conn)
    }

    /// Queries are written with `?` placeholders; PostgreSQL wants `$1, $2, ...`.
    pub fn sql<'a>(&self, query: &'a str) -> Cow<'a, str> {
        match self.backend {
            Backend::Sqlite => Cow::Borrowed(query),
            Backend::Postgres => Cow::Owned(numbered_placeholders(query)),
        }
    }

    /// Opens a read snapshot on `conn`: every read until ROLLBACK sees the database as
    /// of the first (SQLite's deferred transaction; PostgreSQL's repeatable read).
    pub async fn begin_snapshot(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        exec(conn, begin).await
    }

    /// Applies the migrations not yet applied, each in its own transaction.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.pool)
            .await?;
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        for (version, sql) in migrations {
            let applied: Option<(i64,)> = sqlx::query_as(
                &self.sql("SELECT version FROM schema_migrations WHERE version = ?"),
            )
            .bind(*version)
            .fetch_optional(&self.pool)
            .await?;
            if applied.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(&self.sql("INSERT INTO schema_migrations (version) VALUES (?)"))
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        self.ensure_projections().await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn backend_of(url: &str) -> Result<Backend, LedgerError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(LedgerError::UnsupportedUrl(
            url.split(':').next().unwrap_or("").to_string(),
        ))
    }
}

/// SQLite: create the folder and the file if missing (the default runs with no setup).
fn prepare_url(url: &str, backend: Backend) -> Result<String, LedgerError> {
    if backend != Backend::Sqlite {
        return Ok(url.to_string());
    }
    let path = sqlite_file(url).unwrap_or_default();
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| LedgerError::Folder(parent.display().to_string(), e))?;
        }
    }
    Ok(if url.contains('?') {
        url.to_string()
    } else {
        format!("sqlite://{path}?mode=rwc")
    })
}

/// The file of a SQLite URL.
fn sqlite_file(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    path.split('?').next()
}

/// The projections' own file on a pooled SQLite connection (ledger/projection.rs):
/// written without an fsync of its own, since it is rebuilt from the ledger.
async fn attach_projections(
    conn: &mut AnyConnection,
    path: &std::path::Path,
) -> Result<(), sqlx::Error> {
    sqlx::query("ATTACH DATABASE ? AS projections")
        .bind(path.display().to_string())
        .execute(&mut *conn)
        .await?;
    crate::ledger::db::exec(conn, "PRAGMA projections.journal_mode = WAL").await?;
    crate::ledger::db::exec(conn, "PRAGMA projections.synchronous = NORMAL").await
}

/// PostgreSQL's durability setting, per connection (the pool's and the writer's own):
/// a `00` leaves only after the commit is flushed.
pub(crate) const PG_SESSION_SETUP: &str = "SET synchronous_commit = on";

/// Durability settings, per connection: a `00` leaves only after an fsync'd commit.
async fn session_setup(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            crate::ledger::db::exec(conn, "PRAGMA journal_mode = WAL").await?;
            crate::ledger::db::exec(conn, "PRAGMA synchronous = FULL").await?;
            crate::ledger::db::exec(conn, &format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
                .await?;
        }
        Backend::Postgres => {
            crate::ledger::db::exec(conn, PG_SESSION_SETUP).await?;
        }
    }
    conn.ping().await
}

fn numbered_placeholders(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 16);
    let mut n = 0;
    let mut in_string = false;
    for c in query.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Runs one statement without parameters or results on a connection (BEGIN, COMMIT,
/// pragmas), as a simple query: one round trip, no prepared statement to cache. One
/// non-generic function, so futures that hold it stay `Send` for `tokio::spawn`.
pub async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_string_literals() {
        assert_eq!(
            numbered_placeholders("SELECT '?' , a FROM t WHERE a = ? AND b = ?"),
            "SELECT '?' , a FROM t WHERE a = $1 AND b = $2"
        );
    }
}
