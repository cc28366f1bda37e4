//! etcd snapshot files, read offline: a small strict read-only bbolt reader ([`bbolt`]), etcd's
//! layer on top ([`etcd`]: revision keys, `mvccpb.KeyValue`, the `meta` bucket), the integrity
//! checks ([`hash`]: SHA-256 trailer, etcd's CRC-32C hash, plus the structural checks of the
//! reader) and a [`crate::source::KvSource`] over the latest live state and, for `--history`,
//! older revisions ([`source`]).
//!
//! [`status`] answers `etcdutl snapshot status` with the same figures (hash, revision,
//! totalKey, totalSize, version) and says whether the file is intact.
pub mod bbolt;
pub mod etcd;
pub mod hash;
pub mod source;

pub use source::SnapshotSource;

use bbolt::{BoltFile, MetaPage};
use etcd::{KvRef, MetaBucket, parse_revision_key};
use hash::{EtcdHash, TrailerCheck};
use std::collections::HashSet;
use std::path::Path;

/// A snapshot file could not be read: corrupt, truncated, not a bbolt/etcd file. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: corrupt snapshot: {message}")]
    Corrupt { path: String, message: String },
    #[error("{path}: cannot read the snapshot file")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Progress of a long read, in bytes (the binary draws a bar; the library draws nothing).
pub trait ReadProgress {
    fn start(&self, _what: &str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
/// No progress output.
pub struct NoReadProgress;
impl ReadProgress for NoReadProgress {}

/// The figures of `etcdutl snapshot status` plus atrest's integrity checks.
///
/// The first five fields are etcdutl's (same JSON names, same definitions: `hash` is etcd's
/// CRC-32C over bucket names, keys and values; `revision` the main revision of the last `key`
/// bucket entry; `totalKey` the number of entries of all buckets (3.4/3.5 definition);
/// `totalSize` = pgid × page size; `version` the `meta/storageVersion`, empty before 3.6).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
    pub version: String,
    /// The file checked.
    pub path: String,
    /// True when every check passed (trailer, both meta pages, structure).
    pub ok: bool,
    /// What failed, one sentence each (empty when ok).
    pub problems: Vec<String>,
    /// Things worth knowing that are not failures.
    pub notes: Vec<String>,
    pub file_size: u64,
    pub page_size: u32,
    pub trailer: TrailerCheck,
    pub meta_pages: [MetaPage; 2],
    /// Which meta page bbolt uses (0 or 1).
    pub meta_used: u64,
    /// Pages reachable from the root (branch, leaf, overflow), of `pgid - 2` data pages.
    pub reachable_pages: u64,
    /// Live user keys at the latest revision (etcdutl 3.6's totalKey).
    pub live_keys: u64,
    /// Entries of the `key` bucket (every kept revision, tombstones included).
    pub revisions: u64,
    pub tombstones: u64,
    /// The store's current revision: max(revision, compaction revisions) (what a restored etcd
    /// starts at).
    pub current_revision: i64,
    pub buckets: Vec<String>,
    pub meta: MetaBucket,
    /// `cluster/clusterVersion`, e.g. `3.4.0`.
    pub cluster_version: Option<String>,
    /// Storage schema generation (3.4, 3.5, 3.6…), detected as etcd 3.6 does.
    pub schema: String,
}

/// Options for [`status_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusOptions {
    /// Accept a file with no SHA-256 trailer (a raw `member/snap/db` copy), like
    /// `etcdutl snapshot restore --skip-hash-check`.
    pub skip_hash_check: bool,
}

/// Compute status and integrity of a snapshot file. A file too broken to walk is an `Err`;
/// a readable file with failed checks (trailer, one meta page) is `Ok` with `ok == false`.
pub fn status(path: &Path) -> Result<SnapshotStatus, SnapshotError> {
    status_with(path, StatusOptions::default(), &NoReadProgress)
}

