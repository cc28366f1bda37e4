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
//! | plaintext, writer encrypts              | `plaintext` (detail: readable through a later identity, or unreadable by kube-apiserver when the chain has no identity) |
//! | prefix matches entry 0, not stale       | `current`       |
//! | prefix matches a later entry, or KMS v2 keyID / DEK type differs from the plugin's current state | `stale` (detail: which entry, keyID) |
//! | `k8s:enc:` prefix no entry matches      | `unknown-key` (detail: error class and message) |
//! | `--verify`: the matching entries all fail | `undecryptable` (detail: error class and message) |
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
use crate::codec::{DecryptError, ProviderKind, ValueClass, classify_value};
use crate::resource::{GroupResource, KeyInfo, parse_key};
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
    /// `identity`, `aescbc`, `aesgcm`, `secretbox`, `kms`, or `unknown` for an unrecognised provider.
    pub provider: String,
    /// Key name or KMS provider name; None for identity.
    pub key_name: Option<String>,
    pub status: Status,
    pub mod_revision: i64,
    pub size: u64,
    /// The error class (undecryptable/unknown-key), the KMS v2 keyID, or why it is stale.
    pub detail: Option<String>,
    /// KMS v2 only: the EncryptedObject's keyID (also named in `detail`).
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
        provider_key(&self.provider, self.key_name.as_deref())
    }
}

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
    pub provider: &'static str,
    pub key_name: Option<String>,
    pub status: Status,
    pub detail: Option<String>,
    pub kms_key_id: Option<String>,
}

/// Classifies values with (or without) a config. Cheap to share across tasks.
pub struct Classifier {
    prefix: String,
    transformers: Option<Transformers>,
    verify: bool,
}

