//! What each command does, in terms of the library.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context};
use tokio_util::sync::CancellationToken;

use super::{say, Cli, Command, ImportWhat, LedgerWhat, PinWhat, ReportWhat};
use crate::client::{transmission_time_now, IsoClient, TxnSpec};
use crate::config::{Config, Framing};
use crate::domain::pan::Pan;
use crate::domain::time::{BusinessCalendar, TimestampMs};
use crate::import;
use crate::ledger::Db;
use crate::security::keys::TdesKey;
use crate::security::pin::{encrypt_pin_block, ibm3624_offset, DecimalisationTable, Pin};

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { echo } => serve(config, echo).await,
        Command::Demo { families, seconds } => crate::demo::run(families, seconds).await,
        Command::Migrate => {
            let db = open(&config).await?;
            println!("migrations applied to {}", backend_name(&db));
            Ok(())
        }
        Command::Import { what } => import_command(&config, what).await,
        Command::Disburse { file, programme } => {
            let db = open(&config).await?;
            let programme = programme_or_default(&config, programme)?;
            let summary = import::disbursements::disburse(
                &db,
                &calendar(&config)?,
                &file.display().to_string(),
                &import::read_file(&file)?,
                &programme,
                "cli",
            )
            .await?;
            println!("disbursement {}: {summary}", file.display());
            // A tranche's millions of entries projected now, by the job that wrote them,
            // rather than by the switch's next start (ledger/projection.rs).
            if let Err(err) = db.project_all().await {
                eprintln!("multiguna: warning: projections not brought up to date ({err}); the switch will");
            }
            Ok(())
        }
        Command::Card { action, pan } => card(&config, &action, &pan).await,
        Command::Ledger {
            what: LedgerWhat::Verify,
        } => {
            let db = open(&config).await?;
            let report = crate::ledger::verify::verify(&db).await?;
            println!("{report}");
            Ok(())
        }
        Command::Pin { what } => pin(&config, what),
        Command::Report {
            what: ReportWhat::Settlement { date },
        } => {
            let day = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                .map_err(|_| anyhow!("--date must be YYYY-MM-DD, got {date}"))?;
            let db = open(&config).await?;
            let business_day = day.format("%Y%m%d").to_string().parse::<u32>()?;
            let report = crate::ledger::settlement::settlement(&db, business_day).await?;
            print!("{}", crate::ledger::settlement::to_csv(&date, &report));
            Ok(())
        }
        Command::Send(args) => send(&config, args).await,
        Command::Loadgen(args) => crate::loadgen::run(&config, args).await,
        Command::Province {
            families,
            seed,
            out,
        } => province(&config, families, seed, &out),
    }
}

/// `multiguna province`: the demo's synthetic province as files, for the CLI imports.
fn province(
    config: &Config,
    families: u32,
    seed: u64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    if families == 0 {
        bail!("--families must be at least 1");
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let cards = crate::demo::write_province(config, out, families, seed)?;
    println!(
        "province: {families} families, {} cards (seed {seed}) in {}",
        cards.len(),
        out.display()
    );
    Ok(())
}

async fn serve(config: Config, echo: bool) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    crate::server::cancel_on_signal(shutdown.clone());
    crate::server::run(config, echo, shutdown, |bound| {
        // Stable lines scripts and tests read to find the ports.
        for (name, addr) in &bound.listeners {
            say!("multiguna: listener {name} on {addr}");
        }
        say!("multiguna: admin on {}", bound.admin);
    })
    .await?;
    say!("multiguna: stopped");
    Ok(())
}

pub async fn open(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database.url)
        .await
        .context("database")?;
    db.migrate().await.context("migrate")?;
    db.ensure_reference_accounts(config)
        .await
        .context("reference accounts")?;
    Ok(db)
}

fn backend_name(db: &Db) -> &'static str {
    match db.backend {
        crate::ledger::Backend::Sqlite => "SQLite",
        crate::ledger::Backend::Postgres => "PostgreSQL",
    }
}

pub(crate) fn calendar(config: &Config) -> anyhow::Result<BusinessCalendar> {
    BusinessCalendar::new(
        config.switch.utc_offset_minutes,
        &config.switch.business_day_cutover,
    )
    .ok_or_else(|| anyhow!("config: bad business day settings"))
}

fn programme_or_default(config: &Config, programme: Option<String>) -> anyhow::Result<String> {
    let id = programme.unwrap_or_else(|| config.switch.default_programme.clone());
    if config.programme(&id).is_none() {
        bail!("unknown programme {id}");
    }
    Ok(id)
}

async fn import_command(config: &Config, what: ImportWhat) -> anyhow::Result<()> {
    let db = open(config).await?;
    match what {
        ImportWhat::Beneficiaries { file, programme } => {
            let programme = programme_or_default(config, programme)?;
            let name = file.display().to_string();
            let summary =
                import::beneficiaries::import(&db, &name, &import::read_file(&file)?, &programme)
                    .await?;
            println!("beneficiaries {name}: cards {summary}");
        }
        ImportWhat::Providers { file } => {
            let name = file.display().to_string();
            let summary =
                import::providers::import(&db, config, &name, &import::read_file(&file)?).await?;
            println!("providers {name}: {summary}");
        }
    }
    Ok(())
}

