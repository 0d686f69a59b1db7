-- Issue 6, access control: audit before/after, refresh-token chains, login throttling,
-- invitations, billing.
ALTER TABLE audit_events ADD COLUMN before_json TEXT;
ALTER TABLE audit_events ADD COLUMN after_json TEXT;
CREATE INDEX audit_events_org_action ON audit_events(org_id, action);

-- Billing plan of each organization.
ALTER TABLE organizations ADD COLUMN plan TEXT NOT NULL DEFAULT 'standard';

-- Refresh-token rotation: every hash a session held before its current one. Presenting one of
-- these again revokes the session (reuse detection).
CREATE TABLE refresh_token_uses (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    used_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_token_uses_session ON refresh_token_uses(session_id);
CREATE INDEX sessions_member_live ON sessions(org_id, user_id) WHERE revoked_at IS NULL;

-- Invitations: at most one per member; only the token's SHA-256 is stored.
CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    invited_by TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (org_id, user_id)
);
CREATE INDEX memberships_org_status ON memberships(org_id, status);

-- Billing checkouts created by the billing gateway; settled by an operator or a payment hook.
CREATE TABLE billing_checkouts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    plan         TEXT NOT NULL,
    line_slots   INTEGER NOT NULL,
    status       TEXT NOT NULL,
    url          TEXT,
    instructions TEXT,
    created_at   INTEGER NOT NULL,
    settled_at   INTEGER
);
CREATE INDEX billing_checkouts_open ON billing_checkouts(org_id, created_at) WHERE settled_at IS NULL;
