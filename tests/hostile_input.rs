//! What a hostile or broken peer can send: bad length headers, garbage frames, broken
//! fields, random bytes, and many requests at once on one connection (wire.md,
//! "Framing" and "Messages").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use multiguna::client::{Answer, IsoClient, TxnSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

fn mti(answer: &Answer) -> String {
    answer
        .message()
        .map(|m| m.mti().as_str().to_string())
        .unwrap_or_default()
}

fn stan_of(spec: &TxnSpec) -> String {
    format!("{:06}", spec.stan % 1_000_000)
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

/// Reads until the switch closes the connection; panics if it stays open for 5 s.
async fn closed_by_switch(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 512];
    loop {
        match timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: the switch kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Receives answers until the one to `spec` (same F11 and F2); others (answers to
/// earlier frames) are skipped. Panics after 20 s.
async fn answer_for(c: &mut IsoClient, spec: &TxnSpec) -> Answer {
    let stan = stan_of(spec);
    let wait = async {
        loop {
            let answer = c.receive().await.expect("connection still open");
            if answer.field(11) == Some(stan.clone()) && answer.field(2) == spec.pan {
                return answer;
            }
        }
    };
    timeout(Duration::from_secs(20), wait)
        .await
        .expect("answer within 20 s")
}

/// One bad length header on a fresh connection: that connection is closed, while a
/// connection opened before it and one opened after it both keep working.
fn bad_header_closes_only_its_connection(header: [u8; 2], what: &str) {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut before = switch.client().await;
            assert_eq!(balance(&mut before, &cards[0], "91").await, 750_000);
            let mut bad = TcpStream::connect(switch.addr).await.expect("connect");
            bad.write_all(&header).await.expect("write header");
            // Some body bytes too, as a peer that means it would send.
            let _ = bad.write_all(&[b'0'; 64]).await;
            closed_by_switch(&mut bad, &format!("{}: {what}", db.name)).await;
            assert_eq!(balance(&mut before, &cards[0], "91").await, 750_000);
            let mut after = switch.client().await;
            assert_eq!(balance(&mut after, &cards[1], "91").await, 750_000);
        });
        drop(switch);
    }
}

#[test]
fn a_length_header_above_max_frame_closes_only_that_connection() {
    // 4097 = max_frame + 1.
    bad_header_closes_only_its_connection(4097u16.to_be_bytes(), "length 4097");
}

#[test]
fn a_length_header_of_65535_closes_only_that_connection() {
    bad_header_closes_only_its_connection([0xFF, 0xFF], "length 65535");
}

#[test]
fn a_zero_length_header_closes_only_that_connection() {
    bad_header_closes_only_its_connection([0, 0], "length 0");
}

#[test]
fn a_garbage_frame_without_mti_or_stan_is_dropped_and_the_connection_stays_open() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            for garbage in [
                b"hello, switch".to_vec(),
                b"0200ZZZZZZZZZZZZZZZZ".to_vec(),
                b"0200".to_vec(),
                vec![0u8; 40],
                vec![0xFF; 3],
            ] {
                c.send_raw(garbage).await.expect("send garbage");
                // The next answer on this connection is the valid request's: the garbage
                // got none, and the connection is still open.
                let spec = request(&cards[0], ATM, "6011", "310000", 0);
                c.send(&spec.build()).await.expect("send");
                let a = timeout(Duration::from_secs(10), c.receive())
                    .await
                    .expect("answer in time")
                    .expect("connection open");
                assert_eq!(a.field(11), Some(stan_of(&spec)), "{}", db.name);
                assert_eq!(rc(&a), "00", "{}", db.name);
            }
        });
        drop(switch);
    }
}

