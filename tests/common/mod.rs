//! The test harness: a real database (a fresh SQLite file, and a fresh PostgreSQL
//! database when `MULTIGUNA_TEST_DATABASE_URL` is set), the real `multiguna` binary
//! on a free port, and a terminal speaking ISO 8583 over TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiguna::client::{transmission_time_now, Answer, IsoClient, TxnSpec};
use multiguna::config::{Config, Framing, DEFAULT_TOML};
use multiguna::demo::{write_province, DemoCard};
use multiguna::security::keys::TdesKey;
use multiguna::security::pin::{encrypt_pin_block, Pin};

pub const BIN: &str = env!("CARGO_BIN_EXE_multiguna");

/// Where a test's data lives; dropped databases and folders go with it.
pub struct TestDb {
    pub url: String,
    pub name: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, db_name)) = self.postgres.take() {
            psql(
                &admin_url,
                &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
            );
        }
    }
}

/// The backends this run tests: SQLite always; PostgreSQL when its URL is given. Under
/// `CI=true` a missing PostgreSQL URL is a failure, never a silent skip.
pub fn backends() -> Vec<TestDb> {
    let mut out = vec![sqlite_db()];
    match std::env::var("MULTIGUNA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => out.push(postgres_db(&url)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but MULTIGUNA_TEST_DATABASE_URL is not set: the PostgreSQL suite cannot be skipped")
        }
        _ => {}
    }
    out
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("multiguna.db").display());
    TestDb {
        url,
        name: "sqlite".into(),
        dir,
        postgres: None,
    }
}

fn postgres_db(admin_url: &str) -> TestDb {
    static N: AtomicU32 = AtomicU32::new(0);
    let db_name = format!(
        "mg_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let created = psql(admin_url, &format!("CREATE DATABASE {db_name}"));
    assert!(
        created,
        "cannot create PostgreSQL database {db_name} at {admin_url}"
    );
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    TestDb {
        url: format!("{base}/{db_name}"),
        name: "postgres".into(),
        dir: tempfile::tempdir().expect("tempdir"),
        postgres: Some((admin_url.to_string(), db_name)),
    }
}

/// Runs `f` on a runtime of its own in a thread of its own, so it works from sync code
/// and from inside a test's runtime alike.
fn on_own_runtime<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(f)
        })
        .join()
        .expect("helper thread")
    })
}

fn psql(url: &str, sql: &str) -> bool {
    on_own_runtime(async {
        use sqlx::Connection;
        let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
            return false;
        };
        sqlx::query(sql).execute(&mut conn).await.is_ok()
    })
}

impl TestDb {
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("MULTIGUNA__DATABASE__URL".into(), self.url.clone()),
            ("MULTIGUNA__LISTENERS__0__BIND".into(), "127.0.0.1:0".into()),
            ("MULTIGUNA__ADMIN__BIND".into(), "127.0.0.1:0".into()),
            ("MULTIGUNA__SWITCH__SYNC_INTERVAL_MS".into(), "200".into()),
            ("MULTIGUNA_LOG".into(), "warn".into()),
        ]
    }

    pub fn config(&self) -> Config {
        Config::from_toml_with_env(DEFAULT_TOML, self.env().into_iter()).expect("config")
    }

    /// Runs a CLI command against this database.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env())
            .output()
            .expect("run multiguna")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "multiguna {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A province of `families` families (2 cards each), its providers, and the
    /// demo's disbursement: cash 750,000, food 300,000, health 500,000, education
    /// 400,000, transport 100,000 rupiah a family.
    pub fn province(&self, families: u32) -> Vec<DemoCard> {
        let cards =
            write_province(&self.config(), self.dir.path(), families, 42).expect("province");
        let p = |n: &str| self.path(n).display().to_string();
        self.cli_ok(&["import", "beneficiaries", &p("beneficiaries.csv")]);
        self.cli_ok(&["import", "providers", &p("providers.csv")]);
        self.cli_ok(&["disburse", &p("disbursements.csv")]);
        cards
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).expect("write");
        self.path(name).display().to_string()
    }

    /// One number from the database.
    pub fn scalar(&self, sql: &str) -> i64 {
        on_own_runtime(async {
            let db = multiguna::ledger::Db::connect(&self.url)
                .await
                .expect("connect");
            let row: (i64,) = sqlx::query_as(sql)
                .fetch_one(&db.pool)
                .await
                .expect("query");
            db.close().await;
            row.0
        })
    }
}

/// The real switch, as a child process.
pub struct Switch {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin HTTP port (health, metrics, API, dashboard).
    pub admin: SocketAddr,
}

