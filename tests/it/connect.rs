//! Integration tests: connecting to a real etcd (mTLS, auth, failure messages), the paginated
//! live source (pages, pinned revision, compaction mid-scan, resume) and manifest resolution.
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use atrest::connect::{ConnectError, ConnectOptions, connect, read_apiserver_manifest};
use atrest::source::etcd::EtcdSource;
use atrest::source::{KvSource, RawKv};

use crate::common::{Certs, Etcd, EtcdOptions, Transport};

/// Generous timeouts: the test machine is a loaded 2-core box.
fn opts_for(etcd: &Etcd) -> ConnectOptions {
    let mut opts = ConnectOptions {
        endpoints: vec![etcd.endpoint()],
        dial_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    if let Some(c) = &etcd.certs {
        opts.cacert = Some(c.ca.clone());
        opts.cert = Some(c.client_cert.clone());
        opts.key = Some(c.client_key.clone());
    } else {
        opts.insecure_transport = true;
    }
    opts
}

async fn connect_err(opts: &ConnectOptions) -> ConnectError {
    match connect(opts).await {
        Ok(_) => panic!("connect to {:?} unexpectedly succeeded", opts.endpoints),
        Err(e) => e,
    }
}

/// Key i under /registry/ (zero-padded so byte order = numeric order), with a non-UTF-8 byte.
fn key(i: usize) -> Vec<u8> {
    let mut k = format!("/registry/secrets/ns/s{i:05}-").into_bytes();
    k.push(0xfe);
    k
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![0u8, 0xff, 0x80];
    v.extend_from_slice(format!("v{i}").as_bytes());
    v
}

/// 1050 keys under /registry/ plus neighbours outside the prefix that must never show up.
async fn load(etcd: &Etcd, n: usize) -> i64 {
    etcd.put_many([
        (b"/registrx/outside".to_vec(), b"x".to_vec()),
        (b"/registry".to_vec(), b"no trailing slash".to_vec()),
        (b"/other/key".to_vec(), b"x".to_vec()),
    ])
    .await;
    etcd.put_many((0..n).map(|i| (key(i), value(i)))).await
}

async fn source(etcd: &Etcd, start_after: Option<Vec<u8>>, page: i64) -> EtcdSource {
    let client = connect(&opts_for(etcd)).await.expect("connect");
    EtcdSource::new(
        client,
        vec![etcd.endpoint()],
        b"/registry/".to_vec(),
        start_after,
        page,
    )
}

async fn drain(src: &mut EtcdSource, batches: &mut Vec<Vec<RawKv>>) {
    while let Some(b) = src.next_batch().await.expect("next_batch") {
        assert!(!b.is_empty(), "empty batch");
        batches.push(b);
    }
}

fn assert_each_once_in_order(batches: &[Vec<RawKv>], expected: impl Iterator<Item = usize>) {
    let got: Vec<&[u8]> = batches
        .iter()
        .flatten()
        .map(|kv| kv.key.as_slice())
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "keys not strictly ascending (a key repeated or out of order)"
    );
    let want: Vec<Vec<u8>> = expected.map(key).collect();
    assert_eq!(got.len(), want.len(), "number of keys read");
    assert!(
        got.iter().zip(&want).all(|(g, w)| *g == w.as_slice()),
        "keys differ"
    );
}

#[tokio::test]
async fn pagination_reads_every_key_once_in_order_at_one_revision() {
    let etcd = Etcd::start();
    let loaded_rev = load(&etcd, 1050).await;
    let mut src = source(&etcd, None, 100).await;
    assert_eq!(src.estimate().await.expect("estimate"), Some(1050));

    let first = src.next_batch().await.expect("page 1").expect("some");
    assert_eq!(first.len(), 100);
    let pinned = src.revision();
    assert_eq!(
        pinned, loaded_rev,
        "pinned to the revision of the first response"
    );
    // Writes after the scan started must not be seen: the scan is pinned.
    etcd.put(key(2000), value(2000)).await;
    etcd.put(key(1049), b"changed later".to_vec()).await;

    let mut batches = vec![first];
    drain(&mut src, &mut batches).await;
    assert!(batches.len() >= 11, "{} pages", batches.len());
    assert!(batches.iter().all(|b| b.len() <= 100));
    assert_each_once_in_order(&batches, 0..1050);
    let last = batches.last().and_then(|b| b.last()).expect("last");
    assert_eq!(last.value, value(1049), "value read at the pinned revision");
    for (i, kv) in batches.iter().flatten().enumerate() {
        assert_eq!(kv.value, value(i), "raw bytes of key {i}");
        assert!(kv.mod_revision > 0 && kv.mod_revision <= pinned);
        assert_eq!(kv.version, 1);
    }
    assert_eq!(src.revision(), pinned, "revision stable across pages");
    assert!(src.notes().is_empty(), "{:?}", src.notes());
    assert!(src.next_batch().await.expect("after end").is_none());
}

