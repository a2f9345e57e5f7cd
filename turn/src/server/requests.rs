//! What the server answers a client: STUN/TURN requests authenticated, allocations made and
//! refreshed, permissions and channels installed, send indications relayed.

use super::*;

pub(super) fn handle_client_packet(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    packet: &[u8],
    out: &mut Vec<u8>,
) {
    match frame_kind(packet) {
        FrameKind::ChannelData => {
            let Some((channel, payload)) = parse_channel_data(packet) else {
                return;
            };
            let Some(allocation) = shared.allocation(&five_tuple) else {
                return;
            };
            let now = Instant::now();
            let peer = allocation
                .state
                .lock()
                .expect("allocation lock")
                .channel_peer(channel, now);
            if let Some(peer) = peer {
                shared.relay_to_peer(&allocation, peer, payload, now);
            }
        }
        FrameKind::Stun => {
            if let Ok(message) = Message::decode(packet) {
                handle_stun(shared, five_tuple, client, &message, out);
            }
        }
        FrameKind::Other => {}
    }
}

/// An authenticated request's user and the key its answer is signed with.
pub(super) struct Authenticated<'m> {
    username: &'m str,
    user: &'m str,
    key: [u8; 16],
}

/// Why a request is answered without being served.
pub(super) enum Refusal {
    /// Over the source's unauthenticated budget: no answer at all.
    Drop,
    /// 400, 401 or 438, unsigned, with REALM and NONCE for 401/438.
    Error(u16),
}

pub(super) fn handle_stun(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    message: &Message<'_>,
    out: &mut Vec<u8>,
) {
    if message.class == Class::Request {
        add(&shared.counters.requests_total, 1);
    }
    match (message.class, message.method) {
        (Class::Indication, method::SEND) => {
            handle_send_indication(shared, five_tuple, message);
            return;
        }
        (Class::Request, method::BINDING) => {
            if shared.allow_unauthenticated(five_tuple.client.ip()) {
                let mut w = Writer::new(out, method::BINDING, Class::Success, message.transaction_id);
                w.xor_address(attr::XOR_MAPPED_ADDRESS, five_tuple.client);
                w.finish_with_fingerprint();
                client.send(five_tuple.client, out);
            }
            return;
        }
        (
            Class::Request,
            method::ALLOCATE | method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND,
        ) => {}
        _ => return,
    }
    let now_unix_s = unix_now_s();
    let auth = match authenticate(shared, five_tuple, message, now_unix_s) {
        Ok(auth) => auth,
        Err(Refusal::Drop) => return,
        Err(Refusal::Error(code)) => {
            let mut w = Writer::new(out, message.method, Class::Error, message.transaction_id);
            w.error_code(code);
            if code != 400 {
                let nonce = shared.nonces.issue(five_tuple.client.ip(), now_unix_s);
                w.attribute(attr::REALM, shared.config.realm.as_bytes())
                    .attribute(attr::NONCE, nonce.as_bytes());
            }
            if message.has(attr::FINGERPRINT) {
                w.finish_with_fingerprint();
            }
            client.send(five_tuple.client, out);
            return;
        }
    };
    let fingerprint = message.has(attr::FINGERPRINT);
    let unknown: Vec<u16> = message.unknown_required().take(8).collect();
    let result = if !unknown.is_empty() {
        Err(Answer::Unknown(unknown))
    } else {
        let now = Instant::now();
        match message.method {
            method::ALLOCATE => allocate(shared, five_tuple, client, message, &auth, now),
            method::REFRESH => refresh(shared, five_tuple, message, &auth, now),
            method::CREATE_PERMISSION => create_permission(shared, five_tuple, message, &auth, now),
            _ => channel_bind(shared, five_tuple, message, &auth, now),
        }
    };
    let mut w = Writer::new(out, message.method, Class::Success, message.transaction_id);
    match result {
        Ok(success) => match success {
            Success::Allocated { relay, lifetime_s } => {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, relay)
                    .u32_attribute(attr::LIFETIME, lifetime_s)
                    .xor_address(attr::XOR_MAPPED_ADDRESS, five_tuple.client);
            }
            Success::Refreshed { lifetime_s } => {
                w.u32_attribute(attr::LIFETIME, lifetime_s);
            }
            Success::Empty => {}
        },
        Err(answer) => {
            let mut w2 = Writer::new(out, message.method, Class::Error, message.transaction_id);
            match answer {
                Answer::Code(code) => {
                    w2.error_code(code);
                }
                Answer::Unknown(types) => {
                    let value: Vec<u8> = types.iter().flat_map(|t| t.to_be_bytes()).collect();
                    w2.error_code(420).attribute(attr::UNKNOWN_ATTRIBUTES, &value);
                }
            }
            w2.finish_with_integrity(&auth.key, fingerprint);
            client.send(five_tuple.client, out);
            return;
        }
    }
    w.finish_with_integrity(&auth.key, fingerprint);
    client.send(five_tuple.client, out);
}

