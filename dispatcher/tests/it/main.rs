//! Integration tests of the dispatcher: the queue contract on both backends (SQLite
//! files and the Firestore emulator), the Firestore pickup and document checks, and
//! the whole service against a scripted gateway and the real logger over gRPC.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod backends;
mod firestore;
mod properties;
mod queue;
mod tasks;
mod worker;
