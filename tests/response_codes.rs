//! Every response code of wire.md the switch can produce today, each got by a real
//! request over TCP, and every decline leaves the ledger and the balances as they were.

mod common;

use common::*;
use multiguna::client::{transmission_time_now, Answer, IsoClient, TxnSpec};
use multiguna::demo::DemoCard;
use multiguna::domain::pan::{luhn_check_digit, luhn_valid};
use multiguna::iso8583::{MessageBuilder, Mti};

fn entries(db: &TestDb) -> i64 {
    db.scalar("SELECT COUNT(*) FROM entries")
}

fn mti(answer: &Answer) -> String {
    answer
        .message()
        .map(|m| m.mti().as_str().to_string())
        .unwrap_or_default()
}

/// A Luhn-valid 16-digit PAN from a 15-digit body.
fn luhn_pan(body: &str) -> String {
    let pan = format!("{body}{}", luhn_check_digit(body));
    assert!(luhn_valid(&pan));
    pan
}

/// The ledger's entry count and the family's balances (F54 of a balance inquiry by
/// `witness`, a card of the same family that is not under test).
async fn ledger_state(db: &TestDb, c: &mut IsoClient, witness: &DemoCard) -> (i64, String) {
    let answer = send(c, &request(witness, ATM, "6011", "310000", 0)).await;
    assert_eq!(rc(&answer), "00", "{}: witness balance inquiry", db.name);
    (entries(db), answer.field(54).expect("F54"))
}

/// Sends `spec`, asserts it is declined `code` in an 0210 without an approval code,
/// and that the ledger and the family's balances did not change.
async fn assert_declined(
    db: &TestDb,
    c: &mut IsoClient,
    spec: &TxnSpec,
    witness: &DemoCard,
    code: &str,
    what: &str,
) -> Answer {
    let before = ledger_state(db, c, witness).await;
    let answer = send(c, spec).await;
    assert_eq!(rc(&answer), code, "{}: {what}", db.name);
    assert_eq!(mti(&answer), "0210", "{}: {what}: response MTI", db.name);
    assert_eq!(
        answer.field(11),
        Some(format!("{:06}", spec.stan % 1_000_000)),
        "{}: {what}: F11 echoed",
        db.name
    );
    assert_eq!(
        answer.field(38),
        None,
        "{}: {what}: no approval code on a decline",
        db.name
    );
    // The fields a response echoes as received (those this request has).
    let sent = spec.build();
    for n in [2, 3, 4, 7, 32, 37, 41, 42] {
        assert_eq!(
            answer.field(n).as_deref(),
            sent.get_str(n),
            "{}: {what}: F{n} echoed",
            db.name
        );
    }
    let after = ledger_state(db, c, witness).await;
    assert_eq!(
        after, before,
        "{}: {what}: a decline posts nothing",
        db.name
    );
    answer
}

fn ride(card: &DemoCard) -> TxnSpec {
    let mut spec = request(card, BUS, "4111", "000000", 3_500);
    spec.pin_block = None;
    spec
}

fn clinic(card: &DemoCard, provider: &str, service: Option<&str>) -> TxnSpec {
    let mut spec = request(card, HEALTH_EDU, "8011", "000000", 15_000_000);
    spec.acceptor = Some(provider.into());
    spec.private = service.map(str::to_string);
    spec
}

#[test]
fn unknown_acquirer_is_03() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            spec.acquirer = "999999".into();
            assert_declined(&db, &mut c, &spec, &cards[1], "03", "unknown F32").await;
        });
        drop(switch);
    }
}

#[test]
fn acquirer_not_configured_for_the_channel_is_03() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            // The Damri validators' link withdrawing cash at an ATM MCC.
            let spec = request(&cards[0], BUS, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "03", "damri link at ATM").await;
            // The minimarket link at a clinic MCC.
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", Some("SVC=CONSULT"));
            let spec = TxnSpec {
                acquirer: SHOP.into(),
                ..spec
            }
            .with_pin(&cards[0], SHOP);
            assert_declined(&db, &mut c, &spec, &cards[1], "03", "shop link at clinic").await;
        });
        drop(switch);
    }
}

#[test]
fn processing_type_40_is_12() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "400000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "12", "transfer 40").await;
        });
        drop(switch);
    }
}

