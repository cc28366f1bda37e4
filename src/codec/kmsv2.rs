//! KMS v2 provider (spec §3.5, §6.2): the `EncryptedObject` envelope, validated exactly like
//! upstream's `ValidateEncryptedObject`; reads of both DEK source types (`AES_GCM_KEY`: the
//! DEK opens `nonce||ct||tag`; `HKDF_SHA256_XNONCE_AES_GCM_SEED`: HKDF-Expand(seed, info =
//! first 32 bytes) opens the rest); and writes like a current apiserver: always type 1, one
//! seed per run (one plugin Encrypt whose key_id must equal Status's), fresh info and nonce
//! per object. Plugin answers are cached by a digest of the DEK fields (upstream
//! `generateCacheKey`), so N objects under one seed cost one plugin Decrypt.

use super::aesgcm::GcmKey;
use super::cache::DekCache;
use super::mac;
use super::{DecryptError, Decrypted, EncryptError, ErrorClass, random_bytes};
use crate::kms::{DecryptRequest, KmsError, KmsService, StatusResponse};
use crate::proto::kmsv2::EncryptedObject;
use crate::secret::SecretBytes;
use base64::Engine as _;
use prost::Message as _;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The visible fields of a KMS v2 EncryptedObject (never the DEK/seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedObjectInfo {
    pub key_id: String,
    /// `AES_GCM_KEY`, `HKDF_SHA256_XNONCE_AES_GCM_SEED`, or the raw number if unknown.
    pub dek_source_type: String,
    /// Annotation keys with their values base64-encoded (they are stored in plaintext).
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl EncryptedObjectInfo {
    /// True for the type current apiservers write.
    pub fn is_hkdf_seed(&self) -> bool {
        self.dek_source_type == HKDF_NAME
    }
}

pub const TYPE_AES_GCM_KEY: i32 = 0;
pub const TYPE_HKDF_SEED: i32 = 1;
const HKDF_NAME: &str = "HKDF_SHA256_XNONCE_AES_GCM_SEED";
/// Upstream limits (`envelope.go`).
pub const MAX_DEK_SOURCE: usize = 1024;
pub const MAX_KEY_ID: usize = 1024;
pub const MAX_ANNOTATIONS: usize = 32 * 1024;
/// HKDF info prefix of type-1 encryptedData, and the seed size writers use.
pub const INFO_LEN: usize = 32;
pub const SEED_LEN: usize = 32;
/// Bound of the seed/DEK cache (upstream keeps them 24 h; a run is shorter).
pub const CACHE_SIZE: usize = 4096;

/// The upstream name of a DEK source type.
pub fn source_type_name(t: i32) -> String {
    match t {
        TYPE_AES_GCM_KEY => "AES_GCM_KEY".to_string(),
        TYPE_HKDF_SEED => HKDF_NAME.to_string(),
        n => n.to_string(),
    }
}

/// The visible fields of an object (no validation).
pub fn info_of(o: &EncryptedObject) -> EncryptedObjectInfo {
    let b64 = base64::engine::general_purpose::STANDARD;
    EncryptedObjectInfo {
        key_id: o.key_id.clone(),
        dek_source_type: source_type_name(o.encrypted_dek_source_type),
        annotations: o
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), b64.encode(v)))
            .collect(),
    }
}

/// Lenient parse for classification: the visible fields if the protobuf decodes.
pub fn parse_info(payload: &[u8]) -> Option<EncryptedObjectInfo> {
    EncryptedObject::decode(payload).ok().map(|o| info_of(&o))
}

/// Decode and validate, every failure `malformed` (like upstream, which rejects invalid
/// UTF-8 in `keyID` and annotation keys at unmarshal time).
pub fn parse_object(payload: &[u8]) -> Result<EncryptedObject, DecryptError> {
    let o = EncryptedObject::decode(payload).map_err(|e| {
        DecryptError::new(
            ErrorClass::Malformed,
            format!("kms v2: EncryptedObject does not parse: {e}"),
        )
    })?;
    validate_object(&o)
        .map_err(|m| DecryptError::new(ErrorClass::Malformed, format!("kms v2: {m}")))?;
    Ok(o)
}

/// Upstream `ValidateEncryptedObject`.
pub fn validate_object(o: &EncryptedObject) -> Result<(), String> {
    if !matches!(
        o.encrypted_dek_source_type,
        TYPE_AES_GCM_KEY | TYPE_HKDF_SEED
    ) {
        return Err(format!(
            "unknown encryptedDEKSourceType: {}",
            o.encrypted_dek_source_type
        ));
    }
    if o.encrypted_data.is_empty() {
        return Err("encrypted data is empty".into());
    }
    validate_dek_source(&o.encrypted_dek_source)?;
    validate_key_id(&o.key_id)?;
    validate_annotations(
        o.annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice())),
    )
}

