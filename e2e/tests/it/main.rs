//! End-to-end: the four binaries as processes, driven over HTTP.

mod firestore;
mod flow;
mod gateway_crash;
mod internal_token;
mod resilience;
mod sheets;
