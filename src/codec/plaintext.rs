//! Plaintext formats (spec §2): protobuf `k8s\0` envelope, JSON, CBOR, other.
//!
//! Only the type metadata (apiVersion/kind) is read, the way upstream's meta factories do,
//! without a schema and without decoding the object body: the protobuf reader stops after
//! `runtime.Unknown` field 1, the JSON reader skips every other member without allocating it,
//! the CBOR reader skips every item it does not need. All readers are bounds-checked and
//! depth-limited: arbitrary bytes never panic, they just yield `None`s.

use serde::Deserialize;

/// `k8s\0`: kube-apiserver's protobuf serializer magic (apimachinery `protobuf.go`).
pub const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";
/// CBOR self-described tag 55799 (apimachinery `cbor.go`).
pub const CBOR_MAGIC: &[u8] = &[0xd9, 0xd9, 0xf7];

/// Nesting limit for the skipping readers (real objects are far shallower).
const MAX_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlaintextKind {
    /// Empty strings when the envelope's TypeMeta is missing or unreadable.
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

impl PlaintextKind {
    /// `protobuf`, `json`, `cbor`, `other`: the format name used in reports.
    pub fn format_name(&self) -> &'static str {
        match self {
            PlaintextKind::Protobuf { .. } => "protobuf",
            PlaintextKind::Json { .. } => "json",
            PlaintextKind::Cbor { .. } => "cbor",
            PlaintextKind::Other => "other",
        }
    }
    /// (apiVersion, kind) when known and non-empty.
    pub fn type_meta(&self) -> (Option<&str>, Option<&str>) {
        fn nz(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        match self {
            PlaintextKind::Protobuf { api_version, kind } => (nz(api_version), nz(kind)),
            PlaintextKind::Json { api_version, kind }
            | PlaintextKind::Cbor { api_version, kind } => {
                (api_version.as_deref(), kind.as_deref())
            }
            PlaintextKind::Other => (None, None),
        }
    }
}

/// Classify a value that does not start with `k8s:enc:`.
pub fn classify_plaintext(value: &[u8]) -> PlaintextKind {
    if let Some(body) = value.strip_prefix(PROTOBUF_MAGIC) {
        let (api_version, kind) = protobuf_type_meta(body).unwrap_or_default();
        return PlaintextKind::Protobuf { api_version, kind };
    }
    if let Some(body) = value.strip_prefix(CBOR_MAGIC) {
        let (api_version, kind) = cbor_type_meta(body);
        return PlaintextKind::Cbor { api_version, kind };
    }
    let trimmed = value.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        let (api_version, kind) = json_type_meta(trimmed);
        return PlaintextKind::Json { api_version, kind };
    }
    PlaintextKind::Other
}

// ---------------------------------------------------------------- protobuf

/// A minimal protobuf wire reader: enough to walk fields and skip what is not needed.
struct Pb<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum PbValue<'a> {
    Varint,
    Len(&'a [u8]),
    Fixed,
}

impl<'a> Pb<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Pb { buf, pos: 0 }
    }
    fn varint(&mut self) -> Option<u64> {
        let mut out: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    /// Next field: (number, value). None at the end or on malformed input.
    fn field(&mut self) -> Option<(u64, PbValue<'a>)> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let tag = self.varint()?;
        let num = tag >> 3;
        let v = match tag & 7 {
            0 => {
                self.varint()?;
                PbValue::Varint
            }
            1 => {
                self.take(8)?;
                PbValue::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                PbValue::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                PbValue::Fixed
            }
            _ => return None,
        };
        Some((num, v))
    }
}

/// runtime.Unknown field 1 (TypeMeta) → (apiVersion = 1, kind = 2).
fn protobuf_type_meta(body: &[u8]) -> Option<(String, String)> {
    let mut pb = Pb::new(body);
    while let Some((num, v)) = pb.field() {
        if let (1, PbValue::Len(tm)) = (num, v) {
            let mut inner = Pb::new(tm);
            let (mut api_version, mut kind) = (String::new(), String::new());
            while let Some((n, v)) = inner.field() {
                if let PbValue::Len(s) = v {
                    match n {
                        1 => api_version = String::from_utf8_lossy(s).into_owned(),
                        2 => kind = String::from_utf8_lossy(s).into_owned(),
                        _ => {}
                    }
                }
            }
            return Some((api_version, kind));
        }
    }
    None
}

// ---------------------------------------------------------------- JSON

/// Upstream's `SimpleMetaFactory` reads exactly these two members. serde skips every other
/// member with `IgnoredAny` (a scan, no allocation of the object body).
#[derive(Deserialize)]
struct JsonTypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

fn json_type_meta(value: &[u8]) -> (Option<String>, Option<String>) {
    let mut de = serde_json::Deserializer::from_slice(value);
    // Trailing bytes (the `\n` json.Encoder appends, or anything else) are not our business.
    match JsonTypeMeta::deserialize(&mut de) {
        Ok(m) => (m.api_version, m.kind),
        Err(_) => (None, None),
    }
}

// ---------------------------------------------------------------- CBOR

struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A CBOR item head: major type and argument (None = indefinite length).
struct Head {
    major: u8,
    arg: Option<u64>,
}

