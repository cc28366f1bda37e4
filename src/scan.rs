//! The scan engine: pulls batches from a [`KvSource`], judges every value with a
//! [`Classifier`] (concurrently, with bounded memory), aggregates counts and builds the
//! `atrest.scan/v1` report. Shared by `scan`, `snapshot verify` and rotate's final check.
//!
//! Memory stays flat: one batch of values is held while the next one is fetched (the fetch and
//! the classification of the previous page overlap), at most [`IN_FLIGHT`] judgements run at
//! once, and only the records the report keeps (findings, or everything with `list_all`)
//! survive a batch. Values are never kept.
use crate::classify::{Classifier, ObjectRecord, Status};
use crate::report::{
    BreakdownRow, HistoryReport, HistoryResidue, NON_OBJECT_RESOURCE, SCAN_SCHEMA, ScanReport,
    SourceInfo, Summary,
};
use crate::resource::GroupResource;
use crate::source::{KvSource, RawKv, SourceError, SourceKind};
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// How many values are judged at once. Only `--verify` through a KMS plugin really waits
/// (a plugin call per distinct DEK); local work completes on the first poll.
pub const IN_FLIGHT: usize = 64;

/// What to scan and what to keep.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Only these group/resources (empty = all).
    pub resources: Vec<GroupResource>,
    /// Keep every object in the report, not only findings.
    pub list_all: bool,
    /// Examine older revisions too (sources that support it).
    pub history: bool,
    /// Path of the config, for the report.
    pub config_path: Option<String>,
    /// Storage prefix as given (`/registry`).
    pub prefix: String,
}

/// Progress callbacks (the binary draws an indicatif bar; the library draws nothing).
pub trait Progress: Send + Sync {
    fn set_total(&self, _keys: u64) {}
    fn advance(&self, _keys: u64, _bytes: u64) {}
    fn message(&self, _msg: &str) {}
}

/// No progress output.
pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The object sink failed (e.g. the spill file of a large report could not be written).
    #[error("{0}")]
    Sink(String),
}

/// Where the records a report lists go, one by one in key order. [`run_scan`] keeps them in
/// the report; the CLI can stream them to a file instead, so a report with a million findings
/// costs no memory, or keep none at all (Prometheus needs only the counts).
pub trait ObjectSink: Send {
    fn push(&mut self, rec: ObjectRecord) -> Result<(), ScanError>;
}

/// Keeps every record (what [`run_scan`] uses).
#[derive(Default)]
pub struct VecSink(pub Vec<ObjectRecord>);
impl ObjectSink for VecSink {
    fn push(&mut self, rec: ObjectRecord) -> Result<(), ScanError> {
        self.0.push(rec);
        Ok(())
    }
}

/// Counts only (the report's summary is all that is needed, e.g. for Prometheus).
pub struct DiscardSink;
impl ObjectSink for DiscardSink {
    fn push(&mut self, _rec: ObjectRecord) -> Result<(), ScanError> {
        Ok(())
    }
}

/// Run a full scan of `source`; the report lists the kept objects.
pub async fn run_scan(
    source: &mut dyn KvSource,
    classifier: &Classifier,
    opts: &ScanOptions,
    progress: &dyn Progress,
) -> Result<ScanReport, ScanError> {
    let mut sink = VecSink::default();
    let mut report = run_scan_with_sink(source, classifier, opts, progress, &mut sink).await?;
    report.objects = sink.0;
    Ok(report)
}

