//! `multiguna loadgen`: N connections of terminals sending a channel mix of 0200s with
//! real PIN blocks, closed loop (as fast as answers come, `depth` in flight per
//! connection) or open loop at a fixed rate with latency counted from the scheduled
//! send time. Every answer is matched by MTI+F11+F41 and checked; the report gives
//! counts, throughput, latency percentiles and response codes, as text or JSON.
//!
//! The cards must be the ones the switch imported: `--province N --seed S` regenerates
//! the province `multiguna province` / `write_province` wrote with the same numbers,
//! `--cards FILE` reads a beneficiaries CSV. It only targets loopback addresses: it is a
//! benchmark tool, not something to point at a production switch.

pub mod cards;
mod conn;
pub mod mix;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpStream;

use crate::config::{Config, Framing};
use conn::{Budget, Plan, Schedule, Stop};
pub use mix::DEFAULT_MIX;
use report::{Report, Settings, Stats};

/// Duration of a run when neither `--duration-s` nor `--requests` is given.
const DEFAULT_DURATION_S: f64 = 10.0;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The switch's ISO 8583 listener; loopback addresses only.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub to: String,
    /// TCP connections, each a terminal of its own (F41 LG000000, LG000001, ...).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub depth: u32,
    /// Seconds to send for (default 10 when --requests is not given either).
    #[arg(long, conflicts_with = "requests")]
    pub duration_s: Option<f64>,
    /// Requests to send in all, then stop.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: requests per second over all connections. Without it: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Channel weights: atm, minimarket, clinic, school, damri, inquiry.
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: String,
    /// Families of the synthetic province the switch imported (as `multiguna province`).
    #[arg(long, default_value_t = 10_000)]
    pub province: u32,
    /// Seed of that province.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A beneficiaries CSV instead of --province (PINs from its offsets; clinic and
    /// school ids from a providers.csv beside it).
    #[arg(long)]
    pub cards: Option<PathBuf>,
    /// Seconds to wait for an answer before counting it as an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    #[arg(long, default_value = "len2", value_parser = ["len2", "len4-ascii"])]
    pub framing: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write every approved (00) request's key to FILE, a CSV line each:
    /// `acquirer,terminal,stan,transmitted` (F32, F41, F11, F7 as sent), to check
    /// against the ledger's transfers. Written at the end, even when the switch went
    /// away mid-run.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

pub async fn run(config: &Config, args: LoadgenArgs) -> anyhow::Result<()> {
    let addr = loopback_target(&args.to).await?;
    check_numbers(&args)?;
    let mix = mix::Mix::parse(&args.mix)?;
    let set = match &args.cards {
        Some(file) => cards::from_csv(config, file)?,
        None => cards::from_province(config, args.province, args.seed)?,
    };
    let card_count = set.cards.len();
    let factory = Arc::new(mix::Factory::new(config, set.cards, mix, set.providers)?);
    let streams = connect_all(addr, args.connections).await?;
    let framing = match args.framing.as_str() {
        "len4-ascii" => Framing::Len4Ascii,
        _ => Framing::Len2,
    };
    let budget = args.requests.map(Budget::new);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (index, stream) in (0..args.connections).zip(streams) {
        let plan = plan(&args, index, start, budget.clone());
        tasks.push(tokio::spawn(conn::run(
            stream,
            framing,
            plan,
            factory.clone(),
        )));
    }
    let mut stats = Stats::new();
    for task in tasks {
        stats.merge(task.await.context("connection task")?);
    }
    if let Some(file) = &args.record {
        write_approvals(file, &stats.approvals)?;
    }
    let report = Report::new(settings(&args, addr, card_count), stats, start);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

fn write_approvals(file: &std::path::Path, approvals: &[report::Approval]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let context = || format!("--record {}", file.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).with_context(context)?);
    out.write_all(b"acquirer,terminal,stan,transmitted\n")
        .with_context(context)?;
    for approval in approvals {
        out.write_all(approval.csv_line().as_bytes())
            .with_context(context)?;
    }
    out.flush().with_context(context)?;
    Ok(())
}

/// Resolves `--to` and refuses anything that is not this machine.
async fn loopback_target(to: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(to)
        .await
        .with_context(|| format!("--to {to}: not an address"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("--to {to} is not a loopback address: loadgen only targets this machine (127.0.0.0/8, ::1)");
    }
    // `localhost` may resolve to ::1 first while the switch listens on 127.0.0.1.
    Ok(*addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0]))
}

fn check_numbers(args: &LoadgenArgs) -> anyhow::Result<()> {
    let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
    if !positive(args.duration_s) {
        bail!("--duration-s must be a positive number of seconds");
    }
    if !positive(args.rate) {
        bail!("--rate must be a positive number of requests per second");
    }
    if !positive(Some(args.timeout_s)) {
        bail!("--timeout-s must be a positive number of seconds");
    }
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    Ok(())
}

/// All connections are open before the clock starts, so connecting is not measured.
async fn connect_all(addr: SocketAddr, n: u32) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// One connection's part: the shared budget or end time, and in open loop its share of
/// the rate, staggered so the connections do not all send in the same instant.
fn plan(args: &LoadgenArgs, index: u32, start: Instant, budget: Option<Arc<Budget>>) -> Plan {
    let stop = match budget {
        Some(budget) => Stop::After(budget),
        None => Stop::At(start + secs(args.duration_s.unwrap_or(DEFAULT_DURATION_S))),
    };
    let schedule = args.rate.map(|rate| {
        let interval = secs(f64::from(args.connections) / rate);
        Schedule {
            interval,
            first: start + interval.mul_f64(f64::from(index) / f64::from(args.connections)),
        }
    });
    Plan {
        index,
        depth: args.depth as usize,
        stop,
        schedule,
        timeout: secs(args.timeout_s),
        seed: args.seed,
        record: args.record.is_some(),
    }
}

/// Seconds as a `Duration`, capped at a year so `Instant + Duration` cannot overflow.
fn secs(s: f64) -> Duration {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3_600);
    Duration::try_from_secs_f64(s).map_or(YEAR, |d| d.min(YEAR))
}

fn settings(args: &LoadgenArgs, addr: SocketAddr, cards: usize) -> Settings {
    Settings {
        target: addr.to_string(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: args.connections,
        depth: args.depth as usize,
        rate: args.rate,
        mix: args.mix.clone(),
        cards,
    }
}
