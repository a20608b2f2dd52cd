//! Simulated agents for load tests (`hygiene-loadgen`): each issues itself an agent certificate
//! from the PKI directory's CA, holds one real mTLS stream to the collector like a real agent,
//! sends its hello, heartbeats and optionally an inventory, and answers the collector's orders
//! with synthetic results: a sweep with progress and a clean summary, a quarantine or restore
//! with success, an inventory request with the inventory again.
//!
//! When every simulated agent has received a sweep order, one JSON line goes to stdout:
//! `{"sweep_id", "agents", "first_ms", "last_ms"}` (Unix ms of the first and last receipt), so
//! that a benchmark can tell how long the order took to reach the whole fleet.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hygiene_proto::v1::{self, agent_message::Body, collector_message, command};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// One inventory as `hygiene-agent inventory --format json` prints it, with an optional
/// `host_id` naming the simulated host it belongs to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InventoryJson {
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(default)]
    pub os: OsJson,
    #[serde(default)]
    pub packages: Vec<PackageJson>,
    #[serde(default)]
    pub hotfixes: Vec<HotfixJson>,
    #[serde(default)]
    pub programs: Vec<ProgramJson>,
    #[serde(default)]
    pub partial: Vec<PartialJson>,
    /// Sent as the host's socket list after the inventory when not empty.
    #[serde(default)]
    pub connections: Vec<ConnectionJson>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionJson {
    pub proto: String,
    pub local_addr: String,
    pub local_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub process: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OsJson {
    pub family: String,
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub kernel: String,
    pub arch: String,
    pub boot_time: Option<i64>,
    pub last_package_change: Option<i64>,
    pub product_name: String,
    pub edition: String,
    pub display_version: String,
    pub build: String,
    pub installation_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PackageJson {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub manager: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HotfixJson {
    pub kb: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub installed_on: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProgramJson {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub publisher: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartialJson {
    pub source: String,
    pub reason: String,
}

/// Reads `--inventory FILE.json`: one inventory object, or an array of them.
pub fn read_inventories(path: &Path) -> anyhow::Result<Vec<InventoryJson>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the inventory", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let inventories = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                serde_json::from_value(item)
                    .with_context(|| format!("{}: inventory {i}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        object => vec![
            serde_json::from_value(object)
                .with_context(|| format!("{}: not an inventory", path.display()))?,
        ],
    };
    if inventories.is_empty() {
        bail!("{}: an empty array holds no inventory", path.display());
    }
    Ok(inventories)
}

impl InventoryJson {
    /// The socket list, when the inventory holds one.
    pub fn connections_proto(&self) -> Option<v1::Connections> {
        (!self.connections.is_empty()).then(|| v1::Connections {
            collected_at_ms: now_ms(),
            connections: self
                .connections
                .iter()
                .map(|c| v1::Connection {
                    proto: c.proto.clone(),
                    local_addr: c.local_addr.clone(),
                    local_port: c.local_port.into(),
                    remote_addr: c.remote_addr.clone(),
                    remote_port: c.remote_port.into(),
                    state: c.state.clone(),
                    pid: c.pid.unwrap_or(0),
                    process: c.process.clone().unwrap_or_default(),
                })
                .collect(),
            partial_reason: String::new(),
        })
    }

    pub fn to_proto(&self) -> v1::Inventory {
        let os = &self.os;
        v1::Inventory {
            collected_at_ms: now_ms(),
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
            packages: self
                .packages
                .iter()
                .map(|p| v1::Package {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    source: p.source.clone().unwrap_or_default(),
                    manager: p.manager.clone(),
                })
                .collect(),
            hotfixes: self
                .hotfixes
                .iter()
                .map(|h| v1::Hotfix {
                    kb: h.kb.clone(),
                    title: h.title.clone(),
                    installed_on: h.installed_on.clone().unwrap_or_default(),
                })
                .collect(),
            programs: self
                .programs
                .iter()
                .map(|p| v1::Program {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    publisher: p.publisher.clone(),
                })
                .collect(),
            partial: self
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
}

/// What the load generator is asked to run.
pub struct LoadSpec {
    pub collector: String,
    pub agents: usize,
    /// The number of the first simulated host (`sim-NNNNN`): several load generators, on
    /// several collector replicas, simulate distinct hosts.
    pub first: usize,
    /// Inventories: one for every host (a single object), or one per host with its host id.
    pub inventories: Vec<InventoryJson>,
    pub heartbeat: Duration,
}

/// The simulated host ids: `sim-00001`..., or the inventories' own ids where they carry one.
pub fn host_ids(spec: &LoadSpec) -> Vec<String> {
    (0..spec.agents)
        .map(|i| {
            spec.inventories
                .get(i)
                .filter(|_| spec.inventories.len() > 1)
                .and_then(|inv| inv.host_id.clone())
                .unwrap_or_else(|| format!("sim-{:05}", spec.first + i))
        })
        .collect()
}

/// Receipts of sweep orders: per sweep id, how many agents got it, first and last time.
#[derive(Default)]
struct Receipts {
    sweeps: Mutex<HashMap<String, (usize, i64, i64)>>,
}

impl Receipts {
    fn record(&self, sweep_id: &str, agents: usize) {
        let now = now_ms();
        let mut sweeps = self.sweeps.lock().expect("receipts lock");
        let entry = sweeps.entry(sweep_id.to_owned()).or_insert((0, now, now));
        entry.0 += 1;
        entry.1 = entry.1.min(now);
        entry.2 = entry.2.max(now);
        if entry.0 == agents {
            println!(
                "{}",
                serde_json::json!({
                    "sweep_id": sweep_id,
                    "agents": agents,
                    "first_ms": entry.1,
                    "last_ms": entry.2,
                })
            );
        }
    }
}

/// Runs the simulated agents until `stop` resolves. Agents whose connection fails retry; the
/// count of agents connected at least once is logged to stderr.
pub async fn run(
    spec: LoadSpec,
    pki_dir: &Path,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let issuer = hygiene_collector::pki::AgentIssuer::load(pki_dir)
        .with_context(|| format!("{}: cannot issue agent certificates", pki_dir.display()))?;
    let ids = host_ids(&spec);
    let receipts = Arc::new(Receipts::default());
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, host_id) in ids.iter().enumerate() {
        let (cert, key) = issuer
            .issue(host_id)
            .with_context(|| format!("cannot issue a certificate for {host_id}"))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(issuer.ca_pem()))
            .identity(Identity::from_pem(cert, key));
        let endpoint = Endpoint::from_shared(spec.collector.clone())
            .with_context(|| format!("collector address {:?}", spec.collector))?
            .tls_config(tls)
            .context("TLS configuration")?
            .connect_timeout(Duration::from_secs(30));
        let source = match spec.inventories.len() {
            0 => None,
            1 => Some(&spec.inventories[0]),
            _ => spec.inventories.get(i),
        };
        let inventory = source.map(InventoryJson::to_proto);
        let connections = source.and_then(InventoryJson::connections_proto);
        let agent = SimAgent {
            host_id: host_id.clone(),
            index: i,
            agents: spec.agents,
            inventory,
            connections,
            heartbeat: spec.heartbeat,
            receipts: receipts.clone(),
            connected: connected.clone(),
            sets: Arc::new(std::sync::Mutex::new([
                "local:loadgen".to_owned(),
                String::new(),
            ])),
        };
        tasks.spawn(agent.run(endpoint));
    }
    let agents = spec.agents;
    let report = connected.clone();
    let progress = tokio::spawn(async move {
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = report.load(std::sync::atomic::Ordering::Relaxed);
            if now != last {
                eprintln!("hygiene-loadgen: {now} of {agents} agents connected");
                last = now;
            }
        }
    });
    stop.await;
    progress.abort();
    tasks.abort_all();
    Ok(())
}

struct SimAgent {
    host_id: String,
    index: usize,
    agents: usize,
    inventory: Option<v1::Inventory>,
    connections: Option<v1::Connections>,
    heartbeat: Duration,
    receipts: Arc<Receipts>,
    connected: Arc<std::sync::atomic::AtomicUsize>,
    /// The rule and IOC bundle versions the simulated agent "runs" (as it reports them in its
    /// sweep summaries): its own files until a bundle comes.
    sets: Arc<std::sync::Mutex<[String; 2]>>,
}

/// Rules a simulated agent claims to have loaded.
const SIMULATED_RULES: u64 = 100;

impl SimAgent {
    async fn run(self, endpoint: Endpoint) {
        let mut ever_connected = false;
        let mut seq = 0u64;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.session(&endpoint, &mut seq, &mut ever_connected).await {
                Ok(()) => {}
                Err(err) => eprintln!("hygiene-loadgen: {}: {err:#}", self.host_id),
            }
            let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
            tokio::time::sleep(backoff / 2 + jitter / 2).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn session(
        &self,
        endpoint: &Endpoint,
        seq: &mut u64,
        ever_connected: &mut bool,
    ) -> anyhow::Result<()> {
        let channel = endpoint.connect().await.context("cannot connect")?;
        // The real agent's limit: a simulated host takes the bundles a real one does.
        let mut client = v1::agent_service_client::AgentServiceClient::new(channel)
            .max_decoding_message_size(hygiene_proto::MAX_AGENT_COMMAND_SIZE);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut next = |body: Body| {
            *seq += 1;
            v1::AgentMessage {
                seq: *seq,
                body: Some(body),
            }
        };
        let _ = tx.send(next(Body::Hello(v1::Hello {
            facts: Some(v1::HostFacts {
                hostname: self.host_id.clone(),
                os_name: "Linux".into(),
                os_version: "simulated".into(),
                kernel_version: "6.1.0-sim".into(),
                arch: "x86_64".into(),
                // Documentation addresses (RFC 5737): facts only, nothing is sent there.
                ip_addresses: vec![format!("198.51.100.{}", self.index % 254 + 1)],
                boot_time: 0,
            }),
            agent_version: "loadgen".into(),
            heartbeat_interval_seconds: self.heartbeat.as_secs().max(1) as u32,
        })));
        if let Some(inventory) = &self.inventory {
            let mut inventory = inventory.clone();
            inventory.collected_at_ms = now_ms();
            let _ = tx.send(next(Body::Inventory(inventory)));
        }
        if let Some(connections) = &self.connections {
            let mut connections = connections.clone();
            connections.collected_at_ms = now_ms();
            let _ = tx.send(next(Body::Connections(connections)));
        }
        let response = client
            .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .context("the collector refused the stream")?;
        if !*ever_connected {
            *ever_connected = true;
            self.connected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut inbound = response.into_inner();
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Body>();
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let Some(message) = message.context("stream broke")? else {
                        bail!("the collector closed the stream");
                    };
                    let Some(collector_message::Body::Command(command)) = message.body else {
                        continue;
                    };
                    self.obey(command, &done_tx);
                }
                body = done_rx.recv() => {
                    if let Some(body) = body {
                        let _ = tx.send(next(body));
                    }
                }
                _ = heartbeat.tick() => {
                    let _ = tx.send(next(Body::Heartbeat(v1::Heartbeat { sent_at_ms: now_ms() })));
                }
            }
        }
    }

    /// A clean host's sweep: progress at once (within the splay), a summary 200 ms later.
    fn simulate_sweep(&self, sweep_id: String, splay: Duration, out: &mpsc::UnboundedSender<Body>) {
        let out = out.clone();
        let sets = self.sets.clone();
        tokio::spawn(async move {
            let delay = rand::rng().random_range(Duration::ZERO..=splay);
            tokio::time::sleep(delay).await;
            let started = now_ms();
            let _ = out.send(Body::SweepProgress(v1::SweepProgress {
                sweep_id: sweep_id.clone(),
                started_at_ms: started,
                files_estimate: 1000,
                bytes_estimate: 10 << 20,
                ..v1::SweepProgress::default()
            }));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let [rules_version, iocs_version] = sets.lock().expect("sets lock").clone();
            let _ = out.send(Body::SweepSummary(v1::SweepSummary {
                sweep_id,
                started_at_ms: started,
                finished_at_ms: now_ms(),
                files: 1000,
                bytes: 10 << 20,
                roots: vec!["/".into()],
                rule_count: Some(SIMULATED_RULES),
                ioc_count: Some(u64::from(!iocs_version.is_empty())),
                rules_version,
                iocs_version,
                ..v1::SweepSummary::default()
            }));
        });
    }

    /// Answers an order with synthetic results, as a clean host would.
    fn obey(&self, command: v1::Command, out: &mpsc::UnboundedSender<Body>) {
        match command.action {
            Some(command::Action::StartSweep(start)) => {
                self.receipts.record(&start.sweep_id, self.agents);
                let splay = Duration::from_secs(start.splay_seconds.into());
                self.simulate_sweep(start.sweep_id, splay, out);
            }
            Some(command::Action::QuarantineFile(q)) => {
                let _ = out.send(Body::Remediation(v1::RemediationResult {
                    finding_id: q.finding_id,
                    action: "quarantine".into(),
                    ok: true,
                    quarantine_id: format!("sim-{}", q.finding_id),
                    path: q.path,
                    ..v1::RemediationResult::default()
                }));
            }
            Some(command::Action::RestoreFile(r)) => {
                let _ = out.send(Body::Remediation(v1::RemediationResult {
                    finding_id: r.finding_id,
                    action: "restore".into(),
                    ok: true,
                    quarantine_id: r.quarantine_id,
                    ..v1::RemediationResult::default()
                }));
            }
            Some(command::Action::RequestInventory(_)) => {
                if let Some(inventory) = &self.inventory {
                    let mut inventory = inventory.clone();
                    inventory.collected_at_ms = now_ms();
                    let _ = out.send(Body::Inventory(inventory));
                }
            }
            Some(command::Action::ApplyBundle(order)) => {
                // Taken as it comes (a simulated host checks no signature).
                let payload = order
                    .bundle
                    .and_then(|b| {
                        <v1::BundlePayload as prost::Message>::decode(b.payload.as_slice()).ok()
                    })
                    .unwrap_or_default();
                let index = usize::from(payload.kind == hygiene_proto::bundle::IOCS);
                let changed = {
                    let mut sets = self.sets.lock().expect("sets lock");
                    let changed = sets[index] != payload.version;
                    sets[index] = payload.version.clone();
                    changed
                };
                if changed {
                    // As a real agent does: a new bundle sets off a rescan under its id.
                    let id =
                        hygiene_proto::bundle::rescan_sweep_id(&payload.kind, &payload.version);
                    self.simulate_sweep(id, Duration::ZERO, out);
                }
                let _ = out.send(Body::BundleStatus(v1::BundleStatus {
                    kind: payload.kind,
                    version: payload.version.clone(),
                    name: payload.name,
                    ok: true,
                    reason: String::new(),
                    active_version: payload.version,
                    active_since_ms: now_ms(),
                }));
            }
            // Simulated hosts keep the certificates the load generator issued them.
            Some(
                command::Action::CancelSweep(_)
                | command::Action::BundleCurrent(_)
                | command::Action::RenewCertificate(_),
            )
            | None => {}
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventories_read_as_one_object_or_an_array_with_host_ids() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.json");
        std::fs::write(
            &one,
            r#"{"os": {"family": "linux", "boot_time": null}, "packages": [{"name": "bash", "version": "5.2", "arch": "amd64", "source": null, "manager": "dpkg"}], "hotfixes": [], "programs": [], "connections": [], "partial": []}"#,
        )
        .unwrap();
        let inventories = read_inventories(&one).unwrap();
        assert_eq!(inventories.len(), 1);
        assert_eq!(inventories[0].to_proto().packages[0].manager, "dpkg");
        let spec = LoadSpec {
            first: 1,
            collector: String::new(),
            agents: 3,
            inventories,
            heartbeat: Duration::from_secs(30),
        };
        assert_eq!(host_ids(&spec), ["sim-00001", "sim-00002", "sim-00003"]);

        let many = dir.path().join("many.json");
        std::fs::write(
            &many,
            r#"[{"host_id": "win-01", "os": {"family": "windows", "build": "10.0.19045.3930"}, "hotfixes": [{"kb": "KB5034441", "title": "", "installed_on": null}]}, {"host_id": "lin-02"}]"#,
        )
        .unwrap();
        let spec = LoadSpec {
            first: 1,
            inventories: read_inventories(&many).unwrap(),
            agents: 3,
            ..spec
        };
        assert_eq!(host_ids(&spec), ["win-01", "lin-02", "sim-00003"]);
        assert_eq!(spec.inventories[0].to_proto().hotfixes[0].kb, "KB5034441");

        for (name, text) in [
            ("bad.json", "{"),
            ("empty.json", "[]"),
            ("wrong.json", "[1]"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = read_inventories(&path).unwrap_err();
            assert!(format!("{err:#}").contains(name), "{err:#}");
        }
    }
}