#[test]
fn atm_purchase_is_12() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "000000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "12", "purchase at ATM").await;
        });
        drop(switch);
    }
}

#[test]
fn clinic_payment_without_svc_is_12() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", None);
            assert_declined(&db, &mut c, &spec, &cards[1], "12", "clinic, no F48").await;
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", Some("ROUTE=7"));
            assert_declined(&db, &mut c, &spec, &cards[1], "12", "clinic, F48 w/o SVC").await;
            // The same payment with SVC is approved: the decline was for the missing SVC.
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", Some("SVC=CONSULT"));
            assert_eq!(
                rc(&send(&mut c, &spec).await),
                "00",
                "{}: with SVC",
                db.name
            );
        });
        drop(switch);
    }
}

#[test]
fn currency_other_than_idr_is_13() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let before = ledger_state(&db, &mut c, &cards[1]).await;
            let spec = request(&cards[0], SHOP, "5411", "000000", 25_000);
            let mut message = spec.build();
            message.set_str(49, "840").expect("F49");
            let answer = c.request(&message).await.expect("answer");
            assert_eq!(rc(&answer), "13", "{}: USD", db.name);
            assert_eq!(answer.field(49).as_deref(), Some("840"), "F49 echoed");
            assert_eq!(ledger_state(&db, &mut c, &cards[1]).await, before);
        });
        drop(switch);
    }
}

#[test]
fn atm_withdrawal_not_a_multiple_of_50000_is_13() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "010000", 75_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "13", "ATM 75,000").await;
        });
        drop(switch);
    }
}

#[test]
fn zero_amount_purchase_is_13() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], SHOP, "5411", "000000", 0);
            assert_declined(&db, &mut c, &spec, &cards[1], "13", "purchase of 0").await;
        });
        drop(switch);
    }
}

#[test]
fn unknown_card_is_14() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let stranger = DemoCard {
                family_id: cards[0].family_id.clone(),
                pan: luhn_pan("603456999999999"),
                pin: "123456".into(),
            };
            let spec = request(&stranger, ATM, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "14", "PAN not imported").await;
        });
        drop(switch);
    }
}

#[test]
fn malformed_f48_is_30_with_the_stan_echoed() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", Some("SVC"));
            assert_declined(&db, &mut c, &spec, &cards[1], "30", "F48 `SVC`").await;
            let spec = clinic(&cards[0], "KLINIK-SERANG-0", Some("SVC=CONSULT;=X"));
            assert_declined(&db, &mut c, &spec, &cards[1], "30", "F48 empty key").await;
        });
        drop(switch);
    }
}

#[test]
fn lost_stolen_and_blocked_cards_are_41_43_62_and_unblock_restores_00() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let rt = runtime();
        let mut c = rt.block_on(switch.client());
        let (card, witness) = (&cards[0], &cards[1]);
        let start = rt.block_on(ledger_state(&db, &mut c, witness));
        for (action, code) in [("lost", "41"), ("stolen", "43"), ("block", "62")] {
            db.cli_ok(&["card", action, &card.pan]);
            wait_until(
                &format!("{}: card {action} answers {code}", db.name),
                || {
                    let inquiry = request(card, ATM, "6011", "310000", 0);
                    rt.block_on(async { rc(&send(&mut c, &inquiry).await) == code })
                },
            );
            let spec = request(card, ATM, "6011", "010000", 50_000);
            rt.block_on(assert_declined(
                &db,
                &mut c,
                &spec,
                witness,
                code,
                &format!("withdrawal by a {action} card"),
            ));
            // The other card of the family is not affected.
            let spec = request(witness, SHOP, "5411", "310000", 0);
            assert_eq!(rt.block_on(async { rc(&send(&mut c, &spec).await) }), "00");
        }
        assert_eq!(rt.block_on(ledger_state(&db, &mut c, witness)), start);
        db.cli_ok(&["card", "unblock", &card.pan]);
        wait_until(&format!("{}: unblocked card answers 00", db.name), || {
            let inquiry = request(card, ATM, "6011", "310000", 0);
            rt.block_on(async { rc(&send(&mut c, &inquiry).await) == "00" })
        });
        rt.block_on(async {
            let a = send(&mut c, &request(card, ATM, "6011", "010000", 50_000)).await;
            assert_eq!(rc(&a), "00", "{}: withdrawal after unblock", db.name);
            assert_eq!(a.field(54).and_then(|f| parse_f54(&f, "91")), Some(700_000));
        });
        drop(c);
        drop(rt);
        drop(switch);
    }
}

