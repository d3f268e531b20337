//! Integration tests of the gateway: a real gRPC server on 127.0.0.1:0 and a real
//! client.
// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod media;
mod mock_by_hand;
mod mock_cluster;
mod mock_media;
mod mock_whatsapp;
mod send;
mod server_ack;
mod support;
mod tasks;
mod whatsapp;
