//! The compatibility vectors (`testdata/vectors`, written by kube-apiserver's own transformer
//! code): every case decrypts to the exact plaintext or fails with the exact error class,
//! under the case's single-key config and under the file's EncryptionConfiguration. Plus the
//! encrypt direction (`encrypt`) and property tests (`props`). Plaintexts are compared by SHA-256, never printed.

mod encrypt;
mod fake_kms;
mod props;

use atrest::codec::chain::{Chain, Identified, Transformers};
use atrest::codec::plaintext::PlaintextKind;
use atrest::codec::{ProviderKind, ValueClass, classify_value};
use atrest::config::{EncryptionConfig, KmsApiVersion, KmsConfig, NamedKey, ProviderConfig};
use atrest::resource::GroupResource;
use atrest::secret::SecretBytes;
use base64::Engine as _;
use fake_kms::{FakeConnector, FakeKms};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const FILES: [&str; 6] = [
    "identity.json",
    "aescbc.json",
    "aesgcm.json",
    "secretbox.json",
    "kmsv1.json",
    "kmsv2.json",
];

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors")
}

pub fn load(file: &str) -> Value {
    let p = vectors_dir().join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 in vectors: {e}"))
}

pub fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Assert two secrets (plaintexts, keys) are equal; a failure shows only lengths and SHA-256.
#[track_caller]
pub fn assert_same_secret(got: &[u8], want: &[u8]) {
    if got != want {
        panic!(
            "secrets differ: got {} bytes (sha256 {}), want {} bytes (sha256 {})",
            got.len(),
            sha(got),
            want.len(),
            sha(want)
        );
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("field {k} missing"))
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn kms_config(name: &str, v2: bool) -> KmsConfig {
    KmsConfig {
        api_version: if v2 {
            KmsApiVersion::V2
        } else {
            KmsApiVersion::V1
        },
        name: name.to_string(),
        endpoint: format!("unix:///nonexistent/{name}.sock"),
        timeout: Duration::from_secs(3),
        cachesize: None,
    }
}

/// The fake plugin of a KMS vector file, with every case's recorded answers.
pub fn plugin_for_file(file: &Value) -> Option<Arc<FakeKms>> {
    let plugin = bare_plugin(file)?;
    for c in file["cases"].as_array().expect("cases") {
        add_case_answers(&plugin, c);
    }
    Some(plugin)
}

/// The fake plugin of a KMS vector file with one case's recorded answers only.
fn plugin_for_case(file: &Value, case: &Value) -> Option<Arc<FakeKms>> {
    let plugin = bare_plugin(file)?;
    add_case_answers(&plugin, case);
    Some(plugin)
}

fn bare_plugin(file: &Value) -> Option<Arc<FakeKms>> {
    let p = file.get("fake_kms_plugin")?;
    let v2 = s(p, "api_version") == "v2";
    let annotations: BTreeMap<String, Vec<u8>> = p
        .get("current_annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), b64(v.as_str().expect("annotation"))))
                .collect()
        })
        .unwrap_or_default();
    let plugin = FakeKms::new(
        s(p, "plugin_name"),
        v2,
        b64(s(p, "kek_b64")),
        p.get("current_key_id")
            .and_then(Value::as_str)
            .unwrap_or(""),
        annotations,
    );
    Some(plugin)
}

fn add_case_answers(plugin: &FakeKms, case: &Value) {
    let Some(answers) = case
        .pointer("/kms/decrypt_answers")
        .and_then(Value::as_array)
    else {
        return;
    };
    for a in answers {
        let edek = b64(s(a, "encrypted_dek_b64"));
        let key_id = a
            .get("key_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let answer = match a.get("dek_b64").and_then(Value::as_str) {
            Some(d) => Ok(b64(d)),
            None => Err(a
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string()),
        };
        plugin.add_answer(edek, key_id, answer);
    }
}

