use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn name(text: &str) -> HostName {
    HostName::new(text).unwrap()
}

const S: Duration = Duration::from_secs(1);

#[test]
fn a_few_mistakes_cost_nothing_then_delays_double_up_to_the_cap() {
    let config = LimiterConfig::default();
    let mut limiter = LoginLimiter::new(config.clone());
    let t0 = Instant::now();
    let ada = name("ada");
    for _ in 0..3 {
        assert_eq!(limiter.check(ip(1), &ada, t0), Ok(()));
        limiter.failed(ip(1), &ada, true, t0);
    }
    assert_eq!(limiter.check(ip(1), &ada, t0), Ok(()), "three free failures");
    limiter.failed(ip(1), &ada, true, t0);
    assert_eq!(limiter.check(ip(1), &ada, t0), Err(Locked { retry_after: S }));
    // Each further failure (once allowed) doubles the delay, up to delay_max.
    let mut now = t0;
    let mut expected = S;
    for _ in 0..12 {
        now += expected;
        assert_eq!(limiter.check(ip(1), &ada, now), Ok(()));
        limiter.failed(ip(1), &ada, true, now);
        expected = (expected * 2).min(config.delay_max);
        assert_eq!(
            limiter.check(ip(1), &ada, now),
            Err(Locked {
                retry_after: expected
            })
        );
    }
    assert_eq!(
        expected, config.delay_max,
        "capped: never locked longer than this"
    );
    // Another address trying another account is not delayed.
    assert!(limiter.check(ip(9), &name("bob"), now).is_ok());
}

#[test]
fn a_login_from_a_known_address_is_never_locked_by_an_attack_on_the_account() {
    let mut limiter = LoginLimiter::new(LimiterConfig::default());
    let t0 = Instant::now();
    let ada = name("ada");
    limiter.succeeded(ip(1), &ada, t0);
    // Many attackers, each with a few guesses: the account counter locks new addresses.
    let mut now = t0 + S;
    for attacker in 10..40 {
        for _ in 0..2 {
            if limiter.check(ip(attacker), &ada, now).is_ok() {
                limiter.failed(ip(attacker), &ada, true, now);
            }
        }
        now += Duration::from_millis(10);
    }
    assert!(limiter.check(ip(200), &ada, now).is_err(), "a new address waits");
    assert_eq!(limiter.check(ip(1), &ada, now), Ok(()), "home still logs in");
    // And the lock on new addresses lasts at most delay_max.
    let later = now + LimiterConfig::default().delay_max;
    assert_eq!(limiter.check(ip(200), &ada, later), Ok(()));
}

#[test]
fn made_up_account_names_count_against_the_address_only() {
    let mut limiter = LoginLimiter::new(LimiterConfig::default());
    let now = Instant::now();
    for i in 0..20 {
        limiter.failed(ip(1), &name(&format!("nobody{i}")), false, now);
    }
    assert_eq!(
        limiter.sizes().2,
        0,
        "no account entries for names that do not exist"
    );
    assert!(limiter.check(ip(1), &name("nobody99"), now).is_ok(), "20 free");
    limiter.failed(ip(1), &name("nobody99"), false, now);
    assert!(
        limiter.check(ip(1), &name("someone"), now).is_err(),
        "spraying is bounded"
    );
    assert!(limiter.check(ip(2), &name("someone"), now).is_ok());
}

#[test]
fn a_success_clears_the_pair_and_quiet_counters_are_forgotten() {
    let config = LimiterConfig::default();
    let mut limiter = LoginLimiter::new(config.clone());
    let t0 = Instant::now();
    let ada = name("ada");
    for _ in 0..4 {
        limiter.failed(ip(1), &ada, true, t0);
    }
    assert!(limiter.check(ip(1), &ada, t0).is_err());
    limiter.succeeded(ip(1), &ada, t0 + S);
    assert!(limiter.check(ip(1), &ada, t0 + S).is_ok());
    // Counts restart after forget_after without failures.
    let mut limiter = LoginLimiter::new(config.clone());
    for _ in 0..4 {
        limiter.failed(ip(1), &ada, true, t0);
    }
    let later = t0 + config.forget_after;
    limiter.failed(ip(1), &ada, true, later);
    assert!(
        limiter.check(ip(1), &ada, later).is_ok(),
        "counted as the first failure again"
    );
}

#[test]
fn every_map_stays_within_its_bound() {
    let config = LimiterConfig {
        entries_max: 50,
        ..LimiterConfig::default()
    };
    let mut limiter = LoginLimiter::new(config);
    let now = Instant::now();
    for i in 0..1_000u32 {
        let address = IpAddr::from(i.to_be_bytes());
        let account = name(&format!("user{}", i % 200));
        limiter.failed(address, &account, true, now);
        limiter.succeeded(address, &name(&format!("other{i}")), now);
    }
    let (pairs, addresses, accounts, known) = limiter.sizes();
    assert!(pairs <= 50 && addresses <= 50 && accounts <= 50 && known <= 50);
}