/// Run a full scan of `source`, handing the objects the report lists to `sink` instead of
/// keeping them (the report's `objects` stays empty; the summary counts everything).
pub async fn run_scan_with_sink(
    source: &mut dyn KvSource,
    classifier: &Classifier,
    opts: &ScanOptions,
    progress: &dyn Progress,
    sink: &mut dyn ObjectSink,
) -> Result<ScanReport, ScanError> {
    let started = time::OffsetDateTime::now_utc();
    let clock = Instant::now();

    if let Some(total) = source.estimate().await? {
        progress.set_total(total);
    }

    let mut agg = Aggregator::new(opts.list_all);
    let mut pending = source.next_batch().await?;
    while let Some(batch) = pending.take() {
        // Fetch the next page while this one is judged: the network and the CPU overlap.
        let (next, records) = tokio::join!(
            source.next_batch(),
            judge_batch(&batch, classifier, &opts.resources)
        );
        progress.advance(batch.len() as u64, batch_bytes(&batch));
        drop(batch);
        for rec in records {
            if let Some(kept) = agg.count(rec) {
                sink.push(kept)?;
            }
        }
        pending = next?;
    }
    // The revision the data is pinned to; if the source had to continue at a fresh revision
    // (compaction mid-scan) this is the fresh one, and its notes say where that happened.
    let revision = source.revision();

    let mut notes = source.notes();
    let history = if opts.history {
        if source.supports_history() {
            progress.message("examining older revisions");
            Some(scan_history(source, classifier, &opts.resources, progress).await?)
        } else {
            notes.push(
                "--history: this source keeps no older revisions (only snapshot files do); nothing was examined"
                    .to_string(),
            );
            None
        }
    } else {
        None
    };
    notes.extend(own_notes(classifier, opts));

    let (summary, objects) = agg.finish();
    debug_assert!(objects.is_empty(), "records went to the sink");
    Ok(ScanReport {
        schema: SCAN_SCHEMA,
        source: source_info(source.kind(), revision),
        prefix: opts.prefix.clone(),
        config: opts.config_path.clone(),
        verified: classifier.verifies(),
        summary,
        objects,
        notes,
        history,
        started_at: rfc3339(started),
        duration_seconds: clock.elapsed().as_secs_f64(),
        started_unix: started.unix_timestamp() as f64,
    })
}

/// Judge one batch (in key order), skipping keys outside `--resource`.
async fn judge_batch(
    batch: &[RawKv],
    classifier: &Classifier,
    resources: &[GroupResource],
) -> Vec<ObjectRecord> {
    let selected = batch.iter().filter_map(|kv| {
        let info = classifier.key_info(&kv.key);
        selected(info.gr.as_ref(), resources).then_some((kv, info))
    });
    stream::iter(selected)
        .map(|(kv, info)| classifier.classify_with(kv, info))
        .buffered(IN_FLIGHT)
        .collect()
        .await
}

/// `--resource` matching in the config's syntax: `secrets`, `deployments.apps`, `*.apps`
/// (a group), `*.` (the core group), `*.*`.
fn selected(gr: Option<&GroupResource>, resources: &[GroupResource]) -> bool {
    resources.is_empty() || gr.is_some_and(|g| resources.iter().any(|f| f.selects(g)))
}

fn batch_bytes(batch: &[RawKv]) -> u64 {
    batch
        .iter()
        .map(|kv| (kv.key.len() + kv.value.len()) as u64)
        .sum()
}

/// `--history`: judge every older revision; keep per key the ones that are residue.
async fn scan_history(
    source: &mut dyn KvSource,
    classifier: &Classifier,
    resources: &[GroupResource],
    progress: &dyn Progress,
) -> Result<HistoryReport, ScanError> {
    let mut acc = HistoryAcc::default();
    let mut pending = source.next_history_batch().await?;
    while let Some(batch) = pending.take() {
        let (next, records) = tokio::join!(
            source.next_history_batch(),
            judge_batch(&batch, classifier, resources)
        );
        progress.advance(batch.len() as u64, batch_bytes(&batch));
        drop(batch);
        for rec in records {
            acc.add(rec);
        }
        pending = next?;
    }
    Ok(acc.finish())
}

/// Whether an old revision is residue: recoverable data not as the writer would store it.
fn is_residue(status: Status) -> bool {
    matches!(
        status,
        Status::Plaintext | Status::Stale | Status::UnknownKey | Status::Undecryptable
    )
}

/// Groups consecutive residue revisions of the same key (the source yields key, then revision
/// order).
#[derive(Default)]
struct HistoryAcc {
    report: HistoryReport,
    open: Option<(HistoryResidue, BTreeSet<Status>)>,
}

