//! Integrity figures: the SHA-256 trailer `etcdctl snapshot save` appends (spec §4.1) and
//! etcd's CRC-32C "hash" of the bucket contents that `snapshot status` prints (spec §4.2).
use super::{ReadProgress, SnapshotError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Trailer length.
pub const TRAILER_LEN: u64 = 32;

/// Whether a file of `len` bytes carries a trailer: etcd's own rule, `size % 512 == 32`.
pub fn has_trailer(len: u64) -> bool {
    len % 512 == TRAILER_LEN
}

/// Result of checking the trailer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrailerCheck {
    pub present: bool,
    /// None when absent.
    pub matches: Option<bool>,
    /// Hex of the stored trailer (not secret: a digest of the whole file).
    pub stored: Option<String>,
    pub computed: Option<String>,
}

/// Stream the body of `path` through SHA-256 and compare with its trailer. Reads in 1 MiB
/// chunks: memory stays flat whatever the file size.
pub fn check_trailer(
    path: &Path,
    progress: &dyn ReadProgress,
) -> Result<TrailerCheck, SnapshotError> {
    let p = path.display().to_string();
    let io = |source| SnapshotError::Io {
        path: p.clone(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if !has_trailer(len) {
        return Ok(TrailerCheck {
            present: false,
            matches: None,
            stored: None,
            computed: None,
        });
    }
    let body = len - TRAILER_LEN;
    progress.start("verifying SHA-256", body);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = body;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        f.read_exact(chunk).map_err(io)?;
        h.update(&*chunk);
        left -= n as u64;
        progress.advance(n as u64);
    }
    let mut stored = [0u8; 32];
    f.read_exact(&mut stored).map_err(io)?;
    progress.finish();
    let computed = h.finalize();
    Ok(TrailerCheck {
        present: true,
        matches: Some(computed.as_slice() == stored),
        stored: Some(hex::encode(stored)),
        computed: Some(hex::encode(computed)),
    })
}

/// etcd's status hash: CRC-32C (Castagnoli) over bucket names and their keys and values.
#[derive(Default)]
pub struct EtcdHash(u32);
impl EtcdHash {
    pub fn write(&mut self, data: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, data);
    }
    pub fn sum(&self) -> u32 {
        self.0
    }
}

/// The length of the bbolt database in `path`: the whole file, or without the 32-byte trailer
/// when [`check_trailer`] found one. `None` means "the whole file" (no trailer).
pub fn body_len(path: &Path, trailer: &TrailerCheck) -> Result<Option<u64>, SnapshotError> {
    let file_len = std::fs::metadata(path)
        .map_err(|source| SnapshotError::Io {
            path: path.display().to_string(),
            source,
        })?
        .len();
    Ok(trailer
        .present
        .then(|| file_len.saturating_sub(TRAILER_LEN)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crc32c_is_castagnoli() {
        // The standard CRC-32C check value.
        let mut h = EtcdHash::default();
        h.write(b"1234");
        h.write(b"56789");
        assert_eq!(h.sum(), 0xE306_9283);
        assert!(has_trailer(20_512));
        assert!(!has_trailer(20_480));
    }
}
