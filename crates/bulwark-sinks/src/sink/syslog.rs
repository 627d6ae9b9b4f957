//! Syslog over TCP (RFC 6587) or TLS (RFC 5425), octet-counted.
//!
//! One connection is kept open; before each message it is checked for a
//! close by the collector (a collector never sends, so anything readable
//! means it hung up), and after any failure it is dropped and made again
//! at the next attempt, after the back-off. TCP has no acknowledgement: a
//! message counts as delivered once it is written to the socket.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{within, Failure, Payload};
use crate::config::{local_hostname, SyslogConfig, SyslogFormat, SyslogTransport};
use crate::format::syslog::{
    check_header_field, check_sd_id, octet_frame, rfc5424, rfc5424_cef, Header, MAX_APP_NAME,
    MAX_HOSTNAME,
};
use crate::{Notice, SinkError};

/// The smallest message size RFC 5424 lets a receiver support.
const MIN_MESSAGE: usize = 480;

pub(crate) struct Syslog {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    header: Header,
    format: SyslogFormat,
    max_len: usize,
    timeout: Duration,
    conn: Option<Conn>,
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(b).await,
            Conn::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
        }
    }

    /// Whether the collector has closed the connection (or broken it),
    /// without waiting.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        let read = async {
            match self {
                Conn::Tcp(s) => s.read(&mut buf).await,
                Conn::Tls(s) => s.read(&mut buf).await,
            }
        };
        // `timeout` polls the read once before it looks at the (zero) deadline.
        match tokio::time::timeout(Duration::ZERO, read).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            // The collector sent something (it should not): keep going.
            Ok(Ok(_)) => false,
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

/// Splits `host:port` (`[v6]:port`) and checks the port.
fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

impl Syslog {
    pub fn build(c: &SyslogConfig, name: &str) -> Result<Syslog, SinkError> {
        let bad = |reason: String| SinkError::config(name, reason);
        let (host, _) =
            split_address(&c.address).ok_or_else(|| bad("address must be host:port".to_owned()))?;
        let hostname = match &c.hostname {
            Some(h) => {
                check_header_field(h, MAX_HOSTNAME).map_err(|e| bad(format!("hostname {e}")))?;
                h.clone()
            }
            None => local_hostname(),
        };
        check_header_field(&c.app_name, MAX_APP_NAME).map_err(|e| bad(format!("app_name {e}")))?;
        check_sd_id(&c.sd_id).map_err(|e| bad(format!("sd_id {e}")))?;
        if c.max_message_bytes < MIN_MESSAGE {
            return Err(bad(format!(
                "max_message_bytes must be at least {MIN_MESSAGE}"
            )));
        }
        if c.timeout_secs == 0 {
            return Err(bad("timeout_secs must be positive".to_owned()));
        }
        let identity = match (&c.client_cert_file, &c.client_key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "client_cert_file and client_key_file go together".to_owned()
                ))
            }
        };
        let tls = match c.transport {
            SyslogTransport::Tcp => {
                if c.ca_file.is_some() || c.server_name.is_some() || identity.is_some() {
                    return Err(bad(
                        "ca_file, server_name and client certificates need transport = \"tls\""
                            .to_owned(),
                    ));
                }
                None
            }
            SyslogTransport::Tls => {
                let ca_file = c.ca_file.as_deref().ok_or_else(|| {
                    bad("transport = \"tls\" needs ca_file (the collector's CA)".to_owned())
                })?;
                let config: Arc<ClientConfig> = super::tls::client_config(name, ca_file, identity)?;
                let server = c.server_name.as_deref().unwrap_or(host);
                let server_name = ServerName::try_from(server.to_owned())
                    .map_err(|_| bad(format!("{server:?} is not a valid TLS server name")))?;
                Some((TlsConnector::from(config), server_name))
            }
        };
        Ok(Syslog {
            address: c.address.clone(),
            tls,
            header: Header {
                facility: c.facility,
                hostname,
                app_name: c.app_name.clone(),
                procid: std::process::id().to_string(),
                sd_id: c.sd_id.clone(),
            },
            format: c.format,
            max_len: c.max_message_bytes,
            timeout: Duration::from_secs(c.timeout_secs),
            conn: None,
        })
    }

    /// The framed message (`LEN SP MSG`).
    pub fn encode(&self, notice: &Notice) -> Vec<u8> {
        let msg = match self.format {
            SyslogFormat::Rfc5424 => rfc5424(&self.header, notice, self.max_len),
            SyslogFormat::Cef => {
                let cef = crate::format::cef::cef(
                    notice,
                    env!("CARGO_PKG_VERSION"),
                    &self.header.hostname,
                );
                rfc5424_cef(&self.header, notice, &cef, self.max_len)
            }
        };
        octet_frame(&msg)
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| SinkError::io(format!("cannot connect to {}", self.address), e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Tcp(tcp)),
            Some((connector, server_name)) => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        SinkError::io(format!("tls handshake with {}", self.address), e)
                    })?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    pub async fn attempt(&mut self, p: &Payload) -> Result<(), Failure> {
        if let Some(conn) = &mut self.conn {
            if conn.closed().await {
                self.conn = None;
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => within(self.timeout, "connect", self.connect()).await?,
        };
        let write = async {
            conn.write_all(&p.bytes)
                .await
                .map_err(|e| SinkError::io(format!("write to {}", self.address), e))
        };
        within(self.timeout, "write", write).await?;
        // Kept only after a successful write: any failure reconnects.
        self.conn = Some(conn);
        Ok(())
    }

    pub async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeout, conn.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("logs.example:6514"),
            Some(("logs.example", 6514))
        );
        assert_eq!(split_address("127.0.0.1:514"), Some(("127.0.0.1", 514)));
        assert_eq!(split_address("[::1]:6514"), Some(("::1", 6514)));
        assert_eq!(split_address("logs.example"), None);
        assert_eq!(split_address("logs.example:0"), None);
        assert_eq!(split_address(":514"), None);
        assert_eq!(split_address("h:65536"), None);
    }
}
