//! Generated protobuf types (see `build.rs` and `proto/`). Thin: no logic lives here.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// KMS v2 `EncryptedObject` (the stored envelope).
pub mod kmsv2 {
    include!(concat!(env!("OUT_DIR"), "/atrest.kmsv2.rs"));
}
/// etcd's `mvccpb.KeyValue`, as stored in the snapshot's `key` bucket.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
/// KMS plugin API v1 (`v1beta1`).
pub mod kms_v1beta1 {
    include!(concat!(env!("OUT_DIR"), "/v1beta1.rs"));
}
/// KMS plugin API v2.
pub mod kms_v2 {
    include!(concat!(env!("OUT_DIR"), "/v2.rs"));
}
