//! Integration tests of the mock WhatsApp server crate.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod media;
mod release_build;
