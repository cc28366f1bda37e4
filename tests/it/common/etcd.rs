//! A real single-member etcd (Debian's /usr/bin/etcd) per test: loopback only, random free
//! ports, a temp data dir (tmpfs when available), client-certificate TLS with certificates from
//! [`super::certs`], quiet logs in the temp dir, killed on Drop. Variants via [`EtcdOptions`].
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::certs::{CertOptions, Certs};

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
const NOT_FOUND: &str =
    "etcd not found: install Debian's etcd-server/etcd-client (scripts/test does)";
/// How long a start may take on a loaded 2-core machine before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when another process grabbed one of our ports between probe and bind.
const START_ATTEMPTS: usize = 5;

/// How the client side is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// https with `--client-cert-auth` (the kubeadm setup; the default).
    MutualTls,
    /// https, but etcd does not ask for a client certificate.
    ServerTls,
    /// Plain http (for the refused-plaintext and `--insecure-transport` tests).
    Plain,
}

/// Variants of the test etcd (Debug hides the root password).
#[derive(Clone)]
pub struct EtcdOptions {
    pub transport: Transport,
    /// Put 127.0.0.1 in the server certificate (false: only DNS localhost, to test the error).
    pub server_ip_san: bool,
    /// Serve a server certificate that expired yesterday (to test the error).
    pub server_cert_expired: bool,
    /// Enable etcd auth with user `root` and this password (harness clients log in as root).
    pub root_password: Option<String>,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("transport", &self.transport)
            .field("server_ip_san", &self.server_ip_san)
            .field("server_cert_expired", &self.server_cert_expired)
            .field(
                "root_password",
                &self.root_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            transport: Transport::MutualTls,
            server_ip_san: true,
            server_cert_expired: false,
            root_password: None,
        }
    }
}

/// A running etcd; killed (and its data dir removed) on Drop.
pub struct Etcd {
    child: Child,
    pub opts: EtcdOptions,
    pub client_port: u16,
    pub peer_port: u16,
    /// None with [`Transport::Plain`].
    pub certs: Option<Certs>,
    dir: tempfile::TempDir,
    client: tokio::sync::OnceCell<etcd_client::Client>,
}

impl Etcd {
    /// etcd with mutual TLS (client certificates required), no auth.
    pub fn start() -> Etcd {
        Etcd::start_with(EtcdOptions::default())
    }

