//! A synthetic in-memory state without a database: for benchmarks of the core and for
//! measuring the memory of a national-scale wallet space.

use std::sync::Arc;

use super::state::{Card, PinOffset, State, Wallet};
use crate::domain::money::Purse;
use crate::domain::pan::{luhn_check_digit, Pan};
use crate::policy::{CardStatus, Policy};
use crate::security::pin::{ibm3624_offset, Pin};

/// Every family gets `cards_per_family` cards with the same PIN and `balance_minor`
/// in every purse. Account ids are dense: purse accounts from 1, then acquirers.
pub fn state(
    policy: &Policy,
    families: u32,
    cards_per_family: u32,
    pin: &str,
    balance_minor: i64,
) -> (State, Vec<Pan>) {
    let mut state = State {
        funding_accounts: vec![0; policy.programmes.len()],
        ..State::default()
    };
    let card_count = families as usize * cards_per_family as usize;
    state.reserve(
        families as usize,
        card_count,
        i64::from(families) * Purse::COUNT as i64,
    );
    let mut next_account = 1i64;
    let mut pans = Vec::with_capacity(card_count);
    for f in 0..families {
        let family_id: Arc<str> = Arc::from(format!("3601{f:012}").as_str());
        let accounts = std::array::from_fn(|p| next_account + p as i64);
        next_account += Purse::COUNT as i64;
        for (p, purse) in Purse::ALL.iter().enumerate() {
            state.purse_accounts.insert(accounts[p], (f, *purse));
        }
        state.push_wallet(Wallet {
            family_id,
            programme: 0,
            accounts,
            balance_minor: [balance_minor; Purse::COUNT],
            held_minor: [0; Purse::COUNT],
            cards: Vec::new(),
        });
        for c in 0..cards_per_family {
            let pan = synthetic_pan(u64::from(f) * u64::from(cards_per_family) + u64::from(c));
            add_card(&mut state, policy, f, &pan, pin);
            pans.push(pan);
        }
    }
    for acquirer in policy.acquirers.keys() {
        state
            .acquirer_accounts
            .insert((0, acquirer.clone()), next_account);
        next_account += 1;
    }
    (state, pans)
}

fn synthetic_pan(n: u64) -> Pan {
    let body = format!("603456{n:09}");
    Pan::parse(&format!("{body}{}", luhn_check_digit(&body))).unwrap_or_else(unreachable_pan)
}

fn unreachable_pan() -> Pan {
    // 16 digits built above always parse; this keeps the function total.
    Pan::parse("6034560000000000").expect("a constant PAN parses")
}

fn add_card(state: &mut State, policy: &Policy, wallet: u32, pan: &Pan, pin: &str) {
    let pin_offset = Pin::new(pin)
        .ok()
        .and_then(|p| {
            ibm3624_offset(
                pan.digits(),
                &p,
                &policy.pin_verification_key,
                &policy.decimalisation,
            )
            .ok()
        })
        .and_then(|offset| PinOffset::parse(&offset))
        .unwrap_or_default();
    let card_sha = pan.hash().0;
    let idx = state.push_card(Card {
        wallet,
        card_sha,
        expiry: 9912,
        status: CardStatus::Active,
        pin_offset,
        pin_fails: 0,
        pin_locked: false,
        pin_unlocked_at_ms: 0,
        daily: Vec::new(),
    });
    state.wallets[wallet as usize].cards.push(idx);
}
