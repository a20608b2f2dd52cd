//! `hygiene-agent`: flags and config in, library calls out. Exit codes: 0 clean, 1 findings,
//! 2 error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hygiene_agent::config::{AgentConfig, ConfigFile};
use hygiene_agent::scan::{FindingJson, SweepEvent, SweepOptions};

#[derive(Parser)]
#[command(name = "hygiene-agent", version, about = "Hygiene endpoint agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the collector, sweep the configured roots, stay connected for commands.
    Run(Box<RunArgs>),
    /// Scan paths locally, without a collector.
    Scan(ScanArgs),
    /// Print this host's inventory: OS, packages, hotfixes, programs, connections.
    Inventory(InventoryArgs),
    /// Get this host's certificate from the collector with an enrollment token (`hygienectl
    /// enroll create`), then `run --cert-dir DIR`. Prints the host id.
    Enroll(EnrollArgs),
    /// The agent as a Windows service: `install` registers it (automatic, delayed start, as
    /// LocalSystem, restarted on failure), `uninstall` stops and removes it, `run` is what the
    /// service manager starts (config `C:\ProgramData\Hygiene\agent.toml`, logs in
    /// `C:\ProgramData\Hygiene\logs`).
    #[cfg(windows)]
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(clap::Args)]
struct EnrollArgs {
    /// The collector, https://HOST:PORT.
    #[arg(long)]
    collector: String,
    /// The enrollment token.
    #[arg(long, env = "HYGIENE_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// The collector's CA as `hygienectl enroll create` printed it: SHA256:HEX. Only a
    /// collector with that CA is trusted, so the token goes nowhere else.
    #[arg(long, value_name = "SHA256:HEX")]
    ca_fingerprint: String,
    /// Where to write ca.pem, agent.pem, agent.key and rules-signing.pub.
    #[arg(long, value_name = "DIR")]
    cert_dir: PathBuf,
    /// The host id to ask for [default: the host name and a hash of the machine's id, the
    /// same after a reinstall].
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
}

#[derive(clap::Args)]
struct InventoryArgs {
    #[arg(long, value_enum, default_value_t = InventoryFormat::Text)]
    format: InventoryFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum InventoryFormat {
    /// A summary, then the connections.
    Text,
    /// One JSON object: os, packages, hotfixes, programs, connections, partial.
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML config file; flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Collector address, https://HOST:PORT.
    #[arg(long, env = "HYGIENE_COLLECTOR")]
    collector: Option<String>,
    /// Enrollment token: with no certificate in the cert directory, enroll with it first
    /// (see `enroll`).
    #[arg(long, env = "HYGIENE_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// The collector's CA fingerprint printed with the token (SHA256:HEX).
    #[arg(long, env = "HYGIENE_CA_FINGERPRINT", value_name = "SHA256:HEX")]
    ca_fingerprint: Option<String>,
    /// The host id to enroll as [default: the host name and a hash of the machine's id].
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// Local address to connect to the collector from (multi-homed servers).
    #[arg(long, value_name = "IP")]
    source_address: Option<std::net::IpAddr>,
    /// Directory with ca.pem, agent.pem, agent.key.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Directory for the agent's state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Directory to sweep (repeatable).
    #[arg(long = "root")]
    roots: Vec<PathBuf>,
    /// YARA rule file or directory (repeatable).
    #[arg(long)]
    rules: Vec<PathBuf>,
    /// Hash IOC list (repeatable).
    #[arg(long)]
    iocs: Vec<PathBuf>,
    /// Glob of paths not to walk, e.g. '**/node_modules' (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Scan threads [default: half the cores].
    #[arg(long)]
    threads: Option<usize>,
    /// CPU budget of a sweep in percent of one core.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..))]
    cpu_limit: Option<u32>,
    /// Seconds between heartbeats.
    #[arg(long)]
    heartbeat_seconds: Option<u64>,
    /// Longest wait between reconnect attempts, in seconds.
    #[arg(long)]
    reconnect_max_seconds: Option<u64>,
    /// How often the inventory is reported, in seconds (default 6 hours).
    #[arg(long)]
    inventory_interval_seconds: Option<u64>,
    /// How often the host's connections are reported, in seconds (default 300).
    #[arg(long)]
    connections_interval_seconds: Option<u64>,
    /// How long the first sweep waits for the collector's rule and IOC bundles, in seconds
    /// (default 120; 0: do not wait).
    #[arg(long)]
    bundle_wait_seconds: Option<u64>,
    /// Bound of the on-disk spool of unacknowledged messages, in MiB (default 256). When
    /// full, progress reports go first, then socket lists and inventories; findings and
    /// summaries are never dropped (the sweep waits), and the collector is told.
    #[arg(long)]
    spool_max_mib: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScanFormat {
    Text,
    Jsonl,
}

#[derive(clap::Args)]
struct ScanArgs {
    /// YARA rule file or directory of .yar/.yara files (repeatable).
    #[arg(long)]
    rules: Vec<PathBuf>,
    /// Hash IOC list: HASH;COMMENT or one hash per line (repeatable).
    #[arg(long)]
    iocs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: ScanFormat,
    /// Scan threads [default: half the cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// CPU budget in percent of one core, e.g. 50 [default: no limit].
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..))]
    cpu_limit: Option<u32>,
    /// Glob of paths not to walk, e.g. '**/node_modules' (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Files larger than this are hashed but not YARA-scanned [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// Verdict cache: a re-scan reads only files that changed (created if missing).
    #[arg(long, value_name = "PATH")]
    cache: Option<PathBuf>,
    /// Ignore the cache's verdicts (they are still updated).
    #[arg(long)]
    full: bool,
    /// Write totals as JSON to FILE: files, bytes, findings, errors, seconds, cached_files.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Files or directories to scan.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[cfg(windows)]
