//! secretbox provider (spec §3.3): NaCl `crypto_secretbox` (XSalsa20-Poly1305) in Go's
//! layout `nonce(24) || tag(16) || ciphertext`, 32-byte key, no AAD (a moved value still reads).

use super::{Cipher, DecryptError, Decrypted, EncryptError, ErrorClass, random_bytes};
use crate::secret::SecretBytes;
use crypto_secretbox::aead::generic_array::GenericArray;
use crypto_secretbox::{AeadInPlace, KeyInit, XSalsa20Poly1305};
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// The secretbox provider for one configured key (the key zeroizes on drop).
pub struct SecretboxCipher {
    aead: XSalsa20Poly1305,
}

impl SecretboxCipher {
    pub fn new(key: &SecretBytes) -> Result<Self, String> {
        if key.len() != 32 {
            return Err(format!(
                "secretbox key is {} bytes, expected exactly 32",
                key.len()
            ));
        }
        XSalsa20Poly1305::new_from_slice(key.expose())
            .map(|aead| SecretboxCipher { aead })
            .map_err(|_| "secretbox key must be 32 bytes".to_string())
    }
}

impl Cipher for SecretboxCipher {
    fn decrypt(&self, payload: &[u8], _aad: &[u8]) -> Result<Decrypted, DecryptError> {
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::new(
                ErrorClass::Truncated,
                format!(
                    "secretbox: {} bytes is shorter than nonce(24) + tag(16)",
                    payload.len()
                ),
            ));
        }
        let (nonce, rest) = payload.split_at(NONCE_LEN);
        let (tag, ct) = rest.split_at(TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        self.aead
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                b"",
                &mut buf,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| {
                DecryptError::new(
                    ErrorClass::AuthFailed,
                    "secretbox: Poly1305 authentication failed (wrong key or tampered value)",
                )
            })?;
        Ok(Decrypted {
            plaintext: SecretBytes::new(std::mem::take(&mut *buf)),
            inner_stale: false,
        })
    }

    fn encrypt(&self, plaintext: &[u8], _aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + TAG_LEN + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(NONCE_LEN + TAG_LEN);
        let tag = self
            .aead
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce), b"", body)
            .map_err(|_| EncryptError("secretbox encryption failed".into()))?;
        if let Some(slot) = head.get_mut(NONCE_LEN..) {
            slot.copy_from_slice(&tag);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;

    #[test]
    fn round_trip_and_errors() {
        let c = SecretboxCipher::new(&SecretBytes::new(vec![9u8; 32])).expect("key");
        let out = c.encrypt(b"hello world", b"").expect("enc");
        assert_eq!(out.len(), 40 + 11);
        assert_same_secret(
            c.decrypt(&out, b"").expect("dec").plaintext.expose(),
            b"hello world",
        );
        assert_eq!(
            c.decrypt(&out[..39], b"").unwrap_err().class,
            ErrorClass::Truncated
        );
        let mut bad = out.clone();
        bad[30] ^= 1;
        assert_eq!(
            c.decrypt(&bad, b"").unwrap_err().class,
            ErrorClass::AuthFailed
        );
        let empty = c.encrypt(b"", b"").expect("enc");
        assert!(c.decrypt(&empty, b"").expect("dec").plaintext.is_empty());
        assert!(SecretboxCipher::new(&SecretBytes::new(vec![0; 24])).is_err());
    }
}
