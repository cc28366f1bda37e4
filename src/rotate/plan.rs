//! What to do with each object, decided from its bytes alone, and how examined objects are
//! grouped into units of work that fit in one etcd transaction.
//!
//! A unit covers a contiguous run of examined keys (current and skipped ones included) so that
//! once its writes are committed the journal can say "everything up to `last_key` is done".
//! Units close at `--batch` rewrites, at the request-byte budget, or after a bounded number of
//! examined keys (so a mostly-current keyspace still checkpoints regularly).
use super::journal::SkippedKey;
use crate::codec::ProviderKind;
use crate::codec::chain::Identified;
use crate::resource::GroupResource;
use crate::source::RawKv;

/// The decision taken before any decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Written by the writer (first provider, first key): leave it, its mod_revision stays.
    Current,
    /// Readable through a later entry (or plaintext read by a later identity): decrypt and rewrite.
    Rewrite,
    /// Plaintext in a chain without identity: kube-apiserver cannot read it; the value itself is
    /// the plaintext, and it must be encrypted.
    EncryptPlaintext,
    /// `k8s:enc:` that no configured entry matches: never written.
    UnknownKey { from: String },
}

/// Decide from [`Identified`] (no key material needed).
pub fn decide(id: &Identified) -> Decision {
    match id {
        Identified::Plaintext {
            identity_index: Some(0),
        } => Decision::Current,
        Identified::Plaintext {
            identity_index: Some(_),
        } => Decision::Rewrite,
        Identified::Plaintext {
            identity_index: None,
        } => Decision::EncryptPlaintext,
        Identified::Matched {
            index,
            stale_hint,
            ambiguous,
            ..
        } => {
            // Overlapping prefixes (spec §8 trap 3): the prefix does not say which key wrote
            // the value; only a read does (the writer re-checks staleness after decrypting).
            if *index == 0 && !*stale_hint && !*ambiguous {
                Decision::Current
            } else {
                Decision::Rewrite
            }
        }
        Identified::Unknown { provider, name } => Decision::UnknownKey {
            from: label(*provider, name.as_deref()),
        },
    }
}

/// `provider/key` as reports show it (`identity`, `aescbc/key1`, `kms/my-plugin`, `unknown`).
pub fn label(provider: Option<ProviderKind>, name: Option<&str>) -> String {
    match (provider, name) {
        (None, _) => "unknown".to_string(),
        (Some(ProviderKind::Identity), _) => "identity".to_string(),
        (Some(p), Some(n)) => format!("{}/{n}", p.report_name()),
        (Some(p), None) => p.report_name().to_string(),
    }
}

/// The `provider/key` an identified value was written with.
pub fn from_label(id: &Identified) -> String {
    match id {
        Identified::Plaintext { .. } => "identity".to_string(),
        Identified::Matched { provider, name, .. } => label(Some(*provider), name.as_deref()),
        Identified::Unknown { provider, name } => label(*provider, name.as_deref()),
    }
}

/// One object that needs a rewrite, as read. The value may be plaintext (identity): it is
/// wiped when the item is dropped.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub kv: RawKv,
    pub gr: Option<GroupResource>,
}

/// A contiguous run of examined keys and the rewrites among them.
#[derive(Debug, Default)]
pub struct Unit {
    pub seq: u64,
    pub work: Vec<WorkItem>,
    /// Estimated request bytes of `work`.
    pub bytes: usize,
    pub examined: u64,
    pub bytes_examined: u64,
    pub already_current: u64,
    pub skipped: Vec<SkippedKey>,
    /// The last key examined (the journal's resume point once the unit is committed).
    pub last_key: Vec<u8>,
}

/// Limits of one unit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rewrites per transaction (≤ etcd `--max-txn-ops`).
    pub max_ops: usize,
    /// Request-byte budget of one transaction (below etcd `--max-request-bytes`).
    pub max_bytes: usize,
    /// Examined keys after which a unit closes even without rewrites.
    pub max_examined: u64,
}

/// Per-op overhead estimate: compare + put framing, plus room for the value to grow when it is
/// encrypted (IV/nonce/tag/prefix, KMS v2's EncryptedObject with its encrypted seed).
pub const OP_OVERHEAD: usize = 1024;

/// Bytes one rewrite adds to a transaction request: the key three times (the compare, the
/// put and the `or_else` get), the new value (estimated from the old one), framing.
pub fn op_bytes(kv: &RawKv) -> usize {
    kv.key.len().saturating_mul(3) + kv.value.len() + OP_OVERHEAD
}

