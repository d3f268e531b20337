//! Integration tests of the logger: the real service and the real `google-sheets4`
//! client against a local server that speaks the Sheets API.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod flush;
mod tasks;
