//! The controller's Raft log, its vote and its commit point, kept in one append-only file.
//!
//! Each record is the length (u32 LE) of the JSON that follows, its CRC-32C (u32 LE), and the
//! JSON of a [`Record`]. Opening replays them in order. A record cut short or failing its CRC
//! ends the file there: it was being written when the process died, and nothing in it was
//! reported durable, because every record is fdatasync'ed before openraft hears it is stored.
//! Once purges leave most of the file dead, the live part is rewritten into a new file that is
//! synced, renamed over the old one, and made durable with a directory fsync.
//!
//! It runs on the controller's own thread, never on a shard: its blocking writes and syncs
//! hold up only the quorum, whose traffic is a few records a second.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::types::{NodeId, TypeConfig};

/// The log's file in the controller's directory.
pub const LOG_FILE: &str = "raft.log";
const REWRITE_FILE: &str = "raft.log.new";
/// Largest record accepted when reading: larger means a corrupt length.
const MAX_RECORD_BYTES: usize = 64 << 20;
/// The file is rewritten when it is larger than this and mostly purged entries.
const REWRITE_AT_BYTES: u64 = 8 << 20;
const HEADER_BYTES: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Entries(Vec<Entry<TypeConfig>>),
    /// Entries from this index on are gone (a new leader's log replaced them).
    TruncateFrom(u64),
    /// Entries up to and including this one are in a snapshot and gone from the log.
    PurgeUpTo(LogId<NodeId>),
    Vote(Vote<NodeId>),
    Committed(Option<LogId<NodeId>>),
}

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("cannot open the controller log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Inner {
    dir: PathBuf,
    file: File,
    file_bytes: u64,
    /// Bytes of the file holding entries that are still in the log, roughly.
    live_bytes: u64,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

/// The controller's log storage; clones share it (openraft reads through a clone while
/// it appends through another).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying what it holds.
    pub fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        let path = dir.join(LOG_FILE);
        let io = |source| LogStoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let _ = std::fs::remove_file(dir.join(REWRITE_FILE));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file,
            file_bytes: 0,
            live_bytes: 0,
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            last_purged: None,
        };
        let mut at = 0usize;
        while let Some((record, next)) = decode_record(&bytes, at) {
            inner.replay(record, (next - at) as u64);
            at = next;
        }
        if at < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = at,
                dropped = bytes.len() - at,
                "the controller log ends in a record cut short or failing its CRC (a crash while it was written); dropping it"
            );
            inner.file.set_len(at as u64).map_err(io)?;
            inner.file.sync_all().map_err(io)?;
        }
        inner.file_bytes = at as u64;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding it would have left the process; recover the data anyway.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn decode_record(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let header = bytes.get(at..at + HEADER_BYTES)?;
    let length = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if length > MAX_RECORD_BYTES {
        return None;
    }
    let body = bytes.get(at + HEADER_BYTES..at + HEADER_BYTES + length)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let record = serde_json::from_slice(body).ok()?;
    Some((record, at + HEADER_BYTES + length))
}

