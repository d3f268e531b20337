//! End-to-end: the four binaries as processes, driven over HTTP.

mod flow;
mod gateway_crash;
mod resilience;