#[test]
fn more_than_the_purse_holds_is_51() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            // Cash holds 750,000: 800,000 is within every ATM limit but not the purse.
            let spec = request(&cards[0], ATM, "6011", "010000", 800_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "51", "ATM 800,000").await;
            // Food holds 300,000: an explicit food purchase of 300,001.
            let spec = request(&cards[0], SHOP, "5411", "009200", 300_001);
            assert_declined(&db, &mut c, &spec, &cards[1], "51", "food 300,001").await;
            // Exactly what the purse holds is fine.
            let spec = request(&cards[0], ATM, "6011", "010000", 750_000);
            assert_eq!(
                rc(&send(&mut c, &spec).await),
                "00",
                "{}: all cash",
                db.name
            );
            assert_eq!(balance(&mut c, &cards[1], "91").await, 0);
        });
        drop(switch);
    }
}

#[test]
fn expired_card_is_54() {
    for db in backends() {
        let family = "3699000000000001";
        let expired = DemoCard {
            family_id: family.into(),
            pan: luhn_pan("603456900000000"),
            pin: "123456".into(),
        };
        let valid = DemoCard {
            family_id: family.into(),
            pan: luhn_pan("603456900000001"),
            pin: "123456".into(),
        };
        let offset = |card: &DemoCard| {
            db.cli_ok(&["pin", "offset", "--pan", &card.pan, "--pin", &card.pin])
                .trim()
                .to_string()
        };
        let csv = format!(
            "family_id,member_id,member_name,role,pan,expiry,pin_offset\n\
             {family},3699000000000011,Kartu Lama,head,{},0106,{}\n\
             {family},3699000000000012,Kartu Baru,spouse,{},2912,{}\n",
            expired.pan,
            offset(&expired),
            valid.pan,
            offset(&valid)
        );
        let file = db.write("expired.csv", &csv);
        db.cli_ok(&["import", "beneficiaries", &file]);
        let money = db.write(
            "expired-money.csv",
            &format!("batch_ref,family_id,purse,amount\nEXP-1,{family},cash,750000\n"),
        );
        db.cli_ok(&["disburse", &money]);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert_eq!(balance(&mut c, &valid, "91").await, 750_000);
            let spec = request(&expired, ATM, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &spec, &valid, "54", "expired 2001").await;
            let spec = request(&expired, ATM, "6011", "310000", 0);
            assert_declined(&db, &mut c, &spec, &valid, "54", "inquiry, expired").await;
        });
        drop(switch);
    }
}

#[test]
fn wrong_pin_is_55() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let card = &cards[0];
            let wrong = if card.pin == "000000" {
                "111111"
            } else {
                "000000"
            };
            let spec =
                request(card, ATM, "6011", "010000", 50_000).with_pin_digits(card, wrong, ATM);
            assert_declined(&db, &mut c, &spec, &cards[1], "55", "wrong PIN").await;
            // A PIN block made under another link's key is a wrong PIN too.
            let spec = request(card, ATM, "6011", "010000", 50_000).with_pin(card, SHOP);
            assert_declined(&db, &mut c, &spec, &cards[1], "55", "other link's key").await;
        });
        drop(switch);
    }
}

#[test]
fn missing_pin_block_on_a_pin_channel_is_55() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            spec.pin_block = None;
            assert_declined(&db, &mut c, &spec, &cards[1], "55", "ATM, no F52").await;
            let mut spec = request(&cards[0], SHOP, "5411", "000000", 10_000);
            spec.pin_block = None;
            assert_declined(&db, &mut c, &spec, &cards[1], "55", "shop, no F52").await;
        });
        drop(switch);
    }
}

#[test]
fn atm_withdrawal_from_the_health_purse_is_57() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "019300", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "57", "ATM from health").await;
            // Explicit cash is allowed: the decline was for the purse.
            let spec = request(&cards[0], ATM, "6011", "019100", 50_000);
            assert_eq!(
                rc(&send(&mut c, &spec).await),
                "00",
                "{}: from cash",
                db.name
            );
        });
        drop(switch);
    }
}

