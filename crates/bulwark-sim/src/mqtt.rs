//! One MQTT client connection: `bulwark_mqtt`'s sans-I/O codec driven over
//! a tokio-rustls stream, with a read buffer the decoder frames packets out
//! of and a write buffer that is flushed in one write.
//!
//! Publications go out through a [`PublishTemplate`]: the packet is encoded
//! once and each message is a copy with its packet identifier and payload
//! header patched in, so the publish loop does not allocate.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bulwark_mqtt::{
    Connect, DecodeError, Decoder, Disconnect, EncodeError, Encoder, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter, TopicName,
};
use bytes::BytesMut;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::net::Broker;

/// Largest packet accepted from the broker.
const MAX_INBOUND_PACKET: u32 = 1024 * 1024;
/// Time allowed for DISCONNECT and the TLS close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed; the text is what the result's `error_kinds`
/// count, so it carries the cause itself (no `source` chain to repeat it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("tcp: {0}")]
    Tcp(io::Error),
    #[error("tls handshake: {0}")]
    Tls(io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("CONNACK refused the connection: {0:?}")]
    Refused(ReasonCode),
    #[error("SUBACK refused the subscription: {0:?}")]
    SubscribeRefused(ReasonCode),
    #[error("the broker sent DISCONNECT: {0:?}")]
    Disconnected(ReasonCode),
    #[error("the broker closed the connection")]
    Closed,
    #[error("i/o: {0}")]
    Io(io::Error),
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    #[error("undecodable packet from the broker: {0}")]
    Decode(DecodeError),
    #[error("cannot encode: {0}")]
    Encode(EncodeError),
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Failure::Decode(e)
    }
}

impl From<EncodeError> for Failure {
    fn from(e: EncodeError) -> Self {
        Failure::Encode(e)
    }
}

/// What every connection of a run shares.
pub(crate) struct Session {
    pub(crate) version: ProtocolVersion,
    pub(crate) keepalive: u16,
    pub(crate) server_name: ServerName<'static>,
}

/// A connected, CONNACKed client.
pub(crate) struct Conn {
    io: TlsStream<TcpStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    read_chunk: usize,
    /// The broker's Receive Maximum (65,535 when it sends none).
    pub(crate) receive_maximum: u16,
}

impl Conn {
    /// TCP, TLS, CONNECT and CONNACK, all within the broker's connect
    /// timeout. `read_chunk` is how much read buffer to keep free: small for
    /// idle connections, large for busy ones.
    pub(crate) async fn open(
        broker: &Broker,
        session: &Session,
        tls: Arc<ClientConfig>,
        client_id: &str,
        read_chunk: usize,
    ) -> Result<Conn, Failure> {
        Self::open_with(broker, session, tls, client_id, None, read_chunk).await
    }

    /// [`Conn::open`] with a username and password in the CONNECT.
    pub(crate) async fn open_with(
        broker: &Broker,
        session: &Session,
        tls: Arc<ClientConfig>,
        client_id: &str,
        credentials: Option<(String, Vec<u8>)>,
        read_chunk: usize,
    ) -> Result<Conn, Failure> {
        let (username, password) = match credentials {
            Some((u, p)) => (Some(u), Some(p.into())),
            None => (None, None),
        };
        let deadline = Instant::now() + broker.connect_timeout();
        let io = broker
            .dial(tls, session.server_name.clone(), deadline)
            .await?;
        let mut conn = Conn {
            io,
            rbuf: BytesMut::with_capacity(read_chunk),
            wbuf: BytesMut::with_capacity(read_chunk),
            decoder: Decoder::with_version(session.version, MAX_INBOUND_PACKET),
            encoder: Encoder::new(session.version),
            read_chunk,
            receive_maximum: u16::MAX,
        };
        let connect = Connect {
            protocol_version: session.version,
            clean_start: true,
            keep_alive: session.keepalive,
            client_id: client_id.to_owned(),
            will: None,
            username,
            password,
            properties: Properties::default(),
        };
        conn.queue(&Packet::Connect(Box::new(connect)))?;
        tokio::time::timeout_at(deadline, conn.flush())
            .await
            .map_err(|_| Failure::Timeout("sending CONNECT"))??;
        let packet = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| Failure::Timeout("waiting for CONNACK"))??;
        let Packet::ConnAck(ack) = packet else {
            return Err(Failure::Unexpected(packet.packet_type().name()));
        };
        if ack.reason_code.is_error() {
            return Err(Failure::Refused(ack.reason_code));
        }
        if let Some(max) = ack.properties.receive_maximum {
            conn.receive_maximum = max.get();
        }
        if let Some(max) = ack.properties.maximum_packet_size {
            conn.encoder.set_max_packet_size(max.get());
        }
        Ok(conn)
    }

    /// SUBSCRIBE to one filter and wait (bounded) for a SUBACK granting it.
    pub(crate) async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let filter = TopicFilter::new(filter).map_err(|_| Failure::Unexpected("topic filter"))?;
        let sub = Subscribe {
            packet_id: PacketId::from(std::num::NonZeroU16::MIN),
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter,
                options: SubscriptionOptions::new(qos),
            }],
        };
        self.queue(&Packet::Subscribe(sub))?;
        let fut = async {
            self.flush().await?;
            loop {
                match self.recv().await? {
                    Packet::SubAck(ack) => {
                        return match ack.reason_codes.first() {
                            Some(rc) if !rc.is_error() => Ok(()),
                            Some(rc) => Err(Failure::SubscribeRefused(*rc)),
                            None => Err(Failure::Unexpected("empty SUBACK")),
                        };
                    }
                    Packet::PingResp => {}
                    Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
                    other => return Err(Failure::Unexpected(other.packet_type().name())),
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Failure::Timeout("waiting for SUBACK"))?
    }

    /// Appends `packet` to the write buffer.
    pub(crate) fn queue(&mut self, packet: &Packet) -> Result<(), Failure> {
        Ok(self.encoder.encode(packet, &mut self.wbuf)?)
    }

    /// The write buffer, for [`PublishTemplate::push`].
    pub(crate) fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes everything queued. Not cancel-safe: never race it in a `select!`.
    pub(crate) async fn flush(&mut self) -> Result<(), Failure> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await.map_err(Failure::Io)?;
            self.wbuf.clear();
        }
        self.io.flush().await.map_err(Failure::Io)
    }

    /// Reads whatever the broker sent next into the read buffer. Cancel-safe.
    pub(crate) async fn read_more(&mut self) -> Result<(), Failure> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 2 {
            self.rbuf.reserve(self.read_chunk);
        }
        match self.io.read_buf(&mut self.rbuf).await {
            Ok(0) => Err(Failure::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::Io(e)),
        }
    }

    /// The next complete packet already read, if any.
    pub(crate) fn next_packet(&mut self) -> Result<Option<Packet>, Failure> {
        Ok(self.decoder.decode(&mut self.rbuf)?)
    }

    /// The next packet, reading as needed (unbounded: wrap it in a timeout).
    pub(crate) async fn recv(&mut self) -> Result<Packet, Failure> {
        loop {
            if let Some(p) = self.next_packet()? {
                return Ok(p);
            }
            self.read_more().await?;
        }
    }

    /// DISCONNECT and TLS close, bounded; errors are ignored (the run is over).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            self.queue(&Packet::Disconnect(Disconnect::default()))?;
            self.flush().await?;
            self.io.shutdown().await.map_err(Failure::Io)
        })
        .await;
    }
}

