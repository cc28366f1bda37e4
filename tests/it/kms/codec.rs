//! The codec's KMS providers (Transformers / Chain, with the production `GrpcConnector`) against
//! the real plugin process: the vectors read end to end, one seed per run on write, one Decrypt
//! per distinct DEK source on read, keyID staleness after a key switch, and the failure modes
//! (Encrypt key_id != Status key_id, plugin down, plugin slow).
use super::{b64, sha};
use crate::common::kms::KmsPlugin;
use atrest::codec::chain::{Identified, Transformers};
use atrest::codec::{ErrorClass, ProviderKind};
use atrest::config::EncryptionConfig;
use atrest::kms::GrpcConnector;
use atrest::resource::GroupResource;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A config whose secrets/configmaps rule lists `providers` (YAML list items, 6-space indent).
fn config(providers: &str) -> EncryptionConfig {
    let yaml = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n      - configmaps\n    providers:\n{providers}"
    );
    EncryptionConfig::parse(&yaml, "test-config").expect("test config is valid")
}

fn transformers(cfg: &EncryptionConfig) -> Transformers {
    Transformers::new(cfg, &GrpcConnector).expect("transformers")
}

fn secrets() -> GroupResource {
    GroupResource::new("", "secrets")
}

fn plaintext(i: usize) -> Vec<u8> {
    format!("k8s\0secret number {i} with some payload").into_bytes()
}

fn key(i: usize) -> String {
    format!("/registry/secrets/ns-{}/s-{i}", i % 7)
}

/// Every case of a KMS vector file, read through the chain of the file's own config with the
/// endpoint pointed at a plugin holding the file's KEK: `expect` holds, and the plugin saw at
/// most one Decrypt per distinct DEK source (upstream's cache key).
async fn read_vector_file(file: &str, endpoint_in_file: &str) {
    let vectors = root().join("testdata/vectors").join(file);
    let plugin = KmsPlugin::builder_for_vectors(&vectors).start();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vectors).expect("read")).expect("json");
    let cfg_text = std::fs::read_to_string(
        root()
            .join("testdata/vectors")
            .join(v["config_file"].as_str().expect("config_file")),
    )
    .expect("config");
    assert!(
        cfg_text.contains(endpoint_in_file),
        "endpoint in {file}'s config"
    );
    let cfg_text = cfg_text.replace(endpoint_in_file, &plugin.endpoint);
    let cfg = EncryptionConfig::parse(&cfg_text, file).expect("vector config");
    let t = transformers(&cfg);
    t.prepare_kms().await.expect("plugin Status");
    let chain = t.chain_for(Some(&secrets()));

    let mut sources = BTreeSet::new();
    let mut checked = 0;
    for case in v["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        for a in case["kms"]["decrypt_answers"].as_array().expect("answers") {
            // Upstream's cache key: source type, encrypted DEK source, key id, annotations.
            sources.insert((
                case["kms"]["encrypted_dek_source_type"].to_string(),
                a["encrypted_dek_b64"].to_string(),
                a["key_id"].to_string(),
                a["annotations"].to_string(),
            ));
        }
        let stored = b64(case["stored_b64"].as_str().expect("stored"));
        let etcd_key = case["etcd_key"].as_str().expect("etcd_key");
        let expect = case["expect"].as_str().expect("expect");
        match (chain.read(etcd_key.as_bytes(), &stored).await, expect) {
            (Ok(out), "ok") => {
                let want = b64(case["plaintext_b64"].as_str().expect("plaintext"));
                assert_eq!(sha(out.plaintext.expose()), sha(&want), "{name}: plaintext");
            }
            (Ok(out), _) => panic!(
                "{name}: expected {expect}, but it read ({} bytes)",
                out.plaintext.len()
            ),
            (Err(e), "ok") => panic!("{name}: expected ok, got {e}"),
            (Err(e), _) => assert_eq!(e.class.as_str(), expect, "{name}: {e}"),
        }
        checked += 1;
    }
    assert!(checked >= 10, "{file}: {checked} cases");
    let stats = plugin.stats();
    assert!(stats.decrypt >= 1, "{file}: the plugin was used");
    assert!(
        stats.decrypt as usize <= sources.len(),
        "{file}: {} Decrypt calls for {} distinct DEK sources",
        stats.decrypt,
        sources.len()
    );
}

#[tokio::test]
async fn kms_v2_vectors_read_through_the_chain() {
    read_vector_file("kmsv2.json", "unix:///var/run/kmsplugin/fake-kms-v2.sock").await;
}

#[tokio::test]
async fn kms_v1_vectors_read_through_the_chain() {
    read_vector_file("kmsv1.json", "unix:///var/run/kmsplugin/fake-kms-v1.sock").await;
}