fn encode_record(record: &Record) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(record)?;
    let length = u32::try_from(body.len())
        .ok()
        .filter(|length| (*length as usize) <= MAX_RECORD_BYTES)
        .ok_or_else(|| std::io::Error::other("controller log record over 64 MiB"))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl Inner {
    fn replay(&mut self, record: Record, bytes: u64) {
        match record {
            Record::Entries(entries) => {
                self.live_bytes += bytes;
                for entry in entries {
                    self.entries.insert(entry.log_id.index, entry);
                }
            }
            Record::TruncateFrom(index) => {
                let before = self.entries.len();
                self.entries.split_off(&index);
                self.shrink_live_bytes(before);
            }
            Record::PurgeUpTo(log_id) => {
                let before = self.entries.len();
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.last_purged = Some(log_id);
                self.shrink_live_bytes(before);
            }
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = committed,
        }
    }

    /// Entries are of similar size: those left of `before` hold their share of the bytes.
    fn shrink_live_bytes(&mut self, before: usize) {
        self.live_bytes = match before {
            0 => 0,
            before => self.live_bytes * self.entries.len() as u64 / before as u64,
        };
    }

    /// Appends `record` and syncs it; applies it to the in-memory copy only once durable.
    fn write(&mut self, record: Record) -> std::io::Result<()> {
        let bytes = encode_record(&record)?;
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.file_bytes += bytes.len() as u64;
        self.replay(record, bytes.len() as u64);
        if self.file_bytes > REWRITE_AT_BYTES && self.live_bytes * 4 < self.file_bytes {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with one holding only what is live.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        if let Some(vote) = self.vote {
            out.extend(encode_record(&Record::Vote(vote))?);
        }
        out.extend(encode_record(&Record::Committed(self.committed))?);
        if let Some(purged) = self.last_purged {
            out.extend(encode_record(&Record::PurgeUpTo(purged))?);
        }
        let entries: Vec<_> = self.entries.values().cloned().collect();
        let live = encode_record(&Record::Entries(entries))?;
        let live_bytes = live.len() as u64;
        out.extend(live);
        let temporary = self.dir.join(REWRITE_FILE);
        let mut file = File::create(&temporary)?;
        file.write_all(&out)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.file_bytes = out.len() as u64;
        self.live_bytes = live_bytes;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|entry| entry.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock()
            .write(Record::Vote(*vote))
            .map_err(|error| StorageIOError::write_vote(&error).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.lock()
            .write(Record::Committed(committed))
            .map_err(|error| StorageIOError::write(&error).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let written = self.lock().write(Record::Entries(entries));
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let storage = StorageIOError::write_logs(&error).into();
                callback.log_io_completed(Err(error));
                Err(storage)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock()
            .write(Record::TruncateFrom(log_id.index))
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock()
            .write(Record::PurgeUpTo(log_id))
            .map_err(|error| StorageIOError::write_logs(&error).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::cluster::state::StateMachineStore;
    use crate::cluster::types::Command;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(dir.path()).expect("open log");
            let state = StateMachineStore::open(dir.path()).expect("open state");
            Ok((dir, log, state))
        }
    }

    /// openraft's own contract tests for a log store and state machine.
    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command::FenceBroker {
                id: index as i32,
                incarnation: uuid::Uuid::nil(),
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    #[test]
    fn what_was_synced_survives_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            let mut inner = store.lock();
            inner
                .write(Record::Entries(
                    (1..=5).map(|index| entry(1, index)).collect(),
                ))
                .unwrap();
            inner.write(Record::Vote(Vote::new(2, 3))).unwrap();
            inner.write(Record::TruncateFrom(4)).unwrap();
            inner.write(Record::Entries(vec![entry(2, 4)])).unwrap();
            inner.write(Record::PurgeUpTo(entry(1, 1).log_id)).unwrap();
            inner
                .write(Record::Committed(Some(entry(2, 4).log_id)))
                .unwrap();
        }
        let intact = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        // A record cut short, as a crash in the middle of a write leaves it.
        let mut torn = encode_record(&Record::Entries(vec![entry(2, 5)])).unwrap();
        torn.truncate(torn.len() - 3);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.write_all(&torn).unwrap();
        drop(file);

        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![2, 3, 4]);
        {
            let inner = store.lock();
            assert_eq!(
                inner.entries[&4].log_id,
                entry(2, 4).log_id,
                "the new leader's entry"
            );
            assert_eq!(inner.vote, Some(Vote::new(2, 3)));
            assert_eq!(inner.committed, Some(entry(2, 4).log_id));
            assert_eq!(inner.last_purged, Some(entry(1, 1).log_id));
        }
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            intact,
            "the torn record is cut off the file"
        );
        store
            .lock()
            .write(Record::Entries(vec![entry(2, 5)]))
            .unwrap();
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(
            indexes(&store),
            vec![2, 3, 4, 5],
            "written after the cut, read back"
        );
    }

    #[test]
    fn a_mostly_purged_log_is_rewritten_smaller_with_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        {
            let mut inner = store.lock();
            inner.write(Record::Vote(Vote::new(7, 2))).unwrap();
            // About 9 MiB of entries, then a purge of all but the last ten.
            let mut index = 0;
            while inner.file_bytes <= REWRITE_AT_BYTES {
                let batch = (0..2000)
                    .map(|_| {
                        index += 1;
                        entry(7, index)
                    })
                    .collect();
                inner.write(Record::Entries(batch)).unwrap();
            }
            let before = inner.file_bytes;
            inner
                .write(Record::PurgeUpTo(entry(7, index - 10).log_id))
                .unwrap();
            assert!(
                inner.file_bytes * 100 < before,
                "rewritten: {} bytes, was {before}",
                inner.file_bytes
            );
        }
        let kept = indexes(&store);
        drop(store);
        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&reopened), kept);
        assert_eq!(kept.len(), 10);
        assert_eq!(reopened.lock().vote, Some(Vote::new(7, 2)));
        assert!(!dir.path().join(REWRITE_FILE).exists());
    }
}
