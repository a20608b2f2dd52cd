//! The Hygiene agent.
//!
//! It scans files (SHA-256, YARA-X rules, hash IOCs) and streams what it finds to the collector
//! over one mutually authenticated TLS gRPC stream. The binary (`main.rs`) only parses flags
//! and calls [`run_agent`] or the [`scan`] engine.
//!
//! - [`config`]: TOML config with flag overrides.
//! - [`rules`], [`iocs`]: loading YARA rules and hash IOC lists (the `hygiene-rules` crate,
//!   which the collector uses to check bundles; [`memory`] sets its allocator hooks).
//! - [`scan`]: the walk-read-hash-match engine.
//! - [`facts`]: host facts for the Hello message.
//! - [`state`]: persistent agent state (redb).
//! - [`spool`]: the outbox on disk: every message until the collector acknowledges it.
//! - [`session`]: the stream to the collector: hello, heartbeats, acks, reconnects, commands,
//!   and the sweeper that feeds the spool.

pub mod bundles;
pub mod cache;
pub mod config;
#[cfg(unix)]
pub mod deep;
pub mod enroll;
pub mod externals;
pub mod facts;
pub mod gentle;
pub mod inventory;
pub mod memory;
pub mod quarantine;
pub mod renewal;
pub mod scan;
pub mod session;
pub mod spool;
pub mod state;
pub mod sweeps;
#[cfg(windows)]
pub mod winservice;

pub use hygiene_rules as rules;
pub use hygiene_rules::iocs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::config::AgentConfig;
use crate::iocs::HashIocs;
use crate::scan::{Engine, SweepOptions};
use crate::session::{Connector, SessionParams};
use crate::sweeps::{SweepControl, SweepRequest};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
    #[error(transparent)]
    Iocs(#[from] iocs::IocError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad exclude glob: {0}")]
    Glob(#[from] globset::Error),
}

/// Loads the rules and IOC lists into an engine. A rule path or IOC list that cannot be read is
/// an error; a rule file that does not compile is left out (see [`Engine::broken_rules`]) and
/// bad lines inside an IOC list are skipped, each logged with its file and line.
pub fn load_engine(rule_paths: &[PathBuf], ioc_paths: &[PathBuf]) -> Result<Engine, AgentError> {
    // Here, before the first compile; bundles applied later compile with the same hooks.
    memory::set_rule_compile_hooks();
    let rules = if rule_paths.is_empty() {
        None
    } else {
        Some(rules::load(rule_paths)?)
    };
    for broken in rules.iter().flat_map(|set| &set.broken) {
        tracing::error!("rule file left out: {broken}");
    }
    let iocs = HashIocs::load(ioc_paths)?;
    for bad in &iocs.bad_lines {
        tracing::warn!("IOC line skipped: {bad}");
    }
    Ok(Engine::new(rules, iocs))
}

/// Runs the agent until `shutdown` resolves: sweeps the configured roots once at start, then
/// stays connected for commands.
pub async fn run_agent(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let absolute = |path: &PathBuf| {
        std::path::absolute(path).map_err(|source| AgentError::Path {
            path: path.clone(),
            source,
        })
    };
    // Bundles from the collector, once the agent has any, take the configured files' place.
    let bundles = Arc::new(bundles::Bundles::open(&config.state_dir, &config.cert_dir));
    let engine = bundles.load_into(load_engine(&config.rules, &config.iocs)?);
    tracing::info!(
        rules = engine.rule_count(),
        sha256_iocs = engine.ioc_count(),
        "scan engine ready"
    );
    let engine = Arc::new(bundles::EngineSlot::new(engine));
    let connector = Connector::new(&config.collector, &config.cert_dir, config.source_address)?;
    let state = state::AgentState::open(&config.state_dir)?;
    let ledger = state.sweep_ledger();

    // The walker compares excluded paths with the paths it produces, so both are made absolute.
    let roots = config
        .roots
        .iter()
        .map(absolute)
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = SweepOptions {
        max_yara_size: config.max_yara_size,
        exclude_globs: scan::exclude_globs(&config.exclude)?,
        threads: config.threads,
        one_file_system: config.one_file_system,
        cpu_limit: config.cpu_limit,
        ..SweepOptions::default()
    };
    options.excludes.push(absolute(&config.state_dir)?);

    let spool = spool::Spool::open(state, config.spool_limit)?;
    let (sweep_tx, sweep_rx) = mpsc::channel(64);
    let control = Arc::new(SweepControl::new(Some(ledger.clone()), sweep_tx));
    // A fleet sweep that was under way when the agent stopped is resumed; it stands in for the
    // start-up sweep, which would only walk the same roots again.
    let now = session::unix_ms(SystemTime::now());
    let resumed = match ledger.unfinished(now) {
        Ok(resumed) => resumed,
        Err(err) => {
            tracing::warn!("{err}; no interrupted sweep is resumed");
            Vec::new()
        }
    };
    if resumed.is_empty() {
        control.offer(SweepRequest::startup(now), now);
    }
    for request in resumed {
        tracing::info!(sweep = %request.sweep_id, "resuming a sweep interrupted by the agent's stop");
        control.offer(request, now);
    }
    // Without its cache the agent still works, only every sweep reads everything.
    let cache = match cache::Cache::open(&config.state_dir.join("cache.redb")) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(err) => {
            tracing::warn!("{err}; every sweep will read every file");
            None
        }
    };
    let engine_slot = engine.clone();
    let bundle_sync = Arc::new(bundles::BundleSync::default());
    let sweeper = session::Sweeper {
        engine,
        roots,
        options,
        cache,
        control: control.clone(),
        last_totals: Some(config.state_dir.join("last-sweep.json")),
        bundle_sync: Some(bundle_sync.clone()),
        bundle_wait: config.bundle_wait,
    };
    let (inventory_tx, inventory_rx) = mpsc::channel(1);
    let inventory = tokio::spawn(session::report_inventory(
        spool.clone(),
        config.inventory_interval,
        inventory_rx,
    ));
    let connections = tokio::spawn(session::report_connections(
        spool.clone(),
        config.connections_interval,
    ));
    let sweeper = tokio::spawn(sweeper.run(sweep_rx, spool.clone()));

    let params = SessionParams {
        facts: facts::collect(),
        heartbeat: config.heartbeat,
        reconnect_max: config.reconnect_max,
    };
    // Only root (SYSTEM) can read it: the agent's state directory is the agent's own.
    let quarantine_dir = config.state_dir.join("quarantine");
    let quarantine = quarantine::Quarantine::open(&quarantine_dir)
        .map(Arc::new)
        .map_err(|err| {
            tracing::warn!("{err}; quarantine orders will be refused");
            format!("the agent has no usable quarantine: {err}")
        });
    let commands = session::CommandTargets {
        sweeps: control.clone(),
        inventory: inventory_tx,
        remediation: session::Remediation {
            quarantine,
            bodies: spool.clone(),
        },
        bundles: session::BundleApplier {
            bundles,
            engine: engine_slot,
            bodies: spool.clone(),
            sync: bundle_sync,
            sweeps: control.clone(),
        },
    };
    let result = session::run(connector, params, spool.clone(), commands, shutdown).await;
    // Let a sweep in progress (or waiting for room in the spool) notice and return its
    // thread promptly.
    spool.close();
    control.shutdown();
    sweeper.abort();
    inventory.abort();
    connections.abort();
    Ok(result?)
}
