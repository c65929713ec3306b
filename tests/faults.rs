//! A ledger that fails commits at chosen points (a trigger in the real database, armed
//! and disarmed from outside): no 00 without its rows, the state is rebuilt, and the
//! switch goes on serving.

mod common;

use common::*;

const SQLITE_FAULT: &str = "CREATE TABLE fault (armed INTEGER);
CREATE TRIGGER fault_on_commit BEFORE INSERT ON ledger_batches
WHEN (SELECT COUNT(*) FROM fault) > 0
BEGIN SELECT RAISE(ABORT, 'injected fault'); END;";

const POSTGRES_FAULT: &str = "CREATE TABLE fault (armed INTEGER);
CREATE FUNCTION fault_on_commit() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fault) THEN RAISE EXCEPTION 'injected fault'; END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_on_commit BEFORE INSERT ON ledger_batches
    FOR EACH ROW EXECUTE FUNCTION fault_on_commit();";

#[test]
fn failed_commits_answer_91_post_nothing_and_service_resumes() {
    for db in backends() {
        let cards = db.province(1);
        db.exec(if db.is_postgres() {
            POSTGRES_FAULT
        } else {
            SQLITE_FAULT
        });
        let switch = Switch::start(&db);
        let card = &cards[0];
        runtime().block_on(async {
            let mut c = switch.client().await;
            assert_eq!(
                rc(&send(&mut c, &request(card, ATM, "6011", "010000", 100_000)).await),
                "00"
            );
        });
        let before = db.scalar("SELECT COUNT(*) FROM entries");
        db.exec("INSERT INTO fault (armed) VALUES (1)");
        let failed = runtime().block_on(async {
            let mut c = switch.client().await;
            let w = request(card, ATM, "6011", "010000", 100_000);
            let a = send(&mut c, &w).await;
            assert_eq!(rc(&a), "91", "{}: a failed commit answers 91", db.name);
            assert_eq!(a.field(38), None, "{}: no approval code on 91", db.name);
            w
        });
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM entries"),
            before,
            "{}: nothing posted",
            db.name
        );
        db.exec("DELETE FROM fault");
        runtime().block_on(async {
            let mut c = switch.client().await;
            // The state was rebuilt from the ledger: the failed withdrawal left no trace.
            let mut answer = String::new();
            for _ in 0..50 {
                let a = send(&mut c, &request(card, ATM, "6011", "310000", 0)).await;
                answer = rc(&a);
                if answer == "00" {
                    assert_eq!(
                        a.field(54).and_then(|f| parse_f54(&f, "91")),
                        Some(650_000),
                        "{}",
                        db.name
                    );
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(answer, "00", "{}: service resumed", db.name);
            // A retry of the failed request is decided afresh, and posts.
            let a = send(&mut c, &failed).await;
            assert_eq!(rc(&a), "00", "{}: retry after the fault", db.name);
            assert_eq!(balance(&mut c, card, "91").await, 550_000);
        });
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}

#[test]
fn a_full_queue_answers_91_at_once_and_posts_only_what_it_approved() {
    let db = sqlite_db();
    let cards = db.province(4);
    let switch = Switch::start_with(&db, &[("MULTIGUNA__AUTHORISER__QUEUE_DEPTH_MAX", "1")]);
    let codes = runtime().block_on(async {
        let mut c = switch.client().await;
        let total = 200;
        for i in 0..total {
            let spec = request(&cards[i % cards.len()], SHOP, "5411", "000000", 1_000);
            c.send(&spec.build()).await.expect("send");
        }
        let mut codes = Vec::new();
        for _ in 0..total {
            codes.push(rc(&c.receive().await.expect("every request is answered")));
        }
        codes
    });
    let approved = codes.iter().filter(|c| *c == "00").count() as i64;
    let overloaded = codes.iter().filter(|c| *c == "91").count();
    assert!(
        overloaded > 0,
        "a queue of one overflows under 200 pipelined requests"
    );
    assert!(approved > 0, "and still approves what it takes");
    assert_eq!(approved + overloaded as i64, 200, "nothing else: {codes:?}");
    let posted = db.scalar("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase' AND rc = '00'");
    assert_eq!(posted, approved, "a 91 posts nothing");
}

/// While one batch commits the next is decided and queued (src/ledger/pipeline.rs). A
/// failed commit under concurrent traffic: every 00 has its row, no 91 has one (the
/// batches queued behind the failed one are refused unwritten), and service resumes.
#[test]
fn a_failed_commit_under_concurrent_traffic_posts_every_00_and_no_91() {
    const POISON_MINOR: i64 = 777_700;
    for db in backends() {
        let cards = db.province(4);
        db.exec(&if db.is_postgres() {
            format!(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.amount_minor = {POISON_MINOR} THEN RAISE EXCEPTION 'injected fault'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER poison BEFORE INSERT ON transfers \
                 FOR EACH ROW EXECUTE FUNCTION poison();"
            )
        } else {
            format!(
                "CREATE TRIGGER poison BEFORE INSERT ON transfers \
                 WHEN NEW.amount_minor = {POISON_MINOR} \
                 BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
            )
        });
        let switch = Switch::start(&db);
        let answers: Vec<(u32, String, bool)> = runtime().block_on(async {
            let mut tasks = Vec::new();
            for (n, card) in cards.iter().enumerate() {
                let mut c = switch.client().await;
                let card = card.clone();
                tasks.push(tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for i in 0..25 {
                        let poisoned = n == 3 && i == 10;
                        let amount = if poisoned { 7_777 } else { 1_000 };
                        let purchase = request(&card, SHOP, "5411", "000000", amount);
                        let a = send(&mut c, &purchase).await;
                        answers.push((purchase.stan, rc(&a), poisoned));
                    }
                    answers
                }));
            }
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("client task"));
            }
            all
        });
        let list = |want: &str| -> String {
            let stans: Vec<String> = answers
                .iter()
                .filter(|(_, rc, _)| rc == want)
                .map(|(stan, _, _)| format!("'{stan:06}'"))
                .collect();
            if stans.is_empty() {
                "''".into()
            } else {
                stans.join(", ")
            }
        };
        let poisoned = answers.iter().find(|(_, _, p)| *p).expect("sent");
        assert_eq!(
            poisoned.1, "91",
            "{}: the failed batch is answered 91",
            db.name
        );
        let approved = answers.iter().filter(|(_, rc, _)| rc == "00").count() as i64;
        for (_, rc, _) in &answers {
            assert!(rc == "00" || rc == "91", "{}: unexpected {rc}", db.name);
        }
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM transfers WHERE rc = '00' AND acquirer = '{SHOP}' AND stan IN ({})",
                list("00")
            )),
            approved,
            "{}: every 00 has its row",
            db.name
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM transfers WHERE acquirer = '{SHOP}' AND stan IN ({})",
                list("91")
            )),
            0,
            "{}: no 91 has one",
            db.name
        );
        db.exec(if db.is_postgres() {
            "DROP TRIGGER poison ON transfers; DROP FUNCTION poison();"
        } else {
            "DROP TRIGGER poison;"
        });
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut answer = String::new();
            for _ in 0..50 {
                answer =
                    rc(&send(&mut c, &request(&cards[0], SHOP, "5411", "000000", 1_000)).await);
                if answer == "00" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(answer, "00", "{}: service resumed", db.name);
        });
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}
