use super::*;
use bridgemesh_proto::bridge_session::{BridgeStatus, BridgeToControl, ControlToBridge};

/// The cluster CA of this test process.
fn ca() -> &'static bridgemesh_pki::ClusterCa {
    static CA: std::sync::OnceLock<bridgemesh_pki::ClusterCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| bridgemesh_pki::ClusterCa::generate().unwrap())
}

fn identity(id: &str) -> Option<BridgeIdentity> {
    Some(ca().issue_bridge_cert(&BridgeId::new(id).unwrap()).unwrap())
}

fn valid() -> BridgeNodeConfig {
    BridgeNodeConfig {
        control: vec!["https://10.0.0.1:7701".into()],
        region: Some(RegionId::new("eu-west").unwrap()),
        bridge_key: vec![7; 32],
        public_host: Some("203.0.113.7".into()),
        cascade_identity: identity("eu-west-1"),
        ..BridgeNodeConfig::default()
    }
}

#[test]
fn a_file_and_flags_make_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bridge-key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            control = ["https://10.0.0.1:7701", "https://10.0.0.2:7701"]
            cert_dir = "/etc/bridgemesh/eu-west-1"
            region = "eu-west"
            location = {{ latitude = 50.11, longitude = 8.68 }}
            bridge_key_file = "{}"
            listen = "0.0.0.0:8081"
            public_host = "eu-west-1.example.org"
            advertise_ip = "203.0.113.7"
            capacity = 500
            turn_port = 3479
            "#,
            key.display()
        ),
    )
    .unwrap();
    let config = BridgeArgs {
        config: Some(file),
        control: vec!["https://10.0.0.3:7701".into()],
        id: Some(BridgeId::new("eu-west-1").unwrap()),
        media_port: Some(10001),
        no_turn: true,
        ..BridgeArgs::default()
    }
    .config()
    .unwrap();
    assert_eq!(
        config.control,
        ["https://10.0.0.3:7701"],
        "flags replace the file's list"
    );
    assert_eq!(
        config.cascade_cert_dir.as_deref(),
        Some(Path::new("/etc/bridgemesh/eu-west-1")),
        "cert_dir is the certificate directory's other name"
    );
    assert_eq!(config.bridge_id().unwrap().as_str(), "eu-west-1");
    assert_eq!(config.bridge_key, vec![0xab; 32]);
    assert_eq!(config.capacity, 500);
    assert_eq!(config.media_port, 10001);
    assert_eq!(config.turn_port, 3479);
    assert!(!config.turn);
    assert_eq!(config.location.unwrap().latitude, 50.11);
    assert_eq!(config.public_host().unwrap(), "eu-west-1.example.org");
    assert_eq!(config.advertise_ip().unwrap().to_string(), "203.0.113.7");
    assert!(
        !format!("{config:?}").contains("171"),
        "the key is not in Debug output"
    );
}

