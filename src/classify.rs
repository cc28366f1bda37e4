//! Judges one stored value against the EncryptionConfiguration (spec §4): which provider and
//! key wrote it and whether that is `current`, `stale`, `plaintext`, `unknown-key` or
//! `undecryptable` (or, with no config, just `plaintext`/`encrypted`). Never keeps plaintext.
//!
//! The rules, precisely (with a config; the chain is the one kube-apiserver builds for the
//! key's group/resource, bare identity when no rule matches):
//!
//! | value                                   | status          |
//! |-----------------------------------------|-----------------|
//! | plaintext, writer is identity           | `current`       |
//! | plaintext, writer encrypts              | `plaintext` (message: readable through a later identity, or unreadable by kube-apiserver when the chain has no identity) |
//! | prefix matches entry 0, not stale       | `current`       |
//! | prefix matches a later entry, or KMS v2 keyID / DEK type differs from the plugin's current state | `stale` (message: which entry, keyID) |
//! | prefix matches several entries (a key name reused, `a` vs `a:b`) | read even without `--verify`: the read decides (message warns when an unauthenticated aescbc read may have come from the wrong key) |
//! | `k8s:enc:` prefix no entry matches      | `unknown-key` (detail: error class) |
//! | `--verify`: the matching entries all fail | `undecryptable` (detail: error class) |
//!
//! `detail` is the contract field of issue 3: exactly the [`ErrorClass`] name for
//! `unknown-key`/`undecryptable` objects, otherwise the KMS v2 keyID where the value has one
//! (else null). The human sentence (why stale, which entry, the decryption error) is in
//! `message`. `provider` is null for a `k8s:enc:` prefix naming no provider kube-apiserver knows;
//! `provider_label` then carries the prefix's raw provider text (e.g. `xyz:v1`).
//!
//! Without a config: `plaintext` or `encrypted` (with the provider and key names read from
//! the prefix).
//!
//! Keys that are not API objects (no group/resource: `compact_rev_key`, `<prefix>health`, keys
//! outside the prefix) are reported with `group`/`resource` null. kube-apiserver never reads
//! them through a transformer, so a plaintext one is `current` (never a finding, with or without
//! a config); an encrypted one is judged against the bare identity chain (`unknown-key`), or is
//! `encrypted` without a config.
use crate::codec::chain::{Chain, Identified, ReadOutcome, Transformers};
use crate::codec::kmsv2::EncryptedObjectInfo;
use crate::codec::{DecryptError, ErrorClass, ProviderKind, ValueClass, classify_value};
use crate::resource::{GroupResource, KeyInfo, parse_key_under, storage_key_prefix};
use crate::source::RawKv;
use serde::Serialize;
use std::fmt::Write as _;

/// The status vocabulary of reports, `--fail-on` and the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Current,
    Stale,
    Plaintext,
    UnknownKey,
    Undecryptable,
    /// Only without a config: an encrypted value we cannot judge.
    Encrypted,
}

impl Status {
    /// Every status, in report order.
    pub const ALL: [Status; 6] = [
        Status::Current,
        Status::Stale,
        Status::Plaintext,
        Status::UnknownKey,
        Status::Undecryptable,
        Status::Encrypted,
    ];

