//! The agent's side of the stream: connect over mTLS, say hello, send heartbeats and what the
//! [`Spool`] holds, resend it after a reconnect or a restart, obey commands.
//!
//! Delivery is at-least-once: a message leaves the spool only when the collector acknowledges
//! its sequence number, which it does after committing it. The collector's handling of every
//! message is idempotent, so a resend after a lost acknowledgement does no harm.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hygiene_proto::v1::{self, agent_message::Body, collector_message, command};
use rand::Rng;
use tokio::sync::mpsc;

use crate::spool::Spool;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cache::Cache;
use crate::facts::HostFacts;
use crate::quarantine::Quarantine;
use crate::scan::{Finding, FindingKind, SweepEvent, SweepOptions, SweepStats};
use crate::state::StateError;
use crate::sweeps::{LedgerState, Origin, SweepControl, SweepRequest};

/// The largest command the agent takes (a rule bundle).
const MAX_COMMAND_SIZE: usize = hygiene_proto::MAX_AGENT_COMMAND_SIZE;

/// How many spooled messages may be on the wire unacknowledged: enough to keep the collector
/// busy, few enough that a large spool is not read into memory at once.
const IN_FLIGHT: usize = 256;

/// First reconnect delay; doubled after each failed attempt up to the configured maximum.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// After a failed renewal, the next attempt (a third of the certificate's life is left).
const RENEWAL_RETRY: Duration = Duration::from_secs(600);
/// A connection that lasted this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    // The I/O error is part of the message, not a source: chains print it once.
    #[error("{path}: cannot read certificate material: {cause}")]
    Certs {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("collector address {url:?}: {source}")]
    Endpoint {
        url: String,
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Renewal(#[from] crate::renewal::RenewError),
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot connect: {}", hygiene_proto::ErrorChain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("collector refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("stream broke: {0}")]
    Broken(tonic::Status),
    #[error("collector closed the stream")]
    Closed,
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Setup(SessionError),
}

/// Builds mTLS channels to the collector from the files enrollment or `pki issue-agent`
/// writes, read again for every connection (a renewal replaces them). A site with several
/// collector replicas is given as several addresses (`collector = ["https://a:50051",
/// "https://b:50051"]`, or comma-separated): a connection tries them in turn, starting from
/// the one that answered last. A name with several DNS addresses is tried address by address
/// by the connector underneath.
#[derive(Clone)]
pub struct Connector {
    collectors: Vec<String>,
    /// The address that answered last (an index into `collectors`).
    current: Arc<AtomicUsize>,
    cert_dir: PathBuf,
    source_address: Option<std::net::IpAddr>,
}

impl Connector {
    /// `source_address`: the local address to connect from (the system's choice when `None`).
    /// Checks that the files are there and finishes a renewal a crash interrupted.
    pub fn new(
        collector: &str,
        cert_dir: &Path,
        source_address: Option<std::net::IpAddr>,
    ) -> Result<Self, SessionError> {
        crate::renewal::finish_pending(cert_dir)?;
        let connector = Connector {
            collectors: collector_addresses(collector),
            current: Arc::default(),
            cert_dir: cert_dir.to_path_buf(),
            source_address,
        };
        for url in &connector.collectors {
            connector.endpoint(url)?;
        }
        Ok(connector)
    }

    /// The collector address in use (or tried last).
    pub fn collector(&self) -> &str {
        let current = self.current.load(Ordering::Relaxed);
        &self.collectors[current % self.collectors.len()]
    }

    fn endpoint(&self, url: &str) -> Result<Endpoint, SessionError> {
        let read = |name: &str| {
            let path = self.cert_dir.join(name);
            std::fs::read(&path).map_err(|cause| SessionError::Certs { path, cause })
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")?))
            .identity(Identity::from_pem(read("agent.pem")?, read("agent.key")?));
        let endpoint_error = |source| SessionError::Endpoint {
            url: url.to_owned(),
            source,
        };
        Ok(Endpoint::from_shared(url.to_owned())
            .map_err(endpoint_error)?
            .tls_config(tls)
            .map_err(endpoint_error)?
            .connect_timeout(Duration::from_secs(10))
            .local_address(self.source_address)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true))
    }

