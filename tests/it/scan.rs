//! Integration tests: `atrest scan` against a real etcd (mTLS, random ports) holding values
//! written by the codec and by kube-apiserver itself (the compatibility vectors): the report per
//! key, exit codes per status and `--fail-on`, the Prometheus text, pagination, `--resource`,
//! `--list all`, refused plaintext transport.
use crate::common::kms::KmsPlugin;
use crate::common::{Etcd, EtcdOptions, Transport, atrest_cmd};
use atrest::codec::chain::Transformers;
use atrest::config::EncryptionConfig;
use atrest::resource::GroupResource;
use base64::Engine as _;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A protobuf-enveloped plaintext Secret, as kube-apiserver stores it with identity.
fn plain_secret() -> Vec<u8> {
    let mut v = b"k8s\x00".to_vec();
    // runtime.Unknown{typeMeta{apiVersion "v1", kind "Secret"}}
    v.extend_from_slice(b"\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x00");
    v
}

fn plain_configmap() -> Vec<u8> {
    let mut v = b"k8s\x00".to_vec();
    v.extend_from_slice(b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x00");
    v
}

fn plain_crontab() -> Vec<u8> {
    br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"ct"}}"#.to_vec()
}

fn key_b64(fill: u8, len: usize) -> String {
    B64.encode(vec![fill; len])
}

/// The config the scans judge against: secrets written with aesgcm/new (aescbc/old and
/// identity still readable), configmaps in plaintext (identity first), crontabs encrypted with
/// no identity at all (so plaintext there is unreadable by kube-apiserver).
fn current_config() -> String {
    format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: new
              secret: {new}
      - aescbc:
          keys:
            - name: old
              secret: {old}
      - identity: {{}}
  - resources: [configmaps]
    providers:
      - identity: {{}}
      - aescbc:
          keys:
            - name: old
              secret: {old}
  - resources: [crontabs.stable.example.com]
    providers:
      - aesgcm:
          keys:
            - name: new
              secret: {new}
"#,
        new = key_b64(0x11, 32),
        old = key_b64(0x22, 32)
    )
}

/// The previous config: everything written with aescbc/old.
fn old_config() -> String {
    format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["*.*"]
    providers:
      - aescbc:
          keys:
            - name: old
              secret: {old}
"#,
        old = key_b64(0x22, 32)
    )
}

fn transformers(yaml: &str) -> Transformers {
    let cfg = EncryptionConfig::parse(yaml, "test config").expect("test config parses");
    Transformers::new(&cfg, &atrest::kms::GrpcConnector).expect("transformers build")
}

async fn write(t: &Transformers, gr: &str, key: &str, plaintext: &[u8]) -> Vec<u8> {
    let gr = GroupResource::parse(gr);
    t.chain_for(Some(&gr))
        .write(key.as_bytes(), plaintext)
        .await
        .expect("codec writes")
}

const S: &str = "/registry/secrets/default/";
const CM: &str = "/registry/configmaps/default/";
const CT: &str = "/registry/stable.example.com/crontabs/default/";

/// Loads one value per status into `etcd`; returns the config file path and the expected
/// status per key without and with `--verify`.
async fn load_mixed(etcd: &Etcd) -> (PathBuf, BTreeMap<String, (&'static str, &'static str)>) {
    let cur = transformers(&current_config());
    let old = transformers(&old_config());
    let mut expect = BTreeMap::new();
    let mut put =
        async |key: String, value: Vec<u8>, plain: &'static str, verified: &'static str| {
            etcd.put(key.clone(), value).await;
            expect.insert(key, (plain, verified));
        };

    let k = format!("{S}s-current");
    let v = write(&cur, "secrets", &k, &plain_secret()).await;
    put(k.clone(), v.clone(), "current", "current").await;
    // The same ciphertext under another key: the AAD (the etcd key) no longer matches.
    put(format!("{S}s-moved"), v.clone(), "current", "undecryptable").await;
    let mut corrupt = v;
    if let Some(last) = corrupt.last_mut() {
        *last ^= 0x01;
    }
    put(format!("{S}s-corrupt"), corrupt, "current", "undecryptable").await;

    let k = format!("{S}s-stale");
    let v = write(&old, "secrets", &k, &plain_secret()).await;
    put(k, v, "stale", "stale").await;
    put(
        format!("{S}s-plain"),
        plain_secret(),
        "plaintext",
        "plaintext",
    )
    .await;
    let mut unknown = b"k8s:enc:aescbc:v1:gone:".to_vec();
    unknown.extend_from_slice(&[7u8; 48]);
    put(
        format!("{S}s-unknown"),
        unknown,
        "unknown-key",
        "unknown-key",
    )
    .await;

    put(
        format!("{CM}cm-plain"),
        plain_configmap(),
        "current",
        "current",
    )
    .await;
    let k = format!("{CM}cm-enc");
    let v = write(&old, "configmaps", &k, &plain_configmap()).await;
    put(k, v, "stale", "stale").await;

    put(
        format!("{CT}ct-plain"),
        plain_crontab(),
        "plaintext",
        "plaintext",
    )
    .await;
    let k = format!("{CT}ct-enc");
    let v = write(&cur, "crontabs.stable.example.com", &k, &plain_crontab()).await;
    put(k, v, "current", "current").await;

    // Outside the prefix: never scanned.
    etcd.put("/other/secrets/default/x", plain_secret()).await;

    let cfg = etcd.dir().join("encryption-config.yaml");
    std::fs::write(&cfg, current_config()).expect("write config");
    (cfg, expect)
}