    /// `--fail-on`'s default: everything kube-apiserver would not write as is today.
    pub const DEFAULT_FAIL_ON: [Status; 4] = [
        Status::Plaintext,
        Status::Stale,
        Status::UnknownKey,
        Status::Undecryptable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::Stale => "stale",
            Status::Plaintext => "plaintext",
            Status::UnknownKey => "unknown-key",
            Status::Undecryptable => "undecryptable",
            Status::Encrypted => "encrypted",
        }
    }
    /// Parse a `--fail-on` element.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Position in [`Status::ALL`] (for fixed-size counters).
    pub fn index(self) -> usize {
        match self {
            Status::Current => 0,
            Status::Stale => 1,
            Status::Plaintext => 2,
            Status::UnknownKey => 3,
            Status::Undecryptable => 4,
            Status::Encrypted => 5,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One judged object: everything a report line needs, nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectRecord {
    pub key: String,
    pub group: Option<String>,
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    /// `identity`, `aescbc`, `aesgcm`, `secretbox`, `kms`; null for a `k8s:enc:` prefix naming
    /// a provider kube-apiserver does not have (see `provider_label`).
    pub provider: Option<String>,
    /// Only when `provider` is null: the prefix's raw provider text after `k8s:enc:` (e.g.
    /// `xyz:v1`). Null otherwise.
    pub provider_label: Option<String>,
    /// Key name or KMS provider name; None for identity.
    pub key_name: Option<String>,
    pub status: Status,
    pub mod_revision: i64,
    pub size: u64,
    /// Contract (issue 3): the error class for undecryptable/unknown-key objects (exactly
    /// `auth-failed`, `truncated`, ...), else the KMS v2 keyID where present, else null.
    pub detail: Option<String>,
    /// The human sentence: why stale, which entry reads it, the decryption error, warnings.
    pub message: Option<String>,
    /// KMS v2 only: the EncryptedObject's keyID (also for undecryptable KMS v2 objects, whose
    /// `detail` is the error class).
    pub kms_key_id: Option<String>,
}

impl ObjectRecord {
    /// `secrets`, `deployments.apps`, or None for keys that are not API objects.
    pub fn resource_label(&self) -> Option<String> {
        let resource = self.resource.as_deref()?;
        Some(match self.group.as_deref() {
            None | Some("") => resource.to_string(),
            Some(g) => format!("{resource}.{g}"),
        })
    }
    /// `aescbc/key1`, `kms/vault`, `identity`.
    pub fn provider_key(&self) -> String {
        provider_key(self.provider_name(), self.key_name.as_deref())
    }
    /// The provider for aggregates (summary maps, breakdown, Prometheus labels): the report
    /// name, or `unknown` for an unrecognised provider (one bucket: bounded label cardinality).
    pub fn provider_name(&self) -> &str {
        self.provider.as_deref().unwrap_or(UNKNOWN_PROVIDER)
    }
    /// The provider for humans: the report name, or the raw label of an unrecognised one.
    pub fn provider_display(&self) -> String {
        match (&self.provider, &self.provider_label) {
            (Some(p), _) => p.clone(),
            (None, Some(l)) => format!("?{l}"),
            (None, None) => UNKNOWN_PROVIDER.to_string(),
        }
    }
    /// [`ObjectRecord::provider_key`] for humans: `?xyz:v1/name` for an unrecognised provider.
    pub fn provider_key_display(&self) -> String {
        provider_key(&self.provider_display(), self.key_name.as_deref())
    }
}

/// The aggregate bucket of unrecognised providers (never an object's `provider`).
pub const UNKNOWN_PROVIDER: &str = "unknown";

/// `provider/key_name`, or just `provider` without a key name (identity).
pub fn provider_key(provider: &str, key_name: Option<&str>) -> String {
    match key_name {
        Some(k) => format!("{provider}/{k}"),
        None => provider.to_string(),
    }
}

/// The judgement of a value, before it is joined with its key's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// None: a `k8s:enc:` prefix naming no known provider (`provider_label` says what).
    pub provider: Option<&'static str>,
    pub provider_label: Option<String>,
    pub key_name: Option<String>,
    pub status: Status,
    /// The contract `detail`: error class, or KMS v2 keyID (see the module doc).
    pub detail: Option<String>,
    /// The human sentence.
    pub message: Option<String>,
    pub kms_key_id: Option<String>,
}

impl Verdict {
    /// A verdict whose `detail` follows the contract: the error class for unknown-key and
    /// undecryptable, else the (non-empty) KMS v2 keyID.
    fn new(
        provider: Option<&'static str>,
        key_name: Option<String>,
        status: Status,
        class: Option<ErrorClass>,
        message: Option<String>,
        kms_key_id: Option<String>,
    ) -> Verdict {
        let detail = match (status, class) {
            (Status::UnknownKey | Status::Undecryptable, Some(c)) => Some(c.as_str().to_string()),
            _ => kms_key_id.clone().filter(|id| !id.is_empty()),
        };
        Verdict {
            provider,
            provider_label: None,
            key_name,
            status,
            detail,
            message,
            kms_key_id,
        }
    }
}

/// Classifies values with (or without) a config. Cheap to share across tasks.
pub struct Classifier {
    prefix: String,
    /// `prefix` normalised once ([`crate::resource::storage_key_prefix`]): keys are parsed
    /// under it for every value.
    storage_prefix: String,
    transformers: Option<Transformers>,
    verify: bool,
}

impl Classifier {
    /// `transformers` None = no config: only plaintext/encrypted. `verify` = decrypt every
    /// encrypted value (through the chain's read path) to prove it is readable.
    pub fn new(prefix: &str, transformers: Option<Transformers>, verify: bool) -> Self {
        Classifier {
            prefix: prefix.to_string(),
            storage_prefix: storage_key_prefix(prefix),
            transformers,
            // Without a config there are no keys to verify with: `verify` is then ignored
            // (see `verifies`).
            verify,
        }
    }
    /// Whether values are decrypted (and a config is present to do it with).
    pub fn verifies(&self) -> bool {
        self.verify && self.transformers.is_some()
    }
    /// Whether a config judges the values (else only plaintext/encrypted).
    pub fn has_config(&self) -> bool {
        self.transformers.is_some()
    }
    /// The storage prefix keys are parsed under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// What the key says: group/resource, namespace, name (via [`crate::resource::parse_key`]).
    pub fn key_info(&self, key: &[u8]) -> KeyInfo {
        parse_key_under(&self.storage_prefix, key)
    }
    /// The group/resource a key belongs to (via [`crate::resource::parse_key`]).
    pub fn group_resource(&self, key: &[u8]) -> Option<GroupResource> {
        self.key_info(key).gr
    }
    /// Judge one value.
    pub async fn classify(&self, kv: &RawKv) -> ObjectRecord {
        let info = self.key_info(&kv.key);
        self.classify_with(kv, info).await
    }
    /// Judge one value whose key has already been parsed (the engine parses once to filter).
    pub async fn classify_with(&self, kv: &RawKv, info: KeyInfo) -> ObjectRecord {
        let verdict = self.judge(info.gr.as_ref(), &kv.key, &kv.value).await;
        let (group, resource) = match info.gr {
            Some(gr) => (Some(gr.group), Some(gr.resource)),
            None => (None, None),
        };
        ObjectRecord {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            group,
            resource,
            namespace: info.namespace,
            name: info.name,
            provider: verdict.provider.map(str::to_string),
            provider_label: verdict.provider_label,
            key_name: verdict.key_name,
            status: verdict.status,
            mod_revision: kv.mod_revision,
            size: kv.value.len() as u64,
            detail: verdict.detail,
            message: verdict.message,
            kms_key_id: verdict.kms_key_id,
        }
    }
    /// The status of `value` stored under `etcd_key` for `gr`.
    pub async fn judge(
        &self,
        gr: Option<&GroupResource>,
        etcd_key: &[u8],
        value: &[u8],
    ) -> Verdict {
        match &self.transformers {
            None => judge_without_config(gr.is_some(), classify_value(value)),
            Some(t) => {
                let chain = t.chain_for(gr);
                judge_with_chain(chain, gr, etcd_key, value, self.verify).await
            }
        }
    }
}

/// No config: `plaintext` or `encrypted`, with what the prefix says.
pub fn judge_without_config(is_object: bool, class: ValueClass) -> Verdict {
    match class {
        ValueClass::Plaintext(_) => Verdict::new(
            Some(ProviderKind::Identity.report_name()),
            None,
            if is_object {
                Status::Plaintext
            } else {
                Status::Current
            },
            None,
            (!is_object).then(|| NOT_AN_OBJECT.to_string()),
            None,
        ),
        ValueClass::Encrypted(info) => {
            let kms_key_id = info.kms_v2.as_ref().map(|k| k.key_id.clone());
            let message = match (info.provider, &kms_key_id) {
                (None, _) => Some(format!(
                    "unrecognised provider {:?} in the k8s:enc: prefix",
                    info.provider_label
                )),
                (Some(_), Some(id)) => Some(format!("keyID {id}")),
                (Some(_), None) => None,
            };
            let mut v = Verdict::new(
                info.provider.map(|p| p.report_name()),
                info.name,
                Status::Encrypted,
                None,
                message,
                kms_key_id,
            );
            if info.provider.is_none() {
                v.provider_label = Some(info.provider_label);
            }
            v
        }
    }
}

const NOT_AN_OBJECT: &str = "not an API object: kube-apiserver never encrypts this key";

/// With a config: the chain's answer, and with `verify` a full read.
async fn judge_with_chain(
    chain: &Chain,
    gr: Option<&GroupResource>,
    etcd_key: &[u8],
    value: &[u8],
    verify: bool,
) -> Verdict {
    let (writer_kind, writer_name) = chain.writer();
    let writer = Writer {
        kind: writer_kind,
        name: writer_name,
    };
    let identified = chain.identify(value);
    match identified {
        Identified::Plaintext { identity_index } => judge_plaintext(&writer, gr, identity_index),
        Identified::Matched {
            index,
            provider,
            name,
            kms_v2,
            stale_hint,
            ambiguous,
        } => {
            // An ambiguous prefix (spec §8 trap 3) does not say which entry wrote the value:
            // only a read does, so such (rare) values are read even without --verify.
            if verify || ambiguous {
                let read = chain.read(etcd_key, value).await;
                judge_read(&writer, provider, name, kms_v2, read)
            } else if let Some(err) = kms_v2_malformed(provider, name.as_deref(), value) {
                // Nobody can read an EncryptedObject that fails upstream's validation; saying
                // so needs no key and no plugin call, so it is reported even without --verify.
                judge_read(&writer, provider, name, kms_v2, Err(err))
            } else {
                judge_matched(&writer, index, provider, name, kms_v2, stale_hint)
            }
        }
        Identified::Unknown { provider, name } => {
            // No entry's prefix matches, so a read decrypts nothing and contacts no plugin: it
            // only yields the error kube-apiserver would give (its class names the reason).
            let read = chain.read(etcd_key, value).await;
            match read {
                Err(e) => {
                    let mut v = judge_unknown(provider, name, &e);
                    if provider.is_none()
                        && let ValueClass::Encrypted(info) = classify_value(value)
                    {
                        v.provider_label = Some(info.provider_label);
                    }
                    v
                }
                // Cannot happen when identify and read agree; trust the read.
                Ok(outcome) => judge_read(&writer, outcome.provider, None, None, Ok(outcome)),
            }
        }
    }
}

/// For a KMS v2 value: the `malformed` error if its EncryptedObject does not parse or fails
/// upstream's validation (checked locally, no plugin involved).
fn kms_v2_malformed(
    provider: ProviderKind,
    name: Option<&str>,
    value: &[u8],
) -> Option<DecryptError> {
    if provider != ProviderKind::KmsV2 {
        return None;
    }
    let prefix_len = ProviderKind::KmsV2.prefix().len() + name.map_or(0, str::len) + 1;
    let payload = value.get(prefix_len..)?;
    crate::codec::kmsv2::parse_object(payload).err()
}

/// The write target of a chain, for messages.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    pub kind: ProviderKind,
    pub name: Option<&'a str>,
}

