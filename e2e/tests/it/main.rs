//! End-to-end: the four binaries as processes, driven over HTTP.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod accounts;
mod bad_input;
mod bench;
mod chaos;
mod damaged;
mod disk_full;
mod drop_in;
mod firestore;
mod flow;
mod gateway_crash;
mod internal_token;
mod package;
mod resilience;
mod sheets;
mod start;
