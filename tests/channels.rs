//! Every channel approves over a real socket against a real ledger, and the balances
//! afterwards are what programme.md says.

mod common;

use common::*;

#[test]
fn every_channel_approves_and_moves_the_right_purse() {
    for db in backends() {
        let cards = db.province(3);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let card = &cards[0];
            // ATM withdrawal: cash 750,000 -> 650,000.
            let a = send(&mut c, &request(card, ATM, "6011", "010000", 100_000)).await;
            assert_eq!(rc(&a), "00", "{}: atm", db.name);
            assert_eq!(a.field(38).map(|s| s.len()), Some(6), "approval code");
            assert_eq!(a.field(54).and_then(|f| parse_f54(&f, "91")), Some(650_000));
            // Minimarket purchase pays from food first: 300,000 -> 275,000.
            let a = send(&mut c, &request(card, SHOP, "5411", "000000", 25_000)).await;
            assert_eq!(rc(&a), "00", "{}: minimarket", db.name);
            assert_eq!(a.field(54).and_then(|f| parse_f54(&f, "92")), Some(275_000));
            // Clinic (amount exponent 2 on this link): Rp 150,000.00 from health.
            let mut clinic = request(card, HEALTH_EDU, "8011", "000000", 15_000_000);
            clinic.acceptor = Some("KLINIK-SERANG-0".into());
            clinic.private = Some("SVC=CONSULT".into());
            let a = send(&mut c, &clinic).await;
            assert_eq!(rc(&a), "00", "{}: clinic", db.name);
            assert_eq!(
                a.field(54).and_then(|f| parse_f54(&f, "93")),
                Some(35_000_000)
            );
            // School: Rp 100,000.00 from education.
            let mut school = request(card, HEALTH_EDU, "8211", "000000", 10_000_000);
            school.acceptor = Some("SDN-SERANG-01".into());
            school.private = Some("SVC=UNIFORM".into());
            let a = send(&mut c, &school).await;
            assert_eq!(rc(&a), "00", "{}: school", db.name);
            assert_eq!(
                a.field(54).and_then(|f| parse_f54(&f, "94")),
                Some(30_000_000)
            );
            // Damri: no PIN, transport purse.
            let mut ride = request(card, BUS, "4111", "000000", 3_500);
            ride.pin_block = None;
            let a = send(&mut c, &ride).await;
            assert_eq!(rc(&a), "00", "{}: damri", db.name);
            assert_eq!(a.field(54).and_then(|f| parse_f54(&f, "95")), Some(96_500));
            // The other card of the family spends from the same wallet.
            assert_eq!(balance(&mut c, &cards[1], "91").await, 650_000);
            assert_eq!(balance(&mut c, &cards[1], "92").await, 275_000);
            assert_eq!(balance(&mut c, &cards[1], "95").await, 96_500);
            // Another family is untouched.
            assert_eq!(balance(&mut c, &cards[2], "91").await, 750_000);
        });
        drop(switch);
        assert!(db.cli_ok(&["ledger", "verify"]).contains("ledger verified"));
    }
}

#[test]
fn cash_out_and_refund_at_a_minimarket() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let card = &cards[0];
            let a = send(&mut c, &request(card, SHOP, "5411", "010000", 200_000)).await;
            assert_eq!(rc(&a), "00", "{}: cash-out", db.name);
            assert_eq!(balance(&mut c, card, "91").await, 550_000);
            // Refund to cash, at most what cash paid this acquirer.
            let a = send(&mut c, &request(card, SHOP, "5411", "200091", 50_000)).await;
            assert_eq!(rc(&a), "00", "{}: refund", db.name);
            assert_eq!(balance(&mut c, card, "91").await, 600_000);
            let a = send(&mut c, &request(card, SHOP, "5411", "200091", 150_001)).await;
            assert_eq!(rc(&a), "13", "{}: refund above what was paid", db.name);
            // Not at another acquirer that was never paid.
            let a = send(&mut c, &request(card, ATM, "5411", "200091", 1_000)).await;
            assert_eq!(
                rc(&a),
                "13",
                "{}: refund at an acquirer never paid",
                db.name
            );
        });
    }
}
