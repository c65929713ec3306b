//! The audit chain: each batch's hash covers the previous hash, its sequence number and
//! a canonical encoding of its rows, so a changed or removed row breaks every later hash.

use sha2::{Digest, Sha256};

use super::rows::{EntryRow, TransferRow};

/// The hash before the first batch.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn batch_hash(
    prev_hash: &str,
    batch_seq: i64,
    transfers: &[TransferRow],
    entries: &[EntryRow],
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(batch_seq.to_le_bytes());
    for t in transfers {
        transfer_into(&mut h, t);
    }
    for e in entries {
        h.update(e.transfer_idx.to_le_bytes());
        h.update(e.entry_idx.to_le_bytes());
        h.update(e.account_id.to_le_bytes());
        h.update(e.amount_minor.to_le_bytes());
    }
    hex::encode(h.finalize())
}

fn transfer_into(h: &mut Sha256, t: &TransferRow) {
    h.update(t.idx.to_le_bytes());
    for text in [
        &t.kind,
        &t.mti,
        &t.rc,
        &t.approval,
        &t.acquirer,
        &t.terminal,
        &t.stan,
        &t.transmitted,
        &t.rrn,
        &t.content_sha,
        &t.card_sha,
        &t.family_id,
        &t.programme_id,
        &t.channel,
        &t.purse,
        &t.acceptor,
        &t.reference,
        &t.balances,
    ] {
        // Length-prefixed, so ("ab","c") and ("a","bc") hash differently.
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.update(t.amount_minor.to_le_bytes());
    h.update(t.business_day.to_le_bytes());
    h.update(t.at_ms.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_field_changes_the_hash() {
        let t = TransferRow {
            kind: "purchase".into(),
            amount_minor: 100,
            ..Default::default()
        };
        let base = batch_hash(GENESIS_HASH, 1, std::slice::from_ref(&t), &[]);
        let mut changed = t.clone();
        changed.amount_minor = 101;
        assert_ne!(base, batch_hash(GENESIS_HASH, 1, &[changed], &[]));
        assert_ne!(
            base,
            batch_hash(GENESIS_HASH, 2, std::slice::from_ref(&t), &[])
        );
        assert_eq!(base, batch_hash(GENESIS_HASH, 1, &[t], &[]));
    }
}
