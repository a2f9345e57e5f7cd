//! The one media port takes whatever the network throws at it: noise and forged STUN do not
//! disturb the participants' media or grow the route table, and clients that disappear without a
//! word are removed from the room.

use bridgemesh_bridge::demux::ROUTES_PER_PARTICIPANT_MAX;
use bridgemesh_proto::signaling::{ClientMessage, MediaSource, ServerMessage};
use bridgemesh_sim::{MediaSession, ParticipantOptions, ParticipantStats, SyntheticParticipant};
use bridgemesh_tests::harness::{
    MEDIA_TIMEOUT, RawSignal, control_awaits_reconnect, control_has, eventually, ice_ufrag, join, join_raw,
    room, up, wait_for_camera,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const STEP: Duration = Duration::from_secs(5);
/// Camera packets that must arrive intact for "media keeps flowing".
const MORE_PACKETS: u64 = 30;

// --- noise ---------------------------------------------------------------------------------------

/// xorshift64*: no dependency, and the seed in the failure message reproduces a run.
struct Rng(u64);

impl Rng {
    /// Seeded from the clock, or from `BRIDGEMESH_NOISE_SEED` (hex, as printed) to replay a run.
    fn seeded() -> Self {
        let seed = std::env::var("BRIDGEMESH_NOISE_SEED")
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("noise seed: {seed:#x} (set BRIDGEMESH_NOISE_SEED to replay)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn alphanumeric(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| CHARS[self.range(0, CHARS.len() - 1)] as char)
            .collect()
    }
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn push_attribute(msg: &mut Vec<u8>, kind: u16, value: &[u8]) {
    msg.extend_from_slice(&kind.to_be_bytes());
    msg.extend_from_slice(&(value.len() as u16).to_be_bytes());
    msg.extend_from_slice(value);
    msg.resize(msg.len().div_ceil(4) * 4, 0);
}

/// An ICE connectivity check as a controlling agent nominating a pair would send it, with
/// `username` and a MESSAGE-INTEGRITY that is random (we do not know the password) and a correct
/// FINGERPRINT, so it passes every check up to the integrity one.
fn forged_binding_request(rng: &mut Rng, username: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&STUN_MAGIC_COOKIE);
    msg.extend_from_slice(&rng.bytes(12));
    push_attribute(&mut msg, 0x0006, username); // USERNAME
    push_attribute(&mut msg, 0x0024, &0x6E7F_00FFu32.to_be_bytes()); // PRIORITY
    push_attribute(&mut msg, 0x0025, &[]); // USE-CANDIDATE
    push_attribute(&mut msg, 0x802A, &rng.bytes(8)); // ICE-CONTROLLING
    push_attribute(&mut msg, 0x0008, &rng.bytes(20)); // MESSAGE-INTEGRITY
    let with_fingerprint = (msg.len() - 20 + 8) as u16;
    msg[2..4].copy_from_slice(&with_fingerprint.to_be_bytes());
    let fingerprint = crc32(&msg) ^ 0x5354_554E;
    push_attribute(&mut msg, 0x8028, &fingerprint.to_be_bytes()); // FINGERPRINT
    msg
}

/// A binding request damaged in one of the ways a parser must survive.
fn malformed_binding_request(rng: &mut Rng, username: &[u8]) -> Vec<u8> {
    let mut msg = forged_binding_request(rng, username);
    match rng.range(0, 5) {
        0 => msg.truncate(rng.range(1, msg.len() - 1)),
        1 => msg[2..4].copy_from_slice(&rng.bytes(2)), // lying message length
        2 => msg[22..24].copy_from_slice(&[0xFF, 0xFF]), // USERNAME length past the end
        3 => msg[4] ^= 0xFF,                           // wrong magic cookie
        4 => msg[0..2].copy_from_slice(&0x0111u16.to_be_bytes()), // an error response instead
        _ => {
            let at = rng.range(20, msg.len() - 1);
            msg[at] ^= 1 << rng.range(0, 7);
        }
    }
    msg
}

/// DTLS records that mean something to an established association if it took them unauthenticated:
/// a fatal alert, a close_notify, a ClientHello, all at epoch 0.
fn dtls_record(rng: &mut Rng) -> Vec<u8> {
    let (content_type, body): (u8, Vec<u8>) = match rng.range(0, 2) {
        0 => (21, vec![2, 40]), // alert: fatal, handshake_failure
        1 => (21, vec![1, 0]),  // alert: warning, close_notify
        _ => (22, {
            let mut hello = vec![1, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 40, 0xFE, 0xFD];
            hello.extend(rng.bytes(38));
            hello
        }),
    };
    let mut record = vec![content_type, 0xFE, 0xFD, 0, 0];
    record.extend_from_slice(&rng.bytes(6)); // sequence number
    record.extend_from_slice(&(body.len() as u16).to_be_bytes());
    record.extend(body);
    record
}

/// Something that could be SRTP or SRTCP to a demultiplexer.
fn rtp_like(rng: &mut Rng) -> Vec<u8> {
    let len = rng.range(12, 1200);
    let mut packet = rng.bytes(len);
    packet[0] = 0x80 | (packet[0] & 0x3F);
    packet
}

fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = rng.range(1, 1500);
    rng.bytes(len)
}

/// One of every kind of noise, chosen at random; `near_miss` are wrong guesses of a real ufrag.
fn noise(rng: &mut Rng, near_miss: &[String]) -> Vec<u8> {
    match rng.range(0, 9) {
        0..=4 => random_datagram(rng),
        5 => {
            let len = rng.range(0, 40);
            let username = format!("{}:{}", rng.alphanumeric(len), rng.alphanumeric(4));
            forged_binding_request(rng, username.as_bytes())
        }
        6 => {
            let len = rng.range(0, 600);
            let username = rng.bytes(len);
            malformed_binding_request(rng, &username)
        }
        7 => {
            let guess = &near_miss[rng.range(0, near_miss.len() - 1)];
            forged_binding_request(rng, format!("{guess}:abcd").as_bytes())
        }
        8 => rtp_like(rng),
        _ => dtls_record(rng),
    }
}

/// Wrong guesses close to `ufrag`: one character off, cut short, one longer, other case.
fn near_misses(ufrag: &str) -> Vec<String> {
    let mut guesses = Vec::new();
    for at in [0, ufrag.len() / 2, ufrag.len() - 1] {
        let mut chars: Vec<char> = ufrag.chars().collect();
        chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
        guesses.push(chars.into_iter().collect());
    }
    guesses.push(ufrag[..ufrag.len() - 1].to_owned());
    guesses.push(format!("{ufrag}x"));
    guesses.push(ufrag.to_ascii_uppercase());
    guesses.push(ufrag.to_ascii_lowercase());
    guesses.retain(|g| g != ufrag);
    guesses
}

async fn loopback_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a loopback UDP socket")
}

