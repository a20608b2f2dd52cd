//! The agents connected to this replica and the orders sent to them: the registry of live
//! streams, the commands (sweep, cancel, quarantine, restore, bundle) as the agents read them,
//! and the paced rollout of a bundle. The agent endpoint fills the registry; services send
//! through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hygiene_proto::now_ms;
use hygiene_proto::v1::{self, collector_message};
use tokio::sync::mpsc;
use tonic::Status;

use crate::findings::FindingState;
use crate::model::{BundleRecord, Finding};
use crate::store::Store;
use crate::sweep::SweepOrder;

pub(crate) type Outbound = mpsc::Sender<Result<v1::CollectorMessage, Status>>;

/// Connected agents by host id, with the sender of their stream; commands travel through it.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, (i64, Outbound)>>>,
    /// Every live session with the certificate it was opened with, so that revoking the
    /// certificate ends it (a host may have two: the newer and the one it supersedes).
    sessions: Arc<Mutex<HashMap<u64, LiveSession>>>,
    next_session: Arc<std::sync::atomic::AtomicU64>,
}

struct LiveSession {
    host_id: String,
    serial: String,
    cut: Arc<tokio::sync::Notify>,
}

impl Registry {
    pub(crate) fn insert(&self, host_id: &str, connection_id: i64, tx: Outbound) {
        self.inner
            .lock()
            .expect("registry lock")
            .insert(host_id.to_owned(), (connection_id, tx));
    }

    /// Removes the entry only if it still belongs to this connection.
    pub(crate) fn remove(&self, host_id: &str, connection_id: i64) {
        let mut map = self.inner.lock().expect("registry lock");
        if map.get(host_id).is_some_and(|(id, _)| *id == connection_id) {
            map.remove(host_id);
        }
    }

