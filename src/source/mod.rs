//! Sources of raw key/values: a live etcd ([`etcd`]) or a snapshot file
//! (`crate::snapshot::SnapshotSource`). Both yield the same [`RawKv`] records in key order, in
//! bounded batches, so everything downstream streams with flat memory.

pub mod etcd;

/// One stored key/value as etcd holds it (the latest revision unless a history scan says otherwise).
#[derive(Clone, PartialEq, Eq)]
pub struct RawKv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// A value may be a plaintext Secret (identity storage): wipe it when the record goes away, so
/// no copy of it lingers in freed memory.
impl Drop for RawKv {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl std::fmt::Debug for RawKv {
    /// Never prints the value (it may be plaintext).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKv")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value_len", &self.value.len())
            .field("mod_revision", &self.mod_revision)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Where a scan's data came from, as the report states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Etcd { endpoints: Vec<String> },
    Snapshot { path: String },
}

/// A source failure (connection, TLS, permission, corrupt file). Always fatal for a scan (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A stream of [`RawKv`] batches in ascending key order under one prefix.
#[async_trait::async_trait]
pub trait KvSource: Send {
    fn kind(&self) -> SourceKind;
    /// The revision the data is pinned to (the latest revision the source has read at).
    fn revision(&self) -> i64;
    /// Estimated number of keys (a count-only range for etcd), for progress bars.
    async fn estimate(&mut self) -> Result<Option<u64>, SourceError>;
    /// The next batch, or None at the end.
    async fn next_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError>;
    /// Things the report must say (e.g. "revision 120 was compacted mid-scan; continued at 131
    /// from key /registry/x").
    fn notes(&self) -> Vec<String>;
    /// Whether [`KvSource::next_history_batch`] yields anything (snapshot files: yes).
    fn supports_history(&self) -> bool {
        false
    }
    /// Older revisions still held by the source (for `--history`): every revision under the
    /// prefix that is not the latest live one and not a tombstone, in key then revision order.
    /// Call after the latest state has been fully read. Default: none.
    async fn next_history_batch(&mut self) -> Result<Option<Vec<RawKv>>, SourceError> {
        Ok(None)
    }
}