    pub fn start_with(opts: EtcdOptions) -> Etcd {
        if !Path::new(ETCD_BIN).exists() || !Path::new(ETCDCTL_BIN).exists() {
            panic!("{NOT_FOUND}");
        }
        let dir = temp_root();
        let certs = (opts.transport != Transport::Plain).then(|| {
            Certs::generate_with(
                &dir.path().join("pki"),
                &CertOptions {
                    server_ip_san: opts.server_ip_san,
                    server_expired: opts.server_cert_expired,
                },
            )
        });
        let mut last_log = String::new();
        for attempt in 0..START_ATTEMPTS {
            let (client_port, peer_port) = (free_port(), free_port());
            let data = dir.path().join(format!("data-{attempt}"));
            let log = dir.path().join(format!("etcd-{attempt}.log"));
            let mut child = spawn_etcd(&opts, certs.as_ref(), client_port, peer_port, &data, &log);
            match wait_ready(&mut child, &opts, certs.as_ref(), client_port, &log) {
                Ok(()) => {
                    let mut etcd = Etcd {
                        child,
                        opts: opts.clone(),
                        client_port,
                        peer_port,
                        certs,
                        dir,
                        client: tokio::sync::OnceCell::new(),
                    };
                    if let Some(pw) = opts.root_password.clone() {
                        etcd.enable_auth(&pw);
                    }
                    return etcd;
                }
                Err(log_text) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = log_text;
                    if !last_log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("etcd did not start; its log:\n{}", tail(&last_log, 4000));
    }

    fn enable_auth(&mut self, root_password: &str) {
        self.etcdctl_ok_as(&["user", "add", &format!("root:{root_password}")], false);
        // `user add root` does not grant the root role in 3.4; make sure it exists and is granted.
        let _ = self.etcdctl_raw(&["role", "add", "root"], false);
        self.etcdctl_ok_as(&["user", "grant-role", "root", "root"], false);
        self.etcdctl_ok_as(&["auth", "enable"], false);
    }

    /// The client URL (`https://127.0.0.1:PORT`, or `http://` with [`Transport::Plain`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.opts.transport == Transport::Plain {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The same server under its DNS name (`https://localhost:PORT`), which the server
    /// certificate always covers.
    pub fn endpoint_localhost(&self) -> String {
        self.endpoint().replace("127.0.0.1", "localhost")
    }

    /// The temp dir holding data, logs and certificates; tests may put their own files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> &Certs {
        self.certs
            .as_ref()
            .expect("this etcd runs plain http: it has no certificates")
    }
    pub fn ca_path(&self) -> &Path {
        &self.certs().ca
    }
    pub fn cert_path(&self) -> &Path {
        &self.certs().client_cert
    }
    pub fn key_path(&self) -> &Path {
        &self.certs().client_key
    }

    /// `--endpoints --cacert --cert --key` (plus `--insecure-transport` for plain http and
    /// `--user root:PW` with auth) for the atrest binary.
    pub fn atrest_conn_args(&self) -> Vec<String> {
        let mut args = vec!["--endpoints".to_string(), self.endpoint()];
        match &self.certs {
            Some(c) => {
                for (flag, path) in [
                    ("--cacert", &c.ca),
                    ("--cert", &c.client_cert),
                    ("--key", &c.client_key),
                ] {
                    args.push(flag.to_string());
                    args.push(path.display().to_string());
                }
            }
            None => args.push("--insecure-transport".to_string()),
        }
        if let Some(pw) = &self.opts.root_password {
            args.push("--user".to_string());
            args.push(format!("root:{pw}"));
        }
        args
    }

    /// A connected client (mTLS, root login with auth), made once per Etcd and cached.
    /// An Etcd belongs to one test (one tokio runtime): do not share it across runtimes.
    pub async fn client(&self) -> etcd_client::Client {
        self.client.get_or_init(|| self.new_client()).await.clone()
    }

    /// A fresh client connection (not cached).
    pub async fn new_client(&self) -> etcd_client::Client {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(20))
            .with_timeout(Duration::from_secs(60));
        if let Some(c) = &self.certs {
            let read =
                |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            assert!(
                !self.opts.server_cert_expired,
                "no harness client for an etcd with an expired certificate"
            );
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&c.ca)))
                .domain_name("localhost");
            if self.opts.transport == Transport::MutualTls {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(&c.client_cert),
                    read(&c.client_key),
                ));
            }
            opts = opts.with_tls(tls);
        }
        if let Some(pw) = &self.opts.root_password {
            opts = opts.with_user("root", pw.clone());
        }
        etcd_client::Client::connect([self.endpoint()], Some(opts))
            .await
            .unwrap_or_else(|e| panic!("harness client connect to {}: {e}", self.endpoint()))
    }

    /// Put raw bytes; returns the revision of the write.
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> i64 {
        let resp = self
            .client()
            .await
            .put(key, value, None)
            .await
            .expect("harness put");
        resp.header().map(|h| h.revision()).unwrap_or(0)
    }

    /// Put many keys, in transactions of up to 100 puts (fast bulk loading); returns the
    /// revision after the last write.
    pub async fn put_many<K, V>(&self, kvs: impl IntoIterator<Item = (K, V)>) -> i64
    where
        K: Into<Vec<u8>>,
        V: Into<Vec<u8>>,
    {
        use etcd_client::{Txn, TxnOp};
        let mut client = self.client().await;
        let mut rev = 0;
        let mut ops = Vec::new();
        let mut iter = kvs.into_iter().peekable();
        while let Some((k, v)) = iter.next() {
            ops.push(TxnOp::put(k, v, None));
            if ops.len() == 100 || iter.peek().is_none() {
                let txn = Txn::new().and_then(std::mem::take(&mut ops));
                let resp = client.txn(txn).await.expect("harness txn put");
                rev = resp.header().map(|h| h.revision()).unwrap_or(rev);
            }
        }
        rev
    }

    /// The stored value of `key`, if any.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Option<Vec<u8>> {
        let resp = self
            .client()
            .await
            .get(key, None)
            .await
            .expect("harness get");
        resp.kvs().first().map(|kv| kv.value().to_vec())
    }

    /// The full key/value record of `key`, if any.
    pub async fn get_kv(&self, key: impl Into<Vec<u8>>) -> Option<etcd_client::KeyValue> {
        let resp = self
            .client()
            .await
            .get(key, None)
            .await
            .expect("harness get");
        resp.kvs().first().cloned()
    }

    /// The current revision of the store.
    pub async fn revision(&self) -> i64 {
        let resp = self
            .client()
            .await
            .get("\0", Some(etcd_client::GetOptions::new().with_count_only()))
            .await
            .expect("harness revision");
        resp.header().map(|h| h.revision()).unwrap_or(0)
    }

    /// Compact the history up to `rev` (physically, so it is really gone).
    pub async fn compact(&self, rev: i64) {
        self.client()
            .await
            .compact(
                rev,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .expect("harness compact");
    }

    /// `etcdctl snapshot save PATH`.
    pub fn snapshot_save(&self, path: &Path) {
        self.etcdctl_ok(&["snapshot", "save", &path.display().to_string()]);
    }

    /// Run etcdctl (ETCDCTL_API=3) against this server with the right TLS/auth flags.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_raw(args, true)
    }

    /// Like [`Etcd::etcdctl`], panicking with stderr unless it succeeds; returns stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        self.etcdctl_ok_as(args, true)
    }

    fn etcdctl_ok_as(&self, args: &[&str], as_root: bool) -> String {
        let out = self.etcdctl_raw(args, as_root);
        assert!(
            out.status.success(),
            "etcdctl {:?} failed: {}",
            redacted_args(args),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn etcdctl_raw(&self, args: &[&str], as_root: bool) -> Output {
        let root_password = if as_root {
            self.opts.root_password.as_deref()
        } else {
            None
        };
        etcdctl_command(
            &self.opts,
            self.certs.as_ref(),
            self.client_port,
            root_password,
        )
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {ETCDCTL_BIN}: {e} ({NOT_FOUND})"))
    }
}

/// etcdctl arguments fit for a failure message: the password of `user add NAME:PW`,
/// `--user NAME:PW`, `--user=NAME:PW` and `--password[=]PW` is replaced.
pub fn redacted_args(args: &[&str]) -> Vec<String> {
    let hide_after_colon = |a: &str| match a.split_once(':') {
        Some((name, _)) => format!("{name}:<redacted>"),
        None => a.to_string(),
    };
    let mut out = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| args.get(p)).copied();
        let shown = if let Some(v) = a.strip_prefix("--user=") {
            format!("--user={}", hide_after_colon(v))
        } else if a.starts_with("--password=") {
            "--password=<redacted>".to_string()
        } else if prev == Some("--password") {
            "<redacted>".to_string()
        } else if prev == Some("--user")
            || (i == 2 && args.first() == Some(&"user") && prev == Some("add"))
        {
            hide_after_colon(a)
        } else {
            a.to_string()
        };
        out.push(shown);
    }
    out
}

