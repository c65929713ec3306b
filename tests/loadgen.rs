//! `multiguna loadgen` against the real switch: every request answered and checked, the
//! approvals it counts are in the ledger, and it refuses targets off this machine.

mod common;

use std::process::Command;

use common::*;

const FAMILIES: u32 = 50;

fn loadgen(switch: &Switch, db: &TestDb, extra: &[&str]) -> serde_json::Value {
    let to = switch.addr.to_string();
    let families = FAMILIES.to_string();
    let mut args = vec![
        "loadgen",
        "--to",
        &to,
        "--province",
        &families,
        "--seed",
        "42",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = db.cli_ok(&args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn closed_loop_answers_every_request_and_the_ledger_holds_the_approvals() {
    for db in backends() {
        // The harness's province is write_province with seed 42: the cards loadgen
        // regenerates from `--province 50 --seed 42`.
        db.province(FAMILIES);
        let switch = Switch::start(&db);
        let report = loadgen(
            &switch,
            &db,
            &["--requests", "500", "--connections", "2", "--depth", "8"],
        );
        let n = |key: &str| {
            report[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} in {report}"))
        };
        assert_eq!(n("sent"), 500, "{}: {report}", db.name);
        assert_eq!(n("answered"), 500, "{}: {report}", db.name);
        assert_eq!(n("errors"), 0, "{}: {report}", db.name);
        let approved = report["response_codes"]["00"].as_u64().unwrap_or(0);
        assert!(approved > 0, "{}: no 00 at all: {report}", db.name);
        // Each approved purchase or withdrawal is a transfer with rc 00 in the ledger.
        let channels = report["by_channel"].as_object().expect("by_channel");
        let debits: u64 = channels
            .iter()
            .filter(|(channel, _)| channel.as_str() != "inquiry")
            .map(|(_, codes)| codes["00"].as_u64().unwrap_or(0))
            .sum();
        assert!(debits > 0, "{}: no approved debit: {report}", db.name);
        let in_ledger = db.scalar(
            "SELECT COUNT(*) FROM transfers WHERE rc = '00' AND kind IN ('purchase', 'withdrawal')",
        );
        assert_eq!(in_ledger as u64, debits, "{}: {report}", db.name);
        assert!(
            db.scalar("SELECT COUNT(*) FROM transfers WHERE rc = '00'") as u64 >= approved,
            "{}",
            db.name
        );
        let verify = db.cli(&["ledger", "verify"]);
        assert!(verify.status.success(), "{}: ledger verify failed", db.name);
    }
}

#[test]
fn open_loop_keeps_its_rate_and_counts_latency_from_the_schedule() {
    let db = sqlite_db();
    db.province(FAMILIES);
    let switch = Switch::start(&db);
    let report = loadgen(
        &switch,
        &db,
        &[
            "--requests",
            "100",
            "--rate",
            "200",
            "--connections",
            "2",
            "--depth",
            "4",
        ],
    );
    assert_eq!(report["mode"], "open", "{report}");
    assert_eq!(report["answered"].as_u64(), Some(100), "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    // 100 requests at 200/s take about half a second, however fast the switch is.
    let seconds = report["duration_s"].as_f64().expect("duration_s");
    assert!(
        seconds >= 0.45,
        "open loop ran ahead of its schedule: {report}"
    );
}

#[test]
fn refuses_targets_that_are_not_loopback() {
    for to in ["10.0.0.1:1", "192.168.1.10:8583", "[2001:db8::1]:8583"] {
        let out = Command::new(BIN)
            .args(["loadgen", "--to", to, "--requests", "1"])
            .output()
            .expect("run multiguna");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to} was accepted");
        assert_eq!(stderr.trim().lines().count(), 1, "{to}: {stderr}");
        assert!(stderr.contains("not a loopback address"), "{to}: {stderr}");
    }
}

#[test]
fn province_command_writes_the_files_loadgen_reads() {
    let db = sqlite_db();
    let out = db.path("province");
    let dir = out.display().to_string();
    db.cli_ok(&["province", "--families", "3", "--seed", "42", "--out", &dir]);
    for file in ["beneficiaries.csv", "providers.csv", "disbursements.csv"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let beneficiaries = std::fs::read_to_string(out.join("beneficiaries.csv")).expect("read");
    assert_eq!(beneficiaries.lines().count(), 1 + 3 * 2);
    let config = db.config();
    let same = multiguna::demo::write_province(&config, db.dir.path(), 3, 42).expect("province");
    let written = std::fs::read_to_string(db.path("beneficiaries.csv")).expect("read");
    assert_eq!(beneficiaries, written, "same seed, same province");
    assert_eq!(same.len(), 6);
}

#[test]
fn record_writes_every_approval_and_each_is_in_the_ledger_once_with_00() {
    for db in backends() {
        db.province(FAMILIES);
        let switch = Switch::start(&db);
        let record = db.path("approved.csv").display().to_string();
        let report = loadgen(
            &switch,
            &db,
            &[
                "--requests",
                "100",
                "--connections",
                "2",
                "--depth",
                "8",
                "--record",
                &record,
            ],
        );
        let approved = report["response_codes"]["00"].as_u64().unwrap_or(0);
        assert!(approved > 0, "{}: {report}", db.name);
        assert_eq!(
            report["latency_by_code"]["00"]["count"].as_u64(),
            Some(approved),
            "{}: latency per code counts the 00s: {report}",
            db.name
        );
        let text = std::fs::read_to_string(&record).expect("record file");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("acquirer,terminal,stan,transmitted"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len() as u64, approved, "{}: one line per 00", db.name);
        for row in &rows {
            let [acquirer, terminal, stan, transmitted] = row[..] else {
                panic!("{}: not 4 columns: {row:?}", db.name);
            };
            let key = format!(
                "acquirer = '{acquirer}' AND terminal = '{terminal}' AND stan = '{stan}' AND transmitted = '{transmitted}'"
            );
            assert_eq!(
                db.scalar(&format!("SELECT COUNT(*) FROM transfers WHERE {key}")),
                1,
                "{}: {row:?} in the ledger once",
                db.name
            );
            assert_eq!(
                db.scalar(&format!(
                    "SELECT COUNT(*) FROM transfers WHERE {key} AND rc = '00'"
                )),
                1,
                "{}: {row:?} posted as 00",
                db.name
            );
        }
    }
}
