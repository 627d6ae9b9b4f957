//! The client side of an MQTT 3.1.1 / 5.0 session as a sans-I/O state
//! machine: [`ClientSession`].
//!
//! Bytes in ([`ClientSession::handle_input`]), bytes out
//! ([`ClientSession::poll_transmit`]), events out
//! ([`ClientSession::poll_event`]), timers through
//! [`ClientSession::poll_timeout`] / [`ClientSession::handle_timeout`]. It
//! never reads a clock (every call that needs the time takes an
//! [`Instant`](std::time::Instant)), never opens a socket and never awaits,
//! so the agent's tokio link, the simulator and the tests drive the same
//! code, the tests straight from byte strings.
//!
//! It covers CONNECT/CONNACK (limits, assigned identifier, typed refusals),
//! outgoing QoS 0/1/2 within the server's Receive Maximum and maximum packet
//! size, resending on a resumed session and reporting losses otherwise,
//! incoming QoS 0/1/2 with exactly-once delivery for QoS 2 and topic
//! aliases, SUBSCRIBE/UNSUBSCRIBE, keep-alive, and DISCONNECT in both
//! directions. Enhanced authentication (AUTH) and outgoing topic aliases
//! are not implemented: the client sends full topic names.
//!
//! ```
//! use std::time::Instant;
//! use bulwark_mqtt::client::{ClientOptions, ClientSession, Event, State};
//! use bulwark_mqtt::ProtocolVersion;
//!
//! let now = Instant::now();
//! let mut session = ClientSession::new(ClientOptions::new(ProtocolVersion::V311, "dev-1"), now);
//! session.connect(now)?;
//! let connect = session.poll_transmit(now).expect("CONNECT");
//! assert_eq!(connect[0], 0x10);
//! session.handle_input(b"\x20\x02\x00\x00", now)?; // CONNACK, accepted
//! assert_eq!(session.state(), State::Connected);
//! assert!(matches!(session.poll_event(), Some(Event::Connected(c)) if !c.session_present));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod event;
mod inbound;
mod options;
mod outbox;
mod session;

#[cfg(test)]
mod tests;

pub use event::{
    Ack, ClientError, CloseReason, ConnectRefused, Connected, Event, ProtocolViolation,
    ServerDisconnect,
};
pub use options::{ClientOptions, Message};
pub use session::{ClientSession, State};