pub(super) fn authenticate<'m>(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'m>,
    now_unix_s: u64,
) -> Result<Authenticated<'m>, Refusal> {
    let source = five_tuple.client.ip();
    let refuse = |code: u16, auth_failure: bool| {
        if auth_failure {
            add(&shared.counters.auth_failures_total, 1);
        }
        if shared.allow_unauthenticated(source) {
            Refusal::Error(code)
        } else {
            Refusal::Drop
        }
    };
    if !message.has(attr::MESSAGE_INTEGRITY) {
        // The normal first request of every client: a challenge, not a failure.
        return Err(refuse(401, false));
    }
    let (Some(username), Some(realm), Some(nonce)) = (
        message.text(attr::USERNAME),
        message.text(attr::REALM),
        message.text(attr::NONCE),
    ) else {
        return Err(refuse(400, true));
    };
    if shared.nonces.check(nonce, source, now_unix_s) != NonceCheck::Valid {
        return Err(refuse(438, false));
    }
    if realm != shared.config.realm {
        return Err(refuse(401, true));
    }
    let Ok((user, expires_unix_s)) = split_username(username) else {
        tracing::debug!("TURN request with a malformed username");
        return Err(refuse(401, true));
    };
    // An allocation outlives the credential that made it: requests on it keep being served
    // with that credential, so a short TTL never cuts a call. New allocations need a valid one.
    let on_own_allocation = || {
        message.method != method::ALLOCATE
            && shared
                .allocation(&five_tuple)
                .is_some_and(|allocation| allocation.username == username)
    };
    if expires_unix_s < now_unix_s && !on_own_allocation() {
        tracing::debug!("TURN request with an expired username");
        return Err(refuse(401, true));
    }
    let password = rest_password(&shared.config.secret, username);
    let key = long_term_key(username, realm, &password);
    if !message.integrity_ok(&key) {
        tracing::debug!("TURN request with a wrong MESSAGE-INTEGRITY");
        return Err(refuse(401, true));
    }
    let session_ended = shared
        .tables
        .lock()
        .expect("tables lock")
        .ended_sessions
        .refuses(user, expires_unix_s);
    if session_ended {
        add(&shared.counters.ended_session_refusals_total, 1);
        return Err(refuse(401, false));
    }
    Ok(Authenticated { username, user, key })
}

pub(super) enum Success {
    Allocated { relay: SocketAddr, lifetime_s: u32 },
    Refreshed { lifetime_s: u32 },
    Empty,
}

pub(super) enum Answer {
    Code(u16),
    Unknown(Vec<u16>),
}

pub(super) fn requested_lifetime_s(shared: &Shared, message: &Message<'_>) -> u32 {
    let requested = message
        .get(attr::LIFETIME)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_be_bytes);
    match requested {
        Some(0) => 0,
        // Shorter than the default is raised to it (RFC 5766 §6.2), longer is capped.
        Some(s) => s
            .max(DEFAULT_LIFETIME_S)
            .min(shared.config.allocation_lifetime_max_s),
        None => DEFAULT_LIFETIME_S.min(shared.config.allocation_lifetime_max_s),
    }
}

