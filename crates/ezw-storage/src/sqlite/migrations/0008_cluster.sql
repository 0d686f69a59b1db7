-- Issue 7, several nodes: which node holds a session-style (QR) line's connection, until when.
CREATE TABLE session_leases (
    line_id     TEXT PRIMARY KEY REFERENCES lines(id),
    holder      TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL
) WITHOUT ROWID;
