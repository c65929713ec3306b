//! The rows of a ledger batch, as written and as read back. One struct for both, so the
//! audit hash is computed over exactly what the database holds.

use crate::domain::pan::is_sha256_hex;

/// One decided message or money movement.
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct TransferRow {
    /// Set when read back; the writer takes the sequence from the chain head.
    pub batch_seq: i64,
    pub idx: i32,
    /// purchase | withdrawal | refund | inquiry | reversal | disbursement | ...
    pub kind: String,
    pub mti: String,
    pub rc: String,
    pub approval: String,
    pub acquirer: String,
    pub terminal: String,
    pub stan: String,
    pub transmitted: String,
    pub rrn: String,
    pub content_sha: String,
    /// SHA-256 of the PAN, never the PAN.
    pub card_sha: String,
    pub family_id: String,
    pub programme_id: String,
    pub channel: String,
    pub purse: String,
    pub amount_minor: i64,
    pub acceptor: String,
    pub reference: String,
    pub business_day: i64,
    pub at_ms: i64,
    pub balances: String,
}

/// `transfers`' columns in the order both writers send them (the PostgreSQL writer's
/// arrays, the SQLite writer's parameters).
pub(crate) const TRANSFER_COLUMNS: &str = "batch_seq, idx, kind, mti, rc, approval, acquirer, \
     terminal, stan, transmitted, rrn, content_sha, card_sha, family_id, programme_id, channel, \
     purse, amount_minor, acceptor, reference, business_day, at_ms, balances";
/// `entries`' columns, likewise.
pub(crate) const ENTRY_COLUMNS: &str =
    "batch_seq, transfer_idx, entry_idx, account_id, amount_minor";

/// One leg of a transfer. Signed minor units: credit positive, debit negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct EntryRow {
    pub transfer_idx: i32,
    pub entry_idx: i32,
    pub account_id: i64,
    pub amount_minor: i64,
}

/// `field` = `value`, in the buffer it has: how a reused row's text is written (the
/// authoriser's decisions, start-up's window reader).
pub(crate) fn set_text(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

/// Cleared rows a batch keeps for its next ones, at most.
const SPARE_ROWS_MAX: usize = 4_096;

/// What one database transaction appends.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub transfers: Vec<TransferRow>,
    pub entries: Vec<EntryRow>,
    /// Card events decided by the switch itself (a PIN locked by wrong tries).
    pub card_events: Vec<(String, String)>,
    /// Rows cleared from `transfers`, their strings' buffers kept for the next rows
    /// (`push_reusing`): the switch's batch buffers go round between the authoriser
    /// and the writer, and a row's eighteen strings allocated on one thread and freed
    /// on the other were most of the switch's time in malloc (docs/performance.md).
    pub(crate) spare: Vec<TransferRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty() && self.card_events.is_empty()
    }

    pub fn clear(&mut self) {
        let keep = SPARE_ROWS_MAX.saturating_sub(self.spare.len());
        let kept = self.transfers.len().min(keep);
        self.spare.extend(self.transfers.drain(..kept));
        self.transfers.clear();
        self.entries.clear();
        self.card_events.clear();
    }

    /// Appends a transfer written by `fill` into a spare row (or a new one), with its
    /// entries; returns its index in the batch. `fill` must set every field: the row
    /// may hold an earlier batch's values.
    pub fn push_reusing(
        &mut self,
        legs: &[(i64, i64)],
        fill: impl FnOnce(&mut TransferRow),
    ) -> i32 {
        let mut row = self.spare.pop().unwrap_or_default();
        fill(&mut row);
        self.push(row, legs)
    }

    /// Appends a transfer with its entries; returns its index in the batch.
    pub fn push(&mut self, mut transfer: TransferRow, legs: &[(i64, i64)]) -> i32 {
        let idx = i32::try_from(self.transfers.len()).unwrap_or(i32::MAX);
        transfer.idx = idx;
        for (entry_idx, (account_id, amount_minor)) in legs.iter().enumerate() {
            self.entries.push(EntryRow {
                transfer_idx: idx,
                entry_idx: i32::try_from(entry_idx).unwrap_or(i32::MAX),
                account_id: *account_id,
                amount_minor: *amount_minor,
            });
        }
        self.transfers.push(transfer);
        idx
    }

    /// Double entry: every transfer's legs sum to zero; and every card is named by its
    /// hash as 64 lowercase hex digits, or not at all (the projector keys a card's
    /// history by the hash's bytes). Checked before a write and again by `ledger verify`
    /// after reading back (paired assertions).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums = vec![0i128; self.transfers.len()];
        for entry in &self.entries {
            let slot = usize::try_from(entry.transfer_idx)
                .ok()
                .and_then(|i| sums.get_mut(i))
                .ok_or_else(|| {
                    format!("entry names transfer {} not in batch", entry.transfer_idx)
                })?;
            *slot += i128::from(entry.amount_minor);
        }
        if let Some(i) = sums.iter().position(|s| *s != 0) {
            return Err(format!("transfer {i} of the batch does not balance"));
        }
        let misnamed = |t: &TransferRow| !t.card_sha.is_empty() && !is_sha256_hex(&t.card_sha);
        match self.transfers.iter().position(misnamed) {
            // The value itself stays out of the message: it may not be a hash at all.
            Some(i) => Err(format!(
                "transfer {i} of the batch names its card by something other than the hash"
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_rows_are_reused_and_their_number_bounded() {
        let mut batch = Batch::default();
        for _ in 0..3 {
            batch.push(
                TransferRow {
                    kind: "purchase".into(),
                    ..TransferRow::default()
                },
                &[(1, -5), (2, 5)],
            );
        }
        batch.clear();
        assert!(batch.is_empty() && batch.entries.is_empty());
        assert_eq!(batch.spare.len(), 3);
        let idx = batch.push_reusing(&[(3, -7), (4, 7)], |row| {
            assert_eq!(row.kind, "purchase", "a spare row holds its old values");
            row.kind.clear();
            row.kind.push_str("refund");
        });
        assert_eq!(idx, 0);
        assert_eq!(batch.transfers[0].kind, "refund");
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.spare.len(), 2);
        batch.check_invariants().expect("balanced");
        batch.transfers[0].card_sha = "AB".repeat(32);
        assert!(
            batch.check_invariants().is_err(),
            "upper case is not the hash"
        );
        batch.transfers[0].card_sha = "ab".repeat(31);
        assert!(batch.check_invariants().is_err(), "too short");
        batch.transfers[0].card_sha = "ab".repeat(32);
        batch.check_invariants().expect("the hash");

        let mut big = Batch::default();
        for _ in 0..SPARE_ROWS_MAX + 10 {
            big.push(TransferRow::default(), &[]);
        }
        big.clear();
        assert_eq!(big.spare.len(), SPARE_ROWS_MAX);
        big.clear();
        assert_eq!(big.spare.len(), SPARE_ROWS_MAX);
    }
}
