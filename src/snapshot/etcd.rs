//! etcd's layer on top of bbolt (spec §3): the `key` bucket's revision keys (8-byte main BE,
//! `_`, 8-byte sub BE, optional `t` tombstone mark), the `mvccpb.KeyValue` values, and the
//! `meta` bucket (consistent index, term, compaction revisions, storage version).
//!
//! Values are decoded twice over, on purpose: [`KvRef`] is a small zero-copy protobuf reader
//! used by the index pass (it needs only the user key, and must not copy values); the owned
//! [`RawKv`] handed downstream is decoded with prost's generated `mvccpb::KeyValue`. A unit test
//! checks that both agree.
use crate::proto::mvccpb;
use crate::source::RawKv;

/// A `key` bucket revision: `(main, sub)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    /// The 17-byte bucket key (no tombstone mark).
    pub fn to_key(self) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        k[8] = b'_';
        k[9..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        k
    }
    /// The 18-byte tombstone key.
    pub fn to_tombstone_key(self) -> [u8; 18] {
        let mut k = [0u8; 18];
        k[..17].copy_from_slice(&self.to_key());
        k[17] = b't';
        k
    }
}

/// Parse a `key` bucket key: `(revision, is_tombstone)`; Err says what is wrong.
pub fn parse_revision_key(k: &[u8]) -> Result<(Revision, bool), String> {
    let tomb = match k.len() {
        17 => false,
        18 if k.get(17) == Some(&b't') => true,
        18 => return Err("18-byte revision key without the 't' tombstone mark".into()),
        n => return Err(format!("revision key of {n} bytes (want 17 or 18)")),
    };
    if k.get(8) != Some(&b'_') {
        return Err("revision key without the '_' separator at byte 8".into());
    }
    let be = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    };
    let main = be(k.get(..8).unwrap_or(&[0; 8]));
    let sub = be(k.get(9..17).unwrap_or(&[0; 8]));
    let (Ok(main), Ok(sub)) = (i64::try_from(main), i64::try_from(sub)) else {
        return Err("negative revision in revision key".into());
    };
    Ok((Revision { main, sub }, tomb))
}

/// A borrowed view of an `mvccpb.KeyValue` (zero copy). Its `Debug` prints the value's length,
/// never the value (it may be a plaintext Secret).
#[derive(Default, PartialEq, Eq)]
pub struct KvRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

impl std::fmt::Debug for KvRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvRef")
            .field("key", &String::from_utf8_lossy(self.key))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("value_len", &self.value.len())
            .field("lease", &self.lease)
            .finish()
    }
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("varint cut short")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

impl<'a> KvRef<'a> {
    /// Decode protobuf bytes; unknown fields are skipped, proto3 defaults apply.
    pub fn decode(b: &'a [u8]) -> Result<KvRef<'a>, String> {
        let mut kv = KvRef::default();
        let mut pos = 0usize;
        while pos < b.len() {
            let tag = varint(b, &mut pos)?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    let v = varint(b, &mut pos)? as i64;
                    match field {
                        2 => kv.create_revision = v,
                        3 => kv.mod_revision = v,
                        4 => kv.version = v,
                        6 => kv.lease = v,
                        _ => {}
                    }
                }
                2 => {
                    let len = varint(b, &mut pos)?;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| pos.checked_add(l))
                        .filter(|e| *e <= b.len())
                        .ok_or("length-delimited field runs past the value")?;
                    let s = b.get(pos..end).unwrap_or(&[]);
                    match field {
                        1 => kv.key = s,
                        5 => kv.value = s,
                        _ => {}
                    }
                    pos = end;
                }
                1 => {
                    pos = pos
                        .checked_add(8)
                        .filter(|e| *e <= b.len())
                        .ok_or("fixed64 cut short")?
                }
                5 => {
                    pos = pos
                        .checked_add(4)
                        .filter(|e| *e <= b.len())
                        .ok_or("fixed32 cut short")?
                }
                w => return Err(format!("unsupported protobuf wire type {w}")),
            }
            if field == 0 {
                return Err("protobuf field number 0".into());
            }
        }
        Ok(kv)
    }
}

/// Decode a stored value into the owned record, with prost's generated type.
pub fn decode_raw_kv(value: &[u8]) -> Result<RawKv, String> {
    let kv = <mvccpb::KeyValue as prost::Message>::decode(value)
        .map_err(|e| format!("not an mvccpb.KeyValue: {e}"))?;
    Ok(RawKv {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    })
}

/// What the `meta` bucket says (spec §3.5). Absent keys are None.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaBucket {
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    pub scheduled_compact_revision: Option<i64>,
    pub finished_compact_revision: Option<i64>,
    pub storage_version: Option<String>,
    pub has_conf_state: bool,
}