/// Accumulates examined objects into [`Unit`]s.
pub struct UnitBuilder {
    limits: Limits,
    cur: Unit,
    next_seq: u64,
}

impl UnitBuilder {
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_ops: limits.max_ops.max(1),
            max_bytes: limits.max_bytes.max(1),
            max_examined: limits.max_examined.max(1),
        };
        UnitBuilder {
            limits,
            cur: Unit::default(),
            next_seq: 0,
        }
    }

    fn take(&mut self) -> Unit {
        let mut u = std::mem::take(&mut self.cur);
        u.seq = self.next_seq;
        self.next_seq += 1;
        u
    }

    fn note_examined(&mut self, kv: &RawKv) {
        self.cur.examined += 1;
        self.cur.bytes_examined += kv.value.len() as u64;
        self.cur.last_key.clear();
        self.cur.last_key.extend_from_slice(&kv.key);
    }

    fn close_if_full(&mut self) -> Option<Unit> {
        if self.cur.work.len() >= self.limits.max_ops
            || self.cur.bytes >= self.limits.max_bytes
            || self.cur.examined >= self.limits.max_examined
        {
            Some(self.take())
        } else {
            None
        }
    }

    /// An object that is already current.
    pub fn push_current(&mut self, kv: &RawKv) -> Option<Unit> {
        self.note_examined(kv);
        self.cur.already_current += 1;
        self.close_if_full()
    }

    /// An object left alone (unknown-key).
    pub fn push_skipped(&mut self, kv: &RawKv, skipped: SkippedKey) -> Option<Unit> {
        self.note_examined(kv);
        self.cur.skipped.push(skipped);
        self.close_if_full()
    }

    /// An object to rewrite. Returns the previous unit first if this one would not fit in it.
    pub fn push_work(&mut self, item: WorkItem) -> Option<Unit> {
        let b = op_bytes(&item.kv);
        let closed = if !self.cur.work.is_empty() && self.cur.bytes + b > self.limits.max_bytes {
            Some(self.take())
        } else {
            None
        };
        self.note_examined(&item.kv);
        self.cur.bytes += b;
        self.cur.work.push(item);
        match closed {
            Some(u) => Some(u),
            None => self.close_if_full(),
        }
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self) -> Option<Unit> {
        if self.cur.examined == 0 {
            None
        } else {
            Some(self.take())
        }
    }
}

