//! The admin port over real HTTP against the real switch: health, metrics, the JSON
//! API with its token, the deny list, and no whole PAN in any answer (every answer
//! goes through `Admin::request`, which checks the province's PANs).

mod admin_http;
mod common;

use admin_http::*;
use common::*;
use multiguna::demo::DemoCard;
use sha2::{Digest, Sha256};

fn admin(switch: &Switch, cards: &[DemoCard]) -> Admin {
    let mut pans: Vec<String> = cards.iter().map(|c| c.pan.clone()).collect();
    pans.push(UNKNOWN_PAN.to_string());
    Admin {
        addr: switch.admin,
        pans,
    }
}

/// Well-formed, never imported.
const UNKNOWN_PAN: &str = "6034569999999999";

fn sha_hex(pan: &str) -> String {
    hex::encode(Sha256::digest(pan.as_bytes()))
}

fn masked(pan: &str) -> String {
    format!(
        "{}{}{}",
        &pan[..6],
        "*".repeat(pan.len() - 10),
        &pan[pan.len() - 4..]
    )
}

/// The answer code of one ATM withdrawal of Rp 50,000 on a fresh connection.
fn withdraw_rc(switch: &Switch, card: &DemoCard) -> String {
    runtime().block_on(async {
        let mut c = switch.client().await;
        rc(&send(&mut c, &request(card, ATM, "6011", "010000", 50_000)).await)
    })
}

/// An ATM withdrawal of Rp 100,000 and a minimarket purchase of Rp 25,000, both approved.
fn withdraw_and_buy(switch: &Switch, card: &DemoCard, db_name: &str) {
    runtime().block_on(async {
        let mut c = switch.client().await;
        let a = send(&mut c, &request(card, ATM, "6011", "010000", 100_000)).await;
        assert_eq!(rc(&a), "00", "{db_name}");
        let a = send(&mut c, &request(card, SHOP, "5411", "000000", 25_000)).await;
        assert_eq!(rc(&a), "00", "{db_name}");
    });
}

#[test]
fn api_routes_refuse_a_missing_or_wrong_token_with_401_and_change_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let card = &cards[0];
        let csv = format!(
            "batch_ref,family_id,purse,amount\nAPI-T9,{},cash,1000\n",
            card.family_id
        );
        let routes = [
            ("GET", format!("/api/v1/families/{}", card.family_id), None),
            (
                "GET",
                format!("/api/v1/cards/{}/transactions", card.pan),
                None,
            ),
            (
                "POST",
                format!("/api/v1/cards/{}/status", card.pan),
                Some(r#"{"status":"blocked"}"#.to_string()),
            ),
            ("POST", "/api/v1/disbursements".to_string(), Some(csv)),
            ("GET", "/api/v1/denylist?since=0".to_string(), None),
        ];
        let events = db.scalar("SELECT COUNT(*) FROM card_events");
        let transfers = db.scalar("SELECT COUNT(*) FROM transfers");
        for (method, path, body) in &routes {
            for token in [None, Some("wrong-token")] {
                let r = admin.request(method, path, token, body.as_deref());
                assert_eq!(r.status, 401, "{}: {method} {path} {token:?}", db.name);
                assert!(r.json()["error"].is_string(), "{}: {}", db.name, r.body);
                assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            }
        }
        assert_eq!(db.scalar("SELECT COUNT(*) FROM card_events"), events);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM transfers"), transfers);
        // The refused block did nothing: the card still approves.
        assert_eq!(withdraw_rc(&switch, card), "00", "{}", db.name);
    }
}

