//! Flags shared by the commands that talk to etcd (`scan`, `rotate`): etcdctl's names and
//! `ETCDCTL_*` environment variables, plus `--apiserver-manifest`.
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// etcd endpoints, comma-separated (https:// by default).
    #[arg(long, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's server certificate.
    #[arg(long, env = "ETCDCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, env = "ETCDCTL_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "ETCDCTL_KEY")]
    pub key: Option<PathBuf>,
    /// etcd user (`name` or `name:password`).
    #[arg(long, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// etcd password.
    #[arg(long, env = "ETCDCTL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Time to establish a connection.
    #[arg(long, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// Time for one request.
    #[arg(long, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
    /// Allow plain http:// endpoints (no TLS). Never for production.
    #[arg(long)]
    pub insecure_transport: bool,
    /// Take etcd endpoints, certificates, prefix and encryption config from a kube-apiserver
    /// static pod manifest (explicit flags win).
    #[arg(long, value_name = "FILE")]
    pub apiserver_manifest: Option<PathBuf>,
}

/// What a command needs after merging flags and the manifest.
#[derive(Debug)]
pub struct Resolved {
    pub connect: atrest::connect::ConnectOptions,
    /// From the manifest's `--etcd-prefix`, if any (the command's own `--prefix` wins).
    pub prefix: Option<String>,
    /// From the manifest's `--encryption-provider-config`, if any (explicit flag wins).
    pub encryption_provider_config: Option<PathBuf>,
}

impl ConnectionArgs {
    /// Merge flags, environment and `--apiserver-manifest` (explicit flags win).
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        todo!("D1 {self:?}")
    }
}

/// `-o` for the commands that report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Prometheus,
}
