//! atrest-test-kms: a real KMS plugin process for tests and the demo. It serves the KMS v1
//! (`v1beta1`) and/or v2 gRPC APIs on a unix socket, exactly as a plugin on a control-plane node
//! does, with the deterministic wrap scheme of the compatibility vectors' fake plugin
//! (`testdata/vectors/README.md`, "Fake KMS plugin"):
//!
//! ```text
//! Encrypt(dek) = nonce || AES-256-GCM(kek, nonce, dek, aad)
//! nonce = SHA-256(dek)[0:12]     aad = key_id (UTF-8) for v2, empty for v1
//! ```
//!
//! so the vectors' recorded encrypted DEKs decrypt with the vectors' `kek_b64`. Decrypt reverses
//! it, so a Decrypt with another key id (v2) or a flipped byte fails.
//!
//! Usage:
//!
//! ```text
//! atrest-test-kms --socket PATH --kek-file FILE --key-id ID [--key-id-file FILE]
//!                 [--annotation KEY=BASE64VALUE ...] [--api v1|v2|both]
//!                 [--delay MS] [--decrypt-delay MS] [--fail-encrypt] [--fail-decrypt]
//!                 [--encrypt-key-id ID] [--unhealthy] [--status-version V] [--stats-file PATH]
//! ```
//!
//! - `--socket @name` listens on a Linux abstract socket (endpoint `unix:///@name`).
//! - `--annotation` values are **base64** (as in the vectors' `current_annotations`), e.g.
//!   `--annotation version.fake-kms.example.com=Mg==` returns the bytes `2`.
//! - `--key-id-file`: read at start (if it exists, it wins over `--key-id`) and on every SIGHUP,
//!   so the current key id can change while the plugin runs.
//! - `--stats-file`: a JSON file rewritten (atomically) after every call: call counters, the
//!   current key id, SIGHUP reloads, the uids received; tests assert Decrypt counts with it.
//! - SIGTERM/SIGINT: stop serving, remove the socket, exit 0. Logs go to stderr, never a secret
//!   (lengths and key ids only). `ATREST_TEST_KMS_LOG` sets the log filter (default `info`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use atrest::proto::kms_v1beta1 as v1;
use atrest::proto::kms_v2 as v2;
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bound on the uids kept in the stats file (tests look at a handful).
const MAX_RECORDED_UIDS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    V1,
    V2,
    Both,
}

/// A KMS v1/v2 test plugin on a unix socket (the vectors' fake-plugin wrap scheme).
#[derive(Debug, Parser)]
#[command(name = "atrest-test-kms", version)]
struct Args {
    /// Unix socket to listen on (a stale socket file is replaced; `@name` = abstract socket).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// File holding the raw 32-byte KEK, base64-encoded (like `kek_b64` in the vector files).
    #[arg(long, value_name = "FILE")]
    kek_file: PathBuf,
    /// The current key id (KMS v2 Status/Encrypt `key_id`).
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// Read the current key id from this file at start (if it exists) and on every SIGHUP.
    #[arg(long, value_name = "FILE")]
    key_id_file: Option<PathBuf>,
    /// Annotation returned by KMS v2 Encrypt, KEY=VALUE with VALUE base64 (repeatable).
    #[arg(long = "annotation", value_name = "KEY=BASE64", value_parser = parse_annotation)]
    annotations: Vec<(String, Vec<u8>)>,
    /// Which API(s) to serve.
    #[arg(long, value_enum, default_value = "both")]
    api: Api,
    /// Test knob: delay every answer by MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay: u64,
    /// Test knob: delay Decrypt answers (only) by MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    decrypt_delay: u64,
    /// Test knob: every Encrypt fails with an error status.
    #[arg(long)]
    fail_encrypt: bool,
    /// Test knob: every Decrypt fails with an error status.
    #[arg(long)]
    fail_decrypt: bool,
    /// Test knob: KMS v2 Encrypt answers (and wraps under) this key id instead of Status's.
    #[arg(long, value_name = "ID")]
    encrypt_key_id: Option<String>,
    /// Test knob: Status answers healthz "unhealthy: injected by --unhealthy".
    #[arg(long)]
    unhealthy: bool,
    /// Test knob: the version string Status (v2) / Version (v1) answer.
    #[arg(long, value_name = "V")]
    status_version: Option<String>,
    /// Rewrite this JSON file with call counters after every call.
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,
}

