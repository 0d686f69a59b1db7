//! Time: a millisecond [`Timestamp`] and the [`Clock`] port, with a system clock and a manual
//! clock for tests and deterministic simulations.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// A point in time: milliseconds since the Unix epoch (UTC). Serialized as RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From Unix milliseconds.
    #[must_use]
    pub const fn from_unix_ms(ms: i64) -> Self {
        Self(ms)
    }

    /// Unix milliseconds.
    #[must_use]
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Unix seconds (rounded down).
    #[must_use]
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant plus `d` (saturating).
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// This instant minus `d` (saturating).
    #[must_use]
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The duration from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0 - earlier.0).unwrap_or(0))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T21:52:33.120Z`.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (min, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1000, rest % 1000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }
}

/// Howard Hinnant's days-from-civil inverse: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// A boxed future, as returned by object-safe async ports.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The clock port: every time-dependent decision in EZW reads this, so tests control time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Completes once the clock has reached `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()>;

    /// Completes after `d` has elapsed on this clock.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now().plus(d))
    }
}

/// The wall clock, sleeping with tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(ms)
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to: [`ManualClock::advance`] wakes every sleeper whose
/// deadline has been reached, in deadline order.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualInner>>,
}

struct ManualInner {
    now: Timestamp,
    next_seq: u64,
    sleepers: BTreeMap<(Timestamp, u64), oneshot::Sender<()>>,
}

impl ManualClock {
    /// A manual clock starting at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self { inner: Arc::new(Mutex::new(ManualInner { now: start, next_seq: 0, sleepers: BTreeMap::new() })) }
    }

    /// Moves time forward by `d` and wakes the sleepers that are due.
    pub fn advance(&self, d: Duration) {
        let due = {
            let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.now = inner.now.plus(d);
            let first_not_due = (inner.now.plus(Duration::from_millis(1)), 0);
            let later = inner.sleepers.split_off(&first_not_due);
            std::mem::replace(&mut inner.sleepers, later)
        };
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// How many sleepers are waiting (useful to let spawned tasks reach their sleep).
    #[must_use]
    pub fn pending_sleepers(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sleepers.len()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now", &self.now()).finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).now
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        let rx = {
            let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if deadline <= inner.now {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let seq = inner.next_seq;
                inner.next_seq += 1;
                inner.sleepers.insert((deadline, seq), tx);
                Some(rx)
            }
        };
        Box::pin(async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(Timestamp::from_unix_ms(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_ms(951_782_400_123).to_rfc3339(), "2000-02-29T00:00:00.123Z");
        assert_eq!(Timestamp::from_unix_ms(1_795_297_953_000).to_rfc3339(), "2026-11-21T21:52:33.000Z");
        assert_eq!(Timestamp::from_unix_ms(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
    }

    #[tokio::test]
    async fn manual_clock_wakes_due_sleepers_only() {
        let clock = ManualClock::new(Timestamp::from_unix_ms(1000));
        let early = tokio::spawn(clock.sleep(Duration::from_millis(10)));
        let late = tokio::spawn(clock.sleep(Duration::from_millis(500)));
        tokio::task::yield_now().await;
        assert_eq!(clock.pending_sleepers(), 2);
        clock.advance(Duration::from_millis(10));
        early.await.unwrap();
        assert!(!late.is_finished());
        assert_eq!(clock.now(), Timestamp::from_unix_ms(1010));
        clock.advance(Duration::from_secs(1));
        late.await.unwrap();
    }
}
