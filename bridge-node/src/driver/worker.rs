//! One shard's thread: its socket read in batches, datagrams handed between shards, the shard
//! driven by them, its inbox and its timers, and what it outputs sent or delivered.

use super::*;

pub(super) struct ShardWorker {
    pub(super) shard: Shard,
    /// The socket is IPv6 taking IPv4 too: IPv4 peers arrive as `::ffff:a.b.c.d`.
    pub(super) dual_stack: bool,
    pub(super) routes: Arc<RouteTable>,
    pub(super) links: Arc<LinkTable>,
    pub(super) events: mpsc::Sender<BridgeEvent>,
    pub(super) clients: HashMap<ParticipantKey, OutboxSender>,
    pub(super) stats: Arc<Mutex<ShardStats>>,
    pub(super) counters: Arc<DriverCounters>,
    /// Toward the shards owning participants whose datagrams this shard's socket read.
    pub(super) handoff: HandoffSenders,
    /// Received datagrams as the shard takes them (`BytesMut`), cut from one reused arena.
    pub(super) rx_arena: TxArena,
    /// Transmits waiting for the next `sendmmsg`.
    pub(super) send: SendBatch,
    /// Where recordings the shard starts are written; `None`: this bridge does not record.
    pub(super) recordings: Option<Arc<crate::recording::RecordingStore>>,
}