/// One publisher's PUBLISH, encoded once.
pub(crate) struct PublishTemplate {
    bytes: Vec<u8>,
    packet_id_at: Option<usize>,
    payload_at: usize,
}

impl PublishTemplate {
    pub(crate) fn new(
        version: ProtocolVersion,
        topic: &str,
        qos: QoS,
        payload_len: usize,
    ) -> Result<Self, Failure> {
        let name = TopicName::new(topic).map_err(|_| Failure::Unexpected("topic name"))?;
        let mut publish = Publish::new(name, vec![b'x'; payload_len]);
        publish.qos = qos;
        if qos != QoS::AtMostOnce {
            publish.packet_id = PacketId::new(0x1234);
        }
        let mut buf = BytesMut::new();
        Packet::Publish(publish).encode(version, &mut buf)?;
        let bytes = buf.to_vec();
        // Fixed header: one byte, then the Remaining Length (continuation bit 0x80).
        let len_bytes = 1 + bytes.iter().skip(1).take_while(|b| **b & 0x80 != 0).count();
        let packet_id_at = (qos != QoS::AtMostOnce).then_some(1 + len_bytes + 2 + topic.len());
        if let Some(at) = packet_id_at {
            if bytes.get(at..at + 2) != Some(&[0x12, 0x34][..]) {
                return Err(Failure::Unexpected("PUBLISH layout"));
            }
        }
        let payload_at = bytes.len() - payload_len;
        Ok(PublishTemplate {
            bytes,
            packet_id_at,
            payload_at,
        })
    }

    /// Appends one message with `packet_id` (QoS 1) and `header` at the
    /// start of the payload.
    pub(crate) fn push(&self, dst: &mut BytesMut, packet_id: u16, header: &[u8]) {
        let start = dst.len();
        dst.extend_from_slice(&self.bytes);
        if let Some(at) = self.packet_id_at {
            dst[start + at..start + at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let p = start + self.payload_at;
        dst[p..p + header.len()].copy_from_slice(header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(version: ProtocolVersion, bytes: &mut BytesMut) -> Publish {
        match Decoder::with_version(version, 1 << 20)
            .decode(bytes)
            .unwrap()
        {
            Some(Packet::Publish(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn template_patches_id_and_header() {
        for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
            for (qos, len) in [
                (QoS::AtLeastOnce, 20),
                (QoS::AtMostOnce, 200),
                (QoS::AtLeastOnce, 300),
            ] {
                let t = PublishTemplate::new(version, "devices/d-1/telemetry", qos, len).unwrap();
                let mut buf = BytesMut::new();
                t.push(&mut buf, 7, b"abcd");
                t.push(&mut buf, 65535, b"wxyz");
                let first = decode(version, &mut buf);
                let second = decode(version, &mut buf);
                assert!(buf.is_empty());
                assert_eq!(first.topic.unwrap().as_str(), "devices/d-1/telemetry");
                assert_eq!(first.qos, qos);
                assert_eq!(first.payload.len(), len);
                assert_eq!(&first.payload[..4], b"abcd");
                assert_eq!(&second.payload[..4], b"wxyz");
                assert_eq!(&second.payload[4..], &vec![b'x'; len - 4][..]);
                if qos == QoS::AtLeastOnce {
                    assert_eq!(first.packet_id.unwrap().get(), 7);
                    assert_eq!(second.packet_id.unwrap().get(), 65535);
                }
            }
        }
    }
}
