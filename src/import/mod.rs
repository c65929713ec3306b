//! Loading files: beneficiaries, providers and disbursements (interfaces.md, "CSV
//! files"). Every file is checked whole before anything is written; the first bad row
//! is named by its line (the header is line 1) and nothing changes.

pub mod beneficiaries;
pub mod disbursements;
pub mod providers;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: line {line}: {reason}")]
    Line {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub unchanged: u64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} already present",
            self.added, self.unchanged
        )
    }
}

/// Reads a CSV with the expected header; yields (line number, record).
pub(crate) fn read_csv(
    name: &str,
    text: &str,
    header: &[&str],
) -> Result<Vec<(u64, csv::StringRecord)>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let found = reader
        .headers()
        .map_err(|e| ImportError::File {
            file: name.to_string(),
            reason: format!("unreadable header: {e}"),
        })?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect::<Vec<_>>();
    if found != header {
        return Err(ImportError::Line {
            file: name.to_string(),
            line: 1,
            reason: format!("header must be {}", header.join(",")),
        });
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let fallback_line = i as u64 + 2;
        let record = record.map_err(|e| ImportError::Line {
            file: name.to_string(),
            line: e.position().map_or(fallback_line, |p| p.line()),
            reason: "unreadable CSV row".to_string(),
        })?;
        let line = record.position().map_or(fallback_line, |p| p.line());
        if record.len() != header.len() {
            return Err(ImportError::Line {
                file: name.to_string(),
                line,
                reason: format!("expected {} columns, found {}", header.len(), record.len()),
            });
        }
        rows.push((line, record));
    }
    Ok(rows)
}

pub(crate) fn read_file(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|e| ImportError::File {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}
