//! The per-resource prefix chain (spec §4): kube-apiserver's ordered `(prefix, transformer)`
//! list, flattened to one entry per key (aescbc/aesgcm/secretbox) or per KMS provider, plus
//! identity's empty prefix. It answers: which entry a value's prefix selects (no key material
//! needed), how a read goes (first success wins, failures continue), whether a successful read
//! is stale, and what the writer (entry 0) produces.
//!
//! Flattening keeps upstream's staleness rule simple: a read is stale iff it did not succeed
//! through entry 0 (first provider, first key) or the provider itself says so (KMS v1 CBC
//! fallback, KMS v2 keyID/type). Matching is a byte-prefix test against the configured names;
//! names are never split on `:`.
//!
//! Prefixes can overlap (spec §8 trap 3): a key name reused by two providers of the same type,
//! or names like `a` and `a:b`. Then the prefix alone does not say which key wrote a value:
//! [`Identified::Matched::ambiguous`] says so, and only a read settles it. aescbc has no MAC,
//! so even a read can be fooled (a wrong key gives "valid" padding about once in 256 tries and
//! upstream returns the garbage): [`ReadOutcome::unauthenticated_overlap`] flags exactly those
//! reads, so a rewriter can refuse them.

use super::aescbc::AesCbcCipher;
use super::aesgcm::AesGcmCipher;
use super::kmsv1::KmsV1;
use super::kmsv2::{self, KmsV2};
use super::mac;
use super::secretbox::SecretboxCipher;
use super::{
    Cipher, DecryptError, ENC_PREFIX, EncryptError, ErrorClass, ProviderKind, classify_encrypted,
    kmsv2::EncryptedObjectInfo,
};
use crate::config::{EncryptionConfig, KmsApiVersion, NamedKey, ProviderConfig};
use crate::kms::{KmsConnector, KmsError};
use crate::resource::GroupResource;
use crate::secret::SecretBytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Domain-separation label of [`Chain::writer_fingerprint`]'s (unsalted) key digest.
const FINGERPRINT_LABEL: &[u8] = b"atrest writer-fingerprint v1\0";
/// Domain-separation label of [`Chain::writer_fingerprint_salted`]'s HMAC message.
const SALTED_FINGERPRINT_LABEL: &[u8] = b"atrest writer-fingerprint salted v1\0";

/// All chains of one config: one per distinct provider list a resource can select (plus the
/// bare-identity default).
pub struct Transformers {
    config: EncryptionConfig,
    /// Keyed by the selected providers' positions `(rule index, provider index)`.
    chains: HashMap<Vec<(usize, usize)>, Chain>,
    identity: Chain,
    kms_v2: Vec<Arc<KmsV2>>,
}

/// An error building transformers from a config (e.g. a KMS plugin entry that cannot be set up).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error("{0}")]
    Other(String),
}

/// KMS providers are built once per name and shared by every chain that lists them, so
/// caches, the Status answer and the run's KMS v2 seed are per plugin.
struct KmsRegistry<'a> {
    connector: &'a dyn KmsConnector,
    v1: HashMap<String, Arc<KmsV1>>,
    v2: HashMap<String, Arc<KmsV2>>,
}

impl KmsRegistry<'_> {
    fn new(connector: &dyn KmsConnector) -> KmsRegistry<'_> {
        KmsRegistry {
            connector,
            v1: HashMap::new(),
            v2: HashMap::new(),
        }
    }
}

impl Transformers {
    /// Build every chain of `config`; KMS entries get a service from `kms` (lazy: no plugin is
    /// contacted here).
    pub fn new(config: &EncryptionConfig, kms: &dyn KmsConnector) -> Result<Self, BuildError> {
        let config = config.clone();
        let mut registry = KmsRegistry::new(kms);
        let mut chains = HashMap::new();
        // Every selection a resource can get equals the selection of one of the resource
        // strings the config names: an exact match lists that string, `*.<group>` selects as
        // itself, `*.*` likewise. So these candidates cover every `chain_for` lookup.
        let candidates: Vec<GroupResource> = config
            .rules
            .iter()
            .flat_map(|r| r.resources.iter().map(|s| GroupResource::parse(s)))
            .collect();
        for gr in &candidates {
            let Some(sel) = config.select(gr) else {
                continue;
            };
            let sig = signature(&config, &sel.providers);
            if chains.contains_key(&sig) {
                continue;
            }
            let chain = build_chain(&sel.providers, &mut registry)?;
            chains.insert(sig, chain);
        }
        let identity = Chain {
            entries: vec![Entry::Identity],
        };
        let kms_v2 = registry.v2.into_values().collect();
        Ok(Transformers {
            config,
            chains,
            identity,
            kms_v2,
        })
    }

