//! The `bridgemesh` command: thin subcommands over the crates.

mod ca_cli;
mod geoip_cli;
mod load_cli;
mod load_replay_cli;
mod oidc_cli;
mod sim_cli;
mod token_cli;
mod turn_cli;
mod up_cli;

use anyhow::Context as _;
use bridgemesh::load::{FaultPlan, LoadConfig, LocalClusterConfig};
use bridgemesh_turn::{Cidr, TurnConfig, TurnServer};
use clap::{Args, Parser, Subcommand};
use load_cli::{LoadArgs, load};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use token_cli::{TokenArgs, token};
use tracing_subscriber::EnvFilter;
use turn_cli::TurnArgs;

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
        limits: bridgemesh::control_node::LimitsSection,
        #[command(flatten)]
        oidc: oidc_cli::OidcArgs,
        #[command(flatten)]
        public: up_cli::PublicArgs,
        /// Where rooms are recorded, a directory per bridge inside [default: `recordings` in the
        /// state directory with --domain, else ./bridgemesh-recordings].
        #[arg(long)]
        recordings_dir: Option<std::path::PathBuf>,
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
    /// One bridge's recordings (its own admin API): list, start ROOM, stop ROOM, download FILE.
    Recordings {
        /// The bridge's signaling listener (`up`'s first bridge by default).
        #[arg(long, env = "BRIDGEMESH_BRIDGE_URL", default_value = "http://127.0.0.1:8081")]
        bridge: String,
        #[command(subcommand)]
        command: bridgemesh::recordings_cli::RecordingsCommand,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Commands::Load(_) | Commands::LoadReplay(_) | Commands::Sim(_) = cli.command {
        // stdout is the report's; the WebRTC stack's warnings about its own retries are noise
        // when dozens of participants connect at once. The simulator runs control's hub engine,
        // whose logs (with wall-clock stamps) would break its byte-identical report.
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
            limits,
            oidc,
            public,
            recordings_dir,
        } => {
            let public = public.config()?;
            let join_limits = limits.into_limits("the join budget flags")?;
            // Listening from here on: a SIGTERM during start-up stops `up` once it has started,
            // instead of killing it half-way.
            let mut stop = StopSignal::listen()?;
            let auth = bridgemesh_control::auth::AuthConfig {
                guest_policy,
                oidc: oidc.config()?,
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
                    join_limits,
                    recordings_dir,
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
            if let Some(store) = running.bridge.recordings() {
                println!(
                    "recordings: {} (moderators' Record button; `bridgemesh admin recordings list`)",
                    store.directory().display()
                );
            }
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
                AdminCommand::Recordings { bridge, command } => {
                    println!(
                        "{}",
                        bridgemesh::recordings_cli::run(&bridge, &token, command).await?
                    );
                    return Ok(());
                }
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

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}
