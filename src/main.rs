//! The `bridgemesh` command: thin subcommands over the crates.

mod ca_cli;
mod geoip_cli;
mod load_replay_cli;
mod sim_cli;
mod up_cli;

use anyhow::Context as _;
use bridgemesh::load::{FaultPlan, LoadConfig, LocalClusterConfig};
use bridgemesh_turn::{Cidr, TurnConfig, TurnServer};
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
        /// Bridges to start; with two or more, `bridgemesh admin bridges drain` or stopping one
        /// shows participants moving. Further bridges take the ports after the first one's.
        #[arg(long, default_value_t = 1)]
        bridges: usize,
        /// UDP port of the first bridge's cascade links (QUIC) to the others.
        #[arg(long, default_value_t = 7710)]
        cascade_port: u16,
        /// Participants of one room a bridge takes; with --bridges 2 or more, a room past it
        /// spans bridges, which cascade its media to each other.
        #[arg(long, default_value_t = 100)]
        max_per_room: u32,
        /// Shard threads per bridge, each with its own socket on the media port (default: one
        /// per core, at most 8).
        #[arg(long)]
        shards: Option<usize>,
        /// Who may join without a host login: open (anyone; the first one moderates),
        /// after_moderator (guests wait for a logged-in host) or none (hosts and invitees only).
        /// Add hosts with `bridgemesh users add`.
        #[arg(long, value_parser = bridgemesh::users_cli::parse_guest_policy)]
        guest_policy: Option<bridgemesh_control::auth::GuestPolicy>,
        #[command(flatten)]
        public: up_cli::PublicArgs,
    },
    /// One node of a replicated control cluster (see docs/operator-guide.md for the file).
    Control(ControlArgs),
    /// The admin API: cluster membership, rooms, bridges.
    Admin(AdminArgs),
    /// Host accounts: who may open rooms (with a guest policy; docs/hosts.md).
    Users(bridgemesh::users_cli::UsersArgs),
    /// Mint a join token (Jitsi's JWT format) for a participant; prints it on stdout.
    // Boxed: its many flags would otherwise make every `Commands` value that large.
    Token(Box<TokenArgs>),
    /// A TURN server alone (e.g. on 443 on a host of its own), sharing the cluster's REST secret.
    Turn(TurnArgs),
    /// GeoIP databases: write the loopback test database, look an address up.
    Geoip(geoip_cli::GeoipArgs),
    /// The cluster CA for bridge-to-bridge links: create it, issue bridge certificates.
    Ca(ca_cli::CaArgs),
    /// The network simulator: a deployment, its users and its faults, on virtual time.
    Sim(sim_cli::SimArgs),
    /// One bridge (SFU) with its TURN server, registered with a control cluster.
    Bridge(Box<bridgemesh::bridge_node::BridgeArgs>),
    /// Load-test a running cluster: synthetic participants (real WebRTC) join rooms, publish and
    /// verify media, then a report (and with --json, a file) says what they felt and what it
    /// cost the bridges. Exits with 2 when the run failed (a failed join, loss past the limit,
    /// a missing stream, a corrupt packet, a participant left disconnected).
    Load(Box<LoadArgs>),
    /// The bridge's CPU per forwarded packet at high packet rates: starts `up` (this build or
    /// --bridge-binary) as its own process and loads it with cheap participants (a real join,
    /// ICE and DTLS; SRTP sealed and sampled by the bridge's own code). docs/benchmarks.md.
    LoadReplay(Box<load_replay_cli::LoadReplayArgs>),
    /// Print a bridge's own key (hex), derived from the cluster secret and the bridge's id: it
    /// checks that bridge's tickets and TURN credentials, and no other bridge's.
    BridgeKey {
        /// The control cluster's secret file.
        #[arg(long)]
        cluster_secret_file: PathBuf,
        /// The bridge's id, as it registers (and as its certificate names it).
        #[arg(long, value_parser = |s: &str| bridgemesh_proto::BridgeId::new(s).map_err(|e| e.to_string()))]
        bridge_id: bridgemesh_proto::BridgeId,
    },
}

