//! `bridgemesh turn`: a TURN server on its own, its flags into a [`TurnConfig`].

use super::*;

#[derive(Args)]
pub(crate) struct TurnArgs {
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
    pub(crate) control: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

impl TurnArgs {
    pub(crate) fn config(self) -> anyhow::Result<TurnConfig> {
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
