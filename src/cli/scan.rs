//! `atrest scan`: the inspector SREs run by hand and from cron. Resolves where to read (a live
//! etcd over mTLS, or `--snapshot FILE`), the storage prefix and the EncryptionConfiguration
//! (flags, else the kube-apiserver manifest), runs the library's scan engine and prints the
//! report as a table, `atrest.scan/v1` JSON or Prometheus text. Exit 0: no finding; 1: an
//! object's status is in `--fail-on`; 2: the scan could not be done.
use super::common::{ConnectionArgs, Emit, OutputFormat, parse_resources, print_stdout};
use super::progress::Bar;
use anyhow::{Context, bail};
use atrest::classify::{Classifier, Status};
use atrest::codec::chain::Transformers;
use atrest::config::EncryptionConfig;
use atrest::report::SpillSink;
use atrest::resource::{DEFAULT_PREFIX, GroupResource};
use atrest::scan::{DiscardSink, ObjectSink, ScanOptions, run_scan_with_sink};
use atrest::source::KvSource;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 no finding, 1 an object's status is in --fail-on, 2 error.\n\
Examples:\n  \
atrest scan --endpoints https://10.0.0.1:2379 --cacert ca.crt --cert client.crt --key client.key \\\n      \
--encryption-provider-config /etc/kubernetes/enc.yaml --verify\n  \
atrest scan --apiserver-manifest /etc/kubernetes/manifests/kube-apiserver.yaml -o prometheus\n  \
atrest scan --snapshot backup.db --encryption-provider-config enc.yaml --history"
)]
pub struct ScanArgs {
    #[command(flatten)]
    pub conn: Box<ConnectionArgs>,
    /// Read an etcd snapshot file instead of a live etcd (no connection flags needed).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// kube-apiserver's --etcd-prefix [default: the manifest's, else /registry].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// The EncryptionConfiguration kube-apiserver reads [default: the manifest's]. Without one,
    /// values are only classified as plaintext or encrypted.
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// Decrypt every encrypted value with the held keys (nothing decrypted is printed or kept).
    #[arg(long)]
    pub verify: bool,
    /// Only these resources, as the config names them (`secrets`, `deployments.apps`);
    /// repeat or comma-separate.
    #[arg(long = "resource", value_name = "GROUP_RESOURCE", value_delimiter = ',', num_args = 1..)]
    pub resources: Vec<String>,
    /// Output format [default: table on a terminal, else json].
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// Which objects the report lists.
    #[arg(long, value_enum, default_value = "findings")]
    pub list: ListMode,
    /// Statuses that make the exit code 1 (comma-separated; `none` for never):
    /// current, stale, plaintext, unknown-key, undecryptable, encrypted.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "plaintext,stale,unknown-key,undecryptable"
    )]
    pub fail_on: Vec<String>,
    /// Also examine every older revision in the snapshot for plaintext or stale-key residue.
    #[arg(long)]
    pub history: bool,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Keys per range request (or per snapshot batch). Default: live etcd pages sized to about
    /// 1 MiB (500 to 10000 keys), each request bounded to a key subtree so that etcd 3.4 does
    /// not re-walk the rest of the range for every page; 1000 per snapshot batch.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub page_size: Option<u32>,
    /// Also write the report to FILE (atomically: temp file + rename; for node_exporter's
    /// textfile collector or a compliance archive).
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMode {
    /// Only objects that are not `current`.
    Findings,
    /// Every object.
    All,
}

