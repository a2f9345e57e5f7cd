//! One allocation's protocol state: permissions, channel bindings, lifetime and bandwidth budget.
//! Pure: every method takes `now`, so tests drive time by hand; the server keeps one behind a
//! lock per allocation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// RFC 5766 §8: permissions last 5 minutes, channel bindings 10.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Lifetime granted when the client asks for none (RFC 5766 §6.2).
pub const DEFAULT_LIFETIME_S: u32 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error("the channel is bound to another peer, or the peer to another channel")]
    Conflict,
    #[error("the allocation holds as many permissions or channels as it may")]
    Full,
}

#[derive(Debug)]
pub struct AllocationState {
    pub expires_at: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
    channel_of_peer: HashMap<SocketAddr, u16>,
    permissions_max: usize,
    channels_max: usize,
    bandwidth: TokenBucket,
}

impl AllocationState {
    pub fn new(
        now: Instant,
        lifetime: Duration,
        permissions_max: usize,
        channels_max: usize,
        bytes_per_s: u64,
        burst_bytes: u64,
    ) -> Self {
        Self {
            expires_at: now + lifetime,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            channel_of_peer: HashMap::new(),
            permissions_max,
            channels_max,
            bandwidth: TokenBucket::new(bytes_per_s, burst_bytes, now),
        }
    }

