//! A small, strict, read-only reader of bbolt files (the storage format of etcd's backend and
//! of `etcdctl snapshot save` images), written from `shared/spec/etcd-snapshot-format.md` §2.
//!
//! Why our own: no crate reads etcd's files (bbolt-rs refuses unpersisted freelists, jammdb is
//! another format). Why this shape:
//! - The file is read with positioned reads (`FileExt::read_exact_at`) through a small LRU page
//!   cache, never copied into memory whole and never memory-mapped: the crate forbids `unsafe`,
//!   and a mapped file that shrinks under us would be a SIGBUS, a positioned read an error.
//! - Every offset taken from the file is bounds-checked against the page (or inline bucket) it
//!   lives in; every page followed is checked (id < pgid, header id, type, overflow range) and
//!   marked in a visited bitset, so cycles, shared subtrees and absurd counts end in
//!   [`SnapshotError::Corrupt`] naming the page, never in a panic or an endless walk.
//! - Iteration is a streaming [`Cursor`] with an explicit stack that also checks key order
//!   (strictly ascending, within the separator keys of the ancestors), like bbolt's `tx.Check`.
use super::SnapshotError;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// bbolt's magic number, as a little-endian writer stores it.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The magic read by a little-endian reader from a big-endian writer's file.
const MAGIC_SWAPPED: u32 = 0xEDDA_0CED;
/// bbolt file format version (all etcd releases).
pub const FORMAT_VERSION: u32 = 2;
/// `meta.freelist` when the freelist is not persisted (etcd on Linux).
pub const PGID_NO_FREELIST: u64 = u64::MAX;

const PAGE_HEADER: usize = 16;
const ELEM_SIZE: usize = 16;
const META_SIZE: usize = 64;
const BRANCH_FLAG: u16 = 0x01;
const LEAF_FLAG: u16 = 0x02;
const META_FLAG: u16 = 0x04;
const FREELIST_FLAG: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (+ inline page).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
const BUCKET_HEADER: usize = 16;
/// Largest logical page (page + overflow) we accept. bbolt values are < 2 GiB, etcd's requests
/// are a few MiB at most; a header claiming more is corruption, and refusing it keeps a
/// corrupt `overflow` field from making us allocate gigabytes.
const MAX_LOGICAL_PAGE: u64 = 256 << 20;
/// B+tree depth limit (real trees are < 10 deep).
const MAX_DEPTH: usize = 64;
/// Page size bounds accepted (bbolt probes 1 KiB … 16 MiB).
const MIN_PAGE_SIZE: u32 = 1024;
const MAX_PAGE_SIZE: u32 = 16 << 20;
/// Pages kept in the cache (branch pages stay hot; leaves stream past).
const CACHE_PAGES: usize = 512;
/// Logical pages larger than this are not cached (big overflow values stream).
const CACHE_MAX_BYTES: usize = 64 << 10;

/// One of the two meta pages, decoded, and whether bbolt would accept it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaPage {
    /// 0 or 1.
    pub page: u64,
    pub valid: bool,
    /// Why it is not valid (None when valid).
    pub problem: Option<String>,
    pub page_size: u32,
    pub root: u64,
    pub freelist: u64,
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

/// An open bbolt file: page size, the chosen meta, and a page cache.
pub struct BoltFile {
    file: File,
    path: String,
    file_len: u64,
    /// Length of the bbolt part (the file minus a SHA-256 trailer, if any).
    body_len: u64,
    page_size: u32,
    metas: [MetaPage; 2],
    chosen: usize,
    cache: Mutex<lru::LruCache<u64, Arc<[u8]>>>,
}

