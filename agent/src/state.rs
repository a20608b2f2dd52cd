//! Agent-side persistent state in a redb file under the state directory.
//!
//! It holds the sequence-number allocator, so that sequence numbers keep increasing across
//! agent restarts, and the ledger of fleet sweeps ([`crate::sweeps`]). Numbers are reserved in
//! blocks: one durable write per [`SEQ_BLOCK`] messages, and after a crash the agent skips the
//! rest of the block rather than reuse a number.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SEQ_HIGH_WATER: &str = "seq_high_water";
/// How many sequence numbers one durable write reserves.
pub const SEQ_BLOCK: u64 = 1024;

#[derive(Debug, thiserror::Error)]
#[error("{path}: agent state: {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

pub struct AgentState {
    db: Arc<Database>,
    path: PathBuf,
    next_seq: u64,
    reserved_until: u64,
}

impl AgentState {
    /// Opens (or creates) `state.redb` in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join("state.redb");
        let fail = |message: String| StateError {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create directory: {e}")))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        let high_water = {
            let read = db.begin_read().map_err(|e| fail(e.to_string()))?;
            match read.open_table(META) {
                Ok(table) => table
                    .get(SEQ_HIGH_WATER)
                    .map_err(|e| fail(e.to_string()))?
                    .map(|v| v.value())
                    .unwrap_or(0),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(fail(e.to_string())),
            }
        };
        Ok(AgentState {
            db: Arc::new(db),
            path,
            next_seq: high_water + 1,
            reserved_until: high_water,
        })
    }

    /// The record of fleet sweeps, in the same file.
    pub fn sweep_ledger(&self) -> crate::sweeps::SweepLedger {
        crate::sweeps::SweepLedger::new(self.db.clone(), self.path.clone())
    }

    /// The database and its path, for the spool that shares the file.
    pub fn database(&self) -> (Arc<Database>, PathBuf) {
        (self.db.clone(), self.path.clone())
    }

    /// The next sequence number; never returns the same number twice for this state file.
    pub fn next_seq(&mut self) -> Result<u64, StateError> {
        if self.next_seq > self.reserved_until {
            let high_water = self.reserved_until + SEQ_BLOCK;
            self.write_u64(SEQ_HIGH_WATER, high_water)?;
            self.reserved_until = high_water;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    fn write_u64(&self, key: &str, value: u64) -> Result<(), StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let txn = self.db.begin_write().map_err(|e| fail(&e))?;
        {
            let mut table = txn.open_table(META).map_err(|e| fail(&e))?;
            table.insert(key, value).map_err(|e| fail(&e))?;
        }
        txn.commit().map_err(|e| fail(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_keeps_increasing_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AgentState::open(dir.path()).unwrap();
        let first: Vec<u64> = (0..3).map(|_| state.next_seq().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3]);
        drop(state);
        let mut state = AgentState::open(dir.path()).unwrap();
        let next = state.next_seq().unwrap();
        assert!(next > 3, "reused {next}");
        // A second block is reserved when the first runs out.
        for _ in 0..SEQ_BLOCK * 2 {
            state.next_seq().unwrap();
        }
        drop(state);
        let mut state = AgentState::open(dir.path()).unwrap();
        assert!(state.next_seq().unwrap() > next + SEQ_BLOCK * 2);
    }

    #[test]
    fn unusable_state_dir_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = AgentState::open(&file.join("sub")).err().unwrap();
        assert!(err.to_string().contains("sub"), "{err}");
    }
}
