//! `bridgemesh load`: its flags and the run (against a deployment, or a local cluster it starts).

use super::*;

#[derive(Args)]
pub(crate) struct LoadArgs {
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
    pub(crate) fn local_cluster(&self) -> Option<(LocalClusterConfig, FaultPlan)> {
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

    pub(crate) fn config(&self) -> anyhow::Result<LoadConfig> {
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
pub(crate) async fn load(args: LoadArgs) -> anyhow::Result<()> {
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
