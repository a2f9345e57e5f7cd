//! The Grafana dashboard shipped in packaging/grafana/ queries only metrics that the nodes export
//! (a renamed metric would leave a panel silently empty), and control counts joins by outcome
//! with their duration.

use bridgemesh_tests::harness::{self, join_raw, post_join_raw};
use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../../packaging/grafana/bridgemesh-dashboard.json");

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.text().await.unwrap()
}

/// The metric names a Prometheus text exposition declares (`# TYPE name kind`), with the
/// series names a histogram adds.
fn declared_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// Every `bridgemesh_…` name in the dashboard's queries.
fn queried_names(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    collect_exprs(dashboard, &mut exprs);
    assert!(exprs.len() > 10, "the dashboard has queries: {exprs:?}");
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("bridgemesh_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_an_exported_metric() {
    let running = harness::up().await;
    let room = harness::room("dashboard");
    join_raw(&running, &room, "alice").await;
    let (status, _) = post_join_raw(&running.control_url, "dashboard", "not json").await;
    assert_eq!(status, 400);
    // A reconnect without the participant's session is refused, and counted.
    let reconnect = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/rooms/dashboard/participants/nobody/reconnect",
            running.control_url
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reconnect.status().as_u16(), 401);

    let control = scrape(&format!("{}/metrics", running.control_url)).await;
    let mut exported = declared_names(&control);
    for path in ["/metrics", "/metrics/turn", "/metrics/control"] {
        exported.extend(declared_names(
            &scrape(&format!("{}{path}", running.bridge_url)).await,
        ));
    }

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let queried = queried_names(&dashboard);
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no node exports: {missing:?}\nexported: {exported:?}"
    );

    // The join and the refused join were counted, and the join's duration observed.
    assert!(
        control.contains("bridgemesh_control_joins_total{outcome=\"joined\"} 1"),
        "{control}"
    );
    assert!(
        control.contains("bridgemesh_control_joins_total{outcome=\"malformed_body\"} 1"),
        "{control}"
    );
    assert!(
        control.contains("bridgemesh_control_join_duration_seconds_count 2"),
        "{control}"
    );
    assert!(
        control.contains("bridgemesh_control_reconnects_total{outcome=\"unauthorized\"} 1"),
        "{control}"
    );
    assert!(
        control
            .lines()
            .any(|line| line == "bridgemesh_control_participants 1"),
        "{control}"
    );
    running.stop().await;
}
