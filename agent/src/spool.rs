//! The agent's outbox on disk: every message for the collector is written here (in
//! `state.redb`) before it is sent, and leaves only when the collector acknowledges it, so a
//! detection survives a crash, a `kill -9` or a power cut between the sweep and its delivery.
//!
//! The spool is bounded ([`DEFAULT_LIMIT`] unless configured). When it is full, [`plan_room`]
//! decides: progress reports go first, then socket lists, then inventories (each is followed
//! by a newer one anyway); findings, sweep summaries, remediation results and bundle statuses
//! are never dropped: whoever adds one waits until acknowledgements make room (a sweep pauses,
//! as it did when its queue was full). What was dropped is told to the collector in a
//! [`Body::SpoolDropped`] message, itself spooled.
//!
//! Sequence numbers come from [`AgentState`], so a spooled message keeps its number across
//! restarts and is replayed in order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use hygiene_proto::v1::{self, agent_message::Body};
use prost::Message as _;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::state::{AgentState, StateError};

/// seq → [marker byte][encoded AgentMessage]: the class, or [`NOTICE`].
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("spool");
/// The drop totals since the spool was created.
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("spool_dropped");

/// The marker of the drop notice: a [`Class::Kept`] message, told apart at start without
/// decoding every spooled message.
const NOTICE: u8 = 4;

/// The totals' keys, by [`Class`] (progress, connections, inventories), then bytes.
const TOTAL_KEYS: [&str; 4] = ["progress", "connections", "inventories", "bytes"];

/// 256 MiB: days of an offline host's reports, and little next to a disk.
pub const DEFAULT_LIMIT: u64 = 256 * 1024 * 1024;

/// What may become of a message when the spool is full, in the order messages are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Progress = 0,
    Connections = 1,
    Inventory = 2,
    /// Never dropped.
    Kept = 3,
}

impl Class {
    pub fn of(body: &Body) -> Class {
        match body {
            Body::SweepProgress(_) => Class::Progress,
            Body::Connections(_) => Class::Connections,
            Body::Inventory(_) => Class::Inventory,
            _ => Class::Kept,
        }
    }

    fn from_byte(byte: u8) -> Class {
        match byte {
            0 => Class::Progress,
            1 => Class::Connections,
            2 => Class::Inventory,
            _ => Class::Kept,
        }
    }
}

/// One spooled message as the bound sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub class: Class,
    pub len: u64,
}

/// What to do with an incoming message of `incoming` class and `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    /// Store it after dropping these (oldest first; none when it fits).
    Store(Vec<u64>),
    /// Drop the incoming message itself: only messages it may displace are older ones of
    /// its own or a lower class, and they are not enough.
    DropIncoming,
    /// Wait for acknowledgements: the spool is full of what is never dropped.
    Wait,
}

