//! [`SnapshotSource`]: a snapshot file's latest live state under a prefix, in user-key order,
//! in bounded batches — and, for `--history`, every older revision still in the file.
//!
//! The `key` bucket is ordered by revision, not by user key. An index pass streams over it and
//! keeps, per user key under the prefix, only the list of its revisions (16 bytes + a flag each;
//! no values), in key order. Batches are then produced in key order by point lookups of the
//! chosen revisions (the branch pages stay in the reader's page cache).
//!
//! **Memory bound.** The index of one pass is capped at [`INDEX_BUDGET`] bytes (estimated as key
//! length + a fixed per-key and per-revision overhead). When a pass would exceed it, the pass
//! drops its largest keys and remembers the smallest dropped key as the chunk's exclusive upper
//! bound: every key below it has all its revisions in the chunk. When the chunk is exhausted the
//! next pass indexes `[bound, next bound)`. So peak memory is the budget plus one batch of values
//! (capped at `MAX_BATCH_BYTES`) whatever the number of keys; a keyspace whose index exceeds the
//! budget costs one more read of the `key` bucket per chunk (from the page cache). Then
//! [`KvSource::estimate`] is an upper bound (revisions that are not tombstones), not exact.
use super::bbolt::{BoltFile, Bucket};
use super::etcd::{KvRef, MetaBucket, Revision, decode_raw_kv, parse_revision_key};
use super::hash;
use super::{NoReadProgress, ReadProgress, SnapshotError};
use crate::source::{KvSource, RawKv, SourceError, SourceKind};
use std::collections::BTreeMap;
use std::path::Path;

/// A batch stops growing past this many value bytes even if `batch_size` is not reached.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// Estimated bytes one index pass may hold (see the module doc). About 200,000 typical keys.
pub const INDEX_BUDGET: usize = 24 << 20;

/// Estimated heap cost of one indexed key besides its bytes (BTreeMap slot, two Vec headers,
/// allocator overhead), and of one revision entry (with Vec growth slack).
const KEY_OVERHEAD: usize = 112;
const REV_COST: usize = 32;

#[derive(Clone, Copy, Debug)]
struct RevLoc {
    rev: Revision,
    tombstone: bool,
}

/// One user key and its revisions in ascending order.
struct KeyRevs {
    key: Vec<u8>,
    revs: Vec<RevLoc>,
}
impl KeyRevs {
    /// The latest live revision: the newest one, unless it is a tombstone.
    fn live(&self) -> Option<Revision> {
        self.revs.last().filter(|r| !r.tombstone).map(|r| r.rev)
    }
}

/// The latest live state of a snapshot file as a [`KvSource`].
pub struct SnapshotSource {
    bolt: BoltFile,
    key_bucket: Option<Bucket>,
    path: String,
    batch: usize,
    prefix: Vec<u8>,
    budget: usize,
    /// The loaded chunk: keys `[chunk_lo, chunk_hi)` (None = unbounded).
    index: Vec<KeyRevs>,
    chunk_lo: Option<Vec<u8>>,
    chunk_hi: Option<Vec<u8>>,
    live: u64,
    history: u64,
    revision: i64,
    /// Where the latest-state stream is: chunk lower bound, position in it, finished.
    pos_lo: Option<Vec<u8>>,
    pos: usize,
    live_done: bool,
    hist_lo: Option<Vec<u8>>,
    hist_key: usize,
    hist_rev: usize,
    hist_done: bool,
    notes: Vec<String>,
}

/// What one index pass yields.
struct Pass {
    keys: Vec<KeyRevs>,
    /// Exclusive upper bound of the chunk when the budget cut it short.
    hi: Option<Vec<u8>>,
    last_main: i64,
    /// Non-tombstone revisions under the prefix in the whole bucket (an upper bound of live keys).
    puts: u64,
}

impl SnapshotSource {
    /// Open `path` (SHA-256 trailer verified if present; structure checked while indexing) and
    /// stream keys starting with `prefix`.
    pub fn open(path: &Path, prefix: &[u8], batch_size: usize) -> Result<Self, SnapshotError> {
        Self::open_with(path, prefix, batch_size, &NoReadProgress)
    }

