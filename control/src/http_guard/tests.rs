use super::*;

fn limits(per_address: usize, total: usize) -> HttpLimits {
    HttpLimits {
        connections_max: total,
        connections_per_address_max: per_address,
        loopback_exempt_from_per_address_max: false,
        ..HttpLimits::default()
    }
}

#[test]
fn one_address_is_capped_and_others_still_get_in() {
    let table = ConnectionTable::new(limits(2, 10));
    let flooder: IpAddr = "203.0.113.7".parse().unwrap();
    let other: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(table.admit(flooder), Admission::Admitted);
    assert_eq!(table.admit(flooder), Admission::Admitted);
    assert_eq!(table.admit(flooder), Admission::RefusedPerAddressMax);
    assert_eq!(table.admit(other), Admission::Admitted);
    table.release(flooder);
    assert_eq!(table.admit(flooder), Admission::Admitted);
    assert_eq!(table.open(), 3);
}

#[test]
fn an_ipv6_slash_64_is_one_address_and_mapped_ipv4_is_ipv4() {
    let table = ConnectionTable::new(limits(2, 10));
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        assert_eq!(table.admit(host.parse().unwrap()), Admission::Admitted);
    }
    assert_eq!(
        table.admit("2001:db8:1:2:ffff::9".parse().unwrap()),
        Admission::RefusedPerAddressMax
    );
    assert_eq!(
        table.admit("2001:db8:1:3::1".parse().unwrap()),
        Admission::Admitted
    );
    assert_eq!(
        address_group("::ffff:192.0.2.1".parse().unwrap()),
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn the_global_cap_holds_and_loopback_is_exempt_from_the_per_address_one_by_default() {
    let table = ConnectionTable::new(HttpLimits {
        connections_max: 3,
        connections_per_address_max: 1,
        ..HttpLimits::default()
    });
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(table.admit(local), Admission::Admitted);
    }
    assert_eq!(table.admit(local), Admission::RefusedConnectionsMax);
}

#[test]
fn limits_are_validated() {
    assert_eq!(HttpLimits::default().validate(), Ok(()));
    assert_eq!(limits(11, 10).validate(), Err(HttpLimitsError::Caps));
    let fast = HttpLimits {
        header_read_timeout: Duration::from_millis(1),
        ..HttpLimits::default()
    };
    assert_eq!(fast.validate(), Err(HttpLimitsError::Timeout));
}

#[test]
fn refusals_render_as_prometheus_series() {
    let stats = HttpGuardStats::default();
    stats.refused_per_address_max.fetch_add(3, Ordering::Relaxed);
    let text = stats.render_prometheus("bridgemesh_control", "");
    assert!(
        text.lines()
            .any(|l| l == "bridgemesh_control_http_connections_refused_total{cap=\"per_address_max\"} 3"),
        "{text}"
    );
    let text = stats.render_prometheus("bridgemesh_bridge", "bridge=\"b1\"");
    assert!(
        text.lines()
            .any(|l| l == "bridgemesh_bridge_http_timeouts_total{bridge=\"b1\",phase=\"header\"} 0"),
        "{text}"
    );
}
