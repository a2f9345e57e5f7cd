//! The HTTP server every node runs (control's API, a bridge's signaling, `up --domain`'s public
//! port), hardened against clients that hold connections instead of using them.
//!
//! - A connection must deliver a request's headers within [`HttpLimits::header_read_timeout`],
//!   counted from when the server starts waiting for them: an unfinished request (slowloris) and
//!   a keep-alive connection idle between requests are both closed when it passes.
//! - A request body must arrive whole within [`HttpLimits::body_read_timeout`] of its headers.
//! - At most [`HttpLimits::connections_max`] connections are open, and at most
//!   [`HttpLimits::connections_per_address_max`] from one address (IPv6 grouped by /64, the block
//!   one subscriber holds); a connection past either cap is closed at once, and counted. Loopback
//!   peers are exempt from the per-address cap by default: on loopback every client is a local
//!   reverse proxy's (or `bridgemesh up`'s own browsers), and only the global cap applies.
//!
//! A WebSocket upgraded from a request leaves the server's timeouts and caps behind: signaling has
//! its own (a ticket within its hello timeout, rate limits per client).

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_service::Service as _;

/// Limits of one HTTP server. The defaults suit a public server: a browser sends its headers in
/// milliseconds and holds a handful of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub connections_max: usize,
    pub connections_per_address_max: usize,
    /// Loopback peers are not held to `connections_per_address_max`.
    pub loopback_exempt_from_per_address_max: bool,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            connections_max: 10_000,
            connections_per_address_max: 256,
            loopback_exempt_from_per_address_max: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpLimitsError {
    #[error("HTTP timeouts must be at least 100 ms")]
    Timeout,
    #[error("HTTP connection caps must be at least 1, and the per-address cap at most the global one")]
    Caps,
}

impl HttpLimits {
    pub fn validate(&self) -> Result<(), HttpLimitsError> {
        let floor = Duration::from_millis(100);
        if self.header_read_timeout < floor || self.body_read_timeout < floor {
            return Err(HttpLimitsError::Timeout);
        }
        if self.connections_max == 0
            || self.connections_per_address_max == 0
            || self.connections_per_address_max > self.connections_max
        {
            return Err(HttpLimitsError::Caps);
        }
        Ok(())
    }
}

/// What a guarded server refused and closed, for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpGuardStats {
    pub connections_open: AtomicU64,
    pub refused_connections_max: AtomicU64,
    pub refused_per_address_max: AtomicU64,
    /// Connections closed for not sending a request's headers in time (or idling too long).
    pub header_timeouts: AtomicU64,
    /// Requests whose body did not arrive in time.
    pub body_timeouts: AtomicU64,
}

impl HttpGuardStats {
    pub fn refused_total(&self) -> u64 {
        self.refused_connections_max.load(Ordering::Relaxed)
            + self.refused_per_address_max.load(Ordering::Relaxed)
    }

    /// The server's figures in the Prometheus text format, as `{prefix}_http_*` series with
    /// `labels` (e.g. `bridge="b1"`, or empty), to append to a `/metrics` page.
    pub fn render_prometheus(&self, prefix: &str, labels: &str) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let join = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{{{extra}}}"),
            (false, true) => format!("{{{labels}}}"),
            (false, false) => format!("{{{labels},{extra}}}"),
        };
        let mut text = String::new();
        text.push_str(&format!(
            "# HELP {prefix}_http_connections_open HTTP connections open (before any upgrade).\n\
             # TYPE {prefix}_http_connections_open gauge\n\
             {prefix}_http_connections_open{} {}\n",
            join(""),
            load(&self.connections_open)
        ));
        text.push_str(&format!(
            "# HELP {prefix}_http_connections_refused Connections closed at once for a connection cap.\n\
             # TYPE {prefix}_http_connections_refused counter\n\
             {prefix}_http_connections_refused_total{} {}\n\
             {prefix}_http_connections_refused_total{} {}\n",
            join("cap=\"connections_max\""),
            load(&self.refused_connections_max),
            join("cap=\"per_address_max\""),
            load(&self.refused_per_address_max)
        ));
        text.push_str(&format!(
            "# HELP {prefix}_http_timeouts Connections or requests closed for not sending in time.\n\
             # TYPE {prefix}_http_timeouts counter\n\
             {prefix}_http_timeouts_total{} {}\n\
             {prefix}_http_timeouts_total{} {}\n",
            join("phase=\"header\""),
            load(&self.header_timeouts),
            join("phase=\"body\""),
            load(&self.body_timeouts)
        ));
        text
    }
}

