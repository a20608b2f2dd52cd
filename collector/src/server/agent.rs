//! The agent stream service: authenticates the agent by its certificate, records its Hello,
//! commits every message and acknowledges it, and keeps a registry of connected agents through
//! which commands reach them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hygiene_proto::v1::{
    self, agent_message::Body, agent_service_server::AgentService, collector_message,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::agents::{
    Outbound, Registry, apply_bundle_command, cancel_sweep_command, command, quarantine_command,
    restore_command, start_sweep_command,
};
use crate::certs::{CertVerdict, HostCert, Revocations};
use crate::findings::RuleSets;
use crate::identity::{self, Role};
use crate::limits::{AgentLimits, Pace, SweepFindings};
use crate::model::BundleReport;
use crate::model::{
    ConnectionReport, FindingKind, HostHello, Hotfix, InstalledPackage, InventoryDelta,
    InventoryGap, InventoryReport, NetConnection, NewFinding, OsFacts, Program, RemediationAction,
    RemediationReport, SweepProgress, SweepReport,
};
use crate::refusals::{Presented, Refusal, RefusalKind};
use crate::services::Intel;
use crate::store::{Store, StoreError};
use crate::version::Scheme;

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence longer than this many heartbeat intervals ends the stream.
const MISSED_HEARTBEATS: u32 = 3;
/// Lower bound for the silence limit, whatever interval an agent announces.
const MIN_SILENCE: Duration = Duration::from_secs(15);

pub struct AgentEndpoint {
    store: Store,
    registry: Registry,
    intel: Intel,
    stop: watch::Receiver<bool>,
    /// Connections open and how many agents may hold one; `None`: no limit.
    budget: Option<super::accept::ConnectionBudget>,
    /// When turning agents away was last logged.
    refused_logged: Arc<Mutex<Option<std::time::Instant>>>,
    limits: AgentLimits,
    sweep_findings: Arc<SweepFindings>,
    revocations: Revocations,
    /// The CA that signs agent certificates now; `None`: this collector cannot sign.
    enrollment: Option<Arc<crate::pki::Enrollment>>,
}

impl AgentEndpoint {
    pub fn new(
        store: Store,
        registry: Registry,
        intel: Intel,
        stop: watch::Receiver<bool>,
    ) -> Self {
        AgentEndpoint {
            store,
            registry,
            intel,
            stop,
            budget: None,
            refused_logged: Arc::default(),
            limits: AgentLimits::default(),
            sweep_findings: Arc::default(),
            revocations: Revocations::default(),
            enrollment: None,
        }
    }

    /// An agent whose certificate another CA signed (a CA rotation is under way) is told to
    /// renew at once.
    pub fn with_enrollment(mut self, enrollment: Option<Arc<crate::pki::Enrollment>>) -> Self {
        self.enrollment = enrollment;
        self
    }

