//! gRPC clients for the KMS v1 (`v1beta1`) and v2 plugin APIs over a unix socket (spec §6).
//!
//! Both clients share one [`Transport`]: it parses the EncryptionConfiguration `endpoint` the way
//! `kubernetes/kms pkg/util/util.go` does (only the URL path is used; `unix:///@name` is a Linux
//! abstract socket), dials lazily on the first call, sends authority `localhost`, and enforces the
//! config's `timeout` on every call on the client side (a stuck plugin must not hang a scan).
//! Failures are mapped to [`KmsError`]: a socket that cannot be dialled is `Unreachable` (naming
//! the plugin and the socket), a call that failed or timed out is `Call`, an answer that breaks the
//! API contract (unhealthy, unsupported version, bad key id) is `Invalid`. No message ever contains
//! a DEK, a seed or any other plugin plaintext.

use super::*;
use crate::proto::kms_v1beta1 as v1;
use crate::proto::kms_v2 as v2;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The only version string KMS v1 plugins speak (sent in every request, required from Version).
pub const V1_API_VERSION: &str = "v1beta1";
/// The KMS v2 Status versions kube-apiserver accepts.
pub const V2_API_VERSIONS: [&str; 2] = ["v2", "v2beta1"];
/// kube-apiserver's bound on a KMS v2 key id (`ValidateKeyID`).
pub const MAX_KEY_ID_LEN: usize = 1024;
/// A Decrypt that timed out is not sent again for the same ciphertext and key id for this
/// long. A scan reads thousands of objects sharing one seed; without this a stuck plugin
/// would cost one full timeout per object (100k objects x 3s), with it about one per window.
pub const DECRYPT_TIMEOUT_MEMO: Duration = Duration::from_secs(10);
/// Bound on the remembered timed-out requests (cleared when full).
const MEMO_MAX_ENTRIES: usize = 4096;

/// Where an endpoint's socket lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketTarget {
    /// For messages: the path (`/run/kms.sock`) or the abstract name (`@kms`).
    pub display: String,
    /// What to dial: the path, or NUL + name for an abstract socket (tokio's convention).
    pub dial: PathBuf,
}

/// Parse a KMS `endpoint` like upstream's `ParseEndpoint`: scheme `unix`, only the URL path is
/// used, `/@name` is the abstract socket `@name`. An empty path (`unix://foo.sock` parses as host
/// `foo.sock`, empty path) is an error here; upstream only fails when dialling.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketTarget, String> {
    const FIX: &str = "write it as unix:///absolute/path/to/plugin.sock";
    let (scheme, rest) = endpoint
        .split_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} has no scheme; {FIX}"))?;
    if !scheme.eq_ignore_ascii_case("unix") {
        return Err(format!(
            "endpoint {endpoint:?} uses scheme {scheme:?}; KMS plugins are reached over unix sockets only; {FIX}"
        ));
    }
    // Query and fragment are not part of the path.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let raw_path = if let Some(after) = rest.strip_prefix("//") {
        // authority up to the first '/', then the path
        match after.find('/') {
            Some(i) => &after[i..],
            None => "",
        }
    } else if rest.starts_with('/') {
        rest
    } else {
        "" // opaque form (`unix:foo.sock`): no path
    };
    if raw_path.is_empty() {
        return Err(format!(
            "endpoint {endpoint:?} has an empty socket path (only the URL path is used, so \
             unix://name.sock names a host, not a file); {FIX}"
        ));
    }
    let path = percent_decode(raw_path)
        .ok_or_else(|| format!("endpoint {endpoint:?} has an invalid %-escape in its path"))?;
    if let Some(name) = path.strip_prefix("/@") {
        if name.is_empty() {
            return Err(format!(
                "endpoint {endpoint:?} names an empty abstract socket"
            ));
        }
        let mut dial = String::with_capacity(name.len() + 1);
        dial.push('\0');
        dial.push_str(name);
        return Ok(SocketTarget {
            display: format!("@{name}"),
            dial: PathBuf::from(dial),
        });
    }
    if path.contains('\0') {
        return Err(format!("endpoint {endpoint:?} contains a NUL byte"));
    }
    Ok(SocketTarget {
        display: path.clone(),
        dial: PathBuf::from(path),
    })
}

/// `%XX` decoding as Go's `url.Parse` does for the path; None on a malformed escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).ok()
}

/// The last failed dial, kept so a call's transport error can be reported precisely (tonic
/// flattens connect errors to a string).
#[derive(Debug, Clone)]
struct DialFailure {
    kind: io::ErrorKind,
    message: String,
}