impl Switch {
    pub fn start(db: &TestDb) -> Switch {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: &TestDb, extra_env: &[(&str, &str)]) -> Switch {
        let mut child = Command::new(BIN)
            .arg("serve")
            .envs(db.env())
            .envs(
                extra_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn multiguna serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            assert!(Instant::now() < deadline, "switch did not start");
            let line = lines
                .next()
                .expect("switch exited before listening")
                .expect("read");
            if let Some(rest) = line.strip_prefix("multiguna: listener iso on ") {
                addr = Some(rest.trim().parse().expect("address"));
            } else if let Some(rest) = line.strip_prefix("multiguna: admin on ") {
                admin = Some(rest.trim().parse().expect("admin address"));
            }
        }
        let (addr, admin) = (addr.expect("listener"), admin.expect("admin"));
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Switch { child, addr, admin }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    pub async fn client(&self) -> IsoClient {
        IsoClient::connect(self.addr, Framing::Len2)
            .await
            .expect("connect")
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static STAN: AtomicU32 = AtomicU32::new(1);

pub fn next_stan() -> u32 {
    STAN.fetch_add(1, Ordering::Relaxed)
}

/// Acquirer ids of the default config.
pub const ATM: &str = "360001";
pub const SHOP: &str = "360002";
pub const HEALTH_EDU: &str = "360003";
pub const BUS: &str = "360004";

/// A 0200 with everything a channel needs; tests change what they test.
pub fn request(
    card: &DemoCard,
    acquirer: &str,
    mcc: &str,
    processing: &str,
    amount: u64,
) -> TxnSpec {
    let stan = next_stan();
    TxnSpec {
        mti: "0200".into(),
        pan: Some(card.pan.clone()),
        processing: processing.into(),
        amount: Some(amount),
        stan,
        transmitted: transmission_time_now(),
        mcc: Some(mcc.into()),
        acquirer: acquirer.into(),
        rrn: Some(format!("{stan:012}")),
        terminal: "TERM0001".into(),
        ..TxnSpec::default()
    }
    .with_pin(card, acquirer)
}

pub trait WithPin {
    fn with_pin(self, card: &DemoCard, acquirer: &str) -> Self;
    fn with_pin_digits(self, card: &DemoCard, pin: &str, acquirer: &str) -> Self;
}

impl WithPin for TxnSpec {
    fn with_pin(self, card: &DemoCard, acquirer: &str) -> Self {
        let pin = card.pin.clone();
        self.with_pin_digits(card, &pin, acquirer)
    }

    fn with_pin_digits(mut self, card: &DemoCard, pin: &str, acquirer: &str) -> Self {
        let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).expect("config");
        let link = config
            .acquirers
            .iter()
            .find(|a| a.id == acquirer)
            .expect("acquirer");
        let zpk = TdesKey::from_hex(&link.zone_pin_key).expect("zpk");
        let block =
            encrypt_pin_block(&card.pan, &Pin::new(pin).expect("pin"), &zpk).expect("block");
        self.pin_block = Some(hex::encode_upper(block));
        self
    }
}

pub async fn send(client: &mut IsoClient, spec: &TxnSpec) -> Answer {
    client.request(&spec.build()).await.expect("answer")
}

pub fn rc(answer: &Answer) -> String {
    answer.response_code().unwrap_or_default()
}

/// Available balance of a purse (F54 code) from a balance inquiry at the ATM, rupiah.
pub async fn balance(client: &mut IsoClient, card: &DemoCard, purse_code: &str) -> i64 {
    let answer = send(client, &request(card, ATM, "6011", "310000", 0)).await;
    assert_eq!(rc(&answer), "00", "balance inquiry declined");
    let f54 = answer.field(54).expect("F54");
    parse_f54(&f54, purse_code).expect("purse in F54")
}

pub fn parse_f54(f54: &str, purse_code: &str) -> Option<i64> {
    f54.as_bytes().chunks(20).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        if entry.get(0..2)? != purse_code {
            return None;
        }
        let amount: i64 = entry.get(8..20)?.parse().ok()?;
        Some(if entry.get(7..8)? == "D" {
            -amount
        } else {
            amount
        })
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl TestDb {
    /// Runs statements against the database (test set-up such as fault injection).
    pub fn exec(&self, sql: &str) {
        self.try_exec(sql).expect("exec");
    }

    /// Runs statements against the database: `Ok`, or the database's refusal as text.
    pub fn try_exec(&self, sql: &str) -> Result<(), String> {
        let url = self.url.clone();
        let sql = sql.to_string();
        on_own_runtime(async move {
            let db = multiguna::ledger::Db::connect(&url).await.expect("connect");
            let done = sqlx::raw_sql(&sql).execute(&db.pool).await;
            db.close().await;
            done.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    /// The rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}"))
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

/// Today's business date in Asia/Jakarta (the default cut-over), `YYYY-MM-DD`.
pub fn business_date_today() -> String {
    let cal = multiguna::domain::time::BusinessCalendar::new(420, "23:59:59").expect("calendar");
    cal.business_date(multiguna::domain::time::TimestampMs::now())
        .format("%Y-%m-%d")
        .to_string()
}

/// F90 naming `original`: MTI, STAN, F7, acquirer zero-padded to 11, forwarding zeros.
pub fn f90(mti: &str, original: &TxnSpec) -> String {
    format!(
        "{mti}{:06}{}{:0>11}{}",
        original.stan % 1_000_000,
        original.transmitted,
        original.acquirer,
        "0".repeat(11)
    )
}

impl TestDb {
    /// `host:port` of this PostgreSQL database's server (`None` for SQLite).
    pub fn server_addr(&self) -> Option<String> {
        self.postgres.as_ref()?;
        let (_, rest) = self.url.split_once("://")?;
        let authority = rest.split('/').next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        Some(if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:5432")
        })
    }

    /// This database's URL reaching its server at `host_port` instead (a proxy in
    /// front of PostgreSQL); a SQLite URL comes back as it is.
    pub fn url_via(&self, host_port: &str) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        if self.postgres.is_none() {
            return self.url.clone();
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!("{scheme}://{}{host_port}/{path}", user.unwrap_or_default())
    }
}
