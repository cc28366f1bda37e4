//! HMAC-SHA256 (RFC 2104) and the single-block HKDF-Expand (RFC 5869) KMS v2 needs, built on
//! `sha2` so that every buffer holding key-derived bytes is ours and wiped.
//!
//! Why not `hkdf`/`hmac`: hmac 0.13 builds the padded key (`key ^ ipad`, `key ^ opad`) in
//! stack temporaries it never clears, and HKDF keeps `T(n)` in an unzeroized array; with the
//! KMS v2 seed as the HMAC key that leaves copies of the seed behind on every value read. Here
//! the padded key and every intermediate digest live in [`Zeroizing`] buffers, and the SHA-256
//! states wipe themselves on drop (`sha2`'s `zeroize` feature, checked at compile time in the
//! tests). The outputs are checked against RFC 4231/5869 and against the `hkdf` crate.

use sha2::digest::Output;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// SHA-256's block size (the HMAC key pad width).
const BLOCK: usize = 64;
/// SHA-256's output size.
pub const OUT_LEN: usize = 32;

const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// Finish `h` into a wiped-on-drop buffer (the hasher itself wipes on drop).
fn finish(h: Sha256) -> Zeroizing<[u8; OUT_LEN]> {
    let mut out = Zeroizing::new([0u8; OUT_LEN]);
    let dst: &mut Output<Sha256> = (&mut *out).into();
    h.finalize_into(dst);
    out
}

/// `HMAC-SHA256(key, parts[0] || parts[1] || ...)`; any key length (longer than a block: hashed
/// first, as RFC 2104 says).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; OUT_LEN]> {
    let mut pad = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        let mut h = Sha256::new();
        h.update(key);
        let hashed = finish(h);
        if let Some(dst) = pad.get_mut(..OUT_LEN) {
            dst.copy_from_slice(&*hashed);
        }
    } else if let Some(dst) = pad.get_mut(..key.len()) {
        dst.copy_from_slice(key);
    }
    // Inner hash over (K ^ ipad) || message.
    pad.iter_mut().for_each(|b| *b ^= IPAD);
    let mut inner = Sha256::new();
    inner.update(pad.as_slice());
    for p in parts {
        inner.update(p);
    }
    let inner_digest = finish(inner);
    // Outer hash over (K ^ opad) || inner digest.
    pad.iter_mut().for_each(|b| *b ^= IPAD ^ OPAD);
    let mut outer = Sha256::new();
    outer.update(pad.as_slice());
    // Slices, not `*array`: passing the array by value would copy key bytes unwiped.
    outer.update(inner_digest.as_slice());
    finish(outer)
}

/// HKDF-Expand (no Extract) with SHA-256 for `L = 32`: `T(1) = HMAC(prk, info || 0x01)`.
/// `None` when `prk` is shorter than the hash (RFC 5869 §2.3, as the `hkdf` crate enforces).
pub fn hkdf_expand_32(prk: &[u8], info: &[u8]) -> Option<Zeroizing<[u8; OUT_LEN]>> {
    if prk.len() < OUT_LEN {
        return None;
    }
    Some(hmac_sha256(prk, &[info, &[1u8]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    /// Fails to compile if `sha2` loses its `zeroize` feature (the states holding key material
    /// would then be dropped unwiped).
    #[test]
    fn sha256_state_zeroizes_on_drop() {
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<Sha256>();
    }

    /// RFC 4231 test cases 1 (short key), 2 (key shorter than the message), 6 (key longer
    /// than a block). Outputs are public test vectors, not secrets.
    #[test]
    fn rfc4231_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 3] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, msg, want) in cases {
            assert_eq!(hex::encode(*hmac_sha256(&key, &[&msg])), want);
            // Split messages hash like their concatenation.
            let (a, b) = msg.split_at(3);
            assert_eq!(hex::encode(*hmac_sha256(&key, &[a, b])), want);
        }
    }

    /// RFC 5869 test case 1: the first 32 bytes of OKM from its PRK and info.
    #[test]
    fn rfc5869_expand() {
        let prk = unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
        let okm = hkdf_expand_32(&prk, &unhex("f0f1f2f3f4f5f6f7f8f9")).expect("prk ok");
        crate::codec::test_util::assert_same_secret(
            &*okm,
            &unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"),
        );
        assert!(hkdf_expand_32(&prk[..31], b"x").is_none());
    }

    /// Same answers as the `hkdf` crate for PRKs around the block size and varied info.
    #[test]
    fn matches_hkdf_crate() {
        for prk_len in [32usize, 33, 63, 64, 65, 100, 200] {
            let prk: Vec<u8> = (0..prk_len).map(|i| (i * 7 + 3) as u8).collect();
            for info_len in [0usize, 1, 32, 64, 100] {
                let info: Vec<u8> = (0..info_len).map(|i| (i * 13) as u8).collect();
                let hk = hkdf::Hkdf::<Sha256>::from_prk(&prk).expect("prk");
                let mut want = Zeroizing::new([0u8; OUT_LEN]);
                hk.expand(&info, &mut *want).expect("expand");
                let got = hkdf_expand_32(&prk, &info).expect("prk");
                assert!(
                    *got == *want,
                    "HKDF mismatch for prk {prk_len} bytes, info {info_len} bytes"
                );
            }
        }
    }
}
