-- Issue 6, access control: audit before/after, refresh-token chains, login throttling,
-- invitations, billing.
ALTER TABLE audit_events ADD COLUMN before_json TEXT;
ALTER TABLE audit_events ADD COLUMN after_json TEXT;
CREATE INDEX audit_events_org_action ON audit_events(org_id, action);