impl ShardWorker {
    pub(super) fn run(
        mut self,
        socket: std::net::UdpSocket,
        inbox: mpsc::Receiver<DriverInput>,
        handed: HandoffReceiver,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(%err, "shard runtime failed to start");
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match MediaSocket::new(socket) {
                Ok(socket) => socket,
                Err(err) => {
                    tracing::error!(%err, "shard cannot register the media socket");
                    return;
                }
            };
            self.event_loop(socket, inbox, handed).await;
        });
    }

    async fn event_loop(
        &mut self,
        socket: MediaSocket,
        mut inbox: mpsc::Receiver<DriverInput>,
        handed: HandoffReceiver,
    ) {
        let mut batch = RecvBatch::new(socket.gro_segments());
        let far_future = Duration::from_secs(3600);
        let mut last_stats = Instant::now();
        // Every shard reads its own socket of the shared port. The kernel keeps each peer on one
        // socket, and datagrams for another shard's participant cross one FIFO channel to it, so
        // each participant's datagrams reach its shard in arrival order (a reordered DTLS flight
        // would cost a retransmission).
        loop {
            // Wake at least every stats period, so an idle shard's published stats (and the
            // metrics built from them) catch up with its last changes.
            let stats_due = last_stats + STATS_PERIOD;
            let deadline = self
                .shard
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + far_future)
                .min(stats_due.max(Instant::now() + STATS_PERIOD / 10));
            tokio::select! {
                readable = socket.readable() => {
                    if readable.is_err() {
                        continue;
                    }
                    self.read_socket(&socket, &mut batch);
                }
                () = handed.wait() => {
                    self.take_handed(&socket, &handed);
                }
                input = inbox.recv() => {
                    let now = Instant::now();
                    match input {
                        Some(DriverInput::Shutdown) | None => {
                            self.shard.shutdown(now);
                            self.flush(&socket);
                            self.send_queued(&socket);
                            return;
                        }
                        Some(input) => self.on_input(now, input),
                    }
                    // Drain what else is queued without another trip through select.
                    while let Ok(input) = inbox.try_recv() {
                        if matches!(input, DriverInput::Shutdown) {
                            self.shard.shutdown(now);
                            self.flush(&socket);
                            self.send_queued(&socket);
                            return;
                        }
                        self.on_input(now, input);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.shard.handle_timeout(Instant::now());
                }
            }
            self.flush(&socket);
            self.send_queued(&socket);
            if last_stats.elapsed() >= STATS_PERIOD {
                last_stats = Instant::now();
                *self.stats.lock().expect("stats lock") = self.shard.stats();
            }
        }
    }

    /// Reads up to [`RECV_BATCHES_PER_WAKE_MAX`] batches, handles this shard's datagrams at once
    /// (their transmits join the send batch) and hands the others over.
    fn read_socket(&mut self, socket: &MediaSocket, batch: &mut RecvBatch) {
        let mut read = 0u64;
        for _ in 0..RECV_BATCHES_PER_WAKE_MAX {
            match socket.try_recv(batch) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP errors surface here on some systems; they concern one peer only.
                Err(_) => continue,
            }
            let now = Instant::now();
            // The arena's memory is reusable once the shard dropped the previous batch's datagrams.
            self.rx_arena.recycle();
            for (from, datagram) in batch.datagrams() {
                read += 1;
                self.on_datagram(now, socket, canonical(from), datagram);
            }
        }
        self.counters.socket_reads[self.shard.index()].fetch_add(read, Ordering::Relaxed);
        self.handoff.wake();
    }

    /// Takes what other shards read for this shard's participants.
    fn take_handed(&mut self, socket: &MediaSocket, handed: &HandoffReceiver) {
        let now = Instant::now();
        self.rx_arena.recycle();
        for _ in 0..HANDED_PER_WAKE_MAX {
            let Some(datagram) = handed.try_take() else {
                return;
            };
            self.deliver(now, socket, datagram.from, datagram.key, datagram.data());
        }
        // More are waiting: come back after a look at the socket, inbox and timers.
        handed.wake_self();
    }

    fn on_datagram(&mut self, now: Instant, socket: &MediaSocket, from: SocketAddr, datagram: &[u8]) {
        let Some(route) = self.routes.resolve(from, datagram) else {
            self.counters.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if route.shard == self.shard.index() {
            self.deliver(now, socket, from, route.key, datagram);
            return;
        }
        match self.handoff.hand_over(route.shard, from, route.key, datagram) {
            Handed::Queued => self.counters.handed_over.fetch_add(1, Ordering::Relaxed),
            Handed::Dropped => self.counters.handoff_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Hands one of this shard's datagrams to the shard and queues what it answers, so the
    /// output arena is free again before the next datagram.
    fn deliver(
        &mut self,
        now: Instant,
        socket: &MediaSocket,
        from: SocketAddr,
        key: ParticipantKey,
        datagram: &[u8],
    ) {
        self.rx_arena.start(datagram.len()).copy_from_slice(datagram);
        let data = self.rx_arena.finish(datagram.len());
        self.shard
            .handle_input(now, ShardInput::Datagram { from, key, data });
        self.flush(socket);
    }

    /// Sends the transmits queued by [`ShardWorker::flush`].
    fn send_queued(&mut self, socket: &MediaSocket) {
        let outcome = self.send.flush(socket);
        self.count_sends(outcome);
    }

    fn count_sends(&self, outcome: SendOutcome) {
        if outcome.failed > 0 {
            self.counters
                .send_failed
                .fetch_add(outcome.failed, Ordering::Relaxed);
        }
        if outcome.syscalls > 0 {
            self.counters
                .send_syscalls
                .fetch_add(outcome.syscalls, Ordering::Relaxed);
        }
    }

    fn on_input(&mut self, now: Instant, input: DriverInput) {
        match input {
            DriverInput::Shard(input) => self.shard.handle_input(now, input),
            DriverInput::Connect { request, client } => {
                self.clients.insert(request.key, client);
                self.shard.handle_input(now, ShardInput::Connect(request));
            }
            DriverInput::Shutdown => {}
        }
    }

    /// `to` as the socket takes it: an IPv4 peer of a dual-stack socket in its mapped form.
    fn on_socket(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => to,
        }
    }

    /// Carries out the shard's outputs; transmits are queued in the send batch (copied, so the
    /// shard's arena is free again), sent by [`ShardWorker::send_queued`] or when it is full.
    fn flush(&mut self, socket: &MediaSocket) {
        while let Some(output) = self.shard.poll_output() {
            match output {
                ShardOutput::Transmit { to, data } => {
                    let outcome = self.send.push(socket, self.on_socket(to), &data);
                    self.count_sends(outcome);
                }
                ShardOutput::ToClient { key, message } => {
                    let Some(client) = self.clients.get(&key) else {
                        continue;
                    };
                    if client.try_send(ClientCommand::Send(message)).is_err() {
                        // Full even after coalescing: this client reads nothing; drop it.
                        tracing::debug!(?key, "client signaling queue full; disconnecting");
                        self.clients.remove(&key);
                        self.shard
                            .handle_input(Instant::now(), ShardInput::Disconnect { key });
                    }
                }
                ShardOutput::CloseClient { key } => {
                    if let Some(client) = self.clients.remove(&key) {
                        let _ = client.try_send(ClientCommand::Close);
                    }
                }
                ShardOutput::Event(event) => self.emit(event),
                ShardOutput::ToLink { link, message } => self.links.send_message(link, message),
                ShardOutput::LinkDatagram { link, datagram } => self.links.send_datagram(link, datagram),
                ShardOutput::StartRecording { room, requester } => {
                    let answer = recording::start(self.recordings.as_ref(), room, requester);
                    self.shard
                        .handle_input(Instant::now(), ShardInput::Recording(answer));
                }
            }
        }
    }

    fn emit(&self, event: BridgeEvent) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("bridge event queue full or closed; control will learn of this change late");
        }
    }
}

/// A peer address as the rest of the bridge knows it: IPv4 peers of a dual-stack socket in
/// their IPv4 form, so routes, ICE and TURN allowlists see one address per peer.
fn canonical(from: SocketAddr) -> SocketAddr {
    match from {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => from,
        },
        SocketAddr::V4(_) => from,
    }
}
