//! The money life cycle beyond a plain debit: holds, completions, expiry, forced
//! advices, settlement, and what survives SIGKILL and failed commits.

mod common;

use std::time::Duration;

use common::*;

/// When the card ledgers below are written.
const CARD_AT_MS: i64 = 1_795_400_000_000;

/// A fresh ledger holding `batches` batches of three transfers of `card`, each moving
/// 10 x batch + i from account 1 to account 2 at that many ms after `CARD_AT_MS`.
async fn card_ledger(db: &TestDb, card: &str, batches: i64) -> multiguna::ledger::Db {
    use multiguna::ledger::{Batch, Db, LedgerWriter, TransferRow};
    let ledger = Db::connect(&db.url).await.expect("connect");
    ledger.migrate().await.expect("migrate");
    let mut writer = LedgerWriter::new(ledger.clone(), "switch");
    for b in 0..batches {
        let mut batch = Batch::default();
        for amount in (0..3).map(|i| 10 * b + i) {
            let row = TransferRow {
                kind: "test".into(),
                card_sha: card.to_string(),
                amount_minor: amount,
                at_ms: CARD_AT_MS + amount,
                ..TransferRow::default()
            };
            batch.push(row, &[(1, -amount), (2, amount)]);
        }
        writer.commit(&mut batch, CARD_AT_MS).await.expect("commit");
    }
    ledger
}

/// The amounts of `card`'s transfers as the card's history reads them, newest first.
async fn card_amounts(ledger: &multiguna::ledger::Db, card: &str) -> Vec<i64> {
    let mut conn = ledger.pool.acquire().await.expect("conn");
    let history = ledger.card_transfers(&mut conn, card, 10).await;
    history
        .expect("history")
        .iter()
        .map(|t| t.amount_minor)
        .collect()
}

#[test]
fn hold_lowers_available_only_and_completion_posts_up_to_the_hold_once() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let card = &cards[0];
        let (hold, before) = runtime().block_on(async {
            let mut c = switch.client().await;
            let mut hold = request(card, ATM, "6011", "010000", 200_000);
            hold.mti = "0100".into();
            let a = send(&mut c, &hold).await;
            assert_eq!(rc(&a), "00", "{}: hold", db.name);
            assert_eq!(a.field(0).unwrap_or_default(), "", "no field 0");
            assert_eq!(
                balance(&mut c, card, "91").await,
                550_000,
                "{}: available drops",
                db.name
            );
            (hold, 0)
        });
        let _ = before;
        let posted_before = db.count("entries");
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut completion = request(card, ATM, "6011", "010000", 150_000);
            completion.mti = "0220".into();
            completion.original = Some(f90("0100", &hold));
            let a = send(&mut c, &completion).await;
            assert_eq!(rc(&a), "00", "{}: completion", db.name);
            assert_eq!(a.message().unwrap().mti().as_str(), "0230");
            assert_eq!(
                balance(&mut c, card, "91").await,
                600_000,
                "{}: 150,000 posted, rest released",
                db.name
            );
            let mut again = completion.clone();
            again.stan = next_stan();
            let a = send(&mut c, &again).await;
            assert_eq!(rc(&a), "25", "{}: a hold resolves once", db.name);
        });
        assert_eq!(
            db.count("entries"),
            posted_before + 2,
            "{}: one transfer of two legs",
            db.name
        );
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}

#[test]
fn reversal_voids_a_hold() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let card = &cards[0];
        let posted_before = db.count("entries");
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut hold = request(card, SHOP, "5411", "000000", 100_000);
            hold.mti = "0100".into();
            assert_eq!(rc(&send(&mut c, &hold).await), "00");
            assert_eq!(balance(&mut c, card, "92").await, 200_000);
            let mut reversal = request(card, SHOP, "5411", "000000", 100_000);
            reversal.mti = "0400".into();
            reversal.pin_block = None;
            reversal.original = Some(f90("0100", &hold));
            assert_eq!(rc(&send(&mut c, &reversal).await), "00", "{}", db.name);
            assert_eq!(
                balance(&mut c, card, "92").await,
                300_000,
                "{}: hold voided",
                db.name
            );
        });
        // A hold lowers what is available, and its reversal restores it: no money moves.
        assert_eq!(
            db.count("entries"),
            posted_before,
            "{}: a hold and its reversal post no entries",
            db.name
        );
    }
}

