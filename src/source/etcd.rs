//! Live etcd source: paginated ranges under the storage prefix, pinned to one revision, that
//! continue at a fresh revision (and say so) if the pinned one is compacted mid-scan.
//!
//! A spawned task fetches pages ahead of the consumer through a channel of one page. Memory
//! stays flat whatever the keyspace size: at most [`IN_FLIGHT`] responses, the queued page
//! and the one being processed are alive at once. Keys and values are raw bytes throughout.
//!
//! Why windows: etcd 3.4 answers a range with a limit by first collecting the revision of
//! *every* key of the requested range from its in-memory index (`treeIndex.Revisions`, also
//! used to fill `count`) and only then truncating, so a page of `[next key, end of prefix)`
//! costs etcd a walk over the rest of the keyspace and a plain paginated scan costs
//! O(N²/page). Neither `count_only`, `keys_only` nor serializable reads avoid that walk. So the
//! fetcher never asks for "the rest": it tiles `[prefix, range_end)` into windows, each the
//! key subtree under a prefix of its start key (`/registry/secrets/ns-1` covers every key
//! starting with it), and asks for one window at a time, with the page limit. etcd's work per
//! request becomes proportional to the window. A window that holds more than the limit is
//! continued after its last key; an exhausted one is followed by its sibling subtree.
//!
//! Window depth (how many bytes of prefix) adapts to the keyspace from each response's
//! `count` (the keys the window held): more than four pages narrows later windows by a byte
//! (or to the spread of the page just read), a whole subtree with less than an eighth of a
//! page widens them by a byte. Because a window's end is known before its response arrives, the
//! next window's request is sent while the current one is read ([`IN_FLIGHT`]), so etcd
//! serves one while atrest decodes the other. Every window is read at the pinned revision,
//! windows are handed over in key order, and together they cover the range exactly: no key
//! is skipped or read twice (etcd 3.5+ stops its walk at the limit; windows cost it nothing).
//!
//! Page sizing: [`EtcdSource::adaptive`] sizes pages by bytes: it starts at
//! [`ADAPTIVE_START_KEYS`] and grows the key limit geometrically towards
//! [`ADAPTIVE_PAGE_BYTES`] of key+value bytes per page (from the average object size seen so
//! far), capped at [`ADAPTIVE_MAX_KEYS`]. [`EtcdSource::new`] keeps a fixed key limit per
//! request (pages may come back shorter where a window ends first).
use std::collections::VecDeque;
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
pub const ADAPTIVE_PAGE_BYTES: u64 = 1 << 20;
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
        let fetch = Fetch::new(
            self.kv.clone(),
            ErrorContext {
                endpoints: self.endpoints.clone(),
                ..Default::default()
            },
            self.prefix.clone(),
            self.range_end.clone(),
            self.first_key(),
            self.page_size,
            self.adaptive,
            self.revision,
        );
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

/// Range requests the fetcher keeps in flight, each for its own window (see the module
/// comment). Two let etcd serve one window while the previous response is decoded here.
const IN_FLIGHT: usize = 2;

/// A window that held more than this many pages narrows later windows by a byte of prefix.
const NARROW_ABOVE_PAGES: i64 = 4;
/// A whole subtree that held less than this fraction of a page (1/N) widens them by a byte.
/// The gap between the two (32×) exceeds a decimal or hexadecimal level's fan-out, so
/// windows settle on one level instead of flipping between two neighbours.
const WIDEN_BELOW_PAGE_FRACTION: i64 = 8;

/// The state of the background page fetcher.
struct Fetch {
    kv: KvClient,
    ctx: ErrorContext,
    prefix: Vec<u8>,
    range_end: Vec<u8>,
    /// Start of the first window not yet queued; `None` once the queue reaches `range_end`.
    frontier: Option<Vec<u8>>,
    /// Queued windows in key order; together with `frontier` they tile what is left to read.
    queue: VecDeque<Window>,
    /// The last key handed to the consumer (the continuation point after a compaction).
    last_key: Option<Vec<u8>>,
    limit: i64,
    /// Re-size `limit` after every page (see [`next_adaptive_limit`]).
    adaptive: bool,
    /// Adaptive ceiling; lowered below a limit whose response was too large.
    max_limit: i64,
    /// Pinned revision; 0 = take the latest with the first response (one request at a time
    /// until then, so every window is read at the same revision).
    revision: i64,
    /// Length of the prefix of a window's start whose subtree bounds the window; `None`: the
    /// window runs to `range_end`.
    depth: Option<usize>,
}

/// One window `[start, end)` of the range and, once requested, its range request.
struct Window {
    start: Vec<u8>,
    end: Vec<u8>,
    /// The depth it was cut at when requested.
    depth: Option<usize>,
    request: Option<tokio::task::JoinHandle<Result<etcd_client::GetResponse, PageError>>>,
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            request.abort();
        }
    }
}

