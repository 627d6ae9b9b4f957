//! Integration tests of the sinks against real receivers on 127.0.0.1: an
//! axum webhook receiver, TCP and TLS syslog collectors, a file, and the
//! nats-server on 127.0.0.1:4222.

mod common;
mod config;
mod dispatcher;
mod jsonl;
mod nats;
mod syslog;
mod tls;
mod webhook;
