//! Conformance cases for the access-control part of the store (issue 6).

#[allow(unused_imports)]
use super::*;
