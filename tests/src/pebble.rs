//! Debian's `pebble` (a small ACME server for tests) and `pebble-challtestsrv` as its DNS
//! server, as child processes of a test, killed when dropped. Every name resolves to the address
//! given (the server under test); pebble validates http-01 challenges on the given port there,
//! for real, over HTTP.
//!
//! pebble serves its directory over HTTPS with a certificate from a test CA made here
//! ([`Pebble::directory_ca_pem`]); the certificates it issues chain to a root it makes at each
//! start ([`Pebble::issuing_roots_pem`]).

use crate::https::{TestPki, https, https_over};
use crate::netns::Netns;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Pebble {
    pub directory_url: String,
    /// PEM file of the CA that signed pebble's own HTTPS certificate (for `--acme-ca-file`).
    pub directory_ca_file: PathBuf,
    pub directory_ca_pem: String,
    management: SocketAddr,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

/// A port free on `ip` right now (the OS picks it); tests then bind it themselves.
pub fn free_tcp_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn free_udp_port(ip: IpAddr) -> u16 {
    UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"))
}

impl Pebble {
    /// Starts pebble on `listen_ip`, resolving every name to `target_ip` and validating http-01
    /// on `target_ip:http_port`. Issued certificates are valid `validity_s` seconds.
    pub async fn start(listen_ip: IpAddr, target_ip: IpAddr, http_port: u16, validity_s: u64) -> Self {
        Self::start_in(None, listen_ip, target_ip, http_port, validity_s).await
    }

    /// [`Pebble::start`] inside `netns` (ports are then picked on this machine's loopback,
    /// where they are free too: a fresh namespace has nothing listening).
    pub async fn start_in(
        netns: Option<&Netns>,
        listen_ip: IpAddr,
        target_ip: IpAddr,
        http_port: u16,
        validity_s: u64,
    ) -> Self {
        let command = |program: &str| match netns {
            Some(netns) => netns.command(program),
            None => Command::new(program),
        };
        let probe_ip = match netns {
            Some(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            None => listen_ip,
        };
        let dir = tempfile::tempdir().expect("pebble dir");
        let pki = TestPki::with_names(&["localhost".to_owned(), listen_ip.to_string()]);
        std::fs::write(dir.path().join("cert.pem"), &pki.leaf_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pki.leaf_key_pem).unwrap();
        let directory_ca_file = dir.path().join("directory-ca.pem");
        std::fs::write(&directory_ca_file, &pki.ca_pem).unwrap();
        let acme = SocketAddr::new(listen_ip, free_tcp_port(probe_ip));
        let management = SocketAddr::new(listen_ip, free_tcp_port(probe_ip));
        let dns = SocketAddr::new(listen_ip, free_udp_port(probe_ip));
        let challtest_management = SocketAddr::new(listen_ip, free_tcp_port(probe_ip));
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": acme.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                // TLS-ALPN-01 is not offered by bridgemesh; an unused port keeps it harmless.
                "tlsPort": free_tcp_port(probe_ip),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity_s,
            }
        });
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let (v4, v6) = match target_ip {
            IpAddr::V4(ip) => (ip.to_string(), String::new()),
            IpAddr::V6(ip) => (String::new(), ip.to_string()),
        };
        let challtestsrv = command("pebble-challtestsrv")
            .args(["-defaultIPv4", &v4, "-defaultIPv6", &v6])
            .args([
                "-dns01",
                &dns.to_string(),
                "-management",
                &challtest_management.to_string(),
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log_file(dir.path(), "challtestsrv.log"))
            .stderr(log_file(dir.path(), "challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian's pebble package) runs");
        let pebble = command("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &dns.to_string()])
            // No random validation delay, no random nonce rejection, every order validated anew.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log_file(dir.path(), "pebble.log"))
            .stderr(log_file(dir.path(), "pebble.err"))
            .spawn()
            .expect("pebble (Debian's pebble package) runs");
        let started = Self {
            directory_url: format!("https://{acme}/dir"),
            directory_ca_file,
            directory_ca_pem: pki.ca_pem,
            management,
            children: vec![challtestsrv, pebble],
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = match netns {
                Some(netns) => netns.connect_tcp(acme).is_ok() && netns.connect_tcp(management).is_ok(),
                None => {
                    tokio::net::TcpStream::connect(acme).await.is_ok()
                        && tokio::net::TcpStream::connect(management).await.is_ok()
                }
            };
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                started.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started
    }

    /// The roots the issued certificates chain to (they change at every pebble start).
    pub async fn issuing_roots_pem(&self) -> String {
        self.issuing_roots_pem_in(None).await
    }

    /// [`Pebble::issuing_roots_pem`] for a pebble started in `netns`.
    pub async fn issuing_roots_pem_in(&self, netns: Option<&Netns>) -> String {
        let host = self.management.ip().to_string();
        let root = match netns {
            None => {
                https(
                    self.management,
                    &host,
                    &self.directory_ca_pem,
                    "GET",
                    "/roots/0",
                    None,
                )
                .await
            }
            Some(netns) => {
                let tcp = netns
                    .connect_tcp(self.management)
                    .expect("pebble's management port");
                https_over(tcp, &host, &self.directory_ca_pem, "GET", "/roots/0").await
            }
        };
        assert_eq!(root.status, 200, "pebble's root");
        String::from_utf8(root.body).expect("PEM")
    }

    /// The last lines pebble wrote, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["pebble.log", "pebble.err", "challtestsrv.err"] {
            let text = std::fs::read_to_string(self._dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("\n--- {name}:\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
