//! Integration tests: snapshot files (reader, status, source, CLI, corruption).
use atrest::snapshot::{self, SnapshotError, SnapshotSource};
use atrest::source::KvSource;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/snapshots")
        .join(name)
}

fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is json")
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Drain the latest state of a source.
fn drain_latest(src: &mut SnapshotSource) -> Vec<atrest::source::RawKv> {
    block_on(async {
        let mut all = Vec::new();
        while let Some(b) = src.next_batch().await.expect("batch") {
            assert!(!b.is_empty());
            all.extend(b);
        }
        all
    })
}

fn drain_history(src: &mut SnapshotSource) -> Vec<atrest::source::RawKv> {
    block_on(async {
        let mut all = Vec::new();
        while let Some(b) = src.next_history_batch().await.expect("batch") {
            all.extend(b);
        }
        all
    })
}

#[test]
fn status_matches_etcdctl() {
    let expect = json("public-v34.status.json");
    let st = snapshot::status(&fixture("public-v34.db")).expect("status");
    let got = serde_json::to_value(&st).expect("serializes");
    for field in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(got[field], expect[field], "field {field}");
    }
    // etcdctl 3.4 prints no version; etcdutl 3.6 prints storageVersion, absent in 3.4 files.
    assert_eq!(st.version, "");
    assert!(st.ok, "problems: {:?}", st.problems);
    assert!(st.trailer.present);
    assert_eq!(st.trailer.matches, Some(true));
    assert!(st.meta_pages.iter().all(|m| m.valid));
    assert_eq!(st.schema, "3.4");
    let manifest = json("public-v34.keys.json");
    assert_eq!(
        st.current_revision,
        manifest["revision"].as_i64().expect("rev")
    );
    assert_eq!(
        st.meta.finished_compact_revision,
        manifest["compact_revision"].as_i64()
    );
    // live_keys counts every user key, manifest's keys are exactly those.
    assert_eq!(
        st.live_keys,
        manifest["live_key_count"].as_u64().expect("count")
    );
}

#[test]
fn reader_agrees_with_bolt_lite_oracle() {
    let path = fixture("public-v34.db");
    let db = bolt_lite::Bolt::open_ro(&path).expect("bolt-lite opens");
    let tx = db.begin().expect("tx");
    let bolt = snapshot::bbolt::BoltFile::open(&path, Some(5_672_960)).expect("opens");
    let mut names = Vec::new();
    for e in bolt.cursor(&bolt.root_bucket(), bolt.new_visited()) {
        names.push(e.expect("entry").key().to_vec());
    }
    assert!(names.contains(&b"key".to_vec()) && names.contains(&b"meta".to_vec()));
    for name in &names {
        let ours = bolt.bucket(name).expect("bucket").expect("present");
        let mut mine: Vec<(Vec<u8>, String)> = Vec::new();
        for e in bolt.cursor(&ours, bolt.new_visited()) {
            let e = e.expect("entry");
            mine.push((e.key().to_vec(), sha_hex(e.value())));
        }
        let theirs: Vec<(Vec<u8>, String)> = tx
            .bucket(name)
            .expect("oracle bucket")
            .cursor()
            .expect("oracle cursor")
            .map(|e| (e.key, sha_hex(&e.value)))
            .collect();
        assert_eq!(mine.len(), theirs.len(), "bucket {name:?} entry count");
        assert!(mine == theirs, "bucket {name:?} differs from bolt-lite");
    }
}

#[test]
fn live_state_matches_manifest() {
    let manifest = json("public-v34.keys.json");
    let mut src = SnapshotSource::open(&fixture("public-v34.db"), b"", 7).expect("opens");
    assert_eq!(src.revision(), manifest["revision"].as_i64().expect("rev"));
    let est = block_on(src.estimate()).expect("estimate");
    assert_eq!(est, manifest["live_key_count"].as_u64());
    assert!(matches!(
        src.kind(),
        atrest::source::SourceKind::Snapshot { .. }
    ));
    let got = drain_latest(&mut src);
    let want = manifest["keys"].as_array().expect("keys");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let key = String::from_utf8_lossy(&g.key).into_owned();
        assert_eq!(key, w["key"].as_str().expect("key"));
        assert_eq!(
            sha_hex(&g.value),
            w["value_sha256"].as_str().expect("sha"),
            "{key}"
        );
        assert_eq!(
            g.value.len() as u64,
            w["value_size"].as_u64().expect("size")
        );
        assert_eq!(
            g.create_revision,
            w["create_revision"].as_i64().expect("c"),
            "{key}"
        );
        assert_eq!(
            g.mod_revision,
            w["mod_revision"].as_i64().expect("m"),
            "{key}"
        );
        assert_eq!(g.version, w["version"].as_i64().expect("v"), "{key}");
        assert_eq!(g.lease, w["lease"].as_i64().expect("l"), "{key}");
    }
    for d in manifest["deleted_keys"].as_array().expect("deleted") {
        let k = d["key"].as_str().expect("key").as_bytes();
        assert!(got.iter().all(|g| g.key != k), "tombstoned key present");
    }
}

/// The bounded index (several key-range passes when the index exceeds its budget) yields exactly
/// what one pass does: same keys, same order, same revisions, latest state and history.
#[test]
fn bounded_index_passes_equal_one_pass() {
    use atrest::snapshot::NoReadProgress;
    let file = fixture("public-v34.db");
    let digest = |kvs: &[atrest::source::RawKv]| -> Vec<(String, i64, String)> {
        kvs.iter()
            .map(|k| {
                (
                    String::from_utf8_lossy(&k.key).into_owned(),
                    k.mod_revision,
                    sha_hex(&k.value),
                )
            })
            .collect()
    };
    let mut one = SnapshotSource::open(&file, b"/registry/", 7).expect("opens");
    let (live1, hist1) = (drain_latest(&mut one), drain_history(&mut one));
    assert!(live1.len() > 10 && !hist1.is_empty(), "fixture too small");
    // 1 byte: every pass keeps a single key; 2 KiB: a few keys per pass.
    for budget in [1usize, 2048] {
        let mut many =
            SnapshotSource::open_budget(&file, b"/registry/", 7, budget, &NoReadProgress)
                .expect("opens");
        let est = block_on(many.estimate()).expect("estimate").expect("some");
        assert!(est >= live1.len() as u64, "estimate is an upper bound");
        let (live, hist) = (drain_latest(&mut many), drain_history(&mut many));
        assert_eq!(
            digest(&live),
            digest(&live1),
            "budget {budget}: latest state"
        );
        assert_eq!(digest(&hist), digest(&hist1), "budget {budget}: history");
    }
}

