//! Integration tests: the KMS gRPC clients against the real `atrest-test-kms` plugin process
//! (both APIs, the vectors' recorded DEKs, key id switch via SIGHUP, and every failure mode:
//! unreachable, slow, unhealthy, wrong version, failing, mismatching key ids).
//! Secrets are compared by SHA-256, never printed. `codec` runs the codec's KMS providers
//! (Transformers/Chain) against the plugin; `etcd` adds a real etcd and the atrest CLI.
mod codec;
mod etcd;

use crate::common::kms::{KmsPlugin, random_suffix};
use atrest::config::{KmsApiVersion, KmsConfig};
use atrest::kms::grpc::{V1Client, V2Client};
use atrest::kms::{DecryptRequest, KmsError, KmsService};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 in test data")
}

fn v2(plugin: &KmsPlugin) -> V2Client {
    V2Client::new(&plugin.kms_config("test-kms-v2", KmsApiVersion::V2)).expect("v2 client")
}

fn v1(plugin: &KmsPlugin) -> V1Client {
    V1Client::new(&plugin.kms_config("test-kms-v1", KmsApiVersion::V1)).expect("v1 client")
}

fn random_secret() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    getrandom::fill(&mut k).expect("getrandom");
    k
}

fn config_for(endpoint: &str, api: KmsApiVersion, timeout: Duration) -> KmsConfig {
    KmsConfig {
        api_version: api,
        name: "my-kms".to_string(),
        endpoint: endpoint.to_string(),
        timeout,
        cachesize: None,
    }
}

#[tokio::test]
async fn v2_status_encrypt_decrypt_round_trip() {
    let plugin = KmsPlugin::builder()
        .key_id("key-a")
        .api("v2")
        .annotation("version.fake-kms.example.com", "Mg==")
        .start();
    let client = v2(&plugin);
    let status = client.status().await.expect("status");
    assert_eq!(status.healthz, "ok");
    assert_eq!(status.version, "v2");
    assert_eq!(status.key_id, "key-a");

    let seed = random_secret();
    let enc = client.encrypt(&seed).await.expect("encrypt");
    assert_eq!(enc.key_id, "key-a");
    assert_eq!(
        enc.annotations.get("version.fake-kms.example.com"),
        Some(&b"2".to_vec())
    );
    assert_eq!(enc.ciphertext.len(), 12 + 32 + 16, "nonce || ct || tag");
    assert_ne!(sha(&enc.ciphertext), sha(&seed));

    let req = DecryptRequest {
        ciphertext: enc.ciphertext.clone(),
        key_id: enc.key_id.clone(),
        annotations: enc.annotations.clone(),
    };
    let plain = client.decrypt(&req).await.expect("decrypt");
    assert_eq!(sha(plain.expose()), sha(&seed), "round trip");

    // The key id is the AAD: another key id does not decrypt, and the plugin's message comes back.
    let wrong = DecryptRequest {
        key_id: "key-b".to_string(),
        ..req
    };
    match client.decrypt(&wrong).await {
        Err(KmsError::Call { rpc, message, .. }) => {
            assert_eq!(rpc, "Decrypt");
            assert!(message.contains("does not verify"), "{message}");
        }
        other => panic!("expected a Decrypt call error, got {other:?}"),
    }
    let stats = plugin.stats();
    assert_eq!(stats.v2_status, 1);
    assert_eq!(stats.v2_encrypt, 1);
    assert_eq!(stats.v2_decrypt, 2);
    assert_eq!(stats.decrypt_failed, 1);
    assert_eq!(stats.decrypt_key_ids.get("key-b"), Some(&1));
}

