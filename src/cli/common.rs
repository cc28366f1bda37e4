//! Flags shared by the commands that talk to etcd (`scan`, `rotate`): etcdctl's names and
//! `ETCDCTL_*` environment variables, plus `--apiserver-manifest`.
//!
//! Precedence, per setting: explicit command-line flag > `--apiserver-manifest` >
//! `ETCDCTL_*` variable > default. The variables the manifest can also supply (endpoints,
//! certificates) are therefore read here in [`ConnectionArgs::resolve`], not by clap: clap
//! would fold them into the flag value and an `ETCDCTL_ENDPOINTS` left exported from an
//! etcdctl session would silently send a manifest-driven run to another etcd. The ones the
//! manifest never supplies (user, password, timeouts) stay clap `env` arguments.
use anyhow::{Context, bail};
use atrest::resource::GroupResource;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Variables read by [`ConnectionArgs::resolve`] itself (not by clap).
pub const ENV_ENDPOINTS: &str = "ETCDCTL_ENDPOINTS";
pub const ENV_CACERT: &str = "ETCDCTL_CACERT";
pub const ENV_CERT: &str = "ETCDCTL_CERT";
pub const ENV_KEY: &str = "ETCDCTL_KEY";

#[derive(clap::Args, Clone)]
pub struct ConnectionArgs {
    /// etcd endpoints, comma-separated (https:// by default) [env: ETCDCTL_ENDPOINTS]
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub endpoints: Vec<String>,
    /// CA bundle that signed etcd's server certificate [env: ETCDCTL_CACERT]
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) [env: ETCDCTL_CERT]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) [env: ETCDCTL_KEY]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// etcd user (`name` or `name:password`).
    #[arg(long, env = "ETCDCTL_USER", hide_env_values = true)]
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
    /// static pod manifest. Explicit flags win over it; it wins over ETCDCTL_* variables.
    #[arg(long, value_name = "FILE")]
    pub apiserver_manifest: Option<PathBuf>,
}

/// Never prints the password (nor the `:password` part of `--user name:password`).
impl std::fmt::Debug for ConnectionArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionArgs")
            .field("endpoints", &self.endpoints)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field(
                "user",
                &self
                    .user
                    .as_deref()
                    .map(|u| atrest::connect::hide_password(u, "<redacted>")),
            )
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dial_timeout", &self.dial_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("insecure_transport", &self.insecure_transport)
            .field("apiserver_manifest", &self.apiserver_manifest)
            .finish()
    }
}

/// `name:password` → `name:<redacted>`; a plain `name` is kept.
/// What a command needs after merging flags, the manifest and the environment.
/// Debug is safe: [`atrest::connect::ConnectOptions`] redacts the password.
#[derive(Debug)]
#[allow(dead_code)] // until every command that talks to etcd uses it
pub struct Resolved {
    pub connect: atrest::connect::ConnectOptions,
    /// From the manifest's `--etcd-prefix`, if any (the command's own `--prefix` wins).
    pub prefix: Option<String>,
    /// From the manifest's `--encryption-provider-config`, if any (explicit flag wins).
    pub encryption_provider_config: Option<PathBuf>,
    /// `ETCDCTL_*` variables that were set but lost to the manifest (names only).
    pub ignored_env: Vec<&'static str>,
}

#[allow(dead_code)]
impl ConnectionArgs {
    /// Merge flags, `--apiserver-manifest` and the process environment (flag > manifest >
    /// `ETCDCTL_*` > default). Prints a note on stderr for each variable the manifest
    /// overrode, so a stale `export ETCDCTL_ENDPOINTS=...` is visible.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let resolved = self.resolve_with_env(&|name| std::env::var_os(name))?;
        for var in &resolved.ignored_env {
            eprintln!(
                "note: {var} is ignored: --apiserver-manifest {} sets it (pass the flag to override)",
                self.apiserver_manifest
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
        }
        Ok(resolved)
    }

    /// [`ConnectionArgs::resolve`] with the environment given as a lookup (tests must not
    /// mutate the process environment). Empty variables count as unset, like clap's.
    pub fn resolve_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> anyhow::Result<Resolved> {
        let manifest = match &self.apiserver_manifest {
            Some(path) => atrest::connect::read_apiserver_manifest(path)?,
            None => atrest::connect::ApiserverFlags::default(),
        };
        let env = |name: &str| env(name).filter(|v| !v.to_string_lossy().trim().is_empty());
        let mut ignored_env = Vec::new();

        let flag_endpoints = clean_endpoints(self.endpoints.iter().map(String::as_str));
        let manifest_endpoints = manifest.etcd_servers.clone().unwrap_or_default();
        let env_endpoints = env(ENV_ENDPOINTS)
            .map(|v| clean_endpoints(v.to_string_lossy().split(',')))
            .unwrap_or_default();
        let endpoints = pick(
            (!flag_endpoints.is_empty()).then_some(flag_endpoints),
            (!manifest_endpoints.is_empty()).then_some(manifest_endpoints),
            (!env_endpoints.is_empty()).then_some(env_endpoints),
            ENV_ENDPOINTS,
            &mut ignored_env,
        )
        .unwrap_or_default();
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
        let mut path = |flag: &Option<PathBuf>, from_manifest: Option<PathBuf>, var| {
            pick(
                flag.clone(),
                from_manifest,
                env(var).map(PathBuf::from),
                var,
                &mut ignored_env,
            )
        };
        let cacert = path(&self.cacert, manifest.etcd_cafile, ENV_CACERT);
        let cert = path(&self.cert, manifest.etcd_certfile, ENV_CERT);
        let key = path(&self.key, manifest.etcd_keyfile, ENV_KEY);
        let connect = atrest::connect::ConnectOptions {
            endpoints,
            cacert,
            cert,
            key,
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
            ignored_env,
        })
    }
}