#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum ServiceCommand {
    Install,
    Uninstall,
    Run,
}

fn non_empty(v: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
    if v.is_empty() { None } else { Some(v) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("HYGIENE_LOG").unwrap_or_else(|_| "info".into())
    };
    #[cfg(windows)]
    let _log_guard = match &cli.command {
        // A service has no console: its log goes to files, rotated daily.
        Command::Service(ServiceCommand::Run) => {
            let dir = hygiene_agent::winservice::data_dir().join("logs");
            match tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("agent")
                .filename_suffix("log")
                .max_log_files(14)
                .build(&dir)
            {
                Ok(appender) => {
                    use tracing_subscriber::layer::SubscriberExt;
                    use tracing_subscriber::util::SubscriberInitExt;
                    let (writer, guard) = tracing_appender::non_blocking(appender);
                    tracing_subscriber::registry()
                        .with(filter())
                        .with(
                            tracing_subscriber::fmt::layer()
                                .with_writer(writer)
                                .with_ansi(false),
                        )
                        // Errors also to the Application event log.
                        .with(hygiene_agent::winservice::EventLogLayer::open())
                        .init();
                    Some(guard)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    #[cfg(windows)]
    let console = _log_guard.is_none();
    #[cfg(not(windows))]
    let console = true;
    if console {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter())
            .init();
    }
    let result = match cli.command {
        Command::Run(args) => run(*args, shutdown_signal()).map(|()| ExitCode::SUCCESS),
        #[cfg(windows)]
        Command::Service(command) => service(command).map(|()| ExitCode::SUCCESS),
        Command::Scan(args) => scan(args),
        Command::Inventory(args) => inventory(args).map(|()| ExitCode::SUCCESS),
        Command::Enroll(args) => enroll(args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        // A reader that stopped early (`| head`) is not an error of ours.
        let broken_pipe = err
            .chain()
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "hygiene-agent: error: {}",
            hygiene_proto::ErrorChain(err.as_ref())
        );
        ExitCode::from(2)
    })
}

#[cfg(windows)]
fn service(command: ServiceCommand) -> anyhow::Result<()> {
    use hygiene_agent::winservice;
    match command {
        ServiceCommand::Install => {
            winservice::install()?;
            eprintln!("service {} installed", winservice::SERVICE_NAME);
        }
        ServiceCommand::Uninstall => {
            winservice::uninstall()?;
            eprintln!("service {} removed", winservice::SERVICE_NAME);
        }
        ServiceCommand::Run => winservice::run(service_body)?,
    }
    Ok(())
}

/// What the Windows service runs: `run` with the service's config file and the MSI's
/// settings (which the config file's values override, as flags do not).
#[cfg(windows)]
fn service_body(
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> anyhow::Result<()> {
    use hygiene_agent::winservice;
    let config = winservice::config_path();
    let [collector, mut token, fingerprint] = winservice::msi_settings();
    if !config.is_file()
        && let Some(collector) = &collector
    {
        winservice::write_config(&config, collector)?;
    }
    let mut argv: Vec<std::ffi::OsString> = vec!["hygiene-agent".into(), "run".into()];
    let file = if config.is_file() {
        argv.extend(["--config".into(), config.clone().into_os_string()]);
        ConfigFile::read(&config)?
    } else {
        ConfigFile::default()
    };
    let cert_dir = file
        .cert_dir
        .clone()
        .unwrap_or_else(hygiene_agent::config::default_cert_dir);
    if token.is_some() && cert_dir.join("agent.pem").is_file() {
        winservice::forget_token();
        token = None;
    }
    let settings = [
        ("--collector", collector, file.collector.is_some()),
        ("--enroll-token", token, file.enroll_token.is_some()),
        (
            "--ca-fingerprint",
            fingerprint,
            file.ca_fingerprint.is_some(),
        ),
    ];
    for (flag, value, in_file) in settings {
        if let (Some(value), false) = (value, in_file) {
            argv.extend([flag.into(), value.into()]);
        }
    }
    let Command::Run(args) = Cli::try_parse_from(argv)?.command else {
        unreachable!("parsed a run command")
    };
    tracing::info!(config = %config.display(), "service starting");
    run(*args, shutdown)
}

fn run(args: RunArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::default(),
    };
    let flags = ConfigFile {
        collector: args.collector,
        source_address: args.source_address,
        cert_dir: args.cert_dir,
        state_dir: args.state_dir,
        roots: non_empty(args.roots),
        exclude: if args.exclude.is_empty() {
            None
        } else {
            Some(args.exclude)
        },
        threads: args.threads,
        one_file_system: None,
        cpu_limit: args.cpu_limit,
        rules: non_empty(args.rules),
        iocs: non_empty(args.iocs),
        heartbeat_seconds: args.heartbeat_seconds,
        reconnect_max_seconds: args.reconnect_max_seconds,
        max_yara_size: None,
        inventory_interval_seconds: args.inventory_interval_seconds,
        connections_interval_seconds: args.connections_interval_seconds,
        bundle_wait_seconds: args.bundle_wait_seconds,
        spool_max_mib: args.spool_max_mib,
        enroll_token: args.enroll_token,
        ca_fingerprint: args.ca_fingerprint,
        host_id: args.host_id,
    };
    let config = AgentConfig::resolve(file.overlay(flags))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // A first start with a token and no certificate enrolls (an install that was given one).
    if let Some(enrollment) = &config.enrollment
        && !config.cert_dir.join("agent.pem").exists()
    {
        // Each collector address in turn: a replica that is down is not the site.
        let mut enrolled = None;
        for collector in hygiene_agent::session::collector_addresses(&config.collector) {
            let result = runtime.block_on(hygiene_agent::enroll::enroll(
                &collector,
                &enrollment.token,
                &enrollment.ca_fingerprint,
                &config.cert_dir,
                enrollment.host_id.clone(),
            ));
            let done = result.is_ok();
            enrolled = Some(result);
            if done {
                break;
            }
        }
        let host_id = enrolled.expect("at least one collector address")?;
        tracing::info!(host = %host_id, cert_dir = %config.cert_dir.display(), "enrolled");
        // The MSI's token stays in the registry, where any local user can read it, only
        // until it has done its work.
        #[cfg(windows)]
        if hygiene_agent::winservice::msi_settings()[1].is_some() {
            hygiene_agent::winservice::forget_token();
        }
    }
    let result = runtime.block_on(hygiene_agent::run_agent(config, shutdown));
    // A sweep thread stuck in a read (a hung network file system) must not keep the agent
    // from stopping: dropping the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result?;
    Ok(())
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

fn scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    for path in &args.paths {
        std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    }
    let engine = hygiene_agent::load_engine(&args.rules, &args.iocs)?;
    let defaults = SweepOptions::default();
    let options = SweepOptions {
        exclude_globs: hygiene_agent::scan::exclude_globs(&args.exclude)
            .context("bad --exclude")?,
        max_yara_size: args.max_size.unwrap_or(defaults.max_yara_size),
        threads: args.threads.map_or(defaults.threads, usize::from),
        full: args.full,
        cpu_limit: args.cpu_limit,
        ..defaults
    };
    let cache = args
        .cache
        .as_deref()
        .map(hygiene_agent::cache::Cache::open)
        .transpose()?;
    let started = std::time::Instant::now();
    // A live progress line on a terminal; nothing when stderr is piped or redirected.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut failures = Vec::new();
    let stats = engine.sweep_with_progress(
        &args.paths,
        &options,
        cache.as_ref(),
        &AtomicBool::new(false),
        |event| match event {
            SweepEvent::Findings(findings) => {
                for finding in &findings {
                    let line = match args.format {
                        ScanFormat::Jsonl => serde_json::to_string(&FindingJson::from(finding))
                            .expect("findings serialize"),
                        ScanFormat::Text => match (&finding.rule, &finding.ioc_comment) {
                            (Some(rule), _) => format!(
                                "{}: yara {}.{} sha256={}",
                                finding.path.display(),
                                finding.namespace.as_deref().unwrap_or_default(),
                                rule,
                                finding.sha256_hex()
                            ),
                            (None, comment) => format!(
                                "{}: hash_ioc {} sha256={}",
                                finding.path.display(),
                                comment.as_deref().unwrap_or_default(),
                                finding.sha256_hex()
                            ),
                        },
                    };
                    if let Err(err) = writeln!(out, "{line}") {
                        write_error.get_or_insert(err);
                    }
                }
            }
            SweepEvent::File { .. } => {}
            SweepEvent::Error(error) => {
                failures.push(serde_json::json!({
                    "path": error.path.to_string_lossy(),
                    "kind": error.kind.as_str(),
                    "message": &error.message,
                }));
                let line = format!(
                    "hygiene-agent: {}: {}: {}",
                    error.path.display(),
                    error.kind.as_str(),
                    error.message
                );
                match &bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        },
        |stats| {
            if let Some(bar) = &bar {
                bar.set_message(progress_line(stats));
            }
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    out.flush().context("cannot write to stdout")?;
    if let Some(err) = write_error {
        return Err(err).context("cannot write to stdout");
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.summary_json {
        let summary = serde_json::json!({
            "files": stats.files,
            "bytes": stats.bytes,
            "findings": stats.findings,
            "errors": stats.errors.iter().map(|(k, v)| (k.as_str(), v)).collect::<std::collections::BTreeMap<_, _>>(),
            "seconds": seconds,
            "cached_files": stats.cached_files,
            "failures": failures,
        });
        std::fs::write(path, format!("{summary:#}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let errors: u64 = stats.errors.values().sum();
    eprintln!(
        "hygiene-agent: scanned {} files ({} bytes): {} findings, {} paths not fully scanned",
        stats.files, stats.bytes, stats.findings, errors
    );
    if !engine.broken_rules().is_empty() {
        // Each was reported with its file and line when loading; the scan ran with the rest.
        eprintln!(
            "hygiene-agent: error: {} rule file(s) did not compile and were left out",
            engine.broken_rules().len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(if stats.findings > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// "12,345 files, 1.2 GiB, 3 findings, 0 errors" for the progress line.
fn progress_line(stats: &hygiene_agent::scan::SweepStats) -> String {
    format!(
        "{} files, {}, {} findings, {} not fully scanned",
        stats.files,
        indicatif::HumanBytes(stats.bytes),
        stats.findings,
        stats.errors.values().sum::<u64>()
    )
}

/// Prints the inventory; parts that could not be collected are listed on stderr too.
fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let host_id = runtime.block_on(hygiene_agent::enroll::enroll(
        &args.collector,
        &args.token,
        &args.ca_fingerprint,
        &args.cert_dir,
        args.host_id,
    ))?;
    eprintln!(
        "enrolled as {host_id}; certificates in {}: start with `hygiene-agent run --cert-dir {}`",
        args.cert_dir.display(),
        args.cert_dir.display()
    );
    println!("{host_id}");
    Ok(())
}

fn inventory(args: InventoryArgs) -> anyhow::Result<()> {
    let inventory = hygiene_agent::inventory::collect();
    for part in &inventory.partial {
        eprintln!(
            "hygiene-agent: partial inventory: {}: {}",
            part.source, part.reason
        );
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        InventoryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &inventory)?;
            writeln!(out)?;
        }
        InventoryFormat::Text => {
            let os = &inventory.os;
            if os.family == "windows" {
                writeln!(
                    out,
                    "os: {}, build {} ({}), {}",
                    os.pretty_name, os.build, os.installation_type, os.arch
                )?;
            } else {
                writeln!(
                    out,
                    "os: {} ({} {}), kernel {}, {}",
                    os.pretty_name, os.id, os.version_id, os.kernel, os.arch
                )?;
            }
            writeln!(
                out,
                "packages: {}, hotfixes: {}, programs: {}, connections: {}",
                inventory.packages.len(),
                inventory.hotfixes.len(),
                inventory.programs.len(),
                inventory.connections.len()
            )?;
            for c in &inventory.connections {
                writeln!(
                    out,
                    "{:<4} {:<46} {:<46} {:<12} {} {}",
                    c.proto,
                    format!("{}:{}", c.local_addr, c.local_port),
                    format!("{}:{}", c.remote_addr, c.remote_port),
                    c.state,
                    c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    c.process.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(())
}
