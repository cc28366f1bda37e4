//! Live etcd source: paginated ranges under the storage prefix, pinned to one revision, that
//! continue at a fresh revision (and say so) if the pinned one is compacted mid-scan.
//!
//! A spawned task fetches pages ahead of the consumer through a channel of one page, so the
//! network round trip overlaps with classification and at most three pages are alive at once
//! (the one being processed, the one queued, the one being fetched): memory stays flat
//! whatever the keyspace size. Keys and values are raw bytes throughout.
//!
//! Page sizing: etcd 3.4 answers a range with a limit by first collecting the revision of
//! *every* remaining key of the range from its in-memory index (`treeIndex.Revisions`, also
//! used to fill `count`) and only then truncating, so each page costs etcd a walk over the rest
//! of the keyspace and a paginated scan costs O(N²/page). Neither `count_only`, `keys_only` nor
//! serializable reads avoid that walk (they take the same `Revisions` path); only fewer,
//! larger pages do. [`EtcdSource::adaptive`] therefore sizes pages by bytes: it starts at
//! [`ADAPTIVE_START_KEYS`] and grows the key limit geometrically towards
//! [`ADAPTIVE_PAGE_BYTES`] of key+value bytes per page (from the average object size seen so
//! far), capped at [`ADAPTIVE_MAX_KEYS`]; memory stays bounded at about three such pages.
//! [`EtcdSource::new`] keeps an exact, fixed number of keys per page.
//!
//! Windows: the walk covers `[start, range_end)` of the request, so each request is also given
//! a nearer end — the end of the key subtree (a prefix of the start key) that the previous page
//! suggests holds about one page: the common prefix of that page's first and last keys. When a
//! window is exhausted (`more` is false short of the scan's end) the next request starts at
//! the window's end, in the sibling subtree, widening by whole bytes of prefix when pages come
//! back short. Requests still tile `[prefix, range_end)` exactly, so no key is skipped or read
//! twice, and etcd's work per page becomes proportional to the window instead of to the rest of
//! the keyspace (etcd 3.5+ stops its walk at the limit; the windows cost it nothing).
use std::time::Duration;

use etcd_client::{GetOptions, KvClient};
use tokio::sync::mpsc;

use super::{KvSource, RawKv, SourceError, SourceKind};
use crate::connect::{ErrorContext, describe_error, kv_client};

/// Attempts for a page that fails with a transient error (leader change, connection blip).
const PAGE_ATTEMPTS: u32 = 4;
/// First retry delay, doubled each attempt.
const RETRY_BASE: Duration = Duration::from_millis(250);

/// First key limit of an adaptive scan (small, so huge objects are learnt cheaply).
pub const ADAPTIVE_START_KEYS: i64 = 500;
/// Key+value bytes an adaptive page aims at.
pub const ADAPTIVE_PAGE_BYTES: u64 = 4 << 20;
/// Most keys an adaptive page asks for (bounds etcd's per-page work and our decode buffers).
pub const ADAPTIVE_MAX_KEYS: i64 = 10_000;
/// Most an adaptive limit grows from one page to the next.
const ADAPTIVE_GROWTH: i64 = 4;

/// Streams `prefix` from a live etcd in pages of `page_size` keys (or adaptively sized pages).
pub struct EtcdSource {
    kv: KvClient,
    endpoints: Vec<String>,
    prefix: Vec<u8>,
    range_end: Vec<u8>,
    start_after: Option<Vec<u8>>,
    page_size: i64,
    /// Size pages by bytes instead of using `page_size` exactly.
    adaptive: bool,
    /// Pinned revision (0 until the first response or `estimate`).
    revision: i64,
    notes: Vec<String>,
    pages: Option<mpsc::Receiver<Result<Page, SourceError>>>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

/// One page as the fetch task hands it over.
struct Page {
    kvs: Vec<RawKv>,
    /// The revision this page was read at.
    revision: i64,
    /// Set when this page starts a continuation after a compaction.
    note: Option<String>,
}

impl EtcdSource {
    /// `prefix` is the key prefix to range over (e.g. `/registry/`); `start` lets a resumed
    /// rotation begin after a key (exclusive); `page_size` keys per range request.
    pub fn new(
        client: etcd_client::Client,
        endpoints: Vec<String>,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        page_size: i64,
    ) -> Self {
        let range_end = prefix_end(&prefix);
        EtcdSource {
            kv: kv_client(&client),
            endpoints,
            prefix,
            range_end,
            start_after,
            page_size: page_size.max(1),
            adaptive: false,
            revision: 0,
            notes: Vec::new(),
            pages: None,
            fetcher: None,
            done: false,
        }
    }