impl HistoryAcc {
    fn add(&mut self, rec: ObjectRecord) {
        self.report.revisions_examined += 1;
        if !is_residue(rec.status) {
            return;
        }
        self.report.residue_revisions += 1;
        if let Some((cur, statuses)) = &mut self.open
            && cur.key == rec.key
        {
            cur.oldest_revision = cur.oldest_revision.min(rec.mod_revision);
            cur.newest_revision = cur.newest_revision.max(rec.mod_revision);
            cur.revisions += 1;
            statuses.insert(rec.status);
            return;
        }
        self.flush();
        let mut statuses = BTreeSet::new();
        statuses.insert(rec.status);
        self.open = Some((
            HistoryResidue {
                key: rec.key,
                oldest_revision: rec.mod_revision,
                newest_revision: rec.mod_revision,
                revisions: 1,
                statuses: Vec::new(),
            },
            statuses,
        ));
    }
    fn flush(&mut self) {
        if let Some((mut cur, statuses)) = self.open.take() {
            cur.statuses = statuses.into_iter().collect();
            self.report.keys_with_residue += 1;
            self.report.keys.push(cur);
        }
    }
    fn finish(mut self) -> HistoryReport {
        self.flush();
        self.report
    }
}

/// Counts one resource × provider × key cell by status.
type Counts = [u64; Status::ALL.len()];

/// Aggregates judged records into the summary and keeps the records the report lists.
pub struct Aggregator {
    list_all: bool,
    objects: Vec<ObjectRecord>,
    /// (group, resource, provider, key_name) → counts per status. Keyed by the record's own
    /// strings so counting a dropped record allocates nothing new.
    cells: HashMap<CellKey, Counts>,
    kms_key_ids: HashMap<String, u64>,
    total: u64,
}

#[derive(Hash, PartialEq, Eq)]
struct CellKey {
    group: Option<String>,
    resource: Option<String>,
    provider: String,
    key_name: Option<String>,
}

impl Aggregator {
    pub fn new(list_all: bool) -> Self {
        Aggregator {
            list_all,
            objects: Vec::new(),
            cells: HashMap::new(),
            kms_key_ids: HashMap::new(),
            total: 0,
        }
    }

    /// Count a record, and keep it if the report lists it.
    pub fn add(&mut self, rec: ObjectRecord) {
        if let Some(kept) = self.count(rec) {
            self.objects.push(kept);
        }
    }

    /// Count a record; hand it back if the report lists it (else it is dropped here).
    pub fn count(&mut self, rec: ObjectRecord) -> Option<ObjectRecord> {
        self.total += 1;
        let status = rec.status;
        let keep = self.list_all || status != Status::Current;
        if keep {
            let key = CellKey {
                group: rec.group.clone(),
                resource: rec.resource.clone(),
                provider: rec.provider_name().to_string(),
                key_name: rec.key_name.clone(),
            };
            if let Some(id) = &rec.kms_key_id {
                self.count_kms_key_id(id.clone());
            }
            self.count_cell(key, status);
            Some(rec)
        } else {
            if let Some(id) = rec.kms_key_id {
                self.count_kms_key_id(id);
            }
            let key = CellKey {
                group: rec.group,
                resource: rec.resource,
                provider: rec
                    .provider
                    .unwrap_or_else(|| crate::classify::UNKNOWN_PROVIDER.to_string()),
                key_name: rec.key_name,
            };
            self.count_cell(key, status);
            None
        }
    }

    fn count_cell(&mut self, key: CellKey, status: Status) {
        self.cells.entry(key).or_insert([0; Status::ALL.len()])[status.index()] += 1;
    }

    fn count_kms_key_id(&mut self, id: String) {
        *self.kms_key_ids.entry(id).or_insert(0) += 1;
    }