/// Run `atrest scan` with the etcd's connection flags; returns exit code, stdout and stderr.
fn scan(etcd: &Etcd, args: &[&str]) -> (i32, String, String) {
    let out = atrest_cmd()
        .arg("scan")
        .args(etcd.atrest_conn_args())
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("run atrest");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scan_json(etcd: &Etcd, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = scan(etcd, &all);
    assert!(code == 0 || code == 1, "scan failed ({code}): {stderr}");
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}); stderr: {stderr}"));
    (code, v)
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["objects"]
        .as_array()
        .expect("objects is a list")
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn object<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in the report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_per_key_with_and_without_verify() {
    let etcd = Etcd::start();
    let (cfg, expect) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();

    let (code, r) = scan_json(
        &etcd,
        &["--encryption-provider-config", &cfg, "--list", "all"],
    );
    assert_eq!(code, 1, "findings present");
    assert_eq!(r["schema"], "atrest.scan/v1");
    assert_eq!(r["source"]["type"], "etcd");
    assert_eq!(r["source"]["endpoints"][0], etcd.endpoint());
    assert_eq!(r["source"]["revision"], etcd.revision().await);
    assert_eq!(r["prefix"], "/registry");
    assert_eq!(r["config"], cfg.as_str());
    assert_eq!(r["verified"], false);
    let want: BTreeMap<String, String> = expect
        .iter()
        .map(|(k, (s, _))| (k.clone(), s.to_string()))
        .collect();
    assert_eq!(statuses(&r), want);
    assert_eq!(r["summary"]["objects"], want.len() as u64);

    // Object fields.
    let o = object(&r, &format!("{S}s-current"));
    assert_eq!(o["group"], "");
    assert_eq!(o["resource"], "secrets");
    assert_eq!(o["namespace"], "default");
    assert_eq!(o["name"], "s-current");
    assert_eq!(o["provider"], "aesgcm");
    assert_eq!(o["key_name"], "new");
    assert!(o["mod_revision"].as_i64().unwrap() > 0);
    assert!(o["size"].as_u64().unwrap() > plain_secret().len() as u64);
    let o = object(&r, &format!("{S}s-stale"));
    assert_eq!(
        (o["provider"].as_str(), o["key_name"].as_str()),
        (Some("aescbc"), Some("old"))
    );
    assert_eq!(o["detail"], Value::Null, "no error class, no keyID: {o}");
    assert!(o["message"].as_str().unwrap().contains("aescbc/old"), "{o}");
    let o = object(&r, &format!("{S}s-plain"));
    assert_eq!(o["provider"], "identity");
    assert_eq!(o["key_name"], Value::Null);
    let o = object(&r, &format!("{S}s-unknown"));
    assert_eq!(o["provider"], "aescbc");
    assert_eq!(o["detail"], "unknown-key", "{o}");
    assert!(
        o["message"].as_str().unwrap().starts_with("unknown-key: "),
        "{o}"
    );
    let o = object(&r, &format!("{CT}ct-plain"));
    assert_eq!(o["group"], "stable.example.com");
    assert_eq!(o["resource"], "crontabs");
    assert_eq!(o["detail"], Value::Null, "{o}");
    assert!(
        o["message"]
            .as_str()
            .unwrap()
            .contains("no identity provider"),
        "{o}"
    );

    // Summary maps agree with the objects.
    let s = &r["summary"];
    assert_eq!(s["by_resource"]["secrets"]["current"], 3);
    assert_eq!(s["by_resource"]["configmaps"]["stale"], 1);
    assert_eq!(
        s["by_resource"]["crontabs.stable.example.com"]["plaintext"],
        1
    );
    assert_eq!(s["by_provider_key"]["aescbc/old"]["stale"], 2);
    assert_eq!(s["by_provider_key"]["aesgcm/new"]["current"], 4);
    assert_eq!(s["by_provider_key"]["identity"]["plaintext"], 2);
    assert_eq!(s["by_status"]["undecryptable"], 0);

    // --verify: the moved and the corrupted values fail authentication.
    let (code, r) = scan_json(
        &etcd,
        &[
            "--encryption-provider-config",
            &cfg,
            "--verify",
            "--list",
            "all",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(r["verified"], true);
    let want: BTreeMap<String, String> = expect
        .iter()
        .map(|(k, (_, s))| (k.clone(), s.to_string()))
        .collect();
    assert_eq!(statuses(&r), want);
    for k in ["s-moved", "s-corrupt"] {
        let o = object(&r, &format!("{S}{k}"));
        assert_eq!(o["detail"], "auth-failed", "{o}");
        assert!(
            o["message"].as_str().unwrap().starts_with("auth-failed: "),
            "{o}"
        );
    }

    // Default --list findings: only the non-current ones, in key order.
    let (_, r) = scan_json(&etcd, &["--encryption-provider-config", &cfg, "--verify"]);
    let listed: Vec<String> = r["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    let findings: Vec<String> = want
        .iter()
        .filter(|(_, s)| *s != "current")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(listed, findings);
    assert_eq!(r["summary"]["objects"], want.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_fail_on() {
    let etcd = Etcd::start();
    let (cfg, _) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();
    let c = |args: &[&str]| {
        let mut all = vec!["-o", "json", "--encryption-provider-config", cfg.as_str()];
        all.extend_from_slice(args);
        scan(&etcd, &all).0
    };
    // Default list: plaintext, stale, unknown-key, undecryptable.
    assert_eq!(c(&[]), 1);
    assert_eq!(c(&["--fail-on", "none"]), 0);
    // Only undecryptable: nothing fails without --verify, the corrupt values with it.
    assert_eq!(c(&["--fail-on", "undecryptable"]), 0);
    assert_eq!(c(&["--fail-on", "undecryptable", "--verify"]), 1);
    assert_eq!(c(&["--fail-on", "unknown-key"]), 1);
    // configmaps: one stale, nothing else.
    assert_eq!(
        c(&[
            "--resource",
            "configmaps",
            "--fail-on",
            "plaintext,unknown-key"
        ]),
        0
    );
    assert_eq!(c(&["--resource", "configmaps", "--fail-on", "stale"]), 1);
    // crontabs: one plaintext (unreadable by the apiserver), one current.
    assert_eq!(
        c(&[
            "--resource",
            "crontabs.stable.example.com",
            "--fail-on",
            "stale"
        ]),
        0
    );
    assert_eq!(
        c(&[
            "--resource",
            "crontabs.stable.example.com",
            "--fail-on",
            "plaintext"
        ]),
        1
    );
    // A bad --fail-on is a usage error.
    let (code, _, stderr) = scan(&etcd, &["--fail-on", "stael"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("stael"), "{stderr}");
    // --history without --snapshot is refused.
    let (code, _, stderr) = scan(&etcd, &["--history"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--snapshot"), "{stderr}");
    // A missing config file is an error naming it.
    let (code, _, stderr) = scan(
        &etcd,
        &["--encryption-provider-config", "/nonexistent/enc.yaml"],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/enc.yaml"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_filter_and_list_all() {
    let etcd = Etcd::start();
    let (cfg, expect) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();
    let (_, r) = scan_json(
        &etcd,
        &[
            "--encryption-provider-config",
            &cfg,
            "--resource",
            "configmaps",
            "--resource",
            "crontabs.stable.example.com",
            "--list",
            "all",
        ],
    );
    let want: BTreeSet<String> = expect
        .keys()
        .filter(|k| k.starts_with(CM) || k.starts_with(CT))
        .cloned()
        .collect();
    let got: BTreeSet<String> = statuses(&r).into_keys().collect();
    assert_eq!(got, want);
    assert_eq!(r["summary"]["objects"], want.len() as u64);
    assert!(r["summary"]["by_resource"].get("secrets").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_parses_and_adds_up() {
    let etcd = Etcd::start();
    let (cfg, expect) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();
    let prom_file = etcd.dir().join("textfile").join("atrest.prom");
    std::fs::create_dir_all(prom_file.parent().unwrap()).unwrap();
    let prom_arg = prom_file.display().to_string();
    let (code, text, stderr) = scan(
        &etcd,
        &[
            "-o",
            "prometheus",
            "--encryption-provider-config",
            &cfg,
            "--verify",
            "--output-file",
            &prom_arg,
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    // --output-file holds the same text, written atomically (no temp file left behind).
    assert_eq!(std::fs::read_to_string(&prom_file).unwrap(), text);
    let leftovers: Vec<_> = std::fs::read_dir(prom_file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let samples = parse_prometheus(&text);
    let sum = |name: &str, filter: &dyn Fn(&BTreeMap<String, String>) -> bool| -> f64 {
        samples
            .iter()
            .filter(|s| s.0 == name && filter(&s.1))
            .map(|s| s.2)
            .sum()
    };
    assert_eq!(sum("atrest_objects", &|_| true), expect.len() as f64);
    assert_eq!(
        sum("atrest_objects_by_status", &|_| true),
        expect.len() as f64
    );
    let want_undecryptable = expect
        .values()
        .filter(|(_, v)| *v == "undecryptable")
        .count();
    assert_eq!(
        sum("atrest_objects", &|l| l["status"] == "undecryptable"),
        want_undecryptable as f64
    );
    assert_eq!(
        sum("atrest_objects", &|l| l["resource"] == "secrets"
            && l["provider"] == "aescbc"
            && l["key"] == "old"),
        1.0
    );
    let one = |name: &str| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == name)
            .map(|s| s.2)
            .collect();
        assert_eq!(v.len(), 1, "{name}: {text}");
        v[0]
    };
    assert!(one("atrest_scan_revision") >= 1.0);
    assert_eq!(
        one("atrest_scan_findings"),
        expect.values().filter(|(_, v)| *v != "current").count() as f64
    );
    assert!(one("atrest_scan_duration_seconds") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ts = one("atrest_scan_timestamp_seconds");
    assert!((now - ts).abs() < 600.0, "timestamp {ts} vs now {now}");
    assert_eq!(one("atrest_scan_verified"), 1.0);
}

/// Every line is a HELP/TYPE comment or `name{labels} value`; every sample's family has both.
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            assert_eq!(parts.len(), 2, "TYPE line {line:?}");
            assert!(["gauge", "counter"].contains(&parts[1]), "{line}");
            typed.insert(parts[0].to_string());
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "stray line {line:?}"
        );
        let (head, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                (n.to_string(), parse_labels(body))
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(helped.contains(&name), "{name} has no HELP");
        assert!(typed.contains(&name), "{name} has no TYPE");
        out.push((name, labels, value));
    }
    assert!(!out.is_empty(), "no samples");
    out
}

fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} value is quoted");
        let mut v = String::new();
        loop {
            match chars.next().expect("label value ends") {
                '\\' => match chars.next().expect("escape") {
                    'n' => v.push('\n'),
                    c @ ('\\' | '"') => v.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        out.insert(name, v);
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("unexpected {c:?} after a label"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_across_many_pages() {
    let etcd = Etcd::start();
    let n = 1234usize;
    let kvs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("{CM}cm-{i:05}"), plain_configmap()))
        .collect();
    let rev = etcd.put_many(kvs.clone()).await;
    // No config: every object is plaintext, so every key is listed.
    let (code, r) = scan_json(&etcd, &["--page-size", "100"]);
    assert_eq!(code, 1, "plaintext without a config is a finding");
    assert_eq!(r["summary"]["objects"], n as u64);
    assert_eq!(r["summary"]["plaintext"], n as u64);
    assert_eq!(r["source"]["revision"], rev);
    let keys: Vec<&str> = r["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = kvs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want, "every key once, in key order");
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("no EncryptionConfiguration"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_config_plaintext_or_encrypted() {
    let etcd = Etcd::start();
    let (_cfg, _) = load_mixed(&etcd).await;
    let (code, r) = scan_json(&etcd, &["--list", "all", "--fail-on", "encrypted"]);
    assert_eq!(code, 1);
    let st = statuses(&r);
    assert_eq!(st[&format!("{S}s-current")], "encrypted");
    assert_eq!(st[&format!("{S}s-unknown")], "encrypted");
    assert_eq!(st[&format!("{S}s-plain")], "plaintext");
    assert_eq!(st[&format!("{CM}cm-plain")], "plaintext");
    let o = object(&r, &format!("{S}s-stale"));
    assert_eq!(
        (o["provider"].as_str(), o["key_name"].as_str()),
        (Some("aescbc"), Some("old"))
    );
    let o = object(&r, &format!("{S}s-unknown"));
    assert_eq!(
        (o["provider"].as_str(), o["key_name"].as_str()),
        (Some("aescbc"), Some("gone"))
    );
    // Only plaintext fails by default: encrypted is not in the default --fail-on.
    let (code, _, _) = scan(
        &etcd,
        &[
            "-o",
            "json",
            "--resource",
            "crontabs.stable.example.com",
            "--fail-on",
            "stale,unknown-key,undecryptable",
        ],
    );
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output() {
    let etcd = Etcd::start();
    let (cfg, _) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();
    let (code, text, stderr) = scan(
        &etcd,
        &["-o", "table", "--encryption-provider-config", &cfg],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        text.contains("RESOURCE") && text.contains("PROVIDER/KEY"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("secrets") && l.contains("aescbc/old"))
        .unwrap_or_else(|| panic!("no secrets aescbc/old row: {text}"));
    assert!(row.contains("stale"), "{row}");
    assert!(
        text.contains(&format!("{S}s-unknown")),
        "findings listed: {text}"
    );
    assert!(
        !text.contains(&format!("{S}s-current")),
        "current not listed: {text}"
    );
    // No progress bar on a non-terminal stderr.
    assert!(!stderr.contains("keys ("), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_plaintext_transport() {
    let etcd = Etcd::start_with(EtcdOptions {
        transport: Transport::Plain,
        ..Default::default()
    });
    etcd.put(format!("{CM}a"), plain_configmap()).await;
    let out = atrest_cmd()
        .args(["scan", "-o", "json", "--endpoints", &etcd.endpoint()])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("run atrest");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-transport"), "{stderr}");
    assert!(out.stdout.is_empty(), "no report on an error");
    // With the flag it works.
    let (code, r) = scan_json(&etcd, &["--fail-on", "none"]);
    assert_eq!(code, 0);
    assert_eq!(r["summary"]["objects"], 1);
}

/// The kube-apiserver-written vectors under their own etcd keys, judged with their file's
/// config and `--verify`: `ok` is current (the writer key) or stale, an error class is
/// unknown-key (no-provider/unknown-key) or undecryptable with the class in `detail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_vectors() {
    let etcd = Etcd::start();
    let dir = vectors_dir();
    for file in ["identity", "aescbc", "aesgcm", "secretbox"] {
        let doc = read_vectors(file);
        let config = dir.join(doc["config_file"].as_str().unwrap());
        let writer = writer_key_name(&config);
        check_vectors(&etcd, file, &doc, &config, &|case: &Value| {
            if case["key_name"].as_str() == writer.as_deref() {
                "current"
            } else {
                "stale"
            }
        })
        .await;
    }
}

/// The KMS v1 and v2 vectors, served by a real `atrest-test-kms` holding the vectors' KEK:
/// v2 objects under an older keyID or the legacy AES_GCM_KEY type, and v1 objects in the
/// legacy CBC format, are stale; every v2 object names its keyID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_compatibility_vectors() {
    let etcd = Etcd::start();
    let dir = vectors_dir();
    for (file, sock) in [
        ("kmsv1", "unix:///var/run/kmsplugin/fake-kms-v1.sock"),
        ("kmsv2", "unix:///var/run/kmsplugin/fake-kms-v2.sock"),
    ] {
        let plugin = KmsPlugin::builder_for_vectors(&dir.join(format!("{file}.json"))).start();
        let doc = read_vectors(file);
        let text = std::fs::read_to_string(dir.join(doc["config_file"].as_str().unwrap()))
            .expect("vector config")
            .replace(sock, &plugin.endpoint)
            .replace("timeout: 3s", "timeout: 20s");
        let config = etcd.dir().join(format!("{file}.yaml"));
        std::fs::write(&config, text).unwrap();
        let current_key_id = doc["fake_kms_plugin"]["current_key_id"]
            .as_str()
            .map(String::from);
        let objects = check_vectors(&etcd, file, &doc, &config, &|case: &Value| {
            let k = &case["kms"];
            let stale = match k["api_version"].as_str() {
                Some("v2") => {
                    k["key_id"].as_str() != current_key_id.as_deref()
                        || k["encrypted_dek_source_type"] != "HKDF_SHA256_XNONCE_AES_GCM_SEED"
                }
                _ => k["data_cipher"] == "aes-cbc",
            };
            if stale { "stale" } else { "current" }
        })
        .await;
        for case in read_vectors(file)["cases"].as_array().unwrap() {
            let o = &objects[case["etcd_key"].as_str().unwrap()];
            let Some(id) = case["kms"]["key_id"].as_str().filter(|id| !id.is_empty()) else {
                continue;
            };
            if o["status"] == "unknown-key" {
                continue;
            }
            assert_eq!(o["kms_key_id"], id, "{o}");
            if o["status"] == "undecryptable" {
                // The error class is the detail; the keyID stays in kms_key_id and message.
                assert!(o["message"].as_str().unwrap().contains(id), "{o}");
            } else {
                assert_eq!(o["detail"], id, "{o}");
            }
        }
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors")
}

fn read_vectors(file: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(vectors_dir().join(format!("{file}.json"))).expect("vector file"),
    )
    .expect("vector JSON")
}

/// Load `doc`'s cases into a clean `etcd`, scan every prefix they use with `config` and
/// `--verify`, check each object against its case; returns the objects by key.
async fn check_vectors(
    etcd: &Etcd,
    file: &str,
    doc: &Value,
    config: &Path,
    ok_status: &dyn Fn(&Value) -> &'static str,
) -> BTreeMap<String, Value> {
    etcd.etcdctl_ok(&["del", "--prefix", "/"]);
    let mut expect = BTreeMap::new();
    for case in doc["cases"].as_array().unwrap() {
        let key = case["etcd_key"].as_str().unwrap().to_string();
        let value = B64.decode(case["stored_b64"].as_str().unwrap()).unwrap();
        etcd.put(key.clone(), value).await;
        expect.insert(key, case.clone());
    }
    let cfg = config.display().to_string();
    // Most cases live under /registry; one uses a custom --etcd-prefix (its AAD).
    let prefixes: BTreeSet<String> = expect
        .keys()
        .map(|k| format!("/{}", k.trim_start_matches('/').split('/').next().unwrap()))
        .collect();
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for prefix in &prefixes {
        let (_, r) = scan_json(
            etcd,
            &[
                "--encryption-provider-config",
                &cfg,
                "--verify",
                "--list",
                "all",
                "--prefix",
                prefix,
            ],
        );
        for o in r["objects"].as_array().unwrap() {
            let key = o["key"].as_str().unwrap().to_string();
            assert!(key.starts_with(prefix.as_str()), "{key} outside {prefix}");
            assert!(objects.insert(key, o.clone()).is_none(), "listed twice");
        }
    }
    assert_eq!(objects.len(), expect.len(), "{file}");
    for (key, case) in &expect {
        let o = &objects[key];
        let name = case["name"].as_str().unwrap();
        let status = o["status"].as_str().unwrap();
        match case["expect"].as_str().unwrap() {
            "ok" => assert_eq!(status, ok_status(case), "{file}/{name}: {o}"),
            class @ ("no-provider" | "unknown-key") => {
                assert_eq!(status, "unknown-key", "{file}/{name}: {o}");
                assert_eq!(o["detail"], class, "{file}/{name}: {o}");
            }
            class => {
                assert_eq!(status, "undecryptable", "{file}/{name}: {o}");
                assert_eq!(o["detail"], class, "{file}/{name}: {o}");
            }
        }
    }
    objects
}

/// A config with one KMS v2 provider (then identity) for secrets.
fn kms_config_yaml(plugin: &KmsPlugin, name: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}      - identity: {{}}\n",
        plugin.provider_yaml(name, "v2", 6)
    )
}

/// KMS v2 through a real plugin: every object names its keyID, the summary counts per keyID,
/// no Decrypt without --verify and one per seed with it; switching the plugin's key id makes
/// them stale; an unreachable plugin is an error naming the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_v2_key_ids_and_staleness() {
    let etcd = Etcd::start();
    let mut plugin = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let yaml = kms_config_yaml(&plugin, "vault");
    let cfg_path = etcd.dir().join("kms.yaml");
    std::fs::write(&cfg_path, &yaml).unwrap();
    let cfg = cfg_path.display().to_string();
    let n = 25usize;
    {
        let t = transformers(&yaml);
        t.prepare_kms().await.expect("plugin reachable");
        for i in 0..n {
            let key = format!("{S}k-{i:02}");
            let v = write(&t, "secrets", &key, &plain_secret()).await;
            etcd.put(key, v).await;
        }
    }
    let before = plugin.stats();
    let (code, r) = scan_json(
        &etcd,
        &["--encryption-provider-config", &cfg, "--list", "all"],
    );
    assert_eq!(code, 0, "{r}");
    let objs = r["objects"].as_array().unwrap();
    assert_eq!(objs.len(), n);
    for o in objs {
        assert_eq!(o["status"], "current", "{o}");
        assert_eq!(o["provider"], "kms");
        assert_eq!(o["key_name"], "vault");
        assert_eq!(o["kms_key_id"], "key-a");
        assert_eq!(o["detail"], "key-a", "{o}");
    }
    assert_eq!(
        r["summary"]["by_kms_key_id"],
        serde_json::json!({ "key-a": n })
    );
    assert_eq!(
        plugin.stats().v2_decrypt,
        before.v2_decrypt,
        "no Decrypt call without --verify"
    );

    let (code, r) = scan_json(
        &etcd,
        &[
            "--encryption-provider-config",
            &cfg,
            "--verify",
            "--list",
            "all",
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["summary"]["current"], n as u64);
    assert_eq!(
        plugin.stats().v2_decrypt - before.v2_decrypt,
        1,
        "one Decrypt for the one seed"
    );

    plugin.set_key_id("key-b");
    let (code, r) = scan_json(
        &etcd,
        &["--encryption-provider-config", &cfg, "--list", "all"],
    );
    assert_eq!(code, 1, "stale is a finding");
    assert_eq!(r["summary"]["stale"], n as u64);
    assert_eq!(r["objects"][0]["detail"], "key-a");
    let d = r["objects"][0]["message"].as_str().unwrap();
    assert!(d.contains("key-a") && d.contains("current key ID"), "{d}");

    plugin.stop();
    let (code, _, stderr) = scan(&etcd, &["-o", "json", "--encryption-provider-config", &cfg]);
    assert_eq!(code, 2, "{stderr}");
    let sock = plugin.endpoint.trim_start_matches("unix://");
    assert!(stderr.contains(sock), "names the socket: {stderr}");
}

/// The first key name of the first provider (None for identity): the writer.
fn writer_key_name(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).expect("config");
    let cfg = EncryptionConfig::parse(&text, "vector config").expect("vector config parses");
    match cfg.rules.first()?.providers.first()? {
        atrest::config::ProviderConfig::AesCbc { keys }
        | atrest::config::ProviderConfig::AesGcm { keys }
        | atrest::config::ProviderConfig::Secretbox { keys } => {
            keys.first().map(|k| k.name.clone())
        }
        atrest::config::ProviderConfig::Kms(k) => Some(k.name.clone()),
        atrest::config::ProviderConfig::Identity => None,
    }
}

/// `atrest scan --snapshot FILE` (no connection flags).
fn scan_snapshot_json(snapshot: &Path, args: &[&str]) -> (i32, Value) {
    let out = atrest_cmd()
        .args(["scan", "-o", "json", "--snapshot"])
        .arg(snapshot)
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("run atrest");
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        code == 0 || code == 1,
        "snapshot scan failed ({code}): {stderr}"
    );
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}); stderr: {stderr}"));
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_scan_gives_the_same_report() {
    let etcd = Etcd::start();
    let (cfg, expect) = load_mixed(&etcd).await;
    let cfg = cfg.display().to_string();
    let snap = etcd.dir().join("backup.db");
    etcd.snapshot_save(&snap);
    let args = [
        "--encryption-provider-config",
        cfg.as_str(),
        "--verify",
        "--list",
        "all",
    ];
    let (code, r) = scan_snapshot_json(&snap, &args);
    assert_eq!(code, 1);
    assert_eq!(r["source"]["type"], "snapshot");
    assert_eq!(r["source"]["path"], snap.display().to_string());
    let want: BTreeMap<String, String> = expect
        .iter()
        .map(|(k, (_, s))| (k.clone(), s.to_string()))
        .collect();
    assert_eq!(statuses(&r), want);

    let (_, live) = scan_json(&etcd, &args);
    assert_eq!(live["source"]["revision"], r["source"]["revision"]);
    assert_eq!(live["objects"], r["objects"], "identical object lists");
    for field in ["objects", "by_status", "by_resource", "by_provider_key"] {
        assert_eq!(
            live["summary"][field], r["summary"][field],
            "summary.{field}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_history_finds_residue() {
    let etcd = Etcd::start();
    let cur = transformers(&current_config());
    let old = transformers(&old_config());
    let h1 = format!("{S}h1");
    let h2 = format!("{S}h2");
    let h3 = format!("{S}h3");
    // h1: plaintext, then current, then stale (old key), then current again.
    let r_plain = etcd.put(h1.clone(), plain_secret()).await;
    etcd.put(
        h1.clone(),
        write(&cur, "secrets", &h1, &plain_secret()).await,
    )
    .await;
    let r_stale = etcd
        .put(
            h1.clone(),
            write(&old, "secrets", &h1, &plain_secret()).await,
        )
        .await;
    etcd.put(
        h1.clone(),
        write(&cur, "secrets", &h1, &plain_secret()).await,
    )
    .await;
    // h2: only ever current.
    etcd.put(
        h2.clone(),
        write(&cur, "secrets", &h2, &plain_secret()).await,
    )
    .await;
    etcd.put(
        h2.clone(),
        write(&cur, "secrets", &h2, &plain_secret()).await,
    )
    .await;
    // h3: plaintext, then deleted: gone from the live state, still in the file.
    let r_h3 = etcd.put(h3.clone(), plain_secret()).await;
    etcd.etcdctl_ok(&["del", &h3]);

    let cfg = etcd.dir().join("enc.yaml");
    std::fs::write(&cfg, current_config()).unwrap();
    let cfg = cfg.display().to_string();
    let snap = etcd.dir().join("backup.db");
    etcd.snapshot_save(&snap);

    // Without --history: the latest state is all current.
    let (code, r) = scan_snapshot_json(&snap, &["--encryption-provider-config", &cfg]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["summary"]["objects"], 2);
    assert!(r.get("history").is_none());

    let (code, r) = scan_snapshot_json(&snap, &["--encryption-provider-config", &cfg, "--history"]);
    assert_eq!(code, 1, "residue is a finding: {r}");
    let h = &r["history"];
    assert_eq!(h["revisions_examined"], 5, "{h}");
    assert_eq!(h["residue_revisions"], 3, "{h}");
    assert_eq!(h["keys_with_residue"], 2, "{h}");
    let keys = h["keys"].as_array().unwrap();
    assert_eq!(keys[0]["key"], h1.as_str());
    assert_eq!(keys[0]["oldest_revision"], r_plain);
    assert_eq!(keys[0]["newest_revision"], r_stale);
    assert_eq!(keys[0]["revisions"], 2);
    assert_eq!(
        keys[0]["statuses"],
        serde_json::json!(["stale", "plaintext"])
    );
    assert_eq!(keys[1]["key"], h3.as_str());
    assert_eq!(keys[1]["oldest_revision"], r_h3);
    assert_eq!(keys[1]["statuses"], serde_json::json!(["plaintext"]));
    // --fail-on applies to residue too.
    let (code, _) = scan_snapshot_json(
        &snap,
        &[
            "--encryption-provider-config",
            &cfg,
            "--history",
            "--fail-on",
            "unknown-key",
        ],
    );
    assert_eq!(code, 0);
}

/// Compacts the pinned revision (after changing a key the scan has not reached yet) as soon as
/// the engine reports its first page: the scan must continue at a fresh revision, say so, and
/// count every key exactly once.
struct CompactAfterFirstPage<'a> {
    etcd: &'a Etcd,
    key: String,
    compact_to: i64,
    done: std::sync::atomic::AtomicBool,
}

impl atrest::scan::Progress for CompactAfterFirstPage<'_> {
    fn advance(&self, _keys: u64, _bytes: u64) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.etcd.etcdctl_ok(&["put", &self.key, "changed"]);
            self.etcd
                .etcdctl_ok(&["compact", "--physical", &self.compact_to.to_string()]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_during_scan_is_reported_and_counted_once() {
    use atrest::source::etcd::EtcdSource;
    let etcd = Etcd::start();
    let n = 300usize;
    let kvs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("{CM}cm-{i:04}"), plain_configmap()))
        .collect();
    let loaded = etcd.put_many(kvs.clone()).await;
    let last_key = kvs.last().unwrap().0.clone();
    let mut src = EtcdSource::new(
        etcd.new_client().await,
        vec![etcd.endpoint()],
        b"/registry/".to_vec(),
        None,
        10,
    );
    let classifier = atrest::classify::Classifier::new("/registry", None, false);
    let opts = atrest::scan::ScanOptions {
        list_all: true,
        prefix: "/registry".into(),
        ..Default::default()
    };
    let progress = CompactAfterFirstPage {
        etcd: &etcd,
        key: last_key.clone(),
        compact_to: loaded + 1,
        done: Default::default(),
    };
    let r = atrest::scan::run_scan(&mut src, &classifier, &opts, &progress)
        .await
        .expect("scan survives the compaction");
    assert_eq!(r.summary.objects, n as u64, "every key once");
    let keys: Vec<&str> = r.objects.iter().map(|o| o.key.as_str()).collect();
    let want: Vec<&str> = kvs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want, "in order, no double count");
    assert_eq!(r.source.revision, loaded + 1, "the fresh revision");
    assert!(
        r.notes.iter().any(|n| n.contains("compacted")),
        "the report says so: {:?}",
        r.notes
    );
    let last = r.objects.last().unwrap();
    assert_eq!(last.mod_revision, loaded + 1, "read at the fresh revision");
}

/// KMS v1 is only contacted to decrypt: without --verify a stopped plugin does not matter,
/// with --verify it is an error (exit 2) naming the socket, not a report full of
/// undecryptable objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_v1_plugin_down_is_an_error_only_for_verify() {
    let etcd = Etcd::start();
    let dir = vectors_dir();
    let mut plugin = KmsPlugin::builder_for_vectors(&dir.join("kmsv1.json")).start();
    let doc = read_vectors("kmsv1");
    let case = &doc["cases"][0];
    assert_eq!(case["expect"], "ok");
    let key = case["etcd_key"].as_str().unwrap();
    etcd.put(
        key,
        B64.decode(case["stored_b64"].as_str().unwrap()).unwrap(),
    )
    .await;
    let text = std::fs::read_to_string(dir.join(doc["config_file"].as_str().unwrap()))
        .unwrap()
        .replace(
            "unix:///var/run/kmsplugin/fake-kms-v1.sock",
            &plugin.endpoint,
        )
        .replace("timeout: 3s", "timeout: 20s");
    let cfg = etcd.dir().join("kmsv1.yaml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.display().to_string();

    let (code, r) = scan_json(&etcd, &["--encryption-provider-config", &cfg, "--verify"]);
    assert_eq!(code, 0, "{r}");
    plugin.stop();
    let (code, r) = scan_json(
        &etcd,
        &["--encryption-provider-config", &cfg, "--list", "all"],
    );
    assert_eq!(code, 0, "no plugin needed without --verify: {r}");
    assert_eq!(r["objects"][0]["status"], "current");
    let (code, _, stderr) = scan(
        &etcd,
        &[
            "-o",
            "json",
            "--encryption-provider-config",
            &cfg,
            "--verify",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    let sock = plugin.endpoint.trim_start_matches("unix://");
    assert!(
        stderr.contains(sock) && stderr.contains("fake-kms-v1"),
        "{stderr}"
    );
}

/// A config reusing one aescbc key name in two providers (spec §8 trap 3), for secrets.
fn reused_name_config(first: u8, second: u8) -> String {
    format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: k
              secret: {first}
      - aescbc:
          keys:
            - name: k
              secret: {second}
      - identity: {{}}
"#,
        first = key_b64(first, 32),
        second = key_b64(second, 32)
    )
}

/// `detail` is exactly the class or keyID; an unrecognised provider is null with its label;
/// values under a prefix two entries share are read (not judged by prefix) without --verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecognised_provider_and_ambiguous_prefixes() {
    let etcd = Etcd::start();
    let writer_new = transformers(
        &old_config()
            .replace("old", "k")
            .replace(&key_b64(0x22, 32), &key_b64(0x33, 32)),
    );
    let writer_old = transformers(
        &old_config()
            .replace("old", "k")
            .replace(&key_b64(0x22, 32), &key_b64(0x44, 32)),
    );
    let k_new = format!("{S}amb-new");
    let v = write(&writer_new, "secrets", &k_new, &plain_secret()).await;
    etcd.put(k_new.clone(), v).await;
    // Written by the second key: one the first key rejects (255/256 on the first try).
    let k_old = format!("{S}amb-old");
    let mut old = None;
    for _ in 0..64 {
        let v = write(&writer_old, "secrets", &k_old, &plain_secret()).await;
        let gr = GroupResource::parse("secrets");
        if writer_new
            .chain_for(Some(&gr))
            .read(k_old.as_bytes(), &v)
            .await
            .is_err()
        {
            old = Some(v);
            break;
        }
    }
    etcd.put(
        k_old.clone(),
        old.expect("key 0x33 rejects a value of key 0x44"),
    )
    .await;
    let k_xyz = format!("{S}xyz");
    etcd.put(k_xyz.clone(), b"k8s:enc:xyz:v1:name:payload".to_vec())
        .await;
    let cfg = etcd.dir().join("reused.yaml");
    std::fs::write(&cfg, reused_name_config(0x33, 0x44)).expect("write config");
    let cfg = cfg.display().to_string();

    let (code, r) = scan_json(
        &etcd,
        &["--encryption-provider-config", &cfg, "--list", "all"],
    );
    assert_eq!(code, 1, "{r}");
    let o = object(&r, &k_old);
    assert_eq!(
        o["status"], "stale",
        "the read, not the prefix, decides: {o}"
    );
    assert_eq!(o["detail"], Value::Null, "{o}");
    let m = o["message"].as_str().unwrap();
    assert!(
        m.contains("read through aescbc key k whose prefix overlaps another key's"),
        "{o}"
    );
    let o = object(&r, &k_new);
    assert_eq!(o["status"], "current", "{o}");
    assert!(
        o["message"]
            .as_str()
            .unwrap()
            .contains("give keys unique names"),
        "{o}"
    );
    let o = object(&r, &k_xyz);
    assert_eq!(o["status"], "unknown-key", "{o}");
    assert_eq!(o["provider"], Value::Null, "{o}");
    assert_eq!(o["provider_label"], "xyz:v1", "{o}");
    assert_eq!(o["detail"], "no-provider", "{o}");
    assert!(
        o["message"].as_str().unwrap().starts_with("no-provider: "),
        "{o}"
    );
    // Known providers carry no label.
    assert_eq!(object(&r, &k_new)["provider_label"], Value::Null);

    // The table shows the label and the sentence.
    let (code, text, stderr) = scan(
        &etcd,
        &["-o", "table", "--encryption-provider-config", &cfg],
    );
    assert_eq!(code, 1, "{stderr}");
    let row = text
        .lines()
        .find(|l| l.contains(&k_xyz))
        .unwrap_or_else(|| panic!("xyz listed: {text}"));
    assert!(row.contains("?xyz:v1"), "{row}");
    assert!(text.contains("give keys unique names"), "{text}");
}
