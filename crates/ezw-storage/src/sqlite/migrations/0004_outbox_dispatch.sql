-- Set, durably, just before a claimed job's provider call starts. A job whose lease ran out
-- after this may have reached the provider; one whose lease ran out before it never did.
ALTER TABLE outbox_jobs ADD COLUMN dispatched_at INTEGER;