    /// A channel to the first collector address that answers, starting from the last one
    /// that did.
    async fn connect(&self) -> Result<Channel, LinkError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.collectors.len() {
            let index = (start + step) % self.collectors.len();
            let url = &self.collectors[index];
            let endpoint = self.endpoint(url).map_err(LinkError::Setup)?;
            match endpoint.connect().await {
                Ok(channel) => {
                    if index != start % self.collectors.len() {
                        tracing::info!(collector = %url, "failing over to another collector address");
                    }
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(channel);
                }
                Err(err) => {
                    if self.collectors.len() > 1 {
                        tracing::warn!(collector = %url, "cannot connect: {}", hygiene_proto::ErrorChain(&err));
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.map_or(LinkError::Closed, LinkError::Connect))
    }
}

/// The addresses of a `collector` setting: one URL, or several separated by commas.
pub fn collector_addresses(setting: &str) -> Vec<String> {
    let addresses: Vec<String> = setting
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addresses.is_empty() {
        vec![setting.to_owned()]
    } else {
        addresses
    }
}

/// What a session needs besides its connection.
pub struct SessionParams {
    pub facts: HostFacts,
    pub heartbeat: Duration,
    pub reconnect_max: Duration,
}

/// Runs the agent's connection until `shutdown` resolves: connects, reconnects with backoff and
/// jitter, and delivers what `spool` holds. `commands` receives the collector's commands.
pub async fn run(
    connector: Connector,
    params: SessionParams,
    spool: Arc<Spool>,
    commands: CommandTargets,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SessionError> {
    tokio::pin!(shutdown);
    let mut backoff = RECONNECT_MIN;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            result = serve_connection(&connector, &params, &spool, &commands) => result,
        };
        match result {
            Err(LinkError::State(err)) => return Err(err.into()),
            Err(err) => tracing::warn!(collector = %connector.collector(), "{err}"),
            // A renewed certificate: connect with it at once.
            Ok(()) => continue,
        }
        if started.elapsed() >= STABLE_CONNECTION {
            backoff = RECONNECT_MIN;
        }
        let delay = jittered(backoff);
        tracing::info!(unacked = spool.len().0, "reconnecting in {delay:?}");
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        backoff = (backoff * 2).min(params.reconnect_max);
    }
}

/// Collects the inventory (on a blocking thread: it reads many files) at start and then every
/// `interval`, and queues it for the collector: complete the first time, after a partial one
/// and when the collector asks (`requests`), otherwise as a delta when little changed. Ends
/// when the stream side is gone.
pub async fn report_inventory(
    bodies: Arc<Spool>,
    interval: Duration,
    mut requests: mpsc::Receiver<()>,
) {
    // The lists of the last complete inventory queued: the outbox delivers in order, so the
    // collector has them by the time it reads the next delta.
    let mut base: Option<crate::inventory::delta::Lists> = None;
    loop {
        let Ok(inventory) = tokio::task::spawn_blocking(crate::inventory::collect).await else {
            return;
        };
        let lists = crate::inventory::delta::Lists::of(&inventory);
        let message = inventory_message(&inventory, base.as_ref(), lists.as_ref());
        base = lists;
        if bodies.send(Body::Inventory(message)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            request = requests.recv() => match request {
                Some(()) => {
                    tracing::info!("the collector asked for a complete inventory");
                    base = None;
                }
                None => return,
            },
        }
    }
}

/// The message for `inventory`: a delta against `base` when both lists are whole and little
/// changed, else complete.
fn inventory_message(
    inventory: &crate::inventory::Inventory,
    base: Option<&crate::inventory::delta::Lists>,
    lists: Option<&crate::inventory::delta::Lists>,
) -> v1::Inventory {
    let mut message = inventory_to_proto(inventory);
    let Some(lists) = lists else {
        return message;
    };
    message.digest = lists.digest().to_vec();
    let Some((base, delta)) = base.and_then(|base| Some((base, base.delta_to(lists)?))) else {
        return message;
    };
    message.base_digest = base.digest().to_vec();
    message.packages = delta.packages.iter().map(package_to_proto).collect();
    message.hotfixes = delta.hotfixes.iter().map(hotfix_to_proto).collect();
    message.programs = delta.programs.iter().map(program_to_proto).collect();
    message.removed_packages = delta
        .removed_packages
        .iter()
        .map(package_to_proto)
        .collect();
    message.removed_hotfixes = delta.removed_hotfixes.iter().map(hotfix_to_proto).collect();
    message.removed_programs = delta
        .removed_programs
        .iter()
        .map(program_to_proto)
        .collect();
    message
}

fn package_to_proto(p: &crate::inventory::Package) -> v1::Package {
    v1::Package {
        name: p.name.clone(),
        version: p.version.clone(),
        arch: p.arch.clone(),
        source: p.source.clone().unwrap_or_default(),
        manager: p.manager.to_owned(),
    }
}

fn hotfix_to_proto(h: &crate::inventory::Hotfix) -> v1::Hotfix {
    v1::Hotfix {
        kb: h.kb.clone(),
        title: h.title.clone(),
        installed_on: h.installed_on.clone().unwrap_or_default(),
    }
}

fn program_to_proto(p: &crate::inventory::Program) -> v1::Program {
    v1::Program {
        name: p.name.clone(),
        version: p.version.clone(),
        publisher: p.publisher.clone(),
    }
}

/// Collects the host's sockets at start and then every `interval`, and queues them for the
/// collector. Ends when the stream side is gone.
pub async fn report_connections(bodies: Arc<Spool>, interval: Duration) {
    loop {
        let Ok((connections, partial)) =
            tokio::task::spawn_blocking(crate::inventory::collect_connections).await
        else {
            return;
        };
        let report = v1::Connections {
            collected_at_ms: unix_ms(SystemTime::now()),
            connections: connections.iter().map(connection_to_proto).collect(),
            partial_reason: partial
                .iter()
                .map(|p| p.reason.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
        if bodies.send(Body::Connections(report)).await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

fn connection_to_proto(c: &crate::inventory::Connection) -> v1::Connection {
    v1::Connection {
        proto: c.proto.clone(),
        local_addr: c.local_addr.clone(),
        local_port: c.local_port.into(),
        remote_addr: c.remote_addr.clone(),
        remote_port: c.remote_port.into(),
        state: c.state.clone(),
        pid: c.pid.unwrap_or(0),
        process: c.process.clone().unwrap_or_default(),
    }
}

fn inventory_to_proto(inventory: &crate::inventory::Inventory) -> v1::Inventory {
    let os = &inventory.os;
    v1::Inventory {
        collected_at_ms: unix_ms(SystemTime::now()),
        os: Some(v1::OsInfo {
            family: os.family.clone(),
            id: os.id.clone(),
            version_id: os.version_id.clone(),
            pretty_name: os.pretty_name.clone(),
            kernel: os.kernel.clone(),
            arch: os.arch.clone(),
            boot_time: os.boot_time.unwrap_or(0),
            last_package_change: os.last_package_change.unwrap_or(0),
            product_name: os.product_name.clone(),
            edition: os.edition.clone(),
            display_version: os.display_version.clone(),
            build: os.build.clone(),
            installation_type: os.installation_type.clone(),
        }),
        hotfixes: inventory.hotfixes.iter().map(hotfix_to_proto).collect(),
        programs: inventory.programs.iter().map(program_to_proto).collect(),
        packages: inventory.packages.iter().map(package_to_proto).collect(),
        partial: inventory
            .partial
            .iter()
            .map(|p| v1::InventoryPartial {
                source: p.source.clone(),
                reason: p.reason.clone(),
            })
            .collect(),
        ..v1::Inventory::default()
    }
}

/// A random moment within the splay window.
fn splay(seconds: u32) -> Duration {
    rand::rng().random_range(Duration::ZERO..=Duration::from_secs(seconds.into()))
}

/// Sleeps for `delay` unless the sweep is cancelled or the agent shuts down first; `false`
/// then.
async fn wait_unless_stopped(delay: Duration, control: &SweepControl, sweep_id: &str) -> bool {
    let until = tokio::time::Instant::now() + delay;
    loop {
        if control.is_shut_down() || control.is_cancelled(sweep_id) {
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(250))).await;
    }
}

/// "Equal jitter": somewhere in the upper half of the delay, so that a fleet that lost its
/// collector at the same moment does not come back in lockstep.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

async fn serve_connection(
    connector: &Connector,
    params: &SessionParams,
    spool: &Spool,
    commands: &CommandTargets,
) -> Result<(), LinkError> {
    let channel = connector.connect().await?;
    // Rule bundles (signature-base is 7 MB) exceed the default 4 MiB limit.
    let mut client = v1::agent_service_client::AgentServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_COMMAND_SIZE);
    // Unbounded: what is in flight is bounded by IN_FLIGHT, and a bounded channel could
    // deadlock against the collector's acknowledgements.
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let hello = v1::AgentMessage {
        seq: spool.next_seq()?,
        body: Some(Body::Hello(hello(params))),
    };
    let _ = out_tx.send(hello);
    // What the agent runs with, so that the collector sends newer bundles. Not spooled: the
    // next connection says it again.
    for status in commands.bundles.bundles.statuses() {
        let _ = out_tx.send(v1::AgentMessage {
            seq: spool.next_seq()?,
            body: Some(Body::BundleStatus(status)),
        });
    }
    let response = client
        .session(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx))
        .await
        .map_err(LinkError::Refused)?;
    tracing::info!(collector = %connector.collector(), unacked = spool.len().0, "connected");
    let mut inbound = response.into_inner();
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + params.heartbeat,
        params.heartbeat,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last spooled message sent on this connection: everything after it is yet to go.
    let mut sent_through = 0;
    let renewal_due = crate::renewal::due(&connector.cert_dir);
    if let Err(err) = &renewal_due {
        tracing::warn!("the certificate will not be renewed: {err}");
    }
    let renewal_check = tokio::time::sleep(until_renewal(renewal_due.as_ref().ok()));
    tokio::pin!(renewal_check);
    // Set by the collector's order: renew whatever the certificate's age.
    let mut renew_now = false;
    loop {
        // Send what the spool holds beyond what is on the wire, up to the window.
        let in_flight = spool.count_through(sent_through);
        if in_flight < IN_FLIGHT {
            for message in spool.read_after(sent_through, IN_FLIGHT - in_flight)? {
                sent_through = message.seq;
                if out_tx.send(message).is_err() {
                    return Err(LinkError::Closed);
                }
            }
        }
        tokio::select! {
            message = inbound.message() => {
                let message = message.map_err(LinkError::Broken)?.ok_or(LinkError::Closed)?;
                match message.body {
                    Some(collector_message::Body::Ack(ack)) => {
                        spool.ack(ack.seq)?;
                    }
                    Some(collector_message::Body::Command(v1::Command {
                        action: Some(command::Action::RenewCertificate(_)),
                        ..
                    })) => {
                        tracing::info!("the collector orders a certificate renewal (a CA rotation)");
                        renew_now = true;
                        renewal_check.as_mut().reset(tokio::time::Instant::now());
                    }
                    Some(collector_message::Body::Command(command)) => handle_command(command, commands),
                    None => tracing::warn!("empty message from collector ignored"),
                }
            }
            _ = spool.added() => {}
            _ = &mut renewal_check => {
                let due = renewal_due.as_ref().ok();
                if renew_now || due.is_some_and(|due| SystemTime::now() >= *due) {
                    let renewal = crate::renewal::renew(channel.clone(), &connector.cert_dir);
                    match tokio::time::timeout(Duration::from_secs(60), renewal).await {
                        Ok(Ok(())) => {
                            tracing::info!(dir = %connector.cert_dir.display(), "certificate renewed; connecting with it");
                            return Ok(());
                        }
                        Ok(Err(err)) => tracing::warn!("certificate renewal failed; trying again in {RENEWAL_RETRY:?}: {err}"),
                        Err(_) => tracing::warn!("certificate renewal got no answer; trying again in {RENEWAL_RETRY:?}"),
                    }
                    renewal_check.as_mut().reset(tokio::time::Instant::now() + RENEWAL_RETRY);
                } else {
                    renewal_check.as_mut().reset(tokio::time::Instant::now() + until_renewal(due));
                }
            }
            _ = heartbeat.tick() => {
                // Heartbeats are not spooled: a stale one carries no information.
                let message = v1::AgentMessage {
                    seq: spool.next_seq()?,
                    body: Some(Body::Heartbeat(v1::Heartbeat { sent_at_ms: unix_ms(SystemTime::now()) })),
                };
                if out_tx.send(message).is_err() {
                    return Err(LinkError::Closed);
                }
            }
        }
    }
}

/// How long to wait before looking at the renewal time again: at most an hour, so that a
/// wall clock that jumps (a laptop waking up) is noticed.
fn until_renewal(due: Option<&SystemTime>) -> Duration {
    const RECHECK: Duration = Duration::from_secs(3600);
    due.map_or(RECHECK, |due| {
        due.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(RECHECK)
    })
}

/// Where the collector's commands go: sweep orders and cancellations to the sweep control,
/// inventory requests to the inventory reporter.
#[derive(Clone)]
pub struct CommandTargets {
    pub sweeps: Arc<SweepControl>,
    pub inventory: mpsc::Sender<()>,
    /// Quarantine and restore; `None` when the quarantine directory could not be set up
    /// (every such order is then answered with that reason).
    pub remediation: Remediation,
    /// Rule and IOC bundles.
    pub bundles: BundleApplier,
}

/// Applies the collector's rule and IOC bundles and reports the outcome on the stream.
#[derive(Clone)]
pub struct BundleApplier {
    pub bundles: Arc<crate::bundles::Bundles>,
    pub engine: Arc<crate::bundles::EngineSlot>,
    pub bodies: Arc<Spool>,
    /// Told when the collector has answered for a kind (the first sweep waits for it).
    pub sync: Arc<crate::bundles::BundleSync>,
    /// Where the rescan a new bundle sets off is offered.
    pub sweeps: Arc<SweepControl>,
}

impl BundleApplier {
    /// Checks and loads the bundle on a blocking thread (rules compile for seconds) and queues
    /// the answer for the collector. Bundles apply one at a time, in the order they came.
    fn apply(&self, order: v1::ApplyBundle) {
        let Some(signed) = order.bundle else {
            tracing::warn!("bundle order without a bundle ignored");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _one = ONE_AT_A_TIME.lock().await;
            let (bundles, engine) = (this.bundles.clone(), this.engine.clone());
            let result = tokio::task::spawn_blocking(move || {
                bundles.apply(&signed, &engine, unix_ms(SystemTime::now()))
            })
            .await;
            match result {
                Ok((status, changed)) => {
                    this.sync.settled(&status.kind);
                    if changed {
                        // Every "nothing found" so far was under the old set: sweep again
                        // (the cache keeps it gentle: IOCs are matched against the cached
                        // digests, and only YARA reads files again after new rules).
                        let request = SweepRequest::after_bundle(&status.kind, &status.version);
                        tracing::info!(sweep = %request.sweep_id, kind = %status.kind, "new bundle: rescanning the roots");
                        this.sweeps.offer(request, unix_ms(SystemTime::now()));
                    }
                    let _ = this.bodies.send(Body::BundleStatus(status)).await;
                }
                Err(err) => tracing::error!("applying a bundle crashed: {err}"),
            }
        });
    }
}

/// Carries out quarantine and restore orders and reports the outcome on the stream.
#[derive(Clone)]
pub struct Remediation {
    pub quarantine: Result<Arc<Quarantine>, String>,
    pub bodies: Arc<Spool>,
}

impl Remediation {
    /// Runs `order` on a blocking thread (it reads and writes whole files) and queues the
    /// outcome for the collector.
    fn carry_out(&self, order: RemediationOrder) {
        let (quarantine, bodies) = (self.quarantine.clone(), self.bodies.clone());
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || remediate(quarantine, order)).await;
            match result {
                Ok(result) => {
                    if result.ok {
                        tracing::info!(finding = result.finding_id, action = %result.action, path = %result.path, quarantine = %result.quarantine_id, "done");
                    } else {
                        tracing::warn!(finding = result.finding_id, action = %result.action, path = %result.path, "not done: {}", result.reason);
                    }
                    let _ = bodies.send(Body::Remediation(result)).await;
                }
                Err(err) => tracing::error!("remediation crashed: {err}"),
            }
        });
    }
}

