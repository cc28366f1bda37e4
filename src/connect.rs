//! Connecting to a live etcd the way etcdctl does: endpoints, mTLS files, user/password,
//! timeouts, refusing plain-text transport unless asked, and reading kube-apiserver's own flags
//! from its static pod manifest. Errors say which step failed (DNS, TCP, TLS handshake,
//! authentication, permission) and what to do about it.
//!
//! etcd-client reports every failure as a gRPC status whose source chain holds the real cause
//! (hyper, rustls, io). [`describe_error`] turns that chain into one actionable sentence; the
//! patterns it looks for were taken from real failures against etcd 3.4 (see tests/it/connect.rs).
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest gRPC response atrest accepts (etcd-client's default is 4 MiB, smaller than one
/// page of large values). The etcd source halves its page when a page is larger still.
pub const MAX_RESPONSE_BYTES: usize = 128 << 20;

/// Everything needed to dial etcd, after flags, `ETCDCTL_*` variables and the apiserver
/// manifest have been merged (explicit flags win).
#[derive(Clone, Default)]
pub struct ConnectOptions {
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `name`, or `name:password` like etcdctl (used as is when `password` is set).
    pub user: Option<String>,
    /// Never printed (see the Debug impl).
    pub password: Option<String>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    /// Allow `http://` endpoints.
    pub insecure_transport: bool,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoints", &self.endpoints)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user.as_deref().map(user_name))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dial_timeout", &self.dial_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("insecure_transport", &self.insecure_transport)
            .finish()
    }
}

/// The etcd-related flags of a kube-apiserver, read from its static pod manifest (or a plain
/// list of flags). Every field is None when the flag is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiserverFlags {
    pub etcd_servers: Option<Vec<String>>,
    pub etcd_cafile: Option<PathBuf>,
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_keyfile: Option<PathBuf>,
    pub etcd_prefix: Option<String>,
    pub encryption_provider_config: Option<PathBuf>,
}

/// A connection failure, classified so the message can say what to do. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad or missing flags (no endpoint, http without --insecure-transport, --cert without --key).
    #[error("{0}")]
    Usage(String),
    /// Anything not classified below.
    #[error("{0}")]
    Failed(String),
    /// A certificate/key file could not be read or is not PEM.
    #[error("cannot use {flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The apiserver manifest could not be read or understood.
    #[error("cannot read kube-apiserver manifest {}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    /// The endpoint's host name does not resolve.
    #[error("{0}")]
    Dns(String),
    /// TCP connection refused / timed out.
    #[error("{0}")]
    Unreachable(String),
    /// TLS handshake failure: unknown CA, name/IP SAN mismatch, client certificate missing or
    /// rejected, plain http on the other side.
    #[error("{0}")]
    Tls(String),
    /// Wrong user or password.
    #[error("{0}")]
    Auth(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Permission(String),
}

/// What [`describe_error`] needs to know about how the connection was made.
#[derive(Clone, Debug, Default)]
pub struct ErrorContext {
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub user: Option<String>,
    pub dial_timeout: Duration,
}

impl ErrorContext {
    fn from_options(opts: &ConnectOptions, endpoints: &[String]) -> Self {
        ErrorContext {
            endpoints: endpoints.to_vec(),
            cacert: opts.cacert.clone(),
            cert: opts.cert.clone(),
            user: opts.user.as_deref().map(|u| user_name(u).to_string()),
            dial_timeout: opts.dial_timeout,
        }
    }

    fn endpoints_text(&self) -> String {
        self.endpoints.join(",")
    }
}

