//! The at-rest codec: what kube-apiserver's value transformers do, byte for byte.
//!
//! It owns (a) classification of a raw etcd value without key material ([`classify_value`],
//! [`plaintext`]), (b) one module per provider behind the small [`Cipher`] trait, and (c) the
//! per-resource prefix chain ([`chain::Chain`]) that reproduces upstream's read order, write
//! target and staleness rule (spec §4). Nothing here prints secrets: errors carry an
//! [`ErrorClass`] and a message that never includes key material or plaintext.

pub mod aescbc;
pub mod aesgcm;
pub mod cache;
pub mod chain;
pub mod kmsv1;
pub mod kmsv2;
pub mod mac;
pub mod plaintext;
pub mod secretbox;

use crate::secret::SecretBytes;
use serde::Serialize;
use std::fmt;

/// The reserved prefix of every encrypted value.
pub const ENC_PREFIX: &[u8] = b"k8s:enc:";

/// Provider types as kube-apiserver names them. KMS v1 and v2 are distinct formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    Identity,
    AesCbc,
    AesGcm,
    Secretbox,
    KmsV1,
    KmsV2,
}

impl ProviderKind {
    /// The name used in reports (`provider` field of `atrest.scan/v1`): KMS v1 and v2 are both `kms`.
    pub fn report_name(self) -> &'static str {
        match self {
            ProviderKind::Identity => "identity",
            ProviderKind::AesCbc => "aescbc",
            ProviderKind::AesGcm => "aesgcm",
            ProviderKind::Secretbox => "secretbox",
            ProviderKind::KmsV1 | ProviderKind::KmsV2 => "kms",
        }
    }
    /// The provider part of the value prefix, e.g. `k8s:enc:aescbc:v1:` or `k8s:enc:kms:v2:`.
    /// Identity has the empty prefix.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            ProviderKind::Identity => b"",
            ProviderKind::AesCbc => b"k8s:enc:aescbc:v1:",
            ProviderKind::AesGcm => b"k8s:enc:aesgcm:v1:",
            ProviderKind::Secretbox => b"k8s:enc:secretbox:v1:",
            ProviderKind::KmsV1 => b"k8s:enc:kms:v1:",
            ProviderKind::KmsV2 => b"k8s:enc:kms:v2:",
        }
    }
    /// All encrypting providers, for prefix detection.
    pub const ENCRYPTING: [ProviderKind; 5] = [
        ProviderKind::AesCbc,
        ProviderKind::AesGcm,
        ProviderKind::Secretbox,
        ProviderKind::KmsV1,
        ProviderKind::KmsV2,
    ];
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::KmsV1 => "kms/v1",
            ProviderKind::KmsV2 => "kms/v2",
            other => other.report_name(),
        })
    }
}

/// Why a value could not be read. The names are the error classes of the vectors' README and
/// appear verbatim in reports (`detail`) and in `atrest decode` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// No configured provider's prefix matches (identity refuses `k8s:enc:` data).
    NoProvider,
    /// The provider matches, but the key name (or KMS provider name) is not configured.
    UnknownKey,
    /// Shorter than the fixed header (IV, nonce, nonce+tag, DEK length), or CBC body not whole blocks.
    Truncated,
    /// aescbc PKCS#7 padding rejected.
    BadPadding,
    /// GCM or Poly1305 tag does not verify: tampering, wrong key, wrong AAD (moved value).
    AuthFailed,
    /// The KMS plugin's Decrypt failed (or the plugin could not be reached for this value).
    KmsDecryptFailed,
    /// KMS v2 EncryptedObject does not parse or fails validation.
    Malformed,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NoProvider => "no-provider",
            ErrorClass::UnknownKey => "unknown-key",
            ErrorClass::Truncated => "truncated",
            ErrorClass::BadPadding => "bad-padding",
            ErrorClass::AuthFailed => "auth-failed",
            ErrorClass::KmsDecryptFailed => "kms-decrypt-failed",
            ErrorClass::Malformed => "malformed",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value could not be decrypted. `message` never contains key material or plaintext.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct DecryptError {
    pub class: ErrorClass,
    pub message: String,
}