pub(super) fn allocate(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let config = &shared.config;
    let mut tables = shared.tables.lock().expect("tables lock");
    if let Some(existing) = tables.allocations.get(&five_tuple) {
        // A retransmitted Allocate gets the same answer; anything else is a mismatch.
        if existing.allocate_transaction == message.transaction_id && existing.username == auth.username {
            let state = existing.state.lock().expect("allocation lock");
            let lifetime_s = state.expires_at.saturating_duration_since(now).as_secs() as u32;
            return Ok(Success::Allocated {
                relay: existing.relay_addr,
                lifetime_s,
            });
        }
        return Err(Answer::Code(437));
    }
    match message.get(attr::REQUESTED_TRANSPORT) {
        Some([17, ..]) => {}
        Some(_) => return Err(Answer::Code(442)),
        None => return Err(Answer::Code(400)),
    }
    if let Some(family) = message.get(attr::REQUESTED_ADDRESS_FAMILY) {
        let wanted_v4 = family.first() == Some(&0x01);
        if wanted_v4 != config.relay_advertised_ip().is_ipv4() {
            return Err(Answer::Code(440));
        }
    }
    if message.has(attr::RESERVATION_TOKEN) {
        // Reserved port pairs are not kept; no browser asks for them.
        return Err(Answer::Code(508));
    }
    let user_count = tables.allocations_of_user.get(auth.user).copied().unwrap_or(0);
    if user_count >= config.allocations_per_user_max {
        add(&shared.counters.allocation_quota_refusals_total, 1);
        return Err(Answer::Code(486));
    }
    let source_count = tables
        .allocations_of_source
        .get(&five_tuple.client.ip())
        .copied()
        .unwrap_or(0);
    if source_count >= config.allocations_per_source_max {
        add(&shared.counters.allocation_quota_refusals_total, 1);
        return Err(Answer::Code(486));
    }
    if tables.allocations.len() >= config.allocations_max {
        add(&shared.counters.allocation_quota_refusals_total, 1);
        return Err(Answer::Code(508));
    }
    let lifetime_s = match requested_lifetime_s(shared, message) {
        0 => DEFAULT_LIFETIME_S,
        s => s,
    };
    let Some(relay) = bind_relay(config) else {
        tracing::warn!("no free relay port in the configured range");
        return Err(Answer::Code(508));
    };
    // The bound port under the advertised address: behind a 1:1 NAT the socket holds a local
    // address and the NAT forwards the external one to it, port for port.
    let bound = relay.local_addr().expect("bound socket has an address");
    let relay_addr = SocketAddr::new(config.relay_advertised_ip(), bound.port());
    let allocation = Arc::new(Allocation {
        five_tuple,
        username: auth.username.to_owned(),
        user: auth.user.to_owned(),
        relay,
        relay_addr,
        client: client.clone(),
        allocate_transaction: message.transaction_id,
        state: Mutex::new(AllocationState::new(
            now,
            Duration::from_secs(u64::from(lifetime_s)),
            config.permissions_per_allocation_max,
            config.channels_per_allocation_max,
            config.allocation_bandwidth_bytes_per_s,
            config.allocation_bandwidth_burst_bytes,
        )),
        relay_task: OnceLock::new(),
    });
    let task = tokio::spawn(relay_loop(shared.clone(), allocation.clone()));
    let _ = allocation.relay_task.set(task.abort_handle());
    tables.allocations.insert(five_tuple, allocation);
    *tables
        .allocations_of_user
        .entry(auth.user.to_owned())
        .or_insert(0) += 1;
    *tables
        .allocations_of_source
        .entry(five_tuple.client.ip())
        .or_insert(0) += 1;
    add(&shared.counters.allocations_total, 1);
    Ok(Success::Allocated {
        relay: relay_addr,
        lifetime_s,
    })
}

