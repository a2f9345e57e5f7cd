//! The bridges' CPU and memory over a run: which bridges there are (control's admin API), where
//! their `/metrics` are (the host and port of their signaling URL), and the process series
//! scraped from there before the joins (idle memory), after the ramp-up and after the hold (CPU
//! and forwarding over the hold, when every participant is connected).

use super::LoadError;
use bridgemesh_control::auth::Secret;
use bridgemesh_proto::BridgeId;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Bound on one admin call or one scrape.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bridges scraped; the rest are named in the report as not measured.
pub const BRIDGES_MAX: usize = 256;
/// Largest `/metrics` body read.
const METRICS_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;

const CPU_SECONDS: &str = "bridgemesh_process_cpu_seconds_total";
const RESIDENT_BYTES: &str = "bridgemesh_process_resident_memory_bytes";
const RTP_FORWARDED: &str = "bridgemesh_bridge_rtp_forwarded_total";
const PARTICIPANTS: &str = "bridgemesh_bridge_participants";

/// A bridge as `GET /api/v1/admin/bridges` lists it; only what the load generator needs, so a
/// control of another version with more fields still answers.
#[derive(Debug, Clone, Deserialize)]
struct ListedBridge {
    id: BridgeId,
    #[serde(default)]
    status: String,
    signaling_url: String,
}

/// One bridge to scrape.
#[derive(Debug, Clone)]
pub struct BridgeTarget {
    pub id: BridgeId,
    pub status: String,
    /// `None` when the signaling URL gave no HTTP base (the reason is in `error`).
    pub metrics_url: Option<String>,
    pub error: Option<String>,
}

/// What the run learned about the bridges' resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BridgeFigures {
    /// Not measured: no admin token was given.
    Skipped {
        reason: String,
    },
    /// The bridge list could not be had (control refused the token, …).
    Failed {
        error: String,
    },
    Measured {
        bridges: Vec<BridgeUsage>,
    },
}

impl BridgeFigures {
    /// The bridges that reported both CPU and memory.
    pub fn measured(&self) -> impl Iterator<Item = &BridgeUsage> {
        let bridges = match self {
            BridgeFigures::Measured { bridges } => bridges.as_slice(),
            _ => &[],
        };
        bridges
            .iter()
            .filter(|b| b.cpu_seconds.is_some() && b.resident_memory_bytes_after.is_some())
    }
}

/// One bridge's resources: memory before the joins and after the hold, CPU and forwarding over
/// the hold. Under `bridgemesh up` the process also runs control and TURN, and every bridge of it reports
/// the same process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeUsage {
    pub id: BridgeId,
    /// Control's view at the start (`up`, `draining`, …).
    pub status: String,
    pub metrics_url: Option<String>,
    /// The hold, as the scrapes saw it: from the end of the ramp-up to the end of the hold.
    pub window_s: f64,
    /// CPU time the bridge's process used in the window.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds / window_s`: 1.0 is one core busy all the time.
    pub cpu_cores: Option<f64>,
    /// Before the first join.
    pub resident_memory_bytes_before: Option<u64>,
    /// At the end of the hold.
    pub resident_memory_bytes_after: Option<u64>,
    /// RTP packets forwarded to subscribers per second over the window.
    pub rtp_forwarded_per_s: Option<f64>,
    /// Participants connected at the second scrape.
    pub participants_after: Option<u64>,
    /// Why a figure is missing.
    pub error: Option<String>,
}

/// The series of one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scrape {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub rtp_forwarded: Option<f64>,
    pub participants: Option<f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        Self {
            cpu_seconds: metric_sum(text, CPU_SECONDS),
            resident_memory_bytes: metric_sum(text, RESIDENT_BYTES),
            rtp_forwarded: metric_sum(text, RTP_FORWARDED),
            participants: metric_sum(text, PARTICIPANTS),
        }
    }
}

/// The sum of every series of metric `name` in Prometheus text, or `None` if it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name{labels} value` or `name value`, not a longer name that starts the same.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let after_labels = match rest.strip_prefix('{') {
            Some(labels) => labels.rsplit_once('}').map_or("", |(_, after)| after),
            None => rest,
        };
        // An optional timestamp may follow the value.
        if let Some(value) = after_labels
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// The bridge's `/metrics` URL from its signaling URL: same host and port, `ws` → `http`,
/// `wss` → `https`.
pub fn metrics_url(signaling_url: &str) -> Result<String, String> {
    let mut url =
        reqwest::Url::parse(signaling_url).map_err(|e| format!("signaling URL {signaling_url:?}: {e}"))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => return Err(format!("signaling URL {signaling_url:?} has scheme {other:?}")),
    };
    url.set_scheme(scheme)
        .map_err(|()| format!("signaling URL {signaling_url:?}: cannot become {scheme}"))?;
    url.set_path("/metrics");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url.into())
}

