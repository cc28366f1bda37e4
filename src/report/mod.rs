//! Scan reports: the stable, versioned `atrest.scan/v1` JSON document, and its renderings as a
//! terminal table and as Prometheus text exposition (node_exporter textfile collector).
//!
//! The document is built by [`crate::scan::run_scan`]; the renderers here only read it, so the
//! three outputs always agree. Field names of `atrest.scan/v1` are a contract (issue 3): fields
//! may be added, never renamed or removed.
mod json;
mod prometheus;
mod spill;
mod table;

pub use spill::SpillSink;

use crate::classify::{ObjectRecord, Status};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCAN_SCHEMA: &str = "atrest.scan/v1";

/// Objects the terminal table lists before pointing at `-o json` for the rest.
pub const TABLE_MAX_LISTED: usize = 1000;

/// The `resource` label of keys that are not API objects (`compact_rev_key`, `health`, ...).
pub const NON_OBJECT_RESOURCE: &str = "(non-object)";

/// The whole `atrest.scan/v1` document.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub schema: &'static str,
    pub source: SourceInfo,
    pub prefix: String,
    /// Path of the EncryptionConfiguration, or null.
    pub config: Option<String>,
    pub verified: bool,
    pub summary: Summary,
    /// `--list findings` (default): only non-current objects; `--list all`: every object.
    pub objects: Vec<ObjectRecord>,
    /// Things the reader must know (e.g. a compaction mid-scan and where it continued).
    pub notes: Vec<String>,
    /// `--history` (snapshot scans) only: older revisions still recoverable from the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryReport>,
    pub started_at: String,
    pub duration_seconds: f64,
    /// `started_at` as seconds since the Unix epoch (for Prometheus).
    #[serde(skip)]
    pub started_unix: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    /// `etcd` or `snapshot`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub revision: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub objects: u64,
    /// Objects whose status is not `current` (what `--list findings` keeps).
    pub findings: u64,
    /// The per-status counts again as top-level fields (`"current": 10, "stale": 2, ...`), as
    /// issue 3 words it ("`objects`, and counts per status").
    #[serde(flatten)]
    pub status_counts: BTreeMap<String, u64>,
    /// Counts per status (`current`, `stale`, ...), every status present with 0 if none.
    pub by_status: BTreeMap<String, u64>,
    /// `resource` (as `secrets`, `deployments.apps`) → status → count.
    pub by_resource: BTreeMap<String, BTreeMap<String, u64>>,
    /// `provider/key_name` (e.g. `aescbc/key1`, `identity`) → status → count.
    pub by_provider_key: BTreeMap<String, BTreeMap<String, u64>>,
    /// KMS v2 objects per keyID.
    pub by_kms_key_id: BTreeMap<String, u64>,
    /// resource × provider × key × status (the table's and Prometheus' rows), sorted.
    pub breakdown: Vec<BreakdownRow>,
}

/// One cell of the resource × provider/key × status breakdown.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BreakdownRow {
    pub resource: String,
    pub provider: String,
    pub key_name: Option<String>,
    pub status: Status,
    pub objects: u64,
}

/// `--history` residue: per key, the older revisions that are plaintext or under a stale key.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HistoryReport {
    pub revisions_examined: u64,
    pub residue_revisions: u64,
    pub keys_with_residue: u64,
    pub keys: Vec<HistoryResidue>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryResidue {
    pub key: String,
    pub oldest_revision: i64,
    pub newest_revision: i64,
    pub revisions: u64,
    /// The statuses those old revisions had (`plaintext`, `stale`, ...).
    pub statuses: Vec<Status>,
}