    /// Puts `message` on the host's stream; `false` when the host has no live stream. A full
    /// stream buffer does not hold the caller up: the message waits in a task of its own.
    pub fn send(&self, host_id: &str, message: v1::CollectorMessage) -> bool {
        let Some(tx) = self
            .inner
            .lock()
            .expect("registry lock")
            .get(host_id)
            .map(|(_, tx)| tx.clone())
        else {
            return false;
        };
        match tx.try_send(Ok(message)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => {
                tokio::spawn(async move {
                    let _ = tx.send(message).await;
                });
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Registry {
    /// Registers a live session of `host_id` opened with certificate `serial`: its key for
    /// [`Self::leave`], and what [`Self::cut`] notifies.
    pub(crate) fn enter(&self, host_id: &str, serial: &str) -> (u64, Arc<tokio::sync::Notify>) {
        let key = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cut = Arc::new(tokio::sync::Notify::new());
        self.sessions.lock().expect("sessions lock").insert(
            key,
            LiveSession {
                host_id: host_id.to_owned(),
                serial: serial.to_owned(),
                cut: cut.clone(),
            },
        );
        (key, cut)
    }

    pub(crate) fn leave(&self, key: u64) {
        self.sessions.lock().expect("sessions lock").remove(&key);
    }

    /// Ends the live sessions of `host_id` opened with one of `serials` (all, with `None`);
    /// how many.
    pub fn cut(&self, host_id: &str, serials: Option<&[String]>) -> usize {
        let sessions = self.sessions.lock().expect("sessions lock");
        let mut cut = 0;
        for session in sessions.values() {
            if session.host_id == host_id
                && serials.is_none_or(|serials| serials.contains(&session.serial))
            {
                // A permit is kept if the session is not waiting right now.
                session.cut.notify_one();
                cut += 1;
            }
        }
        cut
    }

    /// The hosts with a live stream.
    pub fn connected(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .inner
            .lock()
            .expect("registry lock")
            .keys()
            .cloned()
            .collect();
        hosts.sort();
        hosts
    }
}

/// How many agents get a new bundle at once: each holds an encoded copy (signature-base is
/// 7 MB) until its stream has sent it.
pub const ROLLOUT_AT_ONCE: usize = 16;
/// How long a rollout waits for an agent's answer before it moves on.
const ROLLOUT_WAIT: Duration = Duration::from_secs(60);

/// Sends `bundle` to `hosts`, at most [`ROLLOUT_AT_ONCE`] waiting for an answer at a time:
/// the next host gets it as soon as one of those has answered (applied or refused), gone
/// offline or had a minute, so a host that never answers holds up one place, not the rollout.
/// Agents that connect later get it on connect.
pub async fn roll_out(store: Store, registry: Registry, bundle: BundleRecord, hosts: Vec<String>) {
    let message = apply_bundle_command(&bundle);
    let (mut sent, mut answered, mut silent) = (0usize, 0usize, 0usize);
    let mut queue = hosts.iter();
    let mut waiting: Vec<(&String, tokio::time::Instant)> = Vec::new();
    loop {
        while waiting.len() < ROLLOUT_AT_ONCE {
            let Some(host) = queue.next() else { break };
            if !registry.send(host, message.clone()) {
                continue;
            }
            sent += 1;
            waiting.push((host, tokio::time::Instant::now() + ROLLOUT_WAIT));
            if let Err(err) = store
                .record_bundle_offer(host, &bundle.kind, &bundle.version, now_ms())
                .await
            {
                tracing::error!(host = %host, "rollout of {} {}: {err}", bundle.kind, bundle.version);
            }
        }
        if waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Only the waiting hosts are looked up: a 10,000-host fleet is asked about 16 hosts
        // per tick, not about every host.
        let connected = registry.connected();
        let now = tokio::time::Instant::now();
        let mut still = Vec::with_capacity(waiting.len());
        for (host, deadline) in waiting {
            match store
                .answered_bundle(host, &bundle.kind, &bundle.version)
                .await
            {
                Ok(true) => answered += 1,
                Ok(false) if !connected.contains(host) => {}
                Ok(false) if now >= deadline => {
                    silent += 1;
                    tracing::warn!(
                        host = %host, kind = %bundle.kind, version = %bundle.version,
                        "no answer to the bundle within {ROLLOUT_WAIT:?}: the agent is busy, or its stream could not take the bundle; the rollout goes on without it"
                    );
                }
                Ok(false) => still.push((host, deadline)),
                Err(err) => {
                    tracing::error!("rollout of {} {}: {err}", bundle.kind, bundle.version);
                    still.push((host, deadline));
                }
            }
        }
        waiting = still;
    }
    tracing::info!(kind = %bundle.kind, version = %bundle.version, sent, answered, silent, "rollout finished");
}

/// The command that starts a sweep on an agent.
pub fn start_sweep_command(order: &SweepOrder) -> v1::CollectorMessage {
    command(
        format!("start:{}", order.sweep_id),
        v1::command::Action::StartSweep(v1::StartSweep {
            sweep_id: order.sweep_id.clone(),
            full: order.full,
            splay_seconds: order.splay_seconds,
            deadline_ms: order.deadline_ms,
        }),
    )
}

/// The command that stops a sweep on an agent (or keeps it from starting).
pub fn cancel_sweep_command(sweep_id: &str) -> v1::CollectorMessage {
    command(
        format!("cancel:{sweep_id}"),
        v1::command::Action::CancelSweep(v1::CancelSweep {
            sweep_id: sweep_id.to_owned(),
        }),
    )
}

/// The command that has an agent quarantine a finding's file.
pub fn quarantine_command(finding: &Finding) -> v1::CollectorMessage {
    command(
        format!("quarantine:{}", finding.id),
        v1::command::Action::QuarantineFile(v1::QuarantineFile {
            finding_id: finding.id,
            path: finding.path.clone(),
            path_raw: finding.path_raw.clone().unwrap_or_default(),
            sha256: finding.sha256.clone(),
        }),
    )
}

/// The command that has an agent put a quarantined file back.
pub fn restore_command(finding: &Finding) -> v1::CollectorMessage {
    command(
        format!("restore:{}", finding.id),
        v1::command::Action::RestoreFile(v1::RestoreFile {
            finding_id: finding.id,
            quarantine_id: finding.quarantine_id.clone().unwrap_or_default(),
        }),
    )
}

/// The command that has an agent check and swap in a rule or IOC bundle.
pub fn apply_bundle_command(bundle: &BundleRecord) -> v1::CollectorMessage {
    command(
        format!("bundle:{}:{}", bundle.kind, bundle.version),
        v1::command::Action::ApplyBundle(v1::ApplyBundle {
            bundle: Some(v1::SignedBundle {
                payload: bundle.payload.clone(),
                signature: bundle.signature.clone(),
            }),
        }),
    )
}

pub(crate) fn command(id: String, action: v1::command::Action) -> v1::CollectorMessage {
    v1::CollectorMessage {
        body: Some(collector_message::Body::Command(v1::Command {
            id,
            action: Some(action),
        })),
    }
}

/// The order a finding waits for, if any: its quarantine once requested, its restore once
/// requested. Both the replica that took the admin's change and the others that hear of it
/// send what this says.
pub fn finding_order(finding: &Finding) -> Option<v1::CollectorMessage> {
    match finding.state {
        FindingState::QuarantineRequested => Some(quarantine_command(finding)),
        _ if finding.restore_requested_ms.is_some() => Some(restore_command(finding)),
        _ => None,
    }
}