fn http_client() -> Result<reqwest::Client, LoadError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| LoadError::Http(e.to_string()))
}

/// The bridges control knows, with their metrics URLs (at most [`BRIDGES_MAX`]).
pub async fn list_bridges(control_url: &str, token: &Secret) -> Result<Vec<BridgeTarget>, String> {
    let http = http_client().map_err(|e| e.to_string())?;
    let url = format!("{}/api/v1/admin/bridges", control_url.trim_end_matches('/'));
    let response = http
        .get(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("unknown");
        return Err(format!("GET {url}: {status} ({code})"));
    }
    let listed: Vec<ListedBridge> = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not a bridge list: {e}"))?;
    Ok(listed
        .into_iter()
        .take(BRIDGES_MAX)
        .map(|bridge| {
            let (metrics_url, error) = match metrics_url(&bridge.signaling_url) {
                Ok(url) => (Some(url), None),
                Err(e) => (None, Some(e)),
            };
            BridgeTarget {
                id: bridge.id,
                status: bridge.status,
                metrics_url,
                error,
            }
        })
        .collect())
}

/// One scrape of each target, in order; a bridge that does not answer gets an error.
pub async fn scrape_all(targets: &[BridgeTarget]) -> (Instant, Vec<Result<Scrape, String>>) {
    let at = Instant::now();
    let http = match http_client() {
        Ok(http) => http,
        Err(e) => return (at, targets.iter().map(|_| Err(e.to_string())).collect()),
    };
    let mut scrapes = Vec::with_capacity(targets.len());
    for target in targets {
        let scrape = match &target.metrics_url {
            Some(url) => scrape(&http, url).await,
            None => Err(target.error.clone().unwrap_or_else(|| "no metrics URL".into())),
        };
        scrapes.push(scrape);
    }
    (at, scrapes)
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<Scrape, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > METRICS_BODY_MAX_BYTES as u64)
    {
        return Err(format!(
            "GET {url}: body larger than {METRICS_BODY_MAX_BYTES} bytes"
        ));
    }
    let text = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(Scrape::parse(&text))
}