    /// [`SnapshotSource::open`] with a progress sink for the trailer check and the index pass.
    pub fn open_with(
        path: &Path,
        prefix: &[u8],
        batch_size: usize,
        progress: &dyn ReadProgress,
    ) -> Result<Self, SnapshotError> {
        Self::open_budget(path, prefix, batch_size, INDEX_BUDGET, progress)
    }

    /// [`SnapshotSource::open_with`] with an explicit index budget in bytes (tests use a tiny
    /// one to exercise the multi-pass path).
    pub fn open_budget(
        path: &Path,
        prefix: &[u8],
        batch_size: usize,
        budget: usize,
        progress: &dyn ReadProgress,
    ) -> Result<Self, SnapshotError> {
        let trailer = hash::check_trailer(path, progress)?;
        Self::open_trailer_checked(path, prefix, batch_size, budget, &trailer, progress)
    }

    /// [`SnapshotSource::open_with`] for a file whose trailer was just checked (e.g. by
    /// [`crate::snapshot::status_with`]): skips a second SHA-256 pass over the whole file.
    pub fn open_checked(
        path: &Path,
        prefix: &[u8],
        batch_size: usize,
        trailer: &hash::TrailerCheck,
        progress: &dyn ReadProgress,
    ) -> Result<Self, SnapshotError> {
        Self::open_trailer_checked(path, prefix, batch_size, INDEX_BUDGET, trailer, progress)
    }

    fn open_trailer_checked(
        path: &Path,
        prefix: &[u8],
        batch_size: usize,
        budget: usize,
        trailer: &hash::TrailerCheck,
        progress: &dyn ReadProgress,
    ) -> Result<Self, SnapshotError> {
        let mut notes = Vec::new();
        match trailer.matches {
            Some(false) => {
                return Err(SnapshotError::Corrupt {
                    path: path.display().to_string(),
                    message: "SHA-256 trailer does not match the file's contents (altered or damaged after `snapshot save`)".into(),
                });
            }
            Some(true) => {}
            None => notes.push(format!(
                "{}: no SHA-256 trailer (not an `etcdctl snapshot save` file, or truncated); integrity rests on the structure checks",
                path.display()
            )),
        }
        let body = hash::body_len(path, trailer)?;
        let bolt = BoltFile::open(path, body)?;
        for m in bolt.metas() {
            if let Some(p) = &m.problem {
                notes.push(format!(
                    "meta page {} is invalid ({p}); used the other one",
                    m.page
                ));
            }
        }
        let meta = read_meta(&bolt)?;
        let Some(kb) = bolt.bucket(b"key")? else {
            return Err(bolt.corrupt(
                "a bbolt file without etcd's `key` bucket: not an etcd snapshot or backend file"
                    .into(),
            ));
        };
        let pass = build_index(&bolt, &kb, prefix, None, budget, progress)?;
        let last_main = pass.last_main;
        let index = pass.keys;
        let key_bucket = Some(kb);
        let (live, history) = if pass.hi.is_none() {
            let live = index.iter().filter(|k| k.live().is_some()).count() as u64;
            let history = index.iter().map(|k| history_revs(k).count() as u64).sum();
            (live, history)
        } else {
            // Several chunks: exact counts would need every pass now; give upper bounds.
            (pass.puts, pass.puts)
        };
        let revision = last_main
            .max(meta.finished_compact_revision.unwrap_or(0))
            .max(meta.scheduled_compact_revision.unwrap_or(0));
        Ok(SnapshotSource {
            bolt,
            key_bucket,
            path: path.display().to_string(),
            batch: batch_size.max(1),
            prefix: prefix.to_vec(),
            budget,
            index,
            chunk_lo: None,
            chunk_hi: pass.hi,
            live,
            history,
            revision,
            pos_lo: None,
            pos: 0,
            live_done: false,
            hist_lo: None,
            hist_key: 0,
            hist_rev: 0,
            hist_done: false,
            notes,
        })
    }

