//! When to ask the ACME server for a certificate: a sans-IO decision from the certificate's
//! validity, the last failures and `now`. The driver (`acme::run_renewal`) sleeps until the
//! instant it is given, orders, and reports the outcome back.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Renew this long before the certificate expires, capped at a third of its lifetime (Let's
    /// Encrypt's advice), so a window longer than the lifetime still leaves the certificate in
    /// use for two thirds of it instead of renewing in a loop.
    pub renew_before: Duration,
    /// Wait after the first failed order; doubled after each further failure. Also the least
    /// time between two orders, so a certificate that is due the moment it is issued (a CA
    /// issuing short lifetimes, a clock off) cannot make a loop of orders.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_before: Duration::from_secs(30 * 24 * 3600),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 3600),
        }
    }
}

/// The validity of the certificate in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// When this certificate should be replaced under `policy`.
    pub fn renew_at(&self, policy: &RenewalPolicy) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_after - policy.renew_before.min(lifetime / 3)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Order a certificate now.
    Order,
    /// Nothing to do before this instant; ask again then.
    WaitUntil(SystemTime),
}

/// The renewal state: the certificate in use and the failures since the last success.
#[derive(Debug, Clone)]
pub struct Renewal {
    policy: RenewalPolicy,
    current: Option<Validity>,
    failures: u32,
    retry_at: Option<SystemTime>,
    last_success: Option<SystemTime>,
}

impl Renewal {
    pub fn new(policy: RenewalPolicy, current: Option<Validity>) -> Self {
        Self {
            policy,
            current,
            failures: 0,
            retry_at: None,
            last_success: None,
        }
    }

    pub fn decide(&self, now: SystemTime) -> Decision {
        let due = match (self.retry_at, self.current) {
            // After a failure the backoff rules, even if the certificate is already due.
            (Some(retry_at), _) => retry_at,
            (None, Some(validity)) => validity.renew_at(&self.policy),
            (None, None) => return Decision::Order,
        };
        let due = match self.last_success {
            Some(at) => due.max(at + self.policy.retry_min),
            None => due,
        };
        if due <= now {
            Decision::Order
        } else {
            Decision::WaitUntil(due)
        }
    }

    /// A new certificate is in use since `now`.
    pub fn succeeded(&mut self, validity: Validity, now: SystemTime) {
        self.current = Some(validity);
        self.last_success = Some(now);
        self.failures = 0;
        self.retry_at = None;
    }

    /// An order failed at `now`; returns when the next one is due.
    pub fn failed(&mut self, now: SystemTime) -> SystemTime {
        let shift = self.failures.min(20);
        let delay = self
            .policy
            .retry_min
            .saturating_mul(1u32 << shift)
            .min(self.policy.retry_max);
        self.failures = self.failures.saturating_add(1);
        let retry_at = now + delay;
        self.retry_at = Some(retry_at);
        retry_at
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn validity(from: SystemTime, lifetime: Duration) -> Validity {
        Validity {
            not_before: from,
            not_after: from + lifetime,
        }
    }

    #[test]
    fn no_certificate_orders_at_once() {
        let renewal = Renewal::new(RenewalPolicy::default(), None);
        assert_eq!(renewal.decide(at(0)), Decision::Order);
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_expiry() {
        let start = at(1_000_000);
        let renewal = Renewal::new(RenewalPolicy::default(), Some(validity(start, 90 * DAY)));
        let due = start + 60 * DAY;
        assert_eq!(renewal.decide(start), Decision::WaitUntil(due));
        assert_eq!(
            renewal.decide(due - Duration::from_secs(1)),
            Decision::WaitUntil(due)
        );
        assert_eq!(renewal.decide(due), Decision::Order);
    }

    #[test]
    fn a_window_longer_than_the_lifetime_renews_at_two_thirds() {
        let start = at(1_000_000);
        let renewal = Renewal::new(
            RenewalPolicy::default(),
            Some(validity(start, Duration::from_secs(30))),
        );
        assert_eq!(
            renewal.decide(start),
            Decision::WaitUntil(start + Duration::from_secs(20))
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_and_reset_on_success() {
        let policy = RenewalPolicy {
            retry_min: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            ..RenewalPolicy::default()
        };
        let mut renewal = Renewal::new(policy, None);
        let now = at(100);
        let delays: Vec<u64> = (0..5)
            .map(|_| renewal.failed(now).duration_since(now).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
        assert_eq!(renewal.decide(now), Decision::WaitUntil(at(160)));
        assert_eq!(renewal.decide(at(160)), Decision::Order);
        let fresh = validity(at(200), 90 * DAY);
        renewal.succeeded(fresh, at(200));
        assert_eq!(renewal.failures(), 0);
        assert_eq!(
            renewal.decide(at(200)),
            Decision::WaitUntil(fresh.renew_at(&policy))
        );
        // The backoff restarts from the minimum.
        assert_eq!(renewal.failed(at(300)), at(310));
    }

    #[test]
    fn a_certificate_due_when_issued_is_not_ordered_again_at_once() {
        let mut renewal = Renewal::new(RenewalPolicy::default(), None);
        let now = at(1_000);
        // Issued backdated by a day, valid one more second: due at once by its dates.
        renewal.succeeded(validity(now - DAY, DAY + Duration::from_secs(1)), now);
        assert_eq!(
            renewal.decide(now),
            Decision::WaitUntil(now + RenewalPolicy::default().retry_min)
        );
    }

    #[test]
    fn a_due_certificate_waits_for_the_backoff_after_a_failure() {
        let start = at(0);
        let mut renewal = Renewal::new(RenewalPolicy::default(), Some(validity(start, 90 * DAY)));
        let now = start + 80 * DAY;
        assert_eq!(renewal.decide(now), Decision::Order);
        let retry = renewal.failed(now);
        assert_eq!(renewal.decide(now), Decision::WaitUntil(retry));
    }
}
