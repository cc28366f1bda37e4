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
#[allow(dead_code)] // until every command that talks to etcd uses it
pub struct Resolved {
    pub connect: atrest::connect::ConnectOptions,
    /// From the manifest's `--etcd-prefix`, if any (the command's own `--prefix` wins).
    pub prefix: Option<String>,
    /// From the manifest's `--encryption-provider-config`, if any (explicit flag wins).
    pub encryption_provider_config: Option<PathBuf>,
}

#[allow(dead_code)]
impl ConnectionArgs {
    /// Merge flags, environment and `--apiserver-manifest` (explicit flags win).
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let manifest = match &self.apiserver_manifest {
            Some(path) => atrest::connect::read_apiserver_manifest(path)?,
            None => atrest::connect::ApiserverFlags::default(),
        };
        let flag_endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let endpoints = if !flag_endpoints.is_empty() {
            flag_endpoints
        } else {
            manifest.etcd_servers.clone().unwrap_or_default()
        };
        if endpoints.is_empty() {
            anyhow::bail!(match &self.apiserver_manifest {
                Some(path) => format!(
                    "no etcd endpoints: {} has no --etcd-servers; pass --endpoints (or ETCDCTL_ENDPOINTS)",
                    path.display()
                ),
                None =>
                    "no etcd endpoints: pass --endpoints https://HOST:2379 (or ETCDCTL_ENDPOINTS), \
                         or --apiserver-manifest /etc/kubernetes/manifests/kube-apiserver.yaml"
                        .to_string(),
            });
        }
        let connect = atrest::connect::ConnectOptions {
            endpoints,
            cacert: self.cacert.clone().or(manifest.etcd_cafile),
            cert: self.cert.clone().or(manifest.etcd_certfile),
            key: self.key.clone().or(manifest.etcd_keyfile),
            user: self.user.clone(),
            password: self.password.clone(),
            dial_timeout: self.dial_timeout,
            command_timeout: self.command_timeout,
            insecure_transport: self.insecure_transport,
        };
        Ok(Resolved {
            connect,
            prefix: manifest.etcd_prefix,
            encryption_provider_config: manifest.encryption_provider_config,
        })
    }
}

/// `-o` for the commands that report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Prometheus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        conn: ConnectionArgs,
    }

    fn parse(args: &[&str]) -> ConnectionArgs {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .expect("parse")
            .conn
    }

    fn manifest(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("kube-apiserver.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --etcd-servers=https://10.0.0.1:2379,https://10.0.0.2:2379\n    - --etcd-cafile=/m/ca.crt\n    - --etcd-certfile=/m/c.crt\n    - --etcd-keyfile=/m/c.key\n    - --etcd-prefix=/reg\n    - --encryption-provider-config=/m/enc.yaml\n",
        )
        .expect("write manifest");
        path
    }

    #[test]
    fn manifest_fills_what_flags_do_not_say() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = manifest(dir.path());
        let r = parse(&["--apiserver-manifest", m.to_str().expect("utf8")])
            .resolve()
            .expect("resolve");
        assert_eq!(
            r.connect.endpoints,
            vec!["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(
            r.connect.cacert.as_deref(),
            Some(std::path::Path::new("/m/ca.crt"))
        );
        assert_eq!(
            r.connect.key.as_deref(),
            Some(std::path::Path::new("/m/c.key"))
        );
        assert_eq!(r.prefix.as_deref(), Some("/reg"));
        assert_eq!(
            r.encryption_provider_config.as_deref(),
            Some(std::path::Path::new("/m/enc.yaml"))
        );
    }

    #[test]
    fn explicit_flags_win_over_the_manifest() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = manifest(dir.path());
        let r = parse(&[
            "--apiserver-manifest",
            m.to_str().expect("utf8"),
            "--endpoints",
            "https://a:1,https://b:2",
            "--cacert",
            "/flag/ca.pem",
            "--dial-timeout",
            "7s",
        ])
        .resolve()
        .expect("resolve");
        assert_eq!(r.connect.endpoints, vec!["https://a:1", "https://b:2"]);
        assert_eq!(
            r.connect.cacert.as_deref(),
            Some(std::path::Path::new("/flag/ca.pem"))
        );
        assert_eq!(
            r.connect.cert.as_deref(),
            Some(std::path::Path::new("/m/c.crt"))
        );
        assert_eq!(r.connect.dial_timeout, Duration::from_secs(7));
    }

    #[test]
    fn no_endpoints_is_a_usage_error() {
        if std::env::var_os("ETCDCTL_ENDPOINTS").is_some() {
            return; // the environment supplies endpoints: nothing to check here
        }
        let e = parse(&[]).resolve().unwrap_err().to_string();
        assert!(
            e.contains("no etcd endpoints") && e.contains("--endpoints"),
            "{e}"
        );
        let e = parse(&["--apiserver-manifest", "/nonexistent/m.yaml"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/m.yaml"), "{e}");
    }
}