#[tokio::test]
async fn v2_uid_is_a_fresh_uuid_v4_per_call() {
    let plugin = KmsPlugin::builder().api("v2").start();
    let client = v2(&plugin);
    let mut reqs = Vec::new();
    for _ in 0..3 {
        let enc = client.encrypt(&random_secret()).await.expect("encrypt");
        reqs.push(DecryptRequest {
            ciphertext: enc.ciphertext,
            key_id: enc.key_id,
            annotations: enc.annotations,
        });
    }
    // The same request twice: still a new uid each time.
    client.decrypt(&reqs[0]).await.expect("decrypt");
    client.decrypt(&reqs[0]).await.expect("decrypt");
    let uids = plugin.stats().uids;
    assert_eq!(uids.len(), 5, "{uids:?}");
    let distinct: std::collections::BTreeSet<_> = uids.iter().collect();
    assert_eq!(distinct.len(), 5, "uids repeat: {uids:?}");
    for u in &uids {
        let parsed = uuid::Uuid::parse_str(u).unwrap_or_else(|e| panic!("uid {u:?}: {e}"));
        assert_eq!(parsed.get_version_num(), 4, "uid {u} is not a v4 UUID");
    }
}

#[tokio::test]
async fn v1_version_encrypt_decrypt() {
    let plugin = KmsPlugin::builder().api("v1").start();
    let client = v1(&plugin);
    let dek = random_secret();
    let cipher = client.encrypt(&dek).await.expect("encrypt");
    assert!(cipher.key_id.is_empty() && cipher.annotations.is_empty());
    let plain = client
        .decrypt(&DecryptRequest {
            ciphertext: cipher.ciphertext.clone(),
            ..Default::default()
        })
        .await
        .expect("decrypt");
    assert_eq!(sha(plain.expose()), sha(&dek));
    // A second round: Version was called once, before the first Encrypt.
    client.encrypt(&dek).await.expect("encrypt again");
    let stats = plugin.stats();
    assert_eq!(stats.v1_version, 1, "Version once before the first call");
    assert_eq!((stats.v1_encrypt, stats.v1_decrypt), (2, 1));

    let status = client.status().await.expect("status");
    assert_eq!(status.version, "v1beta1");
    assert_eq!(status.healthz, "ok");
    assert!(status.key_id.is_empty());
    assert_eq!(plugin.stats().v1_version, 2, "status() asks Version");

    // Deterministic scheme: same DEK, same wrap (nonce = SHA-256(dek)[0:12], no AAD for v1).
    let again = client.encrypt(&dek).await.expect("encrypt");
    assert_eq!(sha(&again.ciphertext), sha(&cipher.ciphertext));
}

/// Every recorded Decrypt answer of the vectors, served by the plugin loaded with the file's KEK.
async fn check_vector_answers(file: &str, client: &dyn KmsService) -> (usize, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file")).expect("json");
    let (mut ok, mut refused) = (0, 0);
    for case in v["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        for ans in case["kms"]["decrypt_answers"].as_array().expect("answers") {
            let mut annotations = BTreeMap::new();
            if let Some(a) = ans["annotations"].as_object() {
                for (k, val) in a {
                    annotations.insert(k.clone(), b64(val.as_str().expect("annotation")));
                }
            }
            let req = DecryptRequest {
                ciphertext: b64(ans["encrypted_dek_b64"].as_str().expect("edek")),
                key_id: ans["key_id"].as_str().unwrap_or_default().to_string(),
                annotations,
            };
            let got = client.decrypt(&req).await;
            match ans["dek_b64"].as_str() {
                Some(dek) => {
                    let plain = got.unwrap_or_else(|e| panic!("{name}: decrypt failed: {e}"));
                    assert_eq!(sha(plain.expose()), sha(&b64(dek)), "{name}: DEK differs");
                    ok += 1;
                }
                None => {
                    assert!(
                        matches!(got, Err(KmsError::Call { .. })),
                        "{name}: plugin must refuse, got {got:?}"
                    );
                    refused += 1;
                }
            }
        }
    }
    (ok, refused)
}

