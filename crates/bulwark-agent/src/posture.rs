//! Inventory and security posture, as JSON-serializable reports.
//!
//! Posture is read from `/proc`: listening TCP sockets and bound UDP
//! sockets, established connections with their remote addresses (from
//! `/proc/net/{tcp,tcp6,udp,udp6}`), and the process count (the numeric
//! entries of `/proc`). The table parsers are pure functions over text, so
//! they are tested on fixtures; [`collect_posture`] reads a `/proc` root.
//!
//! Addresses in those tables are hex words in host byte order: an IPv4
//! address is one 32-bit word, an IPv6 address four. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, what a dual-stack socket shows) are
//! reported as IPv4. Each list is capped at [`MAX_ENTRIES`] (a report stays
//! bounded on a busy gateway) and says when it was cut.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;

use crate::AgentError;

/// Most sockets of one kind (listening or established) in a report.
pub const MAX_ENTRIES: usize = 1024;

/// What the device is and runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub device_id: String,
    pub firmware_version: String,
    pub hardware_model: String,
    pub agent_version: String,
    pub active_slot: String,
}

impl Inventory {
    /// An inventory with this agent's version.
    pub fn new(
        device_id: &str,
        firmware_version: &str,
        hardware_model: &str,
        active_slot: &str,
    ) -> Inventory {
        Inventory {
            device_id: device_id.to_owned(),
            firmware_version: firmware_version.to_owned(),
            hardware_model: hardware_model.to_owned(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            active_slot: active_slot.to_owned(),
        }
    }
}

/// The firmware version from the configured source (a file's first line,
/// or a fixed string).
pub fn firmware_version(source: &crate::config::FirmwareSource) -> Result<String, AgentError> {
    match source {
        crate::config::FirmwareSource::Static { version } => Ok(version.trim().to_owned()),
        crate::config::FirmwareSource::File { path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| AgentError::io("cannot read", path, e))?;
            let line = text.lines().next().unwrap_or("").trim();
            if line.is_empty() {
                return Err(AgentError::Config(format!(
                    "firmware version file {} is empty",
                    path.display()
                )));
            }
            Ok(line.chars().take(128).collect())
        }
    }
}

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// A socket waiting for peers: TCP `LISTEN`, or an unconnected bound UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Listener {
    pub proto: Proto,
    pub addr: SocketAddr,
}

/// An established TCP connection or a connected UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Connection {
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The posture report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Posture {
    pub listening: Vec<Listener>,
    pub established: Vec<Connection>,
    pub process_count: usize,
    /// Set when a list was cut at [`MAX_ENTRIES`].
    pub truncated: bool,
}

/// One row of a `/proc/net` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel state code (`0A` LISTEN, `01` ESTABLISHED, `07` CLOSE for UDP).
    pub state: u8,
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;
const UDP_UNCONNECTED: u8 = 0x07;

fn hex_word(s: &str) -> Option<[u8; 4]> {
    if s.len() != 8 {
        return None;
    }
    u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes)
}

/// Parses `0100007F:1F90` (IPv4) or a 32-hex-digit IPv6 address and port.
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&hex_word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses a `/proc/net/{tcp,tcp6,udp,udp6}` table; malformed rows are skipped.
pub fn parse_table(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = parse_addr(fields.next()?)?;
            let remote = parse_addr(fields.next()?)?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(Row {
                local,
                remote,
                state,
            })
        })
        .collect()
}

/// Adds the rows of one table to `posture`.
pub fn add_rows(posture: &mut Posture, proto: Proto, rows: &[Row]) {
    for row in rows {
        let listening = match proto {
            Proto::Tcp => row.state == TCP_LISTEN,
            Proto::Udp => row.state == UDP_UNCONNECTED && row.remote.port() == 0,
        };
        if listening {
            if posture.listening.len() < MAX_ENTRIES {
                posture.listening.push(Listener {
                    proto,
                    addr: row.local,
                });
            } else {
                posture.truncated = true;
            }
        } else if row.state == TCP_ESTABLISHED {
            if posture.established.len() < MAX_ENTRIES {
                posture.established.push(Connection {
                    proto,
                    local: row.local,
                    remote: row.remote,
                });
            } else {
                posture.truncated = true;
            }
        }
    }
}