    /// Like [`EtcdSource::new`] but with pages sized by bytes (see the module comment): the
    /// choice when the caller did not ask for a page size, since etcd 3.4 makes many small
    /// pages expensive.
    pub fn adaptive(
        client: etcd_client::Client,
        endpoints: Vec<String>,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
    ) -> Self {
        let mut src = Self::new(client, endpoints, prefix, start_after, ADAPTIVE_START_KEYS);
        src.adaptive = true;
        src
    }

    /// [`EtcdSource::new`] with `Some(page_size)`, [`EtcdSource::adaptive`] with `None`.
    pub fn with_page_size(
        client: etcd_client::Client,
        endpoints: Vec<String>,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        page_size: Option<i64>,
    ) -> Self {
        match page_size {
            Some(n) => Self::new(client, endpoints, prefix, start_after, n),
            None => Self::adaptive(client, endpoints, prefix, start_after),
        }
    }

    /// Accept responses up to `bytes` (default [`crate::connect::MAX_RESPONSE_BYTES`]); a page
    /// larger than that is fetched again with half as many keys.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.kv = self.kv.clone().max_decoding_message_size(bytes);
        self
    }

    /// The first key to read: right after `start_after` when resuming, else the prefix.
    fn first_key(&self) -> Vec<u8> {
        match &self.start_after {
            Some(after) if after.as_slice() >= self.prefix.as_slice() => key_after(after),
            _ => self.prefix.clone(),
        }
    }

    fn start_fetcher(&mut self) {
        let (tx, rx) = mpsc::channel(1);
        let fetch = Fetch {
            kv: self.kv.clone(),
            ctx: ErrorContext {
                endpoints: self.endpoints.clone(),
                ..Default::default()
            },
            prefix: self.prefix.clone(),
            range_end: self.range_end.clone(),
            next_key: self.first_key(),
            last_key: None,
            limit: self.page_size,
            adaptive: self.adaptive,
            max_limit: ADAPTIVE_MAX_KEYS,
            revision: self.revision,
            window: None,
            short_streak: 0,
        };
        self.fetcher = Some(tokio::spawn(fetch.run(tx)));
        self.pages = Some(rx);
    }
}