    /// The revoked serials (shared with the TLS verifier): a stream opened on a connection
    /// made before its certificate was revoked is refused too.
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// What one agent may cost the collector (see [`crate::limits`]).
    pub fn with_limits(mut self, limits: AgentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Turns agents away while their streams would eat into the descriptors kept for the
    /// admin service.
    pub fn with_budget(mut self, budget: super::accept::ConnectionBudget) -> Self {
        self.budget = Some(budget);
        self
    }
}

#[tonic::async_trait]
impl AgentService for AgentEndpoint {
    type SessionStream = ReceiverStream<Result<v1::CollectorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // The host id comes from the certificate, never from the messages.
        let peer = identity::require(&request, Role::Agent)?;
        if let Some(budget) = self.budget.as_ref().filter(|b| b.agents_over()) {
            let mut last = self.refused_logged.lock().expect("log lock");
            if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(
                    host = %peer.name, open = budget.open(), agents = budget.agents(),
                    "agents turned away: their connections would take the descriptors kept for admins (raise the open-file limit, LimitNOFILE)"
                );
            }
            return Err(Status::resource_exhausted(
                "the collector is at its connection limit; try again later",
            ));
        }
        let peer_address = request.remote_addr();
        let leaf = request
            .peer_certs()
            .and_then(|chain| chain.first().map(|leaf| leaf.to_vec()))
            .unwrap_or_default();
        let Some(cert) = crate::certs::host_cert_of_der(&leaf) else {
            return Err(Status::unauthenticated(
                "the client certificate cannot be read",
            ));
        };
        let presented = Presented::of_der(&leaf);
        let renew_now = self
            .enrollment
            .as_ref()
            .is_some_and(|e| !e.issuer.signed_by_current_ca(&leaf));
        if self.revocations.is_revoked(&cert.serial) {
            let reason = format!("certificate {} is revoked", cert.serial);
            crate::refusals::record(Refusal {
                kind: RefusalKind::Certificate,
                peer: peer_address,
                presented: Some(presented),
                reason: reason.clone(),
            });
            return Err(Status::permission_denied(reason));
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let session = AgentSession {
            host_id: peer.name,
            peer_address,
            store: self.store.clone(),
            registry: self.registry.clone(),
            intel: self.intel.clone(),
            tx,
            limits: self.limits,
            sweep_findings: self.sweep_findings.clone(),
            cert,
            presented,
            revocations: self.revocations.clone(),
            renew_now,
        };
        tokio::spawn(session.run(inbound, self.stop.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct AgentSession {
    host_id: String,
    peer_address: Option<std::net::SocketAddr>,
    store: Store,
    registry: Registry,
    intel: Intel,
    tx: Outbound,
    limits: AgentLimits,
    sweep_findings: Arc<SweepFindings>,
    /// The certificate the stream was opened with.
    cert: HostCert,
    presented: Presented,
    revocations: Revocations,
    /// Its certificate is from a CA being rotated out: order a renewal once admitted.
    renew_now: bool,
}

/// Why a session ended, for the log.
enum End {
    /// Its certificate was revoked while it ran.
    Revoked,
    AgentClosed,
    Silent(Duration),
    Broken(Status),
    Stopping,
    Refused(Status),
    Store(StoreError),
}

impl AgentSession {
    async fn run(self, mut inbound: Streaming<v1::AgentMessage>, mut stop: watch::Receiver<bool>) {
        let host = self.host_id.clone();
        let (connection_id, silence) = match self.handshake(&mut inbound).await {
            Ok(ok) => ok,
            Err(end) => {
                self.finish_refused(end).await;
                return;
            }
        };
        tracing::info!(host = %host, peer = ?self.peer_address, "agent connected");
        self.registry.insert(&host, connection_id, self.tx.clone());
        let (session_key, cut) = self.registry.enter(&host, &self.cert.serial);
        self.recheck_botnet_lists().await;
        if let Err(err) = self.send_sweep_orders().await {
            // The next connection tries again; the stream itself is fine.
            tracing::error!(host = %host, "cannot look up the host's sweeps: {err}");
        }
        let mut pace = Pace::new(&self.limits, std::time::Instant::now());
        let mut paced_logged = false;
        let end = loop {
            let next = tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => break End::Stopping,
                _ = cut.notified() => break End::Revoked,
                next = tokio::time::timeout(silence, inbound.message()) => next,
            };
            let message = match next {
                Err(_) => break End::Silent(silence),
                Ok(Err(status)) => break End::Broken(status),
                Ok(Ok(None)) => break End::AgentClosed,
                Ok(Ok(Some(message))) => message,
            };
            if let Some(wait) = pace.take(std::time::Instant::now()) {
                if !paced_logged {
                    paced_logged = true;
                    tracing::warn!(
                        host = %host,
                        limit = self.limits.messages_per_second,
                        "the agent sends more messages per second than the limit; they are handled at that pace"
                    );
                }
                tokio::time::sleep(wait).await;
            }
            if let Err(err) = self.apply(message.body).await {
                // Not acknowledged: the agent keeps the message and resends it after reconnecting.
                let _ = self
                    .tx
                    .send(Err(Status::unavailable(
                        "collector store error; retry later",
                    )))
                    .await;
                break End::Store(err);
            }
            if !self.ack(message.seq).await {
                break End::AgentClosed;
            }
        };
        self.registry.leave(session_key);
        self.registry.remove(&host, connection_id);
        if let Err(err) = self
            .store
            .record_disconnect(&host, connection_id, now_ms())
            .await
        {
            tracing::error!(host = %host, "cannot record disconnect: {err}");
        }
        match end {
            End::AgentClosed => tracing::info!(host = %host, "agent disconnected"),
            End::Silent(limit) => {
                tracing::warn!(host = %host, "no message for {limit:?}; dropping the stream")
            }
            End::Broken(status) => tracing::info!(host = %host, "stream broke: {status}"),
            End::Stopping => tracing::info!(host = %host, "stream closed for shutdown"),
            End::Revoked => {
                tracing::warn!(host = %host, serial = %self.cert.serial, "stream closed: its certificate was revoked");
                let _ = self
                    .tx
                    .send(Err(Status::permission_denied(format!(
                        "certificate {} was revoked",
                        self.cert.serial
                    ))))
                    .await;
            }
            End::Refused(status) => tracing::warn!(host = %host, "{status}"),
            End::Store(err) => tracing::error!(host = %host, "{err}"),
        }
    }

    /// Waits for the Hello, records it and acknowledges it. Returns the connection id and the
    /// silence limit derived from the agent's heartbeat interval.
    async fn handshake(
        &self,
        inbound: &mut Streaming<v1::AgentMessage>,
    ) -> Result<(i64, Duration), End> {
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => {
                return Err(End::Refused(Status::deadline_exceeded(
                    "no hello within 30 seconds",
                )));
            }
            Ok(Err(status)) => return Err(End::Broken(status)),
            Ok(Ok(None)) => return Err(End::AgentClosed),
            Ok(Ok(Some(message))) => message,
        };
        let Some(Body::Hello(hello)) = first.body else {
            return Err(End::Refused(Status::failed_precondition(
                "the first message on a stream must be a hello",
            )));
        };
        self.admit_certificate().await?;
        if self.renew_now {
            tracing::info!(host = %self.host_id, serial = %self.cert.serial, "certificate from the CA being rotated out: renewal ordered");
            let order = command(
                "renew-certificate".into(),
                v1::command::Action::RenewCertificate(v1::RenewCertificate {}),
            );
            if self.tx.send(Ok(order)).await.is_err() {
                return Err(End::AgentClosed);
            }
        }
        let interval = Duration::from_secs(u64::from(hello.heartbeat_interval_seconds.max(1)));
        let silence = (interval * MISSED_HEARTBEATS).max(MIN_SILENCE);
        let connection_id = self
            .store
            .record_hello(&self.host_hello(hello), now_ms())
            .await
            .map_err(End::Store)?;
        if !self.ack(first.seq).await {
            return Err(End::AgentClosed);
        }
        Ok((connection_id, silence))
    }

    async fn finish_refused(&self, end: End) {
        match end {
            End::Refused(status) => {
                tracing::warn!(host = %self.host_id, "stream refused: {status}");
                let _ = self.tx.send(Err(status)).await;
            }
            End::Store(err) => {
                tracing::error!(host = %self.host_id, "{err}");
                let _ = self
                    .tx
                    .send(Err(Status::unavailable(
                        "collector store error; retry later",
                    )))
                    .await;
            }
            _ => tracing::info!(host = %self.host_id, "stream ended before hello"),
        }
    }

    /// Tells the agent, just connected, of the fleet sweeps it has yet to run and of those
    /// cancelled since it was sent them.
    async fn send_sweep_orders(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let orders = self.store.sweep_orders(&self.host_id, now).await?;
        for order in &orders.start {
            if self.tx.send(Ok(start_sweep_command(order))).await.is_err() {
                return Ok(());
            }
            tracing::info!(host = %self.host_id, sweep = %order.sweep_id, "sweep sent on connect");
            self.store
                .mark_delivered(&order.sweep_id, std::slice::from_ref(&self.host_id), now)
                .await?;
        }
        for sweep_id in &orders.cancel {
            if self
                .tx
                .send(Ok(cancel_sweep_command(sweep_id)))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        let remediation = self.store.remediation_orders(&self.host_id).await?;
        let commands = remediation
            .quarantine
            .iter()
            .map(quarantine_command)
            .chain(remediation.restore.iter().map(restore_command));
        for command in commands {
            if self.tx.send(Ok(command)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether the stream's certificate speaks for the host (see [`crate::certs`]): a newer
    /// one revokes the host's older ones (and ends their streams), an older or revoked one is
    /// refused.
    async fn admit_certificate(&self) -> Result<(), End> {
        let host = &self.host_id;
        let now = now_ms();
        let known = self.store.host_certs(host).await.map_err(End::Store)?;
        let revoked_before = self
            .store
            .certs_revoked_before(host)
            .await
            .map_err(End::Store)?;
        match crate::certs::judge(&known, revoked_before, &self.cert) {
            CertVerdict::Accept { supersedes } => {
                self.store
                    .record_host_cert(host, &self.cert, now)
                    .await
                    .map_err(End::Store)?;
                if !supersedes.is_empty() {
                    let note = format!("superseded by certificate {}", self.cert.serial);
                    let revoked = self
                        .store
                        .revoke_certs(host, Some(&supersedes), "collector", &note, now, None)
                        .await
                        .map_err(End::Store)?;
                    self.revocations.add(revoked.iter().cloned());
                    let cut = self.registry.cut(host, Some(&revoked));
                    tracing::warn!(host = %host, ?revoked, streams_closed = cut, "{note}: the older certificates are revoked");
                }
                Ok(())
            }
            CertVerdict::Refuse { revoke, reason } => {
                if revoke {
                    self.store
                        .record_host_cert(host, &self.cert, now)
                        .await
                        .map_err(End::Store)?;
                    let serial = std::slice::from_ref(&self.cert.serial);
                    let revoked = self
                        .store
                        .revoke_certs(host, Some(serial), "collector", &reason, now, None)
                        .await
                        .map_err(End::Store)?;
                    self.revocations.add(revoked);
                }
                crate::refusals::record(Refusal {
                    kind: RefusalKind::Certificate,
                    peer: self.peer_address,
                    presented: Some(self.presented.clone()),
                    reason: reason.clone(),
                });
                Err(End::Refused(Status::permission_denied(reason)))
            }
        }
    }

    /// How many of `count` findings of `sweep_id` may be stored (see [`crate::limits`]); the
    /// first time this collector sees the sweep, its tally starts from what the store holds.
    async fn admit_findings(&self, sweep_id: &str, count: usize) -> Result<usize, StoreError> {
        let host = &self.host_id;
        if !self.sweep_findings.knows(host, sweep_id) {
            let stored = self.store.count_sweep_findings(host, sweep_id).await?;
            self.sweep_findings.start(host, sweep_id, stored);
        }
        let limit = self.limits.findings_per_sweep;
        let admitted = self.sweep_findings.admit(host, sweep_id, count, limit);
        if admitted < count {
            tracing::warn!(
                host = %host, sweep = %sweep_id, limit, left_out = count - admitted,
                "findings over the per-sweep limit are counted, not stored"
            );
        }
        Ok(admitted)
    }

    async fn ack(&self, seq: u64) -> bool {
        let ack = v1::CollectorMessage {
            body: Some(collector_message::Body::Ack(v1::Ack { seq })),
        };
        self.tx.send(Ok(ack)).await.is_ok()
    }

    /// Sends the current bundle of the report's kind when the host runs another one and has
    /// not refused this one already; otherwise tells the agent there is nothing newer, so that
    /// an agent waiting for its bundles before its first sweep goes ahead.
    async fn offer_current_bundle(&self, report: &BundleReport) -> Result<(), StoreError> {
        if report.kind.is_empty() {
            return Ok(());
        }
        // The version alone first: most connects find the host current, and a bundle is MBs.
        let version = self.store.current_bundle_version(&report.kind).await?;
        let offer = match &version {
            None => false,
            Some(version) => {
                *version != report.active_version
                    && self
                        .store
                        .refused_version(&self.host_id, &report.kind)
                        .await?
                        != *version
            }
        };
        if offer && let Some(current) = self.store.current_bundle(&report.kind).await? {
            tracing::info!(host = %self.host_id, kind = %current.kind, version = %current.version, "sending the current bundle");
            if self
                .tx
                .send(Ok(apply_bundle_command(&current)))
                .await
                .is_ok()
            {
                self.store
                    .record_bundle_offer(&self.host_id, &current.kind, &current.version, now_ms())
                    .await?;
            }
            return Ok(());
        }
        let current = command(
            format!("bundle-current:{}", report.kind),
            v1::command::Action::BundleCurrent(v1::BundleCurrent {
                kind: report.kind.clone(),
                version: version.unwrap_or_default(),
            }),
        );
        let _ = self.tx.send(Ok(current)).await;
        Ok(())
    }

    /// The host against the botnet lists, after what it reported changed its addresses or
    /// sockets, or a sweep followed a lead. A failure is logged: the message itself is
    /// committed, and the next report or list import checks again.
    async fn recheck_botnet_lists(&self) {
        if self.intel.matcher().is_empty() {
            return;
        }
        if let Err(err) = self.intel.recheck_host(&self.host_id).await {
            tracing::error!(host = %self.host_id, "cannot check the host against the botnet lists: {err}");
        }
    }

    /// Commits one message's effect, then re-checks the host against the botnet lists when the
    /// message was one they depend on.
    async fn apply(&self, body: Option<Body>) -> Result<(), StoreError> {
        let recheck = matches!(
            body,
            Some(Body::Hello(_) | Body::Connections(_) | Body::SweepSummary(_))
        );
        self.commit(body).await?;
        if recheck {
            self.recheck_botnet_lists().await;
        }
        Ok(())
    }

    /// Commits one message's effect. Every effect is idempotent: agents resend what was not
    /// acknowledged.
    async fn commit(&self, body: Option<Body>) -> Result<(), StoreError> {
        let now = now_ms();
        match body {
            Some(Body::Hello(hello)) => {
                // A repeated hello on a live stream refreshes the facts.
                self.store
                    .record_hello(&self.host_hello(hello), now)
                    .await
                    .map(drop)
            }
            Some(Body::Heartbeat(_)) => self.store.touch(&self.host_id, now).await,
            Some(Body::SpoolDropped(dropped)) => {
                tracing::warn!(
                    host = %self.host_id,
                    progress = dropped.progress,
                    connections = dropped.connections,
                    inventories = dropped.inventories,
                    limit_bytes = dropped.limit_bytes,
                    "the agent's spool was full while the collector was out of reach: it dropped reports (totals since it started spooling; findings and summaries are never dropped)"
                );
                let dropped = crate::model::SpoolDropped {
                    progress: dropped.progress,
                    connections: dropped.connections,
                    inventories: dropped.inventories,
                    last_dropped_ms: (dropped.last_dropped_at_ms > 0)
                        .then_some(dropped.last_dropped_at_ms),
                };
                self.store
                    .record_spool_dropped(&self.host_id, &dropped)
                    .await
            }
            Some(Body::Findings(batch)) => {
                let sets = (batch.rules_version.as_str(), batch.iocs_version.as_str());
                let mut findings: Vec<NewFinding> = batch
                    .findings
                    .into_iter()
                    .filter_map(|f| new_finding(&batch.sweep_id, sets, f, &self.host_id))
                    .collect();
                let admitted = self.admit_findings(&batch.sweep_id, findings.len()).await?;
                findings.truncate(admitted);
                self.store
                    .record_findings(&self.host_id, &findings, now)
                    .await
            }
            Some(Body::SweepProgress(p)) => {
                let progress = SweepProgress {
                    sweep_id: p.sweep_id,
                    started_at_ms: p.started_at_ms,
                    files_done: p.files_done,
                    bytes_done: p.bytes_done,
                    files_estimate: p.files_estimate,
                    bytes_estimate: p.bytes_estimate,
                    findings: p.findings,
                    errors: p.errors.into_iter().map(|e| (e.kind, e.count)).collect(),
                };
                self.store
                    .record_sweep_progress(&self.host_id, &progress, now)
                    .await
            }
            Some(Body::Inventory(inventory)) => {
                for gap in &inventory.partial {
                    tracing::warn!(host = %self.host_id, "partial inventory: {}: {}", gap.source, gap.reason);
                }
                let report = inventory_report(inventory);
                let applied = self
                    .store
                    .record_inventory(&self.host_id, &report, now)
                    .await?;
                if !applied {
                    tracing::info!(host = %self.host_id, "inventory delta does not fit the stored lists; asking for a complete one");
                    let request = command(
                        format!("inventory-{now}"),
                        v1::command::Action::RequestInventory(v1::RequestInventory {}),
                    );
                    // A closed stream loses nothing: the next connection's first inventory is
                    // complete.
                    let _ = self.tx.send(Ok(request)).await;
                }
                Ok(())
            }
            Some(Body::Connections(report)) => {
                let report = connection_report(report);
                if let Some(reason) = &report.partial_reason {
                    tracing::warn!(host = %self.host_id, "partial connection list: {reason}");
                }
                self.store
                    .record_connections(&self.host_id, &report, now)
                    .await
            }
            Some(Body::SweepSummary(summary)) => {
                let tally = self.sweep_findings.finish(&self.host_id, &summary.sweep_id);
                let over_limit = crate::limits::over_limit_failure(
                    summary.findings,
                    tally,
                    self.limits.findings_per_sweep,
                );
                let mut report = SweepReport {
                    sweep_id: summary.sweep_id,
                    started_at_ms: summary.started_at_ms,
                    finished_at_ms: summary.finished_at_ms,
                    files: summary.files,
                    bytes: summary.bytes,
                    findings: summary.findings,
                    errors: summary
                        .errors
                        .into_iter()
                        .map(|e| (e.kind, e.count))
                        .collect(),
                    roots: summary.roots,
                    failures: summary
                        .failed
                        .into_iter()
                        .map(|f| crate::model::FailedPath {
                            path: f.path,
                            kind: f.kind,
                            message: f.message,
                        })
                        .collect(),
                    failures_truncated: summary.failed_truncated,
                    failure: summary.failure,
                    sets: RuleSets {
                        rules_version: summary.rules_version,
                        iocs_version: summary.iocs_version,
                        rule_count: summary.rule_count,
                        ioc_count: summary.ioc_count,
                    },
                };
                if let Some(failure) = over_limit
                    && report.failure.is_empty()
                {
                    tracing::warn!(host = %self.host_id, sweep = %report.sweep_id, "{failure}");
                    report.failure = failure;
                }
                tracing::info!(host = %self.host_id, sweep = %report.sweep_id, files = report.files, findings = report.findings, "sweep reported");
                self.store
                    .record_sweep_report(&self.host_id, &report, now)
                    .await
            }
            Some(Body::BundleStatus(status)) => {
                let report = BundleReport {
                    kind: status.kind,
                    version: status.version,
                    ok: status.ok,
                    reason: status.reason,
                    active_version: status.active_version,
                    active_since_ms: status.active_since_ms,
                };
                if report.ok {
                    tracing::debug!(host = %self.host_id, kind = %report.kind, version = %report.active_version, "bundle status");
                } else {
                    tracing::warn!(host = %self.host_id, kind = %report.kind, version = %report.version, "bundle refused: {}", report.reason);
                }
                self.store
                    .record_bundle_report(&self.host_id, &report, now)
                    .await?;
                self.offer_current_bundle(&report).await
            }
            Some(Body::Remediation(r)) => {
                let action = match r.action.as_str() {
                    "quarantine" => RemediationAction::Quarantine,
                    "restore" => RemediationAction::Restore,
                    other => {
                        tracing::warn!(host = %self.host_id, finding = r.finding_id, "remediation report with unknown action {other:?} ignored");
                        return Ok(());
                    }
                };
                if r.ok {
                    tracing::info!(host = %self.host_id, finding = r.finding_id, action = %r.action, path = %r.path, "remediation done");
                } else {
                    tracing::warn!(host = %self.host_id, finding = r.finding_id, action = %r.action, path = %r.path, "remediation refused: {}", r.reason);
                }
                let report = RemediationReport {
                    finding_id: r.finding_id,
                    action,
                    ok: r.ok,
                    reason: r.reason,
                    quarantine_id: r.quarantine_id,
                    path: r.path,
                };
                self.store
                    .record_remediation(&self.host_id, &report, now)
                    .await
            }
            None => {
                tracing::warn!(host = %self.host_id, "message with an unknown body acknowledged and ignored (newer agent?)");
                Ok(())
            }
        }
    }

    fn host_hello(&self, hello: v1::Hello) -> HostHello {
        let facts = hello.facts.unwrap_or_default();
        HostHello {
            host_id: self.host_id.clone(),
            hostname: facts.hostname,
            os_name: facts.os_name,
            os_version: facts.os_version,
            kernel_version: facts.kernel_version,
            arch: facts.arch,
            ip_addresses: facts.ip_addresses,
            agent_version: hello.agent_version,
            boot_time: facts.boot_time,
            peer_address: self.peer_address.map(|a| a.to_string()),
        }
    }
}

/// Converts a reported finding; one with an unknown kind or a malformed hash is logged and
/// dropped rather than stored half-understood.
fn new_finding(
    sweep_id: &str,
    (rules_version, iocs_version): (&str, &str),
    f: v1::Finding,
    host_id: &str,
) -> Option<NewFinding> {
    let kind = match v1::FindingKind::try_from(f.kind) {
        Ok(v1::FindingKind::Yara) => FindingKind::Yara,
        Ok(v1::FindingKind::HashIoc) => FindingKind::HashIoc,
        _ => {
            tracing::warn!(host = %host_id, path = %f.path, kind = f.kind, "finding of unknown kind ignored");
            return None;
        }
    };
    let sha256 = f.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        tracing::warn!(host = %host_id, path = %f.path, "finding with malformed sha256 {:?} ignored", f.sha256);
        return None;
    }
    Some(NewFinding {
        sweep_id: sweep_id.to_owned(),
        kind,
        path: f.path,
        path_raw: (!f.path_raw.is_empty()).then_some(f.path_raw),
        sha256,
        size: f.size,
        rule: f.rule,
        namespace: f.namespace,
        ioc_comment: f.ioc_comment,
        observed_at_ms: f.observed_at_ms,
        rules_version: rules_version.to_owned(),
        iocs_version: iocs_version.to_owned(),
    })
}

/// The inventory as the store takes it: a list the agent names in `partial` is `None`, so
/// that the store keeps the list it had rather than take a part for the whole.
pub fn inventory_report(inventory: v1::Inventory) -> InventoryReport {
    let gap = |source: &str| inventory.partial.iter().any(|p| p.source == source);
    let (packages_gap, hotfixes_gap, programs_gap) =
        (gap("packages"), gap("hotfixes"), gap("programs"));
    let os = inventory.os.unwrap_or_default();
    let known = |seconds: i64| (seconds != 0).then_some(seconds);
    InventoryReport {
        collected_ms: inventory.collected_at_ms,
        os: OsFacts {
            family: os.family,
            id: os.id,
            version_id: os.version_id,
            pretty_name: os.pretty_name,
            kernel: os.kernel,
            arch: os.arch,
            boot_time: known(os.boot_time),
            last_package_change: known(os.last_package_change),
            product_name: os.product_name,
            edition: os.edition,
            display_version: os.display_version,
            build: os.build,
            installation_type: os.installation_type,
        },
        packages: (!packages_gap).then(|| {
            inventory
                .packages
                .into_iter()
                .map(|p| InstalledPackage {
                    name: p.name,
                    version: p.version,
                    arch: p.arch,
                    source: Some(p.source).filter(|s| !s.is_empty()),
                    manager: Scheme::parse(&p.manager),
                })
                .collect()
        }),
        hotfixes: (!hotfixes_gap).then(|| {
            inventory
                .hotfixes
                .into_iter()
                .filter_map(|h| {
                    Some(Hotfix {
                        kb: crate::model::normalise_kb(&h.kb)?,
                        title: h.title,
                        installed_on: Some(h.installed_on).filter(|s| !s.is_empty()),
                    })
                })
                .collect()
        }),
        programs: (!programs_gap).then(|| {
            inventory
                .programs
                .into_iter()
                .map(|p| Program {
                    name: p.name,
                    version: p.version,
                    publisher: p.publisher,
                })
                .collect()
        }),
        gaps: inventory
            .partial
            .into_iter()
            .map(|p| InventoryGap {
                source: p.source,
                reason: p.reason,
            })
            .collect(),
        digest: Some(inventory.digest).filter(|d| !d.is_empty()),
        delta: (!inventory.base_digest.is_empty()).then(|| InventoryDelta {
            base_digest: inventory.base_digest,
            removed_packages: inventory
                .removed_packages
                .into_iter()
                .map(|p| (p.name, p.arch))
                .collect(),
            removed_hotfixes: inventory
                .removed_hotfixes
                .into_iter()
                .filter_map(|h| crate::model::normalise_kb(&h.kb))
                .collect(),
            removed_programs: inventory
                .removed_programs
                .into_iter()
                .map(|p| Program {
                    name: p.name,
                    version: p.version,
                    publisher: p.publisher,
                })
                .collect(),
        }),
    }
}

/// The socket list as the store takes it; rows with impossible ports are dropped.
pub fn connection_report(report: v1::Connections) -> ConnectionReport {
    ConnectionReport {
        collected_ms: report.collected_at_ms,
        connections: report
            .connections
            .into_iter()
            .filter_map(|c| {
                Some(NetConnection {
                    proto: c.proto,
                    local_addr: c.local_addr,
                    local_port: u16::try_from(c.local_port).ok()?,
                    remote_addr: c.remote_addr,
                    remote_port: u16::try_from(c.remote_port).ok()?,
                    state: c.state,
                    pid: (c.pid != 0).then_some(c.pid),
                    process: Some(c.process).filter(|p| !p.is_empty()),
                })
            })
            .collect(),
        partial_reason: Some(report.partial_reason).filter(|r| !r.is_empty()),
    }
}

pub use hygiene_proto::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_findings_are_dropped() {
        let good = v1::Finding {
            path: "/x".into(),
            sha256: "AB".repeat(32),
            kind: v1::FindingKind::Yara as i32,
            rule: "r".into(),
            ..Default::default()
        };
        let converted = new_finding("s", ("", ""), good.clone(), "h").unwrap();
        assert_eq!(converted.sha256, "ab".repeat(32));
        assert_eq!(converted.path_raw, None);
        assert!(
            new_finding(
                "s",
                ("", ""),
                v1::Finding {
                    sha256: "xyz".into(),
                    ..good.clone()
                },
                "h"
            )
            .is_none()
        );
        assert!(
            new_finding(
                "s",
                ("", ""),
                v1::Finding {
                    kind: 0,
                    ..good.clone()
                },
                "h"
            )
            .is_none()
        );
        assert!(new_finding("s", ("", ""), v1::Finding { kind: 99, ..good }, "h").is_none());
    }
}
