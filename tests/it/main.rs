//! atrest's integration tests: one test binary (ripgrep style), one module per area, a shared
//! harness in `common` that starts real etcd servers (mTLS, random ports) and real KMS plugins.
mod common;

mod cli_config;
mod cli_decode;
mod compat;
mod connect;
mod demo;
mod kms;
mod rotate;
mod scan;
mod snapshot;
mod vectors;
