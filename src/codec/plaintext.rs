//! Plaintext formats (spec §2): protobuf `k8s\0` envelope, JSON, CBOR, other (H1).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlaintextKind {
    Protobuf {
        api_version: String,
        kind: String,
    },
    Json {
        api_version: Option<String>,
        kind: Option<String>,
    },
    Cbor {
        api_version: Option<String>,
        kind: Option<String>,
    },
    Other,
}