    /// The chain kube-apiserver uses for `gr` (bare identity when no rule matches or `gr` is None).
    pub fn chain_for(&self, gr: Option<&GroupResource>) -> &Chain {
        let Some(gr) = gr else {
            return &self.identity;
        };
        let Some(sel) = self.config.select(gr) else {
            return &self.identity;
        };
        let sig = signature(&self.config, &sel.providers);
        match self.chains.get(&sig) {
            Some(c) => c,
            None => {
                tracing::error!(
                    resource = %gr,
                    "internal: no prebuilt chain for the providers selected by rule {:?}; using identity",
                    sel.matched
                );
                &self.identity
            }
        }
    }

    /// Contact every KMS v2 plugin once (Status) so [`Chain::identify`] can judge KMS v2
    /// staleness by keyID without decrypting. Errors name the plugin and socket.
    pub async fn prepare_kms(&self) -> Result<(), KmsError> {
        for k in &self.kms_v2 {
            k.prepare().await?;
        }
        Ok(())
    }
}

/// Positions of the selected providers inside `config`, by identity of the references.
fn signature(config: &EncryptionConfig, providers: &[&ProviderConfig]) -> Vec<(usize, usize)> {
    providers
        .iter()
        .filter_map(|p| {
            config.rules.iter().enumerate().find_map(|(ri, r)| {
                r.providers
                    .iter()
                    .position(|q| std::ptr::eq(q, *p))
                    .map(|pi| (ri, pi))
            })
        })
        .collect()
}

fn build_chain(
    providers: &[&ProviderConfig],
    registry: &mut KmsRegistry<'_>,
) -> Result<Chain, BuildError> {
    let mut entries = Vec::new();
    for p in providers {
        match p {
            ProviderConfig::Identity => entries.push(Entry::Identity),
            ProviderConfig::AesCbc { keys } => {
                push_keys(&mut entries, ProviderKind::AesCbc, keys, |k| {
                    AesCbcCipher::new(k).map(|c| Box::new(c) as Box<dyn Cipher>)
                })?
            }
            ProviderConfig::AesGcm { keys } => {
                push_keys(&mut entries, ProviderKind::AesGcm, keys, |k| {
                    AesGcmCipher::new(k).map(|c| Box::new(c) as Box<dyn Cipher>)
                })?
            }
            ProviderConfig::Secretbox { keys } => {
                push_keys(&mut entries, ProviderKind::Secretbox, keys, |k| {
                    SecretboxCipher::new(k).map(|c| Box::new(c) as Box<dyn Cipher>)
                })?
            }
            ProviderConfig::Kms(cfg) => match cfg.api_version {
                KmsApiVersion::V1 => {
                    let kms = match registry.v1.get(&cfg.name) {
                        Some(k) => k.clone(),
                        None => {
                            let svc = registry.connector.connect(cfg)?;
                            let k = Arc::new(KmsV1::new(&cfg.name, svc, cfg.cachesize));
                            registry.v1.insert(cfg.name.clone(), k.clone());
                            k
                        }
                    };
                    entries.push(Entry::KmsV1 {
                        prefix: prefix_for(ProviderKind::KmsV1, &cfg.name),
                        kms,
                    });
                }
                KmsApiVersion::V2 => {
                    let kms = match registry.v2.get(&cfg.name) {
                        Some(k) => k.clone(),
                        None => {
                            let svc = registry.connector.connect(cfg)?;
                            let k = Arc::new(KmsV2::new(&cfg.name, svc));
                            registry.v2.insert(cfg.name.clone(), k.clone());
                            k
                        }
                    };
                    entries.push(Entry::KmsV2 {
                        prefix: prefix_for(ProviderKind::KmsV2, &cfg.name),
                        kms,
                    });
                }
            },
        }
    }
    if entries.is_empty() {
        return Err(BuildError::Other(
            "a resource rule has no providers (validation should have caught this)".into(),
        ));
    }
    Ok(Chain { entries })
}

