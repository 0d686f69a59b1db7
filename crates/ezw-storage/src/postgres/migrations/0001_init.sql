-- EZW schema on PostgreSQL: the same tables as the SQLite backend's migrations 1-7. Every
-- customer-owned table carries org_id. Integers are BIGINT (times are Unix milliseconds), flags
-- BOOLEAN, JSON documents TEXT (written and read whole by the application).
CREATE TABLE organizations (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL UNIQUE,
    billing_state TEXT NOT NULL,
    line_slots    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    plan          TEXT NOT NULL DEFAULT 'standard'
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);
CREATE INDEX memberships_org_status ON memberships(org_id, status);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id),
    org_id             TEXT NOT NULL REFERENCES organizations(id),
    refresh_token_hash TEXT NOT NULL UNIQUE,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    revoked_at         BIGINT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_member_live ON sessions(org_id, user_id) WHERE revoked_at IS NULL;

-- Refresh-token rotation: every hash a session held before its current one. Presenting one of
-- these again revokes the session (reuse detection).
CREATE TABLE refresh_token_uses (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    used_at    BIGINT NOT NULL
);
CREATE INDEX refresh_token_uses_session ON refresh_token_uses(session_id);

-- Invitations: at most one per member; only the token's SHA-256 is stored.
CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    invited_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (org_id, user_id)
);

-- Billing checkouts created by the billing gateway; settled by an operator or a payment hook.
CREATE TABLE billing_checkouts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    plan         TEXT NOT NULL,
    line_slots   BIGINT NOT NULL,
    status       TEXT NOT NULL,
    url          TEXT,
    instructions TEXT,
    created_at   BIGINT NOT NULL,
    settled_at   BIGINT
);
CREATE INDEX billing_checkouts_open ON billing_checkouts(org_id, created_at) WHERE settled_at IS NULL;

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
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    -- Per-line send pacing (JSON {perSecond, mediaPerSecond?, maxInFlight, jitterMs}); NULL = provider defaults.
    pacing              TEXT,
    UNIQUE (org_id, phone_number)
);