impl std::fmt::Display for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.report_name())?;
        if let Some(n) = self.name {
            write!(f, "/{n}")?;
        }
        Ok(())
    }
}

/// Plaintext: current only where the writer is identity.
pub fn judge_plaintext(
    writer: &Writer<'_>,
    gr: Option<&GroupResource>,
    identity_index: Option<usize>,
) -> Verdict {
    let (status, message) = if gr.is_none() {
        // Not an object: nothing reads it through a transformer.
        (Status::Current, Some(NOT_AN_OBJECT.to_string()))
    } else if writer.kind == ProviderKind::Identity {
        (Status::Current, None)
    } else {
        let what = gr.map(|g| g.to_string()).unwrap_or_default();
        let message = match identity_index {
            None => format!(
                "unreadable by kube-apiserver: no identity provider for {what}; the write provider is {writer}"
            ),
            Some(i) => format!(
                "stored unencrypted; readable through identity (provider entry {i}), the write provider is {writer}"
            ),
        };
        (Status::Plaintext, Some(message))
    };
    Verdict::new(
        Some(ProviderKind::Identity.report_name()),
        None,
        status,
        None,
        message,
        None,
    )
}

/// An entry's prefix matched (no decryption): `stale_hint` decides.
pub fn judge_matched(
    writer: &Writer<'_>,
    index: usize,
    provider: ProviderKind,
    name: Option<String>,
    kms_v2: Option<EncryptedObjectInfo>,
    stale_hint: bool,
) -> Verdict {
    let status = if stale_hint {
        Status::Stale
    } else {
        Status::Current
    };
    let message = describe(
        writer,
        status,
        index,
        provider,
        name.as_deref(),
        kms_v2.as_ref(),
    );
    Verdict::new(
        Some(provider.report_name()),
        name,
        status,
        None,
        message,
        kms_v2.map(|k| k.key_id),
    )
}