    /// Make the chunk starting at `lo` the loaded one (a new index pass unless it already is).
    fn load_chunk(&mut self, lo: &Option<Vec<u8>>) -> Result<(), SnapshotError> {
        if self.chunk_lo == *lo {
            return Ok(());
        }
        self.index = Vec::new();
        let bucket = self
            .key_bucket
            .as_ref()
            .ok_or_else(|| self.bolt.corrupt("the key bucket vanished".into()))?;
        let pass = build_index(
            &self.bolt,
            bucket,
            &self.prefix,
            lo.as_deref(),
            self.budget,
            &NoReadProgress,
        )?;
        self.index = pass.keys;
        self.chunk_lo = lo.clone();
        self.chunk_hi = pass.hi;
        Ok(())
    }

    /// Whether the loaded chunk reaches the end of the key space.
    fn chunk_is_last(&self) -> bool {
        self.chunk_hi.is_none()
    }

    /// Live keys under the prefix.
    pub fn live_keys(&self) -> u64 {
        self.live
    }
    /// Older (non-latest, non-tombstone) revisions under the prefix.
    pub fn history_revisions(&self) -> u64 {
        self.history
    }

    /// Read one revision's value and check it belongs to `key`.
    fn fetch(&self, key: &[u8], rev: Revision) -> Result<RawKv, SnapshotError> {
        let bucket = self
            .key_bucket
            .as_ref()
            .ok_or_else(|| self.bolt.corrupt("the key bucket vanished".into()))?;
        let e = self.bolt.get(bucket, &rev.to_key())?.ok_or_else(|| {
            self.bolt.corrupt(format!(
                "bucket \"key\": revision {}_{} indexed but not found by lookup (inconsistent tree)",
                rev.main, rev.sub
            ))
        })?;
        let kv = decode_raw_kv(e.value()).map_err(|m| {
            self.bolt.corrupt(format!(
                "page {}: bucket \"key\" entry {}: {m}",
                e.pgid, e.index
            ))
        })?;
        if kv.key != key {
            return Err(self.bolt.corrupt(format!(
                "page {}: bucket \"key\": revision {}_{} holds another user key than the index pass saw",
                e.pgid, rev.main, rev.sub
            )));
        }
        Ok(kv)
    }

    fn err(&self, e: SnapshotError) -> SourceError {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        SourceError(msg)
    }
}

/// Every put revision that is not the latest live one (tombstones are not values).
fn history_revs(k: &KeyRevs) -> impl Iterator<Item = Revision> + '_ {
    let is_live = k.live().is_some();
    let last = k.revs.len().saturating_sub(1);
    k.revs
        .iter()
        .enumerate()
        .filter(move |(i, r)| {
            let latest_live = is_live && *i == last;
            !r.tombstone && !latest_live
        })
        .map(|(_, r)| r.rev)
}

fn read_meta(bolt: &BoltFile) -> Result<MetaBucket, SnapshotError> {
    let mut m = MetaBucket::default();
    if let Some(b) = bolt.bucket(b"meta")? {
        for e in bolt.cursor(&b, bolt.new_visited()) {
            let e = e?;
            m.absorb(e.key(), e.value()).map_err(|msg| {
                bolt.corrupt(format!(
                    "page {}: bucket \"meta\" entry {}: {msg}",
                    e.pgid, e.index
                ))
            })?;
        }
    }
    Ok(m)
}