/// A quarantine or restore the collector asked for.
#[derive(Debug, Clone)]
enum RemediationOrder {
    Quarantine(v1::QuarantineFile),
    Restore(v1::RestoreFile),
}

fn remediate(
    quarantine: Result<Arc<Quarantine>, String>,
    order: RemediationOrder,
) -> v1::RemediationResult {
    let now = unix_ms(SystemTime::now());
    let (finding_id, action) = match &order {
        RemediationOrder::Quarantine(q) => (q.finding_id, "quarantine"),
        RemediationOrder::Restore(r) => (r.finding_id, "restore"),
    };
    let mut result = v1::RemediationResult {
        finding_id,
        action: action.to_owned(),
        ..v1::RemediationResult::default()
    };
    let quarantine = match quarantine {
        Ok(quarantine) => quarantine,
        Err(reason) => {
            result.reason = reason;
            return result;
        }
    };
    match order {
        RemediationOrder::Quarantine(q) => {
            let path = path_from_wire(&q.path, &q.path_raw);
            result.path = q.path.clone();
            let outcome = quarantine.quarantine(&path, &q.sha256, now).or_else(|err| {
                // Asked again for a file already taken: the same answer as the first time.
                match quarantine.find(&path, &q.sha256) {
                    Some(record) => Ok(record),
                    None => Err(err),
                }
            });
            match outcome {
                Ok(record) => {
                    result.ok = true;
                    result.quarantine_id = record.id;
                }
                Err(err) => result.reason = err.to_string(),
            }
        }
        RemediationOrder::Restore(r) => {
            result.quarantine_id = r.quarantine_id.clone();
            if let Ok(record) = quarantine.record(&r.quarantine_id) {
                result.path = record.path;
            }
            match quarantine.restore(&r.quarantine_id) {
                Ok(path) => {
                    result.ok = true;
                    result.path = path.to_string_lossy().into_owned();
                }
                Err(err) => result.reason = err.to_string(),
            }
        }
    }
    result
}