fn push_keys(
    entries: &mut Vec<Entry>,
    kind: ProviderKind,
    keys: &[NamedKey],
    make: impl Fn(&SecretBytes) -> Result<Box<dyn Cipher>, String>,
) -> Result<(), BuildError> {
    if keys.is_empty() {
        return Err(BuildError::Other(format!(
            "{} provider has no valid keys",
            kind.report_name()
        )));
    }
    for k in keys {
        let cipher = make(&k.secret).map_err(|m| {
            BuildError::Other(format!(
                "error while creating cipher for named key {:?}: {m}",
                k.name
            ))
        })?;
        entries.push(Entry::Local {
            kind,
            name: k.name.clone(),
            prefix: prefix_for(kind, &k.name),
            cipher,
            fingerprint: key_fingerprint(kind, &k.secret),
            key: k.secret.clone(),
        });
    }
    Ok(())
}

/// `k8s:enc:<provider>:v1:<name>:` (or `k8s:enc:kms:v2:<name>:`).
fn prefix_for(kind: ProviderKind, name: &str) -> Vec<u8> {
    let mut p = kind.prefix().to_vec();
    p.extend_from_slice(name.as_bytes());
    p.push(b':');
    p
}

/// An **unsalted** digest of the key: SHA-256 over a domain-separation label, the provider, the
/// key length and the key bytes; the first 128 bits in hex. Not keyed: whoever sees it can test
/// guesses of a weak (human-chosen) key offline, and equal keys give equal digests across
/// clusters. Prefer [`salted_key_fingerprint`]. The hasher wipes its state on drop (`sha2`'s
/// `zeroize` feature).
fn key_fingerprint(kind: ProviderKind, key: &SecretBytes) -> String {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_LABEL);
    h.update(kind.report_name().as_bytes());
    h.update([0u8]);
    h.update((key.len() as u64).to_be_bytes());
    h.update(key.expose());
    let d = h.finalize();
    hex::encode(d.get(..16).unwrap_or_default())
}

/// HMAC-SHA256 keyed with `salt` over a label, the provider, the name and the key (each
/// length-prefixed so no two inputs concatenate alike); the first 128 bits in hex.
fn salted_key_fingerprint(
    salt: &[u8],
    kind: ProviderKind,
    name: &str,
    key: &SecretBytes,
) -> String {
    let provider = kind.report_name().as_bytes();
    let name = name.as_bytes();
    let len = |b: &[u8]| (b.len() as u64).to_be_bytes();
    let tag = mac::hmac_sha256(
        salt,
        &[
            SALTED_FINGERPRINT_LABEL,
            &len(provider),
            provider,
            &len(name),
            name,
            &len(key.expose()),
            key.expose(),
        ],
    );
    hex::encode(tag.get(..16).unwrap_or_default())
}

enum Entry {
    Identity,
    Local {
        kind: ProviderKind,
        name: String,
        prefix: Vec<u8>,
        cipher: Box<dyn Cipher>,
        /// [`key_fingerprint`], computed once.
        fingerprint: String,
        /// The key itself, for [`Chain::writer_fingerprint_salted`] (zeroized on drop).
        key: SecretBytes,
    },
    KmsV1 {
        prefix: Vec<u8>,
        kms: Arc<KmsV1>,
    },
    KmsV2 {
        prefix: Vec<u8>,
        kms: Arc<KmsV2>,
    },
}

impl Entry {
    fn kind(&self) -> ProviderKind {
        match self {
            Entry::Identity => ProviderKind::Identity,
            Entry::Local { kind, .. } => *kind,
            Entry::KmsV1 { .. } => ProviderKind::KmsV1,
            Entry::KmsV2 { .. } => ProviderKind::KmsV2,
        }
    }
    fn name(&self) -> Option<&str> {
        match self {
            Entry::Identity => None,
            Entry::Local { name, .. } => Some(name),
            Entry::KmsV1 { kms, .. } => Some(kms.name()),
            Entry::KmsV2 { kms, .. } => Some(kms.name()),
        }
    }
    /// None for identity (empty prefix, but it refuses `k8s:enc:` values).
    fn prefix(&self) -> Option<&[u8]> {
        match self {
            Entry::Identity => None,
            Entry::Local { prefix, .. }
            | Entry::KmsV1 { prefix, .. }
            | Entry::KmsV2 { prefix, .. } => Some(prefix),
        }
    }
}

