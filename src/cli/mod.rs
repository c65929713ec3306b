//! The command line of interfaces.md. Each command is a few lines that call into the
//! library; errors become one line on stderr and a non-zero exit.

pub(crate) mod commands;

pub use commands::open as open_db;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "multiguna",
    version,
    about = "Kartu Multiguna transaction switch"
)]
pub struct Cli {
    /// Configuration file (TOML); default: the embedded config/default.toml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the switch: ISO 8583 listeners and the ledger.
    Serve {
        /// Answer 00 without policy, authoriser or ledger: the baseline for benchmarks.
        #[arg(long)]
        echo: bool,
    },
    /// A self-contained tour: temporary database, a synthetic province, live traffic.
    Demo {
        /// Families in the synthetic province.
        #[arg(long, default_value_t = 2_000)]
        families: u32,
        /// Seconds of traffic before the demo stops (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// Apply the migrations to the configured database.
    Migrate,
    /// Load beneficiaries or providers.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Load a disbursement batch from the programme's funding.
    Disburse {
        file: PathBuf,
        #[arg(long)]
        programme: Option<String>,
    },
    /// Change a card's status, or unlock a PIN locked by wrong tries.
    Card {
        #[arg(value_parser = ["block", "unblock", "lost", "stolen", "unlock-pin"])]
        action: String,
        pan: String,
    },
    /// Ledger checks.
    Ledger {
        #[command(subcommand)]
        what: LedgerWhat,
    },
    /// PIN tools for card production and test clients.
    Pin {
        #[command(subcommand)]
        what: PinWhat,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        what: ReportWhat,
    },
    /// Send one transaction to a running switch and print the answer.
    Send(commands::SendArgs),
    /// Load generator for benchmarks and soak tests (loopback targets only).
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Write a synthetic province (beneficiaries.csv, providers.csv, disbursements.csv),
    /// the one `multiguna demo` builds, for imports and `multiguna loadgen`.
    Province {
        /// Families (two cards each).
        #[arg(long, default_value_t = 10_000)]
        families: u32,
        /// Same seed, same cards and PINs (`multiguna loadgen --seed`).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder to write the three files into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ImportWhat {
    Beneficiaries {
        file: PathBuf,
        #[arg(long)]
        programme: Option<String>,
    },
    Providers {
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ReportWhat {
    /// Settlement CSV of one business day, per acquirer and per provider.
    Settlement {
        /// The business day, YYYY-MM-DD (Asia/Jakarta, configured cut-over).
        #[arg(long)]
        date: String,
    },
}

#[derive(Subcommand)]
pub enum LedgerWhat {
    /// Check the hash chain, double entry and the balances; exit 0 only if all hold.
    Verify,
}

#[derive(Subcommand)]
pub enum PinWhat {
    /// Print the IBM 3624 offset of a PIN under the configured PIN verification key.
    Offset {
        #[arg(long)]
        pan: String,
        #[arg(long)]
        pin: String,
    },
    /// Print the encrypted ISO 9564 format-0 PIN block a terminal of the acquirer sends.
    Block {
        #[arg(long)]
        pan: String,
        #[arg(long)]
        pin: String,
        #[arg(long)]
        acquirer: String,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Logging follows the configuration; a bad file is reported without it.
    let config = match crate::config::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("multiguna: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multiguna: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiguna: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or("error").to_string()
}

/// Logs on stderr as `[log]` says; `MULTIGUNA_LOG` (or `RUST_LOG`) overrides the filter
/// for one run (a filter expression, beyond `[log] level`); the format is
/// `MULTIGUNA__LOG__FORMAT`, as every other setting.
fn init_tracing(log: &crate::config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("MULTIGUNA_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| log.level.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A line on standard output from a long-running command (`serve`, `demo`). They outlive
/// whoever read their first lines: a closed stdout must not stop them (`println!`
/// panics there), so the error is dropped.
pub(crate) fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `println!` for long-running commands: see [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;