/// A path as the wire carries it: text, or its exact bytes when it is not UTF-8.
fn path_from_wire(text: &str, raw: &[u8]) -> PathBuf {
    #[cfg(unix)]
    if !raw.is_empty() {
        use std::os::unix::ffi::OsStrExt;
        return PathBuf::from(std::ffi::OsStr::from_bytes(raw));
    }
    #[cfg(not(unix))]
    let _ = raw;
    PathBuf::from(text)
}

fn handle_command(command: v1::Command, targets: &CommandTargets) {
    let now = unix_ms(SystemTime::now());
    match command.action {
        // The session renews (it holds the connection).
        Some(command::Action::RenewCertificate(_)) => {}
        Some(command::Action::RequestInventory(_)) => {
            // One pending request is enough: a full channel already has one.
            let _ = targets.inventory.try_send(());
        }
        Some(command::Action::StartSweep(start)) => {
            let request = SweepRequest {
                sweep_id: start.sweep_id,
                full: start.full,
                splay_seconds: start.splay_seconds,
                deadline_ms: start.deadline_ms,
                origin: Origin::Collector,
            };
            tracing::info!(command = %command.id, sweep = %request.sweep_id, full = request.full, splay_seconds = request.splay_seconds, "sweep ordered");
            targets.sweeps.offer(request, now);
        }
        Some(command::Action::CancelSweep(cancel)) => {
            tracing::info!(command = %command.id, sweep = %cancel.sweep_id, "sweep cancelled");
            targets.sweeps.cancel(&cancel.sweep_id, now);
        }
        Some(command::Action::QuarantineFile(order)) => {
            tracing::info!(command = %command.id, finding = order.finding_id, path = %order.path, "quarantine ordered");
            targets
                .remediation
                .carry_out(RemediationOrder::Quarantine(order));
        }
        Some(command::Action::ApplyBundle(order)) => {
            tracing::info!(command = %command.id, "bundle received");
            targets.bundles.apply(order);
        }
        Some(command::Action::BundleCurrent(current)) => {
            tracing::debug!(command = %command.id, kind = %current.kind, version = %current.version, "bundle current");
            targets.bundles.sync.settled(&current.kind);
        }
        Some(command::Action::RestoreFile(order)) => {
            tracing::info!(command = %command.id, finding = order.finding_id, quarantine = %order.quarantine_id, "restore ordered");
            targets
                .remediation
                .carry_out(RemediationOrder::Restore(order));
        }
        None => {
            tracing::warn!(command = %command.id, "command with no action ignored (newer collector?)")
        }
    }
}

