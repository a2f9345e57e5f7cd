//! A bridge process's configuration: the plain struct the TOML file fills and flags override,
//! its defaults, and its validation with named errors.

use super::*;

/// Everything a bridge process needs. A plain struct: the TOML file fills it, flags override it,
/// and `bridgemesh up` or a test can build one in code.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeNodeConfig {
    /// Control nodes' cluster listeners (`https://host:port`, mutual TLS); any of them, the
    /// leader is found.
    pub control: Vec<String>,
    pub region: Option<RegionId>,
    /// Default: `<region>-<hostname>`, made a valid id.
    pub id: Option<BridgeId>,
    pub location: Option<GeoPoint>,
    /// File holding the bridge key in hex; read into `bridge_key` by [`BridgeNodeConfig::load_bridge_key`].
    pub bridge_key_file: Option<PathBuf>,
    /// This bridge's own key, derived by control from the cluster secret and the bridge id (see
    /// `bridgemesh bridge-key --bridge-id`): it checks this bridge's tickets and its TURN
    /// credentials. Never read from the TOML file itself.
    #[serde(skip)]
    pub bridge_key: Vec<u8>,
    /// Signaling WebSocket, `/health` and `/metrics`. Media and TURN bind the same IP.
    pub listen: SocketAddr,
    /// Host name or IP participants reach the bridge at, for the signaling and TURN URLs.
    /// Default: the advertised IP.
    pub public_host: Option<String>,
    /// The IP in ICE candidates and TURN relay addresses. Default: `public_host` when it is an
    /// IP, else the listen IP when it is not 0.0.0.0 / ::.
    pub advertise_ip: Option<IpAddr>,
    /// The bridge's IPv6 address, offered as a second ICE host candidate on the same media
    /// port, when `advertise_ip` is IPv4 and the bridge listens on `[::]` (both families).
    pub advertise_ipv6: Option<Ipv6Addr>,
    /// The signaling URL as participants reach it, when it is not `ws://public_host:port/...`
    /// (e.g. `wss://` behind a TLS proxy).
    pub signaling_url: Option<String>,
    pub media_port: u16,
    /// Participants this bridge accepts at most.
    pub capacity: u32,
    /// Participants of one room this bridge accepts at most.
    pub max_per_room: u32,
    /// Packet-processing threads; default: the cores, at most 8.
    pub shards: Option<usize>,
    /// `SO_RCVBUF` of each shard's media socket (default 4 MiB; raise `net.core.rmem_max` or
    /// run with CAP_NET_ADMIN for it to take effect).
    pub media_recv_buffer_bytes: Option<usize>,
    /// `SO_SNDBUF` of each shard's media socket (default 1 MiB).
    pub media_send_buffer_bytes: Option<usize>,
    pub turn: bool,
    /// TURN over UDP and TCP.
    pub turn_port: u16,
    /// TCP/TLS connections one source address may hold on the TURN server (default: the TURN
    /// server's own; `bridgemesh up` raises it, as every local browser comes from 127.0.0.1).
    pub turn_connections_per_source_max: Option<usize>,
    /// TURN URLs served by another listener for this bridge's TURN server, named in join
    /// responses after its own (`up --domain`: `turns:DOMAIN:443?transport=tcp`).
    #[serde(skip)]
    pub turn_extra_urls: Vec<String>,
    /// UDP port of cascade links (QUIC) to other bridges, on the listen IP.
    pub cascade_port: u16,
    /// The bridge's cluster certificate, key and CA (`bridgemesh ca issue --out-dir`): it
    /// authenticates the bridge to control (its session) and to other bridges (cascade links).
    #[serde(alias = "cert_dir")]
    pub cascade_cert_dir: Option<PathBuf>,
    /// Where other bridges reach the cascade port, when not the advertised IP and
    /// `cascade_port` (a port forward, a NAT).
    pub cascade_advertise: Option<SocketAddr>,
    /// A cluster certificate made in code (`bridgemesh up`, tests); wins over `cascade_cert_dir`.
    #[serde(skip)]
    pub cascade_identity: Option<BridgeIdentity>,
    /// How long a stopping bridge waits for control to move its participants away.
    pub drain_timeout_s: u64,
    /// A file with the token `/metrics`, `/metrics/turn` and `/metrics/control` demand
    /// (`Authorization: Bearer <token>`); none serves them to anyone who reaches the listener.
    pub metrics_token_file: Option<PathBuf>,
    pub cpu_ceiling: f64,
    pub packets_per_s_ceiling: f64,
    /// Where rooms are recorded (`bridgemesh admin recordings`, the moderators' record button);
    /// none: this bridge does not record.
    pub recordings_dir: Option<PathBuf>,
    /// Recording is refused below this much free space there, and stops when it falls under it.
    pub recording_free_min_mb: u64,
    /// A recording stops at this length ...
    pub recording_max_duration_s: u64,
    /// ... or this size.
    pub recording_max_size_mb: u64,
    /// A file with the token the bridge's admin API (`/bridge/v1/admin/...`: recordings) demands
    /// (`Authorization: Bearer`); none: that API is off.
    pub admin_token_file: Option<PathBuf>,
    /// The admin token given in code (`bridgemesh up`); wins over `admin_token_file`.
    #[serde(skip)]
    pub admin_token: Option<String>,
}

