//! Delivery metrics: counters and a latency histogram kept in memory, rendered in the
//! Prometheus text format with gauges read from the store at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ports::{AttemptOutcome, OutboxStats};

/// Upper bounds (seconds) of the queued -> provider-accepted latency histogram.
const LATENCY_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0];

/// In-process delivery counters.
#[derive(Debug, Default)]
pub struct Metrics {
    attempts: [AtomicU64; 4],
    held: AtomicU64,
    finished_sent: AtomicU64,
    finished_failed: AtomicU64,
    finished_unknown: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
}

fn outcome_index(o: AttemptOutcome) -> usize {
    match o {
        AttemptOutcome::Accepted => 0,
        AttemptOutcome::Retry => 1,
        AttemptOutcome::Failed => 2,
        AttemptOutcome::Unknown => 3,
    }
}

impl Metrics {
    pub(crate) fn attempt(&self, outcome: AttemptOutcome) {
        self.attempts[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn held(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, queued_to_accepted: Duration) {
        self.finished_sent.fetch_add(1, Ordering::Relaxed);
        let secs = queued_to_accepted.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms
            .fetch_add(u64::try_from(queued_to_accepted.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.finished_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unknown(&self) {
        self.finished_unknown.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of these counters and the store's gauges.
    #[must_use]
    pub fn render(&self, stats: &OutboxStats) -> String {
        let mut out = String::with_capacity(2048);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str("# HELP ezw_outbox_attempts_total Provider send attempts by outcome.\n");
        out.push_str("# TYPE ezw_outbox_attempts_total counter\n");
        for (name, i) in [("accepted", 0), ("retry", 1), ("failed", 2), ("unknown", 3)] {
            let _ = writeln!(out, "ezw_outbox_attempts_total{{outcome=\"{name}\"}} {}", get(&self.attempts[i]));
        }
        out.push_str("# HELP ezw_outbox_held_total Jobs put back without an attempt (line not sendable, pacing).\n");
        out.push_str("# TYPE ezw_outbox_held_total counter\n");
        let _ = writeln!(out, "ezw_outbox_held_total {}", get(&self.held));
        out.push_str("# HELP ezw_messages_finished_total Outbound messages by delivery outcome.\n");
        out.push_str("# TYPE ezw_messages_finished_total counter\n");
        for (name, a) in
            [("sent", &self.finished_sent), ("failed", &self.finished_failed), ("unknown", &self.finished_unknown)]
        {
            let _ = writeln!(out, "ezw_messages_finished_total{{result=\"{name}\"}} {}", get(a));
        }
        out.push_str(
            "# HELP ezw_send_latency_seconds Time from acceptance (202) to the provider accepting the message.\n",
        );
        out.push_str("# TYPE ezw_send_latency_seconds histogram\n");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ =
                writeln!(out, "ezw_send_latency_seconds_bucket{{le=\"{bound}\"}} {}", get(&self.latency_buckets[i]));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "ezw_send_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "ezw_send_latency_seconds_sum {}", get(&self.latency_sum_ms) as f64 / 1000.0);
        let _ = writeln!(out, "ezw_send_latency_seconds_count {count}");
        out.push_str("# HELP ezw_outbox_depth Jobs waiting or in flight, per line.\n");
        out.push_str("# TYPE ezw_outbox_depth gauge\n");
        for (line, depth) in &stats.depth_by_line {
            let _ = writeln!(out, "ezw_outbox_depth{{line_id=\"{line}\"}} {depth}");
        }
        out.push_str("# HELP ezw_messages_unknown Messages whose last attempt's outcome is unknown (not re-sent).\n");
        out.push_str("# TYPE ezw_messages_unknown gauge\n");
        let _ = writeln!(out, "ezw_messages_unknown {}", stats.unknown_messages);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.attempt(AttemptOutcome::Accepted);
        m.attempt(AttemptOutcome::Retry);
        m.sent(Duration::from_millis(30));
        let stats = OutboxStats { depth_by_line: vec![(crate::LineId::from_raw("line_A"), 3)], unknown_messages: 2 };
        let text = m.render(&stats);
        assert!(text.contains("ezw_outbox_attempts_total{outcome=\"accepted\"} 1\n"));
        assert!(text.contains("ezw_outbox_attempts_total{outcome=\"retry\"} 1\n"));
        assert!(text.contains("ezw_send_latency_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("ezw_send_latency_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("ezw_send_latency_seconds_count 1\n"));
        assert!(text.contains("ezw_outbox_depth{line_id=\"line_A\"} 3\n"));
        assert!(text.contains("ezw_messages_unknown 2\n"));
    }
}