/// The first of flag, manifest, environment that is set; records `var` in `ignored` when the
/// manifest beat a set variable (a flag beating it is what the user asked for: no note).
fn pick<T>(
    flag: Option<T>,
    manifest: Option<T>,
    env: Option<T>,
    var: &'static str,
    ignored: &mut Vec<&'static str>,
) -> Option<T> {
    match (flag, manifest, env) {
        (Some(f), _, _) => Some(f),
        (None, Some(m), e) => {
            if e.is_some() {
                ignored.push(var);
            }
            Some(m)
        }
        (None, None, e) => e,
    }
}

fn clean_endpoints<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    raw.map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// `-o` for the commands that report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Prometheus,
}

/// `--resource` values, deduplicated: group/resources as the config names them (`secrets`,
/// `deployments.apps`); with `wildcards` (scan) also `*.apps`, `*.` and `*`/`*.*`.
pub fn parse_resources(list: &[String], wildcards: bool) -> anyhow::Result<Vec<GroupResource>> {
    let mut out = Vec::new();
    for item in list.iter().map(|s| s.trim()) {
        if !wildcards && (item.is_empty() || item.contains('/') || item.contains('*')) {
            bail!(
                "--resource {item:?}: give a resource as the config names it, e.g. secrets or deployments.apps"
            );
        }
        if item.is_empty() || item.contains('/') {
            bail!(
                "--resource {item:?}: give a resource as the config names it, e.g. secrets, deployments.apps, *.apps or *.*"
            );
        }
        let gr = if item == "*" {
            GroupResource::new("*", "*")
        } else {
            GroupResource::parse(item)
        };
        if gr.resource.is_empty() || (gr.resource.contains('*') && gr.resource != "*") {
            bail!(
                "--resource {item:?}: not a resource name or wildcard (e.g. secrets, *.apps, *.*)"
            );
        }
        if !out.contains(&gr) {
            out.push(gr);
        }
    }
    Ok(out)
}

/// A report writer: renders into the `Write` it is given.
pub type Emit<'a> = dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'a;

