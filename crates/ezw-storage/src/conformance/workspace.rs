//! Conformance cases for the team-inbox part of the store (issue 6).

#[allow(unused_imports)]
use super::*;