/// Dial etcd and prove the connection works (a status call within `dial_timeout`), so TLS
/// and authentication failures surface here with a clear message. Permission to read a prefix
/// is checked by the first range (see [`describe_error`]).
pub async fn connect(opts: &ConnectOptions) -> Result<etcd_client::Client, ConnectError> {
    let endpoints = normalize_endpoints(&opts.endpoints, opts.insecure_transport)?;
    let tls_wanted = endpoints.iter().all(|e| e.starts_with("https://"));
    let ctx = ErrorContext::from_options(opts, &endpoints);

    let mut options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(non_zero(opts.dial_timeout, Duration::from_secs(2)))
        .with_timeout(non_zero(opts.command_timeout, Duration::from_secs(30)))
        // Long scans and rotations outlive etcd's simple-token TTL (5 min by default).
        .with_auto_token_refresh(true);
    if tls_wanted {
        options = options.with_tls(tls_options(opts)?);
    } else if opts.cacert.is_some() || opts.cert.is_some() || opts.key.is_some() {
        return Err(ConnectError::Usage(format!(
            "--cacert/--cert/--key were given but the endpoints ({}) are plain http://: use https:// endpoints",
            ctx.endpoints_text()
        )));
    }
    if let Some((name, password)) = credentials(opts)? {
        options = options.with_user(name, password);
    }

    let dial = non_zero(opts.dial_timeout, Duration::from_secs(2));
    if endpoints.len() == 1 {
        return match probe(endpoints.clone(), options, dial).await {
            Ok(client) => Ok(client),
            Err(e) => Err(e.describe(&ctx).await),
        };
    }
    // etcd-client balances over all endpoints and fails a request when the member it picked is
    // down; etcdctl tolerates dead members. Probe each endpoint and keep those that answer.
    let mut probes = tokio::task::JoinSet::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let (ep, options) = (ep.clone(), options.clone());
        probes.spawn(async move { (i, probe(vec![ep], options, dial).await) });
    }
    let mut results: Vec<(usize, Result<etcd_client::Client, ProbeError>)> = Vec::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let mut live = Vec::new();
    let mut failures: Vec<ConnectError> = Vec::new();
    for (i, r) in results {
        let Some(ep) = endpoints.get(i) else { continue };
        match r {
            Ok(_) => live.push(ep.clone()),
            Err(e) => {
                let one = ErrorContext {
                    endpoints: vec![ep.clone()],
                    ..ctx.clone()
                };
                failures.push(e.describe(&one).await);
            }
        }
    }
    if live.is_empty() {
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        let each: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        return Err(ConnectError::Failed(format!(
            "no etcd endpoint answered: {}",
            each.join("; ")
        )));
    }
    for f in &failures {
        tracing::warn!("skipping an etcd endpoint: {f}");
    }
    let live_ctx = ErrorContext {
        endpoints: live.clone(),
        ..ctx.clone()
    };
    match probe(live, options, dial).await {
        Ok(client) => Ok(client),
        Err(e) => Err(e.describe(&live_ctx).await),
    }
}

/// Why one connection attempt failed.
enum ProbeError {
    Etcd(etcd_client::Error),
    Timeout(Duration),
}

impl ProbeError {
    async fn describe(&self, ctx: &ErrorContext) -> ConnectError {
        match self {
            ProbeError::Etcd(e) => {
                let described = describe_error(e, ctx, "connect");
                if matches!(described, ConnectError::Tls(_))
                    && looks_like_closed_after_handshake(&error_chain_text(e))
                    && let Some(plain) = answers_plain_http(ctx).await
                {
                    return plain;
                }
                described
            }
            ProbeError::Timeout(dial) => ConnectError::Unreachable(format!(
                "no answer from etcd at {} within --dial-timeout {}: is etcd listening there and \
                 reachable (firewall, port)? On a slow network raise --dial-timeout",
                ctx.endpoints_text(),
                humantime::format_duration(*dial)
            )),
        }
    }
}

/// A TLS server that rejects our client certificate and a plain-http server that drops a
/// ClientHello look the same from the handshake (the connection is closed or reset), and
/// which one answers depends on timing. Tell them apart by asking the same address over plain
/// http: an unauthenticated status call, no credentials, nothing read. `Some` when it answers.
async fn answers_plain_http(ctx: &ErrorContext) -> Option<ConnectError> {
    let plain: Vec<String> = ctx
        .endpoints
        .iter()
        .filter_map(|e| {
            e.strip_prefix("https://")
                .map(|rest| format!("http://{rest}"))
        })
        .collect();
    if plain.is_empty() {
        return None;
    }
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(non_zero(ctx.dial_timeout, Duration::from_secs(2)));
    let dial = non_zero(ctx.dial_timeout, Duration::from_secs(2)).min(Duration::from_secs(5));
    probe(plain, options, dial).await.ok()?;
    Some(ConnectError::Tls(format!(
        "TLS handshake with {} failed: the server does not speak TLS there (it answers plain \
         http); if that is intended, use http:// with --insecure-transport (never in production)",
        ctx.endpoints_text()
    )))
}