fn hello(params: &SessionParams) -> v1::Hello {
    let facts = &params.facts;
    v1::Hello {
        facts: Some(v1::HostFacts {
            hostname: facts.hostname.clone(),
            os_name: facts.os_name.clone(),
            os_version: facts.os_version.clone(),
            kernel_version: facts.kernel_version.clone(),
            arch: facts.arch.clone(),
            ip_addresses: facts.ip_addresses.iter().map(ToString::to_string).collect(),
            boot_time: facts.boot_time,
        }),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat_interval_seconds: params.heartbeat.as_secs().try_into().unwrap_or(u32::MAX),
    }
}

/// Everything a sweep needs besides its request.
pub struct Sweeper {
    /// Each sweep takes the engine in the slot when it starts and keeps it to its end.
    pub engine: Arc<crate::bundles::EngineSlot>,
    pub roots: Vec<PathBuf>,
    pub options: SweepOptions,
    pub cache: Option<Arc<Cache>>,
    /// Orders, cancellations and shutdown.
    pub control: Arc<SweepControl>,
    /// Where the last finished sweep's totals are kept, as the next sweep's estimate.
    pub last_totals: Option<PathBuf>,
    /// The first sweep waits up to `bundle_wait` for the collector to say which bundles it
    /// holds (and for them to be applied); `None`: no collector to wait for.
    pub bundle_sync: Option<Arc<crate::bundles::BundleSync>>,
    pub bundle_wait: Duration,
}

/// How many failed paths a sweep summary lists; the counts by kind cover the rest.
pub const MAX_FAILED_PATHS: usize = 1000;

/// How often a running sweep reports its progress to the collector.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Totals of the last finished sweep of some roots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LastTotals {
    roots: Vec<PathBuf>,
    files: u64,
    bytes: u64,
}

