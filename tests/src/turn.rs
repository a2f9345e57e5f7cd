//! TURN test helpers: a server on loopback with an echo peer it may relay to, a raw TURN client
//! for refusal tests (it sends exactly what a test asks, including what a real client would not),
//! and a runner for coturn's `turnutils_uclient`, the standard client we did not write.
//!
//! Every address here is in 127.0.0.0/8: a test never sends a packet anywhere else.

use bridgemesh_turn::credentials::rest_credential;
use bridgemesh_turn::stun::{Class, Message, Writer, attr, method};
use bridgemesh_turn::{TurnConfig, TurnServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// ASCII so that it can be given to `turnutils_uclient -W`.
pub const SECRET: &str = "lab-secret-0123456789abcdef";
pub const REALM: &str = "bridgemesh";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A TURN server on 127.0.0.1 (UDP and TCP) whose allowlist holds exactly one peer: a UDP echo
/// server on 127.0.0.1.
pub struct TurnLab {
    pub server: TurnServer,
    pub echo: SocketAddr,
    echo_task: JoinHandle<()>,
}

impl Drop for TurnLab {
    fn drop(&mut self) {
        self.echo_task.abort();
    }
}

/// A UDP echo server on 127.0.0.1.
pub async fn echo_peer() -> (SocketAddr, JoinHandle<()>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("echo binds");
    let addr = socket.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..len], from).await;
            }
        }
    });
    (addr, task)
}

/// The lab's configuration before `customize`; tests change limits through it.
pub async fn turn_lab(customize: impl FnOnce(&mut TurnConfig)) -> TurnLab {
    crate::harness::init_tracing();
    let (echo, echo_task) = echo_peer().await;
    let mut config = TurnConfig {
        udp_listen: Some(SocketAddr::new(loopback(1), 0)),
        tcp_listen: Some(SocketAddr::new(loopback(1), 0)),
        relay_ip: loopback(1),
        secret: SECRET.as_bytes().to_vec(),
        realm: REALM.to_owned(),
        allow_peer_addrs: vec![echo],
        ..TurnConfig::default()
    };
    customize(&mut config);
    let server = TurnServer::start(config).await.expect("the TURN server starts");
    TurnLab {
        server,
        echo,
        echo_task,
    }
}

/// A valid credential for `user`, an hour from expiry.
pub fn credential(user: &str) -> (String, String) {
    rest_credential(SECRET.as_bytes(), user, unix_now_s() + 3600)
}

/// An answer to a request: its class, error code (0 on success) and raw bytes.
#[derive(Debug)]
pub struct Answer {
    pub class: Class,
    pub code: u16,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn message(&self) -> Message<'_> {
        Message::decode(&self.raw).expect("the server sends valid STUN")
    }
}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

/// A hand-driven TURN client over UDP or TCP, on our own codec.
pub struct RawTurnClient {
    link: Link,
    username: String,
    password: String,
    nonce: Option<String>,
    realm: String,
    next_id: u8,
}

impl RawTurnClient {
    pub async fn udp(server: SocketAddr, (username, password): (String, String)) -> Self {
        Self::udp_from(loopback(1), server, (username, password)).await
    }

    /// From a chosen loopback address (127.0.0.x), to look like another source.
    pub async fn udp_from(local: IpAddr, server: SocketAddr, (username, password): (String, String)) -> Self {
        let socket = UdpSocket::bind((local, 0)).await.expect("client binds");
        Self::new(Link::Udp(socket, server), username, password)
    }

    pub async fn tcp(server: SocketAddr, (username, password): (String, String)) -> Self {
        let stream = TcpStream::connect(server).await.expect("TCP connects");
        Self::new(Link::Tcp(stream), username, password)
    }

    fn new(link: Link, username: String, password: String) -> Self {
        Self {
            link,
            username,
            password,
            nonce: None,
            realm: REALM.to_owned(),
            next_id: 0,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(socket, server) => {
                socket.send_to(bytes, *server).await.expect("send");
            }
            Link::Tcp(stream) => stream.write_all(bytes).await.expect("send"),
        }
    }

