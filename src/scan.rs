//! The scan engine: pulls batches from a [`KvSource`], judges every value with a
//! [`Classifier`] (concurrently, with bounded memory), aggregates counts and builds the
//! `atrest.scan/v1` report. Shared by `scan`, `snapshot verify` and rotate's final check.
use crate::classify::Classifier;
use crate::report::ScanReport;
use crate::resource::GroupResource;
use crate::source::{KvSource, SourceError};

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
}

/// Run a full scan of `source`.
pub async fn run_scan(
    source: &mut dyn KvSource,
    classifier: &Classifier,
    opts: &ScanOptions,
    progress: &dyn Progress,
) -> Result<ScanReport, ScanError> {
    todo!(
        "D2 {} {} {opts:?} {}",
        source.revision(),
        std::any::type_name_of_val(classifier),
        std::any::type_name_of_val(progress)
    )
}
