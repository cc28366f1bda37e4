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

use super::aescbc::AesCbcCipher;
use super::aesgcm::AesGcmCipher;
use super::kmsv1::KmsV1;
use super::kmsv2::{self, KmsV2};
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

/// Domain-separation label of [`Chain::writer_fingerprint`]'s key digest.
const FINGERPRINT_LABEL: &[u8] = b"atrest writer-fingerprint v1\0";

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

/// A digest of the key that identifies it without revealing anything usable: SHA-256 over a
/// domain-separation label, the provider, and the key bytes; 128 bits of it in hex.
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

enum Entry {
    Identity,
    Local {
        kind: ProviderKind,
        name: String,
        prefix: Vec<u8>,
        cipher: Box<dyn Cipher>,
        fingerprint: String,
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

    /// Classify `value` against this chain without decrypting.
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
        for (index, e) in self.entries.iter().enumerate() {
            let outcome = |plaintext, inner_stale: bool, kms_v2| ReadOutcome {
                plaintext,
                stale: inner_stale || index != 0,
                index,
                provider: e.kind(),
                name: e.name().map(str::to_string),
                kms_v2,
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

    /// A stable fingerprint of the write target (provider, key name, and a keyed hash of the key
    /// material that reveals nothing about it), for the rotate journal.
    ///
    /// `identity`, `aesgcm:<name>:<digest>`, `kms-v1:<name>`, `kms-v2:<name>:<keyID>` (the
    /// keyID is the write state's, or Status's after [`Transformers::prepare_kms`];
    /// `unknown-key-id` before either).
    pub fn writer_fingerprint(&self) -> String {
        match self.entries.first() {
            None | Some(Entry::Identity) => "identity".to_string(),
            Some(Entry::Local {
                kind,
                name,
                fingerprint,
                ..
            }) => format!("{}:{name}:{fingerprint}", kind.report_name()),
            Some(Entry::KmsV1 { kms, .. }) => format!("kms-v1:{}", kms.name()),
            Some(Entry::KmsV2 { kms, .. }) => format!(
                "kms-v2:{}:{}",
                kms.name(),
                kms.write_key_id()
                    .unwrap_or_else(|| "unknown-key-id".into())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // identify picks the first prefix match (a hint), read finds the right key.
        assert!(matches!(
            chain.identify(&v),
            Identified::Matched { index: 0, .. }
        ));
        let r = block_on(chain.read(b"/registry/secrets/x/y", &v)).expect("read");
        assert_eq!(
            (r.index, r.stale, r.name.as_deref()),
            (1, true, Some("a:b"))
        );
        assert_eq!(r.plaintext.expose(), b"hello");
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
