//! Owns key material and decrypted bytes: wrappers that zeroize on drop and never print their
//! contents (`Debug` shows only a length). Everything secret in the crate lives in these types.
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Secret bytes: a key, a DEK, a KMS v2 seed, or a decrypted plaintext value.
/// Zeroized on drop; `Debug` prints `SecretBytes(<N bytes>)`, never the bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
    /// Access the secret bytes. Callers must not log or format them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Take the bytes out; the caller becomes responsible for them (rarely needed).
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.zeroize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn debug_never_shows_bytes() {
        let s = SecretBytes::from_slice(b"hunter2-very-secret");
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"));
        assert!(d.contains("19 bytes"));
    }
}
