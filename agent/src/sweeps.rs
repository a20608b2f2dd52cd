//! Fleet sweeps on the agent: which ones it was ordered to run, and control over the one that
//! runs.
//!
//! The collector sends a sweep order when the admin starts it (to agents online then) and again
//! each time the agent connects, until the agent's summary arrives. The [`SweepLedger`] (in
//! `state.redb`) is what makes this safe: an order for a sweep already queued or running is
//! ignored, and a sweep that was queued or running when the agent stopped is resumed when it
//! starts again. [`SweepControl`] is the one place that decides on orders, cancellations and
//! shutdown, so that the session (which receives orders) and the sweeper (which runs them) agree.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use crate::state::StateError;

const SWEEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("sweeps");

/// How long finished sweeps stay in the ledger: long past any deadline a collector sets by
/// default, so that a late repeat of an old order is still recognised.
const KEEP_FINISHED_MS: i64 = 30 * 24 * 3600 * 1000;

/// Where a sweep request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The sweep every agent start makes of its roots.
    Startup,
    /// An order from the collector (a fleet sweep): kept in the ledger.
    Collector,
    /// A fleet sweep that was queued or running when the agent last stopped.
    Resumed,
}

/// A request to sweep the agent's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRequest {
    pub sweep_id: String,
    /// Ignore the verdict cache.
    pub full: bool,
    /// Start at a random moment within this many seconds.
    pub splay_seconds: u32,
    /// Unix ms after which it is not to be started; 0: no deadline.
    pub deadline_ms: i64,
    pub origin: Origin,
}

impl SweepRequest {
    /// The sweep an agent makes of its roots when it starts.
    pub fn startup(now_ms: i64) -> Self {
        SweepRequest {
            sweep_id: format!("startup-{now_ms}"),
            full: false,
            splay_seconds: 0,
            deadline_ms: 0,
            origin: Origin::Startup,
        }
    }

    /// The rescan an agent makes after applying a new bundle: kept in the ledger like a fleet
    /// sweep (so it is resumed after a restart and run once), under the id the collector lists
    /// it by.
    pub fn after_bundle(kind: &str, version: &str) -> Self {
        SweepRequest {
            sweep_id: hygiene_proto::bundle::rescan_sweep_id(kind, version),
            full: false,
            splay_seconds: 0,
            deadline_ms: 0,
            origin: Origin::Collector,
        }
    }

    /// Whether the deadline has passed at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.deadline_ms != 0 && now_ms >= self.deadline_ms
    }
}

/// A fleet sweep's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    Queued,
    Running,
    Done,
    Cancelled,
    /// Its deadline passed before it could start.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LedgerEntry {
    full: bool,
    splay_seconds: u32,
    deadline_ms: i64,
    state: LedgerState,
    updated_ms: i64,
}

/// The fleet sweeps this agent was ordered to run, by sweep id, in the agent's state file.
#[derive(Clone)]
pub struct SweepLedger {
    db: Arc<Database>,
    path: PathBuf,
}

impl SweepLedger {
    pub(crate) fn new(db: Arc<Database>, path: PathBuf) -> Self {
        SweepLedger { db, path }
    }

    fn fail(&self, e: impl std::fmt::Display) -> StateError {
        StateError {
            path: self.path.clone(),
            message: format!("sweep ledger: {e}"),
        }
    }

