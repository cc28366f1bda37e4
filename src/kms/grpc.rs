//! gRPC clients for the KMS v1 (`v1beta1`) and v2 plugin APIs over a unix socket.
use super::*;

pub struct V1Client;
pub struct V2Client;

impl V1Client {
    pub fn new(cfg: &KmsConfig) -> Result<Self, KmsError> {
        todo!("H4 {}", cfg.name)
    }
}
impl V2Client {
    pub fn new(cfg: &KmsConfig) -> Result<Self, KmsError> {
        todo!("H4 {}", cfg.name)
    }
}

#[async_trait::async_trait]
impl KmsService for V1Client {
    async fn status(&self) -> Result<StatusResponse, KmsError> {
        todo!()
    }
    async fn encrypt(&self, _plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        todo!()
    }
    async fn decrypt(&self, _req: &DecryptRequest) -> Result<SecretBytes, KmsError> {
        todo!()
    }
}
#[async_trait::async_trait]
impl KmsService for V2Client {
    async fn status(&self) -> Result<StatusResponse, KmsError> {
        todo!()
    }
    async fn encrypt(&self, _plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        todo!()
    }
    async fn decrypt(&self, _req: &DecryptRequest) -> Result<SecretBytes, KmsError> {
        todo!()
    }
}