fn parse_annotation(s: &str) -> Result<(String, Vec<u8>), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("annotation {s:?} is not KEY=BASE64VALUE"))?;
    if k.is_empty() {
        return Err(format!("annotation {s:?} has an empty key"));
    }
    let value = base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|e| format!("annotation {k:?}: value is not base64 ({e}); pass e.g. {k}=Mg== for the bytes \"2\""))?;
    Ok((k.to_string(), value))
}

/// Counters written to `--stats-file`.
#[derive(Debug, Default, Serialize)]
struct Stats {
    pid: u32,
    key_id: String,
    reloads: u64,
    v1_version: u64,
    v1_encrypt: u64,
    v1_decrypt: u64,
    v2_status: u64,
    v2_encrypt: u64,
    v2_decrypt: u64,
    /// v1 + v2.
    encrypt: u64,
    decrypt: u64,
    decrypt_failed: u64,
    /// Decrypt calls per requested key id (v2).
    decrypt_key_ids: BTreeMap<String, u64>,
    /// uids of v2 Encrypt/Decrypt requests, in arrival order (the first MAX_RECORDED_UIDS).
    uids: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    V1Version,
    V1Encrypt,
    V1Decrypt,
    V2Status,
    V2Encrypt,
    V2Decrypt,
}

struct Plugin {
    kek: Aes256Gcm,
    key_id: RwLock<String>,
    key_id_file: Option<PathBuf>,
    encrypt_key_id: Option<String>,
    annotations: HashMap<String, Vec<u8>>,
    delay: Duration,
    decrypt_delay: Duration,
    fail_encrypt: bool,
    fail_decrypt: bool,
    unhealthy: bool,
    status_version: Option<String>,
    stats: Mutex<Stats>,
    stats_file: Option<PathBuf>,
}