    pub fn permit(&mut self, ip: IpAddr, now: Instant) -> Result<(), BindError> {
        if !self.permissions.contains_key(&ip) && self.permissions.len() >= self.permissions_max {
            self.permissions.retain(|_, expires| *expires > now);
            if self.permissions.len() >= self.permissions_max {
                return Err(BindError::Full);
            }
        }
        self.permissions.insert(ip, now + PERMISSION_LIFETIME);
        Ok(())
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|expires| *expires > now)
    }

    /// Binds (or refreshes) `channel` to `peer`; also installs a permission for the peer's IP.
    pub fn bind_channel(&mut self, channel: u16, peer: SocketAddr, now: Instant) -> Result<(), BindError> {
        match (self.channels.get(&channel), self.channel_of_peer.get(&peer)) {
            (Some((bound, expires)), _) if *bound != peer && *expires > now => {
                return Err(BindError::Conflict);
            }
            (_, Some(other))
                if *other != channel && self.channels.get(other).is_some_and(|(_, e)| *e > now) =>
            {
                return Err(BindError::Conflict);
            }
            _ => {}
        }
        if !self.channels.contains_key(&channel) && self.channels.len() >= self.channels_max {
            self.sweep(now);
            if self.channels.len() >= self.channels_max {
                return Err(BindError::Full);
            }
        }
        self.permit(peer.ip(), now)?;
        if let Some((old_peer, _)) = self.channels.insert(channel, (peer, now + CHANNEL_LIFETIME)) {
            // The old peer may have moved to another channel since this one expired.
            if old_peer != peer && self.channel_of_peer.get(&old_peer) == Some(&channel) {
                self.channel_of_peer.remove(&old_peer);
            }
        }
        if let Some(previous) = self.channel_of_peer.insert(peer, channel)
            && previous != channel
        {
            // The peer's expired channel: forgotten now, so that it cannot be swept later.
            self.channels.remove(&previous);
        }
        Ok(())
    }

    pub fn channel_peer(&self, channel: u16, now: Instant) -> Option<SocketAddr> {
        match self.channels.get(&channel) {
            Some((peer, expires)) if *expires > now => Some(*peer),
            _ => None,
        }
    }

    pub fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let channel = *self.channel_of_peer.get(&peer)?;
        self.channel_peer(channel, now).map(|_| channel)
    }

    /// Spends `bytes` of the bandwidth budget; false means drop the packet.
    pub fn take_bandwidth(&mut self, bytes: usize, now: Instant) -> bool {
        self.bandwidth.take(bytes as u64, now)
    }

    /// Forgets expired permissions and channels.
    pub fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|_, expires| *expires > now);
        let channel_of_peer = &mut self.channel_of_peer;
        self.channels.retain(|channel, (peer, expires)| {
            let live = *expires > now;
            // Only if the peer still maps here: after a rebind it maps to its new channel.
            if !live && channel_of_peer.get(peer) == Some(channel) {
                channel_of_peer.remove(peer);
            }
            live
        });
    }
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate_per_s: f64,
    burst: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(rate_per_s: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(rate_per_s / 10) as f64;
        Self {
            tokens: burst,
            rate_per_s: rate_per_s as f64,
            burst,
            updated: now,
        }
    }

    fn take(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(now: Instant) -> AllocationState {
        AllocationState::new(now, Duration::from_secs(600), 2, 2, 1000, 1000)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn permissions_expire_after_five_minutes_and_are_capped() {
        let t0 = Instant::now();
        let mut s = state(t0);
        let a = addr("192.0.2.1:1");
        s.permit(a.ip(), t0).unwrap();
        assert!(s.has_permission(a.ip(), t0 + Duration::from_secs(299)));
        assert!(!s.has_permission(a.ip(), t0 + Duration::from_secs(300)));
        s.permit("192.0.2.2".parse().unwrap(), t0).unwrap();
        assert_eq!(s.permit("192.0.2.3".parse().unwrap(), t0), Err(BindError::Full));
        assert_eq!(
            s.permit("192.0.2.3".parse().unwrap(), t0 + PERMISSION_LIFETIME),
            Ok(()),
            "expired ones make room"
        );
    }

    #[test]
    fn channels_bind_one_peer_each_and_install_a_permission() {
        let t0 = Instant::now();
        let mut s = state(t0);
        let (a, b) = (addr("192.0.2.1:1"), addr("192.0.2.1:2"));
        s.bind_channel(0x4000, a, t0).unwrap();
        assert!(s.has_permission(a.ip(), t0));
        assert_eq!(s.channel_peer(0x4000, t0), Some(a));
        assert_eq!(s.channel_of(a, t0), Some(0x4000));
        assert_eq!(s.bind_channel(0x4000, b, t0), Err(BindError::Conflict));
        assert_eq!(s.bind_channel(0x4001, a, t0), Err(BindError::Conflict));
        s.bind_channel(0x4000, a, t0).unwrap();
        assert_eq!(s.channel_peer(0x4000, t0 + CHANNEL_LIFETIME), None);
        s.bind_channel(0x4000, b, t0 + CHANNEL_LIFETIME).unwrap();
        assert_eq!(s.channel_of(a, t0 + CHANNEL_LIFETIME), None);
    }

    #[test]
    fn sweeping_an_expired_channel_keeps_the_peers_new_channel() {
        let t0 = Instant::now();
        let mut s = state(t0);
        let a = addr("192.0.2.1:1");
        s.bind_channel(0x4000, a, t0).unwrap();
        // The binding lapses; the peer is bound again, on another channel.
        let t1 = t0 + CHANNEL_LIFETIME;
        s.bind_channel(0x4001, a, t1).unwrap();
        s.sweep(t1 + Duration::from_secs(1));
        assert_eq!(s.channel_of(a, t1 + Duration::from_secs(1)), Some(0x4001));
        assert_eq!(s.channel_peer(0x4001, t1), Some(a));
        // Sweep alone, with the lapsed channel still in the table next to the new one.
        let mut s = state(t0);
        s.channels.insert(0x4000, (a, t1));
        s.channels.insert(0x4001, (a, t1 + CHANNEL_LIFETIME));
        s.channel_of_peer.insert(a, 0x4001);
        s.sweep(t1);
        assert_eq!(s.channel_of(a, t1), Some(0x4001));
        assert_eq!(s.channel_peer(0x4000, t1), None);
        // The other order: the expired channel is still in the table when another peer takes it.
        let mut s = state(t0);
        let b = addr("192.0.2.1:2");
        s.bind_channel(0x4000, a, t0).unwrap();
        s.channels.insert(0x4001, (a, t1 + CHANNEL_LIFETIME));
        s.channel_of_peer.insert(a, 0x4001);
        s.bind_channel(0x4000, b, t1).unwrap();
        assert_eq!(
            s.channel_of(a, t1),
            Some(0x4001),
            "a's mapping survives b taking 0x4000"
        );
        assert_eq!(s.channel_of(b, t1), Some(0x4000));
    }

    #[test]
    fn bandwidth_is_a_token_bucket() {
        let t0 = Instant::now();
        let mut s = state(t0);
        assert!(s.take_bandwidth(600, t0));
        assert!(!s.take_bandwidth(600, t0), "over the burst");
        assert!(s.take_bandwidth(600, t0 + Duration::from_millis(300)));
    }
}