pub fn run(a: ScanArgs) -> anyhow::Result<u8> {
    if a.history && a.snapshot.is_none() {
        bail!(
            "--history needs --snapshot FILE: only snapshot files keep the older revisions (a live etcd compacts them)"
        );
    }
    let fail_on = parse_fail_on(&a.fail_on)?;
    let resources = parse_resources(&a.resources, true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(scan(a, fail_on, resources))
}

async fn scan(
    a: ScanArgs,
    fail_on: Vec<Status>,
    resources: Vec<GroupResource>,
) -> anyhow::Result<u8> {
    let target = Target::resolve(&a)?;
    let prefix = a
        .prefix
        .clone()
        .or(target.manifest_prefix.clone())
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    let key_prefix = storage_key_prefix(&prefix);
    let config_path = a
        .encryption_provider_config
        .clone()
        .or(target.manifest_config.clone());

    // The config first: a bad config must fail before any connection is made.
    let transformers = match &config_path {
        Some(p) => Some(load_transformers(p, a.verify).await?),
        None => {
            if a.verify {
                bail!(
                    "--verify needs the keys: pass --encryption-provider-config FILE (or --apiserver-manifest)"
                );
            }
            None
        }
    };
    let classifier = Classifier::new(&prefix, transformers, a.verify);

    let bar = Bar::new(!a.no_progress, "keys");
    let mut source = target.open(&a, key_prefix.as_bytes(), &bar).await?;
    let opts = ScanOptions {
        resources,
        list_all: a.list == ListMode::All,
        history: a.history,
        config_path: config_path.as_ref().map(|p| p.display().to_string()),
        prefix,
    };
    let format = a.output.unwrap_or(if std::io::stdout().is_terminal() {
        OutputFormat::Table
    } else {
        OutputFormat::Json
    });
    // The listed objects are streamed to a private temporary file as they are judged, so
    // memory stays flat however many findings there are; Prometheus needs only the counts.
    let mut spill = match format {
        OutputFormat::Prometheus => None,
        OutputFormat::Table | OutputFormat::Json => {
            Some(SpillSink::new(atrest::report::TABLE_MAX_LISTED)?)
        }
    };
    let mut discard = DiscardSink;
    let sink: &mut dyn ObjectSink = match spill.as_mut() {
        Some(s) => s,
        None => &mut discard,
    };
    let report = run_scan_with_sink(source.as_mut(), &classifier, &opts, &bar, sink)
        .await
        .context("scan failed")?;
    drop(source);
    bar.finish();

    let mut emit = |w: &mut dyn Write| -> std::io::Result<()> {
        match (format, spill.as_mut()) {
            (OutputFormat::Json, Some(s)) => s.write_json(&report, w),
            (OutputFormat::Table, Some(s)) => w.write_all(s.render_table(&report).as_bytes()),
            (OutputFormat::Json, None) => report.write_json(w),
            (OutputFormat::Table, None) => w.write_all(report.render_table().as_bytes()),
            (OutputFormat::Prometheus, _) => w.write_all(report.render_prometheus().as_bytes()),
        }
    };
    if let Some(path) = &a.output_file {
        write_atomically(path, &mut emit)?;
    }
    print_stdout(&mut emit)?;
    Ok(if report.has_findings(&fail_on) {
        atrest::exit::FINDINGS
    } else {
        atrest::exit::OK
    })
}

/// Where to read from, and what the kube-apiserver manifest says about prefix and config.
struct Target {
    manifest_prefix: Option<String>,
    manifest_config: Option<PathBuf>,
    resolved: Option<super::common::Resolved>,
}

impl Target {
    fn resolve(a: &ScanArgs) -> anyhow::Result<Target> {
        if a.snapshot.is_some() {
            // No connection: the manifest (if given) only supplies prefix and config.
            let flags = match &a.conn.apiserver_manifest {
                Some(m) => Some(atrest::connect::read_apiserver_manifest(m)?),
                None => None,
            };
            return Ok(Target {
                manifest_prefix: flags.as_ref().and_then(|f| f.etcd_prefix.clone()),
                manifest_config: flags.and_then(|f| f.encryption_provider_config),
                resolved: None,
            });
        }
        let resolved = a.conn.resolve()?;
        Ok(Target {
            manifest_prefix: resolved.prefix.clone(),
            manifest_config: resolved.encryption_provider_config.clone(),
            resolved: Some(resolved),
        })
    }

    async fn open(
        self,
        a: &ScanArgs,
        key_prefix: &[u8],
        bar: &Bar,
    ) -> anyhow::Result<Box<dyn KvSource>> {
        if let Some(path) = &a.snapshot {
            let src = atrest::snapshot::SnapshotSource::open_with(
                path,
                key_prefix,
                a.page_size.unwrap_or(1000) as usize,
                bar,
            )?;
            return Ok(Box::new(src));
        }
        let Some(resolved) = self.resolved else {
            bail!(
                "no etcd to scan: give --endpoints (or --apiserver-manifest), or --snapshot FILE"
            );
        };
        let client = atrest::connect::connect(&resolved.connect).await?;
        // The report names the endpoints as dialled (scheme added), not as typed.
        let endpoints = atrest::connect::normalize_endpoints(
            &resolved.connect.endpoints,
            resolved.connect.insecure_transport,
        )
        .unwrap_or_else(|_| resolved.connect.endpoints.clone());
        Ok(Box::new(atrest::source::etcd::EtcdSource::with_page_size(
            client,
            endpoints,
            key_prefix.to_vec(),
            None,
            a.page_size.map(i64::from),
        )))
    }
}

/// Load and validate the config, build the transformers and reach every KMS v2 plugin once
/// (and, with `--verify`, every KMS v1 plugin: reading through it needs it).
async fn load_transformers(path: &Path, verify: bool) -> anyhow::Result<Transformers> {
    let cfg = EncryptionConfig::load(path)?;
    if verify {
        check_kms_v1_plugins(&cfg, path).await?;
    }
    let t = Transformers::new(&cfg, &atrest::kms::GrpcConnector)
        .with_context(|| format!("{}: cannot set up the providers", path.display()))?;
    t.prepare_kms().await.with_context(|| {
        format!(
            "{}: a KMS v2 plugin of this config cannot be used",
            path.display()
        )
    })?;
    Ok(t)
}

/// A KMS v1 plugin that cannot be reached would make every value it wrote `undecryptable`:
/// that is not a finding about the data but a broken setup, so it is an error (exit 2) naming
/// the plugin and its socket. One Version call per distinct v1 plugin.
async fn check_kms_v1_plugins(cfg: &EncryptionConfig, path: &Path) -> anyhow::Result<()> {
    use atrest::config::{KmsApiVersion, ProviderConfig};
    use atrest::kms::KmsConnector;
    let mut seen = std::collections::BTreeSet::new();
    let v1 = cfg
        .rules
        .iter()
        .flat_map(|r| r.providers.iter())
        .filter_map(|p| match p {
            ProviderConfig::Kms(k) if k.api_version == KmsApiVersion::V1 => Some(k),
            _ => None,
        });
    for k in v1 {
        if !seen.insert(k.name.clone()) {
            continue;
        }
        let service = atrest::kms::GrpcConnector.connect(k)?;
        service.status().await.with_context(|| {
            format!(
                "{}: --verify needs KMS v1 plugin {} to decrypt",
                path.display(),
                k.name
            )
        })?;
    }
    Ok(())
}

/// The one storage-prefix normalizer (also used by `snapshot` through this path).
use atrest::resource::storage_key_prefix;

fn parse_fail_on(list: &[String]) -> anyhow::Result<Vec<Status>> {
    let mut out = Vec::new();
    for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if item == "none" {
            continue;
        }
        match Status::parse(item) {
            Some(s) => {
                if !out.contains(&s) {
                    out.push(s)
                }
            }
            None => {
                let valid: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                bail!(
                    "--fail-on: unknown status {item:?}; valid: {} (or none)",
                    valid.join(", ")
                );
            }
        }
    }
    Ok(out)
}

