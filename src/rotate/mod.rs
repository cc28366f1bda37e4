//! `atrest rotate`: re-encrypt, directly in etcd, every value that is not under its resource's
//! write provider/key — exactly what kube-apiserver would write for it — fast, without ever
//! clobbering a concurrent kube-apiserver write, and resumable after a crash.
//!
//! Data flow: a reader task pages the keyspace (pinned to one revision, resuming after the
//! journal's last key) into a small channel; the main loop judges each value from its bytes
//! ([`plan`]) and groups examined keys into units that fit one transaction; each unit is
//! decrypted, re-encrypted, self-checked and committed by its own task ([`writer`]), several at
//! a time; units are journaled strictly in key order as they complete ([`journal`]), so the
//! journal's last key always means "everything before it is done". `--max-rate` is a token
//! bucket over rewrites ([`throttle`]). Correctness never rests on the journal: a resumed run
//! classifies everything it touches again, and the caller's final verification pass
//! ([`verify`]) covers the whole scope.
pub mod journal;
pub mod plan;
pub mod throttle;
pub mod writer;

use crate::classify::Classifier;
use crate::codec::chain::Transformers;
use crate::config::EncryptionConfig;
use crate::report::ScanReport;
use crate::resource::{self, GroupResource};
use crate::scan::{Progress, ScanError, ScanOptions};
use crate::source::etcd::EtcdSource;
use crate::source::{KvSource, RawKv, SourceError};
use journal::{Journal, JournalError, JournalHeader, JournalState, SkippedKey, Totals};
use plan::{Decision, Limits, Unit, UnitBuilder, WorkItem};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use writer::{CommitLimits, Prep};

/// The `-o json` schema of `atrest rotate`.
pub const ROTATE_SCHEMA: &str = "atrest.rotate/v1";

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// What to rotate and how.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Storage prefix as kube-apiserver's `--etcd-prefix` (`/registry`).
    pub prefix: String,
    /// Only these group/resources (empty = every key under the prefix).
    pub resources: Vec<GroupResource>,
    /// Rewrites per transaction (≤ the server's `--max-txn-ops`).
    pub batch: usize,
    /// The server's `--max-request-bytes`; transactions stay below it with a margin.
    pub max_request_bytes: usize,
    /// Rewritten objects per second (None = unthrottled).
    pub max_rate: Option<f64>,
    pub dry_run: bool,
    /// Required unless `dry_run`.
    pub journal: Option<PathBuf>,
    /// Path of the EncryptionConfiguration, for the journal header and reports.
    pub config_path: Option<String>,
    /// Keys per range request.
    pub page_size: i64,
    /// Transactions in flight.
    pub concurrency: usize,
    /// Timeout of one etcd request.
    pub command_timeout: Duration,
    /// Set (e.g. by SIGINT) to stop after the batches in flight.
    pub stop: Arc<AtomicBool>,
}

