//! The durable layer: a redb database (pure Rust, ACID, fsync on commit).
//!
//! Tables, keyed by integers so a record's key is its number's digits:
//!
//! * `numbers`: E.164 digits → [`StoredRecord`] (any lifecycle state), in
//!   the binary format of `codec.rs` since store format 2, JSON before;
//! * `ports`: order id → JSON of [`PortOrder`];
//! * `meta`: `"version"`, `"seeded"` (1 once the seed was imported),
//!   `"next_port_id"`, and in cluster mode `"event_ms"`/`"event_seq"`: the
//!   Redis stream id of the last number event applied (written in the same
//!   transaction as the records it changed).
//!
//! Port orders stay JSON (few, read once). Numbers are read in full at
//! every start, so their decoding is on the start's critical path.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::codec;
use super::ports::PortOrder;
use super::InventoryError;
use crate::routing::{NumberRecord, NumberState, Peers};
use crate::sip::{NumberKind, E164};

const NUMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("numbers");
const PORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ports");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_VERSION: &str = "version";
const META_SEEDED: &str = "seeded";
const META_NEXT_PORT: &str = "next_port_id";
const META_EVENT_MS: &str = "event_ms";
const META_EVENT_SEQ: &str = "event_seq";
/// Format of the stored values; bump on an incompatible change. 2: number
/// records may be binary (`codec.rs`); a format-1 store is read unchanged and
/// marked 2 at open, so an older build refuses it instead of misreading it.
const FORMAT_VERSION: u64 = 2;
/// The oldest format this build reads.
const FORMAT_OLDEST: u64 = 1;
/// redb's page cache. Its default (1 GiB) filled up with every page of the
/// `numbers` table during the start-up scan and stayed resident: ~300 of the
/// 740 bytes per number at 1 M (issue 17). The table is read in full once,
/// then only written, so a small cache costs nothing on the event path.
const CACHE_BYTES: usize = 16 << 20;

/// A number record as stored: plain strings, no shared pointers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredRecord {
    pub(super) e164: E164,
    pub(super) kind: NumberKind,
    #[serde(default)]
    pub(super) flow: Option<String>,
    pub(super) carriers: Vec<String>,
    #[serde(default)]
    pub(super) max_concurrent: Option<u32>,
    #[serde(default)]
    pub(super) cnam: Option<String>,
    pub(super) state: NumberState,
}

impl From<&NumberRecord> for StoredRecord {
    fn from(r: &NumberRecord) -> Self {
        StoredRecord {
            e164: r.e164,
            kind: r.kind,
            flow: r.flow.as_deref().map(str::to_owned),
            carriers: r.carriers.iter().map(|c| c.to_string()).collect(),
            max_concurrent: r.max_concurrent,
            cnam: r.cnam.as_deref().map(str::to_owned),
            state: r.state,
        }
    }
}

/// Shares one `Arc<str>` per distinct carrier and flow name while loading
/// millions of records (a handful of carriers, far fewer flows than numbers).
/// Keyed by the `Arc` itself: no second copy of each name as a `String`
/// (with a million distinct flows that copy was ~60 bytes a number of heap
/// left fragmented after the load).
#[derive(Default)]
pub(crate) struct Interner(std::collections::HashSet<Arc<str>, ahash::RandomState>);

impl Interner {
    fn get(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.0.get(s.as_str()) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(Arc::clone(&a));
        a
    }
}

impl StoredRecord {
    /// The in-memory record; carrier names come from `peers` when known.
    /// The number this record is for.
    pub(crate) fn e164(&self) -> E164 {
        self.e164
    }

    pub(crate) fn into_record(self, peers: &Peers, names: &mut Interner) -> NumberRecord {
        let (mut r, flow) = self.into_parts(peers, names);
        r.flow = flow.map(|f| names.get(f));
        r
    }

    /// The in-memory record without its flow, and the flow as stored: the
    /// start-up load lets the routing base intern flows, so each is hashed
    /// once (interning here as well cost ~0.6 CPU s at 1 M, issue 17).
    pub(crate) fn into_parts(self, peers: &Peers, names: &mut Interner) -> (NumberRecord, Option<String>) {
        let carriers = self
            .carriers
            .into_iter()
            .map(|c| match peers.carrier(&c) {
                Some((_, cp)) => Arc::clone(&cp.name),
                None => names.get(c),
            })
            .collect();
        let r = NumberRecord {
            e164: self.e164,
            kind: self.kind,
            flow: None,
            carriers,
            max_concurrent: self.max_concurrent,
            cnam: self.cnam.map(|c| Arc::from(c.as_str())),
            state: self.state,
        };
        (r, self.flow)
    }
}

/// Everything one accepted event writes, committed in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Number → new record, or `None` to delete it.
    pub numbers: Vec<(E164, Option<NumberRecord>)>,
    /// Port orders to insert or overwrite.
    pub ports: Vec<PortOrder>,
    /// New value of the port id counter.
    pub next_port_id: Option<u64>,
    /// Marks the seed as imported.
    pub seeded: bool,
    /// Cluster mode: the stream id of the event these numbers come from.
    pub event: Option<(u64, u64)>,
}

/// What the store holds besides the numbers, read at start-up.
pub(crate) struct Loaded {
    /// How many numbers were read.
    pub numbers: usize,
    pub ports: Vec<PortOrder>,
    pub next_port_id: u64,
    pub seeded: bool,
    /// The last cluster event applied (`(0, 0)`: none).
    pub event: (u64, u64),
}

