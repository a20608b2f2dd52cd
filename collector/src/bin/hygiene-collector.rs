//! `hygiene-collector`: `serve` runs the collector, `pki` manages the built-in CA. Flags and
//! config in, library calls out.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hygiene_collector::config::{self, CollectorConfig, DEFAULT_DB, DEFAULT_LISTEN, DEFAULT_PKI};
use hygiene_collector::pki;
use hygiene_collector::store::{SqlStore, Store};

#[derive(Parser)]
#[command(name = "hygiene-collector", version, about = "Hygiene collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve agents and hygienectl over mTLS gRPC.
    Serve {
        /// TOML config file; flags override its values.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on [default: 0.0.0.0:50051]; port 0 picks a free port.
        #[arg(long)]
        listen: Option<String>,
        /// Database URL [default: sqlite://hygiene-collector.db].
        #[arg(long)]
        db: Option<String>,
        /// PKI directory written by `pki init` [default: pki].
        #[arg(long)]
        pki: Option<PathBuf>,
        /// Hours a host may stay silent before its status is `stale` [default: 168].
        #[arg(long, value_name = "HOURS")]
        stale_after_hours: Option<u64>,
        /// Findings of one sweep stored per host; beyond, they are counted and the sweep is
        /// recorded as failed [default: 50000].
        #[arg(long, value_name = "N")]
        max_findings_per_sweep: Option<u64>,
        /// Messages per second one agent may send on average; faster ones are handled at
        /// that pace [default: 200].
        #[arg(long, value_name = "N")]
        max_agent_messages_per_second: Option<u32>,
        /// Lifetime of the agent certificates this collector signs (enrollment and renewal),
        /// e.g. 90d; agents renew two-thirds of the way through [default: 90d].
        #[arg(long, value_name = "DURATION")]
        agent_cert_lifetime: Option<String>,
    },
    /// Manage the built-in certificate authority.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Database tasks.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy every row of one database into another, empty one (e.g. a site moving from
    /// SQLite to PostgreSQL), then count both sides table by table. Stop the collectors
    /// first: rows written during the copy are not moved. Exits 0 only when every row arrived.
    Migrate {
        /// The database to copy (`sqlite://PATH` or `postgres://...`).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The database to fill; its schema is created if needed, and it must hold no rows.
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the CA, the server certificate and the admin certificate.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// DNS name or IP address agents use to reach the collector (repeatable).
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
    },
    /// Issue an agent certificate whose host id is ID.
    IssueAgent {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host_id: String,
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing agent.key in OUT.
        #[arg(long)]
        force: bool,
    },
    /// Rotate the CA: first a new CA trusted beside the old one (agents renew onto it, and
    /// get both), then, with --finish once every host has renewed, the new CA alone with a new
    /// server and admin certificate. Restart the collector after each step.
    RotateCa {
        #[arg(long)]
        dir: PathBuf,
        /// End the rotation started before.
        #[arg(long)]
        finish: bool,
    },
    /// Issue another admin certificate, NAME.pem and NAME.key in OUT.
    IssueAdmin {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HYGIENE_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            db,
            pki,
            stale_after_hours,
            max_findings_per_sweep,
            max_agent_messages_per_second,
            agent_cert_lifetime,
        } => serve(
            config,
            listen,
            db,
            pki,
            stale_after_hours,
            Limits {
                findings_per_sweep: max_findings_per_sweep,
                messages_per_second: max_agent_messages_per_second,
            },
            agent_cert_lifetime,
        ),
        Command::Pki(PkiCommand::Init { dir, server_names }) => pki::init(&dir, &server_names)
            .map_err(Into::into)
            .map(|()| {
                eprintln!(
                    "wrote CA, server and admin certificates to {}",
                    dir.display()
                )
            }),
        Command::Pki(PkiCommand::IssueAgent {
            dir,
            host_id,
            out,
            force,
        }) => pki::issue_agent(&dir, &host_id, &out, force)
            .map_err(Into::into)
            .map(|()| eprintln!("wrote agent certificate for {host_id} to {}", out.display())),
        Command::Pki(PkiCommand::RotateCa { dir, finish: false }) => pki::rotate_ca_begin(&dir)
            .map_err(Into::into)
            .map(|()| {
                eprintln!(
                    "new CA in {}: trusted beside the old one; restart the collector: each host is told to renew when it connects, so once every host's last_seen (hygienectl hosts list) is after the restart, run rotate-ca --finish",
                    dir.join(pki::PkiFiles::NEXT_CA_CERT).display()
                )
            }),
        Command::Pki(PkiCommand::RotateCa { dir, finish: true }) => pki::rotate_ca_finish(&dir)
            .map_err(Into::into)
            .map(|()| {
                eprintln!(
                    "the new CA is the only one in {}; restart the collector; admins issued with issue-admin need new certificates",
                    dir.display()
                )
            }),
        Command::Db(DbCommand::Migrate { from, to, format }) => migrate(&from, &to, format),
        Command::Pki(PkiCommand::IssueAdmin { dir, name, out }) => {
            pki::issue_admin(&dir, &name, &out)
                .map_err(Into::into)
                .map(|()| eprintln!("wrote admin certificate for {name} to {}", out.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "hygiene-collector: error: {}",
                hygiene_proto::ErrorChain(err.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

/// `db migrate`: the copy, its table on stdout, and an error unless every row arrived.
fn migrate(from: &str, to: &str, format: Format) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let copied = runtime.block_on(async {
        let source = SqlStore::open(from).await?;
        let target = SqlStore::open(to).await?;
        anyhow::Ok(source.copy_into(&target).await?)
    })?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&copied)?)?,
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut out);
            for table in &copied {
                csv.serialize(table)?;
            }
            csv.flush()?;
        }
        Format::Table => {
            writeln!(out, "{:<20} {:>12} {:>12}", "TABLE", "SOURCE", "TARGET")?;
            for table in &copied {
                writeln!(
                    out,
                    "{:<20} {:>12} {:>12}{}",
                    table.table,
                    table.source_rows,
                    table.target_rows,
                    if table.complete() { "" } else { "  MISSING" }
                )?;
            }
        }
    }
    let missing: Vec<&str> = copied
        .iter()
        .filter(|t| !t.complete())
        .map(|t| t.table.as_str())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!("rows missing in {to}: {}", missing.join(", "));
    }
    let rows: u64 = copied.iter().map(|t| t.source_rows).sum();
    eprintln!(
        "copied {rows} rows in {} tables from {from} to {to}",
        copied.len()
    );
    Ok(())
}

