use super::*;
use crate::data_channel::message::RTCDataChannelMessage;
use crate::peer_connection::RTCPeerConnectionBuilder;
use crate::peer_connection::event::RTCDataChannelEvent;
use bytes::BytesMut;
use sansio::Protocol;
use shared::{TransportContext, TransportProtocol};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Media must be drainable while data-channel output is held back.
///
/// That is the whole point of the split: back-pressure is applied by declining to drain
/// the data-channel queue, and while both kinds shared one queue that also stopped media.
/// A slow signalling channel froze video on the same connection for as long as it stalled.
#[test]
fn media_drains_while_data_channel_output_is_held_back() {
    let base = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .build(base)
        .expect("build peer connection");

    // Media outnumbering data, the shape of a real SFU connection.
    for i in 0..10 {
        let message = if i % 5 == 0 {
            RTCMessage::DataChannelMessage(0, RTCDataChannelMessage::default())
        } else {
            RTCMessage::RtpPacket(Default::default(), ::rtp::packet::Packet::default())
        };
        let tagged = TaggedRTCMessage { now: base, message };
        match tagged.message {
            RTCMessage::DataChannelMessage(..) => {
                pc.pipeline_context.data_read_outs.push_back(tagged)
            }
            _ => pc.pipeline_context.media_read_outs.push_back(tagged),
        }
    }

    // Drain media only — as a caller applying data-channel back-pressure would.
    let mut media = 0;
    while let Some(msg) = pc.poll_media_read() {
        assert!(
            !matches!(msg.message, RTCMessage::DataChannelMessage(..)),
            "poll_media_read must never yield data-channel output"
        );
        media += 1;
    }

    assert_eq!(
        media, 8,
        "all media must be deliverable while data is held back"
    );
    assert_eq!(
        pc.pipeline_context.data_read_outs.len(),
        2,
        "held-back data-channel output must stay queued — its length is the signal the \
         SCTP drain is bounded against, so losing it would drop the back-pressure"
    );

    // And releasing it hands over exactly what was held.
    let mut data = 0;
    while let Some(msg) = pc.poll_data_read() {
        assert!(matches!(msg.message, RTCMessage::DataChannelMessage(..)));
        data += 1;
    }
    assert_eq!(data, 2);
}

/// `poll_read` still yields both kinds, so the callers that predate the split — 58 files
/// across tests and examples — behave exactly as before.
#[test]
fn poll_read_still_yields_both_kinds() {
    let base = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .build(base)
        .expect("build peer connection");

    pc.pipeline_context
        .data_read_outs
        .push_back(TaggedRTCMessage {
            now: base,
            message: RTCMessage::DataChannelMessage(0, RTCDataChannelMessage::default()),
        });
    pc.pipeline_context
        .media_read_outs
        .push_back(TaggedRTCMessage {
            now: base,
            message: RTCMessage::RtpPacket(
                Default::default(),
                ::rtp::packet::Packet::default(),
            ),
        });

    let mut kinds = vec![];
    while let Some(msg) = pc.poll_read() {
        kinds.push(matches!(msg.message, RTCMessage::DataChannelMessage(..)));
    }
    assert_eq!(kinds.len(), 2, "poll_read must still drain everything");
    assert!(kinds.contains(&true) && kinds.contains(&false));
}

/// The instant the application supplies on `handle_write` is the one the core stamps the
/// resulting internal message with — not a reading the core took for itself. Before C3-03
/// the public `Win` was a bare `RTCMessage`, so this entry point had no time source and
/// stamped `Instant::now()`.
#[test]
fn handle_write_stamps_from_the_caller_not_the_clock() {
    let base = Instant::now();
    let t = |secs| base + Duration::from_secs(secs);

    let mut pc = RTCPeerConnectionBuilder::new()
        .build(t(0))
        .expect("a default peer connection builds");

    pc.handle_write(TaggedRTCMessage {
        now: t(5),
        message: RTCMessage::DataChannelMessage(
            1,
            RTCDataChannelMessage {
                is_string: true,
                data: BytesMut::from(&b"hello"[..]),
            },
        ),
    })
    .expect("handle_write queues the message");

    let queued = pc
        .pipeline_context
        .endpoint_handler_context
        .write_outs
        .front()
        .expect("the message reaches the endpoint handler");

    assert_eq!(
        queued.now,
        t(5),
        "the internal message carries the caller's instant, not an ambient reading"
    );
    assert_ne!(queued.now, t(0), "and not the construction instant either");
}

/// The open of a negotiated data channel is queued as a read message while
/// `SCTPHandshakeComplete` is being handled, i.e. inside `poll_event`. That same `poll_event`
/// call must return the `OnOpen`: the async `webrtc` driver drains events until `poll_event`
/// returns `None` and then waits for the next packet or timer.
#[test]
fn negotiated_channel_opens_within_the_same_poll_event() {
    use crate::data_channel::RTCDataChannelInit;
    use crate::peer_connection::event::TaggedRTCEventInternal;
    use crate::peer_connection::transport::RTCDtlsRole;

    let base = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .build(base)
        .expect("a default peer connection builds");
    let id = pc
        .create_data_channel(
            "negotiated",
            Some(RTCDataChannelInit {
                negotiated: Some(1),
                ..Default::default()
            }),
        )
        .expect("a negotiated data channel is created")
        .id();

    // Drain what creating the channel raised (`OnNegotiationNeeded`): an unrelated event
    // returned alongside would keep the loop below polling and hide a stuck open.
    while pc.poll_event().is_some() {}

    // Resolved by the DTLS handshake, which precedes the association.
    pc.dtls_transport_mut().dtls_role = RTCDtlsRole::Client;

    // What the SCTP handler emits once the association is up.
    pc.pipeline_context
        .sctp_handler_context
        .event_outs
        .push_back(TaggedRTCEventInternal {
            now: base,
            event: RTCEventInternal::SCTPHandshakeComplete(0),
        });

    let mut opened = false;
    while let Some(event) = pc.poll_event() {
        if matches!(
            event,
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(opened_id)) if opened_id == id
        ) {
            opened = true;
        }
    }
    assert!(
        opened,
        "the open must not wait for the next incoming packet"
    );
}

/// Check that messages in the `read_out` queues don't get stuck until the next incoming packet triggers `handle_read`.
#[test]
fn pump_read_outs() {
    let base = Instant::now();
    let t = |secs| base + Duration::from_secs(secs);

    let mut pc = RTCPeerConnectionBuilder::new()
        .build(t(0))
        .expect("a default peer connection builds");

    // drop a message into the data channel handler read outs, like DataChannel::emit_data_channel_opened() does
    pc.pipeline_context
        .datachannel_handler_context
        .read_outs
        .push_back(TaggedRTCMessageInternal {
            now: t(5),
            transport: TransportContext {
                local_addr: (Ipv4Addr::LOCALHOST, 0).into(),
                peer_addr: (Ipv4Addr::LOCALHOST, 0).into(),
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: RTCMessageInternal::Dtls(DTLSMessage::DataChannel(ApplicationMessage {
                data_channel_id: 42,
                data_channel_event: DataChannelEvent::Open,
            })),
        });

    // call `poll_read` to pump the read outs
    let msg = pc.poll_read();
    assert!(
        msg.is_none(),
        "The message should be consumed by the enpoint handler"
    );

    // we should get a channel opened event
    let event = pc.poll_event().expect("should have an event");
    assert!(matches!(
        event,
        RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(42))
    ));
}