impl Plugin {
    fn current_key_id(&self) -> String {
        self.key_id.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// `nonce || AES-256-GCM(kek, nonce, dek, aad)`, nonce = SHA-256(dek)[0:12].
    fn wrap(&self, dek: &[u8], aad: &[u8]) -> Result<Vec<u8>, Status> {
        let digest = Sha256::digest(dek);
        let nonce_bytes = digest.get(..NONCE_LEN).unwrap_or_default();
        let nonce = <&Nonce<_>>::try_from(nonce_bytes)
            .map_err(|_| Status::internal("nonce derivation failed"))?;
        let ct = self
            .kek
            .encrypt(nonce, Payload { msg: dek, aad })
            .map_err(|_| Status::internal("AES-GCM encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Status> {
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(Status::invalid_argument(format!(
                "ciphertext of {} bytes is too short (at least {} expected)",
                wrapped.len(),
                NONCE_LEN + TAG_LEN
            )));
        }
        let (nonce_bytes, ct) = wrapped.split_at(NONCE_LEN);
        let nonce =
            <&Nonce<_>>::try_from(nonce_bytes).map_err(|_| Status::internal("bad nonce length"))?;
        self.kek
            .decrypt(nonce, Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| {
                Status::invalid_argument(
                    "ciphertext does not verify under this plugin's KEK and the given key id \
                     (wrong key id, another KEK, or tampered)",
                )
            })
    }

    async fn pause(&self, rpc: Rpc) {
        let mut d = self.delay;
        if matches!(rpc, Rpc::V1Decrypt | Rpc::V2Decrypt) {
            d += self.decrypt_delay;
        }
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Count a call (and its uid), then rewrite the stats file.
    fn record(&self, rpc: Rpc, uid: Option<&str>, decrypt_key_id: Option<&str>, ok: bool) {
        let Ok(mut s) = self.stats.lock() else {
            return;
        };
        match rpc {
            Rpc::V1Version => s.v1_version += 1,
            Rpc::V1Encrypt => {
                s.v1_encrypt += 1;
                s.encrypt += 1;
            }
            Rpc::V1Decrypt => {
                s.v1_decrypt += 1;
                s.decrypt += 1;
            }
            Rpc::V2Status => s.v2_status += 1,
            Rpc::V2Encrypt => {
                s.v2_encrypt += 1;
                s.encrypt += 1;
            }
            Rpc::V2Decrypt => {
                s.v2_decrypt += 1;
                s.decrypt += 1;
            }
        }
        if matches!(rpc, Rpc::V1Decrypt | Rpc::V2Decrypt) && !ok {
            s.decrypt_failed += 1;
        }
        if let Some(k) = decrypt_key_id {
            *s.decrypt_key_ids.entry(k.to_string()).or_default() += 1;
        }
        if let Some(uid) = uid
            && s.uids.len() < MAX_RECORDED_UIDS
        {
            s.uids.push(uid.to_string());
        }
        s.key_id = self.current_key_id();
        self.write_stats(&s);
    }

    fn write_stats(&self, s: &Stats) {
        let Some(path) = &self.stats_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let result = serde_json::to_vec_pretty(s)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::error!("cannot write stats file {}: {e}", path.display());
        }
    }

    /// SIGHUP: re-read `--key-id-file`; keep the old id when the file is missing or empty.
    fn reload_key_id(&self) {
        let Some(path) = &self.key_id_file else {
            tracing::info!("SIGHUP: no --key-id-file, key id unchanged");
            return;
        };
        match read_key_id_file(path) {
            Ok(id) => {
                let old = self.current_key_id();
                if let Ok(mut g) = self.key_id.write() {
                    *g = id.clone();
                }
                tracing::info!("SIGHUP: key id {old:?} -> {id:?} (from {})", path.display());
            }
            Err(e) => tracing::error!("SIGHUP: {e}; key id unchanged"),
        }
        if let Ok(mut s) = self.stats.lock() {
            s.reloads += 1;
            s.key_id = self.current_key_id();
            self.write_stats(&s);
        }
    }

    fn injected(rpc: &str) -> Status {
        Status::internal(format!(
            "{rpc} failed: injected by --fail-{}",
            rpc.to_lowercase()
        ))
    }
}

fn read_key_id_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key id file {}: {e}", path.display()))?;
    let id = text.trim();
    if id.is_empty() {
        return Err(format!("key id file {} is empty", path.display()));
    }
    Ok(id.to_string())
}

#[derive(Clone)]
struct V1Service(Arc<Plugin>);
#[derive(Clone)]
struct V2Service(Arc<Plugin>);

fn check_v1_version(version: &str) -> Result<(), Status> {
    if version == "v1beta1" {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unsupported version {version:?}, only \"v1beta1\" is supported"
        )))
    }
}

