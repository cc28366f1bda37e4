//! End-to-end compatibility with kube-apiserver: the shared snapshot `public-v34.db` read by the
//! real `atrest` binary, with two real KMS plugin processes (`atrest-test-kms`, v2 and v1, the
//! demo's KEKs) behind the all-providers EncryptionConfiguration, judged against the manifest
//! `public-v34.keys.json`, whose `expect_with_all_providers_config` / `plaintext_sha256` are
//! what kube-apiserver's own transformers give for every live key.
//!
//! - `scan_matches_apiserver_outcomes`: `atrest scan --snapshot --verify` gives every key the
//!   status the outcome and the config's provider order imply, and a consistent summary.
//! - `decode_matches_apiserver_plaintexts`: `atrest decode --verify --show-plaintext` on every raw
//!   value yields exactly kube-apiserver's plaintext (SHA-256 compared, never printed), or exits
//!   1 naming the error class.
//! - `history_reports_plaintext_residue`: `--history` finds the plaintext revision 11 of
//!   `/registry/secrets/billing/db-pass` that the snapshot still holds.
//!
//! Expected statuses are derived here from the manifest, the vector files and the config YAML
//! (parsed independently), never from atrest's own classification.

use crate::common::atrest_cmd;
use crate::common::kms::KmsPlugin;
use atrest::snapshot::SnapshotSource;
use atrest::source::{KvSource, RawKv};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous: debug binaries decrypting ~900 KB values on a loaded 2-core machine.
const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// The endpoint directory the all-providers config names (replaced by the test's temp dir).
const CONFIG_SOCKET_DIR: &str = "unix:///var/run/kmsplugin/";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn snapshot_path() -> PathBuf {
    root().join("testdata/snapshots/public-v34.db")
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

// ---------------------------------------------------------------------------------------------
// The manifest and the vectors.

#[derive(Debug, Deserialize)]
struct Manifest {
    live_key_count: usize,
    keys: Vec<ManifestKey>,
    historical_revisions: Vec<HistoricalRevision>,
    deleted_keys: Vec<DeletedKey>,
}

#[derive(Debug, Deserialize)]
struct DeletedKey {
    key: String,
    delete_revision: i64,
}

#[derive(Debug, Deserialize)]
struct ManifestKey {
    key: String,
    value_sha256: String,
    value_size: u64,
    mod_revision: i64,
    /// `file.json:case-name` for values that come from a vector.
    source: Option<String>,
    /// `ok`, an error class, or null (kube-apiserver does not transform this key).
    expect_with_all_providers_config: Option<String>,
    plaintext_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HistoricalRevision {
    key: String,
    revision: i64,
    value_sha256: String,
}

fn manifest() -> Manifest {
    let path = root().join("testdata/snapshots/public-v34.keys.json");
    let m: Manifest = serde_json::from_str(&read(&path)).expect("manifest JSON");
    assert_eq!(
        m.keys.len(),
        m.live_key_count,
        "manifest: keys vs live_key_count"
    );
    m
}

/// A vector case by its manifest `source` (`kmsv2.json:kmsv2-seed-secret-db-pass`).
fn vector_case(source: &str) -> Value {
    let (file, name) = source
        .split_once(':')
        .unwrap_or_else(|| panic!("manifest source {source:?} is not file:case"));
    let v: Value = serde_json::from_str(&read(&root().join("testdata/vectors").join(file)))
        .expect("vector JSON");
    v["cases"]
        .as_array()
        .expect("vector cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name} in {file}"))
        .clone()
}

fn fake_plugin_header(file: &str) -> Value {
    let v: Value = serde_json::from_str(&read(&root().join("testdata/vectors").join(file)))
        .expect("vector JSON");
    v["fake_kms_plugin"].clone()
}

/// The storage prefix a key lives under: its first path segment (`/registry`, or the custom
/// `--etcd-prefix` of the aesgcm-custom-etcd-prefix vector). None for keys outside any prefix
/// (`compact_rev_key`).
fn storage_prefix(key: &str) -> Option<String> {
    let rest = key.strip_prefix('/')?;
    let (first, _) = rest.split_once('/')?;
    Some(format!("/{first}"))
}

/// Every live key of the snapshot (prefix `""`: all of them), raw values included.
fn snapshot_values() -> BTreeMap<String, RawKv> {
    let mut src = SnapshotSource::open(&snapshot_path(), b"", 16).expect("open the snapshot");
    block_on(async {
        let mut all = BTreeMap::new();
        while let Some(batch) = src.next_batch().await.expect("snapshot batch") {
            for kv in batch {
                let key = String::from_utf8(kv.key.clone()).expect("UTF-8 key");
                all.insert(key, kv);
            }
        }
        all
    })
}

/// The snapshot's live state is exactly the manifest's (keys, value hashes, sizes, revisions):
/// everything below relies on these being the values kube-apiserver's outcomes were taken on.
fn assert_values_match_manifest(m: &Manifest, values: &BTreeMap<String, RawKv>) {
    let want: BTreeSet<&str> = m.keys.iter().map(|k| k.key.as_str()).collect();
    let got: BTreeSet<&str> = values.keys().map(String::as_str).collect();
    assert_eq!(got, want, "live keys of the snapshot vs the manifest");
    for k in &m.keys {
        let kv = &values[&k.key];
        assert_eq!(
            sha_hex(&kv.value),
            k.value_sha256,
            "value hash of {}",
            k.key
        );
        assert_eq!(
            kv.value.len() as u64,
            k.value_size,
            "value size of {}",
            k.key
        );
        assert_eq!(kv.mod_revision, k.mod_revision, "mod_revision of {}", k.key);
        if let Some(src) = &k.source {
            let c = vector_case(src);
            let stored = base64_decode(c["stored_b64"].as_str().expect("stored_b64"));
            assert_eq!(
                sha_hex(&stored),
                k.value_sha256,
                "{} is not the bytes of vector {src}",
                k.key
            );
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

// ---------------------------------------------------------------------------------------------
// The config, read independently of atrest: which resources it covers and which provider writes.

struct ConfigModel {
    /// `secrets`, `configmaps`, `crontabs.stable.example.com`.
    resources: Vec<String>,
    /// The writer's stored-value prefix, `k8s:enc:kms:v2:fake-kms-v2:`.
    writer_prefix: String,
}

fn config_model(yaml: &str) -> ConfigModel {
    let v: Value = serde_saphyr::from_str(yaml).expect("config YAML");
    let rules = v["resources"].as_array().expect("resources");
    assert_eq!(
        rules.len(),
        1,
        "this test models a config with exactly one resources rule"
    );
    let resources = rules[0]["resources"]
        .as_array()
        .expect("resources[0].resources")
        .iter()
        .map(|r| r.as_str().expect("resource name").to_string())
        .collect();
    let writer = &rules[0]["providers"][0]["kms"];
    assert_eq!(
        writer["apiVersion"], "v2",
        "this test expects a KMS v2 write provider (entry 0)"
    );
    let name = writer["name"].as_str().expect("kms name");
    ConfigModel {
        resources,
        writer_prefix: format!("k8s:enc:kms:v2:{name}:"),
    }
}

impl ConfigModel {
    /// Does a config rule cover this key (`secrets` covers `<prefix>/secrets/...`,
    /// `crontabs.stable.example.com` covers `<prefix>/stable.example.com/crontabs/...`)?
    fn covers(&self, prefix: &str, key: &str) -> bool {
        let Some(path) = key.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')) else {
            return false;
        };
        self.resources.iter().any(|r| {
            let dir = match r.split_once('.') {
                Some((res, group)) => format!("{group}/{res}/"),
                None => format!("{r}/"),
            };
            path.starts_with(&dir)
        })
    }
}

/// provider and key name as the report must give them, from the stored prefix.
fn stored_provider(value: &[u8]) -> (String, Option<String>) {
    let Some(rest) = value.strip_prefix(b"k8s:enc:") else {
        return ("identity".into(), None);
    };
    let text = String::from_utf8_lossy(&rest[..rest.len().min(200)]).into_owned();
    let mut parts = text.splitn(4, ':');
    let provider = parts.next().unwrap_or_default().to_string();
    let _version = parts.next();
    let name = parts.next().map(String::from);
    (provider, name)
}

/// What the scan must say about one manifest key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    status: &'static str,
    /// For undecryptable / unknown-key: the error class `detail` must equal.
    class: Option<String>,
}

fn expected_status(
    k: &ManifestKey,
    value: &[u8],
    cfg: &ConfigModel,
    current_key_id: &str,
) -> Option<Expected> {
    let outcome = k.expect_with_all_providers_config.as_deref()?;
    let prefix = storage_prefix(&k.key).expect("a transformed key has a storage prefix");
    if outcome != "ok" {
        let status = if outcome == "unknown-key" {
            "unknown-key"
        } else {
            "undecryptable"
        };
        return Some(Expected {
            status,
            class: Some(outcome.to_string()),
        });
    }
    let encrypted = value.starts_with(b"k8s:enc:");
    let status = if !cfg.covers(&prefix, &k.key) {
        // No rule: kube-apiserver writes these with identity, so a readable plaintext is current.
        assert!(
            !encrypted,
            "{}: readable and encrypted without a rule",
            k.key
        );
        "current"
    } else if !encrypted {
        "plaintext"
    } else if value.starts_with(cfg.writer_prefix.as_bytes()) {
        // The writer is KMS v2: current only under the plugin's current key id and with the
        // seed DEK source type kube-apiserver writes today; an AES_GCM_KEY value is stale.
        let src = k
            .source
            .as_deref()
            .expect("a KMS v2 value comes from a vector");
        let kms = &vector_case(src)["kms"];
        let key_id = kms["key_id"].as_str().expect("vector kms.key_id");
        let source_type = kms["encrypted_dek_source_type"]
            .as_str()
            .expect("vector encrypted_dek_source_type");
        if key_id == current_key_id && source_type != "AES_GCM_KEY" {
            "current"
        } else {
            "stale"
        }
    } else {
        "stale"
    };
    Some(Expected {
        status,
        class: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The environment: two real KMS plugins started as scripts/demo starts them, and the config.

struct Env {
    v2: KmsPlugin,
    _v1: KmsPlugin,
    /// Holds the sockets and the config (removed on Drop, after the plugins are killed).
    dir: tempfile::TempDir,
    config: PathBuf,
    config_text: String,
}

/// The demo's KEK file, checked against the vectors' fake plugin (they must be the same key).
fn demo_kek(file: &str, vector_file: &str) -> String {
    let kek = read(&root().join("testdata/demo").join(file))
        .trim()
        .to_string();
    assert!(
        fake_plugin_header(vector_file)["kek_b64"] == kek.as_str(),
        "testdata/demo/{file} is not the KEK of testdata/vectors/{vector_file}"
    );
    kek
}

fn start_env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    // Like scripts/demo: v2 with the current key id and annotations, v1 with its own KEK.
    let v2h = fake_plugin_header("kmsv2.json");
    let mut v2 = KmsPlugin::builder()
        .kek_b64(&demo_kek("kmsv2.kek.b64", "kmsv2.json"))
        .key_id(v2h["current_key_id"].as_str().expect("current_key_id"))
        .api("v2")
        .socket(&dir.path().join("fake-kms-v2.sock"));
    for (k, val) in v2h["current_annotations"].as_object().expect("annotations") {
        v2 = v2.annotation(k, val.as_str().expect("annotation value"));
    }
    let v2 = v2.start();
    let v1 = KmsPlugin::builder()
        .kek_b64(&demo_kek("kmsv1.kek.b64", "kmsv1.json"))
        .key_id("fake-kek-v1")
        .api("v1")
        .socket(&dir.path().join("fake-kms-v1.sock"))
        .start();

    // The config the manifest was judged under, pointed at our sockets. Only the endpoints and
    // the KMS timeout differ (3s is short for a loaded test machine; it changes no outcome).
    let sockdir = dir.path().display().to_string();
    let judged =
        read(&root().join("testdata/vectors/configs/all-providers.encryption-config.yaml"));
    assert!(
        judged.contains(CONFIG_SOCKET_DIR),
        "all-providers config endpoints moved"
    );
    let text = judged.replace(CONFIG_SOCKET_DIR, &format!("unix://{sockdir}/"));
    // scripts/demo templates the very same config.
    let demo = read(&root().join("testdata/demo/encryption-config.yaml.in"))
        .replace("@SOCKDIR@", &sockdir);
    assert_eq!(
        demo, text,
        "testdata/demo/encryption-config.yaml.in differs from the all-providers config the manifest was judged under"
    );
    let text = text.replace("timeout: 3s", "timeout: 30s");
    let config = dir.path().join("encryption-config.yaml");
    std::fs::write(&config, &text).expect("write config");
    Env {
        v2,
        _v1: v1,
        dir,
        config,
        config_text: text,
    }
}

/// Run atrest; returns (exit code, stdout, stderr). Never `assert_cmd`'s `assert()`: its
/// failure message prints stdout, which may be a plaintext here.
fn run_atrest(args: &[&str], stdin_file: Option<&Path>) -> (i32, Vec<u8>, String) {
    let mut cmd = atrest_cmd();
    cmd.args(args).timeout(CMD_TIMEOUT);
    if let Some(f) = stdin_file {
        cmd.arg(f);
    }
    let out = cmd.output().expect("run atrest");
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scan_json(env: &Env, prefix: &str, extra: &[&str]) -> (i32, Value) {
    let snap = snapshot_path().display().to_string();
    let config = env.config.display().to_string();
    let mut args = vec![
        "scan",
        "--snapshot",
        &snap,
        "--encryption-provider-config",
        &config,
        "--prefix",
        prefix,
        "--verify",
        "-o",
        "json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_atrest(&args, None);
    let report: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!("scan --prefix {prefix}: not JSON ({e}); exit {code}; stderr:\n{stderr}")
    });
    (code, report)
}

fn count_map(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .expect("count map")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
        .collect()
}

/// The summary agrees with the object list and with itself.
fn assert_summary_consistent(prefix: &str, report: &Value, objects: &[Value]) {
    let s = &report["summary"];
    let total = s["objects"].as_u64().expect("summary.objects");
    assert_eq!(
        total,
        objects.len() as u64,
        "{prefix}: summary.objects vs --list all"
    );
    let by_status = count_map(&s["by_status"]);
    assert_eq!(
        by_status.values().sum::<u64>(),
        total,
        "{prefix}: by_status sum"
    );
    for (status, n) in &by_status {
        assert_eq!(s[status].as_u64(), Some(*n), "{prefix}: summary.{status}");
    }
    let mut want_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut want_resource: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut want_pk: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for o in objects {
        let status = o["status"].as_str().expect("status").to_string();
        *want_status.entry(status.clone()).or_default() += 1;
        // `by_resource` names group resources as `crontabs.stable.example.com`.
        let res = match (o["resource"].as_str(), o["group"].as_str()) {
            (Some(r), Some(g)) if !g.is_empty() => format!("{r}.{g}"),
            (Some(r), _) => r.to_string(),
            (None, _) => "(non-object)".to_string(),
        };
        *want_resource
            .entry(res)
            .or_default()
            .entry(status.clone())
            .or_default() += 1;
        let pk = match o["key_name"].as_str() {
            Some(kn) => format!("{}/{kn}", o["provider"].as_str().unwrap_or("unknown")),
            None => o["provider"].as_str().unwrap_or("unknown").to_string(),
        };
        *want_pk.entry(pk).or_default().entry(status).or_default() += 1;
    }
    let nonzero = |m: BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.into_iter().filter(|(_, n)| *n > 0).collect()
    };
    assert_eq!(
        nonzero(by_status),
        want_status,
        "{prefix}: by_status vs objects"
    );
    let got_resource: BTreeMap<String, BTreeMap<String, u64>> = s["by_resource"]
        .as_object()
        .expect("by_resource")
        .iter()
        .map(|(k, v)| (k.clone(), nonzero(count_map(v))))
        .collect();
    assert_eq!(
        got_resource, want_resource,
        "{prefix}: by_resource vs objects"
    );
    let got_pk: BTreeMap<String, BTreeMap<String, u64>> = s["by_provider_key"]
        .as_object()
        .expect("by_provider_key")
        .iter()
        .map(|(k, v)| (k.clone(), nonzero(count_map(v))))
        .collect();
    assert_eq!(got_pk, want_pk, "{prefix}: by_provider_key vs objects");
    let current = want_status.get("current").copied().unwrap_or(0);
    assert_eq!(
        s["findings"].as_u64(),
        Some(total - current),
        "{prefix}: findings"
    );
    let breakdown: u64 = s["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|r| r["objects"].as_u64().expect("breakdown objects"))
        .sum();
    assert_eq!(breakdown, total, "{prefix}: breakdown sum");
}

/// `-o prometheus` of the same scan carries the expected per-status counts and totals.
fn assert_prometheus_counts(
    env: &Env,
    prefix: &str,
    want_counts: &BTreeMap<String, u64>,
    want_code: i32,
) {
    let snap = snapshot_path().display().to_string();
    let config = env.config.display().to_string();
    let args = [
        "scan",
        "--snapshot",
        &snap,
        "--encryption-provider-config",
        &config,
        "--prefix",
        prefix,
        "--verify",
        "-o",
        "prometheus",
        "--no-progress",
    ];
    let (code, stdout, stderr) = run_atrest(&args, None);
    assert_eq!(
        code, want_code,
        "prometheus scan exit code; stderr:\n{stderr}"
    );
    let text = String::from_utf8(stdout).expect("prometheus text is UTF-8");
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut cells = 0u64;
    let mut scan_objects = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let n: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample: {line}"));
        if let Some(status) = series
            .strip_prefix("atrest_objects_by_status{status=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            if n > 0.0 {
                by_status.insert(status.to_string(), n as u64);
            }
        } else if series.starts_with("atrest_objects{") {
            cells += n as u64;
        } else if series == "atrest_scan_objects" {
            scan_objects = Some(n as u64);
        }
    }
    let total: u64 = want_counts.values().sum();
    assert_eq!(
        &by_status, want_counts,
        "{prefix}: prometheus objects by status"
    );
    assert_eq!(cells, total, "{prefix}: sum of atrest_objects");
    assert_eq!(scan_objects, Some(total), "{prefix}: atrest_scan_objects");
}

/// Manifest keys (with a non-null outcome) grouped by storage prefix.
fn keys_by_prefix(m: &Manifest) -> BTreeMap<String, Vec<&ManifestKey>> {
    let mut groups: BTreeMap<String, Vec<&ManifestKey>> = BTreeMap::new();
    for k in &m.keys {
        match (&k.expect_with_all_providers_config, storage_prefix(&k.key)) {
            (Some(_), Some(p)) => groups.entry(p).or_default().push(k),
            (Some(_), None) => panic!("{}: transformed but under no prefix", k.key),
            (None, _) => {}
        }
    }
    groups
}

#[test]
fn scan_matches_apiserver_outcomes() {
    let m = manifest();
    let values = snapshot_values();
    assert_values_match_manifest(&m, &values);
    let env = start_env();
    let cfg = config_model(&env.config_text);
    let current_key_id = fake_plugin_header("kmsv2.json")["current_key_id"]
        .as_str()
        .expect("current_key_id")
        .to_string();

    let groups = keys_by_prefix(&m);
    assert!(
        groups.contains_key("/registry"),
        "manifest has /registry keys"
    );
    let untransformed: Vec<&str> = m
        .keys
        .iter()
        .filter(|k| k.expect_with_all_providers_config.is_none())
        .map(|k| k.key.as_str())
        .collect();
    let mut scanned = 0usize;
    let mut mismatches: Vec<String> = Vec::new();
    for (prefix, keys) in &groups {
        let (code, report) = scan_json(&env, prefix, &["--list", "all"]);
        assert_eq!(report["schema"], "atrest.scan/v1");
        assert_eq!(report["source"]["type"], "snapshot");
        assert_eq!(report["verified"], true);
        let objects = report["objects"].as_array().expect("objects").clone();
        let by_key: BTreeMap<&str, &Value> = objects
            .iter()
            .map(|o| (o["key"].as_str().expect("object key"), o))
            .collect();
        let want_keys: BTreeSet<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        let got_keys: BTreeSet<&str> = by_key.keys().copied().collect();
        assert_eq!(
            got_keys, want_keys,
            "scan --prefix {prefix}: object keys vs manifest"
        );
        assert_eq!(
            report["summary"]["objects"].as_u64(),
            Some(keys.len() as u64),
            "scan --prefix {prefix}: object count vs the manifest's live keys under it"
        );
        for u in &untransformed {
            assert!(
                !by_key.contains_key(u),
                "{u} is not an object and must not be scanned"
            );
        }
        assert_summary_consistent(prefix, &report, &objects);

        let mut want_findings = false;
        let mut want_counts: BTreeMap<String, u64> = BTreeMap::new();
        for k in keys {
            let value = &values[&k.key].value;
            let want = expected_status(k, value, &cfg, &current_key_id).expect("non-null outcome");
            let o = by_key[k.key.as_str()];
            want_findings |= want.status != "current";
            *want_counts.entry(want.status.to_string()).or_default() += 1;
            let status = o["status"].as_str().unwrap_or_default();
            let detail = o["detail"].as_str().unwrap_or_default();
            if status != want.status {
                mismatches.push(format!(
                    "{}: status {status:?}, want {:?} (manifest {:?}; detail {detail:?})",
                    k.key, want.status, k.expect_with_all_providers_config
                ));
            }
            if let Some(class) = &want.class
                && detail != class.as_str()
            {
                mismatches.push(format!(
                    "{}: detail {detail:?} is not the error class {class:?}",
                    k.key
                ));
            }
            let (provider, key_name) = stored_provider(value);
            assert_eq!(o["provider"], provider.as_str(), "{}: provider", k.key);
            assert_eq!(
                o["key_name"].as_str(),
                key_name.as_deref(),
                "{}: key_name",
                k.key
            );
            assert_eq!(o["mod_revision"], k.mod_revision, "{}: mod_revision", k.key);
            assert_eq!(o["size"], k.value_size, "{}: size", k.key);
        }
        let want_code = if want_findings { 1 } else { 0 };
        assert_eq!(code, want_code, "scan --prefix {prefix}: exit code");
        assert_prometheus_counts(&env, prefix, &want_counts, want_code);
        scanned += keys.len();
    }
    assert!(
        mismatches.is_empty(),
        "atrest disagrees with kube-apiserver on {} key(s):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(
        scanned + untransformed.len(),
        m.live_key_count,
        "every live key is scanned or is one kube-apiserver does not transform"
    );
    // The default /registry scan has findings (the data holds damaged values): exit 1.
    let (code, _) = scan_json(&env, "/registry", &[]);
    assert_eq!(code, 1, "scan of the demo snapshot exits 1 (findings)");
    drop(env);
}

#[test]
fn decode_matches_apiserver_plaintexts() {
    let m = manifest();
    let values = snapshot_values();
    assert_values_match_manifest(&m, &values);
    let env = start_env();
    let config = env.config.display().to_string();
    let value_file = env.dir.path().join("value.bin");
    let mut failures: Vec<String> = Vec::new();
    let mut ok_checked = 0;
    let mut err_checked = 0;
    for k in &m.keys {
        let Some(outcome) = k.expect_with_all_providers_config.as_deref() else {
            continue;
        };
        let prefix = storage_prefix(&k.key).expect("prefix");
        std::fs::write(&value_file, &values[&k.key].value).expect("write value file");
        let (code, stdout, stderr) = run_atrest(
            &[
                "decode",
                "--key",
                &k.key,
                "--prefix",
                &prefix,
                "--encryption-provider-config",
                &config,
                "--verify",
                "--show-plaintext",
            ],
            Some(&value_file),
        );
        if outcome == "ok" {
            ok_checked += 1;
            let want = k
                .plaintext_sha256
                .as_deref()
                .expect("plaintext_sha256 for ok");
            if code != 0 {
                failures.push(format!("{}: exit {code}, want 0; stderr: {stderr}", k.key));
            } else if sha_hex(&stdout) != want {
                failures.push(format!(
                    "{}: plaintext SHA-256 {} ({} bytes), want {want}",
                    k.key,
                    sha_hex(&stdout),
                    stdout.len()
                ));
            }
        } else {
            err_checked += 1;
            if code != 1 {
                failures.push(format!(
                    "{}: exit {code}, want 1 ({outcome}); stderr: {stderr}",
                    k.key
                ));
            } else if !stderr.contains(&format!("{outcome}:")) {
                failures.push(format!(
                    "{}: stderr does not name {outcome}: {stderr}",
                    k.key
                ));
            }
            if !stdout.is_empty() {
                failures.push(format!(
                    "{}: unreadable value but {} bytes on stdout",
                    k.key,
                    stdout.len()
                ));
            }
        }
    }
    assert!(
        ok_checked > 0 && err_checked > 0,
        "the manifest has both kinds"
    );
    assert!(
        failures.is_empty(),
        "atrest decode disagrees with kube-apiserver on {} key(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn history_reports_plaintext_residue() {
    let m = manifest();
    let hist = m
        .historical_revisions
        .iter()
        .find(|h| h.key == "/registry/secrets/billing/db-pass")
        .expect("manifest lists the db-pass history revision");
    assert_eq!(hist.revision, 11);

    // The revision is really in the file, and it is plaintext (no k8s:enc: prefix).
    let mut src =
        SnapshotSource::open(&snapshot_path(), hist.key.as_bytes(), 16).expect("open snapshot");
    let old: Vec<RawKv> = block_on(async {
        while src.next_batch().await.expect("batch").is_some() {}
        let mut all = Vec::new();
        while let Some(b) = src.next_history_batch().await.expect("history batch") {
            all.extend(b);
        }
        all
    });
    let rev11 = old
        .iter()
        .find(|kv| kv.key == hist.key.as_bytes() && kv.mod_revision == hist.revision)
        .expect("revision 11 of db-pass is in the snapshot history");
    assert_eq!(
        sha_hex(&rev11.value),
        hist.value_sha256,
        "history value hash"
    );
    assert!(
        !rev11.value.starts_with(b"k8s:enc:"),
        "revision 11 is plaintext"
    );

    let env = start_env();
    let (code, report) = scan_json(&env, "/registry", &["--history", "--list", "all"]);
    assert_eq!(code, 1, "residue and damaged values are findings");
    let h = &report["history"];
    let keys = h["keys"].as_array().expect("history.keys");
    let residue = keys
        .iter()
        .find(|k| k["key"] == hist.key.as_str())
        .unwrap_or_else(|| panic!("no residue reported for {}: {h}", hist.key));
    let oldest = residue["oldest_revision"]
        .as_i64()
        .expect("oldest_revision");
    let newest = residue["newest_revision"]
        .as_i64()
        .expect("newest_revision");
    assert!(
        oldest <= 11 && 11 <= newest,
        "revision 11 within [{oldest}, {newest}]"
    );
    assert!(
        residue["statuses"]
            .as_array()
            .expect("statuses")
            .iter()
            .any(|s| s == "plaintext"),
        "db-pass residue is plaintext: {residue}"
    );
    // Every residue is explained by the manifest: a listed historical revision, or the last
    // value of a deleted key (compaction keeps the latest revision at or below the compaction
    // revision, so a Secret deleted later still has its old value in the file).
    for r in keys {
        let key = r["key"].as_str().expect("residue key");
        let newest = r["newest_revision"].as_i64().expect("newest_revision");
        let listed = m
            .historical_revisions
            .iter()
            .any(|h| h.key == key && r["oldest_revision"].as_i64() <= Some(h.revision));
        let deleted = m
            .deleted_keys
            .iter()
            .any(|d| d.key == key && newest < d.delete_revision);
        assert!(listed || deleted, "unexplained history residue: {r}");
    }
    assert_eq!(h["keys_with_residue"].as_u64(), Some(keys.len() as u64));
    let revs: u64 = keys
        .iter()
        .map(|k| k["revisions"].as_u64().expect("revisions"))
        .sum();
    assert_eq!(h["residue_revisions"].as_u64(), Some(revs));
    assert!(h["revisions_examined"].as_u64().unwrap_or(0) >= revs);
    // The latest revision is encrypted (aescbc, stale): the residue is only in the history.
    let latest = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["key"] == hist.key.as_str())
        .expect("db-pass in the latest state");
    assert_eq!(latest["provider"], "aescbc");
    assert_eq!(latest["status"], "stale");
}

/// The KMS v2 plugin's current key id moves on (a KEK rotation, SIGHUP): every value under the old
/// key id is now stale, and nothing else changes. `expected_status` takes the new key id.
#[test]
fn scan_follows_the_plugins_current_key_id() {
    let m = manifest();
    let values = snapshot_values();
    let env = start_env();
    let cfg = config_model(&env.config_text);
    let rotated = "fake-kek-2025-01";
    env.v2.set_key_id(rotated);
    let (code, report) = scan_json(&env, "/registry", &["--list", "all"]);
    assert_eq!(code, 1);
    let by_key: BTreeMap<&str, &Value> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| (o["key"].as_str().expect("key"), o))
        .collect();
    let mut newly_stale = 0;
    let mut mismatches = Vec::new();
    for k in m.keys.iter().filter(|k| k.key.starts_with("/registry/")) {
        let value = &values[&k.key].value;
        let Some(want) = expected_status(k, value, &cfg, rotated) else {
            continue;
        };
        let before = expected_status(k, value, &cfg, "fake-kek-2024-06").expect("outcome");
        if before.status == "current" && want.status == "stale" {
            newly_stale += 1;
        }
        let got = by_key
            .get(k.key.as_str())
            .and_then(|o| o["status"].as_str())
            .unwrap_or("(missing)");
        if got != want.status {
            mismatches.push(format!("{}: {got}, want {}", k.key, want.status));
        }
    }
    assert!(
        newly_stale > 0,
        "some values were current under the old key id"
    );
    assert!(
        mismatches.is_empty(),
        "after the key id moved to {rotated}:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(
        report["summary"]["by_kms_key_id"]
            .get(rotated)
            .and_then(Value::as_u64)
            .unwrap_or(0),
        0,
        "no stored value carries the new key id"
    );
}

/// `atrest decode -o json --verify` (no plaintext) says what kube-apiserver's wire view of each
/// value says: the KMS v2 EncryptedObject fields (as the vectors record them), the error class,
/// and whether the read entry is the writer (stale or not).
#[test]
fn decode_json_matches_the_wire_fields() {
    let m = manifest();
    let values = snapshot_values();
    let env = start_env();
    let cfg = config_model(&env.config_text);
    let current_key_id = fake_plugin_header("kmsv2.json")["current_key_id"]
        .as_str()
        .expect("current_key_id")
        .to_string();
    let config = env.config.display().to_string();
    let value_file = env.dir.path().join("value.bin");
    let mut failures: Vec<String> = Vec::new();
    for k in &m.keys {
        let Some(outcome) = k.expect_with_all_providers_config.as_deref() else {
            continue;
        };
        let prefix = storage_prefix(&k.key).expect("prefix");
        let value = &values[&k.key].value;
        std::fs::write(&value_file, value).expect("write value file");
        let (code, stdout, stderr) = run_atrest(
            &[
                "decode",
                "--key",
                &k.key,
                "--prefix",
                &prefix,
                "--encryption-provider-config",
                &config,
                "--verify",
                "-o",
                "json",
            ],
            Some(&value_file),
        );
        let Ok(d) = serde_json::from_slice::<Value>(&stdout) else {
            failures.push(format!("{}: exit {code}, no JSON; stderr: {stderr}", k.key));
            continue;
        };
        assert_eq!(d["schema"], "atrest.decode/v1");
        assert_eq!(d["value_bytes"], k.value_size, "{}: value_bytes", k.key);
        let want = expected_status(k, value, &cfg, &current_key_id).expect("outcome");
        if outcome == "ok" {
            if code != 0 || d["status"] != "ok" || d["verified"] != true {
                failures.push(format!("{}: exit {code}, status {}", k.key, d["status"]));
            }
            // Readable: stale unless it is what the writer would write today.
            let stale = want.status != "current";
            if d["config"]["stale"] != stale {
                failures.push(format!(
                    "{}: config.stale {}, want {stale} (scan status {})",
                    k.key, d["config"]["stale"], want.status
                ));
            }
        } else if code != 1 || d["status"] != "unreadable" || d["error"]["class"] != outcome {
            failures.push(format!(
                "{}: exit {code}, status {}, class {}, want unreadable/{outcome}",
                k.key, d["status"], d["error"]["class"]
            ));
        }
        if let Some(src) = &k.source {
            let case = vector_case(src);
            if let Some(kind) = case["object"]["kind"].as_str()
                && outcome == "ok"
                && d["decrypted"]["kind"]
                    .as_str()
                    .is_some_and(|got| got != kind)
            {
                failures.push(format!(
                    "{}: decrypted kind {}, want {kind}",
                    k.key, d["decrypted"]["kind"]
                ));
            }
            let kms = &case["kms"];
            if kms["api_version"] == "v2" && kms["key_id"].is_string() {
                let got = &d["kms_v2"];
                if got["key_id"] != kms["key_id"] {
                    failures.push(format!(
                        "{}: keyID {}, want {}",
                        k.key, got["key_id"], kms["key_id"]
                    ));
                }
                let want_type = kms["encrypted_dek_source_type"]
                    .as_str()
                    .unwrap_or_default();
                let got_type = got["dek_source_type"].as_str().unwrap_or_default();
                let type_ok = if want_type.chars().all(|c| c.is_ascii_digit()) {
                    got_type.contains(want_type)
                } else {
                    got_type == want_type
                };
                if !type_ok {
                    failures.push(format!(
                        "{}: DEK source type {got_type:?}, want {want_type:?}",
                        k.key
                    ));
                }
                if got["annotations"] != kms["annotations"] {
                    failures.push(format!(
                        "{}: annotations {}, want {}",
                        k.key, got["annotations"], kms["annotations"]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "atrest decode -o json disagrees on {} key(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