/// FNV-1a 64, bbolt's meta checksum.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Decode the meta struct that starts at `buf[16..]` (buf = the page's first 80+ bytes) and
/// run bbolt's `Validate` (magic, version, checksum). Other sanity checks come later.
fn decode_meta(page: u64, buf: &[u8]) -> MetaPage {
    let get32 = |o| u32_at(buf, o).unwrap_or(0);
    let get64 = |o| u64_at(buf, o).unwrap_or(0);
    let mut m = MetaPage {
        page,
        valid: false,
        problem: None,
        page_size: get32(24),
        root: get64(32),
        freelist: get64(48),
        pgid: get64(56),
        txid: get64(64),
        checksum: get64(72),
    };
    let problem = if buf.len() < PAGE_HEADER + META_SIZE {
        Some("meta page is cut short".to_string())
    } else {
        let magic = get32(16);
        let flags = u16_at(buf, 8).unwrap_or(0);
        if magic == MAGIC_SWAPPED {
            Some("written by a big-endian machine (magic 0xEDDA0CED); byte-swapped files are not supported".into())
        } else if magic != MAGIC {
            Some(format!(
                "bad magic {magic:#010x} (want {MAGIC:#010x}): not a bbolt file"
            ))
        } else if get32(20) != FORMAT_VERSION {
            Some(format!(
                "unsupported bbolt version {} (want {FORMAT_VERSION})",
                get32(20)
            ))
        } else if fnv1a64(&buf[16..72]) != m.checksum {
            Some(format!(
                "checksum mismatch (stored {:#018x}, computed {:#018x})",
                m.checksum,
                fnv1a64(&buf[16..72])
            ))
        } else if flags != META_FLAG {
            Some(format!(
                "page flags {flags:#06x} are not the meta flag 0x0004"
            ))
        } else {
            None
        }
    };
    m.valid = problem.is_none();
    m.problem = problem;
    m
}

