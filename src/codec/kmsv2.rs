//! KMS v2 provider: EncryptedObject parsing/validation and the HKDF seed scheme (H1).

/// The visible fields of a KMS v2 EncryptedObject (never the DEK/seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedObjectInfo {
    pub key_id: String,
    /// `AES_GCM_KEY`, `HKDF_SHA256_XNONCE_AES_GCM_SEED`, or the raw number if unknown.
    pub dek_source_type: String,
    /// Annotation keys with their values base64-encoded (they are stored in plaintext).
    pub annotations: std::collections::BTreeMap<String, String>,
}
