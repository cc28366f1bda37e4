//! Producing and committing rewrites.
//!
//! [`prepare`] turns one stored value into what kube-apiserver would write for it (decrypt with
//! the matching read entry, encrypt for the chain's entry 0 with AAD = the exact etcd key, then
//! decrypt the result and compare it with the original plaintext before it may be committed).
//!
//! [`commit`] writes prepared values in etcd transactions that compare every key's
//! `mod_revision` with the one read and put with `ignore_lease` (leases of Events and
//! masterleases survive). A failed compare returns the current values of the batch (`or_else`
//! gets); changed keys are re-classified — kube-apiserver may already have rewritten them — and
//! only what still needs it is retried. A deleted key is never recreated and a newer value is
//! never overwritten, so retrying after a transport error is always safe.
use super::RotateError;
use super::journal::{SkippedKey, Totals};
use super::plan::{self, Decision, split_by_size};
use crate::codec::chain::{Chain, Transformers};
use crate::codec::{ErrorClass, ProviderKind};
use crate::resource::GroupResource;
use crate::secret::SecretBytes;
use crate::source::RawKv;
use etcd_client::{Compare, CompareOp, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use zeroize::Zeroizing;

/// A value ready to be committed.
///
/// `new_value` is plaintext when the target is identity (decryption), so it lives in
/// [`Zeroizing`] and is wiped when the item is committed or dropped. The one copy we cannot
/// wipe is the one handed to etcd-client's `TxnOp::put` (it takes an owned `Vec` and keeps it
/// in its protobuf request until the request is dropped); it is built per attempt and dropped
/// right after, so at most one such copy per value exists at a time.
#[derive(Clone)]
pub struct Prepared {
    pub key: Vec<u8>,
    /// The mod_revision the value was read at (the compare).
    pub mod_revision: i64,
    pub new_value: Zeroizing<Vec<u8>>,
    pub gr: Option<GroupResource>,
    pub from: String,
}

impl std::fmt::Debug for Prepared {
    /// Never prints the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("mod_revision", &self.mod_revision)
            .field("new_value_len", &self.new_value.len())
            .field("from", &self.from)
            .finish()
    }
}

/// What [`prepare`] decided.
#[derive(Debug)]
pub enum Prep {
    Current,
    Rewrite(Prepared),
    /// Dry run: would be rewritten from `from`.
    WouldRewrite {
        from: String,
    },
    Skip(SkippedKey),
}

/// `resource` as reports show it.
pub fn resource_label(gr: Option<&GroupResource>) -> String {
    gr.map(|g| g.to_string())
        .unwrap_or_else(|| "(no resource)".to_string())
}