/// Sends `datagrams` from `socket` in small bursts, as a busy network would, not as a flood the
/// kernel drops before the bridge ever reads it.
async fn send_paced(socket: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) -> u64 {
    let mut sent = 0;
    for (i, datagram) in datagrams.iter().enumerate() {
        if socket.send_to(datagram, to).await.is_ok() {
            sent += 1;
        }
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    sent
}

// --- participants ------------------------------------------------------------------------------

fn camera_from(stats: &ParticipantStats, from: &SyntheticParticipant) -> u64 {
    stats.intact_from(from.participant_id(), MediaSource::Camera)
}

async fn wait_for_session_camera(session: &MediaSession, from: &SyntheticParticipant, than: u64) {
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    loop {
        let stats = session.stats();
        if camera_from(&stats, from) > than {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "camera from {} not past {than} packets:\n{}",
            from.participant_id(),
            stats.summary()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Answers the bridge's further offers with `session` until told to leave, then leaves.
fn drive_signaling(
    mut signal: RawSignal,
    session: Arc<MediaSession>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (leave_tx, mut leave) = oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = signal.next(Duration::from_secs(3600)) => match message {
                    Some(ServerMessage::Offer { sdp, tracks }) => {
                        let answer = session.apply_offer(sdp, &tracks).await.unwrap();
                        signal.send(&ClientMessage::Answer { sdp: answer }).await;
                    }
                    Some(ServerMessage::Error { code, message }) => panic!("bridge error {code:?}: {message}"),
                    Some(ServerMessage::Bye { reason }) => panic!("bye {reason:?} before leaving"),
                    Some(_) => {}
                    None => panic!("the bridge closed the signaling socket"),
                },
                _ = &mut leave => {
                    signal.send(&ClientMessage::Leave).await;
                    signal.until_closed(STEP).await;
                    return;
                }
            }
        }
    });
    (leave_tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_and_forged_stun_on_the_media_port_leave_media_intact_and_routes_bounded() {
    let running = up().await;
    let room = room("noise");
    let media_addr = running.bridge.media_addr();
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;

    wait_for_camera(&a, &b, MORE_PACKETS).await;
    wait_for_camera(&b, &a, MORE_PACKETS).await;

    // A third participant driven by hand, so its bridge-side ufrag is known from the offer.
    let forged_join = join_raw(&running, &room, "Target").await;
    let target = Arc::new(
        MediaSession::new(
            &forged_join.participant_id,
            &ParticipantOptions::new("Target"),
            &forged_join.ice_servers,
            Instant::now(),
        )
        .await
        .unwrap(),
    );
    let mut signal = RawSignal::hello(&forged_join).await;
    let (offer, tracks) = signal.welcome_and_offer().await;
    let ufrag = ice_ufrag(&offer).expect("the offer has an ICE ufrag").to_owned();
    let answer = target.apply_offer(offer, &tracks).await.unwrap();
    // With both ufrags a forger gets past the USERNAME check; only MESSAGE-INTEGRITY stops it.
    let full_username = format!(
        "{ufrag}:{}",
        ice_ufrag(&answer).expect("the answer has an ICE ufrag")
    );
    signal.send(&ClientMessage::Answer { sdp: answer }).await;
    let (leave, signaling) = drive_signaling(signal, Arc::clone(&target));
    wait_for_session_camera(&target, &a, MORE_PACKETS).await;

    let before = running.bridge.stats();
    let routes_before = before.media_routes;
    assert!(routes_before >= 3, "each participant has a route: {before:?}");
    let a_from_b = camera_from(&a.stats(), &b);
    let b_from_a = camera_from(&b.stats(), &a);
    let target_from_a = camera_from(&target.stats(), &a);

    // Noise from addresses the bridge never saw: every datagram is unroutable.
    let mut rng = Rng::seeded();
    let near_miss = near_misses(&ufrag);
    let mut noise_tasks = Vec::new();
    for _ in 0..4 {
        let datagrams: Vec<Vec<u8>> = (0..1000).map(|_| noise(&mut rng, &near_miss)).collect();
        noise_tasks.push(tokio::spawn(async move {
            let socket = loopback_socket().await;
            send_paced(&socket, media_addr, &datagrams).await
        }));
    }
    // Forged connectivity checks with the target's real ufrag from many addresses, each
    // followed by garbage that now reaches the target's connection.
    let mut forger_tasks = Vec::new();
    let usernames = [full_username, format!("{ufrag}:evil")];
    for i in 0..3 * ROUTES_PER_PARTICIPANT_MAX {
        let username = usernames[i % 2].clone();
        let mut datagrams = vec![forged_binding_request(&mut rng, username.as_bytes())];
        for _ in 0..60 {
            datagrams.push(match rng.range(0, 3) {
                0 => dtls_record(&mut rng),
                1 => rtp_like(&mut rng),
                2 => forged_binding_request(&mut rng, username.as_bytes()),
                _ => random_datagram(&mut rng),
            });
        }
        forger_tasks.push(tokio::spawn(async move {
            let socket = loopback_socket().await;
            send_paced(&socket, media_addr, &datagrams).await
        }));
    }

    let bound = routes_before + ROUTES_PER_PARTICIPANT_MAX as u64;
    let mut max_routes = 0;
    let mut noise_sent = 0;
    while !noise_tasks.iter().all(|t| t.is_finished()) || !forger_tasks.iter().all(|t| t.is_finished()) {
        max_routes = max_routes.max(running.bridge.stats().media_routes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in noise_tasks {
        noise_sent += task.await.unwrap();
    }
    for task in forger_tasks {
        task.await.unwrap();
    }
    max_routes = max_routes.max(running.bridge.stats().media_routes);
    assert!(
        max_routes <= bound,
        "{max_routes} media routes; at most {bound} (the {routes_before} before plus {ROUTES_PER_PARTICIPANT_MAX} for the target)"
    );
    // Forged checks carry no valid MESSAGE-INTEGRITY: they must not install a single route, so they
    // cannot evict the target's real one either.
    assert_eq!(max_routes, routes_before, "forged checks created routes");

    // Media kept flowing, for the target too: no forged check took over its connection.
    wait_for_camera(&a, &b, a_from_b + MORE_PACKETS).await;
    wait_for_camera(&b, &a, b_from_a + MORE_PACKETS).await;
    wait_for_session_camera(&target, &a, target_from_a + MORE_PACKETS).await;
    for stats in [a.stats(), b.stats(), target.stats()] {
        assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
    }
    let after = running.bridge.stats();
    let unroutable = after.datagrams_unroutable - before.datagrams_unroutable;
    eprintln!(
        "{noise_sent} noise datagrams sent, {unroutable} unroutable; at most {max_routes} routes (bound {bound})"
    );
    // Loopback may drop some of a burst before the bridge reads it; most must be counted.
    assert!(
        unroutable >= noise_sent / 2,
        "{unroutable} datagrams counted unroutable of {noise_sent} noise datagrams sent"
    );
    assert_eq!(after.shards.participants, 3, "nobody was thrown out: {after:?}");
    assert!(control_has(&running, &room, &forged_join.participant_id));

    // The target leaving takes every route to it along, the forged ones included.
    leave.send(()).unwrap();
    tokio::time::timeout(STEP, signaling).await.unwrap().unwrap();
    target.close().await;
    eventually("the target's routes are gone", STEP, || {
        running.bridge.stats().media_routes < routes_before
    })
    .await;
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_handshake_is_removed_from_the_room() {
    let running = up().await;
    let room = room("vanish-handshake");
    let a = join(&running, &room, "Ada").await;
    let raw = join_raw(&running, &room, "Ghost").await;
    let ghost = raw.participant_id.clone();
    let mut signal = RawSignal::hello(&raw).await;
    signal.welcome_and_offer().await;
    a.wait_until("the ghost joins", STEP, |_, roster| roster.contains_key(&ghost))
        .await
        .unwrap();
    eventually("the bridge confirms the ghost to control", STEP, || {
        running.control.snapshot().rooms[&room].participants[&ghost].status
            == bridgemesh_control::state::ParticipantStatus::Connected
    })
    .await;

    // Gone without answering the offer and without a close frame.
    drop(signal);
    a.wait_until("the ghost leaves the roster", STEP, |_, roster| {
        !roster.contains_key(&ghost)
    })
    .await
    .unwrap();
    eventually(
        "control holds the ghost as dropped, waiting for it to reconnect",
        STEP,
        || control_awaits_reconnect(&running, &room, &ghost),
    )
    .await;
    assert!(control_has(&running, &room, a.participant_id()));
    eventually("the bridge has one participant left", STEP, || {
        running.bridge.stats().shards.participants == 1
    })
    .await;
    a.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_vanishes_after_media_flows_is_removed_and_the_others_keep_going() {
    let running = up().await;
    let room = room("vanish-media");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    let c = join(&running, &room, "Cy").await;
    wait_for_camera(&a, &c, MORE_PACKETS).await;
    wait_for_camera(&b, &c, MORE_PACKETS).await;
    wait_for_camera(&a, &b, MORE_PACKETS).await;
    wait_for_camera(&b, &a, MORE_PACKETS).await;

    let gone = c.participant_id().clone();
    c.vanish().await;
    let vanished_at = Instant::now();
    for p in [&a, &b] {
        p.wait_until(
            "the vanished participant leaves the roster",
            Duration::from_secs(10),
            |_, roster| !roster.contains_key(&gone),
        )
        .await
        .unwrap();
    }
    eprintln!(
        "participant_left seen {:?} after the vanish",
        vanished_at.elapsed()
    );
    eventually(
        "control holds the vanished participant as dropped, waiting for it to reconnect",
        STEP,
        || control_awaits_reconnect(&running, &room, &gone),
    )
    .await;

    let a_from_b = camera_from(&a.stats(), &b);
    let b_from_a = camera_from(&b.stats(), &a);
    wait_for_camera(&a, &b, a_from_b + MORE_PACKETS).await;
    wait_for_camera(&b, &a, b_from_a + MORE_PACKETS).await;
    for p in [&a, &b] {
        let stats = p.stats();
        assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
        assert!(stats.signaling_open, "{}", stats.summary());
        assert_eq!(p.roster().len(), 1);
    }
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}
