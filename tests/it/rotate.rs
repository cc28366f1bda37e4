//! Integration tests: `atrest rotate` against a real etcd (mTLS, from the harness).
//!
//! Data is written the way kube-apiserver would write it under a "before" configuration (the
//! library's own writer, AAD = the etcd key), the binary rotates under an "after"
//! configuration, and every value is then decrypted with the "after" configuration and
//! compared — by hash, never printed — with the plaintext it must hold.
use crate::common::{Etcd, atrest_cmd};
use atrest::codec::ENC_PREFIX;
use atrest::codec::chain::Transformers;
use atrest::config::EncryptionConfig;
use atrest::kms::GrpcConnector;
use atrest::resource::GroupResource;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RESOURCES: &str = "[secrets, configmaps, widgets.example.com]";

/// A provider with its key (identity has none).
#[derive(Clone)]
struct Prov {
    kind: &'static str,
    name: String,
    secret_b64: String,
}

impl Prov {
    fn new(kind: &'static str, name: &str) -> Prov {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("random key");
        Prov {
            kind,
            name: name.to_string(),
            secret_b64: B64.encode(key),
        }
    }
    fn yaml(&self) -> String {
        if self.kind == "identity" {
            "      - identity: {}\n".to_string()
        } else {
            format!(
                "      - {}:\n          keys:\n            - name: {}\n              secret: {}\n",
                self.kind, self.name, self.secret_b64
            )
        }
    }
    fn label(&self) -> String {
        if self.kind == "identity" {
            "identity".into()
        } else {
            format!("{}/{}", self.kind, self.name)
        }
    }
}

/// An EncryptionConfiguration with one rule for [`RESOURCES`] and these providers in order.
fn config_yaml(providers: &[&Prov]) -> String {
    let mut s = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: {RESOURCES}\n    providers:\n"
    );
    for p in providers {
        s.push_str(&p.yaml());
    }
    s
}

fn write_config(dir: &Path, name: &str, providers: &[&Prov]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, config_yaml(providers)).expect("write config");
    p
}

fn transformers(path: &Path) -> Transformers {
    let cfg = EncryptionConfig::load(path).expect("test config loads");
    Transformers::new(&cfg, &GrpcConnector).expect("transformers")
}

fn gr_of(key: &str) -> GroupResource {
    let rest = key.split('/').nth(2).unwrap_or_default();
    match rest {
        "secrets" => GroupResource::new("", "secrets"),
        "configmaps" => GroupResource::new("", "configmaps"),
        _ => GroupResource::new("example.com", "widgets"),
    }
}

/// Keys across three resources under `prefix`.
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("{prefix}/secrets/ns{}/s{i:05}", i % 7),
            1 => format!("{prefix}/configmaps/ns{}/c{i:05}", i % 5),
            _ => format!("{prefix}/example.com/widgets/ns{}/w{i:05}", i % 4),
        })
        .collect()
}

/// A plaintext that looks like kube-apiserver's protobuf envelope and carries a marker we can
/// grep for in files that must not contain plaintext.
fn plaintext(key: &str, generation: u32) -> Vec<u8> {
    let mut v = b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret".to_vec();
    v.extend_from_slice(format!("PLAINTEXT-MARKER-{generation}-{key}-").as_bytes());
    v.extend(std::iter::repeat_n(b'x', 64 + key.len() % 200));
    v
}

fn h(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b)[..8])
}

/// Encrypt `pt` for `key` as the chain of `t` would.
async fn encrypt(t: &Transformers, key: &str, pt: &[u8]) -> Vec<u8> {
    let gr = gr_of(key);
    t.chain_for(Some(&gr))
        .write(key.as_bytes(), pt)
        .await
        .expect("test encrypt")
}

/// Put `keys` with generation-0 plaintexts encrypted under `t`; returns key → plaintext.
async fn load(etcd: &Etcd, t: &Transformers, keys: &[String]) -> BTreeMap<String, Vec<u8>> {
    let mut expect = BTreeMap::new();
    let mut kvs = Vec::new();
    for k in keys {
        let pt = plaintext(k, 0);
        kvs.push((k.clone(), encrypt(t, k, &pt).await));
        expect.insert(k.clone(), pt);
    }
    etcd.put_many(kvs).await;
    expect
}