/// Split prepared puts (`(key_len, value_len)` sizes) into transactions of at most `max_ops`
/// operations and `max_bytes` request bytes; returns the split points as index ranges.
pub fn split_by_size(
    sizes: &[(usize, usize)],
    max_ops: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let max_ops = max_ops.max(1);
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut bytes = 0usize;
    for (i, &(k, v)) in sizes.iter().enumerate() {
        // The key travels three times: compare, put, `or_else` get.
        let b = k.saturating_mul(3) + v + 64;
        if i > start && (i - start >= max_ops || bytes + b > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, vlen: usize) -> RawKv {
        RawKv {
            key: key.as_bytes().to_vec(),
            value: vec![b'x'; vlen],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        }
    }

    fn item(key: &str, vlen: usize) -> WorkItem {
        WorkItem {
            kv: kv(key, vlen),
            gr: None,
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(
            decide(&Identified::Plaintext {
                identity_index: Some(0)
            }),
            Decision::Current
        );
        assert_eq!(
            decide(&Identified::Plaintext {
                identity_index: Some(2)
            }),
            Decision::Rewrite
        );
        assert_eq!(
            decide(&Identified::Plaintext {
                identity_index: None
            }),
            Decision::EncryptPlaintext
        );
        let m = |index, stale_hint| Identified::Matched {
            index,
            provider: ProviderKind::AesCbc,
            name: Some("k1".into()),
            kms_v2: None,
            stale_hint,
            ambiguous: false,
        };
        assert_eq!(decide(&m(0, false)), Decision::Current);
        assert_eq!(decide(&m(0, true)), Decision::Rewrite);
        assert_eq!(decide(&m(1, true)), Decision::Rewrite);
        assert_eq!(
            decide(&Identified::Unknown {
                provider: Some(ProviderKind::AesGcm),
                name: Some("gone".into())
            }),
            Decision::UnknownKey {
                from: "aesgcm/gone".into()
            }
        );
        assert_eq!(from_label(&m(1, true)), "aescbc/k1");
        // Review: an ambiguous match at entry 0 must be read, not trusted as current.
        let amb = Identified::Matched {
            index: 0,
            provider: ProviderKind::AesCbc,
            name: Some("k1".into()),
            kms_v2: None,
            stale_hint: false,
            ambiguous: true,
        };
        assert_eq!(decide(&amb), Decision::Rewrite);
        assert_eq!(label(Some(ProviderKind::KmsV2), Some("p")), "kms/p");
    }

    /// Review: the txn carries the key three times (compare, put, or_else get).
    #[test]
    fn byte_budget_counts_the_key_three_times() {
        let k = kv(&"k".repeat(1000), 10);
        assert_eq!(op_bytes(&k), 3000 + 10 + OP_OVERHEAD);
        // Two puts of (key 1000, value 0) cost 2 * (3000 + 64): a 6100-byte budget holds one.
        let split = split_by_size(&[(1000, 0), (1000, 0)], 10, 6100);
        assert_eq!(split, vec![0..1, 1..2]);
        let split = split_by_size(&[(1000, 0), (1000, 0)], 10, 6128);
        assert_eq!(split, vec![0..2]);
    }

    #[test]
    fn units_close_at_op_count() {
        let mut b = UnitBuilder::new(Limits {
            max_ops: 3,
            max_bytes: 1 << 20,
            max_examined: 100,
        });
        let mut units = Vec::new();
        for i in 0..7 {
            if i % 2 == 0
                && let Some(u) = b.push_current(&kv(&format!("/k{i}"), 10))
            {
                units.push(u);
            }
            if let Some(u) = b.push_work(item(&format!("/k{i}w"), 10)) {
                units.push(u);
            }
        }
        units.extend(b.finish());
        let works: Vec<usize> = units.iter().map(|u| u.work.len()).collect();
        assert_eq!(works, vec![3, 3, 1]);
        let examined: u64 = units.iter().map(|u| u.examined).sum();
        assert_eq!(examined, 11);
        assert_eq!(units[0].last_key, b"/k2w");
        assert_eq!(
            units.iter().map(|u| u.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn units_close_before_exceeding_bytes() {
        let mut b = UnitBuilder::new(Limits {
            max_ops: 100,
            max_bytes: 3 * (OP_OVERHEAD + 1000),
            max_examined: 100,
        });
        let mut units = Vec::new();
        // Key 2 bytes, three times (compare, put, get): 6 + 994 = 1000 per op plus overhead.
        for i in 0..5 {
            if let Some(u) = b.push_work(item(&format!("/{i}"), 1000 - 6)) {
                units.push(u);
            }
        }
        units.extend(b.finish());
        for u in &units {
            assert!(u.bytes <= 3 * (OP_OVERHEAD + 1000), "{}", u.bytes);
        }
        assert_eq!(units.iter().map(|u| u.work.len()).sum::<usize>(), 5);
        // The unit that closed because the next item did not fit ends at the item before it.
        assert_eq!(units[0].last_key, b"/2");
    }

    #[test]
    fn a_huge_object_still_gets_its_own_unit() {
        let mut b = UnitBuilder::new(Limits {
            max_ops: 100,
            max_bytes: 100,
            max_examined: 100,
        });
        assert!(b.push_work(item("/big", 5000)).is_some());
        assert!(b.finish().is_none());
    }

    #[test]
    fn current_only_units_checkpoint_regularly() {
        let mut b = UnitBuilder::new(Limits {
            max_ops: 128,
            max_bytes: 1 << 20,
            max_examined: 10,
        });
        let n = (0..25)
            .filter_map(|i| b.push_current(&kv(&format!("/{i}"), 1)))
            .count();
        assert_eq!(n, 2);
        assert_eq!(b.finish().map(|u| u.examined), Some(5));
    }

    #[test]
    fn split_respects_ops_and_bytes() {
        let sizes = vec![(10, 100); 10];
        assert_eq!(split_by_size(&sizes, 4, 1 << 20), vec![0..4, 4..8, 8..10]);
        let r = split_by_size(&sizes, 100, 400);
        assert!(r.len() >= 4);
        assert_eq!(r.iter().map(|x| x.len()).sum::<usize>(), 10);
        assert!(split_by_size(&[], 4, 10).is_empty());
        assert_eq!(split_by_size(&[(1, 1_000_000)], 4, 10), vec![0..1]);
    }
}
