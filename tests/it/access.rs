//! Issue 6: access.