impl Default for BridgeNodeConfig {
    fn default() -> Self {
        Self {
            control: Vec::new(),
            region: None,
            id: None,
            location: None,
            bridge_key_file: None,
            bridge_key: Vec::new(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8081)),
            public_host: None,
            advertise_ip: None,
            advertise_ipv6: None,
            signaling_url: None,
            media_port: 10000,
            capacity: 1000,
            max_per_room: 100,
            shards: None,
            media_recv_buffer_bytes: None,
            media_send_buffer_bytes: None,
            turn: true,
            turn_port: 3478,
            turn_connections_per_source_max: None,
            turn_extra_urls: Vec::new(),
            cascade_port: 7710,
            cascade_cert_dir: None,
            cascade_advertise: None,
            cascade_identity: None,
            drain_timeout_s: 30,
            metrics_token_file: None,
            cpu_ceiling: CPU_CEILING_DEFAULT,
            packets_per_s_ceiling: PACKETS_PER_S_CEILING_DEFAULT,
            recordings_dir: None,
            recording_free_min_mb: 1024,
            recording_max_duration_s: 6 * 3600,
            recording_max_size_mb: 16 * 1024,
            admin_token_file: None,
            admin_token: None,
        }
    }
}

impl fmt::Debug for BridgeNodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            control,
            region,
            id,
            location,
            bridge_key_file,
            bridge_key: _,
            listen,
            public_host,
            advertise_ip,
            advertise_ipv6,
            signaling_url,
            media_port,
            capacity,
            max_per_room,
            shards,
            media_recv_buffer_bytes,
            media_send_buffer_bytes,
            turn,
            turn_port,
            turn_connections_per_source_max,
            turn_extra_urls,
            cascade_port,
            cascade_cert_dir,
            cascade_advertise,
            cascade_identity,
            drain_timeout_s,
            metrics_token_file,
            cpu_ceiling,
            packets_per_s_ceiling,
            recordings_dir,
            recording_free_min_mb,
            recording_max_duration_s,
            recording_max_size_mb,
            admin_token_file,
            admin_token,
        } = self;
        f.debug_struct("BridgeNodeConfig")
            .field("control", control)
            .field("region", region)
            .field("id", id)
            .field("location", location)
            .field("bridge_key_file", bridge_key_file)
            .field("bridge_key", &"<redacted>")
            .field("listen", listen)
            .field("public_host", public_host)
            .field("advertise_ip", advertise_ip)
            .field("advertise_ipv6", advertise_ipv6)
            .field("signaling_url", signaling_url)
            .field("media_port", media_port)
            .field("capacity", capacity)
            .field("max_per_room", max_per_room)
            .field("shards", shards)
            .field("media_recv_buffer_bytes", media_recv_buffer_bytes)
            .field("media_send_buffer_bytes", media_send_buffer_bytes)
            .field("turn", turn)
            .field("turn_port", turn_port)
            .field("turn_connections_per_source_max", turn_connections_per_source_max)
            .field("turn_extra_urls", turn_extra_urls)
            .field("cascade_port", cascade_port)
            .field("cascade_cert_dir", cascade_cert_dir)
            .field("cascade_advertise", cascade_advertise)
            .field(
                "cascade_identity",
                &cascade_identity.as_ref().map(|i| i.bridge_id().to_string()),
            )
            .field("drain_timeout_s", drain_timeout_s)
            .field("metrics_token_file", metrics_token_file)
            .field("cpu_ceiling", cpu_ceiling)
            .field("packets_per_s_ceiling", packets_per_s_ceiling)
            .field("recordings_dir", recordings_dir)
            .field("recording_free_min_mb", recording_free_min_mb)
            .field("recording_max_duration_s", recording_max_duration_s)
            .field("recording_max_size_mb", recording_max_size_mb)
            .field("admin_token_file", admin_token_file)
            .field("admin_token", &admin_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeNodeConfigError {
    #[error("no control node: give one or more with --control (or `control` in the file)")]
    NoControl,
    #[error("control URL {url:?}: {reason}")]
    ControlUrl { url: String, reason: String },
    #[error("the region is missing: --region (or `region` in the file)")]
    NoRegion,
    #[error("the bridge key is missing or shorter than {BRIDGE_KEY_MIN_BYTES} bytes: --bridge-key-file")]
    BridgeKey,
    #[error(
        "the bridge's cluster certificate is missing: --cascade-cert-dir (`bridgemesh ca issue --bridge-id ID --out-dir DIR` writes it)"
    )]
    NoCertificate,
    #[error(
        "no address to advertise: set --advertise-ip (or a --public-host that is an IP, or listen on a specific IP)"
    )]
    NoAdvertiseIp,
    #[error("the advertised IP must be one participants reach, not 0.0.0.0 / ::")]
    UnspecifiedAdvertiseIp,
    #[error("the advertised IP {0} is not a unicast address participants can send to")]
    AdvertiseIpNotUnicast(IpAddr),
    #[error(
        "the advertised IP {advertise} and the listen IP {listen} are of different families: media and TURN bind the listen IP and receive only its family (a 1:1 NAT keeps the family; listen on 0.0.0.0 for an IPv4 address, [::] for an IPv6 one)"
    )]
    AdvertiseFamily { listen: IpAddr, advertise: IpAddr },
    #[error(
        "--advertise-ipv6 {0} is a second address for an IPv4 bridge listening on [::] (one dual-stack port for both families); it must be a unicast IPv6 address, not a mapped IPv4 one"
    )]
    AdvertiseIpv6(Ipv6Addr),
    #[error("the cascade address {0} must be one other bridges reach, not 0.0.0.0 / :: or port 0")]
    CascadeAdvertise(SocketAddr),
    #[error("the public host {0:?} is not a host name or IP")]
    PublicHost(String),
    #[error("the location must be a latitude within ±90 and a longitude within ±180")]
    Location,
    #[error("capacity and max_per_room must be positive, and max_per_room at most capacity")]
    Capacity,
    #[error("shards must be between 1 and 64")]
    Shards,
    #[error("the media, TURN and cascade ports are all UDP: give them different numbers")]
    PortClash,
    #[error("drain_timeout_s must be at most {DRAIN_TIMEOUT_S_MAX}")]
    DrainTimeout,
    #[error("load ceilings: {0}")]
    Ceilings(String),
    #[error(transparent)]
    Recording(#[from] bridgemesh_bridge::recording::RecordingConfigError),
}

