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
