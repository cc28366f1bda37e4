//! Scan reports: the stable, versioned `atrest.scan/v1` JSON document, and its renderings as a
//! terminal table and as Prometheus text exposition (node_exporter textfile collector).
use crate::classify::{ObjectRecord, Status};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCAN_SCHEMA: &str = "atrest.scan/v1";

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
    /// Counts per status (`current`, `stale`, ...), every status present with 0 if none.
    pub by_status: BTreeMap<String, u64>,
    /// `resource` (as `secrets`, `deployments.apps`) → status → count.
    pub by_resource: BTreeMap<String, BTreeMap<String, u64>>,
    /// `provider/key_name` (e.g. `aescbc/key1`, `identity`) → status → count.
    pub by_provider_key: BTreeMap<String, BTreeMap<String, u64>>,
    /// KMS v2 objects per keyID.
    pub by_kms_key_id: BTreeMap<String, u64>,
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
        todo!("D2 {}", fail_on.len())
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
    /// Human table: summary by resource × provider/key × status, then the findings.
    pub fn render_table(&self) -> String {
        todo!("D2")
    }
    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        todo!("D2")
    }
}