fn validate_dek_source(s: &[u8]) -> Result<(), String> {
    if s.is_empty() {
        return Err("encrypted DEK source is empty".into());
    }
    if s.len() > MAX_DEK_SOURCE {
        return Err(format!(
            "encrypted DEK source is {} bytes, which exceeds the max size of {MAX_DEK_SOURCE}",
            s.len()
        ));
    }
    Ok(())
}

/// Upstream `ValidateKeyID`: 1..=1024 bytes.
pub fn validate_key_id(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("keyID is empty".into());
    }
    if k.len() > MAX_KEY_ID {
        return Err(format!(
            "keyID is {} bytes, which exceeds the max size of {MAX_KEY_ID}",
            k.len()
        ));
    }
    Ok(())
}

/// Upstream `validateAnnotations`: keys are FQDNs, total size <= 32 KiB.
pub fn validate_annotations<'a>(
    annotations: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), String> {
    let mut total = 0usize;
    for (k, v) in annotations {
        if !is_fqdn(k) {
            return Err(format!(
                "annotation key {k:?} is not a fully qualified domain name with at least two labels"
            ));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > MAX_ANNOTATIONS {
        return Err(format!(
            "annotations total {total} bytes, which exceeds the max size of {MAX_ANNOTATIONS}"
        ));
    }
    Ok(())
}

/// apimachinery `IsFullyQualifiedDomainName`: optional trailing dot, DNS-1123 subdomain
/// (<= 253), at least two labels, each a DNS-1123 label (<= 63, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`).
pub fn is_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| is_dns1123_label(l))
}

