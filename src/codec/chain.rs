//! The per-resource prefix chain (spec §4): kube-apiserver's ordered `(prefix, transformer)`
//! list, flattened to one entry per key (aescbc/aesgcm/secretbox) or per KMS provider, plus
//! identity's empty prefix. It answers: which entry a value's prefix selects (no key material
//! needed), how a read goes (first success wins, failures continue), whether a successful read
//! is stale, and what the writer (entry 0) produces.

use super::{DecryptError, EncryptError, ProviderKind, kmsv2::EncryptedObjectInfo};
use crate::config::{EncryptionConfig, ProviderConfig};
use crate::kms::{KmsConnector, KmsError};
use crate::resource::GroupResource;
use crate::secret::SecretBytes;

/// All chains of one config: one per rule (plus the bare-identity default).
pub struct Transformers {
    // H1: chains per rule, lookup via EncryptionConfig::select
}

/// An error building transformers from a config (e.g. a KMS plugin entry that cannot be set up).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error("{0}")]
    Other(String),
}

impl Transformers {
    /// Build every chain of `config`; KMS entries get a service from `kms` (lazy: no plugin is
    /// contacted here).
    pub fn new(config: &EncryptionConfig, kms: &dyn KmsConnector) -> Result<Self, BuildError> {
        todo!(
            "H1 {} {}",
            config.rules.len(),
            std::any::type_name_of_val(kms)
        )
    }
    /// The chain kube-apiserver uses for `gr` (bare identity when no rule matches or `gr` is None).
    pub fn chain_for(&self, gr: Option<&GroupResource>) -> &Chain {
        todo!("H1 {gr:?}")
    }
    /// Contact every KMS v2 plugin once (Status) so [`Chain::identify`] can judge KMS v2
    /// staleness by keyID without decrypting. Errors name the plugin and socket.
    pub async fn prepare_kms(&self) -> Result<(), KmsError> {
        todo!("H1")
    }
}

/// One resource's ordered chain.
pub struct Chain {
    // H1
}

/// Where a value lands in a chain, decided from its bytes alone (no decryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// Not `k8s:enc:`. `identity_index` is the chain position of an identity entry if any
    /// (0 = identity is the writer, so plaintext is current; None = unreadable by kube-apiserver).
    Plaintext { identity_index: Option<usize> },
    /// The first entry whose prefix matches. `stale_hint` is true when the entry is not 0, or
    /// for KMS v2 when keyID / DEK source type differ from the plugin's current state (known
    /// after [`Transformers::prepare_kms`]).
    Matched {
        index: usize,
        provider: ProviderKind,
        name: Option<String>,
        kms_v2: Option<EncryptedObjectInfo>,
        stale_hint: bool,
    },
    /// `k8s:enc:` but no entry matches: kube-apiserver cannot read it. Provider and name are
    /// the heuristic reading of the prefix (never split naively for matching; for display only).
    Unknown {
        provider: Option<ProviderKind>,
        name: Option<String>,
    },
}

/// A successful read.
#[derive(Debug)]
pub struct ReadOutcome {
    pub plaintext: SecretBytes,
    /// Upstream's stale: not entry 0, or the provider's own staleness (KMS v1 CBC, KMS v2 keyID/type).
    pub stale: bool,
    pub index: usize,
    pub provider: ProviderKind,
    pub name: Option<String>,
    pub kms_v2: Option<EncryptedObjectInfo>,
}

impl Chain {
    /// The writer: provider and key/KMS name of entry 0 (identity: None).
    pub fn writer(&self) -> (ProviderKind, Option<&str>) {
        todo!("H1")
    }
    /// Classify `value` against this chain without decrypting.
    pub fn identify(&self, value: &[u8]) -> Identified {
        todo!("H1 {}", value.len())
    }
    /// Read like kube-apiserver: try each matching entry in order; the first success wins.
    /// `etcd_key` is the full key (the AAD).
    pub async fn read(&self, etcd_key: &[u8], value: &[u8]) -> Result<ReadOutcome, DecryptError> {
        todo!("H1 {} {}", etcd_key.len(), value.len())
    }
    /// Write like kube-apiserver: entry 0's prefix + its output. KMS v2 reuses one seed per
    /// run (one plugin Encrypt, whose key_id must equal Status's). Refuses to write KMS v1.
    pub async fn write(&self, etcd_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        todo!("H1 {} {}", etcd_key.len(), plaintext.len())
    }
    /// A stable fingerprint of the write target (provider, key name, and a keyed hash of the key
    /// material that reveals nothing about it), for the rotate journal.
    pub fn writer_fingerprint(&self) -> String {
        todo!("H1")
    }
}

#[allow(dead_code)]
fn _uses(_: &ProviderConfig) {}
