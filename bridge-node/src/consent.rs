//! Consent freshness on the bridge's ICE-lite side (RFC 7675), and what a returning path costs.
//!
//! An ICE-lite agent sends no checks; it learns that its peer still wants media from what the peer
//! sends: connectivity checks (browsers and aiortc send one every 5 s ± 20 % once connected, RFC
//! 7675 §5.1), media, RTCP. `rtc`'s defaults call a participant disconnected after 5 s without any
//! of those, which a receive-only or silent client (nothing but its consent checks) crosses at
//! every check that comes a little late: the connection flapped between disconnected and
//! connected every few seconds.
//!
//! The bridge instead calls a path disconnected only once two consecutive checks are missing
//! ([`DISCONNECTED_AFTER`]), and lets consent expire — the participant is removed — after
//! [`CONSENT_LIFETIME`] without anything from the peer, the RFC's 30 s.
//!
//! A path that comes back (disconnected → connected) has lost nothing by itself: the bridge kept
//! sending, and a subscriber that missed packets asks for a keyframe itself (PLI, forwarded and
//! throttled). So the bridge asks publishers for keyframes on its own only when a subscriber's
//! connection first comes up, and when its media moved to another address, where every packet
//! sent to the old one was lost — at most once per [`PATH_KEYFRAME_INTERVAL`] per subscriber.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Without anything from the peer for this long, its path is called disconnected: two consent
/// checks at their latest (6 s apart) and a little more.
pub const DISCONNECTED_AFTER: Duration = Duration::from_secs(15);

/// Without anything from the peer for this long, consent has expired (RFC 7675 §5.1: 30 s) and
/// the participant is removed.
pub const CONSENT_LIFETIME: Duration = Duration::from_secs(30);

/// Keyframe requests a subscriber's moved path triggers, at most once per this interval.
pub const PATH_KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);

/// `rtc`'s ICE timeouts for the bridge's agents: (disconnected, failed, keepalive). `rtc` counts
/// `failed` from the moment the path is disconnected; an ICE-lite agent sends no keepalives.
pub fn ice_timeouts() -> (Option<Duration>, Option<Duration>, Option<Duration>) {
    (
        Some(DISCONNECTED_AFTER),
        Some(CONSENT_LIFETIME - DISCONNECTED_AFTER),
        Some(Duration::ZERO),
    )
}

/// One participant's media path as the bridge sees it: whether its connection has been up
/// before, and where its media goes.
#[derive(Debug, Default)]
pub struct PathWatch {
    connected_before: bool,
    media_addr: Option<SocketAddr>,
    keyframes_requested_at: Option<Instant>,
}

impl PathWatch {
    /// The connection came up (ICE and DTLS). True when subscribers' legs need keyframes: only
    /// the first time, as a returning path lost nothing the subscriber will not ask for itself.
    pub fn on_connected(&mut self, now: Instant) -> bool {
        if self.connected_before {
            return false;
        }
        self.connected_before = true;
        self.keyframes_requested_at = Some(now);
        true
    }

    /// The peer connection sent DTLS or SRTCP to `addr`, its selected path. True when the path
    /// moved after the connection was up, so media sent to the old address was lost and the
    /// legs need keyframes — unless keyframes were asked for within [`PATH_KEYFRAME_INTERVAL`].
    pub fn on_media_addr(&mut self, now: Instant, addr: SocketAddr) -> bool {
        let previous = self.media_addr.replace(addr);
        let moved = previous.is_some_and(|p| p != addr);
        if !moved || !self.connected_before {
            return false;
        }
        if self
            .keyframes_requested_at
            .is_some_and(|at| now < at + PATH_KEYFRAME_INTERVAL)
        {
            return false;
        }
        self.keyframes_requested_at = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_connection_and_a_moved_path_want_keyframes() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let mut watch = PathWatch::default();
        assert!(!watch.on_media_addr(t0, a), "before the connection is up");
        assert!(watch.on_connected(t0));
        assert!(!watch.on_connected(t0 + Duration::from_secs(20)), "a return");
        assert!(!watch.on_media_addr(t0 + Duration::from_secs(21), a), "same path");
        assert!(watch.on_media_addr(t0 + Duration::from_secs(22), b), "moved");
        // Flipping back and forth asks at most once a second.
        assert!(!watch.on_media_addr(t0 + Duration::from_millis(22_500), a));
        assert!(!watch.on_media_addr(t0 + Duration::from_millis(22_900), b));
        assert!(watch.on_media_addr(t0 + Duration::from_millis(23_000), a));
    }

    #[test]
    fn consent_expires_after_thirty_seconds() {
        let (disconnected, failed, keepalive) = ice_timeouts();
        assert_eq!(disconnected.unwrap() + failed.unwrap(), Duration::from_secs(30));
        assert!(disconnected.unwrap() > Duration::from_secs(12), "two late checks");
        assert_eq!(keepalive, Some(Duration::ZERO));
    }
}
