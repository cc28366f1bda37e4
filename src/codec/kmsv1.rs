//! KMS v1 envelope provider (spec §3.4): `u16be(len) || EDEK || data`, where data is AES-GCM
//! under the plugin-decrypted DEK (AAD = etcd key), with upstream's read fallback to AES-CBC
//! under the same DEK (values written by apiserver <= 1.24; such reads are stale).
//!
//! atrest only reads KMS v1: current kube-apiserver refuses to start with a KMS v1 provider
//! unless `--feature-gates=KMSv1=true`, and migrating means writing KMS v2 (see [`KmsV1::write_refusal`]).

use super::aescbc::cbc_open;
use super::aesgcm::GcmKey;
use super::cache::DekCache;
use super::{DecryptError, Decrypted, EncryptError, ErrorClass};
use crate::kms::{DecryptRequest, KmsService};
use crate::secret::SecretBytes;
use std::sync::Arc;

/// Upstream default `cachesize`.
pub const DEFAULT_CACHE_SIZE: usize = 1000;

/// One configured KMS v1 provider.
pub struct KmsV1 {
    name: String,
    service: Arc<dyn KmsService>,
    cache: DekCache,
}

/// `payload` split into (EDEK, data).
pub fn split_envelope(payload: &[u8]) -> Result<(&[u8], &[u8]), DecryptError> {
    let truncated = |m: String| DecryptError::new(ErrorClass::Truncated, m);
    let Some((len, rest)) = payload.split_at_checked(2) else {
        return Err(truncated(format!(
            "kms v1: {} bytes is shorter than the 2-byte DEK length",
            payload.len()
        )));
    };
    let n = usize::from(u16::from_be_bytes([len[0], len[1]]));
    rest.split_at_checked(n).ok_or_else(|| {
        truncated(format!(
            "kms v1: encrypted DEK length {n} exceeds the {} bytes that follow",
            rest.len()
        ))
    })
}

impl KmsV1 {
    /// `cachesize` as configured: None = default 1000, negative (or 0) disables the cache.
    pub fn new(name: &str, service: Arc<dyn KmsService>, cachesize: Option<i32>) -> Self {
        let cap = match cachesize {
            None => Some(DEFAULT_CACHE_SIZE),
            Some(n) if n > 0 => usize::try_from(n).ok(),
            Some(_) => None,
        };
        KmsV1 {
            name: name.to_string(),
            service,
            cache: DekCache::new(cap),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn dek(&self, edek: &[u8]) -> Result<SecretBytes, DecryptError> {
        self.cache
            .get_or_fetch(edek.to_vec(), || async {
                let req = DecryptRequest {
                    ciphertext: edek.to_vec(),
                    ..Default::default()
                };
                self.service.decrypt(&req).await.map_err(|e| {
                    DecryptError::new(
                        ErrorClass::KmsDecryptFailed,
                        format!(
                            "kms v1 provider {}: Decrypt of the DEK failed: {e}",
                            self.name
                        ),
                    )
                })
            })
            .await
    }

    /// Decrypt the payload after `k8s:enc:kms:v1:<name>:`.
    pub async fn decrypt(&self, payload: &[u8], aad: &[u8]) -> Result<Decrypted, DecryptError> {
        let (edek, data) = split_envelope(payload)?;
        let dek = self.dek(edek).await?;
        let gcm = GcmKey::new(dek.expose()).ok_or_else(|| {
            DecryptError::new(
                ErrorClass::KmsDecryptFailed,
                format!(
                    "kms v1 provider {}: the plugin returned a {}-byte DEK, not an AES key",
                    self.name,
                    dek.len()
                ),
            )
        })?;
        match gcm.open(data, aad, "kms v1 data") {
            Ok(plaintext) => Ok(Decrypted {
                plaintext,
                inner_stale: false,
            }),
            // Pre-1.25 writers used AES-CBC with the same DEK; upstream's union transformer
            // tries it second and marks the read stale. If CBC fails too, GCM's error is the
            // meaningful one (the value was most likely written with GCM).
            Err(gcm_err) => match cbc_open(dek.expose(), data, "kms v1 data (CBC)") {
                Ok(plaintext) => Ok(Decrypted {
                    plaintext,
                    inner_stale: true,
                }),
                Err(_) => Err(gcm_err),
            },
        }
    }

    /// Why atrest will not write KMS v1.
    pub fn write_refusal(&self) -> EncryptError {
        EncryptError(format!(
            "refusing to write with KMS v1 provider {:?}: KMS v1 is deprecated (disabled by default since Kubernetes 1.29, \
             needs --feature-gates=KMSv1=true). Put a KMS v2 provider (apiVersion: v2) first in the providers list \
             to migrate, and keep the v1 provider after it so existing values stay readable",
            self.name
        ))
    }
}