CREATE TABLE line_tokens (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    line_id    TEXT NOT NULL REFERENCES lines(id),
    token_hash TEXT NOT NULL UNIQUE,
    last_four  TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX line_tokens_line ON line_tokens(line_id) WHERE revoked_at IS NULL;

-- Explicit per-(line, user) permissions; a user without a row has the workspace default.
CREATE TABLE line_permissions (
    line_id    TEXT NOT NULL REFERENCES lines(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    can_view   BOOLEAN NOT NULL,
    can_send   BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (line_id, user_id)
);

-- Idempotency keys of line creation, per organization, kept with it.
CREATE TABLE line_creation_keys (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    line_id     TEXT NOT NULL REFERENCES lines(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

-- Which node holds a session-style (QR) line's connection, until when. A node renews its lease
-- while it runs the session; another node takes the line over once the lease has run out.
CREATE TABLE session_leases (
    line_id     TEXT PRIMARY KEY REFERENCES lines(id),
    holder      TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);

-- Contacts and conversations are created on the send and inbound paths, by every node at once:
-- they carry no foreign keys, because each check would take a KEY SHARE lock on the one
-- organization row and the one line row, and many concurrent holders of one row's share lock
-- turn into MultiXact churn that serializes those inserts. Their parents are never deleted
-- (lines are archived), and the writers check them.
CREATE TABLE contacts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    display_name TEXT,
    profile_name TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, phone_number)
);

CREATE TABLE conversations (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL,
    line_id         TEXT NOT NULL,
    contact_id      TEXT NOT NULL,
    contact_phone   TEXT NOT NULL,
    version         BIGINT NOT NULL,
    assignee_id     TEXT,
    status_key      TEXT,
    last_message_at BIGINT,
    last_inbound_at BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (line_id, contact_id)
);
-- The inbox list orders by COALESCE(last_message_at, 0) DESC, seq DESC; each index serves one
-- filter shape with that order and the cursor's range (see the SQLite migration 7).
CREATE INDEX conversations_org_recent ON conversations(org_id, (COALESCE(last_message_at, 0)) DESC, seq DESC);
CREATE INDEX conversations_line_recent ON conversations(line_id, (COALESCE(last_message_at, 0)) DESC, seq DESC);
CREATE INDEX conversations_line_assignee_recent
    ON conversations(line_id, assignee_id, (COALESCE(last_message_at, 0)) DESC, seq DESC);
CREATE INDEX conversations_org_assignee_recent
    ON conversations(org_id, assignee_id, (COALESCE(last_message_at, 0)) DESC, seq DESC);
CREATE INDEX conversations_org_status_recent
    ON conversations(org_id, status_key, (COALESCE(last_message_at, 0)) DESC, seq DESC) WHERE status_key IS NOT NULL;

CREATE TABLE messages (
    seq                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    org_id              TEXT NOT NULL,
    line_id             TEXT NOT NULL,
    conversation_id     TEXT NOT NULL,
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    content             TEXT NOT NULL,
    status              TEXT NOT NULL,
    queued_at           BIGINT,
    sent_at             BIGINT,
    delivered_at        BIGINT,
    read_at             BIGINT,
    failed_at           BIGINT,
    provider_message_id TEXT,
    error_code          TEXT,
    error_message       TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    sent_by_user_id     TEXT,
    idempotency_key     TEXT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, seq);
CREATE UNIQUE INDEX messages_provider_id ON messages(line_id, provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Messages whose outcome is unknown (metrics, operator review) without scanning all messages.
CREATE INDEX messages_unknown ON messages(line_id) WHERE status = 'unknown';

CREATE TABLE message_attempts (
    message_id    TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    provider_code TEXT,
    error         TEXT,
    latency_ms    BIGINT NOT NULL,
    PRIMARY KEY (message_id, attempt)
);

-- Status reports that arrived before the provider id was recorded; applied when it is.
CREATE TABLE pending_status_updates (
    line_id             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status              TEXT NOT NULL,
    at                  BIGINT NOT NULL,
    error_code          TEXT,
    error_message       TEXT,
    received_at         BIGINT NOT NULL
);
CREATE INDEX pending_status_lookup ON pending_status_updates(line_id, provider_message_id);

CREATE TABLE idempotency_keys (
    line_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (line_id, key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);

-- Active outbox jobs only; a finished job is deleted (its attempts stay in message_attempts).
-- is_head marks the oldest job of its conversation: only heads are claimed (per-conversation
-- order). Writers that add, finish or promote a conversation's jobs lock its conversations row
-- first, so concurrent nodes keep exactly one head per conversation.
CREATE TABLE outbox_jobs (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL,
    line_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    available_at    BIGINT NOT NULL,
    lease_id        TEXT,
    lease_until     BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    is_head         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set, durably, just before a claimed job's provider call starts.
    dispatched_at   BIGINT
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
       autovacuum_vacuum_cost_delay = 0);
-- Half-empty pages let a claim's lease and the dispatch mark update rows in place (HOT: no
-- index writes); the table only holds active jobs, so the space is small. Every job is deleted
-- when it finishes: vacuum early and at full speed, so claims and head promotions do not walk
-- over dead index entries.
CREATE INDEX outbox_conversation ON outbox_jobs(conversation_id, seq);
CREATE INDEX outbox_due_heads ON outbox_jobs(available_at, seq) WHERE is_head;

-- Media metadata; the bytes live in the blob store under the attachment id.
CREATE TABLE attachments (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    message_id   TEXT,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    filename     TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX attachments_message ON attachments(message_id) WHERE message_id IS NOT NULL;

-- Internal notes: never queued, never sent, never in webhooks.
CREATE TABLE notes (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    line_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    author_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX notes_conversation ON notes(conversation_id, seq);

-- Outgoing webhooks, their deliveries (written in the transaction of the change that caused
-- the event) and attempts, and the organization audit trail.
CREATE TABLE webhooks (
    id                         TEXT PRIMARY KEY,
    org_id                     TEXT NOT NULL REFERENCES organizations(id),
    line_id                    TEXT NOT NULL REFERENCES lines(id),
    target_url                 TEXT NOT NULL,
    event_mask                 BIGINT NOT NULL,
    payload_format             TEXT NOT NULL,
    enabled                    BOOLEAN NOT NULL,
    persistent                 BOOLEAN NOT NULL,
    max_concurrency            BIGINT NOT NULL,
    rate_per_second            DOUBLE PRECISION,
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    disabled_reason            TEXT,
    failing_since              BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL,
    UNIQUE (line_id, target_url)
);
CREATE INDEX webhooks_subscribers ON webhooks(line_id, event_mask) WHERE enabled;

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    line_id          TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- While pending: when it is due; a claim moves it to the end of the lease.
    next_attempt_at  BIGINT,
    lease_id         TEXT,
    last_http_status BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE webhook_attempts (
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    number           BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    http_status      BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_excerpt TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE audit_events (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_events_org ON audit_events(org_id, seq);
CREATE INDEX audit_events_org_action ON audit_events(org_id, action, seq);

-- Cross-node wake-ups are sent by the nodes after their commits (see listen.rs), not by
-- triggers: a transaction that notifies takes a database-wide lock while it commits, which
-- would serialize every enqueue's commit.

-- Live hints published by any node get their id from this sequence (see PgLiveHub).
CREATE SEQUENCE live_hint_seq;

-- This deployment's identity: live hint ids carry it, so an id from another database or schema
-- is never mistaken for one of ours.
CREATE TABLE ezw_instance (epoch BIGINT NOT NULL);
INSERT INTO ezw_instance (epoch) SELECT floor(random() * 1e15)::BIGINT;