impl Sweeper {
    /// Runs sweeps one after another as requests arrive, streaming progress, findings and a
    /// summary into `bodies`. Ends when `requests` closes or the agent shuts down.
    pub async fn run(self, mut requests: mpsc::Receiver<SweepRequest>, bodies: Arc<Spool>) {
        let sweeper = Arc::new(self);
        let control = sweeper.control.clone();
        let mut bundles_awaited = false;
        while let Some(request) = requests.recv().await {
            if control.is_shut_down() {
                break;
            }
            if !bundles_awaited && let Some(sync) = &sweeper.bundle_sync {
                bundles_awaited = true;
                if !sync.is_settled() {
                    tracing::debug!(sweep = %request.sweep_id, "waiting up to {:?} for the collector's rule and IOC bundles before the first sweep", sweeper.bundle_wait);
                    if !sync.wait(sweeper.bundle_wait).await {
                        let sets = sweeper.engine.current().set_versions();
                        tracing::warn!(
                            rules = sets.rule_count,
                            iocs = sets.ioc_count,
                            "the collector did not say which bundles it holds in time; sweeping with what the agent has"
                        );
                    }
                }
            }
            let sweep_id = request.sweep_id.clone();
            if control.is_cancelled(&sweep_id) {
                continue;
            }
            if request.expired(unix_ms(SystemTime::now())) && request.origin != Origin::Resumed {
                tracing::warn!(sweep = %sweep_id, "deadline passed before the sweep could start; not started");
                control.record(&request, LedgerState::Expired, unix_ms(SystemTime::now()));
                continue;
            }
            if request.origin == Origin::Collector && request.splay_seconds > 0 {
                let delay = splay(request.splay_seconds);
                tracing::info!(sweep = %sweep_id, "sweep starts in {delay:?} (splay)");
                if !wait_unless_stopped(delay, &control, &sweep_id).await {
                    continue;
                }
            }
            let now = unix_ms(SystemTime::now());
            control.record(&request, LedgerState::Running, now);
            let halt = control.begin(&sweep_id);
            tracing::info!(sweep = %sweep_id, roots = ?sweeper.roots, full = request.full, resumed = request.origin == Origin::Resumed, "sweep started");
            let (this, bodies_for_sweep, job) = (sweeper.clone(), bodies.clone(), request.clone());
            let finished = tokio::task::spawn_blocking(move || {
                this.sweep_into(&job, &bodies_for_sweep, &halt)
            })
            .await;
            control.end();
            let now = unix_ms(SystemTime::now());
            match finished {
                Ok(stats) if stats.stopped && control.is_cancelled(&sweep_id) => {
                    tracing::info!(sweep = %sweep_id, files = stats.files, "sweep stopped: cancelled");
                }
                Ok(stats) if stats.stopped => {
                    // Shutdown: the ledger still says running, so the next start resumes it.
                    tracing::info!(sweep = %sweep_id, files = stats.files, "sweep stopped: shutting down");
                    break;
                }
                Ok(stats) => {
                    control.record(&request, LedgerState::Done, now);
                    tracing::info!(
                        sweep = %sweep_id, files = stats.files, bytes = stats.bytes, findings = stats.findings,
                        cached_files = stats.cached_files, errors = stats.errors.values().sum::<u64>(),
                        "sweep finished"
                    );
                }
                Err(err) => {
                    tracing::error!(sweep = %sweep_id, "sweep crashed: {err}");
                    control.record(&request, LedgerState::Done, now);
                    let summary = v1::SweepSummary {
                        sweep_id: sweep_id.clone(),
                        finished_at_ms: now,
                        roots: sweeper.root_names(),
                        failure: format!("the sweep crashed: {err}"),
                        ..v1::SweepSummary::default()
                    };
                    let _ = bodies.send(Body::SweepSummary(summary)).await;
                }
            }
        }
    }

    fn root_names(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect()
    }

    fn sweep_into(&self, request: &SweepRequest, bodies: &Spool, halt: &AtomicBool) -> SweepStats {
        let started = SystemTime::now();
        // A bundle applied from now on is for the next sweep; this one keeps its rules.
        let engine = self.engine.current();
        let sets = engine.set_versions();
        if sets.rule_count == 0 {
            tracing::warn!(sweep = %request.sweep_id, "sweeping with no YARA rules loaded: the collector will not count this sweep as proof that the host is clean");
        }
        let options = SweepOptions {
            full: request.full,
            ..self.options.clone()
        };
        // The estimate: the previous sweep's totals, or else a quick count of the files and
        // bytes to come, made alongside the sweep (0 until it is done: unknown).
        let (files_estimate, bytes_estimate) = (AtomicU64::new(0), AtomicU64::new(0));
        let known = self.read_last_totals();
        if let Some(last) = &known {
            files_estimate.store(last.files, Ordering::Relaxed);
            bytes_estimate.store(last.bytes, Ordering::Relaxed);
        }
        let sweep_over = AtomicBool::new(false);
        let progress = |stats: &SweepStats| {
            let report = v1::SweepProgress {
                sweep_id: request.sweep_id.clone(),
                started_at_ms: unix_ms(started),
                files_done: stats.files,
                bytes_done: stats.bytes,
                files_estimate: files_estimate.load(Ordering::Relaxed),
                bytes_estimate: bytes_estimate.load(Ordering::Relaxed),
                findings: stats.findings,
                errors: error_counts(stats),
            };
            let _ = bodies.blocking_send(Body::SweepProgress(report));
        };
        progress(&SweepStats::default());
        let mut last_report = Instant::now();
        let mut failed = Vec::new();
        let mut failed_truncated = false;
        // Each file's findings travel as one batch; `blocking_send` pauses the sweep while the
        // collector is unreachable and the queue is full, so nothing is dropped.
        let stats = std::thread::scope(|scope| {
            if known.is_none() {
                scope.spawn(|| {
                    // Ends with the sweep (which the agent's stop flag also ends): a count
                    // finished after the sweep is of no use.
                    let (files, bytes) = crate::scan::precount(&self.roots, &options, &sweep_over);
                    if !sweep_over.load(Ordering::Relaxed) {
                        files_estimate.store(files, Ordering::Relaxed);
                        bytes_estimate.store(bytes, Ordering::Relaxed);
                    }
                });
            }
            let stats = engine.sweep_with_progress(
            &self.roots,
            &options,
            self.cache.as_deref(),
            halt,
            |event| match event {
                SweepEvent::Findings(findings) => {
                    let batch = v1::FindingBatch {
                        sweep_id: request.sweep_id.clone(),
                        findings: findings.iter().map(finding_to_proto).collect(),
                        rules_version: sets.rules.clone(),
                        iocs_version: sets.iocs.clone(),
                    };
                    let _ = bodies.blocking_send(Body::Findings(batch));
                }
                SweepEvent::Error(error) => {
                    tracing::debug!(path = %error.path.display(), kind = error.kind.as_str(), "{}", error.message);
                    if failed.len() < MAX_FAILED_PATHS {
                        failed.push(v1::FailedPath {
                            path: error.path.to_string_lossy().into_owned(),
                            kind: error.kind.as_str().to_owned(),
                            message: error.message,
                        });
                    } else {
                        failed_truncated = true;
                    }
                }
                SweepEvent::File { .. } => {}
            },
            |stats| {
                if last_report.elapsed() >= PROGRESS_EVERY {
                    progress(stats);
                    last_report = Instant::now();
                }
            },
            );
            sweep_over.store(true, Ordering::Relaxed);
            stats
        });
        if !stats.stopped {
            let summary = v1::SweepSummary {
                sweep_id: request.sweep_id.clone(),
                started_at_ms: unix_ms(started),
                finished_at_ms: unix_ms(SystemTime::now()),
                files: stats.files,
                bytes: stats.bytes,
                findings: stats.findings,
                errors: error_counts(&stats),
                roots: self.root_names(),
                failed,
                failed_truncated,
                failure: String::new(),
                rules_version: sets.rules.clone(),
                iocs_version: sets.iocs.clone(),
                rule_count: Some(sets.rule_count),
                ioc_count: Some(sets.ioc_count),
            };
            let _ = bodies.blocking_send(Body::SweepSummary(summary));
            self.write_last_totals(&stats);
        }
        stats
    }

