//! `--max-rate`: a token bucket over rewritten objects, so a rotation cannot flood a production
//! etcd (every rewrite is a raft write, an fsync and a watch event to every kube-apiserver).
//!
//! The bucket holds at most a tenth of a second of tokens (or one batch, if larger). Taking more tokens
//! than are available puts the bucket in debt and returns how long to wait, so the long-run
//! rate is exact even when batches are bigger than the bucket.
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` objects per second (must be > 0), bursts of up to `burst` objects.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            f64::MIN_POSITIVE
        };
        let burst = burst.max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Take `n` tokens at `now`; returns how long the caller must wait before using them.
    pub fn reserve(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens / self.rate).min(86_400.0))
        }
    }

    /// Take `n` tokens, sleeping as long as needed.
    pub async fn acquire(&mut self, n: u64) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 100.0, t0);
        assert_eq!(b.reserve(100, t0), Duration::ZERO);
        // Empty now: 50 more need half a second.
        let w = b.reserve(50, t0);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-9, "{w:?}");
        // After that half second (plus another 0.5 s), 50 are available again.
        let w = b.reserve(50, t0 + Duration::from_secs(1));
        assert_eq!(w, Duration::ZERO);
    }

    #[test]
    fn long_run_rate_is_exact_with_batches_larger_than_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        let mut now = t0;
        let mut total_wait = Duration::ZERO;
        for _ in 0..10 {
            let w = b.reserve(128, now);
            now += w;
            total_wait += w;
        }
        // 1280 objects at 10/s, minus the one token of burst.
        let expected = (1280.0 - 1.0) / 10.0;
        assert!(
            (total_wait.as_secs_f64() - expected).abs() < 1e-6,
            "{total_wait:?}"
        );
    }

    #[test]
    fn idle_time_does_not_accumulate_beyond_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 10.0, t0);
        assert_eq!(
            b.reserve(10, t0 + Duration::from_secs(3600)),
            Duration::ZERO
        );
        assert!(b.reserve(10, t0 + Duration::from_secs(3600)) > Duration::ZERO);
    }
}