    fn get(&self, sweep_id: &str) -> Result<Option<LedgerEntry>, StateError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match read.open_table(SWEEPS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let Some(value) = table.get(sweep_id).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| self.fail(format!("entry {sweep_id:?}: {e}")))
    }

    fn put(&self, sweep_id: &str, entry: Option<&LedgerEntry>) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = txn.open_table(SWEEPS).map_err(|e| self.fail(e))?;
            match entry {
                Some(entry) => {
                    let bytes = serde_json::to_vec(entry).expect("ledger entries serialize");
                    table
                        .insert(sweep_id, bytes.as_slice())
                        .map_err(|e| self.fail(e))?;
                }
                None => {
                    table.remove(sweep_id).map_err(|e| self.fail(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.fail(e))
    }

    pub fn state(&self, sweep_id: &str) -> Result<Option<LedgerState>, StateError> {
        Ok(self.get(sweep_id)?.map(|e| e.state))
    }

    /// Records an order. `true`: it is to be run (new, or finished before: the collector
    /// orders a sweep again only while it has no summary of it, which a restart can lose);
    /// `false`: it is already queued or running, or was cancelled or expired.
    pub fn accept(&self, request: &SweepRequest, now_ms: i64) -> Result<bool, StateError> {
        match self.state(&request.sweep_id)? {
            Some(LedgerState::Queued | LedgerState::Running) => return Ok(false),
            Some(LedgerState::Cancelled | LedgerState::Expired) => return Ok(false),
            Some(LedgerState::Done) | None => {}
        }
        self.put(
            &request.sweep_id,
            Some(&LedgerEntry {
                full: request.full,
                splay_seconds: request.splay_seconds,
                deadline_ms: request.deadline_ms,
                state: LedgerState::Queued,
                updated_ms: now_ms,
            }),
        )?;
        Ok(true)
    }

    /// Moves a sweep the ledger knows to `state`; unknown ids are left alone.
    pub fn set_state(
        &self,
        sweep_id: &str,
        state: LedgerState,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let Some(mut entry) = self.get(sweep_id)? else {
            return Ok(());
        };
        entry.state = state;
        entry.updated_ms = now_ms;
        self.put(sweep_id, Some(&entry))
    }

    /// Forgets an order (one that could not be queued: the next one is then accepted).
    pub fn forget(&self, sweep_id: &str) -> Result<(), StateError> {
        self.put(sweep_id, None)
    }

    /// Sweeps queued or running when the agent last stopped, oldest order first, to resume;
    /// drops finished entries older than a month.
    pub fn unfinished(&self, now_ms: i64) -> Result<Vec<SweepRequest>, StateError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        let mut unfinished = Vec::new();
        {
            let mut table = txn.open_table(SWEEPS).map_err(|e| self.fail(e))?;
            let mut stale = Vec::new();
            for item in table.iter().map_err(|e| self.fail(e))? {
                let (key, value) = item.map_err(|e| self.fail(e))?;
                let id = key.value().to_owned();
                let entry: LedgerEntry = match serde_json::from_slice(value.value()) {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::warn!("{}", self.fail(format!("entry {id:?} dropped: {e}")));
                        stale.push(id);
                        continue;
                    }
                };
                match entry.state {
                    LedgerState::Queued | LedgerState::Running => unfinished.push((
                        entry.updated_ms,
                        SweepRequest {
                            sweep_id: id,
                            full: entry.full,
                            splay_seconds: entry.splay_seconds,
                            deadline_ms: entry.deadline_ms,
                            origin: Origin::Resumed,
                        },
                        entry.state,
                    )),
                    _ if now_ms - entry.updated_ms > KEEP_FINISHED_MS => stale.push(id),
                    _ => {}
                }
            }
            for id in stale {
                table.remove(id.as_str()).map_err(|e| self.fail(e))?;
            }
        }
        txn.commit().map_err(|e| self.fail(e))?;
        unfinished.sort_by_key(|(updated, _, _)| *updated);
        Ok(unfinished
            .into_iter()
            // A sweep that had started is finished whatever the deadline; one still queued
            // past its deadline is not started any more.
            .filter(|(_, request, state)| {
                *state == LedgerState::Running || !request.expired(now_ms)
            })
            .map(|(_, request, _)| request)
            .collect())
    }
}

/// Decides on sweep orders, cancellations and shutdown for the session and the sweeper.
pub struct SweepControl {
    ledger: Option<SweepLedger>,
    queue: mpsc::Sender<SweepRequest>,
    shutdown: AtomicBool,
    cancelled: Mutex<HashSet<String>>,
    /// The sweep running now and the flag that stops it.
    current: Mutex<Option<(String, Arc<AtomicBool>)>>,
}

