//! Opening the transport: TCP, then TLS with the device's client
//! certificate (mTLS). The TLS configuration is read at every connection
//! attempt from a shared slot, so a renewed certificate is used by the next
//! connection without touching the current one.
//!
//! A plaintext transport exists for the link's own tests against a local
//! broker; it is never reachable from the agent's configuration.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A byte stream the link speaks MQTT over.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The TLS configuration the next connection uses.
#[derive(Debug, Clone)]
pub(super) struct TlsSlot(Arc<Mutex<Arc<ClientConfig>>>);

impl TlsSlot {
    pub(super) fn new(config: Arc<ClientConfig>) -> Self {
        TlsSlot(Arc::new(Mutex::new(config)))
    }

    pub(super) fn get(&self) -> Arc<ClientConfig> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set(&self, config: Arc<ClientConfig>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

#[derive(Debug, Clone)]
pub(super) enum Connector {
    Tls {
        config: TlsSlot,
        server_name: ServerName<'static>,
    },
    /// Tests of the link only: see `Link::spawn_plaintext_for_tests`.
    PlaintextForTests,
}

impl Connector {
    pub(super) async fn connect(&self, addr: &str) -> std::io::Result<Box<dyn Transport>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match self {
            Connector::Tls {
                config,
                server_name,
            } => {
                let tls = TlsConnector::from(config.get())
                    .connect(server_name.clone(), tcp)
                    .await?;
                Ok(Box::new(tls))
            }
            Connector::PlaintextForTests => Ok(Box::new(tcp)),
        }
    }
}