impl Drop for EtcdSource {
    fn drop(&mut self) {
        if let Some(task) = self.fetcher.take() {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl KvSource for EtcdSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Etcd {
            endpoints: self.endpoints.clone(),
        }
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    /// A count-only range; before the scan starts it also pins the revision the scan reads
    /// at, so the estimate and the scan agree.
    async fn estimate(&mut self) -> Result<Option<u64>, SourceError> {
        let mut opts = GetOptions::new()
            .with_range(self.range_end.clone())
            .with_count_only();
        if self.revision > 0 {
            opts = opts.with_revision(self.revision);
        }
        let ctx = ErrorContext {
            endpoints: self.endpoints.clone(),
            ..Default::default()
        };
        let resp = self
            .kv
            .get(self.first_key(), Some(opts))
            .await
            .map_err(|e| source_error(&e, &ctx, &self.prefix))?;
        if self.revision == 0 && self.pages.is_none() {
            self.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        Ok(u64::try_from(resp.count()).ok())
    }

    async fn next_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
        if self.done {
            return Ok(None);
        }
        if self.pages.is_none() {
            self.start_fetcher();
        }
        let Some(rx) = self.pages.as_mut() else {
            return Ok(None);
        };
        match rx.recv().await {
            Some(Ok(page)) => {
                self.revision = page.revision;
                if let Some(note) = page.note {
                    self.notes.push(note);
                }
                Ok(Some(page.kvs))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// The state of the background page fetcher.
struct Fetch {
    kv: KvClient,
    ctx: ErrorContext,
    prefix: Vec<u8>,
    range_end: Vec<u8>,
    /// Where the next page starts (inclusive).
    next_key: Vec<u8>,
    /// The last key handed to the consumer (the continuation point after a compaction).
    last_key: Option<Vec<u8>>,
    limit: i64,
    /// Re-size `limit` after every page (see [`next_adaptive_limit`]).
    adaptive: bool,
    /// Adaptive ceiling; lowered below a limit whose response was too large.
    max_limit: i64,
    /// Pinned revision; 0 = take the latest with the first page.
    revision: i64,
    /// Length of the prefix of `next_key` whose subtree bounds the next request; `None`: the
    /// request runs to `range_end` (see the module comment).
    window: Option<usize>,
    /// Consecutive windows that came back less than half full (widening goes faster each time).
    short_streak: u32,
}

impl Fetch {
    /// Where the next request ends: the end of `next_key`'s subtree at the window depth, or
    /// `range_end` when there is no window or the subtree reaches past it.
    fn request_end(&self) -> Vec<u8> {
        match self.window {
            Some(depth) => window_end(&self.next_key, depth, &self.range_end),
            None => self.range_end.clone(),
        }
    }

    async fn run(mut self, tx: mpsc::Sender<Result<Page, SourceError>>) {
        let mut pending_note = None;
        loop {
            // Wait for room in the channel before fetching: a fetched page is never held
            // while blocked on a full channel (one page less in memory; the fetch still
            // overlaps the consumer judging the previous page).
            let Ok(permit) = tx.reserve().await else {
                return; // the consumer went away
            };
            let resp = match self.fetch_page().await {
                Ok(r) => r,
                Err(PageError::Compacted) => {
                    // Our pinned revision is gone: read the rest at the current one, starting
                    // exactly where we stopped, so no key is read twice or skipped.
                    let old = self.revision;
                    self.revision = 0;
                    match self.fetch_page().await {
                        Ok(r) => {
                            let new = r.0.header().map(|h| h.revision()).unwrap_or(0);
                            let from = self.last_key.as_deref().unwrap_or(&self.next_key);
                            pending_note = Some(format!(
                                "revision {old} was compacted during the scan; continued at {new} from key {}",
                                String::from_utf8_lossy(from)
                            ));
                            r
                        }
                        Err(e) => {
                            permit.send(Err(self.error(e)));
                            return;
                        }
                    }
                }
                Err(e) => {
                    permit.send(Err(self.error(e)));
                    return;
                }
            };
            let (mut resp, end) = resp;
            if self.revision == 0 {
                self.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs: Vec<RawKv> = resp.take_kvs().into_iter().map(raw_kv).collect();
            let limit = self.limit;
            if let Some(last) = kvs.last() {
                self.last_key = Some(last.key.clone());
            }
            let finished = match (kvs.first(), kvs.last()) {
                (Some(first), Some(last)) if more => {
                    // A full page: go on after it, in a window about as wide as this page.
                    self.next_key = key_after(&last.key);
                    self.window = (limit > 1).then(|| common_prefix_len(&first.key, &last.key));
                    self.short_streak = 0;
                    false
                }
                _ if end == self.range_end => true,
                _ => {
                    // The window is exhausted: continue in the sibling subtree, wider if this
                    // one held less than half a page.
                    self.next_key = end;
                    if i64::try_from(kvs.len()).unwrap_or(i64::MAX) < limit / 2 {
                        self.short_streak += 1;
                        let step = 1usize << (self.short_streak - 1).min(16);
                        self.window = self.window.map(|d| d.saturating_sub(step));
                    } else {
                        self.short_streak = 0;
                    }
                    false
                }
            };
            if self.adaptive && !kvs.is_empty() {
                let bytes: u64 = kvs
                    .iter()
                    .map(|kv| (kv.key.len() + kv.value.len()) as u64)
                    .sum();
                self.limit = next_adaptive_limit(self.limit, kvs.len(), bytes, self.max_limit);
            }
            if !kvs.is_empty() {
                let page = Page {
                    kvs,
                    revision: self.revision,
                    note: pending_note.take(),
                };
                permit.send(Ok(page));
            }
            if finished {
                return;
            }
        }
    }

    /// One range request, retried on transient errors and shrunk when the page is larger
    /// than the response limit.
    /// Also returns the end the request used.
    async fn fetch_page(&mut self) -> Result<(etcd_client::GetResponse, Vec<u8>), PageError> {
        let mut attempt = 0;
        let end = self.request_end();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(self.limit);
            if self.revision > 0 {
                opts = opts.with_revision(self.revision);
            }
            let err = match self.kv.get(self.next_key.clone(), Some(opts)).await {
                Ok(resp) => return Ok((resp, end)),
                Err(e) => e,
            };
            let (code, message) = match &err {
                etcd_client::Error::GRpcStatus(s) => (Some(s.code()), s.message().to_string()),
                other => (None, other.to_string()),
            };
            if message.contains("required revision has been compacted") {
                return Err(PageError::Compacted);
            }
            if message.contains("message length too large") && self.limit > 1 {
                // A page of big values (up to 1.5 MiB each) exceeded the response limit.
                self.limit = (self.limit / 2).max(1);
                // Do not grow back into a size that was just refused.
                self.max_limit = self.max_limit.min(self.limit);
                continue;
            }
            let transient = matches!(
                code,
                Some(tonic::Code::Unavailable)
                    | Some(tonic::Code::DeadlineExceeded)
                    | Some(tonic::Code::Aborted)
            ) && !message.contains("invalid peer certificate");
            attempt += 1;
            if !transient || attempt >= PAGE_ATTEMPTS {
                return Err(PageError::Etcd(err));
            }
            tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt - 1)).await;
        }
    }

    fn error(&self, e: PageError) -> SourceError {
        match e {
            PageError::Etcd(e) => source_error(&e, &self.ctx, &self.prefix),
            PageError::Compacted => SourceError(format!(
                "etcd at {}: reading {} failed: the revision was compacted again while continuing",
                self.ctx.endpoints.join(","),
                String::from_utf8_lossy(&self.prefix)
            )),
        }
    }
}

enum PageError {
    Compacted,
    Etcd(etcd_client::Error),
}

/// The key limit for the next adaptive page, from the page just read (`keys` keys of `bytes`
/// key+value bytes at limit `limit`): the count that would make [`ADAPTIVE_PAGE_BYTES`] at the
/// observed average size, growing at most [`ADAPTIVE_GROWTH`]× per page, within `1..=max`.
fn next_adaptive_limit(limit: i64, keys: usize, bytes: u64, max: i64) -> i64 {
    let max = max.max(1);
    let Ok(keys) = u64::try_from(keys) else {
        return limit.clamp(1, max);
    };
    if keys == 0 {
        return limit.clamp(1, max);
    }
    let avg = (bytes / keys).max(1);
    let want = i64::try_from(ADAPTIVE_PAGE_BYTES / avg).unwrap_or(i64::MAX);
    want.min(limit.saturating_mul(ADAPTIVE_GROWTH))
        .clamp(1, max)
}

/// A range failure, with a permission-specific hint (the user is unknown here).
fn source_error(e: &etcd_client::Error, ctx: &ErrorContext, prefix: &[u8]) -> SourceError {
    let prefix = String::from_utf8_lossy(prefix);
    let permission = matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::PermissionDenied)
        || e.to_string().contains("permission denied");
    if permission {
        return SourceError(format!(
            "etcd at {} denied reading {prefix}: the etcd user (or the client certificate's CN when \
             no --user is given) needs read permission on it (etcdctl role grant-permission ROLE \
             read {prefix} --prefix)",
            ctx.endpoints.join(",")
        ));
    }
    SourceError(describe_error(e, ctx, &format!("reading {prefix}")).to_string())
}

fn raw_kv(kv: etcd_client::KeyValue) -> RawKv {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (key, value) = kv.into_key_value();
    RawKv {
        key,
        value,
        create_revision,
        mod_revision,
        version,
        lease,
    }
}

/// The smallest key greater than `key` (`key + "\0"`).
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The end of the window at `depth` from `from`: the end of the subtree of keys starting with
/// `from[..depth]`, or `range_end` if that subtree reaches past it (or has no end below the
/// top of the keyspace). Always greater than `from` unless it is `range_end`.
fn window_end(from: &[u8], depth: usize, range_end: &[u8]) -> Vec<u8> {
    let Some(stem) = from.get(..depth.min(from.len())).filter(|s| !s.is_empty()) else {
        return range_end.to_vec();
    };
    let end = prefix_end(stem);
    let unbounded = end == [0];
    let past_range = range_end != [0] && end.as_slice() >= range_end;
    if unbounded || past_range {
        range_end.to_vec()
    } else {
        end
    }
}

/// The end of the range covering every key starting with `prefix` (etcd's `GetPrefixRangeEnd`):
/// the prefix with its last byte below 0xff incremented; `"\0"` (all keys) if there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_matches_etcd() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn adaptive_limit_grows_geometrically_to_the_byte_target() {
        // 2 KiB objects: 4 MiB / 2 KiB = 2048 keys, reached from 500 in one ×4 step.
        assert_eq!(next_adaptive_limit(500, 500, 500 * 2048, 10_000), 2000);
        assert_eq!(next_adaptive_limit(2000, 2000, 2000 * 2048, 10_000), 2048);
        // Tiny objects: grows ×4 per page up to the cap.
        assert_eq!(next_adaptive_limit(500, 500, 500 * 100, 10_000), 2000);
        assert_eq!(next_adaptive_limit(8000, 8000, 8000 * 100, 10_000), 10_000);
        // Huge objects: shrinks at once, never below one key.
        assert_eq!(next_adaptive_limit(500, 500, 500 * (1 << 20), 10_000), 4);
        assert_eq!(next_adaptive_limit(4, 4, 4 * (3 << 20), 10_000), 1);
        // A lowered ceiling (after a too-large response) holds.
        assert_eq!(next_adaptive_limit(100, 100, 100 * 10, 150), 150);
        assert_eq!(next_adaptive_limit(7, 0, 0, 10_000), 7);
    }

    #[test]
    fn windows_end_at_the_subtree_within_the_range() {
        let range_end = prefix_end(b"/registry/");
        let from = b"/registry/secrets/ns-42/s-0123";
        assert_eq!(
            window_end(from, 23, &range_end),
            b"/registry/secrets/ns-43".to_vec()
        );
        assert_eq!(
            window_end(from, 24, &range_end),
            b"/registry/secrets/ns-420".to_vec()
        );
        // Depth past the key: the whole key is the stem (its extensions).
        assert_eq!(
            window_end(from, 99, &range_end),
            b"/registry/secrets/ns-42/s-0124".to_vec()
        );
        // Shallower than the scan prefix, or no stem at all: the scan's own end.
        assert_eq!(window_end(from, 5, &range_end), range_end);
        assert_eq!(window_end(from, 0, &range_end), range_end);
        // A stem of 0xff bytes has no end below the top of the keyspace.
        assert_eq!(window_end(b"\xff\xffa", 2, &[0]), vec![0]);
        assert_eq!(window_end(b"a\xff", 2, &[0]), b"b".to_vec());
        for depth in 0..from.len() {
            let end = window_end(from, depth, &range_end);
            assert!(
                end.as_slice() > from.as_slice() && end <= range_end,
                "{depth}"
            );
        }
        assert_eq!(common_prefix_len(b"/a/b1", b"/a/c"), 3);
        assert_eq!(common_prefix_len(b"/a", b"/a/c"), 2);
    }

    #[test]
    fn key_after_is_the_immediate_successor() {
        assert_eq!(key_after(b"/a"), b"/a\0".to_vec());
        assert!(key_after(b"/a").as_slice() > b"/a".as_slice());
        assert!(key_after(b"/a").as_slice() < b"/a\0\0".as_slice());
    }
}