#[test]
fn a_hold_expires_by_itself_and_stays_expired_after_restart() {
    for db in backends() {
        let cards = db.province(1);
        let card = &cards[0];
        let ttl = [("MULTIGUNA__PROGRAMMES__0__HOLD_TTL_S", "1")];
        let switch = Switch::start_with(&db, &ttl);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut hold = request(card, ATM, "6011", "010000", 100_000);
            hold.mti = "0100".into();
            assert_eq!(rc(&send(&mut c, &hold).await), "00");
            assert_eq!(balance(&mut c, card, "91").await, 650_000);
        });
        wait_until("the hold to expire", || {
            db.scalar("SELECT COUNT(*) FROM transfers WHERE kind = 'hold_expiry'") == 1
        });
        switch.kill9();
        let switch = Switch::start_with(&db, &ttl);
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert_eq!(
                balance(&mut c, card, "91").await,
                750_000,
                "{}: released after restart",
                db.name
            );
        });
    }
}

#[test]
fn forced_advice_posts_below_zero_once_and_verify_allows_it() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let card = &cards[0];
        let posted = runtime().block_on(async {
            let mut c = switch.client().await;
            let mut advice = request(card, BUS, "4111", "000000", 150_000);
            advice.mti = "0220".into();
            advice.pin_block = None;
            advice.private = Some("TAP=20261123071500;ROUTE=SRG-BTN;BUS=B1234".into());
            let a = send(&mut c, &advice).await;
            assert_eq!(rc(&a), "00", "{}: advice", db.name);
            assert_eq!(a.field(54).and_then(|f| parse_f54(&f, "95")), Some(-50_000));
            let posted = db.count("entries");
            let mut repeat = advice.clone();
            repeat.mti = "0221".into();
            let again = send(&mut c, &repeat).await;
            assert_eq!(rc(&again), "00", "{}: repeat acknowledged", db.name);
            assert_eq!(again.field(54), a.field(54), "{}: same F54", db.name);
            posted
        });
        assert_eq!(
            db.count("entries"),
            posted,
            "{}: a repeat posts nothing",
            db.name
        );
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}

#[test]
fn settlement_csv_sums_to_the_ledger() {
    for db in backends() {
        let cards = db.province(2);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let w = request(&cards[0], ATM, "6011", "010000", 100_000);
            assert_eq!(rc(&send(&mut c, &w).await), "00");
            assert_eq!(
                rc(&send(&mut c, &request(&cards[2], ATM, "6011", "010000", 50_000)).await),
                "00"
            );
            let mut reversal = request(&cards[0], ATM, "6011", "010000", 100_000);
            reversal.mti = "0420".into();
            reversal.original = Some(f90("0200", &w));
            reversal.replacement = Some(format!("{:012}{}", 50_000, "0".repeat(30)));
            assert_eq!(rc(&send(&mut c, &reversal).await), "00");
            assert_eq!(
                rc(&send(&mut c, &request(&cards[0], SHOP, "5411", "000000", 20_000)).await),
                "00"
            );
        });
        let csv = db.cli_ok(&["report", "settlement", "--date", &business_date_today()]);
        let atm = csv
            .lines()
            .find(|l| l.contains(",acquirer,360001,"))
            .expect("ATM acquirer row");
        let cols: Vec<&str> = atm.split(',').collect();
        assert_eq!(
            &cols[4..],
            ["2", "150000.00", "0", "0.00", "1", "50000.00", "100000.00"],
            "{}: {atm}",
            db.name
        );
        let shop = csv
            .lines()
            .find(|l| l.contains(",acquirer,360002,"))
            .expect("shop row");
        assert!(shop.ends_with(",20000.00"), "{}: {shop}", db.name);
        let ledger_net = db.scalar(
            "SELECT CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT) FROM entries e JOIN accounts a ON a.account_id = e.account_id WHERE a.kind = 'acquirer'",
        );
        assert_eq!(
            ledger_net,
            (100_000 + 20_000) * 100,
            "{}: CSV nets equal the ledger",
            db.name
        );
    }
}

