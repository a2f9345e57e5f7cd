//! bridgemesh patch: replay windows that only an authenticated packet can start.
//!
//! `rtc-shared`'s `WrappedSlidingWindowDetector` places its window at the number of the first
//! packet it is asked to CHECK, before that packet is authenticated. One forged packet with a
//! number far ahead of the real stream (sent with a spoofed source address before the stream's
//! first real packet) then makes every real packet "duplicated" until the real numbers catch
//! up, up to 32,767 packets later. This factory gives detectors that accept any number until
//! the first packet is authenticated, then hand over to the same sliding window, started at
//! that packet.

use shared::replay_detector::{ReplayDetector, WrappedSlidingWindowDetector};
use srtp::option::ContextOption;

/// Largest SRTP sequence number.
const MAX_SRTP_SEQUENCE_NUMBER: u64 = 0xFFFF;
/// Largest SRTCP index (31 bits).
const MAX_SRTCP_INDEX: u64 = 0x7FFF_FFFF;

/// SRTP replay protection of `window_size` packets, started by the first authenticated packet.
pub(crate) fn srtp_replay_protection(window_size: usize) -> ContextOption {
    Box::new(move || Box::new(AuthenticatedWindow::new(window_size, MAX_SRTP_SEQUENCE_NUMBER)))
}

/// SRTCP replay protection of `window_size` packets, started by the first authenticated packet.
pub(crate) fn srtcp_replay_protection(window_size: usize) -> ContextOption {
    Box::new(move || Box::new(AuthenticatedWindow::new(window_size, MAX_SRTCP_INDEX)))
}

struct AuthenticatedWindow {
    window_size: usize,
    max_seq: u64,
    /// `None` until a packet was authenticated.
    window: Option<WrappedSlidingWindowDetector>,
    /// The number last checked while there is no window yet.
    checked: Option<u64>,
}

impl AuthenticatedWindow {
    fn new(window_size: usize, max_seq: u64) -> Self {
        Self {
            window_size,
            max_seq,
            window: None,
            checked: None,
        }
    }
}

impl ReplayDetector for AuthenticatedWindow {
    fn check(&mut self, seq: u64) -> bool {
        match &mut self.window {
            Some(window) => window.check(seq),
            None => {
                self.checked = (seq <= self.max_seq).then_some(seq);
                self.checked.is_some()
            }
        }
    }

    fn accept(&mut self) {
        if let Some(window) = &mut self.window {
            window.accept();
            return;
        }
        if let Some(seq) = self.checked.take() {
            let mut window = WrappedSlidingWindowDetector::new(self.window_size, self.max_seq);
            if window.check(seq) {
                window.accept();
            }
            self.window = Some(window);
        }
    }
}