impl MetaBucket {
    /// Take one `meta` entry into account; Err for a malformed known key.
    pub fn absorb(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let be64 = |v: &[u8], name: &str| -> Result<u64, String> {
            let a: [u8; 8] = v
                .try_into()
                .map_err(|_| format!("meta/{name} is {} bytes, want 8", v.len()))?;
            Ok(u64::from_be_bytes(a))
        };
        let rev = |v: &[u8], name: &str| -> Result<i64, String> {
            parse_revision_key(v)
                .map(|(r, _)| r.main)
                .map_err(|e| format!("meta/{name}: {e}"))
        };
        match key {
            b"consistent_index" => self.consistent_index = Some(be64(value, "consistent_index")?),
            b"term" => self.term = Some(be64(value, "term")?),
            b"scheduledCompactRev" => {
                self.scheduled_compact_revision = Some(rev(value, "scheduledCompactRev")?)
            }
            b"finishedCompactRev" => {
                self.finished_compact_revision = Some(rev(value, "finishedCompactRev")?)
            }
            b"storageVersion" => {
                self.storage_version = Some(String::from_utf8_lossy(value).into_owned())
            }
            b"confState" => self.has_conf_state = true,
            _ => {}
        }
        Ok(())
    }

    /// etcdutl 3.6's `version` column: storageVersion parsed as semver `MAJOR.MINOR.PATCH` and
    /// printed back; empty when absent or unparsable (so empty for 3.4/3.5 files).
    pub fn etcdutl_version(&self) -> String {
        let Some(v) = self.storage_version.as_deref() else {
            return String::new();
        };
        let parts: Vec<&str> = v.split('.').collect();
        let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse::<u64>().ok()).collect();
        match nums.as_deref() {
            Some([a, b, c]) => format!("{a}.{b}.{c}"),
            _ => String::new(),
        }
    }

    /// The storage schema generation, as etcd 3.6 detects it (`UnsafeDetectSchemaVersion`),
    /// with "3.4" for files that have neither storageVersion nor confState/term.
    pub fn schema(&self) -> String {
        let v = self.etcdutl_version();
        if !v.is_empty() {
            return v
                .rsplit_once('.')
                .map(|(mm, _)| mm.to_string())
                .unwrap_or(v);
        }
        if self.has_conf_state && self.term.unwrap_or(0) != 0 {
            "3.5".into()
        } else {
            "3.4".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn revision_keys_round_trip() {
        let r = Revision { main: 98, sub: 2 };
        assert_eq!(parse_revision_key(&r.to_key()), Ok((r, false)));
        assert_eq!(parse_revision_key(&r.to_tombstone_key()), Ok((r, true)));
        assert!(parse_revision_key(b"short").is_err());
        let mut bad = r.to_key();
        bad[8] = b'x';
        assert!(parse_revision_key(&bad).is_err());
        let mut neg = r.to_key();
        neg[0] = 0x80;
        assert!(parse_revision_key(&neg).is_err());
    }

    #[test]
    fn kvref_agrees_with_prost() {
        let kv = mvccpb::KeyValue {
            key: b"/registry/secrets/a/b".to_vec(),
            create_revision: 5,
            mod_revision: 9,
            version: 3,
            value: vec![7u8; 300],
            lease: 0x390d_a203_252a_760a,
        };
        let bytes = kv.encode_to_vec();
        let r = KvRef::decode(&bytes).expect("decodes");
        assert_eq!(r.key, kv.key.as_slice());
        // Compared without assert_eq!, which would print the value on failure.
        assert!(r.value == kv.value.as_slice(), "value differs");
        assert_eq!(
            (r.create_revision, r.mod_revision, r.version, r.lease),
            (5, 9, 3, kv.lease)
        );
        let raw = decode_raw_kv(&bytes).expect("decodes");
        assert_eq!(
            (raw.key.clone(), raw.mod_revision, raw.lease),
            (kv.key, 9, kv.lease)
        );
        // Truncations never panic and are errors (or a valid prefix).
        for n in 0..bytes.len() {
            let _ = KvRef::decode(&bytes[..n]);
        }
        assert!(KvRef::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn kvref_debug_never_prints_the_value() {
        let kv = mvccpb::KeyValue {
            key: b"/registry/secrets/default/db".to_vec(),
            value: b"k8s-plaintext-password-hunter2".to_vec(),
            ..Default::default()
        };
        let bytes = kv.encode_to_vec();
        let r = KvRef::decode(&bytes).expect("decodes");
        let shown = format!("{r:?} {r:#?}");
        assert!(!shown.contains("hunter2"), "Debug leaks the value");
        assert!(
            !shown.contains("104, 117, 110"),
            "Debug leaks the value bytes"
        );
        assert!(shown.contains("value_len: 30"), "Debug shows the length");
        assert!(shown.contains("/registry/secrets/default/db"));
    }

    #[test]
    fn storage_version_like_etcdutl() {
        let mut m = MetaBucket::default();
        assert_eq!(m.etcdutl_version(), "");
        assert_eq!(m.schema(), "3.4");
        m.absorb(b"storageVersion", b"3.6.0").expect("ok");
        assert_eq!(m.etcdutl_version(), "3.6.0");
        assert_eq!(m.schema(), "3.6");
        m.absorb(b"storageVersion", b"garbage").expect("ok");
        assert_eq!(m.etcdutl_version(), "");
        assert!(m.absorb(b"term", b"123").is_err());
    }
}
