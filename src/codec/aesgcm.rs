//! aesgcm provider (spec §3.2): `nonce(12) || ciphertext || tag(16)`, AAD = the full etcd key.
//!
//! [`GcmKey`] is also the AEAD under the KMS v1 DEK and the KMS v2 DEK / HKDF-derived key, so
//! every GCM in the crate reports errors the same way: shorter than the nonce is `truncated`,
//! anything else that does not open (including a cut tag) is `auth-failed`, as upstream does.

use super::{Cipher, DecryptError, Decrypted, EncryptError, ErrorClass, random_bytes};
use crate::secret::SecretBytes;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, Nonce};

/// Go's standard GCM nonce size ("all data in etcd will be broken if this ever changes").
pub const NONCE_LEN: usize = 12;
/// GCM tag size (`aead.Overhead()`).
pub const TAG_LEN: usize = 16;

/// An AES-GCM key of any AES size (Go's `aes.NewCipher` picks the size from the key length).
/// The key schedules zeroize on drop (aes/aes-gcm `zeroize` features).
pub enum GcmKey {
    A128(AesGcm<Aes128, U12>),
    A192(AesGcm<Aes192, U12>),
    A256(AesGcm<Aes256, U12>),
}

impl GcmKey {
    /// None unless `key` is 16, 24 or 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        Some(match key.len() {
            16 => GcmKey::A128(AesGcm::new_from_slice(key).ok()?),
            24 => GcmKey::A192(AesGcm::new_from_slice(key).ok()?),
            32 => GcmKey::A256(AesGcm::new_from_slice(key).ok()?),
            _ => return None,
        })
    }

    /// Open `nonce || ct || tag` with `aad`. `what` names the layer in messages.
    pub fn open(&self, data: &[u8], aad: &[u8], what: &str) -> Result<SecretBytes, DecryptError> {
        let Some((nonce, ct)) = data.split_at_checked(NONCE_LEN) else {
            return Err(DecryptError::new(
                ErrorClass::Truncated,
                format!(
                    "{what}: {} bytes is shorter than the {NONCE_LEN}-byte GCM nonce",
                    data.len()
                ),
            ));
        };
        let nonce = Nonce::<U12>::try_from(nonce).map_err(|_| {
            DecryptError::new(ErrorClass::Truncated, format!("{what}: bad nonce length"))
        })?;
        let payload = Payload { msg: ct, aad };
        let out = match self {
            GcmKey::A128(c) => c.decrypt(&nonce, payload),
            GcmKey::A192(c) => c.decrypt(&nonce, payload),
            GcmKey::A256(c) => c.decrypt(&nonce, payload),
        };
        out.map(SecretBytes::new).map_err(|_| {
            DecryptError::new(
                ErrorClass::AuthFailed,
                format!(
                    "{what}: GCM authentication failed (wrong key, tampered or cut value, or value moved to another etcd key)"
                ),
            )
        })
    }

    /// Seal with a fresh random nonce: `nonce || ct || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        random_bytes(&mut nonce_bytes)?;
        let nonce = Nonce::<U12>::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let ct = match self {
            GcmKey::A128(c) => c.encrypt(&nonce, payload),
            GcmKey::A192(c) => c.encrypt(&nonce, payload),
            GcmKey::A256(c) => c.encrypt(&nonce, payload),
        }
        .map_err(|_| EncryptError("AES-GCM encryption failed (value too large)".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// The aesgcm provider for one configured key.
pub struct AesGcmCipher {
    key: GcmKey,
}

impl AesGcmCipher {
    /// `key` must be 16, 24 or 32 bytes (validation rejects anything else).
    pub fn new(key: &SecretBytes) -> Result<Self, String> {
        GcmKey::new(key.expose())
            .map(|key| AesGcmCipher { key })
            .ok_or_else(|| {
                format!(
                    "aesgcm key is {} bytes, expected one of 16, 24, 32",
                    key.len()
                )
            })
    }
}

impl Cipher for AesGcmCipher {
    fn decrypt(&self, payload: &[u8], aad: &[u8]) -> Result<Decrypted, DecryptError> {
        Ok(Decrypted {
            plaintext: self.key.open(payload, aad, "aesgcm")?,
            inner_stale: false,
        })
    }
    fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
        self.key.seal(plaintext, aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    /// Upstream TestGCMLegacyDataCompatibility (spec §9.1).
    #[test]
    fn upstream_gcm_legacy_vector() {
        let key = GcmKey::new(b"snorlax_awesomes").expect("16-byte key");
        let value = unhex(
            "9f27c8fcea8a58c467d8e437dbf2d85955f9b4bd912f4ef967d788a0cb07797dac0a3f0a0845605ca85ac8562b4ae1",
        );
        let pt = key.open(&value, b"bamboo", "t").expect("decrypts");
        assert_same_secret(pt.expose(), b"pandas are the best");
        assert_eq!(
            key.open(&value, b"bamboO", "t").unwrap_err().class,
            ErrorClass::AuthFailed
        );
        assert_eq!(
            key.open(&value[..11], b"bamboo", "t").unwrap_err().class,
            ErrorClass::Truncated
        );
        assert_eq!(
            key.open(&value[..20], b"bamboo", "t").unwrap_err().class,
            ErrorClass::AuthFailed
        );
    }

    #[test]
    fn round_trip_all_sizes() {
        for n in [16, 24, 32] {
            let c = AesGcmCipher::new(&SecretBytes::new(vec![7u8; n])).expect("key");
            let out = c.encrypt(b"hello", b"/registry/secrets/a/b").expect("enc");
            assert_eq!(out.len(), 12 + 5 + 16);
            let d = c.decrypt(&out, b"/registry/secrets/a/b").expect("dec");
            assert_same_secret(d.plaintext.expose(), b"hello");
            assert!(c.decrypt(&out, b"/registry/secrets/a/c").is_err());
        }
        assert!(AesGcmCipher::new(&SecretBytes::new(vec![0; 20])).is_err());
    }
}