/// etcdctl (ETCDCTL_API=3) with endpoint, TLS and (optionally) root login flags.
fn etcdctl_command(
    opts: &EtcdOptions,
    certs: Option<&Certs>,
    client_port: u16,
    root_password: Option<&str>,
) -> Command {
    let mut cmd = Command::new(ETCDCTL_BIN);
    clean_env(&mut cmd, "ETCDCTL_");
    cmd.env("ETCDCTL_API", "3");
    let scheme = if certs.is_some() { "https" } else { "http" };
    // etcdctl cannot override the TLS server name: use the DNS name without the IP SAN.
    let host = if opts.server_ip_san {
        "127.0.0.1"
    } else {
        "localhost"
    };
    cmd.arg(format!("--endpoints={scheme}://{host}:{client_port}"))
        .arg("--dial-timeout=10s")
        .arg("--command-timeout=60s");
    if opts.server_cert_expired {
        cmd.arg("--insecure-skip-tls-verify");
    }
    if let Some(c) = certs {
        cmd.arg(format!("--cacert={}", c.ca.display()));
        if opts.transport == Transport::MutualTls {
            cmd.arg(format!("--cert={}", c.client_cert.display()))
                .arg(format!("--key={}", c.client_key.display()));
        }
    }
    if let Some(pw) = root_password {
        cmd.arg(format!("--user=root:{pw}"));
    }
    cmd.stdin(Stdio::null());
    cmd
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll until etcd serves (port open, then `etcdctl endpoint health` succeeds);
/// Err(log) if etcd exited (e.g. a port was taken meanwhile) or timed out.
fn wait_ready(
    child: &mut Child,
    opts: &EtcdOptions,
    certs: Option<&Certs>,
    client_port: u16,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client_port));
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let mut listening = false;
    let mut last_err = String::new();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("etcd exited ({status})\n{}", read_log()));
        }
        if !listening {
            listening = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        }
        if listening {
            let out = etcdctl_command(opts, certs, client_port, None)
                .args(["endpoint", "health", "--command-timeout=5s"])
                .output()
                .unwrap_or_else(|e| panic!("run {ETCDCTL_BIN}: {e} ({NOT_FOUND})"));
            if out.status.success() {
                return Ok(());
            }
            last_err = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not healthy after {START_TIMEOUT:?} on port {client_port}: {last_err}\n{}",
                read_log()
            ));
        }
        std::thread::sleep(Duration::from_millis(if listening { 50 } else { 25 }));
    }
}