/// [`status`] with options and a progress sink.
pub fn status_with(
    path: &Path,
    opts: StatusOptions,
    progress: &dyn ReadProgress,
) -> Result<SnapshotStatus, SnapshotError> {
    let trailer = hash::check_trailer(path, progress)?;
    let body = hash::body_len(path, &trailer)?;
    let bolt = BoltFile::open(path, body).map_err(|e| with_trailer(e, &trailer))?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match trailer.matches {
        Some(true) => {}
        Some(false) => problems.push(
            "SHA-256 trailer does not match the file's contents: the file was altered or damaged after `snapshot save` (etcdutl snapshot restore would refuse it)".to_string(),
        ),
        None if opts.skip_hash_check => notes.push(
            "no SHA-256 trailer (accepted with --skip-hash-check): integrity rests on the structure checks only".to_string(),
        ),
        None => problems.push(
            "no SHA-256 trailer: this is not a complete `etcdctl snapshot save` file (a truncated snapshot or a raw member/snap/db copy); etcdutl snapshot restore refuses it without --skip-hash-check; pass --skip-hash-check to accept it".to_string(),
        ),
    }
    for m in bolt.metas() {
        if let Some(p) = &m.problem {
            problems.push(format!(
                "meta page {} is invalid: {p} (bbolt falls back to the other one)",
                m.page
            ));
        }
    }
    if trailer.present && bolt.body_len() != bolt.tx_size() {
        notes.push(format!(
            "the bbolt image is {} bytes but the meta says {} (pgid {} × page size {})",
            bolt.body_len(),
            bolt.tx_size(),
            bolt.meta().pgid,
            bolt.page_size()
        ));
    }
    let walk = walk_all(&bolt, progress).map_err(|e| with_trailer(e, &trailer))?;
    if !walk.buckets.iter().any(|b| b == "key") {
        notes.push(
            "no `key` bucket: this bbolt file is not an etcd snapshot or backend file".to_string(),
        );
    }
    problems.extend(walk.structure_problems.iter().cloned());
    let current_revision = walk
        .revision
        .max(walk.meta.finished_compact_revision.unwrap_or(0))
        .max(walk.meta.scheduled_compact_revision.unwrap_or(0));
    Ok(SnapshotStatus {
        hash: walk.hash,
        revision: walk.revision,
        total_key: walk.total_key,
        total_size: bolt.tx_size(),
        version: walk.meta.etcdutl_version(),
        path: path.display().to_string(),
        ok: problems.is_empty(),
        problems,
        notes,
        file_size: bolt.file_len(),
        page_size: bolt.page_size(),
        trailer,
        meta_pages: bolt.metas().clone(),
        meta_used: bolt.meta().page,
        reachable_pages: walk.reachable_pages,
        live_keys: walk.live_keys,
        revisions: walk.revisions,
        tombstones: walk.tombstones,
        current_revision,
        buckets: walk.buckets,
        schema: walk.meta.schema(),
        meta: walk.meta,
        cluster_version: walk.cluster_version,
    })
}

/// Add "the trailer does not match" to a corruption error when it is so: the file was damaged
/// after `snapshot save` (not written corrupt by etcd).
fn with_trailer(e: SnapshotError, t: &TrailerCheck) -> SnapshotError {
    match (e, t.matches) {
        (SnapshotError::Corrupt { path, message }, Some(false)) => SnapshotError::Corrupt {
            path,
            message: format!(
                "{message} (and the SHA-256 trailer does not match: the file was damaged after `snapshot save`)"
            ),
        },
        (e, _) => e,
    }
}

/// Everything one full walk of the file yields.
struct Walk {
    hash: u32,
    revision: i64,
    total_key: u64,
    live_keys: u64,
    revisions: u64,
    tombstones: u64,
    reachable_pages: u64,
    buckets: Vec<String>,
    meta: MetaBucket,
    cluster_version: Option<String>,
    structure_problems: Vec<String>,
}

