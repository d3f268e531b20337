//! Integration tests of the logger: the real service and the real `google-sheets4`
//! client against a local server that speaks the Sheets API.

mod flush;
mod tasks;
