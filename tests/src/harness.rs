//! Starting what an operator starts, on ephemeral loopback ports, for one test.

use bridgemesh::up::{Running, UpConfig};
use bridgemesh_proto::api::{ErrorCode, JoinResponse};
use bridgemesh_proto::signaling::{ClientMessage, MediaSource, ServerMessage, TrackInfo};
use bridgemesh_proto::{ParticipantId, RoomId};
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use futures_util::{SinkExt, StreamExt};
use std::sync::Once;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

static TRACING: Once = Once::new();

/// Logs at `RUST_LOG` (default warn) to the test's captured output.
pub fn init_tracing() {
    TRACING.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// `bridgemesh up` on ephemeral ports.
pub async fn up() -> Running {
    init_tracing();
    bridgemesh::up::start(UpConfig::ephemeral())
        .await
        .expect("bridgemesh up starts")
}

pub fn room(name: &str) -> RoomId {
    RoomId::new(name).expect("valid room name")
}

/// How long end-to-end tests wait for media that should be flowing.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until `receiver` has received more than `more_than` intact camera packets from `from`.
pub async fn wait_for_camera(receiver: &SyntheticParticipant, from: &SyntheticParticipant, more_than: u64) {
    let id = from.participant_id().clone();
    receiver
        .wait_until(
            &format!("more than {more_than} camera packets from {id}"),
            MEDIA_TIMEOUT,
            |stats, _| stats.intact_from(&id, MediaSource::Camera) > more_than,
        )
        .await
        .unwrap();
}

/// A synthetic participant publishing audio and video into `room`.
pub async fn join(running: &Running, room: &RoomId, name: &str) -> SyntheticParticipant {
    SyntheticParticipant::join(&running.control_url, room, ParticipantOptions::new(name))
        .await
        .unwrap_or_else(|err| panic!("{name} could not join: {err}"))
}

/// Driving the web client in headless Chromium: opening participants and reading what a page
/// receives, with summaries that make a failed wait diagnosable.
pub mod web {
    use crate::chromium::{Browser, Page};
    use bridgemesh::up::Running;
    use bridgemesh_proto::RoomId;
    use serde_json::Value;
    use std::time::Duration;

    /// Source of an async JS function describing one page of the web client: its state, roster,
    /// remote tiles, and every inbound RTP stream attributed to the participant the bridge
    /// forwards it from (the msid stream id of its m-line in the bridge's offer, which is the
    /// publisher's id).
    macro_rules! summary_fn {
        () => {
            r#"async () => {
  const bm = window.bridgemesh;
  if (!bm) return { error: 'window.bridgemesh is missing', href: location.href };
  const pc = bm.pc;
  const out = {
    state: bm.state,
    me: bm.participantId,
    peers: Array.from(bm.participants.values(), (p) => ({ id: p.id, name: p.display_name, sources: p.sources })),
    pc: pc ? `${pc.connectionState}/${pc.iceConnectionState}/${pc.signalingState}` : null,
    tiles: Array.from(document.querySelectorAll('#grid .tile:not(.local), #stage .tile'),
      (t) => t.querySelector('.name').textContent),
    audios: document.querySelectorAll('#remote-audio audio').length,
    metrics: bm.metrics,
    reconnects: bm.reconnects,
    bridgeId: bm.bridgeId,
    inbound: [],
  };
  if (!pc) return out;
  const sections = new Map(); // mid -> { pid, ssrcs }
  const sdp = (pc.remoteDescription && pc.remoteDescription.sdp) || '';
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = (section.match(/^a=mid:(\S+)/m) || [])[1];
    const msid = (section.match(/^a=msid:(\S+)/m) || section.match(/^a=ssrc:\d+ msid:(\S+)/m) || [])[1];
    const ssrcs = Array.from(section.matchAll(/^a=ssrc:(\d+) /gm), (m) => Number(m[1]));
    if (mid !== undefined) sections.set(mid, { pid: msid && msid !== '-' ? msid : null, ssrcs });
  }
  const midOfTrack = new Map(pc.getTransceivers().filter((t) => t.mid !== null)
    .map((t) => [t.receiver.track.id, t.mid]));
  const stats = await pc.getStats();
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    const mid = r.mid !== undefined ? r.mid : midOfTrack.get(r.trackIdentifier);
    const section = sections.get(mid);
    // A stale stream on a reused m-line must not count for its new publisher.
    const from = section && (!section.ssrcs.length || section.ssrcs.includes(r.ssrc)) ? section.pid : null;
    // Sender reports received for the stream (its remote-outbound-rtp stats, RFC 3550 SRs).
    const reports = (r.remoteId && stats.get(r.remoteId) || {}).reportsSent || 0;
    out.inbound.push({ kind: r.kind, mid, ssrc: r.ssrc, from, packets: r.packetsReceived || 0,
      frames: r.framesDecoded || 0, reports });
  });
  return out;
}"#
        };
    }

    /// The summary of a page as a JS expression (a promise of an object); needs no helpers.
    pub const PAGE_SUMMARY_JS: &str = concat!("(", summary_fn!(), ")()");

    /// Installs `window.__bmSummary()` (the summary) and `window.__bmSummaryLine()` (the same on
    /// one short line, for `wait_for`'s `describe`, which is cut at 500 characters), so that wait
    /// expressions, and the errors quoting them, stay short.
    pub const INSTALL_HELPERS_JS: &str = concat!(
        "window.__bmSummary = ",
        summary_fn!(),
        r#";
window.__bmSummaryLine = () => window.__bmSummary().then((s) => s.error ? JSON.stringify(s) : [
  `state=${s.state} pc=${s.pc} me=${s.me} bridge=${s.bridgeId} reconnects=${s.reconnects}`,
  `peers=[${s.peers.map((p) => `${p.name}@${p.id}:${(p.sources || []).join('+')}`).join(' ')}]`,
  `tiles=[${s.tiles.join(',')}] audios=${s.audios}`,
  `in=[${s.inbound.map((r) => `${r.kind[0]}/${r.mid}/${r.from}/p${r.packets}/f${r.frames}/sr${r.reports}`).join(' ')}]`,
].join(' '));
true"#
    );

    /// `describe` for `wait_for` on a page with the helpers installed.
    pub const SUMMARY_LINE_JS: &str =
        "window.__bmSummaryLine ? window.__bmSummaryLine() : 'test helpers are not installed on this page'";

    /// Installs the summary helpers on `page` (again after a navigation).
    pub async fn install_helpers(page: &Page) -> anyhow::Result<()> {
        page.eval(INSTALL_HELPERS_JS).await.map(drop)
    }

    /// A wait expression: `condition`, a JS expression over the page summary `s`.
    pub fn summary_condition(condition: &str) -> String {
        format!("window.__bmSummary().then((s) => Boolean({condition}))")
    }

    /// The full summary of a page, its console, and (on request) chromium's stderr: what to
    /// print when a browser test fails.
    pub async fn dump(page: &Page, label: &str) -> String {
        let summary = match tokio::time::timeout(Duration::from_secs(5), page.eval(PAGE_SUMMARY_JS)).await {
            Ok(Ok(value)) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()),
            Ok(Err(err)) => format!("<summary failed: {err:#}>"),
            Err(_) => "<summary timed out>".to_owned(),
        };
        let console = page.console_log().join("\n  ");
        format!("--- page {label}: summary\n{summary}\n--- page {label}: console\n  {console}\n")
    }

    /// One participant's page: the room page with `?autojoin=1`, so it joins as soon as its
    /// `bridgemesh up --bridges 2` with two pages, Ada and Bob, in one room, seeing and hearing
    /// each other on one of the two bridges: where the tests of participants moving start.
    pub struct TwoPagesOnOneBridge {
        pub running: Running,
        pub browser: Browser,
        pub ada: Participant,
        pub bob: Participant,
        pub ada_id: String,
        pub bob_id: String,
        /// The bridge both pages are on.
        pub bridge: String,
    }

    impl TwoPagesOnOneBridge {
        pub async fn start(room: &RoomId, timeout: Duration) -> Self {
            crate::harness::init_tracing();
            let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
                bridges: 2,
                ..bridgemesh::up::UpConfig::ephemeral()
            })
            .await
            .expect("bridgemesh up starts with two bridges");
            let browser = Browser::launch().await.expect("chromium starts");
            let ada = Participant::open(&browser, &running, room, "Ada").await;
            let bob = Participant::open(&browser, &running, room, "Bob").await;
            let bob_id = ada.wait_for_media_from(&bob, timeout).await;
            let ada_id = bob.wait_for_media_from(&ada, timeout).await;
            let bridge = ada.summary().await["bridgeId"]
                .as_str()
                .expect("a bridge")
                .to_owned();
            assert_eq!(
                bob.summary().await["bridgeId"],
                bridge.as_str(),
                "a room stays together"
            );
            Self {
                running,
                browser,
                ada,
                bob,
                ada_id,
                bob_id,
                bridge,
            }
        }

        /// Both pages left their bridge for the other one as the same participants, and see and
        /// hear each other there.
        pub async fn wait_until_reunited_elsewhere(&self, timeout: Duration) {
            let condition = format!(
                "s.bridgeId && s.bridgeId !== {:?} && s.reconnects >= 1",
                self.bridge
            );
            for page in [&self.ada, &self.bob] {
                page.wait_until(
                    "moved to the other bridge",
                    &condition,
                    timeout,
                    &[&self.ada, &self.bob],
                )
                .await;
            }
            assert_eq!(
                self.ada.wait_for_media_from(&self.bob, timeout).await,
                self.bob_id
            );
            assert_eq!(
                self.bob.wait_for_media_from(&self.ada, timeout).await,
                self.ada_id
            );
            assert_eq!(
                self.ada.summary().await["me"],
                self.ada_id.as_str(),
                "Ada kept her id"
            );
        }

        pub async fn stop(self) {
            self.ada.page.close().await.unwrap();
            self.bob.page.close().await.unwrap();
            drop(self.browser);
            self.running.stop().await;
        }
    }

    /// (fake) camera and microphone are open.
    pub struct Participant {
        pub name: String,
        pub page: Page,
    }

    impl Participant {
        pub async fn open(browser: &Browser, running: &Running, room: &RoomId, name: &str) -> Participant {
            Self::open_with_query(browser, running, room, name, "").await
        }

        /// As [`Participant::open`], with `extra` (e.g. `&relay=tcp`) appended to the query.
        pub async fn open_with_query(
            browser: &Browser,
            running: &Running,
            room: &RoomId,
            name: &str,
            extra: &str,
        ) -> Participant {
            let url = format!("{}?autojoin=1&name={name}{extra}", running.room_url(room));
            // A window each: a page in a tab behind another is hidden and asks for no video.
            let page = browser
                .new_window(&url)
                .await
                .unwrap_or_else(|err| panic!("opening {url} for {name}: {err:#}"));
            install_helpers(&page)
                .await
                .unwrap_or_else(|err| panic!("installing test helpers on {name}'s page: {err:#}"));
            Participant {
                name: name.to_owned(),
                page,
            }
        }

        /// Waits for `condition` (a JS expression over the summary `s`), and panics with a full
        /// dump of this page and of `others` if it does not hold within `timeout`.
        pub async fn wait_until(
            &self,
            what: &str,
            condition: &str,
            timeout: Duration,
            others: &[&Participant],
        ) {
            let expression = summary_condition(condition);
            if let Err(err) = self.page.wait_for(&expression, timeout, SUMMARY_LINE_JS).await {
                let mut report = format!("{}: {what}: {err:#}\n", self.name);
                report.push_str(&dump(&self.page, &self.name).await);
                for other in others {
                    report.push_str(&dump(&other.page, &other.name).await);
                }
                panic!("{report}");
            }
        }

        /// Waits until this page has exactly one remote participant, named `other`, shown on a
        /// tile, and has decoded more than 10 video frames and received more than 20 audio
        /// packets from it. Returns the other participant's id.
        pub async fn wait_for_media_from(&self, other: &Participant, timeout: Duration) -> String {
            let name = serde_json::to_string(&other.name).expect("a string serializes");
            let condition = format!(
                "s.state === 'connected' && s.peers.length === 1 && s.peers[0].name === {name} \
                 && s.tiles.includes({name}) \
                 && s.inbound.some((r) => r.kind === 'video' && r.from === s.peers[0].id && r.frames > 10) \
                 && s.inbound.some((r) => r.kind === 'audio' && r.from === s.peers[0].id && r.packets > 20)"
            );
            let what = format!("audio and video from {}", other.name);
            self.wait_until(&what, &condition, timeout, &[other]).await;
            let summary = self.summary().await;
            let peers = summary["peers"].as_array().expect("peers is an array");
            assert_eq!(
                peers.len(),
                1,
                "{}: exactly one remote participant: {summary}",
                self.name
            );
            assert_eq!(peers[0]["name"], other.name.as_str(), "{summary}");
            peers[0]["id"]
                .as_str()
                .expect("participant ids are strings")
                .to_owned()
        }

        pub async fn summary(&self) -> Value {
            self.page
                .eval(PAGE_SUMMARY_JS)
                .await
                .unwrap_or_else(|err| panic!("{}: reading the page summary: {err:#}", self.name))
        }

        /// Clicks a button of the web client by element id.
        pub async fn click(&self, button_id: &str) {
            let id = serde_json::to_string(button_id).expect("a string serializes");
            self.page
                .eval(&format!("document.getElementById({id}).click()"))
                .await
                .unwrap_or_else(|err| panic!("{}: clicking #{button_id}: {err:#}", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw clients for bad-input tests: the control API and the signaling socket without the
// synthetic participant's good manners.

/// A `POST /api/v1/rooms/{room_path}/join` with `body` sent verbatim as `application/json`;
/// `room_path` is put in the URL as is (so it may be invalid or percent-encoded). Returns the
/// status and the body parsed as JSON (`Value::Null` when it is not JSON).
pub async fn post_join_raw(
    control_url: &str,
    room_path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let url = format!("{control_url}/api/v1/rooms/{room_path}/join");
    let response = http_client()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    read_response(response).await
}

/// Any request to control at `path`; returns the status and the body as JSON (or `Null`).
pub async fn request_raw(control_url: &str, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
    let url = format!("{control_url}{path}");
    let response = http_client()
        .request(method.clone(), &url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    read_response(response).await
}

/// A valid join through the control API, without connecting to the bridge.
pub async fn join_raw(running: &Running, room: &RoomId, name: &str) -> JoinResponse {
    let body = serde_json::json!({ "display_name": name }).to_string();
    let (status, value) = post_join_raw(&running.control_url, room.as_str(), body).await;
    assert_eq!(status, 200, "join of {name} refused: {value}");
    serde_json::from_value(value).expect("a join response")
}

/// Asserts the `{"error":{"code":..,"message":..}}` envelope with `code` and a non-empty message.
pub fn assert_error_envelope(body: &serde_json::Value, code: ErrorCode) {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error envelope in {body}"));
    assert_eq!(
        error.get("code").and_then(serde_json::Value::as_str),
        Some(code.as_str()),
        "error code in {body}"
    );
    assert!(
        error
            .get("message")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "error message in {body}"
    );
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(1),
        "nothing but `error` at the top level of {body}"
    );
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

async fn read_response(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("response body");
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// A signaling WebSocket driven by hand: send anything, read what the bridge answers.
pub struct RawSignal {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawSignal {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|err| panic!("connecting to {url}: {err}"));
        Self { ws }
    }

    /// Connects to the join's signaling URL and sends `hello` with its ticket.
    pub async fn hello(join: &JoinResponse) -> Self {
        let mut signal = Self::connect(&join.signaling_url).await;
        signal
            .send(&ClientMessage::Hello {
                ticket: join.ticket.clone(),
                media: Default::default(),
            })
            .await;
        signal
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).expect("client messages serialize");
        self.send_text(text).await;
    }

    /// Sends `message`; `false` once the bridge has closed the socket.
    pub async fn try_send(&mut self, message: &ClientMessage) -> bool {
        let text = serde_json::to_string(message).expect("client messages serialize");
        self.ws.send(WsMessage::text(text)).await.is_ok()
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(WsMessage::text(text.into()))
            .await
            .expect("sending on the signaling socket");
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws
            .send(WsMessage::binary(data))
            .await
            .expect("sending on the signaling socket");
    }

    /// The next server message, or `None` once the socket is closed; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<ServerMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("nothing from the bridge within {timeout:?}"));
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    return Some(
                        serde_json::from_str(text.as_str()).unwrap_or_else(|err| {
                            panic!("unreadable server message {}: {err}", text.as_str())
                        }),
                    );
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message that `pick` accepts, skipping others; panics if the socket closes or
    /// `timeout` passes first.
    pub async fn next_matching<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(message) => {
                    if let Some(found) = pick(message) {
                        return found;
                    }
                }
                None => panic!("the socket closed while waiting for {what}"),
            }
        }
    }

    /// Reads until the bridge closes the socket; returns every message read on the way.
    /// Panics if it is still open after `timeout`.
    pub async fn until_closed(&mut self, timeout: Duration) -> Vec<ServerMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.next(Duration::from_secs(3600))).await {
                Ok(Some(message)) => seen.push(message),
                Ok(None) => return seen,
                Err(_) => panic!("the bridge kept the socket open past {timeout:?}; read {seen:?}"),
            }
        }
    }

    /// Reads `hello`'s `welcome` and the first `offer`; returns the offer's SDP and tracks.
    pub async fn welcome_and_offer(&mut self) -> (String, Vec<TrackInfo>) {
        let first = self.next(Duration::from_secs(5)).await;
        assert!(
            matches!(first, Some(ServerMessage::Welcome { .. })),
            "expected welcome, got {first:?}"
        );
        self.next_matching("the first offer", Duration::from_secs(5), |m| match m {
            ServerMessage::Offer { sdp, tracks } => Some((sdp, tracks)),
            _ => None,
        })
        .await
    }
}

/// The `a=ice-ufrag` of an SDP.
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
}

/// Polls `cond` every 50 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether control holds `participant` as dropped: its bridge reported its connection gone without
/// a `leave`, so it keeps its place (no longer connected) for a while to reconnect as itself.
pub fn control_awaits_reconnect(running: &Running, room: &RoomId, participant: &ParticipantId) -> bool {
    running
        .control
        .snapshot()
        .rooms
        .get(room)
        .and_then(|r| r.participants.get(participant))
        .is_some_and(|p| p.dropped && p.status == bridgemesh_control::state::ParticipantStatus::Placed)
}

/// Whether control's state holds `participant` in `room`.
pub fn control_has(running: &Running, room: &RoomId, participant: &ParticipantId) -> bool {
    running
        .control
        .snapshot()
        .rooms
        .get(room)
        .is_some_and(|r| r.participants.contains_key(participant))
}