#[test]
fn sigkill_under_load_loses_no_approval_and_posts_nothing_twice() {
    for db in backends() {
        let cards = db.province(20);
        let switch = Switch::start(&db);
        let addr = switch.addr;
        let approved: Vec<(String, String, u64)> = runtime().block_on(async {
            let mut tasks = Vec::new();
            for worker in 0..4usize {
                let cards = cards.clone();
                tasks.push(tokio::spawn(async move {
                    let mut approved = Vec::new();
                    let Ok(mut c) = multiguna::client::IsoClient::connect(
                        addr,
                        multiguna::config::Framing::Len2,
                    )
                    .await
                    else {
                        return approved;
                    };
                    for i in 0.. {
                        let card = &cards[(worker * 7 + i) % cards.len()];
                        let mut spec =
                            request(card, SHOP, "5411", "000000", 1_000 + (i % 50) as u64);
                        spec.terminal = format!("LOAD{worker:04}");
                        let Ok(answer) = c.request(&spec.build()).await else {
                            break;
                        };
                        if answer.response_code().as_deref() == Some("00") {
                            approved.push((
                                spec.terminal.clone(),
                                format!("{:06}", spec.stan),
                                spec.amount.unwrap_or(0),
                            ));
                        }
                    }
                    approved
                }));
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            // SIGKILL while requests are in flight on every connection.
            switch.kill9();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            all
        });
        eprintln!(
            "{}: {} approvals seen by the clients before SIGKILL",
            db.name,
            approved.len()
        );
        assert!(
            approved.len() > 10,
            "{}: load ran ({} approvals)",
            db.name,
            approved.len()
        );
        for (terminal, stan, _) in &approved {
            let n = db.scalar(&format!(
                "SELECT COUNT(*) FROM transfers WHERE terminal = '{terminal}' AND stan = '{stan}' AND rc = '00'"
            ));
            assert_eq!(
                n, 1,
                "{}: approval {terminal}/{stan} in the ledger exactly once",
                db.name
            );
        }
        let total_minor: i64 = approved.iter().map(|(_, _, a)| *a as i64 * 100).sum();
        let ledger_minor = db.scalar("SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM transfers WHERE kind = 'purchase' AND rc = '00'");
        assert!(
            ledger_minor >= total_minor,
            "{}: every approval the client saw is posted",
            db.name
        );
        db.cli_ok(&["ledger", "verify"]);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert!(balance(&mut c, &cards[0], "92").await <= 300_000);
        });
    }
}

#[test]
fn restart_from_a_checkpoint_gives_the_same_balances_and_verify_checks_it() {
    for db in backends() {
        let cards = db.province(2);
        let fast = [("MULTIGUNA__SWITCH__CHECKPOINT_INTERVAL_S", "1")];
        let switch = Switch::start_with(&db, &fast);
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert_eq!(
                rc(&send(&mut c, &request(&cards[0], ATM, "6011", "010000", 100_000)).await),
                "00"
            );
        });
        wait_until("a checkpoint", || {
            db.scalar("SELECT COUNT(*) FROM checkpoints") >= 1
        });
        runtime().block_on(async {
            let mut c = switch.client().await;
            // After the checkpoint: start-up must add these entries to it.
            assert_eq!(
                rc(&send(&mut c, &request(&cards[0], ATM, "6011", "010000", 50_000)).await),
                "00"
            );
            assert_eq!(
                rc(&send(&mut c, &request(&cards[2], SHOP, "5411", "000000", 1_000)).await),
                "00"
            );
        });
        switch.kill9();
        // A checkpoint cut off by the kill after some of its balance rows and before its
        // closing `checkpoints` row: those rows (true balances at the head) must not be
        // read, or the entries after the last whole checkpoint would count twice.
        db.exec(
            "INSERT INTO balance_checkpoints (batch_seq, account_id, balance_minor) \
             SELECT (SELECT MAX(batch_seq) FROM ledger_batches), account_id, SUM(amount_minor) \
             FROM entries GROUP BY account_id ON CONFLICT DO NOTHING",
        );
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert_eq!(
                balance(&mut c, &cards[0], "91").await,
                600_000,
                "{}",
                db.name
            );
            assert_eq!(
                balance(&mut c, &cards[2], "92").await,
                299_000,
                "{}",
                db.name
            );
        });
        drop(switch);
        let report = db.cli_ok(&["ledger", "verify"]);
        assert!(!report.contains(" 0 checkpoints"), "{}: {report}", db.name);
        // A checkpoint row that disagrees with the entries is found.
        let seq = db.scalar("SELECT MIN(batch_seq) FROM checkpoints");
        db.exec(&format!(
            "INSERT INTO balance_checkpoints (batch_seq, account_id, balance_minor) VALUES ({seq}, 999999, 1)"
        ));
        let out = db.cli(&["ledger", "verify"]);
        assert!(
            !out.status.success(),
            "{}: a bad checkpoint fails verify",
            db.name
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("checkpoint"),
            "{}",
            db.name
        );
    }
}

