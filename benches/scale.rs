//! Memory of the wallet space at scale: builds the authoriser's in-memory state for N
//! families with 2 cards each (no database) and prints the process's resident memory.
//!
//! `cargo bench --bench scale` (1,000,000 families); `FAMILIES=10000000 cargo bench --bench scale`

mod support;

use support::rss_mib;

use std::sync::Arc;
use std::time::Instant;

use multiguna::authoriser::synthetic;
use multiguna::config::{Config, DEFAULT_TOML};
use multiguna::policy::Policy;

fn main() {
    // `cargo test` runs bench targets only with --benches; this one is for `cargo bench`.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let families: u32 = std::env::var("FAMILIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).expect("config");
    let policy = Arc::new(Policy::from_config(&config).expect("policy"));
    let before = rss_mib();
    let started = Instant::now();
    let (state, pans) = synthetic::state(&policy, families, 2, "123456", 100_000_000);
    let built = started.elapsed();
    drop(pans);
    let after = rss_mib();
    println!(
        "scale: {families} families, {} cards: state built in {:.1} s (PIN offsets and SHA-256 included); resident memory {:.0} MiB (process before: {:.0} MiB)",
        state.cards.len(),
        built.as_secs_f64(),
        after,
        before
    );
}
