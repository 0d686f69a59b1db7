-- Issue 8, QR web session lines: every line's recorded lifecycle transitions, each line's
-- current pairing request, and the opaque protocol state of its web session.

-- Every change of a line's lifecycle state, in order (`seq` increases across the database).
CREATE TABLE line_transitions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT NOT NULL,
    line_id    TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    reason     TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX line_transitions_line ON line_transitions(org_id, line_id, seq DESC);

-- A line's current pairing request (one per line; a new request replaces the row).
CREATE TABLE line_pairings (
    line_id         TEXT PRIMARY KEY REFERENCES lines(id),
    org_id          TEXT NOT NULL,
    id              TEXT NOT NULL,
    method          TEXT NOT NULL,
    phone           TEXT,
    status          TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT NOT NULL,
    qr_code         TEXT,
    phone_code      TEXT,
    rotation        INTEGER NOT NULL,
    expires_at      INTEGER,
    reason          TEXT,
    requested_by    TEXT,
    requested_at    INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX line_pairings_requested ON line_pairings(requested_at) WHERE status = 'requested';

-- A session backend's records (keys, sessions, devices...), sealed before they get here.
CREATE TABLE session_state (
    org_id  TEXT NOT NULL,
    line_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    scope   TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    stamp   INTEGER NOT NULL,
    PRIMARY KEY (org_id, line_id, kind, scope, key)
) WITHOUT ROWID;