/// Connect (and log in) and make one status call, all within `dial`.
async fn probe(
    endpoints: Vec<String>,
    options: etcd_client::ConnectOptions,
    dial: Duration,
) -> Result<etcd_client::Client, ProbeError> {
    let attempt = async {
        let mut client = etcd_client::Client::connect(&endpoints, Some(options)).await?;
        client.status().await?;
        Ok::<_, etcd_client::Error>(client)
    };
    match tokio::time::timeout(dial, attempt).await {
        Ok(r) => r.map_err(ProbeError::Etcd),
        Err(_) => Err(ProbeError::Timeout(dial)),
    }
}

/// A KV client of `client` that accepts responses up to [`MAX_RESPONSE_BYTES`].
pub fn kv_client(client: &etcd_client::Client) -> etcd_client::KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// Classify an etcd-client error into an actionable [`ConnectError`]. `doing` names the
/// operation for the generic case (e.g. "connect", "range /registry/").
pub fn describe_error(err: &etcd_client::Error, ctx: &ErrorContext, doing: &str) -> ConnectError {
    let eps = ctx.endpoints_text();
    let detail = error_chain_text(err);
    let message = match err {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    };
    let code = match err {
        etcd_client::Error::GRpcStatus(s) => Some(s.code()),
        _ => None,
    };

    // Server-side answers first: they are definitive.
    if message.contains("authentication failed") || message.contains("invalid user ID or password")
    {
        let who = ctx.user.as_deref().unwrap_or("(none)");
        return ConnectError::Auth(format!(
            "etcd at {eps} rejected the login of user {who:?}: wrong user name or password \
             (check --user/--password or ETCDCTL_USER/ETCDCTL_PASSWORD)"
        ));
    }
    if code == Some(tonic::Code::PermissionDenied)
        || message.contains("permission denied")
        || message.contains("user name is empty")
    {
        return ConnectError::Permission(match &ctx.user {
            Some(u) => format!(
                "etcd at {eps} denied {doing} to user {u:?} (etcdserver: {}): grant the user's role \
                 read permission on the prefix (etcdctl role grant-permission ROLE read PREFIX --prefix)",
                message.trim_start_matches("etcdserver: ")
            ),
            None => format!(
                "etcd at {eps} denied {doing}: authentication is enabled and no user was given; pass \
                 --user NAME:PASSWORD, or a client certificate whose CN is an etcd user with read \
                 permission on the prefix"
            ),
        });
    }

    // Transport failures: the cause is in the source chain.
    if detail.contains("dns error") || detail.contains("failed to lookup address") {
        return ConnectError::Dns(format!(
            "cannot resolve the host name of etcd endpoint {eps}: {}; check --endpoints",
            last_cause(err)
        ));
    }
    if detail.contains("ConnectionRefused") || detail.contains("Connection refused") {
        return ConnectError::Unreachable(format!(
            "connection refused by {eps}: is etcd listening on {}? (check --endpoints host and port; \
             kubeadm's etcd listens on 2379)",
            hosts_text(&ctx.endpoints)
        ));
    }
    if detail.contains("tcp connect error")
        && (detail.contains("TimedOut") || detail.contains("timed out"))
    {
        return ConnectError::Unreachable(format!(
            "timed out connecting to {eps} (--dial-timeout {}): is etcd listening on {} and is the \
             port open through firewalls?",
            humantime::format_duration(ctx.dial_timeout),
            hosts_text(&ctx.endpoints)
        ));
    }
    if let Some(tls) = describe_tls(&detail, &message, ctx) {
        return ConnectError::Tls(tls);
    }
    if code == Some(tonic::Code::DeadlineExceeded)
        || (code == Some(tonic::Code::Cancelled) && message.contains("Timeout expired"))
    {
        return ConnectError::Failed(format!(
            "etcd at {eps} did not answer in time ({doing}: {message}): raise --command-timeout, \
             or lower --page-size if pages are large"
        ));
    }
    if code == Some(tonic::Code::Unavailable) {
        return ConnectError::Failed(format!("etcd at {eps} is unavailable ({doing}): {message}"));
    }
    ConnectError::Failed(format!("etcd at {eps}: {doing} failed: {err}"))
}