#[test]
fn healthz_is_200_and_metrics_count_the_traffic_by_channel_mti_and_rc() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let health = admin.get("/healthz");
        assert_eq!(health.status, 200, "{}: {}", db.name, health.body);
        assert_eq!(health.json()["status"], "ok");
        let card = &cards[0];
        runtime().block_on(async {
            let mut c = switch.client().await;
            for _ in 0..3 {
                let a = send(&mut c, &request(card, ATM, "6011", "010000", 50_000)).await;
                assert_eq!(rc(&a), "00", "{}", db.name);
            }
            // Not a multiple of Rp 50,000 at an ATM: 13.
            let a = send(&mut c, &request(card, ATM, "6011", "010000", 12_345)).await;
            assert_eq!(rc(&a), "13", "{}", db.name);
            let mut ride = request(card, BUS, "4111", "000000", 3_500);
            ride.pin_block = None;
            assert_eq!(rc(&send(&mut c, &ride).await), "00", "{}", db.name);
        });
        send_a_dropped_message_and_a_rejected_frame(&switch);
        let count = |labels: &[&str]| {
            let text = admin.get("/metrics").body;
            metric_sum(&text, "multiguna_requests_total", |l| {
                labels.iter().all(|want| l.contains(want))
            }) as u64
        };
        // Counted when the response is written, a moment after the terminal has it.
        wait_until("ATM approvals counted", || {
            count(&["channel=\"atm\"", "mti=\"0200\"", "rc=\"00\""]) == 3
        });
        assert_eq!(count(&["channel=\"atm\"", "rc=\"13\""]), 1, "{}", db.name);
        assert_eq!(count(&["channel=\"damri\"", "rc=\"00\""]), 1, "{}", db.name);
        let metrics = admin.get("/metrics");
        assert!(metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")));
        for name in [
            "multiguna_requests_total{",
            "multiguna_request_duration_seconds_bucket{channel=\"atm\"",
            "multiguna_ledger_commit_duration_seconds_bucket",
            "multiguna_ledger_batch_size_bucket",
            "multiguna_connections{listener=\"iso\"}",
            "multiguna_frames_rejected_total{reason=\"zero_length\"}",
            "multiguna_messages_dropped_total{reason=\"unparseable\"}",
            "multiguna_authoriser_queue_depth",
            "multiguna_ledger_commit_failures_total 0",
        ] {
            assert!(
                metrics.body.contains(name),
                "{}: /metrics lacks {name}:\n{}",
                db.name,
                metrics.body
            );
        }
    }
}

/// A trigger that fails every ledger commit while `fault` has a row (as tests/faults.rs).
fn install_commit_fault(db: &TestDb) {
    db.exec(if db.is_postgres() {
        "CREATE TABLE fault (armed INTEGER);
         CREATE FUNCTION fault_on_commit() RETURNS trigger AS $$
         BEGIN
             IF EXISTS (SELECT 1 FROM fault) THEN RAISE EXCEPTION 'injected fault'; END IF;
             RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER fault_on_commit BEFORE INSERT ON ledger_batches
             FOR EACH ROW EXECUTE FUNCTION fault_on_commit();"
    } else {
        "CREATE TABLE fault (armed INTEGER);
         CREATE TRIGGER fault_on_commit BEFORE INSERT ON ledger_batches
         WHEN (SELECT COUNT(*) FROM fault) > 0
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
    });
}

#[test]
fn healthz_is_503_after_a_failed_commit_and_200_once_commits_work_again() {
    for db in backends() {
        let cards = db.province(1);
        install_commit_fault(&db);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        assert_eq!(admin.get("/healthz").status, 200, "{}", db.name);
        db.exec("INSERT INTO fault (armed) VALUES (1)");
        assert_eq!(withdraw_rc(&switch, &cards[0]), "91", "{}", db.name);
        let health = admin.get("/healthz");
        assert_eq!(health.status, 503, "{}: {}", db.name, health.body);
        assert!(health.json()["error"].is_string());
        let failures = metric_sum(
            &admin.get("/metrics").body,
            "multiguna_ledger_commit_failures_total",
            |_| true,
        );
        assert!(failures >= 1.0, "{}: failures counted", db.name);
        db.exec("DELETE FROM fault");
        wait_until("a commit works again", || {
            withdraw_rc(&switch, &cards[0]) == "00"
        });
        assert_eq!(admin.get("/healthz").status, 200, "{}", db.name);
    }
}

/// Garbage in a well-framed message is dropped; a zero length header ends the connection.
fn send_a_dropped_message_and_a_rejected_frame(switch: &Switch) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(switch.addr).expect("connect");
    s.write_all(&[0, 2, b'x', b'x', 0, 0]).expect("write");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    // The switch closes the connection after the zero-length frame.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing is answered to either");
}

