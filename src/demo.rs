//! `multiguna demo`: a synthetic province in a temporary SQLite database, the real
//! switch on free ports, and a terminal simulator sending traffic from all five
//! channels. It prints what to look at and cards to try by hand.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::cli::say;
use crate::client::IsoClient;
use crate::config::{Config, Framing, DEFAULT_TOML};
use crate::domain::pan::luhn_check_digit;
use crate::security::keys::TdesKey;
use crate::security::pin::{ibm3624_offset, DecimalisationTable, Pin};

/// A card of the synthetic province, with its PIN (demo data only).
#[derive(Clone)]
pub struct DemoCard {
    pub family_id: String,
    pub pan: String,
    pub pin: String,
}

/// Writes beneficiaries, providers and a disbursement for `families` families into
/// `dir`; returns the cards. Deterministic for a seed, so tests can use it too.
pub fn write_province(
    config: &Config,
    dir: &std::path::Path,
    families: u32,
    seed: u64,
) -> anyhow::Result<Vec<DemoCard>> {
    let pvk = TdesKey::from_hex(&config.security.pin_verification_key)?;
    let table = DecimalisationTable::parse(&config.security.decimalisation_table)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut beneficiaries =
        String::from("family_id,member_id,member_name,role,pan,expiry,pin_offset\n");
    let mut disbursements = String::from("batch_ref,family_id,purse,amount\n");
    let mut cards = Vec::new();
    for f in 0..families {
        let family_id = format!("3601{:012}", f + 1);
        for (m, role) in ["head", "spouse"].iter().enumerate() {
            let body = format!("603456{:09}", u64::from(f) * 2 + m as u64);
            let pan = format!("{body}{}", luhn_check_digit(&body));
            let pin = format!("{:06}", rng.gen_range(0..1_000_000));
            let offset = ibm3624_offset(&pan, &Pin::new(&pin)?, &pvk, &table)?;
            let member_id = format!("3601{:012}", u64::from(f) * 2 + m as u64 + 1);
            beneficiaries.push_str(&format!(
                "{family_id},{member_id},Warga {f} {role},{role},{pan},2912,{offset}\n"
            ));
            cards.push(DemoCard {
                family_id: family_id.clone(),
                pan,
                pin,
            });
        }
        for (purse, amount) in [
            ("cash", 750_000),
            ("food", 300_000),
            ("health", 500_000),
            ("education", 400_000),
            ("transport", 100_000),
        ] {
            disbursements.push_str(&format!("DEMO-T1,{family_id},{purse},{amount}\n"));
        }
    }
    std::fs::write(dir.join("beneficiaries.csv"), beneficiaries)?;
    std::fs::write(dir.join("disbursements.csv"), disbursements)?;
    std::fs::write(
        dir.join("providers.csv"),
        "provider_id,name,channel\nKLINIK-SERANG-01,Klinik Pratama Serang,clinic\nSDN-SERANG-01,SD Negeri 1 Serang,school\n",
    )?;
    Ok(cards)
}

