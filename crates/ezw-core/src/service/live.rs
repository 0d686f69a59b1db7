//! The live stream: hints filtered to what the caller may see, with resume.
