//! Picking up what the command line wrote while the switch runs: new families and
//! cards, providers, card status changes and PIN unlocks, and ledger batches (such as
//! disbursements) committed by other writers. Runs inside the authoriser between
//! batches, so the state is never touched by two tasks.

use std::time::Duration;

use super::core::Core;
use super::load::{add_accounts, add_cards, add_families, add_providers, apply_card_events};
use super::state::SyncCursor;
use crate::ledger::read::{AccountRow, BatchRow, CardEventRow, CardRow, FamilyRow, ProviderRow};
use crate::ledger::{Db, EntryRow, LedgerError};

/// A sync that cannot have a connection within this skips its turn: the database is
/// away, and the requests queued behind the sync must not wait out the pool's own
/// acquire timeout (10 s for a refused server) before their commit fails with 91.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The whole read of a sync: a held connection (a network partition) must not stall the
/// single writer, so the reads are bounded as one and applied only once all are in.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What others wrote since the cursor.
struct Delta {
    families: Vec<FamilyRow>,
    providers: Vec<ProviderRow>,
    accounts: Vec<AccountRow>,
    cards: Vec<CardRow>,
    events: Vec<CardEventRow>,
    batches: Vec<(BatchRow, Vec<EntryRow>)>,
}

pub(super) async fn pick_up(db: &Db, core: &mut Core) -> Result<(), LedgerError> {
    let cursor = core.state.cursor;
    let delta = tokio::time::timeout(READ_TIMEOUT, read_delta(db, cursor))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    // Nothing was touched before every read was in, so giving up above is safe.
    let state = &mut core.state;
    let policy = &core.policy;
    if !delta.families.is_empty() || !delta.providers.is_empty() {
        add_families(state, policy, &delta.families);
        add_accounts(state, policy, &delta.accounts);
        add_providers(state, &delta.providers);
    }
    add_cards(state, &delta.cards);
    apply_card_events(state, &delta.events);
    for (batch, entries) in delta.batches {
        if batch.source != "switch" {
            for entry in entries {
                state.apply_legs(&[(entry.account_id, entry.amount_minor)]);
            }
            tracing::info!(batch_seq = batch.batch_seq, source = %batch.source, "applied a batch written by another process");
        }
        state.cursor.batch_seq = batch.batch_seq;
    }
    Ok(())
}

async fn read_delta(db: &Db, cursor: SyncCursor) -> Result<Delta, LedgerError> {
    let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, db.pool.acquire())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let families = db.families_since(&mut conn, cursor.family_seq).await?;
    let providers = db.providers_since(&mut conn, cursor.provider_seq).await?;
    let accounts = if families.is_empty() && providers.is_empty() {
        Vec::new()
    } else {
        // Not every account: five million rows at a million families, every time one
        // family is added, would not fit in READ_TIMEOUT.
        db.accounts_of_families_since(&mut conn, cursor.family_seq)
            .await?
    };
    let cards = db.cards_since(&mut conn, cursor.card_seq).await?;
    let events = db
        .card_events_since(&mut conn, cursor.card_event_seq)
        .await?;
    let mut batches = Vec::new();
    for batch in db.batches_since(&mut conn, cursor.batch_seq).await? {
        let entries = if batch.source != "switch" {
            db.batch_entries(&mut conn, batch.batch_seq).await?
        } else {
            Vec::new()
        };
        batches.push((batch, entries));
    }
    Ok(Delta {
        families,
        providers,
        accounts,
        cards,
        events,
        batches,
    })
}
