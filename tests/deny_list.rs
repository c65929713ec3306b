//! The validators' deny list follows a family's purse below zero and back.

mod admin_http;
mod common;

use admin_http::Admin;
use common::*;
use sha2::{Digest, Sha256};

#[test]
fn a_forced_advice_below_zero_lists_the_family_and_a_disbursement_clears_it() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        let admin = Admin {
            addr: switch.admin,
            pans: cards.iter().map(|c| c.pan.clone()).collect(),
        };
        let sha = |pan: &str| hex::encode(Sha256::digest(pan.as_bytes()));
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut advice = request(&cards[0], BUS, "4111", "000000", 120_000);
            advice.mti = "0220".into();
            advice.pin_block = None;
            assert_eq!(rc(&send(&mut c, &advice).await), "00");
        });
        let list = admin.api_get("/api/v1/denylist?since=0").json();
        let added: Vec<String> = serde_json::from_value(list["added"].clone()).expect("added");
        assert!(
            added.contains(&sha(&cards[0].pan)) && added.contains(&sha(&cards[1].pan)),
            "{}: {list}",
            db.name
        );
        let version = list["version"].as_i64().expect("version");
        let file = db.write(
            "topup.csv",
            "batch_ref,family_id,purse,amount\nTOPUP-1,3601000000000001,transport,20000\n",
        );
        db.cli_ok(&["disburse", &file]);
        let delta = admin
            .api_get(&format!("/api/v1/denylist?since={version}"))
            .json();
        let removed: Vec<String> =
            serde_json::from_value(delta["removed"].clone()).expect("removed");
        assert!(
            removed.contains(&sha(&cards[0].pan)),
            "{}: {delta}",
            db.name
        );
        assert!(delta["version"].as_i64().expect("version") > version);
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}

/// The same through both ways a disbursement file reads balances: a file of a few
/// families looks up theirs; a file of more than a thousand reads the programme's.
#[test]
fn a_disbursement_clears_the_deny_list_from_a_small_file_and_from_a_tranche() {
    for db in backends() {
        let cards = db.province(1_001);
        let switch = Switch::start(&db);
        let admin = Admin {
            addr: switch.admin,
            pans: Vec::new(),
        };
        let sha = |pan: &str| hex::encode(Sha256::digest(pan.as_bytes()));
        let first = &cards[0];
        let second = cards
            .iter()
            .find(|c| c.family_id != first.family_id)
            .expect("a second family");
        runtime().block_on(async {
            let mut c = switch.client().await;
            for card in [first, second] {
                let mut advice = request(card, BUS, "4111", "000000", 120_000);
                advice.mti = "0220".into();
                advice.pin_block = None;
                assert_eq!(rc(&send(&mut c, &advice).await), "00", "{}", db.name);
            }
        });
        let removed_since = |version: i64| -> (Vec<String>, i64) {
            let delta = admin
                .api_get(&format!("/api/v1/denylist?since={version}"))
                .json();
            (
                serde_json::from_value(delta["removed"].clone()).expect("removed"),
                delta["version"].as_i64().expect("version"),
            )
        };
        let (_, version) = removed_since(0);
        let small = db.write(
            "one-family.csv",
            &format!(
                "batch_ref,family_id,purse,amount\nTOPUP-1,{},transport,20000\n",
                first.family_id
            ),
        );
        db.cli_ok(&["disburse", &small]);
        let (removed, version) = removed_since(version);
        assert!(
            removed.contains(&sha(&first.pan)),
            "{}: small file",
            db.name
        );
        assert!(!removed.contains(&sha(&second.pan)), "{}", db.name);
        let mut families: Vec<&str> = cards.iter().map(|c| c.family_id.as_str()).collect();
        families.dedup();
        assert!(
            families.len() > 1_000,
            "the file must take the tranche's way"
        );
        let mut tranche = String::from("batch_ref,family_id,purse,amount\n");
        for family in families {
            tranche.push_str(&format!("TOPUP-2,{family},transport,20000\n"));
        }
        db.cli_ok(&["disburse", &db.write("tranche.csv", &tranche)]);
        let (removed, _) = removed_since(version);
        assert!(removed.contains(&sha(&second.pan)), "{}: tranche", db.name);
        drop(switch);
        db.cli_ok(&["ledger", "verify"]);
    }
}
