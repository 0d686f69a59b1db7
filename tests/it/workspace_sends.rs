//! Issue 6: workspace_sends.
