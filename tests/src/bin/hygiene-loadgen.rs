//! `hygiene-loadgen`: N simulated agents over real mTLS against a collector, for load tests and
//! benchmarks. See [`hygiene_tests::loadgen`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "hygiene-loadgen",
    version,
    about = "Simulated Hygiene agents for load tests"
)]
struct Cli {
    /// Collector address, https://HOST:PORT.
    #[arg(long)]
    collector: String,
    /// PKI directory (`pki init`): agent certificates are issued from its CA.
    #[arg(long)]
    pki: PathBuf,
    /// How many agents to simulate (host ids sim-00001, ...).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    agents: u32,
    /// The number of the first simulated host: `--first 5001` simulates sim-05001 onwards
    /// (several load generators on several collector replicas).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    first: u32,
    /// An inventory as `hygiene-agent inventory --format json` prints it (every host reports
    /// it), or an array of them, one per host, each with its `host_id`.
    #[arg(long, value_name = "FILE.json")]
    inventory: Option<PathBuf>,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 30)]
    heartbeat_seconds: u64,
    /// Stop after this many seconds [default: at SIGINT/SIGTERM].
    #[arg(long)]
    seconds: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "hygiene-loadgen: error: {}",
                hygiene_proto::ErrorChain(err.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let inventories = match &cli.inventory {
        Some(path) => hygiene_tests::loadgen::read_inventories(path)?,
        None => Vec::new(),
    };
    let spec = hygiene_tests::loadgen::LoadSpec {
        collector: cli.collector,
        agents: cli.agents as usize,
        first: cli.first as usize,
        inventories,
        heartbeat: Duration::from_secs(cli.heartbeat_seconds.max(1)),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stop = async {
            match cli.seconds {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => shutdown().await,
            }
        };
        hygiene_tests::loadgen::run(spec, &cli.pki, stop).await
    })
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