impl Default for RotateOptions {
    fn default() -> Self {
        RotateOptions {
            prefix: resource::DEFAULT_PREFIX.to_string(),
            resources: Vec::new(),
            batch: DEFAULT_MAX_TXN_OPS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_rate: None,
            dry_run: false,
            journal: None,
            config_path: None,
            page_size: 1000,
            concurrency: 4,
            command_timeout: Duration::from_secs(30),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One row of the plan: objects of `resource` moved (or, in a dry run, to move) `from` → `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    pub resource: String,
    pub from: String,
    pub to: String,
    pub objects: u64,
}

/// What a rotation did. `this_run` counts this invocation; `all_runs` adds every earlier run
/// recorded in the journal.
#[derive(Clone, Debug, Serialize)]
pub struct RotateSummary {
    pub dry_run: bool,
    /// The journal held earlier batches; this run started after `resumed_after`.
    pub resumed: bool,
    pub resumed_after: Option<String>,
    /// The journal says the rotation had already finished: nothing was examined.
    pub already_complete: bool,
    /// Stopped by a signal after the batches in flight; resume with the same command.
    pub interrupted: bool,
    pub this_run: Totals,
    pub all_runs: Totals,
    /// Rewrites by resource and provider/key (dry run: what would be rewritten).
    pub plan: Vec<PlanRow>,
    /// Keys left alone (this and earlier runs): unknown-key, undecryptable, ambiguous,
    /// gave-up. Only the first [`journal::SKIPPED_KEPT`]; the counts in `all_runs` are exact.
    pub skipped: Vec<SkippedKey>,
    /// Skipped keys not listed in `skipped` (over the cap).
    pub skipped_omitted: u64,
    /// This pass reached the end but some keys kept changing ("gave up"): the journal is not
    /// marked complete, and rerunning the same command examines the scope again to retry them.
    pub retry_needed: bool,
    /// Batches journaled by this run.
    pub batches: u64,
    /// etcd revision of the last commit (or of the read, when nothing was written).
    pub revision: i64,
    /// Target fingerprint per in-scope rule.
    pub targets: BTreeMap<String, String>,
    pub journal: Option<String>,
    pub started_at: String,
    pub elapsed_seconds: f64,
    /// Examined objects per second in this run.
    pub objects_per_second: f64,
}

/// A rotation that could not do its job (exit 2). Findings are not errors: they are in the
/// summary.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("etcd: {context}: {message}")]
    Etcd { context: String, message: String },
    #[error(
        "refusing to rotate {resource} into KMS v1 ({to} is the first provider of its rule): KMS v1 is deprecated and read-only for atrest; make a KMS v2 provider (apiVersion: v2) or a local-key provider the first provider, then run rotate again"
    )]
    KmsV1Target { resource: String, to: String },
    #[error("cannot encrypt {key} ({resource}) for {to}: {message}")]
    Encrypt {
        key: String,
        resource: String,
        to: String,
        message: String,
    },
    #[error(
        "self-check failed for {key}: {why}; nothing was written for its batch. This is a bug in atrest: please report it"
    )]
    SelfCheck { key: String, why: String },
    #[error("{0}")]
    Usage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// `/registry` → `/registry/`, `/` → `/`: the shared [`resource::storage_key_prefix`]
/// (kube-apiserver's cleaned prefix with a trailing slash), as bytes for range requests.
pub fn key_prefix(prefix: &str) -> Vec<u8> {
    resource::storage_key_prefix(prefix).into_bytes()
}

/// The chains in scope: each `--resource`, or (without a filter) every resource string of
/// every rule plus the no-rule identity default, by label.
fn chains_in_scope<'t>(
    config: &EncryptionConfig,
    transformers: &'t Transformers,
    resources: &[GroupResource],
) -> Vec<(String, &'t crate::codec::chain::Chain)> {
    let mut out = Vec::new();
    if resources.is_empty() {
        for rule in &config.rules {
            for r in &rule.resources {
                let gr = GroupResource::parse(r);
                out.push((r.clone(), transformers.chain_for(Some(&gr))));
            }
        }
        out.push(("(no rule)".to_string(), transformers.chain_for(None)));
    } else {
        for gr in resources {
            out.push((gr.to_string(), transformers.chain_for(Some(gr))));
        }
    }
    out
}

/// Refuse up front (before the journal exists, nothing written) when an in-scope chain's
/// writer is KMS v1: atrest never writes KMS v1.
pub fn check_writers(
    config: &EncryptionConfig,
    transformers: &Transformers,
    resources: &[GroupResource],
) -> Result<(), RotateError> {
    for (label, chain) in chains_in_scope(config, transformers, resources) {
        if chain.writer().0 == crate::codec::ProviderKind::KmsV1 {
            return Err(RotateError::KmsV1Target {
                resource: label,
                to: writer::target_label(chain),
            });
        }
    }
    Ok(())
}

/// The writer fingerprint of every chain in scope (see [`chains_in_scope`]), salted with the
/// journal's salt. `None` only to compare with a journal written before salts existed.
pub fn target_fingerprints(
    config: &EncryptionConfig,
    transformers: &Transformers,
    resources: &[GroupResource],
    salt: Option<&[u8]>,
) -> BTreeMap<String, String> {
    chains_in_scope(config, transformers, resources)
        .into_iter()
        .map(|(label, chain)| {
            let fp = match salt {
                Some(s) => chain.writer_fingerprint_salted(s),
                None => chain.writer_fingerprint(),
            };
            (label, fp)
        })
        .collect()
}

/// The journal header for this run.
pub fn journal_header(opts: &RotateOptions, targets: BTreeMap<String, String>) -> JournalHeader {
    let mut resources: Vec<String> = opts.resources.iter().map(|g| g.to_string()).collect();
    resources.sort();
    resources.dedup();
    // `/registry`, `/registry/` and `registry` are the same storage prefix (`/` stays `/`).
    let p = resource::storage_key_prefix(&opts.prefix);
    let prefix = match p.strip_suffix('/') {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => p.clone(),
    };
    JournalHeader {
        schema: journal::JOURNAL_SCHEMA.to_string(),
        prefix,
        resources,
        targets,
        config: opts.config_path.clone(),
        salt: String::new(),
        started_at: journal::now_rfc3339(),
        atrest_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The result of one unit's task.
struct UnitResult {
    last_key: Vec<u8>,
    counts: Totals,
    skipped: Vec<SkippedKey>,
    plan: BTreeMap<(String, String, String), u64>,
    revision: i64,
}

/// Rotate everything in scope. `config` must be the one `transformers` was built from.
pub async fn run_rotate(
    client: etcd_client::Client,
    endpoints: Vec<String>,
    config: &EncryptionConfig,
    transformers: Arc<Transformers>,
    opts: &RotateOptions,
    progress: &dyn Progress,
) -> Result<RotateSummary, RotateError> {
    let started = Instant::now();
    let started_at = journal::now_rfc3339();
    // Before the journal exists: a refused target must leave nothing behind.
    check_writers(config, &transformers, &opts.resources)?;
    let mut targets = BTreeMap::new();
    let (mut journal, state) = match (&opts.journal, opts.dry_run) {
        (_, true) => {
            // Nothing is stored: show fingerprints under a throwaway random salt.
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt)
                .map_err(|e| RotateError::Internal(format!("random salt: {e}")))?;
            targets = target_fingerprints(config, &transformers, &opts.resources, Some(&salt));
            (None, JournalState::default())
        }
        (Some(p), false) => {
            let (j, s) = Journal::open(p, |salt| {
                targets = target_fingerprints(config, &transformers, &opts.resources, salt);
                journal_header(opts, targets.clone())
            })?;
            (Some(j), s)
        }
        (None, false) => {
            return Err(RotateError::Usage(
                "--journal FILE is required (it makes the rotation resumable); use --dry-run to only look"
                    .into(),
            ));
        }
    };

    let mut summary = RotateSummary {
        dry_run: opts.dry_run,
        resumed: state.resumed && state.last_key.is_some(),
        resumed_after: state
            .last_key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        already_complete: state.complete,
        interrupted: false,
        this_run: Totals::default(),
        all_runs: state.totals.clone(),
        plan: Vec::new(),
        skipped: state.skipped.clone(),
        skipped_omitted: state.skipped_omitted,
        retry_needed: false,
        batches: 0,
        revision: 0,
        targets,
        journal: opts.journal.as_ref().map(|p| p.display().to_string()),
        started_at,
        elapsed_seconds: 0.0,
        objects_per_second: 0.0,
    };
    if state.complete {
        return Ok(summary);
    }

    let mut source = EtcdSource::new(
        client.clone(),
        endpoints,
        key_prefix(&opts.prefix),
        state.last_key.clone(),
        opts.page_size.max(1),
    );
    if let Ok(Some(n)) = source.estimate().await {
        // The count covers the whole prefix; a resumed run only has what is left.
        progress.set_total(n.saturating_sub(state.totals.examined));
    }
    let (page_tx, mut page_rx) = tokio::sync::mpsc::channel::<Result<Vec<RawKv>, SourceError>>(2);
    let reader = tokio::spawn(async move {
        let mut source = source;
        loop {
            let next = source.next_batch().await;
            let done = !matches!(next, Ok(Some(_)));
            let item = match next {
                Ok(Some(b)) => Ok(b),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if page_tx.send(item).await.is_err() || done {
                break;
            }
        }
        source.revision()
    });

    let mut engine = Engine {
        transformers: transformers.clone(),
        kv: client
            .kv_client()
            .max_decoding_message_size(64 * 1024 * 1024),
        opts: opts.clone(),
        limits: CommitLimits {
            max_ops: opts.batch.max(1),
            max_bytes: request_budget(opts.max_request_bytes),
            max_conflict_rounds: 5,
            transport_attempts: 4,
            command_timeout: opts.command_timeout,
        },
        inflight: VecDeque::new(),
        throttle: opts.max_rate.map(|r| {
            throttle::TokenBucket::new(r, (r / 10.0).max(opts.batch as f64), Instant::now())
        }),
        journal: journal.as_mut(),
        summary: &mut summary,
        progress,
        plan: BTreeMap::new(),
        failed: None,
    };
    let mut builder = UnitBuilder::new(Limits {
        max_ops: opts.batch.max(1),
        max_bytes: request_budget(opts.max_request_bytes),
        max_examined: 4096,
    });

    let storage_prefix = resource::storage_key_prefix(&opts.prefix);
    let mut source_error = None;
    'pages: while let Some(page) = page_rx.recv().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                source_error = Some(e);
                break;
            }
        };
        // Values may be plaintext (identity): every `RawKv` wipes its value when dropped, at
        // the end of this loop for those not handed on as work.
        for kv in page {
            let gr = resource::parse_key_under(&storage_prefix, &kv.key).gr;
            if !opts.resources.is_empty()
                && !gr.as_ref().is_some_and(|g| opts.resources.contains(g))
            {
                continue;
            }
            let decision = plan::decide(&transformers.chain_for(gr.as_ref()).identify(&kv.value));
            let closed = match decision {
                Decision::Current => builder.push_current(&kv),
                Decision::UnknownKey { from } => builder.push_skipped(
                    &kv,
                    SkippedKey {
                        key: String::from_utf8_lossy(&kv.key).into_owned(),
                        status: "unknown-key".into(),
                        from: Some(from),
                        detail: Some(
                            "no configured provider/key matches this value's prefix; left unchanged"
                                .into(),
                        ),
                    },
                ),
                Decision::Rewrite | Decision::EncryptPlaintext => {
                    builder.push_work(WorkItem { kv, gr })
                }
            };
            if let Some(unit) = closed {
                engine.dispatch(unit).await;
                if engine.should_stop() {
                    break 'pages;
                }
            }
        }
    }
    let stopped = engine.should_stop();
    if !stopped
        && source_error.is_none()
        && let Some(unit) = builder.finish()
    {
        engine.dispatch(unit).await;
    }
    engine.drain().await;
    let failed = engine.failed.take();
    let plan = std::mem::take(&mut engine.plan);
    drop(engine);
    drop(page_rx);
    let read_revision = match reader.await {
        Ok(rev) => rev,
        Err(e) => return Err(RotateError::Internal(format!("reader task: {e}"))),
    };
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(e) = source_error {
        return Err(e.into());
    }

    summary.plan = plan
        .into_iter()
        .map(|((resource, from, to), objects)| PlanRow {
            resource,
            from,
            to,
            objects,
        })
        .collect();
    if summary.revision == 0 {
        summary.revision = read_revision;
    }
    summary.interrupted = opts.stop.load(Ordering::SeqCst);
    // Keys skipped as unknown-key/undecryptable/ambiguous cannot be fixed by retrying: a
    // pass with only those is complete. Gave-up keys can: the next run starts over for them.
    summary.retry_needed = !summary.interrupted && summary.this_run.gave_up > 0;
    if !summary.interrupted
        && let Some(j) = journal.as_mut()
    {
        if summary.retry_needed {
            j.record_restart(summary.this_run.gave_up)?;
        } else {
            j.record_complete(&summary.all_runs)?;
        }
    }
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    summary.objects_per_second = if summary.elapsed_seconds > 0.0 {
        summary.this_run.examined as f64 / summary.elapsed_seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// Stay clear of the server's request limit: gRPC framing and the compares' keys are not in
/// our estimate of each op.
fn request_budget(max_request_bytes: usize) -> usize {
    let margin = (max_request_bytes / 8).max(4096);
    max_request_bytes.saturating_sub(margin).max(4096)
}

/// Runs units concurrently and journals them in order.
struct Engine<'a> {
    transformers: Arc<Transformers>,
    kv: etcd_client::KvClient,
    opts: RotateOptions,
    limits: CommitLimits,
    inflight: VecDeque<tokio::task::JoinHandle<Result<UnitResult, RotateError>>>,
    throttle: Option<throttle::TokenBucket>,
    journal: Option<&'a mut Journal>,
    summary: &'a mut RotateSummary,
    progress: &'a dyn Progress,
    plan: BTreeMap<(String, String, String), u64>,
    failed: Option<RotateError>,
}

impl Engine<'_> {
    fn should_stop(&self) -> bool {
        self.failed.is_some() || self.opts.stop.load(Ordering::SeqCst)
    }

    async fn dispatch(&mut self, unit: Unit) {
        if self.failed.is_some() {
            return;
        }
        if let Some(t) = self.throttle.as_mut()
            && !self.opts.dry_run
        {
            // Wait in small steps so a SIGINT during a long throttle pause is honoured at
            // once; an undispatched unit is simply not journaled (the resume redoes it).
            let deadline = Instant::now() + t.reserve(unit.work.len() as u64, Instant::now());
            while Instant::now() < deadline {
                if self.should_stop() {
                    return;
                }
                let step = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                tokio::time::sleep(step).await;
            }
            if self.should_stop() {
                return;
            }
        }
        let transformers = self.transformers.clone();
        let kv = self.kv.clone();
        let limits = self.limits;
        let dry_run = self.opts.dry_run;
        self.inflight.push_back(tokio::spawn(async move {
            process_unit(transformers, kv, limits, unit, dry_run).await
        }));
        while self.inflight.len() >= self.opts.concurrency.max(1) {
            self.finish_front().await;
        }
    }

    async fn drain(&mut self) {
        while !self.inflight.is_empty() {
            self.finish_front().await;
        }
    }

    /// Wait for the oldest unit and journal it. After the first failure nothing more is
    /// journaled (the journal must stay a contiguous prefix), but in-flight units are awaited.
    async fn finish_front(&mut self) {
        let Some(h) = self.inflight.pop_front() else {
            return;
        };
        let res = match h.await {
            Ok(r) => r,
            Err(e) => Err(RotateError::Internal(format!("batch task: {e}"))),
        };
        if self.failed.is_some() {
            return;
        }
        match res {
            Ok(u) => {
                if let Some(j) = self.journal.as_mut()
                    && let Err(e) =
                        j.record_batch(&u.last_key, u.revision, u.counts.clone(), u.skipped.clone())
                {
                    self.failed = Some(e.into());
                    return;
                }
                self.summary.batches += 1;
                self.summary.this_run.add(&u.counts);
                self.summary.all_runs.add(&u.counts);
                self.summary.skipped_omitted +=
                    journal::push_capped(&mut self.summary.skipped, u.skipped);
                self.summary.revision = self.summary.revision.max(u.revision);
                for (k, n) in u.plan {
                    *self.plan.entry(k).or_default() += n;
                }
                self.progress
                    .advance(u.counts.examined, u.counts.bytes_examined);
            }
            Err(e) => {
                self.failed = Some(e);
            }
        }
    }
}

/// Decrypt, re-encrypt, self-check and commit one unit.
async fn process_unit(
    transformers: Arc<Transformers>,
    mut kv: etcd_client::KvClient,
    limits: CommitLimits,
    unit: Unit,
    dry_run: bool,
) -> Result<UnitResult, RotateError> {
    let mut counts = Totals {
        examined: unit.examined,
        bytes_examined: unit.bytes_examined,
        already_current: unit.already_current,
        ..Totals::default()
    };
    let mut skipped = unit.skipped;
    counts.skipped_unknown_key = skipped.len() as u64;
    let mut plan = BTreeMap::new();
    let mut prepared = Vec::with_capacity(unit.work.len());
    for item in &unit.work {
        match writer::prepare(&transformers, item.gr.as_ref(), &item.kv, dry_run).await? {
            Prep::Current => counts.already_current += 1,
            Prep::Rewrite(p) => prepared.push(p),
            Prep::WouldRewrite { from } => {
                let to = writer::target_label(transformers.chain_for(item.gr.as_ref()));
                *plan
                    .entry((writer::resource_label(item.gr.as_ref()), from, to))
                    .or_default() += 1;
            }
            Prep::Skip(s) => {
                counts.count_skip(&s);
                skipped.push(s);
            }
        }
    }
    let mut revision = 0;
    if !prepared.is_empty() {
        let out = writer::commit(&mut kv, &transformers, prepared, limits).await?;
        counts.add(&out.counts);
        skipped.extend(out.skipped);
        for (k, n) in out.plan {
            *plan.entry(k).or_default() += n;
        }
        revision = out.revision;
    }
    Ok(UnitResult {
        last_key: unit.last_key,
        counts,
        skipped,
        plan,
        revision,
    })
}

/// The final verification pass: `scan --verify` over the rotation's scope, at a fresh revision.
pub async fn verify(
    client: etcd_client::Client,
    endpoints: Vec<String>,
    transformers: Transformers,
    opts: &RotateOptions,
    progress: &dyn Progress,
) -> Result<ScanReport, RotateError> {
    let classifier = Classifier::new(&opts.prefix, Some(transformers), true);
    let mut source = EtcdSource::new(
        client,
        endpoints,
        key_prefix(&opts.prefix),
        None,
        opts.page_size.max(1),
    );
    let scan_opts = ScanOptions {
        resources: opts.resources.clone(),
        list_all: false,
        history: false,
        config_path: opts.config_path.clone(),
        prefix: opts.prefix.clone(),
    };
    Ok(crate::scan::run_scan(&mut source, &classifier, &scan_opts, progress).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_is_cleaned() {
        assert_eq!(key_prefix("/registry"), b"/registry/");
        assert_eq!(key_prefix("/registry/"), b"/registry/");
        assert_eq!(key_prefix("registry"), b"/registry/");
        assert_eq!(key_prefix("/a/b//"), b"/a/b/");
        // Review: `--prefix /` used to become `//`.
        assert_eq!(key_prefix("/"), b"/");
        assert_eq!(key_prefix("//"), b"/");
        assert_eq!(key_prefix("/custom/prefix"), b"/custom/prefix/");
    }

    #[test]
    fn journal_header_prefix_is_cleaned() {
        for (given, want) in [
            ("/", "/"),
            ("/registry/", "/registry"),
            ("registry", "/registry"),
        ] {
            let opts = RotateOptions {
                prefix: given.into(),
                ..RotateOptions::default()
            };
            assert_eq!(
                journal_header(&opts, BTreeMap::new()).prefix,
                want,
                "{given}"
            );
        }
    }

    #[test]
    fn request_budget_leaves_a_margin() {
        let b = request_budget(DEFAULT_MAX_REQUEST_BYTES);
        assert!(b < DEFAULT_MAX_REQUEST_BYTES);
        assert!(b > DEFAULT_MAX_REQUEST_BYTES / 2);
        assert_eq!(request_budget(10), 4096);
    }
}