    /// The next datagram or stream frame, or `None` after `timeout`.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        match &mut self.link {
            Link::Udp(socket, _) => {
                let mut buf = vec![0u8; 65536];
                let (len, _) = tokio::time::timeout(timeout, socket.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                buf.truncate(len);
                Some(buf)
            }
            Link::Tcp(stream) => {
                let mut head = [0u8; 4];
                tokio::time::timeout(timeout, stream.read_exact(&mut head))
                    .await
                    .ok()?
                    .ok()?;
                let len = bridgemesh_turn::stun::stream_frame_len(head).expect("a STUN or ChannelData frame");
                let mut frame = vec![0u8; len];
                frame[..4].copy_from_slice(&head);
                stream.read_exact(&mut frame[4..]).await.ok()?;
                Some(frame)
            }
        }
    }

    fn transaction_id(&mut self) -> [u8; 12] {
        self.next_id += 1;
        let mut id = [0x42u8; 12];
        id[0] = self.next_id;
        id
    }

    /// Sends one request (`method`, attributes by `attributes`), authenticated if a nonce is
    /// known, and returns the answer with the same transaction id.
    pub async fn request_once(&mut self, method: u16, attributes: &dyn Fn(&mut Writer<'_>)) -> Answer {
        let id = self.transaction_id();
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, method, Class::Request, id);
        attributes(&mut w);
        if let Some(nonce) = &self.nonce {
            w.attribute(attr::USERNAME, self.username.as_bytes())
                .attribute(attr::REALM, self.realm.as_bytes())
                .attribute(attr::NONCE, nonce.as_bytes());
            let key =
                bridgemesh_turn::credentials::long_term_key(&self.username, &self.realm, &self.password);
            w.finish_with_integrity(&key, true);
        }
        self.send_raw(&buf).await;
        loop {
            let raw = self
                .recv_raw(ANSWER_TIMEOUT)
                .await
                .unwrap_or_else(|| panic!("no answer to method {method:#x} within {ANSWER_TIMEOUT:?}"));
            let Ok(message) = Message::decode(&raw) else {
                continue;
            };
            if message.transaction_id != id {
                continue;
            }
            let code = message
                .get(attr::ERROR_CODE)
                .map_or(0, |v| u16::from(v[2]) * 100 + u16::from(v[3]));
            if let Some(nonce) = message.text(attr::NONCE) {
                self.nonce = Some(nonce.to_owned());
            }
            return Answer {
                class: message.class,
                code,
                raw,
            };
        }
    }

    /// A request with the 401 challenge (and a stale nonce) handled: the answer to the
    /// authenticated attempt.
    pub async fn request(&mut self, method: u16, attributes: &dyn Fn(&mut Writer<'_>)) -> Answer {
        let had_nonce = self.nonce.is_some();
        let answer = self.request_once(method, attributes).await;
        if (answer.code == 401 && !had_nonce) || answer.code == 438 {
            return self.request_once(method, attributes).await;
        }
        answer
    }

    pub async fn allocate(&mut self) -> Answer {
        self.request(method::ALLOCATE, &|w| {
            w.u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
        })
        .await
    }

    /// Refreshes the allocation for `lifetime_s` (0 deletes it).
    pub async fn refresh(&mut self, lifetime_s: u32) -> Answer {
        self.request(method::REFRESH, &|w| {
            w.u32_attribute(attr::LIFETIME, lifetime_s);
        })
        .await
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Answer {
        self.request(method::CREATE_PERMISSION, &|w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .await
    }

    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Answer {
        self.request(method::CHANNEL_BIND, &|w| {
            w.attribute(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0])
                .xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .await
    }

    /// A Send indication carrying `data` to `peer`.
    pub async fn send_to_peer(&mut self, peer: SocketAddr, data: &[u8]) {
        let id = self.transaction_id();
        let mut buf = Vec::new();
        Writer::new(&mut buf, method::SEND, Class::Indication, id)
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attribute(attr::DATA, data);
        self.send_raw(&buf).await;
    }

    /// The payload of the next Data indication, skipping anything else.
    pub async fn recv_data(&mut self, timeout: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let raw = self.recv_raw(left).await?;
            let Ok(message) = Message::decode(&raw) else {
                continue;
            };
            if (message.class, message.method) != (Class::Indication, method::DATA) {
                continue;
            }
            let peer = message
                .get(attr::XOR_PEER_ADDRESS)
                .and_then(|v| message.xor_address(v))?;
            return Some((peer, message.get(attr::DATA)?.to_vec()));
        }
    }
}

/// What `turnutils_uclient` reported.
#[derive(Debug)]
pub struct UclientReport {
    pub sent: u64,
    pub received: u64,
    pub output: String,
}

/// Runs coturn's `turnutils_uclient` against `server` with REST credentials derived from
/// [`SECRET`] (`-W`), relaying to `peer`. `extra` adds flags (`-t` for TCP, `-s` for Send
/// indications instead of channels, `-S` for TLS).
pub async fn run_uclient(
    server: SocketAddr,
    peer: SocketAddr,
    messages: u32,
    extra: &[&str],
) -> UclientReport {
    let binary = "turnutils_uclient";
    let mut command = tokio::process::Command::new(binary);
    command
        // -c: no RTCP pair (EVEN-PORT reservations, which this server does not keep).
        .args(["-c", "-m", "2", "-l", "400"])
        .args(["-n", &messages.to_string()])
        .args(["-p", &server.port().to_string()])
        .args(["-e", &peer.ip().to_string(), "-r", &peer.port().to_string()])
        .args(["-W", SECRET, "-u", "ada"])
        .args(extra)
        .arg(server.ip().to_string())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("turnutils_uclient finishes within 90 s")
        .unwrap_or_else(|err| {
            panic!("cannot run {binary} ({err}): install Debian's `coturn` package (scripts/test does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The summary line: "start_mclient: tot_send_msgs=40, tot_recv_msgs=40".
    let summary = text
        .lines()
        .rev()
        .find_map(|line| {
            let rest = line.split("start_mclient: tot_send_msgs=").nth(1)?;
            let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
            Some((sent.trim().parse().ok()?, rest.trim().parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no summary in turnutils_uclient's output:\n{text}"));
    UclientReport {
        sent: summary.0,
        received: summary.1,
        output: text,
    }
}

/// After `server` heard that the session of `client`'s user ended: its one allocation is gone
/// (a refresh is 401) and the credential it was made with makes no new one.
pub async fn assert_session_ended(
    server: &TurnServer,
    client: &mut RawTurnClient,
    credential: (String, String),
) {
    let stats = server.stats();
    assert_eq!(
        (
            stats.allocations_active,
            stats.allocations_ended_with_session_total
        ),
        (0, 1),
        "{stats:?}"
    );
    let refresh = client.refresh(600).await;
    assert_eq!(
        (refresh.class, refresh.code),
        (Class::Error, 401),
        "the allocation is gone"
    );
    let udp = server.udp_addr().expect("the server listens on UDP");
    let again = RawTurnClient::udp(udp, credential).await.allocate().await;
    assert_eq!(
        (again.class, again.code),
        (Class::Error, 401),
        "the credential is refused"
    );
}
