//! Property tests of the wire formats that arrive from the network (issue 17): signaling JSON,
//! the cascade link's control messages and media datagrams, and the network type of every
//! configured list. Any input parses or is
//! refused with an error, never a panic; what is written reads back the same.
//! `PROPTEST_CASES=100000 cargo test -p bridgemesh-proto --test wire_parsers_hold_on_any_input`
//! runs the long version; CI runs proptest's default of 256 cases per property.

use bridgemesh_proto::cascade::{LinkMessage, media_datagram, parse_media_datagram};
use bridgemesh_proto::cidr::{Cidr, CidrError};
use bridgemesh_proto::signaling::ClientMessage;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::net::IpAddr;

/// JSON that looks like a message: one of `types` (known or not) and fields named from `keys`
/// holding any JSON kind, so decoding reaches the variants' fields instead of stopping at the
/// first byte.
fn message_like(types: Vec<&'static str>, keys: Vec<&'static str>) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        prop::sample::select(vec!["👍", "🎉", "❤️", "p-1", "camera", "r"]).prop_map(Value::from),
        Just(
            json!({"id": "p-1", "display_name": "x", "microphone_muted": false,
            "camera_muted": false, "sources": ["camera"]})
        ),
        Just(json!({"mime_type": "video/VP8", "clock_rate": 90000, "channels": 0})),
        Just(json!([{"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1}])),
    ];
    (
        prop::sample::select(types),
        proptest::collection::vec((prop::sample::select(keys), leaf), 0..6),
    )
        .prop_map(|(kind, fields)| {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), json!(kind));
            for (key, value) in fields {
                object.insert(key.into(), value);
            }
            Value::Object(object).to_string()
        })
}

/// JSON that looks like a peer bridge's control message.
fn link_message_like() -> impl Strategy<Value = String> {
    message_like(
        vec![
            "hello",
            "open",
            "close",
            "participant",
            "participant_left",
            "stream",
            "stream_ended",
            "demand",
            "keyframe_request",
            "chat",
            "chat_deleted",
            "lower_hand",
            "reaction",
            "recording",
            "",
        ],
        vec![
            "active",
            "bridge",
            "version",
            "room",
            "participant",
            "id",
            "source",
            "codec",
            "extensions",
            "subscribers",
            "message",
            "by",
            "reaction",
            "type",
        ],
    )
}

/// JSON that looks like a client message.
fn client_message_like() -> impl Strategy<Value = String> {
    message_like(
        vec![
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
        ],
        vec![
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
        ],
    )
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
    fn any_bytes_are_a_link_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = serde_json::from_slice::<LinkMessage>(&bytes);
    }

    #[test]
    fn link_message_shaped_json_is_a_link_message_or_an_error(text in link_message_like()) {
        if let Ok(message) = serde_json::from_str::<LinkMessage>(&text) {
            let again = serde_json::to_vec(&message).unwrap();
            prop_assert_eq!(serde_json::from_slice::<LinkMessage>(&again).unwrap(), message);
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
