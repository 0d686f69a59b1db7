//! Per-line send pacing: a token bucket in its virtual-scheduling form (each send reserves the
//! next free slot, so waiting jobs sleep until their slot instead of polling), a separate bucket
//! for media, a cap on provider calls in flight, random jitter, and a cap on how many claimed
//! jobs may wait on one line so a slow line cannot hold the worker's whole budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use crate::ids::LineId;
use crate::model::Pacing;
use crate::time::Timestamp;

/// Spaces events `1/rate` apart (a bucket of capacity one: never more than `rate` in any
/// one-second window).
#[derive(Debug)]
struct Schedule {
    interval_ms: f64,
    /// The earliest time the next event may happen (milliseconds, fractional).
    next_ms: f64,
}

impl Schedule {
    fn new(per_second: f64) -> Self {
        Self { interval_ms: 1000.0 / per_second, next_ms: f64::MIN }
    }

    /// Reserves the next slot at or after `now`; returns its time.
    fn reserve(&mut self, now: Timestamp) -> f64 {
        let slot = self.next_ms.max(now.unix_ms() as f64);
        self.next_ms = slot + self.interval_ms;
        slot
    }
}

/// One line's gate.
#[derive(Debug)]
pub(crate) struct LineGate {
    pacing: Pacing,
    schedules: Mutex<(Schedule, Option<Schedule>)>,
    /// The same limits applied to when calls actually start (after the dispatch mark), so a
    /// delay between a job's slot and its start never lets two calls run closer than the rate.
    starts: Mutex<(Schedule, Option<Schedule>)>,
    in_flight: Arc<Semaphore>,
    waiting: Mutex<usize>,
}

impl LineGate {
    fn new(pacing: Pacing) -> Self {
        Self {
            schedules: Mutex::new((Schedule::new(pacing.per_second), pacing.media_per_second.map(Schedule::new))),
            starts: Mutex::new((Schedule::new(pacing.per_second), pacing.media_per_second.map(Schedule::new))),
            in_flight: Arc::new(Semaphore::new(pacing.max_in_flight as usize)),
            waiting: Mutex::new(0),
            pacing,
        }
    }

    /// Jobs of this line that may wait in the worker at once: two seconds of sends plus the
    /// calls in flight. More are put back in the queue.
    pub(crate) fn admit(&self) -> bool {
        let cap = (self.pacing.per_second * 2.0).ceil() as usize + self.pacing.max_in_flight as usize;
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *waiting >= cap {
            return false;
        }
        *waiting += 1;
        true
    }

    /// Releases an admission.
    pub(crate) fn leave(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *waiting = waiting.saturating_sub(1);
    }

    /// Reserves this send's slot; returns when it may start (with jitter added).
    pub(crate) fn reserve(&self, now: Timestamp, media: bool) -> Timestamp {
        let slot = Self::next(&self.schedules, now, media);
        let jitter = if self.pacing.jitter_ms > 0 { rand::rng().random_range(0..=self.pacing.jitter_ms) } else { 0 };
        Timestamp::from_unix_ms(slot.ceil() as i64).plus(Duration::from_millis(jitter))
    }

    /// The exact start time of a call that is about to begin (usually `now`, since its slot
    /// was reserved earlier).
    pub(crate) fn confirm_start(&self, now: Timestamp, media: bool) -> Timestamp {
        Timestamp::from_unix_ms(Self::next(&self.starts, now, media).ceil() as i64)
    }

    fn next(schedules: &Mutex<(Schedule, Option<Schedule>)>, now: Timestamp, media: bool) -> f64 {
        let mut s = schedules.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = s.0.reserve(now);
        match (&mut s.1, media) {
            (Some(media_schedule), true) => text.max(media_schedule.reserve(now)),
            _ => text,
        }
    }

    /// The concurrency cap.
    pub(crate) fn in_flight(&self) -> Arc<Semaphore> {
        self.in_flight.clone()
    }
}

/// The gates of every line, rebuilt when a line's pacing changes.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    gates: Mutex<HashMap<LineId, Arc<LineGate>>>,
}

impl Gates {
    pub(crate) fn get(&self, line: &LineId, pacing: Pacing) -> Arc<LineGate> {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match gates.get(line) {
            Some(g) if g.pacing == pacing => g.clone(),
            _ => {
                let g = Arc::new(LineGate::new(pacing));
                gates.insert(line.clone(), g.clone());
                g
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(per_second: f64, media: Option<f64>) -> Pacing {
        Pacing { per_second, media_per_second: media, max_in_flight: 4, jitter_ms: 0 }
    }

    #[test]
    fn slots_are_spaced_by_the_rate() {
        let gate = LineGate::new(pacing(4.0, None));
        let t0 = Timestamp::from_unix_ms(10_000);
        let slots: Vec<i64> = (0..6).map(|_| gate.reserve(t0, false).unix_ms()).collect();
        assert_eq!(slots, [10_000, 10_250, 10_500, 10_750, 11_000, 11_250]);
        // After an idle period the schedule does not bank a burst.
        let later = Timestamp::from_unix_ms(20_000);
        assert_eq!(gate.reserve(later, false).unix_ms(), 20_000);
        assert_eq!(gate.reserve(later, false).unix_ms(), 20_250);
    }

    #[test]
    fn media_has_its_own_lower_rate() {
        let gate = LineGate::new(pacing(10.0, Some(1.0)));
        let t0 = Timestamp::from_unix_ms(0);
        assert_eq!(gate.reserve(t0, true).unix_ms(), 0);
        assert_eq!(gate.reserve(t0, true).unix_ms(), 1000);
        assert_eq!(gate.reserve(t0, false).unix_ms(), 200, "text keeps its own pace");
    }

    #[test]
    fn admission_is_capped_per_line() {
        let gate = LineGate::new(pacing(1.0, None));
        let admitted = (0..20).filter(|_| gate.admit()).count();
        assert_eq!(admitted, 2 + 4);
        gate.leave();
        assert!(gate.admit());
    }
}
