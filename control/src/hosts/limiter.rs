//! The brute-force bound on host logins: a sans-IO limiter driven by `now`.
//!
//! Three counters of failed logins, each turning into an exponential delay once its free
//! failures are spent (`base · 2^k`, capped at [`LimiterConfig::delay_max`]):
//! - per address and account: one person mistyping gets a few tries, a guesser slows to one
//!   guess per `delay_max`;
//! - per address: spraying many accounts from one place is bounded the same way;
//! - per account, for addresses the account has never logged in from: a guesser with many
//!   addresses is bounded too. An address the host has logged in from before is exempt, so an
//!   attack on the account never locks its host out at home; from a new address the lockout
//!   lasts at most `delay_max` at a time.
//!
//! A delay is never longer than `delay_max`, and a counter with no failure for
//! `forget_after` starts over: no one can lock an account for good. Every map is bounded; a
//! full map forgets its stalest entry (the argon2 permits, not this map, cap the guess rate).

use bridgemesh_proto::HostName;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures per address and account before delays start.
    pub pair_free_failures: u32,
    /// Failures per address (all accounts together) before delays start.
    pub address_free_failures: u32,
    /// Failures per account from addresses it never logged in from, before delays start.
    pub account_free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub delay_base: Duration,
    /// The longest delay: how long a lockout can last at a time.
    pub delay_max: Duration,
    /// A counter without a failure for this long is forgotten.
    pub forget_after: Duration,
    /// Entries per counter map (and addresses remembered as known).
    pub entries_max: usize,
    /// How long an address stays known to an account after a login from it.
    pub known_for: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            pair_free_failures: 3,
            address_free_failures: 20,
            account_free_failures: 10,
            delay_base: Duration::from_secs(1),
            delay_max: Duration::from_secs(300),
            forget_after: Duration::from_secs(3600),
            entries_max: 10_000,
            known_for: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl LimiterConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.delay_base.is_zero() || self.delay_max < self.delay_base {
            return Err("login delays: 0 < delay_base <= delay_max".into());
        }
        if self.forget_after < self.delay_max {
            return Err("login delays: forget_after must be at least delay_max".into());
        }
        if self.entries_max == 0 {
            return Err("login delays: entries_max must be positive".into());
        }
        Ok(())
    }
}

/// A login refused before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

/// One counter map, bounded.
struct Counters<K> {
    entries: HashMap<K, Backoff>,
}

impl<K: Eq + Hash + Clone> Counters<K> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn blocked(&self, key: &K, now: Instant, config: &LimiterConfig) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if now.saturating_duration_since(entry.last_failure) >= config.forget_after {
            return None;
        }
        (now < entry.blocked_until).then(|| entry.blocked_until - now)
    }

    fn fail(&mut self, key: K, free: u32, now: Instant, config: &LimiterConfig) {
        if !self.entries.contains_key(&key) && self.entries.len() >= config.entries_max {
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.last_failure) < config.forget_after);
            if self.entries.len() >= config.entries_max
                && let Some(stalest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&stalest);
            }
        }
        let entry = self.entries.entry(key).or_insert(Backoff {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if now.saturating_duration_since(entry.last_failure) >= config.forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures > free {
            let doublings = (entry.failures - free - 1).min(30);
            let delay = config
                .delay_base
                .saturating_mul(1u32 << doublings)
                .min(config.delay_max);
            entry.blocked_until = now + delay;
        }
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// See the module documentation. `address` is the client's address as the join budget keys it
/// (an IPv6 /64 as one); `account` is the name tried, whether or not it exists.
pub struct LoginLimiter {
    config: LimiterConfig,
    pairs: Counters<(IpAddr, HostName)>,
    addresses: Counters<IpAddr>,
    accounts: Counters<HostName>,
    /// Addresses each account logged in from, with the time of the last login.
    known: HashMap<(IpAddr, HostName), Instant>,
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config,
            pairs: Counters::new(),
            addresses: Counters::new(),
            accounts: Counters::new(),
            known: HashMap::new(),
        }
    }

    fn known(&self, address: IpAddr, account: &HostName, now: Instant) -> bool {
        self.known
            .get(&(address, account.clone()))
            .is_some_and(|at| now.saturating_duration_since(*at) < self.config.known_for)
    }

    /// Whether a login may be tried now; call before checking the password.
    pub fn check(&self, address: IpAddr, account: &HostName, now: Instant) -> Result<(), Locked> {
        let config = &self.config;
        let mut wait = [
            self.pairs.blocked(&(address, account.clone()), now, config),
            self.addresses.blocked(&address, now, config),
        ]
        .into_iter()
        .flatten()
        .max();
        if !self.known(address, account, now)
            && let Some(account_wait) = self.accounts.blocked(account, now, config)
        {
            wait = Some(wait.map_or(account_wait, |w| w.max(account_wait)));
        }
        match wait {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// A wrong password (or an account that does not exist: `exists` false, which counts
    /// against the address only, so made-up names cannot fill the account map).
    pub fn failed(&mut self, address: IpAddr, account: &HostName, exists: bool, now: Instant) {
        let config = self.config.clone();
        self.pairs.fail(
            (address, account.clone()),
            config.pair_free_failures,
            now,
            &config,
        );
        self.addresses
            .fail(address, config.address_free_failures, now, &config);
        if exists && !self.known(address, account, now) {
            self.accounts
                .fail(account.clone(), config.account_free_failures, now, &config);
        }
    }

    /// A login that worked: its address and account start over, and the address is known to the
    /// account from now on.
    pub fn succeeded(&mut self, address: IpAddr, account: &HostName, now: Instant) {
        self.pairs.clear(&(address, account.clone()));
        let key = (address, account.clone());
        if !self.known.contains_key(&key) && self.known.len() >= self.config.entries_max {
            let known_for = self.config.known_for;
            self.known
                .retain(|_, at| now.saturating_duration_since(*at) < known_for);
            if self.known.len() >= self.config.entries_max
                && let Some(stalest) = self
                    .known
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
            {
                self.known.remove(&stalest);
            }
        }
        self.known.insert(key, now);
    }

    /// Entries held, for tests and metrics: (pairs, addresses, accounts, known).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.pairs.len(),
            self.addresses.len(),
            self.accounts.len(),
            self.known.len(),
        )
    }
}

#[cfg(test)]
mod tests;