impl BoltFile {
    /// Open `path`, discover the page size, validate both meta pages and choose one.
    /// `body_len` is where the bbolt image ends (the caller strips a SHA-256 trailer).
    pub fn open(path: &Path, body_len: Option<u64>) -> Result<BoltFile, SnapshotError> {
        let p = path.display().to_string();
        let file = File::open(path).map_err(|source| SnapshotError::Io {
            path: p.clone(),
            source,
        })?;
        let file_len = file
            .metadata()
            .map_err(|source| SnapshotError::Io {
                path: p.clone(),
                source,
            })?
            .len();
        let body_len = body_len.unwrap_or(file_len).min(file_len);
        let mut bolt = BoltFile {
            file,
            path: p,
            file_len,
            body_len,
            page_size: 0,
            metas: [decode_meta(0, &[]), decode_meta(1, &[])],
            chosen: 0,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHE_PAGES).unwrap_or(NonZeroUsize::MIN),
            )),
        };
        bolt.page_size = bolt.discover_page_size()?;
        let ps = u64::from(bolt.page_size);
        if body_len < 2 * ps {
            return Err(bolt.corrupt(format!(
                "file is truncated: {body_len} bytes cannot hold the two {ps}-byte meta pages"
            )));
        }
        for i in 0..2u64 {
            let buf = bolt.read_bytes(i * ps, PAGE_HEADER + META_SIZE)?;
            let mut m = decode_meta(i, &buf);
            if m.valid {
                m.problem = bolt.meta_sanity(&m, &buf);
                m.valid = m.problem.is_none();
            }
            bolt.metas[i as usize] = m;
        }
        bolt.chosen = bolt.choose_meta()?;
        Ok(bolt)
    }

    /// Sanity checks beyond bbolt's `Validate` (spec §2.4 "Sanity checks a reader should add").
    fn meta_sanity(&self, m: &MetaPage, buf: &[u8]) -> Option<String> {
        let ps = u64::from(self.page_size);
        let hdr_id = u64_at(buf, 0).unwrap_or(u64::MAX);
        if hdr_id != m.page {
            return Some(format!("page header id {hdr_id} is not {}", m.page));
        }
        if m.page_size != self.page_size {
            return Some(format!(
                "page size {} differs from the file's page size {}",
                m.page_size, self.page_size
            ));
        }
        if m.pgid < 3 || m.root < 2 || m.root >= m.pgid {
            return Some(format!(
                "root page {} is not inside the data pages 2..{}",
                m.root, m.pgid
            ));
        }
        if m.freelist != PGID_NO_FREELIST && (m.freelist < 2 || m.freelist >= m.pgid) {
            return Some(format!(
                "freelist page {} is not inside the data pages 2..{}",
                m.freelist, m.pgid
            ));
        }
        match m.pgid.checked_mul(ps) {
            Some(size) if size <= self.body_len => None,
            _ => Some(format!(
                "file is truncated: the meta says the database is {} pages of {ps} bytes, but only {} bytes are present",
                m.pgid, self.body_len
            )),
        }
    }

    /// bbolt's choice: the valid meta with the larger txid (spec §2.4).
    fn choose_meta(&self) -> Result<usize, SnapshotError> {
        let [m0, m1] = &self.metas;
        let first = if m1.txid > m0.txid { 1 } else { 0 };
        if self.metas[first].valid {
            Ok(first)
        } else if self.metas[1 - first].valid {
            Ok(1 - first)
        } else if let (Some(p0), Some(p1)) = (&m0.problem, &m1.problem)
            && p0.starts_with("file is truncated")
            && p1.starts_with("file is truncated")
        {
            Err(self.corrupt(self.metas[first].problem.clone().unwrap_or_default()))
        } else {
            Err(self.corrupt(format!(
                "both meta pages are invalid: page 0: {}; page 1: {}",
                m0.problem.as_deref().unwrap_or("ok"),
                m1.problem.as_deref().unwrap_or("ok")
            )))
        }
    }

    /// Page-size discovery as bbolt does it (spec §2.2), plus power-of-two bounds.
    fn discover_page_size(&self) -> Result<u32, SnapshotError> {
        let len = self.body_len;
        if len < (PAGE_HEADER + META_SIZE) as u64 {
            return Err(self.corrupt(format!(
                "file is truncated or not a bbolt file: only {len} bytes"
            )));
        }
        let first = self.read_bytes(0, PAGE_HEADER + META_SIZE)?;
        let m = decode_meta(0, &first);
        let mut found = m.valid.then_some(m.page_size);
        if found.is_none() {
            for i in 0..15u32 {
                let pos = 1024u64 << i;
                if pos.saturating_add(1024) >= len {
                    break;
                }
                if pos + (PAGE_HEADER + META_SIZE) as u64 > len {
                    break;
                }
                let buf = self.read_bytes(pos, PAGE_HEADER + META_SIZE)?;
                let m = decode_meta(1, &buf);
                if m.valid {
                    found = Some(m.page_size);
                    break;
                }
            }
        }
        match found {
            Some(ps) if ps.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) => {
                Ok(ps)
            }
            Some(ps) => Err(self.corrupt(format!(
                "meta page gives an impossible page size {ps} (want a power of two in 1 KiB..16 MiB)"
            ))),
            None => {
                let why = if m.problem.as_deref().unwrap_or("").contains("magic") {
                    m.problem.unwrap_or_default()
                } else {
                    format!(
                        "no valid meta page found: page 0: {}; no valid meta page 1 at any probed page size (1 KiB .. 16 MiB)",
                        m.problem.as_deref().unwrap_or("?")
                    )
                };
                Err(self.corrupt(why))
            }
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn page_size(&self) -> u32 {
        self.page_size
    }
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
    pub fn body_len(&self) -> u64 {
        self.body_len
    }
    pub fn metas(&self) -> &[MetaPage; 2] {
        &self.metas
    }
    /// The meta bbolt would use.
    pub fn meta(&self) -> &MetaPage {
        &self.metas[self.chosen]
    }
    /// `Tx.Size()`: `pgid * pageSize`, what `snapshot status` calls totalSize.
    pub fn tx_size(&self) -> u64 {
        self.meta().pgid.saturating_mul(u64::from(self.page_size))
    }

    /// A file-level corruption error.
    pub fn corrupt(&self, message: String) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            message,
        }
    }
    fn page_err(&self, pgid: u64, what: impl std::fmt::Display) -> SnapshotError {
        self.corrupt(format!("page {pgid}: {what}"))
    }

    fn read_bytes(&self, offset: u64, len: usize) -> Result<Vec<u8>, SnapshotError> {
        let avail = self.body_len.saturating_sub(offset);
        let len = len.min(usize::try_from(avail).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| SnapshotError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// Load a branch or leaf page (with its overflow pages), checked: inside `2..pgid`,
    /// header id, type, overflow range, element array in bounds.
    pub fn tree_page(&self, pgid: u64) -> Result<Arc<[u8]>, SnapshotError> {
        if let Ok(mut c) = self.cache.lock()
            && let Some(p) = c.get(&pgid)
        {
            return Ok(p.clone());
        }
        let hwm = self.meta().pgid;
        if pgid < 2 {
            return Err(self.page_err(pgid, "a tree element points at a meta page"));
        }
        if pgid >= hwm {
            return Err(self.page_err(
                pgid,
                format!("out of bounds: past the high-water mark (pgid {hwm})"),
            ));
        }
        let ps = u64::from(self.page_size);
        let first = self.read_bytes(pgid * ps, self.page_size as usize)?;
        let id = u64_at(&first, 0).unwrap_or(u64::MAX);
        let flags = u16_at(&first, 8).unwrap_or(0);
        let count = u16_at(&first, 10).unwrap_or(0);
        let overflow = u64::from(u32_at(&first, 12).unwrap_or(0));
        if id != pgid {
            return Err(self.page_err(pgid, format!("header says it is page {id}")));
        }
        if flags != BRANCH_FLAG && flags != LEAF_FLAG {
            return Err(self.page_err(
                pgid,
                format!("invalid type: flags {flags:#06x}, want branch (0x01) or leaf (0x02)"),
            ));
        }
        if pgid + overflow >= hwm {
            return Err(self.page_err(
                pgid,
                format!("overflow {overflow} runs past the high-water mark (pgid {hwm})"),
            ));
        }
        let total = (overflow + 1) * ps;
        if total > MAX_LOGICAL_PAGE {
            return Err(self.page_err(pgid, format!("absurd overflow count {overflow}")));
        }
        let data: Arc<[u8]> = if overflow == 0 {
            first.into()
        } else {
            self.read_bytes(pgid * ps, total as usize)?.into()
        };
        let elems = PAGE_HEADER + ELEM_SIZE * usize::from(count);
        if elems > data.len() {
            return Err(self.page_err(
                pgid,
                format!("{count} elements do not fit in {} bytes", data.len()),
            ));
        }
        if data.len() <= CACHE_MAX_BYTES
            && let Ok(mut c) = self.cache.lock()
        {
            c.put(pgid, data.clone());
        }
        Ok(data)
    }

    /// The persisted freelist (spec §2.5): `(free page ids, first freelist page, its page
    /// count)`, or None when etcd did not persist it (`NoFreelistSync`, Linux).
    pub fn freelist(&self) -> Result<Option<(Vec<u64>, u64, u64)>, SnapshotError> {
        let id = self.meta().freelist;
        if id == PGID_NO_FREELIST {
            return Ok(None);
        }
        let hwm = self.meta().pgid;
        let ps = u64::from(self.page_size);
        let first = self.read_bytes(id * ps, self.page_size as usize)?;
        let hdr = u64_at(&first, 0).unwrap_or(u64::MAX);
        let flags = u16_at(&first, 8).unwrap_or(0);
        let overflow = u64::from(u32_at(&first, 12).unwrap_or(0));
        if hdr != id {
            return Err(self.page_err(id, format!("freelist page header says it is page {hdr}")));
        }
        if flags != FREELIST_FLAG {
            return Err(self.page_err(
                id,
                format!("invalid type: flags {flags:#06x}, want freelist (0x10)"),
            ));
        }
        if id + overflow >= hwm || (overflow + 1) * ps > MAX_LOGICAL_PAGE {
            return Err(self.page_err(id, format!("freelist overflow {overflow} out of bounds")));
        }
        let data = if overflow == 0 {
            first
        } else {
            self.read_bytes(id * ps, ((overflow + 1) * ps) as usize)?
        };
        let mut count = u64::from(u16_at(&data, 10).unwrap_or(0));
        let mut off = PAGE_HEADER;
        if count == 0xFFFF {
            count = u64_at(&data, PAGE_HEADER).unwrap_or(u64::MAX);
            off += 8;
        }
        let need = count.checked_mul(8).and_then(|n| n.checked_add(off as u64));
        if need.is_none_or(|n| n > data.len() as u64) {
            return Err(self.page_err(
                id,
                format!(
                    "freelist of {count} ids does not fit in {} bytes",
                    data.len()
                ),
            ));
        }
        let mut ids = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let free = u64_at(&data, off + 8 * i).unwrap_or(u64::MAX);
            if free < 2 || free >= hwm {
                return Err(self.page_err(
                    id,
                    format!(
                        "freelist entry {i} names page {free}, outside the data pages 2..{hwm}"
                    ),
                ));
            }
            ids.push(free);
        }
        Ok(Some((ids, id, overflow + 1)))
    }

    /// The root bucket (the list of top-level buckets).
    pub fn root_bucket(&self) -> Bucket {
        Bucket {
            name: Vec::new(),
            root: BucketRoot::Page(self.meta().root),
        }
    }

    /// A top-level bucket by name (None if absent).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>, SnapshotError> {
        let root = self.root_bucket();
        match self.get(&root, name)? {
            None => Ok(None),
            Some(e) => Ok(Some(self.open_bucket(&root, &e)?)),
        }
    }

    /// Open the bucket stored in a leaf entry of `parent`.
    pub fn open_bucket(&self, parent: &Bucket, e: &Entry) -> Result<Bucket, SnapshotError> {
        let name = e.key().to_vec();
        let where_ = || {
            format!(
                "bucket {:?} (entry {} of page {})",
                String::from_utf8_lossy(&name),
                e.index,
                e.pgid_label()
            )
        };
        if e.flags & BUCKET_LEAF_FLAG == 0 {
            return Err(self.corrupt(format!(
                "{} in {}: not a bucket entry",
                where_(),
                parent.label()
            )));
        }
        let v = e.value();
        let root = u64_at(v, 0)
            .filter(|_| v.len() >= BUCKET_HEADER)
            .ok_or_else(|| {
                self.corrupt(format!(
                    "{}: bucket header cut short ({} bytes)",
                    where_(),
                    v.len()
                ))
            })?;
        let root = if root == 0 {
            let start = e.value.start + BUCKET_HEADER;
            let end = e.value.end;
            if end - start < PAGE_HEADER {
                return Err(self.corrupt(format!(
                    "{}: inline bucket of {} bytes has no page header",
                    where_(),
                    end - start
                )));
            }
            let page = &e.page[start..end];
            let flags = u16_at(page, 8).unwrap_or(0);
            let count = usize::from(u16_at(page, 10).unwrap_or(0));
            if flags != LEAF_FLAG {
                return Err(self.corrupt(format!(
                    "{}: inline page has flags {flags:#06x}, want leaf 0x0002",
                    where_()
                )));
            }
            if PAGE_HEADER + ELEM_SIZE * count > end - start {
                return Err(self.corrupt(format!(
                    "{}: inline page's {count} elements do not fit in {} bytes",
                    where_(),
                    end - start
                )));
            }
            BucketRoot::Inline(PageRef {
                data: e.page.clone(),
                start,
                end,
                pgid: e.pgid,
                inline: true,
            })
        } else {
            BucketRoot::Page(root)
        };
        Ok(Bucket { name, root })
    }

    fn root_page(&self, b: &Bucket) -> Result<PageRef, SnapshotError> {
        match &b.root {
            BucketRoot::Inline(p) => Ok(p.clone()),
            BucketRoot::Page(id) => {
                let data = self.tree_page(*id)?;
                let end = data.len();
                Ok(PageRef {
                    data,
                    start: 0,
                    end,
                    pgid: *id,
                    inline: false,
                })
            }
        }
    }

    /// Point lookup: the leaf entry with exactly `key`, if any.
    pub fn get(&self, b: &Bucket, key: &[u8]) -> Result<Option<Entry>, SnapshotError> {
        let mut page = self.root_page(b)?;
        for _ in 0..MAX_DEPTH {
            let n = page.count();
            if page.is_leaf() {
                // Leaf keys are sorted; binary search on the element index.
                let (mut lo, mut hi) = (0usize, n);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let e = self.leaf_entry(&page, mid)?;
                    match e.key().cmp(key) {
                        std::cmp::Ordering::Equal => return Ok(Some(e)),
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                    }
                }
                return Ok(None);
            }
            if n == 0 {
                return Err(self.page_err(page.pgid, "branch page with no elements"));
            }
            // Last element whose key <= target (element 0 if the target is smaller), as bbolt's search.
            let (mut lo, mut hi) = (0usize, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let (k, _) = self.branch_elem(&page, mid)?;
                if page.slice(k) <= key {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let (_, child) = self.branch_elem(&page, lo.saturating_sub(1))?;
            if child == page.pgid {
                return Err(self.page_err(page.pgid, "branch element points at its own page"));
            }
            let data = self.tree_page(child)?;
            let end = data.len();
            page = PageRef {
                data,
                start: 0,
                end,
                pgid: child,
                inline: false,
            };
        }
        Err(self.page_err(
            page.pgid,
            format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
        ))
    }

    /// Element `i` of a branch page: (key range, child page id).
    fn branch_elem(
        &self,
        p: &PageRef,
        i: usize,
    ) -> Result<(std::ops::Range<usize>, u64), SnapshotError> {
        let e = p.start + PAGE_HEADER + ELEM_SIZE * i;
        let fields = (
            u32_at(&p.data, e),
            u32_at(&p.data, e + 4),
            u64_at(&p.data, e + 8),
        );
        let (Some(pos), Some(ksize), Some(child)) = fields else {
            return Err(self.page_err(p.pgid, format!("branch element {i} is out of the page")));
        };
        let k = self.range_in(p, e, pos, ksize, 0, i, "key")?;
        Ok((k, child))
    }

    /// Element `i` of a leaf page (file page or inline bucket page).
    fn leaf_entry(&self, p: &PageRef, i: usize) -> Result<Entry, SnapshotError> {
        let e = p.start + PAGE_HEADER + ELEM_SIZE * i;
        let fields = (
            u32_at(&p.data, e),
            u32_at(&p.data, e + 4),
            u32_at(&p.data, e + 8),
            u32_at(&p.data, e + 12),
        );
        let (Some(flags), Some(pos), Some(ksize), Some(vsize)) = fields else {
            return Err(self.elem_err(p, i, "element is out of the page"));
        };
        if flags & !BUCKET_LEAF_FLAG != 0 {
            return Err(self.elem_err(p, i, &format!("unknown element flags {flags:#x}")));
        }
        let key = self.range_in(p, e, pos, ksize, 0, i, "key")?;
        let value = self.range_in(p, e, pos, vsize, ksize, i, "value")?;
        Ok(Entry {
            page: p.data.clone(),
            key,
            value,
            flags,
            pgid: p.pgid,
            inline: p.inline,
            index: i,
        })
    }

    /// `[elem + pos + skip, + len)` as a checked range inside the page.
    #[allow(clippy::too_many_arguments)]
    fn range_in(
        &self,
        p: &PageRef,
        elem: usize,
        pos: u32,
        len: u32,
        skip: u32,
        i: usize,
        what: &str,
    ) -> Result<std::ops::Range<usize>, SnapshotError> {
        let start = (elem as u64) + u64::from(pos) + u64::from(skip);
        let end = start + u64::from(len);
        if end > p.end as u64 {
            return Err(self.elem_err(
                p,
                i,
                &format!(
                    "{what} of {len} bytes at offset {} runs past the page end {}",
                    start - p.start as u64,
                    p.end - p.start
                ),
            ));
        }
        Ok(start as usize..end as usize)
    }

    fn elem_err(&self, p: &PageRef, i: usize, what: &str) -> SnapshotError {
        if p.inline {
            self.corrupt(format!(
                "page {}: inline bucket: element {i}: {what}",
                p.pgid
            ))
        } else {
            self.page_err(p.pgid, format!("element {i}: {what}"))
        }
    }

    /// A streaming in-order cursor over `b`. `visited` marks pages already walked (pass a
    /// fresh one per independent walk; chain one through a whole-file check to catch pages
    /// referenced twice anywhere).
    pub fn cursor<'f>(&'f self, b: &Bucket, visited: Visited) -> Cursor<'f> {
        Cursor {
            file: self,
            label: b.label(),
            start: Some(b.root.clone()),
            stack: Vec::new(),
            prev: None,
            visited,
            done: false,
        }
    }

    /// A fresh visited set sized for this file.
    pub fn new_visited(&self) -> Visited {
        Visited::new(self.meta().pgid)
    }
}