/// TLS-specific diagnoses (patterns from rustls' Display/Debug as carried by tonic).
fn describe_tls(detail: &str, message: &str, ctx: &ErrorContext) -> Option<String> {
    let eps = ctx.endpoints_text();
    let ca = ctx
        .cacert
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none)".into());
    if ctx.endpoints.iter().all(|e| e.starts_with("http://"))
        && looks_like_closed_after_handshake(detail)
    {
        return Some(format!(
            "{eps} closed the connection: if etcd serves TLS, use https:// endpoints"
        ));
    }
    if detail.contains("tls handshake eof")
        || detail.contains("InvalidContentType")
        || detail.contains("CorruptMessage")
        || detail.contains("InvalidMessage")
    {
        return Some(format!(
            "TLS handshake with {eps} failed ({message}): the server does not speak TLS there; if it \
             is plain http, use http:// with --insecure-transport (never in production)"
        ));
    }
    // An alert *received* is etcd complaining about our side: the client certificate.
    let alert_from_server = detail.contains("received fatal alert");
    if detail.contains("CertificateRequired")
        || (ctx.cert.is_none() && (alert_from_server || looks_like_closed_after_handshake(detail)))
    {
        return Some(format!(
            "etcd at {eps} closed the connection during the TLS handshake: etcd requires a client \
             certificate: pass --cert and --key (kubeadm: /etc/kubernetes/pki/apiserver-etcd-client.crt \
             and .key)"
        ));
    }
    if !alert_from_server && (detail.contains("UnknownIssuer") || detail.contains("BadSignature")) {
        return Some(format!(
            "TLS handshake with {eps} failed: the server certificate is not signed by --cacert {ca}; \
             pass the CA that signed etcd's server certificate (kubeadm: /etc/kubernetes/pki/etcd/ca.crt)"
        ));
    }
    if detail.contains("NotValidForName") {
        let valid_for = message
            .split("certificate is only valid for")
            .nth(1)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "other names".into());
        let (kind, host) = match message.split("not valid for name \"").nth(1) {
            Some(rest) => {
                let host = rest.split('"').next().unwrap_or("").to_string();
                let kind = if host.parse::<std::net::IpAddr>().is_ok() {
                    "IP SAN"
                } else {
                    "DNS SAN"
                };
                (kind, host)
            }
            None => ("SAN", hosts_text(&ctx.endpoints)),
        };
        return Some(format!(
            "TLS handshake with {eps} failed: the server certificate has no {kind} for {host} (it is \
             only valid for {valid_for}); connect with a name or address the certificate covers, or \
             reissue etcd's server certificate with {host} in its subjectAltName"
        ));
    }
    if detail.contains("Expired") || detail.contains("NotValidYet") {
        let whose = if alert_from_server {
            "the client certificate (--cert)"
        } else {
            "the server certificate"
        };
        return Some(format!(
            "TLS handshake with {eps} failed: {whose} is outside its validity period \
             ({message}); renew it (kubeadm certs renew) or check the clock"
        ));
    }
    if let Some(cert) = &ctx.cert
        && (alert_from_server || looks_like_closed_after_handshake(detail))
    {
        return Some(format!(
            "etcd at {eps} rejected the client certificate --cert {}: it must be signed by a CA in \
             etcd's --trusted-ca-file, be currently valid and allow client authentication",
            cert.display()
        ));
    }
    if detail.contains("invalid peer certificate") || detail.contains("InvalidCertificate") {
        return Some(format!(
            "TLS handshake with {eps} failed: {message} (checked against --cacert {ca})"
        ));
    }
    None
}