pub async fn run(families: u32, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("multiguna.db");
    let env = vec![
        (
            "MULTIGUNA__DATABASE__URL".to_string(),
            format!("sqlite://{}", db_path.display()),
        ),
        (
            "MULTIGUNA__LISTENERS__0__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        // A free port, like the listener's: a demo must start beside anything.
        (
            "MULTIGUNA__ADMIN__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ];
    let config = Config::from_toml_with_env(DEFAULT_TOML, env.into_iter())?;
    say!(
        "multiguna demo: building a province of {families} families in {}",
        dir.path().display()
    );
    let cards = load_province(&config, dir.path(), families).await?;
    let providers = crate::loadgen::cards::providers_in(dir.path())?;

    let shutdown = CancellationToken::new();
    crate::server::cancel_on_signal(shutdown.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = crate::server::run(config.clone(), false, shutdown.clone(), move |bound| {
        let _ = ready_tx.send(bound.listeners.first().map(|(_, a)| (*a, bound.admin)));
    });
    let tour = async {
        let (addr, admin) = ready_rx
            .await?
            .ok_or_else(|| anyhow::anyhow!("no listener"))?;
        say!("multiguna demo: dashboard at http://{admin}/");
        print_guide(addr, &cards);
        let stopper = async {
            if seconds > 0 {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                shutdown.cancel();
            }
        };
        let (counts, ()) = tokio::join!(
            traffic(
                config.clone(),
                addr,
                cards.clone(),
                providers.clone(),
                shutdown.clone()
            ),
            stopper
        );
        anyhow::Ok(counts?)
    };
    let (served, counts) = tokio::join!(server, tour);
    served?;
    let counts = counts?;
    say!(
        "multiguna demo: sent {} requests, {} approved; ledger kept in {}",
        counts.0,
        counts.1,
        db_path.display()
    );
    let _ = dir.keep();
    Ok(())
}

/// Writes the synthetic province into `dir` and loads it as an operator would: import
/// beneficiaries and providers, then the first tranche.
async fn load_province(
    config: &Config,
    dir: &std::path::Path,
    families: u32,
) -> anyhow::Result<Vec<DemoCard>> {
    let cards = write_province(config, dir, families, 8583)?;
    let db = crate::cli::open_db(config).await?;
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let programme = config.switch.default_programme.clone();
    crate::import::beneficiaries::import(
        &db,
        "beneficiaries.csv",
        &read("beneficiaries.csv")?,
        &programme,
    )
    .await?;
    crate::import::providers::import(&db, config, "providers.csv", &read("providers.csv")?).await?;
    let calendar = crate::cli::commands::calendar(config)?;
    let disbursements = read("disbursements.csv")?;
    crate::import::disbursements::disburse(
        &db,
        &calendar,
        "disbursements.csv",
        &disbursements,
        &programme,
        "cli",
    )
    .await?;
    db.close().await;
    Ok(cards)
}

fn print_guide(addr: SocketAddr, cards: &[DemoCard]) {
    say!("multiguna demo: switch listening on {addr} (ISO 8583, 2-byte length header)");
    say!("Cards to try by hand (demo data; PINs are for this demo only):");
    for card in cards.iter().step_by(cards.len().max(10) / 5).take(5) {
        say!(
            "  family {}  card {}  PIN {}",
            card.family_id,
            card.pan,
            card.pin
        );
    }
    if let Some(card) = cards.first() {
        say!("Try, in another terminal:");
        say!("  multiguna send --to {addr} --pan {} --pin {} --processing 310000 --mcc 6011           # balance at an ATM", card.pan, card.pin);
        say!("  multiguna send --to {addr} --pan {} --pin {} --processing 010000 --amount 100000 --mcc 6011  # withdraw Rp 100,000", card.pan, card.pin);
        say!("  multiguna send --to {addr} --pan {} --processing 000000 --amount 3500 --mcc 4111 --acquirer 360004  # Damri ride", card.pan);
    }
    say!("Traffic from all five channels is running; Ctrl-C stops the demo.");
}

/// One simulated terminal sending the load generator's channel mix (all five channels
/// and balance inquiries) at a walking pace, so the dashboard has something to show.
async fn traffic(
    config: Config,
    addr: SocketAddr,
    cards: Vec<DemoCard>,
    providers: (Option<String>, Option<String>),
    stop: CancellationToken,
) -> anyhow::Result<(u64, u64)> {
    let pairs = cards.into_iter().map(|c| (c.pan, c.pin)).collect();
    let cards = crate::loadgen::cards::with_pin_blocks(&config, pairs)?;
    let mix = crate::loadgen::mix::Mix::parse(crate::loadgen::mix::DEFAULT_MIX)?;
    let factory = crate::loadgen::mix::Factory::new(&config, cards, mix, providers)?;
    let mut client = IsoClient::connect(addr, Framing::Len2).await?;
    let mut rng = StdRng::seed_from_u64(1);
    let (mut sent, mut approved) = (0u64, 0u64);
    let mut last_report = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        let stan = (sent % 999_999) as u32 + 1;
        let slot = crate::loadgen::mix::Slot {
            stan,
            terminal: "DEMO0001",
            transmitted: &crate::client::transmission_time_now(),
            rrn: format!("{stan:012}"),
        };
        let built = factory.build(&mut rng, slot);
        if client.send_raw(built.bytes).await.is_err() {
            break;
        }
        let Ok(answer) = client.receive().await else {
            break;
        };
        sent += 1;
        if answer.response_code().as_deref() == Some("00") {
            approved += 1;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            say!("multiguna demo: {sent} requests sent, {approved} approved");
            last_report = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((sent, approved))
}
