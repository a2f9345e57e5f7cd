//! The control agent: the driver that runs a [`ControlSession`] over WebSockets and carries out
//! control's instructions on the [`Bridge`].
//!
//! One task owns the session. It feeds it the bridge's joins and leaves, a load sample every
//! [`LOAD_SAMPLE_INTERVAL_MS_DEFAULT`], what the connections report, and its timeouts; it carries
//! out the outputs. Each connection is a task of its own that owns the socket, so a slow connect
//! or a stuck write never holds up the session's timers. Every queue between them is bounded: a
//! control node that stops reading is left, and the next registration tells its successor
//! everything.

use crate::control_session::{
    ConnectionId, ControlSession, ControlSessionConfig, SessionConfigError, SessionInput, SessionOutput,
    SessionStatus, SessionUrl, SessionUrlError,
};
use crate::driver::Bridge;
use crate::load::{LoadCeilings, LoadCeilingsError, LoadMeter, LoadSample, ProcessCpu, available_cores};
use crate::shard::BridgeEvent;
use bridgemesh_pki::{ClusterIdentity, ClusterName};
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::bridge_session::{
    BRIDGE_MESSAGE_MAX_BYTES, BridgeRegistration, ControlToBridge, GeoPoint,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

pub const LOAD_SAMPLE_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// The bridge key signs tickets; shorter would be guessable.
pub const BRIDGE_KEY_MIN_BYTES: usize = 32;
/// What a bridge says about itself (URLs, addresses) is small; this keeps a misconfigured one
/// from eating into the room a register message needs for its participants.
pub const REGISTRATION_MAX_BYTES: usize = 64 * 1024;
/// Connection reports queued toward the session.
const LINK_EVENTS_CAPACITY: usize = 256;
/// Frames queued toward one control node. One that falls this far behind is left.
const OUTGOING_CAPACITY: usize = 1024;
const COMMANDS_CAPACITY: usize = 8;
/// A write that takes longer means control stopped reading; the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Unreadable messages tolerated on one connection before it is dropped.
const MALFORMED_MESSAGES_MAX: u32 = 8;
/// Connections whose close is still in flight; the oldest are abandoned past this.
const CLOSING_LINKS_MAX: usize = 16;

#[derive(Clone)]
pub struct ControlAgentConfig {
    /// Control nodes' cluster listeners, any of them (`https://host:port`): see
    /// [`SessionUrl::parse`].
    pub control_urls: Vec<String>,
    /// The bridge's certificate from the cluster CA: it authenticates the session (control
    /// accepts a registration only for the bridge it names) and control's certificate is checked
    /// under its CA.
    pub identity: ClusterIdentity,
    pub registration: BridgeRegistration,
    pub ceilings: LoadCeilings,
    pub load_sample_interval_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub register_timeout_ms: u64,
    /// Told of every participant whose session on this bridge is over for good (left, kicked,
    /// meeting ended; not a drop or a move, after which it comes back under the same id with
    /// fresh credentials that may predate the drop's report): the node's embedded TURN server
    /// ends its allocations and its older credentials.
    pub on_session_end: Option<SessionEndHook>,
}

/// See [`ControlAgentConfig::on_session_end`].
pub type SessionEndHook = Arc<dyn Fn(&ParticipantId) + Send + Sync>;

impl fmt::Debug for ControlAgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            control_urls,
            identity,
            registration,
            ceilings,
            load_sample_interval_ms,
            backoff_min_ms,
            backoff_max_ms,
            register_timeout_ms,
            on_session_end,
        } = self;
        f.debug_struct("ControlAgentConfig")
            .field("control_urls", control_urls)
            .field("identity", identity)
            .field("registration", registration)
            .field("ceilings", ceilings)
            .field("load_sample_interval_ms", load_sample_interval_ms)
            .field("backoff_min_ms", backoff_min_ms)
            .field("backoff_max_ms", backoff_max_ms)
            .field("register_timeout_ms", register_timeout_ms)
            .field("on_session_end", &on_session_end.as_ref().map(|_| "set"))
            .finish()
    }
}

