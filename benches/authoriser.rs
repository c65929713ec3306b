//! The deterministic core, in memory: the policy step and a whole authoriser step
//! (idempotency, checks, PIN, posting, journal), per request.
//!
//! `cargo bench --bench authoriser`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use multiguna::authoriser::{synthetic, Core};
use multiguna::client::TxnSpec;
use multiguna::config::{Config, DEFAULT_TOML};
use multiguna::domain::request::{AccountChoice, Request, TxnType};
use multiguna::domain::time::TimestampMs;
use multiguna::edge::{translate, Inbound};
use multiguna::ledger::Batch;
use multiguna::policy::{self, DailyUse, Policy};
use multiguna::security::keys::TdesKey;
use multiguna::security::pin::{encrypt_pin_block, Pin};

const FAMILIES: u32 = 10_000;

fn requests(
    config: &Config,
    pans: &[multiguna::domain::pan::Pan],
    acquirer: &str,
    mcc: &str,
    pin: bool,
) -> Vec<Request> {
    let zpk = config
        .acquirers
        .iter()
        .find(|a| a.id == acquirer)
        .map(|a| TdesKey::from_hex(&a.zone_pin_key).unwrap())
        .unwrap();
    pans.iter()
        .enumerate()
        .map(|(i, pan)| {
            let spec = TxnSpec {
                mti: "0200".into(),
                pan: Some(pan.digits().into()),
                processing: "000000".into(),
                amount: Some(1_000),
                stan: i as u32,
                transmitted: format!("1123{:06}", i / 1_000_000),
                mcc: Some(mcc.into()),
                acquirer: acquirer.into(),
                rrn: Some(format!("{i:012}")),
                terminal: "BENCH001".into(),
                pin_block: pin.then(|| {
                    hex::encode_upper(
                        encrypt_pin_block(pan.digits(), &Pin::new("123456").unwrap(), &zpk)
                            .unwrap(),
                    )
                }),
                ..TxnSpec::default()
            };
            match translate(&spec.build().to_bytes()) {
                Inbound::Request(r, _) => *r,
                _ => panic!("edge refused a bench request"),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = Config::from_toml_with_env(DEFAULT_TOML, std::iter::empty()).unwrap();
    let policy = Arc::new(Policy::from_config(&config).unwrap());
    let channel = config.programmes[0].channels[1].compile().unwrap();
    c.bench_function("policy_step_minimarket", |b| {
        let available = [1_000_000i64; 5];
        b.iter(|| {
            policy::check_amount(&channel, 100_000).unwrap();
            policy::check_daily(&channel, DailyUse::default(), 100_000).unwrap();
            let order = policy::purse_order(&channel, TxnType::Purchase);
            policy::choose_purse(order, AccountChoice::ChannelDefault, &available, 100_000).unwrap()
        })
    });
    let (state, pans) = synthetic::state(&policy, FAMILIES, 1, "123456", 1_000_000_000);
    let rides = requests(&config, &pans, "360004", "4111", false);
    let purchases = requests(&config, &pans, "360002", "5411", true);
    let mut core = Core::new(Arc::clone(&policy), state);
    let now = TimestampMs(1_795_400_000_000);
    for (name, set) in [
        ("authoriser_step_damri_no_pin", &rides),
        ("authoriser_step_minimarket_with_pin", &purchases),
    ] {
        c.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter_batched_ref(
                Batch::default,
                |batch| {
                    // Fresh keys each time (a new STAN per request): the first decision, not a replay.
                    let mut request = set[i % set.len()].clone();
                    request.key.stan = format!("{:06}", i % 1_000_000);
                    request.key.transmitted = format!("{:010}", i / 1_000_000);
                    i += 1;
                    core.handle(&request, now, batch)
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
