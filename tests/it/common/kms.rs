//! Real KMS plugin processes for tests: starts the `atrest-test-kms` binary on a unix socket in
//! a temp dir, waits for the socket, switches its key id (SIGHUP), reads its call counters
//! (stats file), and kills it on Drop. Also builds the matching `KmsConfig` / YAML provider entry.
//!
//! ```ignore
//! let plugin = KmsPlugin::builder().key_id("key-a").start();
//! let cfg = plugin.kms_config("my-kms", KmsApiVersion::V2);
//! plugin.set_key_id("key-b");            // visible in Status once this returns
//! assert_eq!(plugin.stats().decrypt, 1);
//! ```
use atrest::config::{KmsApiVersion, KmsConfig};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for a plugin to come up / react (generous: a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// The plugin's `--stats-file` (see `src/bin/atrest-test-kms.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginStats {
    pub pid: u32,
    pub key_id: String,
    pub reloads: u64,
    pub v1_version: u64,
    pub v1_encrypt: u64,
    pub v1_decrypt: u64,
    pub v2_status: u64,
    pub v2_encrypt: u64,
    pub v2_decrypt: u64,
    pub encrypt: u64,
    pub decrypt: u64,
    pub decrypt_failed: u64,
    pub decrypt_key_ids: BTreeMap<String, u64>,
    pub uids: Vec<String>,
}

