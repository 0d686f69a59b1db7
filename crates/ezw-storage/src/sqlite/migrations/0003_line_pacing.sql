-- Per-line send pacing (JSON {perSecond, mediaPerSecond?, maxInFlight, jitterMs}); NULL = provider defaults.
ALTER TABLE lines ADD COLUMN pacing TEXT;
-- Messages whose outcome is unknown (metrics, operator review) without scanning all messages.
CREATE INDEX messages_unknown ON messages(line_id) WHERE status = 'unknown';