#[tokio::test]
async fn adaptive_pages_grow_geometrically_and_read_every_key_once() {
    use atrest::source::etcd::ADAPTIVE_START_KEYS;
    let etcd = Etcd::start();
    let loaded_rev = load(&etcd, 3000).await;
    let client = connect(&opts_for(&etcd)).await.expect("connect");
    let mut src = EtcdSource::with_page_size(
        client,
        vec![etcd.endpoint()],
        b"/registry/".to_vec(),
        None,
        None,
    );
    let mut batches = Vec::new();
    drain(&mut src, &mut batches).await;
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    let start = usize::try_from(ADAPTIVE_START_KEYS).expect("start");
    // Tiny values: the byte target is far away, so the limit grows 4x per page (a page may
    // come back shorter than its limit where its window, a key subtree, ends first).
    assert_eq!(sizes.first(), Some(&start), "page sizes {sizes:?}");
    assert!(sizes.iter().any(|&n| n > start), "page sizes {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n <= start * 4),
        "page sizes {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 3000, "page sizes {sizes:?}");
    assert_each_once_in_order(&batches, 0..3000);
    assert_eq!(src.revision(), loaded_rev, "pinned across adaptive pages");
}

/// An irregular keyspace: subtrees of very different sizes (0 to 400 keys), long shared name
/// prefixes, keys that extend other keys, 0xff bytes in every position, a key equal to the
/// prefix's subtree edge. Every page size (and the adaptive pages) must read each key exactly
/// once, in order, whatever windows the source picks.
#[tokio::test]
async fn irregular_keyspaces_are_read_exactly_once_at_every_page_size() {
    let etcd = Etcd::start();
    let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for ns in 0..40u64 {
        let size = match ns % 5 {
            0 => 0,
            1 => 1,
            2 => 3 + next() % 20,
            3 => 150 + next() % 250,
            _ => next() % 60,
        };
        for i in 0..size {
            let mut k = format!("/registry/r{}/ns-{ns}/", ns % 3).into_bytes();
            match next() % 4 {
                0 => k.extend_from_slice(format!("name-{i:04}").as_bytes()),
                1 => k.extend_from_slice(format!("averyveryverylongsharedprefix-{i}").as_bytes()),
                2 => k.extend(
                    (0..1 + next() % 6).map(|_| [0xffu8, 0x00, b'a', 0xfe][(next() % 4) as usize]),
                ),
                _ => k.extend_from_slice(format!("{:x}", next()).as_bytes()),
            }
            keys.insert(k.clone());
            if next() % 7 == 0 {
                k.extend_from_slice(b"/child");
                keys.insert(k);
            }
        }
    }
    keys.insert(b"/registry/".to_vec());
    keys.insert(b"/registry/\xff\xff".to_vec());
    keys.insert(b"/registry/\xff\xff\xff/x".to_vec());
    etcd.put_many([
        (b"/registry0".to_vec(), b"outside".to_vec()),
        (b"/registrx".to_vec(), b"outside".to_vec()),
    ])
    .await;
    etcd.put_many(keys.iter().map(|k| (k.clone(), b"v".to_vec())))
        .await;
    let want: Vec<Vec<u8>> = keys.iter().cloned().collect();
    // Keys at the very top of the keyspace, under the prefix 0xff.
    let mut top: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let mut k = vec![0xff; 1 + (i % 3) as usize];
            k.extend_from_slice(format!("/k{}", i * 7919 % 1000).as_bytes());
            k
        })
        .collect();
    top.sort();
    top.dedup();
    let rev = etcd
        .put_many(top.iter().map(|k| (k.clone(), b"v".to_vec())))
        .await;

    for page in [Some(2), Some(3), Some(7), Some(64), Some(1000), None] {
        for start_after in [None, Some(want[want.len() / 3].clone())] {
            let client = connect(&opts_for(&etcd)).await.expect("connect");
            let mut src = EtcdSource::with_page_size(
                client,
                vec![etcd.endpoint()],
                b"/registry/".to_vec(),
                start_after.clone(),
                page,
            );
            let mut batches = Vec::new();
            drain(&mut src, &mut batches).await;
            let got: Vec<Vec<u8>> = batches.iter().flatten().map(|kv| kv.key.clone()).collect();
            let expected: Vec<Vec<u8>> = match &start_after {
                Some(after) => want.iter().filter(|k| *k > after).cloned().collect(),
                None => want.clone(),
            };
            assert_eq!(
                got.len(),
                expected.len(),
                "page {page:?} from {start_after:?}"
            );
            assert!(
                got == expected,
                "page {page:?} from {start_after:?}: keys differ"
            );
            if let Some(n) = page {
                let n = usize::try_from(n).expect("page");
                assert!(
                    batches.iter().all(|b| b.len() <= n),
                    "page {page:?} over its limit"
                );
            }
            assert_eq!(src.revision(), rev, "pinned revision, page {page:?}");
        }
        // A prefix of 0xff: its range end is etcd's "\0", the end of the keyspace.
        let client = connect(&opts_for(&etcd)).await.expect("connect");
        let mut src =
            EtcdSource::with_page_size(client, vec![etcd.endpoint()], vec![0xff], None, page);
        let mut batches = Vec::new();
        drain(&mut src, &mut batches).await;
        let got: Vec<Vec<u8>> = batches.iter().flatten().map(|kv| kv.key.clone()).collect();
        assert!(
            got == top,
            "page {page:?}, prefix 0xff: {} keys of {}",
            got.len(),
            top.len()
        );
    }
}