/// Text that means something to a SQL or array parser (PostgreSQL's writer sends each
/// column as one array literal) is written and read back unchanged, on both backends.
/// Each text twice: 28 transfers and 56 entries, so SQLite's multi-row statements (16
/// transfers, 32 entries) and the single rows after them both carry some.
#[test]
fn awkward_text_is_written_and_read_back_unchanged() {
    use multiguna::ledger::{Batch, Db, LedgerWriter, TransferRow};
    let once = [
        "",
        "NULL",
        "a,b",
        "{x}",
        "say \"hi\"",
        "back\\slash\\",
        "  spaced  ",
        "ünï/cödé ✓",
        "'quoted'",
        "x'); DROP TABLE transfers; --",
        "$$ $q$ ;",
        "\\'\\\"",
        "line\nbreak\ttab",
        "E'{\"}'",
    ];
    let awkward: Vec<&str> = once.iter().chain(&once).copied().collect();
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            let mut batch = Batch::default();
            for (i, text) in awkward.iter().enumerate() {
                let row = TransferRow {
                    kind: "test".into(),
                    acceptor: text.to_string(),
                    reference: format!("{text}|{i}"),
                    balances: text.to_string(),
                    amount_minor: -(i as i64) * 1_000_000_007,
                    at_ms: 1_795_400_000_000 + i as i64,
                    ..TransferRow::default()
                };
                batch.push(row, &[(1, -(i as i64)), (2, i as i64)]);
            }
            let committed = LedgerWriter::new(ledger.clone(), "test")
                .commit(&mut batch, 1_795_400_000_000)
                .await
                .expect("commit");
            let mut conn = ledger.pool.acquire().await.expect("conn");
            let rows = ledger
                .batch_transfers(&mut conn, committed.batch_seq)
                .await
                .expect("read back");
            assert_eq!(rows.len(), awkward.len(), "{}", db.name);
            for (i, (row, text)) in rows.iter().zip(&awkward).enumerate() {
                assert_eq!(row.acceptor, *text, "{}", db.name);
                assert_eq!(row.reference, format!("{text}|{i}"), "{}", db.name);
                assert_eq!(row.balances, *text, "{}", db.name);
                assert_eq!(row.amount_minor, -(i as i64) * 1_000_000_007);
                assert_eq!(row.at_ms, 1_795_400_000_000 + i as i64);
            }
            let entries = ledger
                .batch_entries(&mut conn, committed.batch_seq)
                .await
                .expect("entries");
            let amounts: Vec<i64> = entries.iter().map(|e| e.amount_minor).collect();
            let expected: Vec<i64> = (0..awkward.len() as i64).flat_map(|i| [-i, i]).collect();
            assert_eq!(amounts, expected, "{}", db.name);
        });
    }
}

/// Two writers append in turns (the switch's and a command's, as `disburse` beside a
/// running switch): each appends after the other's last batch, never after its own
/// (a writer that remembered its head would fork the chain), so the chain stays one
/// chain; a batch of several statements a table (a tranche: at most 1,000 rows a
/// statement) is written whole.
#[test]
fn writers_in_turn_keep_one_chain_and_a_large_batch_goes_whole() {
    use multiguna::ledger::{verify::verify, Batch, Db, LedgerWriter, TransferRow};
    const AT_MS: i64 = 1_795_400_000_000;
    let batch_of = |transfers: i64, reference: &str| {
        let mut batch = Batch::default();
        for i in 0..transfers {
            let row = TransferRow {
                kind: "test".into(),
                reference: format!("{reference}{i}"),
                amount_minor: i,
                at_ms: AT_MS + i,
                ..TransferRow::default()
            };
            batch.push(row, &[(1, -i), (2, i)]);
        }
        batch
    };
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            let mut switch = LedgerWriter::new(ledger.clone(), "switch");
            let mut command = LedgerWriter::new(ledger.clone(), "cli");
            let first = switch.commit(&mut batch_of(3, "a"), AT_MS).await;
            // Three statements of transfers and six of entries, about 2 MB of text.
            let long = "t".repeat(600);
            let large = command.commit(&mut batch_of(3_000, &long), AT_MS).await;
            let second = switch.commit(&mut batch_of(3, "b"), AT_MS).await;
            let seqs = [first, large, second].map(|c| c.expect("commit").batch_seq);
            assert_eq!(seqs, [1, 2, 3], "{}", db.name);
            let mut conn = ledger.pool.acquire().await.expect("conn");
            let rows = ledger.batch_transfers(&mut conn, 2).await.expect("read");
            assert_eq!(rows.len(), 3_000, "{}", db.name);
            assert!(rows
                .iter()
                .enumerate()
                .all(|(i, r)| r.reference == format!("{long}{i}")));
            let entries = ledger.batch_entries(&mut conn, 2).await.expect("read");
            assert_eq!(entries.len(), 6_000, "{}", db.name);
            drop(conn);
            let report = verify(&ledger).await.expect("the chain is one chain");
            assert_eq!(report.batches, 3, "{}", db.name);
        });
    }
}

