//! KMS with a real etcd and the atrest CLI: `scan` reports KMS v2 keyIDs and staleness against
//! the plugin's live key id, `scan --verify` costs one plugin Decrypt per distinct DEK source,
//! a down/failing/slow plugin gives a clear outcome, and `rotate` moves aescbc, KMS v1 and KMS v2
//! (key A) values into KMS v2 (key B) and KMS v2 into aesgcm, every value decrypting via the
//! plugin to its original plaintext.
use super::{random_secret, sha};
use crate::common::kms::KmsPlugin;
use crate::common::{Etcd, atrest_cmd};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use atrest::codec::chain::Transformers;
use atrest::config::{EncryptionConfig, KmsApiVersion};
use atrest::kms::grpc::V1Client;
use atrest::kms::{GrpcConnector, KmsService};
use atrest::resource::GroupResource;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const AESCBC: &str = "      - aescbc:\n          keys:\n            - name: old-cbc\n              secret: wFYyVMKIpQGkUpR2aqdxMIhcpADIcYJdESbahA0dFPA=\n";
const AESGCM: &str = "      - aesgcm:\n          keys:\n            - name: gcm-1\n              secret: ACv6FLoeZ92F9VlEy1JWOAV8QFWgsBzTQmxQ9MjU024=\n";
const IDENTITY: &str = "      - identity: {}\n";

fn config_text(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n      - configmaps\n    providers:\n{providers}"
    )
}

/// Write the config file (0600, as a real one holding keys) into `dir`.
fn write_config(dir: &Path, name: &str, providers: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .expect("config file");
    std::io::Write::write_all(&mut f, config_text(providers).as_bytes()).expect("write config");
    path
}

fn transformers(providers: &str) -> Transformers {
    let cfg = EncryptionConfig::parse(&config_text(providers), "test").expect("config");
    Transformers::new(&cfg, &GrpcConnector).expect("transformers")
}

fn secret_key(i: usize) -> String {
    format!("/registry/secrets/ns-{}/secret-{i:05}", i % 10)
}

fn secret_plaintext(i: usize) -> Vec<u8> {
    format!("k8s\0\n\x0c\n\x02v1\x12\x06Secret payload-{i}").into_bytes()
}

/// Values for `keys` written the way kube-apiserver would with `providers` (one run: one
/// KMS v2 seed).
async fn encode_all(providers: &str, keys: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let t = transformers(providers);
    let chain = t.chain_for(Some(&GroupResource::new("", "secrets")));
    let mut out = Vec::with_capacity(keys.len());
    for (k, p) in keys {
        let v = chain.write(k.as_bytes(), p).await.expect("encode value");
        out.push((k.clone(), v));
    }
    out
}

/// A KMS v1 value as kube-apiserver writes it: a fresh DEK per value, wrapped by the plugin,
/// `u16be(len) || EDEK || AES-GCM(dek, nonce, plaintext, aad = etcd key)`.
async fn kms_v1_value(client: &V1Client, name: &str, key: &str, plaintext: &[u8]) -> Vec<u8> {
    let dek = random_secret();
    let edek = client.encrypt(&dek).await.expect("v1 Encrypt").ciphertext;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("getrandom");
    let gcm = aes_gcm::Aes256Gcm::new_from_slice(&dek).expect("key");
    let ct = gcm
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad: key.as_bytes(),
            },
        )
        .expect("gcm");
    let mut v = format!("k8s:enc:kms:v1:{name}:").into_bytes();
    v.extend_from_slice(&u16::try_from(edek.len()).expect("short EDEK").to_be_bytes());
    v.extend_from_slice(&edek);
    v.extend_from_slice(&nonce);
    v.extend_from_slice(&ct);
    v
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}); stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

