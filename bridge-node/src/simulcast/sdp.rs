//! The bridge's offer asks for simulcast on a camera slot.
//!
//! The bridge is the offerer and its camera slot is `recvonly`, so simulcast is negotiated the
//! JSEP way round for an answerer that sends: the offer lists the RIDs it will receive
//! (`a=rid:q recv`, ... and `a=simulcast:recv q;h;f`, RFC 8853), and a browser answering it gives
//! its sender one encoding per RID, scaled down by 4, 2 and 1 in that order (WebRTC 1.0, "set a
//! remote description", simulcast in an offer), answering `a=simulcast:send q;h;f`. A client
//! that does not simulcast answers without the attribute and sends one stream, as before.
//!
//! `rtc` 0.21 writes `a=rid`/`a=simulcast` only when mirroring a remote description, never in a
//! first offer of its own; this adds them to the text sent to the client, as `sdp_munge.rs` does
//! for candidates. Once the answer named the RIDs, `rtc` writes them itself in later offers (from
//! the answer's `a=rid` lines); the lines are then left as they are.

use super::RIDS;

/// Adds the RID lines and `a=simulcast:recv` to the m-sections whose `a=mid` is in `mids` and
/// that have no `a=simulcast` yet. Other lines keep their order; lines end with CRLF.
pub fn offer_simulcast(sdp: &str, mids: &[String]) -> String {
    if mids.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 128 * mids.len());
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let wanted = section.iter().any(|l| {
            l.strip_prefix("a=mid:")
                .is_some_and(|mid| mids.iter().any(|m| m == mid))
        });
        let has = section
            .iter()
            .any(|l| l.starts_with("a=simulcast:") || l.starts_with("a=rid:"));
        let rejected = section
            .first()
            .is_some_and(|l| l.starts_with("m=") && l.split_whitespace().nth(1) == Some("0"));
        for line in section.iter() {
            out.push_str(line);
            out.push_str("\r\n");
        }
        if wanted && !has && !rejected {
            for rid in RIDS {
                out.push_str(&format!("a=rid:{rid} recv\r\n"));
            }
            out.push_str(&format!("a=simulcast:recv {}\r\n", RIDS.join(";")));
        }
        section.clear();
    };
    for line in sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

/// Removes `a=simulcast` and `a=rid` from the answer's m-sections that declare fewer sending
/// SSRCs than RIDs (`a=ssrc` lines, RTX flows of `a=ssrc-group:FID` not counted). A stack that
/// mirrors the offer's RID lines but sends one stream of its own (what `rtc`-based clients do)
/// declares its one SSRC; left as it is, the bridge would wait for RTP stream ids that never come
/// and never bind the stream. Browsers declare no SSRC for their simulcast layers and are left
/// untouched.
pub fn answer_without_unsent_simulcast(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let rids = section.iter().filter(|l| l.starts_with("a=rid:")).count();
        let mut ssrcs: Vec<&str> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=ssrc:")?.split_whitespace().next())
            .collect();
        ssrcs.sort_unstable();
        ssrcs.dedup();
        let repair: Vec<&str> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=ssrc-group:FID "))
            .filter_map(|group| group.split_whitespace().nth(1))
            .collect();
        let sending = ssrcs.iter().filter(|s| !repair.contains(s)).count();
        let unsent = rids > 0 && sending > 0 && sending < rids;
        for line in section.iter() {
            if unsent && (line.starts_with("a=rid:") || line.starts_with("a=simulcast:")) {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        section.clear();
    };
    for line in sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
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

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n";

    #[test]
    fn only_the_named_sections_ask_for_simulcast_once() {
        let munged = offer_simulcast(SDP, &["1".to_owned()]);
        let sections: Vec<&str> = munged.split("m=").skip(1).collect();
        assert!(!sections[0].contains("a=rid"));
        assert!(
            sections[1]
                .contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n")
        );
        assert!(!sections[2].contains("a=rid"));
        assert_eq!(offer_simulcast(&munged, &["1".to_owned()]), munged, "idempotent");
        assert_eq!(offer_simulcast(SDP, &[]), SDP);
        // rtc reads what it produced back as a valid description.
        rtc::peer_connection::sdp::RTCSessionDescription::offer(munged).unwrap();
    }

    #[test]
    fn an_answer_mirroring_rids_but_sending_one_stream_loses_them_and_a_browsers_keeps_them() {
        let head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n";
        let rids = "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";
        let one_stream =
            format!("{head}{rids}a=ssrc-group:FID 11 12\r\na=ssrc:11 cname:x\r\na=ssrc:12 cname:x\r\n");
        let fixed = answer_without_unsent_simulcast(&one_stream);
        assert!(
            !fixed.contains("a=rid") && !fixed.contains("a=simulcast"),
            "{fixed}"
        );
        assert!(fixed.contains("a=ssrc:11 cname:x\r\n"));
        let browser = format!("{head}{rids}");
        assert_eq!(answer_without_unsent_simulcast(&browser), browser);
        let three = format!("{head}{rids}a=ssrc:1 cname:x\r\na=ssrc:2 cname:x\r\na=ssrc:3 cname:x\r\n");
        assert_eq!(answer_without_unsent_simulcast(&three), three);
    }
}
