//! What the engine is fed: one [`Observation`] per gateway event or agent
//! posture report. Borrowed, so feeding the engine allocates nothing for
//! entities it already tracks.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One thing that happened to one entity at `at_ms` (milliseconds, any
/// epoch, the same one as `Engine::tick`).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub entity: EntityRef<'a>,
    pub at_ms: u64,
    pub kind: ObsKind<'a>,
}

/// Who it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityRef<'a> {
    /// An identified device and its group, if any (the last one seen wins).
    Device { id: &'a str, group: Option<&'a str> },
    /// A source address, for failures before any identity is known
    /// (failed TLS handshakes, refused CONNECTs without a device).
    Source(IpAddr),
    /// A service principal (backend MQTT client).
    Service(&'a str),
}

/// A socket's transport protocol in a posture report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// What happened.
#[derive(Debug, Clone, Copy)]
pub enum ObsKind<'a> {
    /// The entity published `bytes` of payload on `topic`.
    MessageIn {
        topic: &'a str,
        bytes: u32,
    },
    /// `messages` messages of `bytes` in all were delivered to the entity
    /// (the gateway reports deliveries per socket write).
    MessageOut {
        messages: u32,
        bytes: u64,
    },
    /// A session was established from `source`.
    Connect {
        source: IpAddr,
    },
    /// A session ended; `normal` when the client sent DISCONNECT.
    Disconnect {
        normal: bool,
    },
    /// A refused CONNECT or failed handshake from `source`.
    AuthFailure {
        source: IpAddr,
    },
    /// A publish/subscribe outside policy.
    Denied {
        action: &'a str,
        topic: &'a str,
    },
    Subscribe {
        filter: &'a str,
    },
    /// A device agent's posture report.
    Posture {
        listening_ports: &'a [(Proto, u16)],
        destinations: &'a [IpAddr],
        established: u32,
        processes: u32,
    },
}
