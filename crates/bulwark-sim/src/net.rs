//! Where load may go (loopback only) and how a connection is dialled: TCP
//! from one of the configured source addresses, then the TLS handshake, each
//! under the connect deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::mqtt::Failure;

/// Most source addresses in one range.
const MAX_SOURCES: usize = 1024;

/// `HOST:PORT`, refused unless HOST is a loopback address or `localhost`.
pub(crate) fn loopback_socket_addr(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    let addr: SocketAddr = match s.strip_prefix("localhost:") {
        Some(port) => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port.parse().with_context(|| format!("port of {s:?}"))?,
        ),
        None => s
            .parse()
            .with_context(|| format!("{s:?} is not an IP address and port"))?,
    };
    if !addr.ip().is_loopback() {
        bail!("{s}: bulwark-sim only sends load to loopback addresses (127.0.0.0/8, ::1)");
    }
    Ok(addr)
}

/// `127.0.0.2-127.0.0.60` or `127.0.0.2,127.0.0.3`: loopback IPv4 addresses.
pub(crate) fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>> {
    let parse = |a: &str| -> Result<Ipv4Addr> {
        let ip: Ipv4Addr = a
            .trim()
            .parse()
            .with_context(|| format!("{a:?} is not an IPv4 address"))?;
        if !ip.is_loopback() {
            bail!("source address {ip} is not in 127.0.0.0/8");
        }
        Ok(ip)
    };
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if b < a || (b - a) as usize >= MAX_SOURCES {
                    bail!("source range {part:?} is empty or longer than {MAX_SOURCES} addresses");
                }
                out.extend((a..=b).map(Ipv4Addr::from));
            }
            None => out.push(parse(part)?),
        }
    }
    if out.is_empty() || out.len() > MAX_SOURCES {
        bail!("--source-ips must name between 1 and {MAX_SOURCES} addresses");
    }
    Ok(out)
}

/// The broker under load and how to reach it.
pub(crate) struct Broker {
    addr: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next_source: AtomicUsize,
    connect_timeout: Duration,
}

impl Broker {
    pub(crate) fn new(addr: SocketAddr, sources: Vec<Ipv4Addr>, connect_timeout: Duration) -> Self {
        Broker {
            addr,
            sources,
            next_source: AtomicUsize::new(0),
            connect_timeout,
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// TCP connect (from the next source address, round-robin) and TLS
    /// handshake, both before `deadline`.
    pub(crate) async fn dial(
        &self,
        tls: Arc<ClientConfig>,
        server_name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, Failure> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Failure::Tcp)?;
        if !self.sources.is_empty() && self.addr.is_ipv4() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            // Ports still in TIME_WAIT from earlier runs may be reused.
            socket.set_reuseaddr(true).map_err(Failure::Tcp)?;
            socket
                .bind(SocketAddr::new(IpAddr::V4(self.sources[i]), 0))
                .map_err(Failure::Tcp)?;
        }
        let tcp = tokio::time::timeout_at(deadline, socket.connect(self.addr))
            .await
            .map_err(|_| Failure::Timeout("tcp connect"))?
            .map_err(Failure::Tcp)?;
        tcp.set_nodelay(true).map_err(Failure::Tcp)?;
        tokio::time::timeout_at(deadline, TlsConnector::from(tls).connect(server_name, tcp))
            .await
            .map_err(|_| Failure::Timeout("tls handshake"))?
            .map_err(Failure::Tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_brokers() {
        for ok in [
            "127.0.0.1:8883",
            "127.1.2.3:1",
            "[::1]:8883",
            "localhost:8883",
        ] {
            assert!(loopback_socket_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1:8883",
            "example.com:8883",
            "[2001:db8::1]:1",
            "127.0.0.1",
        ] {
            assert!(loopback_socket_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_ranges() {
        let r = parse_sources("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(parse_sources("127.0.0.9, 127.0.0.7").unwrap().len(), 2);
        assert_eq!(parse_sources("127.0.0.255-127.0.1.1").unwrap().len(), 3);
        for bad in [
            "",
            "10.0.0.1",
            "127.0.0.5-127.0.0.4",
            "127.0.0.1-127.1.0.0",
            "x",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad}");
        }
    }
}