/// Write next to `path` then rename, so a collector never reads a half-written file.
fn write_atomically(path: &Path, emit: &mut Emit<'_>) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("--output-file {}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        emit(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename {} to {}", tmp.display(), path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_like_apiserver() {
        assert_eq!(storage_key_prefix("/registry"), "/registry/");
        assert_eq!(storage_key_prefix("registry/"), "/registry/");
        assert_eq!(storage_key_prefix("//a//b/"), "/a/b/");
        assert_eq!(storage_key_prefix("/"), "/");
    }

    #[test]
    fn fail_on_is_validated() {
        let v = |s: &[&str]| parse_fail_on(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&["stale", "plaintext"]).unwrap(),
            vec![Status::Stale, Status::Plaintext]
        );
        assert_eq!(v(&["none"]).unwrap(), vec![]);
        let e = v(&["stael"]).unwrap_err().to_string();
        assert!(e.contains("stael") && e.contains("unknown-key"), "{e}");
    }

    #[test]
    fn resources_are_validated() {
        let v = |s: &[&str]| {
            parse_resources(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>(), true)
        };
        assert_eq!(
            v(&["secrets", "deployments.apps"]).unwrap(),
            vec![
                GroupResource::new("", "secrets"),
                GroupResource::new("apps", "deployments")
            ]
        );
        assert_eq!(v(&["*"]).unwrap(), vec![GroupResource::new("*", "*")]);
        assert_eq!(
            v(&["*.apps"]).unwrap(),
            vec![GroupResource::new("apps", "*")]
        );
        assert!(v(&["sec*"]).is_err());
        assert!(v(&["a/b"]).is_err());
        assert!(v(&[""]).is_err());
        // rotate takes exact group/resources only.
        let exact = |s: &[&str]| {
            parse_resources(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>(), false)
        };
        assert_eq!(
            exact(&["secrets", "secrets"]).unwrap(),
            vec![GroupResource::new("", "secrets")]
        );
        assert!(exact(&["*.apps"]).is_err());
        assert!(exact(&["*"]).is_err());
    }
}
