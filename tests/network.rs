//! The network edge: framings, idle timeout, connection limit, graceful SIGTERM.

mod common;

use std::time::Duration;

use common::*;
use multiguna::client::IsoClient;
use multiguna::config::Framing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn len4_ascii_framing_is_served_when_configured() {
    let db = sqlite_db();
    let cards = db.province(1);
    let switch = Switch::start_with(&db, &[("MULTIGUNA__LISTENERS__0__FRAMING", "len4-ascii")]);
    runtime().block_on(async {
        let mut c = IsoClient::connect(switch.addr, Framing::Len4Ascii)
            .await
            .expect("connect");
        let a = send(&mut c, &request(&cards[0], ATM, "6011", "310000", 0)).await;
        assert_eq!(rc(&a), "00");
        // The header is four ASCII digits on the way back too.
        let mut raw = tokio::net::TcpStream::connect(switch.addr)
            .await
            .expect("connect");
        let body = request(&cards[0], ATM, "6011", "310000", 0)
            .build()
            .to_bytes();
        raw.write_all(format!("{:04}", body.len()).as_bytes())
            .await
            .expect("write");
        raw.write_all(&body).await.expect("write");
        let mut header = [0u8; 4];
        raw.read_exact(&mut header).await.expect("read");
        assert!(
            header.iter().all(u8::is_ascii_digit),
            "len4-ascii header: {header:?}"
        );
    });
}

#[test]
fn an_idle_connection_is_closed_and_others_keep_working() {
    let db = sqlite_db();
    let cards = db.province(1);
    let switch = Switch::start_with(&db, &[("MULTIGUNA__LISTENERS__0__IDLE_TIMEOUT_S", "1")]);
    runtime().block_on(async {
        let mut slow = tokio::net::TcpStream::connect(switch.addr)
            .await
            .expect("connect");
        slow.write_all(&[0]).await.expect("one byte of a header");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the idle connection was closed: {read:?}"
        );
        let mut c = switch.client().await;
        assert_eq!(
            rc(&send(&mut c, &request(&cards[0], ATM, "6011", "310000", 0)).await),
            "00"
        );
    });
}

#[test]
fn connections_past_the_limit_are_refused_and_the_rest_served() {
    let db = sqlite_db();
    let cards = db.province(1);
    let switch = Switch::start_with(&db, &[("MULTIGUNA__LISTENERS__0__CONNECTIONS_MAX", "2")]);
    runtime().block_on(async {
        let mut a = switch.client().await;
        let mut b = switch.client().await;
        assert_eq!(
            rc(&send(&mut a, &request(&cards[0], ATM, "6011", "310000", 0)).await),
            "00"
        );
        assert_eq!(
            rc(&send(&mut b, &request(&cards[0], ATM, "6011", "310000", 0)).await),
            "00"
        );
        let mut third = tokio::net::TcpStream::connect(switch.addr)
            .await
            .expect("tcp accept");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "third connection closed: {read:?}"
        );
        assert_eq!(
            rc(&send(&mut a, &request(&cards[0], ATM, "6011", "310000", 0)).await),
            "00"
        );
    });
}

#[test]
fn sigterm_answers_what_is_in_flight_commits_and_exits_0() {
    for db in backends() {
        let cards = db.province(4);
        let switch = Switch::start(&db);
        let addr = switch.addr;
        let (sent, answered) = runtime().block_on(async {
            let mut c = IsoClient::connect(addr, Framing::Len2)
                .await
                .expect("connect");
            let mut stans = Vec::new();
            for i in 0..40 {
                let spec = request(&cards[i % cards.len()], SHOP, "5411", "000000", 1_000);
                stans.push(spec.stan);
                c.send(&spec.build()).await.expect("send");
            }
            let pid = switch.child.id().to_string();
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill");
            let mut answered = 0;
            while let Ok(Ok(answer)) =
                tokio::time::timeout(Duration::from_secs(10), c.receive()).await
            {
                assert_eq!(rc(&answer), "00");
                answered += 1;
                if answered == stans.len() {
                    break;
                }
            }
            (stans.len(), answered)
        });
        let status = switch.terminate();
        assert!(status.success(), "{}: exit status {status:?}", db.name);
        assert_eq!(
            answered, sent,
            "{}: every request in flight was answered",
            db.name
        );
        let posted =
            db.scalar("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase' AND rc = '00'");
        assert_eq!(posted, sent as i64, "{}: and committed", db.name);
    }
}