/// A fresh random KEK, base64 (the `--kek-file` format).
pub fn random_kek_b64() -> String {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("getrandom");
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A random suffix for names (abstract sockets, key ids).
pub fn random_suffix() -> String {
    format!("{:016x}", getrandom::u64().expect("getrandom"))
}

#[derive(Debug, Clone)]
pub struct KmsPluginBuilder {
    kek_b64: String,
    key_id: String,
    api: String,
    annotations: Vec<(String, String)>,
    extra: Vec<String>,
    socket: Option<PathBuf>,
    abstract_name: Option<String>,
}

impl KmsPluginBuilder {
    /// KEK as base64 of 32 bytes (default: random).
    pub fn kek_b64(mut self, kek: &str) -> Self {
        self.kek_b64 = kek.to_string();
        self
    }
    /// Initial current key id (default `key-1`).
    pub fn key_id(mut self, id: &str) -> Self {
        self.key_id = id.to_string();
        self
    }
    /// `v1`, `v2` or `both` (default `both`).
    pub fn api(mut self, api: &str) -> Self {
        self.api = api.to_string();
        self
    }
    /// An Encrypt annotation; `value_b64` is base64 (as the plugin's flag takes it).
    pub fn annotation(mut self, key: &str, value_b64: &str) -> Self {
        self.annotations
            .push((key.to_string(), value_b64.to_string()));
        self
    }
    /// Extra raw flags (`--delay`, `--fail-decrypt`, `--encrypt-key-id X`, ...).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }
    /// Listen on this socket path instead of one in the plugin's own temp dir (e.g. to restart
    /// a plugin on the same socket).
    pub fn socket(mut self, path: &Path) -> Self {
        self.socket = Some(path.to_path_buf());
        self
    }
    /// Listen on the Linux abstract socket `@name` (endpoint `unix:///@name`).
    pub fn abstract_socket(mut self, name: &str) -> Self {
        self.abstract_name = Some(name.to_string());
        self
    }

    /// Start the plugin and wait until it serves. Panics (with the plugin's log) on failure.
    pub fn start(self) -> KmsPlugin {
        let dir = tempfile::tempdir().expect("tempdir for KMS plugin");
        let kek_file = dir.path().join("kek.b64");
        write_private(&kek_file, self.kek_b64.as_bytes());
        let key_id_file = dir.path().join("key-id");
        std::fs::write(&key_id_file, &self.key_id).expect("write key id file");
        let stats_file = dir.path().join("stats.json");
        let log_file = dir.path().join("plugin.log");
        let (socket_arg, socket, endpoint) = match (&self.abstract_name, &self.socket) {
            (Some(name), _) => (format!("@{name}"), None, format!("unix:///@{name}")),
            (None, Some(p)) => (
                p.display().to_string(),
                Some(p.clone()),
                format!("unix://{}", p.display()),
            ),
            (None, None) => {
                let p = dir.path().join("kms.sock");
                (
                    p.display().to_string(),
                    Some(p.clone()),
                    format!("unix://{}", p.display()),
                )
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest-test-kms"));
        cmd.arg("--socket")
            .arg(&socket_arg)
            .arg("--kek-file")
            .arg(&kek_file)
            .arg("--key-id")
            .arg(&self.key_id)
            .arg("--key-id-file")
            .arg(&key_id_file)
            .arg("--stats-file")
            .arg(&stats_file)
            .arg("--api")
            .arg(&self.api);
        for (k, v) in &self.annotations {
            cmd.arg("--annotation").arg(format!("{k}={v}"));
        }
        cmd.args(&self.extra);
        let log = std::fs::File::create(&log_file).expect("plugin log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn atrest-test-kms");
        let mut plugin = KmsPlugin {
            child: Some(child),
            dir,
            socket,
            endpoint,
            stats_file,
            key_id_file,
            log_file,
        };
        plugin.wait_ready();
        plugin
    }
}

/// A running `atrest-test-kms` process (killed on Drop).
pub struct KmsPlugin {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The socket file (None for an abstract socket).
    pub socket: Option<PathBuf>,
    /// `unix:///...` as an EncryptionConfiguration would name it.
    pub endpoint: String,
    pub stats_file: PathBuf,
    pub key_id_file: PathBuf,
    pub log_file: PathBuf,
}

impl KmsPlugin {
    pub fn builder() -> KmsPluginBuilder {
        KmsPluginBuilder {
            kek_b64: random_kek_b64(),
            key_id: "key-1".to_string(),
            api: "both".to_string(),
            annotations: Vec::new(),
            extra: Vec::new(),
            socket: None,
            abstract_name: None,
        }
    }

    /// A builder loaded with a vector file's `fake_kms_plugin` header (KEK, current key id and
    /// annotations, API version), e.g. `testdata/vectors/kmsv2.json`.
    pub fn builder_for_vectors(vector_file: &Path) -> KmsPluginBuilder {
        let text = std::fs::read_to_string(vector_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", vector_file.display()));
        let v: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
        let fake = &v["fake_kms_plugin"];
        let mut b = Self::builder()
            .kek_b64(fake["kek_b64"].as_str().expect("kek_b64"))
            .api(fake["api_version"].as_str().unwrap_or("both"));
        if let Some(id) = fake["current_key_id"].as_str() {
            b = b.key_id(id);
        }
        if let Some(ann) = fake["current_annotations"].as_object() {
            for (k, val) in ann {
                b = b.annotation(k, val.as_str().expect("annotation value"));
            }
        }
        b
    }

    /// The plugin's private temp dir (removed on Drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `kms` provider config pointing at this plugin (timeout 10s: a loaded machine).
    pub fn kms_config(&self, name: &str, api: KmsApiVersion) -> KmsConfig {
        self.kms_config_with_timeout(name, api, Duration::from_secs(10))
    }

    pub fn kms_config_with_timeout(
        &self,
        name: &str,
        api: KmsApiVersion,
        timeout: Duration,
    ) -> KmsConfig {
        KmsConfig {
            api_version: api,
            name: name.to_string(),
            endpoint: self.endpoint.clone(),
            timeout,
            cachesize: None,
        }
    }

    /// The provider as an EncryptionConfiguration list item (`- kms: ...`), each line prefixed
    /// by `indent` spaces, for building config files in tests.
    pub fn provider_yaml(&self, name: &str, api_version: &str, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}- kms:\n{pad}    apiVersion: {api_version}\n{pad}    name: {name}\n{pad}    endpoint: {}\n{pad}    timeout: 10s\n",
            self.endpoint
        )
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The plugin's stderr so far (for assertion messages; it never contains secrets).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The latest stats file.
    pub fn stats(&self) -> PluginStats {
        // The plugin writes it atomically (tmp + rename), so a read never sees half a file.
        let text = std::fs::read_to_string(&self.stats_file)
            .unwrap_or_else(|e| panic!("read plugin stats {}: {e}", self.stats_file.display()));
        serde_json::from_str(&text).expect("plugin stats JSON")
    }

    /// Make `id` the current key id (writes `--key-id-file`, sends SIGHUP) and wait until the
    /// plugin has taken it.
    pub fn set_key_id(&self, id: &str) {
        let before = self.stats().reloads;
        std::fs::write(&self.key_id_file, id).expect("write key id file");
        self.signal(nix::sys::signal::Signal::SIGHUP);
        self.wait_for("the SIGHUP reload", || {
            let s = self.stats();
            s.reloads > before && s.key_id == id
        });
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.pid().expect("plugin is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        nix::sys::signal::kill(pid, sig).expect("signal plugin");
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().expect("plugin is running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for plugin") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("KMS plugin did not exit on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crashed plugin: the socket file stays behind).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "atrest-test-kms exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            let up = match &self.socket {
                Some(p) => p.exists() && self.stats_file.exists(),
                // Abstract sockets have no file: the "serving" log line says it is bound.
                None => self.log().contains("serving KMS"),
            };
            if up {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "atrest-test-kms did not create its socket within {WAIT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Poll `cond` until true or panic after a generous timeout.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; plugin log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KmsPlugin {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).expect("write file");
}