#[test]
fn unknown_mcc_is_58() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], SHOP, "5999", "000000", 10_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "58", "MCC 5999").await;
        });
        drop(switch);
    }
}

#[test]
fn clinic_payment_to_an_unregistered_provider_is_58() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = clinic(&cards[0], "KLINIK-PALSU-99", Some("SVC=CONSULT"));
            assert_declined(&db, &mut c, &spec, &cards[1], "58", "unregistered").await;
            // A school registered for school, not for clinic.
            let spec = clinic(&cards[0], "SDN-SERANG-01", Some("SVC=CONSULT"));
            assert_declined(&db, &mut c, &spec, &cards[1], "58", "school at clinic").await;
        });
        drop(switch);
    }
}

#[test]
fn atm_withdrawal_above_1250000_is_61() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "010000", 1_300_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "61", "ATM 1,300,000").await;
        });
        drop(switch);
    }
}

#[test]
fn minimarket_purchase_above_1000000_is_61() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], SHOP, "5411", "000000", 1_000_001);
            assert_declined(&db, &mut c, &spec, &cards[1], "61", "shop 1,000,001").await;
        });
        drop(switch);
    }
}

#[test]
fn seventh_damri_ride_of_the_day_is_65() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            for n in 1..=6 {
                let a = send(&mut c, &ride(&cards[0])).await;
                assert_eq!(rc(&a), "00", "{}: ride {n}", db.name);
            }
            assert_eq!(balance(&mut c, &cards[1], "95").await, 100_000 - 6 * 3_500);
            let spec = ride(&cards[0]);
            assert_declined(&db, &mut c, &spec, &cards[1], "65", "7th ride").await;
            // The limit is per card: the other card of the family still rides.
            let a = send(&mut c, &ride(&cards[1])).await;
            assert_eq!(rc(&a), "00", "{}: other card's first ride", db.name);
        });
        drop(switch);
    }
}

#[test]
fn sixth_atm_withdrawal_of_the_day_is_65() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            for n in 1..=5 {
                let a = send(&mut c, &request(&cards[0], ATM, "6011", "010000", 50_000)).await;
                assert_eq!(rc(&a), "00", "{}: withdrawal {n}", db.name);
            }
            let spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "65", "6th withdrawal").await;
            assert_eq!(balance(&mut c, &cards[1], "91").await, 500_000);
            let a = send(&mut c, &request(&cards[1], ATM, "6011", "010000", 50_000)).await;
            assert_eq!(rc(&a), "00", "{}: other card's first withdrawal", db.name);
        });
        drop(switch);
    }
}

#[test]
fn third_wrong_pin_in_a_row_is_75_until_the_pin_is_unlocked() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let rt = runtime();
        let mut c = rt.block_on(switch.client());
        let (card, witness) = (&cards[0], &cards[1]);
        let wrong = if card.pin == "000000" {
            "111111"
        } else {
            "000000"
        };
        let wrong_pin =
            || request(card, ATM, "6011", "010000", 50_000).with_pin_digits(card, wrong, ATM);
        rt.block_on(async {
            for code in ["55", "55", "75"] {
                assert_declined(&db, &mut c, &wrong_pin(), witness, code, "wrong PIN").await;
            }
            let right = request(card, ATM, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &right, witness, "75", "right PIN, locked").await;
            let right = request(card, ATM, "6011", "310000", 0);
            assert_declined(&db, &mut c, &right, witness, "75", "inquiry, locked").await;
        });
        db.cli_ok(&["card", "unlock-pin", &card.pan]);
        wait_until(&format!("{}: unlocked PIN answers 00", db.name), || {
            let inquiry = request(card, ATM, "6011", "310000", 0);
            rt.block_on(async { rc(&send(&mut c, &inquiry).await) == "00" })
        });
        rt.block_on(async {
            let a = send(&mut c, &request(card, ATM, "6011", "010000", 50_000)).await;
            assert_eq!(rc(&a), "00", "{}: right PIN after unlock", db.name);
            // The count starts again from zero after the unlock.
            assert_declined(
                &db,
                &mut c,
                &wrong_pin(),
                witness,
                "55",
                "wrong after unlock",
            )
            .await;
        });
        drop(c);
        drop(rt);
        drop(switch);
    }
}