impl<'a> Cbor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn head(&mut self) -> Option<Head> {
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let n = 1u64 << (info - 24);
                let bytes = self.take(n)?;
                Some(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            31 if matches!(major, 2..=5 | 7) => None,
            _ => return None,
        };
        Some(Head { major, arg })
    }
    fn at_break(&self) -> bool {
        self.buf.get(self.pos) == Some(&0xff)
    }
    /// Read a text string item (definite or indefinite), or skip a non-text item and return None
    /// in the outer Option's Some. Outer None = malformed.
    fn text_or_skip(&mut self, depth: usize) -> Option<Option<String>> {
        let start = self.pos;
        let h = self.head()?;
        if h.major != 3 {
            self.pos = start;
            self.skip(depth)?;
            return Some(None);
        }
        let mut out = Vec::new();
        match h.arg {
            Some(n) => out.extend_from_slice(self.take(n)?),
            None => loop {
                if self.at_break() {
                    self.pos += 1;
                    break;
                }
                let c = self.head()?;
                if c.major != 3 {
                    return None;
                }
                out.extend_from_slice(self.take(c.arg?)?);
            },
        }
        Some(Some(String::from_utf8_lossy(&out).into_owned()))
    }
    /// Skip one complete data item.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let h = self.head()?;
        match (h.major, h.arg) {
            (0 | 1, Some(_)) => Some(()),
            (2 | 3, Some(n)) => self.take(n).map(|_| ()),
            (2 | 3, None) => loop {
                if self.at_break() {
                    self.pos += 1;
                    return Some(());
                }
                let c = self.head()?;
                if c.major != h.major {
                    return None;
                }
                self.take(c.arg?)?;
            },
            (4, Some(n)) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
                Some(())
            }
            (5, Some(n)) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
                Some(())
            }
            (4 | 5, None) => loop {
                if self.at_break() {
                    self.pos += 1;
                    return Some(());
                }
                self.skip(depth + 1)?;
                if h.major == 5 {
                    self.skip(depth + 1)?;
                }
            },
            (6, Some(_)) => self.skip(depth + 1),
            (7, Some(_)) => Some(()),
            _ => None,
        }
    }
}

/// Lenient read of the top-level map's `apiVersion` and `kind` text members.
fn cbor_type_meta(body: &[u8]) -> (Option<String>, Option<String>) {
    let mut c = Cbor { buf: body, pos: 0 };
    let (mut api_version, mut kind) = (None, None);
    let Some(h) = c.head() else {
        return (None, None);
    };
    if h.major != 5 {
        return (None, None);
    }
    let mut remaining = h.arg;
    loop {
        match remaining {
            Some(0) => break,
            Some(ref mut n) => *n -= 1,
            None if c.at_break() => break,
            None => {}
        }
        let Some(key) = c.text_or_skip(1) else { break };
        let Some(val) = c.text_or_skip(1) else { break };
        match (key.as_deref(), val) {
            (Some("apiVersion"), Some(v)) => api_version = Some(v),
            (Some("kind"), Some(v)) => kind = Some(v),
            _ => {}
        }
        if api_version.is_some() && kind.is_some() {
            break;
        }
    }
    (api_version, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_envelope() {
        let mut v = b"k8s\x00".to_vec();
        v.extend_from_slice(&[0x0a, 0x0c, 0x0a, 0x02, b'v', b'1', 0x12, 0x06]);
        v.extend_from_slice(b"Secret");
        v.extend_from_slice(&[0x12, 0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00]);
        assert_eq!(
            classify_plaintext(&v),
            PlaintextKind::Protobuf {
                api_version: "v1".into(),
                kind: "Secret".into()
            }
        );
        // Truncated envelope: still protobuf, unknown type meta.
        assert_eq!(
            classify_plaintext(&v[..7]),
            PlaintextKind::Protobuf {
                api_version: String::new(),
                kind: String::new()
            }
        );
    }

    #[test]
    fn json_with_whitespace_and_nesting() {
        let v = br#"  {"metadata":{"kind":"nope","x":[1,{"a":"b"}]},"kind":"CronTab","apiVersion":"stable.example.com/v1","spec":{}}
"#;
        assert_eq!(
            classify_plaintext(v),
            PlaintextKind::Json {
                api_version: Some("stable.example.com/v1".into()),
                kind: Some("CronTab".into())
            }
        );
        assert_eq!(
            classify_plaintext(b"{not json"),
            PlaintextKind::Json {
                api_version: None,
                kind: None
            }
        );
    }

    #[test]
    fn cbor_map() {
        // d9d9f7 {"spec": [1, {}], "apiVersion": "v1", "kind": "X"}
        let mut v = vec![0xd9, 0xd9, 0xf7, 0xa3];
        v.extend_from_slice(&[0x64]);
        v.extend_from_slice(b"spec");
        v.extend_from_slice(&[0x82, 0x01, 0xa0]);
        v.push(0x6a);
        v.extend_from_slice(b"apiVersion");
        v.push(0x62);
        v.extend_from_slice(b"v1");
        v.push(0x64);
        v.extend_from_slice(b"kind");
        v.push(0x61);
        v.extend_from_slice(b"X");
        assert_eq!(
            classify_plaintext(&v),
            PlaintextKind::Cbor {
                api_version: Some("v1".into()),
                kind: Some("X".into())
            }
        );
        // Indefinite-length map.
        let mut w = vec![0xd9, 0xd9, 0xf7, 0xbf, 0x64];
        w.extend_from_slice(b"kind");
        w.push(0x61);
        w.extend_from_slice(b"Y");
        w.push(0xff);
        assert_eq!(
            classify_plaintext(&w),
            PlaintextKind::Cbor {
                api_version: None,
                kind: Some("Y".into())
            }
        );
    }

    #[test]
    fn other() {
        assert_eq!(classify_plaintext(b"12345"), PlaintextKind::Other);
        assert_eq!(classify_plaintext(b""), PlaintextKind::Other);
    }
}
