//! Integration tests of the gateway: a real gRPC server on 127.0.0.1:0 and a real
//! client.

mod send;
mod support;
mod whatsapp;
mod mock_whatsapp;