/// A relay socket on a port of the configured range, starting at a random one.
pub(super) fn bind_relay(config: &TurnConfig) -> Option<UdpSocket> {
    let span = u32::from(config.relay_port_max - config.relay_port_min) + 1;
    let start = rand::random::<u32>() % span;
    (0..span.min(RELAY_BIND_ATTEMPTS as u32)).find_map(|i| {
        let port = config.relay_port_min + ((start + i) % span) as u16;
        bind_udp(SocketAddr::new(config.relay_ip, port)).ok()
    })
}

/// The allocation for `five_tuple`, if it was made with the same username.
pub(super) fn owned_allocation(
    shared: &Shared,
    five_tuple: &FiveTuple,
    auth: &Authenticated<'_>,
) -> Result<Arc<Allocation>, Answer> {
    let allocation = shared.allocation(five_tuple).ok_or(Answer::Code(437))?;
    if allocation.username != auth.username {
        return Err(Answer::Code(441));
    }
    Ok(allocation)
}

pub(super) fn refresh(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let lifetime_s = requested_lifetime_s(shared, message);
    if lifetime_s == 0 {
        shared.tables.lock().expect("tables lock").remove(&five_tuple);
    } else {
        allocation.state.lock().expect("allocation lock").expires_at =
            now + Duration::from_secs(u64::from(lifetime_s));
    }
    Ok(Success::Refreshed { lifetime_s })
}

pub(super) fn peer_address(message: &Message<'_>, value: &[u8]) -> Result<SocketAddr, Answer> {
    message.xor_address(value).ok_or(Answer::Code(400))
}

pub(super) fn check_peer(shared: &Shared, peer: SocketAddr) -> Result<(), Answer> {
    shared.policy().permits_ip(peer.ip()).map_err(|reason| {
        add(&shared.counters.denied_peers_total, 1);
        tracing::debug!(reason = reason.as_str(), "TURN peer address refused");
        Answer::Code(403)
    })
}

pub(super) fn create_permission(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let mut peers = Vec::new();
    for value in message
        .get_all(attr::XOR_PEER_ADDRESS)
        .take(shared.config.permissions_per_allocation_max + 1)
    {
        let peer = peer_address(message, value)?;
        check_peer(shared, peer)?;
        peers.push(peer);
    }
    if peers.is_empty() {
        return Err(Answer::Code(400));
    }
    let mut state = allocation.state.lock().expect("allocation lock");
    for peer in peers {
        state.permit(peer.ip(), now).map_err(|_| Answer::Code(508))?;
    }
    Ok(Success::Empty)
}

pub(super) fn channel_bind(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let channel = match message.get(attr::CHANNEL_NUMBER) {
        Some(&[hi, lo, _, _]) => u16::from_be_bytes([hi, lo]),
        _ => return Err(Answer::Code(400)),
    };
    if !(stun::CHANNEL_MIN..=stun::CHANNEL_MAX).contains(&channel) {
        return Err(Answer::Code(400));
    }
    let peer = peer_address(
        message,
        message.get(attr::XOR_PEER_ADDRESS).ok_or(Answer::Code(400))?,
    )?;
    check_peer(shared, peer)?;
    allocation
        .state
        .lock()
        .expect("allocation lock")
        .bind_channel(channel, peer, now)
        .map_err(|err| match err {
            BindError::Conflict => Answer::Code(400),
            _ => Answer::Code(508),
        })?;
    Ok(Success::Empty)
}

pub(super) fn handle_send_indication(shared: &Shared, five_tuple: FiveTuple, message: &Message<'_>) {
    let Some(allocation) = shared.allocation(&five_tuple) else {
        return;
    };
    let (Some(peer), Some(data)) = (
        message
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| message.xor_address(v)),
        message.get(attr::DATA),
    ) else {
        return;
    };
    shared.relay_to_peer(&allocation, peer, data, Instant::now());
}
