//! Picking up what the command line wrote while the switch runs: new families and
//! cards, providers, card status changes and PIN unlocks, and ledger batches (such as
//! disbursements) committed by other writers.
//!
//! Two halves, so that neither a slow database nor a large delta holds up the single
//! writer: [`read`] runs as a task of its own and reads everything since a cursor in one
//! snapshot; [`apply`] runs inside the authoriser between batches (the state is never
//! touched by two tasks) and takes the delta only if the state is still at the cursor
//! the read started from. A tranche of millions of entries loaded while the switch runs
//! takes as long to read as it takes, and arrives as one sum per account.

use std::collections::HashMap;
use std::time::Duration;

use super::core::Core;
use super::load::{add_accounts, add_cards, add_families, add_providers, apply_card_events};
use super::state::SyncCursor;
use crate::ledger::db::exec;
use crate::ledger::read::{AccountRow, CardEventRow, CardRow, FamilyRow, ProviderRow};
use crate::ledger::{Db, LedgerError};

/// A read that has not finished within this is given up (its connection closed, not
/// returned to the pool mid-transaction) and the next tick starts again: a partition
/// that holds a connection must not keep the sync away for ever. Generous: at a million
/// families a tranche of five million entries reads in seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// What others wrote after `from`, as one snapshot saw it.
pub(super) struct Delta {
    from: SyncCursor,
    families: Vec<FamilyRow>,
    providers: Vec<ProviderRow>,
    accounts: Vec<AccountRow>,
    cards: Vec<CardRow>,
    events: Vec<CardEventRow>,
    /// The last batch the snapshot saw, of any writer (ours included).
    batch_seq_last: i64,
    /// Other writers' batches in the delta, for the log.
    others: Vec<(i64, String)>,
    /// Their entries, summed per account.
    balances: HashMap<i64, i64>,
}

/// Reads everything since `from` in one snapshot: a card is never seen without the
/// family it belongs to, nor a batch without its entries.
pub(super) async fn read(db: Db, from: SyncCursor) -> Result<Delta, LedgerError> {
    let mut conn = db.pool.acquire().await?;
    db.begin_snapshot(&mut conn).await?;
    match tokio::time::timeout(READ_TIMEOUT, read_in_snapshot(&db, &mut conn, from)).await {
        Ok(delta) => {
            let _ = exec(&mut conn, "ROLLBACK").await;
            delta
        }
        Err(_) => {
            // Closed, not pooled: it may still be inside the snapshot.
            drop(conn.detach());
            Err(LedgerError::Invariant(format!(
                "sync read took longer than {} s",
                READ_TIMEOUT.as_secs()
            )))
        }
    }
}

async fn read_in_snapshot(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    from: SyncCursor,
) -> Result<Delta, LedgerError> {
    let families = db.families_since(conn, from.family_seq).await?;
    let providers = db.providers_since(conn, from.provider_seq).await?;
    let accounts = if families.is_empty() && providers.is_empty() {
        Vec::new()
    } else {
        // Not every account: five million rows at a million families, every time one
        // family is added.
        db.accounts_of_families_since(conn, from.family_seq).await?
    };
    let cards = db.cards_since(conn, from.card_seq).await?;
    let events = db.card_events_since(conn, from.card_event_seq).await?;
    let batch_seq_last = db.last_batch_seq(conn).await?.max(from.batch_seq);
    let others = db
        .other_batches_between(conn, from.batch_seq, batch_seq_last, "switch")
        .await?;
    let balances = if others.is_empty() {
        HashMap::new()
    } else {
        db.entries_by_account_between(conn, from.batch_seq, batch_seq_last, "switch")
            .await?
    };
    Ok(Delta {
        from,
        families,
        providers,
        accounts,
        cards,
        events,
        batch_seq_last,
        others,
        balances,
    })
}

/// Applies `delta` if the state is still where its read started; `false` when the state
/// moved meanwhile (rebuilt after a failed commit), and the delta is dropped: the next
/// read starts from the new cursor.
pub(super) fn apply(core: &mut Core, delta: Delta) -> bool {
    if core.state.cursor != delta.from {
        return false;
    }
    let state = &mut core.state;
    let policy = &core.policy;
    if !delta.families.is_empty() || !delta.providers.is_empty() {
        add_families(state, policy, &delta.families);
        add_accounts(state, policy, &delta.accounts);
        add_providers(state, &delta.providers);
    }
    add_cards(state, &delta.cards);
    apply_card_events(state, &delta.events);
    for (account_id, amount_minor) in delta.balances {
        state.apply_legs(&[(account_id, amount_minor)]);
    }
    for (batch_seq, source) in &delta.others {
        tracing::info!(batch_seq, source = %source, "applied a batch written by another process");
    }
    debug_assert!(delta.batch_seq_last >= state.cursor.batch_seq);
    state.cursor.batch_seq = delta.batch_seq_last;
    true
}