#[tokio::test]
async fn compaction_during_scan_continues_at_fresh_revision_without_double_count() {
    let etcd = Etcd::start();
    let loaded_rev = load(&etcd, 1050).await;
    let mut src = source(&etcd, None, 100).await;
    let first = src.next_batch().await.expect("page 1").expect("some");
    assert_eq!(src.revision(), loaded_rev);
    let last_of_first = first.last().expect("last").key.clone();

    // Change a key the scan has not reached, then compact away the pinned revision. The
    // prefetcher may already hold page 2 (and be fetching page 3) at the old revision: those
    // are fine; the first request after them must fail and continue.
    let changed = etcd.put(key(1000), b"after compaction".to_vec()).await;
    etcd.compact(changed).await;

    let mut batches = vec![first];
    drain(&mut src, &mut batches).await;
    assert_each_once_in_order(&batches, 0..1050);

    let notes = src.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert!(
        note.contains(&format!(
            "revision {loaded_rev} was compacted during the scan"
        )),
        "{note}"
    );
    assert!(note.contains(&format!("continued at {changed}")), "{note}");
    assert!(note.contains("from key /registry/secrets/ns/s"), "{note}");
    assert_eq!(
        src.revision(),
        changed,
        "the report's revision is the fresh one"
    );
    // The continuation point is after the keys already handed out.
    let k1000 = batches
        .iter()
        .flatten()
        .find(|kv| kv.key == key(1000))
        .expect("k1000");
    assert_eq!(
        k1000.value,
        b"after compaction".to_vec(),
        "read at the fresh revision"
    );
    assert!(key(1000) > last_of_first);
}

#[tokio::test]
async fn start_after_resumes_after_the_key_and_estimate_counts_the_rest() {
    let etcd = Etcd::start();
    load(&etcd, 300).await;
    let mut src = source(&etcd, Some(key(123)), 50).await;
    assert_eq!(src.estimate().await.expect("estimate"), Some(300 - 124));
    let mut batches = Vec::new();
    drain(&mut src, &mut batches).await;
    assert_each_once_in_order(&batches, 124..300);

    // Resuming after a key that is not stored (deleted since the checkpoint) works too.
    let mut gone = key(200);
    gone.push(b'x');
    let mut src = source(&etcd, Some(gone), 1000).await;
    let mut batches = Vec::new();
    drain(&mut src, &mut batches).await;
    assert_each_once_in_order(&batches, 201..300);
}

