//! Integration tests: connecting to a real etcd (mTLS, auth, failure messages), the paginated
//! live source (pages, pinned revision, compaction mid-scan, resume) and manifest resolution.
use crate::common::{Etcd, EtcdOptions, Transport};

#[tokio::test]
async fn harness_starts_mtls_etcd_and_round_trips() {
    let etcd = Etcd::start();
    let rev = etcd.put("/registry/a", b"\x00\xffbinary".to_vec()).await;
    assert!(rev > 1);
    assert_eq!(
        etcd.get("/registry/a").await.as_deref(),
        Some(&b"\x00\xffbinary"[..])
    );
    let out = etcd.etcdctl_ok(&["get", "/registry/a", "--print-value-only"]);
    assert!(out.starts_with('\0'));
}

#[tokio::test]
async fn harness_variants_start() {
    let plain = Etcd::start_with(EtcdOptions {
        transport: Transport::Plain,
        ..Default::default()
    });
    assert!(plain.endpoint().starts_with("http://"));
    plain.put("k", "v").await;
    let auth = Etcd::start_with(EtcdOptions {
        root_password: Some("s3cret".into()),
        ..Default::default()
    });
    auth.put("k", "v").await;
    assert_eq!(auth.get("k").await.as_deref(), Some(&b"v"[..]));
    let no_ip = Etcd::start_with(EtcdOptions {
        server_ip_san: false,
        ..Default::default()
    });
    no_ip.put("k", "v").await;
    no_ip.etcdctl_ok(&["get", "k"]);
}
