//! When and how long the registry client waits before trying again: which outcomes are
//! transient (connection errors, 408, 429, 5xx gateway/server errors), the exponential backoff
//! with "equal jitter" (half fixed, half random), `Retry-After`, and the small xorshift generator
//! behind the jitter (no `rand`; seeded from the clock in real runs, fixed in tests).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Tries per request (and upload sessions per blob), the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { attempts: 6, base: Duration::from_millis(500), max: Duration::from_secs(15) }
    }
}

impl Policy {
    /// The wait before retry number `retry` (0 = the first retry): `min(max, base·2^retry)`,
    /// of which a random half is dropped.
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        let cap = self.base.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX)).min(self.max);
        let half = cap / 2;
        let nanos = half.as_nanos() as u64;
        half + Duration::from_nanos(if nanos == 0 { 0 } else { rng.next() % (nanos + 1) })
    }

    /// The wait, honouring a server's `Retry-After` (seconds) up to `max`.
    pub fn delay_after(&self, retry: u32, rng: &mut Rng, retry_after: Option<&str>) -> Duration {
        let d = self.delay(retry, rng);
        match retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(secs) => d.max(Duration::from_secs(secs).min(self.max)),
            None => d,
        }
    }
}

/// Statuses worth another try: the request may succeed unchanged.
pub fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// xorshift64* — enough for jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn from_clock() -> Rng {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Rng::new(t ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() {
        let p = Policy { attempts: 6, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        let mut rng = Rng::new(42);
        for (retry, cap) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (9, 1000), (40, 1000)] {
            for _ in 0..50 {
                let d = p.delay(retry, &mut rng).as_millis() as u64;
                assert!(d >= cap / 2 && d <= cap, "retry {retry}: {d} ms outside [{}, {cap}]", cap / 2);
            }
        }
        // The jitter really varies, and a seed reproduces the schedule.
        let a: Vec<Duration> = (0..8).map(|_| p.delay(3, &mut Rng::new(7))).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut r = Rng::new(7);
        let b: Vec<Duration> = (0..8).map(|_| p.delay(3, &mut r)).collect();
        assert!(b.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = Policy { attempts: 3, base: Duration::from_millis(10), max: Duration::from_secs(5) };
        let mut rng = Rng::new(1);
        assert_eq!(p.delay_after(0, &mut rng, Some("2")), Duration::from_secs(2));
        assert_eq!(p.delay_after(0, &mut rng, Some("3600")), Duration::from_secs(5));
        assert!(p.delay_after(0, &mut rng, Some("Wed, 21 Oct 2015 07:28:00 GMT")) <= Duration::from_millis(10));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient(s));
        }
        for s in [200, 201, 202, 400, 401, 403, 404, 416, 501] {
            assert!(!transient(s));
        }
    }
}
