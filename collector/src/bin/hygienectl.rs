//! `hygienectl`: the admin CLI. Data on stdout, diagnostics on stderr; exit codes 0 clean,
//! 1 findings (a listed host or finding is open), 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hygiene_collector::config::{self, CtlConfig};
use hygiene_collector::ctl::output::{Format, render, render_record};
use hygiene_collector::ctl::{
    self, CONNECTION_TABLE_COLUMNS, ConnectionRow, FINDING_TABLE_COLUMNS, FindingRow,
    HOST_TABLE_COLUMNS, HostDetailRow, HostRow, PACKAGE_TABLE_COLUMNS, PackageRow,
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
    /// Hosts' network sockets, from their agents' latest reports.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// One row per socket.
    List {
        /// Only this host's sockets.
        #[arg(long)]
        host: Option<String>,
        /// Only sockets whose remote address is this address or in this CIDR network.
        #[arg(long, value_name = "IP_OR_CIDR")]
        remote: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
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
        /// Only hosts with this package installed.
        #[arg(long, value_name = "NAME")]
        has_package: Option<String>,
        /// Only hosts with package NAME installed at a version below VERSION (Debian or RPM
        /// ordering, as the host's package manager orders them).
        #[arg(long, value_name = "NAME=VERSION", value_parser = parse_package_below)]
        package_below: Option<(String, String)>,
        /// Only Windows hosts that lack this update (KB5034441).
        #[arg(long, value_name = "KB")]
        missing_kb: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// One host in detail: facts, OS and build, inventory state.
    Show {
        host: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn parse_package_below(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, version)) if !name.trim().is_empty() && !version.trim().is_empty() => {
            Ok((name.trim().to_owned(), version.trim().to_owned()))
        }
        _ => Err(format!(
            "{text:?}: expected NAME=VERSION, e.g. openssl=3.0.13-1"
        )),
    }
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
        // A reader that stopped early (`| head`) is not an error of ours.
        Err(err)
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
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
            Command::Hosts(HostsCommand::List {
                infected,
                has_package,
                package_below,
                missing_kb,
                format,
            }) => {
                let (below_name, below_version) = package_below.unwrap_or_default();
                let response = client
                    .list_hosts(v1::ListHostsRequest {
                        infected_only: infected,
                        has_package: has_package.unwrap_or_default(),
                        package_below_name: below_name,
                        package_below_version: below_version,
                        missing_kb: missing_kb.unwrap_or_default(),
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
            Command::Hosts(HostsCommand::Show { host, format }) => {
                let response = client
                    .get_host(v1::GetHostRequest { host_id: host })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let row = HostDetailRow::from(response.into_inner());
                render_record(&row, format, &mut stdout).context("cannot write to stdout")?;
                Ok(exit_for(row.open_findings > 0))
            }
            Command::Connections(ConnectionsCommand::List {
                host,
                remote,
                format,
            }) => {
                let response = client
                    .list_connections(v1::ListConnectionsRequest {
                        host_id: host.unwrap_or_default(),
                        remote: remote.unwrap_or_default(),
                    })
                    .await
                    .map_err(ctl::CtlError::from)?;
                let rows: Vec<ConnectionRow> = response
                    .into_inner()
                    .connections
                    .into_iter()
                    .map(ConnectionRow::from)
                    .collect();
                render(&rows, format, CONNECTION_TABLE_COLUMNS, &mut stdout)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
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