/// The agent limits given on the command line.
struct Limits {
    findings_per_sweep: Option<u64>,
    messages_per_second: Option<u32>,
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    db: Option<String>,
    pki_dir: Option<PathBuf>,
    stale_after_hours: Option<u64>,
    limits: Limits,
    agent_cert_lifetime: Option<String>,
) -> anyhow::Result<()> {
    let file: CollectorConfig = match &config {
        Some(path) => config::read(path)?,
        None => CollectorConfig::default(),
    };
    let listen = listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let db = db.or(file.db).unwrap_or_else(|| DEFAULT_DB.to_owned());
    let pki_dir = pki_dir
        .or(file.pki)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PKI));
    let mut options = hygiene_collector::ServeOptions::default();
    if let Some(hours) = stale_after_hours.or(file.stale_after_hours) {
        options.stale_after = std::time::Duration::from_secs(hours.saturating_mul(3600));
    }
    if let Some(n) = limits.findings_per_sweep.or(file.max_findings_per_sweep) {
        options.agent_limits.findings_per_sweep = n;
    }
    if let Some(n) = limits
        .messages_per_second
        .or(file.max_agent_messages_per_second)
    {
        anyhow::ensure!(n > 0, "max_agent_messages_per_second must be at least 1");
        options.agent_limits.messages_per_second = n;
    }
    let tls = hygiene_collector::tls_from_pki(&pki_dir)?;
    // Bundles are signed with the PKI directory's key (made here for directories older than
    // bundles); without one, publishing is refused and everything else works.
    options.rules_signing_key = match pki::rules_signing_key(&pki_dir) {
        Ok(key) => Some(key),
        Err(err) => {
            tracing::warn!("{err}; rules and IOCs cannot be published");
            None
        }
    };
    // Agents enroll with the CA key; without one here, enrollment is refused.
    let cert_lifetime = match agent_cert_lifetime.or(file.agent_cert_lifetime) {
        Some(text) => {
            let lifetime = humantime::parse_duration(text.trim())
                .with_context(|| format!("agent_cert_lifetime {text:?} (examples: 90d, 30d)"))?;
            anyhow::ensure!(
                lifetime >= std::time::Duration::from_secs(10),
                "agent_cert_lifetime {text:?}: at least 10s"
            );
            lifetime
        }
        None => hygiene_proto::certs::AGENT_LIFETIME,
    };
    options.enrollment = match pki::Enrollment::load(&pki_dir) {
        Ok(mut enrollment) => {
            enrollment.issuer = enrollment.issuer.with_lifetime(cert_lifetime);
            Some(std::sync::Arc::new(enrollment))
        }
        Err(err) => {
            tracing::warn!("{err}; agents cannot enroll with tokens");
            None
        }
    };
    // Every agent holds a connection: the usual soft limit of 1,024 open files stops a
    // collector at about a thousand agents.
    match hygiene_collector::server::raise_open_file_limit() {
        Some(Ok((before, after))) if after > before => {
            tracing::info!("open-file limit raised from {before} to {after}")
        }
        Some(Ok((_, after))) => tracing::info!("open-file limit {after}"),
        Some(Err(err)) => tracing::warn!("cannot raise the open-file limit: {err}"),
        None => {}
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&db).await?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener
            .local_addr()
            .context("bound socket has no address")?;
        // On stdout, so that scripts and tests started with port 0 can read the real port.
        println!("listening on {address}");
        tracing::info!(db = %db, pki = %pki_dir.display(), "collector started on {address}");
        hygiene_collector::serve_with(listener, tls, store, options, shutdown_signal()).await?;
        tracing::info!("collector stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C on Windows).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
