//! [`LoadConfig`] (`Default` + `validate`), its limits, and [`LoadError`].

use super::*;

/// Most participants one run takes.
pub const PARTICIPANTS_MAX: u64 = 10_000;
/// Most participants in one room (control's limit for a whole cluster).
pub const PER_ROOM_MAX: u32 = 500;
/// Most joins (or leaves) in flight at once that a config may ask for.
pub const JOINS_IN_FLIGHT_MAX: usize = 1024;
/// Most source addresses.
pub const BIND_IPS_MAX: usize = 1024;
/// Longest hold and ramp-up.
pub const DURATION_S_MAX: u64 = 7 * 24 * 3600;
pub const RAMP_UP_S_MAX: u64 = 24 * 3600;
/// Highest video bitrate.
pub const VIDEO_KBPS_MAX: u32 = 20_000;

/// What to run. Built from flags by the binary; see `bridgemesh load --help`.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Control's base URL, `http://host:port` (no TLS yet).
    pub control_url: String,
    pub rooms: u32,
    pub per_room: u32,
    /// Participants of each room that publish audio and video; the others only receive.
    /// `None`: all of them.
    pub publishers_per_room: Option<u32>,
    /// Video bitrate of each publisher; 0 publishes audio only.
    pub video_kbps: u32,
    /// How long everyone stays after the last join.
    pub duration_s: u64,
    /// Over how long the joins are spread.
    pub ramp_up_s: u64,
    /// Rooms are `{room_prefix}-0`, `{room_prefix}-1`, …
    pub room_prefix: String,
    /// Source addresses, taken in turn by the participants (control rate-limits joins per
    /// address). Empty: the system's choice.
    pub bind_ips: Vec<IpAddr>,
    /// Lists the bridges (control's admin API) to read their CPU and memory; without it the
    /// report says the bridges were not measured.
    pub admin_token: Option<Secret>,
    /// The run fails when more than this share of packets is lost.
    pub max_loss_percent: f64,
    /// Joins (and, at the end, leaves) in flight at once.
    pub joins_in_flight_max: usize,
    /// Bound on one participant's join.
    pub join_timeout_s: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            control_url: "http://127.0.0.1:8080".into(),
            rooms: 1,
            per_room: 2,
            publishers_per_room: None,
            video_kbps: 500,
            duration_s: 30,
            ramp_up_s: 5,
            room_prefix: "load".into(),
            bind_ips: Vec::new(),
            admin_token: None,
            max_loss_percent: 1.0,
            joins_in_flight_max: 16,
            join_timeout_s: 10,
        }
    }
}

impl LoadConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |message: String| Err(LoadError::Config(message));
        match reqwest::Url::parse(&self.control_url) {
            Ok(url) if url.scheme() == "http" && url.has_host() => {}
            // The synthetic participants' HTTP and WebSocket clients are built without TLS.
            Ok(url) if url.scheme() == "https" => {
                return bad(format!(
                    "control URL {:?}: TLS is not supported yet; use a plain http:// listener of control",
                    self.control_url
                ));
            }
            _ => {
                return bad(format!(
                    "control URL {:?} is not http://host:port",
                    self.control_url
                ));
            }
        }
        if self.rooms == 0 || self.per_room == 0 {
            return bad("rooms and participants per room must be at least 1".into());
        }
        if self.per_room > PER_ROOM_MAX {
            return bad(format!("at most {PER_ROOM_MAX} participants per room"));
        }
        if u64::from(self.rooms) * u64::from(self.per_room) > PARTICIPANTS_MAX {
            return bad(format!("at most {PARTICIPANTS_MAX} participants in one run"));
        }
        if self.publishers_per_room.is_some_and(|p| p > self.per_room) {
            return bad("more publishers per room than participants per room".into());
        }
        if self.video_kbps > VIDEO_KBPS_MAX {
            return bad(format!("video bitrate above {VIDEO_KBPS_MAX} kbit/s"));
        }
        if !(1..=DURATION_S_MAX).contains(&self.duration_s) {
            return bad(format!("duration must be 1 to {DURATION_S_MAX} s"));
        }
        if self.ramp_up_s > RAMP_UP_S_MAX {
            return bad(format!("ramp-up must be at most {RAMP_UP_S_MAX} s"));
        }
        if self.bind_ips.len() > BIND_IPS_MAX {
            return bad(format!("at most {BIND_IPS_MAX} source addresses"));
        }
        if !(0.0..=100.0).contains(&self.max_loss_percent) {
            return bad("the loss limit is a percentage, 0 to 100".into());
        }
        if !(1..=JOINS_IN_FLIGHT_MAX).contains(&self.joins_in_flight_max) {
            return bad(format!("joins in flight must be 1 to {JOINS_IN_FLIGHT_MAX}"));
        }
        if !(1..=300).contains(&self.join_timeout_s) {
            return bad("the join timeout must be 1 to 300 s".into());
        }
        // The longest room and participant names decide.
        if let Err(e) = RoomId::new(format!("{}-{}", self.room_prefix, self.rooms - 1)) {
            return bad(format!("room prefix {:?}: {e}", self.room_prefix));
        }
        if display_name(&self.room_prefix, self.rooms - 1, self.per_room - 1)
            .chars()
            .count()
            > DISPLAY_NAME_MAX_CHARS
        {
            return bad(format!(
                "room prefix {:?} too long for participant names of {DISPLAY_NAME_MAX_CHARS} characters",
                self.room_prefix
            ));
        }
        Ok(())
    }

    pub(super) fn publishers_per_room(&self) -> u32 {
        self.publishers_per_room.unwrap_or(self.per_room)
    }

    /// What each publisher sends.
    pub(super) fn sources(&self) -> Vec<MediaSource> {
        let mut sources = vec![MediaSource::Microphone];
        if self.video_kbps > 0 {
            sources.push(MediaSource::Camera);
        }
        sources
    }

    pub(super) fn room(&self, index: u32) -> RoomId {
        RoomId::new(format!("{}-{index}", self.room_prefix)).expect("validated")
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("invalid load settings: {0}")]
    Config(String),
    #[error("control at {url} does not answer: {error}")]
    ControlUnreachable { url: String, error: String },
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("{0}")]
    LocalCluster(String),
}
