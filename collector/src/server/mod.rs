//! The collector's network side: one mTLS listener serving the agent stream service and the
//! admin service. [`serve`] takes an already-bound listener and a shutdown future, so tests
//! bind `127.0.0.1:0` and read the real port.

mod accept;
mod admin;
mod agent;
mod enroll;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use hygiene_proto::v1::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
    enroll_service_server::EnrollServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::agents::Registry;
pub use accept::raise_open_file_limit;
pub use agent::{connection_report, inventory_report, now_ms};
pub use tls::{HANDSHAKE_TIMEOUT, ServerTls, tls_from_pki};

use crate::services::Intel;
use crate::site::{REPLICA_DEAD_AFTER_MS, REPLICA_SEEN_EVERY};
use crate::store::Store;

/// The largest admin request (a list or rule bundle being imported).
const ADMIN_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// The largest message an agent may send: a findings batch is one file's findings, an
/// inventory a few hundred KiB. A larger one ends that agent's stream unacknowledged (tonic
/// refuses to decode it), so one agent cannot make the collector hold a huge message.
const AGENT_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

/// How long in-flight calls get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: cannot read TLS material: {source}")]
    Tls {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    TlsInvalid { path: PathBuf, reason: String },
    #[error("server failed: {0}")]
    Transport(tonic::transport::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// How long a host may stay silent before its status is `stale`, unless configured.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the day's count of hosts per status is written for the cleanup timeline.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(600);

/// What [`serve_with`] can be told beyond where to listen and what to store in.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A host not seen for longer is `stale`.
    pub stale_after: Duration,
    /// The PKCS#8 Ed25519 key rule and IOC bundles are signed with; `None`: publishing is
    /// refused.
    pub rules_signing_key: Option<Vec<u8>>,
    /// What one agent may cost the collector.
    pub agent_limits: crate::limits::AgentLimits,
    /// The CA and signing key agents enroll with; `None`: enrollment is refused.
    pub enrollment: Option<std::sync::Arc<crate::pki::Enrollment>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            stale_after: DEFAULT_STALE_AFTER,
            rules_signing_key: None,
            agent_limits: Default::default(),
            enrollment: None,
        }
    }
}

/// Serves agents and admins on `listener` until `shutdown` resolves, then ends every agent
/// stream and returns once in-flight calls finished (or after a short grace period).
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    store: Store,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    serve_with(listener, tls, store, ServeOptions::default(), shutdown).await
}

/// [`serve`] with options.
pub async fn serve_with(
    listener: TcpListener,
    tls: ServerTls,
    store: Store,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    // This replica joins the site; hosts left connected by a replica that is gone (this
    // process's previous run, or another that died) are offline.
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    store
        .replica_seen(
            &listen,
            agent::now_ms(),
            agent::now_ms() - REPLICA_DEAD_AFTER_MS,
        )
        .await?;
    // Refusals are counted from the start (the table is otherwise made at the first one).
    let _ = crate::refusals::refusals();
    let revocations = tls.revocations();
    revocations.add(store.revoked_serials().await?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut grace = stop_rx.clone();
    let registry = Registry::default();
    let intel = Intel::load_in_background(store.clone());
    let vulns = crate::services::Vulns::load(store.clone()).await?;
    let budget = accept::ConnectionBudget::new(accept::open_file_limit());
    tracing::info!(
        agents = budget.agents(),
        reserve = accept::RESERVE,
        "connections: agents may hold all but the reserve of the open-file limit"
    );
    let agents = agent::AgentEndpoint::new(store.clone(), registry.clone(), intel.clone(), stop_rx)
        .with_budget(budget.clone())
        .with_limits(options.agent_limits)
        .with_revocations(revocations.clone())
        .with_enrollment(options.enrollment.clone());
    let stale_after_ms = i64::try_from(options.stale_after.as_millis()).unwrap_or(i64::MAX);
    let site = crate::services::Site {
        store: store.clone(),
        registry: registry.clone(),
        intel: intel.clone(),
        vulns: vulns.clone(),
        revocations: revocations.clone(),
    };
    let _follow = AbortOnDrop(tokio::spawn(site.clone().follow()));
    let _alive = AbortOnDrop(tokio::spawn(crate::services::note_alive(
        store.clone(),
        listen,
        REPLICA_SEEN_EVERY,
        Duration::from_millis(REPLICA_DEAD_AFTER_MS as u64),
    )));
    let admins = admin::AdminEndpoint::new(site, stale_after_ms)
        .with_signing_key(options.rules_signing_key.clone())
        .with_ca_fingerprint(tls.ca_fingerprint().to_owned());
    let enroller =
        enroll::EnrollEndpoint::new(store.clone(), options.enrollment.clone(), revocations);
    // The cleanup timeline: today's hosts per status, written as the day goes on, by one
    // replica of the site at a time (the lease outlives a tick, so its holder keeps it).
    let snapshot_store = store.clone();
    let snapshots = tokio::spawn(async move {
        let store = snapshot_store;
        let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
        let lease_ms = i64::try_from((SNAPSHOT_EVERY * 3).as_millis()).unwrap_or(i64::MAX);
        loop {
            tick.tick().await;
            let now = agent::now_ms();
            match store
                .take_lease("status_snapshot", now, now + lease_ms)
                .await
            {
                Ok(true) => {
                    if let Err(err) =
                        crate::services::snapshot_statuses(&store, stale_after_ms).await
                    {
                        tracing::warn!("cannot record today's host statuses: {err}");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!("cannot take the status snapshot's lease: {err}"),
            }
        }
    });
    let _stop_snapshots = AbortOnDrop(snapshots);
    let signal = async move {
        shutdown.await;
        // Agent streams never end on their own; tell them to, or the graceful shutdown would
        // wait forever.
        let _ = stop_tx.send(true);
    };
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(EnrollServiceServer::new(enroller))
        .add_service(AgentServiceServer::new(agents).max_decoding_message_size(AGENT_MESSAGE_LIMIT))
        // A botnet list of 100,000 entries is a few MiB; the default limit is 4 MiB.
        // Admin authentication is enforced once, for every method, by the interceptor.
        .add_service(tonic::service::interceptor::InterceptedService::new(
            AdminServiceServer::new(admins).max_decoding_message_size(ADMIN_MESSAGE_LIMIT),
            crate::identity::require_admin,
        ))
        .serve_with_incoming_shutdown(accept::incoming(listener, tls, budget), signal);
    let result = tokio::select! {
        result = server => result.map_err(ServerError::Transport),
        _ = async {
            let _ = grace.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("calls still running {SHUTDOWN_GRACE:?} after shutdown was requested; closing anyway");
            Ok(())
        }
    };
    if let Err(err) = store.replica_gone().await {
        tracing::warn!("cannot take this replica off the site's list: {err}");
    }
    result
}

/// Aborts a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
