//! The file commands on bad input (interfaces.md): a bad row fails the whole file with
//! one line on stderr naming the line (the header is line 1) and changes nothing; the
//! same file twice changes nothing. No switch is running.

mod common;

use common::*;
use multiguna::domain::pan::luhn_check_digit;

const BENEFICIARIES_HEADER: &str = "family_id,member_id,member_name,role,pan,expiry,pin_offset";
const DISBURSEMENTS_HEADER: &str = "batch_ref,family_id,purse,amount";

/// Row counts of what the file commands may change.
fn counts(db: &TestDb) -> Vec<(&'static str, i64)> {
    [
        "families",
        "members",
        "cards",
        "accounts",
        "transfers",
        "entries",
    ]
    .into_iter()
    .map(|t| (t, db.count(t)))
    .collect()
}

fn pan(body: &str) -> String {
    format!("{body}{}", luhn_check_digit(body))
}

/// A beneficiary row of a new family 3698... with a valid Luhn PAN.
fn row(family: u32, member: u32, name: &str, role: &str, pan: &str) -> String {
    format!("3698{family:012},3698{member:012},{name},{role},{pan},2912,123456")
}

/// Runs a command that must fail; asserts a non-zero exit and exactly one line on
/// stderr; returns that line.
fn fails_with_one_line(db: &TestDb, args: &[&str]) -> String {
    let out = db.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "{}: multiguna {args:?} succeeded: {}",
        db.name,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{}: multiguna {args:?}: stderr is not one line: {stderr:?}",
        db.name
    );
    stderr
}

/// The message names line `n` ("line 4", not "line 40").
fn names_line(message: &str, n: u64) -> bool {
    let needle = format!("line {n}");
    message.match_indices(&needle).any(|(at, _)| {
        !message[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
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

/// Imports `rows` (after the header) and expects the failure to name `line`, with
/// nothing changed.
fn bad_beneficiaries(db: &TestDb, name: &str, rows: &[String], line: u64) {
    let before = counts(db);
    let file = db.write(
        name,
        &format!("{BENEFICIARIES_HEADER}\n{}\n", rows.join("\n")),
    );
    let message = fails_with_one_line(db, &["import", "beneficiaries", &file]);
    assert!(
        names_line(&message, line),
        "{}: the error should name line {line}: {message}",
        db.name
    );
    assert_eq!(counts(db), before, "{}: {name} changed something", db.name);
}

fn bad_disbursement(db: &TestDb, name: &str, rows: &[String], line: u64) {
    let before = counts(db);
    let file = db.write(
        name,
        &format!("{DISBURSEMENTS_HEADER}\n{}\n", rows.join("\n")),
    );
    let message = fails_with_one_line(db, &["disburse", &file]);
    assert!(
        names_line(&message, line),
        "{}: the error should name line {line}: {message}",
        db.name
    );
    assert_eq!(counts(db), before, "{}: {name} changed something", db.name);
}

#[test]
fn a_beneficiary_row_with_a_bad_luhn_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        db.province(1);
        let good = pan("603457000000001");
        let mut bad = pan("603457000000002");
        // Change the check digit: no longer Luhn-valid.
        let last = bad.pop().and_then(|c| c.to_digit(10)).expect("digit");
        bad.push(char::from_digit((last + 1) % 10, 10).expect("digit"));
        let rows = [
            row(1, 1, "Ani", "head", &good),
            row(1, 2, "Budi", "spouse", &pan("603457000000003")),
            row(1, 3, "Citra", "child", &bad),
            row(1, 4, "Dedi", "child", &pan("603457000000004")),
        ];
        bad_beneficiaries(&db, "bad-luhn.csv", &rows, 4);
        verify_passes(&db);
    }
}

#[test]
fn a_beneficiary_row_with_a_bad_role_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        db.province(1);
        let rows = [
            row(1, 1, "Ani", "head", &pan("603457000000001")),
            row(1, 2, "Budi", "uncle", &pan("603457000000002")),
            row(1, 3, "Citra", "child", &pan("603457000000003")),
        ];
        bad_beneficiaries(&db, "bad-role.csv", &rows, 3);
        verify_passes(&db);
    }
}

#[test]
fn a_member_repeated_with_different_data_in_one_file_fails_naming_its_line() {
    for db in backends() {
        db.province(1);
        let rows = [
            row(1, 1, "Ani", "head", &pan("603457000000001")),
            row(1, 2, "Budi", "spouse", &pan("603457000000002")),
            row(2, 3, "Citra", "child", &pan("603457000000003")),
            // Member 2 again, with another role and a second card.
            row(1, 2, "Budi", "head", &pan("603457000000004")),
        ];
        bad_beneficiaries(&db, "member-twice.csv", &rows, 5);
        verify_passes(&db);
    }
}

