//! Database outages while the switch runs: PostgreSQL cut off by a TCP proxy between the
//! switch and the server (the real server keeps running for every other test), and a
//! SQLite file made unwritable (`chattr +i`). During the outage every request gets 91
//! within a liveness bound, nothing is posted and `/healthz` is 503; once the database
//! is back the switch serves 00 again by itself, `/healthz` is 200 and the ledger
//! verifies. Every change to the outside world is undone by a guard's `Drop`.

mod admin_http;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use multiguna::client::TxnSpec;

/// A request during an outage must be answered 91 within this: a liveness bound (the
/// switch does not hang), not a speed target; the figures are in docs/reliability.md.
const OUTAGE_ANSWER_BOUND: Duration = Duration::from_secs(5);
/// Service must come back by itself within this once the database is back.
const RESUME_BOUND: Duration = Duration::from_secs(10);
/// Requests sent during an outage.
const OUTAGE_REQUESTS: usize = 4;
/// How long the outage lasts before the first request: several sync intervals of the
/// harness's switch (200 ms), so the switch meets the outage on its own too.
const QUIET_OUTAGE: Duration = Duration::from_millis(1_500);

// ---------------------------------------------------------------------------------
// The proxy

/// A TCP proxy on 127.0.0.1:0 in front of `upstream`. `cut` closes every forwarded
/// connection and the listening socket (new connections are refused, as from a
/// stopped server); `restore` listens on the same port again. `hold` is a partition
/// instead: nothing is closed, but no byte gets through and new connections are
/// accepted and never forwarded; `release` ends it.
struct Proxy {
    port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: String,
    stop: AtomicBool,
    held: AtomicBool,
    /// Armed: the next COMMIT to pass gets through, and its answer (with everything
    /// after it on that connection) is lost.
    lose_commit_answer: AtomicBool,
    listener: Mutex<Option<TcpListener>>,
    /// Both ends of every forwarded connection, to cut them.
    streams: Mutex<Vec<TcpStream>>,
    /// Connections accepted while held, never forwarded; closed on release.
    stalled: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            stop: AtomicBool::new(false),
            held: AtomicBool::new(false),
            lose_commit_answer: AtomicBool::new(false),
            listener: Mutex::new(Some(listener)),
            streams: Mutex::new(Vec::new()),
            stalled: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&shared))
        };
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The outage: no listener, and every forwarded connection closed both ways.
    fn cut(&self) {
        self.shared.listener.lock().expect("lock").take();
        for stream in self.shared.streams.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn hold(&self) {
        self.shared.held.store(true, Ordering::Relaxed);
    }

    /// The server gets the next COMMIT and commits; the client never hears so.
    fn lose_next_commit_answer(&self) {
        self.shared
            .lose_commit_answer
            .store(true, Ordering::Relaxed);
    }

    fn release(&self) {
        self.shared.held.store(false, Ordering::Relaxed);
        for stream in self.shared.stalled.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The end of the outage: the same port accepts and forwards again.
    fn restore(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("proxy: rebinding port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("proxy: cannot listen on port {} again: {e}", self.port),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        *self.shared.listener.lock().expect("lock") = Some(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.cut();
        self.release();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(shared: &Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let accepted = match shared.listener.lock().expect("lock").as_ref() {
            Some(listener) => listener.accept(),
            None => Err(ErrorKind::WouldBlock.into()),
        };
        match accepted {
            // A partition: the connection is made, and nothing ever answers on it.
            Ok((client, _)) if shared.held.load(Ordering::Relaxed) => {
                shared.stalled.lock().expect("lock").push(client);
            }
            Ok((client, _)) => forward(shared, client),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => eprintln!("proxy: accept: {e}"),
        }
    }
}

fn forward(shared: &Arc<ProxyShared>, client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    shared.streams.lock().expect("lock").extend([c3, s3]);
    let (up, down) = (Arc::clone(shared), Arc::clone(shared));
    // Set on this connection once a COMMIT whose answer is to be lost went up.
    let deaf = Arc::new(AtomicBool::new(false));
    let (deaf_up, deaf_down) = (Arc::clone(&deaf), deaf);
    std::thread::spawn(move || pump(client, server, &up, Direction::Up(&deaf_up)));
    std::thread::spawn(move || pump(s2, c2, &down, Direction::Down(&deaf_down)));
}

/// Client to server (watching for the COMMIT to lose), or server to client (dropping
/// what comes once it went up).
enum Direction<'a> {
    Up(&'a AtomicBool),
    Down(&'a AtomicBool),
}

/// Copies until either side closes, then closes both; while held, keeps what it read.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &ProxyShared, direction: Direction) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                while shared.held.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                match direction {
                    Direction::Up(deaf)
                        if buf[..n].windows(6).any(|w| w == b"COMMIT")
                            && shared.lose_commit_answer.swap(false, Ordering::Relaxed) =>
                    {
                        deaf.store(true, Ordering::Relaxed);
                    }
                    Direction::Down(deaf) if deaf.load(Ordering::Relaxed) => continue,
                    _ => {}
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------
// SQLite made unwritable

/// `chattr +i` on files; `Drop` takes the flag off again, whatever happens.
struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    fn set(paths: &[PathBuf]) -> Immutable {
        let mut guard = Immutable { paths: Vec::new() };
        for path in paths {
            assert!(chattr("+i", path), "chattr +i {}", path.display());
            guard.paths.push(path.clone());
        }
        guard
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.paths {
            if !chattr("-i", path) {
                eprintln!("could not undo chattr +i on {}", path.display());
            }
        }
    }
}

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this machine lets the test set the immutable flag (root, or
/// CAP_LINUX_IMMUTABLE, on a file system that has it): tried on a file of its own.
fn immutable_flag_works(dir: &Path) -> bool {
    let probe = dir.join("chattr-probe");
    if std::fs::write(&probe, b"x").is_err() {
        return false;
    }
    let works = chattr("+i", &probe) && {
        let refused = std::fs::OpenOptions::new()
            .append(true)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"y"))
            .is_err();
        chattr("-i", &probe);
        refused
    };
    let _ = std::fs::remove_file(&probe);
    works
}

// ---------------------------------------------------------------------------------
// Steps shared by both outages

fn purchase(cards: &[multiguna::demo::DemoCard], i: usize) -> TxnSpec {
    let mut spec = request(&cards[i % cards.len()], SHOP, "5411", "000000", 1_000);
    spec.terminal = "OUTAGE01".into();
    spec
}

/// One request on a fresh connection; its code and how long it took. A hang past
/// `bound` fails the test.
fn timed(switch: &Switch, spec: &TxnSpec, bound: Duration) -> (String, Duration) {
    let started = Instant::now();
    let code = runtime().block_on(async {
        let mut c = switch.client().await;
        match tokio::time::timeout(bound, c.request(&spec.build())).await {
            Ok(Ok(answer)) => rc(&answer),
            Ok(Err(e)) => panic!("no answer: {e}"),
            Err(_) => panic!("no answer within {bound:?}: the switch hangs"),
        }
    });
    (code, started.elapsed())
}

fn healthz(switch: &Switch) -> u16 {
    admin_http::http(switch.admin, "GET", "/healthz", None, None).status
}

fn transfers(db: &TestDb) -> i64 {
    db.scalar("SELECT COUNT(*) FROM transfers")
}

fn posted_rows_of(db: &TestDb, spec: &TxnSpec) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM transfers WHERE acquirer = '{}' AND terminal = '{}' AND stan = '{:06}' AND transmitted = '{}'",
        spec.acquirer, spec.terminal, spec.stan, spec.transmitted
    ))
}