    /// The summary and the kept records (in the order added: key order).
    pub fn finish(self) -> (Summary, Vec<ObjectRecord>) {
        let mut by_status: BTreeMap<String, u64> = Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut by_resource: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut by_provider_key: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut breakdown = Vec::new();
        for (cell, counts) in self.cells {
            let resource = resource_label(cell.group.as_deref(), cell.resource.as_deref());
            let pk = crate::classify::provider_key(&cell.provider, cell.key_name.as_deref());
            for status in Status::ALL {
                let n = counts[status.index()];
                if n == 0 {
                    continue;
                }
                let name = status.as_str();
                *by_status.entry(name.to_string()).or_insert(0) += n;
                *by_resource
                    .entry(resource.clone())
                    .or_default()
                    .entry(name.to_string())
                    .or_insert(0) += n;
                *by_provider_key
                    .entry(pk.clone())
                    .or_default()
                    .entry(name.to_string())
                    .or_insert(0) += n;
                breakdown.push(BreakdownRow {
                    resource: resource.clone(),
                    provider: cell.provider.clone(),
                    key_name: cell.key_name.clone(),
                    status,
                    objects: n,
                });
            }
        }
        breakdown.sort();
        let findings = self.total - by_status.get("current").copied().unwrap_or(0);
        let summary = Summary {
            objects: self.total,
            findings,
            status_counts: by_status.clone(),
            by_status,
            by_resource,
            by_provider_key,
            by_kms_key_id: self.kms_key_ids.into_iter().collect(),
            breakdown,
        };
        (summary, self.objects)
    }
}

/// `secrets`, `deployments.apps`, or the non-object label.
fn resource_label(group: Option<&str>, resource: Option<&str>) -> String {
    match (group, resource) {
        (_, None) => NON_OBJECT_RESOURCE.to_string(),
        (None | Some(""), Some(r)) => r.to_string(),
        (Some(g), Some(r)) => format!("{r}.{g}"),
    }
}

fn source_info(kind: SourceKind, revision: i64) -> SourceInfo {
    match kind {
        SourceKind::Etcd { endpoints } => SourceInfo {
            kind: "etcd".into(),
            endpoints: Some(endpoints),
            path: None,
            revision,
        },
        SourceKind::Snapshot { path } => SourceInfo {
            kind: "snapshot".into(),
            endpoints: None,
            path: Some(path),
            revision,
        },
    }
}