#[test]
fn clients_that_vanish_with_requests_in_flight_leave_the_ledger_consistent() {
    let db = sqlite_db();
    let cards = db.province(4);
    let switch = Switch::start(&db);
    runtime().block_on(async {
        for round in 0..5 {
            let mut c = switch.client().await;
            for i in 0..50 {
                let spec = request(
                    &cards[(round + i) % cards.len()],
                    SHOP,
                    "5411",
                    "000000",
                    1_000,
                );
                c.send(&spec.build()).await.expect("send");
            }
            drop(c); // gone before any answer is read
        }
        let mut c = switch.client().await;
        assert_eq!(
            rc(&send(&mut c, &request(&cards[0], ATM, "6011", "310000", 0)).await),
            "00"
        );
    });
    drop(switch);
    let posted = db.scalar("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase' AND rc = '00'");
    assert!(posted <= 250, "nothing posted twice: {posted}");
    db.cli_ok(&["ledger", "verify"]);
}

#[test]
fn hundreds_of_idle_connections_do_not_slow_an_active_one() {
    let db = sqlite_db();
    let cards = db.province(1);
    let switch = Switch::start(&db);
    runtime().block_on(async {
        let mut idle = Vec::new();
        for _ in 0..500 {
            idle.push(
                tokio::net::TcpStream::connect(switch.addr)
                    .await
                    .expect("idle connection"),
            );
        }
        let mut c = switch.client().await;
        for _ in 0..20 {
            let answer = tokio::time::timeout(
                // A liveness bound, not a speed figure: speed is for benches/.
                Duration::from_secs(10),
                send(&mut c, &request(&cards[0], ATM, "6011", "310000", 0)),
            )
            .await
            .expect("answered promptly with 500 idle connections open");
            assert_eq!(rc(&answer), "00");
        }
        drop(idle);
    });
}

/// The switch outlives whoever read its start lines: with its standard output closed
/// (a supervisor that stopped reading, `serve | head -2`) it still serves, stops on
/// SIGTERM and exits 0, where `println!` of its closing line used to panic.
#[test]
fn a_closed_stdout_does_not_stop_the_switch() {
    let db = backends().into_iter().next().expect("a backend");
    let cards = db.province(1);
    let mut serve = std::process::Command::new(common::BIN);
    serve.arg("serve").envs(db.env());
    let (mut child, rest) = spawn_and_read_until(serve, "multiguna: listener iso on ");
    let addr: std::net::SocketAddr = rest.trim().parse().expect("address");
    let answer = runtime().block_on(async {
        let mut c = IsoClient::connect(addr, Framing::Len2)
            .await
            .expect("connect");
        c.send(&request(&cards[0], SHOP, "5411", "000000", 1_000).build())
            .await
            .expect("send");
        tokio::time::timeout(Duration::from_secs(10), c.receive())
            .await
            .expect("answered in time")
            .expect("answer")
    });
    assert_eq!(rc(&answer), "00");
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{}: exit status {status:?}", db.name);
}

/// The demo runs until Ctrl-C (or `--seconds`) and reports as it goes: once whoever read
/// its first lines has gone, a report must not stop it (`println!` panicked there).
#[test]
fn a_closed_stdout_does_not_stop_the_demo() {
    let mut demo = std::process::Command::new(common::BIN);
    demo.args(["demo", "--families", "20", "--seconds", "7"]);
    let (mut child, _) = spawn_and_read_until(demo, "multiguna demo: switch listening on ");
    // A progress line comes every 5 s, then the last one.
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
}

/// Starts `command` with its standard output piped, reads it up to the first line that
/// starts with `prefix`, then closes the read end; returns the child and the rest of
/// that line.
fn spawn_and_read_until(
    mut command: std::process::Command,
    prefix: &str,
) -> (std::process::Child, String) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let rest = loop {
        let line = lines.next().expect("a line").expect("read");
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.to_string();
        }
    };
    drop(lines); // the read end closes
    (child, rest)
}
