-- Outgoing webhooks, their deliveries (written in the transaction of the change that caused
-- the event) and attempts, and the organization audit trail.
CREATE TABLE webhooks (
    id                         TEXT PRIMARY KEY,
    org_id                     TEXT NOT NULL REFERENCES organizations(id),
    line_id                    TEXT NOT NULL REFERENCES lines(id),
    target_url                 TEXT NOT NULL,
    event_mask                 INTEGER NOT NULL,
    payload_format             TEXT NOT NULL,
    enabled                    INTEGER NOT NULL,
    persistent                 INTEGER NOT NULL,
    max_concurrency            INTEGER NOT NULL,
    rate_per_second            REAL,
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    disabled_reason            TEXT,
    failing_since              INTEGER,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    UNIQUE (line_id, target_url)
);
CREATE INDEX webhooks_subscribers ON webhooks(line_id, event_mask) WHERE enabled = 1;

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    line_id          TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- While pending: when it is due; a claim moves it to the end of the lease.
    next_attempt_at  INTEGER,
    lease_id         TEXT,
    last_http_status INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE webhook_attempts (
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    http_status      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_events_org ON audit_events(org_id, id);
