//! The control front: a TCP relay on 127.0.0.1 that hands each participant's connection to the
//! first control node accepting it, as a load balancer in front of a control cluster does.

use super::*;

/// A TCP relay on 127.0.0.1 in front of the control nodes: each connection goes to the first
/// node (from a rotating start) that accepts it, from the client's own source address, since
/// control rate-limits joins per address.
pub struct ControlFront {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl ControlFront {
    pub async fn start(ports: Vec<u16>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let slots = Arc::new(Semaphore::new(FRONT_CONNECTIONS_MAX));
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let Ok((client, peer)) = listener.accept().await else {
                    // Out of file descriptors, most likely: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let order: Vec<u16> = (0..ports.len())
                    .map(|i| ports[(next + i) % ports.len()])
                    .collect();
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    let _permit = permit;
                    let Some(upstream) = connect_first(peer.ip(), &order).await else {
                        return;
                    };
                    relay(client, upstream).await;
                });
            }
        });
        Ok(Self { port, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ControlFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until a side closes or fails, or nothing moved for [`FRONT_IDLE_TIMEOUT`].
pub(super) async fn relay(mut client: tokio::net::TcpStream, mut upstream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let mut from_client = vec![0u8; FRONT_BUFFER_BYTES];
    let mut from_upstream = vec![0u8; FRONT_BUFFER_BYTES];
    loop {
        // Reads are cancel-safe; a write runs to its end once its branch is chosen.
        let moved = tokio::time::timeout(FRONT_IDLE_TIMEOUT, async {
            tokio::select! {
                read = client_read.read(&mut from_client) => match read {
                    Ok(n) if n > 0 => upstream_write.write_all(&from_client[..n]).await.is_ok(),
                    _ => false,
                },
                read = upstream_read.read(&mut from_upstream) => match read {
                    Ok(n) if n > 0 => client_write.write_all(&from_upstream[..n]).await.is_ok(),
                    _ => false,
                },
            }
        })
        .await;
        if moved != Ok(true) {
            return;
        }
    }
}

/// A connection to the first of `ports` on 127.0.0.1 that accepts one, sent from `source` when
/// it is a loopback address (any 127/8 address is this machine's).
pub(super) async fn connect_first(source: IpAddr, ports: &[u16]) -> Option<tokio::net::TcpStream> {
    for &port in ports {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        if source.is_loopback() && source.is_ipv4() {
            socket.bind(SocketAddr::new(source, 0)).ok()?;
        }
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(Ok(stream)) = tokio::time::timeout(ADMIN_TIMEOUT, socket.connect(target)).await {
            return Some(stream);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_limit_is_checked() {
        LocalClusterConfig::default().validate().unwrap();
        let bad = [
            LocalClusterConfig {
                control_nodes: 0,
                ..LocalClusterConfig::default()
            },
            LocalClusterConfig {
                control_nodes: CONTROL_NODES_MAX + 1,
                ..LocalClusterConfig::default()
            },
            LocalClusterConfig {
                bridges: 0,
                ..LocalClusterConfig::default()
            },
            LocalClusterConfig {
                bridges: BRIDGES_MAX + 1,
                ..LocalClusterConfig::default()
            },
            LocalClusterConfig {
                max_per_room: 0,
                ..LocalClusterConfig::default()
            },
            LocalClusterConfig {
                binary: Some("/nonexistent/bridgemesh".into()),
                ..LocalClusterConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(LocalClusterError::Config(_))),
                "{config:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_front_skips_a_node_that_refuses_and_keeps_the_source_address() {
        let dead = free_port().unwrap();
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        let front = ControlFront::start(vec![dead, live_port]).await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.7:0".parse().unwrap()).unwrap();
        let front_addr: SocketAddr = front.url().trim_start_matches("http://").parse().unwrap();
        let _client = socket.connect(front_addr).await.unwrap();
        let (_, peer) = tokio::time::timeout(Duration::from_secs(5), live.accept())
            .await
            .expect("the front reached the live node")
            .unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 7]));
    }
}
