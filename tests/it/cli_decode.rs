//! `atrest decode` end to end (the real binary): classification without a config, verdicts
//! and `--verify` with the vectors' EncryptionConfigurations, a real KMS v2 plugin process,
//! exit codes 0/1/2, and the plaintext rule: it appears on stdout only with `--show-plaintext`,
//! and then stdout is exactly the decrypted bytes.

use crate::common::atrest_cmd;
use crate::common::kms::KmsPlugin;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors")
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn case(file: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(file)).expect("vector file");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .clone()
}

fn config(file: &str) -> String {
    vectors_dir()
        .join(format!("configs/{file}.encryption-config.yaml"))
        .display()
        .to_string()
}

/// The stored value in a temp file (raw bytes).
fn value_file(c: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("value.bin");
    std::fs::write(&p, b64(c["stored_b64"].as_str().expect("stored"))).expect("write");
    (dir, p)
}

fn key(c: &Value) -> &str {
    c["etcd_key"].as_str().expect("etcd_key")
}

/// Distinctive windows of the plaintext that must never show up in normal output.
fn assert_no_plaintext(out: &[u8], plaintext: &[u8]) {
    assert!(plaintext.len() > 64, "test needs a sizeable plaintext");
    let tail = &plaintext[plaintext.len() - 32..];
    let windows = [
        tail.to_vec(),
        b64_enc(tail).into_bytes(),
        hex::encode(tail).into_bytes(),
    ];
    for w in windows {
        assert!(
            !out.windows(w.len()).any(|x| x == w.as_slice()),
            "output contains plaintext material ({} bytes of output)",
            out.len()
        );
    }
    let full_b64 = b64_enc(plaintext);
    assert!(!String::from_utf8_lossy(out).contains(&full_b64[8..40]));
}

fn b64_enc(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn verify_decrypts_without_printing_plaintext() {
    let c = case("aescbc.json", "aescbc-secret-db-pass-k256");
    let (_d, file) = value_file(&c);
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--encryption-provider-config",
            &config("aescbc"),
            "--verify",
        ])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("aescbc") && stdout.contains("key1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decrypted") && stdout.contains("v1 Secret"),
        "{stdout}"
    );
    let pt = b64(c["plaintext_b64"].as_str().expect("pt"));
    assert_no_plaintext(&out.stdout, &pt);
    assert_no_plaintext(&out.stderr, &pt);
}

#[test]
fn show_plaintext_outputs_exactly_the_bytes() {
    for (f, name, cfg, prefix) in [
        (
            "aescbc.json",
            "aescbc-secret-large-ca-bundle-large-k128",
            "aescbc",
            "/registry",
        ),
        // A custom --etcd-prefix: the key maps to `secrets` only with the right --prefix.
        (
            "aesgcm.json",
            "aesgcm-custom-etcd-prefix",
            "aesgcm",
            "/kubernetes.example.com",
        ),
        (
            "secretbox.json",
            "secretbox-secret-db-pass-k256",
            "secretbox",
            "/registry/",
        ),
    ] {
        let c = case(f, name);
        let (_d, file) = value_file(&c);
        let out = atrest_cmd()
            .args([
                "decode",
                "--key",
                key(&c),
                "--encryption-provider-config",
                &config(cfg),
                "--show-plaintext",
                "--prefix",
                prefix,
            ])
            .arg(&file)
            .assert()
            .code(0)
            .get_output()
            .clone();
        let pt = b64(c["plaintext_b64"].as_str().expect("pt"));
        assert_eq!(
            sha(&out.stdout),
            sha(&pt),
            "{name}: stdout is exactly the plaintext"
        );
    }
}

#[test]
fn stdin_and_base64_input() {
    let c = case("aesgcm.json", "aesgcm-secret-db-pass-k256");
    let raw = b64(c["stored_b64"].as_str().expect("stored"));
    let pt = b64(c["plaintext_b64"].as_str().expect("pt"));
    for extra in [vec![], vec!["-"]] {
        let out = atrest_cmd()
            .args([
                "decode",
                "--key",
                key(&c),
                "--encryption-provider-config",
                &config("aesgcm"),
                "--show-plaintext",
            ])
            .args(&extra)
            .write_stdin(raw.clone())
            .assert()
            .code(0)
            .get_output()
            .clone();
        assert_eq!(sha(&out.stdout), sha(&pt));
    }
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--input",
            "base64",
            "-o",
            "json",
        ])
        .write_stdin(format!("{}\n", c["stored_b64"].as_str().expect("stored")))
        .assert()
        .code(0)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(j["format"], "encrypted");
    assert_eq!(j["provider"], "aesgcm");
    assert_eq!(j["name"], "gcm-a");
}