impl Classifier {
    /// `transformers` None = no config: only plaintext/encrypted. `verify` = decrypt every
    /// encrypted value (through the chain's read path) to prove it is readable.
    pub fn new(prefix: &str, transformers: Option<Transformers>, verify: bool) -> Self {
        Classifier {
            prefix: prefix.to_string(),
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
        parse_key(&self.prefix, key)
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
            provider: verdict.provider.to_string(),
            key_name: verdict.key_name,
            status: verdict.status,
            mod_revision: kv.mod_revision,
            size: kv.value.len() as u64,
            detail: verdict.detail,
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
        ValueClass::Plaintext(_) => Verdict {
            provider: ProviderKind::Identity.report_name(),
            key_name: None,
            status: if is_object {
                Status::Plaintext
            } else {
                Status::Current
            },
            detail: (!is_object).then(|| NOT_AN_OBJECT.to_string()),
            kms_key_id: None,
        },
        ValueClass::Encrypted(info) => {
            let kms_key_id = info.kms_v2.as_ref().map(|k| k.key_id.clone());
            let detail = match (info.provider, &kms_key_id) {
                (None, _) => Some(format!(
                    "unrecognised provider {:?} in the k8s:enc: prefix",
                    info.provider_label
                )),
                (Some(_), Some(id)) => Some(format!("keyID {id}")),
                (Some(_), None) => None,
            };
            Verdict {
                provider: info.provider.map(|p| p.report_name()).unwrap_or("unknown"),
                key_name: info.name,
                status: Status::Encrypted,
                detail,
                kms_key_id,
            }
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
            ..
        } => {
            if verify {
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
                Err(e) => judge_unknown(provider, name, &e),
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
    let (status, detail) = if gr.is_none() {
        // Not an object: nothing reads it through a transformer.
        (Status::Current, Some(NOT_AN_OBJECT.to_string()))
    } else if writer.kind == ProviderKind::Identity {
        (Status::Current, None)
    } else {
        let what = gr.map(|g| g.to_string()).unwrap_or_default();
        let detail = match identity_index {
            None => format!(
                "unreadable by kube-apiserver: no identity provider for {what}; the write provider is {writer}"
            ),
            Some(i) => format!(
                "stored unencrypted; readable through identity (provider entry {i}), the write provider is {writer}"
            ),
        };
        (Status::Plaintext, Some(detail))
    };
    Verdict {
        provider: ProviderKind::Identity.report_name(),
        key_name: None,
        status,
        detail,
        kms_key_id: None,
    }
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
    let detail = describe(
        writer,
        status,
        index,
        provider,
        name.as_deref(),
        kms_v2.as_ref(),
    );
    Verdict {
        provider: provider.report_name(),
        key_name: name,
        status,
        detail,
        kms_key_id: kms_v2.map(|k| k.key_id),
    }
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
            let detail = describe(
                writer,
                status,
                o.index,
                o.provider,
                o.name.as_deref(),
                o.kms_v2.as_ref(),
            );
            Verdict {
                provider: o.provider.report_name(),
                key_name: o.name,
                status,
                detail,
                kms_key_id: o.kms_v2.map(|k| k.key_id),
            }
        }
        Err(e) => {
            let kms_key_id = kms_v2.map(|k| k.key_id);
            let mut detail = format!("{}: {}", e.class, e.message);
            if let Some(id) = kms_key_id.as_deref().filter(|id| !id.is_empty()) {
                let _ = write!(detail, " (keyID {id})");
            }
            Verdict {
                provider: provider.report_name(),
                key_name: name,
                status: Status::Undecryptable,
                detail: Some(detail),
                kms_key_id,
            }
        }
    }
}

/// A `k8s:enc:` prefix the chain cannot read.
pub fn judge_unknown(
    provider: Option<ProviderKind>,
    name: Option<String>,
    error: &DecryptError,
) -> Verdict {
    Verdict {
        provider: provider.map(|p| p.report_name()).unwrap_or("unknown"),
        key_name: name,
        status: Status::UnknownKey,
        detail: Some(format!(
            "{}: {} (kube-apiserver cannot read it)",
            error.class, error.message
        )),
        kms_key_id: None,
    }
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
    use crate::codec::ErrorClass;
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
        assert_eq!(v.provider, "identity");
        assert_eq!(v.detail, None);

        let v = judge_plaintext(&aescbc1(), Some(&s), Some(1));
        assert_eq!(v.status, Status::Plaintext);
        assert!(v.detail.as_deref().unwrap().contains("provider entry 1"));

        let v = judge_plaintext(&aescbc1(), Some(&s), None);
        assert_eq!(v.status, Status::Plaintext);
        let d = v.detail.unwrap();
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
        let d = v.detail.unwrap();
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
        assert_eq!(v.provider, "kms");
        assert_eq!(v.kms_key_id.as_deref(), Some("k1"));
        assert_eq!(v.detail.as_deref(), Some("keyID k1"));

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
        let d = v.detail.unwrap();
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
        assert!(v.detail.unwrap().contains("AES_GCM_KEY"));
    }

    #[test]
    fn unknown_prefix_names_the_error_class() {
        let e = DecryptError::new(ErrorClass::UnknownKey, "no aescbc key named key9");
        let v = judge_unknown(Some(ProviderKind::AesCbc), Some("key9".into()), &e);
        assert_eq!(v.status, Status::UnknownKey);
        assert_eq!(v.provider, "aescbc");
        assert!(v.detail.unwrap().starts_with("unknown-key: "));
        let e = DecryptError::new(ErrorClass::NoProvider, "no matching prefix found");
        let v = judge_unknown(None, None, &e);
        assert_eq!(v.provider, "unknown");
        assert!(v.detail.unwrap().starts_with("no-provider: "));
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
        assert_eq!(v.provider, "secretbox");
        assert_eq!(v.key_name.as_deref(), Some("old"));

        let err = DecryptError::new(ErrorClass::AuthFailed, "tag mismatch");
        let v = judge_read(&w, ProviderKind::AesGcm, Some("k".into()), None, Err(err));
        assert_eq!(v.status, Status::Undecryptable);
        assert_eq!(v.detail.as_deref(), Some("auth-failed: tag mismatch"));
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::ALL[s.index()], s);
        }
        assert_eq!(Status::parse("bogus"), None);
    }
}
