//! What remembering decisions costs the single writer: resident memory per decision and
//! the longest single authoriser step while the journal grows (a map that doubles
//! stalls the writer for as long as it copies).
//!
//! `cargo bench --bench journal` (1,000,000 decisions); `DECISIONS=... cargo bench --bench journal`
//!
//! Only `Core::handle` and the edge are used, so the same file measures an older
//! commit in the same run (docs/reliability.md shows how).

mod support;

use support::rss_mib;

use std::sync::Arc;
use std::time::{Duration, Instant};

use multiguna::authoriser::{synthetic, Core};
use multiguna::client::TxnSpec;
use multiguna::config::{Config, DEFAULT_TOML};
use multiguna::domain::time::TimestampMs;
use multiguna::edge::{translate, Inbound};
use multiguna::ledger::Batch;
use multiguna::policy::Policy;

/// Five rides a card at most: under the daily ride limit, so every ride is approved.
const FAMILIES: u32 = 200_000;
/// The writer clears its batch after each commit; the bench does the same.
const BATCH_LEN: usize = 2048;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let decisions: usize = std::env::var("DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).expect("config");
    let policy = Arc::new(Policy::from_config(&config).expect("policy"));
    let (state, pans) = synthetic::state(&policy, FAMILIES, 1, "123456", 1_000_000_000_000);
    let mut core = Core::new(Arc::clone(&policy), state);
    let mut batch = Batch::default();
    let now = TimestampMs::now();
    let before = rss_mib();
    let mut slowest = Duration::ZERO;
    let mut over_1ms = 0u64;
    let mut approved = 0u64;
    let started = Instant::now();
    for i in 0..decisions {
        let pan = &pans[i % pans.len()];
        // Damri rides (transport purse, no PIN), each with its own key and RRN.
        let spec = TxnSpec {
            mti: "0200".into(),
            pan: Some(pan.digits().into()),
            processing: "000000".into(),
            amount: Some(3_500),
            stan: (i % 1_000_000) as u32,
            transmitted: format!("1123{:06}", i / 1_000_000),
            mcc: Some("4111".into()),
            acquirer: "360004".into(),
            rrn: Some(format!("{i:012}")),
            terminal: format!("DAMRI{:03}", i % 997),
            ..TxnSpec::default()
        };
        let Inbound::Request(request, _) = translate(&spec.build().to_bytes()) else {
            panic!("edge refused a bench request");
        };
        let step = Instant::now();
        let response = core.handle(&request, now, &mut batch);
        let took = step.elapsed();
        slowest = slowest.max(took);
        over_1ms += u64::from(took > Duration::from_millis(1));
        approved += u64::from(response.code.is_approved());
        if batch.transfers.len() >= BATCH_LEN {
            batch.clear();
        }
    }
    let elapsed = started.elapsed();
    let after = rss_mib();
    println!(
        "journal: {decisions} decisions ({approved} approved) in {:.1} s; resident memory {before:.0} -> {after:.0} MiB, {:.0} bytes a decision; slowest step {:.1} ms, steps over 1 ms: {over_1ms}",
        elapsed.as_secs_f64(),
        (after - before) * 1_048_576.0 / decisions as f64,
        slowest.as_secs_f64() * 1000.0,
    );
}
