//! Test harness: real etcd servers with mTLS on random loopback ports, certificates generated
//! per test, the atrest binaries, and real KMS plugin processes.
#![allow(dead_code)]
pub mod kms;