/// A projection store that lost its head row (PostgreSQL's unlogged tables after a server
/// crash lose all three; a damaged store may lose only the head) is read as empty and
/// projected again from nothing: no row twice, none missing.
#[test]
fn projections_without_their_head_are_read_as_empty_and_projected_again() {
    use multiguna::ledger::verify::verify;
    let card = "ab".repeat(32);
    for db in backends() {
        runtime().block_on(async {
            let ledger = card_ledger(&db, &card, 2).await;
            let projected = ledger.project_all().await.expect("project");
            assert_eq!(projected.head, 2, "{}", db.name);

            // The rows stay, the head goes: readers take everything from the ledger once.
            db.exec("DELETE FROM projection_head");
            let amounts = card_amounts(&ledger, &card).await;
            assert_eq!(amounts, [12, 11, 10, 2, 1, 0], "{}: newest first", db.name);
            let mut conn = ledger.pool.acquire().await.expect("conn");
            let balances = ledger
                .account_balances(&mut conn, &[1, 2])
                .await
                .expect("balances");
            assert_eq!(balances.get(&2), Some(&36), "{}", db.name);
            drop(conn);

            let projected = ledger.project_step().await.expect("projected again");
            assert_eq!(projected.head, 2, "{}", db.name);
            assert_eq!(db.count("card_history"), 6, "{}: each once", db.name);
            assert_eq!(db.count("account_history"), 12, "{}: each once", db.name);
            verify(&ledger)
                .await
                .expect("the projections match the ledger");
        });
    }
}

/// A projection store of an older layout (an older build's: the card's hash as hex
/// text, no layout recorded) is dropped at start-up and projected again from the ledger;
/// a store of this build's layout is kept as it is.
#[test]
fn a_projection_store_of_an_older_layout_is_dropped_and_projected_again() {
    use multiguna::ledger::verify::verify;
    let card = "cd".repeat(32);
    for db in backends() {
        runtime().block_on(async {
            let ledger = card_ledger(&db, &card, 1).await;
            ledger.project_all().await.expect("project");

            // An older build's store, fully projected: its card rows as hex text.
            let into = if db.is_postgres() { "" } else { "projections." };
            db.exec(&format!(
                "DROP TABLE card_history; DROP TABLE projection_layout; \
                 CREATE TABLE {into}card_history (card_sha TEXT NOT NULL, at_ms BIGINT NOT NULL, \
                     batch_seq BIGINT NOT NULL, idx INTEGER NOT NULL, \
                     PRIMARY KEY (card_sha, at_ms, batch_seq, idx)); \
                 INSERT INTO card_history SELECT card_sha, at_ms, batch_seq, idx FROM transfers;"
            ));
            assert_eq!(db.count("card_history"), 3, "{}", db.name);

            // Start-up lays the store out anew: empty, so every row comes from the ledger.
            ledger.migrate().await.expect("migrate again");
            assert_eq!(
                db.count("card_history"),
                0,
                "{}: the old rows went",
                db.name
            );
            assert_eq!(db.count("account_history"), 0, "{}", db.name);
            assert_eq!(card_amounts(&ledger, &card).await, [2, 1, 0], "{}", db.name);

            let projected = ledger.project_step().await.expect("projected again");
            assert_eq!(projected.head, 1, "{}", db.name);
            assert_eq!(db.count("card_history"), 3, "{}: each once", db.name);
            assert_eq!(card_amounts(&ledger, &card).await, [2, 1, 0], "{}", db.name);

            // This build's own store is kept by the next start.
            ledger.migrate().await.expect("migrate a third time");
            assert_eq!(db.count("card_history"), 3, "{}: kept", db.name);
            assert_eq!(db.count("account_history"), 6, "{}: kept", db.name);
            verify(&ledger)
                .await
                .expect("the projections match the ledger");
        });
    }
}

