//! Property tests of the TURN server's parsers (issue 17): whatever bytes a client sends, they
//! decode or are refused, never panic, and what the writer makes decodes back to itself.
//! `PROPTEST_CASES=100000 cargo test -p bridgemesh-turn --test stun_parser_holds_on_any_input`
//! runs the long version; CI runs proptest's default of 256 cases per property.

use bridgemesh_turn::stun::{
    Class, Message, STREAM_FRAME_MAX_BYTES, Writer, frame_kind, parse_channel_data, stream_frame_len,
};
use proptest::prelude::*;

/// A STUN header (magic cookie in place, so decoding goes past the first check) and a body of
/// attribute-like bytes: far more likely to reach the attribute walk than uniform bytes.
fn stun_like() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..600),
        any::<[u8; 12]>(),
    )
        .prop_map(|(kind, body, transaction_id)| {
            let mut packet = Vec::with_capacity(20 + body.len());
            packet.extend_from_slice(&(kind & 0x3FFF).to_be_bytes());
            packet.extend_from_slice(&(body.len() as u16).to_be_bytes());
            packet.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            packet.extend_from_slice(&transaction_id);
            packet.extend_from_slice(&body);
            packet
        })
}

fn read_everything(message: &Message<'_>) {
    for typ in [0x0006, 0x0008, 0x0012, 0x0016, 0x0020, 0x8028, 0x000C, 0x0013] {
        if let Some(value) = message.get(typ) {
            let _ = message.xor_address(value);
        }
        let _ = message.get_all(typ).count();
        let _ = message.text(typ);
    }
    let _ = message.unknown_required().count();
    let _ = message.integrity_ok(b"key");
}

proptest! {
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = frame_kind(&bytes);
        if let Some((_, payload)) = parse_channel_data(&bytes) {
            prop_assert!(payload.len() + 4 <= bytes.len());
        }
        if let Ok(message) = Message::decode(&bytes) {
            read_everything(&message);
        }
    }

    #[test]
    fn stun_shaped_bytes_decode_or_are_refused(bytes in stun_like()) {
        if let Ok(message) = Message::decode(&bytes) {
            read_everything(&message);
        }
    }

    #[test]
    fn a_stream_frame_length_is_bounded(head in any::<[u8; 4]>()) {
        if let Some(len) = stream_frame_len(head) {
            prop_assert!((4..=STREAM_FRAME_MAX_BYTES).contains(&len), "{len}");
        }
    }

    #[test]
    fn what_the_writer_makes_decodes_to_the_same_attributes(
        method in 0u16..0x1000,
        transaction_id in any::<[u8; 12]>(),
        attributes in proptest::collection::vec(
            (0x8030u16..0xFFFF, proptest::collection::vec(any::<u8>(), 0..64)),
            0..8,
        ),
        key in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let mut buf = Vec::new();
        let mut writer = Writer::new(&mut buf, method, Class::Request, transaction_id);
        for (typ, value) in &attributes {
            writer.attribute(*typ, value);
        }
        writer.finish_with_integrity(&key, true);
        let message = Message::decode(&buf).expect("a message the writer made");
        prop_assert_eq!(message.method, method);
        prop_assert_eq!(message.transaction_id, transaction_id);
        prop_assert!(message.integrity_ok(&key));
        for (typ, value) in &attributes {
            prop_assert!(message.get_all(*typ).any(|v| v == &value[..]));
        }
    }
}
