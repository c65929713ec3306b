//! The rows of a ledger batch, as written and as read back. One struct for both, so the
//! audit hash is computed over exactly what the database holds.

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

/// One leg of a transfer. Signed minor units: credit positive, debit negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct EntryRow {
    pub transfer_idx: i32,
    pub entry_idx: i32,
    pub account_id: i64,
    pub amount_minor: i64,
}

/// What one database transaction appends.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub transfers: Vec<TransferRow>,
    pub entries: Vec<EntryRow>,
    /// Card events decided by the switch itself (a PIN locked by wrong tries).
    pub card_events: Vec<(String, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty() && self.card_events.is_empty()
    }

    pub fn clear(&mut self) {
        self.transfers.clear();
        self.entries.clear();
        self.card_events.clear();
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

    /// Double entry: every transfer's legs sum to zero. Checked before a write and
    /// again by `ledger verify` after reading back (paired assertions).
    pub fn check_balanced(&self) -> Result<(), String> {
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
        match sums.iter().position(|s| *s != 0) {
            Some(i) => Err(format!("transfer {i} of the batch does not balance")),
            None => Ok(()),
        }
    }
}