/// During the outage: every request 91 within the bound, /healthz 503. Returns the
/// requests sent, to check later that none was posted.
fn during_outage(name: &str, switch: &Switch, cards: &[multiguna::demo::DemoCard]) -> Vec<TxnSpec> {
    std::thread::sleep(QUIET_OUTAGE);
    let mut sent = Vec::new();
    for i in 0..OUTAGE_REQUESTS {
        let spec = purchase(cards, i);
        let (code, took) = timed(switch, &spec, OUTAGE_ANSWER_BOUND);
        eprintln!("{name}: outage request {i}: {code} in {took:?}");
        assert_eq!(code, "91", "{name}: a request during the outage");
        sent.push(spec);
    }
    let status = healthz(switch);
    assert_eq!(status, 503, "{name}: /healthz during the outage");
    sent
}

/// After the outage: 00 again within the bound without a restart, /healthz 200.
fn after_outage(name: &str, switch: &Switch, cards: &[multiguna::demo::DemoCard]) {
    let back = Instant::now();
    let mut i = 100;
    loop {
        let (code, _) = timed(switch, &purchase(cards, i), OUTAGE_ANSWER_BOUND);
        if code == "00" {
            break;
        }
        assert_eq!(code, "91", "{name}: only 91 while recovering");
        assert!(
            back.elapsed() < RESUME_BOUND,
            "{name}: no 00 within {RESUME_BOUND:?} of the database coming back"
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{name}: 00 again {:?} after the database came back",
        back.elapsed()
    );
    wait_until("/healthz 200 after the outage", || healthz(switch) == 200);
}

/// After the outage: service back by itself, none of the outage's 91s posted, a clean
/// stop, and a ledger that verifies.
fn recovered(
    name: &str,
    db: &TestDb,
    switch: Switch,
    cards: &[multiguna::demo::DemoCard],
    refused: &[TxnSpec],
) {
    after_outage(name, &switch, cards);
    for spec in refused {
        assert_eq!(
            posted_rows_of(db, spec),
            0,
            "{name}: a 91 of the outage was posted"
        );
    }
    assert_eq!(
        switch.terminate().code(),
        Some(0),
        "{name}: clean stop after the outage"
    );
    db.cli_ok(&["ledger", "verify"]);
}

/// A switch whose PostgreSQL connections all go through a proxy (kept alive with it).
fn switch_behind_proxy(db: &TestDb) -> (Proxy, Switch) {
    let proxy = Proxy::start(&db.server_addr().expect("PostgreSQL host:port"));
    let via_proxy = db.url_via(&proxy.addr());
    let switch = Switch::start_with(db, &[("MULTIGUNA__DATABASE__URL", via_proxy.as_str())]);
    (proxy, switch)
}

fn first_approval(name: &str, switch: &Switch, cards: &[multiguna::demo::DemoCard]) {
    let (code, _) = timed(switch, &purchase(cards, 50), OUTAGE_ANSWER_BOUND);
    assert_eq!(code, "00", "{name}: before the outage");
    assert_eq!(healthz(switch), 200, "{name}: /healthz before the outage");
}

// ---------------------------------------------------------------------------------

#[test]
fn postgres_outage_answers_91_posts_nothing_and_service_resumes_by_itself() {
    let Some(db) = backends().into_iter().find(TestDb::is_postgres) else {
        eprintln!("skipped: MULTIGUNA_TEST_DATABASE_URL is not set (no PostgreSQL to cut off)");
        return;
    };
    let cards = db.province(4);
    let (proxy, switch) = switch_behind_proxy(&db);
    first_approval("postgres", &switch, &cards);
    let before = transfers(&db);

    proxy.cut();
    let refused = during_outage("postgres", &switch, &cards);
    // Counted on the real server, not through the proxy.
    assert_eq!(transfers(&db), before, "nothing posted during the outage");

    proxy.restore();
    recovered("postgres", &db, switch, &cards, &refused);
}

#[test]
fn sqlite_file_made_unwritable_answers_91_posts_nothing_and_service_resumes_by_itself() {
    let db = sqlite_db();
    if !immutable_flag_works(db.dir.path()) {
        eprintln!(
            "skipped: chattr +i does not work here (needs root or CAP_LINUX_IMMUTABLE and \
             a file system with the flag); benches/db_outage.sh documents the SQLite outage"
        );
        return;
    }
    let cards = db.province(4);
    let switch = Switch::start(&db);
    first_approval("sqlite", &switch, &cards);
    let file = db.path("multiguna.db");
    let wal = db.path("multiguna.db-wal");
    assert!(
        wal.exists(),
        "WAL mode: the -wal file is there while the switch runs"
    );
    let before = transfers(&db);

    let unwritable = Immutable::set(&[file, wal]);
    let refused = during_outage("sqlite", &switch, &cards);
    assert_eq!(transfers(&db), before, "nothing posted during the outage");

    drop(unwritable);
    recovered("sqlite", &db, switch, &cards, &refused);
}

/// The proxy itself: bytes go through, a cut refuses new connections, a restore
/// accepts them again on the same port.
#[test]
fn the_proxy_forwards_cuts_and_restores() {
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo_addr: SocketAddr = echo.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(&echo_addr.to_string());
    let roundtrip = |stream: &mut TcpStream| {
        stream.write_all(b"ping").ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let mut open = TcpStream::connect(proxy.addr()).expect("connect");
    open.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(roundtrip(&mut open), Some(*b"ping"));
    proxy.cut();
    assert_eq!(roundtrip(&mut open), None, "a cut closes open connections");
    assert!(
        TcpStream::connect(proxy.addr()).is_err(),
        "a cut refuses new connections"
    );
    proxy.restore();
    let mut again = TcpStream::connect(proxy.addr()).expect("connect after restore");
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(roundtrip(&mut again), Some(*b"ping"));
}

/// A partition that holds packets (no RST, no refusal): the PostgreSQL writer's bound on
/// connect and commit turns it into 91s instead of requests with no answer at all.
#[test]

fn postgres_partition_that_holds_packets_answers_91() {
    let Some(db) = backends().into_iter().find(TestDb::is_postgres) else {
        eprintln!("skipped: MULTIGUNA_TEST_DATABASE_URL is not set");
        return;
    };
    let cards = db.province(4);
    let (proxy, switch) = switch_behind_proxy(&db);
    first_approval("postgres partition", &switch, &cards);
    let before = transfers(&db);
    proxy.hold();
    let refused = during_outage("postgres partition", &switch, &cards);
    assert_eq!(
        transfers(&db),
        before,
        "nothing posted during the partition"
    );
    proxy.release();
    recovered("postgres partition", &db, switch, &cards, &refused);
}

/// The server commits a batch and the answer to COMMIT is lost on the way back. A 91
/// would say "nothing was posted" while the rows say 00: the writer fences the old
/// session, reads the batch back, finds it, and answers as decided.
#[test]
fn postgres_commit_whose_answer_is_lost_is_answered_as_decided() {
    let Some(db) = backends().into_iter().find(TestDb::is_postgres) else {
        eprintln!("skipped: MULTIGUNA_TEST_DATABASE_URL is not set");
        return;
    };
    let cards = db.province(2);
    let (proxy, switch) = switch_behind_proxy(&db);
    first_approval("lost commit answer", &switch, &cards);
    // The start-up checkpoint commits on a connection of its own: let it pass first, so
    // the COMMIT whose answer is lost is the writer's.
    wait_until("the start-up checkpoint", || {
        db.scalar("SELECT COUNT(*) FROM checkpoints") >= 1
    });
    proxy.lose_next_commit_answer();
    let spec = purchase(&cards, 1);
    let (code, took) = timed(&switch, &spec, Duration::from_secs(15));
    eprintln!("lost commit answer: {code} in {took:?}");
    assert!(
        !proxy.shared.lose_commit_answer.load(Ordering::Relaxed),
        "a COMMIT went through the proxy and its answer was lost"
    );
    assert_eq!(
        posted_rows_of(&db, &spec),
        1,
        "the server committed the batch"
    );
    assert_eq!(
        code, "00",
        "a committed batch is answered as decided, not 91"
    );
    let (again, _) = timed(&switch, &spec, OUTAGE_ANSWER_BOUND);
    assert_eq!(again, "00", "the retry gets the first answer");
    assert_eq!(posted_rows_of(&db, &spec), 1, "and posts nothing");
    assert_eq!(healthz(&switch), 200);
    let out = db.cli(&["ledger", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sync (what other processes wrote) reads in a task of its own: a read held up by
/// the database, here by a lock on a table it reads, holds up no request, and what it
/// reads is applied once it is free. Before, the authoriser waited up to 2 s for each
/// attempt and gave up, every tick: a disbursement that took longer to read than that
/// (a tranche of millions of entries) was never applied.
#[test]
fn postgres_sync_read_held_by_a_lock_holds_up_no_request_and_is_applied_once_free() {
    let Some(db) = backends().into_iter().find(TestDb::is_postgres) else {
        eprintln!("skipped: MULTIGUNA_TEST_DATABASE_URL is not set");
        return;
    };
    let cards = db.province(1);
    let switch = Switch::start(&db);
    let cash = |switch: &Switch| {
        let started = Instant::now();
        let rupiah = runtime().block_on(async {
            let mut c = switch.client().await;
            tokio::time::timeout(OUTAGE_ANSWER_BOUND, balance(&mut c, &cards[0], "91"))
                .await
                .expect("the switch hangs")
        });
        (rupiah, started.elapsed())
    };
    let (before, _) = cash(&switch);
    // The last table the sync reads before the batches; the command line does not read it.
    let lock = TableLock::take(&db.url, "card_events");
    // Several sync intervals: a sync read is now waiting for the lock.
    std::thread::sleep(QUIET_OUTAGE);
    let family = &cards[0].family_id;
    let file = db.write(
        "held.csv",
        &format!("batch_ref,family_id,purse,amount\nHELD-1,{family},cash,1000\n"),
    );
    db.cli_ok(&["disburse", &file]);
    for _ in 0..10 {
        let (rupiah, took) = cash(&switch);
        assert_eq!(
            rupiah, before,
            "the disbursement was applied while the sync's read was held"
        );
        assert!(
            took < HELD_SYNC_ANSWER_BOUND,
            "an inquiry waited {took:?} behind a held sync read"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(lock);
    wait_until("the held disbursement is applied", || {
        cash(&switch).0 == before + 1_000
    });
    assert_eq!(switch.terminate().code(), Some(0));
    db.cli_ok(&["ledger", "verify"]);
}

/// A liveness bound, far above a quiet answer (milliseconds) and below the 2 s the
/// authoriser used to wait for each sync attempt.
const HELD_SYNC_ANSWER_BOUND: Duration = Duration::from_millis(1_000);

/// An `ACCESS EXCLUSIVE` lock on a table, held by a transaction on a connection of its
/// own until dropped (rolled back).
struct TableLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<JoinHandle<()>>,
}

impl TableLock {
    fn take(url: &str, table: &str) -> TableLock {
        let (url, table) = (url.to_string(), table.to_string());
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            runtime().block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
                sqlx::query("BEGIN")
                    .execute(&mut conn)
                    .await
                    .expect("begin");
                sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                    .execute(&mut conn)
                    .await
                    .expect("lock");
                locked_tx.send(()).expect("locked");
                let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("rollback");
            })
        });
        locked_rx.recv().expect("lock taken");
        TableLock {
            release: Some(release),
            holder: Some(holder),
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}
