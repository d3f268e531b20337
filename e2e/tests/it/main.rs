//! End-to-end: the four binaries as processes, driven over HTTP.

mod bench;
mod firestore;
mod flow;
mod gateway_crash;
mod resilience;
mod sheets;