/// The writer of `chain` as `provider/key`.
pub fn target_label(chain: &Chain) -> String {
    let (p, n) = chain.writer();
    plan::label(Some(p), n)
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Equal without an early exit (the plaintexts are secret).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decide and, if needed, produce the rewrite of `kv` for the chain of `gr`.
pub async fn prepare(
    transformers: &Transformers,
    gr: Option<&GroupResource>,
    kv: &RawKv,
    dry_run: bool,
) -> Result<Prep, RotateError> {
    let chain = transformers.chain_for(gr);
    let id = chain.identify(&kv.value);
    let (plaintext, from) = match plan::decide(&id) {
        Decision::Current => return Ok(Prep::Current),
        Decision::UnknownKey { from } => {
            return Ok(Prep::Skip(SkippedKey {
                key: key_text(&kv.key),
                status: "unknown-key".into(),
                from: Some(from),
                detail: Some(
                    "no configured provider/key matches this value's prefix; left unchanged".into(),
                ),
            }));
        }
        Decision::EncryptPlaintext => (SecretBytes::from_slice(&kv.value), plan::from_label(&id)),
        Decision::Rewrite => match chain.read(&kv.key, &kv.value).await {
            // Decided by decrypting (for an ambiguous prefix the read is what tells which
            // entry opens it): not stale = written by the writer. Left untouched, as
            // kube-apiserver would serve it.
            Ok(out) if !out.stale => return Ok(Prep::Current),
            // aescbc has no MAC: with another key's prefix matching too, this "success" may be
            // garbage from the wrong key (p ≈ 1/256). Never rewrite it.
            Ok(out) if out.unauthenticated_overlap => {
                let name = out.name.as_deref().unwrap_or("?");
                return Ok(Prep::Skip(SkippedKey {
                    key: key_text(&kv.key),
                    status: "ambiguous".into(),
                    from: Some(plan::label(Some(out.provider), out.name.as_deref())),
                    detail: Some(format!(
                        "read through aescbc key {name} whose prefix overlaps another key's: atrest cannot tell which key wrote it; rename the keys"
                    )),
                }));
            }
            Ok(out) => (
                out.plaintext,
                plan::label(Some(out.provider), out.name.as_deref()),
            ),
            Err(e) => {
                let status = if e.class == ErrorClass::UnknownKey {
                    "unknown-key"
                } else {
                    "undecryptable"
                };
                return Ok(Prep::Skip(SkippedKey {
                    key: key_text(&kv.key),
                    status: status.into(),
                    from: Some(plan::from_label(&id)),
                    detail: Some(e.to_string()),
                }));
            }
        },
    };
    let (writer_kind, _) = chain.writer();
    if writer_kind == ProviderKind::KmsV1 {
        return Err(RotateError::KmsV1Target {
            resource: resource_label(gr),
            to: target_label(chain),
        });
    }
    if dry_run {
        return Ok(Prep::WouldRewrite { from });
    }
    let new_value = chain
        .write(&kv.key, plaintext.expose())
        .await
        .map(Zeroizing::new)
        .map_err(|e| RotateError::Encrypt {
            key: key_text(&kv.key),
            resource: resource_label(gr),
            to: target_label(chain),
            message: e.to_string(),
        })?;
    self_check(chain, &kv.key, &new_value, &plaintext).await?;
    Ok(Prep::Rewrite(Prepared {
        key: kv.key.clone(),
        mod_revision: kv.mod_revision,
        new_value,
        gr: gr.cloned(),
        from,
    }))
}

/// Decrypt what was produced, as kube-apiserver will: it must come back through entry 0, not
/// stale, equal to the original plaintext.
async fn self_check(
    chain: &Chain,
    key: &[u8],
    produced: &[u8],
    plaintext: &SecretBytes,
) -> Result<(), RotateError> {
    let fail = |why: String| RotateError::SelfCheck {
        key: key_text(key),
        why,
    };
    let back = chain
        .read(key, produced)
        .await
        .map_err(|e| fail(format!("the new value does not decrypt: {e}")))?;
    if back.index != 0 || back.stale {
        return Err(fail(format!(
            "the new value reads through entry {} (stale: {}), not as current",
            back.index, back.stale
        )));
    }
    if !same_bytes(back.plaintext.expose(), plaintext.expose()) {
        return Err(fail(
            "the new value decrypts to different bytes than the original".into(),
        ));
    }
    Ok(())
}

/// Limits and retry policy of commits.
#[derive(Debug, Clone, Copy)]
pub struct CommitLimits {
    pub max_ops: usize,
    pub max_bytes: usize,
    /// Rounds of re-classification after failed compares.
    pub max_conflict_rounds: u32,
    /// Attempts of one transaction on transport errors (safe: the compare makes it idempotent).
    pub transport_attempts: u32,
    pub command_timeout: Duration,
}

/// The result of committing one unit's rewrites.
#[derive(Debug, Default)]
pub struct CommitOutcome {
    pub counts: Totals,
    pub skipped: Vec<SkippedKey>,
    /// (resource, from, to) → objects rewritten.
    pub plan: BTreeMap<(String, String, String), u64>,
    /// Revision of the last successful transaction.
    pub revision: i64,
}

fn is_size_refusal(e: &etcd_client::Error) -> bool {
    let s = e.to_string();
    s.contains("too large") || s.contains("too many operations")
}

fn etcd_err(context: String, e: impl std::fmt::Display) -> RotateError {
    RotateError::Etcd {
        context,
        message: e.to_string(),
    }
}

/// Commit `items` with compare-and-swap, re-classifying conflicting keys.
pub async fn commit(
    kv: &mut KvClient,
    transformers: &Transformers,
    items: Vec<Prepared>,
    limits: CommitLimits,
) -> Result<CommitOutcome, RotateError> {
    let mut out = CommitOutcome::default();
    let mut pending = items;
    let mut round = 0u32;
    while !pending.is_empty() {
        if round > limits.max_conflict_rounds {
            for p in pending.drain(..) {
                out.counts.gave_up += 1;
                out.skipped.push(SkippedKey {
                    key: key_text(&p.key),
                    status: "gave-up".into(),
                    from: Some(p.from),
                    detail: Some(format!(
                        "changed by another writer during {} attempts; left for the verification pass",
                        limits.max_conflict_rounds + 1
                    )),
                });
            }
            break;
        }
        round += 1;
        let sizes: Vec<(usize, usize)> = pending
            .iter()
            .map(|p| (p.key.len(), p.new_value.len()))
            .collect();
        let mut queue: VecDeque<Vec<Prepared>> = VecDeque::new();
        let mut rest = pending.into_iter();
        for r in split_by_size(&sizes, limits.max_ops, limits.max_bytes) {
            queue.push_back(rest.by_ref().take(r.len()).collect());
        }
        let mut retry = Vec::new();
        while let Some(chunk) = queue.pop_front() {
            match commit_chunk(kv, &chunk, limits).await {
                Ok(resp) if resp.succeeded() => {
                    if let Some(h) = resp.header() {
                        out.revision = out.revision.max(h.revision());
                    }
                    for p in chunk {
                        out.counts.rewritten += 1;
                        out.counts.bytes_written += p.new_value.len() as u64;
                        let to = target_label(transformers.chain_for(p.gr.as_ref()));
                        *out.plan
                            .entry((resource_label(p.gr.as_ref()), p.from, to))
                            .or_default() += 1;
                    }
                }
                Ok(resp) => {
                    resolve_conflict(transformers, chunk, &resp, &mut out, &mut retry).await?;
                }
                Err(e) if is_size_refusal(&e) && chunk.len() > 1 => {
                    // The server's limits are lower than ours: halve and go on.
                    let mut a = chunk;
                    let b = a.split_off(a.len() / 2);
                    queue.push_front(b);
                    queue.push_front(a);
                }
                Err(e) => {
                    let first = chunk.first().map(|p| key_text(&p.key)).unwrap_or_default();
                    return Err(etcd_err(
                        format!("committing {} rewrites starting at {first}", chunk.len()),
                        e,
                    ));
                }
            }
        }
        pending = retry;
    }
    Ok(out)
}

/// One transaction, retried on transport errors and timeouts.
async fn commit_chunk(
    kv: &mut KvClient,
    chunk: &[Prepared],
    limits: CommitLimits,
) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
    let compares: Vec<Compare> = chunk
        .iter()
        .map(|p| Compare::mod_revision(p.key.clone(), CompareOp::Equal, p.mod_revision))
        .collect();
    // Built per attempt (not cloned up front): the put's value copy lives in etcd-client's
    // request, which we cannot wipe, so keep just one alive at a time.
    let build = || {
        let compares: Vec<Compare> = compares.clone();
        let puts: Vec<TxnOp> = chunk
            .iter()
            .map(|p| {
                TxnOp::put(
                    p.key.clone(),
                    p.new_value.to_vec(),
                    Some(PutOptions::new().with_ignore_lease()),
                )
            })
            .collect();
        let gets: Vec<TxnOp> = chunk
            .iter()
            .map(|p| TxnOp::get(p.key.clone(), None))
            .collect();
        Txn::new().when(compares).and_then(puts).or_else(gets)
    };
    let attempts = limits.transport_attempts.max(1);
    let mut last = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
        }
        match tokio::time::timeout(limits.command_timeout, kv.txn(build())).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) if is_size_refusal(&e) => return Err(e),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(etcd_client::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} (--command-timeout)",
                        humantime::format_duration(limits.command_timeout)
                    ),
                )))
            }
        }
    }
    Err(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no attempt made".into())))
}