#[test]
fn a_bad_field_after_f11_is_answered_30_with_the_stan_echoed() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let entries = db.scalar("SELECT COUNT(*) FROM entries");
            // F18 (MCC, n4) with a letter in it. (F49 would not do: the codec reads it
            // as an3, as pyiso8583 and jPOS do, and then it is a currency: 13.)
            let spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            let mut bytes = spec.build().to_bytes();
            // F18 then F32 (LL 06, 360001): fields 19-31 are absent.
            let f18_at = find(&bytes, b"601106360001").expect("F18 and F32");
            bytes[f18_at + 1] = b'X';
            c.send_raw(bytes).await.expect("send");
            let a = timeout(Duration::from_secs(10), c.receive())
                .await
                .expect("answer in time")
                .expect("answer");
            assert_eq!(mti(&a), "0210", "{}", db.name);
            assert_eq!(rc(&a), "30", "{}: bad F18", db.name);
            assert_eq!(a.field(11), Some(stan_of(&spec)), "{}: F11 echoed", db.name);
            // An LLVAR F32 whose length prefix is not digits.
            let spec = request(&cards[0], ATM, "6011", "010000", 50_000);
            let mut bytes = spec.build().to_bytes();
            let f32_at = find(&bytes, b"601106360001").expect("F18 and F32") + 4;
            bytes[f32_at] = b'A';
            c.send_raw(bytes).await.expect("send");
            let a = timeout(Duration::from_secs(10), c.receive())
                .await
                .expect("answer in time")
                .expect("answer");
            assert_eq!(rc(&a), "30", "{}: bad F32 length", db.name);
            assert_eq!(a.field(11), Some(stan_of(&spec)), "{}: F11 echoed", db.name);
            assert_eq!(
                db.scalar("SELECT COUNT(*) FROM entries"),
                entries,
                "{}: nothing posted",
                db.name
            );
            assert_eq!(balance(&mut c, &cards[1], "91").await, 750_000);
        });
        drop(switch);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn two_hundred_random_frames_never_crash_the_switch() {
    for db in backends() {
        let cards = db.province(2);
        let mut switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let mut rng = StdRng::seed_from_u64(8583);
            let templates: Vec<Vec<u8>> = vec![
                request(&cards[0], ATM, "6011", "310000", 0)
                    .build()
                    .to_bytes(),
                request(&cards[1], SHOP, "5411", "000000", 10_000)
                    .build()
                    .to_bytes(),
                {
                    let mut s = request(&cards[2], HEALTH_EDU, "8011", "000000", 100_000);
                    s.acceptor = Some("KLINIK-SERANG-0".into());
                    s.private = Some("SVC=CONSULT".into());
                    s.build().to_bytes()
                },
            ];
            for i in 0..200 {
                let frame: Vec<u8> = if i % 2 == 0 {
                    // Pure noise.
                    let len = rng.gen_range(1..=600);
                    (0..len).map(|_| rng.gen()).collect()
                } else {
                    // A real message with a few bytes changed, cut short, or extended.
                    let mut f = templates[rng.gen_range(0..templates.len())].clone();
                    for _ in 0..rng.gen_range(1..=4) {
                        let at = rng.gen_range(0..f.len());
                        f[at] = if rng.gen_bool(0.5) {
                            rng.gen_range(b'0'..=b'9')
                        } else {
                            rng.gen()
                        };
                    }
                    match rng.gen_range(0..4) {
                        0 => f.truncate(rng.gen_range(1..=f.len())),
                        1 => f.extend((0..rng.gen_range(1..50)).map(|_| rng.gen::<u8>())),
                        _ => {}
                    }
                    f
                };
                c.send_raw(frame).await.expect("send frame");
            }
            // The same connection is still open and answers a valid request.
            // A STAN far from the templates' (small) ones, so no mutation can forge it.
            let spec = TxnSpec {
                stan: 987_654,
                ..request(&cards[3], ATM, "6011", "310000", 0)
            }
            .with_pin(&cards[3], ATM);
            c.send(&spec.build()).await.expect("send");
            let a = answer_for(&mut c, &spec).await;
            assert_eq!(rc(&a), "00", "{}: after the noise", db.name);
            // A fresh connection too.
            let mut fresh = switch.client().await;
            let a = send(&mut fresh, &request(&cards[3], ATM, "6011", "310000", 0)).await;
            assert_eq!(rc(&a), "00", "{}: fresh connection", db.name);
        });
        assert!(
            switch.child.try_wait().expect("try_wait").is_none(),
            "{}: the switch exited",
            db.name
        );
        drop(switch);
        verify_passes(&db);
    }
}

