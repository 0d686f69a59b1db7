-- Issue 6, the team inbox: line permissions, notes, conversation filters.
SELECT 1;
