//! atrest: inspect, rotate and verify Kubernetes encryption at rest, straight from etcd.
//!
//! The modules follow the data flow:
//!
//! ```text
//! source (live etcd | snapshot file) ──► RawKv stream
//!        │
//!        ▼
//! resource (etcd key → group/resource) ──► config (EncryptionConfiguration → per-resource chain)
//!        │
//!        ▼
//! codec (prefix → provider → plaintext) ──► classify (current/stale/plaintext/unknown-key/undecryptable)
//!        │
//!        ▼
//! report (table | json | prometheus)   and   rotate (CAS rewrites + journal)
//! ```
#![forbid(unsafe_code)]

pub mod classify;
pub mod codec;
pub mod config;
pub mod connect;
pub mod kms;
pub mod proto;
pub mod report;
pub mod resource;
pub mod rotate;
pub mod scan;
pub mod secret;
pub mod snapshot;
pub mod source;

/// Documented exit codes, shared by every command.
pub mod exit {
    /// Success: nothing to report.
    pub const OK: u8 = 0;
    /// The tool worked, and found something (a finding, an unreadable value).
    pub const FINDINGS: u8 = 1;
    /// Usage, configuration, connection or integrity error: the tool could not do its job.
    pub const ERROR: u8 = 2;
}
