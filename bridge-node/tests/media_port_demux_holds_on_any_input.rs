//! Property tests of what the media port reads before it knows who is talking (issue 17): the
//! STUN binding request's USERNAME and MESSAGE-INTEGRITY, and the route lookup that installs an
//! address. Any datagram from anywhere is routed or dropped, never a panic, and never routed
//! without the participant's ICE password.
//! `PROPTEST_CASES=100000 cargo test -p bridgemesh-bridge --test media_port_demux_holds_on_any_input`
//! runs the long version; CI runs proptest's default of 256 cases per property.

use bridgemesh_bridge::demux::{ParticipantKey, Route, RouteTable, stun_integrity_ok, stun_local_ufrag};
use proptest::prelude::*;
use std::net::SocketAddr;

/// A binding request header with a USERNAME of any bytes and a body of any bytes after it: the
/// shape the demux walks.
fn binding_request_like() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(any::<u8>(), 0..120),
        any::<[u8; 12]>(),
        any::<bool>(),
    )
        .prop_map(|(username, tail, transaction_id, honest_length)| {
            let mut body = Vec::new();
            body.extend_from_slice(&0x0006u16.to_be_bytes());
            body.extend_from_slice(&(username.len() as u16).to_be_bytes());
            body.extend_from_slice(&username);
            body.resize(body.len().div_ceil(4) * 4, 0);
            body.extend_from_slice(&tail);
            let length = if honest_length {
                body.len() as u16
            } else {
                (body.len() as u16) ^ 0x0104
            };
            let mut packet = Vec::with_capacity(20 + body.len());
            packet.extend_from_slice(&0x0001u16.to_be_bytes());
            packet.extend_from_slice(&length.to_be_bytes());
            packet.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            packet.extend_from_slice(&transaction_id);
            packet.extend_from_slice(&body);
            packet
        })
}

fn table() -> RouteTable {
    let table = RouteTable::default();
    table.add_participant(
        "bridgeufrag".into(),
        "a-password-nobody-guesses".into(),
        Route {
            shard: 0,
            key: ParticipantKey(1),
        },
    );
    table
}

proptest! {
    #[test]
    fn any_datagram_is_routed_only_with_the_password(
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..1500), binding_request_like()],
        port in 1u16..,
    ) {
        let _ = stun_local_ufrag(&bytes);
        let _ = stun_integrity_ok(&bytes, b"a-password-nobody-guesses");
        let table = table();
        let from = SocketAddr::from(([127, 0, 0, 1], port));
        // Without a valid MESSAGE-INTEGRITY under the participant's password nothing is routed,
        // and no address route is installed for a stranger.
        prop_assert_eq!(table.resolve(from, &bytes).map(|route| route.key), None);
        prop_assert_eq!(table.address_route_count(), 0);
    }
}
