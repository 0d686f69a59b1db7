//! Issue 6: live.