/// Notes the engine itself owes the reader.
fn own_notes(classifier: &Classifier, opts: &ScanOptions) -> Vec<String> {
    let mut notes = Vec::new();
    if !classifier.has_config() {
        notes.push(
            "no EncryptionConfiguration given: values are only classified as plaintext or encrypted \
             (pass --encryption-provider-config to judge current/stale/unknown-key)"
                .to_string(),
        );
    }
    if !opts.resources.is_empty() {
        let names: Vec<String> = opts.resources.iter().map(|g| g.to_string()).collect();
        notes.push(format!(
            "only these resources were scanned: {}",
            names.join(", ")
        ));
    }
    notes
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testutil::record;

    #[test]
    fn aggregator_counts_everything_keeps_findings() {
        let mut agg = Aggregator::new(false);
        agg.add(record(
            "/r/secrets/a",
            Some("secrets"),
            "aescbc",
            Some("k1"),
            Status::Current,
        ));
        agg.add(record(
            "/r/secrets/b",
            Some("secrets"),
            "aescbc",
            Some("k0"),
            Status::Stale,
        ));
        agg.add(record(
            "compact_rev_key",
            None,
            "identity",
            None,
            Status::Current,
        ));
        let mut kms = record(
            "/r/secrets/c",
            Some("secrets"),
            "kms",
            Some("v"),
            Status::Current,
        );
        kms.kms_key_id = Some("id1".into());
        agg.add(kms);
        let (s, objs) = agg.finish();
        assert_eq!(s.objects, 4);
        assert_eq!(s.findings, 1);
        assert_eq!(s.by_status["current"], 3);
        assert_eq!(s.by_status["stale"], 1);
        assert_eq!(s.by_status["undecryptable"], 0);
        assert_eq!(s.by_status.len(), Status::ALL.len());
        assert_eq!(s.by_resource["secrets"]["current"], 2);
        assert_eq!(s.by_resource[NON_OBJECT_RESOURCE]["current"], 1);
        assert_eq!(s.by_provider_key["aescbc/k0"]["stale"], 1);
        assert_eq!(s.by_provider_key["identity"]["current"], 1);
        assert_eq!(s.by_kms_key_id["id1"], 1);
        assert_eq!(s.breakdown.iter().map(|r| r.objects).sum::<u64>(), 4);
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].key, "/r/secrets/b");
    }

    #[test]
    fn history_groups_residue_per_key() {
        let mut acc = HistoryAcc::default();
        let mut r = |k: &str, rev: i64, st: Status| {
            let mut rec = record(k, Some("secrets"), "identity", None, st);
            rec.mod_revision = rev;
            acc.add(rec);
        };
        r("/r/secrets/a", 2, Status::Plaintext);
        r("/r/secrets/a", 5, Status::Stale);
        r("/r/secrets/a", 9, Status::Current);
        r("/r/secrets/b", 3, Status::Current);
        r("/r/secrets/c", 4, Status::Plaintext);
        let h = acc.finish();
        assert_eq!(h.revisions_examined, 5);
        assert_eq!(h.residue_revisions, 3);
        assert_eq!(h.keys_with_residue, 2);
        assert_eq!(h.keys[0].key, "/r/secrets/a");
        assert_eq!(h.keys[0].oldest_revision, 2);
        assert_eq!(h.keys[0].newest_revision, 5);
        assert_eq!(h.keys[0].revisions, 2);
        assert_eq!(h.keys[0].statuses, vec![Status::Stale, Status::Plaintext]);
        assert_eq!(h.keys[1].key, "/r/secrets/c");
    }

    /// A small in-memory source over hand-made values (a unit test of the engine, not of etcd).
    struct MemSource {
        batches: Vec<Vec<RawKv>>,
        history: Vec<Vec<RawKv>>,
        with_history: bool,
    }

    #[async_trait::async_trait]
    impl KvSource for MemSource {
        fn kind(&self) -> SourceKind {
            SourceKind::Snapshot {
                path: "mem.db".into(),
            }
        }
        fn revision(&self) -> i64 {
            42
        }
        async fn estimate(&mut self) -> Result<Option<u64>, SourceError> {
            Ok(Some(self.batches.iter().map(|b| b.len() as u64).sum()))
        }
        async fn next_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
            Ok((!self.batches.is_empty()).then(|| self.batches.remove(0)))
        }
        fn notes(&self) -> Vec<String> {
            vec!["from memory".into()]
        }
        fn supports_history(&self) -> bool {
            self.with_history
        }
        async fn next_history_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
            Ok((!self.history.is_empty()).then(|| self.history.remove(0)))
        }
    }

    fn kv(key: &str, value: &[u8], rev: i64) -> RawKv {
        RawKv {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    #[derive(Default)]
    struct Counting {
        total: std::sync::atomic::AtomicU64,
        keys: std::sync::atomic::AtomicU64,
        bytes: std::sync::atomic::AtomicU64,
    }
    impl Progress for Counting {
        fn set_total(&self, keys: u64) {
            self.total.store(keys, std::sync::atomic::Ordering::Relaxed);
        }
        fn advance(&self, keys: u64, bytes: u64) {
            self.keys
                .fetch_add(keys, std::sync::atomic::Ordering::Relaxed);
            self.bytes
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    const CONFIG: &str = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: new
              secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
            - name: old
              secret: ERERERERERERERERERERERERERERERERERERERERERE=
      - identity: {}
"#;

    fn engine_source(with_history: bool) -> MemSource {
        let plain = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret";
        let mut newv = b"k8s:enc:aescbc:v1:new:".to_vec();
        newv.extend_from_slice(&[0u8; 32]);
        let mut oldv = b"k8s:enc:aescbc:v1:old:".to_vec();
        oldv.extend_from_slice(&[0u8; 32]);
        let mut gone = b"k8s:enc:aescbc:v1:gone:".to_vec();
        gone.extend_from_slice(&[0u8; 32]);
        MemSource {
            batches: vec![
                vec![
                    kv("/registry/configmaps/ns/a", plain, 3),
                    kv("/registry/secrets/ns/a", &newv, 4),
                ],
                vec![
                    kv("/registry/secrets/ns/b", &oldv, 5),
                    kv("/registry/secrets/ns/c", plain, 6),
                    kv("/registry/secrets/ns/d", &gone, 7),
                ],
            ],
            history: vec![vec![
                kv("/registry/secrets/ns/a", plain, 1),
                kv("/registry/secrets/ns/a", &oldv, 2),
                kv("/registry/secrets/ns/b", &newv, 2),
            ]],
            with_history,
        }
    }

    fn engine_classifier() -> Classifier {
        let cfg = crate::config::EncryptionConfig::parse(CONFIG, "test").unwrap();
        let t = crate::codec::chain::Transformers::new(&cfg, &crate::kms::GrpcConnector).unwrap();
        Classifier::new("/registry", Some(t), false)
    }

    #[tokio::test]
    async fn engine_end_to_end_in_memory() {
        let mut src = engine_source(true);
        let progress = Counting::default();
        let opts = ScanOptions {
            history: true,
            prefix: "/registry".into(),
            config_path: Some("enc.yaml".into()),
            ..Default::default()
        };
        let r = run_scan(&mut src, &engine_classifier(), &opts, &progress)
            .await
            .unwrap();
        assert_eq!(r.source.kind, "snapshot");
        assert_eq!(r.source.revision, 42);
        assert_eq!(r.summary.objects, 5);
        let st: Vec<(&str, Status)> = r
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.status))
            .collect();
        assert_eq!(
            st,
            [
                ("/registry/secrets/ns/b", Status::Stale),
                ("/registry/secrets/ns/c", Status::Plaintext),
                ("/registry/secrets/ns/d", Status::UnknownKey),
            ]
        );
        assert_eq!(r.summary.by_resource["configmaps"]["current"], 1);
        assert_eq!(r.summary.by_provider_key["aescbc/new"]["current"], 1);
        assert!(r.notes.iter().any(|n| n == "from memory"));
        let h = r.history.as_ref().unwrap();
        assert_eq!(h.revisions_examined, 3);
        assert_eq!(h.residue_revisions, 2);
        assert_eq!(h.keys.len(), 1);
        assert_eq!(h.keys[0].key, "/registry/secrets/ns/a");
        assert_eq!(
            (h.keys[0].oldest_revision, h.keys[0].newest_revision),
            (1, 2)
        );
        assert_eq!(h.keys[0].statuses, vec![Status::Stale, Status::Plaintext]);
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(progress.total.load(Relaxed), 5);
        assert_eq!(progress.keys.load(Relaxed), 8, "latest + history revisions");
        assert!(progress.bytes.load(Relaxed) > 0);
    }

    #[tokio::test]
    async fn engine_filters_and_lists_all() {
        let mut src = engine_source(false);
        let opts = ScanOptions {
            resources: vec![GroupResource::parse("configmaps")],
            list_all: true,
            history: true,
            prefix: "/registry".into(),
            ..Default::default()
        };
        let r = run_scan(&mut src, &engine_classifier(), &opts, &NoProgress)
            .await
            .unwrap();
        assert_eq!(r.summary.objects, 1);
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.objects[0].status, Status::Current);
        assert!(r.history.is_none());
        assert!(r.notes.iter().any(|n| n.contains("--history")));
        assert!(r.notes.iter().any(|n| n.contains("configmaps")));
    }

    #[test]
    fn resource_filter() {
        let s = GroupResource::parse("secrets");
        let d = GroupResource::parse("deployments.apps");
        assert!(selected(Some(&s), &[]));
        assert!(selected(None, &[]));
        assert!(selected(Some(&s), std::slice::from_ref(&s)));
        assert!(!selected(Some(&d), std::slice::from_ref(&s)));
        assert!(!selected(None, std::slice::from_ref(&s)));
        let apps = GroupResource::parse("*.apps");
        assert!(selected(Some(&d), std::slice::from_ref(&apps)));
        assert!(!selected(Some(&s), std::slice::from_ref(&apps)));
        let core = GroupResource::parse("*.");
        assert!(selected(Some(&s), std::slice::from_ref(&core)));
        assert!(!selected(Some(&d), std::slice::from_ref(&core)));
    }
}
