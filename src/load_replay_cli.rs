//! `bridgemesh load-replay`: the bridge's CPU per forwarded packet at high packet rates, loaded
//! by the cheap generator (see `bridgemesh::load::replay_bench` and docs/benchmarks.md).

use bridgemesh::load::replay_bench::{self, ReplayBenchConfig};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct LoadReplayArgs {
    /// The `bridgemesh` executable whose `up` is measured (e.g. an older build); default: this one.
    #[arg(long)]
    bridge_binary: Option<PathBuf>,
    /// `up --shards` of the bridge under test; default: the bridge's own (one per core).
    #[arg(long)]
    shards: Option<usize>,
    #[arg(long, default_value_t = ReplayBenchConfig::default().rooms)]
    rooms: usize,
    /// Participants per room that publish one paced video stream (and receive the others).
    #[arg(long, default_value_t = ReplayBenchConfig::default().publishers_per_room)]
    publishers_per_room: usize,
    /// Participants per room that only receive.
    #[arg(long, default_value_t = ReplayBenchConfig::default().viewers_per_room)]
    viewers_per_room: usize,
    /// Packets/s the bridge is to forward in all; the publishers' rate follows from the rooms.
    #[arg(long, default_value_t = ReplayBenchConfig::default().forwarded_pps)]
    forwarded_pps: f64,
    #[arg(long, default_value_t = ReplayBenchConfig::default().warmup_s)]
    warmup_s: f64,
    /// The measured window.
    #[arg(long, default_value_t = ReplayBenchConfig::default().duration_s)]
    duration_s: f64,
    #[arg(long, default_value_t = ReplayBenchConfig::default().join_timeout_s)]
    join_timeout_s: f64,
    /// Also write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(args: LoadReplayArgs) -> anyhow::Result<()> {
    let config = ReplayBenchConfig {
        bridge_binary: args.bridge_binary,
        shards: args.shards,
        rooms: args.rooms,
        publishers_per_room: args.publishers_per_room,
        viewers_per_room: args.viewers_per_room,
        forwarded_pps: args.forwarded_pps,
        warmup_s: args.warmup_s,
        duration_s: args.duration_s,
        join_timeout_s: args.join_timeout_s,
    };
    let report = replay_bench::run(&config).await?;
    println!("{}", report.line());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