/// The spool's policy when full: drop the least valuable messages first (progress, then
/// socket lists, then inventories; the oldest of a class first). A message that is never
/// dropped may displace any droppable one; a droppable message only its own class or lower.
/// An empty spool takes any message, however large.
pub fn plan_room(index: &BTreeMap<u64, Entry>, bytes: u64, limit: u64, incoming: Entry) -> Room {
    if index.is_empty() || bytes + incoming.len <= limit {
        return Room::Store(Vec::new());
    }
    let mut freed = 0;
    let mut drops = Vec::new();
    let ceiling = match incoming.class {
        Class::Kept => Class::Inventory,
        class => class,
    };
    'classes: for class in [Class::Progress, Class::Connections, Class::Inventory] {
        if class > ceiling {
            break;
        }
        for (seq, entry) in index.iter().filter(|(_, e)| e.class == class) {
            drops.push(*seq);
            freed += entry.len;
            if bytes - freed + incoming.len <= limit {
                break 'classes;
            }
        }
    }
    if bytes - freed + incoming.len <= limit || freed == bytes {
        Room::Store(drops)
    } else if incoming.class == Class::Kept {
        Room::Wait
    } else {
        Room::DropIncoming
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the agent is stopping")]
    Closed,
    #[error(transparent)]
    State(#[from] StateError),
}

struct Inner {
    state: AgentState,
    index: BTreeMap<u64, Entry>,
    bytes: u64,
    /// The unacknowledged drop notice, replaced by a newer one when more is dropped.
    notice: Option<u64>,
}

pub struct Spool {
    db: Arc<Database>,
    path: PathBuf,
    limit: u64,
    inner: Mutex<Inner>,
    /// Signalled when acknowledgements free room or the spool closes.
    room: Condvar,
    /// Signalled when a message is added (one permit: the session is the only reader).
    added: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Spool {
    /// The spool in `state`'s file, with what an earlier run left in it.
    pub fn open(state: AgentState, limit: u64) -> Result<Arc<Spool>, StateError> {
        let (db, path) = state.database();
        let fail = |e: &dyn std::fmt::Display| StateError {
            path: path.clone(),
            message: format!("spool: {e}"),
        };
        let mut index = BTreeMap::new();
        let mut bytes = 0;
        let mut notice = None;
        {
            let read = db.begin_read().map_err(|e| fail(&e))?;
            match read.open_table(MESSAGES) {
                Ok(table) => {
                    for item in table.iter().map_err(|e| fail(&e))? {
                        let (seq, value) = item.map_err(|e| fail(&e))?;
                        let value = value.value();
                        let class = Class::from_byte(value.first().copied().unwrap_or(u8::MAX));
                        let len = value.len() as u64;
                        if value.first() == Some(&NOTICE) {
                            notice = Some(seq.value());
                        }
                        index.insert(seq.value(), Entry { class, len });
                        bytes += len;
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(fail(&e)),
            }
        }
        if !index.is_empty() {
            tracing::info!(
                messages = index.len(),
                bytes,
                "unacknowledged messages from an earlier run will be sent first"
            );
        }
        Ok(Arc::new(Spool {
            db,
            path,
            limit,
            inner: Mutex::new(Inner {
                state,
                index,
                bytes,
                notice,
            }),
            room: Condvar::new(),
            added: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, e: &dyn std::fmt::Display) -> StateError {
        StateError {
            path: self.path.clone(),
            message: format!("spool: {e}"),
        }
    }

    /// A sequence number for a message that is not spooled (hello, heartbeat).
    pub fn next_seq(&self) -> Result<u64, StateError> {
        self.lock().state.next_seq()
    }

    /// Writes `body` to disk (durably) before returning; waits while the spool is full of
    /// messages that are never dropped. Blocking: call from a blocking thread.
    pub fn append(&self, body: Body) -> Result<(), SpoolError> {
        let class = Class::of(&body);
        let mut message = v1::AgentMessage {
            // The largest number's size: the real one is taken once there is room, so that
            // numbers are stored in the order they are taken.
            seq: u64::MAX,
            body: Some(body),
        };
        let incoming = Entry {
            class,
            len: 1 + message.encoded_len() as u64,
        };
        let mut inner = self.lock();
        let mut waited = false;
        let drops = loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(SpoolError::Closed);
            }
            match plan_room(&inner.index, inner.bytes, self.limit, incoming) {
                Room::Store(drops) => break drops,
                Room::DropIncoming => {
                    self.record_drops(&mut inner, &[], Some(incoming))?;
                    return Ok(());
                }
                Room::Wait => {
                    if !waited {
                        waited = true;
                        tracing::warn!(
                            messages = inner.index.len(),
                            bytes = inner.bytes,
                            limit = self.limit,
                            "the spool is full of findings and summaries the collector has not acknowledged; the sweep waits"
                        );
                    }
                    inner = self
                        .room
                        .wait(inner)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        };
        if !drops.is_empty() {
            self.record_drops(&mut inner, &drops, None)?;
        }
        message.seq = inner.state.next_seq()?;
        let seq = message.seq;
        let value = encode(class as u8, &message);
        let incoming = Entry {
            class,
            len: value.len() as u64,
        };
        let txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(|e| self.fail(&e))?;
            table
                .insert(seq, value.as_slice())
                .map_err(|e| self.fail(&e))?;
        }
        txn.commit().map_err(|e| self.fail(&e))?;
        inner.index.insert(seq, incoming);
        inner.bytes += incoming.len;
        drop(inner);
        self.added.notify_one();
        Ok(())
    }

    /// Drops `drops` (spooled) and `incoming` (not spooled), adds them to the totals and
    /// replaces the pending notice with one that carries the new totals, in one transaction.
    fn record_drops(
        &self,
        inner: &mut Inner,
        drops: &[u64],
        incoming: Option<Entry>,
    ) -> Result<(), StateError> {
        let dropped: Vec<Entry> = drops
            .iter()
            .filter_map(|seq| inner.index.get(seq).copied())
            .chain(incoming)
            .collect();
        let notice_seq = inner.state.next_seq()?;
        let now = crate::session::unix_ms(std::time::SystemTime::now());
        let txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        let notice_value;
        {
            let mut totals = txn.open_table(TOTALS).map_err(|e| self.fail(&e))?;
            let mut counts = [0u64; 4];
            for (count, key) in counts.iter_mut().zip(TOTAL_KEYS) {
                *count = totals
                    .get(key)
                    .map_err(|e| self.fail(&e))?
                    .map_or(0, |v| v.value());
            }
            for entry in &dropped {
                if entry.class != Class::Kept {
                    counts[entry.class as usize] += 1;
                }
                counts[3] += entry.len;
            }
            for (count, key) in counts.iter().zip(TOTAL_KEYS) {
                totals.insert(key, count).map_err(|e| self.fail(&e))?;
            }
            let notice = v1::SpoolDropped {
                progress: counts[Class::Progress as usize],
                connections: counts[Class::Connections as usize],
                inventories: counts[Class::Inventory as usize],
                bytes: counts[3],
                last_dropped_at_ms: now,
                limit_bytes: self.limit,
            };
            tracing::warn!(
                progress = notice.progress,
                connections = notice.connections,
                inventories = notice.inventories,
                limit = self.limit,
                "the spool is full: dropped {} message(s) to make room; the collector is told",
                dropped.len()
            );
            notice_value = encode(
                NOTICE,
                &v1::AgentMessage {
                    seq: notice_seq,
                    body: Some(Body::SpoolDropped(notice)),
                },
            );
            let mut table = txn.open_table(MESSAGES).map_err(|e| self.fail(&e))?;
            for seq in drops.iter().chain(inner.notice.as_ref()) {
                table.remove(seq).map_err(|e| self.fail(&e))?;
            }
            table
                .insert(notice_seq, notice_value.as_slice())
                .map_err(|e| self.fail(&e))?;
        }
        txn.commit().map_err(|e| self.fail(&e))?;
        for seq in drops.iter().chain(inner.notice.as_ref()) {
            if let Some(entry) = inner.index.remove(seq) {
                inner.bytes -= entry.len;
            }
        }
        let entry = Entry {
            class: Class::Kept,
            len: notice_value.len() as u64,
        };
        inner.index.insert(notice_seq, entry);
        inner.bytes += entry.len;
        inner.notice = Some(notice_seq);
        Ok(())
    }

    /// [`Spool::append`] from async code.
    pub async fn send(self: &Arc<Self>, body: Body) -> Result<(), SpoolError> {
        let spool = self.clone();
        tokio::task::spawn_blocking(move || spool.append(body))
            .await
            .unwrap_or(Err(SpoolError::Closed))
    }

    /// [`Spool::append`] under the name a channel's sender has.
    pub fn blocking_send(&self, body: Body) -> Result<(), SpoolError> {
        self.append(body)
    }

    /// Removes an acknowledged message; `false` when it was not spooled. Not synced: a
    /// removal lost in a crash only resends a message, which the collector takes again
    /// without harm, and the next append's sync makes it durable anyway.
    pub fn ack(&self, seq: u64) -> Result<bool, StateError> {
        let mut inner = self.lock();
        let Some(entry) = inner.index.get(&seq).copied() else {
            return Ok(false);
        };
        let mut txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| self.fail(&e))?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(|e| self.fail(&e))?;
            table.remove(seq).map_err(|e| self.fail(&e))?;
        }
        txn.commit().map_err(|e| self.fail(&e))?;
        inner.index.remove(&seq);
        inner.bytes -= entry.len;
        if inner.notice == Some(seq) {
            inner.notice = None;
        }
        drop(inner);
        self.room.notify_all();
        Ok(true)
    }

    /// Up to `max` spooled messages after `after`, in order. An entry that cannot be decoded
    /// (a damaged file) is logged and removed rather than block every later one.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<v1::AgentMessage>, StateError> {
        let mut messages = Vec::new();
        let mut damaged = Vec::new();
        {
            // Under the lock: a writer takes its number and stores it in one step, so no
            // lower number can appear after this read.
            let _inner = self.lock();
            let read = self.db.begin_read().map_err(|e| self.fail(&e))?;
            let table = match read.open_table(MESSAGES) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(messages),
                Err(e) => return Err(self.fail(&e)),
            };
            let range = table
                .range(after.saturating_add(1)..)
                .map_err(|e| self.fail(&e))?;
            for item in range {
                if messages.len() >= max {
                    break;
                }
                let (seq, value) = item.map_err(|e| self.fail(&e))?;
                let value = value.value();
                match v1::AgentMessage::decode(value.get(1..).unwrap_or_default()) {
                    Ok(message) => messages.push(message),
                    Err(err) => {
                        tracing::error!(path = %self.path.display(), seq = seq.value(), "damaged spool entry removed: {err}");
                        damaged.push(seq.value());
                    }
                }
            }
        }
        for seq in damaged {
            self.ack(seq)?;
        }
        Ok(messages)
    }

    /// How many spooled messages have a sequence number up to `seq` (those sent on this
    /// connection and not yet acknowledged, when `seq` is the last one sent).
    pub fn count_through(&self, seq: u64) -> usize {
        self.lock().index.range(..=seq).count()
    }

    /// Messages spooled and their bytes.
    pub fn len(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.index.len(), inner.bytes)
    }

    /// Resolves when a message is added (at once if one was added since the last call).
    pub async fn added(&self) {
        self.added.notified().await
    }

    /// Wakes and refuses every writer: the agent is stopping.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.lock();
        self.room.notify_all();
    }
}