/// Every key holds its expected plaintext, readable as *current* under `t`, never double-encrypted.
async fn assert_all_current(etcd: &Etcd, t: &Transformers, expect: &BTreeMap<String, Vec<u8>>) {
    let mut wrong = Vec::new();
    for (k, pt) in expect {
        let Some(v) = etcd.get(k.as_bytes()).await else {
            wrong.push(format!("{k}: missing"));
            continue;
        };
        let gr = gr_of(k);
        match t.chain_for(Some(&gr)).read(k.as_bytes(), &v).await {
            Ok(out) => {
                if out.plaintext.expose().starts_with(ENC_PREFIX) {
                    wrong.push(format!("{k}: double-encrypted"));
                } else if out.plaintext.expose() != pt.as_slice() {
                    wrong.push(format!(
                        "{k}: plaintext sha256 {} len {}, expected {} len {}",
                        h(out.plaintext.expose()),
                        out.plaintext.len(),
                        h(pt),
                        pt.len()
                    ));
                } else if out.stale || out.index != 0 {
                    wrong.push(format!("{k}: still stale (entry {})", out.index));
                }
            }
            Err(e) => wrong.push(format!("{k}: {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} values wrong, first: {:?}",
        wrong.len(),
        expect.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Every key/value/mod_revision/lease under `prefix`.
async fn keyspace(etcd: &Etcd, prefix: &str) -> Vec<(Vec<u8>, String, i64, i64)> {
    let mut c = etcd.client().await;
    let resp = c
        .get(
            prefix.as_bytes(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("range");
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                h(kv.value()),
                kv.mod_revision(),
                kv.lease(),
            )
        })
        .collect()
}

fn rotate_cmd(etcd: &Etcd, config: &Path, prefix: &str) -> assert_cmd::Command {
    let mut cmd = atrest_cmd();
    cmd.arg("rotate")
        .args(etcd.atrest_conn_args())
        .arg("--encryption-provider-config")
        .arg(config)
        .args(["--prefix", prefix, "--no-progress"])
        .timeout(Duration::from_secs(120));
    cmd
}

fn json_out(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn journal_hygiene(journal: &Path, provs: &[&Prov]) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(journal)
        .expect("journal exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "journal mode {mode:o}");
    let text = std::fs::read(journal).expect("read journal");
    let hay = String::from_utf8_lossy(&text);
    assert!(!hay.contains("PLAINTEXT-MARKER"), "journal holds plaintext");
    for p in provs {
        if p.kind != "identity" {
            assert!(
                !hay.contains(&p.secret_b64),
                "journal holds key material of {}",
                p.label()
            );
        }
    }
}

/// How many batch records the journal holds (0 if it does not exist yet).
fn batch_records(journal: &Path) -> usize {
    std::fs::read(journal)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| l.starts_with(r#"{"type":"batch""#))
                .count()
        })
        .unwrap_or(0)
}

/// Poll until the journal holds at least `n` batch records (generous timeout; fails loudly if
/// the rotation exits first).
async fn wait_for_batches(journal: &Path, n: usize, child: &mut std::process::Child) {
    let t0 = Instant::now();
    while batch_records(journal) < n {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "rotate exited before journaling {n} batch(es)"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "rotate journaled no batch within 90s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rotate `from` → each of `tos` (each under its own prefix in one etcd), check everything.
async fn rotate_pairs(from: Prov, tos: Vec<Prov>) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let before = write_config(dir.path(), "before.yaml", &[&from]);
    let tb = transformers(&before);
    for (i, to) in tos.iter().enumerate() {
        let prefix = format!("/reg{i}");
        let after = write_config(dir.path(), &format!("after{i}.yaml"), &[to, &from]);
        let ta = transformers(&after);
        let ks = keys(&prefix, 600);
        let mut expect = load(&etcd, &tb, &ks).await;
        // Objects already written under the target: must stay untouched.
        let current: Vec<String> = (0..30)
            .map(|j| format!("{prefix}/secrets/current/c{j}"))
            .collect();
        for k in &current {
            let pt = plaintext(k, 0);
            etcd.put(k.as_bytes(), encrypt(&ta, k, &pt).await).await;
            expect.insert(k.clone(), pt);
        }
        // Objects with leases (Events-like): the lease must survive the rewrite.
        let lease = etcd
            .client()
            .await
            .lease_grant(600, None)
            .await
            .expect("lease")
            .id();
        let leased: Vec<String> = (0..10)
            .map(|j| format!("{prefix}/secrets/leased/l{j}"))
            .collect();
        for k in &leased {
            let pt = plaintext(k, 0);
            let v = encrypt(&tb, k, &pt).await;
            etcd.client()
                .await
                .put(
                    k.as_bytes(),
                    v,
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )
                .await
                .expect("put with lease");
            expect.insert(k.clone(), pt);
        }
        let mut before_revs = BTreeMap::new();
        for k in &current {
            before_revs.insert(
                k.clone(),
                etcd.get_kv(k.as_bytes())
                    .await
                    .expect("current")
                    .mod_revision(),
            );
        }
        let journal = dir.path().join(format!("j{i}.jsonl"));
        let out = rotate_cmd(&etcd, &after, &prefix)
            .arg("--journal")
            .arg(&journal)
            .args(["-o", "json", "--batch", "64"])
            .output()
            .expect("run rotate");
        let doc = json_out(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} -> {}: stderr {}",
            from.label(),
            to.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(doc["schema"], "atrest.rotate/v1");
        let rewritten = doc["this_run"]["rewritten"].as_u64().expect("rewritten");
        let same_target = from.kind == "identity" && to.kind == "identity";
        if !same_target {
            assert_eq!(rewritten, (ks.len() + leased.len()) as u64, "{doc}");
        }
        assert!(doc["this_run"]["already_current"].as_u64().unwrap_or(0) >= current.len() as u64);
        assert_all_current(&etcd, &ta, &expect).await;
        for k in &current {
            let rev = etcd
                .get_kv(k.as_bytes())
                .await
                .expect("current")
                .mod_revision();
            assert_eq!(
                Some(&rev),
                before_revs.get(k),
                "{k}: current object was rewritten"
            );
        }
        for k in &leased {
            let kv = etcd.get_kv(k.as_bytes()).await.expect("leased");
            assert_eq!(kv.lease(), lease, "{k}: lease lost");
        }
        journal_hygiene(&journal, &[&from, to]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_from_identity() {
    let from = Prov::new("identity", "");
    rotate_pairs(
        from,
        vec![
            Prov::new("aescbc", "k2"),
            Prov::new("aesgcm", "k2"),
            Prov::new("secretbox", "k2"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_from_aescbc() {
    rotate_pairs(
        Prov::new("aescbc", "k1"),
        vec![
            Prov::new("identity", ""),
            Prov::new("aescbc", "k2"),
            Prov::new("aesgcm", "k2"),
            Prov::new("secretbox", "k2"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_from_aesgcm() {
    rotate_pairs(
        Prov::new("aesgcm", "k1"),
        vec![
            Prov::new("identity", ""),
            Prov::new("aescbc", "k2"),
            Prov::new("aesgcm", "k2"),
            Prov::new("secretbox", "k2"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_from_secretbox() {
    rotate_pairs(
        Prov::new("secretbox", "k1"),
        vec![
            Prov::new("identity", ""),
            Prov::new("aescbc", "k2"),
            Prov::new("aesgcm", "k2"),
            Prov::new("secretbox", "k2"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let ks = keys("/registry", 900);
    load(&etcd, &transformers(&before), &ks).await;
    let rev0 = etcd.revision().await;
    let space0 = keyspace(&etcd, "").await;
    let journal = dir.path().join("never.jsonl");
    let out = rotate_cmd(&etcd, &after, "/registry")
        .args(["--dry-run", "-o", "json"])
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(doc["dry_run"], true);
    let plan = doc["plan"].as_array().expect("plan");
    let total: u64 = plan
        .iter()
        .map(|r| r["objects"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, ks.len() as u64);
    assert!(
        plan.iter().any(|r| r["resource"] == "secrets"
            && r["from"] == "aescbc/k1"
            && r["to"] == "aesgcm/k2"),
        "{doc}"
    );
    assert!(!journal.exists(), "dry run created the journal");
    assert_eq!(etcd.revision().await, rev0, "dry run wrote to etcd");
    assert_eq!(keyspace(&etcd, "").await, space0);
    // Table output works too and says what would happen.
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--dry-run")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would rewrite") && text.contains("aesgcm/k2"),
        "{text}"
    );
    assert_eq!(etcd.revision().await, rev0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_objects_are_left_alone_and_reported() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, gone, k2) = (
        Prov::new("aescbc", "k1"),
        Prov::new("aescbc", "gone"),
        Prov::new("secretbox", "k2"),
    );
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let old = write_config(dir.path(), "old.yaml", &[&gone]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let ks = keys("/registry", 300);
    let mut expect = load(&etcd, &transformers(&before), &ks).await;
    let lost: Vec<String> = (0..5)
        .map(|i| format!("/registry/secrets/x/lost{i}"))
        .collect();
    let t_old = transformers(&old);
    for k in &lost {
        etcd.put(k.as_bytes(), encrypt(&t_old, k, &plaintext(k, 0)).await)
            .await;
    }
    // Plaintext where the config has no identity: kube-apiserver cannot read it; rotate
    // encrypts it (the value itself is the plaintext).
    for i in 0..3 {
        let k = format!("/registry/secrets/plain/p{i}");
        let pt = plaintext(&k, 0);
        etcd.put(k.as_bytes(), pt.clone()).await;
        expect.insert(k, pt);
    }
    let lost_revs: Vec<i64> = {
        let mut v = Vec::new();
        for k in &lost {
            v.push(
                etcd.get_kv(k.as_bytes())
                    .await
                    .expect("lost")
                    .mod_revision(),
            );
        }
        v
    };
    let journal = dir.path().join("j.jsonl");
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(&journal)
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    let skipped = doc["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), lost.len(), "{doc}");
    for s in skipped {
        assert_eq!(s["status"], "unknown-key");
        assert!(lost.iter().any(|k| s["key"] == k.as_str()));
    }
    assert_eq!(doc["this_run"]["skipped_unknown_key"], lost.len() as u64);
    for (k, rev) in lost.iter().zip(&lost_revs) {
        assert_eq!(
            etcd.get_kv(k.as_bytes())
                .await
                .expect("lost")
                .mod_revision(),
            *rev
        );
    }
    // The rest was rotated.
    for k in &lost {
        expect.remove(k);
    }
    assert_all_current(&etcd, &transformers(&after), &expect).await;
    // Table output lists the key too.
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j2.jsonl"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/registry/secrets/x/lost0") && text.contains("unknown-key"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_journal_is_refused_and_finished_journal_only_rechecks() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2, k3) = (
        Prov::new("aescbc", "k1"),
        Prov::new("aesgcm", "k2"),
        Prov::new("secretbox", "k3"),
    );
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let other = write_config(dir.path(), "other.yaml", &[&k3, &k2, &k1]);
    let ks = keys("/registry", 200);
    let expect = load(&etcd, &transformers(&before), &ks).await;
    let journal = dir.path().join("j.jsonl");
    rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(&journal)
        .assert()
        .code(0);
    assert_all_current(&etcd, &transformers(&after), &expect).await;

    // Same journal, different write key: refused, nothing written.
    let rev = etcd.revision().await;
    let out = rotate_cmd(&etcd, &other, "/registry")
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different rotation") && err.contains("new --journal"),
        "{err}"
    );
    assert!(err.contains("write target"), "{err}");
    assert_eq!(etcd.revision().await, rev);

    // Same journal, different prefix: refused.
    let out = rotate_cmd(&etcd, &after, "/other")
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefix"));

    // Same journal, same run: already complete, only re-checks.
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(&journal)
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(doc["already_complete"], true);
    assert_eq!(doc["this_run"]["examined"], 0);
    assert!(
        doc["verification"]["summary"]["objects"]
            .as_u64()
            .unwrap_or(0)
            >= ks.len() as u64
    );
    assert_eq!(etcd.revision().await, rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_into_kms_v1_is_refused() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let k1 = Prov::new("aescbc", "k1");
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let ks = keys("/registry", 20);
    load(&etcd, &transformers(&before), &ks).await;
    let sock = dir.path().join("none.sock");
    let cfg = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: {RESOURCES}\n    providers:\n      - kms:\n          name: legacy\n          endpoint: unix://{}\n          cachesize: 10\n{}",
        sock.display(),
        k1.yaml()
    );
    let after = dir.path().join("kmsv1.yaml");
    std::fs::write(&after, cfg).expect("write");
    let rev = etcd.revision().await;
    let journal = dir.path().join("j.jsonl");
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KMS v1"), "{err}");
    assert_eq!(etcd.revision().await, rev, "something was written");
    // Refused up front, before the journal is created.
    assert!(!journal.exists(), "a journal was created for a refused run");
}

/// A writer keeps updating keys during the rotation (half with the old key, as a lagging
/// kube-apiserver would, half with the new one): no write may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_never_loses_writes() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aesgcm", "k1"), Prov::new("secretbox", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let tb = transformers(&before);
    let ta = transformers(&after);
    let ks = keys("/registry", 2400);
    let mut expect = load(&etcd, &tb, &ks).await;

    let journal = dir.path().join("j.jsonl");
    let mut cmd = crate::common::atrest_std_cmd();
    cmd.arg("rotate")
        .args(etcd.atrest_conn_args())
        .arg("--encryption-provider-config")
        .arg(&after)
        .arg("--journal")
        .arg(&journal)
        .args([
            "--no-progress",
            "--batch",
            "16",
            "--max-rate",
            "600",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn atrest");
    // Drain stdout/stderr while it runs: a JSON document larger than the pipe buffer would
    // otherwise block the child on its final write and the writer loop would run to its bound.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_thread = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err_thread = drain(child.stderr.take().map(|r| Box::new(r) as _));

    let mut client = etcd.new_client().await;
    let mut generation = 1u32;
    let started = Instant::now();
    let mut updates = 0u32;
    // Force conflicts deterministically: once the first batch is journaled (the reader has
    // pinned its revision), update the keys the rotation reaches last. Its reads predate
    // these writes, so its compares on them must fail.
    wait_for_batches(&journal, 1, &mut child).await;
    let mut sorted = ks.clone();
    sorted.sort();
    for k in sorted.iter().rev().take(8) {
        let pt = plaintext(k, 1_000_000);
        client
            .put(k.as_bytes(), encrypt(&tb, k, &pt).await, None)
            .await
            .expect("writer put");
        expect.insert(k.clone(), pt);
        updates += 1;
    }
    // Keep writing for as long as the rotation runs (bounded).
    loop {
        let done = child.try_wait().expect("try_wait").is_some();
        if done || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let idx = (generation as usize * 7919) % ks.len();
        let k = &ks[idx];
        let pt = plaintext(k, generation);
        let t = if generation.is_multiple_of(2) {
            &tb
        } else {
            &ta
        };
        client
            .put(k.as_bytes(), encrypt(t, k, &pt).await, None)
            .await
            .expect("writer put");
        expect.insert(k.clone(), pt);
        generation += 1;
        updates += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = child.wait().expect("wait");
    let out = std::process::Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    };
    assert!(
        updates > 20,
        "writer made only {updates} updates during the rotation"
    );
    // Exit 0 or 1: the writer may have left stale values behind the rotation's cursor.
    let code = out.status.code();
    let doc = json_out(&out);
    eprintln!(
        "concurrent writer: {updates} updates; rotate saw {} conflicts ({} already current, {} vanished)",
        doc["this_run"]["conflicts_retried"],
        doc["this_run"]["resolved_concurrently"],
        doc["this_run"]["vanished"]
    );
    assert!(
        doc["this_run"]["conflicts_retried"].as_u64().unwrap_or(0) > 0,
        "the writer's updates of the last keys must have made compares fail: {}",
        doc["this_run"]
    );
    assert!(
        code == Some(0) || code == Some(1),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second pass (new journal) finishes the stragglers; then everything is current and
    // holds the writer's last plaintext.
    rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j2.jsonl"))
        .assert()
        .code(0);
    assert_all_current(&etcd, &ta, &expect).await;
}

/// SIGKILL at random points, then resume with the same journal: completes, nothing lost,
/// nothing double-encrypted; SIGINT stops cleanly and says how to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_then_resume() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let ks = keys("/registry", 3000);
    let expect = load(&etcd, &transformers(&before), &ks).await;
    let journal = dir.path().join("j.jsonl");
    let spawn = || {
        crate::common::atrest_std_cmd()
            .arg("rotate")
            .args(etcd.atrest_conn_args())
            .arg("--encryption-provider-config")
            .arg(&after)
            .arg("--journal")
            .arg(&journal)
            .args(["--no-progress", "--batch", "32", "--max-rate", "1000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn atrest")
    };
    for round in 0..4 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).expect("random");
        let delay = Duration::from_millis(u64::from(u16::from_le_bytes(r)) % 300);
        let size_before = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        let batches_before = batch_records(&journal);
        let mut child = spawn();
        if round == 3 {
            // SIGINT once the run has opened its journal (its handler is installed by then):
            // stops after the batches in flight, exit 2, says how to resume.
            let t0 = Instant::now();
            while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) == size_before {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "rotate never opened its journal"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .expect("sigint");
            let out = child.wait_with_output().expect("wait");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("resume"), "{err}");
        } else {
            // Kill only once this run has committed and journaled a batch (on a loaded machine
            // a fixed delay often hits before the first commit), then a random bit later.
            wait_for_batches(&journal, batches_before + 1, &mut child).await;
            tokio::time::sleep(delay).await;
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "round {round}: the rotation finished before it could be killed"
            );
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }
    let out = rotate_cmd(&etcd, &after, "/registry")
        .arg("--journal")
        .arg(&journal)
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    // 3000 objects at 1000/s cannot finish within the interrupted runs.
    assert_eq!(doc["already_complete"], false, "{doc}");
    assert_eq!(doc["resumed"], true, "{doc}");
    assert!(doc["resumed_after"].is_string(), "{doc}");
    // Journaled batches are contiguous key ranges, each examined exactly once over all runs
    // (a batch committed but not journaled when killed is examined again, and found current).
    let n = ks.len() as u64;
    let all = &doc["all_runs"];
    assert_eq!(all["examined"].as_u64(), Some(n), "{doc}");
    assert_eq!(
        all["rewritten"].as_u64().unwrap_or(0) + all["already_current"].as_u64().unwrap_or(0),
        n,
        "{doc}"
    );
    assert!(
        doc["this_run"]["examined"].as_u64().unwrap_or(0) < n,
        "{doc}"
    );
    assert!(all["rewritten"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert_eq!(doc["skipped"].as_array().map(Vec::len), Some(0), "{doc}");
    eprintln!(
        "resumed after {}: earlier runs rewrote {}, this run {}",
        doc["resumed_after"],
        doc["all_runs"]["rewritten"].as_u64().unwrap_or(0)
            - doc["this_run"]["rewritten"].as_u64().unwrap_or(0),
        doc["this_run"]["rewritten"]
    );
    assert_all_current(&etcd, &transformers(&after), &expect).await;
    assert_eq!(
        keyspace(&etcd, "/registry/").await.len(),
        ks.len(),
        "keys lost or added"
    );
    journal_hygiene(&journal, &[&k1, &k2]);
}

/// The compare-and-swap path, deterministically: a key changed between read and commit is
/// re-read and re-classified; a newer current value is kept; a deleted key is not recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_conflicts_are_reclassified_never_overwritten() {
    use atrest::rotate::writer::{self, CommitLimits, Prep};
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k2"));
    let tb = transformers(&write_config(dir.path(), "before.yaml", &[&k1]));
    let ta = transformers(&write_config(dir.path(), "after.yaml", &[&k2, &k1]));
    let gr = GroupResource::new("", "secrets");
    let names = ["stale-again", "now-current", "deleted", "untouched"];
    let mut prepared = Vec::new();
    for n in names {
        let k = format!("/registry/secrets/ns/{n}");
        etcd.put(k.as_bytes(), encrypt(&tb, &k, &plaintext(&k, 0)).await)
            .await;
        let kv = etcd.get_kv(k.as_bytes()).await.expect("kv");
        let raw = atrest::source::RawKv {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        };
        match writer::prepare(&ta, Some(&gr), &raw, false)
            .await
            .expect("prepare")
        {
            Prep::Rewrite(p) => prepared.push(p),
            other => panic!("{n}: expected a rewrite, got {other:?}"),
        }
    }
    // Meanwhile, "kube-apiserver" writes: a new stale value, a new current value, a delete.
    let k_stale = "/registry/secrets/ns/stale-again";
    let k_cur = "/registry/secrets/ns/now-current";
    etcd.put(k_stale, encrypt(&tb, k_stale, &plaintext(k_stale, 1)).await)
        .await;
    etcd.put(k_cur, encrypt(&ta, k_cur, &plaintext(k_cur, 2)).await)
        .await;
    let cur_rev = etcd.get_kv(k_cur).await.expect("kv").mod_revision();
    etcd.client()
        .await
        .delete("/registry/secrets/ns/deleted", None)
        .await
        .expect("delete");

    let mut kv = etcd.client().await.kv_client();
    let out = writer::commit(
        &mut kv,
        &ta,
        prepared,
        CommitLimits {
            max_ops: 128,
            max_bytes: 1 << 20,
            max_conflict_rounds: 5,
            transport_attempts: 2,
            command_timeout: Duration::from_secs(30),
        },
    )
    .await
    .expect("commit");
    assert_eq!(out.counts.conflicts_retried, 2, "{:?}", out.counts);
    assert_eq!(out.counts.resolved_concurrently, 1);
    assert_eq!(out.counts.vanished, 1);
    assert_eq!(
        out.counts.rewritten, 2,
        "stale-again (re-prepared) and untouched"
    );
    assert!(
        etcd.get("/registry/secrets/ns/deleted").await.is_none(),
        "deleted key recreated"
    );
    assert_eq!(
        etcd.get_kv(k_cur).await.expect("kv").mod_revision(),
        cur_rev
    );
    let mut expect = BTreeMap::new();
    expect.insert(k_stale.to_string(), plaintext(k_stale, 1));
    expect.insert(k_cur.to_string(), plaintext(k_cur, 2));
    let k_u = "/registry/secrets/ns/untouched".to_string();
    expect.insert(k_u.clone(), plaintext(&k_u, 0));
    assert_all_current(&etcd, &ta, &expect).await;
}

/// Into, within and out of KMS v2 with a real plugin process: one plugin Encrypt (one seed)
/// per run, every value current under the plugin's current key id afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_into_within_and_out_of_kms_v2() {
    use crate::common::kms::KmsPlugin;
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = KmsPlugin::builder().key_id("key-a").api("v2").start();
    let (k1, k3) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k3"));
    let head = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: {RESOURCES}\n    providers:\n"
    );
    let kms = plugin.provider_yaml("plug", "v2", 6);
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let into = dir.path().join("into.yaml");
    std::fs::write(&into, format!("{head}{kms}{}", k1.yaml())).expect("write");
    let out_of = dir.path().join("out.yaml");
    std::fs::write(&out_of, format!("{head}{}{kms}", k3.yaml())).expect("write");
    let ks = keys("/registry", 450);
    let expect = load(&etcd, &transformers(&before), &ks).await;

    let check = |cfg: PathBuf| {
        let expect = &expect;
        let etcd = &etcd;
        async move {
            let t = transformers(&cfg);
            t.prepare_kms().await.expect("plugin status");
            assert_all_current(etcd, &t, expect).await;
        }
    };

    // aescbc -> KMS v2 (key-a): one seed for the whole run.
    let enc0 = plugin.stats().v2_encrypt;
    rotate_cmd(&etcd, &into, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j1.jsonl"))
        .assert()
        .code(0);
    assert_eq!(
        plugin.stats().v2_encrypt - enc0,
        1,
        "one plugin Encrypt per run"
    );
    check(into.clone()).await;

    // The plugin's key changes: the same config now has a different target (key id), so the
    // old journal is refused and a new one rotates everything to key-b.
    plugin.set_key_id("key-b");
    let out = rotate_cmd(&etcd, &into, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j1.jsonl"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rotate_cmd(&etcd, &into, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j2.jsonl"))
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_out(&out)["this_run"]["rewritten"], ks.len() as u64);
    check(into.clone()).await;

    // KMS v2 -> aesgcm.
    rotate_cmd(&etcd, &out_of, "/registry")
        .arg("--journal")
        .arg(dir.path().join("j3.jsonl"))
        .assert()
        .code(0);
    check(out_of.clone()).await;
    journal_hygiene(&dir.path().join("j3.jsonl"), &[&k1, &k3]);
}

/// `--resource` limits the scope (and the journal's identity); `--apiserver-manifest` supplies
/// endpoints, certificates, prefix and config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_filter_and_apiserver_manifest() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("secretbox", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let ks = keys("/custom", 300);
    let expect = load(&etcd, &transformers(&before), &ks).await;
    let space0 = keyspace(&etcd, "/custom/").await;

    let c = etcd.certs.as_ref().expect("mTLS etcd");
    let manifest = dir.path().join("kube-apiserver.flags");
    std::fs::write(
        &manifest,
        format!(
            "--etcd-servers={}\n--etcd-cafile={}\n--etcd-certfile={}\n--etcd-keyfile={}\n--etcd-prefix=/custom\n--encryption-provider-config={}\n",
            etcd.endpoint(),
            c.ca.display(),
            c.client_cert.display(),
            c.client_key.display(),
            after.display()
        ),
    )
    .expect("write manifest");
    let journal = dir.path().join("j.jsonl");
    let out = atrest_cmd()
        .arg("rotate")
        .arg("--apiserver-manifest")
        .arg(&manifest)
        .args(["--resource", "secrets", "--no-progress", "-o", "json"])
        .arg("--journal")
        .arg(&journal)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(doc["prefix"], "/custom");
    assert_eq!(doc["this_run"]["rewritten"], 100, "{doc}");
    let ta = transformers(&after);
    let (secrets, others): (BTreeMap<_, _>, BTreeMap<_, _>) = expect
        .into_iter()
        .partition(|(k, _)| k.starts_with("/custom/secrets/"));
    assert_all_current(&etcd, &ta, &secrets).await;
    // Everything outside the filter is byte-for-byte and revision-for-revision unchanged.
    let space1 = keyspace(&etcd, "/custom/").await;
    let untouched = |s: &[(Vec<u8>, String, i64, i64)]| -> Vec<(Vec<u8>, String, i64, i64)> {
        s.iter()
            .filter(|e| !e.0.starts_with(b"/custom/secrets/"))
            .cloned()
            .collect()
    };
    assert_eq!(untouched(&space1), untouched(&space0));
    assert_eq!(others.len(), 200);

    // The journal is bound to the filter: another --resource list is a different run.
    let out = rotate_cmd(&etcd, &after, "/custom")
        .args(["--resource", "secrets,configmaps"])
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resources"));
}

/// Review P1 (spec §8 trap 3): overlapping prefixes. With the same key name in two aesgcm
/// entries, or `a` (new writer) vs `a:b` (old), values written by the old key match entry 0's
/// prefix; rotate must decide by decrypting and rewrite them. With the same name in two aescbc
/// entries (no MAC) a wrong key may "decrypt" to garbage: such values are never rewritten and
/// are reported as ambiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_prefixes_are_decided_by_decrypting() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Same name, two aesgcm keys; and `a` vs `a:b`.
    for (case, old, new) in [
        ("/same", Prov::new("aesgcm", "k"), Prov::new("aesgcm", "k")),
        (
            "/nested",
            Prov::new("aesgcm", "a:b"),
            Prov::new("aesgcm", "a"),
        ),
    ] {
        let before = write_config(dir.path(), &format!("before{}.yaml", &case[1..]), &[&old]);
        let after = write_config(
            dir.path(),
            &format!("after{}.yaml", &case[1..]),
            &[&new, &old],
        );
        let ks = keys(case, 60);
        let expect = load(&etcd, &transformers(&before), &ks).await;
        let out = rotate_cmd(&etcd, &after, case)
            .arg("--journal")
            .arg(dir.path().join(format!("j{}.jsonl", &case[1..])))
            .args(["-o", "json"])
            .output()
            .expect("run");
        let doc = json_out(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            doc["this_run"]["rewritten"],
            ks.len() as u64,
            "{case}: {doc}"
        );
        assert_eq!(doc["this_run"]["already_current"], 0, "{case}");
        assert_all_current(&etcd, &transformers(&after), &expect).await;
    }

    // aescbc, same name twice: refuse to rewrite what a wrong key might have "decrypted".
    let (old, new) = (Prov::new("aescbc", "k"), Prov::new("aescbc", "k"));
    let before = write_config(dir.path(), "before-cbc.yaml", &[&old]);
    let after = write_config(dir.path(), "after-cbc.yaml", &[&new, &old]);
    let ks = keys("/cbc", 60);
    load(&etcd, &transformers(&before), &ks).await;
    let before_space = keyspace(&etcd, "/cbc/").await;
    let out = rotate_cmd(&etcd, &after, "/cbc")
        .arg("--journal")
        .arg(dir.path().join("j-cbc.jsonl"))
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(doc["this_run"]["rewritten"], 0, "{doc}");
    let ambiguous = doc["this_run"]["skipped_ambiguous"].as_u64().unwrap_or(0);
    let current = doc["this_run"]["already_current"].as_u64().unwrap_or(0);
    // Entry 0 (the wrong key) passes the padding check for about 1 value in 256: those read as
    // current (as kube-apiserver would serve them); every other one is skipped as ambiguous.
    assert_eq!(ambiguous + current, ks.len() as u64, "{doc}");
    assert!(ambiguous > 0, "{doc}");
    let skipped = doc["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len() as u64, ambiguous);
    for s in skipped {
        assert_eq!(s["status"], "ambiguous", "{s}");
        let d = s["detail"].as_str().unwrap_or_default();
        assert!(
            d.contains("overlaps another key") && d.contains("rename the keys"),
            "{d}"
        );
    }
    assert_eq!(
        keyspace(&etcd, "/cbc/").await,
        before_space,
        "values were written"
    );
}

/// Review: `--prefix /` used to range over `//` (nothing); a custom nested prefix rotates only
/// its own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_custom_prefixes() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    let tb = transformers(&before);
    let root_keys = keys("", 45);
    let custom_keys = keys("/custom/deep", 30);
    let root_expect = load(&etcd, &tb, &root_keys).await;
    let custom_expect = load(&etcd, &tb, &custom_keys).await;

    // A custom prefix (given with a trailing slash): only its keys are rewritten.
    let root_before: Vec<_> = {
        let mut v = Vec::new();
        for k in &root_keys {
            v.push(etcd.get_kv(k.as_bytes()).await.expect("key").mod_revision());
        }
        v
    };
    let out = rotate_cmd(&etcd, &after, "/custom/deep/")
        .arg("--journal")
        .arg(dir.path().join("j1.jsonl"))
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(
        doc["this_run"]["rewritten"],
        custom_keys.len() as u64,
        "{doc}"
    );
    assert_eq!(
        doc["verification"]["summary"]["objects"].as_u64(),
        Some(custom_keys.len() as u64),
        "{doc}"
    );
    assert_all_current(&etcd, &transformers(&after), &custom_expect).await;
    for (k, rev) in root_keys.iter().zip(&root_before) {
        assert_eq!(
            etcd.get_kv(k.as_bytes()).await.expect("key").mod_revision(),
            *rev,
            "{k} touched by a /custom/deep rotation"
        );
    }

    // `--prefix /`: kube-apiserver keys directly under the root. (The custom keys would parse
    // as resource "custom" there, which has no rule: remove them first.)
    let mut c = etcd.client().await;
    c.delete(
        "/custom/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .expect("delete");
    let out = rotate_cmd(&etcd, &after, "/")
        .arg("--journal")
        .arg(dir.path().join("j2.jsonl"))
        .args(["-o", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_out(&out);
    assert_eq!(
        doc["this_run"]["rewritten"],
        root_keys.len() as u64,
        "{doc}"
    );
    assert_eq!(
        doc["verification"]["summary"]["objects"].as_u64(),
        Some(root_keys.len() as u64),
        "{doc}"
    );
    assert_all_current(&etcd, &transformers(&after), &root_expect).await;
}

/// Review P1: a file that is not a journal (one complete line) is refused, left byte-for-byte
/// and mode-for-mode untouched, and nothing is written to etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_journal_is_refused_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (Prov::new("aescbc", "k1"), Prov::new("aesgcm", "k2"));
    let before = write_config(dir.path(), "before.yaml", &[&k1]);
    let after = write_config(dir.path(), "after.yaml", &[&k2, &k1]);
    load(&etcd, &transformers(&before), &keys("/registry", 30)).await;
    let rev = etcd.revision().await;
    for content in ["precious notes\n", "{\"json\": true}\n"] {
        let f = dir.path().join("notes.txt");
        std::fs::write(&f, content).expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = rotate_cmd(&etcd, &after, "/registry")
            .arg("--journal")
            .arg(&f)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("is not an atrest rotate journal") && err.contains("new path"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&f).expect("read"), content);
        let mode = std::fs::metadata(&f).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(etcd.revision().await, rev, "something was written");
    }
}
