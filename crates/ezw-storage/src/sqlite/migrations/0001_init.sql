-- EZW schema v1. Every customer-owned table carries org_id.
CREATE TABLE organizations (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL UNIQUE,
    billing_state TEXT NOT NULL,
    line_slots    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id),
    org_id             TEXT NOT NULL REFERENCES organizations(id),
    refresh_token_hash TEXT NOT NULL UNIQUE,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    revoked_at         INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE lines (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES organizations(id),
    display_name        TEXT NOT NULL,
    phone_number        TEXT NOT NULL,
    provider_kind       TEXT NOT NULL,
    provider_config     TEXT NOT NULL,
    lifecycle_state     TEXT NOT NULL,
    state_reason        TEXT,
    default_assignee_id TEXT REFERENCES users(id),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (org_id, phone_number)
);

CREATE TABLE line_tokens (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    line_id    TEXT NOT NULL REFERENCES lines(id),
    token_hash TEXT NOT NULL UNIQUE,
    last_four  TEXT NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX line_tokens_line ON line_tokens(line_id) WHERE revoked_at IS NULL;

CREATE TABLE contacts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    phone_number TEXT NOT NULL,
    display_name TEXT,
    profile_name TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (org_id, phone_number)
);

CREATE TABLE conversations (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    line_id         TEXT NOT NULL REFERENCES lines(id),
    contact_id      TEXT NOT NULL REFERENCES contacts(id),
    contact_phone   TEXT NOT NULL,
    version         INTEGER NOT NULL,
    assignee_id     TEXT,
    status_key      TEXT,
    last_message_at INTEGER,
    last_inbound_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (line_id, contact_id)
);
CREATE INDEX conversations_org_recent ON conversations(org_id, last_message_at DESC, seq DESC);

CREATE TABLE messages (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    org_id              TEXT NOT NULL,
    line_id             TEXT NOT NULL,
    conversation_id     TEXT NOT NULL,
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    content             TEXT NOT NULL,
    status              TEXT NOT NULL,
    queued_at           INTEGER,
    sent_at             INTEGER,
    delivered_at        INTEGER,
    read_at             INTEGER,
    failed_at           INTEGER,
    provider_message_id TEXT,
    error_code          TEXT,
    error_message       TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    sent_by_user_id     TEXT,
    idempotency_key     TEXT,
    created_at          INTEGER NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, seq);
CREATE UNIQUE INDEX messages_provider_id ON messages(line_id, provider_message_id) WHERE provider_message_id IS NOT NULL;

CREATE TABLE message_attempts (
    message_id    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    provider_code TEXT,
    error         TEXT,
    latency_ms    INTEGER NOT NULL,
    PRIMARY KEY (message_id, attempt)
);

-- Status reports that arrived before the provider id was recorded; applied when it is.
CREATE TABLE pending_status_updates (
    line_id             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status              TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    error_code          TEXT,
    error_message       TEXT,
    received_at         INTEGER NOT NULL
);
CREATE INDEX pending_status_lookup ON pending_status_updates(line_id, provider_message_id);

CREATE TABLE idempotency_keys (
    line_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (line_id, key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);

-- Active outbox jobs only; a finished job is deleted (its attempts stay in message_attempts).
-- is_head marks the oldest job of its conversation: only heads are claimed (per-conversation
-- order), and the partial index keeps claims proportional to the due heads, however deep a
-- conversation's queue or however many jobs are held.
CREATE TABLE outbox_jobs (
    seq             INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL,
    line_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    available_at    INTEGER NOT NULL,
    lease_id        TEXT,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    is_head         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_conversation ON outbox_jobs(conversation_id, seq);
CREATE INDEX outbox_due_heads ON outbox_jobs(available_at, seq) WHERE is_head = 1;
