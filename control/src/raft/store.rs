//! Durable storage for one control node: the Raft log, vote and snapshots in one redb file, and
//! the state machine that applies committed commands to [`ControlState`].
//!
//! Appends commit without waiting for the disk so they are readable at once; a flusher thread then
//! makes everything written so far durable with one fsync and only then tells Raft the entries are
//! persisted. Under load many appends share one fsync (group commit).

use super::{CommandResult, TypeConfig};
use crate::state::{ControlState, Outcome};
use futures_util::{Stream, TryStreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock, mpsc};
use tokio::sync::broadcast;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";
const SNAPSHOT_KEY: &str = "snapshot";

/// The database file inside a node's data directory.
pub const DATABASE_FILE: &str = "control.redb";

fn io_err(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(err.to_string())
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// The node's database, shared by the log store, the state machine and their threads.
///
/// `_closed` is declared after `db`, so it is dropped, waking [`StoreClosed`], only once the
/// database itself has been dropped and its file lock released. (An `Arc`'s strong count reaches
/// zero before its value is dropped: a restart that watched the count could still find the file
/// locked.)
pub struct NodeDatabase {
    db: Database,
    _closed: tokio::sync::watch::Sender<()>,
}

impl std::ops::Deref for NodeDatabase {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

/// Tells when the node's database is closed: every user let go of it and its file is unlocked.
#[derive(Clone)]
pub struct StoreClosed(tokio::sync::watch::Receiver<()>);

impl StoreClosed {
    /// Waits until the database is closed, at most `bound`; whether it is.
    pub async fn wait(&self, bound: std::time::Duration) -> bool {
        let mut closed = self.0.clone();
        // Nothing is ever sent: `changed` fails once the sender is dropped with the database.
        tokio::time::timeout(bound, async { while closed.changed().await.is_ok() {} })
            .await
            .is_ok()
    }
}

/// Opens (or creates) the node's database and returns its log store and state machine, and a
/// handle that tells when every user of the database has let go of it.
pub fn open(data_dir: &Path) -> io::Result<(LogStore, StateMachineStore, StoreClosed)> {
    std::fs::create_dir_all(data_dir)?;
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    let db = Arc::new(NodeDatabase {
        db: Database::create(data_dir.join(DATABASE_FILE)).map_err(io_err)?,
        _closed: closed_tx,
    });
    {
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(META).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
    }
    let closed = StoreClosed(closed_rx);
    let log = LogStore::new(db.clone());
    let state_machine = StateMachineStore::load(db)?;
    Ok((log, state_machine, closed))
}

fn get_meta<T: for<'de> Deserialize<'de>>(db: &Database, key: &str) -> io::Result<Option<T>> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(META).map_err(io_err)?;
    match table.get(key).map_err(io_err)? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

/// Stores `snapshot` unless the stored one is newer. Building a snapshot runs beside installing
/// one from the leader; a build that finishes last must not replace a newer installed snapshot
/// (the log before it is already purged, so the node could not restart from the older one).
fn store_snapshot_if_newer(db: &Database, snapshot: &StoredSnapshot) -> io::Result<()> {
    let bytes = encode(snapshot)?;
    let txn = db.begin_write().map_err(io_err)?;
    {
        let mut table = txn.open_table(META).map_err(io_err)?;
        let stored = match table.get(SNAPSHOT_KEY).map_err(io_err)? {
            Some(existing) => Some(decode::<StoredSnapshot>(existing.value())?.meta.last_log_id),
            None => None,
        };
        if stored.is_some_and(|stored| stored > snapshot.meta.last_log_id) {
            return Ok(());
        }
        table.insert(SNAPSHOT_KEY, bytes.as_slice()).map_err(io_err)?;
    }
    txn.commit().map_err(io_err)
}

fn put_meta<T: Serialize>(db: &Database, key: &str, value: &T, durability: Durability) -> io::Result<()> {
    let bytes = encode(value)?;
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(durability).map_err(io_err)?;
    txn.open_table(META)
        .map_err(io_err)?
        .insert(key, bytes.as_slice())
        .map_err(io_err)?;
    txn.commit().map_err(io_err)
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<NodeDatabase>,
    flusher: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    fn new(db: Arc<NodeDatabase>) -> Self {
        let (flusher, pending) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&flush_db, &pending))
            .expect("spawn the log flusher");
        Self { db, flusher }
    }
}