#[test]
fn unreadable_values_exit_1_naming_the_class() {
    for (f, name, cfg, class) in [
        (
            "aesgcm.json",
            "aesgcm-moved-to-other-etcd-key",
            "aesgcm",
            "auth-failed",
        ),
        (
            "aescbc.json",
            "aescbc-tampered-last-block",
            "aescbc",
            "bad-padding",
        ),
        (
            "aescbc.json",
            "aescbc-truncated-shorter-than-iv",
            "aescbc",
            "truncated",
        ),
        (
            "secretbox.json",
            "secretbox-wrong-key",
            "secretbox",
            "auth-failed",
        ),
        (
            "identity.json",
            "identity-reads-encrypted-value",
            "identity",
            "no-provider",
        ),
    ] {
        let c = case(f, name);
        let (_d, file) = value_file(&c);
        let out = atrest_cmd()
            .args([
                "decode",
                "--key",
                key(&c),
                "--encryption-provider-config",
                &config(cfg),
                "--verify",
            ])
            .arg(&file)
            .assert()
            .code(1)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(class), "{name}: stderr {stderr}");
        let out = atrest_cmd()
            .args([
                "decode",
                "--key",
                key(&c),
                "--encryption-provider-config",
                &config(cfg),
                "--verify",
                "-o",
                "json",
            ])
            .arg(&file)
            .assert()
            .code(1)
            .get_output()
            .clone();
        let j: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(j["status"], "unreadable", "{name}");
        assert_eq!(j["error"]["class"], class, "{name}");
        // --show-plaintext on an unreadable value: nothing on stdout.
        let out = atrest_cmd()
            .args([
                "decode",
                "--key",
                key(&c),
                "--encryption-provider-config",
                &config(cfg),
                "--show-plaintext",
            ])
            .arg(&file)
            .assert()
            .code(1)
            .get_output()
            .clone();
        assert!(out.stdout.is_empty(), "{name}: stdout must be empty");
    }
}

#[test]
fn unknown_key_is_found_without_verify() {
    let c = case("aescbc.json", "aescbc-unknown-key-name");
    let (_d, file) = value_file(&c);
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--encryption-provider-config",
            &config("aescbc"),
            "-o",
            "json",
        ])
        .arg(&file)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["error"]["class"], "unknown-key");
    assert_eq!(j["name"], "key-retired");
}

#[test]
fn classification_without_config() {
    let c = case("kmsv2.json", "kmsv2-seed-secret-db-pass");
    let (_d, file) = value_file(&c);
    let out = atrest_cmd()
        .args(["decode", "--key", key(&c), "-o", "json"])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["schema"], "atrest.decode/v1");
    assert_eq!(j["provider"], "kms/v2");
    assert_eq!(j["name"], "fake-kms-v2");
    assert_eq!(j["kms_v2"]["key_id"], "fake-kek-2024-06");
    assert_eq!(
        j["kms_v2"]["dek_source_type"],
        "HKDF_SHA256_XNONCE_AES_GCM_SEED"
    );
    assert_eq!(j["verified"], false);
    let c = case("identity.json", "identity-crontab-json-nightly-backup");
    let (_d, file) = value_file(&c);
    let out = atrest_cmd()
        .args(["decode", "--key", key(&c)])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("json") && stdout.contains("CronTab"),
        "{stdout}"
    );
    assert_no_plaintext(&out.stdout, &b64(c["plaintext_b64"].as_str().expect("pt")));
}

#[test]
fn usage_and_config_errors_exit_2() {
    let c = case("aescbc.json", "aescbc-secret-db-pass-k256");
    let (d, file) = value_file(&c);
    // Missing --key.
    atrest_cmd().args(["decode"]).arg(&file).assert().code(2);
    // Config file missing.
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--encryption-provider-config",
            "/nonexistent/enc.yaml",
            "--verify",
        ])
        .arg(&file)
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/enc.yaml"));
    // Malformed config.
    let bad = d.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [",
    )
    .expect("write");
    atrest_cmd()
        .args(["decode", "--key", key(&c), "--encryption-provider-config"])
        .arg(&bad)
        .arg(&file)
        .assert()
        .code(2);
    // --verify of an encrypted value needs a config.
    atrest_cmd()
        .args(["decode", "--key", key(&c), "--verify"])
        .arg(&file)
        .assert()
        .code(2);
    // Value file missing; bad base64.
    atrest_cmd()
        .args(["decode", "--key", key(&c), "/nonexistent/value"])
        .assert()
        .code(2);
    atrest_cmd()
        .args(["decode", "--key", key(&c), "--input", "base64"])
        .write_stdin("not base64 !!")
        .assert()
        .code(2);
}

