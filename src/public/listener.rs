//! TCP 443: TLS terminated once for every client, then the first decrypted bytes say who it is
//! for. A STUN message (what a TURN-over-TLS client sends first) goes to the TURN server; anything
//! else is HTTP (the web client, the control API, the bridges' signaling WebSockets) and is
//! handed to axum through [`axum::serve::Listener`].
//!
//! Handshakes run on their own tasks, so a slow or silent client holds one connection slot for
//! at most [`HANDSHAKE_TIMEOUT`] and never delays the others. Every connection, from accept to
//! close, holds a slot of [`PublicListenerConfig::connections_max`]; past it new ones are closed.

use bridgemesh_turn::TurnServer;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// TLS handshake and first bytes together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes that decide STUN or HTTP: a STUN header's type, length and magic cookie.
const SNIFF_BYTES: usize = 8;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

#[derive(Debug, Clone, Copy)]
pub struct PublicListenerConfig {
    /// Connections open at once (handshaking, HTTP, WebSocket and TURN together).
    pub connections_max: usize,
}

impl Default for PublicListenerConfig {
    fn default() -> Self {
        Self {
            connections_max: 10_000,
        }
    }
}

/// What the first decrypted bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A STUN message: TURN over TLS.
    Stun,
    /// Anything else; HTTP/1.1 begins with a method name.
    Http,
}

/// Classifies the first bytes of a connection (at least [`SNIFF_BYTES`] of them, or all there
/// were before the client paused or closed). STUN's first two bits are zero and its bytes 4..8
/// are the magic cookie (RFC 5389 §6); no HTTP request starts that way.
pub fn classify(first: &[u8]) -> FirstBytes {
    if first.len() >= SNIFF_BYTES && first[0] & 0xC0 == 0 && first[4..8] == STUN_MAGIC_COOKIE {
        FirstBytes::Stun
    } else {
        FirstBytes::Http
    }
}

/// A connection after its TLS handshake, with the bytes read to classify it put back in front.
/// It holds its connection slot until dropped.
pub struct PublicStream {
    inner: TlsStream<TcpStream>,
    replay: Vec<u8>,
    replayed: usize,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for PublicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PublicStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The public TLS listener, as axum sees it: it yields the HTTP connections; TURN connections
/// go to `turn` (or are closed when there is none).
pub struct PublicListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    turn: Option<Arc<TurnServer>>,
    slots: Arc<Semaphore>,
    handshakes: JoinSet<Option<(PublicStream, SocketAddr)>>,
}

impl PublicListener {
    pub fn new(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        turn: Option<Arc<TurnServer>>,
        config: PublicListenerConfig,
    ) -> io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            local_addr,
            acceptor: TlsAcceptor::from(tls),
            turn,
            slots: Arc::new(Semaphore::new(config.connections_max)),
            handshakes: JoinSet::new(),
        })
    }

    fn start_handshake(&mut self, tcp: TcpStream, from: SocketAddr) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!("public listener full: connection closed");
            return;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        let turn = self.turn.clone();
        let local = self.local_addr;
        self.handshakes.spawn(async move {
            let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async move {
                let mut tls = acceptor.accept(tcp).await.ok()?;
                let mut first = Vec::with_capacity(SNIFF_BYTES);
                while first.len() < SNIFF_BYTES {
                    let mut byte_buf = [0u8; SNIFF_BYTES];
                    let wanted = SNIFF_BYTES - first.len();
                    let n = tls.read(&mut byte_buf[..wanted]).await.ok()?;
                    if n == 0 {
                        break;
                    }
                    first.extend_from_slice(&byte_buf[..n]);
                }
                Some((tls, first))
            })
            .await;
            let Ok(Some((tls, first))) = opened else {
                return None;
            };
            match classify(&first) {
                FirstBytes::Http => Some((
                    PublicStream {
                        inner: tls,
                        replay: first,
                        replayed: 0,
                        _slot: slot,
                    },
                    from,
                )),
                FirstBytes::Stun => {
                    if let Some(turn) = turn {
                        let stream = PublicStream {
                            inner: tls,
                            replay: first,
                            replayed: 0,
                            _slot: slot,
                        };
                        turn.serve_tls_stream(stream, from, local);
                    }
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for PublicListener {
    type Io = PublicStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(opened)) = done {
                        return opened;
                    }
                }
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, from)) => self.start_handshake(tcp, from),
                    // Out of file descriptors, usually: back off rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::public::certificate::{CertificateSlot, LoadedCertificate, server_config};
    use axum::serve::Listener as _;

    fn tls_config() -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["meet.example.org".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let loaded =
            LoadedCertificate::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), None).unwrap();
        server_config(CertificateSlot::new(Some(loaded))).unwrap()
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = PublicListener::new(
            tcp,
            tls_config(),
            None,
            PublicListenerConfig { connections_max: 2 },
        )
        .unwrap();
        let accepting = tokio::spawn(async move {
            // Never completes: no client finishes a handshake.
            listener.accept().await;
        });
        let held: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte))
            .await
            .expect("the third connection is closed at once, not after the handshake timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The two within the cap are still open.
        for mut stream in held {
            let pending = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
            assert!(pending.is_err(), "a connection within the cap was closed");
        }
        accepting.abort();
    }

    #[test]
    fn stun_is_told_from_http() {
        // A STUN Allocate request header: type 0x0003, length, magic cookie.
        let allocate = [0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3];
        assert_eq!(classify(&allocate), FirstBytes::Stun);
        for http in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /api/v1/rooms/a/join HTTP/1.1\r\n",
            b"\r\nGET /",
        ] {
            assert_eq!(classify(http), FirstBytes::Http);
        }
        // Too short, or the cookie wrong: not STUN.
        assert_eq!(classify(&allocate[..7]), FirstBytes::Http);
        let mut wrong = allocate;
        wrong[5] = 0;
        assert_eq!(classify(&wrong), FirstBytes::Http);
    }
}