/// etcd (Go) verifies the client certificate after the client's side of the TLS 1.3
/// handshake is done, so a missing/rejected certificate shows up as the connection closing.
fn looks_like_closed_after_handshake(detail: &str) -> bool {
    detail.contains("connection closed")
        || detail.contains("BrokenPipe")
        || detail.contains("broken pipe")
        || detail.contains("ConnectionReset")
        || detail.contains("connection reset")
}

/// Display and Debug of every error in the chain, for pattern matching.
fn error_chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err} {err:?}");
    let mut cur = err.source();
    while let Some(c) = cur {
        out.push_str(&format!(" | {c} {c:?}"));
        cur = c.source();
    }
    out
}

fn last_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        last = c.to_string();
        cur = c.source();
    }
    last
}

fn hosts_text(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| {
            e.trim_start_matches("https://")
                .trim_start_matches("http://")
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn non_zero(d: Duration, default: Duration) -> Duration {
    if d.is_zero() { default } else { d }
}

fn user_name(user: &str) -> &str {
    user.split(':').next().unwrap_or(user)
}

/// A `NAME[:PASSWORD]` user as it may be shown: the password, if any, replaced by
/// `placeholder`.
pub fn hide_password(user: &str, placeholder: &str) -> String {
    match user.split_once(':') {
        Some((name, _)) => format!("{name}:{placeholder}"),
        None => user.to_string(),
    }
}

/// `https://` unless written otherwise; `http://` only with `insecure`; a missing port means
/// 2379 (etcd's client port).
pub fn normalize_endpoints(raw: &[String], insecure: bool) -> Result<Vec<String>, ConnectError> {
    let mut out = Vec::new();
    for e in raw.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (scheme, rest) = match e.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => ("https".to_string(), e),
        };
        match scheme.as_str() {
            "https" => {}
            "http" if insecure => {}
            "http" => {
                return Err(ConnectError::Usage(format!(
                    "refusing plain-text http:// endpoint {e}: etcd traffic carries every secret; use \
                     https:// or pass --insecure-transport"
                )));
            }
            other => {
                return Err(ConnectError::Usage(format!(
                    "unsupported endpoint scheme {other}:// in {e}: use https://HOST:PORT"
                )));
            }
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(ConnectError::Usage(format!(
                "malformed endpoint {e:?}: expected https://HOST:PORT"
            )));
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let port = if has_port { "" } else { ":2379" };
        out.push(format!("{scheme}://{authority}{port}"));
    }
    if out.is_empty() {
        return Err(ConnectError::Usage(
            "no etcd endpoint: pass --endpoints (or ETCDCTL_ENDPOINTS), or --apiserver-manifest"
                .into(),
        ));
    }
    let https = out.iter().filter(|e| e.starts_with("https://")).count();
    if https != 0 && https != out.len() {
        return Err(ConnectError::Usage(format!(
            "endpoints mix http:// and https:// ({}): use one scheme",
            out.join(",")
        )));
    }
    Ok(out)
}

fn tls_options(opts: &ConnectOptions) -> Result<etcd_client::TlsOptions, ConnectError> {
    let Some(ca_path) = &opts.cacert else {
        return Err(ConnectError::Usage(
            "https endpoints need --cacert (the CA that signed etcd's server certificate; kubeadm: \
             /etc/kubernetes/pki/etcd/ca.crt): atrest does not use the system trust store for etcd"
                .into(),
        ));
    };
    let ca = read_pem(ca_path, "--cacert", "CERTIFICATE")?;
    let mut tls =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(cert, "--cert", "CERTIFICATE")?;
            let key_pem = read_pem(key, "--key", "PRIVATE KEY")?;
            tls = tls.identity(etcd_client::Identity::from_pem(cert_pem, key_pem));
        }
        (Some(_), None) => {
            return Err(ConnectError::Usage(
                "--cert was given without --key: pass both (the client certificate and its private key)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ConnectError::Usage(
                "--key was given without --cert: pass both (the client certificate and its private key)".into(),
            ));
        }
        (None, None) => {}
    }
    Ok(tls)
}

