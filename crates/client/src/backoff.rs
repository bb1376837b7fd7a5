//! How long to wait before trying again: exponential backoff with full jitter, or what the
//! server asked for in `Retry-After`.

use std::time::Duration;

use rand::Rng;

use crate::limits::RETRY_AFTER_SECS_MAX;

/// Exponential backoff with full jitter (the pause before attempt `n + 1` is drawn uniformly
/// from `0 ..= min(cap, base · 2^n)`): clients that failed at the same moment spread out instead
/// of returning together and failing together again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    /// The ceiling of the pause after `failures` failed attempts (1 or more).
    pub(crate) fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The pause after `failures` failed attempts. A `Retry-After` the server sent wins over the
    /// backoff: the server knows when it will have room. A little jitter (up to `base`) is added
    /// to it, so that many clients told "1 second" do not all come back in the same millisecond.
    pub(crate) fn pause(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match retry_after {
            Some(retry_after) => retry_after + jitter(self.base, rng),
            None => jitter(self.ceiling(failures), rng),
        }
    }
}

fn jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.gen_range(0..=ceiling_micros))
}

/// The delay a `Retry-After` header asks for, in its delta-seconds form (what Sealtrail sends).
/// The HTTP-date form and anything malformed give `None` (the caller falls back to its backoff);
/// a delay above [`RETRY_AFTER_SECS_MAX`] is cut to it.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let text = value.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // All digits: only an overflow fails, and an overflowing delay is above the cap anyway.
    let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds.min(RETRY_AFTER_SECS_MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_ceiling_doubles_per_failure_up_to_the_cap() {
        let backoff = backoff();
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(7), Duration::from_secs(5));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn pauses_are_drawn_below_the_ceiling_and_spread_out() {
        let backoff = backoff();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for failures in 1..12 {
            let pauses: Vec<Duration> = (0..200)
                .map(|_| backoff.pause(failures, None, &mut rng))
                .collect();
            assert!(pauses
                .iter()
                .all(|pause| *pause <= backoff.ceiling(failures)));
            // Full jitter: the pauses cover the range, they do not bunch at its top.
            let below_half = pauses
                .iter()
                .filter(|pause| **pause < backoff.ceiling(failures) / 2)
                .count();
            assert!((40..160).contains(&below_half), "{failures}: {below_half}");
        }
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        let backoff = backoff();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let pause = backoff.pause(9, Some(Duration::from_secs(2)), &mut rng);
            assert!(pause >= Duration::from_secs(2));
            assert!(pause <= Duration::from_secs(2) + backoff.base);
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("86400"),
            Some(Duration::from_secs(RETRY_AFTER_SECS_MAX))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(RETRY_AFTER_SECS_MAX))
        );
        for ignored in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(ignored), None, "{ignored:?}");
        }
    }
}