impl Fetch {
    #[allow(clippy::too_many_arguments)]
    fn new(
        kv: KvClient,
        ctx: ErrorContext,
        prefix: Vec<u8>,
        range_end: Vec<u8>,
        first_key: Vec<u8>,
        limit: i64,
        adaptive: bool,
        revision: i64,
    ) -> Self {
        Fetch {
            kv,
            ctx,
            prefix,
            range_end,
            frontier: Some(first_key),
            queue: VecDeque::new(),
            last_key: None,
            limit,
            adaptive,
            max_limit: ADAPTIVE_MAX_KEYS,
            revision,
            depth: None,
        }
    }

    /// The end of the window starting at `start` at the current depth.
    fn window_end(&self, start: &[u8]) -> Vec<u8> {
        match self.depth {
            Some(depth) => window_end(start, depth, &self.range_end),
            None => self.range_end.clone(),
        }
    }

    /// Queue windows from the frontier and start the requests of the first few, up to
    /// [`IN_FLIGHT`] (one until the revision is pinned).
    fn fill(&mut self) {
        let in_flight = if self.revision > 0 { IN_FLIGHT } else { 1 };
        while self.queue.len() < in_flight {
            let Some(start) = self.frontier.take() else {
                break;
            };
            let end = self.window_end(&start);
            if end != self.range_end {
                self.frontier = Some(end.clone());
            }
            self.queue.push_back(Window {
                start,
                end,
                depth: self.depth,
                request: None,
            });
        }
        // A while loop: cutting a window queues its tail, which may itself be due a request.
        let mut i = 0;
        while i < self.queue.len().min(in_flight) {
            if self.queue[i].request.is_some() {
                i += 1;
                continue;
            }
            // Queued earlier, perhaps when windows were wider: cut it to the current depth
            // now, queueing the rest right after it.
            let split = self.window_end(&self.queue[i].start);
            if split != self.queue[i].end && before_end(&split, &self.queue[i].end, &self.range_end)
            {
                let tail = Window {
                    start: split.clone(),
                    end: std::mem::replace(&mut self.queue[i].end, split),
                    depth: self.depth,
                    request: None,
                };
                self.queue.insert(i + 1, tail);
            }
            self.queue[i].depth = self.depth;
            let (start, end) = (self.queue[i].start.clone(), self.queue[i].end.clone());
            self.queue[i].request = Some(tokio::spawn(range(
                self.kv.clone(),
                start,
                end,
                self.limit,
                self.revision,
            )));
            i += 1;
        }
    }