impl DecryptError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        DecryptError {
            class,
            message: message.into(),
        }
    }
}

/// Producing a value failed (a bad key, a KMS plugin refusing, a self-check failing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncryptError(pub String);

/// A successful decryption.
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: SecretBytes,
    /// The provider itself says the value is stale (KMS v1 CBC fallback, KMS v2 keyID/type
    /// differing from the current write state). Chain position staleness is added by the chain.
    pub inner_stale: bool,
}

/// One provider's payload format (everything after the full prefix), for one key.
///
/// Implemented synchronously by the local-key providers; the KMS providers resolve their DEK or
/// seed through the plugin first (async, cached) and then use the same AEAD code.
pub trait Cipher: Send + Sync {
    /// Decrypt `payload` (the bytes after `k8s:enc:<provider>:v1:<name>:`), `aad` = the full etcd key.
    fn decrypt(&self, payload: &[u8], aad: &[u8]) -> Result<Decrypted, DecryptError>;
    /// Encrypt `plaintext` into a payload (without the prefix), `aad` = the full etcd key.
    fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError>;
}

/// Fill `buf` from the OS CSPRNG. Failure of the OS RNG is unrecoverable for an encryptor.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), EncryptError> {
    getrandom::fill(buf)
        .map_err(|e| EncryptError(format!("OS random number generator failed: {e}")))
}

/// What a raw value is, read without any key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueClass {
    Plaintext(plaintext::PlaintextKind),
    Encrypted(EncryptedInfo),
}

/// The visible parts of an encrypted value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedInfo {
    /// None when the value starts with `k8s:enc:` but names a provider kube-apiserver does not
    /// have (a typo, a future provider, garbage): still encrypted, never plaintext.
    pub provider: Option<ProviderKind>,
    /// The provider as written in the prefix, for display: `aescbc`, `kms/v2`, or for an
    /// unrecognized provider the raw text after `k8s:enc:` (e.g. `xyz:v1`).
    pub provider_label: String,
    /// Key name (aescbc/aesgcm/secretbox) or KMS provider name. Without a config this is a
    /// heuristic (text up to the next `:`); with a config it is the configured name that matched.
    pub name: Option<String>,
    /// KMS v2 only: the EncryptedObject's visible fields (never the DEK/seed). None when the
    /// heuristic split does not yield a parseable EncryptedObject.
    pub kms_v2: Option<kmsv2::EncryptedObjectInfo>,
}

/// Classify a value without a config: plaintext kinds, or `k8s:enc:` with a heuristic name.
/// A `k8s:enc:` value with an unrecognized provider is `Encrypted` with `provider: None`
/// (never reported as plaintext).
pub fn classify_value(value: &[u8]) -> ValueClass {
    if !value.starts_with(ENC_PREFIX) {
        return ValueClass::Plaintext(plaintext::classify_plaintext(value));
    }
    ValueClass::Encrypted(classify_encrypted(value))
}

/// The heuristic reading of a `k8s:enc:` value's prefix (display only: matching against a
/// config never splits on `:`, see [`chain::Chain::identify`]).
pub fn classify_encrypted(value: &[u8]) -> EncryptedInfo {
    for kind in ProviderKind::ENCRYPTING {
        if let Some(rest) = value.strip_prefix(kind.prefix()) {
            let (name, payload) = split_name(rest);
            let kms_v2 = match (kind, payload) {
                (ProviderKind::KmsV2, Some(p)) => kmsv2::parse_info(p),
                _ => None,
            };
            return EncryptedInfo {
                provider: Some(kind),
                provider_label: kind.to_string(),
                name,
                kms_v2,
            };
        }
    }
    // Unknown provider: `k8s:enc:<provider>[:<vN>]:<name>:...`.
    let rest = value.get(ENC_PREFIX.len()..).unwrap_or_default();
    let (first, after) = split_name(rest);
    let mut label = first.unwrap_or_default();
    let mut after = after.unwrap_or_default();
    if let (Some(ver), Some(tail)) = split_name(after) {
        let is_version =
            ver.len() >= 2 && ver.starts_with('v') && ver[1..].bytes().all(|b| b.is_ascii_digit());
        if is_version {
            label = format!("{label}:{ver}");
            after = tail;
        }
    }
    let (name, _) = split_name(after);
    EncryptedInfo {
        provider: None,
        provider_label: label,
        name,
        kms_v2: None,
    }
}