/// Pipelined commits (src/ledger/pipeline.rs): a batch staged while an earlier one was
/// committing is refused, unwritten, when that earlier one fails, and the failure is
/// reported on the stage; a batch of the next epoch is written.
#[test]
fn a_failed_pipelined_batch_takes_the_rest_of_its_epoch_with_it() {
    use multiguna::ledger::pipeline::{Outcome, Pipeline, Release};
    use multiguna::ledger::{Db, TransferRow};
    let poison_sqlite = "CREATE TRIGGER poison BEFORE INSERT ON transfers \
        WHEN NEW.acceptor = 'poison' BEGIN SELECT RAISE(ABORT, 'injected fault'); END;";
    let poison_postgres = "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
        IF NEW.acceptor = 'poison' THEN RAISE EXCEPTION 'injected fault'; END IF; \
        RETURN NEW; END $$ LANGUAGE plpgsql; \
        CREATE TRIGGER poison BEFORE INSERT ON transfers \
        FOR EACH ROW EXECUTE FUNCTION poison();";
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            sqlx::raw_sql(if db.is_postgres() {
                poison_postgres
            } else {
                poison_sqlite
            })
            .execute(&ledger.pool)
            .await
            .expect("trigger");
            // Each batch waits with its acceptor's name; the writer tells what became
            // of it.
            let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
            let release: Release<String> = Box::new(move |waiting, outcome| {
                let result = match outcome {
                    Outcome::Durable { .. } => Ok(()),
                    Outcome::Failed { err, .. } | Outcome::Refused(err) => Err(err.to_string()),
                };
                for name in waiting.drain(..) {
                    tx.send((name, result.clone())).expect("test listens");
                }
            });
            let pipeline = Pipeline::start(&ledger, "test", release);
            let stage = |acceptor: &str, epoch: u64| {
                let mut staging = pipeline.stage();
                let row = TransferRow {
                    kind: "test".into(),
                    acceptor: acceptor.into(),
                    at_ms: 1_795_400_000_000,
                    ..TransferRow::default()
                };
                staging.batch().push(row, &[(1, -100), (2, 100)]);
                staging.waiting().push(acceptor.to_string());
                staging.mark(epoch, 1);
            };
            stage("poison", 0);
            // Staged once the writer holds the first: decided on its effects.
            while !pipeline.stage().batch().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            stage("after", 0);
            let (name, first) = outcomes.recv().await.expect("answer");
            assert_eq!(name, "poison");
            let err = first.expect_err("the poisoned batch fails");
            assert!(err.contains("injected fault"), "{}: {err}", db.name);
            let (name, second) = outcomes.recv().await.expect("answer");
            assert_eq!(name, "after");
            let err = second.expect_err("refused");
            assert!(err.contains("not written"), "{}: {err}", db.name);
            assert_eq!(pipeline.stage().failed_epoch(), Some(0), "{}", db.name);
            let written = || async {
                let row: (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM transfers WHERE kind = 'test'")
                        .fetch_one(&ledger.pool)
                        .await
                        .expect("count");
                row.0
            };
            assert_eq!(written().await, 0, "{}: nothing of either", db.name);
            // Still epoch 0: refused. The next epoch: written.
            stage("late", 0);
            let (name, stale) = outcomes.recv().await.expect("answer");
            assert!(name == "late" && stale.is_err(), "{}", db.name);
            stage("next", 1);
            let (name, next) = outcomes.recv().await.expect("answer");
            assert_eq!(name, "next");
            next.expect("the next epoch commits");
            assert_eq!(written().await, 1, "{}", db.name);
            drop(pipeline);
            ledger.close().await;
        });
    }
}

/// A writer whose loop ends by a panic (a bug: in a commit or a release) says so on the
/// stage, so the authoriser can answer what is staged and start another instead of
/// leaving those answers waiting for ever.
#[test]
fn a_writer_that_panics_says_it_is_gone() {
    use multiguna::ledger::pipeline::{Pipeline, Release};
    use multiguna::ledger::{Db, TransferRow};
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            let release: Release<u32> = Box::new(|_, _| panic!("injected panic in a release"));
            let pipeline = Pipeline::start(&ledger, "test", release);
            assert!(!pipeline.stage().writer_gone(), "{}", db.name);
            {
                let mut staging = pipeline.stage();
                let row = TransferRow {
                    kind: "test".into(),
                    at_ms: 1_795_400_000_000,
                    ..TransferRow::default()
                };
                staging.batch().push(row, &[(1, -100), (2, 100)]);
                staging.waiting().push(1);
                staging.mark(0, 1);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !pipeline.stage().writer_gone() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: the writer's end was not reported",
                    db.name
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            // The commit was done before the release panicked: it is in the ledger.
            let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM transfers WHERE kind = 'test'")
                .fetch_one(&ledger.pool)
                .await
                .expect("count");
            assert_eq!(row.0, 1, "{}", db.name);
            // Draining does not wait for a writer that is gone.
            tokio::time::timeout(std::time::Duration::from_secs(5), pipeline.drained())
                .await
                .expect("drained returns");
            drop(pipeline);
            ledger.close().await;
        });
    }
}

/// A batch whose legs do not sum to zero is refused by the writer itself, on either
/// backend, and nothing of it is written (the first of the paired assertions; `ledger
/// verify` is the second).
#[test]
fn an_unbalanced_batch_is_refused_and_nothing_is_written() {
    use multiguna::ledger::{Batch, Db, LedgerWriter, TransferRow};
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            let mut batch = Batch::default();
            let row = TransferRow {
                kind: "test".into(),
                at_ms: 1_795_400_000_000,
                ..TransferRow::default()
            };
            batch.push(row, &[(1, -100), (2, 99)]);
            let mut writer = LedgerWriter::new(ledger.clone(), "test");
            let err = writer.commit(&mut batch, 1).await.expect_err("refused");
            assert!(
                err.to_string().contains("does not balance"),
                "{}: {err}",
                db.name
            );
            assert_eq!(
                batch.transfers.len(),
                1,
                "{}: the batch comes back",
                db.name
            );
            let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM transfers WHERE kind = 'test'")
                .fetch_one(&ledger.pool)
                .await
                .expect("count");
            assert_eq!(row.0, 0, "{}", db.name);
            ledger.close().await;
        });
    }
}