#[test]
fn sixty_four_pipelined_requests_all_get_their_answers() {
    for db in backends() {
        let cards = db.province(2);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            // Even: Rp 1,000 purchases by family 1's two cards (food first).
            // Odd: balance inquiries by family 2's cards.
            let specs: Vec<TxnSpec> = (0..64)
                .map(|i| {
                    if i % 2 == 0 {
                        request(&cards[(i / 2) % 2], SHOP, "5411", "000000", 1_000)
                    } else {
                        request(&cards[2 + (i / 2) % 2], ATM, "6011", "310000", 0)
                    }
                })
                .collect();
            let mut bytes = Vec::new();
            for spec in &specs {
                let body = spec.build().to_bytes();
                bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
                bytes.extend_from_slice(&body);
            }
            // All 64 in one write, before reading anything.
            let mut stream = TcpStream::connect(switch.addr).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
            let read_all = async {
                let mut buf = Vec::new();
                while answers.len() < 64 {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed after {} answers", answers.len());
                    buf.extend_from_slice(&chunk[..n]);
                    while buf.len() >= 2 {
                        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                        if buf.len() < 2 + len {
                            break;
                        }
                        let frame: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                        let answer = Answer {
                            bytes: frame.into(),
                        };
                        let stan = answer.field(11).expect("F11");
                        assert!(
                            answers.insert(stan.clone(), answer).is_none(),
                            "two answers for F11 {stan}"
                        );
                    }
                }
            };
            timeout(Duration::from_secs(30), read_all)
                .await
                .expect("64 answers within 30 s");
            let sent: BTreeSet<String> = specs.iter().map(stan_of).collect();
            let got: BTreeSet<String> = answers.keys().cloned().collect();
            assert_eq!(got, sent, "{}: one answer per request", db.name);
            for spec in &specs {
                let a = &answers[&stan_of(spec)];
                assert_eq!(mti(a), "0210", "{}", db.name);
                assert_eq!(rc(a), "00", "{}: F11 {}", db.name, stan_of(spec));
                assert_eq!(a.field(2), spec.pan, "{}: F2 matches F11", db.name);
                assert_eq!(a.field(3).as_deref(), Some(spec.processing.as_str()));
                assert_eq!(
                    a.field(41).as_deref().map(str::trim),
                    Some(spec.terminal.as_str())
                );
            }
            // Each purchase posted exactly once.
            assert_eq!(balance(&mut c, &cards[0], "92").await, 300_000 - 32 * 1_000);
            assert_eq!(balance(&mut c, &cards[2], "92").await, 300_000);
        });
        drop(switch);
        verify_passes(&db);
    }
}

/// A balance inquiry padded with private fields (parsed and ignored) to `size` bytes.
fn inquiry_of_size(card: &multiguna::demo::DemoCard, size: usize) -> (TxnSpec, Vec<u8>) {
    let spec = request(card, ATM, "6011", "310000", 0);
    let mut message = spec.build();
    for n in [60, 61, 62] {
        message.set_str(n, &"A".repeat(999)).expect("filler");
    }
    let rest = size - message.to_bytes().len() - 3;
    message.set_str(63, &"B".repeat(rest)).expect("filler");
    let bytes = message.to_bytes();
    assert_eq!(bytes.len(), size);
    (spec, bytes)
}

#[test]
fn a_frame_of_exactly_max_frame_is_answered_and_one_byte_more_closes_the_connection() {
    for db in backends() {
        let cards = db.province(1);
        let switch = Switch::start(&db);
        runtime().block_on(async {
            let mut c = switch.client().await;
            let (spec, bytes) = inquiry_of_size(&cards[0], 4096);
            c.send_raw(bytes).await.expect("send");
            let a = timeout(Duration::from_secs(10), c.receive())
                .await
                .expect("answer in time")
                .expect("a 4096-byte frame is within max_frame");
            assert_eq!(a.field(11), Some(stan_of(&spec)), "{}", db.name);
            assert_eq!(rc(&a), "00", "{}: 4096 bytes", db.name);
            let (_, bytes) = inquiry_of_size(&cards[0], 4097);
            let mut raw = TcpStream::connect(switch.addr).await.expect("connect");
            raw.write_all(&4097u16.to_be_bytes()).await.expect("header");
            let _ = raw.write_all(&bytes).await;
            closed_by_switch(&mut raw, &format!("{}: 4097 bytes", db.name)).await;
            // The first connection is untouched.
            assert_eq!(balance(&mut c, &cards[1], "91").await, 750_000);
        });
        drop(switch);
    }
}