#[derive(clap::Args)]
struct ControlArgs {
    /// TOML configuration; flags below override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// This node's id: a positive integer, unique and never reused in the cluster.
    #[arg(long)]
    id: Option<u64>,
    /// Where to serve the API, the web client, /health and /metrics.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where to serve Raft peers and bridge sessions, mutual TLS only (default: --listen's IP,
    /// port 7701).
    #[arg(long)]
    cluster_listen: Option<SocketAddr>,
    /// `host:port` the other control nodes and the bridges reach --cluster-listen at.
    #[arg(long)]
    advertise: Option<String>,
    /// Directory with this node's certificate from the cluster CA (`bridgemesh ca
    /// issue-control --node-id ID --out-dir DIR`).
    #[arg(long)]
    cert_dir: Option<std::path::PathBuf>,
    /// File with a token /metrics then demands (`Authorization: Bearer <token>`).
    #[arg(long)]
    metrics_token_file: Option<std::path::PathBuf>,
    /// Raft log, vote and snapshots.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// File with the secret shared by every control node and bridge (at least 32 bytes).
    #[arg(long)]
    cluster_secret_file: Option<std::path::PathBuf>,
    /// File with the admin API's bearer token; without one the admin API is off.
    #[arg(long)]
    admin_token_file: Option<std::path::PathBuf>,
    /// An initial voter, `ID=HOST:PORT` (repeat for each, this node included). Leave out on a node
    /// that will be added to a running cluster with `bridgemesh admin cluster add`.
    #[arg(long = "peer", value_parser = bridgemesh::control_node::parse_peer)]
    peers: Vec<(u64, String)>,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Any control node.
    #[arg(long, env = "BRIDGEMESH_CONTROL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token (prefer the environment variable or --token-file).
    #[arg(long, env = "BRIDGEMESH_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Control cluster membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Rooms and their participants per bridge.
    Rooms,
    /// Who is in a room (id, name, role, bridge, joined at, microphone, camera, screen, hand);
    /// `kick ID` removes one, `mute ID` asks one to mute.
    Participants {
        room: String,
        #[command(subcommand)]
        command: Option<ParticipantsCommand>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bridges: list them (the default) with region, status, load and participants; drain one
    /// before maintenance; end a drain; forget a decommissioned one.
    Bridges {
        #[command(subcommand)]
        command: Option<BridgesCommand>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ParticipantsCommand {
    List,
    /// Removes the participant from the meeting; its bridge disconnects it and refuses it again.
    Kick {
        id: String,
    },
    /// Asks the participant to mute its microphone (its client mutes itself).
    Mute {
        id: String,
    },
}

#[derive(Subcommand)]
enum BridgesCommand {
    List,
    /// No new participants; the bridge's participants move to other bridges after the grace period.
    Drain {
        id: String,
        /// Seconds participants may stay before they are moved (0: now).
        #[arg(long, default_value_t = 0)]
        grace_s: u64,
    },
    /// The bridge takes participants again.
    Undrain {
        id: String,
    },
    /// Removes a bridge that hosts nobody from the registry.
    Forget {
        id: String,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The answering node's view: leader, term, voters, lag.
    Status,
    /// Add a control node (learner until caught up, then voter).
    Add {
        #[arg(long)]
        id: u64,
        /// `host:port` the other control nodes reach it at.
        #[arg(long)]
        addr: String,
    },
    /// Remove a control node from the cluster.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Args)]
struct LoadArgs {
    /// Control's base URL (any node of the cluster); or set BRIDGEMESH_CONTROL_URL. Read by hand,
    /// not by clap, so that the variable does not collide with --local-cluster.
    #[arg(long, conflicts_with = "local_cluster")]
    control: Option<String>,
    /// Start a cluster of child processes on 127.0.0.1 for the run (control nodes and bridges
    /// running this binary, secrets in a temporary directory) and stop it at the end.
    #[arg(long)]
    local_cluster: bool,
    /// Control nodes of the local cluster (one Raft cluster) [default: 3].
    #[arg(long)]
    control_nodes: Option<usize>,
    /// Bridges of the local cluster [default: 3].
    #[arg(long)]
    bridges: Option<usize>,
    /// Participants of one room each local bridge takes; past it a room spans bridges (cascade)
    /// [default: 100].
    #[arg(long)]
    bridge_max_per_room: Option<u32>,
    /// SIGKILL the local bridge hosting the most participants this many seconds into the hold.
    #[arg(long, value_name = "S")]
    kill_bridge_at: Option<f64>,
    /// SIGKILL the local control leader this many seconds into the hold.
    #[arg(long, value_name = "S")]
    kill_leader_at: Option<f64>,
    /// Start each killed process again this many seconds after its kill.
    #[arg(long, value_name = "S")]
    restart_after: Option<f64>,
    #[arg(long, default_value_t = LoadConfig::default().rooms)]
    rooms: u32,
    /// Participants in each room.
    #[arg(long, default_value_t = LoadConfig::default().per_room)]
    per_room: u32,
    /// Participants of each room that publish audio and video (default: all); the rest only
    /// receive.
    #[arg(long)]
    publishers_per_room: Option<u32>,
    /// Video bitrate of each publisher (keyframes every 2 s); 0 for audio only.
    #[arg(long, default_value_t = LoadConfig::default().video_kbps)]
    video_kbps: u32,
    /// How long everyone stays after the last join.
    #[arg(long, default_value_t = LoadConfig::default().duration_s)]
    duration_s: u64,
    /// Over how long the joins are spread evenly. Control takes a burst of 20 joins per source
    /// address, then 5 per second: spread more, or add --bind-ip addresses.
    #[arg(long, default_value_t = LoadConfig::default().ramp_up_s)]
    ramp_up_s: u64,
    /// Rooms are PREFIX-0, PREFIX-1, …; give concurrent runs different prefixes.
    #[arg(long, default_value_t = LoadConfig::default().room_prefix)]
    room_prefix: String,
    /// Source addresses for the participants' HTTP and media, taken in turn (repeatable, or
    /// several after one flag).
    #[arg(long = "bind-ip", num_args = 1..)]
    bind_ips: Vec<IpAddr>,
    /// File with the admin API's token, to find the bridges and read their CPU and memory
    /// (or set BRIDGEMESH_ADMIN_TOKEN). Without either the bridges are not measured.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// The run fails when more than this share of packets is lost.
    #[arg(long, default_value_t = LoadConfig::default().max_loss_percent)]
    max_loss_percent: f64,
    /// Joins (and leaves) in flight at once.
    #[arg(long, default_value_t = LoadConfig::default().joins_in_flight_max)]
    max_concurrent_joins: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl LoadArgs {
    fn local_cluster(&self) -> Option<(LocalClusterConfig, FaultPlan)> {
        let defaults = LocalClusterConfig::default();
        self.local_cluster.then(|| {
            (
                LocalClusterConfig {
                    control_nodes: self.control_nodes.unwrap_or(defaults.control_nodes),
                    bridges: self.bridges.unwrap_or(defaults.bridges),
                    max_per_room: self.bridge_max_per_room.unwrap_or(defaults.max_per_room),
                    ..defaults
                },
                FaultPlan {
                    kill_bridge_at_s: self.kill_bridge_at,
                    kill_leader_at_s: self.kill_leader_at,
                    restart_after_s: self.restart_after,
                },
            )
        })
    }

    fn config(&self) -> anyhow::Result<LoadConfig> {
        // By hand: clap takes a flag's default for its presence in `requires`.
        if !self.local_cluster
            && (self.kill_bridge_at.is_some()
                || self.kill_leader_at.is_some()
                || self.restart_after.is_some()
                || self.control_nodes.is_some()
                || self.bridges.is_some()
                || self.bridge_max_per_room.is_some())
        {
            anyhow::bail!(
                "--control-nodes, --bridges, --bridge-max-per-room, --kill-bridge-at, --kill-leader-at and \
                 --restart-after need --local-cluster"
            );
        }
        let admin_token = match &self.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("BRIDGEMESH_ADMIN_TOKEN").ok(),
        }
        .filter(|token| !token.is_empty())
        .map(bridgemesh_control::auth::Secret::new);
        let control_url = if self.local_cluster {
            // The cluster's, filled in once it runs.
            LoadConfig::default().control_url
        } else {
            self.control
                .clone()
                .or_else(|| std::env::var("BRIDGEMESH_CONTROL_URL").ok())
                .filter(|url| !url.is_empty())
                .context("say where control is (--control URL or BRIDGEMESH_CONTROL_URL), or start a cluster with --local-cluster")?
        };
        let config = LoadConfig {
            control_url,
            rooms: self.rooms,
            per_room: self.per_room,
            publishers_per_room: self.publishers_per_room,
            video_kbps: self.video_kbps,
            duration_s: self.duration_s,
            ramp_up_s: self.ramp_up_s,
            room_prefix: self.room_prefix.clone(),
            bind_ips: self.bind_ips.clone(),
            admin_token,
            max_loss_percent: self.max_loss_percent,
            joins_in_flight_max: self.max_concurrent_joins,
            ..LoadConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// `bridgemesh load`: the run, a progress line on a terminal, the report, the exit status.
async fn load(args: LoadArgs) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    let config = args.config()?;
    let local = args.local_cluster();
    if let Some((cluster, plan)) = &local {
        cluster.validate()?;
        plan.validate(config.duration_s)
            .map_err(|e| anyhow::anyhow!("invalid fault plan: {e}"))?;
        anyhow::ensure!(
            plan.kill_leader_at_s.is_none() || cluster.control_nodes >= 3,
            "--kill-leader-at needs --control-nodes 3 or more: fewer cannot elect another leader"
        );
    }
    let (progress, mut watch) = tokio::sync::watch::channel(bridgemesh::load::Progress::default());
    // One line rewritten in place; on a pipe or a file it would only be noise.
    let printer = if std::io::stdout().is_terminal() {
        Some(tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let line = watch.borrow_and_update().to_string();
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K{line}");
                let _ = out.flush();
            }
            let _ = write!(std::io::stdout().lock(), "\r\x1b[2K");
        }))
    } else {
        // Nobody watches: the run then skips the progress sums.
        drop(watch);
        None
    };
    let run = async {
        match local {
            Some((cluster, plan)) => bridgemesh::load::run_local(config, cluster, plan, progress).await,
            None => bridgemesh::load::run(config, progress).await,
        }
    };
    // Ctrl-C, SIGTERM or SIGHUP drops the run, and with it a local cluster's processes and directory
    // (the default handling would end this process at once and leave them running).
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let report = tokio::select! {
        report = run => report?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the participants and any local cluster were stopped"),
        _ = terminate.recv() => anyhow::bail!("terminated; the participants and any local cluster were stopped"),
        _ = hangup.recv() => anyhow::bail!("hung up; the participants and any local cluster were stopped"),
    };
    if let Some(printer) = printer {
        let _ = printer.await;
    }
    print!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.passed() {
        std::process::exit(2);
    }
    Ok(())
}

/// `bridgemesh token`: exactly one of --secret, --secret-file, --private-key signs the token.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("signing_key").required(true).args(["secret", "secret_file", "private_key"])))]
struct TokenArgs {
    /// HS256 shared secret (Jitsi's app_secret). Prefer --secret-file or the environment
    /// variable: a command-line argument is visible to other users of the machine.
    #[arg(long, env = "BRIDGEMESH_TOKEN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// File holding the HS256 secret (one trailing newline is ignored).
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, or PKCS#1 for RSA) to sign with; needs --alg and --kid.
    #[arg(long, requires_all = ["alg", "kid"])]
    private_key: Option<std::path::PathBuf>,
    /// Algorithm of --private-key.
    #[arg(long, value_enum, requires = "private_key")]
    alg: Option<TokenAlg>,
    /// Key id for the token header: selects the verifying key (required with --private-key).
    #[arg(long)]
    kid: Option<String>,
    /// Issuer: the app id the control node accepts.
    #[arg(long)]
    iss: String,
    #[arg(long, default_value = "jitsi")]
    aud: String,
    /// Jitsi's tenant or domain; `*` for none.
    #[arg(long, default_value = "*")]
    sub: String,
    /// The room the token admits to, or `*` for every room.
    #[arg(long)]
    room: String,
    /// Display name (context.user.name).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    avatar: Option<String>,
    /// Make the holder a moderator.
    #[arg(long)]
    moderator: bool,
    /// Lifetime: seconds, or a number with s, m, h or d (`90`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_ttl_s)]
    ttl: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenAlg {
    Rs256,
    Eddsa,
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
    /// The address relay sockets bind to, one of this host's (0.0.0.0 or :: for any, with
    /// --external-ip). Without --external-ip it is also the address clients are told.
    #[arg(long)]
    relay_ip: IpAddr,
    /// The public address of a 1:1 NAT in front of this host (a cloud elastic IP), which
    /// forwards to --relay-ip port for port: relays are advertised at it (coturn's --external-ip).
    #[arg(long)]
    external_ip: Option<IpAddr>,
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
    /// Lifetime of credentials for new allocations (an allocation outlives its credential); the
    /// issuers' (control's `[turn] credential_ttl_s`) must be the same.
    #[arg(long, default_value_t = TurnConfig::default().credential_ttl_s)]
    credential_ttl_s: u64,
    #[arg(long, default_value_t = 10)]
    allocations_per_user_max: usize,
    /// Allocations of all users together from one source IP.
    #[arg(long, default_value_t = TurnConfig::default().allocations_per_source_max)]
    allocations_per_source_max: usize,
    #[arg(long, default_value_t = 10_000)]
    allocations_max: usize,
    /// Relay bandwidth per allocation, both directions together, in kbit/s.
    #[arg(long, default_value_t = 5_000)]
    allocation_bandwidth_kbps: u64,
    /// Peers allowed despite the deny policy: `ip:port` (exactly that) or a network `10.0.0.0/8`. Repeatable.
    #[arg(long = "allow-peer")]
    allow_peers: Vec<String>,
    /// Relay to any public address too (a general-purpose TURN server). Off: only the
    /// cluster's bridges (from --control) and --allow-peer entries.
    #[arg(long)]
    allow_public_peers: bool,
    /// A control node's base URL, `http://host:port` (repeatable): the relays may reach the
    /// media address of every bridge it lists, as bridges come and go. Needs the same secret
    /// control's `[turn]` section holds.
    #[arg(long = "control")]
    control: Vec<String>,
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
                Err(_) => allow_peer_nets.push(peer.parse::<Cidr>()?),
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
            external_ip: self.external_ip,
            relay_port_min: min,
            relay_port_max: max,
            realm: self.realm,
            secret,
            credential_ttl_s: self.credential_ttl_s,
            allocations_per_source_max: self.allocations_per_source_max,
            allocations_max: self.allocations_max,
            allocations_per_user_max: self.allocations_per_user_max,
            allocation_bandwidth_bytes_per_s: self.allocation_bandwidth_kbps * 1000 / 8,
            allow_peer_addrs,
            allow_peer_nets,
            allow_public_peers: self.allow_public_peers,
            ..TurnConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Commands::Load(_) | Commands::LoadReplay(_) = cli.command {
        // stdout is the report's; the WebRTC stack's warnings about its own retries are noise
        // when dozens of participants connect at once.
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| EnvFilter::new("error,bridgemesh=warn,bridgemesh_sim=warn")),
            )
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
            )
            .init();
    }
    match cli.command {
        Commands::Up {
            http_port,
            bridge_http_port,
            media_port,
            turn_port,
            no_turn,
            bridges,
            cascade_port,
            max_per_room,
            shards,
            guest_policy,
            public,
        } => {
            let public = public.config()?;
            // Listening from here on: a SIGTERM during start-up stops `up` once it has started,
            // instead of killing it half-way.
            let mut stop = StopSignal::listen()?;
            let auth = bridgemesh_control::auth::AuthConfig {
                guest_policy,
                ..Default::default()
            };
            let running = bridgemesh::up::start_with_auth(
                bridgemesh::up::UpConfig {
                    http_port,
                    bridge_http_port,
                    media_port,
                    data_dir: None,
                    turn: !no_turn,
                    turn_port,
                    bridges,
                    cascade_port,
                    max_per_room,
                    shards,
                    public: public.clone(),
                },
                auth,
            )
            .await?;
            if let Some(public) = &public {
                up_cli::print_public(&running, public);
                stop.requested().await?;
                println!("stopping: telling participants goodbye");
                running.stop().await;
                return Ok(());
            }
            println!(
                "bridgemesh is up: open {}/ in a browser (two tabs on one room see each other)",
                running.control_url
            );
            for bridge in &running.bridges {
                println!(
                    "bridge {}: signaling and metrics at http://{}/metrics",
                    bridge.bridge.id(),
                    bridge.http_addr
                );
            }
            println!(
                "admin API: {}/api/v1/admin/... with `Authorization: Bearer {}`",
                running.control_url, running.admin_token
            );
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
            stop.requested().await?;
            println!("stopping: telling participants goodbye");
            running.stop().await;
        }
        Commands::Token(args) => println!("{}", token(*args)?),
        Commands::Load(args) => load(*args).await?,
        Commands::LoadReplay(args) => load_replay_cli::run(*args).await?,
        Commands::Geoip(args) => geoip_cli::run(args)?,
        Commands::Ca(args) => ca_cli::run(args)?,
        Commands::Sim(args) => {
            if !sim_cli::run(args)? {
                std::process::exit(1);
            }
        }
        Commands::Bridge(args) => bridgemesh::bridge_node::run(args.config()?).await?,
        Commands::BridgeKey {
            cluster_secret_file,
            bridge_id,
        } => println!(
            "{}",
            bridgemesh::bridge_node::bridge_key_hex(&cluster_secret_file, &bridge_id)?
        ),
        Commands::Control(args) => {
            let file = match &args.config {
                Some(path) => bridgemesh::control_node::read_file(path)?,
                None => bridgemesh::control_node::ControlFile::default(),
            };
            let plan = bridgemesh::control_node::plan(
                file,
                bridgemesh::control_node::ControlOverrides {
                    node_id: args.id,
                    listen: args.listen,
                    cluster_listen: args.cluster_listen,
                    advertise: args.advertise,
                    cert_dir: args.cert_dir,
                    data_dir: args.data_dir,
                    cluster_secret_file: args.cluster_secret_file,
                    admin_token_file: args.admin_token_file,
                    metrics_token_file: args.metrics_token_file,
                    peers: args.peers,
                },
            )?;
            bridgemesh::control_node::run(plan).await?;
        }
        Commands::Users(args) => bridgemesh::users_cli::run(args).await?,
        Commands::Admin(args) => {
            use bridgemesh::admin::AdminCall;
            let token = match (args.token, args.token_file) {
                (Some(token), _) => token,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .trim()
                    .to_owned(),
                (None, None) => anyhow::bail!(
                    "the admin token is missing: --token, BRIDGEMESH_ADMIN_TOKEN or --token-file"
                ),
            };
            let call = match args.command {
                AdminCommand::Cluster(ClusterCommand::Status) => AdminCall::ClusterStatus,
                AdminCommand::Cluster(ClusterCommand::Add { id, addr }) => AdminCall::AddNode { id, addr },
                AdminCommand::Cluster(ClusterCommand::Remove { id }) => AdminCall::RemoveNode { id },
                AdminCommand::Rooms => AdminCall::Rooms,
                AdminCommand::Participants { room, command, json } => match command {
                    None | Some(ParticipantsCommand::List) => {
                        let call = AdminCall::Participants { room };
                        let answer = bridgemesh::admin::run(&args.url, &token, call).await?;
                        if json {
                            println!("{answer}");
                        } else {
                            print!("{}", bridgemesh::admin::participants_table(&answer)?);
                        }
                        return Ok(());
                    }
                    Some(ParticipantsCommand::Kick { id }) => AdminCall::KickParticipant { room, id },
                    Some(ParticipantsCommand::Mute { id }) => AdminCall::MuteParticipant { room, id },
                },
                AdminCommand::Bridges { command, json } => match command {
                    None | Some(BridgesCommand::List) => {
                        let answer = bridgemesh::admin::run(&args.url, &token, AdminCall::Bridges).await?;
                        if json {
                            println!("{answer}");
                        } else {
                            print!("{}", bridgemesh::admin::bridges_table(&answer)?);
                        }
                        return Ok(());
                    }
                    Some(BridgesCommand::Drain { id, grace_s }) => AdminCall::DrainBridge { id, grace_s },
                    Some(BridgesCommand::Undrain { id }) => AdminCall::UndrainBridge { id },
                    Some(BridgesCommand::Forget { id }) => AdminCall::ForgetBridge { id },
                },
            };
            println!("{}", bridgemesh::admin::run(&args.url, &token, call).await?);
        }
        Commands::Turn(args) => {
            let mut stop = StopSignal::listen()?;
            let metrics_listen = args.metrics_listen;
            let control = args.control.clone();
            let config = args.config()?;
            let secret = config.secret.clone();
            let server = std::sync::Arc::new(TurnServer::start(config).await?);
            if !control.is_empty() {
                bridgemesh::turn_peers::spawn(
                    &server,
                    control,
                    bridgemesh::turn_peers::Asker::standalone(&secret),
                );
            }
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
            stop.requested().await?;
            server.shutdown().await;
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM: what `docker stop` and `systemctl stop` send (in a container the process
/// is PID 1, which the kernel gives no default action for SIGTERM). Both are caught from
/// [`StopSignal::listen`] on, so one that arrives while the command starts is not lost.
struct StopSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn requested(&mut self) -> std::io::Result<()> {
        tokio::select! {
            _ = self.interrupt.recv() => Ok(()),
            _ = self.terminate.recv() => Ok(()),
        }
    }
}

fn token(args: TokenArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use bridgemesh_control::auth::{MintKey, MintRequest, Secret, TokenUser, mint};
    let key = if let Some(secret) = args.secret {
        MintKey::Hs256(Secret::new(secret))
    } else if let Some(path) = args.secret_file {
        let secret = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the secret file {}", path.display()))?;
        let secret = secret.strip_suffix('\n').unwrap_or(&secret);
        MintKey::Hs256(Secret::new(secret.strip_suffix('\r').unwrap_or(secret)))
    } else {
        let path = args.private_key.expect("clap requires one signing key");
        let pem = Secret::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the private key {}", path.display()))?,
        );
        match args.alg.expect("clap requires --alg with --private-key") {
            TokenAlg::Rs256 => MintKey::Rs256 { private_key_pem: pem },
            TokenAlg::Eddsa => MintKey::EdDsa { private_key_pem: pem },
        }
    };
    let now_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let request = MintRequest {
        key,
        kid: args.kid,
        iss: args.iss,
        aud: args.aud,
        sub: args.sub,
        room: args.room,
        user: TokenUser {
            id: args.user_id,
            name: args.name,
            email: args.email,
            avatar: args.avatar,
        },
        moderator: args.moderator,
        nbf_unix_s: None,
        ttl_s: args.ttl,
    };
    Ok(mint(&request, now_unix_s)?)
}

/// `90`, `90s`, `15m`, `1h`, `7d` → seconds.
fn parse_ttl_s(text: &str) -> Result<u64, String> {
    let (digits, unit_s) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        Some((at, 'd')) => (&text[..at], 86_400),
        _ => (text, 1),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90, 15m, 1h or 7d"))?;
    match count.checked_mul(unit_s) {
        Some(0) => Err("the lifetime must be more than 0 seconds".to_owned()),
        Some(seconds) => Ok(seconds),
        None => Err(format!("{text:?} is too long")),
    }
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl_s;

    #[test]
    fn ttl_accepts_seconds_and_units_and_refuses_the_rest() {
        assert_eq!(parse_ttl_s("90"), Ok(90));
        assert_eq!(parse_ttl_s("90s"), Ok(90));
        assert_eq!(parse_ttl_s("15m"), Ok(900));
        assert_eq!(parse_ttl_s("1h"), Ok(3600));
        assert_eq!(parse_ttl_s("7d"), Ok(604_800));
        for bad in [
            "",
            "0",
            "0h",
            "h",
            "1.5h",
            "-1",
            "3w",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl_s(bad).is_err(), "{bad:?}");
        }
    }
}