/// One resource's ordered chain.
pub struct Chain {
    entries: Vec<Entry>,
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
        /// Another entry's prefix matches the value too (overlapping prefixes: a key name
        /// reused by two providers of one type, or `a` vs `a:b`), so `index`, `name` and
        /// `stale_hint` are only the first candidate's. Callers must not judge an ambiguous
        /// value from its prefix: read it ([`Chain::read`]) to learn which entry opens it.
        ambiguous: bool,
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
    /// The plaintext came out of a decryption with no MAC (aescbc, or KMS v1's pre-1.25 CBC
    /// fallback, taken when GCM fails): a wrong key, or for KMS v1 a tampered or moved GCM
    /// value, passes the padding check about once in 256 tries, so the bytes are right only if
    /// this entry really wrote the value this way. Rewriters should at least check the
    /// plaintext looks like a Kubernetes object before re-encrypting it.
    pub unauthenticated: bool,
    /// `unauthenticated` and another entry's prefix also matches the value
    /// ([`Chain::is_ambiguous`]): this entry may have "decrypted" a value another key wrote,
    /// yielding garbage (upstream would serve it too). Do not rewrite such a value.
    pub unauthenticated_overlap: bool,
}

impl Chain {
    /// A chain for an explicit provider list (tests, `atrest decode` with a hand-picked list).
    /// [`Transformers::new`] is the normal way to get chains.
    pub fn from_providers(
        providers: &[&ProviderConfig],
        kms: &dyn KmsConnector,
    ) -> Result<Chain, BuildError> {
        build_chain(providers, &mut KmsRegistry::new(kms))
    }

    /// The writer: provider and key/KMS name of entry 0 (identity: None).
    pub fn writer(&self) -> (ProviderKind, Option<&str>) {
        match self.entries.first() {
            Some(e) => (e.kind(), e.name()),
            None => (ProviderKind::Identity, None),
        }
    }

    /// The read order: provider and key/KMS name of every entry.
    pub fn entries(&self) -> Vec<(ProviderKind, Option<&str>)> {
        self.entries.iter().map(|e| (e.kind(), e.name())).collect()
    }

    /// How many entries' prefixes match `value` (identity never matches `k8s:enc:` data).
    fn matching_entries(&self, value: &[u8]) -> usize {
        if !value.starts_with(ENC_PREFIX) {
            return 0;
        }
        self.entries
            .iter()
            .filter(|e| e.prefix().is_some_and(|p| value.starts_with(p)))
            .count()
    }

    /// True when more than one entry's prefix matches `value` (overlapping prefixes, spec §8
    /// trap 3): the prefix does not tell which key wrote it, only a read does. Cheap: byte
    /// comparisons, no key material.
    pub fn is_ambiguous(&self, value: &[u8]) -> bool {
        self.matching_entries(value) > 1
    }

    /// Classify `value` against this chain without decrypting. See
    /// [`Identified::Matched::ambiguous`]: with overlapping prefixes this is only a hint.
    pub fn identify(&self, value: &[u8]) -> Identified {
        if !value.starts_with(ENC_PREFIX) {
            return Identified::Plaintext {
                identity_index: self
                    .entries
                    .iter()
                    .position(|e| matches!(e, Entry::Identity)),
            };
        }
        for (index, e) in self.entries.iter().enumerate() {
            let Some(payload) = e.prefix().and_then(|p| value.strip_prefix(p)) else {
                continue;
            };
            let mut stale_hint = index != 0;
            let mut kms_v2 = None;
            if let Entry::KmsV2 { kms, .. } = e {
                kms_v2 = kmsv2::parse_info(payload);
                if let Some(info) = &kms_v2 {
                    stale_hint |= kms.stale_for(info, kms.current_key_id().as_deref());
                }
            }
            return Identified::Matched {
                index,
                provider: e.kind(),
                name: e.name().map(str::to_string),
                kms_v2,
                stale_hint,
                ambiguous: self.is_ambiguous(value),
            };
        }
        let info = classify_encrypted(value);
        Identified::Unknown {
            provider: info.provider,
            name: info.name,
        }
    }