fn atrest(etcd: &Etcd, args: &[&str]) -> Run {
    let out = atrest_cmd()
        .args(args.iter().take(1))
        .args(etcd.atrest_conn_args())
        .args(args.iter().skip(1))
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .expect("run atrest");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn scan(etcd: &Etcd, config: &Path, extra: &[&str]) -> Run {
    let cfg = config.display().to_string();
    let mut args = vec![
        "scan",
        "--encryption-provider-config",
        cfg.as_str(),
        "-o",
        "json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    atrest(etcd, &args)
}

fn rotate(etcd: &Etcd, config: &Path, journal: &Path) -> Run {
    let cfg = config.display().to_string();
    let journal = journal.display().to_string();
    atrest(
        etcd,
        &[
            "rotate",
            "--encryption-provider-config",
            &cfg,
            "--journal",
            &journal,
            "-o",
            "json",
            "--no-progress",
        ],
    )
}

/// Every key of `expected` holds a value that `providers` reads (current) to the expected
/// plaintext, under `prefix`.
async fn assert_all_read_back(
    etcd: &Etcd,
    providers: &str,
    value_prefix: &[u8],
    expected: &BTreeMap<String, Vec<u8>>,
) {
    let t = transformers(providers);
    t.prepare_kms().await.expect("plugin Status");
    let chain = t.chain_for(Some(&GroupResource::new("", "secrets")));
    for (k, want) in expected {
        let v = etcd
            .get(k.as_bytes())
            .await
            .unwrap_or_else(|| panic!("{k} vanished"));
        assert!(
            v.starts_with(value_prefix),
            "{k}: not under {:?}",
            String::from_utf8_lossy(value_prefix)
        );
        let out = chain
            .read(k.as_bytes(), &v)
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(!out.stale, "{k}: stale after rotation");
        assert_eq!(
            sha(out.plaintext.expose()),
            sha(want),
            "{k}: plaintext changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reports_key_ids_and_staleness_after_a_key_switch() {
    let etcd = Etcd::start();
    let plugin = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let kms = plugin.provider_yaml("my-kms", "v2", 6);
    let cfg = write_config(plugin.dir(), "enc.yaml", &format!("{kms}{IDENTITY}"));
    let keys: Vec<_> = (0..60)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    etcd.put_many(encode_all(&kms, &keys).await).await;
    let decrypts = plugin.stats().decrypt;

    let run = scan(&etcd, &cfg, &["--list", "all"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let report = run.json();
    let objects = report["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 60);
    for o in objects {
        assert_eq!(o["provider"], "kms", "{o}");
        assert_eq!(o["key_name"], "my-kms", "{o}");
        assert_eq!(o["status"], "current", "{o}");
        assert_eq!(o["kms_key_id"], "key-a", "{o}");
    }
    assert_eq!(report["summary"]["by_kms_key_id"]["key-a"], 60);
    assert_eq!(
        plugin.stats().decrypt,
        decrypts,
        "no Decrypt without --verify"
    );

    plugin.set_key_id("key-b");
    let run = scan(&etcd, &cfg, &[]);
    assert_eq!(
        run.code, 1,
        "stale objects are findings; stderr: {}",
        run.stderr
    );
    let report = run.json();
    let objects = report["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 60, "every object is a finding");
    for o in objects {
        assert_eq!(o["status"], "stale", "{o}");
        assert_eq!(o["detail"], "key-a", "detail is the keyID: {o}");
    }
    assert_eq!(report["summary"]["stale"], 60);
    assert_eq!(
        plugin.stats().decrypt,
        decrypts,
        "staleness needs no Decrypt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_scan_of_10k_objects_costs_one_decrypt_per_dek_source() {
    let etcd = Etcd::start();
    let v2 = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let v1 = KmsPlugin::builder().api("v1").start();
    let kms_v2 = v2.provider_yaml("my-kms", "v2", 6);
    let kms_v1 = v1.provider_yaml("old-kms", "v1", 6);
    // Four apiserver "runs" (four seeds) of 2500 objects each.
    const RUNS: usize = 4;
    const PER_RUN: usize = 2500;
    for run in 0..RUNS {
        let keys: Vec<_> = (run * PER_RUN..(run + 1) * PER_RUN)
            .map(|i| (secret_key(i), secret_plaintext(i)))
            .collect();
        etcd.put_many(encode_all(&kms_v2, &keys).await).await;
    }
    // Plus 20 KMS v1 values: a DEK per value, so one Decrypt each.
    let v1_client = V1Client::new(&v1.kms_config("old-kms", KmsApiVersion::V1)).expect("client");
    let mut v1_values = Vec::new();
    for i in 0..20 {
        let k = format!("/registry/configmaps/legacy/cm-{i}");
        v1_values.push((
            k.clone(),
            kms_v1_value(&v1_client, "old-kms", &k, b"k8s\0cm").await,
        ));
    }
    etcd.put_many(v1_values).await;
    assert_eq!(v2.stats().v2_encrypt, RUNS as u64, "one seed per run");

    let cfg = write_config(v2.dir(), "enc.yaml", &format!("{kms_v2}{kms_v1}{IDENTITY}"));
    let run = scan(&etcd, &cfg, &["--verify"]);
    // KMS v1 objects are stale (not the write provider): exit 1, all others current.
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let report = run.json();
    assert_eq!(report["verified"], true);
    assert_eq!(report["summary"]["objects"], (RUNS * PER_RUN + 20) as u64);
    assert_eq!(report["summary"]["current"], (RUNS * PER_RUN) as u64);
    assert_eq!(report["summary"]["stale"], 20);
    assert_eq!(report["summary"]["undecryptable"], 0);
    let s2 = v2.stats();
    assert!(
        s2.v2_decrypt >= 1 && s2.v2_decrypt <= RUNS as u64,
        "{} KMS v2 Decrypt calls for {RUNS} seeds over {} objects",
        s2.v2_decrypt,
        RUNS * PER_RUN
    );
    let s1 = v1.stats();
    assert_eq!(s1.v1_decrypt, 20, "one Decrypt per KMS v1 DEK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_with_the_plugin_down_failing_or_slow() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("kms.sock");
    let mut plugin = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .start();
    let kms = plugin.provider_yaml("my-kms", "v2", 6);
    let keys: Vec<_> = (0..30)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    etcd.put_many(encode_all(&kms, &keys).await).await;
    let cfg = write_config(dir.path(), "enc.yaml", &format!("{kms}{IDENTITY}"));

    // Down: the scan cannot judge KMS v2 values; exit 2 naming the socket.
    plugin.kill();
    let run = scan(&etcd, &cfg, &["--verify"]);
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(&sock.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("my-kms"), "{}", run.stderr);

    // Up but every Decrypt fails: each object undecryptable with the plugin's message.
    let _failing = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .args(["--fail-decrypt"])
        .start();
    let run = scan(&etcd, &cfg, &["--verify"]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let report = run.json();
    assert_eq!(report["summary"]["undecryptable"], 30);
    let objects = report["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 30, "every finding is listed");
    for o in objects {
        assert_eq!(o["status"], "undecryptable", "{o}");
        assert_eq!(o["detail"], "kms-decrypt-failed", "{o}");
        assert_eq!(o["kms_key_id"], "key-a", "the keyID stays visible: {o}");
    }
    drop(_failing);

    // Slow Decrypt beyond the provider timeout: undecryptable (timed out), not a hang.
    let _slow = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .args(["--decrypt-delay", "8000"])
        .start();
    let cfg = write_config(
        dir.path(),
        "enc-2s.yaml",
        &format!("{}{IDENTITY}", kms.replace("timeout: 10s", "timeout: 2s")),
    );
    let started = std::time::Instant::now();
    let run = scan(&etcd, &cfg, &["--verify"]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let report = run.json();
    assert_eq!(report["summary"]["undecryptable"], 30);
    let objects = report["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 30, "every finding is listed");
    for o in objects {
        assert_eq!(o["detail"], "kms-decrypt-failed", "{o}");
        assert!(
            o["message"]
                .as_str()
                .is_some_and(|d| d.contains("timed out after 2s")),
            "{o}"
        );
    }
    // 30 objects share one seed: one timeout, not 30 (60s).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "a stuck plugin costs one timeout per DEK source: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_aescbc_and_kms_v1_into_kms_v2() {
    let etcd = Etcd::start();
    let v2 = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let v1 = KmsPlugin::builder().api("v1").start();
    let kms_v2 = v2.provider_yaml("new-kms", "v2", 6);
    let kms_v1 = v1.provider_yaml("old-kms", "v1", 6);

    let mut expected = BTreeMap::new();
    let cbc_keys: Vec<_> = (0..150)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    expected.extend(cbc_keys.iter().cloned());
    etcd.put_many(encode_all(AESCBC, &cbc_keys).await).await;
    let v1_client = V1Client::new(&v1.kms_config("old-kms", KmsApiVersion::V1)).expect("client");
    let mut v1_values = Vec::new();
    for i in 150..200 {
        let (k, p) = (secret_key(i), secret_plaintext(i));
        v1_values.push((k.clone(), kms_v1_value(&v1_client, "old-kms", &k, &p).await));
        expected.insert(k, p);
    }
    etcd.put_many(v1_values).await;

    let cfg = write_config(
        v2.dir(),
        "enc.yaml",
        &format!("{kms_v2}{kms_v1}{AESCBC}{IDENTITY}"),
    );
    let before = scan(&etcd, &cfg, &[]);
    assert_eq!(before.code, 1);
    assert_eq!(before.json()["summary"]["stale"], 200);

    let v1_encrypts = v1.stats().v1_encrypt;
    let journal = v2.dir().join("rotate.journal");
    let run = rotate(&etcd, &cfg, &journal);
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert_eq!(v2.stats().v2_encrypt, 1, "one seed for the whole rotation");
    assert_eq!(v1.stats().v1_encrypt, v1_encrypts, "KMS v1 is only read");
    assert_all_read_back(&etcd, &kms_v2, b"k8s:enc:kms:v2:new-kms:", &expected).await;

    let after = scan(&etcd, &cfg, &["--verify"]);
    assert_eq!(after.code, 0, "stderr: {}", after.stderr);
    assert_eq!(after.json()["summary"]["by_kms_key_id"]["key-a"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_kms_v2_key_a_to_key_b_then_to_aesgcm() {
    let etcd = Etcd::start();
    let plugin = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let kms = plugin.provider_yaml("my-kms", "v2", 6);
    let keys: Vec<_> = (0..300)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    let expected: BTreeMap<_, _> = keys.iter().cloned().collect();
    etcd.put_many(encode_all(&kms, &keys).await).await;
    let cfg = write_config(plugin.dir(), "enc.yaml", &format!("{kms}{IDENTITY}"));

    plugin.set_key_id("key-b");
    assert_eq!(scan(&etcd, &cfg, &[]).json()["summary"]["stale"], 300);
    let decrypts = plugin.stats().v2_decrypt;
    let run = rotate(&etcd, &cfg, &plugin.dir().join("a-to-b.journal"));
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let used = plugin.stats().v2_decrypt - decrypts;
    assert!(
        used <= 4,
        "{used} Decrypt calls to rotate 300 objects from one seed to another"
    );
    assert_all_read_back(&etcd, &kms, b"k8s:enc:kms:v2:my-kms:", &expected).await;
    let report = scan(&etcd, &cfg, &["--list", "all"]).json();
    assert_eq!(report["summary"]["by_kms_key_id"]["key-b"], 300);
    assert_eq!(report["summary"]["current"], 300);

    // KMS v2 -> aesgcm (moving off the KMS): the plugin still decrypts the old values.
    let cfg = write_config(
        plugin.dir(),
        "enc-gcm.yaml",
        &format!("{AESGCM}{kms}{IDENTITY}"),
    );
    let run = rotate(&etcd, &cfg, &plugin.dir().join("to-gcm.journal"));
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert_all_read_back(&etcd, AESGCM, b"k8s:enc:aesgcm:v1:gcm-1:", &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_writes_nothing_when_the_plugin_key_ids_disagree_or_into_kms_v1() {
    let etcd = Etcd::start();
    let plugin = KmsPlugin::builder()
        .key_id("status-key")
        .api("both")
        .args(["--encrypt-key-id", "other-key"])
        .start();
    let keys: Vec<_> = (0..40)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    etcd.put_many(encode_all(AESCBC, &keys).await).await;
    let mut revisions = BTreeMap::new();
    for (k, _) in &keys {
        let kv = etcd.get_kv(k.as_bytes()).await.expect("kv");
        revisions.insert(k.clone(), kv.mod_revision());
    }
    let check_untouched = |what: &'static str| {
        let revisions = revisions.clone();
        let etcd = &etcd;
        async move {
            for (k, rev) in &revisions {
                let kv = etcd.get_kv(k.as_bytes()).await.expect("kv");
                assert_eq!(kv.mod_revision(), *rev, "{what}: {k} was rewritten");
                assert!(kv.value().starts_with(b"k8s:enc:aescbc:v1:old-cbc:"));
            }
        }
    };

    let kms = plugin.provider_yaml("my-kms", "v2", 6);
    let cfg = write_config(plugin.dir(), "enc.yaml", &format!("{kms}{AESCBC}"));
    let run = rotate(&etcd, &cfg, &plugin.dir().join("mismatch.journal"));
    assert_ne!(run.code, 0, "stdout: {}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("other-key") && all.contains("status-key"),
        "{all}"
    );
    check_untouched("key id mismatch").await;

    let kms_v1 = plugin.provider_yaml("legacy", "v1", 6);
    let cfg = write_config(plugin.dir(), "enc-v1.yaml", &format!("{kms_v1}{AESCBC}"));
    let run = rotate(&etcd, &cfg, &plugin.dir().join("v1.journal"));
    assert_ne!(run.code, 0, "stdout: {}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("v1"), "{all}");
    check_untouched("into KMS v1").await;
    assert_eq!(plugin.stats().v1_encrypt, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_crash_in_the_middle_of_a_verify_scan() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("kms.sock");
    let kms = {
        let plugin = KmsPlugin::builder()
            .socket(&sock)
            .key_id("key-a")
            .api("v2")
            .start();
        let kms = plugin.provider_yaml("my-kms", "v2", 6);
        for run in 0..3 {
            let keys: Vec<_> = (run * 200..(run + 1) * 200)
                .map(|i| (secret_key(i), secret_plaintext(i)))
                .collect();
            etcd.put_many(encode_all(&kms, &keys).await).await;
        }
        kms
    };
    let cfg = write_config(dir.path(), "enc.yaml", &format!("{kms}{IDENTITY}"));
    // Status answers at once, Decrypt only after 3s: the crash lands while the scan waits.
    let mut plugin = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .args(["--decrypt-delay", "3000"])
        .start();
    let mut cmd = crate::common::atrest_std_cmd();
    cmd.arg("scan")
        .args(etcd.atrest_conn_args())
        .arg("--encryption-provider-config")
        .arg(&cfg)
        .args(["--verify", "-o", "json", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn atrest scan");
    plugin.wait_for("the scan's Status call", || plugin.stats().v2_status >= 1);
    plugin.kill();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("scan output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Every object is reported undecryptable with the reason; the scan finishes (exit 1).
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["summary"]["objects"], 600);
    assert_eq!(report["summary"]["undecryptable"], 600);
    let socket = sock.display().to_string();
    let objects = report["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 600, "every finding is listed");
    for o in objects {
        assert_eq!(o["detail"], "kms-decrypt-failed", "{o}");
        let message = o["message"].as_str().unwrap_or_default();
        assert!(message.contains(&socket), "message names the socket: {o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_with_the_plugin_down_slow_or_failing_writes_nothing() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("kms.sock");
    // 40 aescbc values (to move into KMS v2) and 40 KMS v2 values (to move into aesgcm).
    let mut plugin = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .start();
    let kms = plugin.provider_yaml("my-kms", "v2", 6);
    let kms_1s = kms.replace("timeout: 10s", "timeout: 1s");
    let cbc: Vec<_> = (0..40)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    etcd.put_many(encode_all(AESCBC, &cbc).await).await;
    let v2: Vec<_> = (40..80)
        .map(|i| (secret_key(i), secret_plaintext(i)))
        .collect();
    etcd.put_many(encode_all(&kms, &v2).await).await;
    let before = snapshot(&etcd).await;
    let into_kms = write_config(dir.path(), "into-kms.yaml", &format!("{kms_1s}{AESCBC}"));
    let off_kms = write_config(
        dir.path(),
        "off-kms.yaml",
        &format!("{AESGCM}{kms_1s}{AESCBC}"),
    );

    // Down: exit 2 naming the socket.
    plugin.kill();
    let run = rotate(&etcd, &into_kms, &dir.path().join("down.journal"));
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(&sock.display().to_string()),
        "{}",
        run.stderr
    );
    assert_eq!(
        snapshot(&etcd).await,
        before,
        "plugin down: nothing written"
    );

    // Slow beyond the 1s timeout: exit 2 saying it timed out.
    let slow = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .args(["--delay", "3000"])
        .start();
    let run = rotate(&etcd, &into_kms, &dir.path().join("slow.journal"));
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains("timed out after 1s"), "{}", run.stderr);
    assert_eq!(
        snapshot(&etcd).await,
        before,
        "plugin slow: nothing written"
    );
    drop(slow);

    // Decrypt failing while moving off KMS v2: the KMS v2 values are skipped (undecryptable,
    // exit 1) and left as they are; the aescbc values still move to aesgcm.
    let _failing = KmsPlugin::builder()
        .socket(&sock)
        .key_id("key-a")
        .api("v2")
        .args(["--fail-decrypt"])
        .start();
    let run = rotate(&etcd, &off_kms, &dir.path().join("failing.journal"));
    assert_eq!(
        run.code, 1,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let doc = run.json();
    let skipped = doc["skipped"].as_array().expect("skipped list");
    assert_eq!(skipped.len(), 40, "{doc}");
    assert!(
        skipped.iter().all(|s| s["status"] == "undecryptable"),
        "{doc}"
    );
    let after = snapshot(&etcd).await;
    for i in 40..80 {
        assert_eq!(
            after[&secret_key(i)],
            before[&secret_key(i)],
            "KMS v2 value {i} untouched"
        );
    }
    for i in 0..40 {
        let v = etcd.get(secret_key(i).as_bytes()).await.expect("value");
        assert!(
            v.starts_with(b"k8s:enc:aesgcm:v1:gcm-1:"),
            "aescbc value {i} moved"
        );
    }
}

/// mod_revision and value hash of the 80 test secrets.
async fn snapshot(etcd: &Etcd) -> BTreeMap<String, (i64, String)> {
    let mut m = BTreeMap::new();
    for i in 0..80 {
        let kv = etcd.get_kv(secret_key(i).as_bytes()).await.expect("kv");
        m.insert(secret_key(i), (kv.mod_revision(), sha(kv.value())));
    }
    m
}