impl SweepControl {
    /// A control feeding `queue`; without a ledger (tests, `scan`) orders are not deduplicated
    /// across restarts.
    pub fn new(ledger: Option<SweepLedger>, queue: mpsc::Sender<SweepRequest>) -> Self {
        SweepControl {
            ledger,
            queue,
            shutdown: AtomicBool::new(false),
            cancelled: Mutex::new(HashSet::new()),
            current: Mutex::new(None),
        }
    }

    /// Queues a request unless the ledger says it is already in hand. `false`: not queued.
    pub fn offer(&self, request: SweepRequest, now_ms: i64) -> bool {
        let id = request.sweep_id.clone();
        if self.is_cancelled(&id) {
            return false;
        }
        if request.origin == Origin::Collector
            && let Some(ledger) = &self.ledger
        {
            match ledger.accept(&request, now_ms) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(sweep = %id, "sweep order already in hand; ignored");
                    return false;
                }
                // Without the ledger the order still runs; it is only not resumable.
                Err(err) => tracing::warn!(sweep = %id, "{err}"),
            }
        }
        match self.queue.try_send(request) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(sweep = %id, "sweep request dropped: {err}");
                if let Some(ledger) = &self.ledger
                    && let Err(err) = ledger.forget(&id)
                {
                    tracing::warn!(sweep = %id, "{err}");
                }
                false
            }
        }
    }

    /// Stops the sweep if it runs and keeps it from starting if it waits.
    pub fn cancel(&self, sweep_id: &str, now_ms: i64) {
        self.cancelled
            .lock()
            .expect("cancel lock")
            .insert(sweep_id.to_owned());
        if let Some(ledger) = &self.ledger {
            // Only a sweep the ledger knows changes; one not ordered yet stays unknown.
            if let Err(err) = ledger.set_state(sweep_id, LedgerState::Cancelled, now_ms) {
                tracing::warn!(sweep = %sweep_id, "{err}");
            }
        }
        if let Some((id, halt)) = &*self.current.lock().expect("current lock")
            && id == sweep_id
        {
            tracing::info!(sweep = %sweep_id, "sweep cancelled by the collector; stopping");
            halt.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_cancelled(&self, sweep_id: &str) -> bool {
        self.cancelled
            .lock()
            .expect("cancel lock")
            .contains(sweep_id)
    }

    /// Stops the running sweep (it resumes at the next start) and any to come.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some((_, halt)) = &*self.current.lock().expect("current lock") {
            halt.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Registers `sweep_id` as running; the flag returned stops it.
    pub fn begin(&self, sweep_id: &str) -> Arc<AtomicBool> {
        let halt = Arc::new(AtomicBool::new(
            self.is_shut_down() || self.is_cancelled(sweep_id),
        ));
        *self.current.lock().expect("current lock") = Some((sweep_id.to_owned(), halt.clone()));
        halt
    }

    pub fn end(&self) {
        *self.current.lock().expect("current lock") = None;
    }

    /// Records a fleet sweep's new state; a failure is logged (the sweep itself is unharmed).
    pub fn record(&self, request: &SweepRequest, state: LedgerState, now_ms: i64) {
        if request.origin == Origin::Startup {
            return;
        }
        if let Some(ledger) = &self.ledger
            && let Err(err) = ledger.set_state(&request.sweep_id, state, now_ms)
        {
            tracing::warn!(sweep = %request.sweep_id, "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, deadline_ms: i64) -> SweepRequest {
        SweepRequest {
            sweep_id: id.into(),
            full: true,
            splay_seconds: 30,
            deadline_ms,
            origin: Origin::Collector,
        }
    }

    fn open_ledger(dir: &std::path::Path) -> (crate::state::AgentState, SweepLedger) {
        let state = crate::state::AgentState::open(dir).unwrap();
        let ledger = state.sweep_ledger();
        (state, ledger)
    }

    #[test]
    fn orders_in_hand_are_not_taken_twice_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (state, ledger) = open_ledger(dir.path());
        assert!(ledger.accept(&order("a", 0), 1).unwrap());
        assert!(!ledger.accept(&order("a", 0), 2).unwrap(), "queued");
        ledger.set_state("a", LedgerState::Running, 3).unwrap();
        assert!(!ledger.accept(&order("a", 0), 4).unwrap(), "running");
        assert!(ledger.accept(&order("b", 0), 5).unwrap());
        drop((state, ledger));

        // The agent restarts: both are resumed, oldest order first, as they were ordered.
        let (_state, ledger) = open_ledger(dir.path());
        let resumed = ledger.unfinished(10).unwrap();
        let ids: Vec<&str> = resumed.iter().map(|r| r.sweep_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(resumed[0].full && resumed[0].origin == Origin::Resumed);

        // Done: a repeated order runs again (the collector lacks its summary).
        ledger.set_state("a", LedgerState::Done, 11).unwrap();
        assert!(ledger.accept(&order("a", 0), 12).unwrap());
        // Cancelled: never again.
        ledger.set_state("b", LedgerState::Cancelled, 13).unwrap();
        assert!(!ledger.accept(&order("b", 0), 14).unwrap());
        // Unknown ids are left unknown.
        ledger.set_state("zzz", LedgerState::Done, 15).unwrap();
        assert_eq!(ledger.state("zzz").unwrap(), None);
    }

    #[test]
    fn a_queued_sweep_past_its_deadline_is_not_resumed_a_running_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ledger) = open_ledger(dir.path());
        ledger.accept(&order("queued", 100), 1).unwrap();
        ledger.accept(&order("running", 100), 2).unwrap();
        ledger
            .set_state("running", LedgerState::Running, 3)
            .unwrap();
        let ids: Vec<String> = ledger
            .unfinished(200)
            .unwrap()
            .into_iter()
            .map(|r| r.sweep_id)
            .collect();
        assert_eq!(ids, ["running"]);
    }

    #[test]
    fn old_finished_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ledger) = open_ledger(dir.path());
        ledger.accept(&order("old", 0), 0).unwrap();
        ledger.set_state("old", LedgerState::Done, 0).unwrap();
        ledger.unfinished(KEEP_FINISHED_MS + 1).unwrap();
        assert_eq!(ledger.state("old").unwrap(), None);
    }

    #[test]
    fn control_dedupes_cancels_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ledger) = open_ledger(dir.path());
        let (tx, mut rx) = mpsc::channel(4);
        let control = SweepControl::new(Some(ledger.clone()), tx);
        assert!(control.offer(order("a", 0), 1));
        assert!(!control.offer(order("a", 0), 2), "already queued");
        assert_eq!(rx.try_recv().unwrap().sweep_id, "a");
        assert!(rx.try_recv().is_err());

        // Cancelling the running sweep raises its flag and records it.
        let halt = control.begin("a");
        assert!(!halt.load(Ordering::Relaxed));
        control.cancel("a", 3);
        assert!(halt.load(Ordering::Relaxed));
        assert_eq!(ledger.state("a").unwrap(), Some(LedgerState::Cancelled));
        control.end();
        // A cancelled sweep is not taken again, nor started if it was waiting.
        assert!(!control.offer(order("a", 0), 4));
        assert!(control.begin("a").load(Ordering::Relaxed));
        control.end();

        // Shutdown stops what runs.
        let halt = control.begin("b");
        control.shutdown();
        assert!(halt.load(Ordering::Relaxed));
        assert!(control.is_shut_down());
    }

    #[test]
    fn a_full_queue_forgets_the_order_so_that_the_next_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, ledger) = open_ledger(dir.path());
        let (tx, mut rx) = mpsc::channel(1);
        let control = SweepControl::new(Some(ledger.clone()), tx);
        assert!(control.offer(order("a", 0), 1));
        assert!(!control.offer(order("b", 0), 1), "queue full");
        assert_eq!(ledger.state("b").unwrap(), None);
        rx.try_recv().unwrap();
        assert!(control.offer(order("b", 0), 2));
    }
}
