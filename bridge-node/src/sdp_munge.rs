//! The bridge's offers as every WebRTC stack reads them, not only browsers.
//!
//! `rtc` writes the ICE candidates of a BUNDLE group into its first m-section only (JSEP's
//! "bundle-only" shape), and omits `a=end-of-candidates` while its gathering state is not
//! complete, which for an ICE-lite agent whose candidates are added by hand it never is.
//! Browsers find the candidates anyway, because they bundle by default; a stack that reads
//! candidates per m-section and bundles only once the answer confirms it (aiortc/aioice with its
//! default `balanced` policy) has no candidate for the other sections and stays in `checking`.
//! The bridge's candidates are its media port, known before any offer: every section gets all of
//! them and the statement that there are no more (RFC 8840 §4.1, RFC 8839 §5.1).
//!
//! This runs on the text `rtc` produced, after it set that text as its own local description:
//! candidates are transport information only, so the copy the client sees and the one `rtc`
//! holds describe the same session.

const CANDIDATE: &str = "a=candidate:";
const END_OF_CANDIDATES: &str = "a=end-of-candidates";

/// Copies every candidate line of `sdp` into every m-section that is not rejected (port 0) and
/// lacks it, and ends each such section's candidates with `a=end-of-candidates`. Other lines keep
/// their order; lines end with CRLF as RFC 8866 requires.
pub fn candidates_in_every_section(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut candidates: Vec<&str> = Vec::new();
    for line in lines.iter().filter(|l| l.starts_with(CANDIDATE)) {
        if !candidates.contains(line) {
            candidates.push(line);
        }
    }
    let mut out = String::with_capacity(sdp.len() + 256);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let media = section.first().is_some_and(|l| l.starts_with("m="));
        let rejected = section
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|port| port == "0");
        for line in section.iter() {
            out.push_str(line);
            out.push_str("\r\n");
        }
        if media && !rejected && !candidates.is_empty() {
            for candidate in &candidates {
                if !section.contains(candidate) {
                    out.push_str(candidate);
                    out.push_str("\r\n");
                }
            }
            if !section.contains(&END_OF_CANDIDATES) {
                out.push_str(END_OF_CANDIDATES);
                out.push_str("\r\n");
            }
        }
        section.clear();
    };
    for line in lines.into_iter().filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{IceCredentials, build_peer_connection};
    use rtc::peer_connection::sdp::RTCSessionDescription;
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use std::io::Cursor;
    use std::net::SocketAddr;
    use std::time::Instant;

    /// An offer as the bridge writes one: two recvonly slots and a sendonly leg, host candidates
    /// on both families.
    fn bridge_offer() -> String {
        let v4: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let v6: SocketAddr = "[::1]:10000".parse().unwrap();
        let now = Instant::now();
        let mut pc = build_peer_connection(now, &IceCredentials::random(), &[v4, v6]).unwrap();
        for (kind, direction) in [
            (RtpCodecKind::Audio, RTCRtpTransceiverDirection::Recvonly),
            (RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly),
            (RtpCodecKind::Video, RTCRtpTransceiverDirection::Recvonly),
        ] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .unwrap();
        }
        let offer = pc.create_offer(None).unwrap();
        pc.set_local_description(now, offer).unwrap();
        pc.local_description().unwrap().sdp
    }

    fn parse(sdp: &str) -> rtc::sdp::SessionDescription {
        rtc::sdp::SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).unwrap()
    }

    fn candidates(media: &rtc::sdp::MediaDescription) -> Vec<String> {
        media
            .attributes
            .iter()
            .filter(|a| a.key == "candidate")
            .filter_map(|a| a.value.clone())
            .collect()
    }

    #[test]
    fn every_section_of_the_bridges_offer_carries_every_candidate_and_their_end() {
        let original = bridge_offer();
        let before = parse(&original);
        assert_eq!(before.media_descriptions.len(), 3);
        // What the munging is for: rtc writes the candidates into the first section only.
        assert!(
            candidates(&before.media_descriptions[1]).is_empty(),
            "rtc now writes candidates in every section; this module may be unnecessary"
        );
        let all = candidates(&before.media_descriptions[0]);
        assert!(all.iter().any(|c| c.contains("127.0.0.1 10000")), "{all:?}");
        assert!(all.iter().any(|c| c.contains("::1 10000")), "{all:?}");

        let munged = candidates_in_every_section(&original);
        let after = parse(&munged);
        assert_eq!(after.media_descriptions.len(), 3);
        for media in &after.media_descriptions {
            assert_eq!(candidates(media), all, "mid {:?}", media.attribute("mid"));
            assert!(
                media.attributes.iter().any(|a| a.key == "end-of-candidates"),
                "mid {:?}",
                media.attribute("mid")
            );
        }
        // Everything else is untouched, in order.
        let strip = |sdp: &str| -> Vec<String> {
            sdp.lines()
                .filter(|l| !l.starts_with(CANDIDATE) && !l.starts_with(END_OF_CANDIDATES))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(strip(&original), strip(&munged));
        assert!(munged.ends_with("\r\n") && !munged.contains("\n\n"));
        // rtc accepts the munged text as an offer (what a peer applying it does).
        RTCSessionDescription::offer(munged.clone()).unwrap();
        // Idempotent: a section that has them gets no duplicates.
        assert_eq!(candidates_in_every_section(&munged), munged);
    }

    #[test]
    fn a_rejected_section_gets_no_candidates() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 10000 typ host\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        let munged = candidates_in_every_section(sdp);
        let sections: Vec<&str> = munged.split("m=").skip(1).collect();
        assert!(sections[0].contains("a=end-of-candidates"));
        assert!(!sections[1].contains("a=candidate") && !sections[1].contains("end-of-candidates"));
        assert!(sections[2].contains("a=candidate:1 1 udp 1 127.0.0.1 10000 typ host"));
        assert!(sections[2].contains("a=end-of-candidates"));
    }
}