impl BridgeNodeConfig {
    /// Reads `bridge_key_file` (hex; surrounding whitespace ignored) into `bridge_key`, unless a
    /// key was set in code.
    pub fn load_bridge_key(&mut self) -> anyhow::Result<()> {
        if !self.bridge_key.is_empty() {
            return Ok(());
        }
        let Some(path) = &self.bridge_key_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the bridge key from {}", path.display()))?;
        self.bridge_key = hex::decode(text.trim())
            .with_context(|| format!("{} does not hold a hex bridge key", path.display()))?;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), BridgeNodeConfigError> {
        if self.control.is_empty() {
            return Err(BridgeNodeConfigError::NoControl);
        }
        for url in &self.control {
            SessionUrl::parse(url).map_err(|err| BridgeNodeConfigError::ControlUrl {
                url: url.clone(),
                reason: err.to_string(),
            })?;
        }
        if self.region.is_none() {
            return Err(BridgeNodeConfigError::NoRegion);
        }
        if self.bridge_key.len() < BRIDGE_KEY_MIN_BYTES {
            return Err(BridgeNodeConfigError::BridgeKey);
        }
        let advertise_ip = self.advertise_ip()?;
        if advertise_ip.is_unspecified() {
            return Err(BridgeNodeConfigError::UnspecifiedAdvertiseIp);
        }
        if !bridgemesh_bridge::config::is_unicast(advertise_ip) {
            return Err(BridgeNodeConfigError::AdvertiseIpNotUnicast(advertise_ip));
        }
        let dual_stack = self.listen.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        if advertise_ip.is_ipv4() != self.listen.is_ipv4() && !dual_stack {
            return Err(BridgeNodeConfigError::AdvertiseFamily {
                listen: self.listen.ip(),
                advertise: advertise_ip,
            });
        }
        if let Some(v6) = self.advertise_ipv6
            && (!dual_stack
                || !advertise_ip.is_ipv4()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.to_ipv4_mapped().is_some())
        {
            return Err(BridgeNodeConfigError::AdvertiseIpv6(v6));
        }
        if let Some(addr) = self.cascade_advertise
            && (addr.ip().is_unspecified() || addr.port() == 0)
        {
            return Err(BridgeNodeConfigError::CascadeAdvertise(addr));
        }
        if let Some(host) = &self.public_host {
            let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-');
            if host.parse::<IpAddr>().is_err()
                && (host.is_empty() || host.len() > 253 || !host.chars().all(name_char))
            {
                return Err(BridgeNodeConfigError::PublicHost(host.clone()));
            }
        }
        if self.location.is_some_and(|l| !l.is_valid()) {
            return Err(BridgeNodeConfigError::Location);
        }
        if self.capacity == 0 || self.max_per_room == 0 || self.max_per_room > self.capacity {
            return Err(BridgeNodeConfigError::Capacity);
        }
        if self.shards.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err(BridgeNodeConfigError::Shards);
        }
        if self.cascade_identity.is_none() && self.cascade_cert_dir.is_none() {
            return Err(BridgeNodeConfigError::NoCertificate);
        }
        let clash = |a: u16, b: u16| a != 0 && a == b;
        if (self.turn && clash(self.turn_port, self.media_port))
            || clash(self.cascade_port, self.media_port)
            || (self.turn && clash(self.cascade_port, self.turn_port))
        {
            return Err(BridgeNodeConfigError::PortClash);
        }
        if self.drain_timeout_s > DRAIN_TIMEOUT_S_MAX {
            return Err(BridgeNodeConfigError::DrainTimeout);
        }
        self.ceilings()
            .validate()
            .map_err(|err| BridgeNodeConfigError::Ceilings(err.to_string()))?;
        if let Some(recording) = self.recording() {
            recording.validate()?;
        }
        Ok(())
    }

    /// The recording settings, when `recordings_dir` turns recording on.
    pub fn recording(&self) -> Option<bridgemesh_bridge::recording::RecordingConfig> {
        let directory = self.recordings_dir.clone()?;
        Some(bridgemesh_bridge::recording::RecordingConfig {
            directory,
            free_bytes_min: self.recording_free_min_mb.saturating_mul(1024 * 1024),
            duration_max_s: self.recording_max_duration_s,
            file_bytes_max: self.recording_max_size_mb.saturating_mul(1024 * 1024),
            ..Default::default()
        })
    }

    /// The IP put in ICE candidates: `advertise_ip`, else `public_host` if it is an IP, else the
    /// listen IP if it is a specific one.
    pub fn advertise_ip(&self) -> Result<IpAddr, BridgeNodeConfigError> {
        self.advertise_ip
            .or_else(|| self.public_host.as_ref().and_then(|h| h.parse().ok()))
            .or_else(|| (!self.listen.ip().is_unspecified()).then_some(self.listen.ip()))
            .ok_or(BridgeNodeConfigError::NoAdvertiseIp)
    }

    /// The host in the signaling and TURN URLs: `public_host`, else the advertised IP (IPv6 in
    /// brackets).
    pub fn public_host(&self) -> Result<String, BridgeNodeConfigError> {
        if let Some(host) = &self.public_host {
            return Ok(match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
                _ => host.clone(),
            });
        }
        Ok(match self.advertise_ip()? {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        })
    }

    /// `id`, or `<region>-<hostname>`.
    pub fn bridge_id(&self) -> Result<BridgeId, BridgeNodeConfigError> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        let region = self.region.as_ref().ok_or(BridgeNodeConfigError::NoRegion)?;
        Ok(default_bridge_id(region, &hostname()))
    }

    pub(crate) fn ceilings(&self) -> LoadCeilings {
        LoadCeilings {
            cpu: self.cpu_ceiling,
            packets_per_s: self.packets_per_s_ceiling,
            participants: self.capacity,
        }
    }
}
