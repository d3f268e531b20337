//! Integration tests of the dispatcher: the local queue on real SQLite files, and the
//! whole service against a scripted gateway and the real logger over gRPC.

mod queue;
mod worker;