impl ControlAgentConfig {
    /// Default timing and load ceilings (CPU, packets, and the registration's capacity).
    pub fn new(
        control_urls: Vec<String>,
        identity: ClusterIdentity,
        registration: BridgeRegistration,
    ) -> Self {
        Self {
            control_urls,
            identity,
            ceilings: LoadCeilings::with_capacity(registration.capacity.max(1)),
            registration,
            load_sample_interval_ms: LOAD_SAMPLE_INTERVAL_MS_DEFAULT,
            backoff_min_ms: crate::control_session::BACKOFF_MIN_MS_DEFAULT,
            backoff_max_ms: crate::control_session::BACKOFF_MAX_MS_DEFAULT,
            register_timeout_ms: crate::control_session::REGISTER_TIMEOUT_MS_DEFAULT,
            on_session_end: None,
        }
    }

    /// The session URLs, once everything else checks out.
    pub fn validate(&self) -> Result<Vec<SessionUrl>, AgentError> {
        let urls = self
            .control_urls
            .iter()
            .map(|url| {
                SessionUrl::parse(url).map_err(|source| AgentError::ControlUrl {
                    url: url.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.identity.name() != &ClusterName::Bridge(self.registration.id.clone()) {
            return Err(AgentError::CertificateOfAnother {
                names: self.identity.name().to_string(),
                bridge: self.registration.id.to_string(),
            });
        }
        self.ceilings.validate()?;
        if self.load_sample_interval_ms == 0 {
            return Err(AgentError::LoadSampleInterval);
        }
        if self.registration.location.is_some_and(|l| !l.is_valid()) {
            return Err(AgentError::Location);
        }
        let size = serde_json::to_vec(&self.registration).map_or(usize::MAX, |json| json.len());
        if size > REGISTRATION_MAX_BYTES {
            return Err(AgentError::RegistrationTooLarge(size));
        }
        Ok(urls)
    }
}

/// What a bridge registers: its id, region, capacity and media address from the bridge itself,
/// the rest as the caller knows it.
pub fn registration(
    bridge: &Bridge,
    signaling_url: String,
    turn_urls: Vec<String>,
    location: Option<GeoPoint>,
) -> BridgeRegistration {
    let config = bridge.config();
    BridgeRegistration {
        id: config.bridge_id.clone(),
        region: config.region.clone(),
        location,
        signaling_url,
        media_addresses: bridge.media_addrs().iter().map(ToString::to_string).collect(),
        turn_urls,
        capacity: u32::try_from(config.max_participants).unwrap_or(u32::MAX),
        max_participants_per_room: u32::try_from(config.max_participants_per_room).unwrap_or(u32::MAX),
        cascade_addr: None,
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("control URL {url:?}: {source}")]
    ControlUrl { url: String, source: SessionUrlError },
    #[error(transparent)]
    Session(#[from] SessionConfigError),
    #[error(
        "the cluster certificate names {names}, but this is bridge {bridge}; issue one with `bridgemesh ca issue --bridge-id {bridge}`"
    )]
    CertificateOfAnother { names: String, bridge: String },
    #[error("the cluster certificate cannot be used: {0}")]
    Certificate(String),
    #[error("load ceilings: {0}")]
    Ceilings(#[from] LoadCeilingsError),
    #[error("the load sample interval must be positive")]
    LoadSampleInterval,
    #[error("the location must be a latitude within ±90 and a longitude within ±180")]
    Location,
    #[error("the registration is {0} bytes in JSON; at most {REGISTRATION_MAX_BYTES}")]
    RegistrationTooLarge(usize),
    #[error("the bridge's joins and leaves are already taken by someone else; one agent per bridge")]
    EventsTaken,
    #[error("control refused this bridge ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("the control agent task failed: {0}")]
    Task(String),
}

enum AgentCommand {
    Drain { grace_ms: u64 },
    Close,
}

/// The bridge's control agent; see the module documentation.
pub struct ControlAgent {
    status: watch::Receiver<SessionStatus>,
    commands: mpsc::Sender<AgentCommand>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl ControlAgent {
    /// Starts the agent on the current Tokio runtime. It takes the bridge's joins and leaves
    /// ([`Bridge::take_events`]), so there is one agent per bridge.
    pub fn start(bridge: Arc<Bridge>, config: ControlAgentConfig) -> Result<ControlAgent, AgentError> {
        let urls = config.validate()?;
        let instance = format!("{:032x}", rand::random::<u128>());
        let mut session_config =
            ControlSessionConfig::new(urls, config.registration.clone(), instance, rand::random());
        session_config.backoff_min_ms = config.backoff_min_ms;
        session_config.backoff_max_ms = config.backoff_max_ms;
        session_config.register_timeout_ms = config.register_timeout_ms;
        let session = ControlSession::new(session_config, Instant::now())?;
        let events = bridge.take_events().ok_or(AgentError::EventsTaken)?;
        let (status_tx, status) = watch::channel(session.status().clone());
        let (commands, commands_rx) = mpsc::channel(COMMANDS_CAPACITY);
        let (link_events, link_events_rx) = mpsc::channel(LINK_EVENTS_CAPACITY);
        let driver = AgentLoop {
            session,
            tls: TlsConnector::from(
                bridgemesh_pki::tls::control_client_config(&config.identity)
                    .map_err(|err| AgentError::Certificate(err.to_string()))?,
            ),
            meter: LoadMeter::new(config.ceilings, available_cores()),
            cpu: ProcessCpu::default(),
            bridge,
            links: HashMap::new(),
            closing: Vec::new(),
            link_events,
            status: status_tx,
            on_session_end: config.on_session_end.clone(),
        };
        let task = tokio::spawn(driver.run(
            events,
            commands_rx,
            link_events_rx,
            Duration::from_millis(config.load_sample_interval_ms),
        ));
        Ok(ControlAgent {
            status,
            commands,
            task,
        })
    }

    /// The session's status, as it changes: wait on it to see the bridge registered, drained
    /// (`Registered { status: Draining }`), or refused.
    pub fn status(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// Asks control to drain the bridge (again after every reconnect): no new participants, and
    /// the ones it hosts are moved after `grace_ms`.
    pub async fn drain(&self, grace_ms: u64) {
        let _ = self.commands.send(AgentCommand::Drain { grace_ms }).await;
    }

    /// Whether the agent has stopped (refused, or its task ended).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Tells control of the joins and leaves the bridge has reported so far, closes the session
    /// and waits for the agent to end. The error of a session control refused is returned here.
    pub async fn stop(self) -> Result<(), AgentError> {
        let _ = self.commands.send(AgentCommand::Close).await;
        match self.task.await {
            Ok(result) => result,
            Err(err) => Err(AgentError::Task(err.to_string())),
        }
    }
}

enum LinkEvent {
    Connected(ConnectionId),
    Message(ConnectionId, ControlToBridge),
    Pong(ConnectionId),
    Disconnected(ConnectionId),
}

enum Outgoing {
    Text(String),
    Ping,
}

struct Link {
    outgoing: mpsc::Sender<Outgoing>,
    task: JoinHandle<()>,
}

struct AgentLoop {
    session: ControlSession,
    bridge: Arc<Bridge>,
    /// Mutual TLS toward control, shared with every connection task.
    tls: TlsConnector,
    meter: LoadMeter,
    cpu: ProcessCpu,
    links: HashMap<ConnectionId, Link>,
    /// Connections the session left, still sending their close.
    closing: Vec<JoinHandle<()>>,
    link_events: mpsc::Sender<LinkEvent>,
    status: watch::Sender<SessionStatus>,
    on_session_end: Option<SessionEndHook>,
}

impl AgentLoop {
    fn on_bridge_event(&mut self, event: BridgeEvent) {
        if let (
            BridgeEvent::ParticipantLeft {
                participant,
                over: true,
                ..
            },
            Some(hook),
        ) = (&event, &self.on_session_end)
        {
            hook(participant);
        }
        self.input(SessionInput::Event(event));
    }

    async fn run(
        mut self,
        mut events: mpsc::Receiver<BridgeEvent>,
        mut commands: mpsc::Receiver<AgentCommand>,
        mut link_events: mpsc::Receiver<LinkEvent>,
        load_sample_interval: Duration,
    ) -> Result<(), AgentError> {
        let mut load_tick = tokio::time::interval(load_sample_interval);
        load_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            self.carry_out_outputs();
            if self.session.status().is_final() {
                break;
            }
            let deadline = self.session.poll_timeout();
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => self.on_bridge_event(event),
                    // The bridge is gone; the session carries on until it is closed.
                    None => events_open = false,
                },
                // Never closed: this loop holds a sender for new connections.
                Some(event) = link_events.recv() => self.on_link_event(event),
                command = commands.recv() => match command {
                    Some(AgentCommand::Drain { grace_ms }) => self.input(SessionInput::Drain { grace_ms }),
                    Some(AgentCommand::Close) | None => {
                        // What the bridge reported before the close (the leaves of its shutdown)
                        // goes out first.
                        while let Ok(event) = events.try_recv() {
                            self.on_bridge_event(event);
                        }
                        self.input(SessionInput::Close);
                    }
                },
                _ = load_tick.tick() => {
                    let now = Instant::now();
                    let sample = LoadSample::from_bridge(&self.bridge, self.cpu.read_s(), now);
                    let load = self.meter.update(sample);
                    self.input(SessionInput::Load(load));
                }
                () = timeout => self.session.handle_timeout(Instant::now()),
            }
        }
        self.carry_out_outputs();
        for link in self.links.drain().map(|(_, link)| link) {
            drop(link.outgoing);
            self.closing.push(link.task);
        }
        for task in self.closing.drain(..) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, task).await;
        }
        match self.session.status() {
            SessionStatus::Refused { code, message } => Err(AgentError::Refused {
                code: code.clone(),
                message: message.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn input(&mut self, input: SessionInput) {
        self.session.handle_input(Instant::now(), input);
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        let input = match event {
            LinkEvent::Connected(connection) => SessionInput::Connected(connection),
            LinkEvent::Message(connection, message) => SessionInput::Message(connection, message),
            LinkEvent::Pong(connection) => SessionInput::Pong(connection),
            LinkEvent::Disconnected(connection) => {
                if let Some(link) = self.links.remove(&connection) {
                    self.closing.push(link.task);
                }
                SessionInput::Disconnected(connection)
            }
        };
        self.input(input);
    }

    fn carry_out_outputs(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                SessionOutput::Connect { connection, url } => {
                    tracing::debug!(%url, "connecting to control");
                    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_CAPACITY);
                    let task = tokio::spawn(link(
                        connection,
                        url,
                        self.tls.clone(),
                        self.link_events.clone(),
                        outgoing_rx,
                    ));
                    self.links.insert(connection, Link { outgoing, task });
                }
                SessionOutput::Send { connection, message } => {
                    let text = match serde_json::to_string(&message) {
                        Ok(text) => text,
                        Err(err) => {
                            // Only a non-finite float could do this, and the load meter makes none.
                            tracing::error!(%err, "cannot encode a message for control");
                            continue;
                        }
                    };
                    self.enqueue(connection, Outgoing::Text(text));
                }
                SessionOutput::Ping { connection } => self.enqueue(connection, Outgoing::Ping),
                SessionOutput::Disconnect { connection } => {
                    if let Some(link) = self.links.remove(&connection) {
                        // Dropping the sender tells the task to send what is queued and close.
                        drop(link.outgoing);
                        self.closing.push(link.task);
                    }
                }
                SessionOutput::Moderate(action) => {
                    tracing::debug!(?action, "carrying out control's instruction");
                    self.bridge.carry_out(action);
                }
                SessionOutput::Status(status) => {
                    self.status.send_replace(status);
                }
                SessionOutput::RoomBridges { room, peers } => {
                    tracing::debug!(%room, peers = peers.len(), "control lists the room's other bridges");
                    self.bridge.set_room_bridges(room, peers);
                }
                SessionOutput::RoomBridgesComplete { rooms } => {
                    if let Some(cascade) = self.bridge.cascade() {
                        cascade.keep_only_rooms(rooms);
                    }
                }
            }
        }
        self.closing.retain(|task| !task.is_finished());
        while self.closing.len() > CLOSING_LINKS_MAX {
            self.closing.remove(0).abort();
        }
    }

    fn enqueue(&mut self, connection: ConnectionId, frame: Outgoing) {
        let Some(link) = self.links.get(&connection) else {
            return;
        };
        match link.outgoing.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("control is not reading this bridge's messages; reconnecting");
                if let Some(link) = self.links.remove(&connection) {
                    link.task.abort();
                }
                self.input(SessionInput::Disconnected(connection));
            }
            // The task ended; its `Disconnected` is on the way.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// One connection to a control node: connects, then relays frames both ways until either side
/// ends it. Reports `Connected` once open and `Disconnected` when it fails or the far side closes;
/// when the session drops its sender, it sends what is queued, closes, and reports nothing.
async fn link(
    connection: ConnectionId,
    url: SessionUrl,
    tls: TlsConnector,
    events: mpsc::Sender<LinkEvent>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let request = match url.as_str().into_client_request() {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%err, "a control URL the WebSocket client cannot use");
            let _ = events.send(LinkEvent::Disconnected(connection)).await;
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(BRIDGE_MESSAGE_MAX_BYTES))
        .max_frame_size(Some(BRIDGE_MESSAGE_MAX_BYTES));
    // The session's registration deadline bounds the connect; it drops the sender to give up.
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(url.host_port())
            .await
            .map_err(|err| err.to_string())?;
        let _ = tcp.set_nodelay(true);
        let stream = tls
            .connect(bridgemesh_pki::tls::any_control_server_name(), tcp)
            .await
            .map_err(|err| format!("TLS: {err}"))?;
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|err| err.to_string())
    };
    let mut socket = tokio::select! {
        result = connect => match result {
            Ok((socket, _)) => socket,
            Err(err) => {
                // A certificate either side refuses is a configuration to fix, not a node down.
                if err.starts_with("TLS") {
                    tracing::warn!(%err, "control's cluster listener and this bridge do not accept each other's certificates");
                } else {
                    tracing::debug!(%err, "cannot open a session with this control node");
                }
                let _ = events.send(LinkEvent::Disconnected(connection)).await;
                return;
            }
        },
        None = outgoing.recv() => return,
    };
    if events.send(LinkEvent::Connected(connection)).await.is_err() {
        return;
    }
    let mut malformed = 0;
    loop {
        tokio::select! {
            frame = socket.next() => {
                let event = match frame {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ControlToBridge>(&text) {
                        Ok(message) => LinkEvent::Message(connection, message),
                        Err(err) => {
                            malformed += 1;
                            tracing::warn!(%err, "unreadable message from control");
                            if malformed > MALFORMED_MESSAGES_MAX {
                                break;
                            }
                            continue;
                        }
                    },
                    Some(Ok(Message::Pong(_))) => LinkEvent::Pong(connection),
                    Some(Ok(Message::Binary(_))) => {
                        malformed += 1;
                        if malformed > MALFORMED_MESSAGES_MAX {
                            break;
                        }
                        continue;
                    }
                    // tungstenite answers pings by itself.
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            frame = outgoing.recv() => {
                let message = match frame {
                    Some(Outgoing::Text(text)) => Message::Text(text.into()),
                    Some(Outgoing::Ping) => Message::Ping(Bytes::new()),
                    None => {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                        return;
                    }
                };
                match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
    }
    let _ = events.send(LinkEvent::Disconnected(connection)).await;
}