/// A case's one-provider config (plus nothing else: exactly the README's "case's own key").
fn single_key_providers(file: &Value, case: &Value) -> (ProviderConfig, FakeConnector) {
    let key = || NamedKey {
        name: s(case, "key_name").to_string(),
        secret: SecretBytes::new(b64(s(case, "key_secret_b64"))),
    };
    let mut connector = FakeConnector::default();
    let p = match s(case, "provider") {
        "identity" => ProviderConfig::Identity,
        "aescbc" => ProviderConfig::AesCbc { keys: vec![key()] },
        "aesgcm" => ProviderConfig::AesGcm { keys: vec![key()] },
        "secretbox" => ProviderConfig::Secretbox { keys: vec![key()] },
        "kms" => {
            let plugin = plugin_for_case(file, case).expect("KMS file has a fake plugin");
            // Only this case's answers: the plugin falls back to the fake algorithm otherwise,
            // which must give the same result.
            let v2 = case.pointer("/kms/api_version").and_then(Value::as_str) == Some("v2");
            connector = FakeConnector::with([plugin]);
            ProviderConfig::Kms(kms_config(s(case, "key_name"), v2))
        }
        other => panic!("unknown provider {other}"),
    };
    (p, connector)
}

/// What the upstream reader says about staleness from the provider itself.
fn expected_inner_stale(file: &Value, case: &Value) -> bool {
    match case.pointer("/kms/api_version").and_then(Value::as_str) {
        Some("v1") => case.pointer("/kms/data_cipher").and_then(Value::as_str) == Some("aes-cbc"),
        Some("v2") => {
            let current = file
                .pointer("/fake_kms_plugin/current_key_id")
                .and_then(Value::as_str);
            case.pointer("/kms/encrypted_dek_source_type")
                .and_then(Value::as_str)
                != Some("HKDF_SHA256_XNONCE_AES_GCM_SEED")
                || case.pointer("/kms/key_id").and_then(Value::as_str) != current
        }
        _ => false,
    }
}

fn provider_kind(case: &Value) -> ProviderKind {
    match s(case, "provider") {
        "identity" => ProviderKind::Identity,
        "aescbc" => ProviderKind::AesCbc,
        "aesgcm" => ProviderKind::AesGcm,
        "secretbox" => ProviderKind::Secretbox,
        "kms" => match case.pointer("/kms/api_version").and_then(Value::as_str) {
            Some("v2") => ProviderKind::KmsV2,
            _ => ProviderKind::KmsV1,
        },
        other => panic!("unknown provider {other}"),
    }
}

/// Read one case through `chain` and check it. Returns a failure description (no plaintext).
async fn check_read(
    chain: &Chain,
    file: &Value,
    case: &Value,
    single_key: bool,
) -> Result<(), String> {
    let name = s(case, "name");
    let key = s(case, "etcd_key").as_bytes();
    let stored = b64(s(case, "stored_b64"));
    let expect = s(case, "expect");
    let res = chain.read(key, &stored).await;
    match (expect, res) {
        ("ok", Ok(out)) => {
            let want = b64(s(case, "plaintext_b64"));
            if out.plaintext.expose() != want.as_slice() {
                return Err(format!(
                    "{name}: plaintext differs: got {} bytes sha256 {}, want {} bytes sha256 {}",
                    out.plaintext.len(),
                    sha(out.plaintext.expose()),
                    want.len(),
                    sha(&want)
                ));
            }
            if out.provider != provider_kind(case) {
                return Err(format!(
                    "{name}: read by {} not {}",
                    out.provider,
                    s(case, "provider")
                ));
            }
            let inner = expected_inner_stale(file, case);
            let want_stale = inner || out.index != 0;
            if out.stale != want_stale {
                return Err(format!(
                    "{name}: stale = {} but index {} and provider staleness {inner}",
                    out.stale, out.index
                ));
            }
            if single_key && out.index != 0 {
                return Err(format!("{name}: single-key read at index {}", out.index));
            }
            // No MAC behind aescbc and KMS v1's CBC fallback; flagged as overlap only when
            // another entry shares the prefix.
            let want_unauth = match out.provider {
                ProviderKind::AesCbc => true,
                ProviderKind::KmsV1 => inner,
                _ => false,
            };
            let ambiguous = chain.is_ambiguous(&stored);
            if out.unauthenticated != want_unauth
                || out.unauthenticated_overlap != (want_unauth && ambiguous)
            {
                return Err(format!(
                    "{name}: unauthenticated = {}, unauthenticated_overlap = {} (ambiguous {ambiguous})",
                    out.unauthenticated, out.unauthenticated_overlap
                ));
            }
            // identify() (no decryption) must point at the same entry, unless it says the
            // prefix is ambiguous.
            match chain.identify(&stored) {
                Identified::Matched {
                    index, ambiguous, ..
                } if index == out.index || ambiguous => {}
                Identified::Plaintext { identity_index } if identity_index == Some(out.index) => {}
                other => {
                    return Err(format!(
                        "{name}: identify says {other:?}, read used entry {}",
                        out.index
                    ));
                }
            }
            Ok(())
        }
        ("ok", Err(e)) => Err(format!("{name}: expected ok, got {e}")),
        (class, Ok(out)) => Err(format!(
            "{name}: expected {class}, but it decrypted ({} bytes via entry {})",
            out.plaintext.len(),
            out.index
        )),
        (class, Err(e)) if e.class.as_str() == class => Ok(()),
        (class, Err(e)) => Err(format!("{name}: expected {class}, got {e}")),
    }
}