/// Start-up's streaming reads of the idempotency window (rusqlite on SQLite, sqlx on
/// either backend): each decision comes with its own legs, none with another's; rows
/// older than the window and rows with no MTI (a tranche's disbursements) are left out;
/// both readers give the same rows; the SQLite reader stops when told to.
#[test]
fn the_window_is_streamed_with_each_decision_s_own_legs() {
    use multiguna::ledger::bulk::{read_any_decisions, read_sqlite_decisions};
    use multiguna::ledger::{Batch, Db, LedgerWriter, TransferRow};
    type Seen = (i64, i32, String, Vec<(i64, i64)>);
    let since_ms = 1_795_400_000_000;
    let row = |mti: &str, stan: &str, amount_minor: i64, at_ms: i64| TransferRow {
        kind: if mti.is_empty() {
            "disbursement"
        } else {
            "purchase"
        }
        .into(),
        mti: mti.into(),
        stan: stan.into(),
        reference: format!("ref-{at_ms}"),
        amount_minor,
        at_ms,
        ..TransferRow::default()
    };
    for db in backends() {
        runtime().block_on(async {
            let ledger = Db::connect(&db.url).await.expect("connect");
            ledger.migrate().await.expect("migrate");
            let mut writer = LedgerWriter::new(ledger.clone(), "test");
            // Before the window: a decision with legs.
            let mut old = Batch::default();
            old.push(row("0200", "000001", 5, since_ms - 1), &[(1, -5), (2, 5)]);
            writer.commit(&mut old, since_ms - 1).await.expect("old");
            // In the window: a disbursement (no MTI), a decline (no legs), a purchase, a
            // disbursement again, and a reversal in a second batch.
            let mut first = Batch::default();
            first.push(row("", "", 100, since_ms), &[(3, -100), (4, 100)]);
            first.push(row("0200", "000002", 7, since_ms + 1), &[]);
            first.push(row("0200", "000003", 9, since_ms + 2), &[(5, -9), (6, 9)]);
            first.push(row("", "", 200, since_ms + 3), &[(3, -200), (7, 200)]);
            let first_seq = writer
                .commit(&mut first, since_ms + 3)
                .await
                .expect("first")
                .batch_seq;
            let mut second = Batch::default();
            second.push(row("0400", "000004", 9, since_ms + 4), &[(6, -9), (5, 9)]);
            let head = writer
                .commit(&mut second, since_ms + 4)
                .await
                .expect("second")
                .batch_seq;
            let expected: Vec<Seen> = vec![
                (first_seq, 1, "000002".to_string(), vec![]),
                (first_seq, 2, "000003".to_string(), vec![(5, -9), (6, 9)]),
                (head, 0, "000004".to_string(), vec![(6, -9), (5, 9)]),
            ];

            let mut conn = ledger.pool.acquire().await.expect("conn");
            let mut seen: Vec<Seen> = Vec::new();
            let mut rows: Vec<TransferRow> = Vec::new();
            read_any_decisions(&mut conn, since_ms, |r, legs| {
                seen.push((r.batch_seq, r.idx, r.stan.clone(), legs.to_vec()));
                rows.push(r.clone());
            })
            .await
            .expect("sqlx stream");
            assert_eq!(seen, expected, "{}", db.name);

            let Some(path) = ledger.sqlite_path() else {
                return;
            };
            let mut streamed: Vec<Seen> = Vec::new();
            let mut streamed_rows: Vec<TransferRow> = Vec::new();
            // Taking each row by swapping in another, as start-up does: the next row is
            // written into the one given back, whatever it held.
            let read_head = read_sqlite_decisions(&path, since_ms, |r, legs| {
                streamed.push((r.batch_seq, r.idx, r.stan.clone(), legs.clone()));
                let mut taken = TransferRow {
                    acceptor: "left over".into(),
                    ..TransferRow::default()
                };
                std::mem::swap(&mut taken, r);
                let mut stale_legs = vec![(99, 99)];
                std::mem::swap(&mut stale_legs, legs);
                streamed_rows.push(taken);
                true
            })
            .expect("rusqlite stream");
            assert_eq!(read_head, head);
            assert_eq!(streamed, expected);
            assert_eq!(streamed_rows, rows, "both readers, field for field");

            let mut visits = 0;
            read_sqlite_decisions(&path, since_ms, |_, _| {
                visits += 1;
                false
            })
            .expect("stopped stream");
            assert_eq!(visits, 1, "the reader stops when told to");
        });
    }
}