#[test]
fn prefix_filters_and_history_holds_plaintext_revision() {
    let manifest = json("public-v34.keys.json");
    let mut src =
        SnapshotSource::open(&fixture("public-v34.db"), b"/registry/secrets/", 3).expect("opens");
    let live = drain_latest(&mut src);
    assert!(!live.is_empty());
    assert!(
        live.iter()
            .all(|k| k.key.starts_with(b"/registry/secrets/"))
    );
    let want_live = manifest["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| {
            k["key"]
                .as_str()
                .is_some_and(|s| s.starts_with("/registry/secrets/"))
        })
        .count();
    assert_eq!(live.len(), want_live);
    let hist = drain_history(&mut src);
    assert_eq!(hist.len() as u64, src.history_revisions());
    let h = &manifest["historical_revisions"][0];
    let key = h["key"].as_str().expect("key").as_bytes();
    let found = hist
        .iter()
        .find(|k| k.key == key && k.mod_revision == h["revision"].as_i64().expect("rev"))
        .expect("revision 11 of db-pass is in the history");
    assert_eq!(
        sha_hex(&found.value),
        h["value_sha256"].as_str().expect("sha")
    );
    // Key then revision order; never the latest live revision.
    for w in hist.windows(2) {
        assert!((&w[0].key, w[0].mod_revision) < (&w[1].key, w[1].mod_revision));
    }
    for h in &hist {
        assert!(
            !live
                .iter()
                .any(|l| l.key == h.key && l.mod_revision == h.mod_revision)
        );
    }
}

// ---- corruption ----

