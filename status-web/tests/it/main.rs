//! Integration tests of status-web: the whole server (`run`) with a real dispatcher
//! and logger and a scripted gateway, reached by HTTP clients, the official
//! socket.io-client and headless Chromium, with a password and without; the
//! launcher's record of restarts; the services' notices.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod access;
mod accounts;
mod boundary;
mod browser;
mod harness;
mod jobs;
mod launcher;
mod notices;
mod tasks;