/// A tower connector that dials the plugin's unix socket, recording dial failures.
#[derive(Clone)]
struct UdsConnector {
    dial: PathBuf,
    last_failure: Arc<Mutex<Option<DialFailure>>>,
}

impl tower::Service<Uri> for UdsConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let dial = self.dial.clone();
        let slot = Arc::clone(&self.last_failure);
        Box::pin(async move {
            let result = UnixStream::connect(&dial).await;
            let record = match &result {
                Ok(_) => None,
                Err(e) => Some(DialFailure {
                    kind: e.kind(),
                    message: e.to_string(),
                }),
            };
            if let Ok(mut guard) = slot.lock() {
                *guard = record;
            }
            result.map(TokioIo::new)
        })
    }
}

/// Connection state shared by both API clients.
#[derive(Debug)]
struct Transport {
    name: String,
    endpoint: String,
    target: Result<SocketTarget, String>,
    timeout: Duration,
    channel: OnceLock<Channel>,
    last_failure: Arc<Mutex<Option<DialFailure>>>,
    /// SHA-256 of (key id, ciphertext) of recent Decrypt calls that timed out → when.
    recent_timeouts: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Transport {
    fn new(cfg: &KmsConfig) -> Self {
        Transport {
            name: cfg.name.clone(),
            endpoint: cfg.endpoint.clone(),
            target: parse_endpoint(&cfg.endpoint),
            timeout: cfg.timeout,
            channel: OnceLock::new(),
            last_failure: Arc::new(Mutex::new(None)),
            recent_timeouts: Mutex::new(HashMap::new()),
        }
    }

    fn unreachable(&self, message: String) -> KmsError {
        KmsError::Unreachable {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    /// The channel, created on first use (it needs a running tokio runtime). Dialling itself
    /// happens on the first request and again after the connection breaks.
    fn channel(&self) -> Result<Channel, KmsError> {
        let target = self
            .target
            .as_ref()
            .map_err(|m| self.unreachable(m.clone()))?;
        let channel = self.channel.get_or_init(|| {
            let connector = UdsConnector {
                dial: target.dial.clone(),
                last_failure: Arc::clone(&self.last_failure),
            };
            // The URI only supplies the :authority header (`localhost`, as upstream sets it).
            Endpoint::from_static("http://localhost")
                .connect_timeout(self.timeout)
                .connect_with_connector_lazy(connector)
        });
        Ok(channel.clone())
    }

    fn socket_display(&self) -> &str {
        match &self.target {
            Ok(t) => &t.display,
            Err(_) => &self.endpoint,
        }
    }

    /// Run one rpc with the config's deadline, mapping every failure to a [`KmsError`].
    async fn call<T, F, Fut>(&self, rpc: &'static str, f: F) -> Result<T, KmsError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_inner(rpc, f).await.map_err(|(e, _)| e)
    }

    /// [`Transport::call`], also saying whether the failure was the deadline.
    async fn call_inner<T, F, Fut>(&self, rpc: &'static str, f: F) -> Result<T, (KmsError, bool)>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let channel = self.channel().map_err(|e| (e, false))?;
        match tokio::time::timeout(self.timeout, f(channel, self.timeout)).await {
            Err(_) => Err((self.timed_out(rpc), true)),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err((self.map_status(rpc, &status), is_deadline(&status))),
        }
    }

    /// A Decrypt, unless an identical one timed out less than [`DECRYPT_TIMEOUT_MEMO`] ago.
    async fn decrypt_call<T, F, Fut>(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        f: F,
    ) -> Result<T, KmsError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let memo = memo_key(key_id, ciphertext);
        if let Some(at) = self.recent_timeout(&memo) {
            return Err(KmsError::Call {
                name: self.name.clone(),
                rpc: "Decrypt",
                message: format!(
                    "timed out after {} waiting for the plugin at {} (an identical Decrypt timed out {}s ago; \
                     it is not retried within {}s)",
                    humantime::format_duration(self.timeout),
                    self.socket_display(),
                    at.elapsed().as_secs(),
                    DECRYPT_TIMEOUT_MEMO.as_secs()
                ),
            });
        }
        match self.call_inner("Decrypt", f).await {
            Ok(v) => Ok(v),
            Err((e, timed_out)) => {
                if timed_out {
                    self.remember_timeout(memo);
                }
                Err(e)
            }
        }
    }

    fn recent_timeout(&self, memo: &[u8; 32]) -> Option<Instant> {
        let map = self.recent_timeouts.lock().ok()?;
        map.get(memo)
            .copied()
            .filter(|at| at.elapsed() < DECRYPT_TIMEOUT_MEMO)
    }

    fn remember_timeout(&self, memo: [u8; 32]) {
        if let Ok(mut map) = self.recent_timeouts.lock() {
            if map.len() >= MEMO_MAX_ENTRIES {
                map.retain(|_, at| at.elapsed() < DECRYPT_TIMEOUT_MEMO);
                if map.len() >= MEMO_MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(memo, Instant::now());
        }
    }

    fn timed_out(&self, rpc: &'static str) -> KmsError {
        KmsError::Call {
            name: self.name.clone(),
            rpc,
            message: format!(
                "timed out after {} (the provider's timeout) waiting for the plugin at {}",
                humantime::format_duration(self.timeout),
                self.socket_display()
            ),
        }
    }

    fn map_status(&self, rpc: &'static str, status: &Status) -> KmsError {
        if is_deadline(status) {
            return self.timed_out(rpc);
        }
        if matches!(status.code(), Code::Unavailable | Code::Unknown) {
            let failure = self.last_failure.lock().ok().and_then(|g| g.clone());
            if let Some(failure) = failure {
                return self.unreachable(self.describe_dial_failure(&failure));
            }
        }
        // A status with a source was made on our side from a transport error (the plugin never
        // answered): say so instead of "the plugin answered".
        if std::error::Error::source(status).is_some() {
            return KmsError::Call {
                name: self.name.clone(),
                rpc,
                message: format!(
                    "the connection to the plugin on socket {} broke during the call ({}); did the plugin exit or crash?",
                    self.socket_display(),
                    status.message()
                ),
            };
        }
        let hint = if status.code() == Code::Unimplemented {
            " (the plugin does not serve this KMS API: check the provider's apiVersion)"
        } else {
            ""
        };
        KmsError::Call {
            name: self.name.clone(),
            rpc,
            message: format!(
                "the plugin answered {:?}: {}{hint}",
                status.code(),
                if status.message().is_empty() {
                    "(no message)"
                } else {
                    status.message()
                }
            ),
        }
    }

    fn describe_dial_failure(&self, f: &DialFailure) -> String {
        let socket = self.socket_display();
        let what = match f.kind {
            io::ErrorKind::NotFound => format!("socket {socket} not found"),
            io::ErrorKind::ConnectionRefused => format!(
                "connection refused on socket {socket} (the file exists but no process is listening)"
            ),
            io::ErrorKind::PermissionDenied => format!(
                "permission denied on socket {socket} (run atrest as a user that may open it, usually root)"
            ),
            io::ErrorKind::TimedOut => format!(
                "connecting to socket {socket} timed out after {}",
                humantime::format_duration(self.timeout)
            ),
            _ => format!("cannot connect to socket {socket}"),
        };
        format!("is the KMS plugin running? {what} ({})", f.message)
    }

    fn invalid(&self, message: String) -> KmsError {
        KmsError::Invalid {
            name: self.name.clone(),
            message,
        }
    }
}

/// A Go plugin answers DeadlineExceeded; a tonic plugin enforces our `grpc-timeout` with
/// Cancelled "Timeout expired".
fn is_deadline(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded
        || (status.code() == Code::Cancelled && status.message().contains("Timeout expired"))
}

/// What identifies a Decrypt for [`DECRYPT_TIMEOUT_MEMO`] (a hash: bounded memory).
fn memo_key(key_id: &str, ciphertext: &[u8]) -> [u8; 32] {
    let digest = Sha256::new()
        .chain_update((key_id.len() as u64).to_be_bytes())
        .chain_update(key_id.as_bytes())
        .chain_update(ciphertext)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

fn request<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    // Also tell the plugin the deadline (gRPC `grpc-timeout`), as a Go client does.
    req.set_timeout(timeout);
    req
}

/// A KMS v1 (`v1beta1`) plugin. Calls Version once before the first Encrypt/Decrypt.
#[derive(Debug)]
pub struct V1Client {
    transport: Transport,
    version_checked: tokio::sync::OnceCell<()>,
}

/// A KMS v2 plugin.
#[derive(Debug)]
pub struct V2Client {
    transport: Transport,
    /// The first healthy Status version; upstream refuses a version that changes later.
    first_version: OnceLock<String>,
}

impl V1Client {
    /// Never dials: the first call connects. An unusable endpoint is reported on that call.
    pub fn new(cfg: &KmsConfig) -> Result<Self, KmsError> {
        Ok(V1Client {
            transport: Transport::new(cfg),
            version_checked: tokio::sync::OnceCell::new(),
        })
    }

    async fn version(&self) -> Result<v1::VersionResponse, KmsError> {
        let resp = self
            .transport
            .call("Version", |ch, t| async move {
                v1::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .version(request(
                        v1::VersionRequest {
                            version: V1_API_VERSION.to_string(),
                        },
                        t,
                    ))
                    .await
            })
            .await?;
        if resp.version != V1_API_VERSION {
            return Err(self.transport.invalid(format!(
                "Version answered {:?}, but only {V1_API_VERSION:?} is supported for apiVersion v1 \
                 (is this a KMS v2 plugin? then set apiVersion: v2)",
                resp.version
            )));
        }
        Ok(resp)
    }

    async fn ensure_version(&self) -> Result<(), KmsError> {
        self.version_checked
            .get_or_try_init(|| async { self.version().await.map(|_| ()) })
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl KmsService for V1Client {
    async fn status(&self) -> Result<StatusResponse, KmsError> {
        let resp = self.version().await?;
        let _ = self.version_checked.set(());
        Ok(StatusResponse {
            version: resp.version,
            healthz: "ok".to_string(),
            key_id: String::new(),
        })
    }

    async fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        self.ensure_version().await?;
        let plain = plaintext.to_vec();
        let resp = self
            .transport
            .call("Encrypt", |ch, t| async move {
                v1::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .encrypt(request(
                        v1::EncryptRequest {
                            version: V1_API_VERSION.to_string(),
                            plain,
                        },
                        t,
                    ))
                    .await
            })
            .await?;
        if resp.cipher.is_empty() {
            return Err(self
                .transport
                .invalid("Encrypt returned an empty ciphertext".to_string()));
        }
        Ok(EncryptResponse {
            ciphertext: resp.cipher,
            key_id: String::new(),
            annotations: BTreeMap::new(),
        })
    }

    async fn decrypt(&self, req: &DecryptRequest) -> Result<SecretBytes, KmsError> {
        self.ensure_version().await?;
        let cipher = req.ciphertext.clone();
        let resp = self
            .transport
            .decrypt_call("", &req.ciphertext, |ch, t| async move {
                v1::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .decrypt(request(
                        v1::DecryptRequest {
                            version: V1_API_VERSION.to_string(),
                            cipher,
                        },
                        t,
                    ))
                    .await
            })
            .await?;
        Ok(SecretBytes::new(resp.plain))
    }
}

impl V2Client {
    /// Never dials: the first call connects. An unusable endpoint is reported on that call.
    pub fn new(cfg: &KmsConfig) -> Result<Self, KmsError> {
        Ok(V2Client {
            transport: Transport::new(cfg),
            first_version: OnceLock::new(),
        })
    }

    fn check_status(&self, resp: &v2::StatusResponse) -> Result<(), KmsError> {
        let t = &self.transport;
        if resp.healthz != "ok" {
            return Err(t.invalid(format!(
                "plugin at {} is unhealthy: Status answered healthz {:?} (expected \"ok\"); check the plugin's logs and its KMS backend",
                t.socket_display(),
                resp.healthz
            )));
        }
        if !V2_API_VERSIONS.contains(&resp.version.as_str()) {
            return Err(t.invalid(format!(
                "Status answered version {:?}, but only \"v2\" and \"v2beta1\" are supported for apiVersion v2 \
                 (is this a KMS v1 plugin? then set apiVersion: v1)",
                resp.version
            )));
        }
        let first = self.first_version.get_or_init(|| resp.version.clone());
        if *first != resp.version {
            return Err(t.invalid(format!(
                "Status version changed from {first:?} to {:?} while running",
                resp.version
            )));
        }
        validate_key_id(&resp.key_id).map_err(|m| t.invalid(format!("Status: {m}")))
    }
}

/// kube-apiserver's `ValidateKeyID`: 1..=1024 bytes.
pub fn validate_key_id(key_id: &str) -> Result<(), String> {
    if key_id.is_empty() {
        return Err("the plugin returned an empty key_id".to_string());
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        return Err(format!(
            "the plugin returned a key_id of {} bytes (at most {MAX_KEY_ID_LEN} are allowed)",
            key_id.len()
        ));
    }
    Ok(())
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[async_trait::async_trait]
impl KmsService for V2Client {
    async fn status(&self) -> Result<StatusResponse, KmsError> {
        let resp = self
            .transport
            .call("Status", |ch, t| async move {
                v2::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .status(request(v2::StatusRequest {}, t))
                    .await
            })
            .await?;
        self.check_status(&resp)?;
        Ok(StatusResponse {
            version: resp.version,
            healthz: resp.healthz,
            key_id: resp.key_id,
        })
    }

    async fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        let plaintext = plaintext.to_vec();
        let resp = self
            .transport
            .call("Encrypt", |ch, t| async move {
                v2::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .encrypt(request(
                        v2::EncryptRequest {
                            plaintext,
                            uid: new_uid(),
                        },
                        t,
                    ))
                    .await
            })
            .await?;
        if resp.ciphertext.is_empty() {
            return Err(self
                .transport
                .invalid("Encrypt returned an empty ciphertext".to_string()));
        }
        validate_key_id(&resp.key_id)
            .map_err(|m| self.transport.invalid(format!("Encrypt: {m}")))?;
        Ok(EncryptResponse {
            ciphertext: resp.ciphertext,
            key_id: resp.key_id,
            annotations: resp.annotations.into_iter().collect(),
        })
    }

    async fn decrypt(&self, req: &DecryptRequest) -> Result<SecretBytes, KmsError> {
        let msg = v2::DecryptRequest {
            ciphertext: req.ciphertext.clone(),
            uid: new_uid(),
            key_id: req.key_id.clone(),
            annotations: req
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let resp = self
            .transport
            .decrypt_call(&req.key_id, &req.ciphertext, |ch, t| async move {
                v2::key_management_service_client::KeyManagementServiceClient::new(ch)
                    .decrypt(request(msg, t))
                    .await
            })
            .await?;
        Ok(SecretBytes::new(resp.plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_absolute_path() {
        let t = parse_endpoint("unix:///var/run/kms.sock").unwrap();
        assert_eq!(t.display, "/var/run/kms.sock");
        assert_eq!(t.dial, PathBuf::from("/var/run/kms.sock"));
    }

    #[test]
    fn endpoint_abstract() {
        let t = parse_endpoint("unix:///@kms-plugin").unwrap();
        assert_eq!(t.display, "@kms-plugin");
        assert_eq!(t.dial, PathBuf::from("\0kms-plugin"));
    }

    #[test]
    fn endpoint_host_only_is_rejected_with_fix() {
        let e = parse_endpoint("unix://foo.sock").unwrap_err();
        assert!(e.contains("empty socket path"), "{e}");
        assert!(e.contains("unix:///"), "{e}");
    }

    #[test]
    fn endpoint_host_and_path_uses_path_only() {
        let t = parse_endpoint("unix://ignored/tmp/a%20b.sock?x=1#f").unwrap();
        assert_eq!(t.display, "/tmp/a b.sock");
    }

    #[test]
    fn endpoint_other_scheme_and_garbage() {
        assert!(parse_endpoint("tcp://127.0.0.1:1234").is_err());
        assert!(parse_endpoint("/var/run/kms.sock").is_err());
        assert!(parse_endpoint("unix:///bad%zz").is_err());
        assert!(parse_endpoint("unix:///bad%2").is_err());
        assert!(parse_endpoint("unix:///@").is_err());
        assert!(parse_endpoint("").is_err());
        assert_eq!(
            parse_endpoint("unix:/tmp/x.sock").unwrap().display,
            "/tmp/x.sock"
        );
    }

    #[test]
    fn deadline_statuses() {
        assert!(is_deadline(&Status::deadline_exceeded("x")));
        assert!(is_deadline(&Status::cancelled("Timeout expired")));
        assert!(!is_deadline(&Status::cancelled("client went away")));
        assert!(!is_deadline(&Status::internal("boom")));
    }

    #[test]
    fn memo_key_separates_key_id_and_ciphertext() {
        assert_ne!(memo_key("ab", b"c"), memo_key("a", b"bc"));
        assert_ne!(memo_key("k", b"c1"), memo_key("k", b"c2"));
        assert_eq!(memo_key("k", b"c"), memo_key("k", b"c"));
    }

    #[test]
    fn key_id_bounds() {
        assert!(validate_key_id("").is_err());
        assert!(validate_key_id("k").is_ok());
        assert!(validate_key_id(&"k".repeat(1024)).is_ok());
        assert!(validate_key_id(&"k".repeat(1025)).is_err());
    }
}
