//! Idempotent retries (also across a restart) and reversals (wire.md, "Idempotency" and
//! "Reversals"), over TCP against the real ledger.

mod common;

use common::*;
use multiguna::client::{transmission_time_now, Answer, IsoClient, TxnSpec};

fn entries(db: &TestDb) -> i64 {
    db.scalar("SELECT COUNT(*) FROM entries")
}

fn mti(answer: &Answer) -> String {
    answer
        .message()
        .map(|m| m.mti().as_str().to_string())
        .unwrap_or_default()
}

/// F38, F39 and F54 of an answer: what a retry must repeat byte for byte.
fn decision(answer: &Answer) -> (Option<String>, Option<String>, Option<String>) {
    (answer.field(38), answer.field(39), answer.field(54))
}

/// F90 naming `original`: MTI(4) STAN(6) F7(10) acquirer(11, zero-padded) forwarding(11).
fn f90(original: &TxnSpec) -> String {
    let text = format!(
        "{}{:06}{}{:0>11}{}",
        original.mti,
        original.stan % 1_000_000,
        original.transmitted,
        original.acquirer,
        "0".repeat(11)
    );
    assert_eq!(text.len(), 42, "F90 is n42");
    text
}

/// A reversal (`0400`/`0420`) of `original` from the same terminal, with its own STAN
/// and time, the original's RRN, and F90 when `by_f90`.
fn reversal(mti: &str, original: &TxnSpec, by_f90: bool) -> TxnSpec {
    TxnSpec {
        mti: mti.into(),
        stan: next_stan(),
        transmitted: transmission_time_now(),
        original: by_f90.then(|| f90(original)),
        pin_block: None,
        ..original.clone()
    }
}

/// F95 saying `completed` (link units) was actually completed.
fn f95(completed: u64) -> String {
    format!("{completed:012}{}", "0".repeat(30))
}

fn verify_passes(db: &TestDb) {
    let out = db.cli(&["ledger", "verify"]);
    assert!(
        out.status.success(),
        "{}: ledger verify failed: {}{}",
        db.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn cash(c: &mut IsoClient, card: &multiguna::demo::DemoCard) -> i64 {
    balance(c, card, "91").await
}

#[test]
fn a_retry_with_the_same_key_and_content_gets_the_first_answer_and_posts_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "010000", 100_000);
            let first = send(&mut c, &spec).await;
            assert_eq!(rc(&first), "00", "{}: first", db.name);
            assert!(first.field(38).is_some(), "{}: approval code", db.name);
            // A withdrawal from the other card in between changes the balance, so a
            // recomputed F54 would differ from the first one.
            let other = send(&mut c, &request(&cards[1], ATM, "6011", "010000", 50_000)).await;
            assert_eq!(rc(&other), "00", "{}: other card", db.name);
            let posted = entries(&db);
            for n in 1..=3 {
                let again = send(&mut c, &spec).await;
                assert_eq!(mti(&again), "0210", "{}: retry {n}", db.name);
                assert_eq!(decision(&again), decision(&first), "{}: retry {n}", db.name);
                assert_eq!(
                    again.field(11),
                    first.field(11),
                    "{}: retry {n} F11",
                    db.name
                );
                assert_eq!(entries(&db), posted, "{}: retry {n} posts nothing", db.name);
            }
            // A repeat (0201) of the same request is the same retry.
            let repeat = TxnSpec {
                mti: "0201".into(),
                ..spec.clone()
            };
            let again = send(&mut c, &repeat).await;
            assert_eq!(mti(&again), "0210", "{}: 0201", db.name);
            assert_eq!(decision(&again), decision(&first), "{}: 0201", db.name);
            assert_eq!(entries(&db), posted, "{}: 0201 posts nothing", db.name);
            // Debited once: 750,000 - 100,000 - 50,000.
            assert_eq!(cash(&mut c, &cards[0]).await, 600_000);
            // A retry on another connection is the same retry.
            let mut c2 = switch.client().await;
            let again = send(&mut c2, &spec).await;
            assert_eq!(decision(&again), decision(&first), "{}: 2nd conn", db.name);
            assert_eq!(entries(&db), posted, "{}: 2nd conn posts nothing", db.name);
        });
        drop(switch);
    }
}

#[test]
fn a_retry_of_a_decline_gets_the_same_decline() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let spec = request(&cards[0], ATM, "6011", "010000", 800_000);
            let first = send(&mut c, &spec).await;
            assert_eq!(rc(&first), "51", "{}: first", db.name);
            let before = entries(&db);
            let again = send(&mut c, &spec).await;
            assert_eq!(decision(&again), decision(&first), "{}: retry", db.name);
            assert_eq!(entries(&db), before, "{}", db.name);
        });
        drop(switch);
    }
}