#[tonic::async_trait]
impl v1::key_management_service_server::KeyManagementService for V1Service {
    async fn version(
        &self,
        _req: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        let p = &self.0;
        p.pause(Rpc::V1Version).await;
        p.record(Rpc::V1Version, None, None, true);
        tracing::info!("v1 Version");
        Ok(Response::new(v1::VersionResponse {
            version: p
                .status_version
                .clone()
                .unwrap_or_else(|| "v1beta1".to_string()),
            runtime_name: "atrest-test-kms".to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn decrypt(
        &self,
        req: Request<v1::DecryptRequest>,
    ) -> Result<Response<v1::DecryptResponse>, Status> {
        let p = &self.0;
        let req = req.into_inner();
        p.pause(Rpc::V1Decrypt).await;
        let result = check_v1_version(&req.version).and_then(|()| {
            if p.fail_decrypt {
                Err(Plugin::injected("Decrypt"))
            } else {
                p.unwrap(&req.cipher, b"")
            }
        });
        p.record(Rpc::V1Decrypt, None, None, result.is_ok());
        tracing::info!(
            "v1 Decrypt cipher_len={} -> {}",
            req.cipher.len(),
            outcome(&result)
        );
        let plain = result?;
        Ok(Response::new(v1::DecryptResponse {
            plain: plain.to_vec(),
        }))
    }

    async fn encrypt(
        &self,
        req: Request<v1::EncryptRequest>,
    ) -> Result<Response<v1::EncryptResponse>, Status> {
        let p = &self.0;
        let req = req.into_inner();
        let plain = Zeroizing::new(req.plain);
        p.pause(Rpc::V1Encrypt).await;
        let result = check_v1_version(&req.version).and_then(|()| {
            if p.fail_encrypt {
                Err(Plugin::injected("Encrypt"))
            } else {
                p.wrap(&plain, b"")
            }
        });
        p.record(Rpc::V1Encrypt, None, None, result.is_ok());
        tracing::info!(
            "v1 Encrypt plain_len={} -> {}",
            plain.len(),
            outcome(&result)
        );
        Ok(Response::new(v1::EncryptResponse { cipher: result? }))
    }
}

#[tonic::async_trait]
impl v2::key_management_service_server::KeyManagementService for V2Service {
    async fn status(
        &self,
        _req: Request<v2::StatusRequest>,
    ) -> Result<Response<v2::StatusResponse>, Status> {
        let p = &self.0;
        p.pause(Rpc::V2Status).await;
        p.record(Rpc::V2Status, None, None, true);
        let key_id = p.current_key_id();
        let healthz = if p.unhealthy {
            "unhealthy: injected by --unhealthy".to_string()
        } else {
            "ok".to_string()
        };
        tracing::info!("v2 Status -> healthz={healthz:?} key_id={key_id:?}");
        Ok(Response::new(v2::StatusResponse {
            version: p.status_version.clone().unwrap_or_else(|| "v2".to_string()),
            healthz,
            key_id,
        }))
    }

    async fn decrypt(
        &self,
        req: Request<v2::DecryptRequest>,
    ) -> Result<Response<v2::DecryptResponse>, Status> {
        let p = &self.0;
        let req = req.into_inner();
        p.pause(Rpc::V2Decrypt).await;
        let result = if p.fail_decrypt {
            Err(Plugin::injected("Decrypt"))
        } else {
            p.unwrap(&req.ciphertext, req.key_id.as_bytes())
        };
        p.record(
            Rpc::V2Decrypt,
            Some(&req.uid),
            Some(&req.key_id),
            result.is_ok(),
        );
        tracing::info!(
            "v2 Decrypt uid={} key_id={:?} ciphertext_len={} annotations={} -> {}",
            req.uid,
            req.key_id,
            req.ciphertext.len(),
            req.annotations.len(),
            outcome(&result)
        );
        let plain = result?;
        Ok(Response::new(v2::DecryptResponse {
            plaintext: plain.to_vec(),
        }))
    }

    async fn encrypt(
        &self,
        req: Request<v2::EncryptRequest>,
    ) -> Result<Response<v2::EncryptResponse>, Status> {
        let p = &self.0;
        let req = req.into_inner();
        let plain = Zeroizing::new(req.plaintext);
        p.pause(Rpc::V2Encrypt).await;
        let key_id = p
            .encrypt_key_id
            .clone()
            .unwrap_or_else(|| p.current_key_id());
        let result = if p.fail_encrypt {
            Err(Plugin::injected("Encrypt"))
        } else {
            p.wrap(&plain, key_id.as_bytes())
        };
        p.record(Rpc::V2Encrypt, Some(&req.uid), None, result.is_ok());
        tracing::info!(
            "v2 Encrypt uid={} plaintext_len={} -> key_id={key_id:?} {}",
            req.uid,
            plain.len(),
            outcome(&result)
        );
        Ok(Response::new(v2::EncryptResponse {
            ciphertext: result?,
            key_id,
            annotations: p.annotations.clone(),
        }))
    }
}

/// "ok (N bytes)" or the error, for logs (never the bytes).
fn outcome<T: AsRef<[u8]>>(r: &Result<T, Status>) -> String {
    match r {
        Ok(b) => format!("ok ({} bytes)", b.as_ref().len()),
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

fn load_kek(path: &Path) -> Result<Aes256Gcm, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read KEK file {}: {e}", path.display()))?,
    );
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| {
                format!(
                    "KEK file {}: not base64 ({e}); it must hold the raw 32-byte key, base64-encoded",
                    path.display()
                )
            })?,
    );
    if raw.len() != 32 {
        return Err(format!(
            "KEK file {}: decodes to {} bytes, but an AES-256 KEK is 32 bytes",
            path.display(),
            raw.len()
        ));
    }
    Aes256Gcm::new_from_slice(&raw).map_err(|_| "invalid KEK length".to_string())
}

/// Where to listen: a filesystem path, or (`@name`) a Linux abstract socket.
fn listen_target(socket: &Path) -> (PathBuf, bool) {
    let s = socket.as_os_str().to_string_lossy();
    match s.strip_prefix('@') {
        Some(name) => (PathBuf::from(format!("\0{name}")), true),
        None => (socket.to_path_buf(), false),
    }
}

/// Remove a leftover socket file from a previous run; refuse anything else.
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another process is already listening on {}",
            path.display()
        ));
    }
    std::fs::remove_file(path)
        .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))
}