#[tokio::test]
async fn vectors_recorded_deks_decrypt_with_their_kek() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p1 = KmsPlugin::builder_for_vectors(&root.join("testdata/vectors/kmsv1.json")).start();
    let (ok, refused) = check_vector_answers("testdata/vectors/kmsv1.json", &v1(&p1)).await;
    assert!(ok > 0 && refused > 0, "kmsv1: {ok} ok, {refused} refused");

    let p2 = KmsPlugin::builder_for_vectors(&root.join("testdata/vectors/kmsv2.json")).start();
    let client = v2(&p2);
    assert_eq!(
        client.status().await.expect("status").key_id,
        "fake-kek-2024-06"
    );
    let (ok, refused) = check_vector_answers("testdata/vectors/kmsv2.json", &client).await;
    assert!(ok > 0 && refused > 0, "kmsv2: {ok} ok, {refused} refused");

    // The plugin re-wraps a vector DEK exactly as the recorded one (deterministic scheme).
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("testdata/vectors/kmsv2.json")).expect("read"),
    )
    .expect("json");
    let ans = &v["cases"][0]["kms"]["decrypt_answers"][0];
    let enc = client
        .encrypt(&b64(ans["dek_b64"].as_str().expect("dek")))
        .await
        .expect("encrypt");
    assert_eq!(
        sha(&enc.ciphertext),
        sha(&b64(ans["encrypted_dek_b64"].as_str().expect("edek")))
    );
    assert_eq!(enc.annotations.len(), 2);
}

#[tokio::test]
async fn sighup_switches_the_current_key_id() {
    let plugin = KmsPlugin::builder().key_id("key-a").api("both").start();
    let client = v2(&plugin);
    assert_eq!(client.status().await.expect("status").key_id, "key-a");
    let seed = random_secret();
    let old = client.encrypt(&seed).await.expect("encrypt");

    plugin.set_key_id("key-b");
    assert_eq!(client.status().await.expect("status").key_id, "key-b");
    let new = client.encrypt(&seed).await.expect("encrypt");
    assert_eq!(new.key_id, "key-b");
    assert_ne!(sha(&new.ciphertext), sha(&old.ciphertext), "AAD = key id");

    // Values under the old key id still decrypt (the KMS keeps old key versions).
    let plain = client
        .decrypt(&DecryptRequest {
            ciphertext: old.ciphertext,
            key_id: old.key_id,
            annotations: old.annotations,
        })
        .await
        .expect("decrypt under the old key id");
    assert_eq!(sha(plain.expose()), sha(&seed));
    assert_eq!(plugin.stats().reloads, 1);
}