/// Walk every bucket in key order with the structural checks (one visited set for the whole
/// file: a page referenced twice anywhere is corruption), computing etcdutl's figures.
fn walk_all(bolt: &BoltFile, progress: &dyn ReadProgress) -> Result<Walk, SnapshotError> {
    progress.start("checking structure", bolt.tx_size());
    let root = bolt.root_bucket();
    let mut visited = bolt.new_visited();
    // The root bucket lists the top-level buckets (about ten): keep their entries (cheap
    // handles into cached pages) so each bucket can be walked with the shared visited set.
    let mut tops = Vec::new();
    {
        let mut cur = bolt.cursor(&root, visited);
        for e in cur.by_ref() {
            tops.push(e?);
        }
        visited = cur.into_visited();
    }
    let mut w = Walk {
        hash: 0,
        revision: 0,
        total_key: 0,
        live_keys: 0,
        revisions: 0,
        tombstones: 0,
        reachable_pages: 0,
        buckets: Vec::new(),
        meta: MetaBucket::default(),
        cluster_version: None,
        structure_problems: Vec::new(),
    };
    let mut h = EtcdHash::default();
    let mut live: HashSet<Vec<u8>> = HashSet::new();
    for top in &tops {
        let name = String::from_utf8_lossy(top.key()).into_owned();
        if !top.is_bucket() {
            return Err(bolt.corrupt(format!(
                "page {}: root bucket entry {name:?} is not a bucket (etcd: cannot get hash of bucket {name})",
                top.pgid
            )));
        }
        let b = bolt.open_bucket(&root, top)?;
        h.write(top.key());
        w.buckets.push(name.clone());
        let mut cur = bolt.cursor(&b, visited);
        for e in cur.by_ref() {
            let e = e?;
            h.write(e.key());
            if !e.is_bucket() {
                // bbolt's ForEach reports nested buckets' values as nil.
                h.write(e.value());
            }
            w.total_key += 1;
            progress.advance((e.key().len() + e.value().len() + 16) as u64);
            let ctx = |m: String| {
                bolt.corrupt(format!(
                    "page {}: bucket {name:?} entry {}: {m}",
                    e.pgid, e.index
                ))
            };
            match top.key() {
                b"key" => {
                    let (rev, tomb) = parse_revision_key(e.key()).map_err(ctx)?;
                    let kv = KvRef::decode(e.value()).map_err(ctx)?;
                    w.revision = rev.main;
                    w.revisions += 1;
                    if tomb {
                        w.tombstones += 1;
                        live.remove(kv.key);
                    } else if !kv.key.is_empty() {
                        live.insert(kv.key.to_vec());
                    }
                }
                b"meta" => w.meta.absorb(e.key(), e.value()).map_err(ctx)?,
                b"cluster" if e.key() == b"clusterVersion" => {
                    w.cluster_version = Some(String::from_utf8_lossy(e.value()).into_owned())
                }
                _ => {}
            }
        }
        visited = cur.into_visited();
    }
    progress.finish();
    w.structure_problems = freelist_checks(bolt, &mut visited)?;
    w.hash = h.sum();
    w.live_keys = live.len() as u64;
    w.reachable_pages = visited.count();
    Ok(w)
}

/// At most this many page-level findings are listed one by one.
const MAX_LISTED: usize = 20;

/// bbolt `tx.Check`'s freelist rules, when the freelist is persisted (etcd on macOS/Windows):
/// no reachable page is free ("reachable freed"), every data page is reachable or free
/// ("unreachable unfreed"). Without a persisted freelist, free = unreachable by definition.
fn freelist_checks(
    bolt: &BoltFile,
    visited: &mut bbolt::Visited,
) -> Result<Vec<String>, SnapshotError> {
    let Some((ids, fl_page, fl_pages)) = bolt.freelist()? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for p in fl_page..fl_page + fl_pages {
        if !visited.mark(p) {
            out.push(format!(
                "page {p}: the freelist page is also part of a bucket tree"
            ));
        }
    }
    let hwm = bolt.meta().pgid;
    let mut free = bbolt::Visited::new(hwm);
    let mut extra = 0usize;
    let mut push = |out: &mut Vec<String>, m: String| {
        if out.len() < MAX_LISTED {
            out.push(m);
        } else {
            extra += 1;
        }
    };
    for id in ids {
        if !free.mark(id) {
            push(&mut out, format!("page {id}: listed twice in the freelist"));
        } else if visited.is_marked(id) {
            push(
                &mut out,
                format!("page {id}: reachable from a bucket but listed as free (reachable freed)"),
            );
        }
    }
    for id in 2..hwm {
        if !visited.is_marked(id) && !free.is_marked(id) {
            push(
                &mut out,
                format!("page {id}: neither reachable nor free (unreachable unfreed)"),
            );
        }
    }
    if extra > 0 {
        out.push(format!("… and {extra} more page-level problems"));
    }
    Ok(out)
}