#[test]
fn a_member_that_exists_with_different_data_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        db.province(1);
        let first = [
            row(1, 1, "Ani", "head", &pan("603457000000001")),
            row(1, 2, "Budi", "spouse", &pan("603457000000002")),
        ];
        let file = db.write(
            "first.csv",
            &format!("{BENEFICIARIES_HEADER}\n{}\n", first.join("\n")),
        );
        db.cli_ok(&["import", "beneficiaries", &file]);
        let rows = [
            row(3, 5, "Eka", "head", &pan("603457000000005")),
            // Member 1 exists as Ani; here with another name.
            row(1, 1, "Ana", "head", &pan("603457000000001")),
        ];
        bad_beneficiaries(&db, "member-changed.csv", &rows, 3);
        // A card that exists with another expiry.
        let rows = [
            row(3, 5, "Eka", "head", &pan("603457000000005")),
            row(1, 2, "Budi", "spouse", &pan("603457000000002")).replace(",2912,", ",3012,"),
        ];
        bad_beneficiaries(&db, "card-changed.csv", &rows, 3);
        verify_passes(&db);
    }
}

#[test]
fn importing_the_same_beneficiaries_twice_changes_nothing() {
    for db in backends() {
        db.province(3);
        let before = counts(&db);
        let file = path_str(&db.path("beneficiaries.csv"));
        db.cli_ok(&["import", "beneficiaries", &file]);
        assert_eq!(counts(&db), before, "{}: second import", db.name);
        // A new file, twice.
        let rows = [
            row(1, 1, "Ani", "head", &pan("603457000000001")),
            row(1, 2, "Budi", "spouse", &pan("603457000000002")),
        ];
        let file = db.write(
            "new.csv",
            &format!("{BENEFICIARIES_HEADER}\n{}\n", rows.join("\n")),
        );
        db.cli_ok(&["import", "beneficiaries", &file]);
        let once = counts(&db);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM cards"),
            6 + 2,
            "{}: the new cards",
            db.name
        );
        db.cli_ok(&["import", "beneficiaries", &file]);
        assert_eq!(counts(&db), once, "{}: the new file again", db.name);
        verify_passes(&db);
    }
}

#[test]
fn disbursing_to_an_unknown_family_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        let cards = db.province(2);
        let rows = [
            format!("JMS-T2,{},cash,100000", cards[0].family_id),
            format!("JMS-T2,{},food,50000", cards[2].family_id),
            "JMS-T2,3601999999999999,cash,100000".to_string(),
            format!("JMS-T2,{},health,50000", cards[2].family_id),
        ];
        bad_disbursement(&db, "unknown-family.csv", &rows, 4);
        verify_passes(&db);
    }
}

#[test]
fn disbursing_to_an_unknown_purse_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let family = &cards[0].family_id;
        let rows = [
            format!("JMS-T2,{family},cash,100000"),
            format!("JMS-T2,{family},savings,100000"),
        ];
        bad_disbursement(&db, "unknown-purse.csv", &rows, 3);
        verify_passes(&db);
    }
}

#[test]
fn disbursing_a_negative_amount_fails_naming_its_line_and_changes_nothing() {
    for db in backends() {
        let cards = db.province(1);
        let family = &cards[0].family_id;
        let rows = [
            format!("JMS-T2,{family},cash,100000"),
            format!("JMS-T2,{family},food,50000"),
            format!("JMS-T2,{family},health,-50000"),
        ];
        bad_disbursement(&db, "negative.csv", &rows, 4);
        verify_passes(&db);
    }
}

#[test]
fn a_duplicate_disbursement_line_with_another_amount_fails_naming_its_line() {
    for db in backends() {
        let cards = db.province(1);
        let family = &cards[0].family_id;
        let rows = [
            format!("JMS-T2,{family},cash,100000"),
            format!("JMS-T2,{family},food,50000"),
            format!("JMS-T2,{family},cash,200000"),
        ];
        bad_disbursement(&db, "duplicate.csv", &rows, 4);
        verify_passes(&db);
    }
}

#[test]
fn disbursing_the_same_file_twice_changes_nothing() {
    for db in backends() {
        let cards = db.province(2);
        let before = counts(&db);
        // The province's own file again.
        let file = path_str(&db.path("disbursements.csv"));
        db.cli_ok(&["disburse", &file]);
        assert_eq!(counts(&db), before, "{}: province file again", db.name);
        // A new batch, twice.
        let rows = [
            format!("JMS-T2,{},cash,100000", cards[0].family_id),
            format!("JMS-T2,{},food,50000.50", cards[2].family_id),
        ];
        let file = db.write(
            "t2.csv",
            &format!("{DISBURSEMENTS_HEADER}\n{}\n", rows.join("\n")),
        );
        db.cli_ok(&["disburse", &file]);
        let once = counts(&db);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM transfers") - before[4].1,
            2,
            "{}: two transfers posted",
            db.name
        );
        db.cli_ok(&["disburse", &file]);
        assert_eq!(counts(&db), once, "{}: t2 again", db.name);
        verify_passes(&db);
    }
}

#[test]
fn card_block_on_an_unknown_pan_fails_with_one_line() {
    for db in backends() {
        db.province(1);
        let events = db.scalar("SELECT COUNT(*) FROM card_events");
        let unknown = pan("603457999999999");
        let message = fails_with_one_line(&db, &["card", "block", &unknown]);
        assert!(
            !message.contains(&unknown),
            "{}: the whole PAN in an error: {message}",
            db.name
        );
        fails_with_one_line(&db, &["card", "block", "12ab"]);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM card_events"),
            events,
            "{}: no card event",
            db.name
        );
        verify_passes(&db);
    }
}