/// Page ids already walked (a bitset over `0..pgid`).
pub struct Visited {
    bits: Vec<u64>,
}
impl Visited {
    pub fn new(pgid: u64) -> Visited {
        let words = usize::try_from(pgid.div_ceil(64)).unwrap_or(0);
        Visited {
            bits: vec![0; words],
        }
    }
    /// Mark `id`; false if it was already marked or is out of range.
    pub fn mark(&mut self, id: u64) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        match self.bits.get_mut(w) {
            Some(word) if *word & (1 << b) == 0 => {
                *word |= 1 << b;
                true
            }
            _ => false,
        }
    }
    pub fn is_marked(&self, id: u64) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        self.bits.get(w).is_some_and(|word| word & (1 << b) != 0)
    }
    /// Number of pages marked.
    pub fn count(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// A page or an inline bucket's embedded page: `data[start..end]`.
#[derive(Clone)]
pub struct PageRef {
    data: Arc<[u8]>,
    start: usize,
    end: usize,
    /// The file page (for inline pages: the page holding the inline bucket).
    pgid: u64,
    inline: bool,
}
impl PageRef {
    fn count(&self) -> usize {
        usize::from(u16_at(&self.data, self.start + 10).unwrap_or(0))
    }
    fn is_leaf(&self) -> bool {
        u16_at(&self.data, self.start + 8) == Some(LEAF_FLAG)
    }
    fn slice(&self, r: std::ops::Range<usize>) -> &[u8] {
        self.data.get(r).unwrap_or(&[])
    }
}

/// Where a bucket's tree starts.
#[derive(Clone)]
pub enum BucketRoot {
    Page(u64),
    Inline(PageRef),
}

/// A bucket handle.
#[derive(Clone)]
pub struct Bucket {
    pub name: Vec<u8>,
    root: BucketRoot,
}
impl Bucket {
    fn label(&self) -> String {
        if self.name.is_empty() {
            "the root bucket".into()
        } else {
            format!("bucket {:?}", String::from_utf8_lossy(&self.name))
        }
    }
    pub fn is_inline(&self) -> bool {
        matches!(self.root, BucketRoot::Inline(_))
    }
}

/// One leaf element: key and value as ranges into a shared page buffer (cheap to keep).
#[derive(Clone)]
pub struct Entry {
    page: Arc<[u8]>,
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    pub flags: u32,
    /// File page holding it (for inline buckets, the page holding the bucket).
    pub pgid: u64,
    pub inline: bool,
    pub index: usize,
}
impl Entry {
    pub fn key(&self) -> &[u8] {
        self.page.get(self.key.clone()).unwrap_or(&[])
    }
    /// The raw value (for bucket entries: the bucket header + inline page).
    pub fn value(&self) -> &[u8] {
        self.page.get(self.value.clone()).unwrap_or(&[])
    }
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
    fn pgid_label(&self) -> String {
        if self.inline {
            format!("{} (inline bucket)", self.pgid)
        } else {
            self.pgid.to_string()
        }
    }
}

struct Frame {
    page: PageRef,
    next: usize,
    count: usize,
    leaf: bool,
    /// Keys in this subtree must be >= lo and < hi (separator keys of the ancestors).
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
}

/// Streaming in-order iteration over a bucket, with bbolt `tx.Check`'s structural checks.
pub struct Cursor<'f> {
    file: &'f BoltFile,
    label: String,
    start: Option<BucketRoot>,
    stack: Vec<Frame>,
    prev: Option<Vec<u8>>,
    visited: Visited,
    done: bool,
}