/// Split at the first `:`: (text before it, bytes after it). Without a `:` the name is None.
fn split_name(rest: &[u8]) -> (Option<String>, Option<&[u8]>) {
    match rest.iter().position(|&b| b == b':') {
        Some(i) => (
            Some(String::from_utf8_lossy(&rest[..i]).into_owned()),
            rest.get(i + 1..),
        ),
        None => (None, None),
    }
}

/// Test helpers shared by the codec's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use sha2::{Digest, Sha256};

    /// Assert two secrets (plaintexts, keys) are equal; a failure names only their lengths
    /// and SHA-256 digests, never the bytes.
    #[track_caller]
    pub fn assert_same_secret(got: &[u8], want: &[u8]) {
        if got != want {
            panic!(
                "secrets differ: got {} bytes (sha256 {}), want {} bytes (sha256 {})",
                got.len(),
                hex::encode(Sha256::digest(got)),
                want.len(),
                hex::encode(Sha256::digest(want))
            );
        }
    }

    /// Fails to compile if a crypto crate loses its `zeroize` feature: key schedules and
    /// hash states holding key material must wipe themselves on drop. (crypto_secretbox wipes
    /// its key unconditionally; SecretBytes wraps `Zeroizing`.)
    #[test]
    fn key_holding_types_zeroize_on_drop() {
        use aes::{Aes128, Aes192, Aes256};
        use aes_gcm::AesGcm;
        use aes_gcm::aead::consts::U12;
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<AesGcm<Aes128, U12>>();
        wipes_on_drop::<AesGcm<Aes192, U12>>();
        wipes_on_drop::<AesGcm<Aes256, U12>>();
        wipes_on_drop::<cbc::Decryptor<Aes256>>();
        wipes_on_drop::<cbc::Encryptor<Aes128>>();
        wipes_on_drop::<sha2::Sha256>();
    }

    #[test]
    fn failure_message_hides_the_bytes() {
        let r = std::panic::catch_unwind(|| assert_same_secret(b"hunter2-secret", b"other"));
        let err = r.expect_err("must fail");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("14 bytes") && msg.contains("5 bytes"), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains("other"));
        assert_same_secret(b"same", b"same");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_prefixes_heuristically() {
        let ValueClass::Encrypted(e) =
            classify_value(b"k8s:enc:aescbc:v1:key:with:colons:\x00\x01")
        else {
            panic!("encrypted")
        };
        assert_eq!(e.provider, Some(ProviderKind::AesCbc));
        assert_eq!(e.name.as_deref(), Some("key"));
        let ValueClass::Encrypted(e) = classify_value(b"k8s:enc:xyz:v1:name:payload") else {
            panic!("encrypted")
        };
        assert_eq!((e.provider, e.provider_label.as_str()), (None, "xyz:v1"));
        assert_eq!(e.name.as_deref(), Some("name"));
        let ValueClass::Encrypted(e) = classify_value(b"k8s:enc:") else {
            panic!("bare prefix is still encrypted")
        };
        assert_eq!((e.provider, e.name), (None, None));
        // KMS v2 with an unparseable object: fields None, never a panic.
        let ValueClass::Encrypted(e) = classify_value(b"k8s:enc:kms:v2:p:\xff\xff") else {
            panic!("encrypted")
        };
        assert_eq!(e.provider, Some(ProviderKind::KmsV2));
        assert!(e.kms_v2.is_none());
        assert!(matches!(
            classify_value(b"compact_rev_key"),
            ValueClass::Plaintext(plaintext::PlaintextKind::Other)
        ));
    }
}