impl ScanReport {
    /// Does any object (or, with history, any residue) have a status in `fail_on`?
    pub fn has_findings(&self, fail_on: &[Status]) -> bool {
        let in_summary = fail_on
            .iter()
            .any(|s| self.summary.by_status.get(s.as_str()).copied().unwrap_or(0) > 0);
        let in_objects = self.objects.iter().any(|o| fail_on.contains(&o.status));
        let in_history = self.history.as_ref().is_some_and(|h| {
            h.keys
                .iter()
                .any(|k| k.statuses.iter().any(|s| fail_on.contains(s)))
        });
        in_summary || in_objects || in_history
    }
    /// The stable `atrest.scan/v1` JSON document (pretty-printed, trailing newline).
    pub fn to_json(&self) -> String {
        json::render(self)
    }
    /// Human table: summary by resource × provider/key × status, then the findings.
    pub fn render_table(&self) -> String {
        table::render_with(self, &self.objects, self.objects.len() as u64)
    }
    /// Write the JSON document (no intermediate copy of the whole text is kept by callers).
    pub fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        w.write_all(self.to_json().as_bytes())
    }
    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        prometheus::render(self)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn record(
        key: &str,
        res: Option<&str>,
        provider: &str,
        kn: Option<&str>,
        st: Status,
    ) -> ObjectRecord {
        ObjectRecord {
            key: key.into(),
            group: res.map(|_| String::new()),
            resource: res.map(String::from),
            namespace: Some("default".into()),
            name: key.rsplit('/').next().unwrap_or_default().into(),
            provider: Some(provider.into()),
            provider_label: None,
            key_name: kn.map(String::from),
            status: st,
            mod_revision: 7,
            size: 42,
            detail: None,
            message: (st != Status::Current).then(|| format!("why \"{key}\"")),
            kms_key_id: None,
        }
    }

    /// A small report built through the real aggregator.
    pub fn sample() -> ScanReport {
        let mut agg = crate::scan::Aggregator::new(false);
        agg.add(record(
            "/registry/secrets/default/a",
            Some("secrets"),
            "aescbc",
            Some("key1"),
            Status::Current,
        ));
        agg.add(record(
            "/registry/secrets/default/b",
            Some("secrets"),
            "aescbc",
            Some("key1"),
            Status::Current,
        ));
        agg.add(record(
            "/registry/secrets/default/c",
            Some("secrets"),
            "aescbc",
            Some("key0"),
            Status::Stale,
        ));
        agg.add(record(
            "/registry/secrets/default/d",
            Some("secrets"),
            "identity",
            None,
            Status::Plaintext,
        ));
        agg.add(record(
            "/registry/configmaps/default/e",
            Some("configmaps"),
            "identity",
            None,
            Status::Current,
        ));
        agg.add(record(
            "/registry/secrets/default/f",
            Some("secrets"),
            "kms",
            Some("vault"),
            Status::UnknownKey,
        ));
        let (summary, objects) = agg.finish();
        ScanReport {
            schema: SCAN_SCHEMA,
            source: SourceInfo {
                kind: "etcd".into(),
                endpoints: Some(vec!["https://127.0.0.1:2379".into()]),
                path: None,
                revision: 99,
            },
            prefix: "/registry".into(),
            config: Some("/etc/kubernetes/enc.yaml".into()),
            verified: false,
            summary,
            objects,
            notes: vec!["a note".into()],
            history: None,
            started_at: "2026-12-01T15:00:00Z".into(),
            duration_seconds: 1.5,
            started_unix: 1_796_137_200.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_follow_fail_on() {
        let r = testutil::sample();
        assert!(r.has_findings(&Status::DEFAULT_FAIL_ON));
        assert!(r.has_findings(&[Status::Stale]));
        assert!(!r.has_findings(&[Status::Undecryptable]));
        assert!(!r.has_findings(&[]));
    }

    #[test]
    fn history_residue_is_a_finding() {
        let mut r = testutil::sample();
        assert!(!r.has_findings(&[Status::Undecryptable]));
        r.history = Some(HistoryReport {
            revisions_examined: 3,
            residue_revisions: 1,
            keys_with_residue: 1,
            keys: vec![HistoryResidue {
                key: "/registry/secrets/default/a".into(),
                oldest_revision: 2,
                newest_revision: 2,
                revisions: 1,
                statuses: vec![Status::Undecryptable],
            }],
        });
        assert!(r.has_findings(&[Status::Undecryptable]));
    }
}
