//! A SIP client over mutual TLS towards the edge, reading replies with the
//! edge's own framer, and requests the tests send through it. It never
//! checks what the edge answers: the tests assert.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use fedge::sip::SipMessage;
use fedge::sip::framing::{StreamDecoder, StreamItem};
use fedge::sip::parse::Limits;
use fedge::sip::transport::tls::{TlsFiles, client_config};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Decoder;

use crate::pki::{CertFiles, EDGE_FQDN, PARTNER_FQDN, Pki};

/// A TLS client connection to the edge, reading SIP with a real framer.
pub struct SipTlsClient {
    pub stream: TlsStream<TcpStream>,
    buf: BytesMut,
    decoder: StreamDecoder,
}

/// What came back from the edge.
#[derive(Debug)]
pub enum Reply {
    Message(SipMessage),
    Pong,
    Closed,
    Timeout,
}

pub async fn tls_connect(
    addr: SocketAddr,
    pki: &Pki,
    client: &CertFiles,
) -> std::io::Result<SipTlsClient> {
    tls_connect_from(addr, pki, client, None).await
}

/// [`tls_connect`] from a chosen local address (another 127.0.0.0/8
/// address plays another host).
pub async fn tls_connect_from(
    addr: SocketAddr,
    pki: &Pki,
    client: &CertFiles,
    from: Option<std::net::IpAddr>,
) -> std::io::Result<SipTlsClient> {
    let cfg = client_config(&TlsFiles {
        cert: client.cert.clone(),
        key: client.key.clone(),
        trust: pki.ca_file.clone(),
    })
    .expect("client TLS config");
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = match from {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let s = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            s.bind(SocketAddr::new(ip, 0))?;
            s.connect(addr).await?
        }
    };
    let name = ServerName::try_from(EDGE_FQDN).unwrap();
    let stream = connector.connect(name, tcp).await?;
    Ok(SipTlsClient {
        stream,
        buf: BytesMut::new(),
        decoder: StreamDecoder::new(Limits::default()),
    })
}

impl SipTlsClient {
    pub async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(data).await?;
        self.stream.flush().await
    }

    /// Reads the next reply, waiting at most `within`.
    pub async fn recv(&mut self, within: Duration) -> Reply {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(StreamItem::Message(m))) => return Reply::Message(m),
                Ok(Some(StreamItem::Ping)) => return Reply::Pong,
                // An error response to a malformed request echoes the
                // request's own (malformed) Via/From/To as RFC 3261 §8.2.6.2
                // asks; its index still tells the status.
                Ok(Some(StreamItem::Rejected(r))) => match r.partial {
                    Some(m) if m.status().is_some() => return Reply::Message(m),
                    _ => panic!("edge sent a malformed message: {}", r.error),
                },
                Ok(None) => {}
                Err(e) => panic!("edge broke framing: {e}"),
            }
            // A lone CRLF is the pong to our CRLF CRLF ping.
            if self.buf.as_ref() == b"\r\n" {
                self.buf.clear();
                return Reply::Pong;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Reply::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Reply::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// An OPTIONS request addressed to the edge itself.
pub fn options_to_edge(n: u32) -> String {
    format!(
        "OPTIONS sip:{EDGE_FQDN} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-witness-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ping@partner.test>;tag=w{n}\r\n\
         To: <sip:{EDGE_FQDN}>\r\n\
         Call-ID: witness-{n}@{PARTNER_FQDN}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