#[tokio::test]
async fn page_size_one_and_empty_prefix_range() {
    let etcd = Etcd::start();
    load(&etcd, 5).await;
    let mut src = source(&etcd, None, 1).await;
    let mut batches = Vec::new();
    drain(&mut src, &mut batches).await;
    assert_eq!(batches.len(), 5);
    assert_each_once_in_order(&batches, 0..5);

    let client = connect(&opts_for(&etcd)).await.expect("connect");
    let mut empty = EtcdSource::new(
        client,
        vec![etcd.endpoint()],
        b"/nothing/".to_vec(),
        None,
        10,
    );
    assert_eq!(empty.estimate().await.expect("estimate"), Some(0));
    assert!(empty.next_batch().await.expect("batch").is_none());
}

#[tokio::test]
async fn plaintext_endpoint_is_refused_unless_insecure_transport() {
    let etcd = Etcd::start_with(EtcdOptions {
        transport: Transport::Plain,
        ..Default::default()
    });
    let mut opts = opts_for(&etcd);
    opts.insecure_transport = false;
    let e = connect_err(&opts).await;
    assert!(matches!(e, ConnectError::Usage(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("refusing plain-text http:// endpoint"),
        "{msg}"
    );
    assert!(msg.contains(&etcd.endpoint()), "{msg}");
    assert!(msg.contains("--insecure-transport"), "{msg}");

    opts.insecure_transport = true;
    let mut client = connect(&opts).await.expect("insecure transport allowed");
    client
        .put("/registry/x", "y", None)
        .await
        .expect("put over http");

    // https:// against a plain-http etcd: the handshake failure says so. etcd either answers
    // the ClientHello with an HTTP error or resets the connection, depending on timing; the
    // reset looks like a TLS server refusing a missing client certificate, so try several times
    // to meet both paths.
    let mut tls_opts = opts.clone();
    tls_opts.endpoints = vec![etcd.endpoint().replace("http://", "https://")];
    let other = Certs::generate(&etcd.dir().join("pki"));
    tls_opts.cacert = Some(other.ca.clone());
    for _ in 0..8 {
        let e = connect_err(&tls_opts).await;
        assert!(matches!(e, ConnectError::Tls(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("does not speak TLS"), "{msg}");
        assert!(!msg.contains("client certificate"), "{msg}");
    }
}

#[tokio::test]
async fn wrong_ca_says_server_certificate_not_signed_by_cacert() {
    let etcd = Etcd::start();
    let other = Certs::unrelated(&etcd.dir().join("other-pki"));
    let mut opts = opts_for(&etcd);
    opts.cacert = Some(other.ca.clone());
    let e = connect_err(&opts).await;
    assert!(matches!(e, ConnectError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("the server certificate is not signed by --cacert"),
        "{msg}"
    );
    assert!(msg.contains(&other.ca.display().to_string()), "{msg}");
}

#[tokio::test]
async fn server_certificate_without_ip_san_is_explained() {
    let etcd = Etcd::start_with(EtcdOptions {
        server_ip_san: false,
        ..Default::default()
    });
    let e = connect_err(&opts_for(&etcd)).await;
    assert!(matches!(e, ConnectError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("has no IP SAN for 127.0.0.1"), "{msg}");
    assert!(msg.contains("localhost"), "{msg}");
    // The DNS name the certificate does cover works.
    let mut opts = opts_for(&etcd);
    opts.endpoints = vec![etcd.endpoint_localhost()];
    connect(&opts).await.expect("connect by DNS name");
}

#[tokio::test]
async fn missing_or_untrusted_client_certificate() {
    let etcd = Etcd::start();
    let mut opts = opts_for(&etcd);
    opts.cert = None;
    opts.key = None;
    let e = connect_err(&opts).await;
    assert!(matches!(e, ConnectError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("etcd requires a client certificate: pass --cert and --key"),
        "{msg}"
    );

    let other = Certs::unrelated(&etcd.dir().join("other-pki"));
    let mut opts = opts_for(&etcd);
    opts.cert = Some(other.client_cert.clone());
    opts.key = Some(other.client_key.clone());
    let msg = connect_err(&opts).await.to_string();
    assert!(
        msg.contains("rejected the client certificate --cert"),
        "{msg}"
    );
    assert!(
        msg.contains(&other.client_cert.display().to_string()),
        "{msg}"
    );

    let mut opts = opts_for(&etcd);
    opts.key = None;
    let e = connect_err(&opts).await;
    assert!(
        e.to_string().contains("--cert was given without --key"),
        "{e}"
    );

    let mut opts = opts_for(&etcd);
    opts.cacert = Some(etcd.dir().join("missing-ca.pem"));
    let msg = connect_err(&opts).await.to_string();
    assert!(
        msg.contains("--cacert") && msg.contains("missing-ca.pem"),
        "{msg}"
    );

    let mut opts = opts_for(&etcd);
    opts.cacert = Some(etcd.key_path().to_path_buf());
    let msg = connect_err(&opts).await.to_string();
    assert!(msg.contains("no PEM \"CERTIFICATE\" block"), "{msg}");
}

#[tokio::test]
async fn wrong_password_and_missing_permission_with_auth_enabled() {
    let etcd = Etcd::start_with(EtcdOptions {
        root_password: Some("r00t-pw".into()),
        ..Default::default()
    });
    let mut opts = opts_for(&etcd);
    opts.user = Some("root:not-the-password".into());
    let e = connect_err(&opts).await;
    let msg = e.to_string();
    // Checked first, and reported without the message: a failure must not print the secret.
    assert!(
        !msg.contains("not-the-password") && !format!("{e:?}").contains("not-the-password"),
        "the password leaked into the connection error"
    );
    assert!(matches!(e, ConnectError::Auth(_)), "{e:?}");
    assert!(msg.contains("wrong user name or password"), "{msg}");
    assert!(msg.contains("\"root\""), "{msg}");

    opts.user = Some("root:r00t-pw".into());
    connect(&opts).await.expect("right password");

    // A user that may only read /other/ cannot scan /registry/.
    etcd.etcdctl_ok(&["user", "add", "limited:l1m-pw"]);
    etcd.etcdctl_ok(&["role", "add", "limited"]);
    etcd.etcdctl_ok(&[
        "role",
        "grant-permission",
        "limited",
        "read",
        "/other/",
        "--prefix=true",
    ]);
    etcd.etcdctl_ok(&["user", "grant-role", "limited", "limited"]);
    etcd.put("/registry/secrets/a/b", "x").await;
    opts.user = Some("limited".into());
    opts.password = Some("l1m-pw".into());
    let client = connect(&opts).await.expect("limited user connects");
    let mut src = EtcdSource::new(
        client,
        vec![etcd.endpoint()],
        b"/registry/".to_vec(),
        None,
        10,
    );
    let e = src.next_batch().await.expect_err("permission denied");
    assert!(e.0.contains("denied reading /registry/"), "{e}");
    assert!(e.0.contains("grant-permission"), "{e}");
}

#[tokio::test]
async fn unreachable_endpoints_are_named() {
    let etcd = Etcd::start();
    let port = crate::common::etcd::free_port();
    let mut opts = opts_for(&etcd);
    opts.endpoints = vec![format!("127.0.0.1:{port}")]; // no scheme: https
    let e = connect_err(&opts).await;
    assert!(matches!(e, ConnectError::Unreachable(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(
        msg.contains(&format!("is etcd listening on 127.0.0.1:{port}?")),
        "{msg}"
    );

    opts.endpoints = vec!["https://no-such-host.invalid:2379".into()];
    let e = connect_err(&opts).await;
    assert!(
        matches!(e, ConnectError::Dns(_) | ConnectError::Unreachable(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
}

fn write_manifest(dir: &Path, etcd: &Etcd) -> std::path::PathBuf {
    let c = etcd.certs();
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.31.0\n    command:\n    - kube-apiserver\n    - --etcd-servers={}\n    - --etcd-cafile={}\n    - --etcd-certfile={}\n    - --etcd-keyfile={}\n    - --etcd-prefix=/custom\n",
        etcd.endpoint(),
        c.ca.display(),
        c.client_cert.display(),
        c.client_key.display()
    );
    let path = dir.join("kube-apiserver.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

#[tokio::test]
async fn manifest_driven_connection_reads_the_apiservers_prefix() {
    let etcd = Etcd::start();
    etcd.put("/custom/secrets/ns/a", "1").await;
    etcd.put("/registry/secrets/ns/b", "2").await;
    let manifest = write_manifest(etcd.dir(), &etcd);
    let flags = read_apiserver_manifest(&manifest).expect("manifest");
    let opts = ConnectOptions {
        endpoints: flags.etcd_servers.clone().expect("servers"),
        cacert: flags.etcd_cafile.clone(),
        cert: flags.etcd_certfile.clone(),
        key: flags.etcd_keyfile.clone(),
        dial_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let client = connect(&opts).await.expect("connect from manifest");
    let prefix = format!("{}/", flags.etcd_prefix.expect("prefix"));
    let mut src = EtcdSource::new(
        client,
        opts.endpoints.clone(),
        prefix.into_bytes(),
        None,
        10,
    );
    let batch = src.next_batch().await.expect("batch").expect("some");
    let keys: BTreeSet<Vec<u8>> = batch.into_iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, BTreeSet::from([b"/custom/secrets/ns/a".to_vec()]));
}

#[tokio::test]
async fn harness_variants_start() {
    let plain = Etcd::start_with(EtcdOptions {
        transport: Transport::Plain,
        ..Default::default()
    });
    assert!(plain.endpoint().starts_with("http://"));
    plain.put("k", "v").await;
    let srv = Etcd::start_with(EtcdOptions {
        transport: Transport::ServerTls,
        ..Default::default()
    });
    let mut opts = opts_for(&srv);
    opts.cert = None;
    opts.key = None;
    connect(&opts)
        .await
        .expect("server-only TLS needs no client certificate");
    let out = srv.etcdctl_ok(&["put", "k", "v"]);
    assert!(out.contains("OK"), "{out}");
    let snap = srv.dir().join("snap.db");
    srv.snapshot_save(&snap);
    assert!(std::fs::metadata(&snap).expect("snapshot").len() > 0);
}

#[tokio::test]
async fn pages_larger_than_the_response_limit_are_split() {
    let etcd = Etcd::start();
    // 8 values of 1 MiB (etcd accepts up to 1.5 MiB per request) against a 3 MiB limit.
    let big = |i: usize| -> Vec<u8> {
        (0..1 << 20)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect()
    };
    for i in 0..8 {
        etcd.put(key(i), big(i)).await;
    }
    let client = connect(&opts_for(&etcd)).await.expect("connect");
    let mut src = EtcdSource::new(
        client,
        vec![etcd.endpoint()],
        b"/registry/".to_vec(),
        None,
        8,
    )
    .with_max_response_bytes(3 << 20);
    let mut batches = Vec::new();
    drain(&mut src, &mut batches).await;
    assert!(
        batches.iter().all(|b| b.len() <= 2),
        "{:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_each_once_in_order(&batches, 0..8);
    for (i, kv) in batches.iter().flatten().enumerate() {
        assert!(
            kv.value == big(i),
            "value {i} differs (len {})",
            kv.value.len()
        );
    }
}

/// The failure messages reach the user through `atrest scan` with exit code 2.
#[tokio::test]
async fn scan_cli_reports_connection_failures_with_exit_2() {
    let etcd = Etcd::start();
    let other = Certs::unrelated(&etcd.dir().join("other-pki"));
    let mut args = vec![
        "scan".to_string(),
        "--no-progress".into(),
        "--dial-timeout".into(),
        "20s".into(),
    ];
    let conn = etcd.atrest_conn_args();
    // Wrong CA.
    let mut wrong_ca = conn.clone();
    let i = wrong_ca
        .iter()
        .position(|a| a == "--cacert")
        .expect("--cacert");
    wrong_ca[i + 1] = other.ca.display().to_string();
    let out = crate::common::atrest_cmd()
        .args(&args)
        .args(&wrong_ca)
        .output()
        .expect("run atrest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not signed by --cacert"), "{stderr}");

    // Missing client certificate (etcdctl's env variables work too).
    let out = crate::common::atrest_cmd()
        .args(&args)
        .env("ETCDCTL_ENDPOINTS", etcd.endpoint())
        .env("ETCDCTL_CACERT", etcd.ca_path())
        .output()
        .expect("run atrest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("etcd requires a client certificate: pass --cert and --key"),
        "{stderr}"
    );

    // Plain http refused.
    args.extend([
        "--endpoints".into(),
        format!("http://127.0.0.1:{}", etcd.client_port),
    ]);
    let out = crate::common::atrest_cmd()
        .args(&args)
        .output()
        .expect("run atrest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing plain-text http:// endpoint"),
        "{stderr}"
    );

    // No endpoints at all.
    let out = crate::common::atrest_cmd()
        .args(["scan", "--no-progress"])
        .output()
        .expect("run atrest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no etcd endpoints"), "{stderr}");
}

/// `--apiserver-manifest` alone is enough to scan: endpoints, certificates and prefix come
/// from kube-apiserver's flags.
#[tokio::test]
async fn scan_cli_with_apiserver_manifest_only() {
    let etcd = Etcd::start();
    etcd.put("/custom/secrets/ns/a", "plain").await;
    etcd.put("/registry/secrets/ns/b", "elsewhere").await;
    let manifest = write_manifest(etcd.dir(), &etcd);
    let out = crate::common::atrest_cmd()
        .args([
            "scan",
            "--no-progress",
            "-o",
            "json",
            "--list",
            "all",
            "--dial-timeout",
            "20s",
        ])
        .arg("--apiserver-manifest")
        .arg(&manifest)
        .output()
        .expect("run atrest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "plaintext secret is a finding: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["source"]["type"], "etcd");
    assert!(
        report["source"]["revision"].as_i64().unwrap_or(0) > 0,
        "{report}"
    );
    let keys: Vec<&str> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["/custom/secrets/ns/a"], "{report}");
}

#[tokio::test]
async fn one_dead_endpoint_among_several_is_tolerated() {
    let etcd = Etcd::start();
    load(&etcd, 250).await;
    let dead = format!("https://127.0.0.1:{}", crate::common::etcd::free_port());
    for endpoints in [
        vec![dead.clone(), etcd.endpoint()],
        vec![etcd.endpoint(), dead.clone()],
    ] {
        let mut opts = opts_for(&etcd);
        opts.endpoints = endpoints.clone();
        let client = connect(&opts).await.expect("a live member is enough");
        let mut src = EtcdSource::new(client, endpoints, b"/registry/".to_vec(), None, 20);
        let mut batches = Vec::new();
        drain(&mut src, &mut batches).await;
        assert_each_once_in_order(&batches, 0..250);
    }
    let dead2 = format!("https://127.0.0.1:{}", crate::common::etcd::free_port());
    let mut opts = opts_for(&etcd);
    opts.endpoints = vec![dead.clone(), dead2.clone()];
    let msg = connect_err(&opts).await.to_string();
    assert!(msg.contains("no etcd endpoint answered"), "{msg}");
    assert!(msg.contains(&dead) && msg.contains(&dead2), "{msg}");
}

#[tokio::test]
async fn silent_server_times_out_within_dial_timeout() {
    // Accepts TCP (kernel backlog) but never answers the TLS handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let etcd = Etcd::start();
    let mut opts = opts_for(&etcd);
    opts.endpoints = vec![format!("https://127.0.0.1:{port}")];
    opts.dial_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let e = connect_err(&opts).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, ConnectError::Unreachable(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("--dial-timeout 1s"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    drop(silent);
}

#[tokio::test]
async fn expired_server_certificate_is_explained() {
    let etcd = Etcd::start_with(EtcdOptions {
        server_cert_expired: true,
        ..Default::default()
    });
    let e = connect_err(&opts_for(&etcd)).await;
    assert!(matches!(e, ConnectError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("outside its validity period"), "{msg}");
    assert!(msg.contains("renew"), "{msg}");
}

/// Run `atrest scan` (JSON, every object listed) with extra arguments and environment.
fn scan_cli(extra: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut cmd = crate::common::atrest_cmd();
    cmd.args([
        "scan",
        "--no-progress",
        "-o",
        "json",
        "--list",
        "all",
        "--dial-timeout",
        "20s",
    ])
    .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run atrest")
}

fn scanned_keys(out: &std::process::Output) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["key"].as_str().map(str::to_string))
        .collect()
}

/// Precedence is flag > `--apiserver-manifest` > `ETCDCTL_*` > default: variables left over
/// from an etcdctl session must not send a manifest-driven run to another etcd, yet still fill
/// what the manifest does not say.
#[tokio::test]
async fn scan_cli_manifest_beats_etcdctl_variables() {
    use std::ffi::OsStr;
    let etcd = Etcd::start();
    etcd.put("/custom/secrets/ns/a", "plain").await;
    let manifest = write_manifest(etcd.dir(), &etcd);
    let other = Certs::unrelated(&etcd.dir().join("other-pki"));
    let dead = format!("https://127.0.0.1:{}", crate::common::etcd::free_port());
    let stale_env: Vec<(&str, &OsStr)> = vec![
        ("ETCDCTL_ENDPOINTS", OsStr::new(&dead)),
        ("ETCDCTL_CACERT", other.ca.as_os_str()),
        ("ETCDCTL_CERT", other.client_cert.as_os_str()),
        ("ETCDCTL_KEY", other.client_key.as_os_str()),
    ];
    let manifest_arg = [OsStr::new("--apiserver-manifest"), manifest.as_os_str()];

    // 1. The manifest wins over every variable, and the user is told which were ignored.
    let out = scan_cli(&manifest_arg, &stale_env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "plaintext is a finding: {stderr}"
    );
    assert_eq!(scanned_keys(&out), vec!["/custom/secrets/ns/a"]);
    for var in [
        "ETCDCTL_ENDPOINTS",
        "ETCDCTL_CACERT",
        "ETCDCTL_CERT",
        "ETCDCTL_KEY",
    ] {
        assert!(
            stderr.contains(&format!("note: {var} is ignored")),
            "{var}: {stderr}"
        );
    }

    // 2. An explicit flag wins over the manifest.
    let mut with_flag = manifest_arg.to_vec();
    with_flag.extend([OsStr::new("--endpoints"), OsStr::new(&dead)]);
    let out = scan_cli(&with_flag, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&dead),
        "the flag's endpoint is dialled: {stderr}"
    );

    // 3. Variables fill what the manifest lacks (here: the client certificate).
    let c = etcd.certs();
    let partial = etcd.dir().join("partial-apiserver.yaml");
    std::fs::write(
        &partial,
        format!(
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --etcd-servers={}\n    - --etcd-cafile={}\n    - --etcd-prefix=/custom\n",
            etcd.endpoint(),
            c.ca.display()
        ),
    )
    .expect("write manifest");
    let env: Vec<(&str, &OsStr)> = vec![
        ("ETCDCTL_ENDPOINTS", OsStr::new(&dead)),
        ("ETCDCTL_CERT", c.client_cert.as_os_str()),
        ("ETCDCTL_KEY", c.client_key.as_os_str()),
    ];
    let out = scan_cli(
        &[OsStr::new("--apiserver-manifest"), partial.as_os_str()],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(scanned_keys(&out), vec!["/custom/secrets/ns/a"]);
    assert!(
        stderr.contains("note: ETCDCTL_ENDPOINTS is ignored"),
        "{stderr}"
    );
    assert!(!stderr.contains("ETCDCTL_CERT is ignored"), "{stderr}");

    // 4. Without a manifest the variables alone are enough (etcdctl habit keeps working).
    let endpoint = etcd.endpoint();
    let env: Vec<(&str, &OsStr)> = vec![
        ("ETCDCTL_ENDPOINTS", OsStr::new(&endpoint)),
        ("ETCDCTL_CACERT", c.ca.as_os_str()),
        ("ETCDCTL_CERT", c.client_cert.as_os_str()),
        ("ETCDCTL_KEY", c.client_key.as_os_str()),
    ];
    let out = scan_cli(&[OsStr::new("--prefix"), OsStr::new("/custom")], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(scanned_keys(&out), vec!["/custom/secrets/ns/a"]);
}

/// Harness failure messages never show the passwords given to etcdctl.
#[test]
fn etcdctl_failure_messages_hide_passwords() {
    let shown = crate::common::etcd::redacted_args(&[
        "user",
        "add",
        "limited:l1m-pw",
        "--user=root:r00t-pw",
        "--user",
        "root:r00t-pw",
        "--password",
        "p4ss",
        "--password=p4ss",
    ])
    .join(" ");
    for secret in ["l1m-pw", "r00t-pw", "p4ss"] {
        assert!(!shown.contains(secret), "a password survived redaction");
    }
    assert!(shown.starts_with("user add limited:<redacted>"), "{shown}");
}