    /// Read like kube-apiserver: try each matching entry in order; the first success wins.
    /// `etcd_key` is the full key (the AAD).
    pub async fn read(&self, etcd_key: &[u8], value: &[u8]) -> Result<ReadOutcome, DecryptError> {
        let mut first_err: Option<DecryptError> = None;
        let ambiguous = self.is_ambiguous(value);
        for (index, e) in self.entries.iter().enumerate() {
            let outcome = |plaintext, inner_stale: bool, kms_v2| {
                // No MAC: aescbc always; KMS v1 when it fell back to CBC (its inner staleness).
                let unauthenticated = match e {
                    Entry::Local { kind, .. } => *kind == ProviderKind::AesCbc,
                    Entry::KmsV1 { .. } => inner_stale,
                    Entry::Identity | Entry::KmsV2 { .. } => false,
                };
                ReadOutcome {
                    plaintext,
                    stale: inner_stale || index != 0,
                    index,
                    provider: e.kind(),
                    name: e.name().map(str::to_string),
                    kms_v2,
                    unauthenticated,
                    unauthenticated_overlap: unauthenticated && ambiguous,
                }
            };
            let result = match e {
                Entry::Identity => {
                    // Identity refuses `k8s:enc:` data; that failure is never recorded.
                    if value.starts_with(ENC_PREFIX) {
                        continue;
                    }
                    return Ok(outcome(SecretBytes::from_slice(value), false, None));
                }
                Entry::Local { prefix, cipher, .. } => {
                    let Some(payload) = value.strip_prefix(prefix.as_slice()) else {
                        continue;
                    };
                    cipher
                        .decrypt(payload, etcd_key)
                        .map(|d| outcome(d.plaintext, d.inner_stale, None))
                }
                Entry::KmsV1 { prefix, kms } => {
                    let Some(payload) = value.strip_prefix(prefix.as_slice()) else {
                        continue;
                    };
                    kms.decrypt(payload, etcd_key)
                        .await
                        .map(|d| outcome(d.plaintext, d.inner_stale, None))
                }
                Entry::KmsV2 { prefix, kms } => {
                    let Some(payload) = value.strip_prefix(prefix.as_slice()) else {
                        continue;
                    };
                    kms.decrypt(payload, etcd_key)
                        .await
                        .map(|(d, info)| outcome(d.plaintext, d.inner_stale, Some(info)))
                }
            };
            match result {
                Ok(o) => return Ok(o),
                Err(err) => {
                    // Local-key messages do not know their key's name; KMS ones name the provider.
                    let err = match e {
                        Entry::Local { kind, name, .. } => DecryptError::new(
                            err.class,
                            format!("{kind} key {name:?}: {}", err.message),
                        ),
                        _ => err,
                    };
                    first_err.get_or_insert(err);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| self.no_match_error(value)))
    }

    /// Upstream's "no matching prefix" / "no matching key" distinction, in error classes.
    fn no_match_error(&self, value: &[u8]) -> DecryptError {
        if !value.starts_with(ENC_PREFIX) {
            return DecryptError::new(
                ErrorClass::NoProvider,
                "plaintext value, but this resource's providers have no identity entry: \
                 kube-apiserver cannot read it (add `identity: {}` last, or re-encrypt it)",
            );
        }
        let info = classify_encrypted(value);
        let shown = info.name.clone().unwrap_or_default();
        if let Some(kind) = info.provider {
            let configured: Vec<&str> = self
                .entries
                .iter()
                .filter(|e| e.kind() == kind)
                .filter_map(|e| e.name())
                .collect();
            if !configured.is_empty() {
                let what = if matches!(kind, ProviderKind::KmsV1 | ProviderKind::KmsV2) {
                    "KMS provider name"
                } else {
                    "key name"
                };
                return DecryptError::new(
                    ErrorClass::UnknownKey,
                    format!(
                        "{kind} {what} {shown:?} is not configured (configured: {}): \
                         was the key removed from the config too early?",
                        configured.join(", ")
                    ),
                );
            }
        }
        DecryptError::new(
            ErrorClass::NoProvider,
            format!(
                "no configured provider matches the value's prefix ({} {shown:?}); \
                 identity refuses k8s:enc: data",
                info.provider_label
            ),
        )
    }

    /// Write like kube-apiserver: entry 0's prefix + its output. KMS v2 reuses one seed per
    /// run (one plugin Encrypt, whose key_id must equal Status's). Refuses to write KMS v1.
    pub async fn write(&self, etcd_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let Some(e) = self.entries.first() else {
            return Err(EncryptError("empty provider chain".into()));
        };
        let (prefix, payload) = match e {
            // Identity first: kube-apiserver writes the plaintext unchanged.
            Entry::Identity => return Ok(plaintext.to_vec()),
            Entry::Local { prefix, cipher, .. } => (prefix, cipher.encrypt(plaintext, etcd_key)?),
            Entry::KmsV1 { kms, .. } => return Err(kms.write_refusal()),
            Entry::KmsV2 { prefix, kms } => (prefix, kms.encrypt(plaintext, etcd_key).await?),
        };
        let mut out = Vec::with_capacity(prefix.len() + payload.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// A stable fingerprint of the write target: `identity`, `<provider>:<name>:<digest>`
    /// (aescbc/aesgcm/secretbox), `kms-v1:<name>`, `kms-v2:<name>:<keyID>` (the keyID is the
    /// write state's, or Status's after [`Transformers::prepare_kms`]; `unknown-key-id` before
    /// either; no key material).
    ///
    /// `<digest>` is an **unsalted, unkeyed** SHA-256 of a label, the provider and the key
    /// (128 bits, hex). It does not reveal a random key, but anyone who reads it can check
    /// guesses of a human-chosen key offline, and the same key gives the same digest in every
    /// cluster. Prefer [`Chain::writer_fingerprint_salted`] for anything stored.
    pub fn writer_fingerprint(&self) -> String {
        match self.entries.first() {
            None | Some(Entry::Identity) => "identity".to_string(),
            Some(Entry::Local {
                kind,
                name,
                fingerprint,
                ..
            }) => format!("{}:{name}:{fingerprint}", kind.report_name()),
            Some(Entry::KmsV1 { .. }) | Some(Entry::KmsV2 { .. }) => self.kms_fingerprint(),
        }
    }

    /// Like [`Chain::writer_fingerprint`], but the local-key digest is
    /// `HMAC-SHA256(key = salt, label || provider || name || key)` (fields length-prefixed),
    /// first 128 bits in hex: `<provider>:<name>:<hmac>`. Without the salt nobody can test key
    /// guesses against it, and a random per-journal salt makes it differ across clusters and
    /// runs. `salt` should be at least 16 random bytes stored next to the fingerprint (it is
    /// not secret). KMS and identity fingerprints carry no key material and are the same as
    /// [`Chain::writer_fingerprint`]'s.
    pub fn writer_fingerprint_salted(&self, salt: &[u8]) -> String {
        match self.entries.first() {
            None | Some(Entry::Identity) => "identity".to_string(),
            Some(Entry::Local {
                kind, name, key, ..
            }) => format!(
                "{}:{name}:{}",
                kind.report_name(),
                salted_key_fingerprint(salt, *kind, name, key)
            ),
            Some(Entry::KmsV1 { .. }) | Some(Entry::KmsV2 { .. }) => self.kms_fingerprint(),
        }
    }

    /// `kms-v1:<name>` / `kms-v2:<name>:<keyID>` for a KMS writer (else `identity`).
    fn kms_fingerprint(&self) -> String {
        match self.entries.first() {
            Some(Entry::KmsV1 { kms, .. }) => format!("kms-v1:{}", kms.name()),
            Some(Entry::KmsV2 { kms, .. }) => format!(
                "kms-v2:{}:{}",
                kms.name(),
                kms.write_key_id()
                    .unwrap_or_else(|| "unknown-key-id".into())
            ),
            _ => "identity".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;

    use crate::config::KmsConfig;
    use crate::kms::KmsService;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>(_: &T) {}

    struct NoKms;
    impl KmsConnector for NoKms {
        fn connect(&self, cfg: &KmsConfig) -> Result<Arc<dyn KmsService>, KmsError> {
            Err(KmsError::Unreachable {
                name: cfg.name.clone(),
                endpoint: cfg.endpoint.clone(),
                message: "no KMS in unit tests".into(),
            })
        }
    }

    fn key(name: &str, byte: u8) -> NamedKey {
        NamedKey {
            name: name.into(),
            secret: SecretBytes::new(vec![byte; 32]),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn chain_is_send_sync() {
        assert_send_sync::<Chain>();
        assert_send_sync::<Transformers>();
        let c = Chain::from_providers(&[&ProviderConfig::Identity], &NoKms).expect("chain");
        assert_send(&c.read(b"k", b"v"));
        assert_send(&c.write(b"k", b"v"));
    }

    /// Overlapping names (`a` vs `a:b`): every matching entry is tried in order.
    #[test]
    fn overlapping_key_names_fall_through() {
        let p = ProviderConfig::AesGcm {
            keys: vec![key("a", 1), key("a:b", 2)],
        };
        let writer_ab = ProviderConfig::AesGcm {
            keys: vec![key("a:b", 2)],
        };
        let chain = Chain::from_providers(&[&p], &NoKms).expect("chain");
        let w = Chain::from_providers(&[&writer_ab], &NoKms).expect("chain");
        let v = block_on(w.write(b"/registry/secrets/x/y", b"hello")).expect("write");
        assert!(v.starts_with(b"k8s:enc:aesgcm:v1:a:b:"));
        // identify picks the first prefix match (a hint) and says it is ambiguous; read
        // finds the right key.
        assert!(matches!(
            chain.identify(&v),
            Identified::Matched {
                index: 0,
                ambiguous: true,
                ..
            }
        ));
        assert!(chain.is_ambiguous(&v));
        let r = block_on(chain.read(b"/registry/secrets/x/y", &v)).expect("read");
        assert_eq!(
            (r.index, r.stale, r.name.as_deref()),
            (1, true, Some("a:b"))
        );
        assert_same_secret(r.plaintext.expose(), b"hello");
        // AES-GCM is authenticated: the overlap cannot yield a wrong plaintext.
        assert!(!r.unauthenticated && !r.unauthenticated_overlap);
        // A value only `a` matches is not ambiguous.
        let wa = Chain::from_providers(
            &[&ProviderConfig::AesGcm {
                keys: vec![key("a", 1)],
            }],
            &NoKms,
        )
        .expect("chain");
        let va = block_on(wa.write(b"/registry/secrets/x/y", b"hello")).expect("write");
        if !va.starts_with(b"k8s:enc:aesgcm:v1:a:b:") {
            assert!(!chain.is_ambiguous(&va));
            assert!(matches!(
                chain.identify(&va),
                Identified::Matched {
                    index: 0,
                    ambiguous: false,
                    ..
                }
            ));
        }
        assert!(!chain.is_ambiguous(b"plaintext"));
        assert!(!chain.is_ambiguous(b"k8s:enc:aesgcm:v1:zzz:xx"));
    }

    /// One key name in two aescbc providers: identical prefixes. A wrong aescbc key passes
    /// the padding check about once in 256 values and the read "succeeds" with garbage, so
    /// such reads must carry `unauthenticated_overlap`.
    #[test]
    fn aescbc_overlap_is_flagged_and_can_yield_garbage() {
        const K: &[u8] = b"/registry/secrets/x/y";
        let first = ProviderConfig::AesCbc {
            keys: vec![key("k", 1)],
        };
        let second = ProviderConfig::AesCbc {
            keys: vec![key("k", 2)],
        };
        let chain = Chain::from_providers(&[&first, &second], &NoKms).expect("chain");
        let writer = Chain::from_providers(&[&second], &NoKms).expect("chain");
        let mut fooled = false;
        // (255/256)^5000 ~ 3e-9: a false "success" through entry 0 shows up well before.
        for i in 0..5000u32 {
            let pt = format!("value {i}");
            let v = block_on(writer.write(K, pt.as_bytes())).expect("write");
            assert!(matches!(
                chain.identify(&v),
                Identified::Matched {
                    index: 0,
                    ambiguous: true,
                    ..
                }
            ));
            let r = block_on(chain.read(K, &v)).expect("read");
            assert!(r.unauthenticated && r.unauthenticated_overlap, "value {i}");
            if r.index == 0 {
                // Entry 0 holds the wrong key: its "plaintext" is garbage.
                assert!(r.plaintext.expose() != pt.as_bytes(), "value {i}");
                fooled = true;
                break;
            }
            assert_same_secret(r.plaintext.expose(), pt.as_bytes());
        }
        assert!(fooled, "a wrong aescbc key never passed the padding check");

        // Without an overlap an aescbc read is unauthenticated but not flagged.
        let single = Chain::from_providers(&[&second], &NoKms).expect("chain");
        let v = block_on(writer.write(K, b"x")).expect("write");
        assert!(!single.is_ambiguous(&v));
        let r = block_on(single.read(K, &v)).expect("read");
        assert!(r.unauthenticated && !r.unauthenticated_overlap);
    }

    #[test]
    fn salted_fingerprint_depends_on_salt_key_and_name() {
        let chain_of = |name: &str, byte: u8| {
            Chain::from_providers(
                &[&ProviderConfig::AesGcm {
                    keys: vec![key(name, byte)],
                }],
                &NoKms,
            )
            .expect("chain")
        };
        let c = chain_of("k1", 7);
        let a = c.writer_fingerprint_salted(b"salt-one-16bytes");
        assert!(a.starts_with("aesgcm:k1:"), "{a}");
        let digest = a.trim_start_matches("aesgcm:k1:");
        assert_eq!(digest.len(), 32);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable for one salt, different for another salt, key or name, and never the
        // unsalted digest.
        assert_eq!(
            a,
            chain_of("k1", 7).writer_fingerprint_salted(b"salt-one-16bytes")
        );
        assert_ne!(a, c.writer_fingerprint_salted(b"salt-two-16bytes"));
        assert_ne!(
            a,
            chain_of("k1", 8).writer_fingerprint_salted(b"salt-one-16bytes")
        );
        assert_ne!(
            digest,
            chain_of("k2", 7)
                .writer_fingerprint_salted(b"salt-one-16bytes")
                .trim_start_matches("aesgcm:k2:")
        );
        assert_ne!(a, c.writer_fingerprint());
        // Independent computation of the documented construction.
        let mut msg = SALTED_FINGERPRINT_LABEL.to_vec();
        for part in [&b"aesgcm"[..], b"k1", &[7u8; 32]] {
            msg.extend_from_slice(&(part.len() as u64).to_be_bytes());
            msg.extend_from_slice(part);
        }
        let tag = mac::hmac_sha256(b"salt-one-16bytes", &[&msg]);
        assert_eq!(digest, hex::encode(&tag[..16]));
        // Identity carries no key material.
        let id = Chain::from_providers(&[&ProviderConfig::Identity], &NoKms).expect("chain");
        assert_eq!(id.writer_fingerprint_salted(b"s"), "identity");
    }

    #[test]
    fn no_provider_versus_unknown_key() {
        let p = ProviderConfig::Secretbox {
            keys: vec![key("sb1", 1)],
        };
        let chain = Chain::from_providers(&[&p], &NoKms).expect("chain");
        let read = |v: &[u8]| block_on(chain.read(b"/registry/secrets/x/y", v));
        let e = read(b"k8s:enc:secretbox:v1:gone:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
            .expect_err("unknown key");
        assert_eq!(e.class, ErrorClass::UnknownKey);
        assert!(e.message.contains("gone") && e.message.contains("sb1"));
        let e = read(b"k8s:enc:aescbc:v1:key1:xxxxxxxxxxxxxxxxx").expect_err("no provider");
        assert_eq!(e.class, ErrorClass::NoProvider);
        let e = read(b"k8s:enc:future:v9:k:xxxx").expect_err("no provider");
        assert_eq!(e.class, ErrorClass::NoProvider);
        let e = read(b"k8s\x00plaintext").expect_err("no identity");
        assert_eq!(e.class, ErrorClass::NoProvider);
        assert_eq!(
            chain.identify(b"k8s:enc:future:v9:k:xxxx"),
            Identified::Unknown {
                provider: None,
                name: Some("k".into())
            }
        );
        assert_eq!(
            chain.identify(b"{}"),
            Identified::Plaintext {
                identity_index: None
            }
        );
    }
}
