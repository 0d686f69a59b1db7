-- Due, unleased conversation heads (the oldest job of each conversation), oldest due first,
-- with their messages. An expired lease (lease_id still set) whose job was dispatched means the
-- earlier provider call's outcome was lost: it may have reached the provider.
SELECT j.seq, j.recipient, j.attempts, j.lease_id IS NOT NULL AND j.dispatched_at IS NOT NULL, {MESSAGE_COLUMNS}
FROM outbox_jobs j JOIN messages m ON m.id = j.message_id
WHERE j.is_head = 1
  AND j.available_at <= ?1
  AND (j.lease_until IS NULL OR j.lease_until <= ?1)
ORDER BY j.available_at, j.seq
LIMIT ?2