#[test]
fn family_shows_ledger_and_available_balances_members_and_masked_cards() {
    for db in backends() {
        let cards = db.province(2);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let card = &cards[0];
        runtime().block_on(async {
            let mut c = switch.client().await;
            let a = send(&mut c, &request(card, ATM, "6011", "010000", 100_000)).await;
            assert_eq!(rc(&a), "00", "{}: withdrawal", db.name);
            // A hold reserves food without moving the ledger.
            let mut hold = request(card, SHOP, "5411", "000000", 20_000);
            hold.mti = "0100".into();
            assert_eq!(rc(&send(&mut c, &hold).await), "00", "{}: hold", db.name);
        });
        let r = admin.api_get(&format!("/api/v1/families/{}", card.family_id));
        assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
        let family = r.json();
        assert_eq!(family["family_id"], card.family_id.as_str());
        let purse = |name: &str| {
            family["purses"]
                .as_array()
                .expect("purses")
                .iter()
                .find(|p| p["purse"] == name)
                .cloned()
                .expect("purse")
        };
        assert_eq!(purse("cash")["ledger"], "650000.00", "{}", db.name);
        assert_eq!(purse("cash")["available"], "650000.00", "{}", db.name);
        assert_eq!(purse("food")["ledger"], "300000.00", "{}", db.name);
        assert_eq!(purse("food")["available"], "280000.00", "{}", db.name);
        assert_eq!(purse("transport")["available"], "100000.00");
        assert_eq!(family["members"].as_array().map(Vec::len), Some(2));
        let listed: Vec<&str> = family["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .map(|c| c["pan"].as_str().expect("pan"))
            .collect();
        assert_eq!(listed, vec![masked(&cards[0].pan), masked(&cards[1].pan)]);
        assert_eq!(family["cards"][0]["status"], "active");
        let r = admin.api_get("/api/v1/families/3601999999999999");
        assert_eq!(r.status, 404, "{}: {}", db.name, r.body);
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn card_transactions_are_newest_first_and_unknown_or_malformed_cards_are_refused() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let card = &cards[0];
        withdraw_and_buy(&switch, card, &db.name);
        let r = admin.api_get(&format!("/api/v1/cards/{}/transactions", card.pan));
        assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
        let body = r.json();
        assert_eq!(body["card"], masked(&card.pan));
        let txns = body["transactions"].as_array().expect("transactions");
        assert_eq!(txns.len(), 2, "{}: {}", db.name, r.body);
        assert_eq!(txns[0]["kind"], "purchase");
        assert_eq!(txns[0]["amount"], "25000.00");
        assert_eq!(txns[1]["kind"], "withdrawal");
        assert_eq!(txns[1]["rc"], "00");
        assert_eq!(txns[1]["amount"], "100000.00");
        assert_eq!(txns[1]["channel"], "atm");
        let limited = admin.api_get(&format!("/api/v1/cards/{}/transactions?limit=1", card.pan));
        assert_eq!(
            limited.json()["transactions"].as_array().map(Vec::len),
            Some(1)
        );
        let other = admin.api_get(&format!("/api/v1/cards/{}/transactions", cards[1].pan));
        assert_eq!(
            other.json()["transactions"].as_array().map(Vec::len),
            Some(0)
        );
        let unknown = admin.api_get(&format!("/api/v1/cards/{UNKNOWN_PAN}/transactions"));
        assert_eq!(unknown.status, 404, "{}: {}", db.name, unknown.body);
        assert!(unknown.body.contains(&masked(UNKNOWN_PAN)));
        let malformed = admin.api_get("/api/v1/cards/12ab/transactions");
        assert_eq!(malformed.status, 400, "{}: {}", db.name, malformed.body);
    }
}

#[test]
fn blocking_by_api_declines_the_card_and_the_denylist_adds_then_removes_it() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let (card, sha) = (&cards[0], sha_hex(&cards[0].pan));
        let status =
            |pan: &str, body: &str| admin.api_post(&format!("/api/v1/cards/{pan}/status"), body);
        let denylist = |since: i64| {
            let r = admin.api_get(&format!("/api/v1/denylist?since={since}"));
            assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
            r.json()
        };
        let list = |v: &serde_json::Value, key: &str| -> Vec<String> {
            serde_json::from_value(v[key].clone()).expect("list of sha256")
        };
        let before = denylist(0);
        assert!(!list(&before, "added").contains(&sha));

        let r = status(&card.pan, r#"{"status":"blocked"}"#);
        assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
        assert_eq!(r.json()["card"], masked(&card.pan));
        wait_until("the switch declines the blocked card", || {
            withdraw_rc(&switch, card) == "62"
        });
        let blocked = denylist(0);
        let v1 = blocked["version"].as_i64().expect("version");
        assert!(list(&blocked, "added").contains(&sha), "{}", db.name);
        assert_eq!(blocked["full"], true);
        let same = denylist(v1);
        assert!(list(&same, "added").is_empty() && list(&same, "removed").is_empty());

        let r = status(&card.pan, r#"{"status":"active"}"#);
        assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
        let unblocked = denylist(v1);
        assert!(unblocked["version"].as_i64().expect("version") > v1);
        assert_eq!(
            list(&unblocked, "removed"),
            vec![sha.clone()],
            "{}",
            db.name
        );
        assert!(!list(&unblocked, "added").contains(&sha));
        wait_until("the switch approves the unblocked card", || {
            withdraw_rc(&switch, card) == "00"
        });

        for (body, why) in [
            (r#"{"status":"frozen"}"#, "unknown status"),
            ("not json", "not JSON"),
            ("{}", "no status"),
        ] {
            let r = status(&card.pan, body);
            assert_eq!(r.status, 400, "{}: {why}: {}", db.name, r.body);
            assert!(r.json()["error"].is_string());
        }
        let r = status(UNKNOWN_PAN, r#"{"status":"lost"}"#);
        assert_eq!(r.status, 404, "{}: {}", db.name, r.body);
        assert_eq!(status("123", r#"{"status":"lost"}"#).status, 400);
    }
}

#[test]
fn disbursement_by_api_posts_once_reaches_the_switch_and_names_a_bad_line() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = admin(&switch, &cards);
        let family = &cards[0].family_id;
        let csv = format!(
            "batch_ref,family_id,purse,amount\nAPI-T2,{family},cash,1000\nAPI-T2,{family},food,500.50\n"
        );
        let r = admin.api_post("/api/v1/disbursements", &csv);
        assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
        assert_eq!(r.json()["added"], 2);
        let again = admin.api_post("/api/v1/disbursements", &csv);
        assert_eq!(again.status, 200, "{}: {}", db.name, again.body);
        assert_eq!(again.json()["added"], 0, "{}: loaded twice", db.name);
        assert_eq!(again.json()["unchanged"], 2);
        let transfers = db.scalar("SELECT COUNT(*) FROM transfers");
        let bad = format!(
            "batch_ref,family_id,purse,amount\nAPI-T3,{family},cash,1000\nAPI-T3,{family},jewels,5\n"
        );
        let r = admin.api_post("/api/v1/disbursements", &bad);
        assert_eq!(r.status, 400, "{}: {}", db.name, r.body);
        assert_eq!(r.json()["line"], 3, "{}: {}", db.name, r.body);
        assert!(r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 3")));
        let r = admin.api_post("/api/v1/disbursements", "family,amount\nx,1\n");
        assert_eq!((r.status, r.json()["line"].clone()), (400, 1.into()));
        let r = admin.api_post("/api/v1/disbursements?programme=nope", &csv);
        assert_eq!(r.status, 400, "{}: {}", db.name, r.body);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM transfers"), transfers);
        // The running switch spends the new money.
        wait_until("the switch sees the disbursement", || {
            runtime().block_on(async {
                let mut c = switch.client().await;
                balance(&mut c, &cards[0], "91").await == 751_000
            })
        });
        let view = admin.api_get(&format!("/api/v1/families/{family}")).json();
        let food = view["purses"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["purse"] == "food"))
            .expect("food");
        assert_eq!(food["ledger"], "300500.50", "{}", db.name);
    }
}

/// The decision journal is bounded by count: past `idempotency_decisions_max` the
/// oldest decisions are forgotten early, counted, and the metrics say how far back the
/// memory reaches; what is still remembered is answered as a retry.
#[test]
fn the_decision_journal_stays_within_its_count_bound_and_says_so_in_metrics() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start_with(
            &db,
            &[("MULTIGUNA__SWITCH__IDEMPOTENCY_DECISIONS_MAX", "4")],
        );
        let admin = admin(&switch, &cards);
        let (last, first_answer, retry_answer) = runtime().block_on(async {
            let mut c = switch.client().await;
            let mut last = None;
            for _ in 0..6 {
                // Balance inquiries: decisions remembered like any other, posting nothing.
                let spec = request(&cards[0], ATM, "6011", "310000", 0);
                let answer = send(&mut c, &spec).await;
                assert_eq!(rc(&answer), "00", "{}", db.name);
                last = Some((spec, answer));
            }
            let (spec, first) = last.expect("six sent");
            let retry = send(&mut c, &spec).await;
            (spec, first, retry)
        });
        let _ = last;
        assert_eq!(
            (
                retry_answer.field(38),
                retry_answer.field(39),
                retry_answer.field(54)
            ),
            (
                first_answer.field(38),
                first_answer.field(39),
                first_answer.field(54)
            ),
            "{}: a remembered decision is answered as a retry",
            db.name
        );
        let decided = db.scalar("SELECT COUNT(*) FROM transfers WHERE mti = '0200'");
        assert_eq!(decided, 6, "{}: the retry wrote nothing", db.name);
        wait_until("the journal metrics", || {
            let body = admin.get("/metrics").body;
            metric_sum(&body, "multiguna_idempotency_decisions", |_| true) == 4.0
                && metric_sum(&body, "multiguna_idempotency_evicted_total", |_| true) == 2.0
        });
        let body = admin.get("/metrics").body;
        let horizon_s = metric_sum(&body, "multiguna_idempotency_horizon_seconds", |_| true);
        assert!(
            (0.0..60.0).contains(&horizon_s),
            "{}: the oldest remembered decision is seconds old: {horizon_s}",
            db.name
        );
    }
}

/// Card history and family balances are read from the projections up to their head and
/// from the ledger after it (src/ledger/projection.rs): the same answers whichever holds
/// a row, and a projection that went wrong is found by `ledger verify` and rebuilt.
#[test]
fn history_and_balances_are_the_same_from_the_projections_and_the_ledger_tail() {
    // The projector runs at start-up, then not for an hour.
    let no_steps = [("MULTIGUNA__SWITCH__PROJECTION_INTERVAL_MS", "3600000")];
    for db in backends() {
        let cards = db.province(1);
        let card = &cards[0];
        let head = || db.scalar("SELECT batch_seq FROM projection_head");
        let ledger_head = || db.scalar("SELECT MAX(batch_seq) FROM ledger_batches");
        let history = |admin: &Admin, limit: u32| -> Vec<(String, String)> {
            let r = admin.api_get(&format!(
                "/api/v1/cards/{}/transactions?limit={limit}",
                card.pan
            ));
            assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
            r.json()["transactions"]
                .as_array()
                .expect("transactions")
                .iter()
                .map(|t| (t["kind"].to_string(), t["amount"].to_string()))
                .collect()
        };
        let balances = |admin: &Admin| -> Vec<String> {
            let r = admin.api_get(&format!("/api/v1/families/{}", card.family_id));
            assert_eq!(r.status, 200, "{}: {}", db.name, r.body);
            ["cash", "food", "transport"]
                .iter()
                .map(|name| {
                    let purses = r.json()["purses"].clone();
                    let purse = purses
                        .as_array()
                        .expect("purses")
                        .iter()
                        .find(|p| p["purse"] == *name)
                        .cloned()
                        .expect("purse");
                    purse["ledger"].as_str().expect("ledger").to_string()
                })
                .collect()
        };
        let pair = |kind: &str, amount: &str| (format!("\"{kind}\""), format!("\"{amount}\""));
        // The disbursement's import projected its batch.
        assert_eq!(head(), ledger_head(), "{}", db.name);

        let switch = Switch::start_with(&db, &no_steps);
        let admin = admin(&switch, &cards);
        withdraw_and_buy(&switch, card, &db.name);
        assert!(
            head() < ledger_head(),
            "{}: the two are in the tail",
            db.name
        );
        let two = vec![
            pair("purchase", "25000.00"),
            pair("withdrawal", "100000.00"),
        ];
        assert_eq!(history(&admin, 10), two, "{}: from the tail", db.name);
        let spent = vec!["650000.00", "275000.00", "100000.00"];
        assert_eq!(balances(&admin), spent, "{}: from the tail", db.name);
        assert_eq!(switch.terminate().code(), Some(0));

        // Start-up projects what is there; a ride after it is in the tail.
        let switch = Switch::start_with(&db, &no_steps);
        let admin = self::admin(&switch, &cards);
        assert_eq!(head(), ledger_head(), "{}: projected at start-up", db.name);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut ride = request(card, BUS, "4111", "000000", 3_500);
            ride.pin_block = None;
            assert_eq!(rc(&send(&mut c, &ride).await), "00", "{}", db.name);
        });
        let three = vec![
            pair("purchase", "3500.00"),
            pair("purchase", "25000.00"),
            pair("withdrawal", "100000.00"),
        ];
        assert_eq!(
            history(&admin, 10),
            three,
            "{}: tail and projection",
            db.name
        );
        assert_eq!(history(&admin, 2), three[..2], "{}: limited", db.name);
        let after_ride = vec!["650000.00", "275000.00", "96500.00"];
        assert_eq!(balances(&admin), after_ride, "{}", db.name);
        assert_eq!(switch.terminate().code(), Some(0));

        // A projection that lost its rows and claims more than the ledger has.
        let projected = head();
        db.exec("DELETE FROM card_history; UPDATE projection_head SET batch_seq = 1000000");
        let out = db.cli(&["ledger", "verify"]);
        assert!(
            !out.status.success(),
            "{}: verify passed a wrong projection",
            db.name
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("projections"), "{}: {err}", db.name);
        let switch = Switch::start_with(&db, &no_steps);
        let admin = self::admin(&switch, &cards);
        assert_eq!(history(&admin, 10), three, "{}: rebuilt", db.name);
        assert_eq!(balances(&admin), after_ride, "{}: rebuilt", db.name);
        assert_eq!(head(), ledger_head(), "{}", db.name);
        assert!(head() >= projected, "{}", db.name);
        let verified = db.cli_ok(&["ledger", "verify"]);
        let want = format!("projections match the ledger up to batch {}", ledger_head());
        assert!(verified.contains(&want), "{}: {verified}", db.name);

        // A store emptied under a running switch (its tables cleared, a restore without
        // them): the readers take every row from the ledger; the next start projects it.
        db.exec(
            "DELETE FROM card_history; DELETE FROM account_history; DELETE FROM projection_head",
        );
        assert_eq!(history(&admin, 10), three, "{}: emptied", db.name);
        assert_eq!(balances(&admin), after_ride, "{}: emptied", db.name);

        // Started again, the switch projects the store before it serves. SQLite's
        // projections are a file of their own: deleted too, they come back.
        assert_eq!(switch.terminate().code(), Some(0));
        if !db.is_postgres() {
            let ledger = db.path("multiguna.db");
            for suffix in ["-projections", "-projections-wal", "-projections-shm"] {
                let mut path = ledger.clone().into_os_string();
                path.push(suffix);
                let removed = std::fs::remove_file(&path);
                if suffix == "-projections" {
                    removed.expect("the projections file exists beside the ledger");
                }
            }
        }
        let switch = Switch::start_with(&db, &no_steps);
        let admin = self::admin(&switch, &cards);
        assert_eq!(history(&admin, 10), three, "{}: rebuilt", db.name);
        assert_eq!(balances(&admin), after_ride, "{}: rebuilt", db.name);
        assert_eq!(head(), ledger_head(), "{}", db.name);
        if db.is_postgres() {
            // (SQLite's attached file is not this handle's to count.)
            let card_rows = db.scalar("SELECT COUNT(*) FROM card_history");
            assert_eq!(card_rows, 3, "{}: each card transfer once", db.name);
        }
        assert_eq!(switch.terminate().code(), Some(0));
    }
}
