//! Card data never leaks, and PIN handling holds against wrong keys and tools.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use multiguna::config::{Config, DEFAULT_TOML};
use multiguna::security::keys::TdesKey;
use multiguna::security::pin::{encrypt_pin_block, Pin};

#[test]
fn a_pin_block_under_another_links_key_is_55_not_a_crash() {
    let db = sqlite_db();
    let cards = db.province(1);
    let switch = Switch::start(&db);
    let card = &cards[0];
    runtime().block_on(async {
        let mut c = switch.client().await;
        // Encrypted under the bus link's key, sent on the ATM link.
        let spec = request(card, ATM, "6011", "310000", 0).with_pin(card, BUS);
        assert_eq!(rc(&send(&mut c, &spec).await), "55");
        // Random bytes as a PIN block.
        let mut spec = request(card, ATM, "6011", "310000", 0);
        spec.pin_block = Some("0123456789ABCDEF".into());
        assert_eq!(rc(&send(&mut c, &spec).await), "55");
        // The switch is fine, and the right PIN still works (two wrong tries so far).
        assert_eq!(
            rc(&send(&mut c, &request(card, ATM, "6011", "310000", 0)).await),
            "00"
        );
    });
}

#[test]
fn pin_tools_make_data_the_switch_accepts() {
    let db = sqlite_db();
    let cards = db.province(1);
    let card = &cards[0];
    let block = db.cli_ok(&[
        "pin",
        "block",
        "--pan",
        &card.pan,
        "--pin",
        &card.pin,
        "--acquirer",
        ATM,
    ]);
    let block = block.trim().to_string();
    assert_eq!(block.len(), 16, "16 hex characters");
    let switch = Switch::start(&db);
    runtime().block_on(async {
        let mut c = switch.client().await;
        let mut spec = request(card, ATM, "6011", "310000", 0);
        spec.pin_block = Some(block.clone());
        assert_eq!(rc(&send(&mut c, &spec).await), "00");
    });
    // The offset printed for the card's PIN is the one the province was imported with.
    let offset = db.cli_ok(&["pin", "offset", "--pan", &card.pan, "--pin", &card.pin]);
    let csv = std::fs::read_to_string(db.path("beneficiaries.csv")).expect("csv");
    let line = csv
        .lines()
        .find(|l| l.contains(&card.pan))
        .expect("card line");
    assert!(
        line.ends_with(&format!(",{}", offset.trim())),
        "{line} vs {offset}"
    );
}

/// Every secret of the test data: whole PANs, their PIN blocks, track 2, keys.
fn secrets(cards: &[multiguna::demo::DemoCard]) -> Vec<String> {
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).expect("config");
    let mut out = vec![
        config.security.pin_verification_key.clone(),
        config.admin.token.clone(),
    ];
    for a in &config.acquirers {
        out.push(a.zone_pin_key.clone());
        let zpk = TdesKey::from_hex(&a.zone_pin_key).expect("zpk");
        for card in cards {
            let block = encrypt_pin_block(&card.pan, &Pin::new(&card.pin).expect("pin"), &zpk)
                .expect("block");
            out.push(hex::encode_upper(block));
        }
    }
    for card in cards {
        out.push(card.pan.clone());
        out.push(format!("{}=2912", card.pan));
    }
    out
}