/// Counts the numeric entries (process ids) of a `/proc` directory listing.
pub fn count_processes<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> usize {
    names
        .into_iter()
        .filter(|n| {
            let n = n.as_ref();
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
        .count()
}

/// Reads the posture from the `/proc` at `proc_root` (normally `/proc`).
/// A missing table (a kernel without IPv6) counts as empty.
pub fn collect_posture(proc_root: &Path) -> Result<Posture, AgentError> {
    let mut posture = Posture::default();
    for (name, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
    ] {
        let path = proc_root.join("net").join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => add_rows(&mut posture, proto, &parse_table(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(AgentError::Posture { path, source }),
        }
    }
    let entries = std::fs::read_dir(proc_root).map_err(|source| AgentError::Posture {
        path: proc_root.to_owned(),
        source,
    })?;
    posture.process_count = count_processes(
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok()),
    );
    posture.listening.sort();
    posture.listening.dedup();
    posture.established.sort();
    Ok(posture)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21342 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19211 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:D3A2 01 00000000:00000000 02:0004C6F0 00000000     0        0 31001 4 0000000000000000 20 4 29 10 -1
   3: 0F02000A:9C40 0202000A:01BB 06 00000000:00000000 03:00000DCF 00000000     0        0 0 3 0000000000000000
garbage line
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19213 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21343 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 40000 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:E001 01 00000000:00000000 00:00000000 00000000  1000        0 40001 1 0000000000000000 20 4 30 10 -1
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  245: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 17230 2 0000000000000000 0
  300: 0F02000A:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000   101        0 40010 2 0000000000000000 0
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_rows_are_decoded() {
        let rows = parse_table(TCP);
        assert_eq!(rows.len(), 4, "header and garbage skipped");
        assert_eq!(rows[0].local, sa("127.0.0.1:631"));
        assert_eq!(rows[0].state, TCP_LISTEN);
        assert_eq!(rows[2].local, sa("10.0.2.15:22"));
        assert_eq!(rows[2].remote, sa("10.0.2.2:54178"));
    }

    #[test]
    fn ipv6_and_ipv4_mapped_rows_are_decoded() {
        let rows = parse_table(TCP6);
        assert_eq!(rows[0].local, sa("[::]:22"));
        assert_eq!(rows[1].local, sa("[::1]:631"));
        assert_eq!(rows[2].local, sa("127.0.0.1:8080"), "mapped shown as IPv4");
        assert_eq!(rows[2].remote, sa("127.0.0.1:50000"));
        assert_eq!(rows[3].local, sa("[2001:db8::1]:443"));
        assert_eq!(rows[3].remote, sa("[2001:db8::2]:57345"));
    }

    #[test]
    fn listeners_and_connections_are_classified() {
        let mut p = Posture::default();
        add_rows(&mut p, Proto::Tcp, &parse_table(TCP));
        add_rows(&mut p, Proto::Tcp, &parse_table(TCP6));
        add_rows(&mut p, Proto::Udp, &parse_table(UDP));
        let listening: Vec<String> = p
            .listening
            .iter()
            .map(|l| format!("{:?} {}", l.proto, l.addr))
            .collect();
        assert_eq!(
            listening,
            [
                "Tcp 127.0.0.1:631",
                "Tcp 0.0.0.0:22",
                "Tcp [::]:22",
                "Tcp [::1]:631",
                "Udp 0.0.0.0:68"
            ]
        );
        assert_eq!(p.established.len(), 4, "TIME_WAIT is neither");
        assert!(p.established.contains(&Connection {
            proto: Proto::Udp,
            local: sa("10.0.2.15:41394"),
            remote: sa("8.8.8.8:53"),
        }));
        assert!(!p.truncated);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "0100007F",
            "0100007F:16",
            "0100007X:0016",
            "0100007F0:0016",
            "0100007F:00160",
            "é100007F:0016",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lists_are_capped() {
        let row = Row {
            local: sa("0.0.0.0:1"),
            remote: sa("0.0.0.0:0"),
            state: TCP_LISTEN,
        };
        let rows = vec![row; MAX_ENTRIES + 5];
        let mut p = Posture::default();
        add_rows(&mut p, Proto::Tcp, &rows);
        assert_eq!(p.listening.len(), MAX_ENTRIES);
        assert!(p.truncated);
    }

    #[test]
    fn processes_are_the_numeric_entries() {
        assert_eq!(
            count_processes(["1", "42", "self", "net", "1a", "", "007"]),
            3
        );
    }

    #[test]
    fn real_proc_reports_our_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = collect_posture(Path::new("/proc")).unwrap();
        assert!(
            p.listening.contains(&Listener {
                proto: Proto::Tcp,
                addr
            }),
            "{addr} not in {:?}",
            p.listening
        );
        assert!(p.listening.contains(&Listener {
            proto: Proto::Udp,
            addr: udp.local_addr().unwrap()
        }));
        assert!(p.established.contains(&Connection {
            proto: Proto::Tcp,
            local: client.local_addr().unwrap(),
            remote: addr,
        }));
        assert!(p.process_count >= 1);
        let json = serde_json::to_value(&p).unwrap();
        assert!(json["listening"][0]["proto"].is_string());
    }

    #[test]
    fn inventory_carries_the_agent_version() {
        let inv = Inventory::new("d1", "1.2.3", "m1", "a");
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
        let json = serde_json::to_string(&inv).unwrap();
        assert!(json.contains("\"active_slot\":\"a\""));
    }
}
