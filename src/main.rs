//! The `bridgemesh` command: thin subcommands over the crates.

use anyhow::Context as _;
use bridgemesh_turn::{IpNet, TurnConfig, TurnServer};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "bridgemesh",
    version,
    about = "Self-hosted multi-region video conferencing mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Control node and bridge in one process on 127.0.0.1, zero configuration.
    Up {
        /// Port of the web client and control API.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        /// Port of the bridge's signaling WebSocket.
        #[arg(long, default_value_t = 8081)]
        bridge_http_port: u16,
        /// The bridge's single UDP media port.
        #[arg(long, default_value_t = 10000)]
        media_port: u16,
        /// Port of the embedded TURN server, UDP and TCP.
        #[arg(long, default_value_t = 3478)]
        turn_port: u16,
        /// Run without the embedded TURN server (join responses then name none).
        #[arg(long)]
        no_turn: bool,
    },
    /// A TURN server alone (e.g. on 443 on a host of its own), sharing the cluster's REST secret.
    Turn(TurnArgs),
}

#[derive(Args)]
struct TurnArgs {
    /// TURN over UDP.
    #[arg(long, default_value = "0.0.0.0:3478")]
    udp_listen: SocketAddr,
    /// TURN over TCP.
    #[arg(long, default_value = "0.0.0.0:3478")]
    tcp_listen: SocketAddr,
    #[arg(long)]
    no_udp: bool,
    #[arg(long)]
    no_tcp: bool,
    /// TURN over TLS (`turns:`), e.g. 0.0.0.0:443; needs --tls-cert and --tls-key.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// The address relays bind to and advertise; peers and clients must reach it.
    #[arg(long)]
    relay_ip: IpAddr,
    /// Relay ports, `min-max`.
    #[arg(long, default_value = "49152-65535")]
    relay_ports: String,
    #[arg(long, default_value = "bridgemesh")]
    realm: String,
    /// The REST shared secret (prefer the environment variable or --secret-file: command lines are visible to other users).
    #[arg(long, env = "BRIDGEMESH_TURN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// File whose content (trailing newline removed) is the REST shared secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Lifetime of credentials this node issues (the server itself reads the expiry in each username).
    #[arg(long, default_value_t = 86_400)]
    credential_ttl_s: u64,
    #[arg(long, default_value_t = 10)]
    allocations_per_user_max: usize,
    #[arg(long, default_value_t = 10_000)]
    allocations_max: usize,
    /// Relay bandwidth per allocation, both directions together, in kbit/s.
    #[arg(long, default_value_t = 5_000)]
    allocation_bandwidth_kbps: u64,
    /// Peers allowed despite the deny policy: `ip:port` (exactly that) or a network `10.0.0.0/8`. Repeatable.
    #[arg(long = "allow-peer")]
    allow_peers: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

impl TurnArgs {
    fn config(self) -> anyhow::Result<TurnConfig> {
        let secret = match (self.secret, self.secret_file) {
            (Some(secret), None) => secret.into_bytes(),
            (None, Some(path)) => std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .as_bytes()
                .to_vec(),
            (Some(_), Some(_)) => {
                anyhow::bail!("give the secret once: --secret (or its variable) or --secret-file")
            }
            (None, None) => {
                anyhow::bail!("a shared secret is needed: BRIDGEMESH_TURN_SECRET, --secret or --secret-file")
            }
        };
        let (min, max) = self
            .relay_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .context("--relay-ports is `min-max`, e.g. 49152-65535")?;
        let mut allow_peer_addrs = Vec::new();
        let mut allow_peer_nets = Vec::new();
        for peer in self.allow_peers {
            match peer.parse::<SocketAddr>() {
                Ok(addr) => allow_peer_addrs.push(addr),
                Err(_) => allow_peer_nets.push(peer.parse::<IpNet>()?),
            }
        }
        let config = TurnConfig {
            enabled: true,
            udp_listen: (!self.no_udp).then_some(self.udp_listen),
            tcp_listen: (!self.no_tcp).then_some(self.tcp_listen),
            tls_listen: self.tls_listen,
            tls_cert_path: self.tls_cert,
            tls_key_path: self.tls_key,
            relay_ip: self.relay_ip,
            relay_port_min: min,
            relay_port_max: max,
            realm: self.realm,
            secret,
            credential_ttl_s: self.credential_ttl_s,
            allocations_max: self.allocations_max,
            allocations_per_user_max: self.allocations_per_user_max,
            allocation_bandwidth_bytes_per_s: self.allocation_bandwidth_kbps * 1000 / 8,
            allow_peer_addrs,
            allow_peer_nets,
            ..TurnConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match Cli::parse().command {
        Commands::Up {
            http_port,
            bridge_http_port,
            media_port,
            turn_port,
            no_turn,
        } => {
            let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
                http_port,
                bridge_http_port,
                media_port,
                turn: !no_turn,
                turn_port,
            })
            .await?;
            println!(
                "bridgemesh is up: open {}/ in a browser (two tabs on one room see each other)",
                running.control_url
            );
            println!("bridge signaling and metrics: {}/metrics", running.bridge_url);
            if let Some(directory) = &running.turn_directory {
                for endpoint in &directory.endpoints {
                    println!(
                        "TURN: {} (metrics: {}/metrics/turn)",
                        endpoint.urls.join(" "),
                        running.bridge_url
                    );
                }
            }
            println!("press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            println!("stopping: telling participants goodbye");
            running.stop().await;
        }
        Commands::Turn(args) => {
            let metrics_listen = args.metrics_listen;
            let server = std::sync::Arc::new(TurnServer::start(args.config()?).await?);
            let addrs = [server.udp_addr(), server.tcp_addr(), server.tls_addr()];
            // Scripts (and the benchmark) read the bound addresses from this line.
            println!(
                "bridgemesh turn is up: udp={} tcp={} tls={}",
                show(addrs[0]),
                show(addrs[1]),
                show(addrs[2])
            );
            if let Some(addr) = metrics_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for metrics"))?;
                let turn = server.clone();
                let router = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let turn = turn.clone();
                        async move { turn.stats().render_prometheus() }
                    }),
                );
                tokio::spawn(async move { axum::serve(listener, router).await });
            }
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
        }
    }
    Ok(())
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}
