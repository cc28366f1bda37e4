//! aescbc provider (spec §3.1): `IV(16) || AES-CBC(PKCS#7(plaintext))`, no AAD, no MAC.
//!
//! Reads follow upstream exactly, including its lenient unpadding (any pad length
//! `1 <= n <= len` with `n` copies of `n`, not capped at the block size), and return an error
//! where upstream would panic (an IV with no ciphertext). The same code decrypts the pre-1.25
//! KMS v1 CBC bodies ([`cbc_open`]).

use super::{Cipher, DecryptError, Decrypted, EncryptError, ErrorClass, random_bytes};
use crate::secret::SecretBytes;
use aes::{Aes128, Aes192, Aes256};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use zeroize::Zeroizing;

/// AES block size = IV size.
pub const BLOCK: usize = 16;

/// Decrypt `IV || CBC body` with `key` (16/24/32 bytes) and unpad like upstream.
pub fn cbc_open(key: &[u8], data: &[u8], what: &str) -> Result<SecretBytes, DecryptError> {
    let Some((iv, body)) = data.split_at_checked(BLOCK) else {
        return Err(DecryptError::new(
            ErrorClass::Truncated,
            format!(
                "{what}: {} bytes is shorter than the {BLOCK}-byte IV",
                data.len()
            ),
        ));
    };
    if body.is_empty() {
        return Err(DecryptError::new(
            ErrorClass::Truncated,
            format!("{what}: the value is only an IV, with no ciphertext"),
        ));
    }
    if body.len() % BLOCK != 0 {
        return Err(DecryptError::new(
            ErrorClass::Truncated,
            format!(
                "{what}: ciphertext of {} bytes is not a whole number of {BLOCK}-byte blocks",
                body.len()
            ),
        ));
    }
    let mut buf = Zeroizing::new(body.to_vec());
    let bad_key = || {
        DecryptError::new(
            ErrorClass::KmsDecryptFailed,
            format!("{what}: key of {} bytes is not an AES key size", key.len()),
        )
    };
    match key.len() {
        16 => decrypt_blocks(
            cbc::Decryptor::<Aes128>::new_from_slices(key, iv).map_err(|_| bad_key())?,
            &mut buf,
        ),
        24 => decrypt_blocks(
            cbc::Decryptor::<Aes192>::new_from_slices(key, iv).map_err(|_| bad_key())?,
            &mut buf,
        ),
        32 => decrypt_blocks(
            cbc::Decryptor::<Aes256>::new_from_slices(key, iv).map_err(|_| bad_key())?,
            &mut buf,
        ),
        _ => return Err(bad_key()),
    }
    let n = upstream_unpad_len(&buf).ok_or_else(|| {
        DecryptError::new(
            ErrorClass::BadPadding,
            format!("{what}: invalid PKCS#7 padding (wrong key or tampered value)"),
        )
    })?;
    let keep = buf.len() - n;
    buf.truncate(keep);
    Ok(SecretBytes::new(std::mem::take(&mut *buf)))
}

fn decrypt_blocks<D: BlockModeDecrypt<BlockSize = aes::cipher::consts::U16>>(
    mut dec: D,
    buf: &mut [u8],
) {
    for chunk in buf.chunks_exact_mut(BLOCK) {
        if let Ok(block) = <&mut Array<u8, _>>::try_from(chunk) {
            dec.decrypt_block(block);
        }
    }
}

/// Upstream's rule: last byte `c`, error if `c == 0 || c > len`, all last `c` bytes equal `c`.
/// Returns the number of bytes to strip.
fn upstream_unpad_len(buf: &[u8]) -> Option<usize> {
    let c = usize::from(*buf.last()?);
    if c == 0 || c > buf.len() {
        return None;
    }
    let tail = buf.get(buf.len() - c..)?;
    tail.iter().all(|&b| usize::from(b) == c).then_some(c)
}

/// The aescbc provider for one configured key.
pub struct AesCbcCipher {
    key: SecretBytes,
}

impl AesCbcCipher {
    /// `key` must be 16, 24 or 32 bytes.
    pub fn new(key: &SecretBytes) -> Result<Self, String> {
        match key.len() {
            16 | 24 | 32 => Ok(AesCbcCipher { key: key.clone() }),
            n => Err(format!(
                "aescbc key is {n} bytes, expected one of 16, 24, 32"
            )),
        }
    }
}

impl Cipher for AesCbcCipher {
    fn decrypt(&self, payload: &[u8], _aad: &[u8]) -> Result<Decrypted, DecryptError> {
        Ok(Decrypted {
            plaintext: cbc_open(self.key.expose(), payload, "aescbc")?,
            inner_stale: false,
        })
    }

    fn encrypt(&self, plaintext: &[u8], _aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let mut iv = [0u8; BLOCK];
        random_bytes(&mut iv)?;
        let key = self.key.expose();
        let bad = |_| EncryptError(format!("aescbc key of {} bytes is invalid", key.len()));
        // Standard PKCS#7 (1..=16 bytes of n), exactly what upstream writes.
        let ct = match key.len() {
            16 => cbc::Encryptor::<Aes128>::new_from_slices(key, &iv)
                .map_err(bad)?
                .encrypt_padded_vec::<Pkcs7>(plaintext),
            24 => cbc::Encryptor::<Aes192>::new_from_slices(key, &iv)
                .map_err(bad)?
                .encrypt_padded_vec::<Pkcs7>(plaintext),
            32 => cbc::Encryptor::<Aes256>::new_from_slices(key, &iv)
                .map_err(bad)?
                .encrypt_padded_vec::<Pkcs7>(plaintext),
            n => return Err(EncryptError(format!("aescbc key of {n} bytes is invalid"))),
        };
        let mut out = Vec::with_capacity(BLOCK + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;

    #[test]
    fn round_trip_and_errors() {
        for n in [16, 24, 32] {
            let c = AesCbcCipher::new(&SecretBytes::new(vec![3u8; n])).expect("key");
            for len in [0usize, 1, 15, 16, 17, 100] {
                let pt = vec![0x41u8; len];
                let out = c.encrypt(&pt, b"").expect("enc");
                assert_eq!(out.len(), 16 + (len / 16 + 1) * 16);
                let d = c.decrypt(&out, b"any-key").expect("dec");
                assert_same_secret(d.plaintext.expose(), &pt);
            }
            let out = c.encrypt(b"x", b"").expect("enc");
            assert_eq!(
                c.decrypt(&out[..16], b"").unwrap_err().class,
                ErrorClass::Truncated
            );
            assert_eq!(
                c.decrypt(&out[..15], b"").unwrap_err().class,
                ErrorClass::Truncated
            );
            assert_eq!(
                c.decrypt(&out[..20], b"").unwrap_err().class,
                ErrorClass::Truncated
            );
            assert_eq!(
                c.decrypt(b"", b"").unwrap_err().class,
                ErrorClass::Truncated
            );
        }
    }

    #[test]
    fn lenient_unpad() {
        assert_eq!(upstream_unpad_len(&[0x20; 32]), Some(32));
        assert_eq!(upstream_unpad_len(&[0x21; 32]), None);
        assert_eq!(upstream_unpad_len(&[1, 2, 0]), None);
        assert_eq!(upstream_unpad_len(&[9, 2, 2]), Some(2));
        assert_eq!(upstream_unpad_len(&[]), None);
    }
}
