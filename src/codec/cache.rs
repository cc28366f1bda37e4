//! A bounded LRU of decrypted DEKs/seeds with single-flight misses, shared by the KMS
//! providers. kube-apiserver caches plugin answers too (KMS v1 by EDEK, KMS v2 by a digest of
//! the EncryptedObject's DEK fields): reading N objects under one seed must cost one plugin
//! Decrypt, also when N tasks ask at the same moment.

use crate::secret::SecretBytes;
use lru::LruCache;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OnceCell;

type Inflight = HashMap<Vec<u8>, Arc<OnceCell<SecretBytes>>>;

/// LRU (optional: `None` capacity disables caching, like a negative KMS v1 `cachesize`) plus
/// a table of in-flight fetches so concurrent misses for one key make one call.
pub struct DekCache {
    lru: Option<Mutex<LruCache<Vec<u8>, SecretBytes>>>,
    inflight: Mutex<Inflight>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data consistent (plain inserts).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DekCache {
    pub fn new(capacity: Option<usize>) -> Self {
        DekCache {
            lru: capacity
                .and_then(NonZeroUsize::new)
                .map(|c| Mutex::new(LruCache::new(c))),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Number of cached entries (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| lock(l).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, key: &[u8]) -> Option<SecretBytes> {
        self.lru.as_ref().and_then(|l| lock(l).get(key).cloned())
    }

    /// The cached value for `key`, or the result of `fetch` (run once for concurrent callers).
    /// Failures are not cached.
    pub async fn get_or_fetch<F, Fut, E>(&self, key: Vec<u8>, fetch: F) -> Result<SecretBytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SecretBytes, E>>,
    {
        if let Some(v) = self.lookup(&key) {
            return Ok(v);
        }
        let cell = lock(&self.inflight)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let res = cell.get_or_try_init(fetch).await.cloned();
        if let (Ok(v), Some(l)) = (&res, &self.lru) {
            lock(l).put(key.clone(), v.clone());
        }
        let mut inflight = lock(&self.inflight);
        if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&key);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::assert_same_secret;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_call() {
        let cache = Arc::new(DekCache::new(Some(10)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(b"k".to_vec(), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok::<_, ()>(SecretBytes::from_slice(b"dek"))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_same_secret(t.await.expect("join").expect("ok").expose(), b"dek");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn disabled_cache_and_errors_not_cached() {
        let cache = DekCache::new(None);
        let r: Result<SecretBytes, &str> = cache
            .get_or_fetch(b"k".to_vec(), || async { Err("no") })
            .await;
        assert!(r.is_err());
        let r: Result<SecretBytes, &str> = cache
            .get_or_fetch(b"k".to_vec(), || async {
                Ok(SecretBytes::from_slice(b"x"))
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(cache.len(), 0);
    }
}
