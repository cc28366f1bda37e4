//! A test-double KMS plugin driven by the vectors: Decrypt answers come from the recorded
//! `decrypt_answers` table keyed by (encrypted DEK, key_id) (an `error` entry refuses); anything
//! not in the table is handled by the vectors' deterministic fake plugin algorithm
//! (`nonce = SHA-256(dek)[0:12]`, `AES-256-GCM(kek, nonce, dek, aad = key_id | "")`), so what
//! atrest writes through it decrypts too. Calls are counted to check caching.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use atrest::config::{KmsApiVersion, KmsConfig};
use atrest::kms::{
    DecryptRequest, EncryptResponse, KmsConnector, KmsError, KmsService, StatusResponse,
};
use atrest::secret::SecretBytes;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub type Table = HashMap<(Vec<u8>, String), Result<Vec<u8>, String>>;

pub struct FakeKms {
    pub name: String,
    pub v2: bool,
    kek: Vec<u8>,
    pub status: Mutex<StatusResponse>,
    /// When set, Encrypt answers this key_id instead of Status's (to test the mismatch rule).
    pub encrypt_key_id: Mutex<Option<String>>,
    pub annotations: BTreeMap<String, Vec<u8>>,
    pub table: Mutex<Table>,
    pub decrypt_calls: AtomicUsize,
    pub encrypt_calls: AtomicUsize,
    pub status_calls: AtomicUsize,
}

impl FakeKms {
    pub fn new(
        name: &str,
        v2: bool,
        kek: Vec<u8>,
        key_id: &str,
        annotations: BTreeMap<String, Vec<u8>>,
    ) -> Arc<Self> {
        Arc::new(FakeKms {
            name: name.to_string(),
            v2,
            kek,
            status: Mutex::new(StatusResponse {
                version: if v2 { "v2" } else { "v1beta1" }.into(),
                healthz: "ok".into(),
                key_id: key_id.to_string(),
            }),
            encrypt_key_id: Mutex::new(None),
            annotations,
            table: Mutex::new(HashMap::new()),
            decrypt_calls: AtomicUsize::new(0),
            encrypt_calls: AtomicUsize::new(0),
            status_calls: AtomicUsize::new(0),
        })
    }

    pub fn add_answer(&self, edek: Vec<u8>, key_id: String, answer: Result<Vec<u8>, String>) {
        let mut t = self.table.lock().expect("table");
        if let Some(prev) = t.get(&(edek.clone(), key_id.clone())) {
            assert_eq!(
                prev.is_ok(),
                answer.is_ok(),
                "conflicting recorded answers for one (EDEK, key_id)"
            );
        }
        t.insert((edek, key_id), answer);
    }

    fn aad<'a>(&self, key_id: &'a str) -> &'a [u8] {
        if self.v2 { key_id.as_bytes() } else { b"" }
    }

    /// The vectors' fake plugin Encrypt.
    pub fn wrap(&self, dek: &[u8], key_id: &str) -> Vec<u8> {
        let nonce = Sha256::digest(dek);
        let nonce = Nonce::try_from(&nonce[..12]).expect("12");
        let c = Aes256Gcm::new_from_slice(&self.kek).expect("kek");
        let ct = c
            .encrypt(
                &nonce,
                Payload {
                    msg: dek,
                    aad: self.aad(key_id),
                },
            )
            .expect("encrypt");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// The vectors' fake plugin Decrypt.
    pub fn unwrap(&self, ct: &[u8], key_id: &str) -> Option<Vec<u8>> {
        let (nonce, body) = ct.split_at_checked(12)?;
        let nonce = Nonce::try_from(nonce).ok()?;
        let c = Aes256Gcm::new_from_slice(&self.kek).ok()?;
        c.decrypt(
            &nonce,
            Payload {
                msg: body,
                aad: self.aad(key_id),
            },
        )
        .ok()
    }

    fn err(&self, rpc: &'static str, message: &str) -> KmsError {
        KmsError::Call {
            name: self.name.clone(),
            rpc,
            message: message.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl KmsService for FakeKms {
    async fn status(&self) -> Result<StatusResponse, KmsError> {
        self.status_calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.status.lock().expect("status").clone())
    }
    async fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        self.encrypt_calls.fetch_add(1, Ordering::SeqCst);
        let key_id = match self.encrypt_key_id.lock().expect("lock").clone() {
            Some(k) => k,
            None => self.status.lock().expect("status").key_id.clone(),
        };
        Ok(EncryptResponse {
            ciphertext: self.wrap(plaintext, &key_id),
            key_id,
            annotations: if self.v2 {
                self.annotations.clone()
            } else {
                BTreeMap::new()
            },
        })
    }
    async fn decrypt(&self, req: &DecryptRequest) -> Result<SecretBytes, KmsError> {
        self.decrypt_calls.fetch_add(1, Ordering::SeqCst);
        let recorded = self
            .table
            .lock()
            .expect("table")
            .get(&(req.ciphertext.clone(), req.key_id.clone()))
            .cloned();
        match recorded {
            Some(Ok(dek)) => Ok(SecretBytes::new(dek)),
            Some(Err(m)) => Err(self.err("Decrypt", &m)),
            None => self
                .unwrap(&req.ciphertext, &req.key_id)
                .map(SecretBytes::new)
                .ok_or_else(|| self.err("Decrypt", "ciphertext does not decrypt")),
        }
    }
}

/// Hands out the fake plugins by KMS provider name.
#[derive(Default)]
pub struct FakeConnector {
    pub plugins: HashMap<String, Arc<FakeKms>>,
}

impl FakeConnector {
    pub fn with(plugins: impl IntoIterator<Item = Arc<FakeKms>>) -> Self {
        FakeConnector {
            plugins: plugins.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }
}

impl KmsConnector for FakeConnector {
    fn connect(&self, cfg: &KmsConfig) -> Result<Arc<dyn KmsService>, KmsError> {
        let p = self
            .plugins
            .get(&cfg.name)
            .ok_or_else(|| KmsError::Unreachable {
                name: cfg.name.clone(),
                endpoint: cfg.endpoint.clone(),
                message: "no fake plugin with this name".into(),
            })?;
        assert_eq!(
            p.v2,
            cfg.api_version == KmsApiVersion::V2,
            "plugin API version"
        );
        Ok(p.clone() as Arc<dyn KmsService>)
    }
}