#[test]
fn a_retry_after_a_restart_gets_the_same_approval_code_and_posts_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let rt = runtime();
        let switch = Switch::start(&db);
        let spec = request(&cards[0], ATM, "6011", "010000", 100_000);
        let first = rt.block_on(async {
            let mut c = switch.client().await;
            send(&mut c, &spec).await
        });
        assert_eq!(rc(&first), "00", "{}: first", db.name);
        let posted = entries(&db);
        let status = switch.terminate();
        assert!(status.success(), "{}: clean stop: {status}", db.name);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            let again = send(&mut c, &spec).await;
            assert_eq!(
                decision(&again),
                decision(&first),
                "{}: retry after restart",
                db.name
            );
            assert_eq!(entries(&db), posted, "{}: posts nothing", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 650_000);
            // Different content under the same key is still 94 after the restart.
            let changed = TxnSpec {
                amount: Some(150_000),
                ..spec.clone()
            };
            assert_eq!(rc(&send(&mut c, &changed).await), "94", "{}", db.name);
            assert_eq!(entries(&db), posted, "{}: 94 posts nothing", db.name);
        });
        drop(rt);
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_reversal_by_f90_undoes_the_withdrawal() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 100_000);
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 650_000);
            let posted = entries(&db);
            let rev = TxnSpec {
                // The RRN must not be what finds the original here.
                rrn: Some("999999999999".into()),
                ..reversal("0400", &original, true)
            };
            let a = send(&mut c, &rev).await;
            assert_eq!(mti(&a), "0410", "{}", db.name);
            assert_eq!(rc(&a), "00", "{}: reversal", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
            assert!(entries(&db) > posted, "{}: a compensating entry", db.name);
            verify_passes(&db);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_reversal_without_f90_finds_its_original_by_acquirer_terminal_and_rrn() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 200_000);
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 550_000);
            let rev = reversal("0400", &original, false);
            assert!(rev.original.is_none() && rev.rrn == original.rrn);
            let a = send(&mut c, &rev).await;
            assert_eq!(mti(&a), "0410", "{}", db.name);
            assert_eq!(rc(&a), "00", "{}: reversal by RRN", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_partial_reversal_advice_undoes_only_what_was_not_dispensed() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 150_000);
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 600_000);
            // The ATM dispensed 50,000 of 150,000.
            let rev = TxnSpec {
                replacement: Some(f95(50_000)),
                ..reversal("0420", &original, true)
            };
            let a = send(&mut c, &rev).await;
            assert_eq!(mti(&a), "0430", "{}", db.name);
            assert_eq!(rc(&a), "00", "{}: partial reversal", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 700_000, "{}", db.name);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_second_reversal_of_the_same_original_posts_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 100_000);
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            let a = send(&mut c, &reversal("0400", &original, true)).await;
            assert_eq!(rc(&a), "00", "{}: first reversal", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000);
            let posted = entries(&db);
            // Another 0400 (new STAN), an 0420, and one found by RRN: all acknowledged,
            // none posts.
            for (what, rev, want_mti) in [
                ("0400 by F90", reversal("0400", &original, true), "0410"),
                ("0420 by F90", reversal("0420", &original, true), "0430"),
                ("0400 by RRN", reversal("0400", &original, false), "0410"),
            ] {
                let a = send(&mut c, &rev).await;
                assert_eq!(mti(&a), want_mti, "{}: {what}", db.name);
                assert_eq!(rc(&a), "00", "{}: {what} acknowledged", db.name);
                assert_eq!(entries(&db), posted, "{}: {what} posts nothing", db.name);
            }
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_reversal_before_its_original_gets_25_and_the_original_then_gets_05() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 100_000);
            let posted = entries(&db);
            let a = send(&mut c, &reversal("0400", &original, true)).await;
            assert_eq!(mti(&a), "0410", "{}", db.name);
            assert_eq!(rc(&a), "25", "{}: original not found", db.name);
            let a = send(&mut c, &original).await;
            assert_eq!(rc(&a), "05", "{}: late original", db.name);
            assert_eq!(a.field(38), None, "{}: no approval code", db.name);
            assert_eq!(entries(&db), posted, "{}: nothing posted", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
            // The same by RRN: a reversal without F90 first, then its original.
            let original = request(&cards[0], ATM, "6011", "010000", 50_000);
            let a = send(&mut c, &reversal("0400", &original, false)).await;
            assert_eq!(rc(&a), "25", "{}: by RRN, not found", db.name);
            let a = send(&mut c, &original).await;
            assert_eq!(rc(&a), "05", "{}: late original by RRN", db.name);
            assert_eq!(entries(&db), posted, "{}: nothing posted", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_reversal_advice_for_an_unknown_original_is_acknowledged_00() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let original = request(&cards[0], ATM, "6011", "010000", 100_000);
            let posted = entries(&db);
            let a = send(&mut c, &reversal("0420", &original, true)).await;
            assert_eq!(mti(&a), "0430", "{}", db.name);
            assert_eq!(rc(&a), "00", "{}: 0420 always acknowledged", db.name);
            assert_eq!(entries(&db), posted, "{}: nothing posted", db.name);
            // Remembered like an 0400: its original arriving afterwards is declined.
            let a = send(&mut c, &original).await;
            assert_eq!(rc(&a), "05", "{}: late original", db.name);
            assert_eq!(entries(&db), posted, "{}: nothing posted", db.name);
        });
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_second_reversal_after_a_restart_posts_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let rt = runtime();
        let switch = Switch::start(&db);
        let original = request(&cards[0], ATM, "6011", "010000", 100_000);
        rt.block_on(async {
            let mut c = switch.client().await;
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            let a = send(&mut c, &reversal("0400", &original, true)).await;
            assert_eq!(rc(&a), "00", "{}: first reversal", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000);
        });
        assert!(switch.terminate().success(), "{}: clean stop", db.name);
        let posted = entries(&db);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            let a = send(&mut c, &reversal("0400", &original, true)).await;
            assert_eq!(rc(&a), "00", "{}: second reversal acknowledged", db.name);
            assert_eq!(entries(&db), posted, "{}: posts nothing", db.name);
            // The original's retry still gets its first answer and does not debit again.
            let again = send(&mut c, &original).await;
            assert_eq!(rc(&again), "00", "{}: original retried", db.name);
            assert_eq!(entries(&db), posted, "{}: retry posts nothing", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
        });
        drop(rt);
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_partially_reversed_withdrawal_cannot_be_reversed_again_after_a_restart() {
    for db in backends() {
        let cards = db.province(1);
        let rt = runtime();
        let switch = Switch::start(&db);
        let original = request(&cards[0], ATM, "6011", "010000", 150_000);
        rt.block_on(async {
            let mut c = switch.client().await;
            assert_eq!(rc(&send(&mut c, &original).await), "00", "{}", db.name);
            let partial = TxnSpec {
                replacement: Some(f95(50_000)),
                ..reversal("0420", &original, true)
            };
            assert_eq!(rc(&send(&mut c, &partial).await), "00", "{}", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 700_000);
        });
        assert!(switch.terminate().success(), "{}: clean stop", db.name);
        let posted = entries(&db);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            assert_eq!(cash(&mut c, &cards[0]).await, 700_000, "{}", db.name);
            let a = send(&mut c, &reversal("0400", &original, true)).await;
            assert_eq!(rc(&a), "00", "{}: acknowledged", db.name);
            assert_eq!(entries(&db), posted, "{}: posts nothing", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 700_000, "{}", db.name);
        });
        drop(rt);
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn a_reversal_remembered_before_a_restart_still_declines_its_late_original() {
    for db in backends() {
        let cards = db.province(1);
        let rt = runtime();
        let switch = Switch::start(&db);
        let by_f90 = request(&cards[0], ATM, "6011", "010000", 100_000);
        let by_rrn = request(&cards[0], ATM, "6011", "010000", 50_000);
        rt.block_on(async {
            let mut c = switch.client().await;
            let a = send(&mut c, &reversal("0400", &by_f90, true)).await;
            assert_eq!(rc(&a), "25", "{}", db.name);
            let a = send(&mut c, &reversal("0400", &by_rrn, false)).await;
            assert_eq!(rc(&a), "25", "{}", db.name);
        });
        assert!(switch.terminate().success(), "{}: clean stop", db.name);
        let posted = entries(&db);
        let switch = Switch::start(&db);
        rt.block_on(async {
            let mut c = switch.client().await;
            let a = send(&mut c, &by_f90).await;
            assert_eq!(rc(&a), "05", "{}: late original (F90)", db.name);
            let a = send(&mut c, &by_rrn).await;
            assert_eq!(rc(&a), "05", "{}: late original (RRN)", db.name);
            assert_eq!(entries(&db), posted, "{}: nothing posted", db.name);
            assert_eq!(cash(&mut c, &cards[0]).await, 750_000, "{}", db.name);
        });
        drop(rt);
        drop(switch);
        verify_passes(&db);
    }
}