#[tokio::test]
async fn write_uses_one_seed_per_run_and_reads_cost_one_decrypt() {
    let plugin = KmsPlugin::builder()
        .key_id("key-a")
        .api("v2")
        .annotation("version.fake-kms.example.com", "MQ==")
        .start();
    let cfg = config(&plugin.provider_yaml("my-kms", "v2", 6));
    const N: usize = 300;
    let mut stored = Vec::with_capacity(N);
    {
        let t = transformers(&cfg);
        let chain = t.chain_for(Some(&secrets()));
        for i in 0..N {
            let v = chain
                .write(key(i).as_bytes(), &plaintext(i))
                .await
                .expect("write");
            assert!(v.starts_with(b"k8s:enc:kms:v2:my-kms:"));
            stored.push(v);
        }
    }
    let s = plugin.stats();
    assert_eq!(s.v2_encrypt, 1, "one seed (one Encrypt) for the whole run");
    assert_eq!(s.v2_decrypt, 0);

    // A new run (fresh cache): every value reads back, current, with one Decrypt in total.
    let t = transformers(&cfg);
    t.prepare_kms().await.expect("Status");
    let chain = t.chain_for(Some(&secrets()));
    for (i, v) in stored.iter().enumerate() {
        match chain.identify(v) {
            Identified::Matched {
                provider: ProviderKind::KmsV2,
                kms_v2: Some(info),
                stale_hint,
                ..
            } => {
                assert_eq!(info.key_id, "key-a");
                assert!(!stale_hint, "written under the current key");
                assert_eq!(info.dek_source_type, "HKDF_SHA256_XNONCE_AES_GCM_SEED");
                assert_eq!(
                    info.annotations
                        .get("version.fake-kms.example.com")
                        .map(String::as_str),
                    Some("MQ==")
                );
            }
            other => panic!("value {i}: {other:?}"),
        }
        let out = chain.read(key(i).as_bytes(), v).await.expect("read");
        assert_eq!(sha(out.plaintext.expose()), sha(&plaintext(i)));
        assert!(!out.stale);
    }
    assert_eq!(
        plugin.stats().v2_decrypt,
        1,
        "one Decrypt for {N} objects sharing one seed"
    );
    // AAD = etcd key: a value moved to another key does not decrypt.
    let err = chain
        .read(key(1).as_bytes(), &stored[0])
        .await
        .expect_err("moved value");
    assert_eq!(err.class, ErrorClass::AuthFailed);

    // Switch the plugin's key: the old values become stale (by keyID, without decrypting).
    plugin.set_key_id("key-b");
    let t = transformers(&cfg);
    t.prepare_kms().await.expect("Status");
    let chain = t.chain_for(Some(&secrets()));
    let decrypts_before = plugin.stats().v2_decrypt;
    for v in &stored {
        assert!(
            matches!(
                chain.identify(v),
                Identified::Matched {
                    stale_hint: true,
                    ..
                }
            ),
            "stale after the key switch"
        );
    }
    assert_eq!(
        plugin.stats().v2_decrypt,
        decrypts_before,
        "staleness needs no Decrypt"
    );
    let out = chain
        .read(key(0).as_bytes(), &stored[0])
        .await
        .expect("read");
    assert!(out.stale, "read says stale too");
    // Re-encrypting writes under key-b with a new seed.
    let fresh = chain
        .write(key(0).as_bytes(), out.plaintext.expose())
        .await
        .expect("write");
    match chain.identify(&fresh) {
        Identified::Matched {
            kms_v2: Some(info),
            stale_hint: false,
            ..
        } => assert_eq!(info.key_id, "key-b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(plugin.stats().v2_encrypt, 2);
}

#[tokio::test]
async fn write_refuses_an_encrypt_key_id_different_from_status() {
    let plugin = KmsPlugin::builder()
        .key_id("status-key")
        .api("v2")
        .args(["--encrypt-key-id", "other-key"])
        .start();
    let cfg = config(&plugin.provider_yaml("my-kms", "v2", 6));
    let t = transformers(&cfg);
    let err = t
        .chain_for(Some(&secrets()))
        .write(key(0).as_bytes(), &plaintext(0))
        .await
        .expect_err("mismatch must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("other-key") && msg.contains("status-key"),
        "{msg}"
    );
    assert!(msg.contains("my-kms"), "{msg}");
}

#[tokio::test]
async fn write_into_kms_v1_is_refused() {
    let plugin = KmsPlugin::builder().api("v1").start();
    let cfg = config(&plugin.provider_yaml("legacy-kms", "v1", 6));
    let t = transformers(&cfg);
    let err = t
        .chain_for(Some(&secrets()))
        .write(key(0).as_bytes(), &plaintext(0))
        .await
        .expect_err("no writes into KMS v1");
    assert!(err.to_string().contains("v1"), "{err}");
    assert_eq!(plugin.stats().encrypt, 0, "nothing sent to the plugin");
}

#[tokio::test]
async fn plugin_down_or_slow_makes_values_undecryptable_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("kms.sock");
    let mut plugin = KmsPlugin::builder().socket(&sock).api("v2").start();
    let cfg = config(&plugin.provider_yaml("my-kms", "v2", 6));
    let value = transformers(&cfg)
        .chain_for(Some(&secrets()))
        .write(key(0).as_bytes(), &plaintext(0))
        .await
        .expect("write");

    plugin.kill();
    let t = transformers(&cfg);
    let err = t.prepare_kms().await.expect_err("plugin down");
    assert!(
        err.to_string().contains(&sock.display().to_string()),
        "{err}"
    );
    let err = t
        .chain_for(Some(&secrets()))
        .read(key(0).as_bytes(), &value)
        .await
        .expect_err("plugin down");
    assert_eq!(err.class, ErrorClass::KmsDecryptFailed, "{err}");
    assert!(err.message.contains(&sock.display().to_string()), "{err}");

    // Slow Decrypt beyond a 1s timeout: the value is undecryptable, saying it timed out.
    let slow = KmsPlugin::builder()
        .socket(&sock)
        .api("v2")
        .args(["--decrypt-delay", "8000"])
        .start();
    let slow_yaml = slow
        .provider_yaml("my-kms", "v2", 6)
        .replace("timeout: 10s", "timeout: 2s");
    let t = transformers(&config(&slow_yaml));
    let err = t
        .chain_for(Some(&secrets()))
        .read(key(0).as_bytes(), &value)
        .await
        .expect_err("slow plugin");
    assert_eq!(err.class, ErrorClass::KmsDecryptFailed, "{err}");
    assert!(err.message.contains("timed out after 2s"), "{err}");
}

#[tokio::test]
async fn aescbc_and_kms_v1_values_move_into_kms_v2() {
    let v2 = KmsPlugin::builder().key_id("v2-key").api("v2").start();
    let v1 = KmsPlugin::builder_for_vectors(&root().join("testdata/vectors/kmsv1.json")).start();
    let aescbc = "      - aescbc:\n          keys:\n            - name: old\n              secret: wFYyVMKIpQGkUpR2aqdxMIhcpADIcYJdESbahA0dFPA=\n";
    // The old writer: aescbc.
    let old = transformers(&config(aescbc));
    let cbc_value = old
        .chain_for(Some(&secrets()))
        .write(key(1).as_bytes(), &plaintext(1))
        .await
        .expect("aescbc write");
    // A KMS v1 value from the vectors (its key is fixed by the AAD).
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("testdata/vectors/kmsv1.json")).expect("read"),
    )
    .expect("json");
    let case = &vectors["cases"][0];
    let v1_key = case["etcd_key"].as_str().expect("key").to_string();
    let v1_value = b64(case["stored_b64"].as_str().expect("stored"));
    let v1_plain = b64(case["plaintext_b64"].as_str().expect("plain"));

    // The migration config: KMS v2 writes; KMS v1 and aescbc still read.
    let providers = format!(
        "{}{}{aescbc}",
        v2.provider_yaml("new-kms", "v2", 6),
        v1.provider_yaml("fake-kms-v1", "v1", 6)
    );
    let t = transformers(&config(&providers));
    t.prepare_kms().await.expect("Status");
    let chain = t.chain_for(Some(&secrets()));
    let mut moved = Vec::new();
    for (k, v, want) in [
        (key(1), cbc_value, plaintext(1)),
        (v1_key, v1_value, v1_plain),
    ] {
        let out = chain.read(k.as_bytes(), &v).await.expect("old value reads");
        assert!(out.stale, "not under the write provider");
        assert_eq!(sha(out.plaintext.expose()), sha(&want));
        let new = chain
            .write(k.as_bytes(), out.plaintext.expose())
            .await
            .expect("write");
        moved.push((k, new, want));
    }
    // Only KMS v2 is needed to read the moved values now.
    let t = transformers(&config(&v2.provider_yaml("new-kms", "v2", 6)));
    t.prepare_kms().await.expect("Status");
    let chain = t.chain_for(Some(&secrets()));
    for (k, v, want) in &moved {
        let out = chain
            .read(k.as_bytes(), v)
            .await
            .expect("moved value reads");
        assert!(!out.stale);
        assert_eq!(
            out.kms_v2.as_ref().map(|i| i.key_id.as_str()),
            Some("v2-key")
        );
        assert_eq!(sha(out.plaintext.expose()), sha(want));
    }
    assert_eq!(v2.stats().v2_encrypt, 1, "one seed for the run");
    assert_eq!(v1.stats().v1_encrypt, 0, "KMS v1 is read-only");
}