/// Print to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print_stdout(emit: &mut Emit<'_>) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match emit(&mut out).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write the report to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;
    use std::path::Path;

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

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Resolved> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse(args).resolve_with_env(&|name| env.get(name).cloned())
    }

    fn manifest(dir: &Path) -> PathBuf {
        let path = dir.join("kube-apiserver.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --etcd-servers=https://10.0.0.1:2379,https://10.0.0.2:2379\n    - --etcd-cafile=/m/ca.crt\n    - --etcd-certfile=/m/c.crt\n    - --etcd-keyfile=/m/c.key\n    - --etcd-prefix=/reg\n    - --encryption-provider-config=/m/enc.yaml\n",
        )
        .expect("write manifest");
        path
    }

    /// A manifest with endpoints and CA only (no client certificate).
    fn partial_manifest(dir: &Path) -> PathBuf {
        let path = dir.join("partial.yaml");
        std::fs::write(
            &path,
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver, --etcd-servers=https://10.0.0.1:2379, --etcd-cafile=/m/ca.crt]\n",
        )
        .expect("write manifest");
        path
    }

    const ALL_ENV: &[(&str, &str)] = &[
        ("ETCDCTL_ENDPOINTS", "https://env-a:2379,https://env-b:2379"),
        ("ETCDCTL_CACERT", "/env/ca.pem"),
        ("ETCDCTL_CERT", "/env/c.pem"),
        ("ETCDCTL_KEY", "/env/k.pem"),
    ];

    #[test]
    fn manifest_fills_what_flags_do_not_say() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = manifest(dir.path());
        let r =
            resolve(&["--apiserver-manifest", m.to_str().expect("utf8")], &[]).expect("resolve");
        assert_eq!(
            r.connect.endpoints,
            vec!["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/m/ca.crt")));
        assert_eq!(r.connect.key.as_deref(), Some(Path::new("/m/c.key")));
        assert_eq!(r.prefix.as_deref(), Some("/reg"));
        assert_eq!(
            r.encryption_provider_config.as_deref(),
            Some(Path::new("/m/enc.yaml"))
        );
        assert!(r.ignored_env.is_empty(), "{:?}", r.ignored_env);
        assert_eq!(r.connect.dial_timeout, Duration::from_secs(2));
        assert_eq!(r.connect.command_timeout, Duration::from_secs(30));
    }

    #[test]
    fn explicit_flags_win_over_the_manifest() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = manifest(dir.path());
        let r = resolve(
            &[
                "--apiserver-manifest",
                m.to_str().expect("utf8"),
                "--endpoints",
                "https://a:1,https://b:2",
                "--cacert",
                "/flag/ca.pem",
                "--dial-timeout",
                "7s",
            ],
            &[],
        )
        .expect("resolve");
        assert_eq!(r.connect.endpoints, vec!["https://a:1", "https://b:2"]);
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/flag/ca.pem")));
        assert_eq!(r.connect.cert.as_deref(), Some(Path::new("/m/c.crt")));
        assert_eq!(r.connect.dial_timeout, Duration::from_secs(7));
    }

    #[test]
    fn the_manifest_wins_over_etcdctl_variables() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = manifest(dir.path());
        let r = resolve(
            &["--apiserver-manifest", m.to_str().expect("utf8")],
            ALL_ENV,
        )
        .expect("resolve");
        assert_eq!(
            r.connect.endpoints,
            vec!["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/m/ca.crt")));
        assert_eq!(r.connect.cert.as_deref(), Some(Path::new("/m/c.crt")));
        assert_eq!(r.connect.key.as_deref(), Some(Path::new("/m/c.key")));
        assert_eq!(
            r.ignored_env,
            vec![ENV_ENDPOINTS, ENV_CACERT, ENV_CERT, ENV_KEY]
        );
    }

    #[test]
    fn etcdctl_variables_fill_what_the_manifest_does_not_say() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = partial_manifest(dir.path());
        let r = resolve(
            &["--apiserver-manifest", m.to_str().expect("utf8")],
            ALL_ENV,
        )
        .expect("resolve");
        assert_eq!(r.connect.endpoints, vec!["https://10.0.0.1:2379"]);
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/m/ca.crt")));
        assert_eq!(r.connect.cert.as_deref(), Some(Path::new("/env/c.pem")));
        assert_eq!(r.connect.key.as_deref(), Some(Path::new("/env/k.pem")));
        assert_eq!(r.ignored_env, vec![ENV_ENDPOINTS, ENV_CACERT]);
    }

    #[test]
    fn flags_win_over_variables_without_a_note() {
        let r = resolve(
            &["--endpoints", "https://flag:1", "--cert", "/flag/c.pem"],
            ALL_ENV,
        )
        .expect("resolve");
        assert_eq!(r.connect.endpoints, vec!["https://flag:1"]);
        assert_eq!(r.connect.cert.as_deref(), Some(Path::new("/flag/c.pem")));
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/env/ca.pem")));
        assert!(r.ignored_env.is_empty(), "{:?}", r.ignored_env);
    }

    #[test]
    fn variables_work_without_a_manifest() {
        let r = resolve(&[], ALL_ENV).expect("resolve");
        assert_eq!(
            r.connect.endpoints,
            vec!["https://env-a:2379", "https://env-b:2379"]
        );
        assert_eq!(r.connect.cacert.as_deref(), Some(Path::new("/env/ca.pem")));
        assert_eq!(r.connect.cert.as_deref(), Some(Path::new("/env/c.pem")));
        assert_eq!(r.connect.key.as_deref(), Some(Path::new("/env/k.pem")));
        // Empty variables count as unset.
        let e = resolve(&[], &[("ETCDCTL_ENDPOINTS", " ")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no etcd endpoints"), "{e}");
    }

    #[test]
    fn no_endpoints_is_a_usage_error() {
        let e = resolve(&[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("no etcd endpoints") && e.contains("--endpoints"),
            "{e}"
        );
        let e = resolve(&["--apiserver-manifest", "/nonexistent/m.yaml"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/m.yaml"), "{e}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let args = parse(&[
            "--endpoints",
            "https://a:1",
            "--user",
            "root:u5er-pw",
            "--password",
            "fl4g-pw",
        ]);
        let dbg = format!("{args:?}");
        // Report only whether each secret appeared, never the text that holds it.
        assert!(
            !dbg.contains("u5er-pw"),
            "Debug of ConnectionArgs shows the --user password"
        );
        assert!(
            !dbg.contains("fl4g-pw"),
            "Debug of ConnectionArgs shows --password"
        );
        assert!(dbg.contains("root:<redacted>") && dbg.contains("https://a:1"));
        let resolved = args.resolve_with_env(&|_| None).expect("resolve");
        let dbg = format!("{resolved:?}");
        assert!(
            !dbg.contains("u5er-pw"),
            "Debug of Resolved shows the --user password"
        );
        assert!(
            !dbg.contains("fl4g-pw"),
            "Debug of Resolved shows --password"
        );
    }
}