/// Read a PEM file and check it holds a block whose label ends with `label` (CERTIFICATE,
/// PRIVATE KEY covers PKCS#8, RSA and EC keys), so a swapped or empty file is named here rather
/// than failing obscurely in the handshake.
fn read_pem(path: &Path, flag: &'static str, label: &str) -> Result<Vec<u8>, ConnectError> {
    let bytes = std::fs::read(path).map_err(|e| ConnectError::File {
        flag,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with(&format!("{label}-----"))
    });
    if !has_block {
        return Err(ConnectError::File {
            flag,
            path: path.to_path_buf(),
            reason: format!("no PEM \"{label}\" block found (expected a PEM file)"),
        });
    }
    Ok(bytes)
}

fn credentials(opts: &ConnectOptions) -> Result<Option<(String, String)>, ConnectError> {
    match (&opts.user, &opts.password) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConnectError::Usage(
            "--password was given without --user: pass --user NAME".into(),
        )),
        (Some(user), Some(pw)) => Ok(Some((user.clone(), pw.clone()))),
        (Some(user), None) => match user.split_once(':') {
            Some((name, pw)) if !name.is_empty() => Ok(Some((name.to_string(), pw.to_string()))),
            // `:pw` (empty name) lands here too: never echo what follows the colon.
            Some(_) => Err(ConnectError::Usage(
                "--user has an empty name before ':': pass --user NAME:PASSWORD".into(),
            )),
            None => Err(ConnectError::Usage(format!(
                "--user {user} has no password: pass --user NAME:PASSWORD, --password or ETCDCTL_PASSWORD"
            ))),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// kube-apiserver manifest

/// The parts of a static pod manifest we read (everything else is ignored).
#[derive(serde::Deserialize)]
struct PodManifest {
    #[serde(default)]
    kind: Option<String>,
    spec: Option<PodSpec>,
}

#[derive(serde::Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(serde::Deserialize)]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// Parse a kube-apiserver static pod manifest (YAML Pod with a `kube-apiserver` container
/// command/args) or a plain text list of `--flag=value` lines.
pub fn read_apiserver_manifest(path: &Path) -> Result<ApiserverFlags, ConnectError> {
    let err = |reason: String| ConnectError::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let tokens = if looks_like_flag_list(&text) {
        text.lines()
            .map(|l| l.trim())
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split_whitespace())
            .map(str::to_string)
            .collect::<Vec<_>>()
    } else {
        apiserver_tokens_from_pod(&text).map_err(err)?
    };
    let flags = parse_apiserver_flags(&tokens);
    if flags == ApiserverFlags::default() {
        return Err(err(
            "no etcd flags found (--etcd-servers, --etcd-cafile, ...): is this kube-apiserver's manifest?".into(),
        ));
    }
    Ok(flags)
}

/// A plain flag list: the first meaningful line starts with `--` (or names the binary).
fn looks_like_flag_list(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("--") || l.starts_with("kube-apiserver"))
}

fn apiserver_tokens_from_pod(text: &str) -> Result<Vec<String>, String> {
    let pod: PodManifest =
        serde_saphyr::from_str(text).map_err(|e| format!("not a Pod manifest: {e}"))?;
    if let Some(kind) = &pod.kind
        && kind != "Pod"
    {
        return Err(format!("kind is {kind:?}, expected a static Pod"));
    }
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    let runs_apiserver = |c: &Container| {
        c.command
            .iter()
            .chain(c.args.iter())
            .any(|t| t.contains("kube-apiserver"))
    };
    let container = containers
        .iter()
        .find(|c| c.name == "kube-apiserver")
        .or_else(|| containers.iter().find(|c| runs_apiserver(c)))
        .ok_or_else(|| {
            "no container named kube-apiserver (or running kube-apiserver)".to_string()
        })?;
    // Elements may hold several words (e.g. `sh -c "kube-apiserver --a=b ..."`).
    Ok(container
        .command
        .iter()
        .chain(container.args.iter())
        .flat_map(|t| t.split_whitespace())
        .map(str::to_string)
        .collect())
}