fn spawn_etcd(
    opts: &EtcdOptions,
    certs: Option<&Certs>,
    client_port: u16,
    peer_port: u16,
    data: &Path,
    log: &Path,
) -> Child {
    let scheme = if certs.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new(ETCD_BIN);
    clean_env(&mut cmd, "ETCD_");
    cmd.arg("--name=default")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        .arg("--initial-cluster-state=new")
        .arg("--initial-cluster-token=atrest-test")
        // A single member elects itself after one election timeout: keep it short.
        .arg("--heartbeat-interval=50")
        .arg("--election-timeout=500")
        .arg("--logger=zap")
        .arg(format!("--log-outputs={}", log.display()))
        .arg("--log-level=warn");
    if let Some(c) = certs {
        cmd.arg(format!("--cert-file={}", c.server_cert.display()))
            .arg(format!("--key-file={}", c.server_key.display()));
        // etcd turns client-cert auth on whenever --trusted-ca-file is set.
        if opts.transport == Transport::MutualTls {
            cmd.arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", c.ca.display()));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {ETCD_BIN}: {e} ({NOT_FOUND})"))
}

/// A temp dir on tmpfs when there is one (etcd fsyncs a lot), else the default temp dir.
fn temp_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("atrest-etcd-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new()
        .prefix("atrest-etcd-")
        .tempdir()
        .expect("create temp dir")
}

/// A port the OS says is free now (another process may still take it: start retries).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Remove inherited variables with `prefix` so a developer's environment cannot change the test.
fn clean_env(cmd: &mut Command, prefix: &str) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(k);
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Path of a file in the etcd's temp dir (convenience for tests writing configs).
pub fn path_in(etcd: &Etcd, name: &str) -> PathBuf {
    etcd.dir().join(name)
}
