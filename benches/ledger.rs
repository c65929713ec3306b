//! Ledger commit: rows per second by batch size, one durable transaction per batch
//! (SQLite with synchronous=FULL in a temporary file; PostgreSQL too when
//! MULTIGUNA_TEST_DATABASE_URL is set, in a fresh database dropped afterwards).
//!
//! `cargo bench --bench ledger`; the chain's hash alone: `cargo bench --bench ledger --
//! chain_hash`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use multiguna::ledger::chain::{batch_hash, GENESIS_HASH};
use multiguna::ledger::{Batch, Db, LedgerWriter, TransferRow};

fn batch(size: usize) -> Batch {
    let mut batch = Batch::default();
    for i in 0..size {
        let row = TransferRow {
            kind: "purchase".into(),
            mti: "0200".into(),
            rc: "00".into(),
            approval: "123456".into(),
            acquirer: "360002".into(),
            terminal: "BENCH001".into(),
            stan: format!("{i:06}"),
            transmitted: "1123101500".into(),
            rrn: format!("{i:012}"),
            content_sha: "ab".repeat(32),
            card_sha: "cd".repeat(32),
            family_id: "3601000000000001".into(),
            programme_id: "jamsosratu".into(),
            channel: "minimarket".into(),
            purse: "food".into(),
            amount_minor: 100_000,
            business_day: 20261123,
            at_ms: 1_795_400_000_000,
            balances: "9202123400".into(),
            ..TransferRow::default()
        };
        batch.push(row, &[(1, -100_000), (2, 100_000)]);
    }
    batch
}

fn bench_backend(c: &mut Criterion, name: &str, url: &str, rt: &tokio::runtime::Runtime) {
    let db = rt.block_on(async {
        let db = Db::connect(url).await.unwrap();
        db.migrate().await.unwrap();
        db
    });
    let mut writer = LedgerWriter::new(db.clone(), "bench");
    let mut group = c.benchmark_group(format!("ledger_commit_{name}"));
    group.sample_size(20);
    for size in [1usize, 64, 512, 2048] {
        let batch = batch(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &batch, |b, batch| {
            let mut batch = batch.clone();
            b.iter(|| rt.block_on(writer.commit(&mut batch, 0)).unwrap())
        });
    }
    group.finish();
    rt.block_on(db.close());
}

/// The audit chain's hash of a switch-sized batch: the writer thread computes it once
/// a commit (`cargo bench --bench ledger -- chain_hash`).
fn bench_chain(c: &mut Criterion) {
    let batch = batch(128);
    let mut group = c.benchmark_group("chain_hash");
    group.throughput(Throughput::Elements(128));
    group.bench_function("128", |b| {
        b.iter(|| batch_hash(GENESIS_HASH, 7, &batch.transfers, &batch.entries))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_chain(c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench_backend(c, "sqlite", &url, &rt);
    if let Ok(admin_url) = std::env::var("MULTIGUNA_TEST_DATABASE_URL") {
        let name = format!("mg_bench_{}", std::process::id());
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap();
        let run = |sql: String| {
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(&sql).execute(&mut conn).await.unwrap();
            })
        };
        run(format!("CREATE DATABASE {name}"));
        bench_backend(c, "postgres", &format!("{base}/{name}"), &rt);
        run(format!("DROP DATABASE {name} WITH (FORCE)"));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
