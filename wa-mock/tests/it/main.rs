//! Integration tests of the mock WhatsApp server crate.

mod release_build;