#[test]
fn trace_logs_of_every_message_type_hold_no_pan_pin_block_track_or_key() {
    let db = sqlite_db();
    let cards = db.province(2);
    let log_path = db.path("switch.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(BIN)
        .arg("serve")
        .envs(db.env())
        .env("MULTIGUNA_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let addr = loop {
        let n = stdout.read(&mut buf).expect("read");
        assert!(n > 0, "switch exited");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("multiguna: listener iso on "))
        {
            break line
                .trim_start_matches("multiguna: listener iso on ")
                .trim()
                .parse::<std::net::SocketAddr>()
                .expect("addr");
        }
    };
    let card = &cards[0];
    runtime().block_on(async {
        let mut c = multiguna::client::IsoClient::connect(addr, multiguna::config::Framing::Len2)
            .await
            .expect("connect");
        let w = request(card, ATM, "6011", "010000", 100_000);
        for spec in [
            request(card, ATM, "6011", "310000", 0),
            w.clone(),
            request(card, SHOP, "5411", "000000", 5_000),
            request(card, ATM, "6011", "310000", 0).with_pin_digits(card, "000000", ATM),
        ] {
            send(&mut c, &spec).await;
        }
        let mut hold = request(card, SHOP, "5411", "000000", 5_000);
        hold.mti = "0100".into();
        send(&mut c, &hold).await;
        let mut completion = request(card, SHOP, "5411", "000000", 5_000);
        completion.mti = "0220".into();
        completion.original = Some(f90("0100", &hold));
        send(&mut c, &completion).await;
        let mut advice = request(card, BUS, "4111", "000000", 3_500);
        advice.mti = "0220".into();
        advice.pin_block = None;
        send(&mut c, &advice).await;
        let mut reversal = w.clone();
        reversal.mti = "0400".into();
        reversal.original = Some(f90("0200", &w));
        send(&mut c, &reversal).await;
        let mut track = request(card, SHOP, "5411", "000000", 1_000);
        track.pan = None;
        let mut message = track.build();
        message
            .set_str(35, &format!("{}=2912101", card.pan))
            .expect("track 2");
        c.send(&message).await.expect("send");
        c.receive().await.expect("answer");
        let mut bad = request(card, SHOP, "5411", "000000", 1_000).build();
        bad.set_str(48, "SVC").expect("F48");
        c.send(&bad).await.expect("send");
        c.receive().await.expect("answer");
    });
    db.cli_ok(&["card", "block", &cards[1].pan]);
    let cli = db.cli(&["card", "lost", "6034569999999999"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut text = std::fs::read_to_string(&log_path).expect("log");
    text.push_str(&String::from_utf8_lossy(&cli.stderr));
    assert!(
        text.lines().count() > 50,
        "trace logging ran ({} lines)",
        text.lines().count()
    );
    for secret in secrets(&cards) {
        assert!(
            !text.contains(&secret),
            "a secret of the test data appears in the logs: {}...",
            &secret[..6]
        );
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "a secret (lower case) appears in the logs"
        );
    }
    assert!(
        !text.contains("6034569999999999"),
        "an unknown PAN from the command line is masked too"
    );
}

#[test]
fn json_logs_by_config_carry_a_span_per_request_with_the_masked_pan_only() {
    let db = sqlite_db();
    let cards = db.province(1);
    let log_path = db.path("json.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(BIN)
        .arg("serve")
        .envs(db.env())
        .env("MULTIGUNA__LOG__FORMAT", "json")
        .env("MULTIGUNA_LOG", "info,multiguna::net=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let addr = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).expect("read") > 0,
            "switch exited"
        );
        if let Some(rest) = line.strip_prefix("multiguna: listener iso on ") {
            break rest.trim().parse::<std::net::SocketAddr>().expect("addr");
        }
    };
    runtime().block_on(async {
        let mut c = multiguna::client::IsoClient::connect(addr, multiguna::config::Framing::Len2)
            .await
            .expect("connect");
        let a = send(&mut c, &request(&cards[0], ATM, "6011", "310000", 0)).await;
        assert_eq!(rc(&a), "00");
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).expect("log");
    let masked = format!("{}******{}", &cards[0].pan[..6], &cards[0].pan[12..]);
    let answered = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .find(|v| v["fields"]["message"] == "answered")
        .expect("an 'answered' event");
    assert_eq!(answered["span"]["pan"], masked.as_str(), "{answered}");
    assert_eq!(answered["fields"]["rc"], "00");
    assert!(answered["span"]["stan"].is_string() && answered["span"]["terminal"].is_string());
    assert_eq!(answered["span"]["channel"], "atm");
    assert!(!text.contains(&cards[0].pan), "no whole PAN");
}
