//! Issue 6: inbox.