/// KMS v2 through the real gRPC client and the `atrest-test-kms` plugin process.
#[test]
fn kms_v2_with_a_real_plugin() {
    let plugin = KmsPlugin::builder_for_vectors(&vectors_dir().join("kmsv2.json")).start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("enc.yaml");
    let yaml = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets, configmaps]\n    providers:\n{}      - identity: {{}}\n",
        plugin.provider_yaml("fake-kms-v2", "v2", 6)
    );
    std::fs::write(&cfg, yaml).expect("write config");
    let c = case("kmsv2.json", "kmsv2-seed-secret-db-pass");
    let (_d, file) = value_file(&c);
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--show-plaintext",
            "--encryption-provider-config",
        ])
        .arg(&cfg)
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert_eq!(
        sha(&out.stdout),
        sha(&b64(c["plaintext_b64"].as_str().expect("pt")))
    );
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--verify",
            "-o",
            "json",
            "--encryption-provider-config",
        ])
        .arg(&cfg)
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["config"]["entry"], 0);
    assert_eq!(
        j["config"]["stale"], false,
        "keyID equals the plugin's Status key_id"
    );
    // An old AES_GCM_KEY value reads, and is stale.
    let c = case("kmsv2.json", "kmsv2-aesgcmkey-secret-db-pass-v2key");
    let (_d2, file) = value_file(&c);
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--verify",
            "-o",
            "json",
            "--encryption-provider-config",
        ])
        .arg(&cfg)
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["config"]["stale"], true);
    // The plugin refuses a tampered DEK source.
    let c = case("kmsv2.json", "kmsv2-tampered-encrypted-dek-source");
    let (_d3, file) = value_file(&c);
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            key(&c),
            "--verify",
            "--encryption-provider-config",
        ])
        .arg(&cfg)
        .arg(&file)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("kms-decrypt-failed"));
}

#[test]
fn unknown_provider_is_encrypted_never_plaintext() {
    let value = b"k8s:enc:xyz:v1:k:some-bytes".to_vec();
    let out = atrest_cmd()
        .args(["decode", "--key", "/registry/secrets/a/b", "-o", "json"])
        .write_stdin(value.clone())
        .assert()
        .code(0)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["format"], "encrypted");
    assert_eq!(j["provider"], "unknown");
    assert_eq!(j["unknown_provider"], "xyz:v1");
    let out = atrest_cmd()
        .args([
            "decode",
            "--key",
            "/registry/secrets/a/b",
            "-o",
            "json",
            "--encryption-provider-config",
            &config("aescbc"),
        ])
        .write_stdin(value)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["error"]["class"], "no-provider");
}

/// One aescbc key name in two providers (spec §8 trap 3): decode says the prefix is
/// ambiguous, and after `--verify` warns that the aescbc read is not authenticated.
#[test]
fn overlapping_aescbc_names_are_reported() {
    use atrest::codec::chain::Chain;
    use atrest::config::{NamedKey, ProviderConfig};
    use atrest::secret::SecretBytes;

    let dir = tempfile::tempdir().expect("tempdir");
    let (new, old) = ([0x11u8; 32], [0x22u8; 32]);
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\n\
             kind: EncryptionConfiguration\n\
             resources:\n\
             - resources: [secrets]\n  \
               providers:\n  \
               - aescbc:\n      keys:\n      - name: key1\n        secret: {}\n  \
               - aescbc:\n      keys:\n      - name: key1\n        secret: {}\n",
            b64_enc(&new),
            b64_enc(&old)
        ),
    )
    .expect("write config");
    let etcd_key = "/registry/secrets/default/overlap";
    let mut pt = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret".to_vec();
    pt.extend((0..200u32).map(|i| (i * 31 % 251) as u8));
    let writer = Chain::from_providers(
        &[&ProviderConfig::AesCbc {
            keys: vec![NamedKey {
                name: "key1".into(),
                secret: SecretBytes::from_slice(&old),
            }],
        }],
        &atrest::kms::GrpcConnector,
    )
    .expect("chain");
    let value = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(writer.write(etcd_key.as_bytes(), &pt))
        .expect("write");
    let file = dir.path().join("value.bin");
    std::fs::write(&file, &value).expect("write value");

    let run = |verify: bool, json: bool| {
        let mut cmd = atrest_cmd();
        cmd.args(["decode", "--key", etcd_key, "--encryption-provider-config"])
            .arg(&cfg);
        if verify {
            cmd.arg("--verify");
        }
        if json {
            cmd.args(["-o", "json"]);
        }
        let out = cmd.arg(&file).assert().code(0).get_output().clone();
        assert_no_plaintext(&out.stdout, &pt);
        assert_no_plaintext(&out.stderr, &pt);
        out
    };
    let out = run(false, true);
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["config"]["ambiguous"], true, "{j}");
    assert!(j["config"].get("unauthenticated_overlap").is_none(), "{j}");
    let out = run(false, false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ambiguous") && table.contains("--verify"),
        "{table}"
    );

    let out = run(true, true);
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["config"]["ambiguous"], true, "{j}");
    assert_eq!(j["config"]["unauthenticated_overlap"], true, "{j}");
    assert_eq!(j["verified"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("no MAC"),
        "{stderr}"
    );
    let out = run(true, false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("warning") && table.contains("garbage"),
        "{table}"
    );
}

/// A crafted prefix cannot put terminal control sequences into the table.
#[test]
fn table_escapes_control_characters_from_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("value.bin");
    std::fs::write(
        &file,
        b"k8s:enc:aescbc:v1:\x1b[2J\x1b]0;owned\x07\rkey:0123456789abcdef0123456789abcdef",
    )
    .expect("write");
    let out = atrest_cmd()
        .args(["decode", "--key", "/registry/secrets/default/x"])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(
        !out.stdout
            .iter()
            .any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
        "raw control bytes in: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\\u{1b}[2J"), "{stdout}");
}