/// The ledger's rows are never changed or removed: each ledger table (card events
/// included) refuses an UPDATE and a DELETE (a correction is a new row), and the rows
/// are all still there.
#[test]
fn the_ledger_tables_refuse_update_and_delete() {
    let card = "ef".repeat(32);
    for db in backends() {
        runtime().block_on(async {
            use multiguna::ledger::{Batch, LedgerWriter};
            let ledger = card_ledger(&db, &card, 2).await;
            let mut locked = Batch::default();
            locked.card_events.push((card.clone(), "pin_locked".into()));
            let mut writer = LedgerWriter::new(ledger, "switch");
            writer
                .commit(&mut locked, CARD_AT_MS)
                .await
                .expect("commit");
        });
        let tables = [
            ("ledger_batches", "committed_ms"),
            ("transfers", "at_ms"),
            ("entries", "amount_minor"),
            ("card_events", "at_ms"),
        ];
        for (table, column) in tables {
            let before = db.count(table);
            assert!(before > 0, "{}: {table} has rows", db.name);
            let update = db.try_exec(&format!("UPDATE {table} SET {column} = {column} + 1"));
            let delete = db.try_exec(&format!("DELETE FROM {table}"));
            for (what, refused) in [("UPDATE", update), ("DELETE", delete)] {
                let error = refused.expect_err(&format!("{}: {what} {table} refused", db.name));
                assert!(
                    error.contains("append-only"),
                    "{}: {what} {table}: {error}",
                    db.name
                );
            }
            assert_eq!(db.count(table), before, "{}: {table} unchanged", db.name);
        }
    }
}

/// A SQLite ledger from before its entries were keyed (migration 5: a table WITHOUT
/// ROWID) is rebuilt at its next start: every entry is kept, the chain still verifies,
/// the table refuses changes as before, and new batches go on the same chain.
#[test]
fn an_older_sqlite_ledger_has_its_entries_keyed_at_the_next_start() {
    use multiguna::ledger::verify::verify;
    let card = "0a".repeat(32);
    let db = sqlite_db();
    let ledger = runtime().block_on(card_ledger(&db, &card, 3));
    // The older layout: entries as a rowid table, migration 5 not applied.
    db.exec(
        "CREATE TABLE entries_rowid (batch_seq BIGINT NOT NULL, transfer_idx INTEGER NOT NULL, \
             entry_idx INTEGER NOT NULL, account_id BIGINT NOT NULL, amount_minor BIGINT NOT NULL, \
             PRIMARY KEY (batch_seq, transfer_idx, entry_idx)); \
         INSERT INTO entries_rowid SELECT * FROM entries; \
         DROP TABLE entries; \
         ALTER TABLE entries_rowid RENAME TO entries; \
         DELETE FROM schema_migrations WHERE version = 5;",
    );
    let layout =
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'entries' AND sql LIKE '%WITHOUT ROWID%'";
    assert_eq!(db.scalar(layout), 0, "the older layout");
    let (count, sum) = (
        "SELECT COUNT(*) FROM entries",
        "SELECT SUM(ABS(amount_minor)) FROM entries",
    );
    let (entries_before, sum_before) = (db.scalar(count), db.scalar(sum));
    assert_eq!(entries_before, 18, "3 batches of 3 transfers, 2 legs each");

    let report = runtime().block_on(async {
        ledger.migrate().await.expect("the upgrade");
        verify(&ledger)
            .await
            .expect("the chain verifies after the upgrade")
    });
    assert_eq!(
        (report.batches, report.entries),
        (3, 18),
        "verify read every entry"
    );
    assert_eq!(db.scalar(layout), 1, "keyed");
    assert_eq!(db.scalar(count), entries_before, "every entry kept");
    assert_eq!(db.scalar(sum), sum_before, "every amount kept");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM schema_migrations WHERE version = 5"),
        1
    );
    let refused = db
        .try_exec("DELETE FROM entries")
        .expect_err("still append-only");
    assert!(refused.contains("append-only"), "{refused}");

    // The next writer appends to the same chain, and it still verifies.
    let report = runtime().block_on(async {
        let more = card_ledger(&db, &card, 1).await;
        verify(&more).await.expect("verifies with the new batch")
    });
    assert_eq!((report.batches, report.entries), (4, 24));
    assert_eq!(db.scalar(count), entries_before + 6);
}
