//! [`SnapshotSource`]: a snapshot file's latest live state under a prefix, in user-key order,
//! in bounded batches — and, for `--history`, every older revision still in the file.
//!
//! The `key` bucket is ordered by revision, not by user key. We make one streaming pass over
//! it that keeps, per user key under the prefix, only the list of its revisions (16 bytes +
//! a flag each; no values), then sort the keys. Batches are then produced in key order by
//! point lookups of the chosen revisions (the branch pages stay in the reader's page cache).
//! Memory is proportional to the number of keys and revisions under the prefix, never to the
//! value bytes; each batch is capped by count and by value bytes.
use super::bbolt::{BoltFile, Bucket};
use super::etcd::{KvRef, MetaBucket, Revision, decode_raw_kv, parse_revision_key};
use super::hash;
use super::{NoReadProgress, ReadProgress, SnapshotError};
use crate::source::{KvSource, RawKv, SourceError, SourceKind};
use std::collections::HashMap;
use std::path::Path;

/// A batch stops growing past this many value bytes even if `batch_size` is not reached.
const MAX_BATCH_BYTES: usize = 64 << 20;

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
    index: Vec<KeyRevs>,
    live: u64,
    history: u64,
    revision: i64,
    pos: usize,
    hist_key: usize,
    hist_rev: usize,
    notes: Vec<String>,
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
        let trailer = hash::check_trailer(path, progress)?;
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
        let len = std::fs::metadata(path)
            .map_err(|source| SnapshotError::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        let body = trailer
            .present
            .then(|| len.saturating_sub(hash::TRAILER_LEN));
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
        let (index, last_main) = build_index(&bolt, &kb, prefix, progress)?;
        let key_bucket = Some(kb);
        let live = index.iter().filter(|k| k.live().is_some()).count() as u64;
        let history = index.iter().map(|k| history_revs(k).count() as u64).sum();
        let revision = last_main
            .max(meta.finished_compact_revision.unwrap_or(0))
            .max(meta.scheduled_compact_revision.unwrap_or(0));
        Ok(SnapshotSource {
            bolt,
            key_bucket,
            path: path.display().to_string(),
            batch: batch_size.max(1),
            index,
            live,
            history,
            revision,
            pos: 0,
            hist_key: 0,
            hist_rev: 0,
            notes,
        })
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

/// One pass over the `key` bucket: per user key under `prefix`, its revisions in order.
/// Returns the index sorted by user key and the last main revision of the bucket.
fn build_index(
    bolt: &BoltFile,
    bucket: &Bucket,
    prefix: &[u8],
    progress: &dyn ReadProgress,
) -> Result<(Vec<KeyRevs>, i64), SnapshotError> {
    progress.start("indexing revisions", bolt.tx_size());
    let mut map: HashMap<Vec<u8>, Vec<RevLoc>> = HashMap::new();
    let mut last_main = 0;
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
        let loc = RevLoc { rev, tombstone };
        match map.get_mut(kv.key) {
            Some(v) => v.push(loc),
            None => {
                map.insert(kv.key.to_vec(), vec![loc]);
            }
        }
    }
    progress.finish();
    let mut index: Vec<KeyRevs> = map
        .into_iter()
        .map(|(key, revs)| KeyRevs { key, revs })
        .collect();
    index.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok((index, last_main))
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
        while self.pos < self.index.len() && out.len() < self.batch && bytes < MAX_BATCH_BYTES {
            let k = &self.index[self.pos];
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
        while self.hist_key < self.index.len() && out.len() < self.batch && bytes < MAX_BATCH_BYTES
        {
            let k = &self.index[self.hist_key];
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