/// The address a per-address cap counts under: an IPv4 address, or an IPv6 /64.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Open connections by address group; an entry lives only while its address holds one.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Connection admission: a sans-IO table the accept loop asks and each connection's slot frees.
#[derive(Debug)]
pub struct ConnectionTable {
    limits: HttpLimits,
    slots: Mutex<Slots>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    RefusedConnectionsMax,
    RefusedPerAddressMax,
}

impl ConnectionTable {
    pub fn new(limits: HttpLimits) -> Self {
        Self {
            limits,
            slots: Mutex::new(Slots::default()),
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Admission {
        let mut slots = self.slots.lock().expect("slots lock");
        if slots.total >= self.limits.connections_max {
            return Admission::RefusedConnectionsMax;
        }
        let group = address_group(ip);
        let held = slots.per_address.get(&group).copied().unwrap_or(0);
        let exempt = self.limits.loopback_exempt_from_per_address_max && group.is_loopback();
        if held >= self.limits.connections_per_address_max && !exempt {
            return Admission::RefusedPerAddressMax;
        }
        slots.total += 1;
        slots.per_address.insert(group, held + 1);
        Admission::Admitted
    }

    pub fn release(&self, ip: IpAddr) {
        let mut slots = self.slots.lock().expect("slots lock");
        let group = address_group(ip);
        slots.total = slots.total.saturating_sub(1);
        if let Some(held) = slots.per_address.get_mut(&group) {
            *held -= 1;
            if *held == 0 {
                slots.per_address.remove(&group);
            }
        }
    }

    pub fn open(&self) -> usize {
        self.slots.lock().expect("slots lock").total
    }
}

/// Frees a connection's slot however its task ends.
struct Slot {
    table: Arc<ConnectionTable>,
    stats: Arc<HttpGuardStats>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(self.ip);
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that must arrive whole by a deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    stats: Arc<HttpGuardStats>,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyError::Timeout)));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` under `limits` until `stopped` changes, then lets requests in
/// flight finish. Handlers see each client's address as `ConnectInfo<SocketAddr>`.
pub fn serve_guarded(
    listener: TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
    limits: HttpLimits,
    stats: Arc<HttpGuardStats>,
) -> JoinHandle<()> {
    let table = Arc::new(ConnectionTable::new(limits.clone()));
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                Some(_) = connections.join_next() => {}
                accepted = listener.accept() => {
                    let (tcp, from) = match accepted {
                        Ok(accepted) => accepted,
                        // Out of file descriptors, usually: back off rather than spin.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    match table.admit(from.ip()) {
                        Admission::Admitted => {}
                        Admission::RefusedConnectionsMax => {
                            stats.refused_connections_max.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Admission::RefusedPerAddressMax => {
                            stats.refused_per_address_max.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    stats.connections_open.fetch_add(1, Ordering::Relaxed);
                    let slot = Slot { table: table.clone(), stats: stats.clone(), ip: from.ip() };
                    // Raft heartbeats and signaling are small messages that must leave at once;
                    // Nagle would hold one back until the peer's next packet arrives.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve_connection(tcp, from, router.clone(), limits.clone(), stats.clone(), stopped.clone(), slot));
                }
            }
        }
        // Stopped: no new connections; those open finish their requests in flight.
        while connections.join_next().await.is_some() {}
    })
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    from: SocketAddr,
    router: Router,
    limits: HttpLimits,
    stats: Arc<HttpGuardStats>,
    mut stopped: watch::Receiver<bool>,
    _slot: Slot,
) {
    let body_timeout = limits.body_read_timeout;
    let body_stats = stats.clone();
    let guard_stats = stats.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(body_timeout)),
                stats: body_stats.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(from));
        // For `/metrics` handlers to report the server's refusals.
        request.extensions_mut().insert(guard_stats.clone());
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(err) = result
        && err.is_timeout()
    {
        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