async fn run(args: Args) -> Result<(), String> {
    let kek = load_kek(&args.kek_file)?;
    let mut key_id = args.key_id.clone();
    if let Some(f) = &args.key_id_file
        && f.exists()
    {
        key_id = read_key_id_file(f)?;
    }
    if key_id.is_empty() {
        return Err("--key-id must not be empty".to_string());
    }
    let plugin = Arc::new(Plugin {
        kek,
        key_id: RwLock::new(key_id.clone()),
        key_id_file: args.key_id_file.clone(),
        encrypt_key_id: args.encrypt_key_id.clone(),
        annotations: args.annotations.iter().cloned().collect(),
        delay: Duration::from_millis(args.delay),
        decrypt_delay: Duration::from_millis(args.decrypt_delay),
        fail_encrypt: args.fail_encrypt,
        fail_decrypt: args.fail_decrypt,
        unhealthy: args.unhealthy,
        status_version: args.status_version.clone(),
        stats: Mutex::new(Stats {
            pid: std::process::id(),
            key_id: key_id.clone(),
            ..Stats::default()
        }),
        stats_file: args.stats_file.clone(),
    });

    // Signal handlers before the socket appears: whoever waits for the socket may signal us.
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot install signal handler: {e}"));
    let mut sighup = sig(SignalKind::hangup())?;
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sigint = sig(SignalKind::interrupt())?;

    if let Ok(s) = plugin.stats.lock() {
        plugin.write_stats(&s);
    }

    let (bind_path, is_abstract) = listen_target(&args.socket);
    if !is_abstract {
        remove_stale_socket(&bind_path)?;
    }
    let listener = UnixListener::bind(&bind_path)
        .map_err(|e| format!("cannot listen on {}: {e}", args.socket.display()))?;
    if !is_abstract {
        std::fs::set_permissions(&bind_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod 0600 {}: {e}", bind_path.display()))?;
    }
    tracing::info!(
        "serving KMS {} on {} (key id {key_id:?}, {} annotations)",
        match args.api {
            Api::V1 => "v1",
            Api::V2 => "v2",
            Api::Both => "v1+v2",
        },
        args.socket.display(),
        args.annotations.len()
    );

    let reloader = Arc::clone(&plugin);
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            reloader.reload_key_id();
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };

    let v1 = matches!(args.api, Api::V1 | Api::Both).then(|| {
        v1::key_management_service_server::KeyManagementServiceServer::new(V1Service(Arc::clone(
            &plugin,
        )))
    });
    let v2 = matches!(args.api, Api::V2 | Api::Both).then(|| {
        v2::key_management_service_server::KeyManagementServiceServer::new(V2Service(Arc::clone(
            &plugin,
        )))
    });
    let served = tonic::transport::Server::builder()
        .add_optional_service(v1)
        .add_optional_service(v2)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    if !is_abstract {
        let _ = std::fs::remove_file(&bind_path);
    }
    served.map_err(|e| format!("serving on {}: {e}", args.socket.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATREST_TEST_KMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atrest-test-kms: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_values_are_base64() {
        let (k, v) = parse_annotation("version.fake-kms.example.com=Mg==").unwrap();
        assert_eq!(k, "version.fake-kms.example.com");
        assert_eq!(v, b"2");
        assert!(parse_annotation("novalue").is_err());
        assert!(parse_annotation("k=not base64!").is_err());
        assert!(parse_annotation("=Mg==").is_err());
    }
}
