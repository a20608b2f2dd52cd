//! `hygienectl`: the admin CLI. Data on stdout, diagnostics on stderr; exit codes 0 clean,
//! 1 findings (a listed host or finding is open), 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hygiene_collector::config::{self, CtlConfig};
use hygiene_collector::ctl::output::{Format, render};
use hygiene_collector::ctl::{
    self, FINDING_TABLE_COLUMNS, FindingRow, HOST_TABLE_COLUMNS, HostRow, PACKAGE_TABLE_COLUMNS,
    PackageRow,
};
use hygiene_proto::v1;

const DEFAULT_COLLECTOR: &str = "https://127.0.0.1:50051";

#[derive(Parser)]
#[command(name = "hygienectl", version, about = "Hygiene admin CLI")]
struct Cli {
    /// TOML file with `collector` and `pki`; flags and environment override it.
    #[arg(long, global = true, env = "HYGIENECTL_CONFIG")]
    config: Option<PathBuf>,
    /// Collector address [default: https://127.0.0.1:50051].
    #[arg(long, global = true, env = "HYGIENE_COLLECTOR")]
    collector: Option<String>,
    /// Directory with ca.pem, admin.pem, admin.key [default: pki].
    #[arg(long, global = true, env = "HYGIENE_PKI")]
    pki: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hosts known to the collector.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Findings reported by agents.
    #[command(subcommand)]
    Findings(FindingsCommand),
    /// Packages installed on hosts, from their agents' inventories.
    #[command(subcommand)]
    Packages(PackagesCommand),
}

#[derive(Subcommand)]
enum PackagesCommand {
    /// One row per package installed on a host.
    List {
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum HostsCommand {
    /// One row per host.
    List {
        /// Only hosts with open findings.
        #[arg(long)]
        infected: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum FindingsCommand {
    /// One row per finding.
    List {
        /// Only this host's findings.
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hygienectl: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file: CtlConfig = match &cli.config {
        Some(path) => config::read(path)?,
        None => CtlConfig::default(),
    };
    let collector = cli
        .collector
        .or(file.collector)
        .unwrap_or_else(|| DEFAULT_COLLECTOR.to_owned());
    let pki_dir = cli.pki.or(file.pki).unwrap_or_else(|| PathBuf::from("pki"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut client = ctl::connect(&collector, &pki_dir).await?;
        let mut stdout = std::io::stdout().lock();
        match cli.command {
            Command::Hosts(HostsCommand::List { infected, format }) => {
                let response = client
                    .list_hosts(v1::ListHostsRequest {
                        infected_only: infected,
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<HostRow> = response
                    .into_inner()
                    .hosts
                    .into_iter()
                    .map(HostRow::from)
                    .collect();
                render(&rows, format, HOST_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(exit_for(rows.iter().any(|h| h.open_findings > 0)))
            }
            Command::Findings(FindingsCommand::List { host, format }) => {
                let response = client
                    .list_findings(v1::ListFindingsRequest {
                        host_id: host.unwrap_or_default(),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<FindingRow> = response
                    .into_inner()
                    .findings
                    .into_iter()
                    .map(FindingRow::from)
                    .collect();
                render(&rows, format, FINDING_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(exit_for(rows.iter().any(|f| f.state == "open")))
            }
            Command::Packages(PackagesCommand::List { host, format }) => {
                let response = client
                    .list_packages(v1::ListPackagesRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<PackageRow> = response
                    .into_inner()
                    .packages
                    .into_iter()
                    .map(PackageRow::from)
                    .collect();
                render(&rows, format, PACKAGE_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn exit_for(findings: bool) -> ExitCode {
    if findings {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