/// Every case of every file under its single-key config.
#[test]
fn every_case_under_its_single_key_config() {
    let rt = rt();
    let mut failures = Vec::new();
    let mut n = 0;
    for f in FILES {
        let file = load(f);
        for case in file["cases"].as_array().expect("cases") {
            let (p, connector) = single_key_providers(&file, case);
            let chain = Chain::from_providers(&[&p], &connector).expect("chain builds");
            if let Err(e) = rt.block_on(check_read(&chain, &file, case, true)) {
                failures.push(e);
            }
            n += 1;
        }
    }
    assert!(n >= 70, "only {n} cases found");
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn group_resource_of(etcd_key: &str) -> GroupResource {
    // Vector keys: <prefix>/<resource>/... or <prefix>/<group>/<resource>/...; the prefix is
    // `/registry` except in the custom-prefix case, whose prefix is its first segment.
    let segs: Vec<&str> = etcd_key.trim_start_matches('/').split('/').collect();
    let rest = &segs[1..];
    if rest[0].contains('.') {
        GroupResource::new(rest[0], rest[1])
    } else {
        GroupResource::new("", rest[0])
    }
}

fn load_config(rel: &str) -> EncryptionConfig {
    let p = vectors_dir().join(rel);
    EncryptionConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every case of every file under the file's `config_file`, the chain picked by resource.
#[test]
fn every_case_under_its_config_file() {
    let rt = rt();
    let mut failures = Vec::new();
    for f in FILES {
        let file = load(f);
        let config = load_config(s(&file, "config_file"));
        let connector = FakeConnector::with(plugin_for_file(&file));
        let t = Transformers::new(&config, &connector).expect("transformers");
        for case in file["cases"].as_array().expect("cases") {
            assert_eq!(s(case, "config_file"), s(&file, "config_file"));
            let gr = group_resource_of(s(case, "etcd_key"));
            let chain = t.chain_for(Some(&gr));
            if let Err(e) = rt.block_on(check_read(chain, &file, case, false)) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every readable case also reads under the all-providers config the snapshots use.
#[test]
fn readable_cases_under_all_providers_config() {
    let rt = rt();
    let config = load_config("configs/all-providers.encryption-config.yaml");
    let files: Vec<Value> = FILES.iter().map(|f| load(f)).collect();
    let connector = FakeConnector::with(files.iter().filter_map(plugin_for_file));
    let t = Transformers::new(&config, &connector).expect("transformers");
    rt.block_on(t.prepare_kms())
        .expect("prepare_kms with the fake v2 plugin");
    let mut failures = Vec::new();
    for file in &files {
        for case in file["cases"].as_array().expect("cases") {
            if s(case, "expect") != "ok" {
                continue;
            }
            let gr = group_resource_of(s(case, "etcd_key"));
            if let Err(e) = rt.block_on(check_read(t.chain_for(Some(&gr)), file, case, false)) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// classify_value (no config) reads the visible fields exactly like the vectors describe them.
#[test]
fn classification_matches_vector_metadata() {
    for f in FILES {
        let file = load(f);
        for case in file["cases"].as_array().expect("cases") {
            let name = s(case, "name");
            let stored = b64(s(case, "stored_b64"));
            match classify_value(&stored) {
                ValueClass::Plaintext(pk) => {
                    assert_eq!(
                        s(case, "provider"),
                        "identity",
                        "{name}: classified as plaintext"
                    );
                    check_object_meta(name, case, &pk);
                }
                ValueClass::Encrypted(info) => {
                    let stored_text = String::from_utf8_lossy(&stored);
                    if s(case, "expect") == "ok" {
                        assert_eq!(info.provider, Some(provider_kind(case)), "{name}");
                        assert_eq!(info.name.as_deref(), Some(s(case, "key_name")), "{name}");
                    } else {
                        assert!(stored_text.starts_with("k8s:enc:"), "{name}");
                        assert!(info.provider.is_some(), "{name}");
                    }
                    if let Some(k) = case.get("kms").filter(|k| k["api_version"] == "v2") {
                        check_kms_v2_fields(name, k, info.kms_v2.as_ref());
                    }
                }
            }
            if s(case, "expect") == "ok" && case.get("corrupted_plaintext").is_none() {
                let pt = b64(s(case, "plaintext_b64"));
                match classify_value(&pt) {
                    ValueClass::Plaintext(pk) => check_object_meta(name, case, &pk),
                    ValueClass::Encrypted(_) => panic!("{name}: plaintext classified as encrypted"),
                }
            }
        }
    }
}

fn check_object_meta(name: &str, case: &Value, pk: &PlaintextKind) {
    let o = &case["object"];
    assert_eq!(pk.format_name(), s(o, "encoding"), "{name}: encoding");
    let (av, kind) = pk.type_meta();
    assert_eq!(av, Some(s(o, "apiVersion")), "{name}: apiVersion");
    assert_eq!(kind, Some(s(o, "kind")), "{name}: kind");
}

fn check_kms_v2_fields(
    name: &str,
    k: &Value,
    got: Option<&atrest::codec::kmsv2::EncryptedObjectInfo>,
) {
    if k["key_id"].is_null() {
        assert!(got.is_none(), "{name}: unparseable object yielded fields");
        return;
    }
    let got = got.unwrap_or_else(|| panic!("{name}: no KMS v2 fields"));
    assert_eq!(got.key_id, s(k, "key_id"), "{name}: keyID");
    assert_eq!(
        got.dek_source_type,
        s(k, "encrypted_dek_source_type"),
        "{name}: type"
    );
    let want: BTreeMap<String, String> = k["annotations"]
        .as_object()
        .expect("annotations")
        .iter()
        .map(|(a, v)| (a.clone(), v.as_str().expect("str").to_string()))
        .collect();
    assert_eq!(got.annotations, want, "{name}: annotations");
}

/// KMS v2: N objects under one seed cost one plugin Decrypt (the cache is keyed like upstream).
#[test]
fn kms_v2_one_decrypt_per_seed() {
    let rt = rt();
    let file = load("kmsv2.json");
    let plugin = plugin_for_file(&file).expect("plugin");
    let connector = FakeConnector::with([plugin.clone()]);
    let p = ProviderConfig::Kms(kms_config("fake-kms-v2", true));
    let chain = Arc::new(Chain::from_providers(&[&p], &connector).expect("chain"));
    let seed_cases: Vec<&Value> = file["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| s(c, "name").starts_with("kmsv2-seed-") && s(c, "expect") == "ok")
        .collect();
    assert!(seed_cases.len() >= 5);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            for c in &seed_cases {
                let chain = chain.clone();
                let key = s(c, "etcd_key").to_string();
                let stored = b64(s(c, "stored_b64"));
                tasks.push(tokio::spawn(async move {
                    chain
                        .read(key.as_bytes(), &stored)
                        .await
                        .map(|o| o.plaintext.len())
                }));
            }
        }
        for t in tasks {
            t.await.expect("join").expect("reads");
        }
    });
    assert_eq!(
        plugin
            .decrypt_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one Decrypt for all objects under one seed"
    );
}