#[test]
fn mistakes_are_named() {
    assert!(valid().validate().is_ok());
    assert!(
        toml::from_str::<BridgeNodeConfig>("controls = []").is_err(),
        "unknown keys"
    );
    assert!(
        toml::from_str::<BridgeNodeConfig>("bridge_key = \"x\"").is_err(),
        "the key itself never comes from the file"
    );
    let cases: Vec<(BridgeNodeConfig, &str)> = vec![
        (
            BridgeNodeConfig {
                control: vec![],
                ..valid()
            },
            "no control node",
        ),
        (
            BridgeNodeConfig {
                control: vec!["http://c1:7701".into()],
                ..valid()
            },
            "mutual TLS",
        ),
        (
            BridgeNodeConfig {
                cascade_identity: None,
                cascade_cert_dir: None,
                ..valid()
            },
            "cluster certificate is missing",
        ),
        (
            BridgeNodeConfig {
                region: None,
                ..valid()
            },
            "region",
        ),
        (
            BridgeNodeConfig {
                bridge_key: vec![1; 31],
                ..valid()
            },
            "bridge key",
        ),
        (
            BridgeNodeConfig {
                public_host: None,
                ..valid()
            },
            "no address to advertise",
        ),
        (
            BridgeNodeConfig {
                public_host: Some("eu-1.example.org".into()),
                ..valid()
            },
            "no address to advertise",
        ),
        (
            BridgeNodeConfig {
                advertise_ip: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ..valid()
            },
            "0.0.0.0",
        ),
        (
            BridgeNodeConfig {
                public_host: Some("bad host/".into()),
                advertise_ip: Some("203.0.113.7".parse().unwrap()),
                ..valid()
            },
            "public host",
        ),
        (
            BridgeNodeConfig {
                advertise_ip: Some("239.1.2.3".parse().unwrap()),
                ..valid()
            },
            "not a unicast address",
        ),
        (
            BridgeNodeConfig {
                advertise_ip: Some("2001:db8::7".parse().unwrap()),
                ..valid()
            },
            "different families",
        ),
        (
            BridgeNodeConfig {
                listen: "[::1]:8081".parse().unwrap(),
                ..valid()
            },
            "different families",
        ),
        (
            BridgeNodeConfig {
                advertise_ipv6: Some("2001:db8::7".parse().unwrap()),
                ..valid()
            },
            "--advertise-ipv6",
        ),
        (
            BridgeNodeConfig {
                listen: "[::]:8081".parse().unwrap(),
                advertise_ipv6: Some("::ffff:203.0.113.8".parse().unwrap()),
                ..valid()
            },
            "--advertise-ipv6",
        ),
        (
            BridgeNodeConfig {
                cascade_advertise: Some("0.0.0.0:7710".parse().unwrap()),
                ..valid()
            },
            "cascade address",
        ),
        (
            BridgeNodeConfig {
                max_per_room: 2000,
                ..valid()
            },
            "max_per_room",
        ),
        (
            BridgeNodeConfig {
                turn_port: 10000,
                ..valid()
            },
            "all UDP",
        ),
        (
            BridgeNodeConfig {
                cascade_port: 10000,
                cascade_cert_dir: Some("/etc/bridgemesh/cascade".into()),
                ..valid()
            },
            "all UDP",
        ),
        (
            BridgeNodeConfig {
                cpu_ceiling: 0.0,
                ..valid()
            },
            "CPU ceiling",
        ),
    ];
    for (config, expected) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "{err:?} does not name {expected:?}");
    }
    assert!(parse_location("50.1,8.7").is_ok());
    assert!(parse_location("-33.9, 151.2").is_ok());
    for bad in ["50.1", "91,0", "a,b", "0,181"] {
        assert!(parse_location(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_listen_address_the_host_does_not_have_is_refused_with_the_way_out() {
    // 198.18.0.77 stands for a NAT's public address; nothing is sent to it.
    let err = match start(BridgeNodeConfig {
        listen: "198.18.0.77:0".parse().unwrap(),
        // The id its certificate names, so that the address is what start refuses.
        id: Some(BridgeId::new("eu-west-1").unwrap()),
        media_port: 0,
        turn_port: 0,
        ..valid()
    })
    .await
    {
        Ok(_) => panic!("a bridge must not start on an address the host does not have"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("not an address of this host") && err.contains("--advertise-ip"),
        "{err}"
    );
    let v6 = BridgeNodeConfig {
        listen: "[::]:8081".parse().unwrap(),
        advertise_ip: Some("2001:db8::7".parse().unwrap()),
        ..valid()
    };
    assert!(v6.validate().is_ok(), "an IPv6 bridge");
    let dual_stack = BridgeNodeConfig {
        listen: "[::]:8081".parse().unwrap(),
        advertise_ipv6: Some("2001:db8::7".parse().unwrap()),
        ..valid()
    };
    assert!(dual_stack.validate().is_ok(), "both families on one port");
}

#[test]
fn the_default_id_is_the_region_and_the_host_name_made_valid() {
    let region = RegionId::new("eu-west").unwrap();
    assert_eq!(
        default_bridge_id(&region, "Bridge-07\n").as_str(),
        "eu-west-bridge-07"
    );
    assert_eq!(
        default_bridge_id(&region, "ip-10-0-0-1.ec2.internal").as_str(),
        "eu-west-ip-10-0-0-1.ec2.internal"
    );
    assert_eq!(
        default_bridge_id(&region, "Ünïcode Host!").as_str(),
        "eu-west-n-code-host"
    );
    assert_eq!(default_bridge_id(&region, "...").as_str(), "eu-west-bridge");
    let long = default_bridge_id(&region, &"h".repeat(200));
    assert_eq!(long.as_str().len(), BridgeId::MAX_LEN);
    let long_region = RegionId::new("r".repeat(RegionId::MAX_LEN)).unwrap();
    assert!(default_bridge_id(&long_region, "host").as_str().len() <= BridgeId::MAX_LEN);
    // The host is known, whatever it is, and gives a valid id.
    assert!(BridgeId::new(default_bridge_id(&region, &hostname()).as_str()).is_ok());
}

/// A stand-in for control's end of the bridge session: registers every bridge (heartbeats
/// every 100 ms) and reports each message it receives.
async fn fake_control() -> (String, tokio::sync::mpsc::UnboundedReceiver<BridgeToControl>) {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        bridgemesh_proto::bridge_session::BRIDGE_SESSION_PATH,
        axum::routing::get(move |ws: WebSocketUpgrade| {
            let seen_tx = seen_tx.clone();
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    while let Some(Ok(frame)) = socket.recv().await {
                        let Message::Text(text) = frame else { continue };
                        let message: BridgeToControl = serde_json::from_str(&text).unwrap();
                        if matches!(message, BridgeToControl::Register { .. }) {
                            let answer = ControlToBridge::Registered {
                                heartbeat_interval_ms: 100,
                                status: BridgeStatus::Up,
                            };
                            let text = serde_json::to_string(&answer).unwrap();
                            let _ = socket.send(Message::Text(text.into())).await;
                        }
                        let _ = seen_tx.send(message);
                    }
                })
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let control = ca().issue_control_cert(1).unwrap();
    let listener = bridgemesh_pki::ClusterListener::new(
        listener,
        bridgemesh_pki::tls::server_config(&control).unwrap(),
        control.name().clone(),
    )
    .unwrap();
    let service = router.into_make_service_with_connect_info::<bridgemesh_pki::ClusterPeer>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_node_serves_registers_what_it_runs_and_drains_when_stopped() {
    let (control, mut seen) = fake_control().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_token = dir.path().join("metrics-token");
    std::fs::write(&metrics_token, "a-scraper-token-0123\n").unwrap();
    let running = start(BridgeNodeConfig {
        metrics_token_file: Some(metrics_token),
        control: vec![control],
        region: Some(RegionId::new("eu-west").unwrap()),
        id: Some(BridgeId::new("eu-west-1").unwrap()),
        bridge_key: vec![7; 32],
        listen: "127.0.0.1:0".parse().unwrap(),
        media_port: 0,
        turn_port: 0,
        cascade_port: 0,
        cascade_identity: identity("eu-west-1"),
        shards: Some(1),
        ..BridgeNodeConfig::default()
    })
    .await
    .unwrap();
    let wait = std::time::Duration::from_secs(20);
    let Some(BridgeToControl::Register {
        bridge: registration, ..
    }) = tokio::time::timeout(wait, seen.recv()).await.unwrap()
    else {
        panic!("the first message was not register");
    };
    assert_eq!(registration.id.as_str(), "eu-west-1");
    assert_eq!(registration.region.as_str(), "eu-west");
    assert_eq!(
        registration.signaling_url,
        format!("ws://127.0.0.1:{}/bridge/v1/signal", running.http_addr.port())
    );
    assert_eq!(
        registration.media_addresses,
        [running.bridge.media_addr().to_string()]
    );
    let turn = running.turn.as_ref().expect("TURN runs by default");
    let turn_udp = turn.udp_addr().unwrap();
    assert!(
        registration
            .turn_urls
            .contains(&format!("turn:127.0.0.1:{}?transport=udp", turn_udp.port())),
        "{:?}",
        registration.turn_urls
    );
    let mut status = running.status();
    tokio::time::timeout(
        wait,
        status.wait_for(|s| matches!(s, SessionStatus::Registered { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    // Signaling, health and metrics on the listen address.
    let base = format!("http://{}", running.http_addr);
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert!(health.status().is_success());
    for path in ["/metrics", "/metrics/control"] {
        let refused = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(refused.status(), 401, "{path} without the metrics token");
    }
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics/control"))
        .bearer_auth("a-scraper-token-0123")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bridgemesh_bridge_control_registered{bridge=\"eu-west-1\"} 1"),
        "{metrics}"
    );
    // Stopping drains first (no participants: at once), then closes the session.
    running.stop().await.unwrap();
    loop {
        let message = tokio::time::timeout(wait, seen.recv())
            .await
            .expect("drain in time");
        if message == Some(BridgeToControl::Drain { grace_ms: 0 }) {
            break;
        }
    }
    // A new client: a pooled connection would say nothing about the listener.
    let client = reqwest::Client::new();
    assert!(
        client.get(format!("{base}/health")).send().await.is_err(),
        "the HTTP server stopped"
    );
}

#[test]
fn the_bridge_key_is_the_key_control_signs_that_bridges_tickets_with() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\r\n").unwrap();
    let certs = dir.path().join("control-1");
    bridgemesh_pki::ClusterCa::generate()
        .unwrap()
        .issue_control_cert(1)
        .unwrap()
        .save_control(&certs)
        .unwrap();
    // Control reads the same file this way (control_node::plan).
    let plan = crate::control_node::plan(
        crate::control_node::ControlFile {
            node_id: Some(1),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            cert_dir: Some(certs),
            data_dir: Some(dir.path().into()),
            cluster_secret_file: Some(secret.clone()),
            ..Default::default()
        },
        crate::control_node::ControlOverrides::default(),
    )
    .unwrap();
    let (b1, b2) = (BridgeId::new("b1").unwrap(), BridgeId::new("b2").unwrap());
    let expected = hex::encode(bridgemesh_control::node::bridge_key(
        &plan.service.cluster_secret,
        &b1,
    ));
    assert_eq!(bridge_key_hex(&secret, &b1).unwrap(), expected);
    assert_ne!(
        bridge_key_hex(&secret, &b2).unwrap(),
        expected,
        "each bridge has a key of its own"
    );
    std::fs::write(&secret, "short\n").unwrap();
    assert!(bridge_key_hex(&secret, &b1).is_err());
}