fn corrupt_copy(dir: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut data = std::fs::read(fixture("public-v34.db")).expect("fixture");
    f(&mut data);
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

/// Recompute the trailer so only the structure checks can catch a change.
fn retrail(d: &mut [u8]) {
    let n = d.len() - 32;
    let sum = Sha256::digest(&d[..n]);
    d[n..].copy_from_slice(&sum);
}

#[test]
fn meta_page_corruption_falls_back_but_fails_integrity() {
    let dir = tempfile::tempdir().expect("tmp");
    for page in [0usize, 1] {
        let p = corrupt_copy(dir.path(), &format!("meta{page}.db"), |d| {
            d[page * 4096 + 40] ^= 0xff;
            retrail(d);
        });
        let st = snapshot::status(&p).expect("one good meta is enough to read");
        assert!(!st.ok);
        assert!(
            st.problems
                .iter()
                .any(|m| m.contains(&format!("meta page {page}")))
        );
        let good = json("public-v34.status.json");
        assert_eq!(u64::from(st.hash), good["hash"].as_u64().expect("hash"));
    }
    let p = corrupt_copy(dir.path(), "both.db", |d| {
        d[40] ^= 1;
        d[4096 + 40] ^= 1;
    });
    let err = snapshot::status(&p).expect_err("both metas bad");
    assert!(err.to_string().contains("no valid meta page"), "{err}");
}

/// A reachable page of the given type (branch 1, leaf 2): the `key` bucket's root (a branch
/// in this file) or its first child.
fn find_page(data: &[u8], flags: u16) -> usize {
    let path = fixture("public-v34.db");
    let bolt = snapshot::bbolt::BoltFile::open(&path, Some(5_672_960)).expect("opens");
    let e = bolt
        .get(&bolt.root_bucket(), b"key")
        .expect("get")
        .expect("key bucket");
    let root = u64::from_le_bytes(e.value()[..8].try_into().expect("8")) as usize;
    let flags_of = |i: usize| u16::from_le_bytes([data[i * 4096 + 8], data[i * 4096 + 9]]);
    assert_eq!(flags_of(root), 1, "the key bucket's root is a branch page");
    if flags == 1 {
        return root;
    }
    let o = root * 4096 + 16 + 8;
    let child = u64::from_le_bytes(data[o..o + 8].try_into().expect("8")) as usize;
    assert_eq!(flags_of(child), 2, "first child is a leaf");
    child
}

#[test]
fn leaf_and_branch_corruption_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = std::fs::read(fixture("public-v34.db")).expect("fixture");
    for (flags, what) in [(2u16, "leaf"), (1u16, "branch")] {
        let page = find_page(&data, flags);
        // Break an element's pos/ksize so it points past the page.
        let p = corrupt_copy(dir.path(), &format!("{what}.db"), |d| {
            let o = page * 4096 + 16 + if flags == 2 { 8 } else { 4 };
            d[o..o + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
            retrail(d);
        });
        let err = snapshot::status(&p).expect_err("corrupt page");
        let msg = err.to_string();
        assert!(matches!(err, SnapshotError::Corrupt { .. }));
        assert!(msg.contains(&format!("page {page}")), "{what}: {msg}");
        // Same file through the source: also an error, never a panic.
        assert!(SnapshotSource::open(&p, b"", 100).is_err());
        // Header type changed.
        let p = corrupt_copy(dir.path(), &format!("{what}-type.db"), |d| {
            d[page * 4096 + 8] = 0x40;
            retrail(d);
        });
        let msg = snapshot::status(&p).expect_err("bad type").to_string();
        assert!(
            msg.contains(&format!("page {page}")) && msg.contains("invalid type"),
            "{msg}"
        );
    }
    // Without retrailing, the SHA-256 catches a flipped byte anywhere.
    let p = corrupt_copy(dir.path(), "flip.db", |d| d[3 * 4096 + 2000] ^= 0x55);
    match snapshot::status(&p) {
        Ok(st) => assert!(!st.ok && st.trailer.matches == Some(false)),
        Err(e) => assert!(matches!(e, SnapshotError::Corrupt { .. })),
    }
    assert!(SnapshotSource::open(&p, b"", 100).is_err());
}

#[test]
fn truncation_and_trailer() {
    let dir = tempfile::tempdir().expect("tmp");
    let full = std::fs::read(fixture("public-v34.db")).expect("fixture");
    for len in [
        0usize,
        10,
        100,
        4096,
        8192,
        8192 + 32,
        full.len() / 2,
        full.len() - 33,
        full.len() - 1,
    ] {
        let p = corrupt_copy(dir.path(), &format!("t{len}.db"), |d| d.truncate(len));
        match snapshot::status(&p) {
            Err(SnapshotError::Corrupt { message, .. }) => {
                assert!(!message.is_empty());
            }
            Err(e) => panic!("truncated at {len}: unexpected error kind {e}"),
            // Only the trailer was cut: the bbolt image is whole, the file is flagged.
            Ok(st) => assert!(
                !st.ok && !st.trailer.present,
                "truncated at {len}: accepted"
            ),
        }
    }
    // Trailer removed: readable, but flagged unless --skip-hash-check.
    let p = corrupt_copy(dir.path(), "notrailer.db", |d| d.truncate(d.len() - 32));
    let st = snapshot::status(&p).expect("readable");
    assert!(!st.ok && !st.trailer.present);
    assert!(st.problems.iter().any(|m| m.contains("--skip-hash-check")));
    let st = snapshot::status_with(
        &p,
        snapshot::StatusOptions {
            skip_hash_check: true,
        },
        &snapshot::NoReadProgress,
    )
    .expect("readable");
    assert!(st.ok, "{:?}", st.problems);
    assert_eq!(
        st.hash,
        json("public-v34.status.json")["hash"].as_u64().expect("h") as u32
    );
    // Wrong trailer.
    let p = corrupt_copy(dir.path(), "badtrailer.db", |d| {
        let n = d.len();
        d[n - 1] ^= 1;
    });
    let st = snapshot::status(&p).expect("readable");
    assert!(!st.ok && st.trailer.matches == Some(false));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn check(data: &[u8]) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.db");
        std::fs::write(&p, data).expect("write");
        match snapshot::status(&p) {
            Ok(_) | Err(SnapshotError::Corrupt { .. }) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
        if let Ok(mut s) = SnapshotSource::open(&p, b"", 50) {
            block_on(async {
                while let Ok(Some(_)) = s.next_batch().await {}
                while let Ok(Some(_)) = s.next_history_batch().await {}
            });
        }
    }

    /// Metas, the root page, the `key` bucket's root branch and its children.
    fn hot_pages(d: &[u8]) -> Vec<usize> {
        let u64_at = |o: usize| u64::from_le_bytes(d[o..o + 8].try_into().expect("8")) as usize;
        let branch = find_page(d, 1);
        let count = u16::from_le_bytes([d[branch * 4096 + 10], d[branch * 4096 + 11]]) as usize;
        let mut pages = vec![0, 1, u64_at(32), branch];
        pages.extend((0..count).map(|i| u64_at(branch * 4096 + 16 + 16 * i + 8)));
        pages
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
        #[test]
        fn random_corruption_never_panics(
            edits in proptest::collection::vec((0usize..5_672_992, any::<u8>()), 1..20),
            retrail_it in any::<bool>(),
        ) {
            let mut d = std::fs::read(fixture("public-v34.db")).expect("fixture");
            // Aim most edits at the pages where structure lives (metas, the root page, the key
            // bucket's branch and its leaves), mostly at their headers and element arrays.
            let hot = hot_pages(&d);
            for (i, (off, b)) in edits.iter().enumerate() {
                let off = match i % 3 {
                    0 => *off,
                    1 => hot[off % hot.len()] * 4096 + off % 512,
                    _ => hot[off % hot.len()] * 4096 + off % 4096,
                };
                d[off] = *b;
            }
            if retrail_it { retrail(&mut d); }
            check(&d);
        }

        #[test]
        fn random_truncation_never_panics(len in 0usize..5_672_992) {
            let mut d = std::fs::read(fixture("public-v34.db")).expect("fixture");
            d.truncate(len);
            check(&d);
        }
    }
}

// ---- through the binary ----

/// Run `atrest args...`: (exit code, stdout, stderr). A panic would be exit 101.
fn atrest(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = crate::common::atrest_std_cmd()
        .args(args)
        .output()
        .expect("atrest runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_cli(p: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["snapshot".as_ref(), "status".as_ref(), p.as_os_str()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    atrest(&args)
}

#[test]
fn cli_status_json_matches_etcdctl() {
    let (code, out, err) = status_cli(&fixture("public-v34.db"), &["-o", "json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let got: serde_json::Value = serde_json::from_str(&out).expect("json on stdout");
    let want = json("public-v34.status.json");
    for (k, v) in want.as_object().expect("object") {
        assert_eq!(&got[k], v, "field {k}");
    }
    assert_eq!(got["version"], "");
    assert_eq!(got["trailer"]["matches"], true);
    let (code, out, _) = status_cli(&fixture("public-v34.db"), &[]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{:x}", want["hash"].as_u64().expect("hash"))));
    assert!(out.contains("integrity:        ok"));
}

#[test]
fn cli_status_exit_2_on_every_corruption() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = std::fs::read(fixture("public-v34.db")).expect("fixture");
    let leaf = find_page(&data, 2);
    let branch = find_page(&data, 1);
    type Mutation = Box<dyn FnOnce(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "meta0",
            Box::new(|d: &mut Vec<u8>| {
                d[64] ^= 1;
                retrail(d)
            }),
            "meta page 0",
        ),
        (
            "meta1",
            Box::new(|d: &mut Vec<u8>| {
                d[4096 + 64] ^= 1;
                retrail(d)
            }),
            "meta page 1",
        ),
        (
            "leaf",
            Box::new(move |d: &mut Vec<u8>| {
                d[leaf * 4096 + 8] = 0x10;
                retrail(d)
            }),
            "invalid type",
        ),
        (
            "branch",
            Box::new(move |d: &mut Vec<u8>| {
                let o = branch * 4096 + 16 + 8;
                d[o..o + 8].copy_from_slice(&(branch as u64).to_le_bytes());
                retrail(d)
            }),
            "more than once",
        ),
        (
            "truncated",
            Box::new(|d: &mut Vec<u8>| d.truncate(100_000)),
            "truncated",
        ),
        (
            "notrailer",
            Box::new(|d: &mut Vec<u8>| d.truncate(d.len() - 32)),
            "no SHA-256 trailer",
        ),
        (
            "badtrailer",
            Box::new(|d: &mut Vec<u8>| {
                let n = d.len();
                d[n - 5] ^= 1
            }),
            "does not match",
        ),
    ];
    for (name, f, needle) in cases {
        let p = corrupt_copy(dir.path(), &format!("{name}.db"), f);
        let (code, out, err) = status_cli(&p, &["-o", "json"]);
        assert_eq!(code, 2, "{name}: stdout {out} stderr {err}");
        assert!(
            err.contains(needle),
            "{name}: stderr lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // A raw bbolt image is accepted with --skip-hash-check.
    let p = corrupt_copy(dir.path(), "raw.db", |d| d.truncate(d.len() - 32));
    let (code, _, err) = status_cli(&p, &["--skip-hash-check"]);
    assert_eq!(code, 0, "{err}");
}

// ---- snapshots made by a real etcd ----

mod real_etcd {
    use super::*;
    use crate::common::{Etcd, atrest_cmd};
    use etcd_client::{GetOptions, PutOptions, Txn, TxnOp};

    /// A value that looks like kube-apiserver's: some plaintext protobuf, some envelopes.
    fn value(i: usize, round: u8) -> Vec<u8> {
        let mut v = if i.is_multiple_of(3) {
            b"k8s:enc:aescbc:v1:key1:".to_vec()
        } else {
            b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret".to_vec()
        };
        v.extend((0..300).map(|j| (i * 7 + j + usize::from(round)) as u8));
        v
    }

    /// Writes, overwrites, deletes (also in a txn), a lease, an overflow value, a
    /// compaction, more changes after it; returns (compact revision).
    async fn populate(etcd: &Etcd) -> i64 {
        let kvs: Vec<(String, Vec<u8>)> = (0..250)
            .map(|i| {
                (
                    format!("/registry/secrets/ns{}/s{i:03}", i % 4),
                    value(i, 0),
                )
            })
            .collect();
        etcd.put_many(kvs).await;
        let mut c = etcd.client().await;
        for i in 0..10 {
            etcd.put(
                format!("/registry/secrets/ns{}/s{i:03}", i % 4),
                value(i, 1),
            )
            .await;
        }
        for i in 10..15 {
            c.delete(format!("/registry/secrets/ns{}/s{i:03}", i % 4), None)
                .await
                .expect("delete");
        }
        let lease = c.lease_grant(600, None).await.expect("lease").id();
        c.put(
            "/registry/masterleases/10.0.0.1",
            value(1, 9),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("leased put");
        etcd.put("/registry/configmaps/kube-system/big", vec![b'y'; 20_000])
            .await;
        c.txn(Txn::new().and_then([
            TxnOp::put("/registry/secrets/txn/a", value(1, 2), None),
            TxnOp::put("/registry/secrets/txn/b", value(2, 2), None),
            TxnOp::delete("/registry/secrets/ns3/s015", None),
        ]))
        .await
        .expect("txn");
        let compact = etcd.revision().await;
        etcd.compact(compact).await;
        // After the compaction: history that the file must keep.
        etcd.put("/registry/secrets/ns0/s000", value(0, 3)).await;
        etcd.put("/registry/secrets/ns0/s000", value(0, 4)).await;
        c.delete("/registry/secrets/ns0/s016", None)
            .await
            .expect("delete");
        etcd.put("/other/not-registry", b"x".to_vec()).await;
        compact
    }

    fn sha(b: &[u8]) -> String {
        sha_hex(b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_of_real_etcd_matches_live_state() {
        let etcd = Etcd::start();
        let compact = populate(&etcd).await;
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("snap.db");
        etcd.snapshot_save(&file);

        // Live state: the whole keyspace, compared record by record (value hashes only).
        let mut c = etcd.client().await;
        let live = c
            .get("\0", Some(GetOptions::new().with_from_key()))
            .await
            .expect("range");
        let want: Vec<(Vec<u8>, String, i64, i64, i64, i64)> = live
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    sha(kv.value()),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease(),
                )
            })
            .collect();
        let mut src = SnapshotSource::open(&file, b"", 64).expect("open snapshot");
        assert_eq!(src.revision(), etcd.revision().await, "current revision");
        assert_eq!(src.estimate().await.expect("est"), Some(want.len() as u64));
        let mut got = Vec::new();
        while let Some(b) = src.next_batch().await.expect("batch") {
            assert!(b.len() <= 64);
            got.extend(b.into_iter().map(|kv| {
                (
                    kv.key.clone(),
                    sha(&kv.value),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                    kv.lease,
                )
            }));
        }
        assert_eq!(got.len(), want.len(), "live key count");
        assert!(got == want, "live state differs from etcd's range");
        assert!(
            got.iter().any(|k| k.5 != 0),
            "the leased key kept its lease"
        );

        // History: each older revision is exactly what etcd serves at that revision.
        let mut hist = Vec::new();
        while let Some(b) = src.next_history_batch().await.expect("history") {
            hist.extend(b);
        }
        assert!(!hist.is_empty());
        for h in &hist {
            let at = h.mod_revision.max(compact);
            let r = c
                .get(h.key.clone(), Some(GetOptions::new().with_revision(at)))
                .await
                .expect("get at revision");
            let kv = r.kvs().first().expect("etcd has that revision");
            assert_eq!(kv.mod_revision(), h.mod_revision);
            assert_eq!(sha(kv.value()), sha(&h.value));
        }
        let revs_of = |k: &str| -> Vec<i64> {
            hist.iter()
                .filter(|h| h.key == k.as_bytes())
                .map(|h| h.mod_revision)
                .collect()
        };
        // s000: the version kept at the compaction plus the first rewrite after it.
        assert_eq!(revs_of("/registry/secrets/ns0/s000").len(), 2);
        // s016: deleted after the compaction; its put is history, the key is not live.
        assert_eq!(revs_of("/registry/secrets/ns0/s016").len(), 1);
        // s001: overwritten before the compaction: only the latest revision survives.
        assert!(revs_of("/registry/secrets/ns1/s001").is_empty());

        // status = etcdctl snapshot status -w json.
        let out = etcd.etcdctl_ok(&[
            "snapshot",
            "status",
            &file.display().to_string(),
            "-w",
            "json",
        ]);
        let theirs: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl json");
        let ours = serde_json::to_value(snapshot::status(&file).expect("status")).expect("json");
        for f in ["hash", "revision", "totalKey", "totalSize"] {
            assert_eq!(ours[f], theirs[f], "status field {f}");
        }
        assert_eq!(ours["ok"], true);
        assert!(ours["meta"]["finishedCompactRevision"] == compact);

        // The member's own backend file (no trailer, maybe longer than pgid × page size, two
        // meta pages with different roots) reads the same with --skip-hash-check. etcd is
        // idle but running, so a commit could interleave with the copy: retry a few times.
        let member_db = std::fs::read_dir(etcd.dir())
            .expect("etcd dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("member/snap/db"))
            .find(|p| p.exists())
            .expect("member/snap/db");
        let mut member_ok = false;
        for _ in 0..5 {
            let copy = dir.path().join("member.db");
            std::fs::copy(&member_db, &copy).expect("copy member db");
            let st = snapshot::status_with(
                &copy,
                snapshot::StatusOptions {
                    skip_hash_check: true,
                },
                &snapshot::NoReadProgress,
            );
            let Ok(st) = st else { continue };
            let Ok(mut m) = SnapshotSource::open(&copy, b"", 500) else {
                continue;
            };
            let mut keys = Vec::new();
            while let Ok(Some(b)) = m.next_batch().await {
                keys.extend(
                    b.into_iter()
                        .map(|kv| (kv.key.clone(), sha(&kv.value), kv.mod_revision)),
                );
            }
            let want_keys: Vec<_> = want
                .iter()
                .map(|w| (w.0.clone(), w.1.clone(), w.3))
                .collect();
            if st.ok && !st.trailer.present && keys == want_keys {
                member_ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        assert!(
            member_ok,
            "the member's backend file did not read as the live state"
        );

        // A prefix excludes the rest.
        let mut reg = SnapshotSource::open(&file, b"/registry/", 1000).expect("open");
        let mut n = 0;
        while let Some(b) = reg.next_batch().await.expect("batch") {
            assert!(b.iter().all(|k| k.key.starts_with(b"/registry/")));
            n += b.len();
        }
        assert_eq!(n, want.len() - 1);
    }

    /// `atrest scan --snapshot` reports the same objects as `atrest scan` of the live etcd.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scan_snapshot_equals_scan_live() {
        let etcd = Etcd::start();
        populate(&etcd).await;
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("snap.db");
        etcd.snapshot_save(&file);
        let want_len = {
            let mut c = etcd.client().await;
            let r = c
                .get(
                    "/registry/",
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await
                .expect("count");
            r.count() as usize
        };
        let args = [
            "--list",
            "all",
            "-o",
            "json",
            "--fail-on",
            "none",
            "--no-progress",
        ];
        let live_out = atrest_cmd()
            .arg("scan")
            .args(etcd.atrest_conn_args())
            .args(args)
            .output()
            .expect("scan live");
        assert!(
            live_out.status.success(),
            "{}",
            String::from_utf8_lossy(&live_out.stderr)
        );
        let snap_out = atrest_cmd()
            .args(["scan", "--snapshot"])
            .arg(&file)
            .args(args)
            .output()
            .expect("scan snapshot");
        assert!(
            snap_out.status.success(),
            "{}",
            String::from_utf8_lossy(&snap_out.stderr)
        );
        let live_r: serde_json::Value = serde_json::from_slice(&live_out.stdout).expect("json");
        let snap_r: serde_json::Value = serde_json::from_slice(&snap_out.stdout).expect("json");
        assert_eq!(snap_r["source"]["type"], "snapshot");
        assert_eq!(live_r["source"]["type"], "etcd");
        assert_eq!(snap_r["source"]["revision"], live_r["source"]["revision"]);
        let objs = snap_r["objects"].as_array().expect("objects");
        assert_eq!(objs.len(), want_len);
        assert!(
            snap_r["objects"] == live_r["objects"],
            "object lists differ"
        );
        assert_eq!(snap_r["summary"], live_r["summary"]);
    }
}

// ---- snapshot verify ----

mod verify {
    use super::*;
    use crate::common::kms::KmsPlugin;
    use crate::common::{Etcd, atrest_cmd};
    use atrest::config::KmsApiVersion;

    fn vectors(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/vectors")
            .join(name)
    }

    /// The fake plugins of the vectors, and all-providers.encryption-config.yaml pointing at them.
    fn plugins_and_config(dir: &Path) -> (KmsPlugin, KmsPlugin, PathBuf) {
        let v1 = KmsPlugin::builder_for_vectors(&vectors("kmsv1.json")).start();
        let v2 = KmsPlugin::builder_for_vectors(&vectors("kmsv2.json")).start();
        let text = std::fs::read_to_string(vectors("configs/all-providers.encryption-config.yaml"))
            .expect("config");
        let text = text
            .replace(
                "unix:///var/run/kmsplugin/fake-kms-v1.sock",
                &v1.kms_config("fake-kms-v1", KmsApiVersion::V1).endpoint,
            )
            .replace(
                "unix:///var/run/kmsplugin/fake-kms-v2.sock",
                &v2.kms_config("fake-kms-v2", KmsApiVersion::V2).endpoint,
            );
        let cfg = dir.join("enc.yaml");
        std::fs::write(&cfg, text).expect("write config");
        (v1, v2, cfg)
    }

    fn verify(file: &Path, cfg: &Path, json_out: bool) -> (i32, String, String) {
        let mut cmd = atrest_cmd();
        cmd.args(["snapshot", "verify"])
            .arg(file)
            .arg("--encryption-provider-config")
            .arg(cfg)
            .arg("--no-progress");
        if json_out {
            cmd.args(["-o", "json"]);
        }
        let out = cmd.output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The manifest's keys under /registry/ and whether kube-apiserver could read them.
    fn manifest_outcomes() -> Vec<(String, bool, Option<String>)> {
        json("public-v34.keys.json")["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| {
                let key = k["key"].as_str()?.to_string();
                key.starts_with("/registry/").then(|| {
                    let e = k["expect_with_all_providers_config"]
                        .as_str()
                        .map(String::from);
                    (key, e.as_deref().is_none_or(|e| e == "ok"), e)
                })
            })
            .collect()
    }

    #[test]
    fn fixture_is_not_restorable_and_says_why() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_v1, _v2, cfg) = plugins_and_config(dir.path());
        let file = fixture("public-v34.db");
        let (code, out, err) = verify(&file, &cfg, true);
        assert_eq!(code, 1, "stderr: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(r["restorable"], false);
        assert_eq!(r["status"]["ok"], true);
        let by = &r["scan"]["summary"]["by_status"];
        let bad =
            by["undecryptable"].as_u64().unwrap_or(0) + by["unknown-key"].as_u64().unwrap_or(0);
        let want_bad = manifest_outcomes().iter().filter(|k| !k.1).count() as u64;
        assert_eq!(bad, want_bad, "unreadable values");
        let verdict = r["verdict"].as_str().expect("verdict");
        assert!(
            verdict.starts_with("restorable with the held keys: no: "),
            "{verdict}"
        );
        assert!(verdict.contains(&format!("{} undecryptable", by["undecryptable"])));
        // Every object the manifest says kube-apiserver could not read is a finding.
        let objs = r["scan"]["objects"].as_array().expect("objects");
        for (key, ok, _) in manifest_outcomes() {
            let o = objs.iter().find(|o| o["key"] == key.as_str());
            if !ok {
                let st = o
                    .map(|o| o["status"].as_str().unwrap_or(""))
                    .unwrap_or("absent");
                assert!(st == "undecryptable" || st == "unknown-key", "{key}: {st}");
            }
        }
        // Table output ends with the verdict line.
        let (code, out, _) = verify(&file, &cfg, false);
        assert_eq!(code, 1);
        assert_eq!(out.lines().last(), Some(verdict));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_snapshot_restorable_yes_then_no() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_v1, _v2, cfg) = plugins_and_config(dir.path());
        // Copy the readable fixture values into a real etcd (same keys: AEAD binds the key).
        let readable: std::collections::HashSet<String> = manifest_outcomes()
            .into_iter()
            .filter(|k| k.1)
            .map(|k| k.0)
            .collect();
        let mut src =
            SnapshotSource::open(&fixture("public-v34.db"), b"/registry/", 100).expect("fixture");
        let mut all = Vec::new();
        while let Some(b) = src.next_batch().await.expect("batch") {
            all.extend(b);
        }
        let etcd = Etcd::start();
        let mut unreadable = None;
        for kv in &all {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if readable.contains(&key) {
                etcd.put(kv.key.clone(), kv.value.clone()).await;
            } else if unreadable.is_none() {
                unreadable = Some(kv.clone());
            }
        }
        let file = dir.path().join("good.db");
        etcd.snapshot_save(&file);
        let (code, out, err) = verify(&file, &cfg, false);
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert_eq!(
            out.lines().last(),
            Some("restorable with the held keys: yes")
        );

        let bad = unreadable.expect("the fixture has unreadable values");
        etcd.put(bad.key.clone(), bad.value.clone()).await;
        let file = dir.path().join("bad.db");
        etcd.snapshot_save(&file);
        let (code, out, _) = verify(&file, &cfg, false);
        assert_eq!(code, 1);
        let last = out.lines().last().unwrap_or("");
        assert!(
            last.starts_with("restorable with the held keys: no: "),
            "{last}"
        );
    }

    /// Plaintext Secrets are restorable only when the secrets chain has an identity entry
    /// (kube-apiserver reads them through it); without one a restored apiserver fails on them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plaintext_restorable_only_with_identity_in_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let etcd = Etcd::start();
        for name in ["a", "b"] {
            let mut v = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret".to_vec();
            v.extend_from_slice(name.as_bytes());
            etcd.put(format!("/registry/secrets/default/{name}"), v)
                .await;
        }
        let file = dir.path().join("plain.db");
        etcd.snapshot_save(&file);
        let with_identity = vectors("configs/aescbc.encryption-config.yaml");
        let text = std::fs::read_to_string(&with_identity).expect("config");
        assert!(text.contains("      - identity: {}\n"), "fixture changed");
        let without = dir.path().join("no-identity.yaml");
        std::fs::write(&without, text.replace("      - identity: {}\n", "")).expect("write");

        let (code, out, err) = verify(&file, &with_identity, false);
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert_eq!(
            out.lines().last(),
            Some("restorable with the held keys: yes")
        );

        let (code, out, err) = verify(&file, &without, true);
        assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(r["restorable"], false);
        assert_eq!(
            r["verdict"],
            "restorable with the held keys: no: 2 plaintext unreadable without an identity provider"
        );
    }

    #[test]
    fn corrupt_file_or_bad_config_is_exit_2() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = vectors("configs/identity.encryption-config.yaml");
        let p = corrupt_copy(dir.path(), "flip.db", |d| d[5000] ^= 1);
        let (code, out, err) = verify(&p, &cfg, false);
        assert_eq!(code, 2, "{out} {err}");
        assert!(
            out.contains("restorable with the held keys: no: the file failed its integrity check")
        );
        let p = corrupt_copy(dir.path(), "trunc.db", |d| d.truncate(50_000));
        let (code, _, err) = verify(&p, &cfg, false);
        assert_eq!(code, 2);
        assert!(err.contains("truncated"), "{err}");
        let (code, _, err) = verify(
            &fixture("public-v34.db"),
            &dir.path().join("missing.yaml"),
            false,
        );
        assert_eq!(code, 2);
        assert!(err.contains("missing.yaml"), "{err}");
    }
}

// ---- synthetic files: other page sizes, etcd 3.6 storageVersion, persisted freelist ----

mod synth {
    use super::*;
    use atrest::snapshot::etcd::Revision;
    use prost::Message;

    fn fnv(data: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    /// A leaf page image: header (id, flags 0x02, count, overflow 0) + elements + data.
    fn leaf_image(id: u64, elems: &[(u32, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(id.to_le_bytes());
        p.extend(2u16.to_le_bytes());
        p.extend((elems.len() as u16).to_le_bytes());
        p.extend(0u32.to_le_bytes());
        let mut data_off = 16 + 16 * elems.len();
        let mut data: Vec<u8> = Vec::new();
        for (i, (flags, k, v)) in elems.iter().enumerate() {
            let elem_off = 16 + 16 * i;
            p.extend(flags.to_le_bytes());
            p.extend(((data_off - elem_off) as u32).to_le_bytes());
            p.extend((k.len() as u32).to_le_bytes());
            p.extend((v.len() as u32).to_le_bytes());
            data.extend(k);
            data.extend(v);
            data_off += k.len() + v.len();
        }
        p.extend(data);
        p
    }

    fn inline_bucket(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        let elems: Vec<_> = entries
            .iter()
            .map(|(k, v)| (0, k.clone(), v.clone()))
            .collect();
        v.extend(leaf_image(0, &elems));
        v
    }

    fn meta(id: u64, ps: usize, root: u64, freelist: u64, pgid: u64, txid: u64) -> Vec<u8> {
        let mut p = vec![0u8; ps];
        p[..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&4u16.to_le_bytes());
        let mut m = Vec::new();
        m.extend(0xED0C_DAEDu32.to_le_bytes());
        m.extend(2u32.to_le_bytes());
        m.extend((ps as u32).to_le_bytes());
        m.extend(0u32.to_le_bytes());
        m.extend(root.to_le_bytes());
        m.extend(0u64.to_le_bytes());
        m.extend(freelist.to_le_bytes());
        m.extend(pgid.to_le_bytes());
        m.extend(txid.to_le_bytes());
        let sum = fnv(&m);
        m.extend(sum.to_le_bytes());
        p[16..16 + m.len()].copy_from_slice(&m);
        p
    }

    fn kv(key: &str, value: &str, create: i64, rev: i64, version: i64) -> Vec<u8> {
        atrest::proto::mvccpb::KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: value.as_bytes().to_vec(),
            lease: 0,
        }
        .encode_to_vec()
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;
    struct Built {
        data: Vec<u8>,
        buckets: Vec<(Vec<u8>, Entries)>,
    }

    /// Pages: 0/1 metas, 2 freelist (or unused when not persisted), 3 root leaf with inline
    /// buckets, 4 a free page. `free`: the persisted freelist's ids (None = not persisted).
    fn build(ps: usize, free: Option<&[u64]>, trailer: bool) -> Built {
        let r = |m, s| Revision { main: m, sub: s };
        let key_bucket = vec![
            (r(2, 0).to_key().to_vec(), kv("/registry/a", "v1", 2, 2, 1)),
            (r(3, 0).to_key().to_vec(), kv("/registry/b", "v1", 3, 3, 1)),
            (r(4, 0).to_key().to_vec(), kv("/registry/a", "v2", 2, 4, 2)),
            (
                r(5, 0).to_tombstone_key().to_vec(),
                kv("/registry/b", "", 0, 0, 0),
            ),
            (r(6, 1).to_key().to_vec(), kv("/registry/c", "v1", 6, 6, 1)),
        ];
        let meta_bucket = vec![
            (b"confState".to_vec(), b"{\"voters\":[1]}".to_vec()),
            (b"consistent_index".to_vec(), 9u64.to_be_bytes().to_vec()),
            (b"storageVersion".to_vec(), b"3.6.0".to_vec()),
            (b"term".to_vec(), 2u64.to_be_bytes().to_vec()),
        ];
        let buckets = vec![
            (
                b"cluster".to_vec(),
                vec![(b"clusterVersion".to_vec(), b"3.6.0".to_vec())],
            ),
            (b"key".to_vec(), key_bucket),
            (b"meta".to_vec(), meta_bucket),
        ];
        let elems: Vec<_> = buckets
            .iter()
            .map(|(n, e)| (1u32, n.clone(), inline_bucket(e)))
            .collect();
        let mut root = leaf_image(3, &elems);
        assert!(root.len() <= ps);
        root.resize(ps, 0);
        let freelist_id = if free.is_some() { 2 } else { u64::MAX };
        let mut fl = vec![0u8; ps];
        if let Some(ids) = free {
            fl[..8].copy_from_slice(&2u64.to_le_bytes());
            fl[8..10].copy_from_slice(&0x10u16.to_le_bytes());
            fl[10..12].copy_from_slice(&(ids.len() as u16).to_le_bytes());
            for (i, id) in ids.iter().enumerate() {
                fl[16 + 8 * i..24 + 8 * i].copy_from_slice(&id.to_le_bytes());
            }
        }
        let mut data = Vec::new();
        data.extend(meta(0, ps, 3, freelist_id, 5, 8));
        data.extend(meta(1, ps, 3, freelist_id, 5, 7));
        data.extend(fl);
        data.extend(root);
        data.extend(vec![0xAAu8; ps]); // page 4: free, stale bytes
        if trailer {
            let sum = Sha256::digest(&data);
            data.extend(sum);
        }
        Built { data, buckets }
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write");
        p
    }

    #[test]
    fn page_sizes_and_storage_version() {
        let dir = tempfile::tempdir().expect("tmp");
        for ps in [1024usize, 4096, 16384, 65536] {
            let b = build(ps, None, true);
            let p = write(dir.path(), &format!("ps{ps}.db"), &b.data);
            let st = snapshot::status(&p).expect("status");
            assert!(st.ok, "{ps}: {:?}", st.problems);
            assert_eq!(st.page_size as usize, ps);
            assert_eq!(st.version, "3.6.0");
            assert_eq!(st.schema, "3.6");
            assert_eq!(st.revision, 6);
            assert_eq!(st.total_size as usize, 5 * ps);
            assert_eq!(
                st.total_key,
                b.buckets.iter().map(|(_, e)| e.len() as u64).sum::<u64>()
            );
            assert_eq!(st.live_keys, 2);
            assert_eq!(st.meta.term, Some(2));
            // The hash, computed independently.
            let mut crc = 0u32;
            for (name, entries) in &b.buckets {
                crc = crc32c::crc32c_append(crc, name);
                for (k, v) in entries {
                    crc = crc32c::crc32c_append(crc, k);
                    crc = crc32c::crc32c_append(crc, v);
                }
            }
            assert_eq!(st.hash, crc);
            let mut src = SnapshotSource::open(&p, b"/registry/", 10).expect("open");
            let live = drain_latest(&mut src);
            let got: Vec<(String, i64, Vec<u8>)> = live
                .iter()
                .map(|k| {
                    (
                        String::from_utf8_lossy(&k.key).into_owned(),
                        k.mod_revision,
                        k.value.clone(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    ("/registry/a".into(), 4, b"v2".to_vec()),
                    ("/registry/c".into(), 6, b"v1".to_vec())
                ]
            );
            let hist = drain_history(&mut src);
            let h: Vec<(Vec<u8>, i64)> = hist
                .iter()
                .map(|k| (k.key.clone(), k.mod_revision))
                .collect();
            assert_eq!(
                h,
                vec![(b"/registry/a".to_vec(), 2), (b"/registry/b".to_vec(), 3)]
            );
        }
    }

    #[test]
    fn meta0_corrupt_discovers_page_size_from_meta1() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = build(16384, None, false);
        b.data[20] = 9; // version field of meta 0
        let p = write(dir.path(), "m0.db", &b.data);
        let st = snapshot::status_with(
            &p,
            snapshot::StatusOptions {
                skip_hash_check: true,
            },
            &snapshot::NoReadProgress,
        )
        .expect("meta 1 is enough");
        assert_eq!(st.page_size, 16384);
        assert_eq!(st.meta_used, 1);
        assert!(!st.ok && st.problems.iter().any(|m| m.contains("meta page 0")));
    }

    #[test]
    fn persisted_freelist_is_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let ok = build(4096, Some(&[4]), true);
        let st = snapshot::status(&write(dir.path(), "fl.db", &ok.data)).expect("status");
        assert!(st.ok, "{:?}", st.problems);
        // The root page listed as free.
        let bad = build(4096, Some(&[3, 4]), true);
        let st = snapshot::status(&write(dir.path(), "fl2.db", &bad.data)).expect("status");
        assert!(
            st.problems
                .iter()
                .any(|m| m.contains("page 3") && m.contains("reachable freed")),
            "{:?}",
            st.problems
        );
        // Page 4 neither reachable nor free.
        let bad = build(4096, Some(&[]), true);
        let st = snapshot::status(&write(dir.path(), "fl3.db", &bad.data)).expect("status");
        assert!(
            st.problems
                .iter()
                .any(|m| m.contains("page 4") && m.contains("unreachable unfreed")),
            "{:?}",
            st.problems
        );
        // A freelist entry past the high-water mark.
        let bad = build(4096, Some(&[4, 99]), true);
        let err = snapshot::status(&write(dir.path(), "fl4.db", &bad.data)).expect_err("corrupt");
        assert!(
            err.to_string().contains("page 2") && err.to_string().contains("99"),
            "{err}"
        );
    }

    #[test]
    fn foreign_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = build(4096, None, true);
        // Big-endian writer: the magic reads byte-swapped.
        for page in [0usize, 4096] {
            b.data[page + 16..page + 20].copy_from_slice(&0xED0C_DAEDu32.to_be_bytes());
        }
        let err = snapshot::status(&write(dir.path(), "be.db", &b.data)).expect_err("refused");
        assert!(err.to_string().contains("big-endian"), "{err}");
        let text = write(
            dir.path(),
            "text.db",
            &b"not a database at all\n".repeat(500),
        );
        let err = snapshot::status(&text).expect_err("refused");
        assert!(err.to_string().contains("not a bbolt file"), "{err}");
        // A root entry that is not a bucket.
        let mut b = build(4096, None, true);
        let flags_off = 3 * 4096 + 16; // element 0's flags
        b.data[flags_off] = 0;
        retrail(&mut b.data);
        let err = snapshot::status(&write(dir.path(), "nb.db", &b.data)).expect_err("refused");
        assert!(err.to_string().contains("not a bucket"), "{err}");
        // No `key` bucket: not etcd (rename it to `kez`, still in order).
        let mut b = build(4096, None, true);
        let root = &mut b.data[3 * 4096..4 * 4096];
        let at = root
            .windows(4)
            .position(|w| w == b"key\0")
            .expect("bucket name");
        root[at + 2] = b'z';
        retrail(&mut b.data);
        let p = write(dir.path(), "nokey.db", &b.data);
        let st = snapshot::status(&p).expect("a valid bbolt file");
        assert!(st.notes.iter().any(|n| n.contains("not an etcd")));
        let err = SnapshotSource::open(&p, b"", 10).err().expect("refused");
        assert!(err.to_string().contains("not an etcd"), "{err}");
    }
}