#[test]
fn a_right_pin_resets_the_wrong_pin_count() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let card = &cards[0];
            let wrong = if card.pin == "000000" {
                "111111"
            } else {
                "000000"
            };
            let wrong_pin =
                || request(card, ATM, "6011", "310000", 0).with_pin_digits(card, wrong, ATM);
            for _ in 0..2 {
                assert_eq!(rc(&send(&mut c, &wrong_pin()).await), "55", "{}", db.name);
            }
            let right = request(card, ATM, "6011", "310000", 0);
            assert_eq!(rc(&send(&mut c, &right).await), "00", "{}", db.name);
            for _ in 0..2 {
                assert_eq!(rc(&send(&mut c, &wrong_pin()).await), "55", "{}", db.name);
            }
        });
        drop(switch);
    }
}

#[test]
fn same_key_with_different_content_is_94() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let first = request(&cards[0], ATM, "6011", "010000", 100_000);
            let a = send(&mut c, &first).await;
            assert_eq!(rc(&a), "00", "{}: first", db.name);
            let changed = TxnSpec {
                amount: Some(200_000),
                ..first.clone()
            };
            assert_declined(&db, &mut c, &changed, &cards[1], "94", "other amount").await;
            let changed = TxnSpec {
                processing: "310000".into(),
                amount: Some(0),
                ..first.clone()
            };
            assert_declined(&db, &mut c, &changed, &cards[1], "94", "other type").await;
            assert_eq!(balance(&mut c, &cards[1], "91").await, 650_000);
        });
        drop(switch);
    }
}

#[test]
fn network_management_sign_on_sign_off_and_echo_get_0810_00() {
    for db in backends() {
        let _cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let before = entries(&db);
            for code in ["001", "301", "002"] {
                let stan = format!("{:06}", next_stan() % 1_000_000);
                let mut m = MessageBuilder::new(Mti::NETWORK_REQUEST);
                m.set_str(7, &transmission_time_now()).expect("F7");
                m.set_str(11, &stan).expect("F11");
                m.set_str(70, code).expect("F70");
                let a = c.request(&m).await.expect("answer");
                assert_eq!(mti(&a), "0810", "{}: 0800 {code}", db.name);
                assert_eq!(rc(&a), "00", "{}: 0800 {code}", db.name);
                assert_eq!(a.field(11), Some(stan), "{}: F11 echoed", db.name);
                assert_eq!(
                    a.field(70).as_deref(),
                    Some(code),
                    "{}: F70 echoed",
                    db.name
                );
            }
            assert_eq!(
                entries(&db),
                before,
                "{}: network management posts nothing",
                db.name
            );
        });
        drop(switch);
    }
}

#[test]
fn sixth_atm_withdrawal_of_the_day_is_65_across_a_restart() {
    for db in backends() {
        let cards = db.province(1);
        let rt = runtime();
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            for n in 1..=5 {
                let a = send(&mut c, &request(&cards[0], ATM, "6011", "010000", 50_000)).await;
                assert_eq!(rc(&a), "00", "{}: withdrawal {n}", db.name);
            }
        });
        assert!(switch.terminate().success(), "{}: clean stop", db.name);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            assert_declined(&db, &mut c, &spec, &cards[1], "65", "6th after restart").await;
            assert_eq!(balance(&mut c, &cards[1], "91").await, 500_000);
        });
        drop(rt);
        drop(switch);
    }
}

#[test]
fn a_pin_locked_by_wrong_tries_stays_locked_across_a_restart() {
    for db in backends() {
        let cards = db.province(1);
        let (card, witness) = (&cards[0], &cards[1]);
        let wrong = if card.pin == "000000" {
            "111111"
        } else {
            "000000"
        };
        let rt = runtime();
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            for code in ["55", "55", "75"] {
                let spec =
                    request(card, ATM, "6011", "310000", 0).with_pin_digits(card, wrong, ATM);
                assert_eq!(rc(&send(&mut c, &spec).await), code, "{}", db.name);
            }
        });
        assert!(switch.terminate().success(), "{}: clean stop", db.name);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            let right = request(card, ATM, "6011", "010000", 50_000);
            assert_declined(
                &db,
                &mut c,
                &right,
                witness,
                "75",
                "right PIN after restart",
            )
            .await;
        });
        drop(rt);
        drop(switch);
    }
}