/// Each bridge's usage: memory from the `idle` scrape (before the joins) and the `after` one,
/// rates between `before` and `after`, `window` apart.
pub fn usage(
    targets: &[BridgeTarget],
    idle: &[Result<Scrape, String>],
    before: &[Result<Scrape, String>],
    after: &[Result<Scrape, String>],
    window: Duration,
) -> Vec<BridgeUsage> {
    let window_s = window.as_secs_f64();
    targets
        .iter()
        .zip(idle.iter().zip(before.iter().zip(after)))
        .map(|(target, (idle, (before, after)))| {
            let mut usage = BridgeUsage {
                id: target.id.clone(),
                status: target.status.clone(),
                metrics_url: target.metrics_url.clone(),
                window_s,
                cpu_seconds: None,
                cpu_cores: None,
                resident_memory_bytes_before: None,
                resident_memory_bytes_after: None,
                rtp_forwarded_per_s: None,
                participants_after: None,
                error: None,
            };
            let (idle, before, after) = match (idle, before, after) {
                (Ok(idle), Ok(before), Ok(after)) => (idle, before, after),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    usage.error = Some(e.clone());
                    return usage;
                }
            };
            let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?).filter(|d| *d >= 0.0);
            usage.cpu_seconds = delta(before.cpu_seconds, after.cpu_seconds);
            usage.cpu_cores = usage.cpu_seconds.filter(|_| window_s > 0.0).map(|s| s / window_s);
            usage.resident_memory_bytes_before = idle.resident_memory_bytes.map(|b| b as u64);
            usage.resident_memory_bytes_after = after.resident_memory_bytes.map(|b| b as u64);
            usage.rtp_forwarded_per_s = delta(before.rtp_forwarded, after.rtp_forwarded)
                .filter(|_| window_s > 0.0)
                .map(|n| n / window_s);
            usage.participants_after = after.participants.map(|n| n as u64);
            if after.cpu_seconds.is_none() || after.resident_memory_bytes.is_none() {
                usage.error = Some(format!(
                    "no {CPU_SECONDS} or {RESIDENT_BYTES} series (a bridge older than this load generator?)"
                ));
            } else if usage.cpu_seconds.is_none() {
                usage.error = Some("the CPU counter went backwards (the bridge restarted?)".into());
            }
            usage
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP bridgemesh_process_cpu_seconds_total User and system CPU time of the bridge's process.
# TYPE bridgemesh_process_cpu_seconds_total counter
bridgemesh_process_cpu_seconds_total{bridge=\"b1\"} 12.5
bridgemesh_process_resident_memory_bytes{bridge=\"b1\"} 104857600
bridgemesh_bridge_rtp_forwarded_total{bridge=\"b1\"} 1000
bridgemesh_bridge_rtp_forwarded_total_other{bridge=\"b1\"} 7
bridgemesh_cascade_link_up{bridge=\"b1\",peer=\"b{2}\"} 1 1700000000000
bridgemesh_cascade_link_up{bridge=\"b1\",peer=\"b3\"} 1
bridgemesh_bridge_participants 4
";

    #[test]
    fn metrics_are_summed_over_series_of_exactly_that_name() {
        assert_eq!(metric_sum(TEXT, CPU_SECONDS), Some(12.5));
        assert_eq!(metric_sum(TEXT, RTP_FORWARDED), Some(1000.0));
        assert_eq!(metric_sum(TEXT, "bridgemesh_cascade_link_up"), Some(2.0));
        assert_eq!(metric_sum(TEXT, PARTICIPANTS), Some(4.0));
        assert_eq!(metric_sum(TEXT, "bridgemesh_bridge_rooms"), None);
        assert_eq!(metric_sum("", CPU_SECONDS), None);
    }

    #[test]
    fn the_metrics_url_is_the_signaling_host_and_port() {
        assert_eq!(
            metrics_url("ws://127.0.0.1:8081/bridge/v1/signal").unwrap(),
            "http://127.0.0.1:8081/metrics"
        );
        assert_eq!(
            metrics_url("wss://b1.example.org/bridge/v1/signal?x=1").unwrap(),
            "https://b1.example.org/metrics"
        );
        assert!(metrics_url("ftp://b1/").is_err());
        assert!(metrics_url("not a url").is_err());
    }

    fn target(id: &str) -> BridgeTarget {
        BridgeTarget {
            id: BridgeId::new(id).unwrap(),
            status: "up".into(),
            metrics_url: Some(format!("http://{id}/metrics")),
            error: None,
        }
    }

    #[test]
    fn usage_is_the_difference_over_the_window() {
        let idle = Scrape {
            cpu_seconds: Some(2.0),
            resident_memory_bytes: Some(1000.0),
            rtp_forwarded: Some(0.0),
            participants: Some(0.0),
        };
        let before = Scrape {
            cpu_seconds: Some(10.0),
            resident_memory_bytes: Some(2500.0),
            rtp_forwarded: Some(100.0),
            participants: Some(6.0),
        };
        let after = Scrape {
            cpu_seconds: Some(15.0),
            resident_memory_bytes: Some(3000.0),
            rtp_forwarded: Some(2100.0),
            participants: Some(6.0),
        };
        let old_bridge = Scrape {
            cpu_seconds: None,
            resident_memory_bytes: None,
            ..after
        };
        let targets = [target("b1"), target("b2"), target("b3")];
        let got = usage(
            &targets,
            &[Ok(idle), Ok(idle), Ok(idle)],
            &[Ok(before), Ok(before), Err("refused".into())],
            &[Ok(after), Ok(old_bridge), Ok(after)],
            Duration::from_secs(10),
        );
        assert_eq!(got[0].cpu_seconds, Some(5.0));
        assert_eq!(got[0].cpu_cores, Some(0.5));
        assert_eq!(got[0].resident_memory_bytes_before, Some(1000));
        assert_eq!(got[0].resident_memory_bytes_after, Some(3000));
        assert_eq!(got[0].rtp_forwarded_per_s, Some(200.0));
        assert_eq!(got[0].participants_after, Some(6));
        assert_eq!(got[0].error, None);
        assert!(got[1].error.as_deref().unwrap().contains(CPU_SECONDS));
        assert_eq!(got[1].cpu_seconds, None);
        assert_eq!(got[2].error.as_deref(), Some("refused"));
        let figures = BridgeFigures::Measured { bridges: got };
        assert_eq!(figures.measured().count(), 1);
    }
}
