//! The driver's own per-datagram I/O allocates nothing in steady state: a batch read with
//! `recvmmsg` from one of two `SO_REUSEPORT` shard sockets, each datagram handed over to the
//! other shard through its fixed-slot channel, cut from the receive arena as the `BytesMut` a
//! shard takes, and sent back in a `sendmmsg` batch.
//!
//! Counts every allocation of this test binary (one test, so no other test thread allocates
//! meanwhile). The shard between receive and send is covered by
//! `fast_path_forwards_without_allocating` (its `rtc` inbound parse still allocates, so the
//! whole loop cannot be counted in one piece yet).

use bridgemesh_bridge::MediaSocketConfig;
use bridgemesh_bridge::demux::ParticipantKey;
use bridgemesh_bridge::driver::handoff::{Handed, handoff_channels};
use bridgemesh_bridge::driver::socket::{MediaSocket, RecvBatch, SendBatch, bind_media_sockets};
use bridgemesh_bridge::fastpath::tx::TxArena;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROUNDS: usize = 200;
const PER_ROUND: usize = 16;

struct Rig {
    reader: MediaSocket,
    batch: RecvBatch,
    arena: TxArena,
    send: SendBatch,
    peers: Vec<UdpSocket>,
    port: u16,
    buf: Vec<u8>,
}

impl Rig {
    /// One round: every peer sends, the bridge side reads, hands over, takes, echoes; every
    /// echo is read back by its peer.
    async fn round(
        &mut self,
        senders: &mut bridgemesh_bridge::driver::handoff::HandoffSenders,
        receiver: &bridgemesh_bridge::driver::handoff::HandoffReceiver,
    ) -> usize {
        let payload = [0x80u8; 1200];
        for (i, peer) in self.peers.iter().enumerate().take(PER_ROUND) {
            // A `SocketAddr`, not `("127.0.0.1", port)`: resolving that allocates.
            peer.send_to(
                &payload[..1000 + i],
                SocketAddr::from(([127, 0, 0, 1], self.port)),
            )
            .unwrap();
        }
        let mut read = 0;
        while read < PER_ROUND {
            tokio::time::timeout(Duration::from_secs(10), self.reader.readable())
                .await
                .expect("datagrams arrive")
                .unwrap();
            let Ok(_) = self.reader.try_recv(&mut self.batch) else {
                continue;
            };
            for (from, datagram) in self.batch.datagrams() {
                read += 1;
                assert_eq!(
                    senders.hand_over(1, from, ParticipantKey(7), datagram),
                    Handed::Queued
                );
            }
        }
        senders.wake();
        self.arena.recycle();
        let mut echoed = 0;
        while let Some(handed) = receiver.try_take() {
            let data = handed.data();
            self.arena.start(data.len()).copy_from_slice(data);
            let datagram = self.arena.finish(data.len());
            self.send.push(&self.reader, handed.from, &datagram);
            echoed += 1;
        }
        let outcome = self.send.flush(&self.reader);
        assert_eq!(outcome.failed, 0);
        for peer in &self.peers[..PER_ROUND] {
            let (len, _) = peer.recv_from(&mut self.buf).unwrap();
            assert!(len >= 1000);
        }
        echoed
    }
}

#[tokio::test(flavor = "current_thread")]
async fn receiving_handing_over_and_sending_a_batch_allocates_nothing_in_steady_state() {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    // One socket: with a second on the port the kernel would send some peers to it.
    let mut sockets = bind_media_sockets(loopback, false, 1, &MediaSocketConfig::default()).unwrap();
    let port = sockets[0].local_addr().unwrap().port();
    let reader = MediaSocket::new(sockets.remove(0)).unwrap();
    let peers: Vec<UdpSocket> = (0..PER_ROUND)
        .map(|_| {
            let peer = UdpSocket::bind(loopback).unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            peer
        })
        .collect();
    let (mut senders, receivers) = handoff_channels(2);
    let mut rig = Rig {
        batch: RecvBatch::new(reader.gro_segments()),
        reader,
        arena: TxArena::default(),
        send: SendBatch::default(),
        peers,
        port,
        buf: vec![0; 2048],
    };
    for _ in 0..ROUNDS {
        assert_eq!(rig.round(&mut senders[0], &receivers[1]).await, PER_ROUND);
    }
    let region = Region::new(GLOBAL);
    let mut echoed = 0;
    for _ in 0..ROUNDS {
        echoed += rig.round(&mut senders[0], &receivers[1]).await;
    }
    let change = region.change();
    assert_eq!(echoed, ROUNDS * PER_ROUND);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations while moving {echoed} datagrams through receive, handoff and send"
    );
}
