//! The ledger: append-only double entry in SQLite (embedded default) or PostgreSQL.
//!
//! One `Db` handle serves both backends through sqlx's `Any` driver, so every query,
//! test and invariant is written once. Writes that carry money go through
//! [`writer::LedgerWriter`], one database transaction per batch with the audit chain, on
//! each backend's own connection (a SQLite thread, a `PgConnection`: the hot path's
//! bulk inserts need what the generic driver lacks); reads for start-up, sync, verify
//! and reports live in [`read`].

pub mod bulk;
pub mod chain;
pub mod checkpoint;
pub mod db;
pub mod pipeline;
pub mod projection;
pub mod read;
pub mod registry;
pub mod rows;
pub mod settlement;
pub mod sqlite_writer;
pub mod verify;
pub mod writer;

pub use db::{Backend, Db};
pub use rows::{Batch, EntryRow, TransferRow};
pub use writer::LedgerWriter;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database url {0}: unsupported scheme (sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("cannot create database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
