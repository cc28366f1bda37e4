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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
        #[test]
        fn random_corruption_never_panics(
            edits in proptest::collection::vec((0usize..5_672_992, any::<u8>()), 1..20),
            retrail_it in any::<bool>(),
        ) {
            let mut d = std::fs::read(fixture("public-v34.db")).expect("fixture");
            // Aim half the edits at the first pages (metas, root, tree) where structure lives.
            for (i, (off, b)) in edits.iter().enumerate() {
                let off = if i % 2 == 0 { off % (16 * 4096) } else { *off };
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