async fn card(config: &Config, action: &str, pan: &str) -> anyhow::Result<()> {
    let pan = Pan::parse(pan).ok_or_else(|| anyhow!("PAN must be 12-19 digits"))?;
    let db = open(config).await?;
    let card_sha = pan.sha256_hex();
    if !db.card_exists(&card_sha).await? {
        bail!("unknown card {}", pan.masked());
    }
    let event = match action {
        "block" => "blocked",
        "unblock" => "unblock",
        "lost" => "lost",
        "stolen" => "stolen",
        "unlock-pin" => "pin_unlock",
        other => bail!("unknown card action {other}"),
    };
    db.insert_card_event(&card_sha, event, TimestampMs::now().0)
        .await?;
    println!(
        "card {}: {action} recorded (a running switch applies it within seconds)",
        pan.masked()
    );
    Ok(())
}

fn pin(config: &Config, what: PinWhat) -> anyhow::Result<()> {
    match what {
        PinWhat::Offset { pan, pin } => {
            let pvk = TdesKey::from_hex(&config.security.pin_verification_key)
                .context("pin_verification_key")?;
            let table = DecimalisationTable::parse(&config.security.decimalisation_table)?;
            let pin = Pin::new(&pin)?;
            println!("{}", ibm3624_offset(&pan, &pin, &pvk, &table)?);
        }
        PinWhat::Block { pan, pin, acquirer } => {
            let link = config
                .acquirers
                .iter()
                .find(|a| a.id == acquirer)
                .ok_or_else(|| anyhow!("unknown acquirer {acquirer}"))?;
            let zpk = TdesKey::from_hex(&link.zone_pin_key).context("zone_pin_key")?;
            let block = encrypt_pin_block(&pan, &Pin::new(&pin)?, &zpk)?;
            println!("{}", hex::encode_upper(block));
        }
    }
    Ok(())
}

/// `multiguna send`: one transaction by hand.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Switch address.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub to: SocketAddr,
    #[arg(long, default_value = "0200")]
    pub mti: String,
    #[arg(long)]
    pub pan: String,
    /// PIN in clear: the command makes the PIN block under the acquirer's zone PIN key.
    #[arg(long)]
    pub pin: Option<String>,
    /// F3 processing code (00xxxx purchase, 01 withdrawal, 20 refund, 31 inquiry).
    #[arg(long, default_value = "310000")]
    pub processing: String,
    /// F4 amount in the acquirer link's units.
    #[arg(long, default_value_t = 0)]
    pub amount: u64,
    #[arg(long, default_value = "6011")]
    pub mcc: String,
    #[arg(long, default_value = "360001")]
    pub acquirer: String,
    #[arg(long, default_value = "TERM0001")]
    pub terminal: String,
    /// F42: merchant or provider id.
    #[arg(long)]
    pub acceptor: Option<String>,
    /// F48, e.g. SVC=CONSULT.
    #[arg(long)]
    pub private: Option<String>,
    #[arg(long)]
    pub stan: Option<u32>,
}

async fn send(config: &Config, args: SendArgs) -> anyhow::Result<()> {
    let pan = Pan::parse(&args.pan).ok_or_else(|| anyhow!("PAN must be 12-19 digits"))?;
    let pin_block = match args.pin.as_deref() {
        Some(pin) => {
            let link = config
                .acquirers
                .iter()
                .find(|a| a.id == args.acquirer)
                .ok_or_else(|| anyhow!("unknown acquirer {}", args.acquirer))?;
            let zpk = TdesKey::from_hex(&link.zone_pin_key)?;
            Some(hex::encode_upper(encrypt_pin_block(
                pan.digits(),
                &Pin::new(pin)?,
                &zpk,
            )?))
        }
        None => None,
    };
    let stan = args
        .stan
        .unwrap_or_else(|| (TimestampMs::now().0 % 1_000_000) as u32);
    let spec = TxnSpec {
        mti: args.mti.clone(),
        pan: Some(pan.digits().to_string()),
        processing: args.processing.clone(),
        amount: Some(args.amount),
        stan,
        transmitted: transmission_time_now(),
        mcc: Some(args.mcc.clone()),
        acquirer: args.acquirer.clone(),
        rrn: Some(format!("{stan:012}")),
        terminal: args.terminal.clone(),
        acceptor: args.acceptor.clone(),
        private: args.private.clone(),
        pin_block,
        ..TxnSpec::default()
    };
    let mut client = IsoClient::connect(args.to, Framing::Len2).await?;
    let answer = client.request(&spec.build()).await?;
    let message = answer.message()?;
    println!(
        "{} F39={} F38={} F54={}",
        message.mti(),
        message.field_str(39).unwrap_or("-"),
        message.field_str(38).unwrap_or("-"),
        message.field_str(54).unwrap_or("-")
    );
    Ok(())
}
