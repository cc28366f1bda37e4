//! Test harness: real etcd servers with mTLS on random loopback ports, certificates generated
//! per test, the atrest binaries, and real KMS plugin processes.
//!
//! ```ignore
//! let etcd = Etcd::start();                       // mTLS, random ports, temp dir; killed on Drop
//! etcd.put("/registry/secrets/ns/a", b"...").await;
//! atrest_cmd().arg("scan").args(etcd.atrest_conn_args()).assert().code(0);
//! ```
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod etcd;
pub mod kms;

use std::path::PathBuf;

pub use certs::{CertOptions, Certs};
pub use etcd::{Etcd, EtcdOptions, Transport};

/// Path of one of the crate's binaries, built by cargo for this test run.
pub fn bin_path(name: &str) -> PathBuf {
    let path = match name {
        "atrest" => env!("CARGO_BIN_EXE_atrest"),
        "atrest-test-kms" => env!("CARGO_BIN_EXE_atrest-test-kms"),
        other => panic!("unknown binary {other:?}: add it to tests/it/common/mod.rs bin_path"),
    };
    PathBuf::from(path)
}

/// Inherited variables a developer's environment must not pass to atrest under test:
/// `ETCDCTL_*` (connection defaults) and `RUST_LOG` (logs stay at their default).
pub fn scrubbed_env() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::vars_os().map(|(k, _)| k).filter(|k| {
        let k = k.to_string_lossy();
        k.starts_with("ETCDCTL_") || k == "RUST_LOG"
    })
}

/// `atrest` as an `assert_cmd` command, without the [`scrubbed_env`] variables.
pub fn atrest_cmd() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin_path("atrest"));
    for k in scrubbed_env() {
        cmd.env_remove(k);
    }
    cmd
}

/// `atrest` as a plain [`std::process::Command`] (to spawn, signal or time it), without the
/// [`scrubbed_env`] variables.
pub fn atrest_std_cmd() -> std::process::Command {
    let mut cmd = std::process::Command::new(bin_path("atrest"));
    for k in scrubbed_env() {
        cmd.env_remove(k);
    }
    cmd
}
