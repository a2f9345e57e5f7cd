//! The relay path: a peer's datagrams to the client (one task per allocation), the client's to
//! its peers after the permission, policy and bandwidth checks, and the sweep that ends what
//! expired.

use super::*;

pub(super) async fn sweep_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut tables = shared.tables.lock().expect("tables lock");
        let expired: Vec<FiveTuple> = tables
            .allocations
            .iter()
            .filter_map(|(five_tuple, allocation)| {
                let mut state = allocation.state.lock().expect("allocation lock");
                state.sweep(now);
                (state.expires_at <= now).then_some(*five_tuple)
            })
            .collect();
        for five_tuple in expired {
            tables.remove(&five_tuple);
        }
        tables.ended_sessions.prune(unix_now_s());
    }
}

/// Reads one peer's datagrams from an allocation's relay socket and passes them to the client.
pub(super) async fn relay_loop(shared: Arc<Shared>, allocation: Arc<Allocation>) {
    // The payload is received after room for a ChannelData header, which is then written in place.
    let mut packet = vec![0u8; CHANNEL_HEADER_BYTES + DATAGRAM_MAX_BYTES];
    let mut indication = Vec::with_capacity(1500);
    let to_client = allocation.five_tuple.client;
    let pad = allocation.client.is_stream();
    loop {
        let Ok((len, peer)) = allocation
            .relay
            .recv_from(&mut packet[CHANNEL_HEADER_BYTES..])
            .await
        else {
            continue;
        };
        let now = Instant::now();
        let channel = {
            let mut state = allocation.state.lock().expect("allocation lock");
            if !state.has_permission(peer.ip(), now) {
                continue;
            }
            let channel = state.channel_of(peer, now);
            // What cannot be delivered must not cost the budget: checked before it is spent.
            let fits = match channel {
                Some(_) => len <= usize::from(u16::MAX),
                None => stun::data_indication_fits(peer, len),
            };
            if !fits {
                continue;
            }
            // A permission names an IP; the port must be allowed too (bridge media port only, on up).
            if shared.policy().permits_addr(peer).is_err() {
                add(&shared.counters.denied_peers_total, 1);
                continue;
            }
            if !state.take_bandwidth(len, now) {
                add(&shared.counters.bandwidth_dropped_total, 1);
                continue;
            }
            channel
        };
        let sent = match channel {
            Some(channel) => {
                packet[..2].copy_from_slice(&channel.to_be_bytes());
                packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                let mut frame_len = CHANNEL_HEADER_BYTES + len;
                if pad {
                    let padded = frame_len.div_ceil(4) * 4;
                    packet[frame_len..padded].fill(0);
                    frame_len = padded;
                }
                allocation.client.send(to_client, &packet[..frame_len])
            }
            None => {
                let payload = &packet[CHANNEL_HEADER_BYTES..CHANNEL_HEADER_BYTES + len];
                let mut transaction_id = [0u8; 12];
                rand::rng().fill_bytes(&mut transaction_id);
                let mut w = Writer::new(&mut indication, method::DATA, Class::Indication, transaction_id);
                w.xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .attribute(attr::DATA, payload);
                allocation.client.send(to_client, &indication)
            }
        };
        if sent {
            add(&shared.counters.peer_to_client_packets_total, 1);
            add(&shared.counters.peer_to_client_bytes_total, len as u64);
        }
    }
}

impl Shared {
    pub(super) fn policy(&self) -> std::sync::RwLockReadGuard<'_, PeerPolicy> {
        self.policy.read().expect("policy lock")
    }

    pub(super) fn allocation(&self, five_tuple: &FiveTuple) -> Option<Arc<Allocation>> {
        self.tables
            .lock()
            .expect("tables lock")
            .allocations
            .get(five_tuple)
            .cloned()
    }

    pub(super) fn has_allocation(&self, five_tuple: &FiveTuple) -> bool {
        self.tables
            .lock()
            .expect("tables lock")
            .allocations
            .contains_key(five_tuple)
    }

    /// Takes a token from `source`'s unauthenticated budget; false means drop the request.
    pub(super) fn allow_unauthenticated(&self, source: IpAddr) -> bool {
        let allowed = self
            .tables
            .lock()
            .expect("tables lock")
            .limiter
            .allow(&source, Instant::now());
        if !allowed {
            add(&self.counters.unauthenticated_dropped_total, 1);
        }
        allowed
    }

    /// Sends `payload` from the allocation to `peer`, if a permission and the policy allow it.
    pub(super) fn relay_to_peer(
        &self,
        allocation: &Allocation,
        peer: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) {
        {
            let mut state = allocation.state.lock().expect("allocation lock");
            if !state.has_permission(peer.ip(), now) {
                return;
            }
            // Before the budget: a packet the policy drops must not spend it.
            if self.policy().permits_addr(peer).is_err() {
                add(&self.counters.denied_peers_total, 1);
                return;
            }
            if !state.take_bandwidth(payload.len(), now) {
                add(&self.counters.bandwidth_dropped_total, 1);
                return;
            }
        }
        if allocation.relay.try_send_to(payload, peer).is_ok() {
            add(&self.counters.client_to_peer_packets_total, 1);
            add(&self.counters.client_to_peer_bytes_total, payload.len() as u64);
        }
    }
}