/// A full read through the chain (`--verify`).
pub fn judge_read(
    writer: &Writer<'_>,
    provider: ProviderKind,
    name: Option<String>,
    kms_v2: Option<EncryptedObjectInfo>,
    read: Result<ReadOutcome, DecryptError>,
) -> Verdict {
    match read {
        Ok(o) => {
            // The plaintext is dropped (zeroized) here: only the verdict survives.
            let status = if o.stale {
                Status::Stale
            } else {
                Status::Current
            };
            let mut message = describe(
                writer,
                status,
                o.index,
                o.provider,
                o.name.as_deref(),
                o.kms_v2.as_ref(),
            );
            if o.unauthenticated_overlap {
                let warning = overlap_warning(o.provider, o.name.as_deref());
                message = Some(match message {
                    Some(m) => format!("{m}; {warning}"),
                    None => warning,
                });
            }
            Verdict::new(
                Some(o.provider.report_name()),
                o.name,
                status,
                None,
                message,
                o.kms_v2.map(|k| k.key_id),
            )
        }
        Err(e) => {
            let kms_key_id = kms_v2.map(|k| k.key_id);
            let mut message = format!("{}: {}", e.class, e.message);
            if let Some(id) = kms_key_id.as_deref().filter(|id| !id.is_empty()) {
                let _ = write!(message, " (keyID {id})");
            }
            Verdict::new(
                Some(provider.report_name()),
                name,
                Status::Undecryptable,
                Some(e.class),
                Some(message),
                kms_key_id,
            )
        }
    }
}

