//! Property tests of the wire formats that arrive from the network (issue 17): signaling JSON,
//! cascade media datagrams and the network type of every configured list. Any input parses or is
//! refused with an error, never a panic; what is written reads back the same.
//! `PROPTEST_CASES=100000 cargo test -p bridgemesh-proto --test wire_parsers_hold_on_any_input`
//! runs the long version; CI runs proptest's default of 256 cases per property.

use bridgemesh_proto::cascade::{media_datagram, parse_media_datagram};
use bridgemesh_proto::cidr::{Cidr, CidrError};
use bridgemesh_proto::signaling::ClientMessage;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::net::IpAddr;

/// JSON that looks like a client message: a known or unknown `type` and fields of any JSON kind,
/// so decoding reaches the variants' fields instead of stopping at the first byte.
fn client_message_like() -> impl Strategy<Value = String> {
    let types = prop::sample::select(vec![
        "hello",
        "answer",
        "mute",
        "publish",
        "unpublish",
        "leave",
        "chat",
        "delete_chat",
        "raise_hand",
        "lower_hand",
        "react",
        "",
        "HELLO",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        prop::sample::select(vec!["👍", "🎉", "❤️", "p-1"]).prop_map(Value::from),
    ];
    let keys = prop::sample::select(vec![
        "sdp",
        "microphone",
        "camera",
        "source",
        "ticket",
        "media",
        "version",
        "text",
        "to",
        "id",
        "participant",
        "reaction",
        "type",
        "x",
    ]);
    (types, proptest::collection::vec((keys, leaf), 0..5)).prop_map(|(kind, fields)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), json!(kind));
        for (key, value) in fields {
            object.insert(key.into(), value);
        }
        Value::Object(object).to_string()
    })
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #[test]
    fn any_text_is_a_client_message_or_an_error(text in ".{0,200}") {
        let _ = serde_json::from_str::<ClientMessage>(&text);
    }

    #[test]
    fn message_shaped_json_is_a_client_message_or_an_error(text in client_message_like()) {
        if let Ok(message) = serde_json::from_str::<ClientMessage>(&text) {
            // What parsed serializes and parses back to the same message.
            let again = serde_json::to_string(&message).unwrap();
            prop_assert_eq!(serde_json::from_str::<ClientMessage>(&again).unwrap(), message);
        }
    }

    #[test]
    fn any_bytes_are_a_media_datagram_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        if let Some((_, packet)) = parse_media_datagram(&bytes) {
            prop_assert!(packet.len() <= bytes.len());
        }
    }

    #[test]
    fn a_media_datagram_reads_back(stream in any::<u32>(), packet in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let datagram = media_datagram(stream, &packet);
        // An empty packet is no RTP packet: refused as too short (found by this property).
        let expected = (!packet.is_empty()).then_some((stream, &packet[..]));
        prop_assert_eq!(parse_media_datagram(&datagram), expected);
    }

    #[test]
    fn any_text_is_a_network_or_an_error(text in ".{0,48}") {
        if let Ok(net) = text.parse::<Cidr>() {
            prop_assert_eq!(net.to_string().parse::<Cidr>().unwrap(), net);
        }
    }

    #[test]
    fn a_network_holds_its_own_address_and_host_bits_are_refused(ip in any_ip(), prefix_len in 0u8..=130) {
        match Cidr::new(ip, prefix_len) {
            Ok(net) => {
                prop_assert!(net.contains(ip));
                prop_assert_eq!(net.to_string().parse::<Cidr>().unwrap(), net);
            }
            Err(CidrError::HostBitsSet { network, prefix_len, .. }) => {
                // The network it names is one, and holds the address given.
                let meant = Cidr::new(network, prefix_len).unwrap();
                prop_assert!(meant.contains(ip));
            }
            Err(CidrError::BadPrefixLength { max, .. }) => prop_assert!(prefix_len > max),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}