/// One pass over the `key` bucket: per user key under `prefix` and `>= lo`, its revisions in
/// order, sorted by user key, cut at the budget (see the module doc).
fn build_index(
    bolt: &BoltFile,
    bucket: &Bucket,
    prefix: &[u8],
    lo: Option<&[u8]>,
    budget: usize,
    progress: &dyn ReadProgress,
) -> Result<Pass, SnapshotError> {
    progress.start("indexing revisions", bolt.tx_size());
    let mut map: BTreeMap<Vec<u8>, Vec<RevLoc>> = BTreeMap::new();
    let mut hi: Option<Vec<u8>> = None;
    let mut used = 0usize;
    let mut last_main = 0;
    let mut puts = 0u64;
    for e in bolt.cursor(bucket, bolt.new_visited()) {
        let e = e?;
        progress.advance((e.key().len() + e.value().len() + 16) as u64);
        let ctx = |m: String| {
            bolt.corrupt(format!(
                "page {}: bucket \"key\" entry {}: {m}",
                e.pgid, e.index
            ))
        };
        let (rev, tombstone) = parse_revision_key(e.key()).map_err(ctx)?;
        last_main = rev.main;
        let kv = KvRef::decode(e.value()).map_err(ctx)?;
        // Empty keys are `--bump-revision` markers, not user keys.
        if kv.key.is_empty() || !kv.key.starts_with(prefix) {
            continue;
        }
        if !tombstone {
            puts += 1;
        }
        if lo.is_some_and(|lo| kv.key < lo) || hi.as_deref().is_some_and(|hi| kv.key >= hi) {
            continue;
        }
        let loc = RevLoc { rev, tombstone };
        match map.get_mut(kv.key) {
            Some(v) => v.push(loc),
            None => {
                used += kv.key.len() + KEY_OVERHEAD;
                map.insert(kv.key.to_vec(), vec![loc]);
            }
        }
        used += REV_COST;
        // Over budget: drop the largest keys (never the last one, so a chunk always advances);
        // the smallest dropped key bounds the chunk.
        while used > budget && map.len() > 1 {
            let Some((k, revs)) = map.pop_last() else {
                break;
            };
            used = used.saturating_sub(k.len() + KEY_OVERHEAD + REV_COST * revs.len());
            hi = Some(k);
        }
    }
    progress.finish();
    let keys = map
        .into_iter()
        .map(|(key, revs)| KeyRevs { key, revs })
        .collect();
    Ok(Pass {
        keys,
        hi,
        last_main,
        puts,
    })
}

#[async_trait::async_trait]
impl KvSource for SnapshotSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Snapshot {
            path: self.path.clone(),
        }
    }
    fn revision(&self) -> i64 {
        self.revision
    }
    async fn estimate(&mut self) -> Result<Option<u64>, SourceError> {
        Ok(Some(self.live))
    }
    async fn next_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while !self.live_done && out.len() < self.batch && bytes < MAX_BATCH_BYTES {
            // Taken out and put back rather than cloned: this runs once per key.
            let lo = self.pos_lo.take();
            let loaded = self.load_chunk(&lo);
            self.pos_lo = lo;
            loaded.map_err(|e| self.err(e))?;
            let Some(k) = self.index.get(self.pos) else {
                // This chunk is done: on to the next one, or the end.
                if self.chunk_is_last() {
                    self.live_done = true;
                } else {
                    self.pos_lo = self.chunk_hi.clone();
                    self.pos = 0;
                }
                continue;
            };
            self.pos += 1;
            if let Some(rev) = k.live() {
                let kv = self.fetch(&k.key, rev).map_err(|e| self.err(e))?;
                bytes += kv.value.len();
                out.push(kv);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
    fn supports_history(&self) -> bool {
        true
    }
    async fn next_history_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while !self.hist_done && out.len() < self.batch && bytes < MAX_BATCH_BYTES {
            let lo = self.hist_lo.take();
            let loaded = self.load_chunk(&lo);
            self.hist_lo = lo;
            loaded.map_err(|e| self.err(e))?;
            let Some(k) = self.index.get(self.hist_key) else {
                if self.chunk_is_last() {
                    self.hist_done = true;
                } else {
                    self.hist_lo = self.chunk_hi.clone();
                    self.hist_key = 0;
                    self.hist_rev = 0;
                }
                continue;
            };
            let revs: Vec<Revision> = history_revs(k).skip(self.hist_rev).collect();
            let room = self.batch - out.len();
            let take = revs.len().min(room);
            for rev in revs.iter().take(take) {
                let kv = self.fetch(&k.key, *rev).map_err(|e| self.err(e))?;
                bytes += kv.value.len();
                out.push(kv);
            }
            if take < revs.len() {
                self.hist_rev += take;
            } else {
                self.hist_key += 1;
                self.hist_rev = 0;
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}