#[tokio::test]
async fn unreachable_socket_names_plugin_and_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-plugin.sock");
    let endpoint = format!("unix://{}", missing.display());
    for api in [KmsApiVersion::V1, KmsApiVersion::V2] {
        let cfg = config_for(&endpoint, api, Duration::from_secs(5));
        let client: Box<dyn KmsService> = match api {
            KmsApiVersion::V1 => Box::new(V1Client::new(&cfg).expect("client")),
            KmsApiVersion::V2 => Box::new(V2Client::new(&cfg).expect("client")),
        };
        let started = Instant::now();
        let err = client.status().await.expect_err("no plugin");
        assert!(started.elapsed() < Duration::from_secs(4), "fails fast");
        let msg = err.to_string();
        assert!(matches!(err, KmsError::Unreachable { .. }), "{err:?}");
        assert!(msg.contains("my-kms"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
        assert!(msg.contains("is the KMS plugin running?"), "{msg}");
    }

    // A socket file nobody listens on (a crashed plugin): connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let cfg = config_for(
        &format!("unix://{}", stale.display()),
        KmsApiVersion::V2,
        Duration::from_secs(5),
    );
    let err = V2Client::new(&cfg)
        .expect("client")
        .encrypt(b"0123456789abcdef0123456789abcdef")
        .await
        .expect_err("stale socket");
    assert!(matches!(err, KmsError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    // `unix://foo.sock` names a host, not a file: clear error on the first call.
    let cfg = config_for("unix://foo.sock", KmsApiVersion::V2, Duration::from_secs(5));
    let err = V2Client::new(&cfg)
        .expect("client is lazy")
        .status()
        .await
        .expect_err("empty path");
    assert!(matches!(err, KmsError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("empty socket path"), "{err}");
    assert!(err.to_string().contains("unix:///"), "{err}");
}

#[tokio::test]
async fn client_reconnects_after_plugin_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("kms.sock");
    let mut plugin = KmsPlugin::builder().socket(&sock).key_id("k1").start();
    let client = v2(&plugin);
    assert_eq!(client.status().await.expect("status").key_id, "k1");

    plugin.kill(); // crash: the socket file stays
    let err = client.status().await.expect_err("plugin down");
    assert!(
        matches!(err, KmsError::Unreachable { .. } | KmsError::Call { .. }),
        "{err:?}"
    );
    // Once the broken connection is noticed, further calls say the plugin is unreachable.
    let err = client.status().await.expect_err("plugin down");
    assert!(matches!(err, KmsError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    // A new plugin on the same socket (stale file replaced): the same client works again.
    let _plugin2 = KmsPlugin::builder().socket(&sock).key_id("k2").start();
    assert_eq!(client.status().await.expect("status").key_id, "k2");
}

#[tokio::test]
async fn slow_plugin_times_out_with_the_config_timeout() {
    let plugin = KmsPlugin::builder().args(["--delay", "5000"]).start();
    for api in [KmsApiVersion::V1, KmsApiVersion::V2] {
        let cfg = plugin.kms_config_with_timeout("slow-kms", api, Duration::from_millis(500));
        let client: Box<dyn KmsService> = match api {
            KmsApiVersion::V1 => Box::new(V1Client::new(&cfg).expect("client")),
            KmsApiVersion::V2 => Box::new(V2Client::new(&cfg).expect("client")),
        };
        let started = Instant::now();
        let err = client.encrypt(&random_secret()).await.expect_err("slow");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "deadline enforced: {:?}",
            started.elapsed()
        );
        match &err {
            KmsError::Call { name, message, .. } => {
                assert_eq!(name, "slow-kms");
                assert!(message.contains("timed out after 500ms"), "{message}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn decrypt_only_delay_knob() {
    let plugin = KmsPlugin::builder()
        .args(["--decrypt-delay", "5000"])
        .start();
    let cfg = plugin.kms_config_with_timeout("kms", KmsApiVersion::V2, Duration::from_secs(2));
    let client = V2Client::new(&cfg).expect("client");
    let enc = client
        .encrypt(&random_secret())
        .await
        .expect("encrypt is fast");
    let err = client
        .decrypt(&DecryptRequest {
            ciphertext: enc.ciphertext,
            key_id: enc.key_id,
            annotations: enc.annotations,
        })
        .await
        .expect_err("decrypt is slow");
    assert!(err.to_string().contains("timed out after 2s"), "{err}");
}

#[tokio::test]
async fn a_timed_out_decrypt_is_not_resent_at_once() {
    let plugin = KmsPlugin::builder()
        .args(["--decrypt-delay", "10000"])
        .start();
    let cfg = plugin.kms_config_with_timeout("kms", KmsApiVersion::V2, Duration::from_secs(1));
    let client = V2Client::new(&cfg).expect("client");
    let a = client.encrypt(&random_secret()).await.expect("encrypt");
    let b = client.encrypt(&random_secret()).await.expect("encrypt");
    let req = |e: &atrest::kms::EncryptResponse| DecryptRequest {
        ciphertext: e.ciphertext.clone(),
        key_id: e.key_id.clone(),
        annotations: e.annotations.clone(),
    };
    let first = client.decrypt(&req(&a)).await.expect_err("slow");
    assert!(first.to_string().contains("timed out after 1s"), "{first}");
    // The same request again (the next object sharing the seed): answered at once.
    let started = Instant::now();
    let again = client.decrypt(&req(&a)).await.expect_err("memo");
    assert!(started.elapsed() < Duration::from_millis(900), "not resent");
    assert!(again.to_string().contains("timed out after 1s"), "{again}");
    assert!(
        again.to_string().contains("identical Decrypt timed out"),
        "{again}"
    );
    // Another DEK source is still tried (and times out on its own).
    let started = Instant::now();
    let other = client.decrypt(&req(&b)).await.expect_err("slow");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "really sent"
    );
    assert!(!other.to_string().contains("identical"), "{other}");
}

#[tokio::test]
async fn unhealthy_or_wrong_version_is_invalid() {
    let plugin = KmsPlugin::builder().args(["--unhealthy"]).start();
    let err = v2(&plugin).status().await.expect_err("unhealthy");
    assert!(matches!(err, KmsError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("unhealthy"), "{err}");
    assert!(err.to_string().contains("test-kms-v2"), "{err}");

    let plugin = KmsPlugin::builder()
        .args(["--status-version", "v3"])
        .start();
    let err = v2(&plugin).status().await.expect_err("v3");
    assert!(matches!(err, KmsError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("\"v3\""), "{err}");
    // v1 checks Version before the first Encrypt too.
    let err = v1(&plugin)
        .encrypt(b"x")
        .await
        .expect_err("v1 wants v1beta1");
    assert!(matches!(err, KmsError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("v1beta1"), "{err}");
    assert_eq!(
        plugin.stats().v1_encrypt,
        0,
        "no Encrypt after a bad Version"
    );

    let plugin = KmsPlugin::builder()
        .args(["--status-version", "v2beta1"])
        .start();
    assert_eq!(
        v2(&plugin).status().await.expect("v2beta1 ok").version,
        "v2beta1"
    );
}

#[tokio::test]
async fn plugin_errors_carry_the_plugin_message() {
    let plugin = KmsPlugin::builder()
        .args(["--fail-decrypt", "--fail-encrypt"])
        .start();
    for client in [
        Box::new(v2(&plugin)) as Box<dyn KmsService>,
        Box::new(v1(&plugin)),
    ] {
        let err = client.encrypt(b"seed").await.expect_err("fail-encrypt");
        assert!(
            err.to_string().contains("injected by --fail-encrypt"),
            "{err}"
        );
        let err = client
            .decrypt(&DecryptRequest {
                ciphertext: vec![7; 60],
                key_id: "key-1".to_string(),
                annotations: BTreeMap::new(),
            })
            .await
            .expect_err("fail-decrypt");
        match &err {
            KmsError::Call { rpc, message, .. } => {
                assert_eq!(*rpc, "Decrypt");
                assert!(message.contains("injected by --fail-decrypt"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn wrong_api_version_for_the_plugin_is_explained() {
    let plugin = KmsPlugin::builder().api("v1").start();
    let err = v2(&plugin).status().await.expect_err("v1-only plugin");
    assert!(matches!(err, KmsError::Call { .. }), "{err:?}");
    assert!(err.to_string().contains("apiVersion"), "{err}");
}

#[tokio::test]
async fn encrypt_key_id_differing_from_status_is_visible() {
    let plugin = KmsPlugin::builder()
        .key_id("status-key")
        .args(["--encrypt-key-id", "other-key"])
        .start();
    let client = v2(&plugin);
    assert_eq!(client.status().await.expect("status").key_id, "status-key");
    let enc = client.encrypt(&random_secret()).await.expect("encrypt");
    // The client reports what the plugin answered; the codec's writer refuses the mismatch.
    assert_eq!(enc.key_id, "other-key");
}

#[tokio::test]
async fn abstract_socket_endpoint() {
    let name = format!("atrest-test-kms-{}", random_suffix());
    let plugin = KmsPlugin::builder()
        .abstract_socket(&name)
        .key_id("abs")
        .start();
    assert_eq!(plugin.endpoint, format!("unix:///@{name}"));
    assert_eq!(v2(&plugin).status().await.expect("status").key_id, "abs");
}

#[test]
fn plugin_socket_is_private_and_removed_on_sigterm() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut plugin = KmsPlugin::builder().start();
    let sock = plugin.socket.clone().expect("socket path");
    plugin.wait_for("socket mode 0600", || {
        std::fs::metadata(&sock)
            .map(|m| m.permissions().mode() & 0o777 == 0o600)
            .unwrap_or(false)
    });
    let status = plugin.stop();
    assert!(status.success(), "exit status {status}");
    assert!(!sock.exists(), "socket removed on SIGTERM");
    let log = plugin.log();
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn plugin_rejects_bad_kek_and_annotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "c2hvcnQ=").expect("write"); // 5 bytes
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atrest-test-kms"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--kek-file")
        .arg(&kek)
        .args(["--key-id", "k"])
        .output()
        .expect("run plugin");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!dir.path().join("s.sock").exists());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atrest-test-kms"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--kek-file")
        .arg(&kek)
        .args(["--key-id", "k", "--annotation", "a.example.com=%%%"])
        .output()
        .expect("run plugin");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("base64"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_connection() {
    let plugin = KmsPlugin::builder().api("v2").start();
    let client = std::sync::Arc::new(v2(&plugin));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let c = std::sync::Arc::clone(&client);
        tasks.spawn(async move {
            let seed = random_secret();
            let enc = c.encrypt(&seed).await.expect("encrypt");
            let plain = c
                .decrypt(&DecryptRequest {
                    ciphertext: enc.ciphertext,
                    key_id: enc.key_id,
                    annotations: enc.annotations,
                })
                .await
                .expect("decrypt");
            sha(plain.expose()) == sha(&seed)
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        assert!(r.expect("task"), "round trip");
        ok += 1;
    }
    assert_eq!(ok, 64);
    let s = plugin.stats();
    assert_eq!((s.v2_encrypt, s.v2_decrypt), (64, 64));
}

#[tokio::test]
async fn errors_and_debug_output_hold_no_key_material() {
    let plugin = KmsPlugin::builder()
        .api("v2")
        .args(["--fail-decrypt"])
        .start();
    let client = v2(&plugin);
    let seed = random_secret();
    let enc = client.encrypt(&seed).await.expect("encrypt");
    let err = client
        .decrypt(&DecryptRequest {
            ciphertext: enc.ciphertext,
            key_id: enc.key_id,
            annotations: enc.annotations,
        })
        .await
        .expect_err("fail-decrypt");
    let kek = std::fs::read_to_string(plugin.dir().join("kek.b64")).expect("kek file");
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        format!("{client:?}"),
        plugin.log(),
    ];
    let needles = [
        hex::encode(&seed),
        base64::engine::general_purpose::STANDARD.encode(&seed),
        kek.trim().to_string(),
    ];
    for t in &texts {
        for n in &needles {
            assert!(!t.contains(n.as_str()), "secret material in output");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_crash_during_a_call_is_reported() {
    let mut plugin = KmsPlugin::builder()
        .api("v2")
        .args(["--decrypt-delay", "3000"])
        .start();
    let client = std::sync::Arc::new(v2(&plugin));
    let enc = client.encrypt(&random_secret()).await.expect("encrypt");
    let c = std::sync::Arc::clone(&client);
    let call = tokio::spawn(async move {
        c.decrypt(&DecryptRequest {
            ciphertext: enc.ciphertext,
            key_id: enc.key_id,
            annotations: enc.annotations,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    plugin.kill();
    let err = call
        .await
        .expect("task")
        .expect_err("plugin crashed mid-call");
    match &err {
        KmsError::Call { rpc, message, .. } => {
            assert_eq!(*rpc, "Decrypt");
            assert!(
                message.contains("did the plugin exit or crash?"),
                "{message}"
            );
            assert!(
                message.contains(plugin.endpoint.trim_start_matches("unix://")),
                "{message}"
            );
        }
        // Depending on timing the broken connection may already be seen at dial time.
        KmsError::Unreachable { endpoint, .. } => {
            assert!(
                endpoint.contains(plugin.endpoint.trim_start_matches("unix://")),
                "{endpoint}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = client.status().await.expect_err("down");
    assert!(matches!(err, KmsError::Unreachable { .. }), "{err:?}");
}