fn encode(marker: u8, message: &v1::AgentMessage) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + message.encoded_len());
    value.push(marker);
    message
        .encode(&mut value)
        .expect("a Vec grows to hold any message");
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(u64, Class, u64)]) -> (BTreeMap<u64, Entry>, u64) {
        let index: BTreeMap<u64, Entry> = list
            .iter()
            .map(|&(seq, class, len)| (seq, Entry { class, len }))
            .collect();
        let bytes = index.values().map(|e| e.len).sum();
        (index, bytes)
    }

    fn entry(class: Class, len: u64) -> Entry {
        Entry { class, len }
    }

    #[test]
    fn room_drops_progress_first_then_sockets_then_inventories_oldest_first() {
        use Class::*;
        let (index, bytes) = entries(&[
            (1, Inventory, 10),
            (2, Kept, 10),
            (3, Progress, 10),
            (4, Connections, 10),
            (5, Progress, 10),
        ]);
        assert_eq!(
            plan_room(&index, bytes, 60, entry(Kept, 10)),
            Room::Store(vec![])
        );
        assert_eq!(
            plan_room(&index, bytes, 50, entry(Kept, 10)),
            Room::Store(vec![3])
        );
        assert_eq!(
            plan_room(&index, bytes, 50, entry(Kept, 25)),
            Room::Store(vec![3, 5, 4])
        );
        assert_eq!(
            plan_room(&index, bytes, 50, entry(Kept, 31)),
            Room::Store(vec![3, 5, 4, 1])
        );
        // Only findings and the like left: wait for acknowledgements.
        assert_eq!(plan_room(&index, bytes, 50, entry(Kept, 41)), Room::Wait);
    }

    #[test]
    fn droppable_messages_displace_only_their_own_class_or_lower() {
        use Class::*;
        let (index, bytes) = entries(&[(1, Inventory, 10), (2, Kept, 10), (3, Progress, 10)]);
        // A progress report replaces an older one...
        assert_eq!(
            plan_room(&index, bytes, 30, entry(Progress, 10)),
            Room::Store(vec![3])
        );
        // ...but never an inventory or a finding.
        assert_eq!(
            plan_room(&index, bytes, 30, entry(Progress, 15)),
            Room::DropIncoming
        );
        // An inventory may displace the progress report and the older inventory.
        assert_eq!(
            plan_room(&index, bytes, 30, entry(Inventory, 20)),
            Room::Store(vec![3, 1])
        );
        assert_eq!(
            plan_room(&index, bytes, 30, entry(Connections, 25)),
            Room::DropIncoming
        );
    }

    #[test]
    fn an_empty_spool_takes_a_message_larger_than_its_bound() {
        let (index, bytes) = entries(&[]);
        assert_eq!(
            plan_room(&index, bytes, 10, entry(Class::Kept, 100)),
            Room::Store(vec![])
        );
        // A spool holding only droppable messages gives them all up for it.
        let (index, bytes) = entries(&[(1, Class::Progress, 5)]);
        assert_eq!(
            plan_room(&index, bytes, 10, entry(Class::Kept, 100)),
            Room::Store(vec![1])
        );
    }

    fn finding(n: u64) -> Body {
        Body::Findings(v1::FindingBatch {
            sweep_id: format!("s{n:0>200}"),
            ..v1::FindingBatch::default()
        })
    }

    fn progress(n: u64) -> Body {
        Body::SweepProgress(v1::SweepProgress {
            sweep_id: "p".repeat(100),
            files_done: n,
            ..v1::SweepProgress::default()
        })
    }

    #[test]
    fn messages_survive_a_reopen_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(AgentState::open(dir.path()).unwrap(), DEFAULT_LIMIT).unwrap();
        for n in 0..5 {
            spool.append(finding(n)).unwrap();
        }
        let sent = spool.read_after(0, 100).unwrap();
        assert_eq!(sent.len(), 5);
        assert!(spool.ack(sent[0].seq).unwrap());
        assert!(!spool.ack(sent[0].seq).unwrap(), "acknowledged twice");
        assert!(!spool.ack(999_999).unwrap());
        drop(spool);
        let spool = Spool::open(AgentState::open(dir.path()).unwrap(), DEFAULT_LIMIT).unwrap();
        let left = spool.read_after(0, 100).unwrap();
        assert_eq!(left, sent[1..].to_vec());
        assert_eq!(
            spool.read_after(left[1].seq, 2).unwrap(),
            left[2..4].to_vec()
        );
        assert_eq!(spool.count_through(left[1].seq), 2);
        // New messages come after the old ones.
        spool.append(finding(9)).unwrap();
        let all = spool.read_after(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn a_full_spool_drops_progress_and_tells_the_collector_with_running_totals() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(
            Class::Kept as u8,
            &v1::AgentMessage {
                seq: 1,
                body: Some(finding(1)),
            },
        )
        .len() as u64;
        // Room for three findings, the notice and one progress report (~110 bytes), not two.
        let limit = one * 3 + 200;
        let spool = Spool::open(AgentState::open(dir.path()).unwrap(), limit).unwrap();
        spool.append(progress(1)).unwrap();
        spool.append(finding(1)).unwrap();
        spool.append(progress(2)).unwrap();
        spool.append(finding(2)).unwrap();
        spool.append(finding(3)).unwrap();
        let bodies: Vec<Body> = spool
            .read_after(0, 100)
            .unwrap()
            .into_iter()
            .filter_map(|m| m.body)
            .collect();
        let findings = bodies
            .iter()
            .filter(|b| matches!(b, Body::Findings(_)))
            .count();
        assert_eq!(findings, 3, "{bodies:?}");
        let notice = bodies
            .iter()
            .find_map(|b| match b {
                Body::SpoolDropped(n) => Some(*n),
                _ => None,
            })
            .expect("a drop notice");
        assert!(notice.progress >= 1, "{notice:?}");
        assert_eq!(notice.limit_bytes, limit);
        // Only one notice is pending at a time, with totals that never go down.
        spool.append(progress(3)).unwrap();
        let notices: Vec<v1::SpoolDropped> = spool
            .read_after(0, 100)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m.body {
                Some(Body::SpoolDropped(n)) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].progress >= notice.progress);
        // Reopened, the notice is still the one pending.
        drop(spool);
        let spool = Spool::open(AgentState::open(dir.path()).unwrap(), limit).unwrap();
        assert!(spool.lock().notice.is_some());
    }

    #[test]
    fn a_writer_waits_for_room_and_closing_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(AgentState::open(dir.path()).unwrap(), 1).unwrap();
        spool.append(finding(1)).unwrap();
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || spool.append(finding(2)))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !writer.is_finished(),
            "a finding was dropped or stored past the bound"
        );
        let first = spool.read_after(0, 1).unwrap()[0].seq;
        spool.ack(first).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(spool.len().0, 1);
        let blocked = {
            let spool = spool.clone();
            std::thread::spawn(move || spool.append(finding(3)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        spool.close();
        assert!(matches!(blocked.join().unwrap(), Err(SpoolError::Closed)));
    }
}