/// A compare failed: look at what the `or_else` gets returned, key by key.
async fn resolve_conflict(
    transformers: &Transformers,
    chunk: Vec<Prepared>,
    resp: &etcd_client::TxnResponse,
    out: &mut CommitOutcome,
    retry: &mut Vec<Prepared>,
) -> Result<(), RotateError> {
    let responses = resp.op_responses();
    if responses.len() != chunk.len() {
        return Err(RotateError::Etcd {
            context: "reading back keys after a failed compare".into(),
            message: format!(
                "etcd answered {} results for {} keys",
                responses.len(),
                chunk.len()
            ),
        });
    }
    for (p, r) in chunk.into_iter().zip(responses) {
        // The re-read value may be plaintext (identity): `RawKv` wipes it when dropped.
        let now = match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|k| RawKv {
                key: k.key().to_vec(),
                value: k.value().to_vec(),
                create_revision: k.create_revision(),
                mod_revision: k.mod_revision(),
                version: k.version(),
                lease: k.lease(),
            }),
            _ => None,
        };
        match &now {
            // Deleted since we read it: never recreate.
            None => {
                out.counts.vanished += 1;
                Ok(())
            }
            // Untouched: another key of the batch made the compare fail; retry as prepared.
            Some(k) if k.mod_revision == p.mod_revision => {
                retry.push(p);
                Ok(())
            }
            Some(k) => {
                out.counts.conflicts_retried += 1;
                match prepare(transformers, p.gr.as_ref(), k, false).await {
                    Ok(Prep::Current) => {
                        out.counts.resolved_concurrently += 1;
                        Ok(())
                    }
                    Ok(Prep::Rewrite(np)) => {
                        retry.push(np);
                        Ok(())
                    }
                    Ok(Prep::Skip(s)) => {
                        out.counts.count_skip(&s);
                        out.skipped.push(s);
                        Ok(())
                    }
                    Ok(Prep::WouldRewrite { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_compares_fully() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
        assert!(same_bytes(b"", b""));
    }

    #[test]
    fn prepared_debug_hides_value() {
        let p = Prepared {
            key: b"/registry/secrets/a/b".to_vec(),
            mod_revision: 3,
            new_value: Zeroizing::new(b"TOPSECRETVALUE".to_vec()),
            gr: None,
            from: "identity".into(),
        };
        let d = format!("{p:?}");
        assert!(!d.contains("TOPSECRET"));
        assert!(d.contains("/registry/secrets/a/b"));
    }
}
