//! atrest-test-kms: a real KMS v1/v2 plugin for tests (H4).
fn main() {}