/// A `k8s:enc:` prefix the chain cannot read.
pub fn judge_unknown(
    provider: Option<ProviderKind>,
    name: Option<String>,
    error: &DecryptError,
) -> Verdict {
    Verdict::new(
        provider.map(|p| p.report_name()),
        name,
        Status::UnknownKey,
        Some(error.class),
        Some(format!(
            "{}: {} (kube-apiserver cannot read it)",
            error.class, error.message
        )),
        None,
    )
}

/// The warning for a read with no MAC through an entry whose prefix another entry shares.
fn overlap_warning(provider: ProviderKind, name: Option<&str>) -> String {
    let key = name.map(|n| format!(" {n}")).unwrap_or_default();
    format!(
        "read through {} key{key} whose prefix overlaps another key's: the result may come from the wrong key; give keys unique names",
        provider.report_name()
    )
}

/// Why a readable value is stale (or, for KMS v2, its keyID when current).
fn describe(
    writer: &Writer<'_>,
    status: Status,
    index: usize,
    provider: ProviderKind,
    name: Option<&str>,
    kms_v2: Option<&EncryptedObjectInfo>,
) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = kms_v2 {
        parts.push(format!("keyID {}", k.key_id));
    }
    if status == Status::Stale {
        let entry = provider_key(provider.report_name(), name);
        if index != 0 {
            parts.push(format!(
                "readable through provider entry {index} ({entry}), not the write key {writer}"
            ));
        } else if let Some(k) = kms_v2 {
            if k.dek_source_type == "AES_GCM_KEY" {
                parts.push("legacy DEK source type AES_GCM_KEY".to_string());
            } else {
                parts.push(format!(
                    "keyID {} is not the KMS plugin's current key ID",
                    k.key_id
                ));
            }
        } else if provider == ProviderKind::KmsV1 {
            parts.push("KMS v1 value in the legacy AES-CBC format".to_string());
        } else {
            parts.push(format!("not as the write key {writer} would write it"));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;
    use crate::secret::SecretBytes;

    fn gr(s: &str) -> GroupResource {
        GroupResource::parse(s)
    }
    fn aescbc1() -> Writer<'static> {
        Writer {
            kind: ProviderKind::AesCbc,
            name: Some("key1"),
        }
    }
    fn identity() -> Writer<'static> {
        Writer {
            kind: ProviderKind::Identity,
            name: None,
        }
    }
    fn kms(key_id: &str, ty: &str) -> EncryptedObjectInfo {
        EncryptedObjectInfo {
            key_id: key_id.into(),
            dek_source_type: ty.into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn plaintext_is_current_only_where_identity_writes() {
        let s = gr("secrets");
        let v = judge_plaintext(&identity(), Some(&s), Some(0));
        assert_eq!(v.status, Status::Current);
        assert_eq!(v.provider, Some("identity"));
        assert_eq!(v.detail, None);

        let v = judge_plaintext(&aescbc1(), Some(&s), Some(1));
        assert_eq!(v.status, Status::Plaintext);
        assert_eq!(v.detail, None, "plaintext has no error class nor keyID");
        assert!(v.message.as_deref().unwrap().contains("provider entry 1"));

        let v = judge_plaintext(&aescbc1(), Some(&s), None);
        assert_eq!(v.status, Status::Plaintext);
        let d = v.message.unwrap();
        assert!(
            d.contains("unreadable by kube-apiserver: no identity provider"),
            "{d}"
        );
        assert!(d.contains("aescbc/key1"), "{d}");
    }

    #[test]
    fn non_objects_are_never_findings() {
        let v = judge_plaintext(&aescbc1(), None, None);
        assert_eq!(v.status, Status::Current);
        let v = judge_without_config(
            false,
            ValueClass::Plaintext(crate::codec::plaintext::PlaintextKind::Other),
        );
        assert_eq!(v.status, Status::Current);
        let v = judge_without_config(
            true,
            ValueClass::Plaintext(crate::codec::plaintext::PlaintextKind::Other),
        );
        assert_eq!(v.status, Status::Plaintext);
    }

    #[test]
    fn matched_entry_zero_is_current_later_is_stale() {
        let v = judge_matched(
            &aescbc1(),
            0,
            ProviderKind::AesCbc,
            Some("key1".into()),
            None,
            false,
        );
        assert_eq!(v.status, Status::Current);
        assert_eq!(v.key_name.as_deref(), Some("key1"));
        assert_eq!(v.detail, None);

        let v = judge_matched(
            &aescbc1(),
            1,
            ProviderKind::AesCbc,
            Some("key2".into()),
            None,
            true,
        );
        assert_eq!(v.status, Status::Stale);
        assert_eq!(v.detail, None);
        let d = v.message.unwrap();
        assert!(d.contains("provider entry 1 (aescbc/key2)"), "{d}");
        assert!(d.contains("write key aescbc/key1"), "{d}");
    }

    #[test]
    fn kms_v2_key_id_in_detail_and_staleness() {
        let w = Writer {
            kind: ProviderKind::KmsV2,
            name: Some("vault"),
        };
        let cur = kms("k1", "HKDF_SHA256_XNONCE_AES_GCM_SEED");
        let v = judge_matched(
            &w,
            0,
            ProviderKind::KmsV2,
            Some("vault".into()),
            Some(cur),
            false,
        );
        assert_eq!(v.status, Status::Current);
        assert_eq!(v.provider, Some("kms"));
        assert_eq!(v.kms_key_id.as_deref(), Some("k1"));
        assert_eq!(v.detail.as_deref(), Some("k1"), "detail is the bare keyID");
        assert_eq!(v.message.as_deref(), Some("keyID k1"));

        let old = kms("k0", "HKDF_SHA256_XNONCE_AES_GCM_SEED");
        let v = judge_matched(
            &w,
            0,
            ProviderKind::KmsV2,
            Some("vault".into()),
            Some(old),
            true,
        );
        assert_eq!(v.status, Status::Stale);
        assert_eq!(v.detail.as_deref(), Some("k0"));
        let d = v.message.unwrap();
        assert!(d.starts_with("keyID k0"), "{d}");
        assert!(d.contains("not the KMS plugin's current key ID"), "{d}");

        let legacy = kms("k1", "AES_GCM_KEY");
        let v = judge_matched(
            &w,
            0,
            ProviderKind::KmsV2,
            Some("vault".into()),
            Some(legacy),
            true,
        );
        assert!(v.message.unwrap().contains("AES_GCM_KEY"));
    }

    #[test]
    fn unknown_prefix_names_the_error_class() {
        let e = DecryptError::new(ErrorClass::UnknownKey, "no aescbc key named key9");
        let v = judge_unknown(Some(ProviderKind::AesCbc), Some("key9".into()), &e);
        assert_eq!(v.status, Status::UnknownKey);
        assert_eq!(v.provider, Some("aescbc"));
        assert_eq!(v.detail.as_deref(), Some("unknown-key"));
        assert!(v.message.unwrap().starts_with("unknown-key: "));
        let e = DecryptError::new(ErrorClass::NoProvider, "no matching prefix found");
        let v = judge_unknown(None, None, &e);
        assert_eq!(v.provider, None);
        assert_eq!(v.detail.as_deref(), Some("no-provider"));
        assert!(v.message.unwrap().starts_with("no-provider: "));
    }

    #[test]
    fn verify_outcomes() {
        let ok = ReadOutcome {
            plaintext: SecretBytes::from_slice(b"x"),
            stale: false,
            index: 0,
            provider: ProviderKind::AesGcm,
            name: Some("k".into()),
            kms_v2: None,
            unauthenticated: false,
            unauthenticated_overlap: false,
        };
        let w = Writer {
            kind: ProviderKind::AesGcm,
            name: Some("k"),
        };
        let v = judge_read(&w, ProviderKind::AesGcm, Some("k".into()), None, Ok(ok));
        assert_eq!(v.status, Status::Current);

        let stale = ReadOutcome {
            plaintext: SecretBytes::from_slice(b"x"),
            stale: true,
            index: 2,
            provider: ProviderKind::Secretbox,
            name: Some("old".into()),
            kms_v2: None,
            unauthenticated: false,
            unauthenticated_overlap: false,
        };
        let v = judge_read(&w, ProviderKind::AesGcm, Some("k".into()), None, Ok(stale));
        assert_eq!(v.status, Status::Stale);
        assert_eq!(v.provider, Some("secretbox"));
        assert_eq!(v.key_name.as_deref(), Some("old"));

        let err = DecryptError::new(ErrorClass::AuthFailed, "tag mismatch");
        let v = judge_read(&w, ProviderKind::AesGcm, Some("k".into()), None, Err(err));
        assert_eq!(v.status, Status::Undecryptable);
        assert_eq!(v.detail.as_deref(), Some("auth-failed"));
        assert_eq!(v.message.as_deref(), Some("auth-failed: tag mismatch"));

        // KMS v2: the class stays the detail; the keyID is in kms_key_id and the message.
        let err = DecryptError::new(ErrorClass::KmsDecryptFailed, "plugin said no");
        let v = judge_read(
            &w,
            ProviderKind::KmsV2,
            Some("vault".into()),
            Some(kms("k7", "HKDF_SHA256_XNONCE_AES_GCM_SEED")),
            Err(err),
        );
        assert_eq!(v.status, Status::Undecryptable);
        assert_eq!(v.detail.as_deref(), Some("kms-decrypt-failed"));
        assert_eq!(v.kms_key_id.as_deref(), Some("k7"));
        assert!(v.message.unwrap().ends_with("(keyID k7)"));
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::ALL[s.index()], s);
        }
        assert_eq!(Status::parse("bogus"), None);
    }

    #[test]
    fn unrecognised_provider_has_null_provider_and_a_label() {
        let v = judge_without_config(true, classify_value(b"k8s:enc:xyz:v1:name:payload"));
        assert_eq!(v.status, Status::Encrypted);
        assert_eq!(v.provider, None);
        assert_eq!(v.provider_label.as_deref(), Some("xyz:v1"));
        assert_eq!(v.detail, None);
        // A known provider carries no label.
        let v = judge_without_config(true, classify_value(b"k8s:enc:aescbc:v1:k:payload"));
        assert_eq!(v.provider, Some("aescbc"));
        assert_eq!(v.provider_label, None);

        let chain = Chain::from_providers(&[&ProviderConfig::Identity], &NoKms).expect("chain");
        let s = gr("secrets");
        let v = block_on(judge_with_chain(
            &chain,
            Some(&s),
            b"/registry/secrets/default/a",
            b"k8s:enc:xyz:v1:name:payload",
            false,
        ));
        assert_eq!(v.status, Status::UnknownKey);
        assert_eq!(v.provider, None);
        assert_eq!(v.provider_label.as_deref(), Some("xyz:v1"));
        assert_eq!(v.detail.as_deref(), Some("no-provider"));
        assert!(v.message.is_some());
    }

    struct NoKms;
    impl crate::kms::KmsConnector for NoKms {
        fn connect(
            &self,
            cfg: &crate::config::KmsConfig,
        ) -> Result<std::sync::Arc<dyn crate::kms::KmsService>, crate::kms::KmsError> {
            Err(crate::kms::KmsError::Unreachable {
                name: cfg.name.clone(),
                endpoint: cfg.endpoint.clone(),
                message: "no KMS in unit tests".into(),
            })
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn aescbc(name: &str, byte: u8) -> ProviderConfig {
        ProviderConfig::AesCbc {
            keys: vec![crate::config::NamedKey {
                name: name.into(),
                secret: SecretBytes::new(vec![byte; 32]),
            }],
        }
    }

    /// Spec §8 trap 3: one key name in two aescbc providers. Without --verify the prefix
    /// alone would call every value current (entry 0's prefix); the read decides instead, and
    /// the message warns that an unauthenticated read through an overlapping prefix may be
    /// from the wrong key.
    #[test]
    fn ambiguous_prefixes_are_read_even_without_verify() {
        const K: &[u8] = b"/registry/secrets/default/a";
        let (first, second) = (aescbc("k", 1), aescbc("k", 2));
        let chain = Chain::from_providers(&[&first, &second], &NoKms).expect("chain");
        let only_first = Chain::from_providers(&[&first], &NoKms).expect("chain");
        let old_writer = Chain::from_providers(&[&second], &NoKms).expect("chain");
        let new_writer = Chain::from_providers(&[&first], &NoKms).expect("chain");
        let s = gr("secrets");

        // Written by the second (old) key: a value key 1 rejects (255/256 on the first try;
        // one the wrong key happens to "decrypt" would be read as current, as upstream does).
        let mut old = None;
        for i in 0..64u32 {
            let v = block_on(old_writer.write(K, format!("v{i}").as_bytes())).expect("write");
            if block_on(only_first.read(K, &v)).is_err() {
                old = Some(v);
                break;
            }
        }
        let old = old.expect("key 1 rejects some value key 2 wrote");
        let v = block_on(judge_with_chain(&chain, Some(&s), K, &old, false));
        assert_eq!(v.status, Status::Stale, "{:?}", v.message);
        assert_eq!(v.detail, None);
        let m = v.message.unwrap();
        assert!(m.contains("provider entry 1"), "{m}");
        assert!(
            m.contains("read through aescbc key k whose prefix overlaps another key's"),
            "{m}"
        );

        // Written by the write key: current, with the same warning.
        let cur = block_on(new_writer.write(K, b"fresh")).expect("write");
        let v = block_on(judge_with_chain(&chain, Some(&s), K, &cur, false));
        assert_eq!(v.status, Status::Current);
        assert!(v.message.unwrap().contains("give keys unique names"));

        // Unambiguous values are still judged from the prefix, with no warning.
        let single = Chain::from_providers(&[&first, &aescbc("other", 3)], &NoKms).expect("chain");
        let v = block_on(judge_with_chain(&single, Some(&s), K, &cur, false));
        assert_eq!((v.status, v.message), (Status::Current, None));
        // Garbage under the overlapping prefix: every entry fails, so it is a finding.
        let v = block_on(judge_with_chain(
            &chain,
            Some(&s),
            K,
            b"k8s:enc:aescbc:v1:k:short",
            false,
        ));
        assert_eq!(v.status, Status::Undecryptable);
        assert!(
            ["truncated", "bad-padding"].contains(&v.detail.as_deref().unwrap_or_default()),
            "{:?}",
            v.detail
        );
    }
}
