//! Integration tests of the dispatcher: the queue contract on both backends (SQLite
//! files and the Firestore emulator), the Firestore pickup and document checks, and
//! the whole service against a scripted gateway and the real logger over gRPC.

mod backends;
mod firestore;
mod properties;
mod queue;
mod tasks;
mod worker;