/// Makes every commit so far durable, once per batch of waiting appends, in append order.
fn flush_loop(db: &Database, pending: &mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = pending.recv() {
        let mut batch = vec![first];
        batch.extend(pending.try_iter());
        let result = db
            .begin_write()
            .map_err(io_err)
            .and_then(|txn| txn.commit().map_err(io_err));
        for callback in batch {
            let result = result
                .as_ref()
                .map(|_| ())
                .map_err(|err| io::Error::new(err.kind(), err.to_string()));
            callback.io_completed(result);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Nothing at or before the purge point is part of the log, whatever a crash left behind.
        let last_purged: Option<LogIdOf<TypeConfig>> = get_meta(&self.db, LAST_PURGED_KEY)?;
        let start = last_purged.map_or(start, |id| start.max(id.index() + 1));
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let mut entries = Vec::new();
        for item in table.range(start..).map_err(io_err)? {
            let (index, bytes) = item.map_err(io_err)?;
            if !range.contains(&index.value()) {
                break;
            }
            entries.push(decode(bytes.value())?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        get_meta(&self.db, VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<TypeConfig>> = get_meta(&self.db, LAST_PURGED_KEY)?;
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let last_entry = match table.last().map_err(io_err)? {
            Some((_, bytes)) => Some(decode::<EntryOf<TypeConfig>>(bytes.value())?.log_id()),
            None => None,
        };
        // A purge past the end of the log (after installing a snapshot) leaves the purge point
        // as the last log id.
        let last_log_id = last_entry.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        // A vote must be on disk before it is acted on, or a restarted node could vote twice in
        // one term.
        let db = self.db.clone();
        let vote = *vote;
        tokio::task::spawn_blocking(move || put_meta(&db, VOTE_KEY, &vote, Durability::Immediate))
            .await
            .map_err(io_err)?
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        // Lets a restarted node re-apply committed entries before it hears from a leader.
        put_meta(&self.db, COMMITTED_KEY, &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(get_meta::<Option<LogIdOf<TypeConfig>>>(&self.db, COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::None).map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            for entry in entries {
                let bytes = encode(&entry)?;
                table.insert(entry.index(), bytes.as_slice()).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)?;
        self.flusher
            .send(callback)
            .map_err(|_| io::Error::other("the log flusher stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::None).map_err(io_err)?;
        txn.open_table(LOG)
            .map_err(io_err)?
            .retain_in(from.., |_, _| false)
            .map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        // The purge point and the deletion in one transaction: a flush between the two must not
        // make the point durable without the deletion, or the reverse.
        let point = encode(&log_id)?;
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::None).map_err(io_err)?;
        txn.open_table(META)
            .map_err(io_err)?
            .insert(LAST_PURGED_KEY, point.as_slice())
            .map_err(io_err)?;
        txn.open_table(LOG)
            .map_err(io_err)?
            .retain_in(..=log_id.index(), |_, _| false)
            .map_err(io_err)?;
        txn.commit().map_err(io_err)
    }
}

/// A snapshot as stored on disk and sent to peers.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf<TypeConfig>,
    data: Vec<u8>,
}

/// What a snapshot's data holds.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    state: ControlState,
}

/// The applied state, shared with readers on the node.
pub struct Applied {
    pub state: ControlState,
    pub last_applied: Option<LogIdOf<TypeConfig>>,
    pub membership: StoredMembershipOf<TypeConfig>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<NodeDatabase>,
    applied: Arc<RwLock<Applied>>,
    /// Outcomes that bridges must act on, for this node's bridge hub.
    outcomes: broadcast::Sender<Arc<Outcome>>,
}

/// Outcomes buffered for a slow bridge hub; one that falls further behind reconciles instead.
const OUTCOMES_BUFFERED_MAX: usize = 4_096;

impl StateMachineStore {
    fn load(db: Arc<NodeDatabase>) -> io::Result<Self> {
        let mut applied = Applied {
            state: ControlState::default(),
            last_applied: None,
            membership: Default::default(),
        };
        if let Some(snapshot) = get_meta::<StoredSnapshot>(&db, SNAPSHOT_KEY)? {
            let body: SnapshotBody = decode(&snapshot.data)?;
            applied.state = body.state;
            applied.last_applied = snapshot.meta.last_log_id;
            applied.membership = snapshot.meta.last_membership;
        }
        Ok(Self {
            db,
            applied: Arc::new(RwLock::new(applied)),
            outcomes: broadcast::channel(OUTCOMES_BUFFERED_MAX).0,
        })
    }

    /// Applied outcomes that concern bridges (kicks, ended rooms, moves, status changes).
    pub fn outcomes(&self) -> broadcast::Sender<Arc<Outcome>> {
        self.outcomes.clone()
    }

    /// The applied state, for reads on this node.
    pub fn applied(&self) -> Arc<RwLock<Applied>> {
        self.applied.clone()
    }

    fn read_applied(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.applied.read().expect("state lock")
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>, io::Error> {
        let (meta, data) = {
            let applied = self.read_applied();
            let meta = SnapshotMetaOf::<TypeConfig> {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            let data = encode(&SnapshotBody {
                state: applied.state.clone(),
            })?;
            (meta, data)
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || store_snapshot_if_newer(&db, &stored))
            .await
            .map_err(io_err)??;
        Ok(SnapshotOf::<TypeConfig, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let applied = self.read_applied();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let result: CommandResult = {
                let mut applied = self.applied.write().expect("state lock");
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Ok(Outcome::Nothing),
                    EntryPayload::Normal(proposal) => applied.state.apply_proposal(proposal),
                    EntryPayload::Membership(membership) => {
                        applied.membership =
                            StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), membership);
                        Ok(Outcome::Nothing)
                    }
                }
            };
            if let Ok(outcome) = &result
                && outcome.concerns_bridges()
            {
                // No receiver (no hub on this node) is fine.
                let _ = self.outcomes.send(Arc::new(outcome.clone()));
            }
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Cursor<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = decode(&data)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || store_snapshot_if_newer(&db, &stored))
            .await
            .map_err(io_err)??;
        let mut applied = self.applied.write().expect("state lock");
        applied.state = body.state;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>, io::Error> {
        Ok(
            get_meta::<StoredSnapshot>(&self.db, SNAPSHOT_KEY)?.map(|stored| SnapshotOf::<
                TypeConfig,
                Cursor<Vec<u8>>,
            > {
                meta: stored.meta,
                snapshot: Cursor::new(stored.data),
            }),
        )
    }
}
