-- Issue 6, the team inbox: line permissions, notes, conversation filters.

-- Explicit per-(line, user) permissions; a user without a row has the workspace default.
CREATE TABLE line_permissions (
    line_id    TEXT NOT NULL REFERENCES lines(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    can_view   INTEGER NOT NULL,
    can_send   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (line_id, user_id)
) WITHOUT ROWID;

-- Idempotency keys of line creation, per organization, kept with it.
CREATE TABLE line_creation_keys (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    line_id     TEXT NOT NULL REFERENCES lines(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, key)
) WITHOUT ROWID;

-- Internal notes: never queued, never sent, never in webhooks.
CREATE TABLE notes (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    line_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    author_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX notes_conversation ON notes(conversation_id, seq);

-- The inbox list orders by COALESCE(last_message_at, 0) DESC, seq DESC. Each index below serves
-- one filter shape with that order and the cursor's range, so a page costs about `limit` rows
-- however large the inbox: the organization (every line), one line (several visible lines are
-- one subquery per line), one line's assignee or unassigned conversations, the organization's
-- assignee or unassigned conversations, and Kanban statuses. The old index on the bare column
-- could not serve that order.
DROP INDEX IF EXISTS conversations_org_recent;
CREATE INDEX conversations_org_recent ON conversations(org_id, COALESCE(last_message_at, 0) DESC, seq DESC);
CREATE INDEX conversations_line_recent ON conversations(line_id, COALESCE(last_message_at, 0) DESC, seq DESC);
CREATE INDEX conversations_line_assignee_recent
    ON conversations(line_id, assignee_id, COALESCE(last_message_at, 0) DESC, seq DESC);
CREATE INDEX conversations_org_assignee_recent
    ON conversations(org_id, assignee_id, COALESCE(last_message_at, 0) DESC, seq DESC);
CREATE INDEX conversations_org_status_recent
    ON conversations(org_id, status_key, COALESCE(last_message_at, 0) DESC, seq DESC) WHERE status_key IS NOT NULL;