/// The open database.
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates the database file and makes sure every table exists.
    pub(crate) fn open(path: &Path) -> Result<Store, InventoryError> {
        Store::init(Database::builder().set_cache_size(CACHE_BYTES).create(path)?)
    }

    /// Opens the database on `backend` the way [`Store::open`] would, but
    /// refuses to repair a store that was not closed cleanly: `sipedge check`
    /// probes a copy-on-write view of the file and must not spend minutes
    /// repairing gigabytes in memory (start repairs it; that is not an error).
    pub(crate) fn open_probe(backend: impl redb::StorageBackend) -> Result<Store, InventoryError> {
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES).set_repair_callback(|session| session.abort());
        Store::init(builder.create_with_backend(backend)?)
    }

    fn init(db: Database) -> Result<Store, InventoryError> {
        let txn = db.begin_write()?;
        {
            txn.open_table(NUMBERS)?;
            txn.open_table(PORTS)?;
            let mut meta = txn.open_table(META)?;
            let version = meta.get(META_VERSION)?.map(|v| v.value());
            match version {
                Some(FORMAT_VERSION) => {}
                None | Some(FORMAT_OLDEST..FORMAT_VERSION) => {
                    meta.insert(META_VERSION, FORMAT_VERSION)?;
                }
                Some(found) => return Err(InventoryError::Version { found, supported: FORMAT_VERSION }),
            }
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Whether a seed would be ignored: seeded before, or not empty.
    pub(crate) fn ignores_seed(&self) -> Result<bool, InventoryError> {
        let txn = self.db.begin_read()?;
        let seeded = txn.open_table(META)?.get(META_SEEDED)?.is_some_and(|v| v.value() != 0);
        Ok(seeded || !txn.open_table(NUMBERS)?.is_empty()? || !txn.open_table(PORTS)?.is_empty()?)
    }

    /// Reads every port order and counter, and hands each number to `each`
    /// as it is decoded (the first argument is the table's size, a capacity
    /// hint), so the records go straight into their final layout with no
    /// intermediate `Vec` of millions of them.
    pub(crate) fn load(&self, mut each: impl FnMut(usize, StoredRecord)) -> Result<Loaded, InventoryError> {
        let txn = self.db.begin_read()?;
        let numbers = txn.open_table(NUMBERS)?;
        let total = usize::try_from(numbers.len()?).unwrap_or(0);
        let mut count = 0;
        for row in numbers.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let r = codec::decode(key, v.value()).map_err(|source| InventoryError::Corrupt {
                table: "numbers",
                key,
                source: Box::new(source),
            })?;
            if r.e164.as_u64() != key {
                return Err(InventoryError::KeyMismatch { table: "numbers", key });
            }
            each(total, r);
            count += 1;
        }
        let mut ports = Vec::new();
        for row in txn.open_table(PORTS)?.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let p: PortOrder = serde_json::from_slice(v.value()).map_err(|source| InventoryError::Corrupt {
                table: "ports",
                key,
                source: Box::new(source),
            })?;
            if p.id != key {
                return Err(InventoryError::KeyMismatch { table: "ports", key });
            }
            ports.push(p);
        }
        let meta = txn.open_table(META)?;
        let get = |k: &str| -> Result<Option<u64>, InventoryError> { Ok(meta.get(k)?.map(|v| v.value())) };
        let max_id = ports.iter().map(|p| p.id).max().unwrap_or(0);
        // Never hand out an id twice, even if the counter were behind.
        let next_port_id = get(META_NEXT_PORT)?.unwrap_or(1).max(max_id + 1);
        let seeded = get(META_SEEDED)?.is_some_and(|v| v != 0);
        let event = (get(META_EVENT_MS)?.unwrap_or(0), get(META_EVENT_SEQ)?.unwrap_or(0));
        Ok(Loaded { numbers: count, ports, next_port_id, seeded, event })
    }

    /// Writes `batch` in one transaction and commits it durably (redb's
    /// default `Durability::Immediate`: fsync before `commit` returns).
    /// On any error nothing is written (the transaction aborts on drop).
    pub(crate) fn write(&self, batch: &Batch) -> Result<(), InventoryError> {
        let txn = self.db.begin_write()?;
        {
            let mut numbers = txn.open_table(NUMBERS)?;
            for (n, rec) in &batch.numbers {
                match rec {
                    Some(r) => {
                        let bytes =
                            codec::encode(&StoredRecord::from(r)).ok_or(InventoryError::TooLong { key: n.as_u64() })?;
                        numbers.insert(n.as_u64(), bytes.as_slice())?;
                    }
                    None => {
                        numbers.remove(n.as_u64())?;
                    }
                }
            }
            let mut ports = txn.open_table(PORTS)?;
            for p in &batch.ports {
                let bytes = serde_json::to_vec(p).map_err(InventoryError::Encode)?;
                ports.insert(p.id, bytes.as_slice())?;
            }
            let mut meta = txn.open_table(META)?;
            if let Some(id) = batch.next_port_id {
                meta.insert(META_NEXT_PORT, id)?;
            }
            if batch.seeded {
                meta.insert(META_SEEDED, 1)?;
            }
            if let Some((ms, seq)) = batch.event {
                meta.insert(META_EVENT_MS, ms)?;
                meta.insert(META_EVENT_SEQ, seq)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
