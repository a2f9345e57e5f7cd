//! `bridgemesh bridge`'s command line: flags over the TOML file.

use super::*;

/// Flags of `bridgemesh bridge`; each one given overrides the file.
#[derive(Debug, Default, clap::Args)]
pub struct BridgeArgs {
    /// TOML configuration; flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A control node's cluster listener, `https://host:port`; repeat for several (any of them
    /// will do).
    #[arg(long = "control")]
    pub control: Vec<String>,
    /// This bridge's region, e.g. `eu-west`.
    #[arg(long, value_parser = |s: &str| RegionId::new(s).map_err(|e| e.to_string()))]
    pub region: Option<RegionId>,
    /// This bridge's id (default: `<region>-<hostname>`).
    #[arg(long, value_parser = |s: &str| BridgeId::new(s).map_err(|e| e.to_string()))]
    pub id: Option<BridgeId>,
    /// Where the bridge is, `LATITUDE,LONGITUDE` in degrees.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<GeoPoint>,
    /// File with this bridge's key in hex (`bridgemesh bridge-key --bridge-id` prints it).
    #[arg(long)]
    pub bridge_key_file: Option<PathBuf>,
    /// Signaling, /health and /metrics (default 0.0.0.0:8081); media and TURN bind its IP.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Host name or IP participants reach this bridge at (signaling and TURN URLs).
    #[arg(long)]
    pub public_host: Option<String>,
    /// IP put in ICE candidates (default: --public-host if it is an IP). Behind a 1:1 NAT: the
    /// public address, with --listen on the host's own (or 0.0.0.0).
    #[arg(long)]
    pub advertise_ip: Option<IpAddr>,
    /// This bridge's IPv6 address, a second ICE candidate on the same media port, for an IPv4
    /// --advertise-ip with --listen [::]:PORT (participants on either family).
    #[arg(long)]
    pub advertise_ipv6: Option<Ipv6Addr>,
    /// Signaling URL as participants reach it, e.g. `wss://eu-1.example.org/bridge/v1/signal`
    /// behind a TLS proxy (default: ws://PUBLIC_HOST:PORT/bridge/v1/signal).
    #[arg(long)]
    pub signaling_url: Option<String>,
    /// The single UDP media port (default 10000).
    #[arg(long)]
    pub media_port: Option<u16>,
    /// Participants this bridge accepts (default 1000).
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Participants of one room this bridge accepts (default 100).
    #[arg(long)]
    pub max_per_room: Option<u32>,
    /// Packet-processing threads (default: cores, at most 8).
    #[arg(long)]
    pub shards: Option<usize>,
    /// SO_RCVBUF of each shard's media socket, bytes (default 4 MiB).
    #[arg(long)]
    pub media_recv_buffer_bytes: Option<usize>,
    /// SO_SNDBUF of each shard's media socket, bytes (default 1 MiB).
    #[arg(long)]
    pub media_send_buffer_bytes: Option<usize>,
    /// Port of the embedded TURN server, UDP and TCP (default 3478).
    #[arg(long)]
    pub turn_port: Option<u16>,
    /// Run without the embedded TURN server.
    #[arg(long)]
    pub no_turn: bool,
    /// UDP port of QUIC cascade links to other bridges (default 7710).
    #[arg(long)]
    pub cascade_port: Option<u16>,
    /// Directory with this bridge's cluster certificate (`bridgemesh ca issue --out-dir`):
    /// required; it authenticates the bridge to control and to other bridges.
    #[arg(long, alias = "cert-dir")]
    pub cascade_cert_dir: Option<PathBuf>,
    /// File with the token /metrics demands (`Authorization: Bearer <token>`).
    #[arg(long)]
    pub metrics_token_file: Option<PathBuf>,
    /// `IP:PORT` other bridges reach the cascade port at, when not the advertised IP and the
    /// cascade port (a port forward, a NAT).
    #[arg(long)]
    pub cascade_advertise: Option<SocketAddr>,
    /// Seconds a stopping bridge waits for its participants to be moved (default 30).
    #[arg(long)]
    pub drain_timeout_s: Option<u64>,
    /// Record rooms into this directory (moderators' record button, `bridgemesh admin
    /// recordings`); without it the bridge does not record.
    #[arg(long)]
    pub recordings_dir: Option<PathBuf>,
    /// Free space, MiB, below which recording is refused or stops (default 1024).
    #[arg(long)]
    pub recording_free_min_mb: Option<u64>,
    /// Longest recording, seconds (default 21600).
    #[arg(long)]
    pub recording_max_duration_s: Option<u64>,
    /// Largest recording, MiB (default 16384).
    #[arg(long)]
    pub recording_max_size_mb: Option<u64>,
    /// File with the token of this bridge's admin API (recordings: list, start, stop,
    /// download); without it that API is off.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
}

impl BridgeArgs {
    /// The file (if any) with these flags over it, and the bridge key read.
    pub fn config(self) -> anyhow::Result<BridgeNodeConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid bridge configuration", path.display()))?
            }
            None => BridgeNodeConfig::default(),
        };
        if !self.control.is_empty() {
            config.control = self.control;
        }
        config.region = self.region.or(config.region);
        config.id = self.id.or(config.id);
        config.location = self.location.or(config.location);
        config.bridge_key_file = self.bridge_key_file.or(config.bridge_key_file);
        config.listen = self.listen.unwrap_or(config.listen);
        config.public_host = self.public_host.or(config.public_host);
        config.advertise_ip = self.advertise_ip.or(config.advertise_ip);
        config.advertise_ipv6 = self.advertise_ipv6.or(config.advertise_ipv6);
        config.signaling_url = self.signaling_url.or(config.signaling_url);
        config.media_port = self.media_port.unwrap_or(config.media_port);
        config.capacity = self.capacity.unwrap_or(config.capacity);
        config.max_per_room = self.max_per_room.unwrap_or(config.max_per_room);
        config.shards = self.shards.or(config.shards);
        config.media_recv_buffer_bytes = self.media_recv_buffer_bytes.or(config.media_recv_buffer_bytes);
        config.media_send_buffer_bytes = self.media_send_buffer_bytes.or(config.media_send_buffer_bytes);
        config.turn_port = self.turn_port.unwrap_or(config.turn_port);
        config.turn &= !self.no_turn;
        config.cascade_port = self.cascade_port.unwrap_or(config.cascade_port);
        config.cascade_cert_dir = self.cascade_cert_dir.or(config.cascade_cert_dir);
        config.cascade_advertise = self.cascade_advertise.or(config.cascade_advertise);
        config.drain_timeout_s = self.drain_timeout_s.unwrap_or(config.drain_timeout_s);
        config.metrics_token_file = self.metrics_token_file.or(config.metrics_token_file);
        config.recordings_dir = self.recordings_dir.or(config.recordings_dir);
        config.recording_free_min_mb = self.recording_free_min_mb.unwrap_or(config.recording_free_min_mb);
        config.recording_max_duration_s = self
            .recording_max_duration_s
            .unwrap_or(config.recording_max_duration_s);
        config.recording_max_size_mb = self.recording_max_size_mb.unwrap_or(config.recording_max_size_mb);
        config.admin_token_file = self.admin_token_file.or(config.admin_token_file);
        config.load_bridge_key()?;
        config.validate()?;
        Ok(config)
    }
}
