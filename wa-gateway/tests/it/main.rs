//! Integration tests of the gateway: a real gRPC server on 127.0.0.1:0 and a real
//! client.

mod mock_by_hand;
mod mock_cluster;
mod mock_whatsapp;
mod send;
mod server_ack;
mod support;
mod tasks;
mod whatsapp;
