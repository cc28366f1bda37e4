//! KMS plugins: the small async [`KmsService`] trait the codec's KMS providers call, the gRPC
//! clients that implement it over a unix socket ([`grpc`]), and the connector that turns an
//! EncryptionConfiguration `kms` entry into a service.

pub mod grpc;

use crate::config::{KmsApiVersion, KmsConfig};
use crate::secret::SecretBytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a plugin's Encrypt returned. For KMS v1 `key_id` is empty and `annotations` empty.
#[derive(Debug, Clone, Default)]
pub struct EncryptResponse {
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub annotations: BTreeMap<String, Vec<u8>>,
}

/// A Decrypt request as upstream sends it. For KMS v1 only `ciphertext` is used.
#[derive(Debug, Clone, Default)]
pub struct DecryptRequest {
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub annotations: BTreeMap<String, Vec<u8>>,
}

/// Plugin health. KMS v2: the Status rpc; KMS v1: Version (+ `healthz` "ok" when it answered
/// `v1beta1`), with an empty key_id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusResponse {
    pub version: String,
    pub healthz: String,
    pub key_id: String,
}

/// A KMS failure; messages name the plugin/socket and never contain key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// The plugin could not be reached (socket missing, connection refused, timeout on dial).
    #[error("KMS plugin {name} at {endpoint} is unreachable: {message}")]
    Unreachable {
        name: String,
        endpoint: String,
        message: String,
    },
    /// The call went out and failed (plugin error status, deadline exceeded).
    #[error("KMS plugin {name}: {rpc} failed: {message}")]
    Call {
        name: String,
        rpc: &'static str,
        message: String,
    },
    /// The plugin answered something unusable (unhealthy, wrong version, invalid key id).
    #[error("KMS plugin {name}: {message}")]
    Invalid { name: String, message: String },
}

/// The three calls kube-apiserver makes to a KMS plugin. Implemented by the gRPC clients and by
/// test doubles.
#[async_trait::async_trait]
pub trait KmsService: Send + Sync {
    async fn status(&self) -> Result<StatusResponse, KmsError>;
    async fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptResponse, KmsError>;
    async fn decrypt(&self, req: &DecryptRequest) -> Result<SecretBytes, KmsError>;
}

/// Creates a [`KmsService`] for a config's `kms` entry. Production: [`GrpcConnector`]; tests
/// can supply doubles.
pub trait KmsConnector: Send + Sync {
    fn connect(&self, cfg: &KmsConfig) -> Result<Arc<dyn KmsService>, KmsError>;
}

/// Dials the plugin's unix socket lazily (the first call connects), honouring `timeout`.
#[derive(Debug, Default, Clone, Copy)]
pub struct GrpcConnector;

impl KmsConnector for GrpcConnector {
    fn connect(&self, cfg: &KmsConfig) -> Result<Arc<dyn KmsService>, KmsError> {
        match cfg.api_version {
            KmsApiVersion::V1 => Ok(Arc::new(grpc::V1Client::new(cfg)?)),
            KmsApiVersion::V2 => Ok(Arc::new(grpc::V2Client::new(cfg)?)),
        }
    }
}
