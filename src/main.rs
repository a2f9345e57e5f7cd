//! The `bridgemesh` command: thin subcommands over the crates.

use clap::{Parser, Subcommand};
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
    },
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
        } => {
            let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
                http_port,
                bridge_http_port,
                media_port,
                data_dir: None,
            })
            .await?;
            println!(
                "bridgemesh is up: open {}/ in a browser (two tabs on one room see each other)",
                running.control_url
            );
            println!("bridge signaling and metrics: {}/metrics", running.bridge_url);
            println!(
                "admin API: {}/api/v1/admin/... with `Authorization: Bearer {}`",
                running.control_url, running.admin_token
            );
            println!("press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            println!("stopping: telling participants goodbye");
            running.stop().await;
        }
    }
    Ok(())
}