fn is_dns1123_label(l: &str) -> bool {
    let b = l.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Upstream `generateCacheKey`, hashed with SHA-256 like its cache does.
pub fn cache_key(o: &EncryptedObject) -> Vec<u8> {
    fn u16_prefixed(out: &mut Vec<u8>, b: &[u8]) {
        // Lengths are bounded by validation (<= 32 KiB), so they fit a u16.
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut b = Vec::with_capacity(64 + o.encrypted_dek_source.len());
    b.extend_from_slice(&(o.encrypted_dek_source_type as u32).to_be_bytes());
    u16_prefixed(&mut b, &o.encrypted_dek_source);
    u16_prefixed(&mut b, o.key_id.as_bytes());
    if !o.annotations.is_empty() {
        b.extend_from_slice(&(o.annotations.len() as u32).to_be_bytes());
        let sorted: BTreeMap<_, _> = o.annotations.iter().collect();
        for (k, v) in sorted {
            u16_prefixed(&mut b, k.as_bytes());
            u16_prefixed(&mut b, v);
        }
    }
    Sha256::digest(&b).to_vec()
}

/// HKDF-Expand only (no Extract, no salt), SHA-256, PRK = seed, L = 32. `None` for a seed
/// shorter than 32 bytes. Every intermediate holding seed-derived bytes is wiped
/// ([`super::mac`]).
pub fn derive_key(seed: &[u8], info: &[u8]) -> Option<SecretBytes> {
    let okm = mac::hkdf_expand_32(seed, info)?;
    Some(SecretBytes::from_slice(&*okm))
}

/// Open type-1 `encryptedData` = `info(32) || nonce(12) || ct || tag` with `seed`.
pub fn open_hkdf(seed: &[u8], data: &[u8], aad: &[u8]) -> Result<SecretBytes, DecryptError> {
    let Some((info, rest)) = data.split_at_checked(INFO_LEN) else {
        return Err(DecryptError::new(
            ErrorClass::Truncated,
            format!(
                "kms v2: encryptedData of {} bytes is shorter than the {INFO_LEN}-byte HKDF info",
                data.len()
            ),
        ));
    };
    let bad_seed = || {
        DecryptError::new(
            ErrorClass::KmsDecryptFailed,
            format!(
                "kms v2: the plugin returned a {}-byte seed, at least {SEED_LEN} bytes are required",
                seed.len()
            ),
        )
    };
    if seed.len() < SEED_LEN {
        return Err(bad_seed());
    }
    let key = derive_key(seed, info).ok_or_else(bad_seed)?;
    let gcm = GcmKey::new(key.expose()).ok_or_else(bad_seed)?;
    gcm.open(rest, aad, "kms v2 data")
}

/// Seal type-1 `encryptedData` under `seed` with fresh info and nonce.
pub fn seal_hkdf(seed: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
    let mut info = [0u8; INFO_LEN];
    random_bytes(&mut info)?;
    let key = derive_key(seed, &info)
        .ok_or_else(|| EncryptError("kms v2: seed too short for HKDF".into()))?;
    let gcm = GcmKey::new(key.expose())
        .ok_or_else(|| EncryptError("kms v2: derived key has a bad length".into()))?;
    let sealed = gcm.seal(plaintext, aad)?;
    let mut out = Vec::with_capacity(INFO_LEN + sealed.len());
    out.extend_from_slice(&info);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Marshal an EncryptedObject the way protobuf-go does for this message: fields in number
/// order, zero values omitted, map entries with both key and value written (sorted by key,
/// one of the orders Go may produce).
pub fn encode_object(
    data: &[u8],
    key_id: &str,
    dek_source: &[u8],
    annotations: &BTreeMap<String, Vec<u8>>,
    source_type: i32,
) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn len_field(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
        out.push(tag);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut out = Vec::with_capacity(data.len() + dek_source.len() + key_id.len() + 64);
    if !data.is_empty() {
        len_field(&mut out, 0x0a, data);
    }
    if !key_id.is_empty() {
        len_field(&mut out, 0x12, key_id.as_bytes());
    }
    if !dek_source.is_empty() {
        len_field(&mut out, 0x1a, dek_source);
    }
    for (k, v) in annotations {
        let mut entry = Vec::with_capacity(k.len() + v.len() + 6);
        len_field(&mut entry, 0x0a, k.as_bytes());
        len_field(&mut entry, 0x12, v);
        len_field(&mut out, 0x22, &entry);
    }
    if source_type != 0 {
        out.push(0x28);
        varint(&mut out, u64::from(source_type as u32));
    }
    out
}

/// The write state of one run: one seed, encrypted once by the plugin.
struct WriteState {
    seed: SecretBytes,
    encrypted_seed: Vec<u8>,
    key_id: String,
    annotations: BTreeMap<String, Vec<u8>>,
}

/// One configured KMS v2 provider.
pub struct KmsV2 {
    name: String,
    service: Arc<dyn KmsService>,
    cache: DekCache,
    /// The plugin's Status key_id (the current write keyID), once known.
    current_key_id: RwLock<Option<String>>,
    /// A read's lazy Status attempt (once per run, concurrent readers wait for it, so a dead
    /// plugin is asked once).
    lazy_status: tokio::sync::OnceCell<Option<String>>,
    write_state: tokio::sync::OnceCell<WriteState>,
}

impl KmsV2 {
    pub fn new(name: &str, service: Arc<dyn KmsService>) -> Self {
        KmsV2 {
            name: name.to_string(),
            service,
            cache: DekCache::new(Some(CACHE_SIZE)),
            current_key_id: RwLock::new(None),
            lazy_status: tokio::sync::OnceCell::new(),
            write_state: tokio::sync::OnceCell::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current write keyID if Status (or the write state) has been seen.
    pub fn current_key_id(&self) -> Option<String> {
        self.current_key_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_current_key_id(&self, k: &str) {
        *self
            .current_key_id
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(k.to_string());
    }

    /// Upstream's health rule for a Status answer.
    fn check_status(&self, s: &StatusResponse) -> Result<(), KmsError> {
        let invalid = |message: String| KmsError::Invalid {
            name: self.name.clone(),
            message,
        };
        if s.healthz != "ok" {
            return Err(invalid(format!(
                "Status healthz is {:?}, expected \"ok\": fix the plugin before using it",
                s.healthz
            )));
        }
        if s.version != "v2" && s.version != "v2beta1" {
            return Err(invalid(format!(
                "Status version is {:?}, expected \"v2\" or \"v2beta1\": is this a KMS v1 plugin?",
                s.version
            )));
        }
        validate_key_id(&s.key_id).map_err(|m| invalid(format!("Status key_id: {m}")))
    }

    /// Call Status, check it, record key_id. Returns the key_id.
    pub async fn prepare(&self) -> Result<String, KmsError> {
        let s = self.service.status().await?;
        self.check_status(&s)?;
        self.set_current_key_id(&s.key_id);
        Ok(s.key_id)
    }

    /// The current keyID, asking Status once per run if nobody did yet.
    async fn ensure_current(&self) -> Option<String> {
        if let Some(k) = self.current_key_id() {
            return Some(k);
        }
        self.lazy_status
            .get_or_init(|| async { self.prepare().await.ok() })
            .await
            .clone()
    }

    /// Staleness of a readable object: keyID differs from the current one, or not type 1.
    /// With no known current keyID, only the type is judged.
    pub fn stale_for(&self, info: &EncryptedObjectInfo, current: Option<&str>) -> bool {
        !info.is_hkdf_seed() || current.is_some_and(|c| c != info.key_id)
    }

    async fn dek_or_seed(&self, o: &EncryptedObject) -> Result<SecretBytes, DecryptError> {
        self.cache
            .get_or_fetch(cache_key(o), || async {
                let req = DecryptRequest {
                    ciphertext: o.encrypted_dek_source.clone(),
                    key_id: o.key_id.clone(),
                    annotations: o
                        .annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                self.service.decrypt(&req).await.map_err(|e| {
                    DecryptError::new(
                        ErrorClass::KmsDecryptFailed,
                        format!(
                            "kms v2 provider {}: Decrypt of the {} for keyID {:?} failed: {e}",
                            self.name,
                            if o.encrypted_dek_source_type == TYPE_HKDF_SEED {
                                "seed"
                            } else {
                                "DEK"
                            },
                            o.key_id
                        ),
                    )
                })
            })
            .await
    }

    /// Decrypt the payload after `k8s:enc:kms:v2:<name>:`.
    pub async fn decrypt(
        &self,
        payload: &[u8],
        aad: &[u8],
    ) -> Result<(Decrypted, EncryptedObjectInfo), DecryptError> {
        let o = parse_object(payload)?;
        let info = info_of(&o);
        let secret = self.dek_or_seed(&o).await?;
        let plaintext = if o.encrypted_dek_source_type == TYPE_HKDF_SEED {
            open_hkdf(secret.expose(), &o.encrypted_data, aad)?
        } else {
            let gcm = GcmKey::new(secret.expose()).ok_or_else(|| {
                DecryptError::new(
                    ErrorClass::KmsDecryptFailed,
                    format!(
                        "kms v2 provider {}: the plugin returned a {}-byte DEK, not an AES key",
                        self.name,
                        secret.len()
                    ),
                )
            })?;
            gcm.open(&o.encrypted_data, aad, "kms v2 data")?
        };
        let current = self.ensure_current().await;
        let inner_stale = self.stale_for(&info, current.as_deref());
        Ok((
            Decrypted {
                plaintext,
                inner_stale,
            },
            info,
        ))
    }

    async fn new_write_state(&self) -> Result<WriteState, EncryptError> {
        let e = |m: String| EncryptError(format!("kms v2 provider {}: {m}", self.name));
        let status = self.service.status().await.map_err(|x| e(x.to_string()))?;
        self.check_status(&status)
            .map_err(|x| EncryptError(x.to_string()))?;
        let mut seed_bytes = zeroize::Zeroizing::new(vec![0u8; SEED_LEN]);
        random_bytes(&mut seed_bytes)?;
        let seed = SecretBytes::new(std::mem::take(&mut *seed_bytes));
        let resp = self
            .service
            .encrypt(seed.expose())
            .await
            .map_err(|x| e(format!("Encrypt of a new seed failed: {x}")))?;
        if resp.key_id != status.key_id {
            return Err(e(format!(
                "Encrypt returned keyID {:?} but Status reports {:?}; kube-apiserver would reject this seed \
                 and see every value written with it as stale. Retry once the plugin's key rotation settled",
                resp.key_id, status.key_id
            )));
        }
        validate_dek_source(&resp.ciphertext).map_err(|m| e(format!("Encrypt response: {m}")))?;
        validate_key_id(&resp.key_id).map_err(|m| e(format!("Encrypt response: {m}")))?;
        validate_annotations(
            resp.annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice())),
        )
        .map_err(|m| e(format!("Encrypt response: {m}")))?;
        self.set_current_key_id(&resp.key_id);
        Ok(WriteState {
            seed,
            encrypted_seed: resp.ciphertext,
            key_id: resp.key_id,
            annotations: resp.annotations,
        })
    }

    /// Encrypt into a type-1 EncryptedObject (the payload after the prefix).
    pub async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let st = self
            .write_state
            .get_or_try_init(|| self.new_write_state())
            .await?;
        let data = seal_hkdf(st.seed.expose(), plaintext, aad)?;
        Ok(encode_object(
            &data,
            &st.key_id,
            &st.encrypted_seed,
            &st.annotations,
            TYPE_HKDF_SEED,
        ))
    }

    /// The keyID writes use (after the first write), else the Status keyID if known.
    pub fn write_key_id(&self) -> Option<String> {
        self.write_state
            .get()
            .map(|s| s.key_id.clone())
            .or_else(|| self.current_key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    /// Upstream TestExtendedNonceGCMLegacyDataCompatibility (spec §9.2).
    #[test]
    fn upstream_extended_nonce_vector() {
        let seed = unhex("5d40323a820ff95561675e3b95e81867c5fdd561d35a88a2d08b08aa9d4fcf5c");
        let value = unhex(concat!(
            "2442759e33945fbad709db577a0f037fd8a709fc76979b8942209debcecb9d57",
            "efe3d6ff6a1ef6ee9a5003b9",
            "833b3043cec1e47b35175b151107a8d2416b0e296bbf66b5d102fcefdf9a78f293d271"
        ));
        let key = derive_key(&seed, &value[..32]).expect("hkdf");
        assert_same_secret(
            key.expose(),
            &unhex("6e58b7659c304b0c382f42f16bd700465def1dead80bf6f1bf1d52073bdb0c00"),
        );
        let pt = open_hkdf(&seed, &value, b"bamboo").expect("decrypts");
        assert_same_secret(pt.expose(), b"pandas are the best");
        // Seeds shorter than the hash are refused, not zero-extended.
        assert!(derive_key(&seed[..31], &value[..32]).is_none());
        assert_eq!(
            open_hkdf(&seed[..31], &value, b"bamboo").unwrap_err().class,
            ErrorClass::KmsDecryptFailed
        );
        assert_eq!(
            open_hkdf(&seed, &value, b"panda").unwrap_err().class,
            ErrorClass::AuthFailed
        );
        assert_eq!(
            open_hkdf(&seed, &value[..31], b"bamboo").unwrap_err().class,
            ErrorClass::Truncated
        );
        assert_eq!(
            open_hkdf(&seed, &value[..40], b"bamboo").unwrap_err().class,
            ErrorClass::Truncated
        );
    }

    #[test]
    fn fqdn_rules() {
        assert!(is_fqdn("local-kek.kms.kubernetes.io"));
        assert!(is_fqdn("a.b"));
        assert!(is_fqdn("a.b."));
        assert!(!is_fqdn("localhost"));
        assert!(!is_fqdn("Upper.example.com"));
        assert!(!is_fqdn("-a.example.com"));
        assert!(!is_fqdn("a..b"));
        assert!(!is_fqdn(""));
        assert!(!is_fqdn(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn encode_matches_prost_and_validates() {
        let mut ann = BTreeMap::new();
        ann.insert("b.example.com".to_string(), b"2".to_vec());
        ann.insert("a.example.com".to_string(), b"".to_vec());
        let bytes = encode_object(b"data", "kid", b"edek", &ann, 1);
        let o = parse_object(&bytes).expect("valid");
        assert_eq!(o.encrypted_data, b"data");
        assert_eq!(o.key_id, "kid");
        assert_eq!(o.encrypted_dek_source, b"edek");
        assert_eq!(o.annotations.len(), 2);
        assert_eq!(o.encrypted_dek_source_type, 1);
        // Type 0 omits field 5.
        let t0 = encode_object(b"d", "k", b"e", &BTreeMap::new(), 0);
        assert_eq!(t0, vec![0x0a, 1, b'd', 0x12, 1, b'k', 0x1a, 1, b'e']);
        let mut bad = ann.clone();
        bad.insert("nodots".into(), vec![]);
        let b = encode_object(b"data", "kid", b"edek", &bad, 1);
        assert_eq!(parse_object(&b).unwrap_err().class, ErrorClass::Malformed);
        let b = encode_object(b"data", "kid", b"edek", &ann, 2);
        assert_eq!(parse_object(&b).unwrap_err().class, ErrorClass::Malformed);
        let b = encode_object(b"", "kid", b"edek", &ann, 1);
        assert_eq!(parse_object(&b).unwrap_err().class, ErrorClass::Malformed);
        let b = encode_object(b"d", "kid", &[1u8; 1025], &ann, 1);
        assert_eq!(parse_object(&b).unwrap_err().class, ErrorClass::Malformed);
        // Invalid UTF-8 keyID.
        let b = vec![0x0a, 1, b'd', 0x12, 1, 0xff, 0x1a, 1, b'e'];
        assert_eq!(parse_object(&b).unwrap_err().class, ErrorClass::Malformed);
    }
}
