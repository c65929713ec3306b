use super::*;
use crate::config::{Config, DEFAULT_TOML};

fn channel(name: &str) -> ChannelRules {
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
    let programme = &config.programmes[0];
    programme
        .channels
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .compile()
        .unwrap()
}

const RP: i64 = 100;

#[test]
fn atm_withdrawal_must_be_a_multiple_of_50000_and_at_most_1250000() {
    let atm = channel("atm");
    assert_eq!(check_amount(&atm, 50_000 * RP), Ok(()));
    assert_eq!(
        check_amount(&atm, 75_000 * RP),
        Err(ResponseCode::InvalidAmount)
    );
    assert_eq!(
        check_amount(&atm, 1_300_000 * RP),
        Err(ResponseCode::AmountLimit)
    );
    assert_eq!(check_amount(&atm, 0), Err(ResponseCode::InvalidAmount));
}

#[test]
fn atm_sixth_withdrawal_or_over_2500000_a_day_is_refused() {
    let atm = channel("atm");
    let used = DailyUse {
        count: 5,
        amount_minor: 0,
    };
    assert_eq!(
        check_daily(&atm, used, 50_000 * RP),
        Err(ResponseCode::FrequencyLimit)
    );
    let used = DailyUse {
        count: 2,
        amount_minor: 2_000_000 * RP,
    };
    assert_eq!(
        check_daily(&atm, used, 550_000 * RP),
        Err(ResponseCode::AmountLimit)
    );
    assert_eq!(check_daily(&atm, used, 500_000 * RP), Ok(()));
}

#[test]
fn damri_seventh_ride_of_the_day_is_65() {
    let damri = channel("damri");
    assert_eq!(
        check_daily(
            &damri,
            DailyUse {
                count: 5,
                amount_minor: 0
            },
            3_500 * RP
        ),
        Ok(())
    );
    assert_eq!(
        check_daily(
            &damri,
            DailyUse {
                count: 6,
                amount_minor: 0
            },
            3_500 * RP
        ),
        Err(ResponseCode::FrequencyLimit)
    );
}

#[test]
fn minimarket_purchase_pays_from_food_then_cash_and_explicit_purse_overrides() {
    let shop = channel("minimarket");
    let order = purse_order(&shop, TxnType::Purchase);
    let mut available = [0i64; Purse::COUNT];
    available[Purse::Food.index()] = 10_000;
    available[Purse::Cash.index()] = 50_000;
    assert_eq!(
        choose_purse(order, AccountChoice::ChannelDefault, &available, 5_000),
        Ok(Purse::Food)
    );
    assert_eq!(
        choose_purse(order, AccountChoice::ChannelDefault, &available, 20_000),
        Ok(Purse::Cash)
    );
    assert_eq!(
        choose_purse(order, AccountChoice::ChannelDefault, &available, 60_000),
        Err(ResponseCode::InsufficientFunds)
    );
    assert_eq!(
        choose_purse(order, AccountChoice::Purse(Purse::Cash), &available, 5_000),
        Ok(Purse::Cash)
    );
    assert_eq!(
        choose_purse(
            order,
            AccountChoice::Purse(Purse::Health),
            &available,
            5_000
        ),
        Err(ResponseCode::NotPermittedToCard)
    );
}

#[test]
fn card_status_and_expiry_map_to_their_codes() {
    let card = |status| CardView {
        status,
        expiry: 2912,
        pin_locked: false,
    };
    assert_eq!(check_card(card(CardStatus::Active), None, 2611), Ok(()));
    assert_eq!(
        check_card(card(CardStatus::Blocked), None, 2611),
        Err(ResponseCode::CardBlocked)
    );
    assert_eq!(
        check_card(card(CardStatus::Lost), None, 2611),
        Err(ResponseCode::LostCard)
    );
    assert_eq!(
        check_card(card(CardStatus::Stolen), None, 2611),
        Err(ResponseCode::StolenCard)
    );
    assert_eq!(
        check_card(card(CardStatus::Active), None, 3001),
        Err(ResponseCode::ExpiredCard)
    );
    assert_eq!(
        check_card(card(CardStatus::Active), Some(2912), 2912),
        Ok(())
    );
}

#[test]
fn refund_goes_back_only_to_a_purse_that_paid_this_acquirer_enough() {
    let shop = channel("minimarket");
    let order = purse_order(&shop, TxnType::Refund);
    let mut refundable = [0i64; Purse::COUNT];
    refundable[Purse::Cash.index()] = 30_000;
    assert_eq!(
        choose_refund_purse(
            order,
            AccountChoice::ChannelDefault,
            AccountChoice::ChannelDefault,
            &refundable,
            30_000
        ),
        Ok(Purse::Cash)
    );
    assert_eq!(
        choose_refund_purse(
            order,
            AccountChoice::ChannelDefault,
            AccountChoice::ChannelDefault,
            &refundable,
            30_001
        ),
        Err(ResponseCode::InvalidAmount)
    );
}