    async fn run(mut self, tx: mpsc::Sender<Result<Page, SourceError>>) {
        let mut pending_note: Option<(i64, Vec<u8>)> = None;
        loop {
            self.fill();
            let Some(mut window) = self.queue.pop_front() else {
                return; // every window read
            };
            // Wait for room in the channel before taking the response: at most IN_FLIGHT
            // responses, the queued page and the consumer's are alive at once.
            let Ok(permit) = tx.reserve().await else {
                return; // the consumer went away
            };
            let outcome = match window.request.take() {
                Some(request) => match request.await {
                    Ok(outcome) => outcome,
                    Err(e) => Err(PageError::Task(e.to_string())),
                },
                None => Err(PageError::Task("window was not requested".into())),
            };
            let mut resp = match outcome {
                Ok(resp) => resp,
                Err(PageError::Compacted) if self.revision > 0 => {
                    // Our pinned revision is gone: read the rest at the current one, starting
                    // exactly where we stopped (windows already read at the old revision but
                    // not handed over are read again), so no key is read twice or skipped.
                    let from = self
                        .last_key
                        .clone()
                        .unwrap_or_else(|| window.start.clone());
                    pending_note = Some((self.revision, from));
                    self.revision = 0;
                    self.restart_at(window.start.clone());
                    continue;
                }
                Err(PageError::TooLarge) if self.limit > 1 => {
                    // A page of big values (up to 1.5 MiB each) exceeded the response limit:
                    // the same window again with half as many keys, and never grow back into
                    // a size that was just refused.
                    self.limit = (self.limit / 2).max(1);
                    self.max_limit = self.max_limit.min(self.limit);
                    self.restart_at(window.start.clone());
                    continue;
                }
                Err(e) => {
                    permit.send(Err(self.error(e)));
                    return;
                }
            };
            if self.revision == 0 {
                self.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let count = resp.count();
            let kvs: Vec<RawKv> = resp.take_kvs().into_iter().map(raw_kv).collect();
            self.after_window(&window, &kvs, more, count);
            if self.adaptive && !kvs.is_empty() {
                let bytes: u64 = kvs
                    .iter()
                    .map(|kv| (kv.key.len() + kv.value.len()) as u64)
                    .sum();
                self.limit = next_adaptive_limit(self.limit, kvs.len(), bytes, self.max_limit);
            }
            if let Some(last) = kvs.last() {
                self.last_key = Some(last.key.clone());
            }
            if !kvs.is_empty() {
                let note = pending_note.take().map(|(old, from)| {
                    format!(
                        "revision {old} was compacted during the scan; continued at {} from key {}",
                        self.revision,
                        String::from_utf8_lossy(&from)
                    )
                });
                permit.send(Ok(Page {
                    kvs,
                    revision: self.revision,
                    note,
                }));
            }
        }
    }

    /// Drop every queued window and go on from `start` (which must be where the next unread
    /// key can be).
    fn restart_at(&mut self, start: Vec<u8>) {
        self.queue.clear();
        self.frontier = Some(start);
    }

    /// Re-plan after `window` answered with `kvs` (`more`: the window holds more keys;
    /// `count`: how many keys the window held in all).
    ///
    /// Windows aim at an eighth of a page to four pages each, so that the next window's request
    /// can be in flight while this one is decoded. A window that held more than four pages makes
    /// later windows one byte of prefix narrower than it was (or as narrow as this page's
    /// spread, the common prefix of its first and last keys, if that is narrower still). A
    /// whole subtree that held less than an eighth of a page makes them one byte wider than it was;
    /// the rest of a subtree (a window starting inside one) says nothing about its siblings.
    fn after_window(&mut self, window: &Window, kvs: &[RawKv], more: bool, count: i64) {
        let limit = self.limit.max(1);
        if count > limit.saturating_mul(NARROW_ABOVE_PAGES) && limit > 1 {
            let spread = match (kvs.first(), kvs.last()) {
                (Some(first), Some(last)) => common_prefix_len(&first.key, &last.key),
                _ => 0,
            };
            let narrower = window.depth.map_or(spread, |d| (d + 1).max(spread));
            self.depth = Some(self.depth.map_or(narrower, |d| d.max(narrower)));
        } else if count < (limit / WIDEN_BELOW_PAGE_FRACTION).max(1)
            && let Some(d) = window.depth
            && window.start.len() <= d
        {
            let wider = d.saturating_sub(1);
            self.depth = Some(self.depth.map_or(wider, |cur| cur.min(wider)));
        }
        if !more {
            return; // the window is exhausted; its sibling is queued or is the frontier
        }
        let Some(last) = kvs.last() else {
            return;
        };
        // The rest of this window comes first (`fill` cuts it to the current depth).
        let rest = key_after(&last.key);
        if before_end(&rest, &window.end, &self.range_end) {
            self.queue.push_front(Window {
                start: rest,
                end: window.end.clone(),
                depth: self.depth,
                request: None,
            });
        }
    }

    fn error(&self, e: PageError) -> SourceError {
        let why = match e {
            PageError::Etcd(e) => return source_error(&e, &self.ctx, &self.prefix),
            PageError::Compacted => "the revision was compacted".to_string(),
            PageError::TooLarge => "one key's value is larger than the response limit".to_string(),
            PageError::Task(t) => format!("the range request task failed ({t})"),
        };
        SourceError(format!(
            "etcd at {}: reading {} failed: {why}",
            self.ctx.endpoints.join(","),
            String::from_utf8_lossy(&self.prefix),
        ))
    }
}

/// One range request `[start, end)`, retried on transient errors.
async fn range(
    mut kv: KvClient,
    start: Vec<u8>,
    end: Vec<u8>,
    limit: i64,
    revision: i64,
) -> Result<etcd_client::GetResponse, PageError> {
    let mut attempt = 0;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let err = match kv.get(start.clone(), Some(opts)).await {
            Ok(resp) => return Ok(resp),
            Err(e) => e,
        };
        let (code, message) = match &err {
            etcd_client::Error::GRpcStatus(s) => (Some(s.code()), s.message().to_string()),
            other => (None, other.to_string()),
        };
        if message.contains("required revision has been compacted") {
            return Err(PageError::Compacted);
        }
        if message.contains("message length too large") {
            return Err(PageError::TooLarge);
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

enum PageError {
    Compacted,
    TooLarge,
    Task(String),
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

/// Whether `key` lies before the range end `end` (where `range_end` itself may be etcd's
/// "\0", the end of the keyspace).
fn before_end(key: &[u8], end: &[u8], range_end: &[u8]) -> bool {
    (end == range_end && range_end == [0]) || key < end
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
        // 2 KiB objects: 1 MiB / 2 KiB = 512 keys, reached from 500 at once and kept.
        assert_eq!(next_adaptive_limit(500, 500, 500 * 2048, 10_000), 512);
        assert_eq!(next_adaptive_limit(512, 512, 512 * 2048, 10_000), 512);
        // Tiny objects: grows ×4 per page up to the cap.
        assert_eq!(next_adaptive_limit(500, 500, 500 * 100, 10_000), 2000);
        assert_eq!(next_adaptive_limit(8000, 8000, 8000 * 100, 10_000), 10_000);
        // Huge objects: shrinks at once, never below one key.
        assert_eq!(next_adaptive_limit(500, 500, 500 * (256 << 10), 10_000), 4);
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