    fn read_last_totals(&self) -> Option<LastTotals> {
        let text = std::fs::read(self.last_totals.as_ref()?).ok()?;
        serde_json::from_slice::<LastTotals>(&text)
            .ok()
            .filter(|t| t.roots == self.roots)
    }

    fn write_last_totals(&self, stats: &SweepStats) {
        let Some(path) = &self.last_totals else {
            return;
        };
        let totals = LastTotals {
            roots: self.roots.clone(),
            files: stats.files,
            bytes: stats.bytes,
        };
        if let Err(err) =
            std::fs::write(path, serde_json::to_vec(&totals).expect("totals serialize"))
        {
            tracing::warn!(
                "{}: cannot keep the sweep totals for the next estimate: {err}",
                path.display()
            );
        }
    }
}

fn error_counts(stats: &SweepStats) -> Vec<v1::ErrorCount> {
    stats
        .errors
        .iter()
        .map(|(kind, count)| v1::ErrorCount {
            kind: kind.as_str().to_owned(),
            count: *count,
        })
        .collect()
}

pub fn finding_to_proto(finding: &Finding) -> v1::Finding {
    v1::Finding {
        path: finding.path.to_string_lossy().into_owned(),
        path_raw: raw_path_bytes(&finding.path),
        sha256: finding.sha256_hex(),
        size: finding.size,
        kind: match finding.kind {
            FindingKind::Yara => v1::FindingKind::Yara,
            FindingKind::HashIoc => v1::FindingKind::HashIoc,
        } as i32,
        rule: finding.rule.clone().unwrap_or_default(),
        namespace: finding.namespace.clone().unwrap_or_default(),
        ioc_comment: finding.ioc_comment.clone().unwrap_or_default(),
        observed_at_ms: unix_ms(finding.observed_at),
    }
}

/// The exact bytes of a path that is not valid UTF-8; empty otherwise.
fn raw_path_bytes(path: &Path) -> Vec<u8> {
    if path.to_str().is_some() {
        return Vec::new();
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        // Windows paths are UTF-16; unpaired surrogates are carried as WTF-8 bytes.
        path.as_os_str().as_encoded_bytes().to_vec()
    }
}

pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Engine;

    fn test_control() -> Arc<SweepControl> {
        Arc::new(SweepControl::new(None, mpsc::channel(1).0))
    }

    fn request(id: &str, full: bool) -> SweepRequest {
        SweepRequest {
            sweep_id: id.into(),
            full,
            splay_seconds: 0,
            deadline_ms: 0,
            origin: Origin::Collector,
        }
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(8));
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/bad\xffname"));
        assert_eq!(raw_path_bytes(path), b"/tmp/bad\xffname".to_vec());
        assert!(raw_path_bytes(Path::new("/tmp/good")).is_empty());
    }

    /// A spool in a temporary state directory (kept alive by the first value).
    fn test_spool() -> (tempfile::TempDir, Arc<Spool>) {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::AgentState::open(dir.path()).unwrap();
        let spool = Spool::open(state, crate::spool::DEFAULT_LIMIT).unwrap();
        (dir, spool)
    }

    /// Everything spooled so far, in order, acknowledged.
    fn take_all(spool: &Spool) -> Vec<Body> {
        let messages = spool.read_after(0, usize::MAX).unwrap();
        for message in &messages {
            spool.ack(message.seq).unwrap();
        }
        messages.into_iter().filter_map(|m| m.body).collect()
    }

    #[test]
    fn commands_reach_the_sweeper_and_the_inventory_reporter() {
        let (_state, spool) = test_spool();
        let (sweeps, mut sweep_rx) = mpsc::channel(4);
        let (inventory, mut inventory_rx) = mpsc::channel(1);
        let control = Arc::new(SweepControl::new(None, sweeps));
        let targets = CommandTargets {
            sweeps: control.clone(),
            inventory,
            remediation: Remediation {
                quarantine: Err("no quarantine in this test".into()),
                bodies: spool.clone(),
            },
            bundles: BundleApplier {
                bundles: Arc::new(crate::bundles::Bundles::open(
                    Path::new("/nonexistent/state"),
                    Path::new("/nonexistent/certs"),
                )),
                engine: Arc::new(crate::bundles::EngineSlot::new(Engine::new(
                    None,
                    crate::iocs::HashIocs::default(),
                ))),
                bodies: spool,
                sync: Arc::new(crate::bundles::BundleSync::default()),
                sweeps: control.clone(),
            },
        };
        let command = v1::Command {
            id: "c1".into(),
            action: Some(command::Action::StartSweep(v1::StartSweep {
                sweep_id: "s1".into(),
                full: true,
                splay_seconds: 7,
                deadline_ms: 99,
            })),
        };
        handle_command(command, &targets);
        let request = sweep_rx.try_recv().unwrap();
        assert_eq!(request.sweep_id, "s1");
        assert!(request.full);
        assert_eq!((request.splay_seconds, request.deadline_ms), (7, 99));
        assert_eq!(request.origin, Origin::Collector);
        handle_command(
            v1::Command {
                id: "c3".into(),
                action: Some(command::Action::CancelSweep(v1::CancelSweep {
                    sweep_id: "s1".into(),
                })),
            },
            &targets,
        );
        assert!(control.is_cancelled("s1"));
        for _ in 0..2 {
            handle_command(
                v1::Command {
                    id: "c2".into(),
                    action: Some(command::Action::RequestInventory(v1::RequestInventory {})),
                },
                &targets,
            );
        }
        assert!(inventory_rx.try_recv().is_ok());
        assert!(
            inventory_rx.try_recv().is_err(),
            "one pending request is enough"
        );
    }

    #[test]
    fn inventories_go_whole_first_then_as_deltas() {
        use crate::inventory::{Inventory, Package, delta::Lists};
        let package = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
            manager: "dpkg",
        };
        let first = Inventory {
            packages: (0..50).map(|i| package(&format!("p{i}"), "1")).collect(),
            ..Inventory::default()
        };
        let lists = Lists::of(&first);
        let whole = inventory_message(&first, None, lists.as_ref());
        assert_eq!(whole.packages.len(), 50);
        assert!(whole.base_digest.is_empty());
        assert_eq!(whole.digest.len(), 32);
        let mut second = first.clone();
        second.packages[0].version = "2".into();
        let delta = inventory_message(&second, lists.as_ref(), Lists::of(&second).as_ref());
        assert_eq!(delta.base_digest, whole.digest);
        assert_eq!(delta.packages.len(), 1);
        assert_eq!(delta.packages[0].version, "2");
        assert_ne!(delta.digest, whole.digest);
    }

    #[test]
    fn sweep_summary_lists_failed_paths() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), "four").unwrap();
        let rules_dir = tempfile::tempdir().unwrap();
        std::fs::write(rules_dir.path().join("r.yar"), "rule r { condition: true }").unwrap();
        let rules = crate::rules::load(&[rules_dir.path().join("r.yar")]).unwrap();
        let sweeper = Sweeper {
            engine: Arc::new(crate::bundles::EngineSlot::new(Engine::new(
                Some(rules),
                crate::iocs::HashIocs::default(),
            ))),
            roots: vec![root.path().to_path_buf()],
            options: SweepOptions {
                max_yara_size: 1,
                ..SweepOptions::default()
            },
            cache: None,
            control: test_control(),
            last_totals: None,
            bundle_sync: None,
            bundle_wait: Duration::ZERO,
        };
        let (_state, spool) = test_spool();
        sweeper.sweep_into(&request("s", false), &spool, &AtomicBool::new(false));
        let summary = take_all(&spool)
            .into_iter()
            .find_map(|body| match body {
                Body::SweepSummary(summary) => Some(summary),
                _ => None,
            })
            .unwrap();
        assert_eq!(summary.failed.len(), 1);
        assert_eq!(summary.failed[0].kind, "too_large");
        assert!(summary.failed[0].path.ends_with("/a") || summary.failed[0].path.ends_with("\\a"));
        assert!(!summary.failed_truncated);
    }

    #[test]
    fn sweep_streams_findings_then_summary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yar"),
            "rule hit { strings: $a = \"evil\" condition: $a }",
        )
        .unwrap();
        let rules = crate::rules::load(&[dir.path().join("a.yar")]).unwrap();
        let engine = Engine::new(Some(rules), crate::iocs::HashIocs::default());
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("x"), "evil").unwrap();
        std::fs::write(root.path().join("y"), "fine").unwrap();
        let state = tempfile::tempdir().unwrap();
        let sweeper = Sweeper {
            engine: Arc::new(crate::bundles::EngineSlot::new(engine)),
            roots: vec![root.path().to_path_buf()],
            options: SweepOptions::default(),
            cache: None,
            control: test_control(),
            last_totals: Some(state.path().join("last-sweep.json")),
            bundle_sync: None,
            bundle_wait: Duration::ZERO,
        };
        let (_state, spool) = test_spool();
        let stats = sweeper.sweep_into(&request("s1", false), &spool, &AtomicBool::new(false));
        assert_eq!(stats.findings, 1);
        let mut rx = take_all(&spool).into_iter();
        // Progress first (nothing done, no estimate yet), then findings, then the summary.
        let Some(Body::SweepProgress(progress)) = rx.next() else {
            panic!("expected progress first")
        };
        assert_eq!((progress.files_done, progress.files_estimate), (0, 0));
        let Some(Body::Findings(batch)) = rx.next() else {
            panic!("expected findings")
        };
        assert_eq!(batch.sweep_id, "s1");
        assert_eq!(batch.findings[0].rule, "hit");
        let Some(Body::SweepSummary(summary)) = rx.next() else {
            panic!("expected summary")
        };
        assert_eq!((summary.files, summary.findings), (2, 1));
        // The next sweep of the same roots starts with this one's totals as its estimate.
        sweeper.sweep_into(&request("s2", true), &spool, &AtomicBool::new(false));
        let mut rx = take_all(&spool).into_iter();
        let Some(Body::SweepProgress(progress)) = rx.next() else {
            panic!("expected progress first")
        };
        assert_eq!(
            (
                progress.sweep_id.as_str(),
                progress.files_estimate,
                progress.bytes_estimate
            ),
            ("s2", 2, 8)
        );
    }
}