impl Cursor<'_> {
    /// Give back the visited set (to chain a whole-file check).
    pub fn into_visited(self) -> Visited {
        self.visited
    }

    fn push_page(
        &mut self,
        id: u64,
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
    ) -> Result<(), SnapshotError> {
        let f = self.file;
        if self.stack.len() >= MAX_DEPTH {
            return Err(f.page_err(
                id,
                format!("{}: tree deeper than {MAX_DEPTH} levels", self.label),
            ));
        }
        if self.visited.is_marked(id) {
            return Err(f.page_err(
                id,
                format!(
                    "{}: page referenced more than once (a cycle or shared subtree)",
                    self.label
                ),
            ));
        }
        let data = f.tree_page(id)?;
        let pages = (data.len() / f.page_size as usize) as u64;
        for p in id..id + pages {
            if !self.visited.mark(p) {
                return Err(f.page_err(
                    id,
                    format!("{}: page {p} referenced more than once", self.label),
                ));
            }
        }
        let end = data.len();
        let page = PageRef {
            data,
            start: 0,
            end,
            pgid: id,
            inline: false,
        };
        self.push_ref(page, lo, hi)
    }

    fn push_ref(
        &mut self,
        page: PageRef,
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
    ) -> Result<(), SnapshotError> {
        let count = page.count();
        let leaf = page.is_leaf();
        if !leaf && count == 0 {
            return Err(self
                .file
                .page_err(page.pgid, "branch page with no elements"));
        }
        self.stack.push(Frame {
            page,
            next: 0,
            count,
            leaf,
            lo,
            hi,
        });
        Ok(())
    }

    fn check_bounds(&self, fr: &Frame, key: &[u8], i: usize) -> Result<(), SnapshotError> {
        let f = self.file;
        if key.is_empty() {
            return Err(f.elem_err(&fr.page, i, &format!("{}: empty key", self.label)));
        }
        if fr.lo.as_deref().is_some_and(|lo| key < lo)
            || fr.hi.as_deref().is_some_and(|hi| key >= hi)
        {
            return Err(f.elem_err(
                &fr.page,
                i,
                &format!(
                    "{}: key out of order with the parent's separator keys",
                    self.label
                ),
            ));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>, SnapshotError> {
        if let Some(root) = self.start.take() {
            match root {
                BucketRoot::Page(id) => self.push_page(id, None, None)?,
                BucketRoot::Inline(p) => self.push_ref(p, None, None)?,
            }
        }
        loop {
            let Some(fr) = self.stack.last_mut() else {
                return Ok(None);
            };
            if fr.next >= fr.count {
                self.stack.pop();
                continue;
            }
            let i = fr.next;
            fr.next += 1;
            let fr = self
                .stack
                .last()
                .ok_or_else(|| self.file.corrupt("cursor stack".into()))?;
            if fr.leaf {
                let e = self.file.leaf_entry(&fr.page, i)?;
                self.check_bounds(fr, e.key(), i)?;
                if self.prev.as_deref().is_some_and(|p| e.key() <= p) {
                    return Err(self.file.elem_err(
                        &fr.page,
                        i,
                        &format!("{}: keys are not strictly ascending", self.label),
                    ));
                }
                self.prev = Some(e.key().to_vec());
                return Ok(Some(e));
            }
            let (k, child) = self.file.branch_elem(&fr.page, i)?;
            let key = fr.page.slice(k).to_vec();
            self.check_bounds(fr, &key, i)?;
            let hi = if i + 1 < fr.count {
                let (nk, _) = self.file.branch_elem(&fr.page, i + 1)?;
                let next = fr.page.slice(nk).to_vec();
                if next <= key {
                    return Err(self.file.elem_err(
                        &fr.page,
                        i + 1,
                        &format!("{}: branch keys are not strictly ascending", self.label),
                    ));
                }
                Some(next)
            } else {
                fr.hi.clone()
            };
            self.push_page(child, Some(key), hi)?;
        }
    }
}

impl Iterator for Cursor<'_> {
    type Item = Result<Entry, SnapshotError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meta of the spec's worked example (S34, etcd 3.4.23): its stored checksum.
    #[test]
    fn fnv1a64_matches_a_real_meta_checksum() {
        let mut m = Vec::new();
        m.extend(MAGIC.to_le_bytes());
        m.extend(FORMAT_VERSION.to_le_bytes());
        m.extend(4096u32.to_le_bytes());
        m.extend(0u32.to_le_bytes());
        m.extend(3u64.to_le_bytes()); // root
        m.extend(0u64.to_le_bytes()); // sequence
        m.extend(PGID_NO_FREELIST.to_le_bytes());
        m.extend(5u64.to_le_bytes()); // pgid
        m.extend(10u64.to_le_bytes()); // txid
        assert_eq!(fnv1a64(&m), 0x0e2d_ce2d_8a16_e72f);
        let mut page = vec![0u8; 16];
        page[8] = 4;
        page.extend(&m);
        page.extend(fnv1a64(&m).to_le_bytes());
        let meta = decode_meta(0, &page);
        assert!(meta.valid, "{:?}", meta.problem);
        assert_eq!((meta.root, meta.pgid, meta.txid), (3, 5, 10));
        page[20] = 3;
        assert!(!decode_meta(0, &page).valid);
        assert!(!decode_meta(0, &page[..40]).valid);
    }

    #[test]
    fn visited_marks_once() {
        let mut v = Visited::new(70);
        assert!(v.mark(65));
        assert!(!v.mark(65));
        assert!(!v.mark(1000));
        assert!(v.is_marked(65) && !v.is_marked(64));
        assert_eq!(v.count(), 1);
    }
}
