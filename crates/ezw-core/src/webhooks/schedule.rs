//! When a failed delivery is tried again.

use std::time::Duration;

use rand::Rng;

/// Waits after each failed attempt: the first attempt is immediate, then 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h and 10 h (8 attempts over about 28 hours).
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Attempts a persistent webhook's delivery gets before it fails.
pub const MAX_ATTEMPTS: u32 = RETRY_SCHEDULE.len() as u32 + 1;

/// The longest wait a receiver's `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);

/// The wait before the next attempt after `attempts_made` failed ones, or `None` when the
/// schedule is exhausted. The scheduled wait gets ±20% jitter; a `Retry-After` from the receiver
/// is honoured (never retried earlier) up to [`MAX_RETRY_AFTER`].
#[must_use]
pub fn next_delay(attempts_made: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    let scheduled = *RETRY_SCHEDULE.get(index)?;
    let jittered = scheduled.mul_f64(rand::rng().random_range(0.8..=1.2));
    Some(match retry_after {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_with_bounded_jitter_then_gives_up() {
        for (i, base) in RETRY_SCHEDULE.iter().enumerate() {
            for _ in 0..50 {
                let d = next_delay(u32::try_from(i).unwrap() + 1, None).unwrap();
                assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "attempt {i}: {d:?}");
            }
        }
        assert_eq!(next_delay(MAX_ATTEMPTS, None), None);
        assert_eq!(next_delay(0, None), None);
    }

    #[test]
    fn retry_after_delays_but_is_bounded() {
        let d = next_delay(1, Some(Duration::from_secs(120))).unwrap();
        assert_eq!(d, Duration::from_secs(120));
        let d = next_delay(1, Some(Duration::from_secs(1))).unwrap();
        assert!(d >= Duration::from_secs(4), "a short Retry-After does not retry before the schedule");
        let d = next_delay(1, Some(Duration::from_secs(7 * 86_400))).unwrap();
        assert_eq!(d, MAX_RETRY_AFTER);
    }
}