/// Pick the etcd flags out of argv-style tokens (`--flag=value` and `--flag value`).
fn parse_apiserver_flags(tokens: &[String]) -> ApiserverFlags {
    let mut flags = ApiserverFlags::default();
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].as_str();
        i += 1;
        let Some(body) = tok.strip_prefix("--") else {
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => match tokens.get(i) {
                Some(next) if !next.starts_with("--") => {
                    i += 1;
                    (body, next.clone())
                }
                _ => continue,
            },
        };
        let value = value.trim_matches(|c| c == '"' || c == '\'').to_string();
        match name {
            "etcd-servers" => {
                flags.etcd_servers = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
            "etcd-cafile" => flags.etcd_cafile = Some(value.into()),
            "etcd-certfile" => flags.etcd_certfile = Some(value.into()),
            "etcd-keyfile" => flags.etcd_keyfile = Some(value.into()),
            "etcd-prefix" => flags.etcd_prefix = Some(value),
            "encryption-provider-config" => flags.encryption_provider_config = Some(value.into()),
            _ => {}
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM_MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.5:6443
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - name: sidecar
    image: busybox
    command: ["sleep", "infinity"]
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.5
    - --allow-privileged=true
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379,https://10.0.0.6:2379
    - --encryption-provider-config=/etc/kubernetes/enc/config.yaml
    - --etcd-servers-overrides=/events#https://127.0.0.1:2381
    image: registry.k8s.io/kube-apiserver:v1.31.0
    name: kube-apiserver
    args:
    - --etcd-prefix
    - /custom-registry
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
"#;

    fn write_tmp(name: &str, text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::Builder::new()
            .prefix(name)
            .tempfile()
            .expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn reads_kubeadm_static_pod_manifest() {
        let f = write_tmp("kube-apiserver", KUBEADM_MANIFEST);
        let flags = read_apiserver_manifest(f.path()).expect("parse");
        assert_eq!(
            flags.etcd_servers,
            Some(vec![
                "https://127.0.0.1:2379".to_string(),
                "https://10.0.0.6:2379".to_string()
            ])
        );
        assert_eq!(
            flags.etcd_cafile.as_deref(),
            Some(Path::new("/etc/kubernetes/pki/etcd/ca.crt"))
        );
        assert_eq!(
            flags.etcd_certfile.as_deref(),
            Some(Path::new("/etc/kubernetes/pki/apiserver-etcd-client.crt"))
        );
        assert_eq!(
            flags.etcd_keyfile.as_deref(),
            Some(Path::new("/etc/kubernetes/pki/apiserver-etcd-client.key"))
        );
        assert_eq!(flags.etcd_prefix.as_deref(), Some("/custom-registry"));
        assert_eq!(
            flags.encryption_provider_config.as_deref(),
            Some(Path::new("/etc/kubernetes/enc/config.yaml"))
        );
    }

    #[test]
    fn finds_apiserver_container_by_command_when_named_otherwise() {
        let text = "kind: Pod\nspec:\n  containers:\n  - name: api\n    command: [\"/usr/local/bin/kube-apiserver\", \"--etcd-servers\", \"https://e1:2379\"]\n";
        let f = write_tmp("pod", text);
        let flags = read_apiserver_manifest(f.path()).expect("parse");
        assert_eq!(
            flags.etcd_servers,
            Some(vec!["https://e1:2379".to_string()])
        );
        assert_eq!(flags.etcd_prefix, None);
    }

    #[test]
    fn reads_plain_flag_list_both_forms() {
        let text = "# flags of our apiserver\n--etcd-servers=https://10.1.1.1:2379\n--etcd-cafile /pki/ca.pem --etcd-certfile=/pki/c.pem\n--etcd-keyfile=/pki/k.pem\n--etcd-prefix=/r\n--encryption-provider-config /enc.yaml\n--v=2\n";
        let f = write_tmp("flags", text);
        let flags = read_apiserver_manifest(f.path()).expect("parse");
        assert_eq!(
            flags,
            ApiserverFlags {
                etcd_servers: Some(vec!["https://10.1.1.1:2379".into()]),
                etcd_cafile: Some("/pki/ca.pem".into()),
                etcd_certfile: Some("/pki/c.pem".into()),
                etcd_keyfile: Some("/pki/k.pem".into()),
                etcd_prefix: Some("/r".into()),
                encryption_provider_config: Some("/enc.yaml".into()),
            }
        );
    }

    #[test]
    fn manifest_errors_name_the_file() {
        let missing = Path::new("/nonexistent/kube-apiserver.yaml");
        let e = read_apiserver_manifest(missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/kube-apiserver.yaml"), "{e}");

        let f = write_tmp(
            "bad",
            "kind: Pod\nspec:\n  containers: [ {name: x, command: [sleep]} ]\n",
        );
        let e = read_apiserver_manifest(f.path()).unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains("no container named kube-apiserver"), "{e}");

        let f = write_tmp("garbage", "kind: [unclosed\n");
        let e = read_apiserver_manifest(f.path()).unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");

        let f = write_tmp("deploy", "kind: Deployment\nspec: {}\n");
        let e = read_apiserver_manifest(f.path()).unwrap_err().to_string();
        assert!(e.contains("Deployment"), "{e}");
    }

    #[test]
    fn endpoints_default_to_https_and_refuse_http() {
        let eps = normalize_endpoints(&["10.0.0.1:2379".into(), " etcd-2 ".into()], false).unwrap();
        assert_eq!(eps, vec!["https://10.0.0.1:2379", "https://etcd-2:2379"]);
        let e = normalize_endpoints(&["http://127.0.0.1:2379".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing plain-text http:// endpoint"), "{e}");
        assert!(e.contains("--insecure-transport"), "{e}");
        assert_eq!(
            normalize_endpoints(&["http://127.0.0.1:2379/".into()], true).unwrap(),
            vec!["http://127.0.0.1:2379"]
        );
        assert!(normalize_endpoints(&["[::1]".into()], false).unwrap()[0] == "https://[::1]:2379");
        assert!(normalize_endpoints(&[], false).is_err());
        assert!(normalize_endpoints(&["unix:///x".into()], false).is_err());
        assert!(normalize_endpoints(&["http://a:1".into(), "https://b:2".into()], true).is_err());
    }

    #[test]
    fn user_may_carry_the_password_and_debug_hides_it() {
        let opts = ConnectOptions {
            user: Some("root:s3cr3t-pw".into()),
            ..Default::default()
        };
        let (name, pw) = credentials(&opts).unwrap().expect("credentials");
        assert_eq!(name, "root");
        assert!(
            pw == "s3cr3t-pw",
            "password not split off --user NAME:PASSWORD (got {} bytes)",
            pw.len()
        );
        let with_password = ConnectOptions {
            password: Some("fl4g-pw".into()),
            ..opts.clone()
        };
        // Failure messages say which secret leaked, never the text holding it.
        let dbg = format!("{with_password:?}");
        assert!(
            !dbg.contains("s3cr3t-pw"),
            "Debug of ConnectOptions shows the --user password"
        );
        assert!(
            !dbg.contains("fl4g-pw"),
            "Debug of ConnectOptions shows --password"
        );
        assert!(dbg.contains("\"root\""), "Debug should still name the user");
        let e = credentials(&ConnectOptions {
            user: Some(":s3cr3t-pw".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            !e.contains("s3cr3t-pw"),
            "the empty-name error echoes the password"
        );
        assert!(e.contains("empty name"), "{e}");
        let opts = ConnectOptions {
            user: Some("root".into()),
            ..Default::default()
        };
        assert!(
            credentials(&opts)
                .unwrap_err()
                .to_string()
                .contains("NAME:PASSWORD")
        );
    }

    #[test]
    fn pem_files_are_checked_and_named() {
        let f = write_tmp("notpem", "hello");
        let e = read_pem(f.path(), "--cacert", "CERTIFICATE")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cacert") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        let e = read_pem(Path::new("/nonexistent/ca.pem"), "--cacert", "CERTIFICATE")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let f = write_tmp(
            "key",
            "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n",
        );
        assert!(read_pem(f.path(), "--key", "PRIVATE KEY").is_ok());
    }
}
